/* test_raft_membership.c: one-server membership changes and the conf codec. */
#include "harness.h"

#include <errno.h>
#include <string.h>

#define E 10 /* election_ticks of th_config() */

static struct th_cluster *cluster(void **state, uint32_t n, const struct raft_config *cfg)
{
	struct th_cluster *c = th_new(n, cfg);

	*state = c;
	return c;
}

static int change(struct th_cluster *c, raft_id leader, enum raft_change_op op, raft_id id)
{
	raft_index idx = 0;
	int rc = raft_change(th_raft(c, leader), op, id, &idx);

	if (rc == 0)
		assert_int_equal(idx, th_last(c, leader));
	th_process(c, leader);
	return rc;
}

static int kind_on(struct th_cluster *c, raft_id on, raft_id id)
{
	struct raft_status st = th_status(c, on);

	return raft_conf_kind(&st.conf, id);
}

/* Three voters led by 1, plus node 4 added as a learner and caught up. */
static struct th_cluster *with_learner(void **state, const struct raft_config *cfg)
{
	struct th_cluster *c = cluster(state, 3, cfg);
	raft_id l = th_add_node(c, cfg);

	assert_int_equal(l, 4);
	th_elect(c, 1);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 4), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	for (raft_id id = 1; id <= 4; id++)
		assert_int_equal(kind_on(c, id, 4), RAFT_LEARNER);
	return c;
}

static void test_learner_receives_entries(void **state)
{
	struct th_cluster *c = with_learner(state, NULL);
	const struct th_node *n4 = th_node(c, 4);

	assert_int_equal(th_propose(c, 1, "a"), 0);
	th_stabilize(c);
	th_tick_all(c, 1);
	assert_true(th_applied_has(c, 4, "a"));
	/* It applied the whole log: bootstrap CONF, NOOP, its own CONF entry. */
	assert_int_equal(n4->applied[0].type, RAFT_ENTRY_CONF);
	assert_int_equal(n4->applied[1].type, RAFT_ENTRY_NOOP);
	assert_int_equal(n4->applied[2].type, RAFT_ENTRY_CONF);
	assert_int_equal(th_applied(c, 4), th_applied(c, 1));
	assert_int_equal(raft_leader(th_raft(c, 4)), 1);
}

static void test_learner_does_not_count_for_commit(void **state)
{
	struct th_cluster *c = with_learner(state, NULL);
	raft_index idx;

	th_cut(c, 1, 2);
	th_cut(c, 1, 3);
	assert_int_equal(raft_propose(th_raft(c, 1), "b", 1, &idx), 0);
	th_process(c, 1);
	th_stabilize(c);
	assert_int_equal(th_last(c, 4), idx); /* the learner has it ... */
	assert_true(th_commit(c, 1) < idx);   /* ... but 1 + learner is no quorum */
	assert_false(th_applied_has(c, 1, "b"));
	th_heal(c);
	for (uint32_t t = 0; t < 2 * E && !th_applied_has(c, 4, "b"); t++)
		th_tick_all(c, 1);
	assert_true(th_applied_has(c, 4, "b"));
}

static void test_learner_never_campaigns(void **state)
{
	struct th_cluster *c = with_learner(state, NULL);

	th_down(c, 1);
	th_trace_clear(c);
	th_tick_all(c, 10 * E);
	assert_int_equal(th_trace_count(c, 4, TH_ANY, RAFT_MSG_PREVOTE, -1), 0);
	assert_int_equal(th_trace_count(c, 4, TH_ANY, RAFT_MSG_VOTE, -1), 0);
	assert_int_equal(raft_campaign(th_raft(c, 4)), CM_EUNKNOWNPEER);
	assert_int_not_equal(th_role(c, 4), RAFT_LEADER);
	/* 2 and 3 elect a leader; the learner follows it. */
	assert_true(th_role(c, 2) == RAFT_LEADER || th_role(c, 3) == RAFT_LEADER);
	assert_int_equal(raft_leader(th_raft(c, 4)), th_leader(c));
}

