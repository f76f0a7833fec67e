/* raft.h: a pure Raft state machine for one group: no I/O, no clock, no threads. */
#ifndef CONFMAN_RAFT_H
#define CONFMAN_RAFT_H

/*
 * The core follows the shape of etcd-io/raft's RawNode. The caller owns time,
 * the network and the disk; it feeds the core ticks (raft_tick), received
 * messages (raft_step) and requests (raft_propose, raft_change, raft_transfer,
 * raft_read_index), and collects what the core wants done in one batch:
 *
 *   while (raft_has_ready(r)) {
 *       struct raft_ready rd;
 *       raft_ready(r, &rd);
 *       send(rd.msgs, early);   // may go before persisting (a leader's appends)
 *       persist(&rd);           // chunks, snapshot, entries, hard state: ONE txn, fsync
 *       send(rd.msgs, !early);  // only after the batch is durable
 *       apply(&rd);             // snapshot restore, committed entries, read states
 *       raft_advance(r);        // the batch is durable and done; frees it
 *   }
 *
 * Between raft_ready() and raft_advance() no other function may be called on
 * that group (the core asserts this): everything a batch points at stays valid
 * until raft_advance(). A node that crashes before raft_advance() must behave
 * as if the batch never happened, which is what "durable" means here.
 *
 * Randomness (election timeouts) comes from the seed in the config; there is no
 * global state, so one process can host thousands of groups.
 *
 * Errors are 0 or negative: negative errno values and the CM_E* codes of
 * include/confman/error.h. Nothing received from the network can make the core
 * assert: malformed or out-of-place messages are rejected with -EBADMSG or
 * ignored as stale, exactly as Raft ignores messages of older terms.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confman/error.h"

typedef uint64_t raft_id;    /* node id; 0 means "none" */
typedef uint64_t raft_term;  /* 0 before the first election */
typedef uint64_t raft_index; /* log index; 0 means "before the first entry" */

/* Most nodes (voters plus learners) in one group's configuration. */
#define RAFT_MAX_NODES 12

enum raft_role { RAFT_FOLLOWER = 1, RAFT_PRECANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

enum raft_node_kind { RAFT_VOTER = 1, RAFT_LEARNER = 2 };

/* A group's membership. Ids are unique and nonzero; order is not meaningful. */
struct raft_conf {
	uint32_t n;
	raft_id ids[RAFT_MAX_NODES];
	uint8_t kinds[RAFT_MAX_NODES]; /* enum raft_node_kind */
};

enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 1, /* caller's command: data is opaque to the core */
	RAFT_ENTRY_NOOP = 2,   /* appended by each new leader (Raft §5.4.2, §8) */
	RAFT_ENTRY_CONF = 3,   /* data is a raft_conf_encode()d configuration */
};

struct raft_entry {
	raft_term term;
	raft_index index;
	uint8_t type; /* enum raft_entry_type */
	uint32_t len;
	void *data; /* len bytes; owner depends on where the entry is found */
};

/* What must be durable before anything else happens. */
struct raft_hard_state {
	raft_term term;
	raft_id vote; /* candidate voted for in term, or 0 */
	raft_index commit;
};

/* A snapshot's identity: the state machine after applying entry `index`. */
struct raft_snap_meta {
	raft_index index;
	raft_term term;
	struct raft_conf conf; /* configuration as of index */
	uint64_t size;         /* bytes of the caller's snapshot data */
};

enum raft_msg_type {
	RAFT_MSG_APPEND = 1,
	RAFT_MSG_APPEND_RESP,
	RAFT_MSG_VOTE,
	RAFT_MSG_VOTE_RESP,
	RAFT_MSG_PREVOTE,
	RAFT_MSG_PREVOTE_RESP,
	RAFT_MSG_HEARTBEAT,
	RAFT_MSG_HEARTBEAT_RESP,
	RAFT_MSG_SNAP,
	RAFT_MSG_SNAP_RESP,
	RAFT_MSG_TIMEOUT_NOW,
	RAFT_MSG_READ_INDEX,
	RAFT_MSG_READ_INDEX_RESP,
	RAFT_MSG_TYPE_COUNT
};

