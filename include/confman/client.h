/* client.h: Confman's client library: an asynchronous core on libuv and a synchronous API. */
#ifndef CONFMAN_CLIENT_H
#define CONFMAN_CLIENT_H

/*
 * The library hides shards, leaders, redirects and retries (DESIGN.md: the
 * client is the ambassador of the sharding pattern).
 *
 * - It keeps at most one TCP connection per server, opened on first use.
 * - It keeps a shard map (prefix -> group, replicas; node id -> address),
 *   fetched with SHARDS after its first handshake. A request for a path goes
 *   to the group of the longest matching prefix, with REQ.group set to that
 *   group; until the map has arrived (or when a server does not answer
 *   SHARDS) it goes with REQ.group = 0 and the server routes it. Writes and
 *   linearizable reads go to the group's known leader, else to one of its
 *   replicas; follower reads to the preferred server when it is a replica
 *   of the group, else to the first replica in the map's order that is up.
 * - A CM_EWRONGSHARD answer carries the server's registry epoch: when it is
 *   newer than the map's, the map is fetched again (once per epoch, from
 *   that server, then at most every 100 ms while it lags) and the request
 *   goes again, read or write alike (nothing was applied). Nodes whose
 *   addresses come from the map count against CM_CLIENT_MAX_SERVERS.
 * - Per group it remembers the leader and the highest version token
 *   (applied index) any answer carried, and sends that group's token with
 *   every later request of the group, so a process reads its own writes and
 *   never reads backwards, whichever replica answers. A token goes out only
 *   with its group named in the request (the server refuses the path if
 *   another group owns it), never with a request the server routes: until
 *   the map has arrived, a follower read of a client that holds any token
 *   is sent linearizable instead (it cannot know which group's token to
 *   send), and one of a client that holds none goes as it is.
 * - Writes (PUT, DELETE, MKDIR, RENAME, SHARD_ADD and the membership ops)
 *   follow NOT_LEADER redirects.
 * - What is safe is retried with exponential backoff (20 ms doubling to
 *   500 ms, jittered) until the request's timeout: every read, and a write
 *   only when it provably was not applied (CM_ENOTLEADER, CM_ENOLEADER,
 *   CM_ETRANSFERRING, CM_EWRONGSHARD, or a connection that failed before
 *   the request's frame was handed to the socket).
 * - A write whose connection broke after its frame was sent fails with -EIO,
 *   and one that got no answer in time with -ETIMEDOUT: in both cases the
 *   OUTCOME IS UNKNOWN, the write may or may not have been applied. Use
 *   CM_PUT_IF_VERSION / CM_PUT_CREATE to make a retry safe.
 *
 * Errors are 0 or negative: a negative errno or a CM_E* code of
 * confman/error.h (cm_strerror(), cm_errname()). Error codes a server
 * returns for an operation (-ENOENT, -EEXIST, -ECANCELED for a failed CAS,
 * -ENOTEMPTY, -ENOTDIR, -EISDIR, -EFBIG, -EXDEV, -EBUSY (a shard's top),
 * -EINVAL, -ENAMETOOLONG, -ENOSPC) are passed through unchanged.
 *
 * Nothing here is thread-safe: a struct cm_ac belongs to its loop's thread,
 * a struct cm_client to one thread at a time.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confman/error.h"
#include "confman/proto.h"

/* libuv's loop, declared as uv.h does (C11 allows the repeated typedef): a
 * program using only the synchronous API needs no libuv headers, which do
 * not compile under strict -std=c17 without a POSIX feature macro. */
typedef struct uv_loop_s uv_loop_t;

#define CM_CLIENT_DEFAULT_SERVERS "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
#define CM_CLIENT_DEFAULT_CLUSTER "confman"
#define CM_CLIENT_DEFAULT_TIMEOUT_MS 5000
#define CM_CLIENT_DEFAULT_OUTSTANDING 4096 /* requests in flight per client */
#define CM_CLIENT_MAX_SERVERS 64 /* listed plus learned from redirects */
#define CM_CLIENT_MAX_WATCHES 1024
#define CM_CLIENT_DEFAULT_WATCH_SILENCE_MS 1000 /* a watch stream silent this long is dead */
#define CM_CLIENT_MAX_GROUPS 4096 /* groups whose token and leader are tracked */
#define CM_CLIENT_MAX_SHARDS 4096 /* shards in a map the client accepts */
#define CM_CLIENT_MAX_NODES 4096  /* nodes in a map the client accepts */
#define CM_CLIENT_MAX_REPLICAS 12 /* replicas of one shard (struct cm_shard) */
#define CM_CLIENT_SEND_MAX (16u << 20) /* bytes queued per connection */

/* cm_req.consistency: use the client's default (struct cm_client_opts). */
#define CM_READ_DEFAULT 0xff

/*
 * SIGPIPE: the library writes to sockets with libuv, which does not mask
 * SIGPIPE. A process using it must ignore the signal (signal(SIGPIPE,
 * SIG_IGN)), or a server that closes a connection mid-write kills it.
 * confmanctl, confman-fs (through libfuse) and the examples do.
 */
struct cm_client_opts {
	/* "host:port,host:port" ("[v6addr]:port" too). NULL: $CONFMAN_SERVERS,
	 * or CM_CLIENT_DEFAULT_SERVERS when that is unset. Borrowed during the
	 * call that takes the options. */
	const char *servers;
	const char *cluster;      /* NULL: CM_CLIENT_DEFAULT_CLUSTER; borrowed */
	uint32_t timeout_ms;      /* per request, retries included; 0: 5000 */
	/* Reads whose cm_req.consistency is CM_READ_DEFAULT use this. Zero is
	 * CM_READ_LINEARIZABLE (the strongest); cm_client_opts_init() picks
	 * CM_READ_FOLLOWER, DESIGN.md's default. */
	uint8_t consistency;
	uint32_t max_outstanding; /* 0: CM_CLIENT_DEFAULT_OUTSTANDING */
	/* A watch stream (cm_ac_watch) that has sent nothing, not even a
	 * heartbeat, for this long is dead: the watch re-subscribes elsewhere
	 * and, meanwhile, is not live. 0: CM_CLIENT_DEFAULT_WATCH_SILENCE_MS;
	 * at least 2 * CM_WATCH_PROGRESS_MS. */
	uint32_t watch_silence_ms;
	/* TLS (README, "TLS and identities"): ca is the CA bundle that signed
	 * the servers' certificates; NULL: plain TCP (servers with insecure =
	 * true). cert and key (both or neither; the key mode 0600 and owned by
	 * this user) are this client's identity: CN the user, OU its groups.
	 * Paths, borrowed during the call that takes the options. */
	const char *ca, *cert, *key;
};

