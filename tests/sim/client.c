/* client.c: simulated clients and operator: proposals, reads, transfers, membership. */
#include <errno.h>
#include <string.h>

#include "sim.h"

typedef unsigned long long ull; /* for printf */

static bool usable(const struct sim_node *n)
{
	return n->r && !sim_node_busy(n);
}

static struct sim_node *find_leader(struct sim *s)
{
	struct sim_node *best = NULL;
	for (uint32_t i = 0; i < s->n_slots; i++) {
		struct sim_node *n = &s->nodes[i];
		if (usable(n) && n->st.role == RAFT_LEADER && (!best || n->st.term > best->st.term))
			best = n;
	}
	return best;
}

static uint32_t count_leaders(const struct sim *s)
{
	uint32_t c = 0;
	for (uint32_t i = 0; i < s->n_slots; i++)
		c += s->nodes[i].r && s->nodes[i].st.role == RAFT_LEADER;
	return c;
}

static void record_prop(struct sim *s, raft_index index, raft_term term, uint64_t id)
{
	if (s->n_props == s->cap_props) {
		s->cap_props = s->cap_props ? 2 * s->cap_props : 1024;
		s->props = sim_xrealloc(s->props, s->cap_props * sizeof(*s->props));
	}
	s->props[s->n_props++] = (struct sim_prop){index, term, id};
}

/* raft_propose's documented errors, and the one each situation calls for. */
static bool propose_rc_ok(const struct raft_status *st, int rc)
{
	if (st->role != RAFT_LEADER)
		return rc == CM_ENOTLEADER;
	if (st->transferee)
		return rc == CM_ETRANSFERRING || rc == -EBUSY;
	return rc == 0 || rc == -EBUSY;
}

/* Propose one fresh payload; returns the core's code. */
static int propose_one(struct sim *s, struct sim_node *n, uint64_t *id_out, raft_index *idx_out)
{
	uint8_t buf[64];
	uint64_t id = s->next_payload++;
	struct raft_status st = n->st;
	raft_index idx = 0;
	sim_payload_encode(id, buf);
	int rc = raft_propose(n->r, buf, sim_payload_len(id), &idx);
	if (rc != CM_ENOTLEADER) /* clients knock on every door: keep the trace readable */
		sim_trace(s, SIM_EV_PROPOSE, n->id, 0, 0, (uint32_t)rc, id, idx, st.term, 0);
	if (!propose_rc_ok(&st, rc) || (rc == 0 && idx != st.last_index + 1))
		sim_fail(s, "api",
			 "n%llu (%s t%llu, transferee %llu, last %llu): raft_propose: %s, "
			 "index %llu",
			 (ull)n->id, raft_role_name(st.role), (ull)st.term, (ull)st.transferee,
			 (ull)st.last_index, cm_errname(rc), (ull)idx);
	if (rc == 0) {
		record_prop(s, idx, st.term, id);
		s->stats.accepted++;
	}
	s->stats.busy += rc == -EBUSY;
	sim_node_observe(s, n);
	*id_out = id;
	*idx_out = idx;
	return rc;
}

/* Clients do not know the leader: every node is tried, only a leader accepts. */
static void propose(struct sim *s)
{
	uint32_t k = 1 + (uint32_t)sim_rng_below(&s->rng, 8);
	for (uint32_t i = 0; i < s->n_slots && !s->failed; i++) {
		struct sim_node *n = &s->nodes[i];
		uint64_t id;
		raft_index idx;
		for (uint32_t j = 0; j < k && usable(n) && !s->failed; j++)
			if (propose_one(s, n, &id, &idx))
				break;
	}
}

static uint64_t known_committed(const struct sim *s)
{
	return s->max_commit > s->hist.n ? s->max_commit : s->hist.n;
}

/* Each ctx is used once, also when refused, so a stray read state is caught. */
static void read_index(struct sim *s, struct sim_node *n)
{
	if (s->n_reads == s->cap_reads) {
		s->cap_reads = s->cap_reads ? 2 * s->cap_reads : 1024;
		s->reads = sim_xrealloc(s->reads, s->cap_reads * sizeof(*s->reads));
	}
	uint64_t ctx = ++s->n_reads;
	struct sim_read *rd = &s->reads[ctx - 1];
	rd->node = 0;
	rd->min_index = known_committed(s);
	enum raft_role role = n->st.role;
	int rc = raft_read_index(n->r, ctx);
	sim_trace(s, SIM_EV_READ, n->id, 0, 0, (uint32_t)rc, ctx, rd->min_index, 0, 0);
	s->stats.busy += rc == -EBUSY;
	if (rc == 0)
		rd->node = n->id;
	else if ((rc != CM_ENOLEADER && rc != -EBUSY) ||
		 (role == RAFT_LEADER && rc == CM_ENOLEADER))
		sim_fail(s, "api", "n%llu (%s): raft_read_index: %s", (ull)n->id,
			 raft_role_name(role), cm_errname(rc));
	sim_node_observe(s, n);
}

