/* test_raft_snapshot.c: log compaction and sending snapshots to lagging followers. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define E 10 /* election_ticks of th_config() */
/* Applied index after the first leader's NOOP and 20 entries. */
#define S (TH_BOOT_INDEX + 21)

static struct th_cluster *cluster(void **state, uint32_t n, const struct raft_config *cfg)
{
	struct th_cluster *c = th_new(n, cfg);

	*state = c;
	return c;
}

static void propose_n(struct th_cluster *c, raft_id leader, int from, int n)
{
	char buf[32];

	for (int i = from; i < from + n; i++) {
		snprintf(buf, sizeof(buf), "entry-%03d", i);
		assert_int_equal(th_propose(c, leader, buf), 0);
	}
}

/*
 * Three nodes, node 3 down while 20 entries commit, then node 1 snapshots at
 * its applied index (S) keeping no tail. Small chunks so the snapshot (about
 * 600 bytes in the harness format) takes several.
 */
static struct th_cluster *lagging_follower(void **state, uint32_t chunk, uint64_t keep)
{
	struct raft_config cfg;
	struct th_cluster *c;

	th_config(&cfg);
	cfg.snap_chunk_bytes = chunk;
	c = cluster(state, 3, &cfg);
	th_elect(c, 1);
	th_down(c, 3);
	propose_n(c, 1, 0, 20);
	th_stabilize(c);
	assert_int_equal(th_applied(c, 1), S);
	assert_int_equal(th_snapshot(c, 1, S, keep), 0);
	th_up(c, 3);
	th_trace_clear(c);
	return c;
}

static void catch_up(struct th_cluster *c, raft_id id, uint32_t max_ticks)
{
	for (uint32_t t = 0; t < max_ticks && th_applied(c, id) < th_applied(c, 1); t++)
		th_tick_all(c, 1);
	assert_int_equal(th_applied(c, id), th_applied(c, 1));
}

static void test_snapshot_taken_compacts_the_log(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	struct raft_snap_meta meta;
	struct raft_status st;

	th_elect(c, 1);
	propose_n(c, 1, 0, 20);
	th_stabilize(c);
	th_tick_all(c, 1);
	st = th_status(c, 1);
	assert_int_equal(st.first_index, 1);
	assert_int_equal(st.snap_index, 0);
	assert_int_equal(st.last_index, S);

	memset(&meta, 0, sizeof(meta));
	assert_int_equal(raft_snapshot_taken(th_raft(c, 1), S, 1234, 0, &meta), 0);
	st = th_status(c, 1);
	assert_int_equal(st.snap_index, S);
	assert_int_equal(st.snap_term, st.term);
	assert_int_equal(st.first_index, S + 1);
	assert_int_equal(st.last_index, S);
	assert_int_equal(meta.index, S);
	assert_int_equal(meta.term, st.term);
	assert_int_equal(meta.size, 1234);
	assert_int_equal(meta.conf.n, 3);
	for (raft_id id = 1; id <= 3; id++)
		assert_int_equal(raft_conf_kind(&meta.conf, id), RAFT_VOTER);

	/* With a tail kept for slow followers. */
	assert_int_equal(th_snapshot(c, 2, 15, 5), 0);
	st = th_status(c, 2);
	assert_int_equal(st.snap_index, 15);
	assert_int_equal(st.first_index, 11); /* 15 - 5 + 1 */
	assert_int_equal(st.last_index, S);

	/* The group goes on as before. */
	assert_int_equal(th_propose(c, 1, "after"), 0);
	th_stabilize(c);
	assert_true(th_applied_has(c, 2, "after"));
	assert_int_equal(th_status(c, 1).first_index, S + 1);
}

static void test_snapshot_beyond_applied_returns_einval(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_index applied;

	th_elect(c, 1);
	propose_n(c, 1, 0, 5);
	th_stabilize(c);
	applied = th_applied(c, 1);
	assert_int_equal(raft_snapshot_taken(th_raft(c, 1), applied + 1, 10, 0, NULL), -EINVAL);
	assert_int_equal(raft_snapshot_taken(th_raft(c, 1), applied + 100, 10, 0, NULL),
			 -EINVAL);
	assert_int_equal(th_status(c, 1).snap_index, 0);
	assert_int_equal(th_status(c, 1).first_index, 1);

	/* Not after the current snapshot: done already. */
	assert_int_equal(th_snapshot(c, 1, applied - 2, 0), 0);
	assert_int_equal(raft_snapshot_taken(th_raft(c, 1), applied - 2, 10, 0, NULL), -EALREADY);
	assert_int_equal(raft_snapshot_taken(th_raft(c, 1), applied - 3, 10, 0, NULL), -EALREADY);
	assert_int_equal(th_status(c, 1).snap_index, applied - 2);
	assert_int_equal(th_snapshot(c, 1, applied, 0), 0);
}

