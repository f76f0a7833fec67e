/* fs.h: confman-fs, Confman's namespace mounted as a FUSE low-level filesystem. */
#ifndef CONFMAN_FS_H
#define CONFMAN_FS_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cache.h"
#include "confman/client.h"

/* Bounds (STYLE.md: every queue and table has one). */
#define CM_FS_QUEUE_MAX 1024          /* FUSE requests waiting for the loop thread */
#define CM_FS_INODES_MAX (1u << 20)   /* inodes the kernel may hold at once */
#define CM_FS_HASH_BUCKETS (1u << 16) /* per index of the inode table */
#define CM_FS_NOTIFY_MAX 4096       /* kernel notifications waiting for the notifier */
#define CM_FS_OWN_MAX 256            /* own writes remembered to skip their events */
#define CM_FS_CACHE_MAX (64u << 20)  /* bytes of file values kept for opens (LRU) */
#define CM_FS_BUF_MAX CM_VALUE_MAX_LIMIT /* an open file's buffer; the server's
					   * own limit (1 MiB by default) is
					   * enforced by the PUT on close */

struct cm_fs_opts {
	char *servers;      /* owned (strdup) */
	char *mountpoint;   /* owned */
	char *prefix;       /* owned; "/" or a clean absolute path */
	char *consistency;  /* owned; "follower" or "linearizable" */
	char *ca, *cert, *key; /* owned; absolute (the daemon leaves its cwd); NULL: plain TCP */
	unsigned timeout_ms;
	double attr_timeout, entry_timeout;
	int ro, foreground, show_help, show_version, has_fsname;
	int allow_other, default_perms; /* allow_other implies default_perms (main.c) */
	char *cache_dir;        /* owned; "none": no persistent cache (fs/offline.c) */
	uint64_t cache_size;    /* bytes: the LMDB map */
	unsigned offline_after_ms, prefetch_max;
	uint64_t lock_ttl_ms;   /* the session lease's TTL (fs/session.c) */
};

/* Refusals by the cluster's access rules, for the log (fs/access.c). */
#define CM_FS_DENY_BURST 10        /* lines logged at once... */
#define CM_FS_DENY_EVERY_MS 1000   /* ...then one per this long */
struct cm_fs_deny {
	char who[600];      /* "user web groups a,b": the certificate's identity */
	char key[600];      /* user, then each group after a newline ("": none) */
	uint32_t tokens;    /* loop thread: lines that may be logged now */
	uint64_t last;      /* uv_now() the bucket was last filled */
	uint64_t dropped;   /* refusals not logged since the last line */
};

struct cm_fs;
#define CM_FS_SHARDS_MAX 64 /* shards whose offline state is kept apart */

/* One shard of the cluster's map, as offline mode sees it (fs/shard.c). */
struct cm_fs_shard {
	struct cm_fs *fs;
	uint64_t group;
	char *prefix;                            /* owned; NULL: a free slot */
	char *addrs[CM_CLIENT_MAX_REPLICAS];     /* owned: its replicas' addresses */
	uint32_t n_addrs;
	bool offline;       /* no replica answered: served from the cache */
	bool probing, seen; /* seen: in the last map */
	bool recheck;       /* no answer, on a map older than the round: ask again */
	uint64_t started;   /* uv_now() when the round began */
	uint32_t gen, out;  /* the probe round; its STATUS requests still out */
	uint64_t offline_at; /* uv_now() when it went offline */
	int64_t synced;      /* wall ms when it went offline */
	uv_timer_t timer;    /* the round's deadline, then the next round */
};

