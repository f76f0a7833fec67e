/* node.c: one simulated node: start, crash, wipe, and the ready/persist/apply loop. */
#include <assert.h>
#include <string.h>

#include "sim.h"

typedef unsigned long long ull; /* for printf */

static void node_config(const struct sim *s, const struct sim_node *n, struct raft_config *cfg)
{
	uint64_t seed = sim_mix64(s->seed * 1000003u + n->id * 7919u + n->incarnation);
	raft_config_default(cfg, n->id, seed);
	cfg->election_ticks = SIM_ELECTION_TICKS;
	cfg->heartbeat_ticks = 1;
	cfg->pre_vote = true;
	cfg->check_quorum = true;
	/* Small windows so that flow control and back-tracking are exercised. */
	cfg->max_inflight = 4;
	cfg->max_msg_entries = 8;
	cfg->max_apply_entries = s->p.max_apply;
	cfg->snap_chunk_bytes = SIM_SNAP_CHUNK;
	cfg->max_uncommitted_bytes = s->p.max_uncommitted;
	cfg->max_pending_reads = s->p.max_reads;
	cfg->quiesce_ticks = s->p.quiesce;
}

/*
 * Node liveness, as the server provides it: a quiesced follower whose
 * leader's node is down or cut off from it for an election timeout is woken;
 * sometimes one is woken for nothing (a false alarm must be harmless).
 */
static bool reachable(struct sim *s, struct sim_node *a, raft_id b_id)
{
	struct sim_node *b = sim_node_by_id(s, b_id);
	return b != NULL && b->r != NULL && !s->net.cut[a->id][b->id] && !s->net.cut[b->id][a->id];
}

/* A quiet leader runs no CheckQuorum: the server wakes it when a majority
 * of its voters' nodes fall silent; so does this oracle. */
static void leader_liveness(struct sim *s, struct sim_node *n)
{
	const struct raft_conf *c = &n->st.conf;
	uint32_t voters = 0, alive = 0;
	for (uint32_t i = 0; i < c->n; i++) {
		if (c->kinds[i] != RAFT_VOTER)
			continue;
		voters++;
		alive += c->ids[i] == n->id || reachable(s, n, c->ids[i]);
	}
	n->leader_gone = alive <= voters / 2 ? n->leader_gone + 1 : 0;
	if (n->leader_gone >= SIM_ELECTION_TICKS) {
		s->stats.woken++;
		raft_wake(n->r);
		n->leader_gone = 0;
	}
}

static void liveness(struct sim *s, struct sim_node *n)
{
	if (n->st.quiesced && n->st.role == RAFT_LEADER) {
		leader_liveness(s, n);
		return;
	}
	if (!n->st.quiesced) {
		n->leader_gone = 0;
		return;
	}
	struct sim_node *l = n->st.leader ? sim_node_by_id(s, n->st.leader) : NULL;
	bool gone = l == NULL || l->r == NULL || s->net.cut[l->id][n->id] || s->net.cut[n->id][l->id];
	n->leader_gone = gone ? n->leader_gone + 1 : 0;
	bool false_alarm = s->p.false_wake && sim_rng_ppm(&s->rng, s->p.false_wake);
	if (n->leader_gone >= SIM_ELECTION_TICKS || false_alarm) {
		s->stats.woken++;
		raft_wake(n->r);
		n->leader_gone = 0;
	}
}

/* The core must come back exactly as durable storage left it. */
static void check_recovered(struct sim *s, struct sim_node *n)
{
	const struct sim_store *d = &n->disk;
	const struct raft_status *st = &n->st;
	/* A brand-new member writes the initial configuration at 1/t1 (struct raft_boot). */
	bool fresh = !d->hs.term && !d->snap.index && d->snap.conf.n && !d->log.n;
	if (st->term != (fresh ? 1 : d->hs.term) || st->vote != d->hs.vote ||
	    st->commit < d->hs.commit || st->snap_index != d->snap.index ||
	    st->last_index != (fresh ? 1 : sim_store_last(d)))
		sim_fail(s, "recovery",
			 "n%llu: stored t%llu v%llu c%llu snap %llu last %llu, "
			 "core says t%llu v%llu c%llu snap %llu last %llu",
			 (ull)n->id, (ull)d->hs.term, (ull)d->hs.vote, (ull)d->hs.commit,
			 (ull)d->snap.index, (ull)sim_store_last(d), (ull)st->term, (ull)st->vote,
			 (ull)st->commit, (ull)st->snap_index, (ull)st->last_index);
}

