/* test_tls.c: the rules of common/tls.c that need no handshake: which names
 * are a node's, which key files are refused, which credentials are incomplete.
 * (Handshakes, refusals and identities run between real processes in
 * tests/integration/test_tls.py, and under the fuzzer in tests/fuzz/fuzz_tls.c.) */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/tls.h"

static void test_node_names_are_prefix_and_decimal_id(void **state)
{
	(void)state;
	assert_int_equal(cm_tls_node_of("confman-node-1"), 1);
	assert_int_equal(cm_tls_node_of("confman-node-4294967295"), 4294967295u);
	assert_int_equal(cm_tls_node_of("confman-node-0"), 0);          /* ids start at 1 */
	assert_int_equal(cm_tls_node_of("confman-node-01"), 0);         /* one spelling per id */
	assert_int_equal(cm_tls_node_of("confman-node-4294967296"), 0); /* over a node id */
	assert_int_equal(cm_tls_node_of("confman-node-"), 0);
	assert_int_equal(cm_tls_node_of("confman-node-2x"), 0);
	assert_int_equal(cm_tls_node_of("confman-node--2"), 0);
	assert_int_equal(cm_tls_node_of("Confman-node-2"), 0);
	assert_int_equal(cm_tls_node_of("admin"), 0);
	assert_int_equal(cm_tls_node_of(""), 0);
}

static void key_file(char *path, size_t len, mode_t mode)
{
	snprintf(path, len, "/tmp/cm-test-tls-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "k", 1), 1);
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_key_file_must_be_private(void **state)
{
	(void)state;
	char path[64], why[CM_TLS_WHY_MAX * 2];
	key_file(path, sizeof(path), 0600);
	assert_int_equal(cm_tls_key_check(path, why, sizeof(why)), 0);
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(cm_tls_key_check(path, why, sizeof(why)), 0);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(cm_tls_key_check(path, why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, path));
	assert_non_null(strstr(why, "mode 0640"));
	assert_int_equal(chmod(path, 0604), 0);
	assert_int_equal(cm_tls_key_check(path, why, sizeof(why)), -EPERM);
	unlink(path);
	assert_int_equal(cm_tls_key_check(path, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, path));
	assert_int_equal(cm_tls_key_check("/tmp", why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, "not a regular file"));
}

static void test_credentials_need_a_ca_and_pairs(void **state)
{
	(void)state;
	char why[CM_TLS_WHY_MAX * 2];
	struct cm_tls_ctx *x = NULL;
	struct cm_tls_paths none = {NULL, NULL, NULL};
	assert_int_equal(cm_tls_ctx_new(&none, &x, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "no CA"));
	struct cm_tls_paths half = {"/nonexistent/ca.pem", "/nonexistent/c.pem", NULL};
	assert_int_equal(cm_tls_ctx_new(&half, &x, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "needs its key"));
	struct cm_tls_paths missing = {"/nonexistent/ca.pem", NULL, NULL};
	assert_int_equal(cm_tls_ctx_new(&missing, &x, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "/nonexistent/ca.pem"));
	/* The key is checked before anything is read: its mode is the reason. */
	char key[64];
	key_file(key, sizeof(key), 0644);
	struct cm_tls_paths open_key = {"/nonexistent/ca.pem", "/nonexistent/c.pem", key};
	assert_int_equal(cm_tls_ctx_new(&open_key, &x, why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, "mode 0644"));
	unlink(key);
	assert_null(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_names_are_prefix_and_decimal_id),
		cmocka_unit_test(test_key_file_must_be_private),
		cmocka_unit_test(test_credentials_need_a_ca_and_pairs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
