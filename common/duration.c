/* duration.c: durations as the tools take them ("500ms", "10s", "2m"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/duration.h"

int cm_parse_duration(const char *s, uint64_t *ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"", 1000}, {"m", 60000}, {"h", 3600000},
		     {"d", 86400000}};
	if (s == NULL || *s < '0' || *s > '9')
		return -1; /* empty, a sign, a space */
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
		if (strcmp(end, units[k].unit) != 0)
			continue;
		if (v > UINT64_MAX / units[k].ms)
			return -1;
		*ms = v * units[k].ms;
		return 0;
	}
	return -1;
}
