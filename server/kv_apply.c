/* kv_apply.c: applying a committed command: PUT, MKDIR, DELETE, RENAME. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "confman/path.h"
#include "server/kv.h"
#include "server/kv_int.h"

/*
 * Every operation decides all its errors before its first write: an
 * operation error must leave the group unchanged, and the transaction is
 * shared with other groups, so nothing can be rolled back by aborting it.
 */
struct apply {
	struct cm_kv__ctx c;
	const struct cm_kv_cmd *cmd;
	uint64_t index;
	uint32_t made;  /* nodes created so far: the low bits of the next ino */
	uint64_t put_ino; /* the node a PUT wrote (for CM_PUT_LEASE) */
	bool wrote;     /* anything written yet (then only storage errors may follow) */
	struct cm_kv_result *res;
};

static uint64_t ino_next(struct apply *a)
{
	assert(a->made < (1u << CM_KV_INO_SHIFT));
	return a->index << CM_KV_INO_SHIFT | a->made++;
}

static struct cm_attr attr_new(const struct apply *a, uint32_t mode, uint32_t size)
{
	return (struct cm_attr){
		.mode = mode,
		.uid = a->cmd->uid,
		.gid = a->cmd->gid,
		.mtime_ns = a->cmd->stamp_ns,
		.ctime_ns = a->cmd->stamp_ns,
		.create_index = a->index,
		.mod_index = a->index,
		.version = 1,
		.size = size,
		.atime_ns = a->cmd->stamp_ns,
		.nlink = S_ISDIR(mode) ? 2 : 1,
	};
}

/* The name of path's node under its parent ("" for "/"). */
static struct cm_bytes base(struct cm_bytes path)
{
	return path.len == 1 ? (struct cm_bytes){"", 0} : cm_kv__basename(path.p, path.len);
}

static int put(struct apply *a, uint64_t parent, struct cm_bytes name, const struct cm_kv__node *n)
{
	struct cm_kv__node fixed = *n;
	int rc = cm_kv__nlink_fix(&a->c, &fixed); /* a directory written before nlink was kept */
	if (rc != 0)
		return rc;
	a->wrote = true;
	return cm_kv__node_put(&a->c, parent, name.p, name.len, &fixed);
}

/*
 * The rule for directories (kv.h): an entry of the directory holding
 * `child` was created, removed or renamed, which moves its mtime and ctime
 * to the command's stamp, and its nlink by delta (subdirectories gained or
 * lost). Called after the entry's own writes, so that a directory whose
 * nlink was never stored is counted with the change already made.
 */
static int parent_touch(struct apply *a, struct cm_bytes child, int delta)
{
	assert(child.len > 1);
	uint32_t k = child.len - 1;
	while (child.p[k] != '/')
		k--;
	struct cm_bytes dir = {child.p, k ? k : 1};
	struct cm_kv__walk w;
	int rc = cm_kv__walk(&a->c, dir.p, dir.len, &w);
	if (rc != 0)
		return rc;
	if (!w.found || !S_ISDIR(w.node.attr.mode))
		return -EIO; /* an entry was just written below it */
	if (w.node.attr.nlink == 0)
		rc = cm_kv__nlink_fix(&a->c, &w.node); /* counts the change too */
	else
		w.node.attr.nlink = (uint32_t)((int64_t)w.node.attr.nlink + delta);
	if (rc != 0)
		return rc;
	if (w.node.attr.nlink < 2)
		return -EIO; /* a count that went wrong: corrupt */
	w.node.attr.mtime_ns = w.node.attr.ctime_ns = a->cmd->stamp_ns;
	return put(a, w.parent, base(dir), &w.node);
}