static void test_learner_vote_is_not_needed_nor_counted(void **state)
{
	struct th_cluster *c = with_learner(state, NULL);
	raft_id l2 = 0;

	/* Voters 2 and 3 can elect without the learner ... */
	th_down(c, 1);
	for (uint32_t t = 0; t < 20 * E && !l2; t++) {
		th_tick_all(c, 1);
		l2 = th_leader(c);
	}
	assert_true(l2 == 2 || l2 == 3);
	/* ... and one voter plus the learner cannot. */
	th_up(c, 1);
	th_tick_all(c, 2);
	raft_id other = l2 == 2 ? 3 : 2;

	th_isolate(c, other);
	th_isolate(c, 1);
	raft_term t = th_term(c, l2);

	th_tick_all(c, 10 * E);
	assert_int_equal(th_count_role(c, RAFT_LEADER), 0); /* l2 lost CheckQuorum */
	assert_true(th_term(c, l2) >= t);
}

static void test_promote_lagging_learner_returns_elagging(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;

	th_config(&cfg);
	cfg.learner_catchup = 5;
	c = with_learner(state, &cfg);
	th_isolate(c, 4);
	for (int i = 0; i < 20; i++)
		assert_int_equal(th_propose(c, 1, "x"), 0);
	th_stabilize(c);
	assert_int_equal(change(c, 1, RAFT_PROMOTE, 4), CM_ELAGGING);
	assert_int_equal(kind_on(c, 1, 4), RAFT_LEARNER);

	/* Caught up, it can be promoted. */
	th_heal(c);
	for (uint32_t t = 0; t < 3 * E && th_applied(c, 4) < th_applied(c, 1); t++)
		th_tick_all(c, 1);
	assert_int_equal(th_applied(c, 4), th_applied(c, 1));
	assert_int_equal(change(c, 1, RAFT_PROMOTE, 4), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	for (raft_id id = 1; id <= 4; id++)
		assert_int_equal(kind_on(c, id, 4), RAFT_VOTER);
	assert_int_equal(th_status(c, 1).conf.n, 4);
}

static void test_promote_checks_learner_catchup_boundary(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;

	th_config(&cfg);
	cfg.learner_catchup = 5;
	c = with_learner(state, &cfg);
	th_stabilize(c);
	assert_int_equal(th_status(c, 4).last_index, th_last(c, 1));
	th_isolate(c, 4);
	/* match + 5 >= last: still close enough. */
	for (int i = 0; i < 5; i++)
		assert_int_equal(th_propose(c, 1, "p"), 0);
	th_stabilize(c);
	assert_int_equal(th_last(c, 1), th_last(c, 4) + 5);
	/* One more and it is lagging. */
	assert_int_equal(th_propose(c, 1, "q"), 0);
	th_stabilize(c);
	assert_int_equal(change(c, 1, RAFT_PROMOTE, 4), CM_ELAGGING);
	th_heal(c);
	for (uint32_t t = 0; t < 3 * E && th_applied(c, 4) < th_applied(c, 1); t++)
		th_tick_all(c, 1);
	th_isolate(c, 4);
	for (int i = 0; i < 5; i++)
		assert_int_equal(th_propose(c, 1, "r"), 0);
	th_stabilize(c);
	assert_int_equal(change(c, 1, RAFT_PROMOTE, 4), 0);
}

static void test_promoted_learner_counts_for_commit(void **state)
{
	struct th_cluster *c = with_learner(state, NULL);
	raft_index idx;

	assert_int_equal(change(c, 1, RAFT_PROMOTE, 4), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	/* Four voters: 1, 2 and 4 are a quorum without 3. */
	th_isolate(c, 3);
	assert_int_equal(raft_propose(th_raft(c, 1), "q", 1, &idx), 0);
	th_process(c, 1);
	th_cut(c, 1, 2);
	th_stabilize(c);
	assert_true(th_commit(c, 1) < idx); /* 1 and 4: two of four */
	th_heal(c);
	th_isolate(c, 3);
	for (uint32_t t = 0; t < E && th_commit(c, 1) < idx; t++)
		th_tick_all(c, 1);
	assert_true(th_commit(c, 1) >= idx);
	assert_true(th_applied_has(c, 4, "q"));
}

static void test_second_change_while_one_pending_returns_econfpending(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);

	th_add_node(c, NULL);
	th_add_node(c, NULL);
	raft_index idx;

	th_elect(c, 1);
	th_isolate(c, 1); /* keep the first change uncommitted */
	assert_int_equal(raft_change(th_raft(c, 1), RAFT_ADD_LEARNER, 4, &idx), 0);
	th_process(c, 1);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 5), CM_ECONFPENDING);
	assert_int_equal(change(c, 1, RAFT_REMOVE, 3), CM_ECONFPENDING);
	assert_int_equal(change(c, 1, RAFT_PROMOTE, 4), CM_ECONFPENDING);
	/* In effect as soon as it is in the log (thesis §4.1). */
	assert_int_equal(kind_on(c, 1, 4), RAFT_LEARNER);
	th_heal(c);
	for (uint32_t t = 0; t < 2 * E && th_commit(c, 1) < idx; t++)
		th_tick_all(c, 1);
	assert_true(th_commit(c, 1) >= idx);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 5), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	assert_int_equal(kind_on(c, 5, 5), RAFT_LEARNER);
}

