/* sim.h: deterministic simulation of a Raft cluster built on the raft/ core. */
#ifndef CONFMAN_SIM_H
#define CONFMAN_SIM_H

/*
 * One process, one thread, discrete time. A seed fixes everything: fault
 * rates, message delays, crashes, client load and the cores' own seeds, so a
 * failing seed replays exactly (no clock, no rand(), no address-dependent
 * ordering anywhere).
 *
 * Out-of-memory policy of this binary: abort (sim_xmalloc). It is a test.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

/* Node slots: ids 1..n_slots. A 3-voter cluster gets a 4th slot for membership churn. */
#define SIM_MAX_NODES 5
/* Messages in flight on the whole network; more are dropped like a full queue. */
#define SIM_NET_MAX 4096
/* Ready batches a node handles in one step; more wait for the next step. */
#define SIM_READY_MAX 64
/* Trace records kept for the post-mortem of a violation (200 printed). */
#define SIM_TRACE_RING 256
#define SIM_TRACE_DUMP 200
/* Snapshot chunk size handed to the core: snapshots are 2..5 KiB, so 2..5 chunks. */
#define SIM_SNAP_CHUNK 1024
#define SIM_ELECTION_TICKS 10

/* --- util.c: randomness, hashing, payload and snapshot encodings --- */

struct sim_rng {
	uint64_t s[4]; /* xoshiro256** state */
};

void sim_rng_seed(struct sim_rng *g, uint64_t seed);
uint64_t sim_rng_next(struct sim_rng *g);
uint64_t sim_rng_below(struct sim_rng *g, uint64_t n); /* uniform in [0, n), n > 0 */
bool sim_rng_ppm(struct sim_rng *g, uint32_t ppm);     /* true with ppm / 1e6 */
uint64_t sim_mix64(uint64_t x);
uint64_t sim_hash_bytes(const void *p, size_t len);

void *sim_xmalloc(size_t n);
void *sim_xcalloc(size_t n, size_t size);
void *sim_xrealloc(void *p, size_t n);
void *sim_xmemdup(const void *p, size_t n);

uint32_t sim_payload_len(uint64_t id);
void sim_payload_encode(uint64_t id, uint8_t *buf); /* sim_payload_len(id) bytes */
int sim_payload_decode(const void *buf, uint32_t len, uint64_t *id);

uint64_t sim_snap_size(raft_index index);
void sim_snap_encode(raft_index index, uint64_t hash, uint8_t *buf, uint64_t size);
int sim_snap_decode(const uint8_t *buf, uint64_t size, raft_index *index, uint64_t *hash);

uint64_t sim_sm_step(uint64_t hash, uint64_t payload_id);
int sim_conf_kind(const struct raft_conf *c, raft_id id);
bool sim_conf_equal(const struct raft_conf *a, const struct raft_conf *b);
uint32_t sim_conf_voters(const struct raft_conf *c);

/* --- durable storage of one node (store.c) --- */

/* A contiguous run of entries: e[k].index == e[0].index + k. Owns every e[k].data. */
struct sim_log {
	struct raft_entry *e;
	uint32_t n;
	uint32_t cap;
};

/* What survives a crash. Everything is owned. */
struct sim_store {
	struct raft_hard_state hs;
	struct raft_snap_meta snap;  /* index 0: none (conf = initial members or n = 0) */
	uint8_t *snap_data;          /* snap.size bytes, NULL when snap.index == 0 */
	struct sim_log log;          /* may start at or below snap.index (a kept tail) */
	struct raft_snap_meta stage; /* snapshot being received; stage.index 0: none */
	uint8_t *stage_data;         /* stage.size bytes */
	uint64_t stage_next;         /* bytes [0, stage_next) received */
};

/* --- the simulation --- */

struct sim_node;
struct sim;

/* The state machine: applied index and a rolling hash of applied payload ids. */
struct sim_sm {
	raft_index applied;
	uint64_t hash;
};

