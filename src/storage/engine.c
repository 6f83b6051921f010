/* The per-node storage engine: tables, read views, write path, flush and compaction threads.
 * See include/ilion/storage/engine.h for the contract and docs/sstable-format.md for files. */
#include "ilion/storage/engine.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ilion/storage/blockcache.h"
#include "ilion/storage/commitlog.h"
#include "ilion/storage/memtable.h"
#include "ilion/storage/sstable.h"
#include "ilion/util/clock.h"
#include "ilion/util/crc32c.h"
#include "ilion/util/err.h"
#include "ilion/util/fileio.h"
#include "ilion/util/log.h"
#include "ilion/util/murmur3.h"

#define MOD "storage"
#define TABLE_META "TABLE"
#define TABLE_META_MAGIC 0x494C54424C450001ULL
#define MAX_COMPACTION_INPUTS SST_MAX_REPLACES

void storage_options_default(storage_options *o) {
    memset(o, 0, sizeof *o);
    o->data_dir = "data";
    o->commitlog_dir = "commitlog";
    o->sync_mode = STORAGE_SYNC_PERIODIC;
    o->sync_period_ms = 10000;
    o->group_window_ms = 15;
    o->segment_size = 32ull << 20;
    o->commitlog_total_space = 8ull << 30;
    o->memtable_space = 512ull << 20;
    o->commit_failure_policy = STORAGE_POLICY_STOP;
    o->disk_failure_policy = STORAGE_POLICY_STOP;
    o->flush_threads = 1;
    o->compaction_threads = 1;
    o->block_cache_bytes = 256ull << 20;
}

void storage_table_options_default(storage_table_options *o) {
    memset(o, 0, sizeof *o);
    o->compression = STORAGE_COMPRESS_LZ4;
    o->block_size = 4096;
    o->bloom_fp_chance = 0.01;
    o->gc_grace_seconds = 864000;
    o->compaction_min_threshold = 4;
    o->compaction_max_threshold = 32;
}

/* ---------------------------------------------------------------- views and tables --- */

/* An immutable snapshot of what a read must consult: memtables (active first, then frozen,
 * newest to oldest) and live SSTables (newest first). Swapped whole under vlock. */
typedef struct view {
    atomic_int refs;
    uint32_t nmem;
    uint32_t nsst;
    memtable **mems;
    sstable **ssts;
} view;

typedef struct table {
    storage_engine *e;
    uint64_t id;
    char dir[PATH_MAX + 32];
    storage_table_options opt;
    pthread_mutex_t wlock;     /* writers: commit log append + memtable insert; freezes */
    pthread_mutex_t vlock;     /* the view pointer */
    view *view;
    memtable *active;          /* == view->mems[0]; changed under wlock and vlock */
    uint64_t floor;            /* replay: this table's records at or before it are on disk */
    uint64_t truncated_pos;
    uint64_t epoch;            /* bumped by truncate/drop: in-flight results are discarded */
    atomic_bool dropped;
    atomic_bool flush_failed;  /* later flushes would move the floor past unflushed data */
    /* Under e->bg_lock: */
    uint32_t pending_flushes;
    bool flushing;
    bool compacting;
    bool want_compact;
    atomic_uint_fast64_t compactions_done;
    atomic_uint_fast64_t bloom_negatives;
} table;

typedef struct flush_job {
    struct flush_job *next;
    table *t;
    memtable *m;               /* one reference */
    uint64_t freeze_pos;
    uint64_t epoch;
} flush_job;

struct storage_engine {
    storage_options opt;
    sst_block_cache *bcache;   /* NULL when block_cache_bytes is 0 */
    char data_dir[PATH_MAX];
    char cl_dir[PATH_MAX];
    commitlog *cl;
    pthread_rwlock_t tlock;    /* tables array */
    table **tables;
    uint32_t ntables, cap_tables;
    table **graveyard;         /* dropped tables, freed at close (readers may still hold them) */
    uint32_t ngrave;
    atomic_uint_fast64_t next_gen;
    atomic_size_t active_bytes;
    atomic_size_t frozen_bytes;
    atomic_bool failed;        /* disk failure under policy stop: writes refused */
    atomic_uint apply_count;
    pthread_mutex_t trigger_lock;
    /* Background work. Lock order: trigger_lock > wlock > vlock > bg_lock. */
    pthread_mutex_t bg_lock;
    pthread_cond_t bg_cond;    /* work for flush/compaction threads */
    pthread_cond_t done_cond;  /* a flush or compaction finished */
    flush_job *jobs, *jobs_tail;
    table **cq;                /* tables with want_compact set, in request order */
    uint32_t ncq, capcq;
    bool stopping;
    atomic_bool stop_flag;     /* == stopping, readable without bg_lock (long compactions) */
    pthread_t *threads;
    uint32_t nthreads;
    bool opened;
};

static view *view_new(uint32_t nmem, uint32_t nsst) {
    view *v = calloc(1, sizeof *v + sizeof(memtable *) * nmem + sizeof(sstable *) * nsst);
    if (!v) return NULL;
    atomic_init(&v->refs, 1);
    v->nmem = nmem;
    v->nsst = nsst;
    v->mems = (memtable **)(v + 1);
    v->ssts = (sstable **)(v->mems + nmem);
    return v;
}

static void view_unref(view *v) {
    if (!v) return;
    if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1) return;
    for (uint32_t i = 0; i < v->nmem; i++) memtable_unref(v->mems[i]);
    for (uint32_t i = 0; i < v->nsst; i++) sstable_unref(v->ssts[i]);
    free(v);
}

static view *view_acquire(table *t) {
    pthread_mutex_lock(&t->vlock);
    view *v = t->view;
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&t->vlock);
    return v;
}

/* Installs v (whose references are already taken) as the table's view; caller holds vlock. */
static void view_install_locked(table *t, view *v) {
    view *old = t->view;
    t->view = v;
    view_unref(old);
}

static table *table_find(storage_engine *e, uint64_t id) {
    table *t = NULL;
    pthread_rwlock_rdlock(&e->tlock);
    for (uint32_t i = 0; i < e->ntables; i++)
        if (e->tables[i]->id == id) {
            t = e->tables[i];
            break;
        }
    pthread_rwlock_unlock(&e->tlock);
    return t;
}

static void table_free(table *t) {
    view_unref(t->view);
    pthread_mutex_destroy(&t->wlock);
    pthread_mutex_destroy(&t->vlock);
    free(t);
}

/* --- table metadata file ------------------------------------------------------------ */

static int meta_write(table *t) {
    buf b;
    buf_init(&b);
    buf_u64(&b, TABLE_META_MAGIC);
    buf_u64(&b, t->id);
    buf_u32(&b, (uint32_t)t->opt.compression);
    buf_u32(&b, t->opt.block_size);
    uint64_t fp;
    memcpy(&fp, &t->opt.bloom_fp_chance, 8);
    buf_u64(&b, fp);
    buf_u32(&b, (uint32_t)t->opt.gc_grace_seconds);
    buf_u32(&b, t->opt.compaction_min_threshold);
    buf_u32(&b, t->opt.compaction_max_threshold);
    buf_u64(&b, t->truncated_pos);
    buf_u32(&b, crc32c(0, b.data, b.len));
    int rc = b.oom ? -ENOMEM : file_write_atomic(t->dir, TABLE_META, b.data, b.len);
    buf_free(&b);
    return rc;
}

static int meta_read(table *t) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", t->dir, TABLE_META);
    uint8_t *d;
    size_t n;
    int rc = file_read_all(path, 4096, &d, &n);
    if (rc) return rc;
    rc = ILION_ECORRUPT;
    if (n == 56 && be64_get(d) == TABLE_META_MAGIC && be32_get(d + 52) == crc32c(0, d, 52) &&
        be64_get(d + 8) == t->id) {
        t->opt.compression = (enum storage_compression)be32_get(d + 16);
        t->opt.block_size = be32_get(d + 20);
        uint64_t fp = be64_get(d + 24);
        memcpy(&t->opt.bloom_fp_chance, &fp, 8);
        t->opt.gc_grace_seconds = (int32_t)be32_get(d + 32);
        t->opt.compaction_min_threshold = be32_get(d + 36);
        t->opt.compaction_max_threshold = be32_get(d + 40);
        t->truncated_pos = be64_get(d + 44);
        if (t->opt.compression <= STORAGE_COMPRESS_NONE) rc = 0;
    }
    if (rc) LOG_ERROR(MOD, "%s: corrupt table metadata at offset 0", path);
    free(d);
    return rc;
}

