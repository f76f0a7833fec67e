/* members.c: membership steps at a group's leader: CONF_CHANGE and TRANSFER.
 *
 * Each request is one step of Raft's one-server-at-a-time changes (the core
 * enforces one pending change and the learner catch-up before promotion);
 * confmanctl plans and repeats them until a group has the replicas asked
 * for (README, "Changing the cluster"). What is checked here is what only
 * the leader can see: which voters are alive and caught up (etcd's strict
 * reconfiguration check), so no step leaves a group without a quorum.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "server/log.h"
#include "server/node.h"

/* A voter counts as live and caught up when its node pinged within this
 * many ticks (pings go every tick: a killed node is silent at once, while
 * Raft's own activity flag lasts an election timeout), the group heard
 * from it within the election timeout, and it is at most this many
 * entries behind. */
#define CM_MEMBERS_LIVE_TICKS 4
#define CM_MEMBERS_CAUGHT_UP 1000

static bool live_and_caught_up(struct cm_node *n, struct raft *r, const struct raft_status *st,
			       uint64_t id)
{
	raft_index match;
	bool active;
	if (raft_member_progress(r, id, &match, &active) != 0)
		return false;
	if (id != n->cfg->node_id &&
	    cm_net_peer_silence(n->net, id) > (uint64_t)CM_MEMBERS_LIVE_TICKS * n->cfg->tick_ms)
		return false;
	return active && match + CM_MEMBERS_CAUGHT_UP >= st->last_index;
}

/*
 * Would the voters left after removing `gone` (0: none) still hold a
 * quorum of live, caught-up members? A removal shrinks the quorum too, but
 * the remaining voters must be able to commit the change and what follows.
 */
static int quorum_check(struct cm_node *n, struct cm_group *g, const struct raft_status *st,
			uint64_t gone)
{
	uint32_t voters = 0, good = 0;
	for (uint32_t k = 0; k < st->conf.n; k++) {
		uint64_t id = st->conf.ids[k];
		if (st->conf.kinds[k] != RAFT_VOTER || id == gone)
			continue;
		voters++;
		good += live_and_caught_up(n, g->raft, st, id);
	}
	if (voters == 0)
		return -EINVAL; /* the last voter */
	if (good < voters / 2 + 1) {
		cm_log_warn("group %" PRIu64 ": refused to remove node %" PRIu64 ": %u of the %u "
			    "voters left are live and caught up, %u needed",
			    g->info->id, gone, good, voters, voters / 2 + 1);
		return CM_ENOQUORUM;
	}
	return 0;
}

/* The node may hold a replica of g: active in the table and, for a path
 * group, in its replica set (so that it runs the group: node.c). */
static int node_check(struct cm_node *n, struct cm_group *g, uint64_t id)
{
	const struct cm_node_info *ni = cm_config_node(n->cfg, id);
	if (ni == NULL || ni->state != CM_NODE_ACTIVE)
		return CM_ENONODE;
	if (g->info->id != CM_META_GROUP && !cm_reg_hosts(g->info, id))
		return -EINVAL; /* SHARD_SET it first */
	return 0;
}

static void conf_change(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
			const struct cm_req *req)
{
	struct raft_status st;
	raft_status(g->raft, &st);
	uint64_t id = req->version;
	int err = 0;
	if (st.role != RAFT_LEADER)
		err = CM_ENOTLEADER;
	else if (id == 0 || id > UINT32_MAX)
		err = -EINVAL;
	else if (req->flags == CM_CONF_ADD_LEARNER || req->flags == CM_CONF_PROMOTE)
		err = node_check(n, g, id);
	else if (req->flags != CM_CONF_REMOVE)
		err = -EINVAL;
	else if (id == n->cfg->node_id)
		err = -EBUSY; /* the leader itself: transfer the leadership first */
	else if (raft_conf_kind(&st.conf, id) == RAFT_VOTER)
		err = quorum_check(n, g, &st, id);
	if (err != 0) {
		cm__reply_err(n, g, c, req, err);
		return;
	}
	static const enum raft_change_op ops[] = {
		[CM_CONF_ADD_LEARNER] = RAFT_ADD_LEARNER,
		[CM_CONF_PROMOTE] = RAFT_PROMOTE,
		[CM_CONF_REMOVE] = RAFT_REMOVE,
	};
	cm_log_info("group %" PRIu64 ": %s node %" PRIu64, g->info->id,
		    req->flags == CM_CONF_ADD_LEARNER ? "add learner"
		    : req->flags == CM_CONF_PROMOTE   ? "promote"
						      : "remove",
		    id);
	cm__req_conf(n, g, c, req, ops[req->flags], id);
}

/* The voter to hand leadership to: the one asked for, or the most caught-up
 * live voter other than this node. */
static uint64_t transfer_target(struct cm_node *n, struct cm_group *g, const struct raft_status *st,
				uint64_t want)
{
	if (want != 0)
		return want;
	uint64_t best = 0;
	raft_index best_match = 0;
	for (uint32_t k = 0; k < st->conf.n; k++) {
		uint64_t id = st->conf.ids[k];
		raft_index match;
		bool active;
		if (id == n->cfg->node_id || st->conf.kinds[k] != RAFT_VOTER ||
		    raft_member_progress(g->raft, id, &match, &active) != 0 ||
		    !live_and_caught_up(n, g->raft, st, id))
			continue;
		if (best == 0 || match > best_match) {
			best = id;
			best_match = match;
		}
	}
	return best;
}

