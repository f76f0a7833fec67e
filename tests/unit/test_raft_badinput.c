/* test_raft_badinput.c: malformed, absurd and stale messages never hurt a group. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define E 10 /* election_ticks of th_config() */

/* What a message must not change when it is ignored. */
struct snap_state {
	raft_term term;
	raft_id vote;
	raft_index commit;
	raft_index last;
	raft_term last_term;
	enum raft_role role;
	raft_id leader;
};

static struct snap_state state_of(struct th_cluster *c, raft_id id)
{
	struct raft_status st = th_status(c, id);
	struct snap_state s = {
		.term = st.term,
		.vote = st.vote,
		.commit = st.commit,
		.last = st.last_index,
		.last_term = th_log_term(c, id, st.last_index),
		.role = st.role,
		.leader = st.leader,
	};

	return s;
}

static void assert_unchanged(const struct snap_state *a, struct th_cluster *c, raft_id id)
{
	struct snap_state now = state_of(c, id);
	const struct snap_state *b = &now;

	assert_int_equal(a->term, b->term);
	assert_int_equal(a->vote, b->vote);
	assert_int_equal(a->commit, b->commit);
	assert_int_equal(a->last, b->last);
	assert_int_equal(a->last_term, b->last_term);
	assert_int_equal(a->role, b->role);
	assert_int_equal(a->leader, b->leader);
}

static void assert_bad_or_ignored(int rc)
{
	if (rc != 0 && rc != -EBADMSG)
		fail_msg("raft_step returned %d (%s), want 0 or -EBADMSG", rc, cm_errname(rc));
}

/* Three nodes, node 1 leads, two entries committed everywhere. */
static struct th_cluster *cluster(void **state)
{
	struct th_cluster *c = th_new(3, NULL);

	*state = c;
	th_elect(c, 1);
	assert_int_equal(th_propose(c, 1, "a"), 0);
	assert_int_equal(th_propose(c, 1, "b"), 0);
	th_stabilize(c);
	th_tick_all(c, 1);
	return c;
}

static struct raft_msg msg(int type, raft_id from, raft_id to, raft_term term)
{
	struct raft_msg m;

	memset(&m, 0, sizeof(m));
	m.type = (uint8_t)type;
	m.from = from;
	m.to = to;
	m.term = term;
	return m;
}

/* The group still elects, commits and applies everywhere. */
static void assert_group_still_works(struct th_cluster *c, const char *what)
{
	raft_id l = 0;

	th_drop(c, TH_ANY, TH_ANY, TH_ANY);
	th_heal(c);
	for (uint32_t t = 0; t < 20 * E && !l; t++) {
		th_tick_all(c, 1);
		l = th_leader(c);
	}
	assert_int_not_equal(l, 0);
	assert_int_equal(th_propose(c, l, what), 0);
	for (uint32_t t = 0; t < 2 * E; t++) {
		bool all = true;

		th_tick_all(c, 1);
		for (raft_id id = 1; id <= c->n; id++)
			all = all && th_applied_has(c, id, what);
		if (all)
			return;
	}
	fail_msg("\"%s\" was not applied everywhere", what);
}

/* An APPEND from leader 1 to node 2 that matches node 2's log at prev. */
static struct raft_msg append_at_tip(struct th_cluster *c, struct raft_entry *ents, uint32_t n)
{
	struct raft_msg m = msg(RAFT_MSG_APPEND, 1, 2, th_term(c, 1));

	m.index = th_last(c, 2);
	m.log_term = th_log_term(c, 2, m.index);
	m.commit = th_commit(c, 1);
	m.entries = ents;
	m.n_entries = n;
	return m;
}

static struct raft_entry entry(raft_index index, raft_term term, const char *data)
{
	struct raft_entry e = {
		.term = term,
		.index = index,
		.type = RAFT_ENTRY_NORMAL,
		.len = (uint32_t)strlen(data),
		.data = (void *)data,
	};

