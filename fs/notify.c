/* notify.c: confman-fs's watch stream, kernel cache invalidation and the
 * inotify replay of changes made elsewhere.
 *
 * Three threads take part:
 * - the loop thread receives the watch events (cm_ac_watch_ex on the mount's
 *   prefix, from "now": one stream per group at and below it, each
 *   re-subscribed by the library from its own next index after a reconnect
 *   or a silence; CM_EV_STALE / CM_EV_LIVE say whether the caches may serve). For each event it looks up the inodes the kernel knows,
 *   refreshes their attributes, and appends a notification job to a bounded
 *   queue. It never calls fuse_lowlevel_notify_* itself: inval_entry and
 *   notify_delete take the parent directory's i_rwsem in the kernel, and a
 *   task holding that lock may be waiting for a reply that only this loop
 *   thread can send (lookup, create, rename...): a deadlock. inval_inode
 *   waits for page locks held by readers waiting on us in the same way. Nor
 *   does it ever wait for the notifier: when the queue is full the job is
 *   dropped and the notifier later invalidates everything it knows.
 * - the notifier thread (this file) sends the kernel notifications, then
 *   replays the change through the mount point with ordinary syscalls so the
 *   local kernel emits the inotify events that invalidations never produce:
 *   PUT of an existing file -> open(O_WRONLY) + ftruncate(size) + close
 *   (IN_OPEN, IN_MODIFY, IN_CLOSE_WRITE: no content is sent, so no GET is
 *   needed), a new file -> open(O_CREAT|O_EXCL) (+ ftruncate) + close
 *   (IN_CREATE first), MKDIR -> mkdir, DELETE -> unlink/rmdir, RENAME ->
 *   rename. These syscalls produce FUSE requests stamped with the notifier's
 *   thread id; the loop thread answers them locally from the event
 *   (cm_fs__run_replay) and sends nothing to the server, which already has
 *   the change.
 * - the FUSE thread (main.c) only tags those requests (ops.c, job_new).
 * Events of this mount's own writes are not replayed: the kernel emitted
 * their events for the local syscall already. Every write remembers its
 * (event kind, path) until its event arrives; the reply's token bounds the
 * event's index (cm_fs_own_*).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "job.h"

/* One notification for the notifier. */
struct cm_fs_nj {
	struct cm_fs_nj *next;
	uint8_t kind;      /* CM_EV_*; CM_EV_RESYNC: invalidate all[] */
	bool replay;       /* replay through the mount point (else invalidate only) */
	bool create;       /* PUT of a new file */
	bool attr_only;    /* PUT that changed mode or owner, not the size: a chmod/chown */
	bool times_only;   /* PUT that set times only: a touch (times_touched) */
	uint64_t ino, parent, parent2; /* 0: not known to the kernel */
	char *name, *name2;   /* last components (inval_entry) */
	char *path, *path2;   /* server paths (the replay's lookups) */
	char *mpath, *mpath2; /* the same on the mount point (the replay's syscalls) */
	struct cm_attr attr;
	struct nj_ent {
		uint64_t ino, parent;
		char *name;
	} *all;
	uint32_t n_all;
};

static void nj_free(struct cm_fs_nj *n)
{
	if (n == NULL)
		return;
	free(n->name);
	free(n->name2);
	free(n->path);
	free(n->path2);
	free(n->mpath);
	free(n->mpath2);
	for (uint32_t i = 0; i < n->n_all; i++)
		free(n->all[i].name);
	free(n->all);
	free(n);
}

/* ---- own writes (loop thread) ---- */

static uint8_t op_kind(uint8_t op)
{
	switch (op) {
	case CM_OP_PUT: return CM_EV_PUT;
	case CM_OP_MKDIR: return CM_EV_MKDIR;
	case CM_OP_DELETE: return CM_EV_DELETE;
	default: return CM_EV_RENAME;
	}
}

static void own_clear(struct cm_fs_own *o)
{
	free(o->path);
	memset(o, 0, sizeof(*o));
}

