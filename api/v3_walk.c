/* v3_walk.c: etcd prefix ranges and deleteranges, by walking Confman's directory tree. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/gw.h"
#include "confman/path.h"

/*
 * A prefix P names every key starting with P. Confman keeps a tree, so the
 * walk lists D, the directory part of P (up to its last '/'), keeps the
 * children whose name starts with the rest of P, and lists every directory
 * among them recursively: at most CM_API_WALK_INFLIGHT LISTs in flight,
 * CM_API_RANGE_MAX keys in all (more: 400, narrow the range). The keys are
 * then sorted (etcd returns byte order of the whole key, which a
 * depth-first walk does not give: "/a/b-c" < "/a/b/c"), cut to the limit,
 * and their values fetched (GET) or the keys deleted (DELETE), again
 * CM_API_WALK_INFLIGHT at a time.
 *
 * Shards: a LIST does not always show the top directory of a shard below
 * the directory listed (not for shards configured at start), so the walk
 * first asks for the shard map (SHARDS) and lists every shard prefix that
 * lies inside the range as well; a directory a LIST shows that is such a
 * prefix is not listed twice.
 *
 * Not a snapshot: each LIST and GET is served at its own index (follower
 * reads for serializable ranges, linearizable ones otherwise), and a
 * prefix deleterange deletes key by key (each delete atomic, the whole
 * not). etcd does both atomically; this is the documented difference.
 */

struct item {
	char *key; /* owned, NUL-terminated */
	uint32_t klen;
	struct cm_attr attr;
	char *value; /* owned once fetched */
	uint32_t vlen;
	bool gone; /* vanished between LIST and GET/DELETE */
};

struct cm_gw_walk {
	bool del;
	uint8_t consistency;
	char *name_prefix; /* owned: what the children of the top directory must start with */
	size_t np_len;
	char **dirs; /* owned: directories still to list, [dhead, ndirs) */
	size_t dhead, ndirs, dcap;
	char *top;   /* owned: the first directory listed */
	char **shard_dirs; /* owned: shard prefixes inside the range, listed already */
	size_t n_shard_dirs;
	struct item *items;
	size_t n, cap;
	size_t next;   /* phase 2: next item to fetch or delete */
	size_t bytes;  /* value bytes fetched (CM_API_RANGE_BYTES_MAX) */
	size_t upto;   /* phase 2: items [0, upto) are fetched / deleted */
	bool phase2;
	int err;       /* first error: the reply */
	bool err_resp;
	uint64_t group, revision;
	uint64_t deleted;
};

static void walk_pump(struct cm_gw_req *r);

static void walk_free(struct cm_gw_walk *w)
{
	for (size_t i = w->dhead; i < w->ndirs; i++)
		free(w->dirs[i]);
	free(w->dirs);
	for (size_t i = 0; i < w->n; i++) {
		free(w->items[i].key);
		free(w->items[i].value);
	}
	free(w->items);
	free(w->name_prefix);
	free(w->top);
	for (size_t i = 0; i < w->n_shard_dirs; i++)
		free(w->shard_dirs[i]);
	free(w->shard_dirs);
	free(w);
}

void cm_gw__v3_free(struct cm_gw_req *r)
{
	if (r->walk != NULL)
		walk_free(r->walk);
	r->walk = NULL;
	if (r->txn != NULL)
		cm_gw__v3_txn_free(r->txn);
	r->txn = NULL;
	cm_gw__v3_lease_free(r);
	cm_etcd_req_free(&r->etcd);
}

static void note(struct cm_gw_walk *w, const struct cm_resp *resp)
{
	if (resp != NULL && resp->token > w->revision) {
		w->revision = resp->token;
		w->group = resp->group;
	}
}

static void set_err(struct cm_gw_walk *w, int err, bool had_resp)
{
	if (w->err == 0) {
		w->err = err;
		w->err_resp = had_resp;
	}
}

/* parent + "/" + name, as a path ("/" + name under the root). */
static char *join(const char *parent, const char *name, size_t nlen, uint32_t *len)
{
	size_t pl = strcmp(parent, "/") == 0 ? 0 : strlen(parent);
	if (pl + 1 + nlen > CM_PATH_MAX)
		return NULL;
	char *p = malloc(pl + nlen + 2);
	if (p == NULL)
		return NULL;
	memcpy(p, parent, pl);
	p[pl] = '/';
	memcpy(p + pl + 1, name, nlen);
	p[pl + 1 + nlen] = '\0';
	*len = (uint32_t)(pl + 1 + nlen);
	return p;
}

