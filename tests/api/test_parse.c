/* test_parse.c: confman-api's pure request parsers (api/parse.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/parse.h"

static void test_b64_rfc4648_vectors_round_trip(void **state)
{
	(void)state;
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
					  "Zm9vYmFy"};
	for (size_t i = 0; i < 7; i++) {
		char out[16];
		uint8_t back[16];
		size_t n = 99;
		cm_api_b64_encode((const uint8_t *)plain[i], strlen(plain[i]), out);
		assert_string_equal(out, enc[i]);
		assert_int_equal(cm_api_b64_enclen(strlen(plain[i])), strlen(enc[i]));
		assert_int_equal(cm_api_b64_decode(enc[i], strlen(enc[i]), back, &n), 0);
		assert_int_equal(n, strlen(plain[i]));
		assert_memory_equal(back, plain[i], n);
	}
}

static void test_b64_decode_rejects_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {"!!!!", "Z", "Zg=", "Zg===", "Z===", "Zh==", "Zm9=",
					  "Zm 9v", "Zg==Zg==", "=", "===="};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t out[16];
		size_t n;
		assert_int_equal(cm_api_b64_decode(bad[i], strlen(bad[i]), out, &n), -EINVAL);
	}
	uint8_t out[16];
	size_t n;
	assert_int_equal(cm_api_b64_decode("Zm8", 3, out, &n), 0); /* unpadded */
	assert_int_equal(n, 2);
	assert_int_equal(cm_api_b64_decode("-_8=", 4, out, &n), 0); /* URL-safe */
	assert_int_equal(out[0], 0xfb);
}

static void test_route_parse_paths_and_methods(void **state)
{
	(void)state;
	struct cm_api_target t;
	assert_int_equal(cm_api_route_parse("GET", "/v1/kv/a/b", &t), 0);
	assert_int_equal(t.route, CM_API_R_KV);
	assert_string_equal(t.path, "/a/b");
	assert_int_equal(cm_api_route_parse("GET", "/v1/kv", &t), 0);
	assert_string_equal(t.path, "/");
	assert_int_equal(cm_api_route_parse("GET", "/v1/kv/", &t), 0);
	assert_int_equal(cm_api_route_parse("GET", "/v1/kv/a/", &t), -EINVAL);
	assert_int_equal(cm_api_route_parse("GET", "/v1/kv//a", &t), -EINVAL);
	assert_int_equal(cm_api_route_parse("GET", "/v1/kv/a/../b", &t), -EINVAL);
	assert_int_equal(cm_api_route_parse("GET", "/v1/kv/a%00b", &t), -EINVAL);
	assert_int_equal(cm_api_route_parse("GET", "/v1/kvx", &t), -ENOENT);
	assert_int_equal(cm_api_route_parse("POST", "/v1/kv/a", &t), -EPERM);
	assert_int_equal(cm_api_route_parse("GET", "/v3/kv/put", &t), -EPERM);
	assert_int_equal(cm_api_route_parse("POST", "/v3/kv/txn", &t), 0);
	assert_int_equal(t.route, CM_API_R_V3_TXN);
	assert_int_equal(cm_api_route_parse("GET", "/v3/kv/txn/", &t), -ENOENT);
	assert_int_equal(cm_api_route_parse("BREW", "/healthz", &t), -EPERM);
	assert_string_equal(cm_api_route_allow("/v1/watch/x"), "GET");
	/* "/v1/kv" + a path of 4096 bytes ("/a" x 2048), then of 4097 */
	static char long_url[6 + 4097 + 1] = "/v1/kv";
	for (int i = 0; i < 4096; i += 2)
		strcat(long_url, "/a");
	assert_int_equal(cm_api_route_parse("GET", long_url, &t), 0);
	assert_int_equal(t.path_len, 4096);
	strcat(long_url, "a");
	assert_int_equal(cm_api_route_parse("GET", long_url, &t), -ENAMETOOLONG);
}

static void test_unescape_keeps_nul_escaped(void **state)
{
	(void)state;
	char s[] = "/a%20b%2fc%00d%zz%4";
	cm_api_unescape(s);
	assert_string_equal(s, "/a b/c%00d%zz%4");
}

