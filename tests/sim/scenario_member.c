/* scenario_member.c: scripted membership sequences for the guards of guard.c. */
#include "sim.h"

typedef unsigned long long ull; /* for printf */

/*
 * Five voters, no random faults (sim_scenario_params); timing within each
 * phase comes from the seed. The guards run after every step as in the
 * random runs; these scripts make sure the situations they judge happen.
 */

#define PHASE_STEPS 600

static struct sim_node *leader(struct sim *s)
{
	for (uint32_t i = 0; i < s->n_slots; i++) {
		struct sim_node *n = &s->nodes[i];
		if (n->r && !n->persist_left && n->st.role == RAFT_LEADER)
			return n;
	}
	return NULL;
}

static bool conf_committed(struct sim *s, raft_id id, int kind)
{
	return sim_conf_kind(&s->hist.confs[s->hist.n_confs - 1].conf, id) == kind;
}

/* Step until the committed configuration gives id that kind (0: removed). */
static bool until_conf(struct sim *s, raft_id id, int kind, const char *what)
{
	for (int k = 0; k < PHASE_STEPS && !s->failed; k++) {
		if (conf_committed(s, id, kind) && leader(s))
			return true;
		sim_step(s);
	}
	return !sim_fail(s, "scenario", "%s did not commit in %d steps", what, PHASE_STEPS);
}

/* Ask the leader for a change until it takes it (it refuses while one is pending). */
static bool change(struct sim *s, enum raft_change_op op, raft_id id, const char *what)
{
	for (int k = 0; k < PHASE_STEPS && !s->failed; k++) {
		struct sim_node *l = leader(s);
		if (l && !sim_node_busy(l) && raft_change(l->r, op, id, NULL) == 0) {
			sim_trace(s, SIM_EV_CHANGE, l->id, id, (uint8_t)op, 0, 0, 0, 0, 0);
			sim_node_observe(s, l);
			s->stats.changes++;
			return until_conf(s, id, op == RAFT_REMOVE ? 0 : op == RAFT_PROMOTE ?
					  RAFT_VOTER : RAFT_LEARNER, what);
		}
		sim_step(s);
	}
	return !sim_fail(s, "scenario", "%s was refused for %d steps", what, PHASE_STEPS);
}

static void cut_off(struct sim *s, raft_id id, bool cut)
{
	for (uint32_t j = 1; j <= s->n_slots; j++)
		s->net.cut[id][j] = s->net.cut[j][id] = cut && j != id;
	s->net.partitioned = cut;
	sim_trace(s, cut ? SIM_EV_PARTITION : SIM_EV_HEAL, id, 0, 2, 0, 0, 0, 0, 0);
}

/* Run steps; the leader and its term must not change (no fault touches them). */
static bool steady(struct sim *s, uint64_t steps, const char *phase)
{
	struct sim_node *l = leader(s);
	raft_term t = l ? l->st.term : 0;
	for (uint64_t k = 0; k < steps && !s->failed; k++) {
		sim_step(s);
		if (!s->failed && (!l->r || l->st.role != RAFT_LEADER || l->st.term != t))
			sim_fail(s, "scenario", "%s: n%llu lost leadership of t%llu (now %s t%llu)",
				 phase, (ull)l->id, (ull)t, raft_role_name(l->st.role),
				 (ull)l->st.term);
	}
	return !s->failed;
}

/*
 * A removed voter X keeps its log and its timer. Once its removal is
 * committed nobody sends it anything, so it campaigns, over and over. It is
 * cut off for a while (its campaigns go nowhere), then healed: the leader and
 * its term must not change, and guard.c's removed-disrupts, removed-leader,
 * vote-quorum and commit-quorum judge every message on the way.
 */
bool sim_scenario_removed(struct sim *s)
{
	if (!until_conf(s, 1, RAFT_VOTER, "the first election") ||
	    !steady(s, 3 * SIM_ELECTION_TICKS, "the first leader"))
		return false;
	raft_id x = leader(s)->id == 5 ? 4 : 5;
	if (!change(s, RAFT_REMOVE, x, "the removal"))
		return false;
	struct sim_node *xn = sim_node_by_id(s, x);
	uint64_t sent = s->stats.ev[SIM_EV_SEND];
	if (!steady(s, 4 * SIM_ELECTION_TICKS, "after the removal"))
		return false;
	cut_off(s, x, true);
	if (!steady(s, 5 * SIM_ELECTION_TICKS, "X cut off"))
		return false;
	cut_off(s, x, false);
	if (!steady(s, 20 * SIM_ELECTION_TICKS, "X healed"))
		return false;
	if (!xn->r || xn->st.role == RAFT_LEADER || s->stats.ev[SIM_EV_SEND] == sent)
		return !sim_fail(s, "scenario", "removed n%llu did not keep campaigning", (ull)x);
	if (xn->campaign_conf.n == 0 || !sim_conf_kind(&xn->campaign_conf, x))
		return !sim_fail(s, "scenario", "removed n%llu never campaigned", (ull)x);
	return sim_liveness(s);
}

/*
 * A removed voter is wiped and re-added as a learner; it learns that it is a
 * learner, then is cut off for five election timeouts (a voter would
 * campaign), healed, and the leader crashes, so the others elect a new one
 * while it is still a learner. Only then is it promoted. guard.c's
 * learner-campaigns and learner-votes judge it throughout.
 */
bool sim_scenario_learner(struct sim *s)
{
	if (!until_conf(s, 1, RAFT_VOTER, "the first election") ||
	    !steady(s, 3 * SIM_ELECTION_TICKS, "the first leader"))
		return false;
	raft_id x = leader(s)->id == 5 ? 4 : 5;
	struct sim_node *xn = sim_node_by_id(s, x);
	if (!change(s, RAFT_REMOVE, x, "the removal"))
		return false;
	for (int k = 0; k < 50 && !s->failed; k++)
		sim_step(s); /* every member hears of the removal */
	sim_node_wipe(s, xn);
	xn->was_member = true;
	if (!change(s, RAFT_ADD_LEARNER, x, "the add"))
		return false;
	for (int k = 0; k < PHASE_STEPS && !s->failed; k++) {
		if (xn->r && sim_conf_kind(&xn->st.conf, x) == RAFT_LEARNER)
			break;
		sim_step(s);
	}
	if (s->failed || sim_conf_kind(&xn->st.conf, x) != RAFT_LEARNER)
		return !sim_fail(s, "scenario", "n%llu never learned it is a learner", (ull)x);
	cut_off(s, x, true);
	for (int k = 0; k < 5 * SIM_ELECTION_TICKS && !s->failed; k++)
		sim_step(s);
	cut_off(s, x, false);
	sim_node_crash(s, leader(s), s->now + 3 * SIM_ELECTION_TICKS);
	for (int k = 0; k < 6 * SIM_ELECTION_TICKS && !s->failed; k++)
		sim_step(s);
	if (!s->failed && !change(s, RAFT_PROMOTE, x, "the promotion"))
		return false;
	return sim_liveness(s);
}
