/* parse.c: routes, query arguments, headers and base64 of confman-api requests. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api/parse.h"
#include "confman/path.h"
#include "confman/proto.h"

/* ---- routes ------------------------------------------------------------------ */

static int method_of(const char *m, enum cm_api_method *out)
{
	static const struct {
		const char *name;
		enum cm_api_method m;
	} t[] = {{"GET", CM_API_GET},   {"HEAD", CM_API_HEAD},     {"PUT", CM_API_PUT},
		 {"POST", CM_API_POST}, {"DELETE", CM_API_DELETE}};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(m, t[i].name) == 0) {
			*out = t[i].m;
			return 0;
		}
	return -EPERM;
}

/* "/v1/kv" + rest: rest "" or "/" is the root, else it must be a clean path. */
static int v1_path(const char *rest, struct cm_api_target *out)
{
	if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
		out->path = "/";
		out->path_len = 1;
		return 0;
	}
	if (rest[0] != '/')
		return -ENOENT; /* "/v1/kvx" */
	size_t n = strlen(rest);
	if (n > CM_PATH_MAX)
		return -ENAMETOOLONG;
	/* cm_api_unescape leaves %00 alone: a path cannot hold a NUL. */
	if (strstr(rest, "%00") != NULL)
		return -EINVAL;
	int rv = cm_path_validate(rest, (uint32_t)n);
	if (rv != 0)
		return rv;
	out->path = rest;
	out->path_len = (uint32_t)n;
	return 0;
}

static const struct {
	const char *url;
	enum cm_api_route route;
	const char *allow;
} fixed_routes[] = {
	{"/healthz", CM_API_R_HEALTHZ, "GET, HEAD"},
	{"/readyz", CM_API_R_READYZ, "GET, HEAD"},
	{"/v3/kv/put", CM_API_R_V3_PUT, "POST"},
	{"/v3/kv/range", CM_API_R_V3_RANGE, "POST"},
	{"/v3/kv/deleterange", CM_API_R_V3_DELETE, "POST"},
	{"/v3/kv/txn", CM_API_R_V3_TXN, "POST"},
	{"/v3/lease/grant", CM_API_R_V3_LEASE_GRANT, "POST"},
	{"/v3/lease/revoke", CM_API_R_V3_LEASE_REVOKE, "POST"},
	{"/v3/kv/lease/revoke", CM_API_R_V3_LEASE_REVOKE, "POST"},
	{"/v3/lease/keepalive", CM_API_R_V3_LEASE_KEEPALIVE, "POST"},
	{"/v3/lease/timetolive", CM_API_R_V3_LEASE_TTL, "POST"},
	{"/v3/kv/lease/timetolive", CM_API_R_V3_LEASE_TTL, "POST"},
	{"/v3/lease/leases", CM_API_R_V3_LEASE_LIST, "POST"},
	{"/v3/kv/lease/leases", CM_API_R_V3_LEASE_LIST, "POST"},
	{"/v3/lock/lock", CM_API_R_V3_LOCK, "POST"},
	{"/v3/lock/unlock", CM_API_R_V3_UNLOCK, "POST"},
};

#define KV_ALLOW "GET, HEAD, PUT, DELETE"
#define WATCH_ALLOW "GET"

static bool allowed(enum cm_api_route r, enum cm_api_method m)
{
	switch (r) {
	case CM_API_R_HEALTHZ:
	case CM_API_R_READYZ:
		return m == CM_API_GET || m == CM_API_HEAD;
	case CM_API_R_KV:
		return m != CM_API_POST;
	case CM_API_R_WATCH:
		return m == CM_API_GET;
	default:
		return m == CM_API_POST;
	}
}

