/* v3_lease.c: etcd's lease endpoints and put with a lease, on CM_OP_LEASE (see v3_lease.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "api/v3_lease.h"

/* ---- state and replies ------------------------------------------------------------ */

struct cm_gw_lease *cm_gw__lease_state(struct cm_gw_req *r)
{
	if (r->lease == NULL)
		r->lease = calloc(1, sizeof(*r->lease));
	return r->lease;
}

void cm_gw__v3_lease_free(struct cm_gw_req *r)
{
	struct cm_gw_lease *l = r->lease;
	if (l == NULL)
		return;
	cm_gw__lock_free(l);
	cm_etcd_lease_free(&l->q);
	for (uint32_t i = 0; i < l->n_prefixes; i++)
		free(l->prefixes[i]);
	free(l->prefixes);
	json_decref(l->keys);
	free(l);
	r->lease = NULL;
}

static void set_i64(json_t *o, const char *key, int64_t v)
{
	char s[24];
	if (v == 0)
		return; /* zero values are omitted, as etcd's gateway does */
	snprintf(s, sizeof(s), "%" PRId64, v);
	json_object_set_new_nocheck(o, key, json_string_nocheck(s));
}

/* o (a reply object, stolen) with the header of resp (NULL: the one kept in
 * r->lease) put first, as etcd orders it. */
void cm_gw__lease_header_reply(struct cm_gw_req *r, const struct cm_resp *resp, json_t *o)
{
	struct cm_resp kept = {0};
	if (resp == NULL && r->lease != NULL) {
		kept.group = r->lease->hdr_group;
		kept.token = r->lease->hdr_token;
		resp = &kept;
	}
	json_t *out = json_object();
	json_object_set_new_nocheck(out, "header", cm_gw__v3_header(r, resp, resp->token));
	json_object_update(out, o);
	json_decref(o);
	cm_gw__reply_json(r, MHD_HTTP_OK, out);
}

/* etcd's answer for an id it does not hold: 404 NotFound, but 500 Unknown
 * from the lock service, which wraps the error. */
void cm_gw__lease_not_found(struct cm_gw_req *r, bool as_lock)
{
	cm_gw__reply_error(r, as_lock ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_NOT_FOUND,
			   as_lock ? 2 : 5, "etcdserver: requested lease not found");
}

static void keep_header(struct cm_gw_lease *l, const struct cm_resp *resp)
{
	l->hdr_group = resp->group;
	l->hdr_token = resp->token;
}

static void lease_req(struct cm_req *cq, const char *path, uint32_t flags, uint64_t id)
{
	cm_gw__req_init(cq, CM_OP_LEASE, path, strlen(path));
	cq->flags = flags;
	cq->version = id;
}

static bool unknown_outcome(int err)
{
	return err == -EIO || err == -ETIMEDOUT;
}

/* ---- fan-out: one request to every group of the shard map ------------------------ */

static void fan_finish(struct cm_gw_req *r)
{
	struct cm_gw_lease *l = r->lease;
	if (l->fan_err != 0)
		cm_gw__reply_errno(r, l->fan_err, l->fan_err_resp);
	else
		l->fan_done(r);
}

/* Attached paths (one a line) to base64 strings in l->keys. */
static void add_keys(struct cm_gw_lease *l, const struct cm_bytes *v)
{
	const char *p = v->p, *end = v->p + v->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > 0) {
			char *b = malloc(cm_api_b64_enclen(n) + 1);
			if (b != NULL) {
				cm_api_b64_encode((const uint8_t *)p, n, b);
				json_array_append_new(l->keys, json_string_nocheck(b));
				free(b);
			}
		}
		p += n + 1;
	}
}

static void on_fan_part(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	struct cm_gw_lease *l = r->lease;
	if (err == 0) {
		if (l->n_ok++ == 0 && l->hdr_group == 0)
			keep_header(l, resp);
		if (l->keys != NULL)
			add_keys(l, &resp->value);
	} else if (err != -ENOENT && l->fan_err == 0) {
		l->fan_err = err; /* a part failed: the whole answer is that error */
		l->fan_err_resp = resp != NULL;
	}
	if (--l->pending == 0)
		fan_finish(r);
}

