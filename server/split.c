/* split.c: splitting a written prefix off its shard, online.
 *
 * confmanctl drives three steps, each safe to repeat (README, "Splitting
 * and merging shards"):
 *
 *  1. SHARD_ADD "R1,R2 split PARENT" at the meta leader allocates the new
 *     group (its id is the registry file's create index, as for any shard)
 *     in the pending state: not routed, not started; the parent still
 *     serves the prefix.
 *  2. SHARD_SPLIT to the parent's leader proposes one entry, at index i.
 *     Every replica applies it the same way (kv_split.c): the subtree moves
 *     to the new group's keys, the prefix becomes a boundary (writes there
 *     get WRONGSHARD from now on), and here the new group's Raft state is
 *     written in the same transaction: a snapshot at index i, term of the
 *     entry, its members the parent's voters. No data crosses the network.
 *  3. SHARD_SPLIT to the meta leader records "born at i": nodes start the
 *     group (once their parent replica has applied i), clients route to it.
 *
 * The new group's index space continues the parent's from i: anything a
 * client saw of the prefix in the parent happened at or before i, and every
 * replica of the new group holds the state at i or later before it serves
 * a read (request.c refuses reads below `born`), so no token has to cross
 * groups; a watch resumes in the new group from i.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/kv.h"
#include "server/log.h"
#include "server/node.h"

static const struct cm_group_info *reg_by_id(const struct cm_registry *reg, uint64_t id)
{
	for (uint32_t k = 0; k < reg->n; k++)
		if (reg->v[k]->id == id)
			return reg->v[k];
	return NULL;
}

/* The parent's voters as "1,2,3" into buf; -EBUSY while it has learners or
 * a change pending (a split never overlaps a membership change). */
static int members_text(struct cm_group *g, char *buf, size_t cap)
{
	struct raft_status st;
	raft_status(g->raft, &st);
	if (st.conf_index > st.commit)
		return CM_ECONFPENDING;
	size_t len = 0;
	buf[0] = '\0';
	for (uint32_t k = 0; k < st.conf.n; k++) {
		if (st.conf.kinds[k] != RAFT_VOTER)
			return CM_ECONFPENDING; /* finish the move first */
		len += (size_t)snprintf(buf + len, cap - len, len ? ",%" PRIu64 : "%" PRIu64,
					st.conf.ids[k]);
	}
	return len < cap ? 0 : -ENOSPC;
}

/* Step 2, at the parent's leader. */
static void split_in_parent(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_group *g = cm__node_group(n, req->group);
	const struct cm_group_info *gi = reg_by_id(&n->reg, req->version);
	char members[RAFT_MAX_NODES * 21];
	int err = 0;
	if (g == NULL)
		err = CM_EWRONGSHARD;
	else if (gi == NULL || gi->parent != g->info->id)
		err = -ENOENT; /* allocate it first (step 1) */
	else if (strlen(gi->prefix) != req->path.len || memcmp(gi->prefix, req->path.p, req->path.len))
		err = -EINVAL;
	else
		err = members_text(g, members, sizeof(members));
	if (err != 0) {
		cm__reply_err(n, g, c, req, err);
		return;
	}
	struct cm_req cmd = {
		.id = req->id,
		.op = CM_OP_SHARD_SPLIT,
		.path = req->path,
		.version = gi->id,
		.value = {members, (uint32_t)strlen(members)},
	};
	cm_log_info("group %" PRIu64 ": split %s off to group %" PRIu64 " on %s", g->info->id,
		    gi->prefix, gi->id, members);
	cm__req_write(n, g, c, &cmd);
}

/* Step 3, at the meta leader: "born at req->version". */
static void split_activate(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_group *meta = &n->groups[0];
	const struct cm_group_info *gi = cm_reg_find(&n->reg, req->path.p, req->path.len);
	int err = 0;
	if (gi == NULL || gi->parent == 0)
		err = -ENOENT;
	else if (req->version == 0)
		err = -EINVAL;
	else if (gi->born != 0)
		err = gi->born == req->version ? 1 : -EEXIST;
	if (err != 0) {
		cm__reply_err(n, meta, c, req, err == 1 ? 0 : err);
		return;
	}
	char key[CM_PATH_MAX + 1], val[RAFT_MAX_NODES * 21 + 64];
	uint32_t key_len;
	err = cm_reg_key(gi->prefix, (uint32_t)strlen(gi->prefix), key, &key_len);
	size_t vl = 0;
	for (uint32_t k = 0; k < gi->n_replicas; k++)
		vl += (size_t)snprintf(val + vl, sizeof(val) - vl, k ? ",%" PRIu64 : "%" PRIu64,
				       gi->replicas[k]);
	vl += (size_t)snprintf(val + vl, sizeof(val) - vl, " split %" PRIu64 " %" PRIu64, gi->parent,
			       req->version);
	if (err != 0) {
		cm__reply_err(n, meta, c, req, err);
		return;
	}
	struct cm_req put = {
		.id = req->id,
		.op = CM_OP_PUT,
		.path = {key, key_len},
		.value = {val, (uint32_t)vl},
		.mode = S_IFREG | 0644,
	};
	cm__req_write(n, meta, c, &put);
}

void cm__split_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	if (req->group == CM_META_GROUP)
		split_activate(n, c, req);
	else
		split_in_parent(n, c, req);
}

/* "1,2,3" into conf (all voters). */
static int parse_members(struct cm_bytes m, struct raft_conf *conf)
{
	char buf[RAFT_MAX_NODES * 21 + 1];
	if (m.len == 0 || m.len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, m.p, m.len);
	buf[m.len] = '\0';
	memset(conf, 0, sizeof(*conf));
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (conf->n == RAFT_MAX_NODES)
			return -EINVAL;
		conf->ids[conf->n] = strtoull(t, NULL, 10);
		conf->kinds[conf->n++] = RAFT_VOTER;
	}
	return 0;
}

/*
 * The parent applied a split at e (kv_split.c moved the data): write the
 * new group's Raft state so that it starts from here, identically on every
 * replica: hard state {term of e, no vote, commit e}, a snapshot at e with
 * the parent's voters, and the snapshot's bytes (a follower that falls
 * behind before the new group takes its own snapshot is sent these).
 */
int cm__split_applied(struct cm_node *n, MDB_txn *txn, const struct raft_entry *e,
		      const struct cm_kv_result *res)
{
	uint64_t id = res->split_group;
	struct raft_snap_meta snap = {.index = e->index, .term = e->term};
	int rv = parse_members(res->split_members, &snap.conf);
	if (rv != 0)
		return -EIO; /* the leader wrote them: a corrupt command */
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	rv = cm_kv_snapshot(n->store, txn, id, &sb);
	snap.size = sb.size;
	if (rv == 0)
		rv = cm_store_snap_put(n->store, txn, id, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	struct raft_hard_state hs = {.term = e->term, .vote = 0, .commit = e->index};
	if (rv == 0)
		rv = cm_store_hs_put(n->store, txn, id, &hs);
	if (rv == 0)
		rv = cm_store_meta_put(n->store, txn, id, e->index, &snap);
	if (rv == 0)
		cm_log_info("group %" PRIu64 ": born at index %" PRIu64 " (%" PRIu64 " bytes)", id,
			    e->index, (uint64_t)snap.size);
	return rv;
}
