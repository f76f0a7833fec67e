/* test_raft_election.c: leader election, PreVote, CheckQuorum and the leader lease. */
#include "harness.h"

#include <string.h>

#define E 10 /* election_ticks of th_config() (raft_config_default) */

static struct th_cluster *cluster(void **state, uint32_t n, const struct raft_config *cfg)
{
	struct th_cluster *c = th_new(n, cfg);

	*state = c;
	assert_int_equal(c->nodes[0].cfg.election_ticks, cfg ? cfg->election_ticks : E);
	return c;
}

/* A message a voter could have sent, at term `term`, to `to`. */
static struct raft_msg vote_msg(int type, raft_id from, raft_id to, raft_term term,
				raft_index last, raft_term last_term, bool force)
{
	struct raft_msg m;

	memset(&m, 0, sizeof(m));
	m.type = (uint8_t)type;
	m.from = from;
	m.to = to;
	m.term = term;
	m.index = last;
	m.log_term = last_term;
	m.force = force;
	return m;
}

/* Whether node `from` granted a (pre)vote to `to` in a queued response. */
static bool granted(struct th_cluster *c, raft_id from, raft_id to, int type)
{
	for (uint32_t i = 0;; i++) {
		struct raft_msg *m = th_msg(c, from, to, type, i);

		if (!m)
			return false;
		if (!m->reject)
			return true;
	}
}

static void test_single_node_cluster_elects_itself(void **state)
{
	struct th_cluster *c = cluster(state, 1, NULL);
	const struct th_node *nd = th_node(c, 1);
	struct raft_status st;
	uint32_t t;

	for (t = 0; t < 3 * E && th_role(c, 1) != RAFT_LEADER; t++)
		th_tick_all(c, 1);
	st = th_status(c, 1);
	assert_int_equal(st.role, RAFT_LEADER);
	assert_int_equal(st.leader, 1);
	assert_true(t >= E);
	assert_int_equal(raft_leader(th_raft(c, 1)), 1);
	/* Bootstrap wrote CONF (1, term 1); the first election is term 2. */
	assert_int_equal(st.term, TH_BOOT_TERM + 1);
	assert_int_equal(nd->applied[0].type, RAFT_ENTRY_CONF);
	assert_int_equal(nd->applied[0].term, TH_BOOT_TERM);
	/* Alone, it commits its NOOP at once. */
	assert_int_equal(st.commit, TH_BOOT_INDEX + 1);
	assert_int_equal(th_applied(c, 1), TH_BOOT_INDEX + 1);
	assert_int_equal(nd->applied[1].type, RAFT_ENTRY_NOOP);
	assert_int_equal(nd->applied[1].term, st.term);
}

static void test_three_nodes_elect_exactly_one_leader_after_election_timeout(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_id leader;
	raft_term term;

	/* Timeouts are drawn from [E, 2E): nobody campaigns earlier. */
	th_tick_all(c, E - 1);
	assert_int_equal(th_count_role(c, RAFT_LEADER), 0);
	assert_int_equal(th_trace_count(c, TH_ANY, TH_ANY, RAFT_MSG_VOTE, -1), 0);
	assert_int_equal(th_trace_count(c, TH_ANY, TH_ANY, RAFT_MSG_PREVOTE, -1), 0);

	leader = th_wait_leader(c, 10 * E);
	assert_int_not_equal(leader, 0);
	term = th_term(c, leader);
	/* Let it settle and check it stays the one leader. */
	th_tick_all(c, 3 * E);
	assert_int_equal(th_count_role(c, RAFT_LEADER), 1);
	assert_int_equal(th_leader(c), leader);
	for (raft_id id = 1; id <= 3; id++) {
		struct raft_status st = th_status(c, id);

		assert_int_equal(st.term, term);
		assert_int_equal(st.leader, leader);
		assert_int_equal(raft_leader(th_raft(c, id)), leader);
		if (id != leader)
			assert_int_equal(st.role, RAFT_FOLLOWER);
	}
}

