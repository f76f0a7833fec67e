/* kv_split.c: a shard split and a merge back, in the state machine.
 *
 * Split: the subtree at a prefix moves from this group to a new one, on
 * every replica at the same index. The parent applies the command (proposed by its leader: server/split.c)
 * like any other: it checks the prefix, then moves every record below it
 * to the new group's keys unchanged (same inos, indexes, values: the new
 * group's index space continues the parent's from this index, so none of
 * them can collide with what the new group creates later), copies the
 * directories above it (so that the new group's tree reaches its top from
 * "/"), makes the prefix the new group's top and leaves it in the parent
 * as a boundary. No event: nothing changed for a reader, only who serves it.
 *
 * Merge (driven by server/merge.c and confmanctl): the child's top is
 * frozen, the parent's boundary lets the merge's copies through, and at the
 * end becomes a plain directory again. Copies re-create the files in the
 * parent (its indexes and inos: the two index spaces diverged since the
 * split, so the child's cannot be kept without colliding).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "confman/path.h"
#include "server/byteorder.h"
#include "server/kv.h"
#include "server/kv_int.h"

/* Re-key one record to group `to` (its key's first 8 bytes) and delete it
 * here. Both go through copies: LMDB's pointers die with the next write. */
struct move {
	const struct cm_kv__ctx *c;
	uint64_t to;
};

static int move_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
	const struct move *m = arg;
	uint8_t kb[CM_KV_KEY_MAX];
	if (k->mv_size > sizeof(kb))
		return -EIO;
	memcpy(kb, k->mv_data, k->mv_size);
	cm_bo_put_be64(kb, m->to);
	void *copy = malloc(v->mv_size ? v->mv_size : 1);
	if (copy == NULL)
		return -ENOMEM;
	memcpy(copy, v->mv_data, v->mv_size);
	MDB_val nk = {k->mv_size, kb}, nv = {v->mv_size, copy};
	int rc = cm_store_mdb_err(mdb_cursor_del(cur, 0));
	if (rc == 0)
		rc = cm_store_mdb_err(mdb_put(m->c->txn, m->c->kv, &nk, &nv, 0));
	free(copy);
	return rc;
}

/* Move everything below directory ino to group `to`. */
static int tree_move(const struct cm_kv__ctx *c, uint64_t ino, uint64_t to)
{
	struct move m = {c, to};
	return cm_kv__tree_take(c, ino, move_one, &m);
}

/* Copy "/" and the directories down to path's parent into group `to`,
 * without their marks (a top of the parent is no top of the new group). */
static int copy_ancestors(const struct cm_kv__ctx *c, const struct cm_kv__ctx *to, const char *p,
			  uint32_t len)
{
	struct cm_kv__node n;
	int rc = cm_kv__node_get(c, 0, "", 0, &n);
	if (rc == 0)
		rc = cm_kv__node_put(to, 0, "", 0, &n);
	uint64_t parent = CM_KV_ROOT_INO;
	uint32_t base = (uint32_t)(cm_kv__basename(p, len).p - p);
	for (uint32_t i = 1; rc == 0 && i < base;) {
		uint32_t j = i;
		while (j < len && p[j] != '/')
			j++;
		rc = cm_kv__node_get(c, parent, p + i, j - i, &n);
		if (rc == 0 && !S_ISDIR(n.attr.mode))
			rc = -EIO; /* the walk went through it: a directory */
		n.flags = 0;
		if (rc == 0)
			rc = cm_kv__node_put(to, parent, p + i, j - i, &n);
		parent = n.ino;
		i = j + 1;
	}
	return rc;
}