static table *table_alloc(storage_engine *e, uint64_t id) {
    table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->e = e;
    t->id = id;
    snprintf(t->dir, sizeof t->dir, "%s/%016llx", e->data_dir, (unsigned long long)id);
    storage_table_options_default(&t->opt);
    pthread_mutex_init(&t->wlock, NULL);
    pthread_mutex_init(&t->vlock, NULL);
    return t;
}

static int table_add(storage_engine *e, table *t) {
    pthread_rwlock_wrlock(&e->tlock);
    if (e->ntables == e->cap_tables) {
        uint32_t cap = e->cap_tables ? e->cap_tables * 2 : 8;
        table **nt = realloc(e->tables, sizeof *nt * cap);
        if (!nt) {
            pthread_rwlock_unlock(&e->tlock);
            return -ENOMEM;
        }
        e->tables = nt;
        e->cap_tables = cap;
    }
    e->tables[e->ntables++] = t;
    pthread_rwlock_unlock(&e->tlock);
    return 0;
}

static int cmp_gen_desc(const void *a, const void *b) {
    uint64_t x = sstable_generation(*(sstable *const *)a), y = sstable_generation(*(sstable *const *)b);
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Opens the table's files: removes temporaries, finished-compaction inputs and SSTables made
 * obsolete by a truncation; builds the first view. */
static int table_load(table *t, uint64_t start_pos) {
    storage_engine *e = t->e;
    DIR *d = opendir(t->dir);
    if (!d) return -errno;
    uint64_t *gens = NULL;
    uint32_t ngens = 0, capg = 0;
    struct dirent *de;
    char path[PATH_MAX + 300];
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        size_t L = strlen(de->d_name);
        if (L > 4 && strcmp(de->d_name + L - 4, ".tmp") == 0) {
            snprintf(path, sizeof path, "%s/%s", t->dir, de->d_name);
            LOG_INFO(MOD, "removing leftover temporary file %s", path);
            unlink(path);
            continue;
        }
        char *end;
        unsigned long long g = strtoull(de->d_name, &end, 10);
        if (end != de->d_name && strcmp(end, ".sst") == 0) {
            if (ngens == capg) {
                capg = capg ? capg * 2 : 16;
                uint64_t *ng = realloc(gens, sizeof *ng * capg);
                if (!ng) {
                    rc = -ENOMEM;
                    break;
                }
                gens = ng;
            }
            gens[ngens++] = g;
        }
    }
    closedir(d);
    sstable **ssts = ngens ? calloc(ngens, sizeof *ssts) : NULL;
    if (rc == 0 && ngens && !ssts) rc = -ENOMEM;
    uint32_t nopen = 0;
    for (uint32_t i = 0; rc == 0 && i < ngens; i++) {
        rc = sstable_open(t->dir, gens[i], &ssts[nopen]);
        if (rc == 0) {
            sstable_set_block_cache(ssts[nopen], t->e->bcache);
            nopen++;
        } else if ((rc == ILION_ECORRUPT || rc == ILION_ECHECKSUM || rc == ILION_EFORMAT ||
                    rc == ILION_ETRUNCATED) &&
                   e->opt.disk_failure_policy == STORAGE_POLICY_IGNORE) {
            /* Left in place for inspection; its data is missing until repaired. */
            LOG_ERROR(MOD, "%s/%llu.sst is damaged (%s); disk_failure_policy ignore: skipping it",
                      t->dir, (unsigned long long)gens[i], ilion_strerror(rc));
            if (gens[i] + 1 > atomic_load(&e->next_gen)) atomic_store(&e->next_gen, gens[i] + 1);
            rc = 0;
        }
    }
    if (rc == 0) {
        /* Inputs named by a surviving compaction output, and data older than a truncation. */
        for (uint32_t i = 0; i < nopen; i++) {
            bool drop = sstable_stats(ssts[i])->commitlog_pos <= t->truncated_pos && t->truncated_pos;
            for (uint32_t j = 0; j < nopen && !drop; j++) {
                if (j == i) continue;
                const sst_stats *s = sstable_stats(ssts[j]);
                for (uint32_t k = 0; k < s->nreplaces; k++)
                    if (s->replaces[k] == sstable_generation(ssts[i])) drop = true;
            }
            if (drop) {
                LOG_INFO(MOD, "removing obsolete sstable %s", sstable_path(ssts[i]));
                sstable_mark_obsolete(ssts[i]);
            }
        }
        /* Decide for every table first, then release: an unref frees the table, and later
         * decisions still read the stats of every table that was opened. */
        bool *obsolete = calloc(nopen ? nopen : 1, sizeof *obsolete);
        if (!obsolete) rc = -ENOMEM;
        for (uint32_t i = 0; obsolete && i < nopen; i++) {
            if (ngens && sstable_generation(ssts[i]) + 1 > atomic_load(&e->next_gen))
                atomic_store(&e->next_gen, sstable_generation(ssts[i]) + 1);
            const sst_stats *s = sstable_stats(ssts[i]);
            for (uint32_t j = 0; j < nopen && !obsolete[i]; j++) {
                const sst_stats *o = sstable_stats(ssts[j]);
                for (uint32_t q = 0; q < o->nreplaces; q++)
                    if (j != i && o->replaces[q] == sstable_generation(ssts[i])) obsolete[i] = true;
            }
            if (t->truncated_pos && s->commitlog_pos <= t->truncated_pos) obsolete[i] = true;
        }
        if (obsolete) {
            /* Marked ones go away now (unlinked on unref). */
            uint32_t k = 0;
            for (uint32_t i = 0; i < nopen; i++) {
                if (obsolete[i]) sstable_unref(ssts[i]);
                else ssts[k++] = ssts[i];
            }
            free(obsolete);
            nopen = k;
            if (k != 0) file_fsync_dir(t->dir);
        }
    }
    if (rc) {
        for (uint32_t i = 0; i < nopen; i++) sstable_unref(ssts[i]);
        free(ssts);
        free(gens);
        return rc;
    }
    if (nopen > 1) qsort(ssts, nopen, sizeof *ssts, cmp_gen_desc);
    t->floor = t->truncated_pos;
    for (uint32_t i = 0; i < nopen; i++)
        if (sstable_stats(ssts[i])->commitlog_pos > t->floor) t->floor = sstable_stats(ssts[i])->commitlog_pos;
    view *v = view_new(1, nopen);
    memtable *m = memtable_new_sized(t->id, start_pos > t->floor ? start_pos : t->floor, e->opt.memtable_space / 2);
    if (!v || !m) {
        free(v);
        memtable_unref(m);
        for (uint32_t i = 0; i < nopen; i++) sstable_unref(ssts[i]);
        free(ssts);
        free(gens);
        return -ENOMEM;
    }
    v->mems[0] = m;
    for (uint32_t i = 0; i < nopen; i++) v->ssts[i] = ssts[i];
    t->view = v;
    t->active = m;
    free(ssts);
    free(gens);
    return 0;
}

/* ------------------------------------------------------------------ background work --- */

static void disk_failure(storage_engine *e, const char *what, int err) {
    LOG_ERROR(MOD, "%s failed: %s", what, ilion_strerror(err));
    switch (e->opt.disk_failure_policy) {
    case STORAGE_POLICY_DIE:
        LOG_ERROR(MOD, "disk_failure_policy die: exiting");
        abort();
    case STORAGE_POLICY_STOP:
        atomic_store(&e->failed, true);
        break;
    case STORAGE_POLICY_IGNORE:
        break;
    }
}