uint64_t cm_fs_own_begin(struct cm_fs *fs, uint8_t op, const char *path)
{
	/* A ring: the oldest entry gives way (at worst its event is replayed
	 * once more: a duplicate inotify event, never a lost one). */
	uint64_t gen = ++fs->own_gen;
	struct cm_fs_own *o = &fs->own[gen % CM_FS_OWN_MAX];
	own_clear(o);
	o->path = strdup(path);
	if (o->path == NULL)
		return 0;
	o->gen = gen;
	o->kind = op_kind(op);
	return gen;
}

void cm_fs_own_end(struct cm_fs *fs, uint64_t gen, int err, uint64_t token)
{
	if (gen == 0)
		return;
	struct cm_fs_own *o = &fs->own[gen % CM_FS_OWN_MAX];
	if (o->gen != gen)
		return;
	if (err == 0) {
		o->done = true;
		o->max_index = token;
	} else if (err != -ETIMEDOUT && err != -EIO && err != -ECANCELED) {
		own_clear(o); /* refused: no event will come */
	} /* outcome unknown: keep it, its event (if any) is ours */
}

/* Was this event caused by one of our writes? Consumes the match. */
static bool own_match(struct cm_fs *fs, uint8_t kind, const char *path, uint64_t index)
{
	for (uint32_t i = 0; i < CM_FS_OWN_MAX; i++) {
		struct cm_fs_own *o = &fs->own[i];
		if (o->gen == 0 || o->kind != kind || strcmp(o->path, path) != 0)
			continue;
		if (o->done && index > o->max_index) {
			own_clear(o); /* its event went by already (or never came) */
			continue;
		}
		own_clear(o);
		return true;
	}
	return false;
}

/* ---- the notifier's queue ---- */

static void nj_push(struct cm_fs *fs, struct cm_fs_nj *n)
{
	pthread_mutex_lock(&fs->nmu);
	if (fs->nstop) {
		pthread_mutex_unlock(&fs->nmu);
		nj_free(n);
		return;
	}
	if (n->kind != CM_EV_RESYNC && fs->nqueued >= CM_FS_NOTIFY_MAX) {
		/* Never wait for the notifier here: its replay needs this thread. */
		fs->nlost = true;
		pthread_mutex_unlock(&fs->nmu);
		nj_free(n);
		return;
	}
	if (fs->ntail)
		fs->ntail->next = n;
	else
		fs->nhead = n;
	fs->ntail = n;
	fs->nqueued++;
	pthread_cond_signal(&fs->ncond);
	pthread_mutex_unlock(&fs->nmu);
}

/* ---- the loop side: events -> jobs ---- */

/* The mount point path of server path p, or NULL if p is not below the prefix. */
static char *mount_path(struct cm_fs *fs, const char *p)
{
	const char *pre = fs->o.prefix;
	size_t k = strlen(pre);
	const char *rel;
	if (k == 1)
		rel = p;
	else if (strncmp(p, pre, k) == 0 && (p[k] == '/' || p[k] == '\0'))
		rel = p + k;
	else
		return NULL;
	size_t lm = strlen(fs->o.mountpoint), lr = strlen(rel);
	char *s = malloc(lm + lr + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, fs->o.mountpoint, lm);
	memcpy(s + lm, rel, lr + 1);
	return s;
}

/* parent's inode (0: unknown) and the last component of server path p. */
static int split(struct cm_fs *fs, const char *p, uint64_t *parent, char **name)
{
	const char *slash = strrchr(p, '/');
	*name = strdup(slash + 1);
	char *dir = slash == p ? strdup("/") : strndup(p, (size_t)(slash - p));
	if (*name == NULL || dir == NULL) {
		free(dir);
		return -ENOMEM;
	}
	struct cm_fs_node *d = cm_fs_itable_lookup(&fs->it, dir);
	*parent = d ? d->ino : 0;
	free(dir);
	return 0;
}

/* Everything the kernel may cache: each known inode and its name. */
static void push_all(struct cm_fs *fs)
{
	cm_fs_resync_snapshot(fs); /* what a RESYNC's diff compares with */
	cm_fs_cache_clear(&fs->it); /* what changed is not known */
	struct cm_fs_nj *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return;
	n->kind = CM_EV_RESYNC;
	uint32_t cap = fs->it.n;
	n->all = calloc(cap ? cap : 1, sizeof(*n->all));
	if (n->all == NULL) {
		free(n);
		return;
	}
	for (uint32_t b = 0; b < CM_FS_HASH_BUCKETS; b++) {
		for (struct cm_fs_node *x = fs->it.by_ino[b]; x && n->n_all < cap; x = x->ino_next) {
			struct nj_ent *e = &n->all[n->n_all++];
			e->ino = x->ino;
			if (x->linked && x->ino != FUSE_ROOT_ID)
				(void)split(fs, x->path, &e->parent, &e->name); /* ENOMEM: inode only */
		}
	}
	nj_push(fs, n);
}