int cm_api_route_parse(const char *method, const char *url, struct cm_api_target *out)
{
	if (method == NULL || url == NULL || out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	enum cm_api_method m;
	bool known_method = method_of(method, &m) == 0;
	int rv = -ENOENT;
	if (strncmp(url, "/v1/kv", 6) == 0) {
		out->route = CM_API_R_KV;
		rv = v1_path(url + 6, out);
	} else if (strncmp(url, "/v1/watch", 9) == 0) {
		out->route = CM_API_R_WATCH;
		rv = v1_path(url + 9, out);
	} else {
		for (size_t i = 0; i < sizeof(fixed_routes) / sizeof(fixed_routes[0]); i++)
			if (strcmp(url, fixed_routes[i].url) == 0) {
				out->route = fixed_routes[i].route;
				rv = 0;
			}
	}
	if (rv == -ENOENT)
		return rv;
	/* The method first: a DELETE of a bad path is a 405 on /v1/watch. */
	if (!known_method || !allowed(out->route, m))
		return -EPERM;
	out->method = m;
	return rv;
}

const char *cm_api_route_allow(const char *url)
{
	if (strncmp(url, "/v1/kv", 6) == 0)
		return KV_ALLOW;
	if (strncmp(url, "/v1/watch", 9) == 0)
		return WATCH_ALLOW;
	for (size_t i = 0; i < sizeof(fixed_routes) / sizeof(fixed_routes[0]); i++)
		if (strcmp(url, fixed_routes[i].url) == 0)
			return fixed_routes[i].allow;
	return "";
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t cm_api_unescape(char *s)
{
	size_t o = 0;
	for (size_t i = 0; s[i] != '\0'; i++) {
		int hi, lo;
		if (s[i] == '%' && (hi = hex_value(s[i + 1])) >= 0 && (lo = hex_value(s[i + 2])) >= 0 &&
		    (hi | lo) != 0) {
			s[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			s[o++] = s[i];
		}
	}
	s[o] = '\0';
	return o;
}

/* ---- numbers, headers, query ---------------------------------------------------- */

int cm_api_parse_u64(const char *s, size_t len, uint64_t *out)
{
	if (s == NULL || len == 0 || len > 20)
		return -EINVAL;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int cm_api_parse_if_match(const char *v, uint64_t *version)
{
	if (v == NULL)
		return -EINVAL;
	size_t n = strlen(v);
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
		return cm_api_parse_u64(v + 1, n - 2, version);
	return cm_api_parse_u64(v, n, version);
}

int cm_api_parse_token(const char *v, uint64_t *group, uint64_t *index)
{
	if (v == NULL)
		return -EINVAL;
	const char *colon = strchr(v, ':');
	if (colon == NULL)
		return -EINVAL;
	if (cm_api_parse_u64(v, (size_t)(colon - v), group) != 0 ||
	    cm_api_parse_u64(colon + 1, strlen(colon + 1), index) != 0)
		return -EINVAL;
	return 0;
}

void cm_api_query_init(struct cm_api_query *q)
{
	memset(q, 0, sizeof(*q));
	q->consistency = -1;
}

/* A flag: bare, or =1/true, or =0/false. */
static int flag(const char *value, bool *out)
{
	if (value == NULL || value[0] == '\0' || strcmp(value, "1") == 0 ||
	    strcmp(value, "true") == 0) {
		*out = true;
		return 0;
	}
	if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

int cm_api_query_add(struct cm_api_query *q, enum cm_api_route r, const char *key,
		     const char *value, char *err, size_t cap)
{
	int rv = -EINVAL;
	if (key == NULL) {
		snprintf(err, cap, "empty query argument");
		return -EINVAL;
	}
	if (r == CM_API_R_KV && strcmp(key, "list") == 0)
		rv = flag(value, &q->list);
	else if (r == CM_API_R_KV && strcmp(key, "recursive") == 0)
		rv = flag(value, &q->recursive);
	else if (r == CM_API_R_KV && strcmp(key, "dir") == 0) {
		rv = flag(value, &q->dir);
		q->mkdir = q->dir;
	} else if (r == CM_API_R_KV && strcmp(key, "consistency") == 0) {
		if (value != NULL && strcmp(value, "linearizable") == 0) {
			q->consistency = CM_READ_LINEARIZABLE;
			rv = 0;
		} else if (value != NULL && strcmp(value, "follower") == 0) {
			q->consistency = CM_READ_FOLLOWER;
			rv = 0;
		}
	} else if (r == CM_API_R_WATCH && strcmp(key, "from") == 0) {
		rv = value != NULL ? cm_api_parse_u64(value, strlen(value), &q->from) : -EINVAL;
	} else {
		snprintf(err, cap, "unknown query argument '%.40s'", key);
		return -EINVAL;
	}
	if (rv != 0)
		snprintf(err, cap, "bad value for query argument '%.40s'", key);
	return rv;
}

/* ---- base64 ------------------------------------------------------------------- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t cm_api_b64_enclen(size_t n)
{
	return (n + 2) / 3 * 4;
}

void cm_api_b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i = 0, o = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
}

/* The value of one base64 character, either alphabet; -1 if none. */
static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int cm_api_b64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen)
{
	/* Padding: up to two '=' at the end, and then the length is a multiple of 4. */
	size_t pad = 0;
	while (pad < 2 && len > pad && in[len - 1 - pad] == '=')
		pad++;
	if (pad > 0 && len % 4 != 0)
		return -EINVAL;
	size_t n = len - pad;
	if (n % 4 == 1)
		return -EINVAL; /* 6 bits cannot end a byte */
	size_t o = 0;
	uint32_t acc = 0;
	unsigned bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value((unsigned char)in[i]);
		if (v < 0)
			return -EINVAL;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* The bits left over must be zero (RFC 4648 3.5: canonical encoding). */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -EINVAL;
	*outlen = o;
	return 0;
}

/* ---- etcd ranges ---------------------------------------------------------------- */

bool cm_etcd_prefix_of(const struct cm_api_buf *key, const struct cm_api_buf *range_end,
		       size_t *plen)
{
	if (range_end->len == 0)
		return false;
	if (range_end->len == 1 && range_end->p[0] == 0 && key->len == 1 && key->p[0] == 0) {
		*plen = 0;
		return true;
	}
	/* range_end == key[0..n) with its last byte + 1, key[n..) all 0xff. */
	size_t n = range_end->len;
	if (key->len < n)
		return false;
	for (size_t i = n; i < key->len; i++)
		if (key->p[i] != 0xff)
			return false;
	if (memcmp(key->p, range_end->p, n - 1) != 0 || key->p[n - 1] == 0xff ||
	    (uint8_t)(key->p[n - 1] + 1) != range_end->p[n - 1])
		return false;
	*plen = key->len; /* the whole key is the prefix */
	return true;
}