/* Freezes t's active memtable and queues it for flushing; 1 when something was frozen. */
static int table_freeze(table *t) {
    storage_engine *e = t->e;
    pthread_mutex_lock(&t->wlock);
    memtable *old = t->active;
    if (memtable_empty(old)) {
        pthread_mutex_unlock(&t->wlock);
        return 0;
    }
    uint64_t pos = e->cl ? commitlog_position(e->cl) : 0;
    LOG_DEBUG(MOD, "freezing memtable of table %016llx: %zu bytes (active %zu, flushing %zu)",
              (unsigned long long)t->id, memtable_bytes(old), atomic_load(&e->active_bytes),
              atomic_load(&e->frozen_bytes));
    memtable *m = memtable_new_sized(t->id, pos, e->opt.memtable_space / 2);
    flush_job *job = calloc(1, sizeof *job);
    if (!m || !job) {
        memtable_unref(m);
        free(job);
        pthread_mutex_unlock(&t->wlock);
        return -ENOMEM;
    }
    pthread_mutex_lock(&t->vlock);
    view *cur = t->view;
    view *v = view_new(cur->nmem + 1, cur->nsst);
    if (!v) {
        pthread_mutex_unlock(&t->vlock);
        pthread_mutex_unlock(&t->wlock);
        memtable_unref(m);
        free(job);
        return -ENOMEM;
    }
    v->mems[0] = m;
    for (uint32_t i = 0; i < cur->nmem; i++) {
        memtable_ref(cur->mems[i]);
        v->mems[i + 1] = cur->mems[i];
    }
    for (uint32_t i = 0; i < cur->nsst; i++) {
        sstable_ref(cur->ssts[i]);
        v->ssts[i] = cur->ssts[i];
    }
    view_install_locked(t, v);
    t->active = m;
    memtable_ref(old);
    job->t = t;
    job->m = old;
    job->freeze_pos = pos;
    job->epoch = t->epoch;
    pthread_mutex_unlock(&t->vlock);
    size_t b = memtable_bytes(old);
    atomic_fetch_sub(&e->active_bytes, b);
    atomic_fetch_add(&e->frozen_bytes, b);
    pthread_mutex_lock(&e->bg_lock);
    if (e->jobs_tail) e->jobs_tail->next = job;
    else e->jobs = job;
    e->jobs_tail = job;
    t->pending_flushes++;
    pthread_cond_broadcast(&e->bg_cond);
    pthread_mutex_unlock(&e->bg_lock);
    pthread_mutex_unlock(&t->wlock);
    return 1;
}

/* Oldest commit log position any memtable still needs; segments before it are recycled. */
static void discard_commitlog(storage_engine *e) {
    if (!e->cl) return;
    uint64_t need = commitlog_position(e->cl);
    pthread_rwlock_rdlock(&e->tlock);
    for (uint32_t i = 0; i < e->ntables; i++) {
        table *t = e->tables[i];
        pthread_mutex_lock(&t->wlock);
        pthread_mutex_lock(&t->vlock);
        view *v = t->view;
        for (uint32_t j = 0; j < v->nmem; j++) {
            if (memtable_empty(v->mems[j])) continue;
            uint64_t p = memtable_start_pos(v->mems[j]);
            if (p < need) need = p;
        }
        pthread_mutex_unlock(&t->vlock);
        pthread_mutex_unlock(&t->wlock);
    }
    pthread_rwlock_unlock(&e->tlock);
    commitlog_discard_before(e->cl, need);
}

static int write_memtable(table *t, memtable *m, uint64_t freeze_pos, sstable **out) {
    storage_engine *e = t->e;
    uint64_t gen = atomic_fetch_add(&e->next_gen, 1);
    sst_writer *w;
    int rc = sst_writer_open(t->dir, gen, t->id, &t->opt, memtable_partitions(m) + 1, &w);
    if (rc) return rc;
    memtable_iter it;
    memtable_iter_seek(&it, m, INT64_MIN, NULL, 0, true);
    st_arena a;
    arena_init(&a);
    st_partition *p;
    uint32_t n = 0;
    while ((rc = memtable_iter_next(&it, &a, &p)) == 1) {
        rc = sst_writer_add(w, p);
        if (rc) break;
        if (++n % 256 == 0) arena_free(&a);
    }
    arena_free(&a);
    if (rc < 0) {
        sst_writer_abort(w);
        return rc;
    }
    rc = sst_writer_finish(w, freeze_pos, NULL, 0);
    if (rc) return rc;
    rc = sstable_open(t->dir, gen, out);
    if (rc == 0) sstable_set_block_cache(*out, t->e->bcache);
    return rc;
}

static void run_flush(storage_engine *e, flush_job *job) {
    table *t = job->t;
    sstable *s = NULL;
    int rc = 0;
    if (atomic_load(&t->flush_failed)) return; /* stays in the view and the commit log */
    if (!atomic_load(&t->dropped)) rc = write_memtable(t, job->m, job->freeze_pos, &s);
    if (rc) {
        atomic_store(&t->flush_failed, true);
        char what[PATH_MAX + 96];
        snprintf(what, sizeof what, "flush of %s", t->dir);
        disk_failure(e, what, rc);
        /* The memtable stays in the view (readable) and its records in the commit log (the
         * discard point is computed from the view); no later flush of this table may run, as
         * it would move the replay floor past this data. */
        return;
    }
    pthread_mutex_lock(&t->vlock);
    if (s && t->epoch == job->epoch && !atomic_load(&t->dropped)) {
        view *cur = t->view;
        view *v = view_new(cur->nmem - 1, cur->nsst + 1);
        if (v) {
            uint32_t k = 0;
            for (uint32_t i = 0; i < cur->nmem; i++) {
                if (cur->mems[i] == job->m) continue;
                memtable_ref(cur->mems[i]);
                v->mems[k++] = cur->mems[i];
            }
            v->nmem = k;
            v->ssts[0] = s;
            for (uint32_t i = 0; i < cur->nsst; i++) {
                sstable_ref(cur->ssts[i]);
                v->ssts[i + 1] = cur->ssts[i];
            }
            view_install_locked(t, v);
            if (job->freeze_pos > t->floor) t->floor = job->freeze_pos;
            s = NULL;
        }
    }
    pthread_mutex_unlock(&t->vlock);
    if (s) {
        sstable_mark_obsolete(s);
        sstable_unref(s);
    }
    discard_commitlog(e);
}

/* Size-tiered selection (Cassandra's defaults: buckets of similar size within 0.5–1.5× the
 * bucket average; files under 50 MiB share one bucket). Fills out[] (refs taken). */
static uint32_t pick_compaction(table *t, view *v, sstable **out) {
    uint32_t n = v->nsst;
    uint32_t minth = t->opt.compaction_min_threshold < 2 ? 2 : t->opt.compaction_min_threshold;
    uint32_t maxth = t->opt.compaction_max_threshold;
    if (maxth < minth) maxth = minth;
    if (maxth > MAX_COMPACTION_INPUTS) maxth = MAX_COMPACTION_INPUTS;
    if (n < minth) return 0;
    sstable **s = malloc(sizeof *s * n);
    if (!s) return 0;
    memcpy(s, v->ssts, sizeof *s * n);
    /* Sort by size ascending (insertion sort: n is small). */
    for (uint32_t i = 1; i < n; i++) {
        sstable *x = s[i];
        uint32_t j = i;
        while (j > 0 && sstable_file_bytes(s[j - 1]) > sstable_file_bytes(x)) {
            s[j] = s[j - 1];
            j--;
        }
        s[j] = x;
    }
    const uint64_t small = 50ull << 20;
    uint32_t best_start = 0, best_len = 0;
    uint32_t start = 0;
    double sum = 0;
    for (uint32_t i = 0; i <= n; i++) {
        bool fits = false;
        if (i < n) {
            double sz = (double)sstable_file_bytes(s[i]);
            double avg = i > start ? sum / (i - start) : sz;
            fits = i == start || (sz >= avg * 0.5 && sz <= avg * 1.5) || (sz < small && avg < small);
            if (fits) {
                sum += sz;
                continue;
            }
        }
        uint32_t len = i - start;
        if (len >= minth && best_len == 0) {
            best_start = start;
            best_len = len;
        }
        if (i < n) {
            start = i;
            sum = (double)sstable_file_bytes(s[i]);
        }
    }
    if (best_len > maxth) best_len = maxth;
    for (uint32_t i = 0; i < best_len; i++) {
        sstable_ref(s[best_start + i]);
        out[i] = s[best_start + i];
    }
    free(s);
    return best_len;
}

/* Removes what a finished merge no longer needs: shadowed data, and — when purge allows —
 * tombstones older than gc_before; expired cells become tombstones. Works in place on the
 * merged copy (arrays in arena a). Returns NULL when nothing is left. */