static void test_headers_and_query(void **state)
{
	(void)state;
	uint64_t v, g, i;
	assert_int_equal(cm_api_parse_if_match("\"12\"", &v), 0);
	assert_int_equal(v, 12);
	assert_int_equal(cm_api_parse_if_match("12", &v), 0);
	assert_int_equal(cm_api_parse_if_match("\"", &v), -EINVAL);
	assert_int_equal(cm_api_parse_if_match("W/\"1\"", &v), -EINVAL);
	assert_int_equal(cm_api_parse_u64("18446744073709551615", 20, &v), 0);
	assert_int_equal(cm_api_parse_u64("18446744073709551616", 20, &v), -EINVAL);
	assert_int_equal(cm_api_parse_token("3:77", &g, &i), 0);
	assert_true(g == 3 && i == 77);
	assert_int_equal(cm_api_parse_token("3:", &g, &i), -EINVAL);
	assert_int_equal(cm_api_parse_token("377", &g, &i), -EINVAL);
	struct cm_api_query q;
	char err[CM_API_ERR_MAX];
	cm_api_query_init(&q);
	assert_int_equal(cm_api_query_add(&q, CM_API_R_KV, "list", NULL, err, sizeof(err)), 0);
	assert_true(q.list);
	assert_int_equal(cm_api_query_add(&q, CM_API_R_KV, "from", "1", err, sizeof(err)), -EINVAL);
	assert_int_equal(cm_api_query_add(&q, CM_API_R_WATCH, "from", "9", err, sizeof(err)), 0);
	assert_int_equal(q.from, 9);
	assert_int_equal(cm_api_query_add(&q, CM_API_R_KV, "consistency", "x", err, sizeof(err)),
			 -EINVAL);
}

static int parse(enum cm_api_route r, const char *json, struct cm_etcd_req *out)
{
	char err[CM_API_ERR_MAX];
	return cm_etcd_parse(r, json, strlen(json), out, err, sizeof(err));
}

static void test_etcd_parse_requests(void **state)
{
	(void)state;
	struct cm_etcd_req r;
	assert_int_equal(parse(CM_API_R_V3_RANGE,
			       "{\"key\":\"L2E=\",\"rangeEnd\":\"L2I=\",\"limit\":\"5\","
			       "\"serializable\":true,\"keys_only\":true}",
			       &r),
			 0);
	assert_int_equal(r.range.key.len, 2);
	assert_int_equal(r.range.limit, 5);
	assert_true(r.range.serializable && r.range.keys_only && !r.range.count_only);
	size_t plen;
	assert_true(cm_etcd_prefix_of(&r.range.key, &r.range.range_end, &plen));
	assert_int_equal(plen, 2);
	cm_etcd_req_free(&r);
	assert_int_equal(parse(CM_API_R_V3_TXN,
			       "{\"compare\":[{\"key\":\"L2E=\",\"target\":\"MOD\",\"result\":"
			       "\"GREATER\",\"mod_revision\":7}],\"success\":[{\"request_put\":"
			       "{\"key\":\"L2E=\",\"value\":\"eA==\"}}]}",
			       &r),
			 0);
	assert_int_equal(r.txn->n_cmp, 1);
	assert_int_equal(r.txn->cmp[0].target, CM_ETCD_T_MOD);
	assert_int_equal(r.txn->cmp[0].result, CM_ETCD_GREATER);
	assert_int_equal(r.txn->cmp[0].operand, 7);
	assert_int_equal(r.txn->success[0].kind, CM_ETCD_OP_PUT);
	cm_etcd_req_free(&r);
	assert_int_equal(parse(CM_API_R_V3_PUT, "{\"value\":\"eA==\"}", &r), -EINVAL);
	assert_int_equal(parse(CM_API_R_V3_PUT, "{\"key\":\"L2E=\",\"lease\":\"12\"}", &r), 0);
	assert_int_equal(r.put.lease, 12);
	cm_etcd_req_free(&r);
	assert_int_equal(parse(CM_API_R_V3_PUT, "{\"key\":\"L2E=\",\"lease\":-1}", &r), -EINVAL);
	assert_int_equal(parse(CM_API_R_V3_TXN,
			       "{\"success\":[{\"request_put\":{\"key\":\"L2E=\",\"lease\":3}}]}", &r),
			 -EOPNOTSUPP);
	assert_int_equal(parse(CM_API_R_V3_PUT, "{\"key\":\"L2E=\",\"bogus\":1}", &r), -EINVAL);
	assert_int_equal(parse(CM_API_R_V3_RANGE, "{\"key\":\"L2E=\",\"key\":\"L2E=\"}", &r),
			 -EINVAL);
	assert_int_equal(parse(CM_API_R_V3_RANGE, "[1]", &r), -EINVAL);
	assert_int_equal(parse(CM_API_R_V3_RANGE, "{\"key\":\"L2E=\",\"limit\":-1}", &r), -EINVAL);
}

static int parse_lease(enum cm_api_route rt, const char *body, struct cm_etcd_lease *l)
{
	char err[CM_API_ERR_MAX];
	return cm_etcd_parse_lease(rt, body, strlen(body), l, err, sizeof(err));
}

