/* node.h: one confmand node: its groups, its loop turn, its client requests. */
#ifndef CONFMAN_NODE_H
#define CONFMAN_NODE_H

#include <uv.h>

#include "raft/raft.h"
#include "server/config.h"
#include "server/net.h"
#include "server/metrics.h"
#include "server/registry.h"
#include "server/store.h"
#include "server/kv.h"
#include "server/acl_rules.h"

#define CM_READ_WAIT_MS 1000    /* a follower read waits this long for its token */
#define CM_LIN_READ_WAIT_MS 5000 /* a ReadIndex read waits this long */
#define CM_STORE_HIGH_WATER 0.90 /* above this map usage only rm/truncate (space.c) */
#define CM_STORE_HARD_WATER 0.95 /* the file's end past this: no client write at all */

/* A client request waiting for its entry to apply or its read point. */
struct cm_pending {
	struct cm_conn *conn; /* referenced while pending */
	uint64_t req_id;
	uint8_t op;
	uint8_t consistency;
	uint32_t flags;    /* the request's: a read's CM_GET_ATTR_ONLY, a LOCK's
			    * CM_LOCK_WAIT (then it may be parked: lease.c) */
	uint64_t index;    /* write: its entry; read: the index it must see */
	raft_term term;    /* write: the term it was proposed in */
	uint64_t ctx;      /* linearizable read: the ReadIndex context; 0 once known */
	uint64_t deadline; /* ms, loop time */
	bool done;         /* write applied: err/attr hold the result */
	int err;
	struct cm_attr attr;
	char *path;        /* owned copy: a read's, then its forwarded identity's;
			    * a LOCK's that may wait (lease.c) */
	uint32_t path_len;
	uint32_t as_len;   /* read: bytes of the forwarded identity after path */
	uint64_t lease, owner; /* LOCK: the holder it asks for */
};

struct cm_pending_list {
	struct cm_pending *v; /* owned */
	uint32_t n, cap;
};

/* The leader's side of a group's leases (lease.c): when each one ends, by
 * this node's clock, and the lock requests waiting for their grant. */
struct cm_lease_slot {
	uint64_t id;
	uint64_t ttl_ms;
	uint64_t deadline;   /* loop ms */
	uint64_t cp_left;    /* the ms left its last checkpoint recorded (0: none) */
	uint64_t busy_until; /* an EXPIRE was proposed: no other before this (loop ms) */
	bool ending;
};

struct cm_leases {
	struct cm_lease_slot *v; /* owned, by id */
	uint32_t n, cap;
	raft_term term;          /* the leadership it was loaded for; 0: not loaded */
	uint64_t next_checkpoint; /* loop ms */
	bool locks_moved;        /* a LOCK or a lease's end applied: wake waiters */
	struct cm_pending_list waits; /* ACQUIREs queued in the lock, parked here */
};

struct cm_watch {
	struct cm_conn *conn; /* referenced */
	uint64_t id;
	uint64_t group;
	uint64_t sent; /* events up to this index were sent */
	bool progress; /* CM_WATCH_PROGRESS: heartbeats wanted */
	char *prefix;  /* owned; then the forwarded identity it watches as */
	uint32_t plen;
	uint32_t as_len; /* bytes of the forwarded identity after prefix; 0: none */
	struct cm_watch *next;
};

struct cm_group {
	const struct cm_group_info *info;
	struct raft *raft;
	struct raft_snap_meta snap; /* the current snapshot, as persisted */
	/* Watch events at or below this index may be gone from the store (the
	 * log and the events are compacted together, keep_entries behind the
	 * snapshot; an installed snapshot drops them all). Never decreases. */
	uint64_t ev_floor;
	uint64_t applied;           /* mirrors the core, for requests */
	uint64_t read_seq;
	struct cm_pending_list writes; /* in index order */
	struct cm_pending_list reads;
	struct raft_ready rd;
	bool in_ready;
	bool applied_moved; /* meta must be persisted this turn */
	uint64_t snap_retry_tick; /* no snapshot before this tick (the map was full) */
	bool tops_made; /* made the tops since it last became leader (shards.c) */
	struct cm_leases leases; /* lease.c */
};

struct cm_node {
	uv_loop_t *loop;
	struct cm_config *cfg;
	struct cm_store *store;
	struct cm_net *net;
	struct cm_group *groups; /* owned; the groups this node hosts, meta first */
	uint32_t n_groups, cap_groups;
	struct cm_registry reg;  /* the shard map */
	uint64_t meta_seen;      /* the meta group's applied index the map reflects */
	bool nodes_loaded;       /* the node table is recorded and cfg->nodes is it */
	bool split_waiting;      /* a split's group waits for its parent here (node.c) */
	struct cm_dumps *dumps;  /* backups being fetched (dump.c); NULL until one */
	struct cm_acl acl;       /* the access rules in force here (acl.c) */
	struct cm_watch *watches;
	uv_timer_t tick;
	uv_prepare_t prepare;
	uv_idle_t idle; /* keeps the loop spinning while work is left */
	uv_signal_t sig_term, sig_int;
	uint64_t ticks;
	bool stopping;
	bool draining;          /* asked to stop: handing leadership over first (drain.c) */
	uint64_t drain_until;   /* tick after which it stops anyway */
	struct cm_http *http;        /* NULL without an HTTP address */
	char *http_cert, *http_key;  /* owned: its HTTPS certificate and key (PEM) */
	struct cm_hist fsync;        /* the turn's commit (fsync) latency */
	struct cm_req_counters reqs; /* answered requests by op and result */
	uint64_t disk_free;          /* bytes free in --data at the last tick (space.c) */
	uint8_t space_level;         /* space.c's verdict at the last tick (CM_SPACE_*) */
	uint8_t peer_space[CM_MAX_PEERS]; /* each cfg node's level as last logged */
};

