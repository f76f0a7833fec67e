/* proto.h: Confman's wire protocol: frames, handshake, client requests, Raft messages. */
#ifndef CONFMAN_PROTO_H
#define CONFMAN_PROTO_H

/*
 * Every connection carries frames: a 4-byte big-endian length L, then L bytes
 * holding ONE msgpack array whose first element is the frame type (enum
 * cm_frame_type). L is at most CM_FRAME_MAX; a longer length, a malformed
 * body or a wrong field type is a protocol error: the receiver sends an ERROR
 * frame when it can and closes the connection. Nothing a peer declares is
 * trusted before it is checked (see cm_proto_decode).
 *
 * A connection starts with HELLO from the side that dialed; the other side
 * answers HELLO_OK or ERROR and closes. node_id 0 means a client.
 *
 * Layouts (msgpack arrays; "bin" is msgpack bin, "str" msgpack str):
 *   HELLO     [1, version, cluster:str, node_id]
 *   HELLO_OK  [2, version, cluster:str, node_id]
 *   RAFT      [3, group, type, flags, from, to, term, index, log_term, commit,
 *              hint, ctx, entries:[[term, index, type, data:bin]...],
 *              snap:[index, term, conf:bin, size] | nil, offset, data:bin | nil]
 *             flags: bit0 reject, bit1 force, bit2 last
 *   REQ       [4, id, op, group, token, consistency, flags, path:str, path2:str,
 *              value:bin, version, mode, uid, gid, from_index, mod_index | nil
 *              (, [atime_ns, mtime_ns])]
 *             mod_index: CM_PUT_IF_MOD's operand, nil without that flag
 *             (clients before it always sent nil there, and servers before
 *             it ignore the field but refuse the flag: -EINVAL)
 *             [atime_ns, mtime_ns]: CM_SET_TIMES's operands, present with
 *             that flag and only with it (17 elements; 16 without). A
 *             server before it refuses the frame: upgrade servers first
 *             (, as:str): a forwarded identity "USER[ GROUP...]" (a trusted
 *             proxy's caller: server/acl.c), the 18th element, present only
 *             when forwarding; element 17 is then the times or nil. Servers
 *             before it refuse 18 elements (-EBADMSG): a gateway forwarding
 *             to them fails closed, never acts with its own rights
 *   RESP      [5, id, op, err, group, token, leader_id, leader_addr:str, body]
 *             body by op: GET [attr, value:bin] (value empty with
 *             CM_GET_ATTR_ONLY); LIST [[name:str, attr]...];
 *             PUT/MKDIR/DELETE/RENAME [attr] (nil for DELETE); WATCH nil;
 *             STATUS [node_id, [[group, prefix:str, role, term, leader,
 *             commit, applied, last, snap_index, [member ids]]...], health]
 *             health = [ready:bool, reason:str, space, store_permille, fsyncs,
 *             fsync_p50_us, fsync_p99_us, requests, failed,
 *             [[peer, up:bool, silence_ms, frames_out, bytes_out, frames_in,
 *             bytes_in]...]] (a STATUS of two elements has no health);
 *             SHARDS [epoch, [[group, prefix:str, [replica ids]]...],
 *             [[node id, addr:str]...]]
 *             A WRONGSHARD answer carries the server's registry epoch in token.
 *   REQ.group: 0 = route by path; else the group the client believes owns
 *             the path: a server that disagrees answers CM_EWRONGSHARD.
 *   EVENT     [6, watch_id, group, index, kind, path:str, path2:str, attr | nil]
 *             kind 1-6 (enum cm_event_kind; 6, PROGRESS, only to a WATCH that
 *             set CM_WATCH_PROGRESS); anything else is a protocol error
 *   ERROR     [7, err, message:str]
 *   BEATS     [9, from, to, [[group, type, term, commit, ctx, flags]...]]
 *             the turn's HEARTBEAT and HEARTBEAT_RESP messages of every group
 *             for one peer, coalesced into one frame (multi-raft)
 *   PING      [8, node_id, space]   peer links only; one per tick, whatever
 *             the groups do, so quiet groups still learn that their
 *             leader's node is alive; space is the sender's store level
 *             (0 ok, 1 low, 2 full), so leaders refuse client writes that
 *             a replica could not store (etcd's cluster-wide NOSPACE alarm)
 *   attr = [mode, uid, gid, mtime_ns, ctime_ns, create_index, mod_index,
 *           version, size, atime_ns, nlink]
 *           Decoders take the 9 elements of servers before atime and
 *           nlink too (then atime = mtime, nlink 0: unknown); clients
 *           before them cannot read 11: upgrade clients with servers
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confman/error.h"

#define CM_PROTO_VERSION 1
#define CM_FRAME_HDR 4
#define CM_FRAME_MAX (8u << 20)        /* any frame, header excluded */
#define CM_VALUE_MAX_DEFAULT (1u << 20) /* a node's value, by default */
#define CM_VALUE_MAX_LIMIT (4u << 20)   /* the most --max-value may allow */
#define CM_PATH_MAX 4096                /* bytes of an absolute path: the kernel's
					 * PATH_MAX (servers before it: 1024) */