/* cm_client_opts_init - fill opts with the defaults (follower reads). */
void cm_client_opts_init(struct cm_client_opts *opts);

/*
 * cm_client_tls_check - load opts' TLS credentials as cm_ac_new() would and
 * say what is wrong, for a tool to print before it starts: why gets the
 * file and the reason (a key others can read, no CA, a bad certificate).
 * Returns 0 (also when opts has no ca: plain TCP), -EINVAL, -EPERM,
 * -ENOENT, -ENOMEM.
 */
int cm_client_tls_check(const struct cm_client_opts *opts, char *why, size_t why_len);

/* ======================== asynchronous core ======================== */

struct cm_ac; /* opaque */

/*
 * A request's completion: fires exactly once for every request accepted by
 * cm_ac_submit(). err is 0 or the error; resp is the server's answer when
 * there is one (also for an error the server returned, e.g. -ENOENT), NULL
 * when the library gave up (-ETIMEDOUT, -EIO, -ECANCELED, ...). resp and
 * everything it points at are valid only during the call.
 */
typedef void (*cm_ac_cb)(void *arg, int err, const struct cm_resp *resp);

/*
 * A watch's events: (0, ev) per event, in the order the server sent them,
 * ev valid during the call only; then, unless cm_ac_unwatch() stopped it,
 * exactly one final call (err < 0, NULL).
 */
typedef void (*cm_ac_event_cb)(void *arg, int err, const struct cm_event *ev);

typedef void (*cm_ac_close_cb)(void *arg);

/*
 * cm_ac_new - create a client on loop. Nothing is connected until the first
 * request.
 * @loop: borrowed; must outlive the client (until the close callback)
 * @opts: copied; NULL means all defaults (cm_client_opts_init())
 * @out:  the client, freed by cm_ac_close()
 * Returns 0, -EINVAL (malformed server list, empty list, too many servers,
 * cluster id longer than CM_CLUSTER_MAX, bad consistency), -ENOMEM.
 */
int cm_ac_new(uv_loop_t *loop, const struct cm_client_opts *opts, struct cm_ac **out);

/*
 * cm_ac_submit - send a request; cb fires exactly once, later (never from
 * inside this call).
 * @req: borrowed for the call (path, path2 and value are copied). The
 *       library fills id and token; group 0 means "route by the shard map",
 *       which is what callers normally want. A nonzero group pins the
 *       request to that group (sent to its leader or replicas, never
 *       re-routed): a CM_EWRONGSHARD answer from that group itself (a
 *       boundary fences the path) or with a registry epoch newer than the
 *       map's ends it at once. consistency may be CM_READ_DEFAULT. op is
 *       GET, LIST, PUT, DELETE, MKDIR, RENAME, STATUS, SHARDS or SHARD_ADD
 *       (its group is always CM_META_GROUP; prefer cm_shard_add());
 *       watches have their own functions. The membership ops (prefer
 *       the calls of the "membership" section): CONF_CHANGE and TRANSFER
 *       go to req.group's leader (its replicas by the map, then NOT_LEADER
 *       redirects); NODE_ADD, NODE_REMOVE (group set to CM_META_GROUP) and
 *       SHARD_SET (req.group names the shard) to the meta group's leader.
 *       They are writes: never sent again once their outcome is unknown,
 *       except SHARD_SET (idempotent). Their operands are checked
 *       (-EINVAL): a group for CONF_CHANGE, TRANSFER and SHARD_SET (not
 *       the meta group), a step in flags and a node id in version for
 *       CONF_CHANGE, a node id for the NODE_ ops, a value for NODE_ADD
 *       and SHARD_SET.
 * Returns 0, or (and then cb never fires):
 *   -EINVAL       bad op, consistency, or path (must be absolute and clean:
 *                 no "//", ".", "..", trailing '/', NUL), RENAME without
 *                 a valid path2
 *   -ENAMETOOLONG a path over CM_PATH_MAX or a component over CM_NAME_MAX
 *   -EFBIG        value over CM_VALUE_MAX_LIMIT
 *   -EBUSY        max_outstanding requests already in flight
 *   -ECANCELED    the client is closing
 *   -ENOMEM
 * Errors cb may get: anything the server returns for the op, -ETIMEDOUT
 * (deadline passed; for a write the outcome is unknown), -EIO (a write's
 * connection broke after sending: outcome unknown), -ECONNREFUSED (no
 * server accepted a connection before the deadline), CM_ENOLEADER (none
 * known before the deadline), CM_EWRONGSHARD (servers kept refusing the
 * path until the deadline: no map fetched put it where they agree; nothing
 * was applied), CM_EUNKNOWNPEER or -EPROTO (a server refused the
 * handshake: wrong cluster id or protocol version), -ECANCELED
 * (cm_ac_close()), -ENOMEM.
 */
int cm_ac_submit(struct cm_ac *ac, const struct cm_req *req, cm_ac_cb cb, void *arg);