	return e;
}

static void test_step_with_invalid_type_returns_ebadmsg(void **state)
{
	struct th_cluster *c = cluster(state);
	const int types[] = {0, RAFT_MSG_TYPE_COUNT, RAFT_MSG_TYPE_COUNT + 1, 99, 255};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct snap_state s1 = state_of(c, 1), s2 = state_of(c, 2);
		struct raft_msg m = msg(types[i], 1, 2, th_term(c, 2));

		assert_int_equal(th_step(c, 2, &m), -EBADMSG);
		m = msg(types[i], 2, 1, th_term(c, 1));
		assert_int_equal(th_step(c, 1, &m), -EBADMSG);
		assert_unchanged(&s1, c, 1);
		assert_unchanged(&s2, c, 2);
	}
	assert_group_still_works(c, "after-bad-type");
}

static void test_step_addressed_to_another_node_returns_ebadmsg(void **state)
{
	struct th_cluster *c = cluster(state);

	for (int type = RAFT_MSG_APPEND; type < RAFT_MSG_TYPE_COUNT; type++) {
		struct snap_state s2 = state_of(c, 2);
		struct raft_msg m = msg(type, 1, 3, th_term(c, 2));

		assert_int_equal(th_step(c, 2, &m), -EBADMSG);
		m.to = 0;
		assert_bad_or_ignored(th_step(c, 2, &m));
		assert_unchanged(&s2, c, 2);
	}
	assert_group_still_works(c, "after-misaddressed");
}

static void test_step_from_zero_or_self_is_rejected_or_ignored(void **state)
{
	struct th_cluster *c = cluster(state);

	for (int type = RAFT_MSG_APPEND; type < RAFT_MSG_TYPE_COUNT; type++) {
		struct snap_state s1 = state_of(c, 1), s2 = state_of(c, 2);
		struct raft_msg m = msg(type, 0, 2, th_term(c, 2));

		assert_bad_or_ignored(th_step(c, 2, &m));
		m = msg(type, 0, 1, th_term(c, 1));
		assert_bad_or_ignored(th_step(c, 1, &m));
		m = msg(type, 2, 2, th_term(c, 2));
		assert_bad_or_ignored(th_step(c, 2, &m));
		m = msg(type, 1, 1, th_term(c, 1));
		assert_bad_or_ignored(th_step(c, 1, &m));
		assert_unchanged(&s1, c, 1);
		assert_unchanged(&s2, c, 2);
		th_drop(c, TH_ANY, TH_ANY, TH_ANY);
	}
	assert_group_still_works(c, "after-from-zero");
}

static void test_append_with_non_contiguous_entries_returns_ebadmsg(void **state)
{
	struct th_cluster *c = cluster(state);
	raft_index tip = th_last(c, 2);
	raft_term t = th_term(c, 1);
	struct snap_state s2 = state_of(c, 2);
	struct raft_entry gap[] = {entry(tip + 1, t, "g1"), entry(tip + 3, t, "g3")};
	struct raft_entry down[] = {entry(tip + 2, t, "d2"), entry(tip + 1, t, "d1")};
	struct raft_entry dup[] = {entry(tip + 1, t, "u1"), entry(tip + 1, t, "u1")};
	struct raft_msg m;

	m = append_at_tip(c, gap, 2);
	assert_int_equal(th_step(c, 2, &m), -EBADMSG);
	m = append_at_tip(c, down, 2);
	assert_int_equal(th_step(c, 2, &m), -EBADMSG);
	m = append_at_tip(c, dup, 2);
	assert_int_equal(th_step(c, 2, &m), -EBADMSG);
	/* Nothing of them reached the log, nor a reply saying it did. */
	assert_unchanged(&s2, c, 2);
	assert_int_equal(th_count(c, 2, 1, RAFT_MSG_APPEND_RESP), 0);
	assert_group_still_works(c, "after-gaps");
	assert_false(th_applied_has(c, 2, "g1"));
	assert_false(th_applied_has(c, 2, "d1"));
	assert_false(th_applied_has(c, 2, "u1"));
}