#define CM_NAME_MAX 255                 /* bytes of one path component: NAME_MAX */
#define CM_DUMP_CHUNK (1u << 20)        /* bytes of a DUMP answer's value */
#define CM_CLUSTER_MAX 63               /* bytes of a cluster id */
#define CM_ADDR_MAX 63                  /* "host:port" */

/* The largest request, two paths and the largest value, fits a frame. */
_Static_assert(2 * CM_PATH_MAX + CM_VALUE_MAX_LIMIT + 1024 <= CM_FRAME_MAX,
	       "a frame holds a request with two paths and the largest value");

enum cm_frame_type {
	CM_FR_HELLO = 1,
	CM_FR_HELLO_OK = 2,
	CM_FR_RAFT = 3,
	CM_FR_REQ = 4,
	CM_FR_RESP = 5,
	CM_FR_EVENT = 6,
	CM_FR_ERROR = 7,
	CM_FR_PING = 8, /* node liveness: once per tick on every peer link */
	CM_FR_BEATS = 9, /* every group's heartbeats to one peer in one frame */
};

/* A node's store, as its PINGs report it (server/space.c). */
enum cm_space_level {
	CM_SPACE_OK = 0,
	CM_SPACE_LOW = 1,  /* client writes refused but deletes and truncations */
	CM_SPACE_FULL = 2, /* every client write refused */
};