/*
 * cm_ac_submit_to - like cm_ac_submit() but always to one server ("host:port",
 * listed or not) and without failing over: for STATUS of a given node. A
 * refused connection fails the request at once (-ECONNREFUSED).
 * Returns as cm_ac_submit(), and -EINVAL for a malformed address, -ENOSPC
 * when CM_CLIENT_MAX_SERVERS are known already.
 */
int cm_ac_submit_to(struct cm_ac *ac, const char *server, const struct cm_req *req, cm_ac_cb cb,
		    void *arg);

/*
 * cm_ac_watch - watch every change under prefix (the prefix itself included),
 * in every shard: the group that owns prefix and every group whose shard is
 * nested below it (found in the shard map). Each group's stream is a
 * subscription of its own with its own resume index; events of one group
 * come in its log order, events of different groups in no defined order
 * (ev->group says which; compare indexes of one group only).
 * @from_index: deliver changes of the group that owns prefix from this log
 *              index on; 0 means from now. Streams of nested shards start
 *              from now, except those of shards created after the watch
 *              (seen in a newer map), which start from their first index.
 * @watch_id:   out, the handle for cm_ac_unwatch(); may be NULL
 * Streams ask for heartbeats (CM_EV_PROGRESS, which are not passed on):
 * one silent for watch_silence_ms (struct cm_client_opts), or whose
 * connection drops, re-subscribes on another server from the index after
 * the last event delivered, so no change is lost or repeated. A new shard
 * below prefix is found when the map is fetched again: at least every
 * CM_AC_WATCH_MAP_MS (5 s), and every 250 ms for 2 s after a MKDIR event
 * (a shard's top is made by one). An event of kind CM_EV_RESYNC means the
 * group's history was compacted away (or the prefix moved to another
 * group): re-read what you cache. The watch ends (final callback) with
 * -ECANCELED on cm_ac_close(), with the server's error if it refused a
 * stream, or with -ETIMEDOUT if no server accepted a (re-)subscription
 * within the timeout.
 * Returns 0, -EINVAL / -ENAMETOOLONG (bad prefix), -EBUSY
 * (CM_CLIENT_MAX_WATCHES), -ECANCELED (closing), -ENOMEM.
 */
int cm_ac_watch(struct cm_ac *ac, const char *prefix, uint64_t from_index, cm_ac_event_cb cb,
		void *arg, uint64_t *watch_id);

/* cm_ac_watch_ex flags: also deliver CM_EV_STALE when a stream behind the
 * watch is lost or silent while the watch was live, and CM_EV_LIVE when
 * every stream is live again (the first one once all are subscribed). A
 * stream is live while it is subscribed and has been heard from within
 * watch_silence_ms; a watch is live while the map is known and every
 * group at and below its prefix has a live stream. ev->group of STALE is
 * the group whose stream failed (0: not known). */
#define CM_AC_WATCH_STATE 0x1

/* cm_ac_watch_ex - cm_ac_watch() with flags (CM_AC_WATCH_STATE); -EINVAL
 * for an unknown flag. */
int cm_ac_watch_ex(struct cm_ac *ac, const char *prefix, uint64_t from_index, uint32_t flags,
		   cm_ac_event_cb cb, void *arg, uint64_t *watch_id);

/* cm_ac_watch_as - cm_ac_watch_ex() for a trusted proxy's caller: every
 * subscription carries the identity as ("USER[ GROUP...]", NULL: none;
 * proto.h's forwarded identity), so the servers check it and filter the
 * events as that identity may see them. Requests of cm_ac_submit() forward
 * one in cm_req.as. Returns as cm_ac_watch_ex(), -EINVAL for as over
 * CM_AS_MAX bytes. */
int cm_ac_watch_as(struct cm_ac *ac, const char *prefix, uint64_t from_index, uint32_t flags,
		   const char *as, cm_ac_event_cb cb, void *arg, uint64_t *watch_id);

/*
 * cm_ac_watch_covers - whether watch_id has a live stream of group now
 * (subscribed, heard from within the silence bound), and the last index of
 * that group it delivered (events and heartbeats: every change of the
 * group up to *last that matches the prefix was delivered). A cache fed by
 * the watch may keep a value read from group at a token >= *last.
 */
bool cm_ac_watch_covers(const struct cm_ac *ac, uint64_t watch_id, uint64_t group,
			uint64_t *last);

/*
 * cm_ac_unwatch - stop a watch: its callback is never called again (not even
 * the final call), from the moment this returns. May be called from the
 * watch's own callback. Returns 0, -ENOENT (unknown or finished watch).
 */
int cm_ac_unwatch(struct cm_ac *ac, uint64_t watch_id);

/*
 * cm_ac_close - shut the client down: every pending request completes with
 * -ECANCELED and every watch ends with -ECANCELED (callbacks fire during this
 * call), connections close, and cb (may be NULL) fires once every handle is
 * closed; the client's memory is then gone. May be called from a callback.
 * Calling it twice is a programming error.
 */
void cm_ac_close(struct cm_ac *ac, cm_ac_close_cb cb, void *arg);

/* cm_ac_token - the highest version token seen for group (0 if none). */
uint64_t cm_ac_token(const struct cm_ac *ac, uint64_t group);

/* cm_ac_group_of - the group whose shard holds path (len bytes) in the
 * client's shard map as it is now, 0 while no map was installed. No
 * request: a caller's hint (the mount tells a shard's top directory in a
 * listing of its parent by it), never a routing decision. */
uint64_t cm_ac_group_of(const struct cm_ac *ac, const char *path, uint32_t len);

/* ======================== synchronous API ======================== */

struct cm_client; /* opaque; runs a private loop inside each call */

/*
 * cm_client_open - create a synchronous client; nothing is connected yet.
 * @opts: copied; NULL for the defaults
 * @out:  freed with cm_client_close()
 * Returns 0, -EINVAL (see cm_ac_new()), -ENOMEM.
 */
int cm_client_open(const struct cm_client_opts *opts, struct cm_client **out);

/* cm_client_close - close connections and free c (NULL is fine). */
void cm_client_close(struct cm_client *c);