/* CM_SET_TIMES: utimensat's atime and mtime, each unless CM_TIME_OMIT. */
static void times_set(const struct cm_kv_cmd *k, struct cm_attr *at)
{
	if (!(k->flags & CM_SET_TIMES))
		return;
	if (k->atime_ns != CM_TIME_OMIT)
		at->atime_ns = k->atime_ns;
	if (k->mtime_ns != CM_TIME_OMIT)
		at->mtime_ns = k->mtime_ns;
}

static int del(struct apply *a, uint64_t parent, struct cm_bytes name)
{
	a->wrote = true;
	return cm_kv__node_del(&a->c, parent, name.p, name.len);
}

/* The change succeeded: report it and record its event. */
static int done(struct apply *a, uint8_t kind, const struct cm_attr *attr)
{
	struct cm_bytes none = {"", 0};
	a->res->attr = *attr;
	a->wrote = true;
	if (a->cmd->flags & CM_MERGE_COPY)
		return 0; /* the reader's copy is the child's, unchanged */
	a->res->event_kind = kind;
	return cm_kv__event_put(&a->c, a->index, kind, a->cmd->path,
				kind == CM_EV_RENAME ? a->cmd->path2 : none, attr);
}

/* A merge's copy (CM_MERGE_COPY) carries the child's version of the file:
 * the copy keeps it, so a key's version never goes back across a merge (a
 * CAS holding a version read before the merge must not match the copy of a
 * later change). A copy made again by a merge run again sets the same
 * value and version. Entries without one (0: older clients) count on. */
static uint64_t merge_version(const struct cm_kv_cmd *k, uint64_t counted)
{
	return (k->flags & CM_MERGE_COPY) && k->version != 0 ? k->version : counted;
}

/* CM_PUT_IF_VERSION, CM_PUT_IF_MOD: the node's version, mod_index (0 for
 * both when absent: at == NULL) must be the expected ones. */
static int cas_check(const struct apply *a, const struct cm_attr *at)
{
	uint32_t f = a->cmd->flags;
	if ((f & CM_PUT_IF_VERSION) && a->cmd->version != (at ? at->version : 0))
		return -ECANCELED;
	if ((f & CM_PUT_IF_MOD) && a->cmd->mod_index != (at ? at->mod_index : 0))
		return -ECANCELED;
	return 0;
}

/* CM_NO_PARENTS: is a parent of path missing (the walk stopped above it)? */
static int parents_check(const struct apply *a, const struct cm_kv__walk *w, struct cm_bytes path)
{
	assert(!w->found);
	if (!(a->cmd->flags & CM_NO_PARENTS))
		return 0;
	return memchr(path.p + w->miss, '/', path.len - w->miss) ? -ENOENT : 0;
}

/* CM_PUT_IF_CREATED: the walk must have found the incarnation the writer
 * opened: the same create_index (a node keeps it across renames; a node
 * re-created at the path has a later one). */
static int identity_check(const struct apply *a, const struct cm_kv__walk *w)
{
	if (!(a->cmd->flags & CM_PUT_IF_CREATED))
		return 0;
	if (!w->found)
		return -ENOENT;
	return w->node.attr.create_index == a->cmd->version ? 0 : -ESTALE;
}

/* mkdir -p of path's missing ancestors, from where walk w stopped; *parent: the last one. */
static int make_parents(struct apply *a, const struct cm_kv__walk *w, struct cm_bytes path,
			uint64_t *parent)
{
	assert(!w->found);
	uint64_t cur = w->dir;
	uint32_t first_end = 0; /* the first directory made: path[0, first_end) */
	for (uint32_t start = w->miss;;) {
		uint32_t end = start;
		while (end < path.len && path.p[end] != '/')
			end++;
		if (end == path.len)
			break;
		struct cm_kv__node n = {
			.attr = attr_new(a, S_IFDIR | 0755, 0),
			.ino = ino_next(a),
			.value = {"", 0},
		};
		/* Each holds the next one made; the last gets its entry from
		 * the caller's parent_touch. */
		if (memchr(path.p + end + 1, '/', path.len - end - 1) != NULL)
			n.attr.nlink = 3;
		int rc = put(a, cur, (struct cm_bytes){path.p + start, end - start}, &n);
		if (rc != 0)
			return rc;
		if (first_end == 0)
			first_end = end;
		cur = n.ino;
		start = end + 1;
	}
	*parent = cur;
	/* The existing directory above them gained a subdirectory. */
	return first_end ? parent_touch(a, (struct cm_bytes){path.p, first_end}, 1) : 0;
}

