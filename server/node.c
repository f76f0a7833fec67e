/* node.c: a node's life: recovery of its groups, ticks, routing, shutdown. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "confman/path.h"
#include "server/log.h"
#include "server/http.h"
#include "server/node.h"
#include "server/recover.h"

struct cm_group *cm__node_group(struct cm_node *n, uint64_t id)
{
	for (uint32_t k = 0; k < n->n_groups; k++)
		if (n->groups[k].info->id == id)
			return &n->groups[k];
	return NULL;
}

/* The shard of a path: the longest matching prefix (DESIGN.md, Sharding);
 * CM_EWRONGSHARD when this node does not host it. */
struct cm_group *cm__node_route(struct cm_node *n, const char *path, uint32_t len, int *err)
{
	const struct cm_group_info *gi = cm_reg_route(&n->reg, path, len);
	struct cm_group *g = gi ? cm__node_group(n, gi->id) : NULL;
	*err = g ? 0 : CM_EWRONGSHARD;
	return g;
}

/*
 * Whether a group this node has nothing of starts as a founder (every founder
 * writes the same first configuration entry) or empty, waiting for its
 * leader to add it and send a snapshot: a replica given to it later (shard
 * move), or anything on a node that joined a running cluster. A replica this
 * node dropped once leaves a tombstone (groups_stop_gone): never fresh again.
 */
static bool bootstraps(const struct cm_node *n, const struct cm_group_info *gi)
{
	if (gi->id == CM_META_GROUP)
		return !n->cfg->join[0];
	return cm_reg_founder(gi, n->cfg->node_id);
}

/* Recover a group from the store, or bootstrap it from the cluster file. */
static int group_boot(struct cm_node *n, MDB_txn *txn, struct cm_group *g)
{
	uint64_t id = g->info->id;
	struct raft_boot boot = {0};
	struct raft_entry *ents = NULL;
	uint32_t n_ents = 0;
	int rv = cm_store_hs_get(n->store, txn, id, &boot.hs);
	if (rv != 0 && rv != -ENOENT)
		return rv;
	bool fresh = rv == -ENOENT;
	rv = cm_store_meta_get(n->store, txn, id, &boot.applied, &boot.snap);
	if (rv == -ENOENT && fresh && bootstraps(n, g->info)) {
		boot.snap.conf.n = g->info->n_founders;
		for (uint32_t k = 0; k < g->info->n_founders; k++) {
			boot.snap.conf.ids[k] = g->info->founders[k];
			boot.snap.conf.kinds[k] = RAFT_VOTER;
		}
	} else if (rv != 0 && rv != -ENOENT) {
		return rv;
	} else {
		rv = cm_store_log_load(n->store, txn, id, boot.snap.index, &ents, &n_ents);
		if (rv != 0)
			return rv;
	}
	boot.entries = ents;
	boot.n_entries = n_ents;
	struct raft_config rc;
	raft_config_default(&rc, n->cfg->node_id, (uint64_t)uv_hrtime() ^ id);
	rc.election_ticks = n->cfg->election_ticks;
	rc.quiesce_ticks = n->cfg->quiesce_ticks;
	/* value + command envelope: two paths (a rename's) and a few integers */
	static_assert(2 * CM_PATH_MAX + 1024 <= 64 * 1024, "the envelope holds two paths");
	rc.max_entry_bytes = n->cfg->max_value + 64 * 1024;
	rv = raft_new(&rc, &boot, &g->raft);
	cm_store_entries_free(ents, n_ents);
	if (rv != 0)
		return rv;
	g->snap = boot.snap;
	g->applied = boot.applied;
	/* The log and the events are compacted together (turn.c): what the
	 * log still holds, the events hold too. */
	uint64_t first = 0;
	if (!fresh && cm_store_log_first(n->store, txn, id, &first) == 0 && first > 0 &&
	    first - 1 < boot.snap.index)
		g->ev_floor = first - 1;
	else
		g->ev_floor = boot.snap.index;
	cm_log_info("group %llu: term %llu, applied %llu, snapshot %llu, %u log entries%s",
		    (unsigned long long)id, (unsigned long long)boot.hs.term,
		    (unsigned long long)boot.applied, (unsigned long long)boot.snap.index, n_ents,
		    !fresh ? "" : boot.snap.conf.n ? " (new)" : " (new, empty: waits for its leader)");
	return 0;
}