static void test_change_before_leader_commits_in_its_term_is_refused(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);

	th_add_node(c, NULL);
	assert_int_equal(raft_campaign(th_raft(c, 1)), 0);
	th_process(c, 1);
	th_deliver(c, 1, TH_ANY, RAFT_MSG_VOTE);
	th_deliver(c, TH_ANY, 1, RAFT_MSG_VOTE_RESP);
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
	assert_int_equal(th_commit(c, 1), 0);
	/* Thesis §4.1 / the bug of the single-server algorithm: not yet. */
	assert_true(change(c, 1, RAFT_ADD_LEARNER, 4) < 0);
	th_stabilize(c);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 4), 0);
}

static void test_remove_follower(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_term t;

	th_elect(c, 1);
	assert_int_equal(change(c, 1, RAFT_REMOVE, 3), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	for (raft_id id = 1; id <= 2; id++) {
		assert_int_equal(kind_on(c, id, 3), 0);
		assert_int_equal(th_status(c, id).conf.n, 2);
	}
	/* Two voters now: 1 and 2 commit without node 3. */
	th_isolate(c, 3);
	assert_int_equal(th_propose(c, 1, "two"), 0);
	th_stabilize(c);
	assert_true(th_applied_has(c, 2, "two"));
	assert_false(th_applied_has(c, 3, "two"));
	/* The removed node does not disturb them. */
	t = th_term(c, 1);
	th_heal(c);
	th_tick_all(c, 10 * E);
	assert_int_equal(th_leader(c), 1);
	assert_int_equal(th_term(c, 1), t);
	assert_int_equal(th_propose(c, 1, "still"), 0);
	th_stabilize(c);
	assert_true(th_applied_has(c, 2, "still"));
}

static void test_remove_learner(void **state)
{
	struct th_cluster *c = with_learner(state, NULL);

	assert_int_equal(change(c, 1, RAFT_REMOVE, 4), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	assert_int_equal(kind_on(c, 1, 4), 0);
	assert_int_equal(th_status(c, 1).conf.n, 3);
	th_trace_clear(c);
	assert_int_equal(th_propose(c, 1, "gone"), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	assert_int_equal(th_trace_count(c, 1, 4, TH_ANY, -1), 0);
	assert_false(th_applied_has(c, 4, "gone"));
}

static void test_removing_leader_steps_it_down_after_the_change_commits(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_id l2 = 0;

	th_elect(c, 1);
	assert_int_equal(change(c, 1, RAFT_REMOVE, 1), 0);
	/* Appended, not committed: still leading (thesis §4.2.2). */
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
	th_stabilize(c);
	th_tick_all(c, 1);
	assert_int_not_equal(th_role(c, 1), RAFT_LEADER);
	assert_int_equal(kind_on(c, 2, 1), 0);
	assert_int_equal(th_propose(c, 1, "x"), CM_ENOTLEADER);
	th_trace_clear(c);
	/* 2 and 3 carry on. */
	for (uint32_t t = 0; t < 20 * E && !l2; t++) {
		th_tick_all(c, 1);
		l2 = th_leader(c);
	}
	assert_true(l2 == 2 || l2 == 3);
	assert_int_equal(th_propose(c, l2, "after"), 0);
	th_stabilize(c);
	assert_true(th_applied_has(c, 2, "after"));
	assert_true(th_applied_has(c, 3, "after"));
	th_tick_all(c, 5 * E);
	assert_int_not_equal(th_role(c, 1), RAFT_LEADER);
	assert_int_equal(th_trace_count(c, 1, TH_ANY, RAFT_MSG_VOTE, -1), 0);
}

static void test_change_argument_errors(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);

	th_elect(c, 1);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 2), -EEXIST);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 1), -EEXIST);
	assert_int_equal(change(c, 1, RAFT_PROMOTE, 9), CM_EUNKNOWNPEER);
	assert_int_equal(change(c, 1, RAFT_REMOVE, 9), CM_EUNKNOWNPEER);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 0), -EINVAL);
	assert_int_equal(change(c, 2, RAFT_ADD_LEARNER, 4), CM_ENOTLEADER);
	/* None of that left a trace in the log. */
	assert_int_equal(th_last(c, 1), TH_BOOT_INDEX + 1);
	assert_int_equal(th_status(c, 1).conf.n, 3);
	th_stabilize(c);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 4), 0);
}