/* ReadIndex (Raft thesis §6.4): the read point covers every write committed before. */
void sim_client_read_state(struct sim *s, struct sim_node *n, const struct raft_read_state *rs)
{
	sim_trace(s, SIM_EV_READ_STATE, n->id, 0, 0, 0, rs->ctx, rs->index, 0, 0);
	if (!rs->ctx || rs->ctx > s->n_reads || s->reads[rs->ctx - 1].node != n->id) {
		sim_fail(s, "read-unknown",
			 "n%llu: read state for ctx %llu it never issued (index %llu)", (ull)n->id,
			 (ull)rs->ctx, (ull)rs->index);
		return;
	}
	const struct sim_read *r = &s->reads[rs->ctx - 1];
	s->stats.served++;
	if (rs->index < r->min_index || rs->index > known_committed(s))
		sim_fail(
		    s, "linearizability",
		    "n%llu: read ctx %llu got index %llu; %llu was committed when it was issued, "
		    "%llu is the highest committed now",
		    (ull)n->id, (ull)rs->ctx, (ull)rs->index, (ull)r->min_index,
		    (ull)known_committed(s));
}

static void transfer(struct sim *s)
{
	struct sim_node *l = find_leader(s);
	raft_id to = l ? sim_member_random_voter(s, &l->st.conf, l->id) : 0;
	if (!to)
		return;
	raft_id busy = l->st.transferee;
	int rc = raft_transfer(l->r, to);
	sim_trace(s, SIM_EV_TRANSFER, l->id, to, 0, (uint32_t)rc, 0, 0, 0, 0);
	if (busy ? (rc && rc != CM_ETRANSFERRING) : rc != 0)
		sim_fail(s, "api", "n%llu (transferee %llu): raft_transfer(n%llu): %s", (ull)l->id,
			 (ull)busy, (ull)to, cm_errname(rc));
	s->stats.transfers += rc == 0;
	sim_node_observe(s, l);
}

void sim_client_step(struct sim *s)
{
	/* Clients keep writing in the calm phase, more gently: liveness is judged
	 * on a cluster that is not saturated. */
	if (sim_rng_ppm(&s->rng, s->calm ? s->p.propose / 4 : s->p.propose))
		propose(s);
	/* Reads everywhere, stale leaders included: that is where ReadIndex can go wrong. */
	for (uint32_t i = 0; i < s->n_slots && !s->failed; i++)
		if (usable(&s->nodes[i]) && sim_rng_ppm(&s->rng, s->p.read))
			read_index(s, &s->nodes[i]);
	if (!s->failed && !s->calm && s->p.transfer && sim_rng_ppm(&s->rng, s->p.transfer))
		transfer(s);
	if (!s->failed && !s->calm && s->p.change && sim_rng_ppm(&s->rng, s->p.change))
		sim_member_step(s, find_leader(s));
}

/*
 * Liveness probe: once faults stop, a single leader must get a fresh entry
 * applied on every voter of its configuration.
 */
bool sim_client_probe(struct sim *s)
{
	struct sim_pending *p = &s->probe;
	struct sim_node *l = find_leader(s);
	/* A probe whose entry a new leader dropped (nothing committed at its
	 * index yet, the log just shorter) would wait forever: retry it. */
	if (p->active && s->hist.n < p->index && l && l->st.term != p->term &&
	    l->st.last_index < p->index)
		p->active = false;
	if (p->active && s->hist.n >= p->index) {
		if (sim_hist_at(s, p->index)->term != p->term) {
			p->active = false; /* overwritten before it committed: try again */
		} else if (l && count_leaders(s) == 1) {
			const struct raft_conf *c = &l->st.conf;
			for (uint32_t i = 0; i < c->n; i++) {
				const struct sim_node *v = sim_node_by_id(s, c->ids[i]);
				if (c->kinds[i] == RAFT_VOTER &&
				    (!v->r || v->sm.applied < p->index))
					return false;
			}
			return true;
		}
	}
	if (p->active || !l || count_leaders(s) != 1)
		return false;
	raft_term term = l->st.term;
	if (propose_one(s, l, &p->id, &p->index) == 0)
		*p = (struct sim_pending){true, p->index, term, s->now, p->id};
	return false;
}
