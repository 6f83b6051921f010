// gocql (Debian golang-github-gocql-gocql-dev) against a running Ilion node, default settings.
// Build: GO111MODULE=off GOPATH=/usr/share/gocode go build -o gotest main.go
// Usage: gotest HOST PORT. Exits non-zero on the first failed check, naming it.
package main

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"reflect"
	"strconv"
	"time"

	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"
)

const ks = "drv_go"

var checks int

func check(cond bool, format string, args ...interface{}) {
	checks++
	if !cond {
		fmt.Printf("FAIL: "+format+"\n", args...)
		os.Exit(1)
	}
}

func must(err error, what string) {
	check(err == nil, "%s: %v", what, err)
}

func expectCode(err error, code int, what string) {
	re, ok := err.(gocql.RequestError)
	check(ok && re.Code() == code, "%s: got %v (want code 0x%x)", what, err, code)
}

func main() {
	host, port := "127.0.0.1", 9042
	if len(os.Args) > 2 {
		host = os.Args[1]
		port, _ = strconv.Atoi(os.Args[2])
	}
	cluster := gocql.NewCluster(host)
	cluster.Port = port
	cluster.Timeout = 10 * time.Second
	s, err := cluster.CreateSession()
	must(err, "connect")
	defer s.Close()

	var rv string
	must(s.Query("SELECT release_version FROM system.local WHERE key = 'local'").Scan(&rv), "system.local")
	must(s.Query("DROP KEYSPACE IF EXISTS " + ks).Exec(), "drop keyspace")
	must(s.Query("CREATE KEYSPACE " + ks + " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").Exec(), "create keyspace")
	must(s.Query("CREATE TABLE " + ks + ".events (tenant text, day int, seq int, body text, PRIMARY KEY ((tenant, day), seq))").Exec(), "create table")
	for i := 0; i < 20; i++ {
		must(s.Query("INSERT INTO "+ks+".events (tenant, day, seq, body) VALUES (?, ?, ?, ?)", "acme", 1, i, fmt.Sprint("b", i)).Exec(), "insert")
	}
	iter := s.Query("SELECT seq FROM "+ks+".events WHERE tenant = ? AND day = ? AND seq >= ? AND seq < ?", "acme", 1, 5, 9).Iter()
	var seq int
	var got []int
	for iter.Scan(&seq) {
		got = append(got, seq)
	}
	must(iter.Close(), "slice")
	check(reflect.DeepEqual(got, []int{5, 6, 7, 8}), "clustering slice: %v", got)

	// Every type, prepared (gocql prepares every bound query), boundaries and nulls.
	must(s.Query("CREATE TABLE " + ks + ".types (id int PRIMARY KEY, a_ascii ascii, a_bigint bigint, a_blob blob, " +
		"a_boolean boolean, a_decimal decimal, a_double double, a_float float, a_inet inet, a_int int, " +
		"a_smallint smallint, a_text text, a_timestamp timestamp, a_uuid uuid, a_timeuuid timeuuid, " +
		"a_tinyint tinyint, a_varint varint, a_date date, a_time time)").Exec(), "create types")
	big1, _ := new(big.Int).SetString("-1267650600228229401496703205376", 10)
	dec := inf.NewDec(-123456789, 30)
	ts := time.Date(2262, 4, 11, 23, 47, 16, 854000000, time.UTC)
	uid := gocql.TimeUUID()
	rnd, _ := gocql.RandomUUID()
	type row struct {
		ascii  string
		bi     int64
		blob   []byte
		b      bool
		dec    *inf.Dec
		dbl    float64
		flt    float32
		ip     net.IP
		i      int32
		si     int16
		txt    string
		ts     time.Time
		u      gocql.UUID
		tu     gocql.UUID
		ti     int8
		vi     *big.Int
		date   time.Time
		tm     time.Duration
	}
	in := []row{
		{"", math.MinInt64, []byte{}, false, dec, -math.MaxFloat64, -1.5, net.ParseIP("0.0.0.0").To4(), math.MinInt32, math.MinInt16, "",
			time.Unix(-2208988800, 0).UTC(), rnd, uid, math.MinInt8, big1, time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{"xyz", math.MaxInt64, []byte{0, 1, 255}, true, inf.NewDec(5, 0), math.MaxFloat64, 3.25, net.ParseIP("2001:db8::1"), math.MaxInt32, math.MaxInt16, "héllo ✓",
			ts, rnd, uid, math.MaxInt8, big.NewInt(42), time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC), 86399999999999},
	}
	for id, r := range in {
		must(s.Query("INSERT INTO "+ks+".types (id, a_ascii, a_bigint, a_blob, a_boolean, a_decimal, a_double, a_float, a_inet, a_int, a_smallint, a_text, a_timestamp, a_uuid, a_timeuuid, a_tinyint, a_varint, a_date, a_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			id, r.ascii, r.bi, r.blob, r.b, r.dec, r.dbl, r.flt, r.ip, r.i, r.si, r.txt, r.ts, r.u, r.tu, r.ti, r.vi, r.date, r.tm).Exec(), "insert types")
		var o row
		must(s.Query("SELECT a_ascii, a_bigint, a_blob, a_boolean, a_decimal, a_double, a_float, a_inet, a_int, a_smallint, a_text, a_timestamp, a_uuid, a_timeuuid, a_tinyint, a_varint, a_date, a_time FROM "+ks+".types WHERE id = ?", id).Scan(
			&o.ascii, &o.bi, &o.blob, &o.b, &o.dec, &o.dbl, &o.flt, &o.ip, &o.i, &o.si, &o.txt, &o.ts, &o.u, &o.tu, &o.ti, &o.vi, &o.date, &o.tm), "select types")
		check(o.ascii == r.ascii && o.bi == r.bi && bytes.Equal(o.blob, r.blob) && o.b == r.b, "scalars row %d: %+v", id, o)
		check(o.dec.Cmp(r.dec) == 0, "decimal row %d: %v", id, o.dec)
		check(o.dbl == r.dbl && o.flt == r.flt && o.ip.Equal(r.ip) && o.i == r.i && o.si == r.si && o.txt == r.txt, "numbers row %d: %+v", id, o)
		check(o.ts.Equal(r.ts) && o.u == r.u && o.tu == r.tu && o.ti == r.ti && o.vi.Cmp(r.vi) == 0, "time/uuid row %d: %+v", id, o)
		check(o.date.Equal(r.date) && o.tm == r.tm, "date/time row %d: %v %v", id, o.date, o.tm)
	}
	// Nulls.
	must(s.Query("INSERT INTO "+ks+".types (id, a_text, a_int) VALUES (?, ?, ?)", 9, nil, nil).Exec(), "insert nulls")
	var np *int
	var ns *string
	must(s.Query("SELECT a_int, a_text FROM "+ks+".types WHERE id = 9").Scan(&np, &ns), "select nulls")
	check(np == nil && ns == nil, "nulls read back as null")

	// Paging 10,000 rows, page size 100.
	must(s.Query("CREATE TABLE "+ks+".wide (k int, c int, PRIMARY KEY (k, c))").Exec(), "create wide")
	b := s.NewBatch(gocql.UnloggedBatch)
	for i := 0; i < 10000; i++ {
		b.Query("INSERT INTO "+ks+".wide (k, c) VALUES (1, ?)", i)
		if len(b.Entries) == 100 {
			must(s.ExecuteBatch(b), "batch insert")
			b = s.NewBatch(gocql.UnloggedBatch)
		}
	}
	iter = s.Query("SELECT c FROM " + ks + ".wide WHERE k = 1").PageSize(100).Iter()
	n, ordered := 0, true
	var c int
	for iter.Scan(&c) {
		if c != n {
			ordered = false
		}
		n++
	}
	must(iter.Close(), "paging")
	check(n == 10000 && ordered, "paged 10,000 rows in order (got %d)", n)

	// TTL, timestamps, deletes.
	must(s.Query("CREATE TABLE "+ks+".kv (k text PRIMARY KEY, v text)").Exec(), "create kv")
	must(s.Query("INSERT INTO "+ks+".kv (k, v) VALUES ('ttl', 'x') USING TTL 1").Exec(), "ttl insert")
	time.Sleep(2500 * time.Millisecond)
	var v string
	check(s.Query("SELECT v FROM "+ks+".kv WHERE k = 'ttl'").Scan(&v) == gocql.ErrNotFound, "TTL expiry")
	must(s.Query("INSERT INTO "+ks+".kv (k, v) VALUES ('ts', 'new') USING TIMESTAMP 2000").Exec(), "ts insert")
	must(s.Query("INSERT INTO "+ks+".kv (k, v) VALUES ('ts', 'old') USING TIMESTAMP 1000").Exec(), "ts insert")
	must(s.Query("SELECT v FROM "+ks+".kv WHERE k = 'ts'").Scan(&v), "ts read")
	check(v == "new", "USING TIMESTAMP ordering: %s", v)
	must(s.Query("DELETE FROM "+ks+".events WHERE tenant = 'acme' AND day = 1 AND seq = 4").Exec(), "row delete")
	check(s.Query("SELECT seq FROM "+ks+".events WHERE tenant = 'acme' AND day = 1 AND seq = 4").Scan(&seq) == gocql.ErrNotFound, "row deleted")

	expectCode(s.Query("SELEKT 1").Exec(), gocql.ErrCodeSyntax, "syntax error")
	expectCode(s.Query("SELECT * FROM "+ks+".nope").Exec(), gocql.ErrCodeInvalid, "invalid")
	expectCode(s.Query("CREATE TABLE "+ks+".kv (k text PRIMARY KEY)").Exec(), gocql.ErrCodeAlreadyExists, "already exists")

	// Collections last: everything above is checked even where they are not supported.
	must(s.Query("CREATE TABLE "+ks+".coll (id int PRIMARY KEY, a_list list<int>, a_set set<text>, a_map map<text, int>)").Exec(), "create coll")
	must(s.Query("INSERT INTO "+ks+".coll (id, a_list, a_set, a_map) VALUES (?, ?, ?, ?)", 1, []int{math.MaxInt32, -1}, []string{"x", "y"}, map[string]int{"a": -1}).Exec(), "insert coll")
	var l []int
	var st []string
	var m map[string]int
	must(s.Query("SELECT a_list, a_set, a_map FROM "+ks+".coll WHERE id = 1").Scan(&l, &st, &m), "select coll")
	check(reflect.DeepEqual(l, []int{math.MaxInt32, -1}) && reflect.DeepEqual(st, []string{"x", "y"}) && m["a"] == -1, "collections: %v %v %v", l, st, m)
	fmt.Printf("go driver (gocql): OK (%d checks)\n", checks)
}
