/* parse_etcd.c: etcd v3 JSON request bodies (put, range, deleterange, txn) to structs. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/parse.h"

/*
 * The gateway of etcd 3.4 (grpc-gateway with jsonpb) accepts a field under
 * its proto name or its lowerCamel JSON name, int64 as a number or a
 * decimal string, enums by name or number, and rejects unknown fields. Each
 * message below lists every field etcd knows: those outside the subset are
 * accepted at their default value and refused (-EOPNOTSUPP) otherwise.
 */

struct ctx {
	char *err;
	size_t cap;
};

__attribute__((format(printf, 3, 4))) static int fail(struct ctx *c, int rv, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, c->cap, fmt, ap);
	va_end(ap);
	return rv;
}

/* A field's proto name and JSON name; NULL json when they are the same. */
struct field {
	const char *proto, *json;
};

static bool name_is(const char *key, const struct field *f)
{
	return strcmp(key, f->proto) == 0 || (f->json != NULL && strcmp(key, f->json) == 0);
}

/* Every key of obj must be one of fields[]. */
static int check_fields(struct ctx *c, json_t *obj, const struct field *fields, size_t n,
			const char *what)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		size_t i = 0;
		while (i < n && !name_is(key, &fields[i]))
			i++;
		if (i == n)
			return fail(c, -EINVAL, "unknown field \"%.40s\" in %s", key, what);
	}
	return 0;
}

/* obj's value for field f (either spelling); NULL when absent or JSON null. */
static json_t *get(json_t *obj, const struct field *f)
{
	json_t *v = json_object_get(obj, f->proto);
	if (v == NULL && f->json != NULL)
		v = json_object_get(obj, f->json);
	return json_is_null(v) ? NULL : v;
}

static int get_bytes(struct ctx *c, json_t *obj, const struct field *f, struct cm_api_buf *out)
{
	json_t *v = get(obj, f);
	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return fail(c, -EINVAL, "%s: expected a base64 string", f->proto);
	size_t len = json_string_length(v);
	uint8_t *p = malloc(len / 4 * 3 + 4);
	if (p == NULL)
		return fail(c, -ENOMEM, "out of memory");
	size_t n;
	if (cm_api_b64_decode(json_string_value(v), len, p, &n) != 0) {
		free(p);
		return fail(c, -EINVAL, "illegal base64 data in %s", f->proto);
	}
	p[n] = 0;
	free(out->p);
	out->p = p;
	out->len = n;
	return 0;
}

static int get_bool(struct ctx *c, json_t *obj, const struct field *f, bool *out)
{
	json_t *v = get(obj, f);
	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return fail(c, -EINVAL, "%s: expected true or false", f->proto);
	*out = json_is_true(v);
	return 0;
}

/* int64: a JSON integer or a decimal string ("-" allowed). */
static int get_i64(struct ctx *c, json_t *obj, const struct field *f, int64_t *out)
{
	json_t *v = get(obj, f);
	if (v == NULL)
		return 0;
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		bool neg = n > 0 && s[0] == '-';
		uint64_t u;
		if (cm_api_parse_u64(s + neg, n - neg, &u) == 0 && u <= (uint64_t)INT64_MAX) {
			*out = neg ? -(int64_t)u : (int64_t)u;
			return 0;
		}
	}
	return fail(c, -EINVAL, "%s: expected an integer", f->proto);
}

/* An enum: by name (names[i] is value i) or by number. */
static int get_enum(struct ctx *c, json_t *obj, const struct field *f, const char *const *names,
		    int n, int *out)
{
	json_t *v = get(obj, f);
	if (v == NULL)
		return 0;
	if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < n) {
		*out = (int)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v))
		for (int i = 0; i < n; i++)
			if (strcmp(json_string_value(v), names[i]) == 0) {
				*out = i;
				return 0;
			}
	return fail(c, -EINVAL, "%s: unknown value", f->proto);
}

/* A field outside the subset: fine at its default (absent, false, 0, ""), else 501. */
static int unsupported(struct ctx *c, json_t *obj, const struct field *f)
{
	json_t *v = get(obj, f);
	if (v == NULL || json_is_false(v) || (json_is_integer(v) && json_integer_value(v) == 0))
		return 0;
	if (json_is_string(v) &&
	    (json_string_length(v) == 0 || strcmp(json_string_value(v), "0") == 0 ||
	     strcmp(json_string_value(v), "KEY") == 0))
		return 0; /* "KEY": sort_target's default */
	return fail(c, -EOPNOTSUPP, "%s is not supported by confman-api", f->proto);
}

