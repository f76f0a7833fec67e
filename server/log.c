/* log.c: the server's log lines. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "server/log.h"

static uint64_t log_node;
static int log_level = CM_LOG_WARN;

void cm_log_setup(uint64_t node_id, int level)
{
	log_node = node_id;
	log_level = level;
}

void cm_log(int level, const char *fmt, ...)
{
	static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
	if (level > log_level)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s.%03ld confmand[%llu] %s %s\n", when, ts.tv_nsec / 1000000,
		(unsigned long long)log_node, names[level], line);
}