/*
 * One Raft message. Which fields mean something depends on type:
 *
 *   APPEND          index = prev log index, log_term = prev log term,
 *                   commit = leader commit, entries[n_entries]
 *   APPEND_RESP     ok: index = last index now known to match the leader;
 *                   reject: index = the rejected prev index, hint = a hint
 *                   index and log_term = its term (fast back-tracking: the
 *                   largest index <= prev whose term is <= the prev term)
 *   VOTE, PREVOTE   term = the (pre)candidate's term (for PREVOTE: the term it
 *                   would campaign in), index/log_term = its last log entry,
 *                   force = leadership transfer (ignore the leader lease)
 *   *_VOTE_RESP     reject = vote not granted
 *   HEARTBEAT       commit = min(follower match, leader commit), ctx = read seq,
 *                   force = quiesce (the leader goes quiet after this one)
 *   HEARTBEAT_RESP  ctx = echoed read seq
 *   SNAP            snap = meta, offset/len = this chunk, last = final chunk;
 *                   data is NULL when the core emits it: the CALLER attaches
 *                   bytes [offset, offset+len) of its snapshot snap.index before
 *                   sending, or drops the message if it no longer has it
 *   SNAP_RESP       index = snapshot index, offset = next offset the follower
 *                   expects; last = installed (or not needed): match = index
 *   TIMEOUT_NOW     campaign now, skipping PreVote (leadership transfer)
 *   READ_INDEX      ctx = requester's opaque read id (follower -> leader)
 *   READ_INDEX_RESP ctx = echoed, index = read index; reject = could not serve
 */
struct raft_msg {
	uint8_t type; /* enum raft_msg_type */
	bool reject;
	bool force;
	bool last;
	raft_id from;
	raft_id to;
	raft_term term;
	raft_index index;
	raft_term log_term;
	raft_index commit;
	raft_index hint;
	uint64_t ctx;
	uint32_t n_entries;
	struct raft_entry *entries; /* borrowed: see struct raft_ready */
	struct raft_snap_meta snap;
	uint64_t offset;
	uint32_t len;
	const void *data; /* SNAP chunk bytes, len of them */
	bool early; /* in a raft_ready: may be sent before the batch is durable (local, not on the wire) */
};

/* A snapshot chunk a follower received: store data at offset of snapshot meta.index. */
struct raft_snap_chunk {
	struct raft_snap_meta meta;
	uint64_t offset;
	uint32_t len;
	void *data; /* owned by the core until raft_advance() */
};

/* A linearizable read point: serve read ctx once applied index >= index. */
struct raft_read_state {
	uint64_t ctx;
	raft_index index;
};

/*
 * One batch of work. All pointers are owned by the core and valid until
 * raft_advance(). The caller makes items 1-4 durable in ONE atomic write, in
 * this order of meaning, then does 5-7:
 *
 *  1. chunks: write each into the staging area of snapshot chunk.meta.index
 *     (offset 0 of a new index discards any other staged snapshot).
 *  2. snap_installed: the staged snapshot `snap` becomes the current one;
 *     delete persisted entries <= snap.index, or ALL entries if log_reset.
 *  3. entries: delete persisted entries with index >= entries[0].index, then
 *     append these (contiguous, increasing index).
 *  4. hs_changed: store hs.
 *  5. msgs: send them (attach snapshot data to SNAP messages). Messages may be
 *     lost, duplicated or reordered; Raft tolerates that. Those marked
 *     `early` (a leader's APPENDs, in a term and vote already durable) may be
 *     sent before items 1-4 are durable, so the followers' writes overlap the
 *     leader's (Raft thesis §10.2.1): the leader counts its own log towards
 *     the commit quorum only up to what raft_advance() reported durable.
 *  6. if snap_installed, replace the state machine with the snapshot; then
 *     apply committed[] in order (NOOP and CONF entries only advance the
 *     applied index); then serve reads[] whose index is applied.
 *  7. raft_advance().
 */
