/* scenario.c: scripted sequences the random search finds too rarely (Figure 8). */
#include <string.h>

#include "sim.h"

typedef unsigned long long ull; /* for printf */

/*
 * Figure 8 of the Raft paper (§5.4.2), on five nodes A..E = 1..5. The script
 * drives partitions and crashes; timing within each phase still comes from
 * the seed (election timeouts), so several seeds walk different paths:
 *
 *  1. A leads, everything up to index c is committed everywhere.
 *  2. {A,B} | {C,D,E}: A appends 20 entries of its term T1, only B gets them.
 *     A crashes, B is cut off.
 *  3. C, D, E elect X (term T2). X is cut off at once, so its entries of
 *     T2 (a no-op at c+1 and three more) stay on X alone.
 *  4. A restarts; {A,B,Y} (Y one of the other two) elect A or B (term T3),
 *     which ships the T1 entries to Y, eight per message. The moment Y has
 *     acknowledged the first eight, A and B are cut off: Y never sees the T3
 *     no-op. A correct leader has committed nothing of this (the newest
 *     entry a majority holds is of an older term); a leader that counts
 *     replicas of old-term entries committed c+1..c+8.
 *  5. {X,Y,Z} elect X (its last term T2 beats Y's and Z's T1), which
 *     overwrites c+1.. with its own entries: a violation if they were
 *     committed.
 *  6. Everything heals and restarts: the usual liveness check.
 */

#define FIG8_ENTRIES 20
#define PHASE_STEPS 400

/* No random faults: the script is the only adversary. */
void sim_scenario_params(struct sim_params *p)
{
	memset(p, 0, sizeof(*p));
	p->delay_max = 1; /* every message arrives at the next step, in send order */
	p->slow_max = 1;
	p->max_apply = 64;
	p->max_uncommitted = 1u << 20;
	p->max_reads = 16;
}

static void connect_only(struct sim *s, uint32_t group)
{
	for (uint32_t i = 1; i <= s->n_slots; i++)
		for (uint32_t j = 1; j <= s->n_slots; j++)
			s->net.cut[i][j] = !((group >> i) & 1) || !((group >> j) & 1);
	s->net.partitioned = true;
	sim_trace(s, SIM_EV_PARTITION, 0, 0, 3, 0, group, 0, 0, 0);
}

static uint32_t bit(raft_id id)
{
	return 1u << id;
}

static struct sim_node *leader_in(struct sim *s, uint32_t group)
{
	for (uint32_t i = 0; i < s->n_slots; i++) {
		struct sim_node *n = &s->nodes[i];
		if ((group >> n->id) & 1 && n->r && !n->persist_left && n->st.role == RAFT_LEADER)
			return n;
	}
	return NULL;
}

/* Step until pred holds; a phase that cannot complete is reported as such. */
static bool run_until(struct sim *s, bool (*pred)(struct sim *, uint64_t), uint64_t arg,
		      const char *phase)
{
	for (int k = 0; k < PHASE_STEPS && !s->failed; k++) {
		if (pred(s, arg))
			return true;
		sim_step(s);
	}
	if (!s->failed)
		sim_fail(s, "scenario", "figure8: %s did not happen in %d steps", phase,
			 PHASE_STEPS);
	return false;
}

static bool all_applied(struct sim *s, uint64_t index)
{
	for (uint32_t i = 0; i < s->n_slots; i++)
		if (!s->nodes[i].r || s->nodes[i].sm.applied < index)
			return false;
	return true;
}

static bool has_leader(struct sim *s, uint64_t group)
{
	return leader_in(s, (uint32_t)group) != NULL;
}

static bool durable_last_at_least(struct sim *s, uint64_t id_and_index)
{
	const struct sim_node *n = sim_node_by_id(s, id_and_index & 0xff);
	return sim_store_last(&n->disk) >= id_and_index >> 8;
}

