/* v3.c: the etcd v3 JSON-gateway subset: put, single-key range and deleterange, dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/gw.h"
#include "confman/path.h"

/*
 * Key mapping: an etcd key is a Confman path, byte for byte. A key written
 * (put, deleterange, txn) must be a valid absolute path ("/a/b": no "//",
 * ".", "..", trailing '/'), else 400. A key read that is no valid path
 * names nothing Confman can hold, so a range of it is empty. Prefix ranges
 * ("/a/", or "/a/b" for /a/b, /a/b2, /a/b/c ...) walk the tree (v3_walk.c).
 * Confman directories are not keys: a range never returns one.
 *
 * Header fields: cluster_id is FNV-1a of the cluster id; member_id is the
 * Confman group (shard) that answered; revision is that replica's applied
 * index (the version token); raft_term is the highest term the readiness
 * probe saw. mod_revision / create_revision are the node's mod_index /
 * create_index (Raft log indexes of its group), version its version.
 */

json_t *cm_gw__v3_u64(uint64_t v)
{
	char s[24];
	snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
	return json_string_nocheck(s);
}

/* Zero values are omitted, as etcd's gateway does. */
static void set_u64(json_t *o, const char *key, uint64_t v)
{
	if (v != 0)
		json_object_set_new_nocheck(o, key, cm_gw__v3_u64(v));
}

json_t *cm_gw__v3_header(struct cm_gw_req *r, const struct cm_resp *resp, uint64_t revision)
{
	json_t *h = json_object();
	if (h == NULL)
		return NULL;
	set_u64(h, "cluster_id", r->gw->sh->cluster_id);
	set_u64(h, "member_id", resp != NULL ? resp->group : 0);
	set_u64(h, "revision", revision);
	set_u64(h, "raft_term", atomic_load(&r->gw->sh->term));
	return h;
}

static json_t *b64_string(const void *p, size_t n)
{
	char stack[512];
	size_t need = cm_api_b64_enclen(n) + 1;
	char *b = need <= sizeof(stack) ? stack : malloc(need);
	if (b == NULL)
		return NULL;
	cm_api_b64_encode(p, n, b);
	json_t *s = json_stringn_nocheck(b, need - 1);
	if (b != stack)
		free(b);
	return s;
}

json_t *cm_gw__v3_kv(const char *key, size_t klen, const struct cm_attr *a, const void *value,
		     size_t vlen, bool with_value)
{
	json_t *kv = json_object();
	if (kv == NULL)
		return NULL;
	json_object_set_new_nocheck(kv, "key", b64_string(key, klen));
	set_u64(kv, "create_revision", a->create_index);
	set_u64(kv, "mod_revision", a->mod_index);
	set_u64(kv, "version", a->version);
	if (with_value && vlen > 0)
		json_object_set_new_nocheck(kv, "value", b64_string(value, vlen));
	return kv;
}

static bool valid_path(const struct cm_api_buf *k)
{
	return k->len > 0 && k->len <= CM_PATH_MAX &&
	       cm_path_validate((const char *)k->p, (uint32_t)k->len) == 0;
}

static void reply_bad_key(struct cm_gw_req *r, const struct cm_api_buf *k)
{
	if (k->len > CM_PATH_MAX || (k->len > 0 && cm_path_validate((const char *)k->p,
								    (uint32_t)k->len) == -ENAMETOOLONG))
		cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 3, "key too long for a Confman path");
	else
		cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 3,
				   "key must be an absolute Confman path such as /a/b "
				   "(no //, ., .., trailing /)");
}

/* A reply object holding the header of resp (NULL: revision 0). */
static json_t *with_header(struct cm_gw_req *r, const struct cm_resp *resp)
{
	json_t *o = json_object();
	json_object_set_new_nocheck(o, "header",
				    cm_gw__v3_header(r, resp, resp != NULL ? resp->token : 0));
	return o;
}

/* A reply of just the header (an empty range, a deleterange of nothing). */
static void reply_header_only(struct cm_gw_req *r, const struct cm_resp *resp)
{
	cm_gw__reply_json(r, MHD_HTTP_OK, with_header(r, resp));
}

/*
 * The end of a one-key callback: absent (the key is not there, which etcd
 * answers with an empty result) replies just the header, another error its
 * status. True when r has been answered.
 */
static bool replied_error(struct cm_gw_req *r, int err, bool absent, const struct cm_resp *resp)
{
	if (absent) {
		reply_header_only(r, resp);
		return true;
	}
	if (err == 0)
		return false;
	cm_gw__reply_errno(r, err, resp != NULL);
	return true;
}

/* Only prefix ranges have a range_end confman-api serves: else answer 501. */
static bool prefix_supported(struct cm_gw_req *r, const struct cm_api_buf *key,
			     const struct cm_api_buf *range_end)
{
	size_t plen;
	if (cm_etcd_prefix_of(key, range_end, &plen))
		return true;
	cm_gw__reply_error(r, MHD_HTTP_NOT_IMPLEMENTED, 12,
			   "confman-api serves single keys and prefix ranges only");
	return false;
}