enum cm_op {
	CM_OP_GET = 1,
	CM_OP_LIST,
	CM_OP_PUT,
	CM_OP_DELETE,
	CM_OP_MKDIR,
	CM_OP_RENAME,
	CM_OP_WATCH,
	CM_OP_UNWATCH,
	CM_OP_STATUS,
	CM_OP_SHARDS,    /* the shard registry: any node answers from what it applied */
	CM_OP_SHARD_ADD, /* path = prefix, value = replica ids "1,2,3": meta leader */
	/* Membership (server/members.c, server/nodes.c; README "Changing the
	 * cluster"). Each is one step; confmanctl converges with them. */
	CM_OP_CONF_CHANGE, /* group, flags = enum cm_conf_op, version = node id: the
			    * group's leader; answered once the change applied */
	CM_OP_TRANSFER,    /* group, version = voter (0: the most caught-up one):
			    * the group's leader starts a leadership transfer */
	CM_OP_NODE_ADD,    /* version = new id, value = "PEER_ADDR[ HTTP_ADDR]": meta leader */
	CM_OP_NODE_REMOVE, /* version = id: meta leader; only once it hosts nothing */
	CM_OP_SHARD_SET,   /* group, value = "1,2,4": the nodes that run group's
			    * replicas (a superset of its Raft members): meta leader */
	/* Online split (server/split.c; README "Splitting and merging"):
	 * group = the parent: its leader moves path's subtree to group
	 * `version` (allocated by SHARD_ADD "R,.. split PARENT"), answered
	 * with token = the split's index; group = CM_META_GROUP: activate
	 * the new shard, born at index `version`. */
	CM_OP_SHARD_SPLIT,
	/* Merge back (server/merge.c): flags = enum cm_merge_phase, path = the
	 * child's prefix, group = where the phase runs (the child for FREEZE,
	 * the parent for BEGIN and COMMIT, CM_META_GROUP for RETIRE). */
	CM_OP_SHARD_MERGE,
	/* Backup (server/dump.c; README "Backup and restore"): path = the
	 * group's prefix, group named. version 0 starts a dump: the replica
	 * confirms a linearizable read point (ReadIndex, even on a follower),
	 * waits to apply it and serialises the group's tree (cm_kv_snapshot's
	 * format) once; the answer's value is its first CM_DUMP_CHUNK bytes,
	 * token = the index it was taken at, attr.version = its total size,
	 * attr.mod_index = the dump's id. version = that id and from_index =
	 * an offset fetch the next bytes from the same replica; an id it no
	 * longer holds is CM_ESTALE (start again). */
	CM_OP_DUMP,
	/* Access rules (server/acl.c; README "TLS, identities and access"):
	 * flags = enum cm_acl_op, value = one rule "PERM PRINCIPAL PREFIX" for
	 * grant and revoke (at the meta leader; admin on PREFIX needed); list
	 * answers the rules the caller administers, one per line, in value. */
	CM_OP_ACL,
	CM_OP_WHOAMI, /* any node: value = "USER GROUP..." as it sees the caller */
	/* Leases (server/lease.c, kv_lease.c; README "Leases and locks"), at the
	 * leader of the group that owns path (a lease is a group's: a client
	 * that attaches keys of several shards holds one lease per group, with
	 * the same id). flags = enum cm_lease_op; version = the lease id, chosen
	 * by the client (1..CM_LEASE_ID_MAX, random: ids are per group, and a
	 * grant of an id the group holds is EEXIST); from_index = GRANT's TTL
	 * in ms (CM_LEASE_TTL_MIN_MS..CM_LEASE_TTL_MAX_MS, else -EINVAL).
	 * Answer (GET's shape [attr, value]): attr.version = the id,
	 * attr.mtime_ns = its TTL in ms, attr.atime_ns = the ms it has left
	 * (the leader's clock), attr.size = keys attached, attr.mod_index =
	 * the index of the entry that granted it. LIST: value holds one line
	 * per lease, "ID TTL_MS LEFT_MS KEYS". TTL: value holds the attached
	 * paths, one per line (CM_LEASE_KEYS_MAX at most). KEEPALIVE, TTL and
	 * REVOKE of an id the group does not hold (never granted, expired,
	 * revoked): -ENOENT. */
	CM_OP_LEASE,
	/* Locks (server/lease.c, kv_lease.c): a lock is named by a path (which
	 * need not exist) and lives in the group that owns it; its holders and
	 * waiters are (lease, owner) pairs: version = the lease id (granted in
	 * that group), from_index = the owner (any u64: a mount's lock owner,
	 * 0 for a process). flags = CM_LOCK_* below. ACQUIRE: granted at once
	 * if free (or shared with shared holders) and nobody waits before it;
	 * else with CM_LOCK_WAIT queued in log order (FIFO: the lock goes to
	 * the waiter whose ACQUIRE was committed first) and answered when
	 * granted, else -EWOULDBLOCK. A waiter whose connection or leader is
	 * lost sends ACQUIRE again: it keeps its place. RELEASE: frees the
	 * pair's hold or leaves the queue (-ENOENT if neither). QUERY: who
	 * holds it. A lease's end releases its holds and leaves its queues.
	 * Answer (GET's shape): attr.version = the fencing token (the index
	 * at which the hold was granted: strictly increasing per lock path
	 * over exclusive holds), attr.uid/gid unused, value = "LEASE OWNER
	 * TOKEN MODE" per holder ("x" exclusive, "s" shared), one per line
	 * (QUERY; ACQUIRE: the caller's own line). */
	CM_OP_LOCK,
	/* Bearer tokens (server/token.c; README "Access rules"): flags = enum
	 * cm_token_op, at the meta leader. create: value = "ID HASH EXPIRES
	 * USER [GROUP...]" (HASH the hex SHA-256 of the token, EXPIRES unix
	 * seconds, 0 never); revoke: value = ID; list: value answers "ID
	 * EXPIRES USER [GROUP...]" lines (admin on "/" for these three);
	 * resolve (trusted proxies only): value = the token, answers "USER
	 * [GROUP...]", -ENOENT for a token unknown, revoked or expired. */
	CM_OP_TOKEN,
	CM_OP_COUNT
};