void sim_node_start(struct sim *s, struct sim_node *n)
{
	assert(!n->r);
	struct raft_config cfg;
	struct raft_boot boot;
	node_config(s, n, &cfg);
	sim_store_boot(&n->disk, &boot);
	n->incarnation++;
	n->restart_at = 0;
	n->persist_left = 0;
	int rc = raft_new(&cfg, &boot, &n->r);
	if (rc != 0 || !n->r) {
		n->r = NULL;
		sim_fail(s, "recovery",
			 "n%llu: raft_new: %s (hs t%llu c%llu, snap %llu, %u entries)", (ull)n->id,
			 cm_errname(rc), (ull)boot.hs.term, (ull)boot.hs.commit,
			 (ull)boot.snap.index, boot.n_entries);
		return;
	}
	/* The state machine is volatile: it restarts from the durable snapshot. */
	memset(&n->sm, 0, sizeof(n->sm));
	if (n->disk.snap.index &&
	    sim_snap_decode(n->disk.snap_data, n->disk.snap.size, &n->sm.applied, &n->sm.hash))
		sim_fail(s, "snapshot-data", "n%llu: durable snapshot %llu does not decode",
			 (ull)n->id, (ull)n->disk.snap.index);
	raft_status(n->r, &n->st);
	sim_trace(s, SIM_EV_RESTART, n->id, 0, 0, boot.n_entries, n->st.term, n->st.commit,
		  n->st.snap_index, n->st.last_index);
	check_recovered(s, n);
	sim_node_observe(s, n);
}

void sim_node_crash(struct sim *s, struct sim_node *n, uint64_t restart_at)
{
	if (!n->r)
		return;
	sim_trace(s, SIM_EV_CRASH, n->id, 0, n->persist_left > 0, 0, restart_at, 0, 0, 0);
	/* A batch still on its way to disk was never durable: it vanishes with the node. */
	raft_free(n->r);
	n->r = NULL;
	n->persist_left = 0;
	n->stall_left = 0;
	memset(&n->rd, 0, sizeof(n->rd));
	n->restart_at = restart_at;
}

/* A removed node rejoins as a brand-new one: empty storage, no configuration. */
void sim_node_wipe(struct sim *s, struct sim_node *n)
{
	sim_node_crash(s, n, 0);
	sim_store_free(&n->disk);
	sim_store_init(&n->disk, NULL);
	n->was_member = false;
	n->log_dirty = true;
	sim_trace(s, SIM_EV_WIPE, n->id, 0, 0, 0, 0, 0, 0, 0);
	sim_node_start(s, n);
}

static void record_leader(struct sim *s, raft_term t, raft_id id)
{
	if (t >= s->n_term_leader) {
		uint64_t n = 2 * t + 16;
		s->term_leader = sim_xrealloc(s->term_leader, n * sizeof(*s->term_leader));
		memset(s->term_leader + s->n_term_leader, 0,
		       (n - s->n_term_leader) * sizeof(*s->term_leader));
		s->n_term_leader = n;
	}
	if (!s->term_leader[t])
		s->term_leader[t] = id;
	else if (s->term_leader[t] != id)
		sim_fail(s, "election-safety", "term %llu has two leaders: n%llu and n%llu", (ull)t,
			 (ull)s->term_leader[t], (ull)id);
}

/* Called after every call into the core: per-node monotonicity and Election Safety. */
void sim_node_observe(struct sim *s, struct sim_node *n)
{
	assert(n->r && !n->persist_left);
	struct raft_status st;
	raft_status(n->r, &st);
	const struct raft_status *o = &n->st;
	if (st.id != n->id || st.term < o->term || st.commit < o->commit ||
	    st.applied < o->applied || st.commit > st.last_index)
		sim_fail(s, "monotonic",
			 "n%llu: id %llu, t%llu c%llu a%llu -> t%llu c%llu a%llu (last %llu)",
			 (ull)n->id, (ull)st.id, (ull)o->term, (ull)o->commit, (ull)o->applied,
			 (ull)st.term, (ull)st.commit, (ull)st.applied, (ull)st.last_index);
	if (st.role != o->role || st.term != o->term || st.leader != o->leader)
		sim_trace(s, SIM_EV_ROLE, n->id, 0, (uint8_t)st.role, 0, st.term, st.leader,
			  st.commit, st.last_index);
	if (st.role == RAFT_LEADER)
		record_leader(s, st.term, n->id);
	sim_guard_observe(s, n, o, &st);
	if (st.role == RAFT_LEADER && (o->role != RAFT_LEADER || o->term != st.term)) {
		s->stats.elected++;
		s->fresh_leader = n->id;
	}
	if (st.quiesced && !o->quiesced)
		s->stats.quiesced++;
	if (st.term > s->max_term)
		s->max_term = st.term;
	if (st.commit > s->max_commit)
		s->max_commit = st.commit;
	n->st = st;
}