/* A copy of a value read from LMDB: the next write may move what it points at. */
static int value_copy(struct cm_bytes v, char **copy)
{
	*copy = malloc(v.len ? v.len : 1);
	if (*copy == NULL)
		return -ENOMEM;
	if (v.len != 0)
		memcpy(*copy, v.p, v.len);
	return 0;
}

/* PUT with CM_PUT_KEEP_VALUE: chmod/chown (with CM_SET_MODE), value untouched. */
static int put_keep(struct apply *a, const struct cm_kv__walk *w)
{
	const struct cm_kv_cmd *k = a->cmd;
	struct cm_kv__node n = w->node;
	uint32_t type = k->mode & S_IFMT;
	if (type != 0 && type != (n.attr.mode & S_IFMT))
		return -EINVAL; /* a type changes only with new content */
	char *copy;
	int rc = value_copy(n.value, &copy);
	if (rc != 0)
		return rc;
	n.value.p = copy;
	if (k->flags & CM_SET_MODE) {
		n.attr.mode = (n.attr.mode & S_IFMT) | (k->mode & 07777);
		n.attr.uid = k->uid;
		n.attr.gid = k->gid;
	}
	n.attr.ctime_ns = k->stamp_ns;
	times_set(k, &n.attr);
	n.attr.version++;
	n.attr.mod_index = a->index;
	a->put_ino = n.ino; /* CM_PUT_LEASE attaches this node (op_put) */
	rc = put(a, w->parent, base(k->path), &n);
	free(copy);
	return rc ? rc : done(a, CM_EV_PUT, &n.attr);
}

/* CM_PUT_APPEND: a fresh buffer holding old then the command's value (old
 * points into LMDB, which the next write may move). -EFBIG past the limit. */
static int append_value(const struct apply *a, struct cm_bytes old, char **out)
{
	const struct cm_kv_cmd *k = a->cmd;
	uint32_t limit = k->max_value ? k->max_value : CM_VALUE_MAX_DEFAULT;
	if (k->value.len > limit || old.len > limit - k->value.len)
		return -EFBIG;
	size_t len = (size_t)old.len + k->value.len;
	*out = malloc(len ? len : 1);
	if (*out == NULL)
		return -ENOMEM;
	if (old.len)
		memcpy(*out, old.p, old.len);
	if (k->value.len)
		memcpy(*out + old.len, k->value.p, k->value.len);
	return 0;
}