static void test_removing_last_voter_returns_einval(void **state)
{
	struct th_cluster *c = cluster(state, 1, NULL);

	th_elect(c, 1);
	assert_int_equal(change(c, 1, RAFT_REMOVE, 1), -EINVAL);
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
	assert_int_equal(th_status(c, 1).conf.n, 1);
}

static void test_adding_past_max_nodes_returns_enospc(void **state)
{
	struct th_cluster *c = cluster(state, RAFT_MAX_NODES, NULL);

	th_elect(c, 1);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, RAFT_MAX_NODES + 1), -ENOSPC);
	assert_int_equal(th_status(c, 1).conf.n, RAFT_MAX_NODES);
}

static void test_single_node_adds_learner_and_promotes_it(void **state)
{
	struct th_cluster *c = cluster(state, 1, NULL);

	th_add_node(c, NULL);
	th_elect(c, 1);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 2), 0);
	th_stabilize(c);
	for (uint32_t t = 0; t < E && th_applied(c, 2) < th_applied(c, 1); t++)
		th_tick_all(c, 1);
	assert_int_equal(change(c, 1, RAFT_PROMOTE, 2), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	assert_int_equal(kind_on(c, 2, 2), RAFT_VOTER);
	/* Two voters: node 1 alone no longer commits. */
	th_isolate(c, 2);
	raft_index idx;

	assert_int_equal(raft_propose(th_raft(c, 1), "z", 1, &idx), 0);
	th_process(c, 1);
	th_stabilize(c);
	assert_true(th_commit(c, 1) < idx);
}

static void test_uncommitted_conf_change_is_rolled_back_when_truncated(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_id l2 = 0;

	th_add_node(c, NULL);
	th_elect(c, 1);
	th_isolate(c, 1);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 4), 0);
	assert_int_equal(kind_on(c, 1, 4), RAFT_LEARNER);
	for (uint32_t t = 0; t < 20 * E && !l2; t++) {
		th_tick_all(c, 1);
		if (th_role(c, 2) == RAFT_LEADER || th_role(c, 3) == RAFT_LEADER)
			l2 = th_role(c, 2) == RAFT_LEADER ? 2 : 3;
	}
	assert_int_not_equal(l2, 0);
	assert_int_equal(th_propose(c, l2, "over"), 0);
	th_stabilize(c);
	th_heal(c);
	for (uint32_t t = 0; t < 3 * E && !th_applied_has(c, 1, "over"); t++)
		th_tick_all(c, 1);
	assert_true(th_applied_has(c, 1, "over"));
	/* Node 1's CONF entry was overwritten: the old membership is back. */
	assert_int_equal(kind_on(c, 1, 4), 0);
	assert_int_equal(th_status(c, 1).conf.n, 3);
	th_trace_clear(c);
	th_tick_all(c, 3);
	assert_int_equal(th_trace_count(c, TH_ANY, 4, TH_ANY, -1), 0);
	/* And the new leader may change the membership itself. */
	assert_int_equal(change(c, l2, RAFT_ADD_LEARNER, 4), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	assert_int_equal(kind_on(c, 4, 4), RAFT_LEARNER);
}

