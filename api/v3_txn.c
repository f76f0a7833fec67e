/* v3_txn.c: etcd txn on one key (and deleterange with prev_kv): read, compare, CAS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/gw.h"
#include "confman/path.h"

/*
 * Confman has compare-and-set on one node's version, not multi-key
 * transactions. A txn is served when every compare and every operation
 * names the same key K (no range_end) and each branch holds at most one
 * write (put or delete): the common etcd idioms (create if absent, CAS on
 * version or mod_revision, read-modify-write, delete if unchanged). Other
 * txns get 501.
 *
 * The algorithm, linearizable:
 *   1. GET K, linearizable: K's state S (absent, or version, create and
 *      mod index, value);
 *   2. evaluate the compares against S, choose the branch;
 *   3. if the branch writes, send the write with CM_PUT_IF_MOD =
 *      S.mod_index (0: absent). It applies only if K is still exactly S, so
 *      the compares still hold at the write's index: the txn takes effect
 *      there. -ECANCELED means K changed in between: back to 1, at most
 *      CM_API_CAS_TRIES rounds (then 503: contention);
 *      Not CM_PUT_IF_VERSION: a version restarts at 1 when K is deleted and
 *      re-created, so a CAS on it passed against an incarnation created
 *      after S (MOD, CREATE and VALUE compares then held on a state they
 *      were never evaluated on). A mod_index is a log index of K's group:
 *      it never repeats, whatever happens to K;
 *   4. a branch without a write takes effect at the GET's index.
 * Range operations before the write see S, after it the written state.
 */

struct cm_gw_txn {
	const struct cm_etcd_op *ops; /* borrowed from r->etcd: the chosen branch */
	uint32_t n_ops;
	int write; /* index of the branch's write in ops, -1: none */
	bool succeeded;
	bool prev_kv_delete; /* a deleterange with prev_kv, not a txn */
	unsigned round;
	const struct cm_api_buf *key;
	/* S, from the GET */
	bool exists;
	uint64_t cas_mod;     /* the node's mod_index, a directory's too (0: absent) */
	uint64_t cas_version; /* its version: only for --test-txn-cas-version */
	struct cm_attr attr;
	char *value; /* owned */
	uint32_t vlen;
	uint64_t group, revision;
	/* after the write */
	struct cm_attr new_attr;
	uint64_t wrevision;
};

static void txn_read(struct cm_gw_req *r);

static void txn_state_free(struct cm_gw_txn *t)
{
	free(t->value);
	t->value = NULL;
	t->vlen = 0;
	t->exists = false;
}

void cm_gw__v3_txn_free(struct cm_gw_txn *t)
{
	txn_state_free(t);
	free(t);
}