/* Host gi: recover it, or bootstrap it when the store has nothing of it. */
static int group_add(struct cm_node *n, MDB_txn *txn, const struct cm_group_info *gi)
{
	if (n->n_groups == n->cap_groups) {
		uint32_t cap = n->cap_groups ? n->cap_groups * 2 : 8;
		struct cm_group *v = realloc(n->groups, sizeof(*v) * cap);
		if (v == NULL)
			return -ENOMEM;
		n->groups = v;
		n->cap_groups = cap;
	}
	struct cm_group *g = &n->groups[n->n_groups];
	memset(g, 0, sizeof(*g));
	g->info = gi;
	int rv = group_boot(n, txn, g);
	if (rv != 0) {
		cm_log_error("group %llu: recovery failed: %s", (unsigned long long)gi->id,
			     cm_strerror(rv));
		return rv;
	}
	n->n_groups++;
	return 0;
}

/* A split's group starts once its state is here: the split applied in the
 * local replica of its parent (split.c wrote the new group's state in the
 * same transaction). A node without the parent starts it empty. */
static bool split_ready(struct cm_node *n, const struct cm_group_info *gi)
{
	if (gi->parent == 0)
		return true;
	if (cm_reg_pending(gi))
		return false;
	struct cm_group *p = cm__node_group(n, gi->parent);
	if (p == NULL || p->applied >= gi->born)
		return true;
	n->split_waiting = true; /* looked at again after each turn */
	return false;
}

/* Start every hosted group of the registry that is not running yet. */
static int groups_start_new(struct cm_node *n, MDB_txn *txn)
{
	for (uint32_t k = 0; k < n->reg.n; k++) {
		const struct cm_group_info *gi = n->reg.v[k];
		if (!cm_reg_hosts(gi, n->cfg->node_id) || cm__node_group(n, gi->id) != NULL ||
		    !split_ready(n, gi))
			continue;
		int rv = group_add(n, txn, gi);
		if (rv != 0)
			return rv;
	}
	return 0;
}

static int group_drop_data(struct cm_node *n, uint64_t id);

/* Groups the store holds but the map gives this node no more (moved off or
 * merged back while this node was down, or a split's group whose map entry
 * this node never saw): their data goes, as for a replica moved off. */
static void drop_orphans(struct cm_node *n)
{
	MDB_txn *txn;
	uint64_t *ids = NULL;
	uint32_t n_ids = 0;
	if (cm_store_txn_begin(n->store, false, &txn) != 0)
		return;
	int rv = cm_store_groups(n->store, txn, &ids, &n_ids);
	bool *drop = calloc(n_ids ? n_ids : 1, sizeof(*drop));
	for (uint32_t k = 0; rv == 0 && drop != NULL && k < n_ids; k++) {
		struct raft_hard_state hs;
		bool tomb = cm_store_hs_get(n->store, txn, ids[k], &hs) == 0 && hs.term == 0 &&
			    hs.vote == 0 && hs.commit == 0;
		const struct cm_group_info *gi = NULL;
		for (uint32_t j = 0; j < n->reg.n && gi == NULL; j++)
			if (n->reg.v[j]->id == ids[k])
				gi = n->reg.v[j];
		drop[k] = ids[k] != CM_META_GROUP && !tomb &&
			  (gi == NULL || !cm_reg_hosts(gi, n->cfg->node_id));
	}
	cm_store_txn_abort(txn);
	for (uint32_t k = 0; rv == 0 && drop != NULL && k < n_ids; k++) {
		if (!drop[k])
			continue;
		rv = group_drop_data(n, ids[k]);
		cm_log_info("group %llu: not this node's any more: data dropped (%s)",
			    (unsigned long long)ids[k], cm_strerror(rv));
	}
	free(drop);
	free(ids);
}

/* The meta group first: the seed it recorded at the first start and the
 * shards it added since are the map the other groups are started from. */