struct rd;
/* The persistent cache and offline mode (fs/offline.c). Loop thread. */
struct cm_fs_off {
	struct cm_fs_cache *cache; /* NULL: cache=none, or it could not be opened */
	bool offline;
	uint64_t offline_at;       /* uv_now() when it went offline */
	uint64_t reached;          /* uv_now() of the last answer from a server */
	int64_t synced;            /* wall ms when the cache was last known current; 0 never */
	bool probing, probe_ok;    /* a STATUS is out; one answered since going offline */
	uint32_t probe_gen, probe_out; /* the probe round; its STATUS requests still out */
	bool fresh;                /* the watch began (boot, re-subscribed) without resuming */
	bool served;               /* reads were answered from the cache since */
	bool timers;
	uv_timer_t tick, deadline, again;
	uint64_t ticks, refused, refused_logged;
	struct rd *waiting;        /* reads waiting for the probe's verdict */
	char **pq;                 /* prefetch: "L"/"G" + path, at most prefetch_max */
	uint32_t pq_n, pq_cap, pf_inflight, pf_seen;
	bool pf_running, pf_over, pf_walked; /* pf_walked: a walk ended (done or too large) */
	uint64_t pf_started;
	/* Per shard (fs/shard.c): the map, and how many shards are offline. */
	struct cm_fs_shard shards[CM_FS_SHARDS_MAX];
	uint32_t n_shards, n_sh_offline;
	uint32_t map_out;         /* SHARDS requests of the round still out */
	bool map_round_ok, map_full;
	uint64_t map_at, map_got; /* uv_now() of the last SHARDS sent / answered */
	uint64_t map_epoch;       /* the registry epoch of the map kept */
};

/* One inode the kernel knows. Touched only on the loop thread. */
struct cm_fs_node {
	uint64_t ino;
	char *path;          /* owned; the server path (prefix included) */
	uint64_t nlookup;    /* kernel references; freed at 0 (root: never) */
	bool linked;         /* in the path index; false once unlinked or replaced */
	bool has_attr;
	struct cm_attr attr; /* last attributes the server sent */
	int64_t wsize;       /* size of a dirty open buffer, -1 if none */
	/* This mount's last acknowledged write of it (fs/file.c): a later read
	 * answering an older mod_index breaks read-your-writes, and is redone. */
	uint64_t own_mod, own_token;
	/* The value cache (loop thread): a copy of the value fetched while the
	 * watch was live, valid until an event or own write touches the path
	 * (each drop bumps cgen). cattr: the attributes it came with. */
	bool cached;
	char *cval;          /* owned; clen bytes */
	uint32_t clen;
	uint64_t cgen;
	uint64_t cgroup;     /* the group it was read from: valid while its stream is live */
	struct cm_attr cattr;
	/* The table's chg when something last changed at or right below this
	 * path (an event, an own write, as the value cache's drops): a
	 * listing taken before it no longer tells the kernel attributes. */
	uint64_t child_chg;
	/* The last watch event at or right below this path: its group and
	 * index (0: none seen). A listing older than it tells no attributes. */
	uint64_t ev_group, ev_index;
	struct cm_fs_node *lru_prev, *lru_next;
	struct cm_fs_node *ino_next, *path_next;
};

/* The inode table: ino <-> path, two chained hash indexes. */
struct cm_fs_itable {
	struct cm_fs_node **by_ino;  /* owned, CM_FS_HASH_BUCKETS */
	struct cm_fs_node **by_path; /* owned, CM_FS_HASH_BUCKETS */
	uint32_t n;
	uint64_t next_ino;
	struct cm_fs_node *lru_head, *lru_tail; /* cached values, most recent first */
	size_t cbytes;                          /* their total, <= CM_FS_CACHE_MAX */
	uint64_t cepoch;                        /* +1 on every clear */
	uint64_t chg;       /* +1 on every drop and clear: stamps for child_chg */
	uint64_t clear_chg; /* chg at the last clear (everything changed) */
};

/* Open file or directory; owned by the loop thread, listed in cm_fs.handles so
 * shutdown frees what the kernel never released. */
struct cm_fs_dent {
	char *name; /* owned */
	uint64_t ino;  /* readdir's pseudo number (cm_fs_itable_hash_ino) */
	struct cm_attr attr; /* as the LIST answered */
	bool plus;     /* readdirplus may give attr (not a shard's top) */
};