static bool same_key(const struct cm_api_buf *a, const struct cm_api_buf *b)
{
	return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

static const struct cm_api_buf *op_key(const struct cm_etcd_op *op, bool *has_end)
{
	switch (op->kind) {
	case CM_ETCD_OP_RANGE:
		*has_end = op->range.range_end.len > 0;
		return &op->range.key;
	case CM_ETCD_OP_PUT:
		*has_end = false;
		return &op->put.key;
	default:
		*has_end = op->del.range_end.len > 0;
		return &op->del.key;
	}
}

/* The txn's one key, or NULL (and a message) when it is outside the subset. */
static const struct cm_api_buf *check_txn(const struct cm_etcd_txn *t, const char **why)
{
	const struct cm_api_buf *k = NULL;
	*why = "confman-api serves txns whose compares and operations all name one key";
	for (uint32_t i = 0; i < t->n_cmp; i++) {
		if (k != NULL && !same_key(k, &t->cmp[i].key))
			return NULL;
		k = &t->cmp[i].key;
	}
	const struct cm_etcd_op *br[2] = {t->success, t->failure};
	uint32_t nb[2] = {t->n_success, t->n_failure};
	for (int b = 0; b < 2; b++) {
		int writes = 0;
		for (uint32_t i = 0; i < nb[b]; i++) {
			bool has_end;
			const struct cm_api_buf *ok = op_key(&br[b][i], &has_end);
			if (has_end || (k != NULL && !same_key(k, ok)))
				return NULL;
			k = ok;
			writes += br[b][i].kind != CM_ETCD_OP_RANGE;
			if (br[b][i].kind == CM_ETCD_OP_DELETE && br[b][i].del.prev_kv) {
				*why = "prev_kv in a txn is not supported by confman-api";
				return NULL;
			}
		}
		if (writes > 1) {
			*why = "confman-api serves at most one write per txn branch";
			return NULL;
		}
	}
	return k;
}

static int cmp_i64(int64_t a, int64_t b)
{
	return (a > b) - (a < b);
}

static bool compare_holds(const struct cm_gw_txn *t, const struct cm_etcd_cmp *c)
{
	int d;
	switch (c->target) {
	case CM_ETCD_T_VERSION:
		d = cmp_i64(t->exists ? (int64_t)t->attr.version : 0, c->operand);
		break;
	case CM_ETCD_T_CREATE:
		d = cmp_i64(t->exists ? (int64_t)t->attr.create_index : 0, c->operand);
		break;
	case CM_ETCD_T_MOD:
		d = cmp_i64(t->exists ? (int64_t)t->attr.mod_index : 0, c->operand);
		break;
	default: {
		if (!t->exists)
			return false; /* etcd: a value compare on a missing key fails */
		size_t n = t->vlen < c->value.len ? t->vlen : c->value.len;
		int m = n > 0 ? memcmp(t->value, c->value.p, n) : 0;
		d = m != 0 ? (m > 0) - (m < 0) : (t->vlen > c->value.len) - (t->vlen < c->value.len);
		break;
	}
	}
	switch (c->result) {
	case CM_ETCD_EQUAL:
		return d == 0;
	case CM_ETCD_GREATER:
		return d > 0;
	case CM_ETCD_LESS:
		return d < 0;
	default:
		return d != 0;
	}
}

/* ---- the reply ------------------------------------------------------------------ */

static json_t *range_resp(struct cm_gw_req *r, const struct cm_etcd_range *q, bool exists,
			  const struct cm_attr *a, const char *value, uint32_t vlen, uint64_t rev)
{
	json_t *o = json_object();
	json_t *h = json_object();
	if (rev != 0)
		json_object_set_new_nocheck(h, "revision", cm_gw__v3_u64(rev));
	json_object_set_new_nocheck(o, "header", h);
	(void)r;
	if (exists) {
		if (!q->count_only) {
			json_t *kvs = json_array();
			json_array_append_new(kvs, cm_gw__v3_kv((const char *)q->key.p, q->key.len, a,
								value, vlen, !q->keys_only));
			json_object_set_new_nocheck(o, "kvs", kvs);
		}
		json_object_set_new_nocheck(o, "count", cm_gw__v3_u64(1));
	}
	return o;
}

static void txn_reply(struct cm_gw_req *r)
{
	struct cm_gw_txn *t = r->txn;
	bool wrote = t->write >= 0 && t->wrevision != 0;
	uint64_t rev = wrote ? t->wrevision : t->revision;
	struct cm_resp hdr;
	memset(&hdr, 0, sizeof(hdr));
	hdr.group = t->group;
	json_t *o = json_object();
	json_object_set_new_nocheck(o, "header", cm_gw__v3_header(r, &hdr, rev));
	if (t->prev_kv_delete) {
		if (wrote) {
			json_object_set_new_nocheck(o, "deleted", cm_gw__v3_u64(1));
			json_t *kvs = json_array();
			json_array_append_new(kvs, cm_gw__v3_kv((const char *)t->key->p, t->key->len,
								&t->attr, t->value, t->vlen, true));
			json_object_set_new_nocheck(o, "prev_kvs", kvs);
		}
		cm_gw__reply_json(r, MHD_HTTP_OK, o);
		return;
	}
	if (t->succeeded)
		json_object_set_new_nocheck(o, "succeeded", json_true());
	json_t *resps = json_array();
	for (uint32_t i = 0; i < t->n_ops; i++) {
		const struct cm_etcd_op *op = &t->ops[i];
		bool after = wrote && (int)i > t->write;
		json_t *one = json_object(), *inner;
		if (op->kind == CM_ETCD_OP_RANGE) {
			bool exists = after ? t->ops[t->write].kind == CM_ETCD_OP_PUT : t->exists;
			const struct cm_attr *a = after ? &t->new_attr : &t->attr;
			const struct cm_etcd_put *p = &t->ops[t->write >= 0 ? t->write : 0].put;
			inner = range_resp(r, &op->range, exists, a,
					   after ? (const char *)p->value.p : t->value,
					   after ? (uint32_t)p->value.len : t->vlen, rev);
			json_object_set_new_nocheck(one, "response_range", inner);
		} else {
			inner = json_object();
			json_t *h = json_object();
			json_object_set_new_nocheck(h, "revision", cm_gw__v3_u64(rev));
			json_object_set_new_nocheck(inner, "header", h);
			bool is_put = op->kind == CM_ETCD_OP_PUT;
			if (!is_put && wrote)
				json_object_set_new_nocheck(inner, "deleted", cm_gw__v3_u64(1));
			json_object_set_new_nocheck(one, is_put ? "response_put" : "response_delete_range",
						    inner);
		}
		json_array_append_new(resps, one);
	}
	if (json_array_size(resps) > 0)
		json_object_set_new_nocheck(o, "responses", resps);
	else
		json_decref(resps);
	cm_gw__reply_json(r, MHD_HTTP_OK, o);
}

/* ---- steps ------------------------------------------------------------------ */

static void on_write(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	struct cm_gw_txn *t = r->txn;
	if (err == -ECANCELED && resp != NULL) {
		/* K changed since the GET: compare again on its new state. */
		if (++t->round < CM_API_CAS_TRIES) {
			txn_state_free(t);
			txn_read(r);
			return;
		}
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 10,
				   "txn: the key kept changing (%d tries)", CM_API_CAS_TRIES);
		return;
	}
	if (err != 0) {
		cm_gw__reply_errno(r, err, resp != NULL);
		return;
	}
	t->group = resp->group;
	t->wrevision = resp->token != 0 ? resp->token : 1;
	if (resp->has_attr)
		t->new_attr = resp->attr;
	txn_reply(r);
}