/* PUT onto an existing node. */
static int put_existing(struct apply *a, const struct cm_kv__walk *w)
{
	const struct cm_kv_cmd *k = a->cmd;
	const struct cm_attr *old = &w->node.attr;
	if (S_ISDIR(old->mode) && (!(k->flags & CM_PUT_KEEP_VALUE) || (k->flags & CM_PUT_LEASE)))
		return -EISDIR; /* a lease holds files only */
	if (k->flags & CM_PUT_CREATE)
		return -EEXIST;
	int rc = identity_check(a, w);
	rc = rc ? rc : cas_check(a, old);
	if (rc != 0)
		return rc;
	if (k->flags & CM_PUT_KEEP_VALUE)
		return put_keep(a, w);
	uint32_t type = k->mode & S_IFMT;
	if (type != 0 && type != S_IFREG && type != S_IFLNK)
		return -EINVAL;
	struct cm_kv__node n = w->node;
	n.attr.mode = (type ? type : (old->mode & S_IFMT)) | (old->mode & 07777);
	if (k->flags & CM_SET_MODE) {
		n.attr.mode = (n.attr.mode & S_IFMT) | (k->mode & 07777);
		n.attr.uid = k->uid;
		n.attr.gid = k->gid;
	}
	char *joined = NULL;
	n.value = k->value;
	if (k->flags & CM_PUT_APPEND) {
		rc = append_value(a, w->node.value, &joined);
		if (rc != 0)
			return rc;
		n.value = (struct cm_bytes){joined, w->node.value.len + k->value.len};
	}
	n.attr.size = n.value.len;
	n.attr.mtime_ns = n.attr.ctime_ns = k->stamp_ns;
	times_set(k, &n.attr);
	n.attr.version = merge_version(k, n.attr.version + 1);
	n.attr.mod_index = a->index;
	a->put_ino = n.ino;
	rc = put(a, w->parent, base(k->path), &n);
	free(joined);
	return rc ? rc : done(a, CM_EV_PUT, &n.attr);
}

static int op_put_node(struct apply *a)
{
	const struct cm_kv_cmd *k = a->cmd;
	uint32_t limit = k->max_value ? k->max_value : CM_VALUE_MAX_DEFAULT;
	if (!(k->flags & CM_PUT_KEEP_VALUE) && k->value.len > limit)
		return -EFBIG;
	struct cm_kv__walk w;
	int rc = cm_kv__walk(&a->c, k->path.p, k->path.len, &w);
	if (rc != 0)
		return rc;
	if (cm_kv__write_fenced(&w, k->flags))
		return CM_EWRONGSHARD;
	if (w.found)
		return put_existing(a, &w);
	if (k->flags & CM_PUT_KEEP_VALUE)
		return -ENOENT; /* chmod of nothing */
	rc = identity_check(a, &w);
	rc = rc ? rc : cas_check(a, NULL);
	rc = rc ? rc : parents_check(a, &w, k->path);
	if (rc != 0)
		return rc;
	uint32_t type = k->mode & S_IFMT;
	if (type != 0 && type != S_IFREG && type != S_IFLNK)
		return -EINVAL;
	uint32_t mode = k->mode == 0 ? (S_IFREG | 0644) : ((type ? type : S_IFREG) | (k->mode & 07777));
	uint64_t parent;
	rc = make_parents(a, &w, k->path, &parent);
	if (rc != 0)
		return rc;
	struct cm_kv__node n = {
		.attr = attr_new(a, mode, k->value.len),
		.ino = ino_next(a),
		.value = k->value,
	};
	times_set(k, &n.attr);
	n.attr.version = merge_version(k, n.attr.version);
	a->put_ino = n.ino;
	rc = put(a, parent, base(k->path), &n);
	rc = rc ? rc : parent_touch(a, k->path, 0);
	return rc ? rc : done(a, CM_EV_PUT, &n.attr);
}

/* PUT; with CM_PUT_LEASE the file joins lease arg (kv_lease.c). */
static int op_put(struct apply *a)
{
	const struct cm_kv_cmd *k = a->cmd;
	bool lease = k->flags & CM_PUT_LEASE;
	int rc = lease ? cm_kv__lease_put_check(&a->c, k->arg) : 0;
	rc = rc ? rc : op_put_node(a);
	if (rc != 0 || !lease)
		return rc;
	if (a->put_ino == 0) /* a chmod keeping the value found no node to write */
		return -EIO;
	return cm_kv__lease_attach(&a->c, k->arg, a->put_ino, k->path);
}

/*
 * A shard's top directory (CM_KV_NODE_TOP) ties the group's subtree into the
 * namespace, as a mount point does: removing, moving or replacing it is
 * -EBUSY, whoever asks and however (rmdir, rm -r, a rename of it or over it).
 * The mark comes from the log (the leader's MKDIR with CM_MKDIR_TOP), so
 * every replica refuses the same commands.
 */