struct cm_fs_fh {
	uint64_t ino;
	bool dir;
	bool dirty;   /* buf differs from the server: PUT on flush/release */
	bool append;  /* O_APPEND: every write goes to the end */
	bool trunc_only; /* dirty only by O_TRUNC so far: a flush before the first
			  * write (the shell's dup2+close) commits nothing; release does */
	uint32_t unsent; /* WRITEs since the last commit: a flush must PUT them */
	/* What a commit names and sends (fs/commit.c): the create_index of the
	 * incarnation opened (0: unknown), whether anything but appends changed
	 * the buffer (then the whole buffer is sent), and how much of the
	 * buffer the server has (an append-only handle sends the rest). */
	uint64_t born;
	uint64_t bgroup; /* the group whose index `born` is (0: unknown) */
	bool rewrite;
	size_t sent_len;
	/* futimens/utimensat while this handle held uncommitted writes (cp -p,
	 * tar): its commit sends those times again (CM_SET_TIMES), or the
	 * commit's own stamp would undo them; a later write drops them, as a
	 * write after utimensat moves mtime anywhere (fs/exec.c). */
	bool times;
	int64_t atime_ns, mtime_ns;
	/* One PUT of a handle at a time (fs/file.c): a forked child closing
	 * its copy of the descriptor FLUSHes it too, and the parent's close
	 * must not return before that PUT is durable, nor a later PUT of the
	 * same handle overtake it. Flush/fsync/release jobs wait here. */
	bool committing;
	struct cm_fs_job *waiters, **waiters_tail;
	char *buf;    /* owned; file content */
	size_t len, cap;
	struct cm_fs_dent *ents; /* directory: owned, n_ents entries */
	uint32_t n_ents;
	/* directory: the LIST may answer READDIRPLUS with attributes while
	 * nothing changed in the directory since it was sent (list_chg, the
	 * table's chg then) and it was as new as the watch (fs/dir.c). */
	bool plus;
	uint64_t list_chg;
	/* The owner of this open's flock(2) locks in the cluster, drawn from
	 * cm_fs.lk_next: the kernel's lock_owner names the struct file by its
	 * address, which the next open reuses while this one's RELEASE (a
	 * background request) may still be on its way (fs/lock.c). */
	uint64_t lk_owner;
	struct cm_fs_fh *prev, *next;
};

struct cm_fs_job; /* a FUSE request on its way to the loop thread (ops.c) */
struct cm_fs_nj;  /* a notification on its way to the notifier thread (notify.c) */

/* A write this mount sent: its watch event must not be replayed (notify.c). */
struct cm_fs_own {
	uint64_t gen;       /* 0: free slot */
	uint8_t kind;       /* CM_EV_* the write produces */
	bool done;          /* answered: max_index is known */
	uint64_t max_index; /* the reply's token: the write's index is <= this */
	char *path;         /* owned */
};

/* What the notifier is replaying now: its lookups are answered from this. */
struct cm_fs_replay {
	bool active;
	char *path;        /* server path of the node the event is about */
	char *neg;         /* server path that must look absent (create/rename target) */
	struct cm_attr attr;
};

/* Bounds of a resync's diff (fs/resync.c). */
#define CM_FS_RESYNC_NODES 65536 /* inodes remembered for a RESYNC's diff */
#define CM_FS_RESYNC_DIRS 1024 /* directories listed again after a RESYNC */
#define CM_FS_RESYNC_KEEP_MS 5000 /* a snapshot outlives liveness by this much */
#define CM_FS_RESYNC_WINDOW 8  /* of those listings in flight at once */
#define CM_FS_GROUPS_MAX 256   /* groups whose last event index is kept */

/* The last event index seen of one group (notify.c). */
struct cm_fs_seen {
	uint64_t group, index;
};

/* One inode the mount knew before an invalidation (fs/resync.c). */
struct cm_fs_known {
	char *path; /* owned */
	struct cm_attr attr;
};

/* A create or delete a resync found, held to be paired into renames. */
struct cm_fs_change {
	char *path; /* owned */
	struct cm_attr attr;
	uint64_t group, index;
	bool used;
};

/* A RESYNC's diff (loop thread): the snapshot of what the mount knew, and
 * the listings that compare it with the server. */
