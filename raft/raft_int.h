/* raft_int.h: the inside of one Raft group, shared by the raft/ modules. */
#ifndef CONFMAN_RAFT_INT_H
#define CONFMAN_RAFT_INT_H

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"

/* Hard bounds on what a peer may declare, whatever our own config says. */
#define RAFT_WIRE_MAX_ENTRIES (1u << 16)   /* entries in one APPEND */
#define RAFT_WIRE_MAX_ENTRY (64u << 20)    /* bytes of one entry */
#define RAFT_WIRE_MAX_CHUNK (64u << 20)    /* bytes of one snapshot chunk */

/* ---- log.c: the in-memory log, a ring of entries after a base point ---- */

/*
 * Entries base+1 .. base+count, in a power-of-two ring. The entry at `base`
 * itself is gone (compacted or in the snapshot) but its term is kept, since
 * the next APPEND needs it as prev term. Payloads are owned by the log.
 */
struct raft_log {
	struct raft_entry *ring; /* owned; cap slots */
	uint32_t cap;            /* 0 or a power of two */
	uint32_t head;           /* slot of entry base+1 */
	uint32_t count;
	raft_index base;
	raft_term base_term;
};

void raft__log_init(struct raft_log *l, raft_index base, raft_term base_term);
void raft__log_free(struct raft_log *l);
raft_index raft__log_last(const struct raft_log *l);
raft_term raft__log_last_term(const struct raft_log *l);
/* Term of entry i, or 0 when i is outside [base, last] (terms start at 1). */
raft_term raft__log_term(const struct raft_log *l, raft_index i);
/* Entry i, which must be in (base, last]. */
struct raft_entry *raft__log_get(const struct raft_log *l, raft_index i);
/* Append a copy of e (payload copied); e->index must be last + 1. */
int raft__log_append(struct raft_log *l, const struct raft_entry *e);
/* Drop entries >= i (i > base), freeing their payloads. */
void raft__log_truncate(struct raft_log *l, raft_index i);
/* Drop entries <= i (base <= i <= last); i becomes the base. */
void raft__log_compact(struct raft_log *l, raft_index i);
/* Give back ring slots when at most a quarter is used. */
void raft__log_shrink(struct raft_log *l);
/* Drop everything; the log restarts after (base, term). */
void raft__log_reset(struct raft_log *l, raft_index base, raft_term term);

/* ---- conf.c ---- */

int raft__conf_validate(const struct raft_conf *c);
uint32_t raft__conf_voters(const struct raft_conf *c);
/* Configuration in effect at index i: last CONF entry <= i, else base_conf. */
void raft__conf_at(const struct raft *r, raft_index i, struct raft_conf *out);
/* Recompute r->conf after the log changed; re-syncs leader progress. */
void raft__conf_reload(struct raft *r);
/* An entry was appended: if it is a CONF entry, it takes effect now (§4.1). */
void raft__conf_on_append(struct raft *r, const struct raft_entry *e);

/* ---- progress.c: what the leader knows of each follower ---- */

enum raft_pr_state { PR_PROBE = 1, PR_REPLICATE, PR_SNAPSHOT };

struct raft_progress {
	raft_id id;
	raft_index match;      /* highest index known replicated */
	raft_index next;       /* next index to send */
	raft_index sent_commit;/* commit index last sent */
	raft_index hb_match;   /* match at the previous heartbeat reply */
	uint64_t read_ack;     /* highest read round acknowledged */
	uint8_t state;         /* enum raft_pr_state */
	bool probe_sent;       /* PROBE: one APPEND out, await its reply */
	bool recent_active;    /* heard from within this election timeout */
	uint8_t stalls;        /* heartbeat replies without progress */
	/* In-flight APPENDs: ring of their last indexes (max_inflight slots). */
	raft_index *inflight;  /* owned */
	uint32_t in_head;
	uint32_t in_count;
	/* PR_SNAPSHOT: the snapshot being sent and the acknowledged offset. */
	raft_index snap_index;
	uint64_t snap_offset;
	uint32_t snap_wait;    /* ticks since the chunk went out */
};

int raft__progress_sync(struct raft *r);
void raft__progress_free(struct raft *r);
struct raft_progress *raft__progress_find(struct raft *r, raft_id id);
void raft__progress_probe(struct raft_progress *pr, raft_index next);
void raft__progress_replicate(struct raft_progress *pr);
bool raft__progress_full(const struct raft *r, const struct raft_progress *pr);
void raft__progress_sent(const struct raft *r, struct raft_progress *pr, raft_index last);
void raft__progress_acked(const struct raft *r, struct raft_progress *pr, raft_index match);
/* The largest index / read round that a majority of voters has reached (self included). */
raft_index raft__quorum_match(const struct raft *r);
uint64_t raft__quorum_read(const struct raft *r);
/* Whether voters heard from recently (and self) form a majority. */
bool raft__quorum_active(const struct raft *r);

/* ---- ready.c: the outgoing batch ---- */