static void test_lagging_follower_receives_chunks_and_installs_snapshot(void **state)
{
	struct th_cluster *c = lagging_follower(state, 64, 0);
	const struct th_node *n1 = th_node(c, 1), *n3 = th_node(c, 3);
	uint32_t chunks;

	assert_int_equal(th_status(c, 1).first_index, S + 1);
	catch_up(c, 3, 10 * E);

	chunks = th_trace_count(c, 1, 3, RAFT_MSG_SNAP, -1);
	assert_true(n1->snap.size > 4 * 64);
	assert_true(chunks >= (n1->snap.size + 63) / 64);
	for (uint32_t i = 0; i < c->n_trace; i++)
		if (c->trace[i].type == RAFT_MSG_SNAP)
			assert_true(c->trace[i].len <= 64);
	assert_int_equal(n3->n_installed, 1);
	assert_int_equal(n3->installed.index, S);
	assert_int_equal(n3->installed.term, n1->snap.term);
	assert_int_equal(n3->installed.size, n1->snap.size);
	assert_int_equal(n3->installed.conf.n, 3);
	for (raft_id id = 1; id <= 3; id++)
		assert_int_equal(raft_conf_kind(&n3->installed.conf, id), RAFT_VOTER);
	assert_true(th_status(c, 3).commit >= S);
	assert_int_equal(raft_snapshot_index(th_raft(c, 3)), S);
	assert_int_equal(n3->snap_data[0], n1->snap_data[0]);
	assert_memory_equal(n3->snap_data, n1->snap_data, n1->snap.size);
	/* The restored state machine holds every entry. */
	assert_int_equal(th_applied_normal(c, 3), 20);
	assert_true(th_applied_has(c, 3, "entry-019"));

	/* Then ordinary appends. */
	th_trace_clear(c);
	propose_n(c, 1, 20, 3);
	th_stabilize(c);
	assert_true(th_applied_has(c, 3, "entry-022"));
	assert_int_equal(th_trace_count(c, 1, 3, RAFT_MSG_SNAP, -1), 0);
	assert_true(th_trace_count(c, 1, 3, RAFT_MSG_APPEND, -1) >= 1);
	assert_int_equal(th_node(c, 3)->n_installed, 1);
}

static void test_snapshot_chunks_cover_it_without_gaps_and_end_with_last(void **state)
{
	struct th_cluster *c = lagging_follower(state, 100, 0);
	uint64_t size, have = 0;
	bool last_seen = false;

	catch_up(c, 3, 10 * E);
	size = th_node(c, 1)->snap.size;
	for (uint32_t i = 0; i < c->n_trace; i++) {
		const struct th_trace *t = &c->trace[i];

		if (t->type != RAFT_MSG_SNAP)
			continue;
		assert_int_equal(t->snap_index, S);
		assert_true(t->offset <= have); /* no gaps: resends only go back */
		assert_true(t->offset + t->len <= size);
		if (t->offset + t->len > have)
			have = t->offset + t->len;
		/* "last" marks exactly the chunk that ends the snapshot. */
		assert_int_equal(t->last, t->offset + t->len == size);
		last_seen |= t->last;
	}
	assert_true(last_seen);
	assert_int_equal(have, size);
	/* The follower acknowledged the install. */
	assert_true(th_trace_count(c, 3, 1, RAFT_MSG_SNAP_RESP, -1) >= 1);
}

/* Tick everyone until node 3 catches up, dropping the SNAP at `offset` once. */
static uint32_t run_dropping_chunk_once(struct th_cluster *c, uint64_t offset,
					uint32_t max_ticks)
{
	uint32_t dropped = 0;

	for (uint32_t t = 0; t < max_ticks && th_applied(c, 3) < th_applied(c, 1); t++) {
		for (raft_id id = 1; id <= 3; id++)
			th_tick(c, id, 1);
		for (int round = 0; round < 1000 && c->nq; round++) {
			for (uint32_t i = 0; !dropped && i < c->nq; i++) {
				struct raft_msg *m = &c->q[i].m;

				if (m->type == RAFT_MSG_SNAP && m->offset == offset) {
					m->type = RAFT_MSG_TYPE_COUNT;
					dropped = th_drop(c, 1, 3, RAFT_MSG_TYPE_COUNT);
				}
			}
			th_deliver(c, TH_ANY, TH_ANY, TH_ANY);
			th_process_all(c);
		}
	}
	return dropped;
}