struct raft_ready {
	struct raft_snap_chunk *chunks;
	uint32_t n_chunks;
	bool snap_installed;
	bool log_reset;
	struct raft_snap_meta snap;
	struct raft_entry *entries;
	uint32_t n_entries;
	bool hs_changed;
	struct raft_hard_state hs;
	struct raft_msg *msgs;
	uint32_t n_msgs;
	struct raft_entry *committed;
	uint32_t n_committed;
	struct raft_read_state *reads;
	uint32_t n_reads;
	/* Soft state, for the caller's information (not persisted). */
	raft_id leader;
	enum raft_role role;
};

/* Tunables. raft_config_default() fills sensible values; id and seed are the caller's. */
struct raft_config {
	raft_id id;
	uint64_t seed;              /* for randomised election timeouts */
	uint32_t election_ticks;    /* follower timeout; randomised in [e, 2e) */
	uint32_t heartbeat_ticks;   /* leader heartbeat interval, < election_ticks */
	bool pre_vote;              /* Raft thesis §9.6 */
	bool check_quorum;          /* leader steps down without a live majority; also
				     * the leader lease: followers that heard from a
				     * leader within the election timeout ignore (pre)votes */
	uint32_t max_msg_entries;   /* entries in one APPEND */
	uint32_t max_msg_bytes;     /* payload bytes in one APPEND (soft: >= 1 entry) */
	uint32_t max_inflight;      /* APPENDs in flight to one follower */
	uint32_t max_apply_entries; /* committed entries handed out per batch */
	uint32_t max_entry_bytes;   /* largest proposal accepted */
	uint64_t max_uncommitted_bytes; /* proposals beyond this get -EBUSY */
	uint32_t max_pending_reads; /* ReadIndex requests queued at the leader */
	uint32_t max_outbox;        /* messages buffered per batch; more are dropped */
	uint32_t snap_chunk_bytes;  /* snapshot chunk size */
	uint32_t learner_catchup;   /* promote only if match + this >= leader last */
	/* Quiescence (as in CockroachDB/TiKV's hibernation): a leader whose group
	 * has been idle this many ticks, every member caught up, sends one last
	 * heartbeat marked quiesce and stops ticking; followers that get it stop
	 * their election timers. Any activity wakes the group. 0 = never. The
	 * caller MUST then call raft_wake() on a quiesced follower whose leader's
	 * node it believes unreachable (node liveness), or a dead leader goes
	 * unnoticed. */
	uint32_t quiesce_ticks;
};

struct raft_status {
	raft_id id;
	raft_id leader;
	enum raft_role role;
	raft_term term;
	raft_id vote;
	raft_index commit;
	raft_index applied;
	raft_index first_index; /* first entry held in memory (snap_index + 1 if none) */
	raft_index last_index;
	raft_index snap_index;
	raft_term snap_term;
	raft_id transferee; /* leadership transfer target, or 0 */
	uint32_t leader_silence; /* follower: ticks since it last heard from a leader */
	bool quiesced;           /* not ticking until something happens */
	struct raft_conf conf;  /* latest configuration in the log (in effect) */
	raft_index conf_index;  /* the entry that carried conf (0: the boot one) */
};

/* What a node recovers from its storage at start (or the bootstrap state). */
struct raft_boot {
	struct raft_hard_state hs;
	/* Last snapshot. For a brand-new cluster: index 0, term 0, conf the
	 * initial members and nothing else: every member then writes the same
	 * CONF entry at index 1 in term 1, which its first batch persists.
	 * For a node joining an existing group: all zero (conf.n = 0). */
	struct raft_snap_meta snap;
	const struct raft_entry *entries; /* persisted entries after snap.index; copied */
	uint32_t n_entries;
	raft_index applied; /* state machine's applied index, >= snap.index */
};

