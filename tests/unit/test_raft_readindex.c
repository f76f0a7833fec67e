/* test_raft_readindex.c: linearizable reads through ReadIndex (Raft thesis §6.4). */
#include "harness.h"

#include <errno.h>

#define E 10 /* election_ticks of th_config() */

static struct th_cluster *cluster(void **state, uint32_t n, const struct raft_config *cfg)
{
	struct th_cluster *c = th_new(n, cfg);

	*state = c;
	return c;
}

/* The read state for ctx that node id was handed, or NULL. */
static const struct th_read *read_of(struct th_cluster *c, raft_id id, uint64_t ctx)
{
	const struct th_node *nd = th_node(c, id);

	for (uint32_t i = 0; i < nd->n_reads; i++)
		if (nd->reads[i].ctx == ctx)
			return &nd->reads[i];
	return NULL;
}

/* Deliver everything but APPENDs (and what they would cause) for a few rounds. */
static void deliver_all_but_appends(struct th_cluster *c)
{
	for (int round = 0; round < 10; round++) {
		th_drop(c, TH_ANY, TH_ANY, RAFT_MSG_APPEND);
		th_deliver(c, TH_ANY, TH_ANY, TH_ANY);
	}
	th_drop(c, TH_ANY, TH_ANY, RAFT_MSG_APPEND);
}

static void test_read_on_leader_completes_after_quorum_heartbeat_round(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_index commit;
	const struct th_read *rs;

	th_elect(c, 1);
	assert_int_equal(th_propose(c, 1, "a"), 0);
	th_stabilize(c);
	commit = th_commit(c, 1);
	th_trace_clear(c);
	assert_int_equal(raft_read_index(th_raft(c, 1), 42), 0);
	th_process(c, 1);
	/* Not answered from the leader's own belief: it asks the quorum, now or
	 * with its next heartbeat. */
	assert_null(read_of(c, 1, 42));
	if (!th_count(c, 1, TH_ANY, RAFT_MSG_HEARTBEAT))
		th_tick(c, 1, 1);
	assert_null(read_of(c, 1, 42));
	assert_true(th_count(c, 1, TH_ANY, RAFT_MSG_HEARTBEAT) >= 1);
	/* One follower's ack makes a quorum of three. */
	th_deliver(c, 1, 2, RAFT_MSG_HEARTBEAT);
	th_deliver(c, 2, 1, RAFT_MSG_HEARTBEAT_RESP);
	rs = read_of(c, 1, 42);
	assert_non_null(rs);
	assert_int_equal(rs->index, commit);
	assert_true(rs->applied_then >= rs->index);
	assert_int_equal(th_node(c, 1)->n_reads, 1);
	th_stabilize(c);
	assert_int_equal(th_node(c, 1)->n_reads, 1); /* exactly once */
}

static void test_read_on_leader_does_not_complete_with_followers_partitioned(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);

	th_elect(c, 1);
	th_isolate(c, 1);
	assert_int_equal(raft_read_index(th_raft(c, 1), 7), 0);
	th_process(c, 1);
	th_tick(c, 1, E / 2);
	th_stabilize(c);
	assert_null(read_of(c, 1, 7));
	/* Back in touch before CheckQuorum fires: the read goes through. */
	th_heal(c);
	for (uint32_t t = 0; t < 3 && !read_of(c, 1, 7); t++)
		th_tick_all(c, 1);
	assert_non_null(read_of(c, 1, 7));
	assert_int_equal(read_of(c, 1, 7)->index, th_commit(c, 1));
}

/* Re-type the queued heartbeats from node 1 whose ctx is (or is not) old_ctx. */
static uint32_t retype_heartbeats(struct th_cluster *c, int from_type, int to_type,
				  uint64_t old_ctx, bool newer)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < c->nq; i++) {
		struct raft_msg *m = &c->q[i].m;

		if (m->from == 1 && m->type == from_type && (m->ctx != old_ctx) == newer) {
			m->type = (uint8_t)to_type;
			n++;
		}
	}
	return n;
}