static void test_membership_survives_restart(void **state)
{
	struct th_cluster *c = with_learner(state, NULL);

	assert_int_equal(change(c, 1, RAFT_REMOVE, 3), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	for (raft_id id = 1; id <= 4; id++)
		th_restart(c, id);
	for (raft_id id = 1; id <= 2; id++) {
		assert_int_equal(kind_on(c, id, 4), RAFT_LEARNER);
		assert_int_equal(kind_on(c, id, 3), 0);
		assert_int_equal(th_status(c, id).conf.n, 3);
	}
	/* Voters 1 and 2 elect; the learner follows. */
	th_isolate(c, 3);
	raft_id l = th_wait_leader(c, 20 * E);

	assert_true(l == 1 || l == 2);
	assert_int_equal(th_propose(c, l, "again"), 0);
	th_stabilize(c);
	th_tick_all(c, 1);
	assert_true(th_applied_has(c, 4, "again"));
}

static void test_removed_node_can_be_added_again(void **state)
{
	struct th_cluster *c = with_learner(state, NULL);

	assert_int_equal(change(c, 1, RAFT_REMOVE, 4), 0);
	th_stabilize(c);
	th_tick_all(c, 1);
	assert_int_equal(change(c, 1, RAFT_ADD_LEARNER, 4), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	assert_int_equal(kind_on(c, 1, 4), RAFT_LEARNER);
	assert_int_equal(th_propose(c, 1, "back"), 0);
	th_stabilize(c);
	th_tick_all(c, 2);
	assert_true(th_applied_has(c, 4, "back"));
}

/* ---- raft_conf_encode / raft_conf_decode -------------------------------- */

static struct raft_conf conf_of(const raft_id *ids, const uint8_t *kinds, uint32_t n)
{
	struct raft_conf conf;

	memset(&conf, 0, sizeof(conf));
	conf.n = n;
	for (uint32_t i = 0; i < n; i++) {
		conf.ids[i] = ids[i];
		conf.kinds[i] = kinds[i];
	}
	return conf;
}

static void assert_conf_equal(const struct raft_conf *a, const struct raft_conf *b)
{
	assert_int_equal(a->n, b->n);
	for (uint32_t i = 0; i < a->n; i++)
		assert_int_equal(raft_conf_kind(b, a->ids[i]), a->kinds[i]);
}

static void test_conf_encode_decode_round_trip(void **state)
{
	const raft_id ids[] = {1, 7, UINT64_MAX, 0x0102030405060708ull};
	const uint8_t kinds[] = {RAFT_VOTER, RAFT_LEARNER, RAFT_VOTER, RAFT_LEARNER};
	uint8_t buf[RAFT_CONF_MAX_BYTES];
	struct raft_conf in = conf_of(ids, kinds, 4), out;
	uint32_t len;

	(void)state;
	len = raft_conf_encode(&in, buf);
	assert_in_range(len, 1, RAFT_CONF_MAX_BYTES);
	memset(&out, 0xab, sizeof(out));
	assert_int_equal(raft_conf_decode(buf, len, &out), 0);
	assert_conf_equal(&in, &out);
	assert_int_equal(raft_conf_kind(&out, 7), RAFT_LEARNER);
	assert_int_equal(raft_conf_kind(&out, UINT64_MAX), RAFT_VOTER);
	assert_int_equal(raft_conf_kind(&out, 2), 0);

	/* The largest configuration fits RAFT_CONF_MAX_BYTES. */
	raft_id many[RAFT_MAX_NODES];
	uint8_t mk[RAFT_MAX_NODES];

	for (uint32_t i = 0; i < RAFT_MAX_NODES; i++) {
		many[i] = 1000 + i;
		mk[i] = i % 3 ? RAFT_VOTER : RAFT_LEARNER;
	}
	in = conf_of(many, mk, RAFT_MAX_NODES);
	len = raft_conf_encode(&in, buf);
	assert_in_range(len, 1, RAFT_CONF_MAX_BYTES);
	assert_int_equal(raft_conf_decode(buf, len, &out), 0);
	assert_conf_equal(&in, &out);
}

/* Find 8 bytes all equal to b in buf; their offset, or -1. */
static int find_id(const uint8_t *buf, uint32_t len, uint8_t b)
{
	for (uint32_t i = 0; i + 8 <= len; i++) {
		uint32_t k = 0;

		while (k < 8 && buf[i + k] == b)
			k++;
		if (k == 8)
			return (int)i;
	}
	return -1;
}

static void test_conf_decode_garbage_returns_ebadmsg(void **state)
{
	const raft_id ids[] = {0x1111111111111111ull, 0x2222222222222222ull};
	const uint8_t voters[] = {RAFT_VOTER, RAFT_VOTER};
	const uint8_t mixed[] = {RAFT_VOTER, RAFT_LEARNER};
	uint8_t buf[RAFT_CONF_MAX_BYTES + 16], alt[RAFT_CONF_MAX_BYTES + 16];
	struct raft_conf in = conf_of(ids, voters, 2), out;
	uint32_t len;
	int off;

	(void)state;
	len = raft_conf_encode(&in, buf);
	/* Bad lengths: empty, truncated, trailing bytes. */
	assert_int_equal(raft_conf_decode(buf, 0, &out), -EBADMSG);
	for (uint32_t l = 1; l < len; l++)
		assert_int_equal(raft_conf_decode(buf, l, &out), -EBADMSG);
	buf[len] = 0;
	assert_int_equal(raft_conf_decode(buf, len + 1, &out), -EBADMSG);

	/* A duplicate id, and a zero id (ids found by their byte pattern, so
	 * the test does not assume the wire layout). */
	off = find_id(buf, len, 0x22);
	assert_true(off >= 0);
	memcpy(alt, buf, len);
	memset(alt + off, 0x11, 8);
	assert_int_equal(raft_conf_decode(alt, len, &out), -EBADMSG);
	memcpy(alt, buf, len);
	memset(alt + off, 0x00, 8);
	assert_int_equal(raft_conf_decode(alt, len, &out), -EBADMSG);

	/* An unknown kind: the byte that differs between voter and learner. */
	struct raft_conf in2 = conf_of(ids, mixed, 2);
	uint8_t buf2[RAFT_CONF_MAX_BYTES];
	uint32_t len2 = raft_conf_encode(&in2, buf2);
	int diff = -1;

	assert_int_equal(len2, len);
	for (uint32_t i = 0; i < len; i++)
		if (buf[i] != buf2[i])
			diff = diff < 0 ? (int)i : -2;
	assert_true(diff >= 0);
	memcpy(alt, buf, len);
	alt[diff] = 0x7f;
	assert_int_equal(raft_conf_decode(alt, len, &out), -EBADMSG);
	alt[diff] = 0;
	assert_int_equal(raft_conf_decode(alt, len, &out), -EBADMSG);
}

static uint8_t next_byte(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return (uint8_t)*x;
}

static void test_conf_decode_survives_random_and_mutated_bytes(void **state)
{
	const raft_id ids[] = {3, 1, 2};
	const uint8_t kinds[] = {RAFT_VOTER, RAFT_LEARNER, RAFT_VOTER};
	struct raft_conf valid = conf_of(ids, kinds, 3);
	uint8_t good[RAFT_CONF_MAX_BYTES], buf[RAFT_CONF_MAX_BYTES + 8];
	uint32_t good_len = raft_conf_encode(&valid, good);
	uint64_t x = 0x9e3779b97f4a7c15ull;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		struct raft_conf out;
		uint32_t len;
		int rc;

		if (round % 2) { /* a valid encoding with a few bytes changed */
			len = good_len;
			memcpy(buf, good, len);
			for (int k = 0; k < 1 + round % 3; k++)
				buf[next_byte(&x) % len] = next_byte(&x);
		} else {
			len = next_byte(&x) % (uint32_t)sizeof(buf);
			for (uint32_t i = 0; i < len; i++)
				buf[i] = next_byte(&x);
		}
		rc = raft_conf_decode(buf, len, &out);
		if (rc != 0) {
			assert_int_equal(rc, -EBADMSG);
			continue;
		}
		assert_true(out.n <= RAFT_MAX_NODES);
		for (uint32_t i = 0; i < out.n; i++) {
			assert_int_not_equal(out.ids[i], 0);
			assert_true(out.kinds[i] == RAFT_VOTER || out.kinds[i] == RAFT_LEARNER);
			for (uint32_t k = 0; k < i; k++)
				assert_int_not_equal(out.ids[i], out.ids[k]);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TH_TEST(test_learner_receives_entries),
		TH_TEST(test_learner_does_not_count_for_commit),
		TH_TEST(test_learner_never_campaigns),
		TH_TEST(test_learner_vote_is_not_needed_nor_counted),
		TH_TEST(test_promote_lagging_learner_returns_elagging),
		TH_TEST(test_promote_checks_learner_catchup_boundary),
		TH_TEST(test_promoted_learner_counts_for_commit),
		TH_TEST(test_second_change_while_one_pending_returns_econfpending),
		TH_TEST(test_change_before_leader_commits_in_its_term_is_refused),
		TH_TEST(test_remove_follower),
		TH_TEST(test_remove_learner),
		TH_TEST(test_removing_leader_steps_it_down_after_the_change_commits),
		TH_TEST(test_change_argument_errors),
		TH_TEST(test_removing_last_voter_returns_einval),
		TH_TEST(test_adding_past_max_nodes_returns_enospc),
		TH_TEST(test_single_node_adds_learner_and_promotes_it),
		TH_TEST(test_uncommitted_conf_change_is_rolled_back_when_truncated),
		TH_TEST(test_membership_survives_restart),
		TH_TEST(test_removed_node_can_be_added_again),
		TH_TEST(test_conf_encode_decode_round_trip),
		TH_TEST(test_conf_decode_garbage_returns_ebadmsg),
		TH_TEST(test_conf_decode_survives_random_and_mutated_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