static void test_append_with_entry_index_mismatch_is_not_appended(void **state)
{
	struct th_cluster *c = cluster(state);
	raft_index tip = th_last(c, 2);
	raft_term t = th_term(c, 1);
	struct snap_state s2 = state_of(c, 2);
	struct raft_entry ahead[] = {entry(tip + 5, t, "ahead")};
	struct raft_entry behind[] = {entry(tip, t, "behind")};
	struct raft_entry zero[] = {entry(0, t, "zero")};
	struct raft_msg m;

	m = append_at_tip(c, ahead, 1);
	assert_bad_or_ignored(th_step(c, 2, &m));
	m = append_at_tip(c, behind, 1);
	assert_bad_or_ignored(th_step(c, 2, &m));
	m = append_at_tip(c, zero, 1);
	assert_bad_or_ignored(th_step(c, 2, &m));
	assert_int_equal(th_last(c, 2), s2.last);
	assert_int_equal(th_log_term(c, 2, tip), s2.last_term);
	assert_int_equal(th_commit(c, 2), s2.commit);
	assert_group_still_works(c, "after-mismatch");
	assert_false(th_applied_has(c, 2, "ahead"));
	assert_false(th_applied_has(c, 2, "behind"));
}

static void test_append_with_entries_null_is_rejected(void **state)
{
	struct th_cluster *c = cluster(state);
	struct snap_state s2 = state_of(c, 2);
	struct raft_msg m = append_at_tip(c, NULL, 3);
	struct raft_entry e = entry(th_last(c, 2) + 1, th_term(c, 1), "");

	assert_bad_or_ignored(th_step(c, 2, &m));
	assert_unchanged(&s2, c, 2);
	/* An entry claiming bytes it does not carry. */
	e.len = 100;
	e.data = NULL;
	m = append_at_tip(c, &e, 1);
	assert_bad_or_ignored(th_step(c, 2, &m));
	assert_int_equal(th_last(c, 2), s2.last);
	assert_group_still_works(c, "after-null");
}

static void test_append_with_absurd_values_does_no_harm(void **state)
{
	struct th_cluster *c = cluster(state);
	raft_term t = th_term(c, 1);
	struct raft_entry future[] = {entry(th_last(c, 2) + 1, t + 1000, "future")};
	struct raft_msg m;

	/* A commit index far past the log. */
	m = append_at_tip(c, NULL, 0);
	m.commit = UINT64_MAX;
	assert_bad_or_ignored(th_step(c, 2, &m));
	assert_true(th_commit(c, 2) <= th_last(c, 2));

	/* A prev entry far past the log. */
	m = append_at_tip(c, NULL, 0);
	m.index = UINT64_MAX;
	m.log_term = UINT64_MAX;
	assert_bad_or_ignored(th_step(c, 2, &m));
	m.index = UINT64_MAX - 1;
	m.log_term = t;
	assert_bad_or_ignored(th_step(c, 2, &m));
	assert_true(th_commit(c, 2) <= th_last(c, 2));

	/* An entry of a term later than the message's. */
	m = append_at_tip(c, future, 1);
	assert_bad_or_ignored(th_step(c, 2, &m));
	assert_true(th_log_term(c, 2, th_last(c, 2)) <= th_term(c, 2));

	/* A heartbeat with a commit index far past the log. */
	m = msg(RAFT_MSG_HEARTBEAT, 1, 2, t);
	m.commit = UINT64_MAX;
	assert_bad_or_ignored(th_step(c, 2, &m));
	assert_true(th_commit(c, 2) <= th_last(c, 2));
	assert_group_still_works(c, "after-absurd-append");
	assert_false(th_applied_has(c, 2, "future"));
}

