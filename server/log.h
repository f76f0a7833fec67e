/* log.h: the server's log lines on stderr: "confmand[ID] LEVEL message". */
#ifndef CONFMAN_LOG_H
#define CONFMAN_LOG_H

#include <stdint.h>

enum cm_log_level { CM_LOG_ERROR = 0, CM_LOG_WARN, CM_LOG_INFO, CM_LOG_DEBUG };

/* The one piece of process-wide state in the server: who and how loud. */
void cm_log_setup(uint64_t node_id, int level);
void cm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define cm_log_error(...) cm_log(CM_LOG_ERROR, __VA_ARGS__)
#define cm_log_warn(...) cm_log(CM_LOG_WARN, __VA_ARGS__)
#define cm_log_info(...) cm_log(CM_LOG_INFO, __VA_ARGS__)
#define cm_log_debug(...) cm_log(CM_LOG_DEBUG, __VA_ARGS__)

#endif /* CONFMAN_LOG_H */
