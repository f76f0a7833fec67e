/* turn.c: one loop turn: every group's batch in ONE transaction and ONE fsync. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/kv.h"
#include "server/log.h"
#include "server/node.h"

#define TURN_MAX_SNAPSHOTS 4 /* groups snapshotted per turn: bounds a turn's work */
#define TURN_SNAP_RETRY_TICKS 50 /* after a snapshot found no room in the map */

void cm__turn_on_raft(void *arg, uint64_t from, uint64_t group, const struct raft_msg *m)
{
	struct cm_node *n = arg;
	struct cm_group *g = cm__node_group(n, group);
	if (g == NULL) {
		cm_log_debug("node %llu: message for group %llu, not hosted here",
			     (unsigned long long)from, (unsigned long long)group);
		return;
	}
	int rv = raft_step(g->raft, m);
	if (rv != 0)
		cm_log_warn("group %llu: %s from node %llu rejected: %s", (unsigned long long)group,
			    raft_msg_type_name(m->type), (unsigned long long)from, cm_strerror(rv));
}

/* A storage failure leaves the core and the disk out of step: stop (fail-stop). */
static void fail_stop(const char *what, int rv)
{
	cm_log_error("%s: %s: stopping (fail-stop)", what, cm_strerror(rv));
	if (rv == -ENOSPC)
		cm_log_error("the map (--map-size) or the disk of --data is full even for Raft's "
			     "own writes (--min-free-mb): make room, then restart");
	exit(3);
}

/* Short of space (space.c), a group snapshots as soon as it applied anything
 * (at most once per TURN_SNAP_RETRY_TICKS): truncating the log is the one
 * way to give its pages back, and after clients deleted the snapshot is small. */
static bool pressed(const struct cm_node *n, const struct cm_group *g)
{
	return n->space_level != 0 && g->applied > g->snap.index;
}

/*
 * Whether this group's own snapshot is due. Not when the core holds a
 * snapshot at or past what we applied: raft_step() installs a leader's
 * snapshot at once, while g->applied and g->snap move only with the batch
 * that hands it to us, which this turn takes AFTER the snapshot check
 * (turn_persist). A snapshot of our older state would be worthless: that
 * batch brings the newer one (raft.h, raft_snapshot_taken).
 */
static bool snapshot_due(const struct cm_node *n, const struct cm_group *g)
{
	if (n->ticks < g->snap_retry_tick || g->applied <= raft_snapshot_index(g->raft))
		return false;
	return g->applied >= g->snap.index + n->cfg->snapshot_entries || pressed(n, g);
}

/* Outside a batch our view trails the core's, never leads it: we apply only
 * what a batch hands out, and the core adopts a snapshot (ours or the
 * leader's) before we hear of it. */
static void assert_view(const struct cm_group *g)
{
	struct raft_status st;
	raft_status(g->raft, &st);
	assert(g->applied <= st.applied);
	assert(g->snap.index <= st.snap_index);
	(void)st;
}

/* The snapshot's bytes, in a nested transaction: a map too full to hold
 * them costs this snapshot, not the turn (LMDB leaves the parent usable
 * when a child fails). 0, -ENOSPC, -EIO, -ENOMEM. */
static int snap_put_nested(struct cm_node *n, MDB_txn *txn, uint64_t id, const msgpack_sbuffer *sb)
{
	MDB_txn *child;
	int rv = cm_store_mdb_err(mdb_txn_begin(cm_store_env(n->store), txn, 0, &child));
	if (rv != 0)
		return rv;
	rv = cm_store_snap_put(n->store, child, id, sb->data, sb->size);
	if (rv != 0) {
		cm_store_txn_abort(child);
		return rv;
	}
	return cm_store_txn_commit(child);
}

