/* test_raft_transfer.c: leadership transfer (Raft thesis §3.10). */
#include "harness.h"

#include <errno.h>
#include <stdio.h>

#define E 10 /* election_ticks of th_config() */

static struct th_cluster *cluster(void **state, uint32_t n, const struct raft_config *cfg)
{
	struct th_cluster *c = th_new(n, cfg);

	*state = c;
	return c;
}

/* Position in the trace of the first message matching, or n_trace. */
static uint32_t trace_find(const struct th_cluster *c, raft_id from, raft_id to, int type)
{
	uint32_t i;

	for (i = 0; i < c->n_trace; i++)
		if (c->trace[i].from == from && c->trace[i].to == to && c->trace[i].type == type)
			break;
	return i;
}

static void test_transfer_to_up_to_date_follower_makes_it_leader(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_term t;
	uint32_t i;

	th_elect(c, 1);
	assert_int_equal(th_propose(c, 1, "a"), 0);
	th_stabilize(c);
	th_tick_all(c, 1);
	t = th_term(c, 1);
	th_trace_clear(c);

	assert_int_equal(raft_transfer(th_raft(c, 1), 2), 0);
	th_process(c, 1);
	/* No tick needed: the target is caught up, so TIMEOUT_NOW goes now. */
	th_stabilize(c);
	assert_int_equal(th_role(c, 2), RAFT_LEADER);
	assert_int_equal(th_term(c, 2), t + 1);
	assert_int_equal(th_role(c, 1), RAFT_FOLLOWER);
	assert_int_equal(th_status(c, 1).transferee, 0);
	for (raft_id id = 1; id <= 3; id++)
		assert_int_equal(raft_leader(th_raft(c, id)), 2);
	assert_int_equal(th_trace_count(c, 1, 2, RAFT_MSG_TIMEOUT_NOW, -1), 1);
	/* The target skips PreVote and overrides node 3's lease with force. */
	assert_int_equal(th_trace_count(c, 2, TH_ANY, RAFT_MSG_PREVOTE, -1), 0);
	i = trace_find(c, 2, 3, RAFT_MSG_VOTE);
	assert_true(i < c->n_trace);
	assert_true(c->trace[i].force);

	assert_int_equal(th_propose(c, 1, "x"), CM_ENOTLEADER);
	assert_int_equal(th_propose(c, 2, "b"), 0);
	th_stabilize(c);
	assert_true(th_applied_has(c, 1, "b"));
	assert_true(th_applied_has(c, 3, "b"));
}

static void test_transfer_to_lagging_follower_catches_it_up_first(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	char buf[16];
	raft_index last;
	uint32_t tn, t;
	bool caught_up_before = false;

	th_elect(c, 1);
	th_cut(c, 1, 3);
	for (int i = 0; i < 10; i++) {
		snprintf(buf, sizeof(buf), "w%d", i);
		assert_int_equal(th_propose(c, 1, buf), 0);
	}
	th_stabilize(c);
	last = th_last(c, 1);
	assert_true(th_last(c, 3) < last);
	th_heal(c);
	th_trace_clear(c);

	assert_int_equal(raft_transfer(th_raft(c, 1), 3), 0);
	th_process(c, 1);
	assert_int_equal(th_status(c, 1).transferee, 3);
	/* Not yet: node 3 would lose the election with its short log. */
	assert_int_equal(th_count(c, 1, 3, RAFT_MSG_TIMEOUT_NOW), 0);
	for (t = 0; t < E - 1 && th_role(c, 3) != RAFT_LEADER; t++)
		th_tick_all(c, 1);
	assert_int_equal(th_role(c, 3), RAFT_LEADER);
	assert_int_equal(th_leader(c), 3);
	assert_int_equal(th_applied_normal(c, 3), 10);

	/* TIMEOUT_NOW went out only once node 3 had acknowledged the whole log. */
	tn = trace_find(c, 1, 3, RAFT_MSG_TIMEOUT_NOW);
	assert_true(tn < c->n_trace);
	for (uint32_t i = 0; i < tn; i++) {
		const struct th_trace *r = &c->trace[i];

		if (r->from == 3 && r->to == 1 && r->type == RAFT_MSG_APPEND_RESP && !r->reject &&
		    r->index >= last)
			caught_up_before = true;
	}
	assert_true(caught_up_before);
}

