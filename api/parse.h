/* parse.h: confman-api's request parsing (route, query, headers, etcd JSON bodies), pure. */
#ifndef CONFMAN_API_PARSE_H
#define CONFMAN_API_PARSE_H

/*
 * Everything a client sends the gateway goes through these functions before
 * anything else looks at it. They hold no state, do no I/O, know nothing of
 * libuv or libmicrohttpd, and check every length: a fuzzer can call them
 * with arbitrary bytes (tests/fuzz/). Errors are negative errno values:
 *   -EINVAL        malformed input (the caller answers 400)
 *   -ENAMETOOLONG  a path over CM_PATH_MAX or a component over CM_NAME_MAX
 *   -EOPNOTSUPP    well-formed, but asks for something confman-api does not
 *                  implement (an etcd feature outside the subset: 501)
 *   -ENOENT        no such route (404);  -EPERM  method not allowed (405)
 *   -EMSGSIZE      more items than a bound allows (413)
 *   -ENOMEM
 * Where a function fills an error message (err, cap), it is one line,
 * NUL-terminated, meant for the client.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CM_API_TXN_MAX 16     /* compares, and ops per branch, of one txn */
#define CM_API_ERR_MAX 160    /* bytes of an error message, NUL included */

enum cm_api_route {
	CM_API_R_HEALTHZ = 1,
	CM_API_R_READYZ,
	CM_API_R_KV,         /* /v1/kv/PATH */
	CM_API_R_WATCH,      /* /v1/watch/PATH */
	CM_API_R_V3_PUT,     /* POST /v3/kv/put */
	CM_API_R_V3_RANGE,   /* POST /v3/kv/range */
	CM_API_R_V3_DELETE,  /* POST /v3/kv/deleterange */
	CM_API_R_V3_TXN,     /* POST /v3/kv/txn */
	/* Leases and locks (api/v3_lease.c, v3_lock.c): cm_etcd_parse_lease(). */
	CM_API_R_V3_LEASE_GRANT,     /* POST /v3/lease/grant */
	CM_API_R_V3_LEASE_REVOKE,    /* POST /v3/lease/revoke, /v3/kv/lease/revoke */
	CM_API_R_V3_LEASE_KEEPALIVE, /* POST /v3/lease/keepalive */
	CM_API_R_V3_LEASE_TTL,       /* POST /v3/lease/timetolive, /v3/kv/lease/timetolive */
	CM_API_R_V3_LEASE_LIST,      /* POST /v3/lease/leases, /v3/kv/lease/leases */
	CM_API_R_V3_LOCK,            /* POST /v3/lock/lock */
	CM_API_R_V3_UNLOCK,          /* POST /v3/lock/unlock */
};

/* A lease or lock route (cm_etcd_parse_lease), not a /v3/kv one. */
#define CM_API_R_IS_LEASE(r) ((r) >= CM_API_R_V3_LEASE_GRANT && (r) <= CM_API_R_V3_UNLOCK)

enum cm_api_method { CM_API_GET = 1, CM_API_HEAD, CM_API_PUT, CM_API_POST, CM_API_DELETE };

struct cm_api_target {
	enum cm_api_route route;
	enum cm_api_method method;
	const char *path; /* KV, WATCH: the Confman path, pointing into url; else NULL */
	uint32_t path_len;
};

/*
 * cm_api_route_parse - which endpoint method + url (the URL's path, already
 * percent-decoded, without the query) asks for.
 * @out: filled on success; out->path borrows from url.
 * Returns 0, -ENOENT (no such endpoint), -EPERM (the endpoint exists but
 * not with this method; cm_api_route_allow() names the allowed ones),
 * -EINVAL / -ENAMETOOLONG (a /v1 path that is not a valid Confman path:
 * "/v1/kv" and "/v1/kv/" name "/").
 */
int cm_api_route_parse(const char *method, const char *url, struct cm_api_target *out);