void sim_node_tick(struct sim *s, struct sim_node *n)
{
	if (!n->r || sim_node_busy(n))
		return;
	if (s->p.skip_tick && sim_rng_ppm(&s->rng, s->p.skip_tick))
		return; /* clock jitter: this node's timer runs a little slow */
	liveness(s, n);
	raft_tick(n->r);
	sim_node_observe(s, n);
}

static bool check_msgs(struct sim *s, struct sim_node *n, const struct raft_ready *rd)
{
	for (uint32_t i = 0; i < rd->n_msgs; i++) {
		const struct raft_msg *m = &rd->msgs[i];
		if (m->from != n->id || m->to == n->id || !sim_node_by_id(s, m->to) || !m->type ||
		    m->type >= RAFT_MSG_TYPE_COUNT)
			return !sim_fail(s, "ready-msgs",
					 "n%llu: message %u: type %u from %llu to %llu", (ull)n->id,
					 i, m->type, (ull)m->from, (ull)m->to);
	}
	return true;
}

/* An applied entry must be committed and durable here (struct raft_ready 1-6). */
static bool check_applicable(struct sim *s, struct sim_node *n, const struct raft_entry *e)
{
	const struct raft_entry *d = sim_store_entry(&n->disk, e->index);
	const char *bad = NULL;
	if (e->index != n->sm.applied + 1)
		bad = "out of order";
	else if (e->index > n->disk.hs.commit)
		bad = "beyond the durable commit index";
	else if (!d || d->term != e->term || d->type != e->type || d->len != e->len ||
		 (e->len && memcmp(d->data, e->data, e->len)))
		bad = "not in the durable log";
	if (bad)
		sim_fail(s, "apply", "n%llu: entry %llu/t%llu %s (applied %llu, commit %llu)",
			 (ull)n->id, (ull)e->index, (ull)e->term, bad, (ull)n->sm.applied,
			 (ull)n->disk.hs.commit);
	return !bad;
}

/* Step 6 of struct raft_ready. */
static void apply(struct sim *s, struct sim_node *n, const struct raft_ready *rd)
{
	if (rd->snap_installed) {
		/* The core installs only past its commit, so past all we applied. */
		if (rd->snap.index <= n->sm.applied) {
			sim_fail(s, "apply", "n%llu: snapshot %llu installed over applied %llu",
				 (ull)n->id, (ull)rd->snap.index, (ull)n->sm.applied);
			return;
		}
		/* install() verified the bytes against the history already. */
		sim_snap_decode(n->disk.snap_data, n->disk.snap.size, &n->sm.applied, &n->sm.hash);
	}
	for (uint32_t i = 0; i < rd->n_committed && !s->failed; i++)
		if (check_applicable(s, n, &rd->committed[i]))
			sim_check_apply(s, n, &rd->committed[i]);
	if (rd->n_committed)
		sim_trace(s, SIM_EV_APPLY, n->id, 0, 0, rd->n_reads, rd->committed[0].index,
			  n->sm.applied, 0, 0);
	for (uint32_t i = 0; i < rd->n_reads && !s->failed; i++)
		sim_client_read_state(s, n, &rd->reads[i]);
}

/* Persist, send, apply, advance: the documented handling of one batch. */
static void finish_batch(struct sim *s, struct sim_node *n)
{
	struct raft_ready *rd = &n->rd;
	n->persist_left = 0;
	if (!sim_store_persist(s, n, rd))
		return;
	for (uint32_t i = 0; i < rd->n_msgs && !s->failed; i++)
		if (!rd->msgs[i].early)
			sim_net_send(s, n, &rd->msgs[i]);
	apply(s, n, rd);
	if (s->failed)
		return;
	raft_advance(n->r);
	memset(rd, 0, sizeof(*rd));
	sim_node_observe(s, n);
}

