/* kv_snap.c: a group's whole kv tree as one msgpack blob, and rebuilding a tree from one. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "confman/path.h"
#include "server/kv.h"
#include "server/kv_int.h"

/*
 * Blob: array32 of records, parents before their children:
 *   [path:str, ino, mode, uid, gid, mtime_ns, ctime_ns, create_index,
 *    mod_index, version, value:bin, flags, atime_ns, nlink]
 * flags are the node's CM_KV_NODE_* (1 a boundary, 2 a top); nlink as
 * stored (a directory's 0: unknown, counted when read). Restore also takes the
 * records of blobs made before flags existed (11 fields: flags 0) and before
 * atime and nlink (12 fields: atime = mtime, a directory's nlink unknown),
 * which a node may still hold as its latest snapshot and send to an upgraded one.
 * The count is patched in at the end, so the tree is walked only once.
 */
#define SNAP_FIELDS 14
#define SNAP_FIELDS_NOEXT 12
#define SNAP_FIELDS_NOFLAGS 11

/* A directory still to be listed, with its path (owned). */
struct pending {
	uint64_t ino;
	char *path;
	uint32_t len;
};

struct snap {
	const struct cm_kv__ctx *c;
	msgpack_packer pk;
	uint32_t count;
	struct pending *todo; /* a stack */
	size_t n, cap;
};

static int pack_record(struct snap *sn, const char *path, uint32_t len, const struct cm_kv__node *n)
{
	msgpack_packer *pk = &sn->pk;
	const struct cm_attr *a = &n->attr;
	int rc = msgpack_pack_array(pk, SNAP_FIELDS);
	rc = rc ? rc : msgpack_pack_str_with_body(pk, path, len);
	rc = rc ? rc : msgpack_pack_uint64(pk, n->ino);
	rc = rc ? rc : msgpack_pack_uint32(pk, a->mode);
	rc = rc ? rc : msgpack_pack_uint32(pk, a->uid);
	rc = rc ? rc : msgpack_pack_uint32(pk, a->gid);
	rc = rc ? rc : msgpack_pack_int64(pk, a->mtime_ns);
	rc = rc ? rc : msgpack_pack_int64(pk, a->ctime_ns);
	rc = rc ? rc : msgpack_pack_uint64(pk, a->create_index);
	rc = rc ? rc : msgpack_pack_uint64(pk, a->mod_index);
	rc = rc ? rc : msgpack_pack_uint64(pk, a->version);
	rc = rc ? rc : msgpack_pack_bin(pk, n->value.len);
	if (rc == 0 && n->value.len != 0)
		rc = msgpack_pack_bin_body(pk, n->value.p, n->value.len);
	rc = rc ? rc : msgpack_pack_uint32(pk, n->flags);
	rc = rc ? rc : msgpack_pack_int64(pk, a->atime_ns);
	rc = rc ? rc : msgpack_pack_uint32(pk, a->nlink);
	sn->count++;
	return rc ? -ENOMEM : 0;
}