static int need_key(struct ctx *c, const struct cm_api_buf *key)
{
	if (key->p == NULL || key->len == 0)
		return fail(c, -EINVAL, "etcdserver: key is not provided");
	return 0;
}

/* ---- messages ------------------------------------------------------------------ */

static const struct field F_KEY = {"key", NULL}, F_VALUE = {"value", NULL},
			  F_RANGE_END = {"range_end", "rangeEnd"}, F_LIMIT = {"limit", NULL},
			  F_REVISION = {"revision", NULL}, F_SORT_ORDER = {"sort_order", "sortOrder"},
			  F_SORT_TARGET = {"sort_target", "sortTarget"},
			  F_SERIAL = {"serializable", NULL}, F_KEYS_ONLY = {"keys_only", "keysOnly"},
			  F_COUNT_ONLY = {"count_only", "countOnly"},
			  F_MIN_MOD = {"min_mod_revision", "minModRevision"},
			  F_MAX_MOD = {"max_mod_revision", "maxModRevision"},
			  F_MIN_CREATE = {"min_create_revision", "minCreateRevision"},
			  F_MAX_CREATE = {"max_create_revision", "maxCreateRevision"},
			  F_LEASE = {"lease", NULL}, F_PREV_KV = {"prev_kv", "prevKv"},
			  F_IGNORE_VALUE = {"ignore_value", "ignoreValue"},
			  F_IGNORE_LEASE = {"ignore_lease", "ignoreLease"};

static int parse_range(struct ctx *c, json_t *o, struct cm_etcd_range *r)
{
	static const struct field *const all[] = {
		&F_KEY,	       &F_RANGE_END, &F_LIMIT,	  &F_REVISION, &F_SORT_ORDER, &F_SORT_TARGET,
		&F_SERIAL,     &F_KEYS_ONLY, &F_COUNT_ONLY, &F_MIN_MOD, &F_MAX_MOD,	&F_MIN_CREATE,
		&F_MAX_CREATE};
	struct field fs[sizeof(all) / sizeof(all[0])];
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		fs[i] = *all[i];
	int rv = check_fields(c, o, fs, sizeof(fs) / sizeof(fs[0]), "RangeRequest");
	int64_t limit = 0;
	for (size_t i = 3; rv == 0 && i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i] != &F_SERIAL && all[i] != &F_KEYS_ONLY && all[i] != &F_COUNT_ONLY &&
		    all[i] != &F_SORT_ORDER)
			rv = unsupported(c, o, all[i]);
	/* Ascending by key is the order ranges come in anyway. */
	static const char *const orders[] = {"NONE", "ASCEND", "DESCEND"};
	int order = 0;
	rv = rv ? rv : get_enum(c, o, &F_SORT_ORDER, orders, 3, &order);
	if (rv == 0 && order == 2)
		rv = fail(c, -EOPNOTSUPP, "sort_order DESCEND is not supported by confman-api");
	rv = rv ? rv : get_bytes(c, o, &F_KEY, &r->key);
	rv = rv ? rv : get_bytes(c, o, &F_RANGE_END, &r->range_end);
	rv = rv ? rv : get_i64(c, o, &F_LIMIT, &limit);
	rv = rv ? rv : get_bool(c, o, &F_SERIAL, &r->serializable);
	rv = rv ? rv : get_bool(c, o, &F_KEYS_ONLY, &r->keys_only);
	rv = rv ? rv : get_bool(c, o, &F_COUNT_ONLY, &r->count_only);
	rv = rv ? rv : need_key(c, &r->key);
	if (rv == 0 && limit < 0)
		rv = fail(c, -EINVAL, "limit must not be negative");
	r->limit = (uint64_t)limit;
	return rv;
}

static int parse_put(struct ctx *c, json_t *o, struct cm_etcd_put *p)
{
	static const struct field fs[] = {{"key", NULL},	  {"value", NULL},
					  {"lease", NULL},	  {"prev_kv", "prevKv"},
					  {"ignore_value", "ignoreValue"},
					  {"ignore_lease", "ignoreLease"}};
	int rv = check_fields(c, o, fs, sizeof(fs) / sizeof(fs[0]), "PutRequest");
	rv = rv ? rv : get_i64(c, o, &F_LEASE, &p->lease);
	if (rv == 0 && p->lease < 0)
		rv = fail(c, -EINVAL, "lease: expected 0..%lld", (long long)INT64_MAX);
	rv = rv ? rv : unsupported(c, o, &F_PREV_KV);
	rv = rv ? rv : unsupported(c, o, &F_IGNORE_VALUE);
	rv = rv ? rv : unsupported(c, o, &F_IGNORE_LEASE);
	rv = rv ? rv : get_bytes(c, o, &F_KEY, &p->key);
	rv = rv ? rv : get_bytes(c, o, &F_VALUE, &p->value);
	return rv ? rv : need_key(c, &p->key);
}