typedef struct purge_ctx {
    int32_t now_s;
    int32_t gc_before;
    int64_t max_purgeable_ts;  /* tombstones with ts below this may go */
} purge_ctx;

static bool purgeable(const purge_ctx *c, int64_t ts, int32_t local_time) {
    return local_time < c->gc_before && ts < c->max_purgeable_ts;
}

static st_partition *partition_purge(st_partition *p, const purge_ctx *c) {
    if (!p) return NULL;
    st_deletion pdel = p->del;
    uint32_t k = 0;
    for (uint32_t i = 0; i < p->nrows; i++) {
        st_row r = p->rows[i];
        if (r.del.ts != ST_NO_TIMESTAMP && r.del.ts <= pdel.ts) r.del = (st_deletion){ST_NO_TIMESTAMP, 0};
        st_deletion eff = st_deletion_max(pdel, r.del);
        if (r.marker.ts != ST_NO_TIMESTAMP) {
            if (r.marker.ts <= eff.ts) r.marker = (st_liveness){ST_NO_TIMESTAMP, 0, ST_NO_EXPIRY};
            else if (r.marker.expiry != ST_NO_EXPIRY && c->now_s >= r.marker.expiry &&
                     purgeable(c, r.marker.ts, r.marker.expiry - r.marker.ttl))
                r.marker = (st_liveness){ST_NO_TIMESTAMP, 0, ST_NO_EXPIRY};
        }
        uint32_t nc = 0;
        for (uint32_t j = 0; j < r.ncells; j++) {
            st_cell cell = r.cells[j];
            if (cell.ts <= eff.ts) continue;
            if (!(cell.flags & ST_CELL_TOMBSTONE) && cell.expiry != ST_NO_EXPIRY && c->now_s >= cell.expiry) {
                /* Expired: a tombstone from the time it was written (Cassandra's rule). */
                int32_t lt = cell.expiry - cell.ttl;
                cell.flags = ST_CELL_TOMBSTONE;
                cell.expiry = lt;
                cell.ttl = 0;
                cell.value = NULL;
                cell.len = 0;
            }
            if ((cell.flags & ST_CELL_TOMBSTONE) && purgeable(c, cell.ts, cell.expiry)) continue;
            r.cells[nc++] = cell;
        }
        r.ncells = nc;
        if (r.del.ts != ST_NO_TIMESTAMP && purgeable(c, r.del.ts, r.del.local_time))
            r.del = (st_deletion){ST_NO_TIMESTAMP, 0};
        if (r.ncells == 0 && r.marker.ts == ST_NO_TIMESTAMP && r.del.ts == ST_NO_TIMESTAMP) continue;
        p->rows[k++] = r;
    }
    p->nrows = k;
    if (p->del.ts != ST_NO_TIMESTAMP && purgeable(c, p->del.ts, p->del.local_time))
        p->del = (st_deletion){ST_NO_TIMESTAMP, 0};
    if (p->nrows == 0 && p->del.ts == ST_NO_TIMESTAMP) return NULL;
    return p;
}

/* Copies the merged partition's row and cell arrays so purge can edit them in place. */
static st_partition *own_arrays(st_arena *a, const st_partition *src) {
    st_partition *p = arena_alloc(a, sizeof *p);
    if (!p) return NULL;
    *p = *src;
    p->rows_cap = 0;
    if (!src->nrows) return p;
    p->rows = arena_alloc(a, sizeof(st_row) * src->nrows);
    if (!p->rows) return NULL;
    for (uint32_t i = 0; i < src->nrows; i++) {
        p->rows[i] = src->rows[i];
        p->rows[i].cells_cap = 0;
        if (src->rows[i].ncells) {
            p->rows[i].cells = arena_dup(a, src->rows[i].cells, sizeof(st_cell) * src->rows[i].ncells);
            if (!p->rows[i].cells) return NULL;
        }
    }
    return p;
}

/* Merge iterator over sources (memtables and SSTables) in (token, key) order. */
typedef struct msrc {
    memtable_iter mi;
    sst_iter *si;
    st_arena ar;
    st_partition *cur;
    bool done;
} msrc;

static int msrc_advance(msrc *s) {
    arena_free(&s->ar);
    s->cur = NULL;
    if (s->done) return 0;
    int rc = s->si ? sst_iter_next(s->si, &s->ar, &s->cur) : memtable_iter_next(&s->mi, &s->ar, &s->cur);
    if (rc <= 0) {
        s->done = true;
        s->cur = NULL;
    }
    return rc < 0 ? rc : 0;
}

/* The next merged partition (arena a) from srcs; *out NULL at the end. Consumed sources are
 * marked in used[] and must be advanced by the caller once the result is no longer needed. */
static int merge_next(msrc *srcs, uint32_t n, bool *used, st_arena *a, st_partition **out) {
    *out = NULL;
    st_partition *min = NULL;
    for (uint32_t i = 0; i < n; i++) {
        used[i] = false;
        if (!srcs[i].cur) continue;
        if (!min || st_key_compare(srcs[i].cur->token, srcs[i].cur->pk, srcs[i].cur->pklen, min->token,
                                   min->pk, min->pklen) < 0)
            min = srcs[i].cur;
    }
    if (!min) return 0;
    st_partition *acc = NULL;
    for (uint32_t i = 0; i < n; i++) {
        st_partition *c = srcs[i].cur;
        if (!c || st_key_compare(c->token, c->pk, c->pklen, min->token, min->pk, min->pklen) != 0) continue;
        used[i] = true;
        acc = acc ? st_partition_merge(a, acc, c) : c;
        if (!acc) return -ENOMEM;
    }
    *out = acc;
    return 0;
}

static int64_t max_purgeable_for(table *t, view *v, sstable **inputs, uint32_t nin, const st_partition *p) {
    int64_t m = INT64_MAX;
    sst_keyhash h = sst_hash_key(p->pk, p->pklen);
    for (uint32_t i = 0; i < v->nsst; i++) {
        bool in = false;
        for (uint32_t j = 0; j < nin; j++)
            if (inputs[j] == v->ssts[i]) in = true;
        if (in) continue;
        if (sstable_may_contain(v->ssts[i], p->token, h)) {
            int64_t mt = sstable_stats(v->ssts[i])->min_ts;
            if (mt < m) m = mt;
        }
    }
    for (uint32_t i = 0; i < v->nmem; i++) {
        int64_t mt = memtable_min_timestamp(v->mems[i]);
        if (mt < m) m = mt;
    }
    (void)t;
    return m;
}

