/* test_raft_replication.c: log replication, flow control and the commit rule. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define E 10 /* election_ticks of th_config() */

static struct th_cluster *cluster(void **state, uint32_t n, const struct raft_config *cfg)
{
	struct th_cluster *c = th_new(n, cfg);

	*state = c;
	return c;
}

/* Deliver everything queued between a and b (both ways) until none is left. */
static void deliver_between(struct th_cluster *c, raft_id a, raft_id b)
{
	while (th_count(c, a, b, TH_ANY) + th_count(c, b, a, TH_ANY)) {
		th_deliver(c, a, b, TH_ANY);
		th_deliver(c, b, a, TH_ANY);
	}
}

/* Tick every node until some node in [lo, hi] leads; its id. */
static raft_id wait_leader_among(struct th_cluster *c, raft_id lo, raft_id hi, uint32_t max)
{
	for (uint32_t t = 0; t < max; t++) {
		th_tick_all(c, 1);
		for (raft_id id = lo; id <= hi; id++)
			if (th_role(c, id) == RAFT_LEADER)
				return id;
	}
	return 0;
}

static void test_proposals_commit_and_apply_in_order_on_all_nodes(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	char buf[16];
	raft_index idx, base, prev;

	th_elect(c, 1);
	base = prev = th_last(c, 1);
	for (int i = 0; i < 10; i++) {
		snprintf(buf, sizeof(buf), "cmd-%d", i);
		assert_int_equal(raft_propose(th_raft(c, 1), buf, (uint32_t)strlen(buf), &idx), 0);
		assert_int_equal(idx, prev + 1);
		prev = idx;
		if (i % 3 == 0)
			th_stabilize(c);
	}
	th_stabilize(c);
	th_tick_all(c, 1); /* followers learn the last commit index */
	for (raft_id id = 1; id <= 3; id++) {
		const struct th_node *nd = th_node(c, id);
		struct raft_status st = th_status(c, id);
		uint32_t k = 0;

		assert_int_equal(st.commit, base + 10);
		assert_int_equal(st.last_index, base + 10);
		assert_int_equal(st.applied, base + 10);
		assert_int_equal(nd->applied_index, base + 10);
		for (uint32_t i = 0; i < nd->n_applied; i++) {
			if (nd->applied[i].type != RAFT_ENTRY_NORMAL)
				continue;
			snprintf(buf, sizeof(buf), "cmd-%u", k);
			assert_int_equal(nd->applied[i].len, strlen(buf));
			assert_memory_equal(nd->applied[i].data, buf, strlen(buf));
			assert_int_equal(nd->applied[i].index, base + 1 + k);
			k++;
		}
		assert_int_equal(k, 10);
	}
}

static void test_single_node_commits_proposals_alone(void **state)
{
	struct th_cluster *c = cluster(state, 1, NULL);
	raft_index idx;

	th_elect(c, 1);
	assert_int_equal(raft_propose(th_raft(c, 1), "solo", 4, &idx), 0);
	th_process(c, 1);
	assert_int_equal(th_commit(c, 1), idx);
	assert_int_equal(th_applied_index_of(c, 1, "solo"), idx);
	assert_int_equal(c->nq, 0);
}

static void test_empty_proposal_commits_as_an_empty_entry(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_index idx;
	const struct th_node *nd;

	th_elect(c, 1);
	assert_int_equal(raft_propose(th_raft(c, 1), NULL, 0, &idx), 0);
	th_process(c, 1);
	th_stabilize(c);
	th_tick_all(c, 1);
	nd = th_node(c, 3);
	assert_int_equal(nd->applied_index, idx);
	assert_int_equal(nd->applied[idx - 1].type, RAFT_ENTRY_NORMAL);
	assert_int_equal(nd->applied[idx - 1].len, 0);
}

static void test_propose_on_follower_returns_notleader_with_leader_hint(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_index idx = 77;

	/* Before any election nobody leads and nobody knows a leader. */
	assert_int_equal(th_propose(c, 2, "x"), CM_ENOTLEADER);
	assert_int_equal(raft_leader(th_raft(c, 2)), 0);

	th_elect(c, 3);
	assert_int_equal(raft_propose(th_raft(c, 2), "x", 1, &idx), CM_ENOTLEADER);
	assert_int_equal(raft_leader(th_raft(c, 2)), 3);
	assert_int_equal(raft_leader(th_raft(c, 1)), 3);
	assert_int_equal(th_last(c, 2), th_last(c, 3)); /* nothing appended */
	th_stabilize(c);
	assert_false(th_applied_has(c, 3, "x"));
}

