/* fuzz_gateway.c: libFuzzer target: confman-api's request parsing (api/parse.h): routes,
 * query arguments, headers, base64 and the etcd v3 JSON bodies. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The bytes after the selector as two C strings, split at the first NUL (or
 * the middle): what libmicrohttpd hands the gateway is NUL-terminated. */
static void two_strings(const uint8_t *p, size_t n, char **a, char **b)
{
	const uint8_t *z = memchr(p, 0, n);
	size_t cut = z ? (size_t)(z - p) : n / 2;
	*a = strndup((const char *)p, cut);
	*b = strndup((const char *)p + (z ? cut + 1 : cut), n - (z ? cut + 1 : cut));
	assert(*a != NULL && *b != NULL);
}

static void route_and_query(const uint8_t *p, size_t n)
{
	char *a, *b, err[CM_API_ERR_MAX];
	two_strings(p, n, &a, &b);
	struct cm_api_target t;
	int rv = cm_api_route_parse(a, b, &t);
	/* A path is a valid Confman path inside url ("/" may be a literal). */
	if (rv == 0 && t.path != NULL) {
		assert(t.path_len >= 1 && t.path[0] == '/');
		if (t.path_len > 1)
			assert(t.path >= b && t.path + t.path_len <= b + strlen(b));
	}
	(void)cm_api_route_allow(b);
	struct cm_api_query q;
	cm_api_query_init(&q);
	for (int r = CM_API_R_KV; r <= CM_API_R_WATCH; r++)
		if (cm_api_query_add(&q, (enum cm_api_route)r, a, b, err, sizeof(err)) != 0)
			assert(memchr(err, 0, sizeof(err)) != NULL);
	free(a);
	free(b);
}

static void headers(const uint8_t *p, size_t n)
{
	char *s = strndup((const char *)p, n);
	assert(s != NULL);
	uint64_t x, y;
	(void)cm_api_parse_u64(s, strlen(s), &x);
	(void)cm_api_parse_if_match(s, &x);
	(void)cm_api_parse_token(s, &x, &y);
	free(s);
}

/* decode(encode(x)) == x; and decoding anything never writes past its bound. */
static void base64(const uint8_t *p, size_t n)
{
	size_t el = cm_api_b64_enclen(n);
	char *enc = malloc(el + 1);
	uint8_t *dec = malloc(el / 4 * 3 + 3);
	assert(enc != NULL && dec != NULL);
	cm_api_b64_encode(p, n, enc);
	assert(strlen(enc) == el);
	size_t dl = 0;
	assert(cm_api_b64_decode(enc, el, dec, &dl) == 0);
	assert(dl == n && (n == 0 || memcmp(dec, p, n) == 0));
	free(dec);
	uint8_t *any = malloc(n / 4 * 3 + 3);
	assert(any != NULL);
	if (cm_api_b64_decode((const char *)p, n, any, &dl) == 0)
		assert(dl <= n / 4 * 3 + 3);
	free(any);
	free(enc);
}

static void etcd(enum cm_api_route r, const uint8_t *p, size_t n)
{
	struct cm_etcd_req req;
	char err[CM_API_ERR_MAX];
	int rv = cm_etcd_parse(r, (const char *)p, n, &req, err, sizeof(err));
	if (rv != 0) {
		assert(rv == -EINVAL || rv == -EOPNOTSUPP || rv == -EMSGSIZE || rv == -ENOMEM);
		assert(memchr(err, 0, sizeof(err)) != NULL);
		return;
	}
	size_t plen;
	if (r == CM_API_R_V3_RANGE && cm_etcd_prefix_of(&req.range.key, &req.range.range_end, &plen))
		assert(plen <= req.range.key.len);
	if (r == CM_API_R_V3_TXN)
		assert(req.txn != NULL && req.txn->n_cmp <= CM_API_TXN_MAX &&
		       req.txn->n_success <= CM_API_TXN_MAX && req.txn->n_failure <= CM_API_TXN_MAX);
	cm_etcd_req_free(&req);
}

/* Lease and lock bodies: the second byte picks the route. */
static void etcd_lease(const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	enum cm_api_route r = (enum cm_api_route)(CM_API_R_V3_LEASE_GRANT +
						  p[0] % (CM_API_R_V3_UNLOCK - CM_API_R_V3_LEASE_GRANT + 1));
	struct cm_etcd_lease l;
	char err[CM_API_ERR_MAX];
	int rv = cm_etcd_parse_lease(r, (const char *)p + 1, n - 1, &l, err, sizeof(err));
	if (rv != 0) {
		assert(rv == -EINVAL || rv == -ENOMEM);
		assert(memchr(err, 0, sizeof(err)) != NULL);
		return;
	}
	assert(l.id >= 0 && l.lease >= 0);
	assert(r != CM_API_R_V3_LOCK || l.name.len > 0);
	cm_etcd_lease_free(&l);
}

/* The first byte picks the parser; the rest is its input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch (data[0] % 8) {
	case 0: route_and_query(p, n); break;
	case 1: headers(p, n); break;
	case 2: base64(p, n); break;
	case 3: etcd(CM_API_R_V3_PUT, p, n); break;
	case 4: etcd(CM_API_R_V3_RANGE, p, n); break;
	case 5: etcd(CM_API_R_V3_DELETE, p, n); break;
	case 6: etcd(CM_API_R_V3_TXN, p, n); break;
	default: etcd_lease(p, n); break; /* 7: added later, so 0..6 keep their seeds */
	}
	return 0;
}