/* Snapshot a group whose log grew long, inside the turn's transaction. */
static int maybe_snapshot(struct cm_node *n, MDB_txn *txn, struct cm_group *g)
{
	assert_view(g);
	if (g->applied <= raft_snapshot_index(g->raft))
		return 0; /* nothing newer than what the core holds (snapshot_due) */
	if (pressed(n, g))
		g->snap_retry_tick = n->ticks + TURN_SNAP_RETRY_TICKS;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	uint64_t id = g->info->id;
	int rv = cm_kv_snapshot(n->store, txn, id, &sb);
	/* The bytes first: the core hears of the snapshot only once they fit.
	 * A full map must not stop the node: after clients deleted, a later,
	 * smaller snapshot is what truncates the log and frees the most. */
	if (rv == 0 && sb.size > n->disk_free / 2)
		rv = -ENOSPC; /* the file grows by up to that much: leave the disk to the log */
	if (rv == 0)
		rv = snap_put_nested(n, txn, id, &sb);
	if (rv == -ENOSPC) {
		cm_log_warn("group %llu: no room (map or disk) for a snapshot of %zu bytes: "
			    "retrying in %d ticks", (unsigned long long)id, sb.size,
			    TURN_SNAP_RETRY_TICKS);
		g->snap_retry_tick = n->ticks + TURN_SNAP_RETRY_TICKS;
		msgpack_sbuffer_destroy(&sb);
		return 0;
	}
	struct raft_snap_meta meta;
	if (rv == 0) {
		/* Checked above: applied is past the core's snapshot and not past
		 * its applied index, the core's only two refusals (-EALREADY,
		 * -EINVAL). A refusal here is a bug in this file, not a storage
		 * failure (the one reason to fail-stop). */
		rv = raft_snapshot_taken(g->raft, g->applied, sb.size, n->cfg->keep_entries, &meta);
		assert(rv == 0);
	}
	if (rv == 0)
		rv = cm_store_meta_put(n->store, txn, id, g->applied, &meta);
	uint64_t upto = meta.index > n->cfg->keep_entries ? meta.index - n->cfg->keep_entries : 0;
	if (rv == 0)
		rv = cm_store_log_truncate_prefix(n->store, txn, id, upto);
	if (rv == 0)
		rv = cm_kv_events_compact(n->store, txn, id, upto);
	if (rv == 0)
		cm__watch_compacted(g, upto);
	msgpack_sbuffer_destroy(&sb);
	if (rv == 0) {
		g->snap = meta;
		cm_log_info("group %llu: snapshot at %llu (%llu bytes)", (unsigned long long)id,
			    (unsigned long long)meta.index, (unsigned long long)meta.size);
	}
	return rv;
}

/* Snapshot chunks received and an install, in that order (raft.h, item 1-2). */
static int persist_snapshot(struct cm_node *n, MDB_txn *txn, struct cm_group *g)
{
	const struct raft_ready *rd = &g->rd;
	uint64_t id = g->info->id;
	int rv = 0;
	for (uint32_t k = 0; k < rd->n_chunks && rv == 0; k++)
		rv = cm_store_stage_put(n->store, txn, id, rd->chunks[k].offset, rd->chunks[k].data,
					rd->chunks[k].len);
	if (rv != 0 || !rd->snap_installed)
		return rv;
	/* The core installs only past its commit index, so past all we applied. */
	assert(rd->snap.index > g->applied && rd->snap.index > g->snap.index);
	void *blob = NULL;
	rv = cm_store_stage_take(n->store, txn, id, rd->snap.size, &blob);
	if (rv == 0)
		rv = cm_kv_restore(n->store, txn, id, blob, rd->snap.size);
	if (rv == 0)
		rv = cm_store_snap_put(n->store, txn, id, blob, rd->snap.size);
	free(blob);
	if (rv == 0 && rd->log_reset)
		rv = cm_store_log_delete_all(n->store, txn, id);
	else if (rv == 0)
		rv = cm_store_log_truncate_prefix(n->store, txn, id, rd->snap.index);
	if (rv == 0)
		rv = cm_kv_events_compact(n->store, txn, id, rd->snap.index);
	cm__watch_compacted(g, rd->snap.index); /* cm_kv_restore dropped them all */
	g->snap = rd->snap;
	g->applied = rd->snap.index;
	g->applied_moved = true;
	cm_log_info("group %llu: installed snapshot %llu from the leader", (unsigned long long)id,
		    (unsigned long long)rd->snap.index);
	return rv;
}