static int top_busy(const struct cm_kv__walk *w)
{
	return w->found && (w->node.flags & CM_KV_NODE_TOP) ? -EBUSY : 0;
}

/*
 * MKDIR with CM_MKDIR_TOP of a node that exists: a top made by a write
 * below it that came first (PUT makes parents), or before the mark
 * existed, is marked now; silently: its attr and version stay, and no
 * watcher needs an event for a mark it never sees. Already marked, or not a
 * directory: -EEXIST, nothing changes.
 */
static int top_mark(struct apply *a, const struct cm_kv__walk *w)
{
	struct cm_kv__node n = w->node;
	if (!S_ISDIR(n.attr.mode) || (n.flags & CM_KV_NODE_TOP))
		return -EEXIST;
	assert(n.value.len == 0); /* a directory has no value to copy */
	n.flags |= CM_KV_NODE_TOP;
	a->res->attr = n.attr;
	return put(a, w->parent, base(a->cmd->path), &n);
}

/*
 * MKDIR; with CM_MKDIR_BOUNDARY, the top directory of a shard split off from
 * this group. Its create-only rule is the split's proof that the prefix held
 * nothing: any node below it would have needed a node at it (PUT and MKDIR
 * create parents). From the boundary's index on, the fence checks of every
 * op refuse what the new shard now owns, in the same log order everywhere.
 */
static int op_mkdir(struct apply *a)
{
	const struct cm_kv_cmd *k = a->cmd;
	bool boundary = k->flags & CM_MKDIR_BOUNDARY;
	bool top = k->flags & CM_MKDIR_TOP;
	if ((boundary || top) && k->path.len == 1)
		return -EINVAL; /* "/" cannot leave its own group, and always exists */
	struct cm_kv__walk w;
	int rc = cm_kv__walk(&a->c, k->path.p, k->path.len, &w);
	if (rc != 0)
		return rc;
	/* Before -EEXIST: a retried split learns that it already happened. */
	if (cm_kv__write_fenced(&w, k->flags))
		return CM_EWRONGSHARD;
	if (w.found)
		return top ? top_mark(a, &w) : -EEXIST;
	rc = cas_check(a, NULL);
	rc = rc ? rc : parents_check(a, &w, k->path);
	if (rc != 0)
		return rc;
	uint32_t type = k->mode & S_IFMT;
	if (type != 0 && type != S_IFDIR)
		return -EINVAL;
	uint32_t mode = k->mode == 0 ? (S_IFDIR | 0755) : (S_IFDIR | (k->mode & 07777));
	uint64_t parent;
	rc = make_parents(a, &w, k->path, &parent);
	if (rc != 0)
		return rc;
	struct cm_kv__node n = {
		.attr = attr_new(a, mode, 0),
		.ino = ino_next(a),
		.flags = boundary ? CM_KV_NODE_BOUNDARY : top ? CM_KV_NODE_TOP : 0,
		.value = {"", 0},
	};
	rc = put(a, parent, base(k->path), &n);
	rc = rc ? rc : parent_touch(a, k->path, 1);
	/* Watchers see an ordinary MKDIR: the mark is not in attr. */
	return rc ? rc : done(a, CM_EV_MKDIR, &n.attr);
}