static int groups_boot(struct cm_node *n)
{
	int rv = cm_reg_init(&n->reg, n->cfg);
	if (rv != 0)
		return rv;
	MDB_txn *txn;
	rv = cm_store_txn_begin(n->store, false, &txn);
	if (rv != 0)
		return rv;
	rv = group_add(n, txn, &n->reg.meta);
	if (rv == 0)
		rv = cm__nodes_load(n, txn);
	if (rv >= 0)
		cm__acl_load(n, txn);
	if (rv >= 0)
		rv = cm_reg_seed_check(&n->reg, n->cfg, n->store, txn, true);
	if (rv >= 0)
		rv = cm_reg_load(&n->reg, n->cfg, n->store, txn);
	if (rv >= 0)
		rv = groups_start_new(n, txn);
	n->meta_seen = n->n_groups ? n->groups[0].applied : 0;
	cm_store_txn_abort(txn);
	if (rv >= 0)
		drop_orphans(n);
	return rv;
}

/* Drop group k: answer what waits on it, end its watches, free it. */
static void group_forget(struct cm_node *n, uint32_t k)
{
	struct cm_group *g = &n->groups[k];
	cm__req_fail_group(n, g, CM_EWRONGSHARD);
	cm__watch_drop_group(n, g->info->id);
	cm__pending_free(&g->writes);
	cm__pending_free(&g->reads);
	raft_free(g->raft);
	memmove(g, g + 1, sizeof(*g) * (n->n_groups - k - 1));
	n->n_groups--;
}

/*
 * Replicas moved off this node: a path group whose replica set no longer
 * lists it. confmanctl unlists a node only after its removal from the
 * group's configuration committed (and SHARD_SET refuses to unlist a member
 * where the meta leader can see the group), so nothing is lost; the removed
 * replica itself never learns of its removal (the leader stops sending to
 * it at once), which is why the replica set, not its own view, decides.
 * The data is dropped and a tombstone (a zero hard state) keeps it from
 * ever bootstrapping the group again.
 */
static int group_drop_data(struct cm_node *n, uint64_t id)
{
	MDB_txn *txn = NULL;
	const struct raft_hard_state tomb = {0};
	int rv = cm_store_txn_begin(n->store, true, &txn);
	if (rv != 0)
		return rv;
	rv = cm_store_group_drop(n->store, txn, id);
	if (rv == 0)
		rv = cm_store_hs_put(n->store, txn, id, &tomb);
	if (rv != 0) {
		cm_store_txn_abort(txn);
		return rv;
	}
	return cm_store_txn_commit(txn);
}

static void groups_stop_gone(struct cm_node *n)
{
	for (uint32_t k = 1; k < n->n_groups; k++) {
		struct cm_group *g = &n->groups[k];
		if (cm_reg_hosts(g->info, n->cfg->node_id))
			continue;
		int rv = group_drop_data(n, g->info->id);
		if (rv != 0) {
			cm_log_error("group %llu: cannot drop the replica moved off this node: %s",
				     (unsigned long long)g->info->id, cm_strerror(rv));
			continue;
		}
		cm_log_info("group %llu (%s): replica moved off this node: stopped, data dropped",
			    (unsigned long long)g->info->id, g->info->prefix);
		group_forget(n, k);
		k--;
	}
}

void cm__node_sync_registry(struct cm_node *n)
{
	struct cm_group *meta = &n->groups[0];
	if (meta->applied == n->meta_seen && !n->split_waiting)
		return;
	n->meta_seen = meta->applied;
	bool waiting = n->split_waiting;
	n->split_waiting = false;
	MDB_txn *txn;
	if (cm_store_txn_begin(n->store, false, &txn) != 0)
		return;
	int rv = cm__nodes_load(n, txn);
	if (rv >= 0)
		cm__acl_load(n, txn); /* unusable rules are logged; the old ones stay */
	/* A node running nothing but the meta group (one that joined) may
	 * still take the recorded seed's groups as its own. */
	if (rv >= 0)
		rv = cm_reg_seed_check(&n->reg, n->cfg, n->store, txn, n->n_groups == 1);
	if (rv >= 0)
		rv = cm_reg_load(&n->reg, n->cfg, n->store, txn);
	if (rv > 0)
		cm_log_info("shard map: epoch %llu, %u shards", (unsigned long long)n->reg.epoch,
			    n->reg.n);
	if (rv > 0 || (rv == 0 && waiting))
		rv = groups_start_new(n, txn);
	if (rv < 0)
		cm_log_error("shard map: %s", cm_strerror(rv));
	cm_store_txn_abort(txn);
	groups_stop_gone(n);
}

