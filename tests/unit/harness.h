/* harness.h: an in-memory cluster of Raft groups for scripted scenario tests. */
#ifndef CONFMAN_TESTS_HARNESS_H
#define CONFMAN_TESTS_HARNESS_H

/*
 * The harness plays the caller of raft.h for N nodes at once: it owns a
 * message queue the test controls (deliver, drop, inspect), an in-memory
 * "disk" per node (log, hard state, snapshot, staged snapshot chunks) and an
 * in-memory state machine per node (the list of applied entries). It checks
 * the Raft safety properties as it goes and fails the running cmocka test on
 * the first violation:
 *   - Election Safety: at most one leader per term;
 *   - Leader Completeness: a new leader holds every entry anyone applied;
 *   - Log Matching between the disks, checked each time th_stabilize()
 *     finishes;
 *   - one vote per term, terms and commit never go backwards on disk;
 *   - a message goes out only once what it promises is on disk (acked
 *     entries, the vote a VOTE or granted VOTE_RESP stands for);
 *   - State Machine Safety: every node applies the same entry at an index,
 *     in order, without gaps, and only entries it has persisted.
 *
 * Node ids are 1..n; nodes[id - 1] is node id. Nothing here is thread-safe.
 * Out of memory aborts (a test harness has no better policy).
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "raft.h"

#define TH_MAX_NODES RAFT_MAX_NODES
#define TH_ANY 0 /* wildcard for from, to and type in filters */

/* A brand-new cluster's log starts with the bootstrap CONF entry (raft.h,
 * struct raft_boot): index 1, term 1. The first leader's NOOP follows it. */
#define TH_BOOT_INDEX 1
#define TH_BOOT_TERM 1

/* One entry of a node's state machine (or of its persisted log). */
struct th_applied {
	raft_index index;
	raft_term term;
	uint8_t type;
	uint32_t len;
	uint8_t *data; /* owned, len bytes (NULL if len == 0) */
};

/* A read state a node's batch handed out, with the applied index at that time. */
struct th_read {
	uint64_t ctx;
	raft_index index;
	raft_index applied_then;
};

struct th_node {
	raft_id id;
	struct raft *r; /* owned */
	struct raft_config cfg;
	bool down;      /* neither ticks nor receives */

	/* Disk. */
	struct raft_hard_state hs;
	struct raft_snap_meta snap; /* current snapshot */
	uint8_t *snap_data;         /* owned, snap.size bytes */
	raft_index staged_index;    /* snapshot being received, 0 if none */
	uint8_t *staged;            /* owned */
	uint64_t staged_size;
	uint64_t staged_have;       /* contiguous bytes received */
	struct th_applied *log;     /* owned: persisted entries log_first.. */
	uint32_t n_log, cap_log;
	raft_index log_first;

	/* State machine. */
	struct th_applied *applied; /* owned: every applied entry, index 1.. */
	uint32_t n_applied, cap_applied;
	raft_index applied_index;
	struct th_read *reads; /* owned */
	uint32_t n_reads, cap_reads;

	uint32_t n_refused_chunks;  /* absurd chunks the "disk" refused */

	/* What the batches said. */
	uint32_t n_installed;             /* snapshots installed */
	struct raft_snap_meta installed;  /* the last one */
	bool installed_log_reset;
	uint32_t n_batches;
	uint32_t max_batch_msgs;      /* most messages in one batch */
	uint32_t max_batch_committed; /* most committed entries in one batch */
	raft_id leader;                   /* soft state of the last batch */
	enum raft_role role;
};

/* One message as the network saw it. */
struct th_trace {
	uint8_t type;
	bool reject;
	bool force;
	raft_id from, to;
	raft_term term;
	raft_index index;
	raft_term log_term;
	raft_index commit;
	raft_index hint;
	uint64_t ctx;
	uint32_t n_entries;
	uint64_t entry_bytes;      /* payload bytes of the entries carried */
	raft_term last_entry_term; /* term of the last entry carried, 0 if none */
	raft_index snap_index;
	uint64_t offset;
	uint32_t len;
	bool last;
};

struct th_qmsg {
	struct raft_msg m;
	struct raft_entry *ents; /* owned: what m.entries pointed at, n_ents of them */
	uint32_t n_ents;
	void *data;              /* owned: SNAP chunk bytes */
};

struct th_chain {
	bool set;
	struct th_applied e; /* data owned */
};

struct th_cluster {
	uint32_t n;
	struct th_node nodes[TH_MAX_NODES];
	bool cut[TH_MAX_NODES + 1][TH_MAX_NODES + 1]; /* cut[from][to] */

	struct th_qmsg *q; /* owned FIFO of messages in flight */
	uint32_t nq, capq;

	struct th_trace *trace; /* owned: every message any node emitted */
	uint32_t n_trace, cap_trace;

	uint32_t snap_msgs_dropped; /* SNAP messages whose snapshot was gone */

	struct th_chain *chain; /* owned: the entry first applied at each index */
	raft_index n_chain;

	struct {
		raft_term term;
		raft_id id;
	} leaders[256]; /* Election Safety record, a ring: bounded memory */
	uint32_t n_leaders;
};

/* th_config - raft_config_default() with id 0 and seed 0: a template for th_new(). */
void th_config(struct raft_config *cfg);

/*
 * th_new - a cluster of n voters (ids 1..n) bootstrapped with conf {1..n} at
 * snapshot index 0. Each node gets *tmpl (NULL: th_config()) with its id and
 * seed tmpl->seed * 1000 + id.
 */
struct th_cluster *th_new(uint32_t n, const struct raft_config *tmpl);