static void on_fan_shards(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done_ok(r, err, resp))
		return;
	struct cm_gw_lease *l = r->lease;
	if (resp->n_shards > CM_API_LEASE_FANOUT_MAX) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "more than %d shards",
				   CM_API_LEASE_FANOUT_MAX);
		return;
	}
	l->prefixes = calloc(resp->n_shards + 1u, sizeof(*l->prefixes));
	bool root_seen = false, oom = l->prefixes == NULL;
	for (uint32_t i = 0; !oom && i <= resp->n_shards; i++) {
		const struct cm_bytes *p = i < resp->n_shards ? &resp->shards[i].prefix : NULL;
		bool root = p == NULL || (p->len == 1 && p->p[0] == '/');
		if (p == NULL && root_seen)
			break;
		root_seen = root_seen || root;
		if (root && !l->fan_root)
			continue;
		/* The root is asked even when the map does not list it. */
		char *s = p != NULL ? strndup(p->p, p->len) : strdup(CM_API_LEASE_ROOT);
		oom = s == NULL;
		if (s != NULL)
			l->prefixes[l->n_prefixes++] = s;
	}
	if (oom) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return;
	}
	/* Counted before any is sent: a failed submit must not finish early. */
	l->pending = l->n_prefixes + 1;
	for (uint32_t i = 0; i < l->n_prefixes; i++) {
		struct cm_req cq;
		lease_req(&cq, l->prefixes[i], l->fan_flags, l->id);
		int rv = cm_gw__submit(r, &cq, on_fan_part);
		if (rv != 0) {
			l->pending--;
			if (l->fan_err == 0)
				l->fan_err = rv;
		}
	}
	if (--l->pending == 0)
		fan_finish(r);
}

/* Send op (flags) for l->id to every group (the root too if with_root),
 * then done(r), unless a group failed (not ENOENT): then its error. */
static void fan_out(struct cm_gw_req *r, uint32_t flags, bool with_root, cm_gw_lease_step done)
{
	struct cm_gw_lease *l = r->lease;
	l->fan_flags = flags;
	l->fan_root = with_root;
	l->fan_done = done;
	struct cm_req cq = {.op = CM_OP_SHARDS, .consistency = CM_READ_FOLLOWER};
	cm_gw__send(r, &cq, on_fan_shards);
}

/* ---- grant -------------------------------------------------------------------- */

static int random_id(uint64_t *id)
{
	uint64_t x = 0;
	while (x == 0) {
		if (getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x))
			return -EIO;
		x &= (uint64_t)CM_LEASE_ID_MAX;
	}
	*id = x;
	return 0;
}

static void grant_send(struct cm_gw_req *r);

static void grant_reply(struct cm_gw_req *r, const struct cm_resp *resp)
{
	struct cm_gw_lease *l = r->lease;
	json_t *o = json_object();
	set_i64(o, "ID", (int64_t)l->id);
	set_i64(o, "TTL", (int64_t)(l->ttl_ms / 1000u));
	cm_gw__lease_header_reply(r, resp, o);
}

static void on_grant(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	struct cm_gw_lease *l = r->lease;
	if (err == 0 || (err == -EEXIST && l->resent)) {
		grant_reply(r, resp); /* EEXIST after a resend: the first was applied */
		return;
	}
	if (!l->chosen && err == -EEXIST && ++l->tries < CM_API_LEASE_GRANT_TRIES &&
	    random_id(&l->id) == 0) {
		grant_send(r);
		return;
	}
	if (!l->chosen && unknown_outcome(err) && !l->resent) {
		l->resent = true;
		grant_send(r);
		return;
	}
	if (err == -EEXIST)
		cm_gw__reply_error(r, MHD_HTTP_PRECONDITION_FAILED, 9,
				   "etcdserver: lease already exists");
	else
		cm_gw__reply_errno(r, err, resp != NULL);
}

static void grant_send(struct cm_gw_req *r)
{
	struct cm_gw_lease *l = r->lease;
	struct cm_req cq;
	lease_req(&cq, CM_API_LEASE_ROOT, CM_LEASE_GRANT, l->id);
	cq.from_index = l->ttl_ms;
	cm_gw__send(r, &cq, on_grant);
}

static void v3_grant(struct cm_gw_req *r)
{
	struct cm_gw_lease *l = r->lease;
	int64_t ttl = l->q.ttl < CM_API_LEASE_TTL_MIN_S ? CM_API_LEASE_TTL_MIN_S : l->q.ttl;
	if (ttl > (int64_t)(CM_LEASE_TTL_MAX_MS / 1000u)) {
		cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 11, "etcdserver: too large lease TTL");
		return;
	}
	l->ttl_ms = (uint32_t)ttl * 1000u;
	l->chosen = l->q.id != 0;
	l->id = (uint64_t)l->q.id;
	if (!l->chosen && random_id(&l->id) != 0) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "no random id");
		return;
	}
	grant_send(r);
}

/* ---- keepalive ---------------------------------------------------------------- */