static void test_read_on_leader_ignores_acks_of_older_rounds(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	struct raft_msg *hb;
	uint64_t old_ctx;

	th_elect(c, 1);
	th_tick(c, 1, 1); /* a heartbeat round with no read in it */
	hb = th_msg(c, 1, 2, RAFT_MSG_HEARTBEAT, 0);
	assert_non_null(hb);
	old_ctx = hb->ctx;
	assert_int_equal(raft_read_index(th_raft(c, 1), 8), 0);
	th_process(c, 1);
	if (th_count(c, 1, 2, RAFT_MSG_HEARTBEAT) < 2)
		th_tick(c, 1, 1);
	/* Hold the newer round; deliver the older one and its acks. */
	assert_true(retype_heartbeats(c, RAFT_MSG_HEARTBEAT, RAFT_MSG_TYPE_COUNT, old_ctx,
				      true) >= 2);
	th_deliver(c, 1, TH_ANY, RAFT_MSG_HEARTBEAT);
	th_deliver(c, TH_ANY, 1, RAFT_MSG_HEARTBEAT_RESP);
	assert_null(read_of(c, 1, 8));
	/* The newer round confirms it. */
	retype_heartbeats(c, RAFT_MSG_TYPE_COUNT, RAFT_MSG_HEARTBEAT, old_ctx, true);
	th_stabilize(c);
	assert_non_null(read_of(c, 1, 8));
}

static void test_read_on_follower_is_forwarded_and_index_at_least_leader_commit(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_index commit;
	const struct th_read *rs;

	th_elect(c, 1);
	for (int i = 0; i < 5; i++)
		assert_int_equal(th_propose(c, 1, "w"), 0);
	th_stabilize(c);
	commit = th_commit(c, 1);
	assert_int_equal(commit, th_last(c, 1));
	th_trace_clear(c);
	assert_int_equal(raft_read_index(th_raft(c, 2), 99), 0);
	th_process(c, 2);
	assert_int_equal(th_count(c, 2, 1, RAFT_MSG_READ_INDEX), 1);
	assert_int_equal(th_msg(c, 2, 1, RAFT_MSG_READ_INDEX, 0)->ctx, 99);
	th_stabilize(c);
	rs = read_of(c, 2, 99);
	assert_non_null(rs);
	assert_true(rs->index >= commit);
	assert_null(read_of(c, 1, 99)); /* handed to the requester only */
	assert_int_equal(th_trace_count(c, 1, 2, RAFT_MSG_READ_INDEX_RESP, 0), 1);
	assert_true(th_applied(c, 2) >= rs->index || th_commit(c, 2) < rs->index);
}

static void test_read_on_follower_covers_writes_it_has_not_applied(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	const struct th_read *rs;
	raft_index idx;

	th_elect(c, 1);
	/* "late" commits with node 3 while node 2 has not seen it yet. */
	assert_int_equal(raft_propose(th_raft(c, 1), "late", 4, &idx), 0);
	th_process(c, 1);
	th_drop(c, 1, 2, TH_ANY);
	th_deliver(c, 1, 3, TH_ANY);
	th_deliver(c, 3, 1, TH_ANY);
	assert_int_equal(th_commit(c, 1), idx);
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);

	assert_int_equal(raft_read_index(th_raft(c, 2), 5), 0);
	th_process(c, 2);
	th_deliver(c, 2, 1, RAFT_MSG_READ_INDEX);
	th_drop(c, 1, 2, RAFT_MSG_APPEND); /* node 2 stays behind */
	for (int round = 0; round < 10 && c->nq; round++) {
		th_drop(c, 1, 2, RAFT_MSG_APPEND);
		th_deliver(c, TH_ANY, TH_ANY, TH_ANY);
	}
	rs = read_of(c, 2, 5);
	assert_non_null(rs);
	assert_true(rs->index >= idx);
	/* The read state is handed out before it may be served. */
	assert_true(th_applied(c, 2) < idx);
	/* The lost APPENDs are sent again once the leader notices. */
	for (uint32_t t = 0; t < 2 * E && th_applied(c, 2) < rs->index; t++)
		th_tick_all(c, 1);
	assert_true(th_applied(c, 2) >= rs->index);
}