static void on_event(void *arg, int err, const struct cm_event *ev);

/* From now: a new watch after one ended resumes nothing (each group has an
 * index of its own, the library kept them and gave up); what changed
 * meanwhile is unknown, and the caller invalidates everything. */
static int watch(struct cm_fs *fs)
{
	int rc = cm_ac_watch_ex(fs->ac, fs->o.prefix, 0, CM_AC_WATCH_STATE, on_event, fs,
				&fs->watch_id);
	fs->watching = rc == 0;
	fs->live = false; /* until the library says every stream is */
	return rc;
}

static void on_rewatch(uv_timer_t *t)
{
	struct cm_fs *fs = t->data;
	if (fs->ac == NULL || fs->watching)
		return;
	if (watch(fs) != 0) {
		uv_timer_start(&fs->rewatch, on_rewatch, 1000, 0);
	} else {
		push_all(fs); /* what changed meanwhile is unknown */
		fs->off.fresh = true; /* offline.c: resync if the cache answered meanwhile */
	}
}

void cm_fs__resync_now(struct cm_fs *fs)
{
	/* What the kernel holds now, as served from the cache, is what
	 * watchers saw last: an older snapshot (taken when the watch ended,
	 * before those reads) would miss it. */
	if (fs->rs.n == 0)
		cm_fs_resync_free(fs);
	push_all(fs);
	cm_fs_resync_start(fs);
}

static void on_resync(uv_async_t *h)
{
	push_all(h->data);
}

/* The library gave up re-subscribing (or the client closes). */
static void watch_ended(struct cm_fs *fs, int err)
{
	fs->watching = false;
	fs->live = false;
	cm_fs_cache_clear(&fs->it); /* nothing keeps the copies current */
	if (err != -ECANCELED && fs->ac != NULL) {
		fprintf(stderr, "confman-fs: watch ended (%s), retrying\n", cm_strerror(err));
		uv_timer_start(&fs->rewatch, on_rewatch, 1000, 0);
	}
}

/*
 * A touch (utimensat) of a file: the same size, and a time that no write
 * gives: atime moved (writes never move it), or mtime apart from ctime (a
 * write stamps both alike). `touch -m` (mtime now, atime kept) looks like a
 * write of the same size and is replayed as one (IN_MODIFY).
 */
static bool times_touched(const struct cm_fs_node *x, const struct cm_event *ev)
{
	return x->attr.atime_ns != ev->attr.atime_ns || ev->attr.mtime_ns != ev->attr.ctime_ns;
}

/* A chmod/chown: a new mode or owner (a value write keeps both), or only
 * ctime moved (a chown or chmod to what was there: sed -i's fchown of its
 * temporary file; a write moves mtime, a touch atime or mtime). */
static bool attr_changed(const struct cm_fs_node *x, const struct cm_event *ev)
{
	return x->attr.mode != ev->attr.mode || x->attr.uid != ev->attr.uid ||
	       x->attr.gid != ev->attr.gid ||
	       (x->attr.atime_ns == ev->attr.atime_ns && x->attr.mtime_ns == ev->attr.mtime_ns &&
		x->attr.ctime_ns != ev->attr.ctime_ns);
}

/* What the inode table knows of n's path: its inode, and whether the event
 * is a chmod/chown or a touch of a file. The event does not say whether the
 * value changed; with the same size, the times tell (above), and the replay
 * is a chmod or a utimensat so that watchers get IN_ATTRIB. */
