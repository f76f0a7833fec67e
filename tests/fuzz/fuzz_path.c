/* fuzz_path.c: libFuzzer target: cm_path_validate() and the arithmetic done on valid paths. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "confman/path.h"
#include "confman/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What a valid path promises its users (kv.c walks paths with these). */
static void check_valid(const char *p, uint32_t len)
{
	assert(len >= 1 && len <= CM_PATH_MAX && p[0] == '/');
	assert(memchr(p, '\0', len) == NULL);
	uint32_t depth = cm_path_depth(p, len);
	assert(depth <= len / 2);
	assert(cm_path_is_under(p, len, p, len));
	assert(cm_path_is_under(p, len, "/", 1));
	if (len == 1) {
		assert(depth == 0);
		return;
	}
	uint32_t plen = cm_path_parent_len(p, len);
	assert(plen >= 1 && plen < len);
	assert(cm_path_validate(p, plen) == 0);
	assert(cm_path_depth(p, plen) + 1 == depth);
	assert(cm_path_is_under(p, len, p, plen));
	assert(!cm_path_is_under(p, plen, p, len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > UINT32_MAX)
		return 0;
	const char *p = (const char *)data;
	uint32_t len = (uint32_t)size;
	int rv = cm_path_validate(p, len);
	assert(rv == 0 || rv == -EINVAL || rv == -ENAMETOOLONG);
	if (rv == 0)
		check_valid(p, len);
	/* Two paths out of one input: is_under must hold for any split. */
	uint32_t cut = len ? data[0] % (len + 1) : 0;
	if (cm_path_validate(p, cut) == 0 && cm_path_validate(p + cut, len - cut) == 0)
		(void)cm_path_is_under(p + cut, len - cut, p, cut);
	return 0;
}