static void test_read_before_leader_commits_noop_is_deferred(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	const struct th_read *rs;

	/* Node 1 wins, but its NOOP reaches nobody. */
	assert_int_equal(raft_campaign(th_raft(c, 1)), 0);
	th_process(c, 1);
	th_deliver(c, 1, TH_ANY, RAFT_MSG_VOTE);
	th_deliver(c, TH_ANY, 1, RAFT_MSG_VOTE_RESP);
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
	assert_true(th_commit(c, 1) <= TH_BOOT_INDEX);

	assert_int_equal(raft_read_index(th_raft(c, 1), 11), 0);
	th_process(c, 1);
	th_tick(c, 1, 2);
	deliver_all_but_appends(c);
	/* The commit index of an earlier term is not a safe read index. */
	assert_null(read_of(c, 1, 11));
	assert_true(th_commit(c, 1) <= TH_BOOT_INDEX);

	/* Now the NOOP commits and the read completes at or after it. */
	for (uint32_t t = 0; t < E && !read_of(c, 1, 11); t++)
		th_tick_all(c, 1);
	rs = read_of(c, 1, 11);
	assert_non_null(rs);
	assert_true(rs->index >= TH_BOOT_INDEX + 1); /* the NOOP */
	assert_true(th_commit(c, 1) >= TH_BOOT_INDEX + 1);
}

static void test_read_on_follower_before_leader_commits_noop_is_deferred(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	const struct th_read *rs;

	assert_int_equal(raft_campaign(th_raft(c, 1)), 0);
	th_process(c, 1);
	th_deliver(c, 1, TH_ANY, RAFT_MSG_VOTE);
	th_deliver(c, TH_ANY, 1, RAFT_MSG_VOTE_RESP);
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
	/* Node 2 learns who leads from a heartbeat, not from the NOOP. */
	th_tick(c, 1, 1);
	deliver_all_but_appends(c);
	if (raft_leader(th_raft(c, 2)) != 1)
		skip();
	assert_int_equal(raft_read_index(th_raft(c, 2), 12), 0);
	th_process(c, 2);
	deliver_all_but_appends(c);
	assert_null(read_of(c, 2, 12));
	for (uint32_t t = 0; t < E && !read_of(c, 2, 12); t++)
		th_tick_all(c, 1);
	rs = read_of(c, 2, 12);
	/* Either answered at or after the NOOP, or refused: never early. */
	if (rs)
		assert_true(rs->index >= TH_BOOT_INDEX + 1);
}

static void test_read_index_past_max_pending_reads_returns_ebusy(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;

	th_config(&cfg);
	cfg.max_pending_reads = 4;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	th_isolate(c, 1);
	for (uint64_t ctx = 1; ctx <= 4; ctx++) {
		assert_int_equal(raft_read_index(th_raft(c, 1), ctx), 0);
		th_process(c, 1);
	}
	assert_int_equal(raft_read_index(th_raft(c, 1), 5), -EBUSY);
	th_process(c, 1);
	th_heal(c);
	for (uint32_t t = 0; t < 3 && th_node(c, 1)->n_reads < 4; t++)
		th_tick_all(c, 1);
	assert_int_equal(th_node(c, 1)->n_reads, 4);
	for (uint64_t ctx = 1; ctx <= 4; ctx++)
		assert_non_null(read_of(c, 1, ctx));
	assert_null(read_of(c, 1, 5));
	/* Room again. */
	assert_int_equal(raft_read_index(th_raft(c, 1), 6), 0);
	th_process(c, 1);
	th_tick_all(c, 2);
	assert_non_null(read_of(c, 1, 6));
}

static void test_read_index_without_known_leader_returns_enoleader(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);

	assert_int_equal(raft_read_index(th_raft(c, 1), 1), CM_ENOLEADER);
	assert_int_equal(raft_read_index(th_raft(c, 2), 1), CM_ENOLEADER);
	th_process_all(c);
	assert_int_equal(th_trace_count(c, TH_ANY, TH_ANY, RAFT_MSG_READ_INDEX, -1), 0);

	/* A follower that lost its leader says so too. */
	th_elect(c, 1);
	th_down(c, 1);
	th_tick_alone(c, 2, 2 * E);
	assert_int_equal(raft_leader(th_raft(c, 2)), 0);
	assert_int_equal(raft_read_index(th_raft(c, 2), 2), CM_ENOLEADER);
}