/* First pending entry whose key (index or ctx) is >= key: the lists are
 * kept in that order, so a batch costs log(n) per entry, not n. */
static uint32_t lower_bound(const struct cm_pending_list *l, uint64_t key, bool by_ctx)
{
	uint32_t lo = 0, hi = l->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint64_t k = by_ctx ? l->v[mid].ctx : l->v[mid].index;
		if (k < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A write we proposed came back applied: keep the result for the reply. */
static void note_result(struct cm_group *g, const struct raft_entry *e, const struct cm_kv_result *res)
{
	struct cm_pending_list *l = &g->writes;
	for (uint32_t k = lower_bound(l, e->index, false); k < l->n; k++) {
		struct cm_pending *p = &l->v[k];
		if (p->index != e->index)
			return;
		if (p->done)
			continue;
		p->done = true;
		/* Another leader's entry took our index (a client's command, its
		 * no-op or a configuration): ours was never applied, and the
		 * client may send it again. Only our own NORMAL entry, of the
		 * term we proposed it in, carries its result. */
		bool conf = p->op == CM_OP_CONF_CHANGE;
		bool ours = p->term == e->term &&
			    e->type == (conf ? RAFT_ENTRY_CONF : RAFT_ENTRY_NORMAL);
		assert(res != NULL || !ours || conf);
		p->err = ours ? (conf ? 0 : res->err) : CM_ENOTLEADER;
		if (ours && !conf)
			p->attr = res->attr;
	}
}

static int apply_committed(struct cm_node *n, MDB_txn *txn, struct cm_group *g)
{
	const struct raft_ready *rd = &g->rd;
	for (uint32_t k = 0; k < rd->n_committed; k++) {
		const struct raft_entry *e = &rd->committed[k];
		struct cm_kv_result res = {0};
		if (e->type == RAFT_ENTRY_NORMAL) {
			int rv = cm_kv_apply(n->store, txn, g->info->id, e->index, e->data, e->len, &res);
			if (rv == 0 && res.err == 0 && res.split_group != 0)
				rv = cm__split_applied(n, txn, e, &res);
			if (rv != 0)
				return rv;
			if (res.lease_op != 0 || res.lock_moved)
				cm__lease_applied(n, g, &res); /* lease.c: the leader's clocks */
			note_result(g, e, &res);
			/* A smaller tree: a snapshot that found no room may fit now. */
			if (res.event_kind == CM_EV_DELETE)
				g->snap_retry_tick = 0;
		} else {
			note_result(g, e, NULL);
		}
		g->applied = e->index;
		g->applied_moved = true;
	}
	return 0;
}

static int persist_group(struct cm_node *n, MDB_txn *txn, struct cm_group *g)
{
	const struct raft_ready *rd = &g->rd;
	uint64_t id = g->info->id;
	int rv = persist_snapshot(n, txn, g);
	if (rv == 0 && rd->n_entries > 0)
		rv = cm_store_log_append(n->store, txn, id, rd->entries, rd->n_entries);
	if (rv == 0 && rd->hs_changed)
		rv = cm_store_hs_put(n->store, txn, id, &rd->hs);
	if (rv == 0)
		rv = apply_committed(n, txn, g);
	if (rv == 0 && g->applied_moved)
		rv = cm_store_meta_put(n->store, txn, id, g->applied, &g->snap);
	g->applied_moved = false;
	return rv;
}

/* A leader's APPENDs leave before the turn's fsync (struct raft_ready,
 * item 5): the followers write while the leader does. */
static uint32_t send_early(struct cm_node *n, struct cm_group *g)
{
	const struct raft_ready *rd = &g->rd;
	uint32_t sent = 0;
	for (uint32_t k = 0; k < rd->n_msgs; k++)
		if (rd->msgs[k].early) {
			(void)cm_net_send_raft(n->net, rd->msgs[k].to, g->info->id, &rd->msgs[k]);
			sent++;
		}
	return sent;
}

static void send_msgs(struct cm_node *n, MDB_txn *rtxn, struct cm_group *g)
{
	struct raft_ready *rd = &g->rd;
	for (uint32_t k = 0; k < rd->n_msgs; k++) {
		struct raft_msg *m = &rd->msgs[k];
		if (m->early)
			continue; /* sent before the fsync */
		if (m->type == RAFT_MSG_SNAP) {
			/* The core names the chunk; the bytes are ours to attach. */
			const void *data;
			uint64_t len;
			if (m->snap.index != g->snap.index ||
			    cm_store_snap_get(n->store, rtxn, g->info->id, &data, &len) != 0 ||
			    len != m->snap.size || m->offset + m->len > len)
				continue; /* gone: the core sends the newer one later */
			m->data = (const char *)data + m->offset;
		}
		(void)cm_net_send_raft(n->net, m->to, g->info->id, m);
	}
}

/* ReadIndex answers: the read may be served once applied reaches index.
 * Pending reads are in ctx order: every read takes the next ctx. */
static void note_reads(struct cm_group *g)
{
	const struct raft_ready *rd = &g->rd;
	for (uint32_t k = 0; k < rd->n_reads; k++) {
		uint64_t ctx = rd->reads[k].ctx;
		uint32_t j = lower_bound(&g->reads, ctx, true);
		struct cm_pending *p = j < g->reads.n ? &g->reads.v[j] : NULL;
		if (p != NULL && p->ctx == ctx && !p->done) {
			p->index = rd->reads[k].index;
			p->done = true; /* the read point is known */
		}
	}
}

static bool turn_has_work(struct cm_node *n)
{
	for (uint32_t k = 0; k < n->n_groups; k++) {
		struct cm_group *g = &n->groups[k];
		if (raft_has_ready(g->raft) || snapshot_due(n, g))
			return true;
	}
	return false;
}

static void turn_persist(struct cm_node *n)
{
	MDB_txn *txn;
	int rv = cm_store_txn_begin(n->store, true, &txn);
	if (rv != 0)
		fail_stop("begin the turn's transaction", rv);
	uint32_t snaps = 0, early = 0;
	for (uint32_t k = 0; k < n->n_groups; k++) {
		struct cm_group *g = &n->groups[k];
		if (snaps < TURN_MAX_SNAPSHOTS && snapshot_due(n, g)) {
			snaps++;
			if ((rv = maybe_snapshot(n, txn, g)) != 0)
				fail_stop("snapshot", rv);
		}
		if (!raft_has_ready(g->raft))
			continue;
		raft_ready(g->raft, &g->rd);
		g->in_ready = true;
		early += send_early(n, g);
		if ((rv = persist_group(n, txn, g)) != 0)
			fail_stop("persist a batch", rv);
	}
	/* Out with the early APPENDs now; client replies are only queued after
	 * the fsync (cm__req_after_turn), so none can leave with them. */
	if (early > 0)
		cm_net_flush(n->net);
	/* The one fsync of this turn: nothing below happens before it. */
	uint64_t t0 = uv_hrtime();
	if ((rv = cm_store_txn_commit(txn)) != 0)
		fail_stop("commit the turn's transaction", rv);
	cm_metrics_hist_observe(&n->fsync, uv_hrtime() - t0);
}

void cm__turn(struct cm_node *n)
{
	if (n->stopping)
		return;
	uv_idle_stop(&n->idle);
	if (!turn_has_work(n)) {
		cm_net_flush(n->net);
		return;
	}
	turn_persist(n);
	MDB_txn *rtxn;
	int rv = cm_store_txn_begin(n->store, false, &rtxn);
	if (rv != 0)
		fail_stop("begin a read transaction", rv);
	for (uint32_t k = 0; k < n->n_groups; k++) {
		struct cm_group *g = &n->groups[k];
		if (g->in_ready) {
			note_reads(g);
			send_msgs(n, rtxn, g);
			raft_advance(g->raft);
			g->in_ready = false;
		}
		cm__req_after_turn(n, g, rtxn);
		cm__watch_deliver(n, g, rtxn);
	}
	cm_store_txn_abort(rtxn);
	cm__node_sync_registry(n);
	cm_net_flush(n->net);
	if (turn_has_work(n))
		cm__node_kick(n);
}