struct raft; /* opaque: everything one group needs */

enum raft_change_op {
	RAFT_ADD_LEARNER = 1, /* add a non-voting member */
	RAFT_PROMOTE,         /* make a caught-up learner a voter */
	RAFT_REMOVE,          /* remove a voter or learner */
};

/* raft_config_default - defaults: election 10 ticks, heartbeat 1, PreVote and
 * CheckQuorum on, 256 entries / 1 MiB per APPEND, 64 in flight, ... */
void raft_config_default(struct raft_config *cfg, raft_id id, uint64_t seed);

/*
 * raft_new - create a group from its recovered state.
 * @cfg:  tunables (copied)
 * @boot: recovered hard state, snapshot meta and entries (copied)
 * @out:  the new group; owned by the caller, freed with raft_free()
 * Returns 0, -EINVAL (bad config, non-contiguous entries, commit beyond the
 * log, applied outside [snap.index, commit]), -ENOMEM.
 */
int raft_new(const struct raft_config *cfg, const struct raft_boot *boot, struct raft **out);

/* raft_free - free a group and everything it holds (NULL is fine). */
void raft_free(struct raft *r);

/*
 * raft_tick - one unit of logical time. Followers campaign after a randomised
 * election timeout; leaders send heartbeats and check their quorum.
 */
void raft_tick(struct raft *r);

/*
 * raft_step - feed one received message; m and its entries are borrowed for
 * the duration of the call.
 * Returns 0 (also for stale or ignored messages), -EBADMSG (malformed: bad
 * type, entries out of order, to another node ...), -ENOMEM.
 */
int raft_step(struct raft *r, const struct raft_msg *m);

/*
 * raft_propose - append a command (copied) to the leader's log.
 * @index: out, the entry's index (may be NULL)
 * Returns 0, CM_ENOTLEADER (see raft_leader() for a hint), CM_ETRANSFERRING,
 * -EMSGSIZE (len > max_entry_bytes), -EBUSY (too many uncommitted bytes),
 * -ENOMEM.
 */
int raft_propose(struct raft *r, const void *data, uint32_t len, raft_index *index);

/*
 * raft_change - propose a one-server membership change (Raft thesis §4.1):
 * only one may be pending, and only after the leader committed an entry of
 * its term. A new node is added as a learner and promoted once caught up.
 * Returns 0, CM_ENOTLEADER, CM_ETRANSFERRING, CM_ECONFPENDING, CM_ELAGGING
 * (promote of a learner that has not caught up), CM_EUNKNOWNPEER (promote or
 * remove of a non-member), -EEXIST (add of a member), -EINVAL (bad id, would
 * remove the last voter), -ENOSPC (RAFT_MAX_NODES reached), -ENOMEM.
 */
int raft_change(struct raft *r, enum raft_change_op op, raft_id id, raft_index *index);

/*
 * raft_transfer - hand leadership to voter `to`: proposals are refused while
 * it runs; it is abandoned after one election timeout.
 * Returns 0, CM_ENOTLEADER, CM_ETRANSFERRING, CM_EUNKNOWNPEER (not a voter),
 * -EINVAL (to is this node).
 */
int raft_transfer(struct raft *r, raft_id to);

/*
 * raft_read_index - start a linearizable read (Raft thesis §6.4). The read
 * state {ctx, index} appears in a later batch's reads[] once the leader has
 * confirmed its leadership with a quorum; serve it when applied >= index.
 * On a follower it is forwarded to the leader; a lost request simply never
 * completes, so the caller keeps a timeout, and a duplicated answer can hand
 * out the same ctx twice, so the caller ignores a ctx it no longer waits for.
 * Returns 0, CM_ENOLEADER, -EBUSY (max_pending_reads queued).
 */