static void nj_note_node(struct cm_fs *fs, struct cm_fs_nj *n, const struct cm_event *ev)
{
	struct cm_fs_node *x = cm_fs_itable_lookup(&fs->it, n->path);
	if (x == NULL)
		return;
	n->ino = x->ino;
	bool put = ev->kind == CM_EV_PUT && ev->has_attr;
	bool same = put && x->has_attr && S_ISREG(ev->attr.mode) &&
		    x->attr.size == ev->attr.size;
	n->attr_only = same && attr_changed(x, ev);
	n->times_only = same && !n->attr_only && times_touched(x, ev);
	n->attr_only = n->attr_only || n->times_only;
	if (put) {
		x->attr = ev->attr; /* the freshest we know */
		x->has_attr = true;
	}
}

/* Mount-point paths, parents and names of n, and whether to replay it.
 * 0, or -ENOMEM (the caller then invalidates everything). */
static int nj_resolve(struct cm_fs *fs, struct cm_fs_nj *n, const struct cm_event *ev)
{
	n->mpath = mount_path(fs, n->path);
	if (n->mpath == NULL)
		return -ENOMEM;
	bool root = strcmp(n->path, fs->o.prefix) == 0;
	if (!root && split(fs, n->path, &n->parent, &n->name) != 0)
		return -ENOMEM;
	if (n->kind == CM_EV_RENAME) {
		n->mpath2 = mount_path(fs, n->path2);
		if (n->mpath2 == NULL) { /* moved out of the mount: a delete here */
			n->kind = CM_EV_DELETE;
			free(n->path2);
			n->path2 = NULL;
		} else if (split(fs, n->path2, &n->parent2, &n->name2) != 0) {
			return -ENOMEM;
		}
	}
	/* Replay needs a writable mount (the kernel refuses writes on ro) and a
	 * name in a directory; a symlink's target is not in the event, and a
	 * PUT of a directory is a chmod/chown/touch (not replayed). */
	n->replay = !fs->o.ro && !root &&
		    !(ev->has_attr && (S_ISLNK(ev->attr.mode) ||
				       (ev->kind == CM_EV_PUT && S_ISDIR(ev->attr.mode))));
	return 0;
}

/* The last event index of each group, for a resync's "since". A group
 * beyond CM_FS_GROUPS_MAX is not kept: its resync counts every child the
 * inode table does not know as new (extra IN_CREATEs, never a lost one). */
static void note_seen(struct cm_fs *fs, uint64_t group, uint64_t index)
{
	for (uint32_t i = 0; i < fs->n_seen; i++) {
		if (fs->seen[i].group == group) {
			if (index > fs->seen[i].index)
				fs->seen[i].index = index;
			return;
		}
	}
	if (fs->n_seen < CM_FS_GROUPS_MAX)
		fs->seen[fs->n_seen++] = (struct cm_fs_seen){group, index};
}

void cm_fs__event(struct cm_fs *fs, const struct cm_event *ev)
{
	on_event(fs, 0, ev);
}

static void on_event(void *arg, int err, const struct cm_event *ev)
{
	struct cm_fs *fs = arg;
	if (err != 0) {
		watch_ended(fs, err);
		return;
	}
	if (ev->kind == CM_EV_STALE) {
		cm_fs_cache_on_watch(fs, ev); /* every node gone? (offline.c) */
		/* A stream behind the caches is lost or silent: changes may be
		 * going by unseen. Stop serving from the value cache and make
		 * the kernel ask again (its timeouts are 0 until live). */
		fprintf(stderr, "confman-fs: watch stream of group %llu silent or lost: "
				"caches off until it is live again\n", (unsigned long long)ev->group);
		fs->live = false;
		push_all(fs);
		return;
	}
	if (ev->kind == CM_EV_LIVE) {
		fs->live = true;
		cm_fs_resync_live(fs);
		cm_fs_cache_on_watch(fs, ev); /* online again, prefetch (offline.c) */
		return;
	}
	if (ev->kind == CM_EV_RESYNC) {
		push_all(fs);           /* caches first: what changed is unknown */
		cm_fs_resync_start(fs); /* then tell watchers what it was (resync.c) */
		return;
	}
	note_seen(fs, ev->group, ev->index);
	cm_fs_cache_event(fs, ev);
	char *path = strndup(ev->path.p ? ev->path.p : "", ev->path.len);
	char *path2 = ev->kind == CM_EV_RENAME ? strndup(ev->path2.p ? ev->path2.p : "",
							 ev->path2.len)
					       : NULL;
	struct cm_fs_nj *n = calloc(1, sizeof(*n));
	if (path == NULL || (ev->kind == CM_EV_RENAME && path2 == NULL) || n == NULL)
		goto lost;
	/* The value cache forgets what the event touched, ours included (the
	 * kernel's pages: the notifier below, or the next open for our own). */
	cm_fs_cache_drop_path(&fs->it, path, ev->kind != CM_EV_PUT);
	cm_fs_itable_event_at(&fs->it, path, ev->group, ev->index); /* listings: fs/dir.c */
	if (path2 != NULL) {
		cm_fs_cache_drop_path(&fs->it, path2, true);
		cm_fs_itable_event_at(&fs->it, path2, ev->group, ev->index);
	}
	if (own_match(fs, ev->kind, path, ev->index)) {
		free(path);
		free(path2);
		free(n);
		return;
	}
	n->kind = ev->kind;
	n->path = path;
	n->path2 = path2;
	path = path2 = NULL;
	if (ev->has_attr)
		n->attr = ev->attr;
	n->create = ev->kind == CM_EV_PUT && ev->has_attr && ev->attr.create_index == ev->index;
	nj_note_node(fs, n, ev);
	if (nj_resolve(fs, n, ev) != 0)
		goto lost;
	nj_push(fs, n);
	return;
lost:
	free(path);
	free(path2);
	nj_free(n);
	push_all(fs);
}