/* Start: open the store, recover every hosted group, listen, dial peers.
 * 0 or a negative errno; on failure call cm_node_stop, run the loop, free. */
int cm_node_start(uv_loop_t *loop, struct cm_config *cfg, struct cm_node **out);
/* Close every handle (SIGTERM does this); the loop then ends by itself. */
void cm_node_stop(struct cm_node *n);
/* Free what is left once the loop has ended. */
void cm_node_free(struct cm_node *n);

/* node.c */
struct cm_group *cm__node_route(struct cm_node *n, const char *path, uint32_t len, int *err);
struct cm_group *cm__node_group(struct cm_node *n, uint64_t id);
/* drain.c: on SIGTERM/SIGINT, transfer the leadership of every group this
 * node leads to a live voter, then stop (bounded); a second call stops now.
 * drain_tick runs every tick. */
void cm__drain_start(struct cm_node *n);
void cm__drain_tick(struct cm_node *n);

/* After a turn: pick up shards the meta group added, starting their groups. */
void cm__node_sync_registry(struct cm_node *n);
void cm__node_kick(struct cm_node *n);

/* turn.c: the group commit */
void cm__turn(struct cm_node *n);
void cm__turn_on_raft(void *arg, uint64_t from, uint64_t group, const struct raft_msg *m);

/* request.c */
void cm__req_handle(void *arg, struct cm_conn *c, const struct cm_req *req);
void cm__req_conn_closed(void *arg, struct cm_conn *c);
void cm__req_after_turn(struct cm_node *n, struct cm_group *g, MDB_txn *rtxn);
void cm__req_expire(struct cm_node *n);
/* Answer every request waiting on g with err (g is being dropped). */
void cm__req_fail_group(struct cm_node *n, struct cm_group *g, int err);
/* Propose a write in g; the reply goes out once it applied (or failed). */
void cm__req_write(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		   const struct cm_req *req);
/* Propose a membership change in g (raft_change); answered as a write, once
 * the configuration entry applied. */
void cm__req_conf(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		  const struct cm_req *req, enum raft_change_op op, uint64_t id);
void cm__resp_init(struct cm_node *n, struct cm_group *g, const struct cm_req *req,
		   struct cm_resp *r);
/* Answer req with err alone (and g's token and leader hint when g is set). */
void cm__reply_err(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		   const struct cm_req *req, int err);
int cm__pending_push(struct cm_pending_list *l, uint32_t max, struct cm_pending **out);
void cm__pending_free(struct cm_pending_list *l);
void cm__pending_release(struct cm_pending *p); /* its connection and path */

/* space.c: ENOSPC for client writes before the map or the disk is full */
/* 0, or -ENOSPC when req may not be proposed for lack of space. */
int cm__space_check(struct cm_node *n, const struct cm_group *g, const struct cm_req *req);

/* admin.c: 0 when ready (every hosted group has a leader within the
 * staleness bound), else 1 with the reason; and the node's health as
 * STATUS carries it. */
int cm__node_ready(struct cm_node *n, char *reason, size_t cap);
void cm__node_health(struct cm_node *n, struct cm_node_health *h);
/* Sample the data directory's free space (statvfs); log changes of verdict. */
void cm__space_tick(struct cm_node *n);

/* nodes.c: the node table in the meta group's kv, copied into cfg->nodes.
 * load: > 0 when cfg->nodes changed (peers are then redialled), 0, -errno. */
int cm__nodes_load(struct cm_node *n, MDB_txn *txn);
void cm__nodes_propose_seed(struct cm_node *n, struct cm_group *meta);
void cm__nodes_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req);

/* node.c: this node was removed from the cluster: stop (bounded drain). */
void cm__node_removed(void *arg);

/* join.c: --join on an empty store: fetch the node table from the cluster
 * into cfg->nodes. 0, or an error already explained on stderr. */
int cm__join(struct cm_config *cfg);

/* acl.c: access rules. load: from the meta kv when "/acl" changed (> 0).
 * check: 0 or -EACCES for req from c. reads/shows: for serving a read. */
