/* path.c: what a valid Confman path is, and the little arithmetic done on valid ones. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "confman/path.h"
#include "confman/proto.h"

/* One component [c, c + n): not empty, not "." or "..", no NUL, not too long. */
static int component_check(const char *c, uint32_t n)
{
	if (n == 0)
		return -EINVAL; /* "//" or a trailing '/' */
	if (n == 1 && c[0] == '.')
		return -EINVAL;
	if (n == 2 && c[0] == '.' && c[1] == '.')
		return -EINVAL;
	if (memchr(c, '\0', n) != NULL)
		return -EINVAL;
	if (n > CM_NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

int cm_path_validate(const char *p, uint32_t len)
{
	if (p == NULL || len == 0 || p[0] != '/')
		return -EINVAL;
	/* Length first: a caller that sent 1 MiB of path learns that, not
	 * which of its bytes was wrong. */
	if (len > CM_PATH_MAX)
		return -ENAMETOOLONG;
	if (len == 1)
		return 0;
	uint32_t start = 1;
	for (uint32_t k = 1; k <= len; k++) {
		if (k < len && p[k] != '/')
			continue;
		int rc = component_check(p + start, k - start);
		if (rc != 0)
			return rc;
		start = k + 1;
	}
	return 0;
}

uint32_t cm_path_depth(const char *p, uint32_t len)
{
	assert(len >= 1);
	assert(p[0] == '/');
	if (len == 1)
		return 0;
	uint32_t n = 0;
	for (uint32_t k = 0; k < len; k++)
		n += p[k] == '/';
	return n;
}

uint32_t cm_path_parent_len(const char *p, uint32_t len)
{
	assert(len > 1);
	assert(p[0] == '/');
	uint32_t k = len - 1;
	while (p[k] != '/')
		k--;
	return k == 0 ? 1 : k;
}

int cm_path_is_under(const char *path, uint32_t len, const char *prefix, uint32_t plen)
{
	if (plen == 0 || len < plen || memcmp(path, prefix, plen) != 0)
		return 0;
	/* "/" and any prefix given with a trailing '/' end at a boundary already. */
	if (len == plen || prefix[plen - 1] == '/')
		return 1;
	return path[plen] == '/';
}