/* Merges inputs into one new SSTable and swaps it in. */
static int run_compaction(table *t, sstable **inputs, uint32_t nin) {
    storage_engine *e = t->e;
    uint64_t epoch;
    pthread_mutex_lock(&t->vlock);
    epoch = t->epoch;
    pthread_mutex_unlock(&t->vlock);
    view *v = view_acquire(t);
    uint64_t expected = 0, clpos = 0, replaces[MAX_COMPACTION_INPUTS];
    for (uint32_t i = 0; i < nin; i++) {
        expected += sstable_stats(inputs[i])->partitions;
        if (sstable_stats(inputs[i])->commitlog_pos > clpos) clpos = sstable_stats(inputs[i])->commitlog_pos;
        replaces[i] = sstable_generation(inputs[i]);
    }
    uint64_t gen = atomic_fetch_add(&e->next_gen, 1);
    sst_writer *w;
    int rc = sst_writer_open(t->dir, gen, t->id, &t->opt, expected + 1, &w);
    if (rc) {
        view_unref(v);
        return rc;
    }
    msrc *srcs = calloc(nin, sizeof *srcs);
    bool *used = calloc(nin, sizeof *used);
    if (!srcs || !used) rc = -ENOMEM;
    for (uint32_t i = 0; rc == 0 && i < nin; i++) {
        rc = sst_iter_new(inputs[i], INT64_MIN, NULL, 0, true, &srcs[i].si);
        if (rc == 0) rc = msrc_advance(&srcs[i]);
    }
    purge_ctx pc;
    pc.now_s = clock_now_s();
    pc.gc_before = pc.now_s - t->opt.gc_grace_seconds;
    if (t->opt.gc_grace_seconds < 0 || pc.gc_before > pc.now_s) pc.gc_before = INT32_MIN;
    st_arena a;
    arena_init(&a);
    while (rc == 0) {
        st_partition *p;
        if (atomic_load_explicit(&e->stop_flag, memory_order_relaxed)) {
            rc = ILION_ECLOSED; /* shutting down: the inputs stay, nothing is lost */
            break;
        }
        rc = merge_next(srcs, nin, used, &a, &p);
        if (rc || !p) break;
        p = own_arrays(&a, p);
        if (!p) {
            rc = -ENOMEM;
            break;
        }
        pc.max_purgeable_ts = max_purgeable_for(t, v, inputs, nin, p);
        p = partition_purge(p, &pc);
        if (p) rc = sst_writer_add(w, p);
        for (uint32_t i = 0; rc == 0 && i < nin; i++)
            if (used[i]) rc = msrc_advance(&srcs[i]);
        arena_free(&a);
    }
    arena_free(&a);
    for (uint32_t i = 0; srcs && i < nin; i++) {
        arena_free(&srcs[i].ar);
        sst_iter_free(srcs[i].si);
    }
    free(srcs);
    free(used);
    view_unref(v);
    if (rc) {
        sst_writer_abort(w);
        return rc;
    }
    rc = sst_writer_finish(w, clpos, replaces, nin);
    if (rc) return rc;
    sstable *out = NULL;
    rc = sstable_open(t->dir, gen, &out);
    if (rc) return rc;
    sstable_set_block_cache(out, t->e->bcache);
    bool installed = false;
    pthread_mutex_lock(&t->vlock);
    if (t->epoch == epoch && !atomic_load(&t->dropped)) {
        view *cur = t->view;
        view *nv = view_new(cur->nmem, cur->nsst + 1);
        if (nv) {
            for (uint32_t i = 0; i < cur->nmem; i++) {
                memtable_ref(cur->mems[i]);
                nv->mems[i] = cur->mems[i];
            }
            /* Installed even when empty (everything purged): its replaces list is what keeps
             * the inputs from coming back if the process dies before they are unlinked. */
            uint32_t k = 0;
            nv->ssts[k++] = out;
            for (uint32_t i = 0; i < cur->nsst; i++) {
                bool in = false;
                for (uint32_t j = 0; j < nin; j++)
                    if (inputs[j] == cur->ssts[i]) in = true;
                if (in) continue;
                sstable_ref(cur->ssts[i]);
                nv->ssts[k++] = cur->ssts[i];
            }
            nv->nsst = k;
            if (k > 1) qsort(nv->ssts, k, sizeof *nv->ssts, cmp_gen_desc);
            view_install_locked(t, nv);
            installed = true;
        }
    }
    pthread_mutex_unlock(&t->vlock);
    if (!installed) {
        sstable_mark_obsolete(out);
        sstable_unref(out);
        return 0;
    }
    for (uint32_t i = 0; i < nin; i++) sstable_mark_obsolete(inputs[i]);
    atomic_fetch_add(&t->compactions_done, 1);
    return 0;
}

static void compact_table_background(table *t) {
    sstable *in[MAX_COMPACTION_INPUTS];
    for (;;) {
        if (atomic_load(&t->dropped) || atomic_load(&t->e->failed)) return;
        pthread_mutex_lock(&t->e->bg_lock);
        bool stop = t->e->stopping;
        pthread_mutex_unlock(&t->e->bg_lock);
        if (stop) return;
        view *v = view_acquire(t);
        uint32_t n = pick_compaction(t, v, in);
        view_unref(v);
        if (n == 0) return;
        int rc = run_compaction(t, in, n);
        for (uint32_t i = 0; i < n; i++) sstable_unref(in[i]);
        if (rc == ILION_ECLOSED) return;
        if (rc) {
            char what[PATH_MAX + 96];
            snprintf(what, sizeof what, "compaction in %s", t->dir);
            disk_failure(t->e, what, rc);
            return;
        }
    }
}

typedef struct worker_arg {
    storage_engine *e;
    bool compactor;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    storage_engine *e = wa->e;
    bool compactor = wa->compactor;
    free(wa);
    pthread_mutex_lock(&e->bg_lock);
    while (!e->stopping) {
        if (!compactor) {
            flush_job *prev = NULL, *j = e->jobs;
            while (j && j->t->flushing) {
                prev = j;
                j = j->next;
            }
            if (!j) {
                pthread_cond_wait(&e->bg_cond, &e->bg_lock);
                continue;
            }
            if (prev) prev->next = j->next;
            else e->jobs = j->next;
            if (e->jobs_tail == j) e->jobs_tail = prev;
            j->t->flushing = true;
            pthread_mutex_unlock(&e->bg_lock);
            size_t bytes = memtable_bytes(j->m);
            run_flush(e, j);
            atomic_fetch_sub(&e->frozen_bytes, bytes);
            memtable_unref(j->m);
            pthread_mutex_lock(&e->bg_lock);
            j->t->flushing = false;
            j->t->pending_flushes--;
            if (!j->t->want_compact) {
                if (e->ncq == e->capcq) {
                    uint32_t cap = e->capcq ? e->capcq * 2 : 8;
                    table **nq = realloc(e->cq, sizeof *nq * cap);
                    if (nq) {
                        e->cq = nq;
                        e->capcq = cap;
                    }
                }
                if (e->ncq < e->capcq) {
                    e->cq[e->ncq++] = j->t;
                    j->t->want_compact = true;
                }
            }
            free(j);
            pthread_cond_broadcast(&e->bg_cond);
            pthread_cond_broadcast(&e->done_cond);
        } else {
            table *t = NULL;
            for (uint32_t i = 0; i < e->ncq; i++)
                if (!e->cq[i]->compacting) {
                    t = e->cq[i];
                    memmove(&e->cq[i], &e->cq[i + 1], sizeof *e->cq * (e->ncq - i - 1));
                    e->ncq--;
                    break;
                }
            if (!t) {
                pthread_cond_wait(&e->bg_cond, &e->bg_lock);
                continue;
            }
            t->want_compact = false;
            t->compacting = true;
            pthread_mutex_unlock(&e->bg_lock);
            compact_table_background(t);
            pthread_mutex_lock(&e->bg_lock);
            t->compacting = false;
            pthread_cond_broadcast(&e->done_cond);
        }
    }
    pthread_mutex_unlock(&e->bg_lock);
    return NULL;
}

/* ------------------------------------------------------------------ open and close --- */

static int replay_cb(void *arg, const uint8_t *payload, size_t len, uint64_t pos) {
    storage_engine *e = arg;
    if (len < 8) {
        LOG_ERROR(MOD, "commit log record at position %llu too short", (unsigned long long)pos);
        return ILION_ECORRUPT;
    }
    uint64_t id = be64_get(payload);
    table *t = table_find(e, id);
    if (!t || pos <= t->floor) return 0;
    st_arena a;
    arena_init(&a);
    st_partition *p;
    int rc = st_partition_decode(&a, payload + 8, len - 8, &p);
    if (rc) {
        LOG_ERROR(MOD, "commit log record at position %llu does not decode: %s",
                  (unsigned long long)pos, ilion_strerror(rc));
        arena_free(&a);
        return ILION_ECORRUPT;
    }
    size_t before = memtable_bytes(t->active);
    rc = memtable_apply(t->active, p);
    atomic_fetch_add(&e->active_bytes, memtable_bytes(t->active) - before);
    arena_free(&a);
    return rc;
}

static void engine_free(storage_engine *e) {
    for (uint32_t i = 0; i < e->ntables; i++) table_free(e->tables[i]);
    for (uint32_t i = 0; i < e->ngrave; i++) table_free(e->graveyard[i]);
    free(e->tables);
    free(e->graveyard);
    while (e->jobs) {
        flush_job *j = e->jobs;
        e->jobs = j->next;
        memtable_unref(j->m);
        free(j);
    }
    free(e->threads);
    free(e->cq);
    sst_block_cache_unref(e->bcache);
    pthread_rwlock_destroy(&e->tlock);
    pthread_mutex_destroy(&e->bg_lock);
    pthread_mutex_destroy(&e->trigger_lock);
    pthread_cond_destroy(&e->bg_cond);
    pthread_cond_destroy(&e->done_cond);
    free(e);
}