/*
 * cm_get - read a file.
 * @path:  absolute path, NUL-terminated
 * @value: out, malloc'd copy of the value (NUL-terminated for convenience,
 *         the terminator not counted in len); the caller frees it. May be NULL.
 * @len:   out, bytes of the value (may be NULL)
 * @attr:  out, its metadata (may be NULL)
 * Returns 0, -ENOENT, -EISDIR (a directory), -EINVAL / -ENAMETOOLONG (bad
 * path), -ETIMEDOUT, -ECONNREFUSED, CM_ENOLEADER (linearizable reads),
 * -ENOMEM, and the other cm_ac_submit() errors.
 */
int cm_get(struct cm_client *c, const char *path, void **value, uint32_t *len,
	   struct cm_attr *attr);

/*
 * cm_get_from - cm_get() answered by one server only ("host:port"), with no
 * failover, redirect or token: what that replica holds now (diagnostics,
 * tests). Errors as cm_get(), plus -ECONNREFUSED, and CM_ESTALE / CM_ENOLEADER
 * from a replica that cannot vouch for its data.
 */
int cm_get_from(struct cm_client *c, const char *server, const char *path, void **value,
		uint32_t *len, struct cm_attr *attr);

/*
 * cm_put - create or replace a file.
 * @flags:      0, or CM_PUT_IF_VERSION (compare-and-set against if_version,
 *              0 meaning "must not exist"), CM_PUT_CREATE (must not exist)
 * @attr:       out, the node after the write (new version); may be NULL
 * Returns 0, -ECANCELED (CAS: the version differed), -EEXIST (CM_PUT_CREATE
 * and it exists), -ENOENT (parent missing, if the server requires it),
 * -EISDIR, -ENOTDIR, -EFBIG (value over the server's limit), -EINVAL /
 * -ENAMETOOLONG (bad path or flags), -ETIMEDOUT / -EIO (outcome unknown),
 * CM_ENOLEADER, -ECONNREFUSED, -ENOMEM.
 */
int cm_put(struct cm_client *c, const char *path, const void *value, uint32_t len,
	   uint32_t flags, uint64_t if_version, struct cm_attr *attr);

/* cm_put_ex's operands beyond cm_put()'s: the node's type, permissions,
 * owner and times, as an archive restores them. */
struct cm_put_args {
	/* cm_put()'s flags, and CM_SET_MODE (set mode's permission bits, uid
	 * and gid on an existing node too), CM_SET_TIMES (atime_ns, mtime_ns),
	 * CM_PUT_KEEP_VALUE (metadata only: value is ignored; a directory
	 * too), CM_NO_PARENTS (a missing parent is -ENOENT), CM_PUT_LEASE
	 * (lease below; an unknown lease is -ENOENT, a directory -EISDIR). */
	uint32_t flags;
	uint64_t if_version; /* CM_PUT_IF_VERSION's operand */
	/* Type and permissions: S_IFREG (or 0) or S_IFLNK (the value is the
	 * target), with permission bits (07777). A new node takes them, and
	 * uid and gid, whatever the flags; an existing one only with
	 * CM_SET_MODE. 0: a file with mode 0644. */
	uint32_t mode;
	uint32_t uid, gid;          /* with CM_SET_MODE; else the caller's */
	int64_t atime_ns, mtime_ns; /* with CM_SET_TIMES: a time, CM_TIME_NOW, CM_TIME_OMIT */
	/* With CM_PUT_LEASE (and only then read, so that callers built before
	 * the field are safe): attach the file to this lease of its group (0:
	 * detach it). Without the flag a put keeps the file's lease. */
	uint64_t lease;
};

/*
 * cm_put_ex - cm_put() that also sets the node's metadata (struct
 * cm_put_args); mkdir then cm_put_ex(CM_PUT_KEEP_VALUE | CM_SET_MODE |
 * CM_SET_TIMES) restores a directory's.
 * Returns what cm_put() returns, and -EINVAL for an unknown flag, a mode
 * with another type than S_IFREG or S_IFLNK or bits beyond 07777, or a
 * type change with CM_PUT_KEEP_VALUE (the server's refusal).
 */
int cm_put_ex(struct cm_client *c, const char *path, const void *value, uint32_t len,
	      const struct cm_put_args *args, struct cm_attr *attr);

/*
 * cm_delete - remove a file, or a directory with CM_DEL_DIR (must be empty)
 * or CM_DEL_RECURSIVE (with everything below it).
 * Returns 0, -ENOENT, -ENOTEMPTY, -EISDIR (a directory without a DEL flag),
 * -ENOTDIR (CM_DEL_DIR on a file), -EBUSY (a shard's top directory, or
 * CM_DEL_RECURSIVE above one), -EINVAL, -ETIMEDOUT / -EIO (outcome
 * unknown), CM_ENOLEADER, -ECONNREFUSED, -ENOMEM.
 */
int cm_delete(struct cm_client *c, const char *path, uint32_t flags);

/*
 * cm_mkdir - create a directory; mode 0 means 0755.
 * Returns 0, -EEXIST, -ENOENT, -ENOTDIR, -EINVAL, -ENAMETOOLONG, -ETIMEDOUT /
 * -EIO (outcome unknown), CM_ENOLEADER, -ECONNREFUSED, -ENOMEM.
 */
int cm_mkdir(struct cm_client *c, const char *path, uint32_t mode, struct cm_attr *attr);

/*
 * cm_rename - move from to to, atomically (one Raft entry) within a shard.
 * Returns 0, -ENOENT, -EEXIST / -ENOTEMPTY (target in the way), -EXDEV
 * (different shards), -EBUSY (from or onto a shard's top directory, or
 * a directory above one), -EINVAL (e.g. into its own subtree), -ETIMEDOUT / -EIO
 * (outcome unknown), CM_ENOLEADER, -ECONNREFUSED, -ENOMEM.
 */