static void test_lost_snapshot_chunk_is_retransmitted(void **state)
{
	struct th_cluster *c = lagging_follower(state, 64, 0);
	uint32_t sent_at_64 = 0;

	assert_int_equal(run_dropping_chunk_once(c, 64, 20 * E), 1);
	assert_int_equal(th_applied(c, 3), th_applied(c, 1));
	assert_int_equal(th_node(c, 3)->n_installed, 1);
	for (uint32_t i = 0; i < c->n_trace; i++)
		if (c->trace[i].type == RAFT_MSG_SNAP && c->trace[i].offset == 64)
			sent_at_64++;
	assert_true(sent_at_64 >= 2);
	assert_memory_equal(th_node(c, 3)->snap_data, th_node(c, 1)->snap_data,
			    th_node(c, 1)->snap.size);
}

static void test_lost_final_chunk_is_retransmitted(void **state)
{
	struct th_cluster *c = lagging_follower(state, 64, 0);
	uint64_t size = th_node(c, 1)->snap.size;
	uint64_t last_off = (size - 1) / 64 * 64;

	assert_int_equal(run_dropping_chunk_once(c, last_off, 20 * E), 1);
	assert_int_equal(th_applied(c, 3), th_applied(c, 1));
	assert_int_equal(th_node(c, 3)->n_installed, 1);
}

static void test_follower_within_kept_tail_is_caught_up_without_snapshot(void **state)
{
	struct th_cluster *c = lagging_follower(state, 64, 30);

	assert_int_equal(th_status(c, 1).snap_index, S);
	assert_true(th_status(c, 1).first_index <= TH_BOOT_INDEX + 2);
	catch_up(c, 3, 10 * E);
	assert_int_equal(th_trace_count(c, 1, 3, RAFT_MSG_SNAP, -1), 0);
	assert_int_equal(th_node(c, 3)->n_installed, 0);
	assert_int_equal(th_applied_normal(c, 3), 20);
}

static void test_newer_snapshot_replaces_one_being_sent(void **state)
{
	struct th_cluster *c = lagging_follower(state, 64, 0);

	/* The first chunk of snapshot S reaches node 3 ... */
	for (int round = 0; round < 100 && !th_count(c, 1, 3, RAFT_MSG_SNAP); round++) {
		if (!c->nq)
			for (raft_id id = 1; id <= 3; id++)
				th_tick(c, id, 1);
		th_deliver(c, TH_ANY, TH_ANY, TH_ANY);
	}
	assert_true(th_count(c, 1, 3, RAFT_MSG_SNAP) >= 1);
	assert_int_equal(th_msg(c, 1, 3, RAFT_MSG_SNAP, 0)->offset, 0);
	th_deliver(c, 1, 3, RAFT_MSG_SNAP);
	th_drop(c, TH_ANY, TH_ANY, TH_ANY);
	assert_int_equal(th_node(c, 3)->staged_index, S);

	/* ... then the caller replaces it: chunks of S can no longer be sent
	 * (the harness drops them, raft.h SNAP) and snapshot S + 5 must follow. */
	th_isolate(c, 3);
	propose_n(c, 1, 20, 5);
	th_stabilize(c);
	assert_int_equal(th_snapshot(c, 1, S + 5, 0), 0);
	th_heal(c);
	catch_up(c, 3, 20 * E);
	assert_int_equal(th_node(c, 3)->installed.index, S + 5);
	assert_true(th_applied_has(c, 3, "entry-024"));
}

static void test_follower_with_divergent_log_installs_snapshot_over_it(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_id l2 = 0;

	th_elect(c, 1);
	th_isolate(c, 1);
	assert_int_equal(th_propose(c, 1, "stale1"), 0);
	assert_int_equal(th_propose(c, 1, "stale2"), 0);
	for (uint32_t t = 0; t < 20 * E && !l2; t++) {
		th_tick_all(c, 1);
		for (raft_id id = 2; id <= 3; id++)
			if (th_role(c, id) == RAFT_LEADER)
				l2 = id;
	}
	assert_int_not_equal(l2, 0);
	propose_n(c, l2, 0, 10);
	th_stabilize(c);
	assert_int_equal(th_snapshot(c, l2, th_applied(c, l2), 0), 0);
	assert_int_equal(th_status(c, l2).first_index, th_applied(c, l2) + 1);

	th_heal(c);
	for (uint32_t t = 0; t < 20 * E && th_applied(c, 1) < th_applied(c, l2); t++)
		th_tick_all(c, 1);
	assert_int_equal(th_applied(c, 1), th_applied(c, l2));
	assert_int_equal(th_node(c, 1)->n_installed, 1);
	assert_false(th_applied_has(c, 1, "stale1"));
	assert_false(th_applied_has(c, 1, "stale2"));
	assert_true(th_applied_has(c, 1, "entry-009"));
	assert_int_equal(th_status(c, 1).last_index, th_status(c, l2).last_index);
	/* Nothing of its old tail is left on its disk. */
	assert_int_equal(th_node(c, 1)->n_log, 0);
	assert_int_equal(th_propose(c, l2, "next"), 0);
	th_stabilize(c);
	assert_true(th_applied_has(c, 1, "next"));
}