static void stop_threads(storage_engine *e) {
    pthread_mutex_lock(&e->bg_lock);
    e->stopping = true;
    atomic_store(&e->stop_flag, true);
    pthread_cond_broadcast(&e->bg_cond);
    pthread_cond_broadcast(&e->done_cond);
    pthread_mutex_unlock(&e->bg_lock);
    for (uint32_t i = 0; i < e->nthreads; i++) pthread_join(e->threads[i], NULL);
    e->nthreads = 0;
}

int storage_open(const storage_options *o, storage_engine **out) {
    storage_engine *e = calloc(1, sizeof *e);
    if (!e) return -ENOMEM;
    e->opt = *o;
    if (o->block_cache_bytes && sst_block_cache_new(o->block_cache_bytes, &e->bcache) != 0) {
        free(e);
        return -ENOMEM;
    }
    snprintf(e->data_dir, sizeof e->data_dir, "%s", o->data_dir ? o->data_dir : "data");
    snprintf(e->cl_dir, sizeof e->cl_dir, "%s", o->commitlog_dir ? o->commitlog_dir : "commitlog");
    e->opt.data_dir = e->data_dir;
    e->opt.commitlog_dir = e->cl_dir;
    if (!e->opt.memtable_space) e->opt.memtable_space = 512ull << 20;
    if (!e->opt.commitlog_total_space) e->opt.commitlog_total_space = 8ull << 30;
    if (!e->opt.flush_threads) e->opt.flush_threads = 1;
    if (!e->opt.compaction_threads) e->opt.compaction_threads = 1;
    pthread_rwlock_init(&e->tlock, NULL);
    pthread_mutex_init(&e->bg_lock, NULL);
    pthread_mutex_init(&e->trigger_lock, NULL);
    pthread_cond_init(&e->bg_cond, NULL);
    pthread_cond_init(&e->done_cond, NULL);
    atomic_init(&e->next_gen, 1);
    int rc = file_mkdirs(e->data_dir);
    if (rc) {
        engine_free(e);
        return rc;
    }
    /* Tables on disk. */
    DIR *d = opendir(e->data_dir);
    if (!d) {
        rc = -errno;
        engine_free(e);
        return rc;
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strlen(de->d_name) != 16) continue;
        char *end;
        unsigned long long id = strtoull(de->d_name, &end, 16);
        if (*end) continue;
        table *t = table_alloc(e, id);
        if (!t) {
            rc = -ENOMEM;
            break;
        }
        rc = meta_read(t);
        if (rc == -ENOENT) {
            /* A create or drop that did not finish: no table here. */
            LOG_INFO(MOD, "removing incomplete table directory %s", t->dir);
            file_remove_dir(t->dir);
            table_free(t);
            rc = 0;
            continue;
        }
        if (rc == 0) rc = table_load(t, 0);
        if (rc == 0) rc = table_add(e, t);
        if (rc) {
            LOG_ERROR(MOD, "cannot open table %s: %s", t->dir, ilion_strerror(rc));
            t->view ? table_free(t) : (void)(pthread_mutex_destroy(&t->wlock), pthread_mutex_destroy(&t->vlock), free(t));
        }
    }
    closedir(d);
    if (rc) {
        engine_free(e);
        return rc;
    }
    uint32_t nth = e->opt.flush_threads + e->opt.compaction_threads;
    e->threads = calloc(nth, sizeof *e->threads);
    if (!e->threads) {
        engine_free(e);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < nth; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) break;
        wa->e = e;
        wa->compactor = i >= e->opt.flush_threads;
        if (pthread_create(&e->threads[e->nthreads], NULL, worker_main, wa) != 0) {
            free(wa);
            break;
        }
        e->nthreads++;
    }
    if (e->nthreads != nth) {
        stop_threads(e);
        engine_free(e);
        return -EAGAIN;
    }
    uint64_t replay_from = UINT64_MAX;
    for (uint32_t i = 0; i < e->ntables; i++)
        if (e->tables[i]->floor < replay_from) replay_from = e->tables[i]->floor;
    if (replay_from == UINT64_MAX) replay_from = 0;
    commitlog_options co;
    memset(&co, 0, sizeof co);
    co.dir = e->cl_dir;
    co.sync_mode = o->sync_mode;
    co.sync_period_ms = o->sync_period_ms;
    co.group_window_ms = o->group_window_ms;
    co.segment_size = o->segment_size;
    rc = commitlog_open(&co, replay_from, replay_cb, e, &e->cl);
    if (rc) {
        LOG_ERROR(MOD, "commit log replay failed: %s", ilion_strerror(rc));
        stop_threads(e);
        engine_free(e);
        return rc;
    }
    /* Replayed memtables keep the records they came from until flushed; their start is the
     * table's floor, which they were created with. */
    e->opened = true;
    *out = e;
    return 0;
}

void storage_close(storage_engine *e) {
    if (!e) return;
    stop_threads(e);
    if (e->cl) commitlog_close(e->cl);
    engine_free(e);
}

/* ------------------------------------------------------------------------- tables --- */

int storage_table_create(storage_engine *e, uint64_t table_id, const storage_table_options *o) {
    if (table_find(e, table_id)) return 0;
    table *t = table_alloc(e, table_id);
    if (!t) return -ENOMEM;
    if (o) t->opt = *o;
    if (t->opt.compression > STORAGE_COMPRESS_NONE) t->opt.compression = STORAGE_COMPRESS_LZ4;
    /* Older commit log records with this id (a dropped table) must not come back. */
    t->truncated_pos = commitlog_position(e->cl);
    int rc = file_mkdirs(t->dir);
    if (rc == 0) rc = meta_write(t);
    if (rc == 0) rc = file_fsync_dir(e->data_dir);
    if (rc == 0) rc = table_load(t, t->truncated_pos);
    if (rc == 0) rc = table_add(e, t);
    if (rc) {
        LOG_ERROR(MOD, "creating table %s failed: %s", t->dir, ilion_strerror(rc));
        if (t->view) table_free(t);
        else free(t);
        return rc;
    }
    return 0;
}

bool storage_table_exists(storage_engine *e, uint64_t table_id) { return table_find(e, table_id) != NULL; }

/* Empties t: new memtable, no SSTables, floor moved to now. Holds wlock. */
static int table_clear(table *t, bool persist) {
    storage_engine *e = t->e;
    pthread_mutex_lock(&t->wlock);
    uint64_t pos = commitlog_position(e->cl);
    memtable *m = memtable_new_sized(t->id, pos, e->opt.memtable_space / 2);
    view *v = view_new(1, 0);
    if (!m || !v) {
        memtable_unref(m);
        free(v);
        pthread_mutex_unlock(&t->wlock);
        return -ENOMEM;
    }
    uint64_t old_trunc = t->truncated_pos;
    t->truncated_pos = pos;
    int rc = persist ? meta_write(t) : 0;
    if (rc) {
        t->truncated_pos = old_trunc;
        memtable_unref(m);
        free(v);
        pthread_mutex_unlock(&t->wlock);
        return rc;
    }
    v->mems[0] = m;
    pthread_mutex_lock(&t->vlock);
    view *old = t->view;
    size_t ab = memtable_bytes(t->active);
    t->view = v;
    t->active = m;
    t->epoch++;
    if (pos > t->floor) t->floor = pos;
    pthread_mutex_unlock(&t->vlock);
    pthread_mutex_unlock(&t->wlock);
    atomic_fetch_sub(&e->active_bytes, ab);
    for (uint32_t i = 0; i < old->nsst; i++) {
        unlink(sstable_path(old->ssts[i]));
        sstable_mark_obsolete(old->ssts[i]);
    }
    if (persist) file_fsync_dir(t->dir);
    view_unref(old);
    return 0;
}

/* Waits until t has no flush or compaction running or queued. */
static void table_quiesce(table *t) {
    storage_engine *e = t->e;
    pthread_mutex_lock(&e->bg_lock);
    while (t->pending_flushes || t->compacting) pthread_cond_wait(&e->done_cond, &e->bg_lock);
    pthread_mutex_unlock(&e->bg_lock);
}

int storage_table_truncate(storage_engine *e, uint64_t table_id) {
    table *t = table_find(e, table_id);
    if (!t) return ILION_ENOTFOUND;
    table_quiesce(t);
    int rc = table_clear(t, true);
    if (rc == 0) discard_commitlog(e);
    return rc;
}