static bool propose_at(struct sim *s, struct sim_node *n, uint32_t count)
{
	uint8_t buf[64];
	for (uint32_t k = 0; k < count; k++) {
		uint64_t id = s->next_payload++;
		sim_payload_encode(id, buf);
		int rc = raft_propose(n->r, buf, sim_payload_len(id), NULL);
		sim_trace(s, SIM_EV_PROPOSE, n->id, 0, 0, (uint32_t)rc, id, 0, n->st.term, 0);
		if (rc)
			return !sim_fail(s, "scenario", "figure8: n%llu refused a proposal: %s",
					 (ull)n->id, cm_errname(rc));
		sim_node_observe(s, n);
	}
	return true;
}

/* Phase 1: A leads and index c is applied everywhere; returns c (0: failed). */
static raft_index phase_stable(struct sim *s)
{
	const uint32_t all = 0x3e;
	if (!run_until(s, has_leader, all, "the first election"))
		return 0;
	struct sim_node *l = leader_in(s, all), *a = sim_node_by_id(s, 1);
	if (l != a && raft_transfer(l->r, a->id) != 0)
		return sim_fail(s, "scenario", "figure8: transfer to n1 refused"), 0;
	if (!run_until(s, has_leader, bit(1), "the transfer to A") || !propose_at(s, a, 4))
		return 0;
	raft_index c = a->st.last_index;
	return run_until(s, all_applied, c, "replication to all") ? c : 0;
}

/* Phase 3: C, D, E elect X, which is cut off at once with entries of its term. */
static struct sim_node *phase_stray_leader(struct sim *s)
{
	const uint32_t cde = bit(3) | bit(4) | bit(5);
	connect_only(s, cde);
	if (!run_until(s, has_leader, cde, "an election in {C,D,E}"))
		return NULL;
	struct sim_node *x = leader_in(s, cde);
	connect_only(s, 0); /* X's no-op was sent, but nothing will be delivered */
	if (!propose_at(s, x, 3))
		return NULL;
	sim_step(s);
	return x;
}

/* Phase 4: A or B leads {A,B,Y} and ships old-term entries; Y acks the first batch. */
static bool phase_old_entries(struct sim *s, raft_id y, raft_index c)
{
	sim_node_start(s, sim_node_by_id(s, 1));
	connect_only(s, bit(1) | bit(2) | bit(y));
	if (!run_until(s, durable_last_at_least, y | (c + 1) << 8, "replication to Y"))
		return false;
	sim_step(s); /* the leader hears Y's acknowledgement */
	connect_only(s, 0);
	return !s->failed;
}

static bool settled(struct sim *s, uint64_t group)
{
	const struct sim_node *l = leader_in(s, (uint32_t)group);
	return l && l->st.commit == l->st.last_index && l->sm.applied == l->st.last_index;
}

bool sim_scenario_figure8(struct sim *s)
{
	raft_index c = phase_stable(s);
	if (!c)
		return false;
	connect_only(s, bit(1) | bit(2)); /* phase 2 */
	struct sim_node *a = sim_node_by_id(s, 1);
	if (!propose_at(s, a, FIG8_ENTRIES) ||
	    !run_until(s, durable_last_at_least, 2 | (c + FIG8_ENTRIES) << 8, "replication to B"))
		return false;
	sim_node_crash(s, a, 0);
	struct sim_node *x = phase_stray_leader(s);
	if (!x)
		return false;
	raft_id y = x->id == 3 ? 4 : 3, z = 12 - x->id - y;
	if (!phase_old_entries(s, y, c))
		return false;
	sim_node_crash(s, a, 0); /* phase 5 */
	sim_node_crash(s, sim_node_by_id(s, 2), 0);
	connect_only(s, bit(x->id) | bit(y) | bit(z));
	if (!run_until(s, settled, bit(x->id) | bit(y) | bit(z), "a settled leader in {X,Y,Z}"))
		return false;
	sim_node_start(s, a); /* phase 6 */
	sim_node_start(s, sim_node_by_id(s, 2));
	return sim_liveness(s);
}