int cm_fs_watch_start(struct cm_fs *fs)
{
	fs->resync.data = fs;
	int rc = uv_async_init(&fs->loop, &fs->resync, on_resync);
	if (rc != 0)
		return rc;
	fs->rewatch.data = fs;
	(void)uv_timer_init(&fs->loop, &fs->rewatch); /* cannot fail */
	rc = watch(fs);
	if (rc != 0)
		cm_fs_watch_close(fs);
	return rc;
}

void cm_fs_watch_close(struct cm_fs *fs)
{
	uv_close((uv_handle_t *)&fs->resync, NULL);
	uv_close((uv_handle_t *)&fs->rewatch, NULL);
	for (uint32_t i = 0; i < CM_FS_OWN_MAX; i++)
		own_clear(&fs->own[i]);
	cm_fs_resync_free(fs);
}

/* ---- the notifier thread ---- */

/* Kernel notifications run under smu: unmount must not close the session's
 * fd (whose number could then be reused) in the middle of one. */
static bool notify_begin(struct cm_fs *fs)
{
	pthread_mutex_lock(&fs->smu);
	if (fs->sdead) {
		pthread_mutex_unlock(&fs->smu);
		return false;
	}
	return true;
}

static void inval_inode(struct cm_fs *fs, uint64_t ino)
{
	if (ino != 0 && notify_begin(fs)) {
		(void)fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0); /* -ENOENT: forgotten */
		pthread_mutex_unlock(&fs->smu);
	}
}

static void inval_entry(struct cm_fs *fs, uint64_t parent, const char *name)
{
	if (parent != 0 && name != NULL && notify_begin(fs)) {
		(void)fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));
		pthread_mutex_unlock(&fs->smu);
	}
}

static void replay_set(struct cm_fs *fs, const char *path, const char *neg,
		       const struct cm_attr *attr)
{
	pthread_mutex_lock(&fs->nmu);
	fs->replay.active = path != NULL;
	fs->replay.path = (char *)path; /* borrowed from the job for the syscall */
	fs->replay.neg = (char *)neg;
	if (attr)
		fs->replay.attr = *attr;
	pthread_mutex_unlock(&fs->nmu);
}