int storage_table_drop(storage_engine *e, uint64_t table_id) {
    table *t = table_find(e, table_id);
    if (!t) return ILION_ENOTFOUND;
    table_quiesce(t);
    atomic_store(&t->dropped, true);
    /* Metadata first, durably: without it the directory is not a table any more, so a crash
     * from here on cannot bring the table back. */
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", t->dir, TABLE_META);
    if (unlink(path) != 0 && errno != ENOENT) {
        int err = -errno;
        atomic_store(&t->dropped, false);
        return err;
    }
    file_fsync_dir(t->dir);
    int rc = table_clear(t, false);
    if (rc) return rc;
    pthread_rwlock_wrlock(&e->tlock);
    for (uint32_t i = 0; i < e->ntables; i++)
        if (e->tables[i] == t) {
            e->tables[i] = e->tables[--e->ntables];
            break;
        }
    table **g = realloc(e->graveyard, sizeof *g * (e->ngrave + 1));
    if (g) {
        e->graveyard = g;
        e->graveyard[e->ngrave++] = t;
    }
    pthread_rwlock_unlock(&e->tlock);
    rc = file_remove_dir(t->dir);
    file_fsync_dir(e->data_dir);
    discard_commitlog(e);
    if (!g) return -ENOMEM;
    return rc == -ENOENT ? 0 : rc;
}

/* --------------------------------------------------------------------- write path --- */

static pthread_key_t enc_key;
static pthread_once_t enc_once = PTHREAD_ONCE_INIT;
static void enc_destroy(void *p) {
    buf_free(p);
    free(p);
}
static void enc_init(void) { pthread_key_create(&enc_key, enc_destroy); }

static buf *enc_buf(void) {
    pthread_once(&enc_once, enc_init);
    buf *b = pthread_getspecific(enc_key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b) return NULL;
        pthread_setspecific(enc_key, b);
    }
    buf_reset(b);
    b->oom = false;
    return b;
}

/* Keeps memtable memory under memtable_space: freezes the largest active memtable when the
 * active ones pass half the space (so one can fill while another flushes), and makes
 * writers wait while active + flushing memtables exceed the whole space. */
static void maybe_flush(storage_engine *e) {
    size_t space = e->opt.memtable_space;
    size_t act = atomic_load_explicit(&e->active_bytes, memory_order_relaxed);
    bool cl_full = false;
    if ((atomic_fetch_add_explicit(&e->apply_count, 1, memory_order_relaxed) & 1023) == 0)
        cl_full = commitlog_active_bytes(e->cl) > e->opt.commitlog_total_space;
    if (act > space / 2 || cl_full) {
        if (pthread_mutex_trylock(&e->trigger_lock) == 0) {
            act = atomic_load(&e->active_bytes);
            if (cl_full) {
                pthread_rwlock_rdlock(&e->tlock);
                uint32_t n = e->ntables;
                table **ts = malloc(sizeof *ts * (n ? n : 1));
                if (ts) memcpy(ts, e->tables, sizeof *ts * n);
                pthread_rwlock_unlock(&e->tlock);
                for (uint32_t i = 0; ts && i < n; i++) table_freeze(ts[i]);
                free(ts);
            } else if (act > space / 2) {
                table *big = NULL;
                size_t bb = 0;
                pthread_rwlock_rdlock(&e->tlock);
                for (uint32_t i = 0; i < e->ntables; i++) {
                    size_t b = memtable_bytes(e->tables[i]->active);
                    if (b > bb) {
                        bb = b;
                        big = e->tables[i];
                    }
                }
                pthread_rwlock_unlock(&e->tlock);
                if (big) table_freeze(big);
            }
            pthread_mutex_unlock(&e->trigger_lock);
        }
    }
    if (atomic_load_explicit(&e->active_bytes, memory_order_relaxed) +
            atomic_load_explicit(&e->frozen_bytes, memory_order_relaxed) > space &&
        atomic_load_explicit(&e->frozen_bytes, memory_order_relaxed) > 0) {
        pthread_mutex_lock(&e->bg_lock);
        while (!e->stopping &&
               atomic_load(&e->active_bytes) + atomic_load(&e->frozen_bytes) > space &&
               atomic_load(&e->frozen_bytes) > 0)
            pthread_cond_wait(&e->done_cond, &e->bg_lock);
        pthread_mutex_unlock(&e->bg_lock);
    }
}

int storage_apply(storage_engine *e, const st_partition *m, uint64_t *sync_pos) {
    if (atomic_load_explicit(&e->failed, memory_order_relaxed)) return ILION_ECLOSED;
    table *t = table_find(e, m->table_id);
    if (!t) return ILION_ENOTFOUND;
    buf *b = enc_buf();
    if (!b) return -ENOMEM;
    buf_u64(b, m->table_id);
    st_partition_encode(m, b);
    if (b->oom) return -ENOMEM;
    uint64_t pos;
    pthread_mutex_lock(&t->wlock);
    if (atomic_load(&t->dropped)) {
        pthread_mutex_unlock(&t->wlock);
        return ILION_ENOTFOUND;
    }
    int rc = commitlog_append(e->cl, b->data, b->len, &pos);
    if (rc) {
        pthread_mutex_unlock(&t->wlock);
        if (rc == ILION_ESYNCFAILED && e->opt.commit_failure_policy == STORAGE_POLICY_DIE) {
            LOG_ERROR(MOD, "commit log failed and commit_failure_policy is die: exiting");
            abort();
        }
        return rc;
    }
    memtable *mt = t->active;
    size_t before = memtable_bytes(mt);
    rc = memtable_apply(mt, m);
    size_t after = memtable_bytes(mt);
    pthread_mutex_unlock(&t->wlock);
    atomic_fetch_add_explicit(&e->active_bytes, after - before, memory_order_relaxed);
    if (rc) return rc;
    if (sync_pos) *sync_pos = pos;
    maybe_flush(e);
    return 0;
}

bool storage_is_synced(storage_engine *e, uint64_t pos) { return commitlog_is_synced(e->cl, pos); }
int storage_wait_synced(storage_engine *e, uint64_t pos) { return commitlog_wait(e->cl, pos); }
void storage_set_sync_callback(storage_engine *e, storage_sync_cb cb, void *arg) {
    commitlog_set_sync_callback(e->cl, cb, arg);
}

/* ---------------------------------------------------------------------- read path --- */

/* Applies the slice's limit to a purged partition (in place): the first `limit` live rows, or
 * the last ones when reversed. Rows stay in ascending order either way (the st_partition
 * invariant the encoding checks); tombstoned rows between them are kept. */
static st_partition *apply_slice(st_arena *a, st_partition *p, const storage_slice *slice, int32_t now_s) {
    (void)a;
    if (!p || !slice || !slice->limit) return p;
    uint32_t n = p->nrows, live = 0;
    if (!slice->reversed) {
        for (uint32_t i = 0; i < n; i++)
            if (st_row_live(&p->rows[i], &p->del, now_s) && ++live == slice->limit) {
                p->nrows = i + 1;
                break;
            }
    } else {
        for (uint32_t i = n; i-- > 0;)
            if (st_row_live(&p->rows[i], &p->del, now_s) && ++live == slice->limit) {
                p->rows += i;
                p->nrows -= i;
                break;
            }
    }
    p->rows_cap = 0;
    return p;
}

