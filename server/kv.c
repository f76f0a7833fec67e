/* kv.c: kv node records, resolving paths to nodes, and the read side (get, list). */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "confman/path.h"
#include "server/byteorder.h"
#include "server/kv.h"
#include "server/kv_int.h"

void cm_kv__ctx_init(struct cm_kv__ctx *c, struct cm_store *s, MDB_txn *txn, uint64_t group)
{
	const struct cm_store_dbs *d = cm_store_dbs(s);
	c->txn = txn;
	c->kv = d->kv;
	c->events = d->events;
	c->group = group;
}

void cm_kv__attr_enc(uint8_t *b, const struct cm_attr *a)
{
	cm_bo_put_le32(b, a->mode);
	cm_bo_put_le32(b + 4, a->uid);
	cm_bo_put_le32(b + 8, a->gid);
	cm_bo_put_le64(b + 12, (uint64_t)a->mtime_ns);
	cm_bo_put_le64(b + 20, (uint64_t)a->ctime_ns);
	cm_bo_put_le64(b + 28, a->create_index);
	cm_bo_put_le64(b + 36, a->mod_index);
	cm_bo_put_le64(b + 44, a->version);
	cm_bo_put_le32(b + 52, a->size);
	static_assert(52 + 4 == CM_KV_ATTR_BYTES, "attr layout");
}

void cm_kv__attr_dec(const uint8_t *b, struct cm_attr *a)
{
	a->mode = cm_bo_get_le32(b);
	a->uid = cm_bo_get_le32(b + 4);
	a->gid = cm_bo_get_le32(b + 8);
	a->mtime_ns = (int64_t)cm_bo_get_le64(b + 12);
	a->ctime_ns = (int64_t)cm_bo_get_le64(b + 20);
	a->create_index = cm_bo_get_le64(b + 28);
	a->mod_index = cm_bo_get_le64(b + 36);
	a->version = cm_bo_get_le64(b + 44);
	a->size = cm_bo_get_le32(b + 52);
}

void cm_kv__ext_enc(uint8_t *b, const struct cm_attr *a)
{
	cm_bo_put_le64(b, (uint64_t)a->atime_ns);
	cm_bo_put_le32(b + 8, a->nlink);
	static_assert(8 + 4 == CM_KV_EXT_BYTES, "ext layout");
}

void cm_kv__ext_dec(const uint8_t *b, struct cm_attr *a)
{
	a->atime_ns = (int64_t)cm_bo_get_le64(b);
	a->nlink = cm_bo_get_le32(b + 8);
}

void cm_kv__ext_default(struct cm_attr *a)
{
	a->atime_ns = a->mtime_ns;
	a->nlink = S_ISDIR(a->mode) ? 0 : 1;
}

uint32_t cm_kv__key(uint8_t *kb, uint64_t group, uint64_t parent, const char *name, uint32_t nlen)
{
	assert(nlen <= CM_NAME_MAX); /* a node's name; reserved records may be longer */
	return cm_kv__rkey(kb, group, parent, name, nlen);
}

int cm_kv__node_dec(const void *rec, size_t len, struct cm_kv__node *n)
{
	const uint8_t *b = rec;
	if (len < CM_KV_REC_HDR)
		return -EIO;
	cm_kv__attr_dec(b, &n->attr);
	/* The mode word carries the node's flags above st_mode (kv_int.h). */
	n->flags = n->attr.mode >> CM_KV_FLAGS_SHIFT;
	n->attr.mode &= CM_KV_MODE_MASK;
	size_t hdr = CM_KV_REC_HDR;
	if (n->flags & CM_KV_REC_EXT) {
		n->flags &= ~CM_KV_REC_EXT;
		hdr += CM_KV_EXT_BYTES;
		if (len < hdr)
			return -EIO;
		cm_kv__ext_dec(b + CM_KV_REC_HDR, &n->attr);
	} else {
		cm_kv__ext_default(&n->attr);
	}
	if (len - hdr > UINT32_MAX || n->attr.size != len - hdr)
		return -EIO;
	if ((n->flags & ~CM_KV_NODE_FLAGS_KNOWN) != 0)
		return -EIO;
	n->ino = cm_bo_get_le64(b + CM_KV_ATTR_BYTES);
	n->value.p = (const char *)b + hdr;
	n->value.len = n->attr.size;
	return 0;
}

/* "/" before anyone changed it: it exists from the start, owned by root. */
static void root_default(struct cm_kv__node *n)
{
	memset(n, 0, sizeof(*n));
	n->attr.mode = S_IFDIR | 0755;
	n->attr.version = 1;
	n->attr.nlink = 0; /* counted where it is read or written (cm_kv__nlink_fix) */
	n->ino = CM_KV_ROOT_INO;
	n->value.p = "";
}