static void test_responses_with_absurd_values_do_no_harm(void **state)
{
	struct th_cluster *c = cluster(state);
	raft_term t = th_term(c, 1);
	struct raft_msg m;

	/* Acks of entries the leader never had. */
	m = msg(RAFT_MSG_APPEND_RESP, 2, 1, t);
	m.index = UINT64_MAX;
	assert_bad_or_ignored(th_step(c, 1, &m));
	assert_true(th_commit(c, 1) <= th_last(c, 1));
	m.reject = true;
	m.hint = UINT64_MAX;
	m.log_term = UINT64_MAX;
	assert_bad_or_ignored(th_step(c, 1, &m));
	m.index = 0;
	m.hint = 0;
	m.log_term = 0;
	assert_bad_or_ignored(th_step(c, 1, &m));

	/* A snapshot "installed" that was never sent. */
	m = msg(RAFT_MSG_SNAP_RESP, 2, 1, t);
	m.index = UINT64_MAX;
	m.offset = UINT64_MAX;
	m.last = true;
	assert_bad_or_ignored(th_step(c, 1, &m));
	m.last = false;
	assert_bad_or_ignored(th_step(c, 1, &m));
	assert_true(th_commit(c, 1) <= th_last(c, 1));

	/* Heartbeat acks of read rounds never started. */
	m = msg(RAFT_MSG_HEARTBEAT_RESP, 2, 1, t);
	m.ctx = UINT64_MAX;
	assert_bad_or_ignored(th_step(c, 1, &m));

	/* Read answers from a node that is not the leader are not trusted ... */
	m = msg(RAFT_MSG_READ_INDEX_RESP, 3, 2, t);
	m.ctx = 12345;
	m.index = 3;
	assert_bad_or_ignored(th_step(c, 2, &m));
	assert_int_equal(th_node(c, 2)->n_reads, 0);
	/* ... while Raft trusts its leader: an odd one from it only must not crash. */
	m = msg(RAFT_MSG_READ_INDEX_RESP, 1, 2, t);
	m.ctx = 12345;
	m.index = UINT64_MAX;
	assert_bad_or_ignored(th_step(c, 2, &m));

	/* Votes nobody asked for. */
	m = msg(RAFT_MSG_VOTE_RESP, 2, 1, t);
	assert_bad_or_ignored(th_step(c, 1, &m));
	m = msg(RAFT_MSG_PREVOTE_RESP, 3, 2, t + 1);
	assert_bad_or_ignored(th_step(c, 2, &m));
	assert_int_equal(th_role(c, 1), RAFT_LEADER);
	assert_int_not_equal(th_role(c, 2), RAFT_LEADER);
	assert_group_still_works(c, "after-absurd-resp");
}

static void test_responses_from_non_members_are_ignored(void **state)
{
	struct th_cluster *c = cluster(state);
	const int types[] = {RAFT_MSG_APPEND_RESP,  RAFT_MSG_HEARTBEAT_RESP,
			     RAFT_MSG_SNAP_RESP,    RAFT_MSG_VOTE_RESP,
			     RAFT_MSG_PREVOTE_RESP, RAFT_MSG_READ_INDEX};
	struct snap_state s1 = state_of(c, 1);

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct raft_msg m = msg(types[i], 9, 1, th_term(c, 1));

		m.index = th_last(c, 1);
		m.last = true;
		assert_bad_or_ignored(th_step(c, 1, &m));
	}
	assert_unchanged(&s1, c, 1);
	assert_group_still_works(c, "after-strangers");
}