static int parse_delete(struct ctx *c, json_t *o, struct cm_etcd_delete *d)
{
	static const struct field fs[] = {{"key", NULL}, {"range_end", "rangeEnd"},
					  {"prev_kv", "prevKv"}};
	int rv = check_fields(c, o, fs, sizeof(fs) / sizeof(fs[0]), "DeleteRangeRequest");
	rv = rv ? rv : get_bytes(c, o, &F_KEY, &d->key);
	rv = rv ? rv : get_bytes(c, o, &F_RANGE_END, &d->range_end);
	rv = rv ? rv : get_bool(c, o, &F_PREV_KV, &d->prev_kv);
	return rv ? rv : need_key(c, &d->key);
}

static int parse_cmp(struct ctx *c, json_t *o, struct cm_etcd_cmp *cmp)
{
	static const struct field fs[] = {
		{"result", NULL},	  {"target", NULL},	       {"key", NULL},
		{"version", NULL},	  {"create_revision", "createRevision"},
		{"mod_revision", "modRevision"}, {"value", NULL}, {"lease", NULL},
		{"range_end", "rangeEnd"}};
	static const char *const results[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
	static const char *const targets[] = {"VERSION", "CREATE", "MOD", "VALUE", "LEASE"};
	if (!json_is_object(o))
		return fail(c, -EINVAL, "compare: expected an object");
	int rv = check_fields(c, o, fs, sizeof(fs) / sizeof(fs[0]), "Compare");
	int result = 0, target = 0;
	rv = rv ? rv : get_enum(c, o, &fs[0], results, 4, &result);
	rv = rv ? rv : get_enum(c, o, &fs[1], targets, 5, &target);
	rv = rv ? rv : unsupported(c, o, &fs[7]);
	rv = rv ? rv : unsupported(c, o, &fs[8]);
	rv = rv ? rv : get_bytes(c, o, &F_KEY, &cmp->key);
	rv = rv ? rv : need_key(c, &cmp->key);
	if (rv != 0)
		return rv;
	if (target == 4)
		return fail(c, -EOPNOTSUPP, "compare on LEASE is not supported by confman-api");
	cmp->result = (enum cm_etcd_result)result;
	cmp->target = (enum cm_etcd_target)target;
	switch (cmp->target) {
	case CM_ETCD_T_VERSION:
		return get_i64(c, o, &fs[3], &cmp->operand);
	case CM_ETCD_T_CREATE:
		return get_i64(c, o, &fs[4], &cmp->operand);
	case CM_ETCD_T_MOD:
		return get_i64(c, o, &fs[5], &cmp->operand);
	case CM_ETCD_T_VALUE:
		return get_bytes(c, o, &F_VALUE, &cmp->value);
	}
	return fail(c, -EINVAL, "compare: bad target");
}

static int parse_op(struct ctx *c, json_t *o, struct cm_etcd_op *op)
{
	static const struct field fs[] = {{"request_range", "requestRange"},
					  {"request_put", "requestPut"},
					  {"request_delete_range", "requestDeleteRange"},
					  {"request_txn", "requestTxn"}};
	if (!json_is_object(o))
		return fail(c, -EINVAL, "request op: expected an object");
	int rv = check_fields(c, o, fs, sizeof(fs) / sizeof(fs[0]), "RequestOp");
	if (rv != 0)
		return rv;
	if (get(o, &fs[3]) != NULL)
		return fail(c, -EOPNOTSUPP, "nested txn is not supported by confman-api");
	int n = 0;
	json_t *v;
	if ((v = get(o, &fs[0])) != NULL && json_is_object(v)) {
		op->kind = CM_ETCD_OP_RANGE;
		rv = parse_range(c, v, &op->range);
		n++;
	}
	if (rv == 0 && (v = get(o, &fs[1])) != NULL && json_is_object(v)) {
		op->kind = CM_ETCD_OP_PUT;
		rv = parse_put(c, v, &op->put);
		if (rv == 0 && op->put.lease != 0)
			rv = fail(c, -EOPNOTSUPP, "lease in a txn is not supported by confman-api");
		n++;
	}
	if (rv == 0 && (v = get(o, &fs[2])) != NULL && json_is_object(v)) {
		op->kind = CM_ETCD_OP_DELETE;
		rv = parse_delete(c, v, &op->del);
		n++;
	}
	if (rv == 0 && n != 1)
		rv = fail(c, -EINVAL, "request op: exactly one request expected");
	return rv;
}

static int parse_ops(struct ctx *c, json_t *a, struct cm_etcd_op *ops, uint32_t *n,
		     const char *what)
{
	if (a == NULL)
		return 0;
	if (!json_is_array(a))
		return fail(c, -EINVAL, "%s: expected an array", what);
	if (json_array_size(a) > CM_API_TXN_MAX)
		return fail(c, -EMSGSIZE, "%s: more than %d operations", what, CM_API_TXN_MAX);
	for (size_t i = 0; i < json_array_size(a); i++) {
		int rv = parse_op(c, json_array_get(a, i), &ops[i]);
		*n = (uint32_t)i + 1; /* freed by the caller, even half-filled */
		if (rv != 0)
			return rv;
	}
	return 0;
}

static int parse_txn(struct ctx *c, json_t *o, struct cm_etcd_txn *t)
{
	static const struct field fs[] = {{"compare", NULL}, {"success", NULL}, {"failure", NULL}};
	int rv = check_fields(c, o, fs, 3, "TxnRequest");
	if (rv != 0)
		return rv;
	json_t *a = get(o, &fs[0]);
	if (a != NULL) {
		if (!json_is_array(a))
			return fail(c, -EINVAL, "compare: expected an array");
		if (json_array_size(a) > CM_API_TXN_MAX)
			return fail(c, -EMSGSIZE, "more than %d compares", CM_API_TXN_MAX);
		for (size_t i = 0; i < json_array_size(a); i++) {
			t->n_cmp = (uint32_t)i + 1;
			rv = parse_cmp(c, json_array_get(a, i), &t->cmp[i]);
			if (rv != 0)
				return rv;
		}
	}
	rv = parse_ops(c, get(o, &fs[1]), t->success, &t->n_success, "success");
	return rv ? rv : parse_ops(c, get(o, &fs[2]), t->failure, &t->n_failure, "failure");
}

/* ---- entry points ------------------------------------------------------------ */

static void buf_free(struct cm_api_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = 0;
}

static void op_free(struct cm_etcd_op *op)
{
	buf_free(&op->range.key);
	buf_free(&op->range.range_end);
	buf_free(&op->put.key);
	buf_free(&op->put.value);
	buf_free(&op->del.key);
	buf_free(&op->del.range_end);
}

void cm_etcd_req_free(struct cm_etcd_req *r)
{
	op_free(&(struct cm_etcd_op){.range = r->range, .put = r->put, .del = r->del});
	memset(&r->range, 0, sizeof(r->range));
	memset(&r->put, 0, sizeof(r->put));
	memset(&r->del, 0, sizeof(r->del));
	if (r->txn != NULL) {
		for (uint32_t i = 0; i < r->txn->n_cmp; i++) {
			buf_free(&r->txn->cmp[i].key);
			buf_free(&r->txn->cmp[i].value);
		}
		for (uint32_t i = 0; i < r->txn->n_success; i++)
			op_free(&r->txn->success[i]);
		for (uint32_t i = 0; i < r->txn->n_failure; i++)
			op_free(&r->txn->failure[i]);
		free(r->txn);
		r->txn = NULL;
	}
}

int cm_etcd_parse(enum cm_api_route r, const char *body, size_t len, struct cm_etcd_req *out,
		  char *err, size_t cap)
{
	struct ctx c = {err, cap};
	struct cm_etcd_req req;
	memset(&req, 0, sizeof(req));
	req.route = r;
	json_error_t je;
	json_t *o = json_loadb(body != NULL ? body : "", len, JSON_REJECT_DUPLICATES, &je);
	if (o == NULL)
		return fail(&c, -EINVAL, "invalid JSON: %s", je.text);
	int rv;
	if (!json_is_object(o)) {
		rv = fail(&c, -EINVAL, "expected a JSON object");
	} else {
		switch (r) {
		case CM_API_R_V3_PUT:
			rv = parse_put(&c, o, &req.put);
			break;
		case CM_API_R_V3_RANGE:
			rv = parse_range(&c, o, &req.range);
			break;
		case CM_API_R_V3_DELETE:
			rv = parse_delete(&c, o, &req.del);
			break;
		case CM_API_R_V3_TXN:
			req.txn = calloc(1, sizeof(*req.txn));
			rv = req.txn == NULL ? fail(&c, -ENOMEM, "out of memory")
					     : parse_txn(&c, o, req.txn);
			break;
		default:
			rv = fail(&c, -EINVAL, "not an etcd endpoint");
			break;
		}
	}
	json_decref(o);
	if (rv != 0) {
		cm_etcd_req_free(&req);
		return rv;
	}
	*out = req;
	return 0;
}

/* ---- leases and locks ----------------------------------------------------------- */

static const struct field F_ID = {"ID", NULL}, F_TTL = {"TTL", NULL}, F_KEYS = {"keys", NULL},
			  F_NAME = {"name", NULL};

/* An id or lease: 0..INT64_MAX. */
static int get_id(struct ctx *c, json_t *o, const struct field *f, int64_t *out)
{
	int rv = get_i64(c, o, f, out);
	if (rv == 0 && *out < 0)
		rv = fail(c, -EINVAL, "%s: expected 0..%lld", f->proto, (long long)INT64_MAX);
	return rv;
}

static int parse_lease_body(struct ctx *c, enum cm_api_route r, json_t *o, struct cm_etcd_lease *l)
{
	static const struct field grant[] = {{"TTL", NULL}, {"ID", NULL}}, id[] = {{"ID", NULL}},
				  ttl[] = {{"ID", NULL}, {"keys", NULL}},
				  lock[] = {{"name", NULL}, {"lease", NULL}}, unlock[] = {{"key", NULL}};
	int rv;
	switch (r) {
	case CM_API_R_V3_LEASE_GRANT:
		rv = check_fields(c, o, grant, 2, "LeaseGrantRequest");
		rv = rv ? rv : get_i64(c, o, &F_TTL, &l->ttl);
		return rv ? rv : get_id(c, o, &F_ID, &l->id);
	case CM_API_R_V3_LEASE_REVOKE:
	case CM_API_R_V3_LEASE_KEEPALIVE:
		rv = check_fields(c, o, id, 1, "LeaseRequest");
		return rv ? rv : get_id(c, o, &F_ID, &l->id);
	case CM_API_R_V3_LEASE_TTL:
		rv = check_fields(c, o, ttl, 2, "LeaseTimeToLiveRequest");
		rv = rv ? rv : get_id(c, o, &F_ID, &l->id);
		return rv ? rv : get_bool(c, o, &F_KEYS, &l->keys);
	case CM_API_R_V3_LEASE_LIST:
		return check_fields(c, o, NULL, 0, "LeaseLeasesRequest");
	case CM_API_R_V3_LOCK:
		rv = check_fields(c, o, lock, 2, "LockRequest");
		rv = rv ? rv : get_bytes(c, o, &F_NAME, &l->name);
		rv = rv ? rv : get_id(c, o, &F_LEASE, &l->lease);
		if (rv == 0 && l->name.len == 0)
			rv = fail(c, -EINVAL, "etcdserver: name is not provided");
		return rv;
	case CM_API_R_V3_UNLOCK:
		rv = check_fields(c, o, unlock, 1, "UnlockRequest");
		rv = rv ? rv : get_bytes(c, o, &F_KEY, &l->name);
		return rv ? rv : need_key(c, &l->name);
	default:
		return fail(c, -EINVAL, "not a lease or lock endpoint");
	}
}

void cm_etcd_lease_free(struct cm_etcd_lease *l)
{
	buf_free(&l->name);
}

int cm_etcd_parse_lease(enum cm_api_route r, const char *body, size_t len,
			struct cm_etcd_lease *out, char *err, size_t cap)
{
	struct ctx c = {err, cap};
	struct cm_etcd_lease l;
	memset(&l, 0, sizeof(l));
	json_error_t je;
	/* An empty body is an empty message (curl -d '' and etcdctl's leases). */
	json_t *o = len == 0 ? json_object()
			     : json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (o == NULL)
		return len == 0 ? fail(&c, -ENOMEM, "out of memory")
				: fail(&c, -EINVAL, "invalid JSON: %s", je.text);
	int rv = json_is_object(o) ? parse_lease_body(&c, r, o, &l)
				   : fail(&c, -EINVAL, "expected a JSON object");
	json_decref(o);
	if (rv != 0) {
		cm_etcd_lease_free(&l);
		return rv;
	}
	*out = l;
	return 0;
}