static void test_propose_larger_than_max_entry_bytes_returns_emsgsize(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	char big[64];

	th_config(&cfg);
	cfg.max_entry_bytes = 16;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	memset(big, 'b', sizeof(big));
	assert_int_equal(raft_propose(th_raft(c, 1), big, 17, NULL), -EMSGSIZE);
	assert_int_equal(raft_propose(th_raft(c, 1), big, 64, NULL), -EMSGSIZE);
	assert_int_equal(th_last(c, 1), TH_BOOT_INDEX + 1);
	assert_int_equal(raft_propose(th_raft(c, 1), big, 16, NULL), 0);
	th_stabilize(c);
	assert_int_equal(th_applied_normal(c, 2), 1);
	assert_int_equal(th_node(c, 2)->applied[TH_BOOT_INDEX + 1].len, 16);
}

static void test_propose_past_max_uncommitted_bytes_returns_ebusy(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	uint32_t ok = 0;
	int rc = 0;
	raft_index last;

	th_config(&cfg);
	cfg.max_uncommitted_bytes = 100;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	th_isolate(c, 1); /* nothing commits */
	for (int i = 0; i < 40; i++) {
		rc = th_propose(c, 1, "0123456789");
		if (rc != 0)
			break;
		ok++;
	}
	assert_int_equal(rc, -EBUSY);
	assert_in_range(ok, 1, 11); /* 100 bytes, at most one entry of slack */
	last = th_last(c, 1);
	assert_int_equal(th_propose(c, 1, "0123456789"), -EBUSY);
	assert_int_equal(th_last(c, 1), last);

	/* Once they commit there is room again. */
	th_heal(c);
	for (uint32_t t = 0; t < E && th_applied_normal(c, 1) < ok; t++)
		th_tick_all(c, 1);
	assert_int_equal(th_applied_normal(c, 1), ok);
	assert_int_equal(th_propose(c, 1, "0123456789"), 0);
	th_stabilize(c);
	assert_int_equal(th_applied_normal(c, 2), ok + 1);
}

static void test_many_proposals_in_one_turn_go_out_in_few_appends(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	char buf[16];

	raft_index base;

	th_config(&cfg);
	cfg.max_msg_entries = 8;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	base = th_last(c, 1);
	th_trace_clear(c);
	for (int i = 0; i < 40; i++) {
		snprintf(buf, sizeof(buf), "p%d", i);
		assert_int_equal(raft_propose(th_raft(c, 1), buf, (uint32_t)strlen(buf), NULL), 0);
	}
	th_process(c, 1); /* one turn of the leader's loop */
	for (raft_id f = 2; f <= 3; f++) {
		uint32_t n = th_count(c, 1, f, RAFT_MSG_APPEND);

		assert_in_range(n, 1, 5); /* ceil(40 / 8) */
		for (uint32_t i = 0; i < n; i++)
			assert_true(th_msg(c, 1, f, RAFT_MSG_APPEND, i)->n_entries <= 8);
	}
	/* The leader wrote all 40 in one batch too. */
	assert_int_equal(th_last(c, 1), base + 40);
	th_stabilize(c);
	assert_int_equal(th_applied_normal(c, 3), 40);
}

static void test_max_msg_entries_bounds_every_append(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;

	th_config(&cfg);
	cfg.max_msg_entries = 3;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	th_isolate(c, 3);
	for (int i = 0; i < 20; i++)
		assert_int_equal(th_propose(c, 1, "e"), 0);
	th_stabilize(c);
	th_heal(c);
	th_trace_clear(c);
	th_tick_all(c, 5);
	assert_true(th_trace_count(c, 1, 3, RAFT_MSG_APPEND, -1) >= 7); /* 20 / 3 */
	for (uint32_t i = 0; i < c->n_trace; i++)
		if (c->trace[i].type == RAFT_MSG_APPEND)
			assert_true(c->trace[i].n_entries <= 3);
	assert_int_equal(th_applied_normal(c, 3), 20);
}