static void take_snapshot(struct sim *s, struct sim_node *n)
{
	raft_index idx = n->sm.applied;
	uint64_t size = sim_snap_size(idx), keep = sim_rng_below(&s->rng, 21);
	struct raft_snap_meta meta;
	int rc = raft_snapshot_taken(n->r, idx, size, keep, &meta);
	if (rc) {
		sim_fail(s, "api", "n%llu: raft_snapshot_taken(%llu) with snapshot %llu: %s",
			 (ull)n->id, (ull)idx, (ull)n->disk.snap.index, cm_errname(rc));
		return;
	}
	const struct sim_hist_ent *h = sim_hist_at(s, idx);
	if (meta.index != idx || meta.size != size || !h || meta.term != h->term ||
	    !sim_conf_equal(&meta.conf, sim_hist_conf_at(s, idx))) {
		sim_fail(s, "snapshot-meta",
			 "n%llu: snapshot %llu/t%llu (%llu bytes, %u members): "
			 "expected %llu/t%llu (%llu bytes)",
			 (ull)n->id, (ull)meta.index, (ull)meta.term, (ull)meta.size, meta.conf.n,
			 (ull)idx, h ? (ull)h->term : 0ULL, (ull)size);
		return;
	}
	uint8_t *data = sim_xmalloc(size);
	sim_snap_encode(idx, n->sm.hash, data, size);
	sim_store_snapshot(&n->disk, &meta, data, keep);
	n->log_dirty = true;
	sim_trace(s, SIM_EV_SNAP_TAKE, n->id, 0, 0, 0, idx, meta.term, keep, 0);
	sim_node_observe(s, n);
}

static bool ready_empty(const struct raft_ready *rd)
{
	return !rd->n_chunks && !rd->snap_installed && !rd->n_entries && !rd->hs_changed &&
	       !rd->n_msgs && !rd->n_committed && !rd->n_reads;
}

/*
 * The caller's own snapshot, decided as the server's turn decides it
 * (server/turn.c): BEFORE the turn takes its next batch, from the caller's
 * view (n->sm.applied, n->disk.snap). raft_step() may have installed a
 * leader's snapshot since the last batch: the core is then ahead of that
 * view and the batch about to be taken hands the install out. The check the
 * server makes: nothing to do unless applied is past the core's snapshot;
 * without it, raft_snapshot_taken() refuses and the server used to
 * fail-stop on that. Due snapshots are taken at random (1 in 5 per turn), so
 * a due one often waits for a stalled node's wake-up.
 */
static void maybe_snapshot(struct sim *s, struct sim_node *n)
{
	if (n->sm.applied < n->disk.snap.index + n->snap_every || !sim_rng_ppm(&s->rng, 200000))
		return;
	raft_index core = raft_snapshot_index(n->r);
	if (n->disk.snap.index > core || n->sm.applied > n->st.applied)
		sim_fail(s, "api", "n%llu: caller ahead of the core: snapshot %llu applied %llu, "
			 "core snapshot %llu applied %llu", (ull)n->id, (ull)n->disk.snap.index,
			 (ull)n->sm.applied, (ull)core, (ull)n->st.applied);
	else if (n->sm.applied <= core) {
		s->stats.snap_behind++;
		sim_trace(s, SIM_EV_SNAP_BEHIND, n->id, 0, 0, 0, n->sm.applied, core, 0, 0);
	} else {
		take_snapshot(s, n);
	}
}

/* Drive one node: finish a slow write when it is due, then its turns: the
 * snapshot check, then a batch, as the server does. */
void sim_node_process(struct sim *s, struct sim_node *n)
{
	if (!n->r || n->stall_left)
		return;
	if (n->persist_left) {
		if (--n->persist_left)
			return;
		finish_batch(s, n);
	}
	/* A long backlog (max_apply_entries may be 1) drains over several steps. */
	bool was_empty = false;
	for (int i = 0; i < SIM_READY_MAX && !s->failed; i++) {
		maybe_snapshot(s, n);
		if (s->failed || !raft_has_ready(n->r))
			break;
		raft_ready(n->r, &n->rd);
		/* One empty batch is a harmless spurious wake-up; two in a row would
		 * spin a real event loop forever. */
		if (ready_empty(&n->rd) && was_empty) {
			sim_fail(s, "empty-ready",
				 "n%llu: raft_has_ready() stays true, batches are empty",
				 (ull)n->id);
			return;
		}
		was_empty = ready_empty(&n->rd);
		/* A leader's APPENDs leave before its own write (struct raft_ready,
		 * item 5): a crash during a slow write then loses entries that
		 * followers already hold, which the checker must accept. */
		if (!check_msgs(s, n, &n->rd))
			return;
		for (uint32_t k = 0; k < n->rd.n_msgs && !s->failed; k++)
			if (n->rd.msgs[k].early)
				sim_net_send(s, n, &n->rd.msgs[k]);
		if (s->p.slow_disk && sim_rng_ppm(&s->rng, s->p.slow_disk)) {
			n->persist_left = 1 + (uint32_t)sim_rng_below(&s->rng, s->p.slow_max);
			sim_trace(s, SIM_EV_SLOW_DISK, n->id, 0, 0, 0, n->persist_left, 0, 0, 0);
			return;
		}
		finish_batch(s, n);
	}
}
