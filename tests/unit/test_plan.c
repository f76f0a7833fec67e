/* test_plan.c: the replica-set planner (client/plan.c): order, convergence, refusals. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "client/plan.h"
#include "confman/error.h"

/*
 * A model group: what the planner reads, and what each step does to it,
 * with the server's rules asserted on every step (a SHARD_SET keeps every
 * member listed, a learner is added only once listed, only a caught-up
 * learner is promoted, the leader is never removed, and a voter is removed
 * only while more voters than the target's size remain).
 */
struct model {
	struct cm_plan_state st;
	uint64_t nodes[16];
	uint64_t target[CM_PLAN_MAX];
	uint32_t n_target;
	uint32_t min_voters; /* no removal takes the voters below this */
};

static struct model model_new(bool meta, const uint64_t *voters, uint32_t nv,
			      const uint64_t *target, uint32_t nt, uint64_t leader)
{
	struct model m = {0};
	m.st.meta = meta;
	m.st.leader = leader;
	m.st.last = 1000;
	for (uint32_t k = 0; k < nv; k++) {
		m.st.members[k] = voters[k];
		m.st.kinds[k] = 1;
		m.st.match[k] = 1000;
		m.st.registry[k] = voters[k];
	}
	m.st.n_members = m.st.n_registry = meta ? 0 : nv;
	m.st.n_members = nv;
	for (uint32_t k = 0; k < 8; k++)
		m.nodes[k] = k + 1;
	m.st.nodes = m.nodes;
	m.st.n_nodes = 8;
	memcpy(m.target, target, nt * sizeof(*target));
	m.n_target = nt;
	m.min_voters = nt;
	return m;
}

static bool in(const uint64_t *ids, uint32_t n, uint64_t id)
{
	for (uint32_t k = 0; k < n; k++)
		if (ids[k] == id)
			return true;
	return false;
}

static int idx(const struct model *m, uint64_t id)
{
	for (uint32_t k = 0; k < m->st.n_members; k++)
		if (m->st.members[k] == id)
			return (int)k;
	return -1;
}

static uint32_t voters(const struct model *m)
{
	uint32_t n = 0;
	for (uint32_t k = 0; k < m->st.n_members; k++)
		n += m->st.kinds[k] != 2;
	return n;
}

static void apply_remove(struct model *m, uint64_t id)
{
	int k = idx(m, id);
	assert_true(k >= 0);
	assert_int_not_equal(id, m->st.leader);
	if (m->st.kinds[k] != 2)
		assert_true(voters(m) > m->min_voters); /* add before remove */
	uint32_t last = m->st.n_members - 1;
	m->st.members[k] = m->st.members[last];
	m->st.kinds[k] = m->st.kinds[last];
	m->st.match[k] = m->st.match[last];
	m->st.n_members = last;
}

static void apply_transfer(struct model *m, const struct cm_plan_step *s)
{
	assert_int_equal(s->node, m->st.leader);
	uint64_t to = s->to;
	for (uint32_t k = 0; to == 0 && k < m->st.n_members; k++)
		if (m->st.kinds[k] != 2 && in(m->target, m->n_target, m->st.members[k]))
			to = m->st.members[k];
	int k = idx(m, to);
	assert_true(k >= 0 && m->st.kinds[k] != 2);
	assert_true(in(m->target, m->n_target, to));
	m->st.leader = to;
}