static void test_max_msg_bytes_bounds_append_payload(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	char big[150], mid[40];

	th_config(&cfg);
	cfg.max_msg_bytes = 100;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	th_trace_clear(c);
	memset(mid, 'm', sizeof(mid));
	memset(big, 'B', sizeof(big));
	for (int i = 0; i < 10; i++)
		assert_int_equal(raft_propose(th_raft(c, 1), mid, sizeof(mid), NULL), 0);
	/* Larger than a message: it still goes, alone (the bound is soft). */
	assert_int_equal(raft_propose(th_raft(c, 1), big, sizeof(big), NULL), 0);
	th_process(c, 1);
	th_stabilize(c);
	for (uint32_t i = 0; i < c->n_trace; i++) {
		const struct th_trace *t = &c->trace[i];

		if (t->type == RAFT_MSG_APPEND && t->n_entries > 1)
			assert_true(t->entry_bytes <= 100);
	}
	assert_true(th_trace_count(c, 1, 2, RAFT_MSG_APPEND, -1) >= 6);
	assert_int_equal(th_applied_normal(c, 2), 11);
	assert_int_equal(th_applied_normal(c, 3), 11);
}

static void test_committed_entries_are_handed_out_in_bounded_batches(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;

	th_config(&cfg);
	cfg.max_apply_entries = 3;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	for (int i = 0; i < 20; i++)
		assert_int_equal(raft_propose(th_raft(c, 1), "e", 1, NULL), 0);
	th_process(c, 1);
	th_stabilize(c);
	th_tick_all(c, 1);
	for (raft_id id = 1; id <= 3; id++) {
		assert_true(th_node(c, id)->max_batch_committed <= 3);
		assert_int_equal(th_applied_normal(c, id), 20);
		assert_int_equal(th_applied(c, id), th_commit(c, id));
	}
}

static void test_outbox_bound_holds_and_group_recovers_from_drops(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;

	th_config(&cfg);
	cfg.max_outbox = 16;
	cfg.max_msg_entries = 2;
	c = cluster(state, RAFT_MAX_NODES, &cfg);
	th_elect(c, 1);
	/* Per follower: entries in several APPENDs plus a heartbeat. */
	for (int i = 0; i < 6; i++)
		assert_int_equal(raft_propose(th_raft(c, 1), "o", 1, NULL), 0);
	th_tick(c, 1, 1);
	th_stabilize(c);
	for (uint32_t t = 0; t < 5 * E && th_applied_normal(c, RAFT_MAX_NODES) < 6; t++)
		th_tick_all(c, 1);
	for (raft_id id = 1; id <= RAFT_MAX_NODES; id++) {
		assert_true(th_node(c, id)->max_batch_msgs <= 16);
		assert_int_equal(th_applied_normal(c, id), 6);
	}
	assert_int_equal(th_leader(c), 1);
}

/* APPENDs from 1 to `to` waiting in the queue; *with_entries counts those carrying entries. */
static uint32_t appends_in_flight(struct th_cluster *c, raft_id to, uint32_t *with_entries)
{
	uint32_t n = 0;

	*with_entries = 0;
	for (;; n++) {
		struct raft_msg *m = th_msg(c, 1, to, RAFT_MSG_APPEND, n);

		if (!m)
			return n;
		if (m->n_entries)
			(*with_entries)++;
	}
}

static uint32_t appends_with_entries(struct th_cluster *c, raft_id to)
{
	uint32_t data;

	appends_in_flight(c, to, &data);
	return data;
}

static void test_unresponsive_follower_gets_at_most_max_inflight_appends(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	uint32_t data = 0;

	th_config(&cfg);
	cfg.max_inflight = 4;
	cfg.max_msg_entries = 1;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	/* Node 3 answers nothing: its messages stay queued, node 2 is prompt. */
	for (int i = 0; i < 20; i++) {
		assert_int_equal(th_propose(c, 1, "w"), 0);
		deliver_between(c, 1, 2);
		assert_true(appends_in_flight(c, 3, &data) <= 4);
	}
	assert_int_equal(th_applied_normal(c, 2), 20);
	/* Pipelined: more than one entry in flight, but never past the window.
	 * (Exactly 4 would be expected; the window's own accounting is checked
	 * by the next test.) */
	assert_in_range(appends_in_flight(c, 3, &data), 3, 4);
	assert_in_range(data, 2, 4);

	/* Acks open the window again; node 3 ends up with everything. */
	th_stabilize(c);
	th_tick_all(c, 2);
	assert_int_equal(th_applied_normal(c, 3), 20);
}