/*
 * Node liveness for quiet groups: a quiesced follower has stopped its
 * election timer on its leader's word, so it must learn from the node level
 * (pings, once per tick per peer, whatever the groups do) that the leader's
 * node went silent, and then campaign as usual.
 */
/* A quiet leader does not run CheckQuorum: node liveness does it instead. */
static bool leader_cut_off(struct cm_node *n, const struct raft_status *st, uint64_t timeout)
{
	uint32_t voters = 0, alive = 0;
	for (uint32_t k = 0; k < st->conf.n; k++) {
		if (st->conf.kinds[k] != RAFT_VOTER)
			continue;
		voters++;
		uint64_t id = st->conf.ids[k];
		alive += id == n->cfg->node_id || cm_net_peer_silence(n->net, id) <= timeout;
	}
	return alive <= voters / 2;
}

/* Every tick, for every group: cheap unless a peer fell silent (a full
 * raft_status per quiet group per tick was most of an idle node's CPU). */
static void wake_orphans(struct cm_node *n, struct cm_group *g, bool any_silent)
{
	if (!raft_quiesced(g->raft))
		return;
	uint64_t timeout = (uint64_t)n->cfg->election_ticks * n->cfg->tick_ms;
	raft_id leader = raft_leader(g->raft);
	if (leader == n->cfg->node_id) {
		struct raft_status st;
		if (!any_silent)
			return; /* every voter is alive */
		raft_status(g->raft, &st);
		if (st.role == RAFT_LEADER && leader_cut_off(n, &st, timeout))
			raft_wake(g->raft); /* CheckQuorum will step it down */
		return;
	}
	if (leader == 0 || cm_net_peer_silence(n->net, leader) > timeout) {
		cm_log_debug("group %llu: leader %llu's node is silent: waking",
			     (unsigned long long)g->info->id, (unsigned long long)leader);
		raft_wake(g->raft);
	}
}

static bool any_peer_silent(struct cm_node *n)
{
	uint64_t timeout = (uint64_t)n->cfg->election_ticks * n->cfg->tick_ms;
	for (uint32_t k = 0; k < n->cfg->n_nodes; k++) {
		uint64_t id = n->cfg->nodes[k].id;
		if (id != n->cfg->node_id && cm_net_peer_silence(n->net, id) > timeout)
			return true;
	}
	return false;
}

static void on_tick(uv_timer_t *t)
{
	struct cm_node *n = t->data;
	n->ticks++;
	cm__space_tick(n);
	cm_net_ping(n->net, n->space_level);
	bool any_silent = any_peer_silent(n);
	for (uint32_t k = 0; k < n->n_groups; k++) {
		wake_orphans(n, &n->groups[k], any_silent);
		raft_tick(n->groups[k].raft);
		cm__shards_tops(n, &n->groups[k]);
	}
	cm__req_expire(n);
	cm__dump_tick(n);
	cm__lease_tick(n);
	cm__drain_tick(n);
	uint64_t every = CM_WATCH_PROGRESS_MS / n->cfg->tick_ms;
	if (every == 0 || n->ticks % every == 0)
		cm__watch_progress(n);
}

static void on_prepare(uv_prepare_t *p)
{
	cm__turn(p->data);
}

static void on_idle(uv_idle_t *i)
{
	(void)i; /* only here so that the loop polls without blocking */
}

/* Work is left for the next turn: do not let the loop sleep. */
void cm__node_kick(struct cm_node *n)
{
	uv_idle_start(&n->idle, on_idle);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct cm_node *n = s->data;
	cm_log_info("signal %d: shutting down", signum);
	cm__drain_start(n);
}

/* This node was removed from the cluster (a peer said so, or its own table
 * did): it takes no further part and stops, as etcd's removed members do;
 * its data stays for an operator to delete. */
void cm__node_removed(void *arg)
{
	struct cm_node *n = arg;
	if (n->stopping || n->draining)
		return;
	cm_log_error("this node (%llu) was removed from the cluster: stopping (its id is never "
		     "used again; delete %s)",
		     (unsigned long long)n->cfg->node_id, n->cfg->data_dir);
	cm__drain_start(n);
}