static void transfer(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		     const struct cm_req *req)
{
	struct raft_status st;
	raft_status(g->raft, &st);
	int err = st.role == RAFT_LEADER ? 0 : CM_ENOTLEADER;
	uint64_t to = err ? 0 : transfer_target(n, g, &st, req->version);
	if (err == 0 && to == 0)
		err = CM_ENOQUORUM; /* no other live voter to take it */
	if (err == 0 && to != n->cfg->node_id) {
		err = raft_transfer(g->raft, to);
		if (err == 0)
			cm_log_info("group %" PRIu64 ": leadership transfer to node %" PRIu64,
				    g->info->id, to);
	}
	cm__reply_err(n, g, c, req, err);
}

void cm__members_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_group *g = cm__node_group(n, req->group);
	if (g == NULL) {
		cm__reply_err(n, NULL, c, req, CM_EWRONGSHARD);
		return;
	}
	if (req->op == CM_OP_CONF_CHANGE)
		conf_change(n, g, c, req);
	else
		transfer(n, g, c, req);
	cm__node_kick(n);
}

/* ---- /metrics: who serves what, and how far each member has come ---- */

static void group_label(char *labels, size_t cap, uint64_t group)
{
	char id[32];
	snprintf(id, sizeof(id), "%" PRIu64, group);
	labels[0] = '\0';
	cm_metrics_label_append(labels, cap, "group", id);
}

/* Per group: its members by kind, a pending change; on its leader, each
 * member's replicated index and lag (a learner catching up shows here). */
static void member_metrics(struct cm_node *n, struct cm_buf *out)
{
	cm_metrics_write_header(out, "confman_group_members",
				"Members of the group's configuration by kind (voter, learner).",
				"gauge");
	for (uint32_t k = 0; k < n->n_groups; k++) {
		struct raft_status st;
		raft_status(n->groups[k].raft, &st);
		uint64_t voters = 0;
		for (uint32_t j = 0; j < st.conf.n; j++)
			voters += st.conf.kinds[j] == RAFT_VOTER;
		static const char *const kinds[] = {"voter", "learner"};
		for (int i = 0; i < 2; i++) {
			char labels[128];
			group_label(labels, sizeof(labels), n->groups[k].info->id);
			cm_metrics_label_append(labels, sizeof(labels), "kind", kinds[i]);
			cm_metrics_write_u64(out, "confman_group_members", labels,
					     i == 0 ? voters : st.conf.n - voters);
		}
	}
	cm_metrics_write_header(out, "confman_group_conf_pending",
				"1 while a membership change is in the log, not yet applied.", "gauge");
	for (uint32_t k = 0; k < n->n_groups; k++) {
		struct raft_status st;
		raft_status(n->groups[k].raft, &st);
		char labels[128];
		group_label(labels, sizeof(labels), n->groups[k].info->id);
		cm_metrics_write_u64(out, "confman_group_conf_pending", labels,
				     st.conf_index > st.applied);
	}
}

static void progress_metrics(struct cm_node *n, struct cm_buf *out)
{
	cm_metrics_write_header(out, "confman_group_member_lag_entries",
				"On the leader: entries a member is behind its last index "
				"(a learner's catch-up; 0 when caught up).",
				"gauge");
	for (uint32_t k = 0; k < n->n_groups; k++) {
		struct raft_status st;
		raft_status(n->groups[k].raft, &st);
		for (uint32_t j = 0; st.role == RAFT_LEADER && j < st.conf.n; j++) {
			raft_index match;
			bool active;
			if (raft_member_progress(n->groups[k].raft, st.conf.ids[j], &match, &active) != 0)
				continue;
			char labels[192], id[32];
			group_label(labels, sizeof(labels), n->groups[k].info->id);
			snprintf(id, sizeof(id), "%" PRIu64, st.conf.ids[j]);
			cm_metrics_label_append(labels, sizeof(labels), "member", id);
			cm_metrics_label_append(labels, sizeof(labels), "kind",
						st.conf.kinds[j] == RAFT_VOTER ? "voter" : "learner");
			cm_metrics_write_u64(out, "confman_group_member_lag_entries", labels,
					     st.last_index > match ? st.last_index - match : 0);
		}
	}
}

/* The map as this node applied it: one series per shard, its replicas in a
 * label (an info metric), with its epoch next to it (admin.c). */
static void shard_metrics(struct cm_node *n, struct cm_buf *out)
{
	cm_metrics_write_header(out, "confman_shard_info",
				"1 per shard of the map: prefix, group, replicas, split parent.",
				"gauge");
	for (uint32_t k = 0; k < n->reg.n; k++) {
		const struct cm_group_info *gi = n->reg.v[k];
		if (gi->retired)
			continue;
		char labels[CM_PATH_MAX + 512], reps[RAFT_MAX_NODES * 21 + 1] = "", parent[32];
		size_t len = 0;
		for (uint32_t j = 0; j < gi->n_replicas; j++)
			len += (size_t)snprintf(reps + len, sizeof(reps) - len,
						j ? ",%" PRIu64 : "%" PRIu64, gi->replicas[j]);
		group_label(labels, sizeof(labels), gi->id);
		cm_metrics_label_append(labels, sizeof(labels), "prefix", gi->prefix);
		cm_metrics_label_append(labels, sizeof(labels), "replicas", reps);
		snprintf(parent, sizeof(parent), "%" PRIu64, gi->parent);
		cm_metrics_label_append(labels, sizeof(labels), "split_from", parent);
		cm_metrics_label_append(labels, sizeof(labels), "state",
					cm_reg_pending(gi) ? "pending" : "serving");
		cm_metrics_write_u64(out, "confman_shard_info", labels, 1);
	}
}

void cm__members_metrics(struct cm_node *n, struct cm_buf *out)
{
	member_metrics(n, out);
	progress_metrics(n, out);
	shard_metrics(n, out);
}