/* CM_OP_CONF_CHANGE flags: the step (the values of raft_change_op). */
enum cm_conf_op {
	CM_CONF_ADD_LEARNER = 1,
	CM_CONF_PROMOTE = 2,
	CM_CONF_REMOVE = 3,
};

/* CM_OP_ACL flags. */
enum cm_acl_op { CM_ACL_GRANT = 1, CM_ACL_REVOKE = 2, CM_ACL_LIST = 3 };

/* CM_OP_LEASE flags. CHECKPOINT and EXPIRE are the leader's own entries
 * (a client's request with them is -EINVAL). */
enum cm_lease_op {
	CM_LEASE_GRANT = 1,
	CM_LEASE_KEEPALIVE = 2,
	CM_LEASE_REVOKE = 3,
	CM_LEASE_TTL = 4,
	CM_LEASE_LIST = 5,
	CM_LEASE_CHECKPOINT = 6, /* from_index = the ms left (0: full TTL again) */
	CM_LEASE_EXPIRE = 7,     /* delete one attached key, or the lease when none is left */
};
#define CM_LEASE_ID_MAX INT64_MAX          /* etcd's lease ids are int64 too */
#define CM_LEASE_TTL_MIN_MS 1000u
#define CM_LEASE_TTL_MAX_MS (30u * 86400u * 1000u) /* 30 days */
#define CM_LEASE_KEYS_MAX 10000u /* keys one lease may hold in one group */

/* CM_OP_LOCK flags. */
#define CM_LOCK_ACQUIRE 0x1
#define CM_LOCK_RELEASE 0x2
#define CM_LOCK_QUERY 0x4
#define CM_LOCK_SHARED 0x10 /* ACQUIRE: a shared (read) hold */
#define CM_LOCK_WAIT 0x20   /* ACQUIRE: queue and answer when granted */
/* CM_OP_TOKEN flags. */
enum cm_token_op {
	CM_TOKEN_CREATE = 1,
	CM_TOKEN_REVOKE = 2,
	CM_TOKEN_LIST = 3,
	CM_TOKEN_RESOLVE = 4,
};

/* A forwarded identity (REQ's 18th element): "USER[ GROUP...]", names as
 * in access rules, at most 16 groups. */
#define CM_AS_MAX 1100

/* CM_OP_SHARD_MERGE flags: the phases, in order. */
enum cm_merge_phase {
	CM_MERGE_FREEZE = 1, /* the child: its top refuses writes (WRONGSHARD) from now on */
	CM_MERGE_BEGIN = 2,  /* the parent: CM_MERGE_COPY writes go below the boundary */
	CM_MERGE_COMMIT = 3, /* the parent: the boundary becomes a plain directory */
	CM_MERGE_RETIRE = 4, /* meta: the child's map entry goes; its replicas drop it */
};