int cm_rename(struct cm_client *c, const char *from, const char *to, struct cm_attr *attr);

struct cm_list_entry {
	char *name; /* NUL-terminated, owned by the array */
	struct cm_attr attr;
};

/*
 * cm_list - the children of a directory, in byte order of name.
 * @ents: out, malloc'd array freed with cm_list_free() (NULL when n is 0)
 * Returns 0, -ENOENT, -ENOTDIR, -EINVAL, -ETIMEDOUT, -ECONNREFUSED,
 * CM_ENOLEADER, -ENOMEM.
 */
int cm_list(struct cm_client *c, const char *path, struct cm_list_entry **ents, uint32_t *n);
void cm_list_free(struct cm_list_entry *ents, uint32_t n);

struct cm_group_info {
	uint64_t group;
	char *prefix; /* owned by the status */
	uint8_t role; /* 1 follower, 2 pre-candidate, 3 candidate, 4 leader */
	uint64_t term, leader, commit, applied, last, snap_index;
	uint32_t n_members;
	uint64_t members[12];
	/* Since membership changes (all zero from an older server). */
	uint8_t kinds[12];  /* members[k]: 1 voter, 2 learner */
	uint64_t match[12]; /* the leader's: members[k]'s replicated index; 0 elsewhere */
	bool conf_pending;  /* a membership change is in the log, not yet applied */
};

struct cm_node_status {
	uint64_t node_id;
	uint32_t n_groups;
	struct cm_group_info *groups; /* owned */
	bool has_health;              /* false from a node too old to say */
	struct cm_node_health health; /* readiness, store, fsync, requests, peers */
};

/*
 * cm_status - ask one server ("host:port") for its node id and groups.
 * @out: freed with cm_status_free()
 * Returns 0, -ECONNREFUSED, -ETIMEDOUT, -EINVAL (bad address), -ENOMEM.
 */
int cm_status(struct cm_client *c, const char *server, struct cm_node_status **out);
void cm_status_free(struct cm_node_status *st);

struct cm_shard_info {
	uint64_t group;
	char *prefix; /* NUL-terminated; owned by the map */
	uint32_t n_replicas;
	uint64_t replicas[CM_CLIENT_MAX_REPLICAS]; /* node ids */
	uint64_t parent, born; /* split off group `parent` at its index `born`; 0, 0 otherwise */
};

struct cm_node_info {
	uint64_t id;
	char *addr;    /* "host:port", NUL-terminated; owned by the map */
	char *http;    /* its HTTP address ("" none or unknown); owned by the map */
	uint8_t state; /* enum cm_node_state: active, or removed (never reused) */
};

struct cm_shard_map {
	uint64_t epoch;                /* the registry's version */
	uint32_t n_shards;
	struct cm_shard_info *shards;  /* owned; in the server's order */
	uint32_t n_nodes;
	struct cm_node_info *nodes;    /* owned */
};

/*
 * cm_shards - the shard registry as one server has applied it (any server:
 * a lagging one may answer an older epoch). The client's own map is brought
 * up to date from it too when it is newer.
 * @out: freed with cm_shards_free(); NULL on error
 * Returns 0, -EMSGSIZE (more than CM_CLIENT_MAX_SHARDS shards or
 * CM_CLIENT_MAX_NODES nodes), -EINVAL (NULL argument), -ETIMEDOUT,
 * -ECONNREFUSED, -ENOMEM, a server's error for SHARDS, and the other
 * cm_ac_submit() errors.
 */
int cm_shards(struct cm_client *c, struct cm_shard_map **out);
void cm_shards_free(struct cm_shard_map *m);

/*
 * cm_shard_split - make prefix, which may hold data, a shard of its own,
 * online: its keys move to a new group that starts on the parent shard's
 * nodes from the parent's state at one log index (no data is copied over
 * the network; cm_shard_set/`shard move` spread it afterwards). Three steps,
 * each answered as the first time when repeated, so a call that failed is
 * simply made again: allocate the group (pending), split in the parent,
 * record the birth. group and born (may be NULL): the new group and the
 * parent's index it was born at.
 * Returns 0, -EEXIST (a shard already), -EINVAL ("/" or a bad prefix),
 * -ENOENT (no such directory), -EBUSY (a shard below it: split that one's
 * parent), CM_ECONFPENDING (the parent has a membership change under way or
 * learners), and the errors of any request.
 */
int cm_shard_split(struct cm_client *c, const char *prefix, uint64_t *group, uint64_t *born);

/* A dump's bytes, in order. */
struct cm_dump_chunk {
	const void *p;
	uint32_t len;
	uint64_t offset; /* of p[0] in the dump */
	uint64_t total;  /* the dump's size */
	uint64_t index;  /* the group's index it was taken at */
};
/* Called per chunk; nonzero stops the dump (and is returned). */
typedef int (*cm_dump_sink)(void *arg, const struct cm_dump_chunk *ch);

/*
 * cm_dump - a group's whole tree as cm_kv_snapshot serialises it (a backup's
 * GROUP section), read at a linearizable point: the replica confirms the
 * leader's commit index (ReadIndex) and waits to apply it, so the dump holds
 * every write acknowledged before the call. From server ("host:port", a
 * replica of group: every chunk must come from the one that took it).
 * prefix: the group's (ignored for CM_META_GROUP, pass "/").
 * index: out, the index the dump was taken at.
 * Returns 0, CM_ESTALE (the replica dropped it: call again), the sink's
 * value, and the errors of any read.
 */
int cm_dump(struct cm_client *c, const char *server, uint64_t group, const char *prefix,
	    cm_dump_sink sink, void *arg, uint64_t *index);

/*
 * Access rules (README "TLS, identities and access"). A rule is text:
 * "PERM PRINCIPAL PREFIX", PERM read|write|admin, PRINCIPAL user:NAME or
 * group:NAME. grant and revoke need admin on PREFIX and are done when they
 * return (granting twice, or revoking what is not there, is 0); list gives
 * the rules the caller administers, one per line (malloc'd: free it).
 * cm_whoami: "USER GROUP..." as the server sees the caller.
 * Returns 0, -EINVAL (a bad rule), -EACCES, -ECANCELED (another change came
 * first: call again), and the errors of any request.
 */