static int op_delete(struct apply *a)
{
	const struct cm_kv_cmd *k = a->cmd;
	if (k->path.len == 1)
		return -EINVAL; /* "/" always exists */
	struct cm_kv__walk w;
	int rc = cm_kv__walk(&a->c, k->path.p, k->path.len, &w);
	if (rc != 0)
		return rc;
	if (w.fenced)
		return CM_EWRONGSHARD; /* also the boundary itself: no un-split */
	if (!w.found)
		return -ENOENT;
	rc = top_busy(&w);
	rc = rc ? rc : cas_check(a, &w.node.attr);
	if (rc != 0)
		return rc;
	bool dir = S_ISDIR(w.node.attr.mode);
	bool recursive = k->flags & CM_DEL_RECURSIVE;
	if (dir && !recursive && !(k->flags & CM_DEL_DIR))
		return -EISDIR;
	if (!dir && !recursive && (k->flags & CM_DEL_DIR))
		return -ENOTDIR;
	if (dir) {
		/* rmdir needs it empty; rm -r must not take a boundary (what
		 * another shard owns now) or a top with it: -EBUSY. */
		rc = recursive ? cm_kv__tree_busy(&a->c, w.node.ino)
			       : cm_kv__dir_has_children(&a->c, w.node.ino);
		if (rc != 0)
			return rc > 0 ? -ENOTEMPTY : rc;
	}
	struct cm_attr attr = w.node.attr;
	if (dir && recursive) {
		a->wrote = true;
		rc = cm_kv__tree_delete(&a->c, w.node.ino);
	}
	rc = rc ? rc : del(a, w.parent, base(k->path));
	rc = rc ? rc : parent_touch(a, k->path, dir ? -1 : 0);
	return rc ? rc : done(a, CM_EV_DELETE, &attr);
}

/* rename(2)'s rules for an existing target t replaced by source s. */
static int rename_target_check(struct apply *a, const struct cm_attr *s, const struct cm_kv__node *t)
{
	if (a->cmd->flags & CM_PUT_CREATE)
		return -EEXIST; /* RENAME_NOREPLACE */
	int rc = cas_check(a, &t->attr);
	if (rc != 0)
		return rc;
	if (S_ISDIR(s->mode) && !S_ISDIR(t->attr.mode))
		return -ENOTDIR;
	if (!S_ISDIR(s->mode) && S_ISDIR(t->attr.mode))
		return -EISDIR;
	if (!S_ISDIR(t->attr.mode))
		return 0;
	rc = cm_kv__dir_has_children(&a->c, t->ino);
	return rc > 0 ? -ENOTEMPTY : rc;
}

/* Both parents of a rename (one if they are the same): times, and nlink
 * when a directory moved (a directory it replaced was a subdirectory too). */
static int rename_parents(struct apply *a, uint64_t from, uint64_t to, bool dir, bool replaced)
{
	int d = dir ? 1 : 0;
	int to_delta = replaced ? 0 : d;
	if (from == to)
		return parent_touch(a, a->cmd->path2, to_delta - d);
	int rc = parent_touch(a, a->cmd->path, -d);
	return rc ? rc : parent_touch(a, a->cmd->path2, to_delta);
}

/* The writes of a rename whose checks all passed. */
static int rename_do(struct apply *a, const struct cm_kv__walk *src, const struct cm_kv__walk *dst)
{
	const struct cm_kv_cmd *k = a->cmd;
	struct cm_kv__node n = src->node;
	char *copy;
	int rc = value_copy(n.value, &copy);
	if (rc != 0)
		return rc;
	n.value.p = copy;
	/* The path's version never goes back: a CAS holding the replaced
	 * target's version must fail against what replaced it. */
	uint64_t v = dst->found && dst->node.attr.version > n.attr.version ? dst->node.attr.version
									   : n.attr.version;
	n.attr.version = v + 1;
	n.attr.mod_index = a->index;
	n.attr.ctime_ns = k->stamp_ns;
	uint64_t parent = dst->parent;
	if (dst->found)
		rc = del(a, dst->parent, base(k->path2));
	else
		rc = make_parents(a, dst, k->path2, &parent);
	rc = rc ? rc : del(a, src->parent, base(k->path));
	/* A directory's children hang off its ino: they move with it. */
	rc = rc ? rc : put(a, parent, base(k->path2), &n);
	free(copy);
	rc = rc ? rc : rename_parents(a, src->parent, parent, S_ISDIR(n.attr.mode), dst->found);
	/* Keys on leases keep their attachments' paths right (kv_lease.c). */
	if (rc == 0 && S_ISDIR(n.attr.mode))
		rc = cm_kv__lease_dir_moved(&a->c, k->path, k->path2);
	else if (rc == 0)
		rc = cm_kv__lease_moved(&a->c, n.ino, k->path2);
	return rc ? rc : done(a, CM_EV_RENAME, &n.attr);
}