/*
 * cm_api_unescape - decode %XX escapes of s in place (what MHD calls for
 * the URL and the query), except %00, left as is so that a NUL never cuts
 * a path short (cm_api_route_parse refuses a path holding "%00"). '+' is
 * kept (a path may hold one). Returns the new length.
 */
size_t cm_api_unescape(char *s);

/* cm_api_route_allow - the Allow header of url's endpoint ("" if none). */
const char *cm_api_route_allow(const char *url);

/* The query arguments of /v1 requests. */
struct cm_api_query {
	bool list;        /* ?list: the children of a directory, as JSON */
	bool recursive;   /* DELETE ?recursive: a directory and all below it */
	bool dir;         /* DELETE ?dir: an empty directory (rmdir) */
	bool mkdir;       /* PUT ?dir: create a directory instead of a file */
	int consistency;  /* -1: default; else enum cm_consistency */
	uint64_t from;    /* WATCH ?from=INDEX (0: from now) */
};

/* cm_api_query_init - no arguments given. */
void cm_api_query_init(struct cm_api_query *q);

/*
 * cm_api_query_add - one key=value of the query string (value NULL for a
 * bare "?list"), for a request to route r.
 * Returns 0, or -EINVAL (unknown key for that route, or a bad value) with
 * a message in err.
 */
int cm_api_query_add(struct cm_api_query *q, enum cm_api_route r, const char *key,
		     const char *value, char *err, size_t cap);

/* cm_api_parse_u64 - len decimal digits, nothing else, no overflow. Returns 0, -EINVAL. */
int cm_api_parse_u64(const char *s, size_t len, uint64_t *out);

/* cm_api_parse_if_match - If-Match: VERSION or "VERSION" (an ETag). Returns 0, -EINVAL. */
int cm_api_parse_if_match(const char *v, uint64_t *version);

/*
 * cm_api_parse_token - a version token "GROUP:INDEX" (X-Confman-Token), as
 * the gateway hands them out. Returns 0, -EINVAL.
 */
int cm_api_parse_token(const char *v, uint64_t *group, uint64_t *index);

/* ---- base64 (RFC 4648; etcd's JSON gateway encodes keys and values so) ---- */

/* cm_api_b64_enclen - bytes cm_api_b64_encode writes for n input bytes, NUL excluded. */
size_t cm_api_b64_enclen(size_t n);

/* cm_api_b64_encode - standard alphabet, padded; out needs enclen(n) + 1 bytes. */
void cm_api_b64_encode(const uint8_t *in, size_t n, char *out);

/*
 * cm_api_b64_decode - standard or URL-safe alphabet, padding optional;
 * out needs len / 4 * 3 + 3 bytes. Returns 0, -EINVAL (a character outside
 * the alphabet, bad padding, a length no encoding has, nonzero unused bits).
 */
int cm_api_b64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen);

/* ---- etcd v3 JSON requests ---- */

struct cm_api_buf {
	uint8_t *p; /* owned, NUL-terminated (not counted), NULL when absent */
	size_t len;
};

struct cm_etcd_range {
	struct cm_api_buf key, range_end;
	uint64_t limit; /* 0: none */
	bool serializable, keys_only, count_only;
};

struct cm_etcd_put {
	struct cm_api_buf key, value;
	int64_t lease; /* 0: none; else 1..INT64_MAX (a txn refuses it: 501) */
};

struct cm_etcd_delete {
	struct cm_api_buf key, range_end;
	bool prev_kv;
};

enum cm_etcd_op_kind { CM_ETCD_OP_RANGE = 1, CM_ETCD_OP_PUT, CM_ETCD_OP_DELETE };

struct cm_etcd_op {
	enum cm_etcd_op_kind kind;
	struct cm_etcd_range range;
	struct cm_etcd_put put;
	struct cm_etcd_delete del;
};

/* Values of etcd's Compare.CompareTarget and Compare.CompareResult. */
enum cm_etcd_target { CM_ETCD_T_VERSION = 0, CM_ETCD_T_CREATE, CM_ETCD_T_MOD, CM_ETCD_T_VALUE };
enum cm_etcd_result { CM_ETCD_EQUAL = 0, CM_ETCD_GREATER, CM_ETCD_LESS, CM_ETCD_NOT_EQUAL };