static int start_handles(struct cm_node *n)
{
	cm__space_tick(n); /* the first requests may come before the first tick */
	uv_timer_init(n->loop, &n->tick);
	n->tick.data = n;
	uv_timer_start(&n->tick, on_tick, n->cfg->tick_ms, n->cfg->tick_ms);
	uv_prepare_init(n->loop, &n->prepare);
	n->prepare.data = n;
	uv_prepare_start(&n->prepare, on_prepare);
	uv_idle_init(n->loop, &n->idle);
	n->idle.data = n;
	uv_signal_init(n->loop, &n->sig_term);
	uv_signal_init(n->loop, &n->sig_int);
	n->sig_term.data = n->sig_int.data = n;
	uv_signal_start(&n->sig_term, on_signal, SIGTERM);
	uv_signal_start(&n->sig_int, on_signal, SIGINT);
	struct cm_net_handlers h = {
		.arg = n,
		.on_raft = cm__turn_on_raft,
		.on_req = cm__req_handle,
		.on_close = cm__req_conn_closed,
		.on_reply = cm__admin_count,
		.on_removed = cm__node_removed,
	};
	return cm_net_start(n->loop, n->cfg, &h, &n->net);
}

/* --join on an empty store: learn the node table from the cluster first. */
static int join_if_new(struct cm_node *n)
{
	if (!n->cfg->join[0])
		return 0;
	MDB_txn *txn;
	struct raft_hard_state hs;
	int rv = cm_store_txn_begin(n->store, false, &txn);
	if (rv != 0)
		return rv;
	rv = cm_store_hs_get(n->store, txn, CM_META_GROUP, &hs);
	cm_store_txn_abort(txn);
	if (rv != -ENOENT)
		return rv; /* 0: joined before, the store has the table */
	return cm__join(n->cfg);
}

int cm_node_start(uv_loop_t *loop, struct cm_config *cfg, struct cm_node **out)
{
	struct cm_node *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return -ENOMEM;
	n->loop = loop;
	n->cfg = cfg;
	if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) { /* values: 0600 inside */
		cm_log_error("cannot create %s: %s", cfg->data_dir, strerror(errno));
		free(n);
		return -errno;
	}
	int rv = cm_store_open(cfg->data_dir, cfg->map_bytes, &n->store);
	if (rv != 0) {
		cm_log_error("cannot open the store in %s: %s", cfg->data_dir, cm_strerror(rv));
		free(n);
		return rv;
	}
	/* --force-new-cluster rewrites the stored groups before any starts;
	 * refused, the node exits before it has started anything. */
	rv = cfg->force_new_cluster ? cm__recover_force(n->store, cfg->node_id) : 0;
	if (rv != 0) {
		cm_store_close(n->store);
		free(n);
		*out = NULL;
		return rv;
	}
	rv = join_if_new(n);
	if (rv == 0)
		rv = cm__restore(n);
	if (rv == 0)
		rv = groups_boot(n);
	if (rv == 0)
		rv = start_handles(n);
	if (rv == 0)
		rv = cm__admin_start(n);
	*out = n;
	return rv;
}

static void on_handle_closed(uv_handle_t *h)
{
	(void)h;
}

void cm_node_stop(struct cm_node *n)
{
	if (n->stopping)
		return;
	n->stopping = true;
	uv_close((uv_handle_t *)&n->tick, on_handle_closed);
	uv_close((uv_handle_t *)&n->prepare, on_handle_closed);
	uv_close((uv_handle_t *)&n->idle, on_handle_closed);
	uv_close((uv_handle_t *)&n->sig_term, on_handle_closed);
	uv_close((uv_handle_t *)&n->sig_int, on_handle_closed);
	if (n->net)
		cm_net_stop(n->net);
	if (n->http)
		cm_http_stop(n->http);
	free(n->http_cert);
	free(n->http_key);
	n->http_cert = n->http_key = NULL;
}

void cm_node_free(struct cm_node *n)
{
	while (n->watches) {
		struct cm_watch *w = n->watches;
		n->watches = w->next;
		cm_conn_unref(w->conn);
		free(w->prefix);
		free(w);
	}
	for (uint32_t k = 0; k < n->n_groups; k++) {
		cm__lease_free(n, &n->groups[k], CM_ENOTLEADER);
		cm__pending_free(&n->groups[k].writes);
		cm__pending_free(&n->groups[k].reads);
		raft_free(n->groups[k].raft);
	}
	free(n->groups);
	cm__dump_free_all(n);
	cm_acl_free(&n->acl);
	cm_reg_free(&n->reg);
	cm_store_close(n->store);
	free(n);
}