static void test_requests_during_transfer_return_etransferring(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_index last;

	th_elect(c, 1);
	th_isolate(c, 3); /* the transfer cannot complete */
	last = th_last(c, 1);
	assert_int_equal(raft_transfer(th_raft(c, 1), 3), 0);
	th_process(c, 1);
	assert_int_equal(th_status(c, 1).transferee, 3);
	assert_int_equal(th_role(c, 1), RAFT_LEADER);

	assert_int_equal(th_propose(c, 1, "x"), CM_ETRANSFERRING);
	assert_int_equal(raft_change(th_raft(c, 1), RAFT_REMOVE, 2, NULL), CM_ETRANSFERRING);
	assert_int_equal(raft_transfer(th_raft(c, 1), 2), CM_ETRANSFERRING);
	assert_int_equal(th_last(c, 1), last);
	th_stabilize(c);
	assert_false(th_applied_has(c, 2, "x"));
}

static void test_transfer_to_dead_target_is_abandoned_after_election_timeout(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_term t;
	uint32_t ticks;

	th_elect(c, 1);
	t = th_term(c, 1);
	th_down(c, 3);
	assert_int_equal(raft_transfer(th_raft(c, 1), 3), 0);
	th_process(c, 1);
	th_tick_all(c, E / 2);
	assert_int_equal(th_status(c, 1).transferee, 3);
	assert_int_equal(th_propose(c, 1, "early"), CM_ETRANSFERRING);

	for (ticks = E / 2; ticks < 2 * E && th_status(c, 1).transferee != 0; ticks++)
		th_tick_all(c, 1);
	assert_int_equal(th_status(c, 1).transferee, 0);
	assert_in_range(ticks, E - 1, 2 * E - 1);
	/* Node 1 kept leading all along and takes proposals again. */
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
	assert_int_equal(th_term(c, 1), t);
	assert_int_equal(th_propose(c, 1, "later"), 0);
	th_stabilize(c);
	assert_true(th_applied_has(c, 2, "later"));
	assert_false(th_applied_has(c, 2, "early"));
}

static void test_transfer_argument_errors(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_id learner = th_add_node(c, NULL);

	assert_int_equal(raft_transfer(th_raft(c, 1), 2), CM_ENOTLEADER);
	th_elect(c, 1);
	assert_int_equal(raft_change(th_raft(c, 1), RAFT_ADD_LEARNER, learner, NULL), 0);
	th_stabilize(c);
	th_tick_all(c, 2);

	assert_int_equal(raft_transfer(th_raft(c, 1), 1), -EINVAL);
	assert_int_equal(raft_transfer(th_raft(c, 1), 9), CM_EUNKNOWNPEER);
	assert_int_equal(raft_transfer(th_raft(c, 1), learner), CM_EUNKNOWNPEER);
	assert_int_equal(raft_transfer(th_raft(c, 2), 3), CM_ENOTLEADER);
	assert_int_equal(th_status(c, 1).transferee, 0);
	/* None of them started anything. */
	assert_int_equal(th_propose(c, 1, "ok"), 0);
	th_stabilize(c);
	assert_true(th_applied_has(c, 3, "ok"));
	th_process_all(c);
	assert_int_equal(th_trace_count(c, TH_ANY, TH_ANY, RAFT_MSG_TIMEOUT_NOW, -1), 0);
}

static void test_transfer_back_and_forth(void **state)
{
	struct th_cluster *c = cluster(state, 5, NULL);
	raft_id cur = 1;
	raft_term t;

	th_elect(c, 1);
	t = th_term(c, 1);
	for (raft_id next = 2; next <= 5; next++) {
		char buf[16];

		assert_int_equal(raft_transfer(th_raft(c, cur), next), 0);
		th_process(c, cur);
		th_stabilize(c);
		assert_int_equal(th_leader(c), next);
		assert_int_equal(th_count_role(c, RAFT_LEADER), 1);
		snprintf(buf, sizeof(buf), "by%llu", (unsigned long long)next);
		assert_int_equal(th_propose(c, next, buf), 0);
		th_stabilize(c);
		cur = next;
	}
	assert_int_equal(th_term(c, 5), t + 4);
	th_tick_all(c, 2);
	for (raft_id id = 1; id <= 5; id++)
		assert_int_equal(th_applied_normal(c, id), 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TH_TEST(test_transfer_to_up_to_date_follower_makes_it_leader),
		TH_TEST(test_transfer_to_lagging_follower_catches_it_up_first),
		TH_TEST(test_requests_during_transfer_return_etransferring),
		TH_TEST(test_transfer_to_dead_target_is_abandoned_after_election_timeout),
		TH_TEST(test_transfer_argument_errors),
		TH_TEST(test_transfer_back_and_forth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
