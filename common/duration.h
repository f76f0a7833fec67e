/* duration.h: durations as confmanctl and confman-fs take them. */
#ifndef CONFMAN_DURATION_H
#define CONFMAN_DURATION_H

#include <stdint.h>

/* cm_parse_duration - "500ms", "10s", "2m", "1h", "1d", or a bare number
 * of seconds, into ms; returns 0, or -1 for anything else (a sign, a
 * fraction, spaces, an unknown unit, overflow). */
int cm_parse_duration(const char *s, uint64_t *ms);

#endif /* CONFMAN_DURATION_H */
