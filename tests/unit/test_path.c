/* test_path.c: which paths are valid, and the arithmetic on valid ones (common/path.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "confman/path.h"
#include "confman/proto.h"

struct path_case {
	const char *p;
	uint32_t len; /* 0: strlen(p) */
	int want;
};

static void check_case(const struct path_case *c)
{
	uint32_t len = c->len ? c->len : (uint32_t)strlen(c->p);
	int got = cm_path_validate(c->p, len);
	if (got != c->want)
		fail_msg("cm_path_validate(\"%.*s\", %u) = %d, want %d", (int)(len > 60 ? 60 : len),
			 c->p, len, got, c->want);
}

static void test_validate_accepts_good_paths(void **state)
{
	(void)state;
	static const struct path_case good[] = {
		{"/", 0, 0},         {"/a", 0, 0},          {"/a/b", 0, 0},
		{"/a.b/c-d_e", 0, 0}, {"/...", 0, 0},        {"/.hidden", 0, 0},
		{"/a..b", 0, 0},     {"/a/ b /c", 0, 0},    {"/\xc3\xa9t\xc3\xa9", 0, 0},
	};
	for (size_t k = 0; k < sizeof(good) / sizeof(good[0]); k++)
		check_case(&good[k]);
}

static void test_validate_rejects_bad_paths_with_einval(void **state)
{
	(void)state;
	static const struct path_case bad[] = {
		{"", 0, -EINVAL},        {"a", 0, -EINVAL},        {"a/b", 0, -EINVAL},
		{"//", 0, -EINVAL},      {"/a//b", 0, -EINVAL},    {"/a/", 0, -EINVAL},
		{"/.", 0, -EINVAL},      {"/..", 0, -EINVAL},      {"/a/..", 0, -EINVAL},
		{"/a/../b", 0, -EINVAL}, {"/./a", 0, -EINVAL},     {"/a/.", 0, -EINVAL},
		{"/a\0b", 4, -EINVAL},   {"/\0", 2, -EINVAL},      {"/a/b\0", 5, -EINVAL},
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		check_case(&bad[k]);
	assert_int_equal(cm_path_validate(NULL, 0), -EINVAL);
}

static void test_validate_limits_component_and_path_length(void **state)
{
	(void)state;
	char p[CM_PATH_MAX + 2];
	p[0] = '/';
	memset(p + 1, 'x', CM_NAME_MAX);
	assert_int_equal(cm_path_validate(p, 1 + CM_NAME_MAX), 0);
	p[1 + CM_NAME_MAX] = 'x';
	assert_int_equal(cm_path_validate(p, 2 + CM_NAME_MAX), -ENAMETOOLONG); /* 256 bytes */
	/* /xxx.../xxx... exactly CM_PATH_MAX bytes, components within limits */
	for (uint32_t k = 0; k < sizeof(p); k++)
		p[k] = k % 200 == 0 ? '/' : 'y';
	assert_int_equal(cm_path_validate(p, CM_PATH_MAX), 0);
	assert_int_equal(cm_path_validate(p, CM_PATH_MAX + 1), -ENAMETOOLONG); /* 1025 bytes */
}

/* /yyy.../yyy... of exactly len bytes: a '/' every 200 bytes, so every
 * component is within CM_NAME_MAX and only the whole length decides. */
static void long_path(char *p, uint32_t len)
{
	for (uint32_t k = 0; k < len; k++)
		p[k] = k % 200 == 0 ? '/' : 'y';
}

/* The numbers are literal on purpose: the limits are the kernel's PATH_MAX
 * (4096) and NAME_MAX (255), whatever the constants say. */
static void test_validate_allows_4096_byte_paths_and_255_byte_names(void **state)
{
	(void)state;
	static char p[4200];
	long_path(p, sizeof(p));
	assert_int_equal(cm_path_validate(p, 4095), 0);
	assert_int_equal(cm_path_validate(p, 4096), 0);
	assert_int_equal(cm_path_validate(p, 4097), -ENAMETOOLONG);
	assert_int_equal(cm_path_validate(p, (uint32_t)sizeof(p)), -ENAMETOOLONG);
	/* a 4096-byte path of 255-byte names: "/" + 255, 16 times */
	for (uint32_t k = 0; k < 4096; k++)
		p[k] = k % 256 == 0 ? '/' : 'n';
	assert_int_equal(cm_path_validate(p, 4096), 0);
	p[256] = 'n'; /* two names merge into one of 511 bytes */
	assert_int_equal(cm_path_validate(p, 4096), -ENAMETOOLONG);
	p[0] = '/';
	memset(p + 1, 'n', 256);
	assert_int_equal(cm_path_validate(p, 256), 0);           /* "/" + 255 */
	assert_int_equal(cm_path_validate(p, 257), -ENAMETOOLONG); /* "/" + 256 */
	assert_int_equal(CM_NAME_MAX, 255);
	assert_int_equal(CM_PATH_MAX, 4096);
}

static void test_depth_and_parent_of_valid_paths(void **state)
{
	(void)state;
	assert_int_equal(cm_path_depth("/", 1), 0);
	assert_int_equal(cm_path_depth("/a", 2), 1);
	assert_int_equal(cm_path_depth("/a/bc/d", 7), 3);
	assert_int_equal(cm_path_parent_len("/a", 2), 1);
	assert_int_equal(cm_path_parent_len("/a/bc", 5), 2);
	assert_int_equal(cm_path_parent_len("/a/bc/d", 7), 5);
}

static void test_is_under_respects_component_boundaries(void **state)
{
	(void)state;
	assert_true(cm_path_is_under("/a", 2, "/", 1));
	assert_true(cm_path_is_under("/", 1, "/", 1));
	assert_true(cm_path_is_under("/a", 2, "/a", 2));
	assert_true(cm_path_is_under("/a/b", 4, "/a", 2));
	assert_true(cm_path_is_under("/a/b/c", 6, "/a/b", 4));
	assert_false(cm_path_is_under("/ab", 3, "/a", 2));
	assert_false(cm_path_is_under("/a", 2, "/a/b", 4));
	assert_false(cm_path_is_under("/b", 2, "/a", 2));
	assert_false(cm_path_is_under("/", 1, "/a", 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate_accepts_good_paths),
		cmocka_unit_test(test_validate_rejects_bad_paths_with_einval),
		cmocka_unit_test(test_validate_limits_component_and_path_length),
		cmocka_unit_test(test_validate_allows_4096_byte_paths_and_255_byte_names),
		cmocka_unit_test(test_depth_and_parent_of_valid_paths),
		cmocka_unit_test(test_is_under_respects_component_boundaries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
