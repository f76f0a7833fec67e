/* token.c: bearer tokens for the gateway's callers, kept in the meta group.
 *
 * A token is "ID.SECRET" (16 and 64 hex digits), made by `confmanctl token
 * create` from gnutls_rnd: the servers never see it at creation, only its
 * SHA-256. The meta group's "/t/ID" file holds "HASH EXPIRES USER
 * [GROUP...]" (EXPIRES: unix seconds, 0 never), written create-only, so an
 * id is taken once; revoking deletes the file. Creating, revoking and
 * listing need admin on "/" (acl.c); resolving a token to its identity is
 * for trusted proxies only (the gateway): anyone else could use it to test
 * guessed tokens. Resolving reads this node's meta replica (the client
 * library sends CM_OP_TOKEN to the meta leader), so a revoke bites as soon
 * as it is applied there.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/tls.h"
#include "server/kv.h"
#include "server/log.h"
#include "server/node.h"

#define TOKEN_DIR "/t"
#define ID_HEX 16
#define HASH_HEX 64
#define TOKEN_LEN (ID_HEX + 1 + 64) /* "ID.SECRET" */
#define LINE_MAX_ (HASH_HEX + 24 + CM_AS_MAX)

static bool hex_ok(const char *p, size_t len)
{
	for (size_t k = 0; k < len; k++)
		if (!((p[k] >= '0' && p[k] <= '9') || (p[k] >= 'a' && p[k] <= 'f')))
			return false;
	return true;
}

/* A stored line "HASH EXPIRES USER [GROUP...]": where the identity starts. */
static int parse_line(const char *p, uint32_t len, uint64_t *expires, uint32_t *who_off)
{
	if (len < HASH_HEX + 4 || !hex_ok(p, HASH_HEX) || p[HASH_HEX] != ' ')
		return -EINVAL;
	uint32_t k = HASH_HEX + 1;
	uint64_t v = 0;
	for (; k < len && p[k] >= '0' && p[k] <= '9' && v < (UINT64_MAX / 10 - 9); k++)
		v = v * 10 + (uint64_t)(p[k] - '0');
	if (k == HASH_HEX + 1 || k >= len || p[k] != ' ')
		return -EINVAL;
	*expires = v;
	*who_off = k + 1;
	struct cm_acl_names nm;
	struct cm_acl_who who;
	return cm_acl_who_parse(p + k + 1, len - k - 1, &nm, &who);
}

static void token_path(char *buf, const char *id)
{
	snprintf(buf, 32, TOKEN_DIR "/%.*s", ID_HEX, id);
}

static void reply_text(struct cm_node *n, struct cm_conn *c, const struct cm_req *req,
		       const char *p, size_t len)
{
	struct cm_resp r;
	cm__resp_init(n, NULL, req, &r);
	r.has_attr = true;
	r.value = (struct cm_bytes){p, (uint32_t)len};
	cm_net_reply(c, &r);
}

/* create: value "ID HASH EXPIRES USER [GROUP...]". */
static int token_create(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	const char *v = req->value.p;
	uint32_t len = req->value.len, off;
	uint64_t exp;
	if (len <= ID_HEX + 1 || len > ID_HEX + 1 + LINE_MAX_ || !hex_ok(v, ID_HEX) ||
	    v[ID_HEX] != ' ' || parse_line(v + ID_HEX + 1, len - ID_HEX - 1, &exp, &off) != 0)
		return -EINVAL;
	char path[32];
	token_path(path, v);
	struct cm_req put = {
		.id = req->id, .op = CM_OP_PUT, .flags = CM_PUT_CREATE, .mode = S_IFREG | 0600,
		.path = {path, (uint32_t)strlen(path)},
		.value = {v + ID_HEX + 1, len - ID_HEX - 1},
	};
	cm_log_info("token: create %.*s for %.*s", ID_HEX, v, (int)(len - ID_HEX - 1 - off),
		    v + ID_HEX + 1 + off);
	cm__req_write(n, &n->groups[0], c, &put);
	return 0;
}

static int token_revoke(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	if (req->value.len != ID_HEX || !hex_ok(req->value.p, ID_HEX))
		return -EINVAL;
	char path[32];
	token_path(path, req->value.p);
	struct cm_req del = {.id = req->id, .op = CM_OP_DELETE,
			     .path = {path, (uint32_t)strlen(path)}};
	cm_log_info("token: revoke %.*s", ID_HEX, req->value.p);
	cm__req_write(n, &n->groups[0], c, &del);
	return 0;
}

struct list_ctx {
	struct cm_node *n;
	MDB_txn *txn;
	char *buf; /* owned */
	size_t len, cap;
};