static void test_snap_chunks_with_absurd_values_do_no_harm(void **state)
{
	struct th_cluster *c = cluster(state);
	struct raft_status st = th_status(c, 2);
	uint8_t bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct raft_msg m;

	m = msg(RAFT_MSG_SNAP, 1, 2, th_term(c, 1));
	m.snap.index = st.last_index + 10;
	m.snap.term = th_term(c, 1);
	m.snap.conf = st.conf;
	m.snap.size = 8;
	/* Bytes claimed but missing. */
	m.len = 8;
	m.data = NULL;
	assert_bad_or_ignored(th_step(c, 2, &m));
	/* A chunk beyond the snapshot's size, and one whose end overflows. */
	m.data = bytes;
	m.offset = 4;
	assert_bad_or_ignored(th_step(c, 2, &m));
	m.offset = UINT64_MAX - 2;
	assert_bad_or_ignored(th_step(c, 2, &m));
	/* A "final" chunk at an offset the follower never reached. */
	m.offset = 0;
	m.len = 4;
	m.snap.size = 1000;
	m.offset = 500;
	m.last = true;
	assert_bad_or_ignored(th_step(c, 2, &m));
	/* A snapshot whose configuration is invalid. */
	m.offset = 0;
	m.len = 8;
	m.snap.size = 8;
	m.snap.conf.n = RAFT_MAX_NODES + 5;
	assert_bad_or_ignored(th_step(c, 2, &m));
	assert_int_equal(th_node(c, 2)->n_installed, 0);
	assert_true(th_commit(c, 2) <= th_last(c, 2));
	assert_group_still_works(c, "after-bad-snap");
}