static int push_dir(struct cm_gw_walk *w, char *dir)
{
	if (w->ndirs == w->dcap) {
		size_t cap = w->dcap ? w->dcap * 2 : 16;
		char **d = realloc(w->dirs, cap * sizeof(*d));
		if (d == NULL)
			return -ENOMEM;
		w->dirs = d;
		w->dcap = cap;
	}
	w->dirs[w->ndirs++] = dir;
	return 0;
}

static int push_item(struct cm_gw_walk *w, char *key, uint32_t klen, const struct cm_attr *a)
{
	if (w->n >= CM_API_RANGE_MAX)
		return -EMSGSIZE;
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct item *it = realloc(w->items, cap * sizeof(*it));
		if (it == NULL)
			return -ENOMEM;
		w->items = it;
		w->cap = cap;
	}
	w->items[w->n++] = (struct item){.key = key, .klen = klen, .attr = *a};
	return 0;
}

/* One LIST came back (its entries taken by on_list_ctx): go on. */
static void list_done(struct cm_gw_req *r, int err, const struct cm_resp *resp)
{
	if (!cm_gw__done(r))
		return;
	struct cm_gw_walk *w = r->walk;
	note(w, resp);
	/* A directory that is gone, or a file now: nothing below it. */
	if (err != 0 && err != -ENOENT && err != -ENOTDIR)
		set_err(w, err, resp != NULL);
	walk_pump(r);
}

static bool is_shard_dir(const struct cm_gw_walk *w, const char *p)
{
	for (size_t i = 0; i < w->n_shard_dirs; i++)
		if (strcmp(w->shard_dirs[i], p) == 0)
			return true;
	return false;
}

/* The LIST answers carry no path, so each LIST gets its own small context. */
struct list_ctx {
	struct cm_gw_req *r;
	char *dir; /* owned */
	bool top;
};

static void on_list_ctx(void *arg, int err, const struct cm_resp *resp)
{
	struct list_ctx *lc = arg;
	struct cm_gw_req *r = lc->r;
	struct cm_gw_walk *w = r->walk;
	if (err == 0 && r->conn != NULL && w->err == 0) {
		for (uint32_t i = 0; i < resp->n_ents; i++) {
			const struct cm_dirent *e = &resp->ents[i];
			if (lc->top && (e->name.len < w->np_len ||
					memcmp(e->name.p, w->name_prefix, w->np_len) != 0))
				continue;
			uint32_t len;
			char *p = join(lc->dir, e->name.p, e->name.len, &len);
			if (p == NULL) {
				set_err(w, -ENOMEM, false);
				break;
			}
			if (S_ISDIR(e->attr.mode) && is_shard_dir(w, p)) {
				free(p); /* listed from the shard map already */
				continue;
			}
			int rv = S_ISDIR(e->attr.mode) ? push_dir(w, p) : push_item(w, p, len, &e->attr);
			if (rv != 0) {
				free(p);
				set_err(w, rv, false);
				break;
			}
		}
	}
	free(lc->dir);
	free(lc);
	list_done(r, err, resp);
}

static int submit_list(struct cm_gw_req *r, char *dir, bool top)
{
	struct list_ctx *lc = malloc(sizeof(*lc));
	if (lc == NULL) {
		free(dir);
		return -ENOMEM;
	}
	*lc = (struct list_ctx){r, dir, top};
	struct cm_req cq;
	cm_gw__req_init(&cq, CM_OP_LIST, dir, strlen(dir));
	cq.consistency = r->walk->consistency;
	int rv = cm_gw__submit_arg(r, &cq, on_list_ctx, lc);
	if (rv != 0) {
		free(dir);
		free(lc);
	}
	return rv;
}

static int cmp_items(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	uint32_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->key, y->key, n);
	return c != 0 ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static void on_item(void *arg, int err, const struct cm_resp *resp);

/* Item i's GET or DELETE; the callback finds i again by its key pointer. */
struct item_ctx {
	struct cm_gw_req *r;
	size_t i;
};