int cm_acl_grant(struct cm_client *c, const char *rule);
int cm_acl_revoke(struct cm_client *c, const char *rule);
int cm_acl_list(struct cm_client *c, char **text);
int cm_whoami(struct cm_client *c, char **text);

/*
 * Leases and locks (README "Leases and locks"; the wire contract is
 * CM_OP_LEASE and CM_OP_LOCK in confman/proto.h). A lease belongs to the
 * group that owns path (NULL: "/"), and every call about it names a path of
 * that group: keys of several shards need one lease per group, which
 * cm_lease_grant() may give the same id. TTLs are in ms, CM_LEASE_TTL_MIN_MS
 * to CM_LEASE_TTL_MAX_MS; the time left is the group leader's count.
 * Errors of every call besides its own: those of any request (-ETIMEDOUT,
 * -ECONNREFUSED, CM_ENOLEADER, -ENOMEM...), -EINVAL (a bad argument,
 * checked before sending, or refused by the server), -EACCES.
 */
struct cm_lease_info {
	uint64_t id;
	uint32_t ttl_ms;        /* as granted */
	int64_t left_ms;        /* until it expires, by the leader's clock */
	uint32_t n_keys;        /* files attached to it in this group */
	uint64_t granted_index; /* the log index of its grant (0: not said) */
};

/*
 * cm_lease_grant - grant a lease of ttl_ms in path's group.
 * @id: in: the id wanted (1..CM_LEASE_ID_MAX, e.g. one granted in another
 *      group), or 0 for a random one; out: the id granted.
 * A random id is drawn again on EEXIST, and a grant whose outcome is
 * unknown (-EIO, -ETIMEDOUT) is sent again, an EEXIST then meaning that
 * the first one was applied (a random id is taken by another client with
 * probability 2^-63).
 * Returns 0, -EEXIST (the id asked for is in use in the group), -EINVAL
 * (ttl_ms out of range, id over CM_LEASE_ID_MAX).
 */
int cm_lease_grant(struct cm_client *c, const char *path, uint32_t ttl_ms, uint64_t *id);

/*
 * cm_lease_keepalive - start lease id's TTL again, from now (the leader's).
 * @info: out, the lease after it (may be NULL). Sent again freely (a
 *        keepalive twice is one).
 * Returns 0, -ENOENT (not held in that group: never granted, expired or
 * revoked).
 */
int cm_lease_keepalive(struct cm_client *c, const char *path, uint64_t id,
		       struct cm_lease_info *info);

/*
 * cm_lease_revoke - end lease id now: its locks are released and its first
 * file deleted by the revoke's log entry, the other files by the entries
 * the leader proposes right after (one per file, each with its DELETE
 * event), so they may outlive the answer by a few ms. A revoke whose outcome was
 * unknown is sent again, and its -ENOENT then counts as done.
 * Returns 0, -ENOENT (not held in that group).
 */
int cm_lease_revoke(struct cm_client *c, const char *path, uint64_t id);

/*
 * cm_lease_ttl - lease id as the leader sees it.
 * @keys: out (may be NULL): the attached paths, one a line, malloc'd
 *        (free it); at most CM_LEASE_KEYS_MAX.
 * Returns 0, -ENOENT (not held in that group).
 */
int cm_lease_ttl(struct cm_client *c, const char *path, uint64_t id, struct cm_lease_info *info,
		 char **keys);

/*
 * cm_lease_list - every lease of path's group.
 * @out: malloc'd array of n (free() it; NULL when n is 0).
 * Returns 0, -EBADMSG (the server's list is malformed).
 */
int cm_lease_list(struct cm_client *c, const char *path, struct cm_lease_info **out,
		  uint32_t *n);

/*
 * cm_lock_acquire - take the lock named path (which need not exist) for
 * the pair (lease, owner): lease granted in path's group, owner any number
 * (0 for a process; a mount numbers its lock owners).
 * @flags:   CM_LOCK_SHARED (a shared hold), CM_LOCK_WAIT (queue, FIFO by
 *           the commit order of the requests, until granted)
 * @wait_ms: with CM_LOCK_WAIT, give up after this long (0: no limit): the
 *           pair then leaves the queue (a RELEASE) and the call returns
 *           -EWOULDBLOCK
 * @token:   out, the fencing token: the log index the hold was granted at,
 *           strictly increasing over a lock's exclusive holds
 * While waiting, a request that times out, loses its connection or its
 * leader is sent again: the server keeps the pair's place in the queue, and
 * answers a pair that holds the lock with its hold; so is one answered
 * "queued" (token 0: the leader could not keep it waiting), 100 ms later.
 * Returns 0, -EWOULDBLOCK (held by another: at once without CM_LOCK_WAIT,
 * else when wait_ms passed), -ENOENT (no such lease in the group, or it
 * ended while waiting), -EINVAL (lease 0, an unknown flag); when the
 * wait's RELEASE failed, that error (the pair may still be queued: revoke
 * the lease).
 */
int cm_lock_acquire(struct cm_client *c, const char *path, uint64_t lease, uint64_t owner,
		    uint32_t flags, uint32_t wait_ms, uint64_t *token);

/*
 * cm_lock_release - give up the pair's hold on path, or its place in the
 * queue. A release whose outcome was unknown is sent again, and its -ENOENT
 * then counts as done.
 * Returns 0, -ENOENT (the pair neither holds nor waits).
 */
int cm_lock_release(struct cm_client *c, const char *path, uint64_t lease, uint64_t owner);

struct cm_lock_holder {
	uint64_t lease, owner, token;
	bool shared;
};