static int op_rename(struct apply *a)
{
	const struct cm_kv_cmd *k = a->cmd;
	if (k->path.len == 1 || k->path2.len == 1)
		return -EINVAL;
	struct cm_kv__walk src, dst;
	int rc = cm_kv__walk(&a->c, k->path.p, k->path.len, &src);
	if (rc != 0)
		return rc;
	if (src.fenced)
		return CM_EWRONGSHARD;
	if (!src.found)
		return -ENOENT;
	if (k->path.len == k->path2.len && memcmp(k->path.p, k->path2.p, k->path.len) == 0) {
		a->res->attr = src.node.attr; /* rename(2) onto itself: nothing to do */
		return 0;
	}
	rc = top_busy(&src);
	if (rc != 0)
		return rc;
	bool dir = S_ISDIR(src.node.attr.mode);
	if (dir && cm_path_is_under(k->path2.p, k->path2.len, k->path.p, k->path.len))
		return -EINVAL; /* into its own subtree */
	rc = cm_kv__walk(&a->c, k->path2.p, k->path2.len, &dst);
	if (rc != 0)
		return rc;
	if (dst.fenced)
		return CM_EWRONGSHARD; /* into (or onto) what another shard owns */
	rc = top_busy(&dst); /* replacing the top would drop the group's tree */
	if (rc != 0)
		return rc;
	rc = dst.found ? rename_target_check(a, &src.node.attr, &dst.node) : cas_check(a, NULL);
	if (rc == 0 && !dst.found)
		rc = parents_check(a, &dst, k->path2);
	if (rc == 0 && dir)
		rc = cm_kv__tree_busy(&a->c, src.node.ino); /* a boundary or top never moves */
	if (rc == 0 && dir)
		rc = cm_kv__tree_fits(&a->c, src.node.ino, k->path.len, k->path2.len);
	if (rc != 0)
		return rc;
	/* The walks' values point into LMDB; src.node's is copied in rename_do. */
	return rename_do(a, &src, &dst);
}

/*
 * REVOKE and EXPIRE: the lease ends one key per entry (kv.h: one change per
 * index, one event per change). The first marks it ending (no key may join,
 * no keepalive holds it) and releases its locks; each deletes one key, as a
 * DELETE of its path would, with its event; the one that finds no key left
 * drops the lease. The leader proposes EXPIRE until then (lease.c).
 */
static int lease_end(struct apply *a, struct cm_kv_lease *l)
{
	const struct cm_kv_cmd *k = a->cmd;
	char *path = malloc(CM_PATH_MAX);
	if (path == NULL)
		return -ENOMEM;
	uint32_t plen = 0;
	uint64_t ino = 0;
	int rc = cm_kv__lease_next(&a->c, l->id, path, &plen, &ino);
	if (rc == 1) {
		struct cm_kv_cmd del = {.op = CM_OP_DELETE, .path = {path, plen},
					.stamp_ns = k->stamp_ns, .max_value = k->max_value};
		a->cmd = &del;
		rc = op_delete(a);
		a->cmd = k;
		if (rc != 0 && !a->wrote && rc != -ENOSPC && rc != -EIO && rc != -ENOMEM)
			rc = 0; /* it cannot go (nothing was written): dropped as stale */
		rc = rc ? rc : cm_kv__lease_prune(&a->c, l->id, ino);
	} else if (rc == 0) {
		a->wrote = true;
		rc = cm_kv__lease_drop(&a->c, l->id);
		a->res->lease_gone = true;
	}
	free(path);
	a->wrote = true;
	if (rc == 0 && !a->res->lease_gone)
		rc = cm_kv__lease_mark_ending(&a->c, l);
	return rc ? rc : cm_kv__locks_drop_lease(&a->c, l->id, a->index);
}