static void test_snapshot_meta_has_the_conf_as_of_its_index(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	raft_index applied;

	th_add_node(c, NULL);
	th_elect(c, 1);
	propose_n(c, 1, 0, 3);
	th_stabilize(c);
	applied = th_applied(c, 1);
	th_isolate(c, 1);
	/* A change appended after the snapshot point is not part of it. */
	assert_int_equal(raft_change(th_raft(c, 1), RAFT_ADD_LEARNER, 4, NULL), 0);
	th_process(c, 1);
	assert_int_equal(th_status(c, 1).conf.n, 4);
	assert_int_equal(th_snapshot(c, 1, applied, 0), 0);
	assert_int_equal(th_node(c, 1)->snap.conf.n, 3);
	assert_int_equal(raft_conf_kind(&th_node(c, 1)->snap.conf, 4), 0);
	assert_int_equal(th_node(c, 1)->snap.term, th_log_term(c, 2, applied));
}

static void test_learner_added_after_compaction_installs_snapshot_then_follows(void **state)
{
	struct raft_config cfg;
	struct th_cluster *c;
	raft_id j;

	th_config(&cfg);
	cfg.snap_chunk_bytes = 128;
	c = cluster(state, 3, &cfg);
	j = th_add_node(c, &cfg);
	th_elect(c, 1);
	propose_n(c, 1, 0, 10);
	th_stabilize(c);
	assert_int_equal(th_snapshot(c, 1, th_applied(c, 1), 0), 0);
	assert_int_equal(raft_change(th_raft(c, 1), RAFT_ADD_LEARNER, j, NULL), 0);
	th_process(c, 1);
	for (uint32_t t = 0; t < 10 * E && th_applied(c, j) < th_applied(c, 1); t++)
		th_tick_all(c, 1);
	assert_int_equal(th_applied(c, j), th_applied(c, 1));
	assert_int_equal(th_node(c, j)->n_installed, 1);
	assert_true(th_applied_has(c, j, "entry-009"));
	struct raft_status st = th_status(c, j);

	assert_int_equal(raft_conf_kind(&st.conf, j), RAFT_LEARNER);
	assert_int_equal(st.conf.n, 4);
	assert_int_equal(raft_leader(th_raft(c, j)), 1);
}

static void test_node_restarts_from_installed_snapshot(void **state)
{
	struct th_cluster *c = lagging_follower(state, 64, 0);

	catch_up(c, 3, 10 * E);
	assert_int_equal(th_node(c, 3)->n_installed, 1);
	th_restart(c, 3);
	assert_int_equal(raft_snapshot_index(th_raft(c, 3)), S);
	assert_int_equal(th_status(c, 3).first_index, S + 1);
	propose_n(c, 1, 20, 2);
	th_stabilize(c);
	th_tick_all(c, 2);
	assert_true(th_applied_has(c, 3, "entry-021"));
	assert_int_equal(th_node(c, 3)->n_installed, 1);
}

static void test_snapshot_keep_larger_than_index_keeps_the_whole_log(void **state)
{
	struct th_cluster *c = cluster(state, 3, NULL);
	struct raft_status st;

	th_elect(c, 1);
	propose_n(c, 1, 0, 5);
	th_stabilize(c);
	assert_int_equal(th_snapshot(c, 1, 4, 100), 0);
	st = th_status(c, 1);
	assert_int_equal(st.snap_index, 4);
	assert_int_equal(st.first_index, 1);
	assert_int_equal(st.last_index, th_last(c, 2));
	assert_int_equal(th_snapshot(c, 1, 6, UINT64_MAX), 0);
	assert_int_equal(th_status(c, 1).first_index, 1);
	assert_int_equal(th_propose(c, 1, "more"), 0);
	th_stabilize(c);
	assert_true(th_applied_has(c, 3, "more"));
}