int raft_read_index(struct raft *r, uint64_t ctx);

/* raft_wake - leave quiescence: a follower restarts its election timer (its
 * leader's node seems gone), a leader resumes heartbeats. Harmless otherwise. */
void raft_wake(struct raft *r);

/* raft_campaign - start an election now (skips PreVote). CM_EUNKNOWNPEER if not a voter. */
int raft_campaign(struct raft *r);

/*
 * raft_snapshot_taken - the caller has made a snapshot of its state machine at
 * applied index `index`, `size` bytes. The core records it (the term and conf
 * at index come from its log) and drops in-memory entries up to
 * index - keep, keeping a tail for slow followers. The caller may then delete
 * persisted entries up to the same point.
 * @meta: out, the snapshot's meta to persist with it (may be NULL)
 * Returns 0, -EINVAL (index beyond applied: a caller's bug), -EALREADY (the
 * core holds a snapshot at or past index already: nothing was done).
 *
 * -EALREADY is a normal outcome, not a failure: raft_step() installs a
 * leader's snapshot at once (snapshot index and applied index move to it),
 * while the caller hears of it only in the next batch. A caller that takes
 * its own snapshot BEFORE that batch would snapshot an older state; it checks
 * raft_snapshot_index() first and skips the work when its applied index is
 * not past it (the batch then hands it the newer snapshot).
 */
int raft_snapshot_taken(struct raft *r, raft_index index, uint64_t size, uint64_t keep,
			struct raft_snap_meta *meta);

/* raft_snapshot_index - the index of the core's current snapshot (0: none):
 * the caller's own, or a leader's, the latter possibly not yet handed out in
 * a batch (see raft_snapshot_taken). */
raft_index raft_snapshot_index(const struct raft *r);

/* raft_has_ready - whether raft_ready() would return any work. */
bool raft_has_ready(const struct raft *r);

/* raft_ready - take the next batch; see struct raft_ready. Asserts none is outstanding. */
void raft_ready(struct raft *r, struct raft_ready *rd);

/* raft_advance - the batch from raft_ready() is durable, sent and applied. */
void raft_advance(struct raft *r);

/* raft_status - a snapshot of the group's state. */
void raft_status(const struct raft *r, struct raft_status *st);

/*
 * raft_member_progress - on the leader: how far member id's log is known to
 * match (the leader's own: its last index) and whether it was heard from
 * within the last election timeout.
 * Returns 0, CM_ENOTLEADER, CM_EUNKNOWNPEER.
 */
int raft_member_progress(const struct raft *r, raft_id id, raft_index *match, bool *active);
/* raft_leader - the current leader known to this node, or 0. */
raft_id raft_leader(const struct raft *r);

/* raft_quiesced - whether the group is quiet (not ticking): as
 * raft_status's field, without copying the rest (a host checks every
 * group on every tick). */
bool raft_quiesced(const struct raft *r);

/*
 * raft_conf_encode - serialise a configuration into buf (RAFT_CONF_MAX_BYTES).
 * Returns the number of bytes written.
 * raft_conf_decode - parse one; returns 0 or -EBADMSG (bad length, too many
 * nodes, zero or duplicate id, unknown kind).
 */
#define RAFT_CONF_MAX_BYTES (4 + RAFT_MAX_NODES * 9)
uint32_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf);
int raft_conf_decode(const void *buf, uint32_t len, struct raft_conf *c);

/* raft_conf_kind - the kind of member id in c, or 0 if not a member. */
int raft_conf_kind(const struct raft_conf *c, raft_id id);

/* raft_msg_type_name - "APPEND", "VOTE_RESP", ... or "?" */
const char *raft_msg_type_name(int type);

/* raft_role_name - "follower", "leader", ... */
const char *raft_role_name(enum raft_role role);

#endif /* CONFMAN_RAFT_H */