struct cm_fs_resync {
	struct cm_fs_known *known;        /* owned, sorted by path; NULL: none */
	uint32_t n_known;
	uint64_t live_at;                 /* uv_now() when live again; 0: not yet */
	struct cm_fs_seen since[CM_FS_GROUPS_MAX]; /* fs->seen at the snapshot */
	uint32_t n_since;
	uint64_t gen;                     /* +1 per start: older listings are ignored */
	char *dirs[CM_FS_RESYNC_DIRS];    /* owned: to list, from next */
	uint32_t n, next, inflight;
	struct cm_fs_change *gone, *born; /* owned: held until every listing is in */
	uint32_t n_gone, cap_gone, n_born, cap_born;
};

/* The mount's session lease (fs/session.c): one id, granted lazily in each
 * group where the mount locks or attaches a file, kept alive every TTL/3. */
#define CM_FS_LOCK_TTL_MS 10000u /* lock_ttl's default */
struct cm_fs_sgroup {
	uint64_t group;
	char *path;     /* owned: a path of the group, where its keepalives go */
	uint64_t ok_at; /* uv_now() when the last keepalive answered was sent */
	bool ka_out;    /* a keepalive is in flight */
};

struct cm_fs_session {
	uint64_t id;    /* the lease id; 0: none drawn yet (the next need draws one) */
	uint64_t epoch; /* +1 per session: a lock granted in an older one is lost */
	struct cm_fs_sgroup g[CM_FS_GROUPS_MAX];
	uint32_t n;
	bool timer;     /* tick initialised (closed at shutdown) */
	uv_timer_t tick;
	uint64_t lost;  /* sessions lost so far (logged) */
};

/* Cluster locks this mount holds or waits for (fs/lock.c). */
#define CM_FS_LOCKS_MAX 4096u
enum cm_fs_lk_state {
	CM_FS_LK_WAITING,   /* an ACQUIRE is out; j answers when it ends */
	CM_FS_LK_HELD,
	CM_FS_LK_LOST,      /* its session was lost: the server dropped it */
	CM_FS_LK_RELEASING, /* a RELEASE is out, or failed and is sent again */
	CM_FS_LK_DEAD,      /* done; freed once nothing is in flight */
};

struct cm_fs_job;
struct cm_fs_lk {
	struct cm_fs_lk *prev, *next;
	uint64_t id;        /* unique; a blocking request's interrupt names it */
	char *path;         /* owned: the lock's name, the file's path when taken */
	uint64_t ino, owner; /* the kernel's lock owner (flock: the open file) */
	bool posix, shared, wait;
	bool was_held;      /* a conversion: held before this ACQUIRE */
	bool cancelled;     /* interrupted while waiting: give it back */
	bool extra_release; /* RELEASE again once the one in flight ends */
	bool resend;        /* sent again by the retry timer */
	enum cm_fs_lk_state state;
	uint64_t lease, epoch, token;
	pid_t pid;          /* who took it (F_GETLK) */
	uint32_t out;       /* requests in flight about it */
	uint8_t grants;     /* grants tried for this ACQUIRE */
	struct cm_fs_job *j;     /* the request to answer (WAITING, RELEASING) */
	void (*then)(struct cm_fs_job *j); /* RELEASING for a close: what follows */
};