/* One "ID EXPIRES USER [GROUP...]" line per token: never its hash. */
static int list_one(void *arg, struct cm_bytes name, const struct cm_attr *attr)
{
	struct list_ctx *l = arg;
	(void)attr;
	char path[32];
	if (name.len != ID_HEX)
		return 0;
	token_path(path, name.p);
	struct cm_attr a;
	struct cm_bytes v;
	uint64_t exp;
	uint32_t off;
	if (cm_kv_get(l->n->store, l->txn, CM_META_GROUP,
		      (struct cm_bytes){path, (uint32_t)strlen(path)}, &a, &v) != 0 ||
	    parse_line(v.p, v.len, &exp, &off) != 0)
		return 0;
	size_t need = ID_HEX + 24 + (v.len - off) + 2;
	if (l->len + need > l->cap) {
		size_t cap = (l->cap + need) * 2;
		if (cap > CM_DUMP_CHUNK)
			return -EFBIG;
		char *b = realloc(l->buf, cap);
		if (b == NULL)
			return -ENOMEM;
		l->buf = b;
		l->cap = cap;
	}
	l->len += (size_t)snprintf(l->buf + l->len, l->cap - l->len, "%.*s %" PRIu64 " %.*s\n",
				   ID_HEX, name.p, exp, (int)(v.len - off), v.p + off);
	return 0;
}

static int token_list(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct list_ctx l = {.n = n};
	int rv = cm_store_txn_begin(n->store, false, &l.txn);
	if (rv != 0)
		return rv;
	rv = cm_kv_list(n->store, l.txn, CM_META_GROUP,
			(struct cm_bytes){TOKEN_DIR, sizeof(TOKEN_DIR) - 1}, list_one, &l);
	cm_store_txn_abort(l.txn);
	if (rv == 0 || rv == -ENOENT)
		reply_text(n, c, req, l.buf ? l.buf : "", l.len);
	free(l.buf);
	return rv == -ENOENT ? 0 : rv;
}

/* Equal hex digests, in time that does not depend on where they differ. */
static bool same_hash(const char *a, const char *b)
{
	unsigned diff = 0;
	for (size_t k = 0; k < HASH_HEX; k++)
		diff |= (unsigned)(a[k] ^ b[k]);
	return diff == 0;
}

/* resolve: value = the token; the identity it stands for, if in force. */
static int token_resolve(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	const char *t = req->value.p;
	if (req->value.len != TOKEN_LEN || !hex_ok(t, ID_HEX) || t[ID_HEX] != '.')
		return -ENOENT;
	char path[32], hash[65];
	token_path(path, t);
	if (cm_tls_sha256_hex(t, req->value.len, hash) != 0)
		return -EIO;
	MDB_txn *txn;
	int rv = cm_store_txn_begin(n->store, false, &txn);
	if (rv != 0)
		return rv;
	struct cm_attr a;
	struct cm_bytes v;
	uint64_t exp = 0;
	uint32_t off = 0;
	rv = cm_kv_get(n->store, txn, CM_META_GROUP,
		       (struct cm_bytes){path, (uint32_t)strlen(path)}, &a, &v);
	if (rv == 0 && (parse_line(v.p, v.len, &exp, &off) != 0 || !same_hash(v.p, hash)))
		rv = -ENOENT;
	if (rv == 0 && exp != 0 && (uint64_t)time(NULL) >= exp)
		rv = -ENOENT; /* expired: as if it never was */
	if (rv == 0)
		reply_text(n, c, req, v.p + off, v.len - off);
	cm_store_txn_abort(txn);
	return rv == -ENOTDIR ? -ENOENT : rv;
}

void cm__token_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	int rv;
	switch (req->flags) {
	case CM_TOKEN_CREATE: rv = token_create(n, c, req); break;
	case CM_TOKEN_REVOKE: rv = token_revoke(n, c, req); break;
	case CM_TOKEN_LIST: rv = token_list(n, c, req); break;
	case CM_TOKEN_RESOLVE: {
		const struct cm_identity *id = cm_conn_identity(c);
		bool insecure = id == NULL || id->insecure;
		if (!insecure && !cm__acl_proxy(n, id)) {
			cm_log_warn("token: %s may not resolve tokens (not in [cluster] proxies)",
				    id->user[0] ? id->user : "?");
			rv = -EACCES;
		} else {
			rv = token_resolve(n, c, req);
		}
		break;
	}
	default: rv = -EINVAL;
	}
	if (rv != 0)
		cm__reply_err(n, NULL, c, req, rv);
}