static void apply(struct model *m, const struct cm_plan_step *s)
{
	int k = idx(m, s->node);
	switch (s->kind) {
	case CM_PLAN_SHARD_SET:
		assert_false(m->st.meta);
		for (uint32_t j = 0; j < m->st.n_members; j++)
			assert_true(in(s->set, s->n_set, m->st.members[j]));
		memcpy(m->st.registry, s->set, s->n_set * sizeof(*s->set));
		m->st.n_registry = s->n_set;
		return;
	case CM_PLAN_ADD_LEARNER:
		assert_true(k < 0);
		assert_true(m->st.meta || in(m->st.registry, m->st.n_registry, s->node));
		assert_true(m->st.n_members < CM_PLAN_MAX);
		k = (int)m->st.n_members++;
		m->st.members[k] = s->node;
		m->st.kinds[k] = 2;
		m->st.match[k] = 0;
		return;
	case CM_PLAN_WAIT_CATCHUP:
		assert_true(k >= 0 && m->st.kinds[k] == 2);
		m->st.match[k] = m->st.last; /* time passes */
		return;
	case CM_PLAN_PROMOTE:
		assert_true(k >= 0 && m->st.kinds[k] == 2);
		assert_true(m->st.match[k] + CM_PLAN_CATCHUP >= m->st.last);
		m->st.kinds[k] = 1;
		return;
	case CM_PLAN_TRANSFER:
		apply_transfer(m, s);
		return;
	case CM_PLAN_REMOVE:
		apply_remove(m, s->node);
		return;
	case CM_PLAN_DONE:
		return;
	}
	fail();
}

static struct cm_plan_step next(const struct model *m)
{
	struct cm_plan_step s;
	uint64_t bad = 0;
	struct cm_plan_state st = m->st;
	st.nodes = m->nodes; /* the model moves by value */
	assert_int_equal(cm_plan_next(&st, m->target, m->n_target, &s, &bad), 0);
	return s;
}

/* The converged state: the target as voters (and registry); meta: the
 * other active nodes as learners. */
static void assert_converged(const struct model *m)
{
	for (uint32_t k = 0; k < m->n_target; k++) {
		int j = idx(m, m->target[k]);
		assert_true(j >= 0);
		assert_int_not_equal(m->st.kinds[j], 2);
	}
	if (m->st.meta) {
		assert_int_equal(voters(m), m->n_target);
		for (uint32_t k = 0; k < m->st.n_nodes; k++)
			assert_true(idx(m, m->nodes[k]) >= 0);
		assert_int_equal(m->st.n_members, m->st.n_nodes);
		return;
	}
	assert_int_equal(m->st.n_members, m->n_target);
	assert_int_equal(m->st.n_registry, m->n_target);
	for (uint32_t k = 0; k < m->n_target; k++)
		assert_true(in(m->st.registry, m->st.n_registry, m->target[k]));
}

/* Run to DONE (at most 64 steps); returns the steps taken. */
static int converge(struct model *m)
{
	for (int n = 0; n < 64; n++) {
		struct cm_plan_step s = next(m);
		if (s.kind == CM_PLAN_DONE) {
			assert_converged(m);
			struct cm_plan_step again = next(m);
			assert_int_equal(again.kind, CM_PLAN_DONE); /* DONE stays DONE */
			return n;
		}
		apply(m, &s);
	}
	fail_msg("no convergence in 64 steps");
	return -1;
}

/* Every intermediate state of the run from m converges too (a re-run of
 * an interrupted command), to the same place. */
static void assert_rerun_converges(const struct model *start)
{
	struct model m = *start;
	m.st.nodes = m.nodes;
	for (int n = 0; n < 64; n++) {
		struct model copy = m;
		copy.st.nodes = copy.nodes;
		converge(&copy);
		struct cm_plan_step s = next(&m);
		if (s.kind == CM_PLAN_DONE)
			return;
		apply(&m, &s);
	}
	fail();
}

struct want {
	enum cm_plan_kind kind;
	uint64_t node;
};

static void assert_steps(struct model *m, const struct want *w, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		struct cm_plan_step s = next(m);
		if (s.kind != w[k].kind || s.node != w[k].node)
			fail_msg("step %zu: got %s %lu, want %s %lu", k, cm_plan_kind_name(s.kind),
				 (unsigned long)s.node, cm_plan_kind_name(w[k].kind),
				 (unsigned long)w[k].node);
		apply(m, &s);
	}
}