static void test_acked_commit_only_append_frees_its_inflight_slot(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;

	th_config(&cfg);
	cfg.max_inflight = 1;
	c = cluster(state, 3, &cfg);
	/* The election ends with APPENDs that only carry the new commit index;
	 * the followers acknowledge them without their match moving. */
	th_elect(c, 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(th_propose(c, 1, "one"), 0);
		/* Nothing is in flight: the entry goes out at once ... */
		assert_int_equal(appends_with_entries(c, 2), 1);
		/* ... and commits without waiting for ticks. */
		th_stabilize(c);
		assert_int_equal(th_applied_normal(c, 2), (uint32_t)i + 1);
	}
}

static void test_divergent_follower_is_repaired_in_few_round_trips(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	raft_id l2, l3;
	char buf[16];
	uint32_t rejects;
	raft_index b;

	th_config(&cfg);
	cfg.max_msg_entries = 4; /* so one round trip moves little */
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	b = th_last(c, 1);
	/* Node 1 appends 50 entries no one else sees, then loses its term. */
	th_isolate(c, 1);
	for (int i = 0; i < 50; i++) {
		snprintf(buf, sizeof(buf), "old%d", i);
		assert_int_equal(th_propose(c, 1, buf), 0);
	}
	l2 = wait_leader_among(c, 2, 3, 20 * E);
	assert_int_not_equal(l2, 0);
	/* The new leader commits 60 entries of its term over the same indexes. */
	for (int i = 0; i < 60; i++) {
		snprintf(buf, sizeof(buf), "new%d", i);
		assert_int_equal(th_propose(c, l2, buf), 0);
	}
	th_stabilize(c);
	assert_int_equal(th_applied_normal(c, l2), 60);
	assert_int_equal(th_last(c, 1), b + 50);
	/* A third leader starts out assuming node 1 is as long as itself. */
	l3 = l2 == 2 ? 3 : 2;
	assert_int_equal(raft_transfer(th_raft(c, l2), l3), 0);
	th_process(c, l2);
	for (uint32_t t = 0; t < E && th_role(c, l3) != RAFT_LEADER; t++)
		th_tick_all(c, 1);
	assert_int_equal(th_role(c, l3), RAFT_LEADER);
	assert_int_equal(th_last(c, l3), b + 62); /* two NOOPs, 60 entries */

	th_heal(c);
	th_trace_clear(c);
	for (uint32_t t = 0; t < 10 * E && th_applied_normal(c, 1) < 60; t++)
		th_tick_all(c, 1);
	assert_int_equal(th_applied_normal(c, 1), 60);
	assert_false(th_applied_has(c, 1, "old0"));
	/* Back-tracking one index per round trip would take ~60 rejections. */
	rejects = th_trace_count(c, 1, l3, RAFT_MSG_APPEND_RESP, 1);
	assert_in_range(rejects, 1, 5);
	/* Node 1's disk holds the leaders' entries, none of its own. */
	for (raft_index i = 1; i <= b + 62; i++)
		assert_int_equal(th_log_term(c, 1, i), th_log_term(c, l3, i));
}

static void test_follower_truncates_conflicting_uncommitted_entries(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_id l2;
	raft_term t1;
	raft_index b;

	th_elect(c, 1);
	b = th_last(c, 1);
	assert_int_equal(th_propose(c, 1, "base"), 0);
	th_stabilize(c);
	t1 = th_term(c, 1);
	th_isolate(c, 1);
	assert_int_equal(th_propose(c, 1, "lost1"), 0);
	assert_int_equal(th_propose(c, 1, "lost2"), 0);
	assert_int_equal(th_propose(c, 1, "lost3"), 0);
	assert_int_equal(th_last(c, 1), b + 4);
	assert_int_equal(th_log_term(c, 1, b + 2), t1);
	l2 = wait_leader_among(c, 2, 3, 20 * E);
	assert_int_not_equal(l2, 0);
	assert_int_equal(th_propose(c, l2, "kept"), 0);
	th_stabilize(c);

	th_heal(c);
	th_tick_all(c, 2 * E);
	assert_int_equal(th_leader(c), l2);
	assert_true(th_applied_has(c, 1, "base"));
	assert_true(th_applied_has(c, 1, "kept"));
	assert_false(th_applied_has(c, 1, "lost1"));
	assert_false(th_applied_has(c, 1, "lost3"));
	/* b + 2 is now the NOOP of the new term, b + 3 "kept"; lost3 is gone. */
	assert_int_equal(th_log_term(c, 1, b + 2), th_term(c, l2));
	assert_int_equal(th_last(c, 1), th_last(c, l2));
	assert_int_equal(th_last(c, 1), b + 3);
	assert_int_equal(th_applied_index_of(c, 1, "kept"), b + 3);
}