/* --test-txn-sleep-ms: a window between the read and the write that a test
 * can fill with a concurrent change. It blocks the whole thread on purpose:
 * nothing else may run in it (a test changes the key through the servers). */
static void test_sleep(const struct cm_gw_req *r)
{
	uint32_t ms = r->gw->sh->opts.test_txn_sleep_ms;
	if (ms == 0)
		return;
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void txn_write(struct cm_gw_req *r)
{
	struct cm_gw_txn *t = r->txn;
	test_sleep(r);
	const struct cm_etcd_op *op = &t->ops[t->write];
	if (op->kind == CM_ETCD_OP_DELETE && !t->exists) {
		t->write = -1; /* deleting nothing writes nothing */
		txn_reply(r);
		return;
	}
	struct cm_req cq;
	cm_gw__req_init(&cq, op->kind == CM_ETCD_OP_PUT ? CM_OP_PUT : CM_OP_DELETE, t->key->p,
			t->key->len);
	/* a directory: the write fails, EISDIR */
	if (r->gw->sh->opts.test_txn_cas_version) {
		cq.flags = CM_PUT_IF_VERSION; /* the old, broken way: tests only */
		cq.version = t->cas_version;
	} else {
		cq.flags = CM_PUT_IF_MOD;
		cq.mod_index = t->cas_mod;
	}
	if (op->kind == CM_ETCD_OP_PUT) {
		cq.value.p = op->put.value.p != NULL ? (const char *)op->put.value.p : "";
		cq.value.len = (uint32_t)op->put.value.len;
	}
	cm_gw__send(r, &cq, on_write);
}

static void on_read(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	struct cm_gw_txn *t = r->txn;
	if (resp == NULL || (err != 0 && err != -ENOENT && err != -EISDIR)) {
		cm_gw__reply_errno(r, err, resp != NULL);
		return;
	}
	t->group = resp->group;
	t->revision = resp->token;
	t->exists = err == 0 && !(resp->has_attr && S_ISDIR(resp->attr.mode));
	t->cas_mod = err == 0 && resp->has_attr ? resp->attr.mod_index : 0;
	t->cas_version = err == 0 && resp->has_attr ? resp->attr.version : 0;
	if (t->exists) {
		t->attr = resp->attr;
		t->value = malloc(resp->value.len + 1);
		if (t->value == NULL) {
			cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
			return;
		}
		memcpy(t->value, resp->value.p, resp->value.len);
		t->vlen = resp->value.len;
	}
	if (!t->prev_kv_delete) {
		const struct cm_etcd_txn *x = r->etcd.txn;
		t->succeeded = true;
		for (uint32_t i = 0; i < x->n_cmp && t->succeeded; i++)
			t->succeeded = compare_holds(t, &x->cmp[i]);
		t->ops = t->succeeded ? x->success : x->failure;
		t->n_ops = t->succeeded ? x->n_success : x->n_failure;
		t->write = -1;
		for (uint32_t i = 0; i < t->n_ops; i++)
			if (t->ops[i].kind != CM_ETCD_OP_RANGE)
				t->write = (int)i;
	}
	if (t->write >= 0)
		txn_write(r);
	else
		txn_reply(r);
}

static void txn_read(struct cm_gw_req *r)
{
	struct cm_gw_txn *t = r->txn;
	struct cm_req cq;
	cm_gw__req_init(&cq, CM_OP_GET, t->key->p, t->key->len);
	cq.consistency = CM_READ_LINEARIZABLE;
	cm_gw__send(r, &cq, on_read);
}

static bool valid_key(struct cm_gw_req *r, const struct cm_api_buf *k)
{
	int rv = -EINVAL;
	if (k->len > CM_PATH_MAX)
		rv = -ENAMETOOLONG;
	else if (k->len > 0)
		rv = cm_path_validate((const char *)k->p, (uint32_t)k->len);
	if (rv == 0)
		return true;
	/* The same words as put and range (v3.c) for the same key. */
	cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 3, "%s",
			   rv == -ENAMETOOLONG ? "key too long for a Confman path"
					       : "key must be an absolute Confman path such as /a/b");
	return false;
}