static void test_replace_one_goes_3_4_3_in_order(void **state)
{
	(void)state;
	const uint64_t v[] = {1, 2, 3}, t[] = {1, 2, 4};
	struct model m = model_new(false, v, 3, t, 3, 1);
	struct cm_plan_step s = next(&m);
	assert_int_equal(s.kind, CM_PLAN_SHARD_SET);
	assert_int_equal(s.n_set, 4);
	assert_int_equal(s.set[3], 4); /* the old set, then the new node */
	apply(&m, &s);
	const struct want w[] = {{CM_PLAN_ADD_LEARNER, 4}, {CM_PLAN_WAIT_CATCHUP, 4},
				 {CM_PLAN_PROMOTE, 4}};
	assert_steps(&m, w, 3);
	assert_int_equal(voters(&m), 4);
	const struct want w2[] = {{CM_PLAN_REMOVE, 3}};
	assert_steps(&m, w2, 1);
	assert_int_equal(voters(&m), 3);
	s = next(&m);
	assert_int_equal(s.kind, CM_PLAN_SHARD_SET);
	assert_int_equal(s.n_set, 3);
	assert_memory_equal(s.set, t, sizeof(t));
	apply(&m, &s);
	assert_int_equal(converge(&m), 0);
}

static void test_leader_to_remove_transfers_first(void **state)
{
	(void)state;
	const uint64_t v[] = {1, 2, 3}, t[] = {1, 2, 4};
	struct model m = model_new(false, v, 3, t, 3, 3);
	m.st.match[0] = 998; /* nodes 1 and 2 trail the new one */
	m.st.match[1] = 999;
	for (int k = 0; k < 4; k++) {
		struct cm_plan_step s = next(&m);
		apply(&m, &s);
	}
	assert_int_equal(voters(&m), 4);
	struct cm_plan_step s = next(&m);
	assert_int_equal(s.kind, CM_PLAN_TRANSFER);
	assert_int_equal(s.node, 3);
	assert_int_equal(s.to, 4); /* the most caught up: 1000 */
	apply(&m, &s);
	s = next(&m);
	assert_int_equal(s.kind, CM_PLAN_REMOVE);
	assert_int_equal(s.node, 3);
	apply(&m, &s);
	converge(&m);
}

static void test_promotes_only_within_raft_catchup_margin(void **state)
{
	(void)state;
	const uint64_t v[] = {1, 2, 3}, t[] = {1, 2, 3, 4};
	struct model m = model_new(false, v, 3, t, 4, 1);
	m.st.registry[3] = 4;
	m.st.n_registry = 4;
	struct cm_plan_step s = next(&m);
	assert_int_equal(s.kind, CM_PLAN_ADD_LEARNER);
	apply(&m, &s);
	m.st.match[3] = m.st.last - CM_PLAN_CATCHUP - 1;
	assert_int_equal(next(&m).kind, CM_PLAN_WAIT_CATCHUP);
	m.st.match[3] = m.st.last - CM_PLAN_CATCHUP;
	assert_int_equal(next(&m).kind, CM_PLAN_PROMOTE);
	/* The leader unknown: nobody's match counts. */
	m.st.leader = 0;
	assert_int_equal(next(&m).kind, CM_PLAN_WAIT_CATCHUP);
}

static void test_learners_added_all_before_promotions_and_removed_first(void **state)
{
	(void)state;
	const uint64_t v[] = {1, 2, 3}, t[] = {4, 5, 6};
	struct model m = model_new(false, v, 3, t, 3, 2);
	/* A stray learner (7), listed, not in the target. */
	m.st.members[3] = 7;
	m.st.kinds[3] = 2;
	m.st.match[3] = 5;
	m.st.n_members = 4;
	m.st.registry[3] = 7;
	m.st.n_registry = 4;
	struct cm_plan_step s = next(&m);
	assert_int_equal(s.kind, CM_PLAN_SHARD_SET);
	assert_int_equal(s.n_set, 7);
	apply(&m, &s);
	const struct want w[] = {{CM_PLAN_ADD_LEARNER, 4}, {CM_PLAN_ADD_LEARNER, 5},
				 {CM_PLAN_ADD_LEARNER, 6}, {CM_PLAN_WAIT_CATCHUP, 4}};
	assert_steps(&m, w, 4);
	/* Only caught-up targets are promoted; the stray learner goes first. */
	const struct want w2[] = {{CM_PLAN_PROMOTE, 4}, {CM_PLAN_WAIT_CATCHUP, 5},
				  {CM_PLAN_PROMOTE, 5}, {CM_PLAN_WAIT_CATCHUP, 6},
				  {CM_PLAN_PROMOTE, 6}, {CM_PLAN_REMOVE, 7}};
	assert_steps(&m, w2, 6);
	s = next(&m);
	assert_int_equal(s.kind, CM_PLAN_TRANSFER); /* 2 leads and leaves */
	assert_int_equal(s.node, 2);
	apply(&m, &s);
	converge(&m);
}