static void keepalive_reply(struct cm_gw_req *r, bool held)
{
	struct cm_gw_lease *l = r->lease;
	struct cm_resp kept = {.group = l->hdr_group, .token = l->hdr_token};
	json_t *res = json_object();
	json_object_set_new_nocheck(res, "header", cm_gw__v3_header(r, &kept, kept.token));
	set_i64(res, "ID", (int64_t)l->id);
	if (held)
		set_i64(res, "TTL", (int64_t)(l->root.mtime_ns / 1000));
	/* etcd's gateway streams keepalives: one {"result": ...} per message. */
	cm_gw__reply_json(r, MHD_HTTP_OK, json_pack("{s:o}", "result", res));
}

static void keepalive_done(struct cm_gw_req *r)
{
	keepalive_reply(r, true);
}

static void on_keepalive_root(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	struct cm_gw_lease *l = r->lease;
	if (err == -ENOENT) { /* etcd: 200 without a TTL (the lease is gone) */
		if (resp != NULL)
			keep_header(l, resp);
		keepalive_reply(r, false);
		return;
	}
	if (err != 0) {
		cm_gw__reply_errno(r, err, resp != NULL);
		return;
	}
	keep_header(l, resp);
	l->root = resp->attr;
	fan_out(r, CM_LEASE_KEEPALIVE, false, keepalive_done);
}

/* ---- timetolive --------------------------------------------------------------- */

static void ttl_done(struct cm_gw_req *r)
{
	struct cm_gw_lease *l = r->lease;
	json_t *o = json_object();
	set_i64(o, "ID", (int64_t)l->id);
	set_i64(o, "TTL", l->root.atime_ns > 0 ? l->root.atime_ns / 1000 : 0);
	set_i64(o, "grantedTTL", l->root.mtime_ns / 1000);
	if (l->keys != NULL && json_array_size(l->keys) > 0)
		json_object_set_nocheck(o, "keys", l->keys);
	cm_gw__lease_header_reply(r, NULL, o);
}

/* etcd's answer for a lease it does not hold: 200 with TTL -1. */
static void ttl_unknown(struct cm_gw_req *r, const struct cm_resp *resp)
{
	json_t *o = json_object();
	set_i64(o, "ID", (int64_t)r->lease->id);
	set_i64(o, "TTL", -1);
	cm_gw__lease_header_reply(r, resp, o);
}

static void on_ttl_root(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	struct cm_gw_lease *l = r->lease;
	if (err == -ENOENT) {
		ttl_unknown(r, resp);
		return;
	}
	if (err != 0) {
		cm_gw__reply_errno(r, err, resp != NULL);
		return;
	}
	keep_header(l, resp);
	l->root = resp->attr;
	if (!l->q.keys) {
		ttl_done(r);
		return;
	}
	l->keys = json_array();
	add_keys(l, &resp->value);
	fan_out(r, CM_LEASE_TTL, false, ttl_done);
}

/* ---- revoke: every group at once -------------------------------------------------- */

static void revoke_done(struct cm_gw_req *r)
{
	if (r->lease->n_ok == 0)
		cm_gw__lease_not_found(r, false); /* no group held it */
	else
		cm_gw__lease_header_reply(r, NULL, json_object());
}

/* ---- leases: the root group's list ---------------------------------------------- */

static void on_list(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done_ok(r, err, resp))
		return;
	json_t *arr = json_array();
	const char *p = resp->value.p, *end = p + resp->value.len;
	while (p < end) { /* "ID TTL_MS LEFT_MS KEYS" a line */
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		size_t k = 0;
		while (k < n && p[k] >= '0' && p[k] <= '9')
			k++;
		uint64_t id;
		if (k > 0 && cm_api_parse_u64(p, k, &id) == 0) {
			json_t *e = json_object();
			set_i64(e, "ID", (int64_t)id);
			json_array_append_new(arr, e);
		}
		p += n + 1;
	}
	json_t *o = json_object();
	if (json_array_size(arr) > 0)
		json_object_set_nocheck(o, "leases", arr);
	json_decref(arr);
	cm_gw__lease_header_reply(r, resp, o);
}

/* ---- ensure: the lease in another group ------------------------------------------ */

static void on_ensure_grant(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	/* EEXIST: the group holds it already (another request's ensure). An
	 * unknown outcome goes on too: the step's own ENOENT then answers. */
	if (err == 0 || err == -EEXIST || unknown_outcome(err))
		r->lease->then(r);
	else
		cm_gw__reply_errno(r, err, resp != NULL);
}