static int todo_push(struct snap *sn, uint64_t ino, const char *path, uint32_t len)
{
	if (sn->n == sn->cap) {
		size_t ncap = sn->cap ? sn->cap * 2 : 32;
		struct pending *nv = realloc(sn->todo, ncap * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		sn->todo = nv;
		sn->cap = ncap;
	}
	char *p = malloc(len);
	if (p == NULL)
		return -ENOMEM;
	memcpy(p, path, len);
	sn->todo[sn->n++] = (struct pending){ino, p, len};
	return 0;
}

/* Emit every child of dir, queueing the directories among them. */
static int snap_dir(struct snap *sn, MDB_cursor *cur, const struct pending *dir)
{
	char path[CM_PATH_MAX];
	uint32_t plen = dir->len == 1 ? 0 : dir->len; /* "/" + "/x" is "/x" */
	memcpy(path, dir->path, plen);
	MDB_val k, v;
	int rc;
	for (rc = cm_kv__child_first(sn->c, cur, dir->ino, &k, &v); rc == 0;
	     rc = cm_kv__child_next(sn->c, cur, dir->ino, &k, &v)) {
		struct cm_bytes name;
		struct cm_kv__node n;
		rc = cm_kv__child_dec(&k, &v, &name, &n);
		if (rc == 0 && plen + 1 + name.len > CM_PATH_MAX)
			rc = -EIO; /* renames keep paths short enough: corrupt */
		if (rc != 0)
			break;
		path[plen] = '/';
		memcpy(path + plen + 1, name.p, name.len);
		uint32_t len = plen + 1 + name.len;
		rc = pack_record(sn, path, len, &n);
		if (rc == 0 && S_ISDIR(n.attr.mode))
			rc = todo_push(sn, n.ino, path, len);
		if (rc != 0)
			break;
	}
	return rc == -ENOENT ? 0 : rc;
}

static int snap_tree(struct snap *sn)
{
	struct cm_kv__node root;
	uint8_t kb[CM_KV_KEY_MAX];
	MDB_val k = {cm_kv__key(kb, sn->c->group, 0, NULL, 0), kb}, v;
	int rc = mdb_get(sn->c->txn, sn->c->kv, &k, &v);
	if (rc == MDB_NOTFOUND) {
		rc = 0; /* "/" never changed: restore synthesises it too */
	} else if (rc != 0) {
		return cm_store_mdb_err(rc);
	} else {
		rc = cm_kv__node_dec(v.mv_data, v.mv_size, &root);
		rc = rc ? rc : pack_record(sn, "/", 1, &root);
	}
	MDB_cursor *cur;
	if (rc == 0)
		rc = cm_store_mdb_err(mdb_cursor_open(sn->c->txn, sn->c->kv, &cur));
	if (rc != 0)
		return rc;
	rc = todo_push(sn, CM_KV_ROOT_INO, "/", 1);
	while (rc == 0 && sn->n != 0) {
		struct pending d = sn->todo[--sn->n];
		rc = snap_dir(sn, cur, &d);
		free(d.path);
	}
	mdb_cursor_close(cur);
	return rc;
}

int cm_kv_snapshot(struct cm_store *s, MDB_txn *txn, uint64_t group, msgpack_sbuffer *sb)
{
	struct cm_kv__ctx c;
	cm_kv__ctx_init(&c, s, txn, group);
	struct snap sn = {.c = &c};
	msgpack_packer_init(&sn.pk, sb, msgpack_sbuffer_write);
	size_t at = sb->size;
	static const char hdr[5] = {(char)0xdd, 0, 0, 0, 0}; /* array32, count below */
	int rc = msgpack_sbuffer_write(sb, hdr, sizeof(hdr)) ? -ENOMEM : 0;
	rc = rc ? rc : snap_tree(&sn);
	rc = rc ? rc : cm_kv__reserved_pack(&c, &sn.pk); /* leases, locks: kv_lease.h */
	while (sn.n != 0)
		free(sn.todo[--sn.n].path);
	free(sn.todo);
	if (rc != 0) {
		sb->size = at;
		return rc;
	}
	for (int k = 0; k < 4; k++)
		sb->data[at + 1 + (size_t)k] = (char)(sn.count >> (24 - 8 * k));
	return 0;
}

/* Restore state: the directory inos seen, to prove them unique at the end. */
struct restore {
	const struct cm_kv__ctx *c;
	struct cm_kv__rd r;
	uint64_t *inos;
	size_t n, cap;
};

static int ino_note(struct restore *rs, uint64_t ino)
{
	if (rs->n == rs->cap) {
		size_t ncap = rs->cap ? rs->cap * 2 : 64;
		uint64_t *nv = realloc(rs->inos, ncap * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		rs->inos = nv;
		rs->cap = ncap;
	}
	rs->inos[rs->n++] = ino;
	return 0;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Two directories sharing an ino would share their children. */
static int inos_unique(struct restore *rs)
{
	if (rs->n == 0)
		return 0;
	qsort(rs->inos, rs->n, sizeof(*rs->inos), u64_cmp);
	for (size_t k = 1; k < rs->n; k++)
		if (rs->inos[k] == rs->inos[k - 1])
			return -EBADMSG;
	return 0;
}

/* Parse one record's fields into path and n (value points into the blob). */
static int record_parse(struct cm_kv__rd *r, struct cm_bytes *path, struct cm_kv__node *n)
{
	struct cm_attr *a = &n->attr;
	uint32_t m;
	if (cm_kv__rd_array(r, &m) != 0 ||
	    (m != SNAP_FIELDS && m != SNAP_FIELDS_NOEXT && m != SNAP_FIELDS_NOFLAGS))
		return -EBADMSG;
	if (cm_kv__rd_str(r, path) != 0 || cm_kv__rd_u64(r, &n->ino) != 0 ||
	    cm_kv__rd_u32(r, &a->mode) != 0 || cm_kv__rd_u32(r, &a->uid) != 0 ||
	    cm_kv__rd_u32(r, &a->gid) != 0 || cm_kv__rd_i64(r, &a->mtime_ns) != 0 ||
	    cm_kv__rd_i64(r, &a->ctime_ns) != 0 || cm_kv__rd_u64(r, &a->create_index) != 0 ||
	    cm_kv__rd_u64(r, &a->mod_index) != 0 || cm_kv__rd_u64(r, &a->version) != 0 ||
	    cm_kv__rd_bin(r, &n->value) != 0)
		return -EBADMSG;
	a->size = n->value.len;
	n->flags = 0;
	if (m >= SNAP_FIELDS_NOEXT && cm_kv__rd_u32(r, &n->flags) != 0)
		return -EBADMSG;
	cm_kv__ext_default(a);
	if (m == SNAP_FIELDS &&
	    (cm_kv__rd_i64(r, &a->atime_ns) != 0 || cm_kv__rd_u32(r, &a->nlink) != 0))
		return -EBADMSG;
	return 0;
}

/* What a record must be on its own, before it is placed in the tree. */
static int record_check(struct cm_bytes path, const struct cm_kv__node *n)
{
	uint32_t type = n->attr.mode & S_IFMT;
	if (cm_path_validate(path.p, path.len) != 0)
		return -EBADMSG;
	if ((n->attr.mode & ~CM_KV_MODE_MASK) != 0 || (n->flags & ~CM_KV_NODE_FLAGS_KNOWN) != 0)
		return -EBADMSG; /* in a record, such mode bits would read as flags */
	if (type != S_IFDIR && type != S_IFREG && type != S_IFLNK)
		return -EBADMSG;
	if (n->ino == 0 || n->attr.version == 0 || n->value.len > CM_VALUE_MAX_LIMIT)
		return -EBADMSG;
	if (type == S_IFDIR && n->value.len != 0)
		return -EBADMSG;
	if (type == S_IFDIR ? n->attr.nlink == 1 : n->attr.nlink != 1)
		return -EBADMSG; /* a directory: 2 + subdirectories, or 0 (unknown) */
	bool root = path.len == 1;
	if (root != (n->ino == CM_KV_ROOT_INO) || (root && type != S_IFDIR))
		return -EBADMSG;
	if (n->flags != 0 && (root || type != S_IFDIR))
		return -EBADMSG; /* only MKDIR makes a boundary or a top, never of "/" */
	if (n->flags == (CM_KV_NODE_BOUNDARY | CM_KV_NODE_TOP))
		return -EBADMSG; /* never both */
	return 0;
}

static int restore_one(struct restore *rs)
{
	struct cm_bytes path;
	struct cm_kv__node n;
	int rc = record_parse(&rs->r, &path, &n);
	rc = rc ? rc : record_check(path, &n);
	if (rc != 0)
		return rc;
	if (S_ISDIR(n.attr.mode) && (rc = ino_note(rs, n.ino)) != 0)
		return rc;
	if (path.len == 1)
		return cm_kv__node_put(rs->c, 0, "", 0, &n);
	struct cm_kv__walk w;
	rc = cm_kv__walk(rs->c, path.p, path.len, &w);
	if (rc == -ENOTDIR)
		return -EBADMSG; /* the parent is a file */
	if (rc != 0)
		return rc;
	struct cm_bytes name = cm_kv__basename(path.p, path.len);
	/* Only the last component may be missing: parents come first. And
	 * nothing lies below a boundary: apply refuses every write there. */
	if (w.found || w.miss != path.len - name.len || w.fenced)
		return -EBADMSG;
	return cm_kv__node_put(rs->c, w.dir, name.p, name.len, &n);
}

static int restore_all(struct restore *rs)
{
	int rc = cm_store_range_delete(rs->c->txn, rs->c->kv, rs->c->group, 0, UINT64_MAX);
	rc = rc ? rc : cm_store_range_delete(rs->c->txn, rs->c->events, rs->c->group, 0, UINT64_MAX);
	uint32_t n;
	if (rc == 0 && cm_kv__rd_array(&rs->r, &n) != 0)
		rc = -EBADMSG;
	for (uint32_t k = 0; rc == 0 && k < n; k++)
		rc = restore_one(rs);
	if (rc == 0 && rs->r.p != rs->r.end) /* a group with leases or locks */
		rc = cm_kv__reserved_restore(rs->c, &rs->r);
	if (rc == 0 && rs->r.p != rs->r.end)
		rc = -EBADMSG;
	return rc ? rc : inos_unique(rs);
}

int cm_kv_restore(struct cm_store *s, MDB_txn *txn, uint64_t group, const void *buf, uint64_t len)
{
	if (buf == NULL || len == 0)
		return -EBADMSG; /* not even an empty array */
	/* A nested transaction: a blob found bad halfway leaves the group
	 * exactly as it was, whatever the caller then does with txn. */
	MDB_txn *child;
	int rc = mdb_txn_begin(cm_store_env(s), txn, 0, &child);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	struct cm_kv__ctx c;
	cm_kv__ctx_init(&c, s, child, group);
	const uint8_t *b = buf;
	struct restore rs = {.c = &c, .r = {b, b + len}};
	rc = restore_all(&rs);
	free(rs.inos);
	if (rc != 0) {
		mdb_txn_abort(child);
		return rc;
	}
	return cm_store_mdb_err(mdb_txn_commit(child));
}