int storage_read(storage_engine *e, uint64_t table_id, const void *pk, uint32_t pklen,
                 const storage_slice *slice, int32_t now_s, st_arena *a, st_partition **out) {
    *out = NULL;
    table *t = table_find(e, table_id);
    if (!t) return ILION_ENOTFOUND;
    uint64_t h[2];
    murmur3_x64_128(pk, pklen, 0, h);
    int64_t token = (int64_t)h[0] == INT64_MIN ? INT64_MAX : (int64_t)h[0];
    sst_keyhash kh = {h[0], h[1]};
    view *v = view_acquire(t);
    st_partition *acc = NULL;
    int rc = 0;
    for (uint32_t i = 0; i < v->nmem && rc == 0; i++) {
        st_partition *p;
        rc = memtable_get(v->mems[i], token, pk, pklen, slice, a, &p);
        if (rc == 0 && p) {
            /* Memtable values stay valid only while the view is held: copy them out. */
            p = st_partition_copy(a, p);
            if (!p) rc = -ENOMEM;
            else acc = acc ? st_partition_merge(a, acc, p) : p;
            if (!acc) rc = -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < v->nsst && rc == 0; i++) {
        if (!sstable_may_contain(v->ssts[i], token, kh)) {
            atomic_fetch_add_explicit(&t->bloom_negatives, 1, memory_order_relaxed);
            continue;
        }
        st_partition *p;
        rc = sstable_get(v->ssts[i], token, pk, pklen, slice, a, &p);
        if (rc == 0 && p) {
            acc = acc ? st_partition_merge(a, acc, p) : p;
            if (!acc) rc = -ENOMEM;
        }
    }
    view_unref(v);
    if (rc) return rc;
    if (!acc) return 0;
    acc = own_arrays(a, acc);
    if (!acc) return -ENOMEM;
    purge_ctx pc = {now_s, now_s - t->opt.gc_grace_seconds, INT64_MAX};
    if (t->opt.gc_grace_seconds < 0 || pc.gc_before > now_s) pc.gc_before = INT32_MIN;
    acc = partition_purge(acc, &pc);
    if (acc) {
        acc->table_id = table_id;
        acc = apply_slice(a, acc, slice, now_s);
        if (!acc) return -ENOMEM;
    }
    *out = acc;
    return 0;
}

int storage_scan(storage_engine *e, uint64_t table_id, int64_t start_token, const void *start_pk,
                 uint32_t start_pklen, int64_t end_token, uint32_t max_partitions,
                 int32_t now_s, storage_scan_cb cb, void *arg) {
    table *t = table_find(e, table_id);
    if (!t) return ILION_ENOTFOUND;
    view *v = view_acquire(t);
    uint32_t n = v->nmem + v->nsst;
    msrc *srcs = calloc(n ? n : 1, sizeof *srcs);
    bool *used = calloc(n ? n : 1, sizeof *used);
    int rc = (!srcs || !used) ? -ENOMEM : 0;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        if (i < v->nmem) {
            memtable_iter_seek(&srcs[i].mi, v->mems[i], start_token, start_pk, start_pklen, false);
        } else {
            rc = sst_iter_new(v->ssts[i - v->nmem], start_token, start_pk, start_pklen, false, &srcs[i].si);
        }
        if (rc == 0) rc = msrc_advance(&srcs[i]);
    }
    purge_ctx pc = {now_s, now_s - t->opt.gc_grace_seconds, INT64_MAX};
    if (t->opt.gc_grace_seconds < 0 || pc.gc_before > now_s) pc.gc_before = INT32_MIN;
    st_arena a;
    arena_init(&a);
    uint32_t visited = 0;
    while (rc == 0) {
        st_partition *p;
        rc = merge_next(srcs, n, used, &a, &p);
        if (rc || !p) break;
        if (p->token > end_token) break;
        p = own_arrays(&a, p);
        if (!p) {
            rc = -ENOMEM;
            break;
        }
        p = partition_purge(p, &pc);
        if (p) {
            p->table_id = table_id;
            visited++;
            int r = cb(arg, p);
            if (r) {
                rc = 0;
                break;
            }
        }
        arena_free(&a);
        if (max_partitions && visited >= max_partitions) break;
        for (uint32_t i = 0; rc == 0 && i < n; i++)
            if (used[i]) rc = msrc_advance(&srcs[i]);
    }
    arena_free(&a);
    for (uint32_t i = 0; srcs && i < n; i++) {
        arena_free(&srcs[i].ar);
        sst_iter_free(srcs[i].si);
    }
    free(srcs);
    free(used);
    view_unref(v);
    return rc;
}

/* ----------------------------------------------------------- flush, compact, stats --- */

int storage_flush(storage_engine *e, uint64_t table_id, bool wait) {
    table **ts = NULL;
    uint32_t n = 0;
    pthread_rwlock_rdlock(&e->tlock);
    ts = malloc(sizeof *ts * (e->ntables ? e->ntables : 1));
    if (ts)
        for (uint32_t i = 0; i < e->ntables; i++)
            if (table_id == 0 || e->tables[i]->id == table_id) ts[n++] = e->tables[i];
    pthread_rwlock_unlock(&e->tlock);
    if (!ts) return -ENOMEM;
    if (table_id && n == 0) {
        free(ts);
        return ILION_ENOTFOUND;
    }
    int rc = 0;
    pthread_mutex_lock(&e->trigger_lock);
    for (uint32_t i = 0; i < n; i++) {
        int r = table_freeze(ts[i]);
        if (r < 0) rc = r;
    }
    pthread_mutex_unlock(&e->trigger_lock);
    if (wait) {
        pthread_mutex_lock(&e->bg_lock);
        for (uint32_t i = 0; i < n; i++)
            while (ts[i]->pending_flushes && !e->stopping) pthread_cond_wait(&e->done_cond, &e->bg_lock);
        pthread_mutex_unlock(&e->bg_lock);
        if (rc == 0 && atomic_load(&e->failed)) rc = ILION_ECLOSED;
        for (uint32_t i = 0; rc == 0 && i < n; i++)
            if (atomic_load(&ts[i]->flush_failed)) rc = -EIO;
    }
    free(ts);
    return rc;
}

int storage_compact(storage_engine *e, uint64_t table_id) {
    table *t = table_find(e, table_id);
    if (!t) return ILION_ENOTFOUND;
    pthread_mutex_lock(&e->bg_lock);
    while (t->compacting) pthread_cond_wait(&e->done_cond, &e->bg_lock);
    t->compacting = true;
    pthread_mutex_unlock(&e->bg_lock);
    int rc = 0;
    for (;;) {
        view *v = view_acquire(t);
        uint32_t n = v->nsst > MAX_COMPACTION_INPUTS ? MAX_COMPACTION_INPUTS : v->nsst;
        sstable *in[MAX_COMPACTION_INPUTS];
        /* The oldest files first, so tombstones meet the data they shadow. */
        for (uint32_t i = 0; i < n; i++) {
            in[i] = v->ssts[v->nsst - n + i];
            sstable_ref(in[i]);
        }
        bool more = v->nsst > MAX_COMPACTION_INPUTS;
        view_unref(v);
        if (n == 0) break;
        rc = run_compaction(t, in, n);
        for (uint32_t i = 0; i < n; i++) sstable_unref(in[i]);
        if (rc || !more) break;
    }
    pthread_mutex_lock(&e->bg_lock);
    t->compacting = false;
    pthread_cond_broadcast(&e->done_cond);
    pthread_cond_broadcast(&e->bg_cond);
    pthread_mutex_unlock(&e->bg_lock);
    if (rc && rc != ILION_ECLOSED) {
        char what[PATH_MAX + 96];
        snprintf(what, sizeof what, "compaction in %s", t->dir);
        disk_failure(e, what, rc);
    }
    return rc;
}

int storage_table_stats_get(storage_engine *e, uint64_t table_id, storage_table_stats *s) {
    table *t = table_find(e, table_id);
    if (!t) return ILION_ENOTFOUND;
    memset(s, 0, sizeof *s);
    view *v = view_acquire(t);
    for (uint32_t i = 0; i < v->nmem; i++) {
        s->memtable_bytes += memtable_bytes(v->mems[i]);
        s->memtable_partitions += memtable_partitions(v->mems[i]);
    }
    s->sstable_count = v->nsst;
    for (uint32_t i = 0; i < v->nsst; i++) s->sstable_bytes += sstable_file_bytes(v->ssts[i]);
    view_unref(v);
    s->compactions_done = atomic_load(&t->compactions_done);
    s->bloom_negatives = atomic_load(&t->bloom_negatives);
    return 0;
}

uint64_t storage_load_bytes(storage_engine *e) {
    uint64_t total = 0;
    pthread_rwlock_rdlock(&e->tlock);
    for (uint32_t i = 0; i < e->ntables; i++) {
        view *v = view_acquire(e->tables[i]);
        for (uint32_t j = 0; j < v->nsst; j++) total += sstable_file_bytes(v->ssts[j]);
        view_unref(v);
    }
    pthread_rwlock_unlock(&e->tlock);
    return total;
}