struct cm_fs {
	struct cm_fs_opts o;
	struct fuse_session *se;
	/* loop thread */
	uv_loop_t loop;
	uv_async_t wake;
	struct cm_ac *ac;
	pthread_t thread;
	struct cm_fs_itable it;
	struct cm_fs_fh *handles;
	/* the hand-off queue, shared: guarded by mu */
	pthread_mutex_t mu;
	pthread_cond_t not_full;
	struct cm_fs_job *head, *tail;
	uint32_t queued;
	bool stopping;
	/* watch stream and own writes: loop thread */
	uint64_t watch_id;
	bool watching;   /* a watch exists (it may be re-subscribing) */
	bool live;       /* the watch says every stream behind it is live: caches may serve */
	bool no_attr_only; /* a server refused CM_GET_ATTR_ONLY: stat with whole GETs */
	uint64_t n_get, n_list; /* GETs and LISTs sent (user.confman.status) */
	struct cm_fs_own own[CM_FS_OWN_MAX];
	uint64_t own_gen;
	/* the notifier thread; its queue guarded by nmu */
	pthread_t nthread;
	bool nthread_started;
	pthread_mutex_t nmu;
	pthread_cond_t ncond;
	struct cm_fs_nj *nhead, *ntail;
	uint32_t nqueued;
	bool nlost;       /* a notification was dropped (queue full): invalidate all */
	bool nstop;       /* notifier: exit; no more kernel notifications */
	int ntid;         /* the notifier's thread id (gettid), for fuse_req_ctx()->pid */
	struct cm_fs_replay replay; /* guarded by nmu */
	uv_async_t resync;          /* notifier -> loop: rebuild the whole-cache invalidation */
	uv_timer_t rewatch;         /* loop: re-subscribe after the watch ended */
	/* notifier vs. unmount: the session fd must not close under a notify call */
	pthread_mutex_t smu;
	bool sdead;
	bool trace;       /* CONFMAN_FS_TRACE=1: every file job to stderr (debugging) */
	int mnt_id;       /* the mount's id in /proc/self/mountinfo; -1 unknown */
	/* loop thread: the last event index of each group (resync's "since") */
	struct cm_fs_seen seen[CM_FS_GROUPS_MAX];
	uint32_t n_seen;
	struct cm_fs_resync rs;
	struct cm_fs_off off;
	/* loop thread: the session lease and the locks (fs/session.c, lock.c) */
	struct cm_fs_session ss;
	struct cm_fs_lk *locks;
	uint32_t n_locks;
	bool lk_timer;       /* lk_retry initialised */
	uv_timer_t lk_retry; /* sends again what the retry flag marks */
	uint64_t lk_next;    /* ids; atomic: the FUSE thread draws them too */
	struct cm_fs_deny deny;
};

/* ---- inode.c ---- */
int cm_fs_itable_init(struct cm_fs_itable *t, const char *root_path);
void cm_fs_itable_free(struct cm_fs_itable *t);
struct cm_fs_node *cm_fs_itable_find(struct cm_fs_itable *t, uint64_t ino);
/* The linked node for path with one more kernel reference, created if needed.
 * Returns 0, -ENFILE (CM_FS_INODES_MAX), -ENOMEM. */
int cm_fs_itable_ref(struct cm_fs_itable *t, const char *path, struct cm_fs_node **out);
void cm_fs_itable_forget(struct cm_fs_itable *t, uint64_t ino, uint64_t n);
/* path no longer names the node(s) at or below it (unlink, rmdir, replaced). */
void cm_fs_itable_unlink(struct cm_fs_itable *t, const char *path);
/* Nodes at or below from now live at or below to; the node at to is
 * replaced unless it is the moved node itself (moved: its attributes after
 * the rename, NULL if unknown). Returns 0 or -ENOMEM. */
int cm_fs_itable_rename(struct cm_fs_itable *t, const char *from, const char *to,
			const struct cm_attr *moved);
/* A stable pseudo inode number for a name readdir shows that the kernel has
 * not looked up (never in the table's range). */
uint64_t cm_fs_itable_hash_ino(const char *path);
/* The value cache (loop thread). drop: forget n's copy (bumps cgen even if
 * none). drop_path: the node at path, with sub: every copy at or below it.
 * clear: every copy (bumps every cached node's cgen). put: keep a copy of
 * value with attr for n (evicting the least recently used; cgen is bumped
 * unless the copy it replaces has the same version); false if it does not
 * fit or on ENOMEM. touch: n was used. */
void cm_fs_cache_drop(struct cm_fs_itable *t, struct cm_fs_node *n);
void cm_fs_cache_drop_path(struct cm_fs_itable *t, const char *path, bool sub);
void cm_fs_cache_clear(struct cm_fs_itable *t);
bool cm_fs_cache_put(struct cm_fs_itable *t, struct cm_fs_node *n, const char *value,
		     uint32_t len, const struct cm_attr *attr);
void cm_fs_cache_touch(struct cm_fs_itable *t, struct cm_fs_node *n);
/* Has anything changed at or right below dir's path since stamp chg (a
 * value of t->chg)? true also for a dir the table no longer holds. */