static void test_restarted_follower_catches_up_without_reapplying(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	char buf[16];

	th_elect(c, 1);
	assert_int_equal(th_propose(c, 1, "before"), 0);
	th_stabilize(c);
	th_tick_all(c, 1);
	th_down(c, 3);
	for (int i = 0; i < 8; i++) {
		snprintf(buf, sizeof(buf), "while%d", i);
		assert_int_equal(th_propose(c, 1, buf), 0);
	}
	th_stabilize(c);
	th_restart(c, 3);
	th_up(c, 3);
	assert_int_equal(th_applied(c, 3), th_applied_index_of(c, 3, "before"));
	for (uint32_t t = 0; t < 3 * E && th_applied(c, 3) < th_applied(c, 1); t++)
		th_tick_all(c, 1);
	/* The harness fails on any entry applied twice or out of order. */
	assert_int_equal(th_applied(c, 3), th_applied(c, 1));
	assert_int_equal(th_applied_normal(c, 3), 9);
}

static void test_whole_cluster_restart_keeps_committed_entries(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_id l;
	raft_term t;

	th_elect(c, 1);
	assert_int_equal(th_propose(c, 1, "kept1"), 0);
	assert_int_equal(th_propose(c, 1, "kept2"), 0);
	th_stabilize(c);
	t = th_term(c, 1);
	for (raft_id id = 1; id <= 3; id++)
		th_restart(c, id);
	for (raft_id id = 1; id <= 3; id++) {
		assert_int_equal(th_role(c, id), RAFT_FOLLOWER);
		assert_int_equal(th_term(c, id), t);
		assert_true(th_last(c, id) >= th_applied_index_of(c, 1, "kept2"));
	}
	l = th_wait_leader(c, 10 * E);
	assert_int_not_equal(l, 0);
	assert_true(th_term(c, l) > t);
	assert_int_equal(th_propose(c, l, "new"), 0);
	th_stabilize(c);
	th_tick_all(c, 1);
	for (raft_id id = 1; id <= 3; id++) {
		assert_true(th_applied_has(c, id, "kept2"));
		assert_true(th_applied_has(c, id, "new"));
	}
}

/* Some ticks of a network that loses, duplicates and reorders messages. */
static void chaos_ticks(struct th_cluster *c, uint64_t *rng, uint32_t ticks)
{
	for (uint32_t t = 0; t < ticks; t++) {
		for (raft_id id = 1; id <= c->n; id++)
			th_tick(c, id, 1);
		for (int round = 0; round < 4 && c->nq; round++)
			th_deliver_chaos(c, rng, 20, 20);
	}
}

static void test_lost_duplicated_and_reordered_messages_are_tolerated(void **state)
{
	struct th_cluster *c = cluster(state, 5, NULL);
	uint64_t rng = 0x853c49e6748fea9bull;
	char buf[16];
	uint32_t accepted = 0;
	raft_id l;

	for (int i = 0; i < 60; i++) {
		chaos_ticks(c, &rng, 3);
		l = th_leader(c);
		snprintf(buf, sizeof(buf), "c%d", i);
		if (l && th_propose(c, l, buf) == 0)
			accepted++;
	}
	assert_true(accepted > 0);
	/* A calm network again: everyone converges (the harness checked every
	 * safety property on the way). */
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);
	l = th_wait_leader(c, 20 * E);
	assert_int_not_equal(l, 0);
	assert_int_equal(th_propose(c, l, "calm"), 0);
	for (uint32_t t = 0; t < 5 * E && th_applied(c, 5) < th_commit(c, l); t++)
		th_tick_all(c, 1);
	th_tick_all(c, 2);
	for (raft_id id = 1; id <= 5; id++) {
		assert_true(th_applied_has(c, id, "calm"));
		assert_int_equal(th_applied(c, id), th_applied(c, l));
	}
	assert_true(th_applied_normal(c, l) >= 2);
}