enum cm_consistency {
	CM_READ_LINEARIZABLE = 0, /* ReadIndex on the leader */
	CM_READ_FOLLOWER = 1,     /* any replica whose applied index >= token */
};

/* REQ flags. */
#define CM_PUT_IF_VERSION 0x01 /* CAS: only if the node's version == version (0: absent) */
#define CM_PUT_CREATE 0x02     /* only if the node does not exist */
#define CM_DEL_RECURSIVE 0x04  /* delete a directory and everything under it */
#define CM_DEL_DIR 0x08        /* rmdir: only an (empty) directory */
#define CM_SET_MODE 0x10       /* PUT: also set mode/uid/gid */
#define CM_PUT_KEEP_VALUE 0x20 /* PUT: keep the node's value (chmod/chown with CM_SET_MODE) */
#define CM_MKDIR_BOUNDARY 0x40 /* MKDIR: a shard's top directory in its parent shard:
				* create-only (so the prefix was empty), and from
				* then on no write below it is accepted there */
#define CM_PUT_IF_MOD 0x80     /* CAS: only if the node's mod_index == mod_index (0:
				* absent). Unlike version, mod_index never repeats
				* in a group: a key deleted and re-created, or
				* replaced by a rename, never matches an old one */
#define CM_PUT_APPEND 0x100    /* PUT: value is appended to the node's current value
				* (created if absent): O_APPEND without losing what
				* another appender committed meanwhile */
#define CM_PUT_IF_CREATED 0x200 /* PUT: only the incarnation created at index
				 * `version` (-ENOENT if absent, -ESTALE if the path
				 * now names another node): a commit names its file */
#define CM_NO_PARENTS 0x400    /* PUT, MKDIR, RENAME: a missing parent is -ENOENT,
				* never created (POSIX calls, not mkdir -p) */
