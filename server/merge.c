/* merge.c: folding a shard back into its parent (the inverse of a split).
 *
 * confmanctl drives the phases, each safe to repeat (README, "Splitting and
 * merging shards"):
 *
 *  1. FREEZE at the child's leader: its top refuses every write from then
 *     on (WRONGSHARD: writers retry until the map moves); reads go on, and
 *     the child's state is final.
 *  2. BEGIN at the parent's leader: the boundary lets CM_MERGE_COPY writes
 *     through (and nothing else).
 *  3. confmanctl copies the child's tree into the parent with such writes
 *     (files keep their values, modes, owners and times; they get the
 *     parent's indexes: the two index spaces diverged since the split).
 *  4. COMMIT at the parent's leader: the boundary becomes a directory.
 *  5. RETIRE at the meta leader: the child's map file moves to "/g/GID" in
 *     one entry; clients route the prefix to the parent, and every replica
 *     of the child stops it and drops its data (node.c).
 *
 * A shard with shards nested below it is refused (merge those first).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "confman/path.h"
#include "server/kv.h"
#include "server/log.h"
#include "server/node.h"

/* Another shard below gi's prefix: it would lose its parent. */
static bool has_nested(const struct cm_registry *reg, const struct cm_group_info *gi)
{
	uint32_t plen = (uint32_t)strlen(gi->prefix);
	for (uint32_t k = 0; k < reg->n; k++) {
		const struct cm_group_info *o = reg->v[k];
		if (o != gi && !o->retired &&
		    cm_path_is_under(o->prefix, (uint32_t)strlen(o->prefix), gi->prefix, plen))
			return true;
	}
	return false;
}

/* The group that serves the child's parent directory. */
static const struct cm_group_info *parent_of(const struct cm_registry *reg, const char *prefix)
{
	const char *slash = strrchr(prefix, '/');
	uint32_t len = slash == prefix ? 1 : (uint32_t)(slash - prefix);
	return cm_reg_route(reg, prefix, len);
}

static void retire(struct cm_node *n, struct cm_conn *c, const struct cm_req *req,
		   const struct cm_group_info *gi)
{
	char from[CM_PATH_MAX + 1], to[48];
	uint32_t from_len;
	int err = cm_reg_key(gi->prefix, (uint32_t)strlen(gi->prefix), from, &from_len);
	if (err != 0) {
		cm__reply_err(n, &n->groups[0], c, req, err);
		return;
	}
	int to_len = snprintf(to, sizeof(to), CM_REG_RETIRED "/%" PRIu64, gi->id);
	struct cm_req mv = {
		.id = req->id,
		.op = CM_OP_RENAME,
		.path = {from, from_len},
		.path2 = {to, (uint32_t)to_len},
	};
	cm_log_info("shard merge: retiring group %" PRIu64 " (%s)", gi->id, gi->prefix);
	cm__req_write(n, &n->groups[0], c, &mv);
}

/*
 * The copies get the parent's indexes: they must be above every index the
 * child ever gave (`child_top`, its freeze's), or a client holding a modify
 * index read in the child could see a later parent write reuse it (a CAS by
 * mod_revision would match the wrong value). BEGIN is a no-op once applied,
 * so the leader pads the parent's log with more of it (a bounded batch per
 * request; confmanctl asks again until the answer's index is past).
 */
#define CM_MERGE_PAD_BATCH 2000

static void pad(struct cm_node *n, struct cm_group *g, const struct cm_req *begin,
		uint64_t child_top)
{
	struct raft_status st;
	raft_status(g->raft, &st);
	if (st.role != RAFT_LEADER || st.last_index >= child_top)
		return;
	uint64_t gap = child_top - st.last_index;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	if (cm_kv_cmd_encode(&sb, begin, cm__wall_ns(), n->cfg->max_value) == 0)
		for (uint64_t k = 0; k < gap && k < CM_MERGE_PAD_BATCH; k++)
			if (raft_propose(g->raft, sb.data, (uint32_t)sb.size, NULL) != 0)
				break; /* too much uncommitted: the next request goes on */
	msgpack_sbuffer_destroy(&sb);
}

void cm__merge_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	const struct cm_group_info *gi = cm_reg_find(&n->reg, req->path.p, req->path.len);
	uint64_t where = 0;
	int err = 0;
	if (gi == NULL || cm_reg_pending(gi))
		err = -ENOENT; /* no such shard (or merged already) */
	else if (gi->id < CM_SHARD_GID_BASE && req->flags != CM_MERGE_RETIRE)
		err = -EINVAL; /* a cluster file's group: its boundary is remade at each term */
	else if (has_nested(&n->reg, gi))
		err = -EBUSY;
	else if (req->flags == CM_MERGE_FREEZE)
		where = gi->id;
	else if (req->flags == CM_MERGE_BEGIN || req->flags == CM_MERGE_COMMIT)
		where = parent_of(&n->reg, gi->prefix)->id;
	else if (req->flags == CM_MERGE_RETIRE)
		where = CM_META_GROUP;
	else
		err = -EINVAL;
	if (err == 0 && req->group != where)
		err = -EINVAL; /* sent to the wrong group for this phase */
	struct cm_group *g = err ? NULL : cm__node_group(n, where);
	if (err == 0 && g == NULL)
		err = CM_EWRONGSHARD;
	if (err != 0) {
		cm__reply_err(n, g, c, req, err);
		return;
	}
	if (req->flags == CM_MERGE_RETIRE) {
		retire(n, c, req, gi);
		return;
	}
	struct cm_req cmd = {
		.id = req->id,
		.op = CM_OP_SHARD_MERGE,
		.flags = req->flags,
		.path = req->path,
	};
	if (req->flags == CM_MERGE_BEGIN)
		pad(n, g, &cmd, req->version);
	cm__req_write(n, g, c, &cmd);
}