static void test_many_reads_share_one_heartbeat_round(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);

	th_elect(c, 1);
	th_trace_clear(c);
	for (uint64_t ctx = 100; ctx < 110; ctx++)
		assert_int_equal(raft_read_index(th_raft(c, 1), ctx), 0);
	th_process(c, 1);
	assert_true(th_count(c, 1, 2, RAFT_MSG_HEARTBEAT) <= 1);
	th_stabilize(c);
	for (uint64_t ctx = 100; ctx < 110; ctx++)
		assert_non_null(read_of(c, 1, ctx));
	/* Handed out in request order. */
	for (uint32_t i = 0; i < 10; i++)
		assert_int_equal(th_node(c, 1)->reads[i].ctx, 100 + i);
}

static void test_read_on_single_node_completes_without_messages(void **state)
{
	struct th_cluster *c = cluster(state, 1, NULL);

	th_elect(c, 1);
	assert_int_equal(raft_read_index(th_raft(c, 1), 3), 0);
	th_process(c, 1);
	assert_non_null(read_of(c, 1, 3));
	assert_int_equal(read_of(c, 1, 3)->index, th_commit(c, 1));
	assert_int_equal(c->nq, 0);
}

static void test_read_lost_on_the_way_never_completes_and_harms_nothing(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);

	th_elect(c, 1);
	assert_int_equal(raft_read_index(th_raft(c, 3), 21), 0);
	th_process(c, 3);
	assert_int_equal(th_drop(c, 3, 1, RAFT_MSG_READ_INDEX), 1);
	th_tick_all(c, 3 * E);
	assert_null(read_of(c, 3, 21));
	assert_int_equal(th_leader(c), 1);
	/* The caller retries with a new id. */
	assert_int_equal(raft_read_index(th_raft(c, 3), 22), 0);
	th_process(c, 3);
	th_stabilize(c);
	assert_non_null(read_of(c, 3, 22));
}

static void test_pending_read_is_not_served_by_deposed_leader(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_id l2 = 0;
	raft_index newer;
	const struct th_read *rs;

	th_elect(c, 1);
	th_isolate(c, 1);
	assert_int_equal(raft_read_index(th_raft(c, 1), 77), 0);
	th_process(c, 1);
	/* A new leader commits a write node 1 knows nothing about. */
	for (uint32_t t = 0; t < 20 * E && !l2; t++) {
		th_tick(c, 2, 1);
		th_tick(c, 3, 1);
		th_stabilize(c);
		l2 = th_role(c, 2) == RAFT_LEADER ? 2 : th_role(c, 3) == RAFT_LEADER ? 3 : 0;
	}
	assert_int_not_equal(l2, 0);
	assert_int_equal(raft_propose(th_raft(c, l2), "w", 1, &newer), 0);
	th_process(c, l2);
	th_stabilize(c);
	assert_true(th_commit(c, l2) >= newer);
	/* Node 1 learns it was deposed; the read must not be answered with
	 * its stale commit index (that would miss "w"). */
	th_heal(c);
	th_tick_all(c, 3 * E);
	assert_int_not_equal(th_role(c, 1), RAFT_LEADER);
	rs = read_of(c, 1, 77);
	if (rs)
		assert_true(rs->index >= newer);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TH_TEST(test_read_on_leader_completes_after_quorum_heartbeat_round),
		TH_TEST(test_read_on_leader_does_not_complete_with_followers_partitioned),
		TH_TEST(test_read_on_leader_ignores_acks_of_older_rounds),
		TH_TEST(test_read_on_follower_is_forwarded_and_index_at_least_leader_commit),
		TH_TEST(test_read_on_follower_covers_writes_it_has_not_applied),
		TH_TEST(test_read_before_leader_commits_noop_is_deferred),
		TH_TEST(test_read_on_follower_before_leader_commits_noop_is_deferred),
		TH_TEST(test_read_index_past_max_pending_reads_returns_ebusy),
		TH_TEST(test_read_index_without_known_leader_returns_enoleader),
		TH_TEST(test_many_reads_share_one_heartbeat_round),
		TH_TEST(test_read_on_single_node_completes_without_messages),
		TH_TEST(test_read_lost_on_the_way_never_completes_and_harms_nothing),
		TH_TEST(test_pending_read_is_not_served_by_deposed_leader),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