/*
 * Raft §5.4.2, Figure 8. Five nodes, one entry per APPEND.
 *  (a) leader 1 (term t1) replicates "x" at index X to node 2 only;
 *  (b) node 5 wins term t2 with 3 and 4 and appends its NOOP at X alone;
 *  (c) node 1 wins a later term t3 with 2, 3 and 4 and replicates "x" to
 *      3 and 4, but not its own NOOP (index X + 1) to them.
 * Then "x" is on four of five nodes, yet must not be committed: node 5 may
 * still win and overwrite it.
 */
#define X (TH_BOOT_INDEX + 2) /* after the bootstrap CONF and the first NOOP */

/* raft_campaign() on id, delivering only votes, until it leads (a few terms). */
static void campaign_until_leader(struct th_cluster *c, raft_id id)
{
	for (int i = 0; i < 4 && th_role(c, id) != RAFT_LEADER; i++) {
		assert_int_equal(raft_campaign(th_raft(c, id)), 0);
		th_process(c, id);
		th_deliver(c, id, TH_ANY, RAFT_MSG_VOTE);
		th_deliver(c, TH_ANY, id, RAFT_MSG_VOTE_RESP);
		th_drop(c, TH_ANY, TH_ANY, RAFT_MSG_VOTE);
		th_drop(c, TH_ANY, TH_ANY, RAFT_MSG_VOTE_RESP);
	}
	assert_int_equal(th_role(c, id), RAFT_LEADER);
}

/* (a) Leader 1 replicates "x" at X to node 2 only. */
static void figure8_a(struct th_cluster *c)
{
	th_elect(c, 1);
	assert_int_equal(th_last(c, 1), X - 1);
	assert_int_equal(th_propose(c, 1, "x"), 0);
	assert_true(th_deliver(c, 1, 2, RAFT_MSG_APPEND) >= 1);
	th_drop(c, 1, TH_ANY, TH_ANY);
	th_deliver(c, 2, 1, TH_ANY);
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);
	assert_int_equal(th_commit(c, 1), X - 1);
}

/* (b) {1, 2} and {3, 4, 5} apart; 1 loses CheckQuorum; 5 wins with 3 and 4
 * and appends its NOOP at X, which reaches nobody. */
static void figure8_b(struct th_cluster *c)
{
	for (raft_id a = 1; a <= 2; a++)
		for (raft_id b = 3; b <= 5; b++)
			th_cut(c, a, b);
	for (uint32_t t = 0; t < 3 * E; t++) {
		th_tick(c, 1, 1);
		th_tick(c, 2, 1);
		th_stabilize(c);
	}
	assert_int_not_equal(th_role(c, 1), RAFT_LEADER);
	for (raft_id id = 3; id <= 5; id++)
		th_tick_alone(c, id, 2 * E);
	campaign_until_leader(c, 5);
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);
	assert_int_equal(th_log_term(c, 5, X), th_term(c, 5));
	assert_int_equal(th_last(c, 3), X - 1);
}

/* Deliver everything, except APPENDs carrying t3 entries to 3 and 4 once
 * they hold "x". */
static void figure8_replicate_x_only(struct th_cluster *c, raft_term t3)
{
	for (int round = 0; round < 50 && c->nq; round++) {
		for (raft_id f = 3; f <= 4; f++) {
			for (uint32_t i = 0;;) {
				struct raft_msg *m = th_msg(c, 1, f, RAFT_MSG_APPEND, i);

				if (!m)
					break;
				if (th_last(c, f) >= X && m->n_entries &&
				    m->entries[m->n_entries - 1].term == t3) {
					m->type = RAFT_MSG_TYPE_COUNT; /* mark, then drop */
					continue;
				}
				i++;
			}
			th_drop(c, 1, f, RAFT_MSG_TYPE_COUNT);
		}
		th_deliver(c, TH_ANY, TH_ANY, TH_ANY);
	}
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);
}

/* (c) 5 is gone; 1 wins a later term t3 with 2, 3 and 4 and replicates "x"
 * to 3 and 4, but not its own NOOP at X + 1. */
static void figure8_setup(struct th_cluster *c, raft_term *t3)
{
	figure8_a(c);
	figure8_b(c);
	th_heal(c);
	th_isolate(c, 5);
	for (raft_id id = 2; id <= 4; id++)
		th_tick_alone(c, id, 2 * E);
	campaign_until_leader(c, 1); /* 3 and 4 voted for 5 in t2 */
	*t3 = th_term(c, 1);
	assert_int_equal(th_log_term(c, 1, X + 1), *t3);
	figure8_replicate_x_only(c, *t3);
	for (raft_id id = 1; id <= 4; id++)
		assert_int_equal(th_log_term(c, id, X), th_log_term(c, 1, X));
	assert_true(th_log_term(c, 1, X) < *t3);
	assert_int_equal(th_log_term(c, 3, X + 1), 0);
	assert_int_equal(th_log_term(c, 4, X + 1), 0);
}