static void test_etcd_parse_lease(void **state)
{
	(void)state;
	struct cm_api_target t;
	assert_int_equal(cm_api_route_parse("POST", "/v3/lease/grant", &t), 0);
	assert_int_equal(t.route, CM_API_R_V3_LEASE_GRANT);
	assert_int_equal(cm_api_route_parse("POST", "/v3/kv/lease/revoke", &t), 0);
	assert_int_equal(t.route, CM_API_R_V3_LEASE_REVOKE);
	assert_int_equal(cm_api_route_parse("GET", "/v3/lock/lock", &t), -EPERM);
	struct cm_etcd_lease l;
	assert_int_equal(parse_lease(CM_API_R_V3_LEASE_GRANT, "{\"TTL\":\"60\",\"ID\":7}", &l), 0);
	assert_int_equal(l.ttl, 60);
	assert_int_equal(l.id, 7);
	cm_etcd_lease_free(&l);
	assert_int_equal(parse_lease(CM_API_R_V3_LEASE_GRANT, "{\"ID\":-7}", &l), -EINVAL);
	assert_int_equal(parse_lease(CM_API_R_V3_LEASE_GRANT, "{\"ttl\":5}", &l), -EINVAL);
	assert_int_equal(parse_lease(CM_API_R_V3_LEASE_LIST, "", &l), 0);
	assert_int_equal(parse_lease(CM_API_R_V3_LEASE_LIST, "{\"x\":1}", &l), -EINVAL);
	assert_int_equal(parse_lease(CM_API_R_V3_LEASE_TTL, "{\"ID\":9,\"keys\":true}", &l), 0);
	assert_true(l.keys);
	assert_int_equal(parse_lease(CM_API_R_V3_LOCK, "{\"name\":\"L2E=\",\"lease\":\"5\"}", &l),
			 0);
	assert_int_equal(l.name.len, 2);
	assert_int_equal(l.lease, 5);
	cm_etcd_lease_free(&l);
	assert_int_equal(parse_lease(CM_API_R_V3_LOCK, "{\"lease\":5}", &l), -EINVAL);
	assert_int_equal(parse_lease(CM_API_R_V3_UNLOCK, "{}", &l), -EINVAL);
	assert_int_equal(parse_lease(CM_API_R_V3_UNLOCK, "{\"key\":\"!!\"}", &l), -EINVAL);
	assert_int_equal(parse_lease(CM_API_R_V3_LEASE_KEEPALIVE, "[1]", &l), -EINVAL);
}

static void test_etcd_prefix_of(void **state)
{
	(void)state;
	uint8_t k1[] = {'/', 'a', 0xff}, e1[] = {'/', 'b'};
	struct cm_api_buf key = {k1, 3}, end = {e1, 2};
	size_t plen;
	assert_true(cm_etcd_prefix_of(&key, &end, &plen)); /* trailing 0xff dropped */
	assert_int_equal(plen, 3);
	uint8_t e2[] = {'/', 'c'};
	struct cm_api_buf end2 = {e2, 2}, key2 = {(uint8_t *)"/a", 2};
	assert_false(cm_etcd_prefix_of(&key2, &end2, &plen));
	struct cm_api_buf none = {NULL, 0};
	assert_false(cm_etcd_prefix_of(&key2, &none, &plen));
	uint8_t z[] = {0};
	struct cm_api_buf zk = {z, 1}, ze = {z, 1};
	assert_true(cm_etcd_prefix_of(&zk, &ze, &plen));
	assert_int_equal(plen, 0);
}

/* Random bytes into every parser: no crash, no leak (ASan), a clean error. */
static void test_random_input_never_crashes(void **state)
{
	(void)state;
	unsigned seed = 6;
	char buf[256];
	for (int round = 0; round < 20000; round++) {
		size_t n = (size_t)(rand_r(&seed) % (int)sizeof(buf));
		for (size_t i = 0; i < n; i++)
			buf[i] = (char)(rand_r(&seed) % 4 == 0 ? "{}[]\":,0a"[rand_r(&seed) % 9]
								: rand_r(&seed));
		struct cm_etcd_req r;
		char err[CM_API_ERR_MAX];
		enum cm_api_route rt = (enum cm_api_route)(CM_API_R_V3_PUT + round % 4);
		if (cm_etcd_parse(rt, buf, n, &r, err, sizeof(err)) == 0)
			cm_etcd_req_free(&r);
		uint8_t out[256];
		size_t on;
		(void)cm_api_b64_decode(buf, n, out, &on);
		buf[n] = '\0';
		struct cm_api_target t;
		(void)cm_api_route_parse("GET", buf, &t);
		(void)cm_api_unescape(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_rfc4648_vectors_round_trip),
		cmocka_unit_test(test_b64_decode_rejects_malformed),
		cmocka_unit_test(test_route_parse_paths_and_methods),
		cmocka_unit_test(test_unescape_keeps_nul_escaped),
		cmocka_unit_test(test_headers_and_query),
		cmocka_unit_test(test_etcd_parse_requests),
		cmocka_unit_test(test_etcd_parse_lease),
		cmocka_unit_test(test_etcd_prefix_of),
		cmocka_unit_test(test_random_input_never_crashes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