static int submit_item(struct cm_gw_req *r, size_t i)
{
	struct cm_gw_walk *w = r->walk;
	struct item_ctx *ic = malloc(sizeof(*ic));
	if (ic == NULL)
		return -ENOMEM;
	*ic = (struct item_ctx){r, i};
	struct cm_req cq;
	cm_gw__req_init(&cq, w->del ? CM_OP_DELETE : CM_OP_GET, w->items[i].key, w->items[i].klen);
	cq.consistency = w->consistency;
	int rv = cm_gw__submit_arg(r, &cq, on_item, ic);
	if (rv != 0)
		free(ic);
	return rv;
}

static void on_item(void *arg, int err, const struct cm_resp *resp)
{
	struct item_ctx *ic = arg;
	struct cm_gw_req *r = ic->r;
	size_t i = ic->i;
	free(ic);
	if (!cm_gw__done(r))
		return;
	struct cm_gw_walk *w = r->walk;
	note(w, resp);
	struct item *it = &w->items[i];
	if (err == -ENOENT || err == -EISDIR) {
		it->gone = true;
	} else if (err != 0) {
		set_err(w, err, resp != NULL);
	} else if (w->del) {
		w->deleted++;
	} else if (resp->value.len > CM_API_RANGE_BYTES_MAX - w->bytes) {
		set_err(w, -E2BIG, false);
	} else {
		w->bytes += resp->value.len;
		it->attr = resp->attr;
		it->value = malloc(resp->value.len + 1);
		if (it->value == NULL) {
			set_err(w, -ENOMEM, false);
		} else {
			memcpy(it->value, resp->value.p, resp->value.len);
			it->vlen = resp->value.len;
		}
	}
	walk_pump(r);
}

static void walk_reply(struct cm_gw_req *r)
{
	struct cm_gw_walk *w = r->walk;
	const struct cm_etcd_range *q = &r->etcd.range;
	if (w->err != 0) {
		if (w->err == -EMSGSIZE)
			cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 3,
					   "range over %d keys: narrow it", CM_API_RANGE_MAX);
		else if (w->err == -E2BIG)
			cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 3,
					   "range over %u MiB of values: use limit or keys_only",
					   CM_API_RANGE_BYTES_MAX >> 20);
		else
			cm_gw__reply_errno(r, w->err, w->err_resp);
		return;
	}
	struct cm_resp hdr;
	memset(&hdr, 0, sizeof(hdr));
	hdr.group = w->group;
	json_t *o = json_object();
	json_object_set_new_nocheck(o, "header", cm_gw__v3_header(r, &hdr, w->revision));
	if (w->del) {
		if (w->deleted > 0)
			json_object_set_new_nocheck(o, "deleted", cm_gw__v3_u64(w->deleted));
		cm_gw__reply_json(r, MHD_HTTP_OK, o);
		return;
	}
	uint64_t count = 0;
	for (size_t i = 0; i < w->n; i++)
		count += !w->items[i].gone;
	json_t *kvs = json_array();
	for (size_t i = 0; i < w->upto && !q->count_only; i++) {
		const struct item *it = &w->items[i];
		if (it->gone)
			continue;
		json_array_append_new(kvs, cm_gw__v3_kv(it->key, it->klen, &it->attr, it->value,
							it->vlen, !q->keys_only));
	}
	if (json_array_size(kvs) > 0)
		json_object_set_new_nocheck(o, "kvs", kvs);
	else
		json_decref(kvs);
	if (q->limit > 0 && w->upto < w->n)
		json_object_set_new_nocheck(o, "more", json_true());
	if (count > 0)
		json_object_set_new_nocheck(o, "count", cm_gw__v3_u64(count));
	cm_gw__reply_json(r, MHD_HTTP_OK, o);
}

/* Start phase 2: the keys are all known. */
static void walk_sorted(struct cm_gw_walk *w, const struct cm_etcd_range *q)
{
	if (w->n > 1)
		qsort(w->items, w->n, sizeof(w->items[0]), cmp_items);
	w->phase2 = true;
	w->upto = w->n;
	if (!w->del && q->limit > 0 && q->limit < w->n)
		w->upto = (size_t)q->limit;
	/* keys_only and count_only need no values: the LIST attributes do. */
	w->next = !w->del && (q->keys_only || q->count_only) ? w->upto : 0;
}