/*
 * cm_lock_query - who holds the lock named path.
 * @out: malloc'd array of n holders (free() it; NULL when n is 0: free).
 * Returns 0, -EBADMSG (a malformed answer).
 */
int cm_lock_query(struct cm_client *c, const char *path, struct cm_lock_holder **out,
		  uint32_t *n);

/*
 * Bearer tokens for the gateway (README "Access rules"): the servers keep
 * only a token's SHA-256. cm_token_create records line "ID HASH EXPIRES
 * USER [GROUP...]" (ID 16 hex digits, HASH the token's SHA-256 in hex,
 * EXPIRES unix seconds or 0); cm_token_revoke forgets token ID; cm_token_list
 * gives "ID EXPIRES USER [GROUP...]" lines (malloc'd: free it). All three
 * need admin on "/". Returns 0, -EINVAL, -EACCES, -EEXIST (create: the id
 * is taken), -ENOENT (revoke: no such token), and the errors of any request.
 */
int cm_token_create(struct cm_client *c, const char *line);
int cm_token_revoke(struct cm_client *c, const char *id);
int cm_token_list(struct cm_client *c, char **text);

/*
 * Request builders for the asynchronous core: the requests the calls above
 * send, for a program that submits them on its own loop (cm_ac_submit;
 * confman-fs does). *r borrows path, which must outlive the submit.
 * cm_lease_req: op a client's enum cm_lease_op (GRANT .. LIST); id the
 *   lease (ignored by LIST); ttl_ms GRANT's TTL (else ignored).
 * cm_lock_req: flags CM_LOCK_ACQUIRE (with CM_LOCK_SHARED, CM_LOCK_WAIT),
 *   CM_LOCK_RELEASE or CM_LOCK_QUERY; lease and owner as cm_lock_acquire()
 *   (ignored by QUERY).
 * The core sends KEEPALIVE, TTL, LIST, ACQUIRE and QUERY again on its own
 * after an unknown outcome; GRANT, REVOKE and RELEASE it does not (their
 * second EEXIST or ENOENT would be the first one's success).
 * Returns 0, -EINVAL, -ENAMETOOLONG.
 */
int cm_lease_req(struct cm_req *r, const char *path, uint32_t op, uint64_t id, uint32_t ttl_ms);
int cm_lock_req(struct cm_req *r, const char *path, uint32_t flags, uint64_t lease,
		uint64_t owner);
/* cm_lease_info_of - the lease a LEASE answer describes (info may be NULL). */
void cm_lease_info_of(const struct cm_resp *resp, struct cm_lease_info *info);
/* cm_lock_again - whether an ACQUIRE with CM_LOCK_WAIT that failed with err
 * is sent again (a timeout, a lost connection or leader: it keeps its
 * place). Its success with token 0 means "still queued": ask again too. */
bool cm_lock_again(int err);
/* cm_lock_holders_parse - the holders a QUERY answer lists, as
 * cm_lock_query(). Returns 0, -EBADMSG, -ENOMEM. */
int cm_lock_holders_parse(const struct cm_resp *resp, struct cm_lock_holder **out, uint32_t *n);

/* Progress of cm_shard_merge's copy: files and directories copied so far. */
typedef void (*cm_merge_progress_fn)(void *arg, uint64_t copied);

/*
 * cm_shard_merge - fold the shard at prefix back into its parent (the
 * inverse of a split): freeze it (its writes get WRONGSHARD, reads go on),
 * open the parent's boundary to the merge's copies, copy its tree (values,
 * modes, owners and times; indexes and versions become the parent's), close
 * the boundary, retire the shard (its replicas drop its data). Writers below
 * prefix wait meanwhile. Each phase is safe to repeat: call it again after
 * a failure. progress (may be NULL) is called every 1000 copies.
 * Returns 0, -ENOENT (no such shard), -EBUSY (shards below it),
 * -EINVAL (a shard of the cluster file), and the errors of any request.
 */
int cm_shard_merge(struct cm_client *c, const char *prefix, cm_merge_progress_fn progress,
		   void *arg);

/*
 * cm_shard_add - make prefix a shard of its own, served by a new group on
 * the replicas given. Three steps:
 *   1. SHARDS: prefix must not be a shard already, and every replica must
 *      be a node of the cluster (checked before anything changes); the
 *      group that owns prefix now is the newest map's longest prefix;
 *   2. MKDIR prefix with CM_MKDIR_BOUNDARY in that group (REQ.group = it):
 *      create-only, so it succeeds only if nothing is at prefix, and from
 *      then on that group refuses writes at and below prefix
 *      (CM_EWRONGSHARD). If that group itself answers CM_EWRONGSHARD at the
 *      epoch step 1 planned with, a boundary is there already (an earlier
 *      attempt stopped after this step) and the split goes on. If the
 *      registry moved meanwhile (a newer epoch), steps 1 and 2 run again,
 *      three rounds at most;
 *   3. SHARD_ADD prefix with the replica ids ("1,2,3") to the leader of
 *      CM_META_GROUP (following NOT_LEADER redirects), which registers the
 *      shard under a new epoch; then the client's map is refreshed from
 *      that leader (best effort: errors there are not reported).
 * An attempt that stops after step 2 (timeout, lost connection, no meta
 * leader) leaves prefix fenced but served by no shard, so writes below it
 * are refused until cm_shard_add() is called again for the same prefix,
 * which then completes it.
 * @prefix:   absolute, clean path, not "/"; borrowed
 * @replicas: n node ids, nonzero and distinct; borrowed
 * @n:        1 to CM_CLIENT_MAX_REPLICAS
 * Returns 0, or:
 *   -EEXIST       prefix is a shard already (steps 1 and 3), or is not
 *                 empty: a node exists at prefix (step 2)
 *   -EINVAL       bad prefix, "/", n out of range, a zero or repeated id, a
 *                 replica that is no node of the map, or a server refused
 *                 the request
 *   -ENAMETOOLONG prefix over CM_PATH_MAX or a component over CM_NAME_MAX
 *   -ENOENT, -ENOTDIR  the parent of prefix is missing or a file (step 2)
 *   -ETIMEDOUT / -EIO  the outcome of the step that failed is unknown: call
 *                 again (see above)
 *   CM_ENOLEADER  no leader of the owning group or of the meta group before
 *                 the deadline
 *   CM_EWRONGSHARD the owner of prefix kept moving (three rounds), or its
 *                 replicas kept refusing it until the deadline
 *   -EPROTO       the registry has no shard for "/"
 *   -ECONNREFUSED, -EMSGSIZE (see cm_shards()), -ENOMEM
 */