void cm_gw__v3_txn(struct cm_gw_req *r)
{
	const char *why;
	const struct cm_api_buf *k = check_txn(r->etcd.txn, &why);
	const struct cm_etcd_txn *x = r->etcd.txn;
	if (k == NULL && (x->n_cmp > 0 || x->n_success > 0 || x->n_failure > 0)) {
		cm_gw__reply_error(r, MHD_HTTP_NOT_IMPLEMENTED, 12, "%s", why);
		return;
	}
	r->txn = calloc(1, sizeof(*r->txn));
	if (r->txn == NULL) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return;
	}
	r->txn->write = -1;
	if (k == NULL) { /* an empty txn succeeds and does nothing */
		r->txn->succeeded = true;
		txn_reply(r);
		return;
	}
	if (!valid_key(r, k))
		return;
	r->txn->key = k;
	txn_read(r);
}

void cm_gw__v3_delete_prev(struct cm_gw_req *r)
{
	r->txn = calloc(1, sizeof(*r->txn));
	if (r->txn == NULL) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return;
	}
	static const struct cm_etcd_op del = {.kind = CM_ETCD_OP_DELETE};
	r->txn->prev_kv_delete = true;
	r->txn->key = &r->etcd.del.key;
	r->txn->ops = &del;
	r->txn->n_ops = 1;
	r->txn->write = 0;
	txn_read(r);
}