static void replay_put(struct cm_fs *fs, struct cm_fs_nj *n)
{
	if (n->times_only) {
		/* As touch(1) does it: open for writing, futimens, close (IN_ATTRIB,
		 * IN_CLOSE_WRITE); by path if the open is refused (IN_ATTRIB). */
		replay_set(fs, n->path, NULL, &n->attr);
		int tfd = open(n->mpath, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (tfd < 0) {
			(void)utimensat(AT_FDCWD, n->mpath, NULL, 0);
			return;
		}
		(void)futimens(tfd, NULL);
		close(tfd);
		return;
	}
	if (n->attr_only) {
		replay_set(fs, n->path, NULL, &n->attr);
		(void)chmod(n->mpath, n->attr.mode & 07777); /* IN_ATTRIB */
		(void)chown(n->mpath, n->attr.uid, n->attr.gid);
		return;
	}
	int fd = -1;
	if (n->create) {
		replay_set(fs, n->path, n->path, &n->attr);
		/* Empty: read-only, so no IN_CLOSE_WRITE before the content's own
		 * (a create on another mount is committed empty, its content on close). */
		int acc = n->attr.size > 0 ? O_WRONLY : O_RDONLY;
		fd = open(n->mpath, acc | O_CREAT | O_EXCL | O_CLOEXEC, n->attr.mode & 07777);
	}
	if (fd < 0) { /* not new, or the kernel knew the name already */
		replay_set(fs, n->path, NULL, &n->attr);
		fd = open(n->mpath, O_WRONLY | O_CLOEXEC);
	}
	if (fd < 0)
		return;
	if (!n->create || n->attr.size > 0)
		(void)ftruncate(fd, n->attr.size); /* IN_MODIFY; sizes the kernel's inode */
	close(fd); /* IN_CLOSE_WRITE */
}

static void process(struct cm_fs *fs, struct cm_fs_nj *n)
{
	if (n->kind == CM_EV_RESYNC) {
		for (uint32_t i = 0; i < n->n_all; i++) {
			inval_inode(fs, n->all[i].ino);
			inval_entry(fs, n->all[i].parent, n->all[i].name);
		}
		return;
	}
	/* Invalidate first, so what the replay and any reader see is new. */
	inval_inode(fs, n->ino);
	if (n->kind != CM_EV_PUT || n->create)
		inval_entry(fs, n->parent, n->name);
	if (n->kind == CM_EV_RENAME)
		inval_entry(fs, n->parent2, n->name2);
	if (!n->replay)
		return;
	int rc = 0;
	switch (n->kind) {
	case CM_EV_PUT:
		replay_put(fs, n);
		break;
	case CM_EV_MKDIR:
		replay_set(fs, n->path, n->path, &n->attr);
		rc = mkdir(n->mpath, n->attr.mode & 07777);
		break;
	case CM_EV_DELETE:
		replay_set(fs, n->path, NULL, &n->attr);
		rc = S_ISDIR(n->attr.mode) ? rmdir(n->mpath) : unlink(n->mpath);
		break;
	case CM_EV_RENAME:
		replay_set(fs, n->path, n->path2, &n->attr);
		rc = rename(n->mpath, n->mpath2);
		break;
	default:
		break;
	}
	(void)rc; /* a failed replay loses an inotify event only: caches are invalidated */
	replay_set(fs, NULL, NULL, NULL);
}

static void *notifier_main(void *arg)
{
	struct cm_fs *fs = arg;
	__atomic_store_n(&fs->ntid, (int)gettid(), __ATOMIC_RELEASE);
	pthread_mutex_lock(&fs->nmu);
	while (!fs->nstop) {
		if (fs->nlost) {
			fs->nlost = false;
			pthread_mutex_unlock(&fs->nmu);
			uv_async_send(&fs->resync); /* the loop builds the list */
			pthread_mutex_lock(&fs->nmu);
			continue;
		}
		struct cm_fs_nj *n = fs->nhead;
		if (n == NULL) {
			pthread_cond_wait(&fs->ncond, &fs->nmu);
			continue;
		}
		fs->nhead = n->next;
		if (fs->nhead == NULL)
			fs->ntail = NULL;
		fs->nqueued--;
		pthread_mutex_unlock(&fs->nmu);
		process(fs, n);
		nj_free(n);
		pthread_mutex_lock(&fs->nmu);
	}
	pthread_mutex_unlock(&fs->nmu);
	return NULL;
}

int cm_fs_notifier_start(struct cm_fs *fs)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = -pthread_create(&fs->nthread, NULL, notifier_main, fs);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	fs->nthread_started = rc == 0;
	return rc;
}