static void test_old_term_entry_on_majority_is_not_committed_by_counting(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	raft_term t3;

	th_config(&cfg);
	cfg.max_msg_entries = 1;
	c = cluster(state, 5, &cfg);
	figure8_setup(c, &t3);
	/* "x" (an older term) sits on 4 of 5 logs: still not committed. */
	for (raft_id id = 1; id <= 4; id++) {
		assert_int_equal(th_commit(c, id), X - 1);
		assert_false(th_applied_has(c, id, "x"));
	}

	/* (d) Node 5 returns, wins a later term with 3 and 4, overwrites index X. */
	th_heal(c);
	th_isolate(c, 1);
	th_tick_alone(c, 5, 3 * E); /* CheckQuorum: 5 stops leading its term */
	assert_int_not_equal(th_role(c, 5), RAFT_LEADER);
	for (raft_id id = 2; id <= 4; id++)
		th_tick_alone(c, id, 2 * E);
	campaign_until_leader(c, 5);
	th_stabilize(c);
	th_heal(c);
	th_tick_all(c, 3 * E);
	assert_int_equal(th_leader(c), 5);
	for (raft_id id = 1; id <= 5; id++) {
		assert_false(th_applied_has(c, id, "x"));
		assert_true(th_applied(c, id) >= X + 1);
		assert_int_equal(th_node(c, id)->applied[X - 1].type, RAFT_ENTRY_NOOP);
	}
}

static void test_new_leader_commits_old_entry_once_its_noop_is_replicated(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	raft_term t3;

	th_config(&cfg);
	cfg.max_msg_entries = 1;
	c = cluster(state, 5, &cfg);
	figure8_setup(c, &t3);
	assert_int_equal(th_commit(c, 1), X - 1);
	/* Now let the t3 NOOP reach node 3: a quorum holds an entry of t3. */
	for (uint32_t t = 0; t < E && th_commit(c, 1) < X + 1; t++)
		th_tick_all(c, 1);
	assert_true(th_commit(c, 1) >= X + 1);
	th_tick_all(c, 2);
	for (raft_id id = 1; id <= 4; id++) {
		assert_int_equal(th_applied_index_of(c, id, "x"), X);
		assert_int_equal(th_node(c, id)->applied[X].type, RAFT_ENTRY_NOOP);
		assert_int_equal(th_node(c, id)->applied[X].term, t3);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TH_TEST(test_proposals_commit_and_apply_in_order_on_all_nodes),
		TH_TEST(test_single_node_commits_proposals_alone),
		TH_TEST(test_empty_proposal_commits_as_an_empty_entry),
		TH_TEST(test_propose_on_follower_returns_notleader_with_leader_hint),
		TH_TEST(test_propose_larger_than_max_entry_bytes_returns_emsgsize),
		TH_TEST(test_propose_past_max_uncommitted_bytes_returns_ebusy),
		TH_TEST(test_many_proposals_in_one_turn_go_out_in_few_appends),
		TH_TEST(test_max_msg_entries_bounds_every_append),
		TH_TEST(test_max_msg_bytes_bounds_append_payload),
		TH_TEST(test_committed_entries_are_handed_out_in_bounded_batches),
		TH_TEST(test_outbox_bound_holds_and_group_recovers_from_drops),
		TH_TEST(test_unresponsive_follower_gets_at_most_max_inflight_appends),
		TH_TEST(test_acked_commit_only_append_frees_its_inflight_slot),
		TH_TEST(test_divergent_follower_is_repaired_in_few_round_trips),
		TH_TEST(test_follower_truncates_conflicting_uncommitted_entries),
		TH_TEST(test_restarted_follower_catches_up_without_reapplying),
		TH_TEST(test_whole_cluster_restart_keeps_committed_entries),
		TH_TEST(test_lost_duplicated_and_reordered_messages_are_tolerated),
		TH_TEST(test_old_term_entry_on_majority_is_not_committed_by_counting),
		TH_TEST(test_new_leader_commits_old_entry_once_its_noop_is_replicated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