static void test_grow_and_shrink(void **state)
{
	(void)state;
	const uint64_t one[] = {1}, three[] = {1, 2, 3}, five[] = {1, 2, 3, 4, 5};
	struct model m = model_new(false, one, 1, three, 3, 1);
	assert_int_equal(converge(&m), 1 + 2 * 3); /* set, 2 x (add, wait, promote) */
	m = model_new(false, five, 5, three, 3, 5);
	const struct want w[] = {{CM_PLAN_TRANSFER, 5}, {CM_PLAN_REMOVE, 4},
				 {CM_PLAN_REMOVE, 5}, {CM_PLAN_SHARD_SET, 0}, {CM_PLAN_DONE, 0}};
	assert_steps(&m, w, 5);
	/* Already there: nothing to do. */
	m = model_new(false, three, 3, three, 3, 2);
	assert_int_equal(converge(&m), 0);
}

static void test_meta_target_is_the_voter_set(void **state)
{
	(void)state;
	const uint64_t v[] = {1, 2, 3}, t[] = {1, 2, 4};
	struct model m = model_new(true, v, 3, t, 3, 1);
	m.nodes[0] = 1, m.nodes[1] = 2, m.nodes[2] = 3, m.nodes[3] = 4;
	m.st.n_nodes = 4;
	/* 4 is a meta learner already (node add), caught up. */
	m.st.members[3] = 4;
	m.st.kinds[3] = 2;
	m.st.match[3] = 1000;
	m.st.n_members = 4;
	const struct want w[] = {{CM_PLAN_PROMOTE, 4}, {CM_PLAN_REMOVE, 3},
				 {CM_PLAN_ADD_LEARNER, 3}, {CM_PLAN_DONE, 0}};
	assert_steps(&m, w, 4);
	assert_converged(&m);
	/* node remove 3: 3 is no longer an active node, so it is not re-added;
	 * nor is a learner that is no active node kept. */
	m = model_new(true, v, 3, t, 3, 1);
	m.nodes[0] = 1, m.nodes[1] = 2, m.nodes[2] = 4;
	m.st.n_nodes = 3;
	const struct want w2[] = {{CM_PLAN_ADD_LEARNER, 4}, {CM_PLAN_WAIT_CATCHUP, 4},
				  {CM_PLAN_PROMOTE, 4}, {CM_PLAN_REMOVE, 3}, {CM_PLAN_DONE, 0}};
	assert_steps(&m, w2, 5);
	/* Other active nodes stay learners: not promoted, not removed. */
	m = model_new(true, v, 3, v, 3, 1);
	m.st.members[3] = 5;
	m.st.kinds[3] = 2;
	m.st.n_members = 4;
	m.nodes[0] = 1, m.nodes[1] = 2, m.nodes[2] = 3, m.nodes[3] = 5;
	m.st.n_nodes = 4;
	assert_int_equal(next(&m).kind, CM_PLAN_DONE);
}

/* xorshift: a reproducible spread of states. */
static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

/* A random group of nodes 1..8: some voters, some learners, a registry
 * listing them and maybe more; a random target of 1 to 5 nodes. */
