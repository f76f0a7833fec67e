/* plan.h: the next step of a replica-set change, from a group's state (pure: no I/O). */
#ifndef CONFMAN_PLAN_H
#define CONFMAN_PLAN_H

#include <stdbool.h>
#include <stdint.h>

/*
 * confmanctl's `shard move` and `node remove` converge a group to a target
 * replica set by repeating: read the state, plan ONE step, run it. The plan
 * depends only on the state, so an interrupted command re-run from any
 * intermediate state goes on from where the cluster is. The order:
 *   1. grow the registry set to registry ∪ members ∪ target (SHARD_SET; a
 *      server needs every Raft member listed before it runs a replica);
 *   2. ADD_LEARNER each target node that is no member;
 *   3. PROMOTE each target learner that has caught up (match + 64 >= the
 *      leader's last index, Raft's own test), else WAIT_CATCHUP for it;
 *   4. TRANSFER leadership away from a leader that is to be removed;
 *   5. REMOVE, one at a time, learners then voters that are not targets;
 *      all targets are voters by then, so the voter count never drops
 *      below the target's size (3 -> 4 -> 3, never 3 -> 2 -> 3);
 *   6. shrink the registry set to the target (SHARD_SET); then DONE.
 * The meta group has no registry set (every active node runs a meta
 * replica): the target is its VOTER set; a voter outside it is removed
 * and, while it is an active node (in `nodes`), added back as a learner;
 * a learner that is not an active node is removed; steps 1 and 6 do not
 * apply.
 */

#define CM_PLAN_MAX 12          /* members, replicas, targets (struct cm_shard) */
#define CM_PLAN_CATCHUP 64      /* raft's learner_catchup: entries a learner may trail */
#define CM_PLAN_MAX_NODES 4096  /* CM_CLIENT_MAX_NODES */

enum cm_plan_kind {
	CM_PLAN_DONE = 0,
	CM_PLAN_SHARD_SET,    /* set the registry's replica set to step.set */
	CM_PLAN_ADD_LEARNER,  /* CONF_CHANGE ADD_LEARNER step.node */
	CM_PLAN_WAIT_CATCHUP, /* nothing to do but wait for step.node's match */
	CM_PLAN_PROMOTE,      /* CONF_CHANGE PROMOTE step.node */
	CM_PLAN_TRANSFER,     /* TRANSFER away from step.node (the leader) to step.to */
	CM_PLAN_REMOVE,       /* CONF_CHANGE REMOVE step.node */
};

struct cm_plan_state {
	bool meta;             /* the meta group: no registry set; target = voters */
	uint64_t leader;       /* node id, 0 unknown */
	uint64_t last;         /* the leader's last log index */
	uint32_t n_members;
	uint64_t members[CM_PLAN_MAX];
	uint8_t kinds[CM_PLAN_MAX];   /* 1 voter, 2 learner (0, an old server's: voter) */
	uint64_t match[CM_PLAN_MAX];  /* the leader's view; 0 unknown */
	uint32_t n_registry;          /* not for meta */
	uint64_t registry[CM_PLAN_MAX];
	uint32_t n_nodes;             /* active nodes; every target must be one */
	const uint64_t *nodes;
};

struct cm_plan_step {
	enum cm_plan_kind kind;
	uint64_t node; /* ADD_LEARNER, WAIT_CATCHUP, PROMOTE, REMOVE: the node;
			* TRANSFER: the leader to move away from */
	uint64_t to;   /* TRANSFER: the preferred target voter (0: the server's pick) */
	uint32_t n_set;
	uint64_t set[CM_PLAN_MAX]; /* SHARD_SET: the new replica set */
};

/* cm_plan_kind_name - "shard_set", "add_learner", ... "done" (for JSON). */
const char *cm_plan_kind_name(enum cm_plan_kind kind);

/*
 * cm_plan_check - whether target[0, n) can be a group's replica set: 1 to
 * CM_PLAN_MAX ids, nonzero, distinct, each an active node of st.
 * Returns 0, -EINVAL (empty, too many, zero or repeated), CM_ENONODE
 * (*bad: the id that is no active node).
 */
int cm_plan_check(const struct cm_plan_state *st, const uint64_t *target, uint32_t n,
		  uint64_t *bad);

/*
 * cm_plan_next - the one next step that brings st to target (see above).
 * Returns 0 and *step, an error of cm_plan_check() (*bad set for
 * CM_ENONODE; may be NULL), -EINVAL for a state over the bounds, or
 * CM_ENOLEADER when the step depends on a leader st does not know.
 */
int cm_plan_next(const struct cm_plan_state *st, const uint64_t *target, uint32_t n,
		 struct cm_plan_step *step, uint64_t *bad);

#endif /* CONFMAN_PLAN_H */