bool cm_fs_itable_changed_since(struct cm_fs_itable *t, uint64_t dir_ino, uint64_t chg);
/* A watch event of group at index touched path: the node at path and its
 * parent's node remember it (ev_group, ev_index). */
void cm_fs_itable_event_at(struct cm_fs_itable *t, const char *path, uint64_t group,
			   uint64_t index);

/* ---- access.c ---- */
/* Before any thread: fs->deny.who and .key from the certificate (-o cert). */
void cm_fs_ident_load(struct cm_fs *fs);

/* ---- ops.c ---- */
extern const struct fuse_lowlevel_ops cm_fs_ops;
/* Loop thread: take every queued job and start it (uv_async callback). */
void cm_fs_drain(uv_async_t *h);
/* Loop thread, at shutdown: free every handle the kernel never released. */
void cm_fs_handles_free(struct cm_fs *fs);
/* ---- notify.c ---- */
/* At start, before the loop runs: watch the prefix from now. 0, or an error
 * with the handles it opened closed (uv_run completes that). */
int cm_fs_watch_start(struct cm_fs *fs);
/* Loop thread, at shutdown: close the watch's handles. */
void cm_fs_watch_close(struct cm_fs *fs);
int cm_fs_notifier_start(struct cm_fs *fs);
/* Main thread, before unmounting: no more kernel notifications, wake the notifier. */
void cm_fs_notifier_stop(struct cm_fs *fs);
/* Main thread, after unmounting (its syscalls on the mount then fail): join, free. */
void cm_fs_notifier_join(struct cm_fs *fs);
/* Loop thread: a write is about to be sent / has been answered. */
uint64_t cm_fs_own_begin(struct cm_fs *fs, uint8_t op, const char *path);
void cm_fs_own_end(struct cm_fs *fs, uint64_t gen, int err, uint64_t token);
struct cm_fs_node *cm_fs_itable_lookup(struct cm_fs_itable *t, const char *path);

/* ---- resync.c ---- */
/* Loop thread, before the caches are invalidated: remember what the mount
 * knows (once: until a resync used it or the streams are live again). */
void cm_fs_resync_snapshot(struct cm_fs *fs);
/* Loop thread, after a RESYNC: list the snapshot's directories again and
 * replay the differences as events. */
void cm_fs_resync_start(struct cm_fs *fs);
/* Loop thread: every stream is live again; a snapshot no resync uses within
 * CM_FS_RESYNC_KEEP_MS is then replaced by the next one. */
void cm_fs_resync_live(struct cm_fs *fs);
/* Loop thread, at shutdown: forget a resync in progress. */
void cm_fs_resync_free(struct cm_fs *fs);
/* ---- notify.c, for resync.c ---- */
/* An event, real or synthetic, into the mount's event path. */
void cm_fs__event(struct cm_fs *fs, const struct cm_event *ev);

/* ---- fdscan.c ---- */
/* The id of the mount at mountpoint (the top one), -1 if not found. */
int cm_fs_fdscan_mnt_id(const char *mountpoint);
/* Does process (or thread) pid hold a writable descriptor of inode ino on
 * mount mnt_id? false when unsure (it cannot be read, too many fds). */
bool cm_fs_fdscan_other_writer(int mnt_id, pid_t pid, uint64_t ino);

/* ---- offline.c: the persistent cache in the mount (prefix cm_fs_cache_) ---- */
/* Loop thread, before the watch starts: open the cache (never fails the
 * mount), start the timers and a first probe. stop: close the timers (loop
 * thread, at shutdown); free: close the environment (after the loop). */
int cm_fs_cache_start(struct cm_fs *fs);
void cm_fs_cache_stop(struct cm_fs *fs);
void cm_fs_cache_free(struct cm_fs *fs);
void cm_fs_cache_probe(struct cm_fs *fs);
void cm_fs_cache_go_offline(struct cm_fs *fs, const char *why);
/* How old what is served may be: 0 online, -1 unknown. */
int64_t cm_fs_cache_age_ms(struct cm_fs *fs);
/* Every watch event (real or a resync's), and the stream's liveness. */
void cm_fs_cache_event(struct cm_fs *fs, const struct cm_event *ev);
void cm_fs_cache_on_watch(struct cm_fs *fs, const struct cm_event *ev);
/* notify.c: invalidate everything and replay what changed, as after a RESYNC. */
void cm_fs__resync_now(struct cm_fs *fs);