static void test_new_leader_first_committed_entry_is_noop_of_its_term(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_id l2;
	raft_term t2;
	bool seen = false;

	th_elect(c, 1);
	for (raft_id id = 1; id <= 3; id++) {
		const struct th_node *nd = th_node(c, id);

		assert_int_equal(nd->n_applied, TH_BOOT_INDEX + 1);
		assert_int_equal(nd->applied[TH_BOOT_INDEX].index, TH_BOOT_INDEX + 1);
		assert_int_equal(nd->applied[TH_BOOT_INDEX].type, RAFT_ENTRY_NOOP);
		assert_int_equal(nd->applied[TH_BOOT_INDEX].term, th_term(c, 1));
	}
	assert_int_equal(th_propose(c, 1, "a"), 0);
	th_stabilize(c);

	/* A second leader after the first is cut off. */
	th_isolate(c, 1);
	l2 = 0;
	for (uint32_t t = 0; t < 10 * E && !l2; t++) {
		th_tick_all(c, 1);
		for (raft_id id = 2; id <= 3; id++)
			if (th_role(c, id) == RAFT_LEADER)
				l2 = id;
	}
	assert_int_not_equal(l2, 0);
	t2 = th_term(c, l2);
	assert_true(t2 > th_term(c, 1) || th_role(c, 1) != RAFT_LEADER);
	th_tick_all(c, 2);
	const struct th_node *nd = th_node(c, l2);

	for (uint32_t i = 0; i < nd->n_applied; i++) {
		if (nd->applied[i].term != t2)
			continue;
		assert_int_equal(nd->applied[i].type, RAFT_ENTRY_NOOP);
		/* After the first NOOP and "a". */
		assert_int_equal(nd->applied[i].index, TH_BOOT_INDEX + 3);
		seen = true;
		break;
	}
	assert_true(seen);
}

/* Cut node 1 (the leader) off and let the other two forget it. */
static void depose(struct th_cluster *c)
{
	th_isolate(c, 1);
	th_tick_alone(c, 2, 2 * E);
	th_tick_alone(c, 3, 2 * E);
}

static void test_vote_not_granted_to_candidate_with_stale_log(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_index base;
	raft_term t;

	th_elect(c, 1);
	base = th_last(c, 1);
	/* "x" reaches node 2 only: node 3's log is behind. */
	assert_int_equal(th_propose(c, 1, "x"), 0);
	assert_true(th_deliver(c, 1, 2, RAFT_MSG_APPEND) >= 1);
	th_drop(c, 1, 3, TH_ANY);
	th_deliver(c, 2, 1, TH_ANY);
	assert_int_equal(th_last(c, 2), base + 1);
	assert_int_equal(th_last(c, 3), base);
	t = th_term(c, 1);
	depose(c);

	/* Node 3 campaigns with last entry (base, t): node 2 holds (base + 1, t). */
	assert_int_equal(raft_campaign(th_raft(c, 3)), 0);
	th_process(c, 3);
	assert_int_equal(th_count(c, 3, 2, RAFT_MSG_VOTE), 1);
	th_deliver(c, 3, 2, RAFT_MSG_VOTE);
	assert_false(granted(c, 2, 3, RAFT_MSG_VOTE_RESP));
	assert_int_not_equal(th_status(c, 2).vote, 3);
	th_deliver(c, 2, 3, TH_ANY);
	assert_int_not_equal(th_role(c, 3), RAFT_LEADER);

	/* The same request, forced (no lease can be the reason), still fails. */
	struct raft_msg m = vote_msg(RAFT_MSG_VOTE, 3, 2, th_term(c, 2) + 1, base, t, true);

	assert_int_equal(th_step(c, 2, &m), 0);
	assert_false(granted(c, 2, 3, RAFT_MSG_VOTE_RESP));
	assert_int_not_equal(th_status(c, 2).vote, 3);

	/* Node 2 may win: its log is at least as up to date as node 3's. */
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);
	assert_int_equal(raft_campaign(th_raft(c, 2)), 0);
	th_stabilize(c);
	assert_int_equal(th_role(c, 2), RAFT_LEADER);
	assert_true(th_applied_has(c, 3, "x"));
}

static void test_vote_log_comparison_uses_last_term_before_length(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_term t;

	th_elect(c, 1);
	assert_int_equal(th_propose(c, 1, "a"), 0);
	assert_int_equal(th_propose(c, 1, "b"), 0);
	th_stabilize(c);
	t = th_term(c, 2);
	/* Node 2 holds (last, t). A longer log with an older last term loses. */
	struct raft_msg m = vote_msg(RAFT_MSG_VOTE, 3, 2, t + 1, th_last(c, 2) + 5, t - 1, true);

	assert_int_equal(th_step(c, 2, &m), 0);
	assert_false(granted(c, 2, 3, RAFT_MSG_VOTE_RESP));
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);
	/* A shorter log with a newer last term wins. */
	m = vote_msg(RAFT_MSG_VOTE, 3, 2, t + 2, 1, t + 1, true);
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_true(granted(c, 2, 3, RAFT_MSG_VOTE_RESP));
	assert_int_equal(th_status(c, 2).vote, 3);
	assert_int_equal(th_term(c, 2), t + 2);
}