static void on_ensure_root(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	struct cm_gw_lease *l = r->lease;
	if (err == -ENOENT) {
		cm_gw__lease_not_found(r, l->lock_name != NULL);
		return;
	}
	if (err != 0) {
		cm_gw__reply_errno(r, err, resp != NULL);
		return;
	}
	struct cm_req cq;
	cm_gw__req_init(&cq, CM_OP_LEASE, l->ens_path, l->ens_len);
	cq.flags = CM_LEASE_GRANT;
	cq.version = l->id;
	cq.from_index = (uint64_t)resp->attr.mtime_ns; /* the root's TTL */
	cm_gw__send(r, &cq, on_ensure_grant);
}

void cm_gw__lease_ensure(struct cm_gw_req *r, const char *path, size_t len, cm_gw_lease_step then)
{
	struct cm_gw_lease *l = r->lease;
	l->ensured = true;
	l->ens_path = path;
	l->ens_len = len;
	l->then = then;
	struct cm_req cq;
	lease_req(&cq, CM_API_LEASE_ROOT, CM_LEASE_TTL, l->id);
	cm_gw__send(r, &cq, on_ensure_root);
}

/* ---- put with a lease ------------------------------------------------------------ */

static void put_send(struct cm_gw_req *r);

static void on_put(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	const struct cm_etcd_put *p = &r->etcd.put;
	if (err == 0)
		cm_gw__lease_header_reply(r, resp, json_object());
	else if (err == -ENOENT && !r->lease->ensured)
		cm_gw__lease_ensure(r, (const char *)p->key.p, p->key.len, put_send);
	else if (err == -ENOENT)
		cm_gw__lease_not_found(r, false);
	else
		cm_gw__reply_errno(r, err, resp != NULL);
}

static void put_send(struct cm_gw_req *r)
{
	const struct cm_etcd_put *p = &r->etcd.put;
	struct cm_req cq;
	cm_gw__req_init(&cq, CM_OP_PUT, p->key.p, p->key.len);
	cq.value.p = p->value.p != NULL ? (const char *)p->value.p : "";
	cq.value.len = (uint32_t)p->value.len;
	cq.flags = CM_PUT_LEASE;
	cq.from_index = (uint64_t)p->lease;
	cm_gw__send(r, &cq, on_put);
}

void cm_gw__v3_put_lease(struct cm_gw_req *r)
{
	struct cm_gw_lease *l = cm_gw__lease_state(r);
	if (l == NULL) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return;
	}
	l->id = (uint64_t)r->etcd.put.lease;
	put_send(r);
}

/* ---- dispatch -------------------------------------------------------------------- */

void cm_gw__v3_lease(struct cm_gw_req *r)
{
	struct cm_gw_lease *l = cm_gw__lease_state(r);
	if (l == NULL) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return;
	}
	char err[CM_API_ERR_MAX] = "";
	int rv = cm_etcd_parse_lease(r->t.route, r->body, r->len, &l->q, err, sizeof(err));
	if (rv != 0) {
		if (rv == -ENOMEM)
			cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		else
			cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 3, "%s", err);
		return;
	}
	l->id = (uint64_t)l->q.id;
	struct cm_req cq;
	switch (r->t.route) {
	case CM_API_R_V3_LEASE_GRANT:
		v3_grant(r);
		return;
	case CM_API_R_V3_LEASE_LIST:
		lease_req(&cq, CM_API_LEASE_ROOT, CM_LEASE_LIST, 0);
		cm_gw__send(r, &cq, on_list);
		return;
	case CM_API_R_V3_LOCK:
		cm_gw__v3_lock(r);
		return;
	case CM_API_R_V3_UNLOCK:
		cm_gw__v3_unlock(r);
		return;
	default:
		break;
	}
	if (l->id == 0) { /* etcd: no such lease; as Confman ids start at 1 */
		if (r->t.route == CM_API_R_V3_LEASE_KEEPALIVE)
			keepalive_reply(r, false);
		else if (r->t.route == CM_API_R_V3_LEASE_TTL)
			ttl_unknown(r, NULL);
		else
			cm_gw__lease_not_found(r, false);
		return;
	}
	switch (r->t.route) {
	case CM_API_R_V3_LEASE_REVOKE:
		fan_out(r, CM_LEASE_REVOKE, true, revoke_done);
		return;
	case CM_API_R_V3_LEASE_KEEPALIVE:
		lease_req(&cq, CM_API_LEASE_ROOT, CM_LEASE_KEEPALIVE, l->id);
		cm_gw__send(r, &cq, on_keepalive_root);
		return;
	case CM_API_R_V3_LEASE_TTL:
		lease_req(&cq, CM_API_LEASE_ROOT, CM_LEASE_TTL, l->id);
		cm_gw__send(r, &cq, on_ttl_root);
		return;
	default:
		cm_gw__reply_error(r, MHD_HTTP_NOT_FOUND, 5, "no such endpoint");
		return;
	}
}