/* th_add_node - a new empty node (conf.n = 0, joining); returns its id. */
raft_id th_add_node(struct th_cluster *c, const struct raft_config *tmpl);

/* th_free - free everything (NULL is fine). Never asserts. */
void th_free(struct th_cluster *c);

/* th_teardown - cmocka teardown: th_free(*state). */
int th_teardown(void **state);
#define TH_TEST(f) cmocka_unit_test_teardown(f, th_teardown)

struct th_node *th_node(struct th_cluster *c, raft_id id);
struct raft *th_raft(struct th_cluster *c, raft_id id);
struct raft_status th_status(struct th_cluster *c, raft_id id);
enum raft_role th_role(struct th_cluster *c, raft_id id);
raft_term th_term(struct th_cluster *c, raft_id id);
raft_index th_commit(struct th_cluster *c, raft_id id);
raft_index th_last(struct th_cluster *c, raft_id id);

/* th_process - handle node id's batches until it has none (no delivery). */
void th_process(struct th_cluster *c, raft_id id);
void th_process_all(struct th_cluster *c);

/* th_tick - tick node id `ticks` times, processing its batches; no delivery. */
void th_tick(struct th_cluster *c, raft_id id, uint32_t ticks);

/*
 * th_tick_alone - tick node id `ticks` times dropping everything it emits:
 * a node cut off from everyone. Ticking 2 * election_ticks lets its election
 * timer (and its leader lease) expire; with PreVote it keeps its term.
 */
void th_tick_alone(struct th_cluster *c, raft_id id, uint32_t ticks);

/* th_tick_all - `ticks` times: tick every node that is up, then stabilize. */
void th_tick_all(struct th_cluster *c, uint32_t ticks);

/* th_stabilize - process batches and deliver every message until quiet. */
void th_stabilize(struct th_cluster *c);

/*
 * Message queue. Filters take TH_ANY (0) as a wildcard for from, to and type.
 * th_deliver steps the matching messages queued now into their targets and
 * processes the targets' batches (replies are queued, not delivered). Messages
 * across a cut link or to a down node are dropped on delivery.
 */
uint32_t th_deliver(struct th_cluster *c, raft_id from, raft_id to, int type);
uint32_t th_drop(struct th_cluster *c, raft_id from, raft_id to, int type);
/*
 * th_deliver_chaos - deliver every queued message in a random order (from the
 * xorshift state *rng, nonzero), dropping drop_pct percent of them and
 * delivering dup_pct percent of the rest twice. Returns how many were queued.
 */
uint32_t th_deliver_chaos(struct th_cluster *c, uint64_t *rng, uint32_t drop_pct,
			  uint32_t dup_pct);
uint32_t th_count(const struct th_cluster *c, raft_id from, raft_id to, int type);
/* The nth (0-based) matching queued message, or NULL; valid until the queue changes. */
struct raft_msg *th_msg(struct th_cluster *c, raft_id from, raft_id to, int type, uint32_t nth);

/* th_step - raft_step(node to, m) and process the node's batches; returns raft_step's code. */
int th_step(struct th_cluster *c, raft_id to, const struct raft_msg *m);

/* Trace of every emitted message: count matching ones (reject: -1 any, 0 no, 1 yes). */
uint32_t th_trace_count(const struct th_cluster *c, raft_id from, raft_id to, int type,
			int reject);
void th_trace_clear(struct th_cluster *c);

/* Network partitions and crashes. */
void th_cut(struct th_cluster *c, raft_id a, raft_id b); /* both directions */
void th_isolate(struct th_cluster *c, raft_id id);
void th_heal(struct th_cluster *c);
void th_down(struct th_cluster *c, raft_id id);
void th_up(struct th_cluster *c, raft_id id);

/*
 * th_restart - crash node id and start it again from its disk: hard state,
 * snapshot and persisted entries after it; its state machine (applied index
 * and entries) is durable too, like Confman's kv in the same store. Messages
 * in flight stay in flight.
 */
void th_restart(struct th_cluster *c, raft_id id);

/* th_leader - the leader with the highest term among up nodes, or 0. */
raft_id th_leader(struct th_cluster *c);
uint32_t th_count_role(struct th_cluster *c, enum raft_role role);

/* th_elect - raft_campaign(id), stabilize, assert id leads and committed its NOOP. */
raft_id th_elect(struct th_cluster *c, raft_id id);

/* th_wait_leader - tick all until some node leads; its id, or 0 after max_ticks. */
raft_id th_wait_leader(struct th_cluster *c, uint32_t max_ticks);

/* th_propose - raft_propose(id, s without its NUL) and process; returns the code. */
int th_propose(struct th_cluster *c, raft_id id, const char *s);

/* State machine queries. */
bool th_applied_has(const struct th_cluster *c, raft_id id, const char *s);
raft_index th_applied_index_of(const struct th_cluster *c, raft_id id, const char *s);
raft_index th_applied(const struct th_cluster *c, raft_id id);
uint32_t th_applied_normal(const struct th_cluster *c, raft_id id);

/*
 * th_snapshot - snapshot node id's state machine at index (its applied entries
 * <= index, serialised), call raft_snapshot_taken(index, size, keep) and on
 * success make it the node's current snapshot and compact its disk log.
 * Returns raft_snapshot_taken's code.
 */
int th_snapshot(struct th_cluster *c, raft_id id, raft_index index, uint64_t keep);

/* th_log_term - the term of entry index on node id's disk, 0 if it holds none. */
raft_term th_log_term(struct th_cluster *c, raft_id id, raft_index index);

/* th_conf_voters - a conf of voters ids[0..n). */
struct raft_conf th_conf_voters(const raft_id *ids, uint32_t n);

#endif /* CONFMAN_TESTS_HARNESS_H */