static void test_one_vote_per_term(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_index last;
	raft_term t;
	struct raft_msg m;

	th_elect(c, 1);
	t = th_term(c, 2);
	last = th_last(c, 2);
	m = vote_msg(RAFT_MSG_VOTE, 3, 2, t + 1, last, t, true);
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_true(granted(c, 2, 3, RAFT_MSG_VOTE_RESP));
	assert_int_equal(th_status(c, 2).vote, 3);
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);

	/* Another candidate of the same term, as up to date: refused. */
	m = vote_msg(RAFT_MSG_VOTE, 1, 2, t + 1, last, t, true);
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_false(granted(c, 2, 1, RAFT_MSG_VOTE_RESP));
	assert_int_equal(th_status(c, 2).vote, 3);
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);

	/* The same candidate asking again (a duplicate) gets the same answer. */
	m = vote_msg(RAFT_MSG_VOTE, 3, 2, t + 1, last, t, true);
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_true(granted(c, 2, 3, RAFT_MSG_VOTE_RESP));
	assert_int_equal(th_status(c, 2).vote, 3);
}

static void test_simultaneous_candidates_split_the_vote(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_term t;

	th_elect(c, 1);
	t = th_term(c, 1);
	th_down(c, 1);
	th_tick_alone(c, 2, 2 * E);
	th_tick_alone(c, 3, 2 * E);
	/* Both campaign in term t + 1 before hearing from each other. */
	assert_int_equal(raft_campaign(th_raft(c, 2)), 0);
	assert_int_equal(raft_campaign(th_raft(c, 3)), 0);
	th_process_all(c);
	assert_int_equal(th_term(c, 2), t + 1);
	assert_int_equal(th_term(c, 3), t + 1);
	th_deliver(c, TH_ANY, TH_ANY, RAFT_MSG_VOTE);
	th_deliver(c, TH_ANY, TH_ANY, RAFT_MSG_VOTE_RESP);
	assert_int_not_equal(th_role(c, 2), RAFT_LEADER);
	assert_int_not_equal(th_role(c, 3), RAFT_LEADER);
	assert_int_equal(th_status(c, 2).vote, 2);
	assert_int_equal(th_status(c, 3).vote, 3);
	/* Randomised timeouts break the tie later. */
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);
	assert_int_not_equal(th_wait_leader(c, 20 * E), 0);
}

static void test_higher_term_makes_leader_step_down(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	raft_id l2 = 0;
	raft_term t1;

	th_config(&cfg);
	cfg.check_quorum = false; /* the old leader would not notice on its own */
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	t1 = th_term(c, 1);
	th_isolate(c, 1);
	for (uint32_t t = 0; t < 10 * E && !l2; t++) {
		th_tick_all(c, 1);
		for (raft_id id = 2; id <= 3; id++)
			if (th_role(c, id) == RAFT_LEADER)
				l2 = id;
	}
	assert_int_not_equal(l2, 0);
	assert_true(th_term(c, l2) > t1);
	/* Without CheckQuorum node 1 still believes it leads its old term. */
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
	assert_int_equal(th_term(c, 1), t1);

	th_heal(c);
	th_tick_all(c, 3);
	assert_int_equal(th_role(c, 1), RAFT_FOLLOWER);
	assert_int_equal(th_term(c, 1), th_term(c, l2));
	assert_int_equal(raft_leader(th_raft(c, 1)), l2);
	assert_int_equal(th_leader(c), l2);
	assert_int_equal(th_count_role(c, RAFT_LEADER), 1);
}

static void test_leader_steps_down_on_response_with_higher_term(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	struct raft_msg m;
	raft_term t;

	th_elect(c, 1);
	t = th_term(c, 1);
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_HEARTBEAT_RESP;
	m.from = 2;
	m.to = 1;
	m.term = t + 3;
	assert_int_equal(th_step(c, 1, &m), 0);
	assert_int_equal(th_role(c, 1), RAFT_FOLLOWER);
	assert_int_equal(th_term(c, 1), t + 3);
	assert_int_equal(th_propose(c, 1, "x"), CM_ENOTLEADER);
}