static int op_lease(struct apply *a)
{
	const struct cm_kv_cmd *k = a->cmd;
	a->res->lease = k->version;
	a->res->lease_op = k->flags;
	a->res->lease_arg = k->arg;
	if (k->flags == CM_LEASE_GRANT || k->flags == CM_LEASE_CHECKPOINT)
		return cm_kv__lease_set(&a->c, k, a->index, a->res, &a->wrote);
	struct cm_kv_lease l;
	int rc = cm_kv__lease_get(&a->c, k->version, &l);
	if (rc == 0 && l.ending && k->flags == CM_LEASE_REVOKE)
		rc = -ENOENT; /* ended already */
	if (rc != 0)
		return rc;
	a->res->lock_moved = true; /* its holds and waits go */
	rc = lease_end(a, &l);
	if (rc == 0 && !a->res->event_kind)
		memset(&a->res->attr, 0, sizeof(a->res->attr));
	a->res->attr.version = l.id;
	return rc;
}

static int op_dispatch(struct apply *a)
{
	const struct cm_kv_cmd *k = a->cmd;
	int rc = cm_path_validate(k->path.p, k->path.len);
	if (rc == 0 && k->op == CM_OP_RENAME)
		rc = cm_path_validate(k->path2.p, k->path2.len);
	if (rc != 0)
		return rc;
	if (a->index >= (UINT64_C(1) << (64 - CM_KV_INO_SHIFT)))
		return -EOVERFLOW; /* no inos left; ~2^48 entries is centuries away */
	switch (k->op) {
	case CM_OP_PUT:
		return op_put(a);
	case CM_OP_MKDIR:
		return op_mkdir(a);
	case CM_OP_DELETE:
		return op_delete(a);
	case CM_OP_RENAME:
		return op_rename(a);
	case CM_OP_SHARD_MERGE:
		return cm_kv__merge(&a->c, k, a->index, a->res, &a->wrote);
	case CM_OP_SHARD_SPLIT:
		a->res->split_members = k->value; /* cmd's bytes: the caller's */
		return cm_kv__split(&a->c, k, a->index, a->res, &a->wrote);
	case CM_OP_LEASE:
		return op_lease(a);
	case CM_OP_LOCK:
		a->res->lock_moved = true;
		return cm_kv__lock(&a->c, k, a->index, a->res, &a->wrote);
	default:
		return -EBADMSG; /* cm_kv_cmd_decode lets no other op through */
	}
}

static bool is_storage_err(int rc)
{
	return rc == -ENOSPC || rc == -EIO || rc == -ENOMEM;
}

int cm_kv_apply(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t index,
		const void *cmd, uint32_t len, struct cm_kv_result *res)
{
	memset(res, 0, sizeof(*res));
	msgpack_unpacked up;
	struct cm_kv_cmd k;
	int rc = cm_kv_cmd_decode(cmd, len, &up, &k);
	msgpack_unpacked_destroy(&up); /* k points into cmd, not into up */
	if (rc != 0) {
		res->err = -EBADMSG; /* the same on every replica: a result */
		return 0;
	}
	struct apply a = {.cmd = &k, .index = index, .res = res};
	cm_kv__ctx_init(&a.c, s, txn, group);
	rc = op_dispatch(&a);
	if (rc == 0 || is_storage_err(rc))
		return rc;
	/* An operation error after a write would leave half a change behind:
	 * that is a bug or corruption, and the transaction must not commit. */
	if (a.wrote)
		return -EIO;
	memset(res, 0, sizeof(*res));
	res->err = rc;
	return 0;
}