static void test_follower_restarting_mid_snapshot_still_installs_it(void **state)
{
	struct th_cluster *c = lagging_follower(state, 64, 0);
	uint32_t got = 0;

	/* Let a few chunks land, then crash node 3. */
	for (int round = 0; round < 200 && got < 3; round++) {
		if (!c->nq)
			for (raft_id id = 1; id <= 3; id++)
				th_tick(c, id, 1);
		if (th_count(c, 1, 3, RAFT_MSG_SNAP))
			got++;
		th_deliver(c, TH_ANY, TH_ANY, TH_ANY);
	}
	assert_true(got >= 3);
	assert_int_equal(th_node(c, 3)->n_installed, 0);
	th_restart(c, 3);
	catch_up(c, 3, 20 * E);
	assert_int_equal(th_node(c, 3)->n_installed, 1);
	assert_memory_equal(th_node(c, 3)->snap_data, th_node(c, 1)->snap_data,
			    th_node(c, 1)->snap.size);
}

/*
 * The leader's snapshot installs while raft_step() takes its last chunk: the
 * core's snapshot and applied index move at once, the caller's applied index
 * only with the next batch. A caller that snapshots before taking that batch
 * asks for a snapshot below the one the core holds: nothing to do (-EALREADY),
 * which raft_snapshot_index() lets it see before it writes any bytes.
 */
static void test_snapshot_below_an_install_not_yet_taken_is_already_done(void **state)
{
	struct th_cluster *c = lagging_follower(state, 4096, 0);
	raft_index before = th_applied(c, 3);
	struct raft_msg m;
	struct raft_msg *q = NULL;

	/* Node 3's probe answer, then the leader's snapshot: one chunk. */
	for (int k = 0; k < 10 * E && q == NULL; k++) {
		th_tick(c, 1, 1);
		th_deliver(c, TH_ANY, TH_ANY, TH_ANY);
		q = th_msg(c, 1, 3, RAFT_MSG_SNAP, 0);
	}
	assert_non_null(q);
	assert_true(q->last);
	m = *q;
	assert_int_equal(raft_snapshot_index(th_raft(c, 3)), 0);
	assert_int_equal(raft_step(th_raft(c, 3), &m), 0); /* installs; no batch taken */
	th_drop(c, 1, 3, RAFT_MSG_SNAP);
	assert_int_equal(raft_snapshot_index(th_raft(c, 3)), S);
	assert_int_equal(th_applied(c, 3), before);
	assert_true(before > 0 && before < S);
	assert_int_equal(raft_snapshot_taken(th_raft(c, 3), before, 10, 0, NULL), -EALREADY);
	assert_int_equal(raft_snapshot_taken(th_raft(c, 3), S, 10, 0, NULL), -EALREADY);
	assert_int_equal(raft_snapshot_taken(th_raft(c, 3), S + 1, 10, 0, NULL), -EINVAL);
	/* The next batch hands the install to the caller; then all is as usual. */
	th_process(c, 3);
	assert_int_equal(th_node(c, 3)->n_installed, 1);
	assert_int_equal(th_applied(c, 3), S);
	propose_n(c, 1, 20, 3);
	th_stabilize(c);
	assert_int_equal(th_snapshot(c, 3, th_applied(c, 3), 0), 0);
	assert_int_equal(raft_snapshot_index(th_raft(c, 3)), S + 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TH_TEST(test_snapshot_taken_compacts_the_log),
		TH_TEST(test_snapshot_beyond_applied_returns_einval),
		TH_TEST(test_lagging_follower_receives_chunks_and_installs_snapshot),
		TH_TEST(test_snapshot_chunks_cover_it_without_gaps_and_end_with_last),
		TH_TEST(test_lost_snapshot_chunk_is_retransmitted),
		TH_TEST(test_lost_final_chunk_is_retransmitted),
		TH_TEST(test_follower_within_kept_tail_is_caught_up_without_snapshot),
		TH_TEST(test_newer_snapshot_replaces_one_being_sent),
		TH_TEST(test_follower_with_divergent_log_installs_snapshot_over_it),
		TH_TEST(test_snapshot_meta_has_the_conf_as_of_its_index),
		TH_TEST(test_learner_added_after_compaction_installs_snapshot_then_follows),
		TH_TEST(test_node_restarts_from_installed_snapshot),
		TH_TEST(test_snapshot_keep_larger_than_index_keeps_the_whole_log),
		TH_TEST(test_follower_restarting_mid_snapshot_still_installs_it),
		TH_TEST(test_snapshot_below_an_install_not_yet_taken_is_already_done),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