struct raft_out {
	struct raft_msg *msgs; /* owned */
	uint32_t n_msgs, cap_msgs;
	struct raft_entry *ents; /* owned: entry structs APPENDs point at */
	uint32_t n_ents, cap_ents;
	struct raft_snap_chunk *chunks; /* owned, and each chunk's data */
	uint32_t n_chunks, cap_chunks;
	struct raft_read_state *reads; /* owned */
	uint32_t n_reads, cap_reads;
	struct raft_entry *persist; /* owned: copies of unstable entries */
	struct raft_entry *apply;   /* owned: copies of committed entries */
};

/* Queue a message; m->from is filled in, and m->term when 0. Dropped when full. */
void raft__send(struct raft *r, struct raft_msg *m);
int raft__out_read(struct raft *r, uint64_t ctx, raft_index index);
int raft__out_chunk(struct raft *r, const struct raft_msg *m);
void raft__out_clear(struct raft *r);

/* ---- election.c ---- */

void raft__become_follower(struct raft *r, raft_term term, raft_id leader);
void raft__become_leader(struct raft *r);
void raft__campaign(struct raft *r, bool pre, bool force);
void raft__tick_election(struct raft *r);
void raft__tick_leader(struct raft *r);
/* Leave quiescence because something happened. */
void raft__wake(struct raft *r);
int raft__recv_vote(struct raft *r, const struct raft_msg *m);
int raft__recv_vote_resp(struct raft *r, const struct raft_msg *m);
int raft__recv_timeout_now(struct raft *r, const struct raft_msg *m);
bool raft__promotable(const struct raft *r);

/* ---- replication.c ---- */

int raft__recv_append(struct raft *r, const struct raft_msg *m);
int raft__recv_append_resp(struct raft *r, const struct raft_msg *m);
int raft__recv_heartbeat(struct raft *r, const struct raft_msg *m);
int raft__recv_heartbeat_resp(struct raft *r, const struct raft_msg *m);
void raft__flush(struct raft *r);
void raft__bcast_heartbeat(struct raft *r, bool quiesce);
void raft__maybe_commit(struct raft *r);
int raft__append_local(struct raft *r, uint8_t type, const void *data, uint32_t len,
		       raft_index *index);

/* ---- snapshot.c ---- */

int raft__recv_snap(struct raft *r, const struct raft_msg *m);
int raft__recv_snap_resp(struct raft *r, const struct raft_msg *m);
void raft__send_snap_chunk(struct raft *r, struct raft_progress *pr);
void raft__stage_free(struct raft *r);

/* ---- readindex.c ---- */

struct raft_pending_read {
	uint64_t ctx;
	raft_id from;     /* this node, or the follower that asked */
	raft_index index; /* 0 until the leader has committed in its term */
	uint64_t seq;     /* heartbeat round that must be acknowledged */
};

int raft__recv_read_index(struct raft *r, const struct raft_msg *m);
int raft__recv_read_index_resp(struct raft *r, const struct raft_msg *m);
void raft__reads_on_commit(struct raft *r);
void raft__reads_confirm(struct raft *r);
void raft__reads_drop(struct raft *r);

/* ---- the group ---- */

/* Snapshot being received from the leader (follower side). */
struct raft_stage {
	struct raft_snap_meta meta;
	uint64_t offset; /* bytes received so far */
};

struct raft {
	struct raft_config cfg;
	raft_id id;
	enum raft_role role;
	raft_term term;
	raft_id vote;
	raft_id leader;
	raft_index commit;
	raft_index applied;
	raft_index stable; /* last log index the caller made durable */
	struct raft_log log;
	struct raft_snap_meta snap;     /* the current snapshot */
	struct raft_conf conf;          /* latest in the log: in effect */
	raft_index conf_index;          /* its entry, or the base's index */
	struct raft_conf base_conf;     /* as of log.base */
	struct raft_hard_state saved;   /* last hard state handed out */
	uint64_t rng;
	uint32_t election_elapsed;
	uint32_t heartbeat_elapsed;
	uint32_t idle_ticks; /* ticks since the log last shrank */
	uint32_t quiet_ticks; /* leader: ticks the group has been idle */
	bool quiesced;
	uint32_t timeout; /* randomised election timeout */
	uint16_t granted; /* candidate: bit per conf slot */
	uint16_t refused;
	/* Leader state. */
	struct raft_progress *prs; /* owned, one per other member */
	uint32_t n_prs;
	raft_id transferee;
	uint32_t transfer_elapsed;
	uint64_t uncommitted;
	bool need_flush;
	/* ReadIndex. */
	struct raft_pending_read *reads; /* owned; leader queue */
	uint32_t n_reads, cap_reads;
	uint64_t read_seq;   /* last heartbeat round sent */
	bool read_round;     /* a new round must go out */
	/* Snapshot. */
	struct raft_stage *stage; /* owned; follower receiving one */
	bool snap_installed;      /* pending hand-out in the next batch */
	bool log_reset;
	/* Batch. */
	struct raft_out out;
	bool in_ready;
	raft_index ready_applied; /* applied once the batch is advanced */
	raft_index ready_stable;
	struct raft_hard_state ready_hs;
};

raft_term raft__rand_timeout(struct raft *r);
void raft__reset_timers(struct raft *r);

#endif /* CONFMAN_RAFT_INT_H */