/* ---- session.c: the session lease (loop thread) ---- */
/* At start, before the loop runs / at shutdown on the loop thread. */
int cm_fs_session_start(struct cm_fs *fs);
void cm_fs_session_stop(struct cm_fs *fs);
/* The session's lease id (one is drawn if none). */
uint64_t cm_fs_session_id(struct cm_fs *fs);
/* A request with the session's lease at path was answered "no such lease":
 * grant it in path's group, then done(arg, err): 0 (granted, or it was
 * already), -EAGAIN (the session was lost meanwhile: a new one is current),
 * or the grant's error. */
void cm_fs_session_grant(struct cm_fs *fs, const char *path, void (*done)(void *arg, int err),
			 void *arg);
/* A request with the lease of session epoch succeeded in group at path:
 * keep the lease alive there. */
void cm_fs_session_seen(struct cm_fs *fs, uint64_t epoch, uint64_t group, const char *path);
/* The session is gone (why: logged): its locks are lost, the lease is
 * revoked where it may live on, a new session starts at the next need. */
void cm_fs_session_lost(struct cm_fs *fs, const char *why);

/* ---- lock.c: flock(2), fcntl(2) locks and their xattrs (loop thread) ---- */
void cm_fs_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op);
void cm_fs_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
			struct flock *lock);
void cm_fs_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
			struct flock *lock, int sleep);
/* user.confman.lock_token and user.confman.ephemeral: FUSE thread. */
bool cm_fs_lock_xattr_name(const char *name);
void cm_fs_lock_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			 size_t size);
/* Loop thread: the session's locks were lost (session.c). */
void cm_fs_locks_lost(struct cm_fs *fs, uint64_t epoch);
/* Before the loop runs; at shutdown: close the retry timer; after the loop: free. */
int cm_fs_locks_start(struct cm_fs *fs);
void cm_fs_locks_stop(struct cm_fs *fs);
void cm_fs_locks_free(struct cm_fs *fs);

/* A shard's probe decided (fs/shard.c -> offline.c): reads of it waiting
 * for the verdict are served from the cache, or get their own answer. */
void cm_fs_cache_shard_verdict(struct cm_fs *fs, const struct cm_fs_shard *sh, bool reachable);
/* A shard is online again: a resync if the watch began anew meanwhile. */
void cm_fs_cache_shard_online(struct cm_fs *fs);

/* ---- shard.c: offline per shard (prefix cm_fs_shard_) ---- */
/* The shard of path (longest prefix), NULL while the map is unknown. */
struct cm_fs_shard *cm_fs_shard_of(struct cm_fs *fs, const char *path);
/* Is path below a shard that is offline (the whole mount aside)? */
bool cm_fs_shard_offline(struct cm_fs *fs, const char *path);
/* Ask the cluster for its shard map (at most once a second). */
void cm_fs_shard_map_refresh(struct cm_fs *fs);
/* STATUS to every replica of sh (or of path's shard, when the map has more
 * than one): none answering within offline_after/2 puts it offline. */
void cm_fs_shard_probe(struct cm_fs *fs, struct cm_fs_shard *sh);
void cm_fs_shard_probe_path(struct cm_fs *fs, const char *path);
/* The watch stream of group went stale: probe its shard. */
void cm_fs_shard_stale(struct cm_fs *fs, uint64_t group);
/* How old what is served below path may be: 0 if its shard is online. */
int64_t cm_fs_shard_age_ms(struct cm_fs *fs, const char *path);
/* The offline shards' prefixes, space-separated ("-": none), into buf. */
size_t cm_fs_shard_list(struct cm_fs *fs, char *buf, size_t cap);
void cm_fs_shard_stop(struct cm_fs *fs);

/* errno (positive) for a Confman error code, for fuse_reply_err. */
int cm_fs_errno(int err);

#endif /* CONFMAN_FS_H */