#define CM_SET_TIMES 0x2000     /* PUT: also set atime/mtime to the request's
				 * atime_ns/mtime_ns: a time, CM_TIME_NOW (the
				 * leader's stamp) or CM_TIME_OMIT (kept), as
				 * utimensat(2); ctime moves as for any change */
#define CM_MERGE_COPY 0x4000   /* PUT, MKDIR: a merge's copy into the parent,
				 * below a boundary being merged (SHARD_MERGE
				 * BEGIN); anywhere else WRONGSHARD as without
				 * it. No watch event: nothing changed for a
				 * reader, who reads the frozen child meanwhile.
				 * A PUT's version: the child's, which the copy
				 * keeps (0: counted as any PUT) */
#define CM_PUT_LEASE 0x8000     /* PUT: attach the node to lease from_index (a lease
				 * of the node's group; 0: detach). Without the
				 * flag a PUT keeps the node's lease. A file only:
				 * -EISDIR for a directory. Unknown lease: -ENOENT */
#define CM_GET_ATTR_ONLY 0x10000 /* GET: the node's attributes only (stat): the
				 * answer's value is empty. Same read rules as
				 * any GET (token, consistency). Servers before
				 * it ignore read flags and send the value too,
				 * which a client then drops; a server that
				 * refuses it (-EINVAL) gets the GET again
				 * without it (fs/exec.c) */
/* Every REQ flag a write may carry; anything else is refused (-EINVAL). */
#define CM_WRITE_FLAGS_KNOWN                                                            \
	(CM_PUT_IF_VERSION | CM_PUT_CREATE | CM_DEL_RECURSIVE | CM_DEL_DIR | CM_SET_MODE | \
	 CM_PUT_KEEP_VALUE | CM_MKDIR_BOUNDARY | CM_PUT_IF_MOD | CM_PUT_APPEND |           \
	 CM_PUT_IF_CREATED | CM_NO_PARENTS | CM_SET_TIMES | CM_MERGE_COPY | CM_PUT_LEASE)
/* CM_SET_TIMES operands that are not times (utimensat's UTIME_NOW, UTIME_OMIT). */
#define CM_TIME_OMIT INT64_MIN
#define CM_TIME_NOW (INT64_MIN + 1)
/* MKDIR: a shard's top directory in its own group, proposed by that group's
 * leader only (a client's request with it is refused): created if absent,
 * marked if present, and from then on neither removed nor moved (EBUSY).
 * Not in CM_WRITE_FLAGS_KNOWN: no client may send it. */
#define CM_MKDIR_TOP 0x800
#define CM_WATCH_PROGRESS 0x1000 /* WATCH: send a CM_EV_PROGRESS event every
				* CM_WATCH_PROGRESS_MS while this replica is not
				* stale (a watcher's proof that the stream lives) */

/* A watch with CM_WATCH_PROGRESS hears from its replica at least this often
 * while the replica has heard from its leader within the staleness bound. */
#define CM_WATCH_PROGRESS_MS 200

/* The meta group holds the shard registry; its id is never a shard's. */
#define CM_META_GROUP 0xffffffffu
/* Groups of shards added at run time: this plus their registry entry's
 * create index (a split's allocation answers with that index). */
#define CM_SHARD_GID_BASE (1ull << 32)

/*
 * Watch event kinds. One change (one log index) gives at most one event.
 * RESYNC: history up to index was compacted away; re-read what you cache.
 * PROGRESS (CM_WATCH_PROGRESS only): a heartbeat; every event of the
 * group's stream up to index (the replica's applied index) was sent.
 * STALE and LIVE never travel: the client library tells a watcher that asked
 * (cm_ac_watch_ex, CM_AC_WATCH_STATE) that a stream behind the watch went
 * silent or was lost (a cache fed by it is no longer current), or that every
 * stream is live again.
 */
enum cm_event_kind {
	CM_EV_PUT = 1,
	CM_EV_DELETE,
	CM_EV_MKDIR,
	CM_EV_RENAME,
	CM_EV_RESYNC,
	CM_EV_PROGRESS,
	CM_EV_WIRE_MAX = CM_EV_PROGRESS, /* the last kind on the wire */
	CM_EV_STALE,
	CM_EV_LIVE,
};

/* A node's metadata. mode carries the file type (S_IFREG, S_IFDIR, S_IFLNK). */
struct cm_attr {
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	int64_t mtime_ns;
	int64_t ctime_ns;
	uint64_t create_index;
	uint64_t mod_index;
	uint64_t version; /* 1 on create, +1 on every change of the node itself */
	uint32_t size;    /* bytes of the value */
	int64_t atime_ns; /* set at creation and by CM_SET_TIMES only: reads never move it */
	uint32_t nlink;   /* 1 for a file or symlink; 2 + subdirectories for a directory;
			   * 0: unknown (an older server's answer) */
};

/* Strings and values below point into the frame they were decoded from. */
struct cm_bytes {
	const char *p;
	uint32_t len;
};

struct cm_hello {
	uint32_t version;
	struct cm_bytes cluster;
	uint64_t node_id;
};

struct cm_req {
	uint64_t id;
	uint8_t op; /* enum cm_op */
	uint64_t group;
	uint64_t token;      /* highest applied index the client has seen in group */
	uint8_t consistency; /* enum cm_consistency */
	uint32_t flags;
	struct cm_bytes path;
	struct cm_bytes path2; /* RENAME target */
	struct cm_bytes value;
	uint64_t version;      /* CM_PUT_IF_VERSION */
	uint32_t mode, uid, gid;
	uint64_t from_index;   /* WATCH */
	uint64_t mod_index;    /* CM_PUT_IF_MOD */
	int64_t atime_ns, mtime_ns; /* CM_SET_TIMES: a time, CM_TIME_NOW or CM_TIME_OMIT */
	struct cm_bytes as;    /* forwarded identity "USER[ GROUP...]"; len 0: none */
};

struct cm_dirent {
	struct cm_bytes name;
	struct cm_attr attr;
};

struct cm_group_status {
	uint64_t group;
	struct cm_bytes prefix;
	uint8_t role; /* enum raft_role */
	uint64_t term, leader, commit, applied, last, snap_index;
	uint32_t n_members;
	uint64_t members[12];
	/* Since membership changes (absent from older servers: all zero). */
	uint8_t kinds[12];    /* members[k]'s raft_node_kind: 1 voter, 2 learner */
	uint64_t match[12];   /* on the leader: members[k]'s replicated index; else 0 */
	bool conf_pending;    /* a membership change is in the log, not yet applied */
};

/* STATUS: what the node's /readyz and /metrics say, at a glance. */
#define CM_STATUS_MAX_PEERS 16
#define CM_STATUS_REASON_MAX 127

struct cm_peer_health {
	uint64_t id;
	bool up;             /* a connection to it is established */
	uint64_t silence_ms; /* since anything arrived from it; UINT64_MAX never */
	uint64_t frames_out, bytes_out, frames_in, bytes_in;
};

struct cm_node_health {
	bool ready;                /* what /readyz answers */
	char reason[CM_STATUS_REASON_MAX + 1]; /* why not ready; "" when ready */
	uint8_t space;             /* enum cm_space_level */
	uint32_t store_permille;   /* of --map-size in use */
	uint64_t fsyncs;           /* the loop's commits so far */
	uint64_t fsync_p50_us, fsync_p99_us; /* upper bounds of their buckets */
	uint64_t requests, failed; /* client requests answered; failed of them */
	uint32_t n_peers;
	struct cm_peer_health peers[CM_STATUS_MAX_PEERS];
};

struct cm_shard {
	uint64_t group;
	struct cm_bytes prefix;
	uint32_t n_replicas;
	uint64_t replicas[12];
	/* A shard split off a written prefix (0 otherwise, and from older
	 * servers): its parent group and the parent's index it was born at.
	 * Its own index space continues the parent's from there: a watch of
	 * it resumes from born, no token of it is below born. */
	uint64_t parent, born;
};

/* The node table's states (server/nodes.c). */
enum cm_node_state {
	CM_NODE_ACTIVE = 1,
	CM_NODE_REMOVED = 2, /* its id is never used again; peers refuse it */
};

struct cm_node_addr {
	uint64_t id;
	struct cm_bytes addr;
	/* Since the node table (older servers: "" and 0). */
	struct cm_bytes http;
	uint8_t state; /* enum cm_node_state */
};

struct cm_resp {
	uint64_t id;
	int32_t err;
	uint64_t group;
	uint64_t token;        /* the replica's applied index when it answered */
	uint64_t leader_id;    /* CM_ENOTLEADER: hint, 0 if unknown */
	struct cm_bytes leader_addr;
	uint8_t op;            /* the request's op: says what body holds */
	bool has_attr;
	struct cm_attr attr;
	struct cm_bytes value;
	struct cm_dirent *ents; /* LIST; owned by the decoded message */
	uint32_t n_ents;
	uint64_t node_id;       /* STATUS */
	struct cm_group_status *groups; /* STATUS; owned by the decoded message */
	uint32_t n_groups;
	bool has_health;                /* STATUS */
	struct cm_node_health *health;  /* STATUS; owned by the decoded message */
	uint64_t epoch;                 /* SHARDS */
	struct cm_shard *shards;        /* SHARDS; owned by the decoded message */
	uint32_t n_shards;
	struct cm_node_addr *nodes;     /* SHARDS; owned by the decoded message */
	uint32_t n_nodes;
};

struct cm_event {
	uint64_t watch_id;
	uint64_t group;
	uint64_t index;
	uint8_t kind; /* enum cm_event_kind */
	struct cm_bytes path;
	struct cm_bytes path2;
	bool has_attr;
	struct cm_attr attr;
};

struct cm_errframe {
	int32_t err;
	struct cm_bytes message;
};

#endif /* CONFMAN_PROTO_H */