void cm_fs_notifier_stop(struct cm_fs *fs)
{
	pthread_mutex_lock(&fs->nmu);
	fs->nstop = true;
	pthread_cond_broadcast(&fs->ncond);
	pthread_mutex_unlock(&fs->nmu);
	/* A notification blocked in the kernel (on a lock held by a task
	 * waiting for a request the stopped session will never answer) would
	 * hold smu for ever: wait a bounded time, then unmount anyway, which
	 * aborts the connection and releases it. */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 2;
	bool locked = pthread_mutex_timedlock(&fs->smu, &until) == 0;
	fs->sdead = true;
	if (locked)
		pthread_mutex_unlock(&fs->smu);
}

void cm_fs_notifier_join(struct cm_fs *fs)
{
	if (fs->nthread_started)
		pthread_join(fs->nthread, NULL);
	fs->nthread_started = false;
	while (fs->nhead) {
		struct cm_fs_nj *n = fs->nhead;
		fs->nhead = n->next;
		nj_free(n);
	}
	fs->ntail = NULL;
	fs->nqueued = 0;
}

/* ---- the loop side: the replay's requests, answered locally ---- */

static const struct cm_attr fake_dir = {.mode = S_IFDIR | 0755};

/* What the replay in progress says about a path (a copy, taken under nmu). */
struct replay_view {
	struct cm_attr attr;
	bool is_target, is_neg;
	bool is_rename_to; /* is_neg, and the target of a rename (not a create) */
};

/* Server paths of a replayable request into j: 1 done, 0 not a replayable
 * op (the job runs as usual), < 0 an error. */
static int replay_paths(struct cm_fs_job *j)
{
	int rc;
	switch (j->op) {
	case CM_FS_LOOKUP:
	case CM_FS_CREATE:
	case CM_FS_MKDIR:
	case CM_FS_UNLINK:
	case CM_FS_RMDIR:
		rc = cm_fs__child_path(j, j->ino, j->name, &j->path);
		break;
	case CM_FS_RENAME:
		rc = cm_fs__child_path(j, j->ino, j->name, &j->path);
		if (rc == 0)
			rc = cm_fs__child_path(j, j->ino2, j->name2, &j->path2);
		break;
	case CM_FS_GETATTR:
	case CM_FS_SETATTR:
	case CM_FS_OPEN:
		rc = cm_fs__node_path(j, NULL);
		break;
	case CM_FS_FLUSH:
	case CM_FS_FSYNC:
	case CM_FS_RELEASE:
		cm_fs__job_fh(j)->dirty = false; /* never a PUT */
		return 0;
	default:
		return 0;
	}
	return rc == 0 ? 1 : rc;
}

static void replay_view(struct cm_fs *fs, const char *path, struct replay_view *v)
{
	memset(v, 0, sizeof(*v));
	pthread_mutex_lock(&fs->nmu);
	if (fs->replay.active) {
		v->attr = fs->replay.attr;
		v->is_target = strcmp(fs->replay.path, path) == 0;
		v->is_neg = fs->replay.neg && strcmp(fs->replay.neg, path) == 0;
		/* A create or mkdir names its own path as neg; a rename, its target. */
		v->is_rename_to = v->is_neg && strcmp(fs->replay.path, fs->replay.neg) != 0;
	}
	pthread_mutex_unlock(&fs->nmu);
}

/* GETATTR/SETATTR of the replay: the event's attributes, never the server. */
static void replay_attr(struct cm_fs_job *j, const struct replay_view *v)
{
	struct cm_fs_node *x = cm_fs_itable_find(&j->fs->it, j->ino);
	if (x == NULL) {
		cm_fs__done_err(j, -ENOENT);
		return;
	}
	if (v->is_target) {
		x->attr = v->attr;
		x->has_attr = true;
	} else if (!x->has_attr) {
		x->attr = fake_dir;
		x->has_attr = true;
	}
	cm_fs__reply_attr(j, x);
}

/* OPEN/CREATE of the replay: an empty handle that never commits. */
static void replay_open(struct cm_fs_job *j, const struct replay_view *v)
{
	bool create = j->op == CM_FS_CREATE;
	struct cm_fs_fh *h = cm_fs__fh_new(j->fs, create ? 0 : j->ino, false);
	if (h == NULL) {
		cm_fs__done_err(j, -ENOMEM);
		return;
	}
	struct cm_attr attr = v->attr;
	if (create && !v->is_neg) /* not the replay's: should not happen */
		attr = (struct cm_attr){.mode = S_IFREG | j->mode};
	cm_fs__reply_opened(j, h, create ? &attr : NULL);
}