static void test_prevote_partitioned_node_does_not_increase_its_term(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_term t;

	th_elect(c, 1);
	t = th_term(c, 1);
	th_isolate(c, 3);
	/* Many election timeouts: node 3 keeps pre-campaigning and losing. */
	th_tick_all(c, 10 * E);
	assert_true(th_trace_count(c, 3, TH_ANY, RAFT_MSG_PREVOTE, -1) >= 2);
	assert_int_equal(th_trace_count(c, 3, TH_ANY, RAFT_MSG_VOTE, -1), 0);
	assert_int_equal(th_term(c, 3), t);
	assert_int_not_equal(th_role(c, 3), RAFT_LEADER);
	assert_int_not_equal(th_role(c, 3), RAFT_CANDIDATE);
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
	assert_int_equal(th_propose(c, 1, "while-away"), 0);
	th_stabilize(c);

	/* Rejoining does not disrupt the leader and catches node 3 up. */
	th_heal(c);
	th_tick_all(c, 3 * E);
	assert_int_equal(th_leader(c), 1);
	assert_int_equal(th_count_role(c, RAFT_LEADER), 1);
	for (raft_id id = 1; id <= 3; id++) {
		assert_int_equal(th_term(c, id), t);
		assert_int_equal(raft_leader(th_raft(c, id)), 1);
	}
	assert_true(th_applied_has(c, 3, "while-away"));
}

static void test_prevote_disabled_partitioned_node_increases_its_term(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	raft_term t;

	th_config(&cfg);
	cfg.pre_vote = false;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	t = th_term(c, 1);
	th_isolate(c, 3);
	th_tick_all(c, 6 * E);
	/* The contrast that shows what PreVote is for (thesis §9.6). */
	assert_true(th_term(c, 3) > t);
	assert_int_equal(th_trace_count(c, 3, TH_ANY, RAFT_MSG_PREVOTE, -1), 0);
}

static void test_checkquorum_leader_cut_off_from_majority_steps_down(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	uint32_t t;

	th_elect(c, 1);
	th_isolate(c, 1);
	for (t = 0; t < 2 * E + 1 && th_role(c, 1) == RAFT_LEADER; t++)
		th_tick(c, 1, 1);
	assert_int_not_equal(th_role(c, 1), RAFT_LEADER);
	assert_true(t >= E - 1);
	assert_int_equal(th_propose(c, 1, "x"), CM_ENOTLEADER);
}

static void test_checkquorum_leader_with_live_majority_keeps_leading(void **state)
{
	struct th_cluster *c = cluster(state, 5, NULL);

	th_elect(c, 1);
	th_isolate(c, 4);
	th_isolate(c, 5);
	th_tick_all(c, 5 * E);
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
	assert_int_equal(th_propose(c, 1, "x"), 0);
	th_stabilize(c);
	assert_true(th_applied_has(c, 2, "x"));
}

static void test_checkquorum_disabled_isolated_leader_keeps_leading(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;

	th_config(&cfg);
	cfg.check_quorum = false;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	th_isolate(c, 1);
	th_tick(c, 1, 5 * E);
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
}

static void test_lease_follower_rejects_vote_without_force(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	struct raft_msg m;
	raft_term t;

	th_elect(c, 1);
	th_tick_all(c, 2); /* node 2 has just heard from its leader */
	t = th_term(c, 2);

	/* Thesis §4.2.3: within the minimum election timeout of hearing from a
	 * leader a server neither grants nor updates its term. */
	m = vote_msg(RAFT_MSG_VOTE, 3, 2, t + 1, th_last(c, 3), t, false);
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_false(granted(c, 2, 3, RAFT_MSG_VOTE_RESP));
	assert_int_equal(th_term(c, 2), t);
	assert_int_equal(raft_leader(th_raft(c, 2)), 1);
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);

	m = vote_msg(RAFT_MSG_PREVOTE, 3, 2, t + 1, th_last(c, 3), t, false);
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_false(granted(c, 2, 3, RAFT_MSG_PREVOTE_RESP));
	assert_int_equal(th_term(c, 2), t);
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);

	/* A leadership transfer (force) overrides the lease. */
	m = vote_msg(RAFT_MSG_VOTE, 3, 2, t + 1, th_last(c, 3), t, true);
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_true(granted(c, 2, 3, RAFT_MSG_VOTE_RESP));
	assert_int_equal(th_term(c, 2), t + 1);
	assert_int_equal(th_status(c, 2).vote, 3);
}

static void test_lease_expired_follower_grants_prevote(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	struct raft_msg m;
	raft_term t;

	th_elect(c, 1);
	th_isolate(c, 1);
	th_tick_alone(c, 2, 2 * E);
	t = th_term(c, 2);
	m = vote_msg(RAFT_MSG_PREVOTE, 3, 2, t + 1, th_last(c, 3), t, false);
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_true(granted(c, 2, 3, RAFT_MSG_PREVOTE_RESP));
	/* A pre-vote changes neither term nor vote. */
	assert_int_equal(th_term(c, 2), t);
	assert_int_not_equal(th_status(c, 2).vote, 3);
}