/* Keep up to CM_API_WALK_INFLIGHT requests going; reply when all is done. */
static void walk_pump(struct cm_gw_req *r)
{
	struct cm_gw_walk *w = r->walk;
	if (r->conn == NULL)
		return;
	while (w->err == 0 && !w->phase2 && r->inflight < CM_API_WALK_INFLIGHT &&
	       w->dhead < w->ndirs) {
		char *dir = w->dirs[w->dhead++];
		int rv = submit_list(r, dir, false);
		if (rv != 0)
			set_err(w, rv, false);
	}
	if (w->err == 0 && !w->phase2 && w->dhead == w->ndirs && r->inflight == 0)
		walk_sorted(w, &r->etcd.range);
	while (w->err == 0 && w->phase2 && r->inflight < CM_API_WALK_INFLIGHT && w->next < w->upto) {
		int rv = submit_item(r, w->next++);
		if (rv != 0)
			set_err(w, rv, false);
	}
	if (r->inflight == 0 && (w->err != 0 || (w->phase2 && w->next >= w->upto)))
		walk_reply(r);
}

/* Is shard prefix s (len n) inside the range: strictly below top, its first
 * component there starting with the name prefix? */
static bool shard_in_range(const struct cm_gw_walk *w, const char *s, size_t n)
{
	size_t tl = strcmp(w->top, "/") == 0 ? 0 : strlen(w->top);
	if (n <= tl + 1 || memcmp(s, w->top, tl) != 0 || s[tl] != '/')
		return false;
	return n - tl - 1 >= w->np_len && memcmp(s + tl + 1, w->name_prefix, w->np_len) == 0;
}

static void on_shards(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done_ok(r, err, resp))
		return;
	struct cm_gw_walk *w = r->walk;
	for (uint32_t i = 0; i < resp->n_shards && w->err == 0; i++) {
		const struct cm_bytes *pre = &resp->shards[i].prefix;
		if (!shard_in_range(w, pre->p, pre->len))
			continue;
		char **d = realloc(w->shard_dirs, (w->n_shard_dirs + 1) * sizeof(*d));
		char *a = strndup(pre->p, pre->len), *b = strndup(pre->p, pre->len);
		if (d != NULL)
			w->shard_dirs = d;
		if (d == NULL || a == NULL || b == NULL || push_dir(w, b) != 0) {
			free(a);
			free(b);
			set_err(w, -ENOMEM, false);
			break;
		}
		w->shard_dirs[w->n_shard_dirs++] = a;
	}
	char *top = w->err == 0 ? strdup(w->top) : NULL;
	int rv = top != NULL ? submit_list(r, top, true) : w->err != 0 ? w->err : -ENOMEM;
	if (rv != 0)
		set_err(w, rv, false);
	walk_pump(r);
}

void cm_gw__v3_walk(struct cm_gw_req *r, bool del)
{
	const struct cm_api_buf *key = del ? &r->etcd.del.key : &r->etcd.range.key;
	size_t plen = 0;
	(void)cm_etcd_prefix_of(key, del ? &r->etcd.del.range_end : &r->etcd.range.range_end,
				&plen);
	struct cm_gw_walk *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return;
	}
	r->walk = w;
	w->del = del;
	w->consistency = del ? CM_READ_LINEARIZABLE
			     : cm_gw__consistency(r, r->etcd.range.serializable
							     ? CM_READ_FOLLOWER
							     : CM_READ_LINEARIZABLE);
	const char *p = (const char *)key->p;
	/* Every Confman key starts with '/': another prefix matches none. */
	if (plen > 0 && p[0] != '/') {
		walk_pump(r); /* nothing to list: replies at once */
		return;
	}
	size_t slash = 0;
	for (size_t i = 0; i < plen; i++)
		if (p[i] == '/')
			slash = i;
	w->top = slash == 0 ? strdup("/") : strndup(p, slash);
	w->np_len = plen > 0 ? plen - slash - 1 : 0;
	w->name_prefix = malloc(w->np_len + 1);
	if (w->top == NULL || w->name_prefix == NULL) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return;
	}
	memcpy(w->name_prefix, p + (plen > 0 ? slash + 1 : 0), w->np_len);
	w->name_prefix[w->np_len] = '\0';
	if (cm_path_validate(w->top, (uint32_t)strlen(w->top)) != 0) {
		walk_pump(r); /* "/a//": no such directory, an empty range */
		return;
	}
	struct cm_req cq = {.op = CM_OP_SHARDS, .consistency = CM_READ_FOLLOWER};
	cm_gw__send(r, &cq, on_shards);
}