int cm_shard_add(struct cm_client *c, const char *prefix, const uint64_t *replicas, uint32_t n);

/* ======================== membership ======================== */

/*
 * Changing who serves a group, one step per call (README "Changing the
 * cluster"). Each call is one request to the leader that decides it,
 * following NOT_LEADER redirects, and retried while it provably was not
 * applied (NOTLEADER, NOLEADER, TRANSFERRING, a connection that failed
 * before sending). None of them is retried once its outcome is unknown
 * (-EIO, -ETIMEDOUT) except cm_shard_set(), which sets a value and may
 * set it twice: re-read the state (cm_member_status(), cm_shards()) and
 * decide again, as confmanctl's `shard move` does.
 * Errors every call may return besides its own: -ETIMEDOUT / -EIO (outcome
 * unknown), CM_ENOLEADER, -ECONNREFUSED, -ENOMEM, -EINVAL (a bad argument,
 * checked before anything is sent).
 */

/*
 * cm_conf_change - one Raft membership step of group (CM_META_GROUP for the
 * meta group) at its leader, answered once the change applied.
 * @op:     CM_CONF_ADD_LEARNER, CM_CONF_PROMOTE or CM_CONF_REMOVE
 * @index:  out, the log index of the change (may be NULL)
 * Returns 0, or CM_ECONFPENDING (another change is pending: retry shortly),
 * CM_ELAGGING (the learner has not caught up: retry later),
 * CM_EUNKNOWNPEER (no member), -EEXIST (a member / a voter already),
 * -EINVAL (e.g. the node is not in the shard's replica set yet, or the last
 * voter), CM_ENONODE (no active node), CM_ENOQUORUM (refused: no live,
 * caught-up quorum would be left), -EBUSY (removing the leader: transfer
 * first), CM_ETRANSFERRING (until the deadline).
 */
int cm_conf_change(struct cm_client *c, uint64_t group, enum cm_conf_op op, uint64_t node_id,
		   uint64_t *index);

/*
 * cm_transfer - ask group's leader to hand its leadership to voter `to`
 * (0: the most caught-up voter). Returns 0 once the transfer started (poll
 * cm_member_status() for the new leader), or the server's refusal
 * (CM_EUNKNOWNPEER, -EINVAL: not a voter).
 */
int cm_transfer(struct cm_client *c, uint64_t group, uint64_t to);

/*
 * cm_node_add - record node id in the node table (the meta leader's), with
 * its peer address and, optionally, its HTTP address ("host:port" each;
 * http_addr may be NULL). Only records it: cm_conf_change(CM_META_GROUP,
 * CM_CONF_ADD_LEARNER, id) then gives it the meta group. Create-only:
 * -EEXIST if the id was ever used, removed ids included (cm_shards() says
 * with which address). The client's map is refreshed afterwards.
 */
int cm_node_add(struct cm_client *c, uint64_t id, const char *peer_addr, const char *http_addr);

/*
 * cm_node_remove - mark node id removed (never reused). Refused with -EBUSY
 * while a shard's replica set lists it or it is a member of the meta
 * group's configuration; CM_ENONODE for an unknown or removed id.
 */
int cm_node_remove(struct cm_client *c, uint64_t id);

/*
 * cm_shard_set - set the nodes that run group's replicas (group a shard's,
 * not CM_META_GROUP) to ids[0, n) (1 to CM_CLIENT_MAX_REPLICAS, nonzero,
 * distinct), at the meta leader. The set must include every Raft member
 * of the group: grow it before adding a learner, shrink it after removing
 * a member. The client's map is refreshed afterwards.
 * Returns 0, -EINVAL (refused: a member left out, an unknown node),
 * -ENOENT (no such shard).
 */
int cm_shard_set(struct cm_client *c, uint64_t group, const uint64_t *ids, uint32_t n);

/*
 * cm_member_status - the STATUS of the node that leads group now: asks the
 * node believed to lead it (a leader seen, else each server in turn),
 * following the leader each answer names, until one reports itself its
 * leader or the client's timeout passes. Its group entry has the leader's
 * match for every member (cm_status_group()).
 * @out: freed with cm_status_free()
 * Returns 0, CM_ENOLEADER (no leader found in time), -ENOENT (every server
 * answered and none runs the group), -ECONNREFUSED (none answered),
 * -EINVAL, -ENOMEM.
 */
int cm_member_status(struct cm_client *c, uint64_t group, struct cm_node_status **out);

/* cm_status_group - group's entry in st, or NULL. */
const struct cm_group_info *cm_status_group(const struct cm_node_status *st, uint64_t group);

/* Return 0 to go on watching, nonzero to stop. */
typedef int (*cm_watch_fn)(void *arg, const struct cm_event *ev);

/*
 * cm_watch - call fn for each change under prefix from from_index (0: from
 * now), blocking, until fn returns nonzero or the watch fails.
 * Returns fn's nonzero value, or -EINVAL / -ENAMETOOLONG (bad prefix),
 * -ETIMEDOUT (no server took the (re-)subscription within the timeout), the
 * server's error for the watch, -ENOMEM.
 */
int cm_watch(struct cm_client *c, const char *prefix, uint64_t from_index, cm_watch_fn fn,
	     void *arg);

#endif /* CONFMAN_CLIENT_H */