static void test_stale_term_messages_are_ignored(void **state)
{
	struct th_cluster *c = cluster(state);
	raft_term t;
	raft_index tip;
	struct snap_state s2, s3;
	struct raft_msg m;

	/* Move to a later term with node 2 leading. */
	assert_int_equal(raft_transfer(th_raft(c, 1), 2), 0);
	th_process(c, 1);
	th_stabilize(c);
	th_tick_all(c, 1);
	assert_int_equal(th_role(c, 2), RAFT_LEADER);
	t = th_term(c, 2);
	tip = th_last(c, 3);
	s2 = state_of(c, 2);
	s3 = state_of(c, 3);

	/* The old leader overwrites the tip, in its old term. */
	struct raft_entry evil[] = {entry(tip, t - 1, "evil")};

	m = msg(RAFT_MSG_APPEND, 1, 3, t - 1);
	m.index = tip - 1;
	m.log_term = th_log_term(c, 3, tip - 1);
	m.commit = tip;
	m.entries = evil;
	m.n_entries = 1;
	assert_int_equal(th_step(c, 3, &m), 0);
	/* Old heartbeat, vote, snapshot, timeout-now. */
	m = msg(RAFT_MSG_HEARTBEAT, 1, 3, t - 1);
	m.commit = UINT64_MAX;
	assert_int_equal(th_step(c, 3, &m), 0);
	m = msg(RAFT_MSG_VOTE, 1, 3, t - 1);
	m.index = UINT64_MAX - 1;
	m.log_term = t - 1;
	m.force = true;
	assert_int_equal(th_step(c, 3, &m), 0);
	m = msg(RAFT_MSG_TIMEOUT_NOW, 1, 3, t - 1);
	assert_int_equal(th_step(c, 3, &m), 0);
	m = msg(RAFT_MSG_SNAP, 1, 3, t - 1);
	m.snap.index = tip + 100;
	m.snap.term = t - 1;
	m.snap.conf = th_status(c, 3).conf;
	m.snap.size = 0;
	m.last = true;
	assert_int_equal(th_step(c, 3, &m), 0);
	assert_unchanged(&s3, c, 3);
	assert_int_equal(th_node(c, 3)->n_installed, 0);

	/* And at the leader: old acks and read requests. */
	m = msg(RAFT_MSG_APPEND_RESP, 3, 2, t - 1);
	m.index = UINT64_MAX;
	assert_int_equal(th_step(c, 2, &m), 0);
	m = msg(RAFT_MSG_VOTE_RESP, 3, 2, t - 1);
	assert_int_equal(th_step(c, 2, &m), 0);
	m = msg(RAFT_MSG_READ_INDEX, 3, 2, t - 1);
	m.ctx = 5;
	assert_int_equal(th_step(c, 2, &m), 0);
	assert_unchanged(&s2, c, 2);

	assert_group_still_works(c, "after-stale");
	assert_false(th_applied_has(c, 3, "evil"));
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void test_random_stale_term_messages_leave_state_unchanged(void **state)
{
	struct th_cluster *c = cluster(state);
	uint64_t x = 0x2545f4914f6cdd1dull;
	uint8_t bytes[64];
	struct raft_entry ents[4];

	/* A later term, so that there are older ones to forge. */
	assert_int_equal(raft_transfer(th_raft(c, 1), 3), 0);
	th_process(c, 1);
	th_stabilize(c);
	th_tick_all(c, 1);
	memset(bytes, 'r', sizeof(bytes));
	for (int round = 0; round < 3000; round++) {
		raft_id to = 1 + rnd(&x) % 3;
		struct snap_state before = state_of(c, to);
		struct raft_msg m = msg(1 + (int)(rnd(&x) % (RAFT_MSG_TYPE_COUNT - 1)),
					1 + rnd(&x) % 3, to, rnd(&x) % before.term);
		raft_index near = before.last + 2 - rnd(&x) % 5;

		if (m.from == to)
			m.from = to % 3 + 1;
		m.index = rnd(&x) % 4 ? near : rnd(&x);
		m.log_term = rnd(&x) % (before.term + 2);
		m.commit = rnd(&x) % 4 ? near : rnd(&x);
		m.hint = rnd(&x) % 4 ? near : rnd(&x);
		m.ctx = rnd(&x) % 8;
		m.reject = rnd(&x) % 2;
		m.force = rnd(&x) % 2;
		m.last = rnd(&x) % 2;
		m.n_entries = (uint32_t)(rnd(&x) % 5);
		for (uint32_t i = 0; i < m.n_entries; i++) {
			ents[i].index = m.index + 1 + i;
			ents[i].term = m.term;
			ents[i].type = (uint8_t)(1 + rnd(&x) % 3);
			ents[i].len = (uint32_t)(rnd(&x) % sizeof(bytes));
			ents[i].data = bytes;
		}
		m.entries = m.n_entries ? ents : NULL;
		m.snap.index = near;
		m.snap.term = m.term;
		m.snap.conf = th_status(c, to).conf;
		m.snap.size = rnd(&x) % 128;
		m.offset = rnd(&x) % 64;
		m.len = (uint32_t)(rnd(&x) % 64);
		m.data = bytes;

		assert_bad_or_ignored(th_step(c, to, &m));
		assert_unchanged(&before, c, to);
		th_drop(c, TH_ANY, TH_ANY, TH_ANY);
	}
	assert_group_still_works(c, "after-fuzz");
}

static int try_new(const struct raft_config *cfg, const struct raft_boot *boot)
{
	struct raft *r = NULL;
	int rc = raft_new(cfg, boot, &r);

	if (rc == 0)
		assert_non_null(r);
	raft_free(r);
	return rc;
}

static void test_raft_new_with_bad_config_returns_einval(void **state)
{
	struct raft_config good, cfg;
	struct raft_boot boot;
	const raft_id ids[] = {1, 2, 3};

	(void)state;
	raft_config_default(&good, 1, 42);
	memset(&boot, 0, sizeof(boot));
	boot.snap.conf = th_conf_voters(ids, 3);
	assert_int_equal(try_new(&good, &boot), 0);

	cfg = good;
	cfg.id = 0;
	assert_int_equal(try_new(&cfg, &boot), -EINVAL);
	cfg = good;
	cfg.election_ticks = 0;
	assert_int_equal(try_new(&cfg, &boot), -EINVAL);
	cfg = good;
	cfg.heartbeat_ticks = cfg.election_ticks; /* must be below it */
	assert_int_equal(try_new(&cfg, &boot), -EINVAL);
	cfg = good;
	cfg.heartbeat_ticks = 0;
	assert_int_equal(try_new(&cfg, &boot), -EINVAL);
	cfg = good;
	cfg.max_msg_entries = 0;
	assert_int_equal(try_new(&cfg, &boot), -EINVAL);
	cfg = good;
	cfg.max_inflight = 0;
	assert_int_equal(try_new(&cfg, &boot), -EINVAL);
	cfg = good;
	cfg.snap_chunk_bytes = 0;
	assert_int_equal(try_new(&cfg, &boot), -EINVAL);
}

static void test_raft_new_with_inconsistent_boot_returns_einval(void **state)
{
	struct raft_config cfg;
	struct raft_boot boot, b;
	const raft_id ids[] = {1, 2, 3};
	uint8_t conf_buf[RAFT_CONF_MAX_BYTES];
	struct raft_conf conf = th_conf_voters(ids, 3);
	struct raft_entry ents[3] = {
		{.term = 1, .index = 1, .type = RAFT_ENTRY_CONF},
		{.term = 2, .index = 2, .type = RAFT_ENTRY_NOOP},
		{.term = 2, .index = 3, .type = RAFT_ENTRY_NORMAL, .len = 1, .data = "x"},
	};
	struct raft_entry gap[2];

	(void)state;
	ents[0].len = raft_conf_encode(&conf, conf_buf);
	ents[0].data = conf_buf;
	raft_config_default(&cfg, 1, 42);
	memset(&boot, 0, sizeof(boot));
	boot.hs.term = 2;
	boot.hs.vote = 1;
	boot.hs.commit = 2;
	boot.snap.conf = conf;
	boot.entries = ents;
	boot.n_entries = 3;
	boot.applied = 2;
	assert_int_equal(try_new(&cfg, &boot), 0);

	b = boot; /* non-contiguous entries */
	gap[0] = ents[0];
	gap[1] = ents[2];
	b.entries = gap;
	b.n_entries = 2;
	b.hs.commit = 1;
	b.applied = 1;
	assert_int_equal(try_new(&cfg, &b), -EINVAL);
	b = boot; /* commit beyond the log */
	b.hs.commit = 4;
	assert_int_equal(try_new(&cfg, &b), -EINVAL);
	b = boot; /* applied before the snapshot */
	b.snap.index = 1;
	b.snap.term = 1;
	b.entries = ents + 1;
	b.n_entries = 2;
	b.applied = 0;
	assert_int_equal(try_new(&cfg, &b), -EINVAL);
	b.applied = 1;
	assert_int_equal(try_new(&cfg, &b), 0);
	b = boot; /* entries that do not follow the snapshot */
	b.snap.index = 1;
	b.snap.term = 1;
	assert_int_equal(try_new(&cfg, &b), -EINVAL);
	b = boot; /* applied beyond commit: raft.h says [snap.index, commit] */
	b.applied = 3;
	assert_int_equal(try_new(&cfg, &b), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TH_TEST(test_step_with_invalid_type_returns_ebadmsg),
		TH_TEST(test_step_addressed_to_another_node_returns_ebadmsg),
		TH_TEST(test_step_from_zero_or_self_is_rejected_or_ignored),
		TH_TEST(test_append_with_non_contiguous_entries_returns_ebadmsg),
		TH_TEST(test_append_with_entry_index_mismatch_is_not_appended),
		TH_TEST(test_append_with_entries_null_is_rejected),
		TH_TEST(test_append_with_absurd_values_does_no_harm),
		TH_TEST(test_responses_with_absurd_values_do_no_harm),
		TH_TEST(test_responses_from_non_members_are_ignored),
		TH_TEST(test_snap_chunks_with_absurd_values_do_no_harm),
		TH_TEST(test_stale_term_messages_are_ignored),
		TH_TEST(test_random_stale_term_messages_leave_state_unchanged),
		TH_TEST(test_raft_new_with_bad_config_returns_einval),
		TH_TEST(test_raft_new_with_inconsistent_boot_returns_einval),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