struct cm_etcd_cmp {
	struct cm_api_buf key;
	enum cm_etcd_target target;
	enum cm_etcd_result result;
	int64_t operand;         /* VERSION, CREATE, MOD */
	struct cm_api_buf value; /* VALUE */
};

struct cm_etcd_txn {
	uint32_t n_cmp, n_success, n_failure;
	struct cm_etcd_cmp cmp[CM_API_TXN_MAX];
	struct cm_etcd_op success[CM_API_TXN_MAX];
	struct cm_etcd_op failure[CM_API_TXN_MAX];
};

struct cm_etcd_req {
	enum cm_api_route route; /* CM_API_R_V3_* */
	struct cm_etcd_range range;
	struct cm_etcd_put put;
	struct cm_etcd_delete del;
	struct cm_etcd_txn *txn; /* owned; TXN only */
};

/*
 * cm_etcd_parse - decode the JSON body of a /v3/kv request, the way etcd's
 * gateway does: bytes fields base64, int64 fields as JSON numbers or
 * decimal strings, enums as names or numbers, field names in proto
 * (range_end) or JSON (rangeEnd) spelling.
 * @r:    CM_API_R_V3_PUT, _RANGE, _DELETE or _TXN
 * @out:  filled on success; free with cm_etcd_req_free(). Untouched
 *        (nothing to free) on error.
 * Returns 0, -EINVAL (not JSON, not an object, a field of the wrong type,
 * bad base64, an unknown field, a missing key: etcd's own 400s),
 * -EOPNOTSUPP (leases, revisions, sorting, prev_kv on put, range_end in a
 * compare, ...: features outside the subset), -EMSGSIZE (more than
 * CM_API_TXN_MAX compares or ops), -ENOMEM; err holds the reason.
 */
int cm_etcd_parse(enum cm_api_route r, const char *body, size_t len, struct cm_etcd_req *out,
		  char *err, size_t cap);

/* cm_etcd_req_free - free what cm_etcd_parse allocated (r may be zeroed). */
void cm_etcd_req_free(struct cm_etcd_req *r);

/* A lease or lock request; the fields its route has, the others zero. */
struct cm_etcd_lease {
	int64_t id;            /* GRANT (0: the gateway picks), REVOKE, KEEPALIVE, TTL: ID */
	int64_t ttl;           /* GRANT: TTL, seconds */
	bool keys;             /* TTL: list the attached keys */
	struct cm_api_buf name; /* LOCK: name; UNLOCK: key */
	int64_t lease;         /* LOCK */
};

/*
 * cm_etcd_parse_lease - decode the JSON body of a lease or lock request
 * (route r: CM_API_R_IS_LEASE) as cm_etcd_parse does /v3/kv ones. Ids and
 * leases must be 0..INT64_MAX (etcd takes negative ones; Confman's ids
 * are positive), TTL any int64 (the handler bounds it); LOCK needs a name,
 * UNLOCK a key. Free out with cm_etcd_lease_free(); untouched on error.
 * Returns 0, -EINVAL, -ENOMEM; err holds the reason.
 */
int cm_etcd_parse_lease(enum cm_api_route r, const char *body, size_t len,
			struct cm_etcd_lease *out, char *err, size_t cap);
void cm_etcd_lease_free(struct cm_etcd_lease *l);

/*
 * cm_etcd_prefix_of - if [key, range_end) is "every key starting with P"
 * (range_end is P with its last byte incremented, after dropping trailing
 * 0xff bytes: etcd's prefix convention; or key "\0" and range_end "\0",
 * every key), store P's length in *plen (0 for every key) and return
 * true. An empty range_end (a single key) and any other range: false.
 */
bool cm_etcd_prefix_of(const struct cm_api_buf *key, const struct cm_api_buf *range_end,
		       size_t *plen);

#endif /* CONFMAN_API_PARSE_H */