/*
 * The node a replayed rename replaces: the one the kernel knows at the
 * target, so that its dentry resolves to the inode watchers hold and the
 * kernel's rename(2) gives them IN_ATTRIB, IN_DELETE_SELF and IN_IGNORED as
 * a local one would (answering "absent" left that inode without a name and
 * its watchers heard nothing). Not when that node is the moved one itself
 * (a lookup through the new name made before the event: the create_index
 * rule of cm_fs_itable_rename) or of another type (what the mount knew is
 * outdated): the target then looks absent, as before.
 */
static struct cm_fs_node *replaced_node(struct cm_fs *fs, const char *to,
					const struct cm_attr *moved)
{
	struct cm_fs_node *x = cm_fs_itable_lookup(&fs->it, to);
	if (x == NULL || !x->has_attr || x->nlookup == 0 || x->ino == FUSE_ROOT_ID)
		return NULL;
	if (x->attr.create_index == moved->create_index ||
	    (x->attr.mode & S_IFMT) != (moved->mode & S_IFMT))
		return NULL;
	return x;
}

bool cm_fs__run_replay(struct cm_fs_job *j)
{
	struct cm_fs *fs = j->fs;
	int rc = replay_paths(j);
	if (rc == 0)
		return false;
	if (rc < 0) {
		cm_fs__done_err(j, rc);
		return true;
	}
	struct replay_view v;
	replay_view(fs, j->path, &v);
	struct cm_attr attr = v.attr;
	switch (j->op) {
	case CM_FS_LOOKUP:
		if (v.is_neg && !(v.is_rename_to && replaced_node(fs, j->path, &v.attr))) {
			cm_fs__done_err(j, -ENOENT);
			return true;
		}
		if (!v.is_target) { /* a directory on the way, or what a rename replaces */
			struct cm_fs_node *x = cm_fs_itable_lookup(&fs->it, j->path);
			attr = x && x->has_attr ? x->attr : fake_dir; /* a directory on the way */
		}
		cm_fs__reply_entry(j, &attr);
		return true;
	case CM_FS_GETATTR:
	case CM_FS_SETATTR:
		replay_attr(j, &v);
		return true;
	case CM_FS_OPEN:
	case CM_FS_CREATE:
		replay_open(j, &v);
		return true;
	case CM_FS_MKDIR:
		if (!v.is_neg)
			attr = (struct cm_attr){.mode = S_IFDIR | j->mode};
		cm_fs__reply_entry(j, &attr);
		return true;
	case CM_FS_UNLINK:
	case CM_FS_RMDIR:
		cm_fs_itable_unlink(&fs->it, j->path);
		cm_fs__done_err(j, 0);
		return true;
	case CM_FS_RENAME:
		cm_fs__done_err(j, cm_fs_itable_rename(&fs->it, j->path, j->path2, &v.attr));
		return true;
	default:
		return false;
	}
}

/* ---- extended attributes ---- */

static void xattr_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (err == 0 && !resp->has_attr)
		err = -EIO;
	if (err != 0) {
		cm_fs__done_err(j, err);
		return;
	}
	char buf[32];
	/* version: the node's version (CAS with confmanctl put --if-version);
	 * token: the log index of its last change. */
	uint64_t v = strcmp(j->name, "user.confman.version") == 0 ? resp->attr.version
								   : resp->attr.mod_index;
	int len = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	if (j->size == 0)
		fuse_reply_xattr(j->req, (size_t)len);
	else if (j->size < (size_t)len)
		fuse_reply_err(j->req, ERANGE);
	else
		fuse_reply_buf(j->req, buf, (size_t)len);
	cm_fs__job_free(j);
}

void cm_fs__run_xattr(struct cm_fs_job *j)
{
	if (cm_fs_cache_xattr(j))
		return;
	int rc = cm_fs__node_path(j, NULL);
	if (rc != 0)
		cm_fs__done_err(j, rc);
	else
		cm_fs__submit_get(j, xattr_cb);
}
