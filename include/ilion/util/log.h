/*
 * Logging: one line per message on stderr, "2026-11-25T12:00:00.123Z LEVEL [module] text".
 * Thread-safe (one write(2) per line); any thread may call it.
 */
#ifndef ILION_UTIL_LOG_H
#define ILION_UTIL_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_write(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_DEBUG(mod, ...) do { if (log_get_level() <= LOG_LEVEL_DEBUG) log_write(LOG_LEVEL_DEBUG, mod, __VA_ARGS__); } while (0)
#define LOG_INFO(mod, ...)  log_write(LOG_LEVEL_INFO, mod, __VA_ARGS__)
#define LOG_WARN(mod, ...)  log_write(LOG_LEVEL_WARN, mod, __VA_ARGS__)
#define LOG_ERROR(mod, ...) log_write(LOG_LEVEL_ERROR, mod, __VA_ARGS__)

#endif