struct sim_node {
	raft_id id;
	struct raft *r;        /* owned; NULL while down */
	struct sim_store disk; /* durable */
	struct sim_sm sm;      /* volatile: rebuilt from disk.snap on restart */
	struct raft_ready rd;  /* batch on a slow disk, valid while persist_left > 0 */
	uint32_t persist_left; /* steps until rd is durable; 0: not persisting */
	uint32_t stall_left;   /* stopped (SIGSTOP, a VM pause): steps to go; 0: running */
	uint64_t restart_at;   /* crashed: step of the restart; 0: stays down */
	uint32_t incarnation;  /* starts so far, to vary the core's seed */
	struct raft_status st; /* last observed status (valid while up) */
	bool was_member;       /* appeared in a configuration since its last wipe */
	bool log_dirty;        /* durable log changed since the last Log Matching check */
	uint64_t snap_every;   /* take a snapshot once applied - snap.index exceeds this */
	uint32_t leader_gone;  /* quiesced: steps its leader has been unreachable */
	/* Membership guards (guard.c). */
	uint64_t lead_since;   /* step it became leader of its current term */
	bool campaign_voter;   /* a voter in its own configuration when it last campaigned */
	bool strict_at_req[SIM_MAX_NODES + 1][2]; /* the same, own configuration only */
	bool asked_as_voter[SIM_MAX_NODES + 1][2]; /* [from][pre]: listed as a voter by it */
	struct raft_conf campaign_conf; /* its configuration when it last campaigned */
	bool voter_at_req[SIM_MAX_NODES + 1][2]; /* [from][pre]: a voter when it stepped
						  * the last (pre)vote request from there */
	raft_term grant_term;  /* grants sent to it as candidate in this term ... */
	uint32_t grants;       /* ... bit per granting node id */
};

/* Fault and load rates of one seed, in parts per million per step. */
struct sim_params {
	uint32_t loss, dup, delay_max;
	uint32_t partition, heal, crash, restart_min, restart_span;
	uint32_t slow_disk, slow_max;
	uint32_t propose, read, change, transfer, skip_tick;
	uint32_t max_down;
	uint32_t max_apply;
	uint32_t max_uncommitted; /* bytes: small, so that -EBUSY back-pressure happens */
	uint32_t nemesis;         /* a leader elected this step is cut off or crashed */
	uint32_t max_reads;
	uint32_t quiesce;      /* ticks before an idle group goes quiet; 0: never */
	uint32_t false_wake;   /* ppm per step: node liveness wrongly wakes a follower */
	uint32_t stall, stall_max; /* a node stops for up to stall_max steps (ppm per step) */
};

struct sim_hist_ent {
	raft_term term;
	uint8_t type;
	uint64_t data_hash;
	uint64_t sm_hash;     /* state machine hash after applying this entry */
	raft_term known_term; /* highest term seen anywhere when first applied */
};

struct sim_conf_at {
	raft_index index;
	struct raft_conf conf;
};

/* Global history of committed entries: e[i - 1] is index i (first applier defines it). */
struct sim_hist {
	struct sim_hist_ent *e;
	raft_index n;
	raft_index cap;
	struct sim_conf_at *confs; /* confs[0] is the initial configuration at index 0 */
	uint32_t n_confs;
	uint32_t cap_confs;
};

struct sim_msg {
	uint64_t at;       /* step of delivery */
	uint64_t seq;      /* send order: tie-break, keeps delivery deterministic */
	struct raft_msg m; /* entries and data point into this same allocation */
};