int cm_kv__node_get(const struct cm_kv__ctx *c, uint64_t parent, const char *name, uint32_t nlen,
		    struct cm_kv__node *n)
{
	uint8_t kb[CM_KV_KEY_MAX];
	MDB_val k = {cm_kv__key(kb, c->group, parent, name, nlen), kb}, v;
	int rc = mdb_get(c->txn, c->kv, &k, &v);
	if (rc == MDB_NOTFOUND && parent == 0 && nlen == 0) {
		root_default(n);
		return 0;
	}
	if (rc != 0)
		return cm_store_mdb_err(rc);
	return cm_kv__node_dec(v.mv_data, v.mv_size, n);
}

int cm_kv__node_put(const struct cm_kv__ctx *c, uint64_t parent, const char *name, uint32_t nlen,
		    const struct cm_kv__node *n)
{
	assert(n->attr.size == n->value.len);
	assert(n->ino != 0);
	assert((n->attr.mode & ~CM_KV_MODE_MASK) == 0);
	assert((n->flags & ~CM_KV_NODE_FLAGS_KNOWN) == 0);
	assert(S_ISDIR(n->attr.mode) ? n->attr.nlink != 1 : n->attr.nlink == 1);
	uint8_t kb[CM_KV_KEY_MAX];
	MDB_val k = {cm_kv__key(kb, c->group, parent, name, nlen), kb};
	const size_t hdr = CM_KV_REC_HDR + CM_KV_EXT_BYTES;
	MDB_val v = {hdr + (size_t)n->value.len, NULL};
	int rc = mdb_put(c->txn, c->kv, &k, &v, MDB_RESERVE);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint8_t *b = v.mv_data;
	struct cm_attr a = n->attr;
	a.mode |= (n->flags | CM_KV_REC_EXT) << CM_KV_FLAGS_SHIFT;
	cm_kv__attr_enc(b, &a);
	cm_bo_put_le64(b + CM_KV_ATTR_BYTES, n->ino);
	cm_kv__ext_enc(b + CM_KV_REC_HDR, &n->attr);
	if (n->value.len != 0)
		memcpy(b + hdr, n->value.p, n->value.len);
	return 0;
}

int cm_kv__node_del(const struct cm_kv__ctx *c, uint64_t parent, const char *name, uint32_t nlen)
{
	uint8_t kb[CM_KV_KEY_MAX];
	MDB_val k = {cm_kv__key(kb, c->group, parent, name, nlen), kb};
	return cm_store_mdb_err(mdb_del(c->txn, c->kv, &k, NULL));
}

/* Whether key k lies in directory dir's range (group, dir, *). */
static bool in_dir(const struct cm_kv__ctx *c, const MDB_val *k, uint64_t dir)
{
	const uint8_t *b = k->mv_data;
	return k->mv_size >= CM_KV_KEY_HDR && cm_bo_get_be64(b) == c->group &&
	       cm_bo_get_be64(b + 8) == dir;
}

int cm_kv__child_first(const struct cm_kv__ctx *c, MDB_cursor *cur, uint64_t dir, MDB_val *k, MDB_val *v)
{
	uint8_t kb[CM_KV_KEY_HDR];
	cm_kv__key(kb, c->group, dir, NULL, 0);
	*k = (MDB_val){sizeof(kb), kb};
	int rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	return in_dir(c, k, dir) ? 0 : -ENOENT;
}

int cm_kv__child_next(const struct cm_kv__ctx *c, MDB_cursor *cur, uint64_t dir, MDB_val *k, MDB_val *v)
{
	int rc = mdb_cursor_get(cur, k, v, MDB_NEXT);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	return in_dir(c, k, dir) ? 0 : -ENOENT;
}

int cm_kv__child_dec(const MDB_val *k, const MDB_val *v, struct cm_bytes *name, struct cm_kv__node *n)
{
	if (k->mv_size <= CM_KV_KEY_HDR || k->mv_size > CM_KV_KEY_MAX)
		return -EIO;
	*name = (struct cm_bytes){(const char *)k->mv_data + CM_KV_KEY_HDR,
				  (uint32_t)(k->mv_size - CM_KV_KEY_HDR)};
	return cm_kv__node_dec(v->mv_data, v->mv_size, n);
}

int cm_kv__dir_has_children(const struct cm_kv__ctx *c, uint64_t ino)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(c->txn, c->kv, &cur);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	MDB_val k, v;
	rc = cm_kv__child_first(c, cur, ino, &k, &v);
	mdb_cursor_close(cur);
	return rc == 0 ? 1 : rc == -ENOENT ? 0 : rc;
}