static struct model random_model(bool meta)
{
	uint64_t t[5];
	uint32_t nt = 1 + rnd(5);
	for (uint32_t k = 0; k < nt;) {
		uint64_t id = 1 + rnd(8);
		if (!in(t, k, id))
			t[k++] = id;
	}
	uint64_t v[1] = {1 + rnd(8)};
	struct model m = model_new(meta, v, 1, t, nt, v[0]);
	for (uint64_t id = 1; id <= 8; id++) {
		if (id == v[0] || rnd(3) == 0)
			continue;
		uint32_t k = m.st.n_members++;
		m.st.members[k] = id;
		m.st.kinds[k] = (uint8_t)(1 + rnd(2));
		m.st.match[k] = rnd(2) ? 1000 : rnd(1000);
		if (!meta)
			m.st.registry[m.st.n_registry++] = id;
	}
	for (uint64_t id = 1; !meta && id <= 8 && m.st.n_registry < CM_PLAN_MAX; id++)
		if (!in(m.st.registry, m.st.n_registry, id) && rnd(4) == 0)
			m.st.registry[m.st.n_registry++] = id;
	return m; /* min_voters: the target's size, as model_new() sets */
}

static void test_random_states_converge_from_every_intermediate_state(void **state)
{
	(void)state;
	for (int k = 0; k < 3000; k++) {
		struct model m = random_model(k % 3 == 0);
		assert_rerun_converges(&m);
	}
}

static void test_refuses_bad_targets_and_unknown_nodes(void **state)
{
	(void)state;
	const uint64_t v[] = {1, 2, 3};
	struct model m = model_new(false, v, 3, v, 3, 1);
	m.st.nodes = m.nodes;
	struct cm_plan_step s;
	uint64_t bad = 0;
	const uint64_t dup[] = {1, 1}, zero[] = {0, 1}, stranger[] = {1, 9, 2};
	uint64_t many[CM_PLAN_MAX + 1];
	for (uint32_t k = 0; k <= CM_PLAN_MAX; k++)
		many[k] = k + 1;
	assert_int_equal(cm_plan_next(&m.st, v, 0, &s, &bad), -EINVAL);
	assert_int_equal(cm_plan_next(&m.st, NULL, 1, &s, &bad), -EINVAL);
	assert_int_equal(cm_plan_next(&m.st, dup, 2, &s, &bad), -EINVAL);
	assert_int_equal(cm_plan_next(&m.st, zero, 2, &s, &bad), -EINVAL);
	assert_int_equal(cm_plan_next(&m.st, many, CM_PLAN_MAX + 1, &s, &bad), -EINVAL);
	assert_int_equal(cm_plan_next(&m.st, stranger, 3, &s, &bad), CM_ENONODE);
	assert_int_equal(bad, 9);
	assert_int_equal(s.kind, CM_PLAN_DONE); /* nothing to run */
	assert_int_equal(cm_plan_check(&m.st, stranger, 3, NULL), CM_ENONODE);
	assert_int_equal(cm_plan_check(&m.st, v, 3, NULL), 0);
	/* More than 12 replicas at once, old and new: no SHARD_SET can say it. */
	uint64_t nodes[24];
	for (uint32_t k = 0; k < 24; k++)
		nodes[k] = k + 1;
	m.st.nodes = nodes;
	m.st.n_nodes = 24;
	for (uint32_t k = 0; k < 8; k++)
		m.st.registry[k] = k + 1;
	m.st.n_registry = 8;
	const uint64_t far[] = {13, 14, 15, 16, 17};
	assert_int_equal(cm_plan_next(&m.st, far, 5, &s, &bad), -EINVAL);
	/* A removal needs the leader (is it the one to go?). */
	m = model_new(false, v, 3, v, 2, 0);
	m.st.nodes = m.nodes;
	assert_int_equal(cm_plan_next(&m.st, v, 2, &s, &bad), CM_ENOLEADER);
	assert_string_equal(cm_plan_kind_name(CM_PLAN_WAIT_CATCHUP), "wait_catchup");
	assert_string_equal(cm_plan_kind_name((enum cm_plan_kind)99), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replace_one_goes_3_4_3_in_order),
		cmocka_unit_test(test_leader_to_remove_transfers_first),
		cmocka_unit_test(test_promotes_only_within_raft_catchup_margin),
		cmocka_unit_test(test_learners_added_all_before_promotions_and_removed_first),
		cmocka_unit_test(test_grow_and_shrink),
		cmocka_unit_test(test_meta_target_is_the_voter_set),
		cmocka_unit_test(test_random_states_converge_from_every_intermediate_state),
		cmocka_unit_test(test_refuses_bad_targets_and_unknown_nodes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