int cm__acl_load(struct cm_node *n, MDB_txn *txn);
void cm__acl_propose_seed(struct cm_node *n, struct cm_group *meta);
int cm__acl_check(struct cm_node *n, struct cm_conn *c, const struct cm_req *req);
/* Whether c's certificate may read path, as the identity `as` forwards when
 * it is not empty (a trusted proxy's caller). */
bool cm__acl_reads(struct cm_node *n, struct cm_conn *c, struct cm_bytes as, const char *path,
		   uint32_t len);
bool cm__acl_shows(struct cm_node *n, struct cm_conn *c, struct cm_bytes as, const char *dir,
		   uint32_t dlen, const char *name, uint32_t nlen);
/* Who asks on c: its certificate's identity, or the one forwarded in as
 * (names holds its text). 0, -EACCES (as from a connection that is not a
 * trusted proxy), -EINVAL (as malformed). */
int cm__acl_who(struct cm_node *n, struct cm_conn *c, struct cm_bytes as,
		struct cm_acl_names *names, struct cm_acl_who *who);
/* Whether a certificate is a trusted proxy's ([cluster] proxies). */
bool cm__acl_proxy(const struct cm_node *n, const struct cm_identity *id);
void cm__acl_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req);
/* token.c: CM_OP_TOKEN (create, revoke, list at the meta leader; resolve
 * for trusted proxies). Answers req once. */
void cm__token_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req);

/* restore.c: --restore FILE on an empty store: verify it, make the backup's
 * shards this node's groups (cfg->groups) and write their state. 0, or an
 * error already explained on stderr (nothing written). */
int cm__restore(struct cm_node *n);

/* members.c: CONF_CHANGE and TRANSFER at a group's leader; a CONF entry
 * of ours applied (turn.c). */
void cm__members_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req);
/* Membership and map series for /metrics (README, "Metrics"). */
void cm__members_metrics(struct cm_node *n, struct cm_buf *out);

/* split.c: SHARD_SPLIT (at the parent's leader, or the meta leader), and
 * the new group's Raft state once the parent applied the split. */
void cm__split_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req);

/* lease.c: leases and locks at a group's leader (README "Leases and locks"). */
void cm__lease_handle(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		      const struct cm_req *req);
void cm__lease_tick(struct cm_node *n);
/* An entry of g applied (turn.c): keep the leader's clocks in step. */
void cm__lease_applied(struct cm_node *n, struct cm_group *g, const struct cm_kv_result *res);
/* A LOCK write came back queued: p moves to the waiters (true), else false. */
bool cm__lock_park(struct cm_node *n, struct cm_group *g, struct cm_pending *p);
void cm__lock_wake(struct cm_node *n, struct cm_group *g, MDB_txn *rtxn);
void cm__lease_free(struct cm_node *n, struct cm_group *g, int err);
int cm__split_applied(struct cm_node *n, MDB_txn *txn, const struct raft_entry *e,
		      const struct cm_kv_result *res);

/* dump.c: CM_OP_DUMP. start: the linearizable read point is applied (txn
 * sees it): serialise g and answer the first chunk; chunk: a later one. */
struct cm_dumps;
void cm__dump_start(struct cm_node *n, struct cm_group *g, MDB_txn *txn, struct cm_conn *c,
		    const struct cm_req *req);
void cm__dump_chunk(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		    const struct cm_req *req);
void cm__dump_tick(struct cm_node *n);
void cm__dump_free_all(struct cm_node *n);

/* merge.c: SHARD_MERGE's phases (at the child's, the parent's or the meta
 * group's leader). */
void cm__merge_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req);

/* shards.c: the registry ops */
/* Propose a create-only write nobody waits for (it has happened afterwards
 * either way: EEXIST after the first time). */
void cm__propose_create(struct cm_node *n, struct cm_group *g, const struct cm_req *req);
void cm__shards_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req);
void cm__shards_tops(struct cm_node *n, struct cm_group *g);
int64_t cm__wall_ns(void); /* request.c: the time stamped into write commands */

/* admin.c: /healthz, /readyz, /metrics */
int cm__admin_start(struct cm_node *n);
void cm__admin_count(void *arg, const struct cm_resp *r);

/* watch.c */
int cm__watch_add(struct cm_node *n, struct cm_group *g, struct cm_conn *c, const struct cm_req *req);
void cm__watch_remove(struct cm_node *n, struct cm_conn *c, uint64_t id);
void cm__watch_drop_group(struct cm_node *n, uint64_t gid);
void cm__watch_deliver(struct cm_node *n, struct cm_group *g, MDB_txn *rtxn);
/* Every CM_WATCH_PROGRESS_MS (from the tick): a PROGRESS event per watch
 * that asked, from groups whose replica here is not stale. */
void cm__watch_progress(struct cm_node *n);
/* The events of g were compacted up to index (never lowers the floor). */
void cm__watch_compacted(struct cm_group *g, uint64_t index);

/* request.c: whether this replica of g may have fallen behind a majority
 * that moved on (no leader heard within --max-staleness-ms). */
bool cm__replica_stale(const struct cm_node *n, const struct cm_group *g);

#endif /* CONFMAN_NODE_H */