struct sim_net {
	struct sim_msg **q; /* owned, SIM_NET_MAX slots, unordered */
	uint32_t n;
	uint64_t seq;
	bool cut[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* cut[from][to] */
	bool partitioned;
};

struct sim_trace_ev {
	uint64_t step;
	uint8_t kind;
	uint8_t node;
	uint8_t peer;
	uint8_t sub;
	uint32_t n;
	uint64_t a, b, c, d;
};

struct sim_trace {
	struct sim_trace_ev ring[SIM_TRACE_RING];
	uint64_t count; /* records ever written */
	bool live;      /* print each record as it is written (--trace) */
};

/* What a run exercised (--stats), to see that faults and features really happen. */
struct sim_stats {
	uint64_t ev[32];    /* trace records by enum sim_ev */
	uint64_t elected;   /* nodes seen becoming leader */
	uint64_t accepted;  /* proposals accepted */
	uint64_t busy;      /* -EBUSY from raft_propose or raft_read_index */
	uint64_t changes;   /* membership changes accepted */
	uint64_t transfers; /* transfers accepted */
	uint64_t served;    /* read states checked */
	uint64_t committed; /* history length at the end */
	uint64_t max_term;
	uint64_t quiesced;  /* times a node went quiet */
	uint64_t woken;     /* quiet followers woken by node liveness */
	uint64_t snap_behind; /* own snapshot due with a leader's installed, not yet taken */
	uint64_t learner_grants; /* (pre)votes granted by a non-voter of its own configuration */
};

struct sim_read {
	raft_id node;
	raft_index min_index; /* highest index known committed when the read was issued */
};

struct sim_prop {
	raft_index index;
	raft_term term;
	uint64_t id;
};

/* One pending membership change or liveness probe: an entry at (index, term). */
struct sim_pending {
	bool active;
	raft_index index;
	raft_term term;
	uint64_t since;
	uint64_t id; /* payload id (liveness probe) */
};

struct sim {
	uint64_t seed;
	uint32_t n_voters; /* initial voters: 3 or 5 */
	uint32_t n_slots;
	uint64_t now;
	struct sim_rng rng;
	struct sim_params p;
	struct sim_node nodes[SIM_MAX_NODES]; /* nodes[i].id == i + 1 */
	struct sim_net net;
	struct sim_hist hist;
	raft_id *term_leader; /* term_leader[t]: the leader seen in term t, or 0 */
	uint64_t n_term_leader;
	raft_term max_term;
	raft_index max_commit;
	struct sim_read *reads; /* reads[ctx - 1] */
	uint64_t n_reads, cap_reads;
	struct sim_prop *props;
	uint64_t n_props, cap_props;
	uint64_t next_payload;
	struct sim_pending change;
	struct sim_pending probe;
	bool calm;            /* liveness phase: no faults */
	raft_id fresh_leader; /* became leader during this step (for the nemesis) */
	bool guard_lax; /* learner-votes: a promotion the voter has not received yet counts */
	bool failed;
	char what[48];
	char detail[480];
	struct sim_trace trace;
	struct sim_stats stats;
};

/* sim.c */
void sim_init(struct sim *s, uint64_t seed, uint32_t n_voters, bool trace, bool scripted);
void sim_destroy(struct sim *s);
void sim_step(struct sim *s);
void sim_calm(struct sim *s);
bool sim_run(struct sim *s, uint64_t steps); /* false: a violation (s->what) */
bool sim_liveness(struct sim *s);
bool sim_fail(struct sim *s, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct sim_node *sim_node_by_id(struct sim *s, raft_id id);
bool sim_node_busy(const struct sim_node *n);

/* scenario.c: scripted sequences the random search finds too rarely */
bool sim_scenario_figure8(struct sim *s);
bool sim_scenario_removed(struct sim *s);
bool sim_scenario_learner(struct sim *s);
void sim_scenario_params(struct sim_params *p);

/* store.c */
void sim_store_init(struct sim_store *d, const struct raft_conf *conf);
void sim_store_free(struct sim_store *d);
raft_index sim_store_last(const struct sim_store *d);
const struct raft_entry *sim_store_entry(const struct sim_store *d, raft_index i);
void sim_store_boot(const struct sim_store *d, struct raft_boot *b);
bool sim_store_persist(struct sim *s, struct sim_node *n, const struct raft_ready *rd);
void sim_store_snapshot(struct sim_store *d, const struct raft_snap_meta *meta, uint8_t *data,
			uint64_t keep);

/* node.c */
void sim_node_start(struct sim *s, struct sim_node *n);
void sim_node_crash(struct sim *s, struct sim_node *n, uint64_t restart_at);
void sim_node_wipe(struct sim *s, struct sim_node *n);
void sim_node_process(struct sim *s, struct sim_node *n);
void sim_node_observe(struct sim *s, struct sim_node *n);
void sim_node_tick(struct sim *s, struct sim_node *n);

/* net.c */
void sim_net_send(struct sim *s, struct sim_node *from, const struct raft_msg *m);
void sim_net_deliver(struct sim *s);
void sim_net_free(struct sim_net *net);
void sim_net_heal(struct sim *s);
void sim_net_partition(struct sim *s);
void sim_net_isolate(struct sim *s, raft_id id);

/* client.c */
void sim_client_step(struct sim *s);
void sim_client_read_state(struct sim *s, struct sim_node *n, const struct raft_read_state *rs);
bool sim_client_probe(struct sim *s); /* liveness: true once a fresh entry reached every voter */

/* member.c */
void sim_member_step(struct sim *s, struct sim_node *leader);
raft_id sim_member_random_voter(struct sim *s, const struct raft_conf *c, raft_id except);

/* check.c */
void sim_hist_init(struct sim_hist *h, const struct raft_conf *initial);
void sim_hist_free(struct sim_hist *h);
const struct sim_hist_ent *sim_hist_at(const struct sim *s, raft_index i);
const struct raft_conf *sim_hist_conf_at(const struct sim *s, raft_index i);
void sim_check_apply(struct sim *s, struct sim_node *n, const struct raft_entry *e);
bool sim_check_snapshot(struct sim *s, struct sim_node *n, const struct raft_snap_meta *m,
			const uint8_t *data);
void sim_check_step(struct sim *s);
void sim_check_final(struct sim *s);

/* guard.c: removed nodes cannot disrupt, learners never vote (see there) */
struct sim_guard_ctx {
	const struct sim_node *leader; /* healthy leader when a removed node's message arrived */
	raft_term leader_term;
	raft_term term; /* the recipient's term and role before the message */
	enum raft_role role;
};

bool sim_guard_removed(struct sim *s, raft_id id);
void sim_guard_before(struct sim *s, struct sim_node *n, const struct raft_msg *m,
		      struct sim_guard_ctx *g);
void sim_guard_after(struct sim *s, struct sim_node *n, const struct raft_msg *m,
		     const struct sim_guard_ctx *g);
void sim_guard_sent(struct sim *s, struct sim_node *n, const struct raft_msg *m);
void sim_guard_observe(struct sim *s, struct sim_node *n, const struct raft_status *o,
		       const struct raft_status *st);

/* trace.c */
enum sim_ev {
	SIM_EV_SEND = 1,
	SIM_EV_RECV,
	SIM_EV_DROP,
	SIM_EV_ROLE,
	SIM_EV_PERSIST,
	SIM_EV_APPLY,
	SIM_EV_SNAP_TAKE,
	SIM_EV_SNAP_INSTALL,
	SIM_EV_CRASH,
	SIM_EV_RESTART,
	SIM_EV_WIPE,
	SIM_EV_PARTITION,
	SIM_EV_HEAL,
	SIM_EV_PROPOSE,
	SIM_EV_CHANGE,
	SIM_EV_TRANSFER,
	SIM_EV_READ,
	SIM_EV_READ_STATE,
	SIM_EV_SLOW_DISK,
	SIM_EV_CALM,
	SIM_EV_STALL,
	SIM_EV_SNAP_BEHIND,
};

/* Reasons for SIM_EV_DROP (sub). */
enum sim_drop { SIM_DROP_LOSS = 1, SIM_DROP_FULL, SIM_DROP_CUT, SIM_DROP_DOWN, SIM_DROP_SNAP };

void sim_trace(struct sim *s, uint8_t kind, raft_id node, raft_id peer, uint8_t sub, uint32_t n,
	       uint64_t a, uint64_t b, uint64_t c, uint64_t d);
void sim_trace_msg(struct sim *s, uint8_t kind, uint8_t sub, const struct raft_msg *m);
void sim_trace_dump(const struct sim *s, unsigned lines);

#endif /* CONFMAN_SIM_H */
