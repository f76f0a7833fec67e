/* plan.c: the next step of a replica-set change (plan.h): a pure function of the state. */
#include "client/plan.h"

#include <errno.h>
#include <string.h>

#include "confman/error.h"

enum { KIND_VOTER = 1, KIND_LEARNER = 2 };

const char *cm_plan_kind_name(enum cm_plan_kind kind)
{
	static const char *const names[] = {"done",    "shard_set", "add_learner", "wait_catchup",
					    "promote", "transfer",  "remove"};
	return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

static bool has(const uint64_t *ids, uint32_t n, uint64_t id)
{
	for (uint32_t k = 0; k < n; k++)
		if (ids[k] == id)
			return true;
	return false;
}

/* Index of id among the members, or -1. */
static int member(const struct cm_plan_state *st, uint64_t id)
{
	for (uint32_t k = 0; k < st->n_members; k++)
		if (st->members[k] == id)
			return (int)k;
	return -1;
}

static bool is_voter(const struct cm_plan_state *st, uint32_t k)
{
	return st->kinds[k] != KIND_LEARNER; /* 0: a server from before learners */
}

static bool caught_up(const struct cm_plan_state *st, uint32_t k)
{
	return st->leader != 0 && st->match[k] != 0 && st->match[k] + CM_PLAN_CATCHUP >= st->last;
}

int cm_plan_check(const struct cm_plan_state *st, const uint64_t *target, uint32_t n,
		  uint64_t *bad)
{
	if (n == 0 || n > CM_PLAN_MAX || target == NULL)
		return -EINVAL;
	for (uint32_t k = 0; k < n; k++)
		if (target[k] == 0 || has(target, k, target[k]))
			return -EINVAL;
	for (uint32_t k = 0; k < n; k++) {
		if (!has(st->nodes, st->n_nodes, target[k])) {
			if (bad)
				*bad = target[k];
			return CM_ENONODE;
		}
	}
	return 0;
}

/* Append id to a set of at most CM_PLAN_MAX unless it is there. */
static int set_add(struct cm_plan_step *s, uint64_t id)
{
	if (has(s->set, s->n_set, id))
		return 0;
	if (s->n_set == CM_PLAN_MAX)
		return -EINVAL;
	s->set[s->n_set++] = id;
	return 0;
}

/* Step 1: registry ∪ members ∪ target, when that is more than the registry. */
static int grow_registry(const struct cm_plan_state *st, const uint64_t *t, uint32_t n,
			 struct cm_plan_step *s)
{
	s->n_set = 0;
	int rv = 0;
	for (uint32_t k = 0; rv == 0 && k < st->n_registry; k++)
		rv = set_add(s, st->registry[k]);
	for (uint32_t k = 0; rv == 0 && k < st->n_members; k++)
		rv = set_add(s, st->members[k]);
	for (uint32_t k = 0; rv == 0 && k < n; k++)
		rv = set_add(s, t[k]);
	if (rv == 0 && s->n_set > st->n_registry)
		s->kind = CM_PLAN_SHARD_SET;
	return rv;
}

/* Steps 2 and 3: every target a caught-up voter. */
static void grow_voters(const struct cm_plan_state *st, const uint64_t *t, uint32_t n,
			struct cm_plan_step *s)
{
	for (uint32_t k = 0; k < n; k++) {
		if (member(st, t[k]) < 0) {
			*s = (struct cm_plan_step){.kind = CM_PLAN_ADD_LEARNER, .node = t[k]};
			return;
		}
	}
	int waiting = -1;
	for (uint32_t k = 0; k < n; k++) {
		int m = member(st, t[k]);
		if (is_voter(st, (uint32_t)m))
			continue;
		if (caught_up(st, (uint32_t)m)) {
			*s = (struct cm_plan_step){.kind = CM_PLAN_PROMOTE, .node = t[k]};
			return;
		}
		if (waiting < 0 || st->match[m] < st->match[waiting])
			waiting = m; /* the one furthest behind: it decides */
	}
	if (waiting >= 0)
		*s = (struct cm_plan_step){.kind = CM_PLAN_WAIT_CATCHUP,
					   .node = st->members[waiting]};
}

/* Whether member k leaves the configuration (step 5). */
static bool leaves(const struct cm_plan_state *st, const uint64_t *t, uint32_t n, uint32_t k)
{
	uint64_t id = st->members[k];
	if (has(t, n, id))
		return false;
	if (!st->meta)
		return true;
	/* meta: voters outside the target; learners that are no active node. */
	return is_voter(st, k) || !has(st->nodes, st->n_nodes, id);
}

/* The target voter most caught up, other than the leader: 0 if none. */
static uint64_t successor(const struct cm_plan_state *st, const uint64_t *t, uint32_t n)
{
	int best = -1;
	for (uint32_t k = 0; k < st->n_members; k++) {
		if (st->members[k] == st->leader || !is_voter(st, k) || !has(t, n, st->members[k]))
			continue;
		if (best < 0 || st->match[k] > st->match[best])
			best = (int)k;
	}
	return best < 0 ? 0 : st->members[best];
}

/* Steps 4 and 5: one member out, learners first, never the leader. */
static int shrink_members(const struct cm_plan_state *st, const uint64_t *t, uint32_t n,
			  struct cm_plan_step *s)
{
	int out = -1;
	for (uint32_t k = 0; k < st->n_members; k++)
		if (leaves(st, t, n, k) && (out < 0 || (is_voter(st, (uint32_t)out) &&
							!is_voter(st, k))))
			out = (int)k;
	if (out < 0)
		return 0;
	if (!is_voter(st, (uint32_t)out)) {
		/* A learner: no quorum or leadership depends on it. */
		*s = (struct cm_plan_step){.kind = CM_PLAN_REMOVE, .node = st->members[out]};
		return 0;
	}
	if (st->leader == 0)
		return CM_ENOLEADER;
	int lead = member(st, st->leader);
	if (lead >= 0 && leaves(st, t, n, (uint32_t)lead)) {
		*s = (struct cm_plan_step){.kind = CM_PLAN_TRANSFER, .node = st->leader,
					   .to = successor(st, t, n)};
		return 0;
	}
	*s = (struct cm_plan_step){.kind = CM_PLAN_REMOVE, .node = st->members[out]};
	return 0;
}

/* Step 6: the registry set becomes the target; meta: active nodes learners. */
static void finish(const struct cm_plan_state *st, const uint64_t *t, uint32_t n,
		   struct cm_plan_step *s)
{
	if (st->meta) {
		for (uint32_t k = 0; k < st->n_nodes; k++) {
			if (member(st, st->nodes[k]) < 0) {
				*s = (struct cm_plan_step){.kind = CM_PLAN_ADD_LEARNER,
							   .node = st->nodes[k]};
				return;
			}
		}
		return;
	}
	bool same = st->n_registry == n;
	for (uint32_t k = 0; same && k < n; k++)
		same = has(st->registry, st->n_registry, t[k]);
	if (same)
		return;
	s->kind = CM_PLAN_SHARD_SET;
	s->n_set = n;
	memcpy(s->set, t, n * sizeof(*t));
}

int cm_plan_next(const struct cm_plan_state *st, const uint64_t *target, uint32_t n,
		 struct cm_plan_step *step, uint64_t *bad)
{
	*step = (struct cm_plan_step){.kind = CM_PLAN_DONE};
	int rv = cm_plan_check(st, target, n, bad);
	if (rv != 0)
		return rv;
	if (st->n_members > CM_PLAN_MAX || st->n_registry > CM_PLAN_MAX ||
	    st->n_nodes > CM_PLAN_MAX_NODES)
		return -EINVAL;
	if (!st->meta && (rv = grow_registry(st, target, n, step)) != 0)
		return rv; /* more than CM_PLAN_MAX replicas at once */
	if (step->kind != CM_PLAN_DONE)
		return 0;
	grow_voters(st, target, n, step);
	if (step->kind != CM_PLAN_DONE)
		return 0;
	rv = shrink_members(st, target, n, step);
	if (rv != 0 || step->kind != CM_PLAN_DONE)
		return rv;
	finish(st, target, n, step);
	return 0;
}