static void test_restarted_node_remembers_its_term_and_vote(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_term t;
	raft_index last;
	struct raft_msg m;

	th_elect(c, 1);
	t = th_term(c, 2);
	last = th_last(c, 2);
	m = vote_msg(RAFT_MSG_VOTE, 3, 2, t + 1, last, t, true);
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_true(granted(c, 2, 3, RAFT_MSG_VOTE_RESP));
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);

	th_restart(c, 2);
	assert_int_equal(th_term(c, 2), t + 1);
	assert_int_equal(th_status(c, 2).vote, 3);
	m = vote_msg(RAFT_MSG_VOTE, 1, 2, t + 1, last, t, true);
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_false(granted(c, 2, 1, RAFT_MSG_VOTE_RESP));
	assert_int_equal(th_status(c, 2).vote, 3);
}

/* The tick at which node 1 of a fresh 3-node cluster (seeded `seed`) first campaigns. */
static uint32_t first_timeout(uint64_t seed)
{
	struct raft_config cfg;
	struct th_cluster *c;
	uint32_t t;

	th_config(&cfg);
	cfg.seed = seed;
	c = th_new(3, &cfg);
	for (t = 1; t <= 4 * E; t++) {
		th_tick(c, 1, 1);
		if (th_role(c, 1) != RAFT_FOLLOWER)
			break;
	}
	th_free(c);
	return t;
}

static void test_randomised_timeouts_differ_with_different_seeds(void **state)
{
	uint32_t seen[2 * E + 1] = {0};
	uint32_t distinct = 0;

	(void)state;
	for (uint64_t seed = 1; seed <= 24; seed++) {
		uint32_t t = first_timeout(seed);

		assert_in_range(t, E, 2 * E);
		assert_int_equal(first_timeout(seed), t); /* a seed replays exactly */
		if (!seen[t]++)
			distinct++;
	}
	assert_true(distinct >= 3);
}

static void test_campaign_on_non_voter_returns_eunknownpeer(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_id j = th_add_node(c, NULL);

	/* A node joining with no configuration is nobody's voter. */
	assert_int_equal(raft_campaign(th_raft(c, j)), CM_EUNKNOWNPEER);
	th_process(c, j);
	assert_int_equal(th_trace_count(c, j, TH_ANY, TH_ANY, -1), 0);

	/* Nor is a learner. */
	th_elect(c, 1);
	assert_int_equal(raft_change(th_raft(c, 1), RAFT_ADD_LEARNER, j, NULL), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	struct raft_status st = th_status(c, j);

	assert_int_equal(raft_conf_kind(&st.conf, j), RAFT_LEARNER);
	assert_int_equal(raft_campaign(th_raft(c, j)), CM_EUNKNOWNPEER);
	th_process(c, j);
	assert_int_equal(th_trace_count(c, j, TH_ANY, RAFT_MSG_VOTE, -1), 0);
	assert_int_equal(th_leader(c), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TH_TEST(test_single_node_cluster_elects_itself),
		TH_TEST(test_three_nodes_elect_exactly_one_leader_after_election_timeout),
		TH_TEST(test_new_leader_first_committed_entry_is_noop_of_its_term),
		TH_TEST(test_vote_not_granted_to_candidate_with_stale_log),
		TH_TEST(test_vote_log_comparison_uses_last_term_before_length),
		TH_TEST(test_one_vote_per_term),
		TH_TEST(test_simultaneous_candidates_split_the_vote),
		TH_TEST(test_higher_term_makes_leader_step_down),
		TH_TEST(test_leader_steps_down_on_response_with_higher_term),
		TH_TEST(test_prevote_partitioned_node_does_not_increase_its_term),
		TH_TEST(test_prevote_disabled_partitioned_node_increases_its_term),
		TH_TEST(test_checkquorum_leader_cut_off_from_majority_steps_down),
		TH_TEST(test_checkquorum_leader_with_live_majority_keeps_leading),
		TH_TEST(test_checkquorum_disabled_isolated_leader_keeps_leading),
		TH_TEST(test_lease_follower_rejects_vote_without_force),
		TH_TEST(test_lease_expired_follower_grants_prevote),
		TH_TEST(test_restarted_node_remembers_its_term_and_vote),
		TH_TEST(test_randomised_timeouts_differ_with_different_seeds),
		TH_TEST(test_campaign_on_non_voter_returns_eunknownpeer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