int cm_kv__nlink_fix(const struct cm_kv__ctx *c, struct cm_kv__node *n)
{
	if (!S_ISDIR(n->attr.mode) || n->attr.nlink != 0)
		return 0;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(c->txn, c->kv, &cur);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint32_t subdirs = 0;
	MDB_val k, v;
	for (rc = cm_kv__child_first(c, cur, n->ino, &k, &v); rc == 0;
	     rc = cm_kv__child_next(c, cur, n->ino, &k, &v)) {
		struct cm_bytes name;
		struct cm_kv__node child;
		rc = cm_kv__child_dec(&k, &v, &name, &child);
		if (rc != 0)
			break;
		subdirs += S_ISDIR(child.attr.mode) ? 1u : 0u;
	}
	mdb_cursor_close(cur);
	if (rc != -ENOENT)
		return rc;
	n->attr.nlink = 2 + subdirs;
	return 0;
}

struct cm_bytes cm_kv__basename(const char *p, uint32_t len)
{
	assert(len > 1);
	assert(p[0] == '/');
	uint32_t k = len;
	while (p[k - 1] != '/')
		k--;
	return (struct cm_bytes){p + k, len - k};
}

int cm_kv__walk(const struct cm_kv__ctx *c, const char *p, uint32_t len, struct cm_kv__walk *w)
{
	memset(w, 0, sizeof(*w));
	w->dir = CM_KV_ROOT_INO;
	if (len == 1) {
		w->found = true;
		return cm_kv__node_get(c, 0, "", 0, &w->node);
	}
	uint32_t start = 1;
	for (uint32_t depth = 0;; depth++) {
		assert(depth < CM_KV_MAX_DEPTH);
		uint32_t end = start;
		while (end < len && p[end] != '/')
			end++;
		int rc = cm_kv__node_get(c, w->dir, p + start, end - start, &w->node);
		if (rc == -ENOENT) {
			w->miss = start;
			return 0;
		}
		if (rc != 0)
			return rc;
		if (w->node.flags & CM_KV_NODE_BOUNDARY) {
			w->fenced = true; /* a boundary has no children: the walk ends below it */
			w->merging = w->node.flags & CM_KV_NODE_MERGING; /* ... but a merge's copies */
		}
		if (w->node.flags & CM_KV_NODE_FROZEN)
			w->fenced = true; /* read-only until the merge retires the group */
		if (end == len) {
			w->found = true;
			w->parent = w->dir;
			return 0;
		}
		if (!S_ISDIR(w->node.attr.mode))
			return -ENOTDIR;
		w->dir = w->node.ino;
		start = end + 1;
	}
}

int cm_kv_get(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes path,
	      struct cm_attr *attr, struct cm_bytes *value)
{
	int rc = cm_path_validate(path.p, path.len);
	if (rc != 0)
		return rc;
	struct cm_kv__ctx c;
	struct cm_kv__walk w;
	cm_kv__ctx_init(&c, s, txn, group);
	rc = cm_kv__walk(&c, path.p, path.len, &w);
	if (rc != 0)
		return rc;
	if (!w.found)
		return -ENOENT;
	rc = cm_kv__nlink_fix(&c, &w.node);
	if (rc != 0)
		return rc;
	*attr = w.node.attr;
	if (value != NULL)
		*value = w.node.value;
	return 0;
}

/* Call cb for each child of directory ino, in name order; cb's nonzero value stops it. */
static int list_children(const struct cm_kv__ctx *c, uint64_t ino, cm_kv_list_cb cb, void *arg)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(c->txn, c->kv, &cur);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	MDB_val k, v;
	int stop = 0;
	for (rc = cm_kv__child_first(c, cur, ino, &k, &v); rc == 0;
	     rc = cm_kv__child_next(c, cur, ino, &k, &v)) {
		struct cm_bytes name;
		struct cm_kv__node n;
		rc = cm_kv__child_dec(&k, &v, &name, &n);
		rc = rc ? rc : cm_kv__nlink_fix(c, &n);
		if (rc != 0)
			break;
		stop = cb(arg, name, &n.attr);
		if (stop != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (stop != 0)
		return stop;
	return rc == -ENOENT ? 0 : rc;
}

int cm_kv_list(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes path,
	       cm_kv_list_cb cb, void *arg)
{
	int rc = cm_path_validate(path.p, path.len);
	if (rc != 0)
		return rc;
	struct cm_kv__ctx c;
	struct cm_kv__walk w;
	cm_kv__ctx_init(&c, s, txn, group);
	rc = cm_kv__walk(&c, path.p, path.len, &w);
	if (rc != 0)
		return rc;
	if (!w.found)
		return -ENOENT;
	if (!S_ISDIR(w.node.attr.mode))
		return -ENOTDIR;
	return list_children(&c, w.node.ino, cb, arg);
}