int cm_kv__split(const struct cm_kv__ctx *c, const struct cm_kv_cmd *k, uint64_t index,
		 struct cm_kv_result *res, bool *wrote)
{
	uint64_t to = k->version;
	if (k->path.len == 1 || to == 0 || to == c->group || k->value.len == 0)
		return -EINVAL;
	struct cm_kv__walk w;
	int rc = cm_kv__walk(c, k->path.p, k->path.len, &w);
	if (rc != 0)
		return rc;
	if (w.fenced && w.found && (w.node.flags & CM_KV_NODE_BOUNDARY)) {
		/* Split already: the caller checked the prefix is the one being
		 * split off (server/split.c), so this boundary is the split's.
		 * Answer as then: its attr carries the split's index. */
		res->attr = w.node.attr;
		return 0;
	}
	if (w.fenced)
		return CM_EWRONGSHARD;
	if (!w.found)
		return -ENOENT;
	if (!S_ISDIR(w.node.attr.mode))
		return -ENOTDIR;
	if (w.node.flags & CM_KV_NODE_TOP)
		return -EEXIST; /* this group's own prefix */
	rc = cm_kv__tree_busy(c, w.node.ino); /* a shard below it: split that one's parent */
	/* Leases and locks stay in the group that granted them (kv_lease.h):
	 * a subtree holding keys on a lease, or locks, does not move. */
	if (rc == 0 && cm_kv__lease_under(c, k->path) != 0)
		rc = -EBUSY;
	if (rc != 0)
		return rc;
	struct cm_kv__ctx dst = *c;
	dst.group = to;
	struct cm_bytes name = cm_kv__basename(k->path.p, k->path.len);
	struct cm_kv__node top = w.node;
	*wrote = true;
	rc = copy_ancestors(c, &dst, k->path.p, k->path.len);
	top.flags = CM_KV_NODE_TOP;
	if (rc == 0)
		rc = cm_kv__node_put(&dst, w.parent, name.p, name.len, &top);
	if (rc == 0)
		rc = tree_move(c, w.node.ino, to);
	/* The parent keeps an empty boundary, stamped with the split's index. */
	top.flags = CM_KV_NODE_BOUNDARY;
	top.attr.mod_index = index;
	top.attr.nlink = 2;
	if (rc == 0)
		rc = cm_kv__node_put(c, w.parent, name.p, name.len, &top);
	if (rc != 0)
		return rc;
	res->attr = top.attr;
	res->split_group = to;
	return 0;
}

int cm_kv_fenced(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes path)
{
	struct cm_kv__ctx c;
	cm_kv__ctx_init(&c, s, txn, group);
	struct cm_kv__walk w;
	int rc = cm_kv__walk(&c, path.p, path.len, &w);
	return rc != 0 ? rc : w.fenced ? 1 : 0;
}

/* ---- merging a shard back: the phases of SHARD_MERGE (server/merge.c) ---- */

bool cm_kv__write_fenced(const struct cm_kv__walk *w, uint32_t flags)
{
	/* A merge's copy goes below a boundary being merged and nowhere else
	 * (it writes no event: elsewhere it would hide a change). */
	if (flags & CM_MERGE_COPY)
		return !w->merging;
	return w->fenced;
}

/* Set or clear flags on the node at path; the same flags already there is
 * done (each phase may be repeated). want: the flags it must have first. */
static int mark(const struct cm_kv__ctx *c, const struct cm_kv_cmd *k, uint64_t index,
		uint32_t want, uint32_t set, uint32_t clear, struct cm_kv_result *res, bool *wrote)
{
	struct cm_kv__walk w;
	int rc = cm_kv__walk(c, k->path.p, k->path.len, &w);
	if (rc != 0)
		return rc;
	if (!w.found)
		return -ENOENT;
	uint32_t now = (w.node.flags | set) & ~clear;
	res->attr = w.node.attr;
	if (now == w.node.flags)
		return 0; /* this phase ran already */
	if ((w.node.flags & want) != want)
		return -EINVAL; /* not the node this phase expects: an earlier one missing */
	struct cm_kv__node n = w.node;
	n.flags = now;
	n.attr.mod_index = index;
	if (clear & CM_KV_NODE_BOUNDARY) {
		n.attr.nlink = 0; /* its copied subdirectories: counted again */
		rc = cm_kv__nlink_fix(c, &n);
	}
	struct cm_bytes name = cm_kv__basename(k->path.p, k->path.len);
	*wrote = true;
	if (rc == 0)
		rc = cm_kv__node_put(c, w.parent, name.p, name.len, &n);
	res->attr = n.attr;
	return rc;
}

int cm_kv__merge(const struct cm_kv__ctx *c, const struct cm_kv_cmd *k, uint64_t index,
		 struct cm_kv_result *res, bool *wrote)
{
	if (k->path.len == 1)
		return -EINVAL; /* "/" is nobody's child */
	switch (k->flags) {
	case CM_MERGE_FREEZE:
		if (cm_kv__lease_under(c, k->path) != 0)
			return -EBUSY; /* the copies would drop leases and locks */
		return mark(c, k, index, CM_KV_NODE_TOP, CM_KV_NODE_FROZEN, 0, res, wrote);
	case CM_MERGE_BEGIN:
		return mark(c, k, index, CM_KV_NODE_BOUNDARY, CM_KV_NODE_MERGING, 0, res, wrote);
	case CM_MERGE_COMMIT:
		return mark(c, k, index, CM_KV_NODE_BOUNDARY | CM_KV_NODE_MERGING, 0,
			    CM_KV_NODE_BOUNDARY | CM_KV_NODE_MERGING, res, wrote);
	default:
		return -EINVAL;
	}
}