/* ---- put ---------------------------------------------------------------------- */

static void on_put(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (cm_gw__done_ok(r, err, resp))
		reply_header_only(r, resp);
}

static void v3_put(struct cm_gw_req *r)
{
	const struct cm_etcd_put *p = &r->etcd.put;
	if (!valid_path(&p->key)) {
		reply_bad_key(r, &p->key);
		return;
	}
	if (p->value.len > UINT32_MAX) {
		cm_gw__reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, 3, "value too large");
		return;
	}
	if (p->lease != 0) {
		cm_gw__v3_put_lease(r);
		return;
	}
	struct cm_req cq;
	cm_gw__req_init(&cq, CM_OP_PUT, p->key.p, p->key.len);
	cq.value.p = p->value.p != NULL ? (const char *)p->value.p : "";
	cq.value.len = (uint32_t)p->value.len;
	cm_gw__send(r, &cq, on_put);
}

/* ---- range of one key ----------------------------------------------------------- */

static void on_range_one(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	const struct cm_etcd_range *q = &r->etcd.range;
	if (err == 0 && resp->has_attr && S_ISDIR(resp->attr.mode))
		err = -EISDIR; /* a directory is no key */
	if (replied_error(r, err, err == -ENOENT || err == -EISDIR || err == -ENOTDIR, resp))
		return;
	json_t *o = with_header(r, resp);
	if (!q->count_only) {
		json_t *kvs = json_array();
		json_array_append_new(kvs, cm_gw__v3_kv((const char *)q->key.p, q->key.len,
							&resp->attr, resp->value.p,
							resp->value.len, !q->keys_only));
		json_object_set_new_nocheck(o, "kvs", kvs);
	}
	json_object_set_new_nocheck(o, "count", cm_gw__v3_u64(1));
	cm_gw__reply_json(r, MHD_HTTP_OK, o);
}

static void v3_range(struct cm_gw_req *r)
{
	const struct cm_etcd_range *q = &r->etcd.range;
	if (q->range_end.len > 0) {
		if (prefix_supported(r, &q->key, &q->range_end))
			cm_gw__v3_walk(r, false);
		return;
	}
	if (!valid_path(&q->key)) {
		reply_header_only(r, NULL);
		return;
	}
	struct cm_req cq;
	cm_gw__req_init(&cq, CM_OP_GET, q->key.p, q->key.len);
	cq.consistency =
		cm_gw__consistency(r, q->serializable ? CM_READ_FOLLOWER : CM_READ_LINEARIZABLE);
	cm_gw__send(r, &cq, on_range_one);
}

/* ---- deleterange of one key ---------------------------------------------------------- */

static void on_delete_one(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	if (replied_error(r, err, err == -ENOENT || err == -EISDIR, resp))
		return; /* absent: nothing deleted */
	json_t *o = with_header(r, resp);
	json_object_set_new_nocheck(o, "deleted", cm_gw__v3_u64(1));
	cm_gw__reply_json(r, MHD_HTTP_OK, o);
}

static void v3_delete(struct cm_gw_req *r)
{
	const struct cm_etcd_delete *d = &r->etcd.del;
	if (d->range_end.len > 0) {
		if (!prefix_supported(r, &d->key, &d->range_end))
			return;
		if (d->prev_kv) {
			cm_gw__reply_error(r, MHD_HTTP_NOT_IMPLEMENTED, 12,
					   "prev_kv on a prefix deleterange is not supported");
			return;
		}
		cm_gw__v3_walk(r, true);
		return;
	}
	if (!valid_path(&d->key)) {
		reply_bad_key(r, &d->key);
		return;
	}
	if (d->prev_kv) {
		cm_gw__v3_delete_prev(r);
		return;
	}
	struct cm_req cq;
	cm_gw__req_init(&cq, CM_OP_DELETE, d->key.p, d->key.len);
	cm_gw__send(r, &cq, on_delete_one);
}

/* ---- dispatch ---------------------------------------------------------------- */

void cm_gw__v3(struct cm_gw_req *r)
{
	if (CM_API_R_IS_LEASE(r->t.route)) {
		cm_gw__v3_lease(r);
		return;
	}
	char err[CM_API_ERR_MAX] = "";
	int rv = cm_etcd_parse(r->t.route, r->body, r->len, &r->etcd, err, sizeof(err));
	if (rv == -EOPNOTSUPP) {
		cm_gw__reply_error(r, MHD_HTTP_NOT_IMPLEMENTED, 12, "%s", err);
		return;
	}
	if (rv == -ENOMEM) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return;
	}
	if (rv != 0) {
		cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 3, "%s", err);
		return;
	}
	switch (r->t.route) {
	case CM_API_R_V3_PUT:
		v3_put(r);
		return;
	case CM_API_R_V3_RANGE:
		v3_range(r);
		return;
	case CM_API_R_V3_DELETE:
		v3_delete(r);
		return;
	case CM_API_R_V3_TXN:
		cm_gw__v3_txn(r);
		return;
	default:
		cm_gw__reply_error(r, MHD_HTTP_NOT_FOUND, 5, "no such endpoint");
		return;
	}
}
