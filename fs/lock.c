/* lock.c: flock(2) and whole-file fcntl(2) locks as cluster-wide locks (loop thread).
 *
 * The kernel hands a lock on a file of the mount to the daemon (fs/README.md,
 * "Locks"): flock(2) as FUSE_SETLK(W) with FUSE_LK_FLOCK, which libfuse
 * turns into the flock callback (LOCK_SH, LOCK_EX, LOCK_UN, LOCK_NB when not
 * sleeping) with fi->lock_owner naming the open file; fcntl(2) locks as
 * getlk/setlk with lock_owner naming the process's file table. Each becomes
 * a cluster lock (CM_OP_LOCK) named by the file's server path, held by the
 * pair (the mount's session lease, lock_owner). One record per (inode,
 * owner, kind) says where it stands; requests in flight name it by id, so a
 * record lives until nothing about it is in flight.
 *
 * A blocking request is an ACQUIRE with CM_LOCK_WAIT, answered by the server
 * when granted and sent again after a timeout or a lost connection or
 * leader (it keeps its place). An interrupt (the caller got a signal)
 * answers EINTR and sends RELEASE, which also leaves the queue; an ACQUIRE
 * still in flight then is given back again when it returns.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

#include "job.h"

#define LK_RETRY_MS 100 /* "still queued" answers and failed RELEASEs go again after this */
#define LK_GRANTS 3     /* grants of the session lease tried for one ACQUIRE */

struct lcall {
	struct cm_fs *fs;
	uint64_t id;
};

static struct cm_fs_lk *lk_find(struct cm_fs *fs, uint64_t id)
{
	for (struct cm_fs_lk *lk = fs->locks; lk != NULL; lk = lk->next)
		if (lk->id == id)
			return lk;
	return NULL;
}

/* The live record of (ino, owner, kind): held, lost or being taken. */
static struct cm_fs_lk *lk_of(struct cm_fs *fs, uint64_t ino, uint64_t owner, bool posix)
{
	for (struct cm_fs_lk *lk = fs->locks; lk != NULL; lk = lk->next)
		if (lk->ino == ino && lk->owner == owner && lk->posix == posix &&
		    lk->state != CM_FS_LK_RELEASING && lk->state != CM_FS_LK_DEAD)
			return lk;
	return NULL;
}

static uint64_t lk_new_id(struct cm_fs *fs)
{
	return __atomic_add_fetch(&fs->lk_next, 1, __ATOMIC_RELAXED);
}

/* A flock owner for a new open: never 0 and never reused in this mount. */
uint64_t cm_fs__lock_owner_new(struct cm_fs *fs)
{
	return lk_new_id(fs);
}

/* The owner of j's flock: its open's own (a kernel lock_owner may be the
 * previous open's, whose RELEASE may not have arrived yet: that hold is
 * not this open's), or lock_owner for a request without a handle. */
static uint64_t flock_owner(struct cm_fs_job *j)
{
	struct cm_fs_fh *h = j->has_fi ? cm_fs__job_fh(j) : NULL;
	return h != NULL && h->lk_owner != 0 ? h->lk_owner : j->fi.lock_owner;
}

static struct cm_fs_lk *lk_new(struct cm_fs *fs, const char *path, uint64_t ino, uint64_t owner,
			       bool posix)
{
	if (fs->n_locks >= CM_FS_LOCKS_MAX)
		return NULL;
	struct cm_fs_lk *lk = calloc(1, sizeof(*lk));
	if (lk == NULL || (lk->path = strdup(path)) == NULL) {
		free(lk);
		return NULL;
	}
	lk->id = lk_new_id(fs);
	lk->ino = ino;
	lk->owner = owner;
	lk->posix = posix;
	lk->state = CM_FS_LK_DEAD;
	lk->next = fs->locks;
	if (fs->locks)
		fs->locks->prev = lk;
	fs->locks = lk;
	fs->n_locks++;
	return lk;
}

static void lk_free(struct cm_fs *fs, struct cm_fs_lk *lk)
{
	if (lk->prev)
		lk->prev->next = lk->next;
	else
		fs->locks = lk->next;
	if (lk->next)
		lk->next->prev = lk->prev;
	fs->n_locks--;
	free(lk->path);
	free(lk);
}

/* A finished record goes once nothing about it is in flight. */
static void lk_settle(struct cm_fs *fs, struct cm_fs_lk *lk)
{
	if (lk->state == CM_FS_LK_DEAD && lk->out == 0 && lk->j == NULL)
		lk_free(fs, lk);
}

static int lk_submit(struct cm_fs *fs, struct cm_fs_lk *lk, const struct cm_req *r, cm_ac_cb cb)
{
	if (fs->ac == NULL)
		return -ECANCELED;
	struct lcall *c = malloc(sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	*c = (struct lcall){fs, lk->id};
	int rc = cm_ac_submit(fs->ac, r, cb, c);
	if (rc != 0)
		free(c);
	else
		lk->out++;
	return rc;
}

/* The record a callback is about (never freed while its request was out). */
static struct cm_fs_lk *lk_back(void *arg, struct cm_fs **fsp)
{
	struct lcall *c = arg;
	struct cm_fs *fs = c->fs;
	struct cm_fs_lk *lk = lk_find(fs, c->id);
	free(c);
	assert(lk != NULL && lk->out > 0);
	lk->out--;
	*fsp = fs;
	return lk;
}

static void retry_tick(uv_timer_t *t);

static void retry_later(struct cm_fs *fs, struct cm_fs_lk *lk)
{
	lk->resend = true;
	if (fs->lk_timer && !uv_is_active((uv_handle_t *)&fs->lk_retry))
		uv_timer_start(&fs->lk_retry, retry_tick, LK_RETRY_MS, LK_RETRY_MS);
}

/* Answer the request waiting on lk (if any). */
static void lk_answer(struct cm_fs_lk *lk, int err)
{
	struct cm_fs_job *j = lk->j;
	void (*then)(struct cm_fs_job *) = lk->then;
	lk->j = NULL;
	lk->then = NULL;
	if (j == NULL)
		return;
	if (then != NULL)
		then(j); /* a close: its data next; a lock's own error does not fail it */
	else
		cm_fs__done_err(j, err);
}

/* ---- release ---- */

static void release_send(struct cm_fs *fs, struct cm_fs_lk *lk);

static void release_done(struct cm_fs *fs, struct cm_fs_lk *lk)
{
	lk->state = CM_FS_LK_DEAD;
	lk->resend = false;
	lk_answer(lk, 0);
	lk_settle(fs, lk);
}

static void release_cb(void *arg, int err, const struct cm_resp *resp)
{
	(void)resp;
	struct cm_fs *fs;
	struct cm_fs_lk *lk = lk_back(arg, &fs);
	if (lk->state != CM_FS_LK_RELEASING) {
		lk_settle(fs, lk);
		return;
	}
	/* ENOENT: not held (an earlier RELEASE of an unknown outcome took it,
	 * or the lease ended). Another session's id: revoked with it. */
	if (lk->extra_release && err != -ECANCELED && lk->epoch == fs->ss.epoch) {
		lk->extra_release = false;
		release_send(fs, lk); /* an interrupted ACQUIRE answered meanwhile */
		return;
	}
	if (err == 0 || err == -ENOENT || err == -ECANCELED || lk->epoch != fs->ss.epoch) {
		release_done(fs, lk);
		return;
	}
	/* Not done, or not known to be: the close goes on, the RELEASE is
	 * sent again until it is (or the session ends). */
	fprintf(stderr, "confman-fs: lock %s: release failed (%s), sent again\n", lk->path,
		cm_strerror(err));
	lk_answer(lk, 0);
	retry_later(fs, lk);
}

static void release_send(struct cm_fs *fs, struct cm_fs_lk *lk)
{
	lk->state = CM_FS_LK_RELEASING;
	if (lk->epoch != fs->ss.epoch) { /* the lease it was held by was revoked */
		release_done(fs, lk);
		return;
	}
	struct cm_req r;
	int rc = cm_lock_req(&r, lk->path, CM_LOCK_RELEASE, lk->lease, lk->owner);
	if (rc == 0)
		rc = lk_submit(fs, lk, &r, release_cb);
	if (rc == -ECANCELED || rc == -EINVAL || rc == -ENAMETOOLONG)
		release_done(fs, lk);
	else if (rc != 0)
		retry_later(fs, lk);
}

/* ---- acquire ---- */

static void acquire_send(struct cm_fs *fs, struct cm_fs_lk *lk);

/* The ACQUIRE ended with err for the caller; the server may have left a
 * hold or a place (an unknown outcome): give it back. */
static void acquire_fail(struct cm_fs *fs, struct cm_fs_lk *lk, int err)
{
	bool unknown = err == -EIO || err == -ETIMEDOUT || cm_lock_again(err);
	if (err == -ENOENT)
		err = -ENOLCK; /* no lease for it, even after granting one */
	lk_answer(lk, err);
	if (lk->was_held && err == -EWOULDBLOCK) {
		lk->state = CM_FS_LK_HELD; /* a conversion refused: the old hold stays */
		lk->shared = !lk->shared;
		lk->was_held = false;
		return;
	}
	if (unknown) {
		release_send(fs, lk);
		return;
	}
	lk->state = CM_FS_LK_DEAD;
	lk_settle(fs, lk);
}

static void granted(void *arg, int err)
{
	struct cm_fs *fs;
	struct cm_fs_lk *lk = lk_back(arg, &fs);
	if (lk->state != CM_FS_LK_WAITING || lk->cancelled)
		lk_settle(fs, lk);
	else if (err == 0 || err == -EAGAIN)
		acquire_send(fs, lk); /* with the session's id as it is now */
	else
		acquire_fail(fs, lk, err);
}

/* Ask the session for a grant in lk's group, then ACQUIRE again. */
static void acquire_grant(struct cm_fs *fs, struct cm_fs_lk *lk)
{
	struct lcall *c = malloc(sizeof(*c));
	if (c == NULL) {
		acquire_fail(fs, lk, -ENOMEM);
		return;
	}
	*c = (struct lcall){fs, lk->id};
	lk->grants++;
	lk->out++;
	cm_fs_session_grant(fs, lk->path, granted, c);
}

static void acquire_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs *fs;
	struct cm_fs_lk *lk = lk_back(arg, &fs);
	if (lk->state != CM_FS_LK_WAITING || lk->cancelled) {
		/* Interrupted meanwhile: whatever this ACQUIRE got, give it
		 * back, even if a RELEASE went before it (this one may have
		 * reached the leader after it); ENOENT and EWOULDBLOCK got
		 * nothing, and a shutdown sends nothing more. */
		bool got = err != -ENOENT && err != -EWOULDBLOCK && err != -ECANCELED;
		if (got && lk->cancelled && lk->out == 0)
			release_send(fs, lk);
		else if (got && lk->cancelled)
			lk->extra_release = true; /* after the RELEASE in flight */
		else
			lk_settle(fs, lk);
		return;
	}
	uint64_t token = err == 0 && resp != NULL ? resp->attr.version : 0;
	if (err == 0 && (token == 0 || lk->epoch != fs->ss.epoch)) {
		/* Still queued (the leader could not park it), or granted to a
		 * session lost meanwhile: ask again. */
		retry_later(fs, lk);
	} else if (err == 0) {
		lk->state = CM_FS_LK_HELD;
		lk->token = token;
		lk->was_held = false;
		cm_fs_session_seen(fs, lk->epoch, resp->group, lk->path);
		lk_answer(lk, 0);
	} else if (err == -ENOENT && lk->grants < LK_GRANTS) {
		acquire_grant(fs, lk); /* no such lease in the lock's group yet */
	} else if (lk->wait && cm_lock_again(err) && fs->ac != NULL) {
		acquire_send(fs, lk); /* keeps its place */
	} else {
		acquire_fail(fs, lk, err);
	}
}

static void acquire_send(struct cm_fs *fs, struct cm_fs_lk *lk)
{
	lk->resend = false;
	lk->lease = cm_fs_session_id(fs);
	lk->epoch = fs->ss.epoch;
	uint32_t f = CM_LOCK_ACQUIRE | (lk->shared ? CM_LOCK_SHARED : 0) |
		     (lk->wait ? CM_LOCK_WAIT : 0);
	struct cm_req r;
	int rc = cm_lock_req(&r, lk->path, f, lk->lease, lk->owner);
	if (rc == 0)
		rc = lk_submit(fs, lk, &r, acquire_cb);
	if (rc != 0)
		acquire_fail(fs, lk, rc);
}

static void retry_tick(uv_timer_t *t)
{
	struct cm_fs *fs = t->data;
	bool any = false;
	for (struct cm_fs_lk *lk = fs->locks, *next; lk != NULL; lk = next) {
		next = lk->next;
		if (!lk->resend || lk->out > 0)
			continue;
		any = true;
		lk->resend = false;
		if (lk->state == CM_FS_LK_WAITING)
			acquire_send(fs, lk);
		else if (lk->state == CM_FS_LK_RELEASING)
			release_send(fs, lk);
	}
	if (!any)
		uv_timer_stop(t);
}

/* ---- the operations ---- */

/* Take (ino, owner)'s lock on j's file: answered when it is held, refused
 * or interrupted. */
static void lock_take(struct cm_fs_job *j, uint64_t owner, bool posix, bool shared, bool wait)
{
	struct cm_fs *fs = j->fs;
	struct cm_fs_lk *lk = lk_of(fs, j->ino, owner, posix);
	if (lk != NULL && lk->state == CM_FS_LK_WAITING) {
		cm_fs__done_err(j, -EDEADLK); /* the same owner waits already */
		return;
	}
	if (lk != NULL && lk->state == CM_FS_LK_HELD && lk->shared == shared &&
	    lk->epoch == fs->ss.epoch) {
		cm_fs__done_err(j, 0); /* held so already */
		return;
	}
	if (lk != NULL && lk->state == CM_FS_LK_LOST) {
		lk->state = CM_FS_LK_DEAD; /* taken again: a new hold */
		lk_settle(fs, lk);
		lk = NULL;
	}
	int rc = lk ? 0 : cm_fs__node_path(j, NULL);
	if (rc == 0 && lk == NULL && (lk = lk_new(fs, j->path, j->ino, owner, posix)) == NULL)
		rc = -ENOLCK; /* CM_FS_LOCKS_MAX, or no memory */
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	lk->was_held = lk->state == CM_FS_LK_HELD; /* a conversion */
	if (j->lk_id != 0 && lk->out == 0)
		lk->id = j->lk_id; /* what an interrupt of j names (none in flight names the old) */
	lk->state = CM_FS_LK_WAITING;
	lk->shared = shared;
	lk->wait = wait;
	lk->cancelled = false;
	lk->grants = 0;
	lk->pid = fuse_req_ctx(j->req)->pid;
	lk->j = j;
	acquire_send(fs, lk);
}

/* Give back (ino, owner)'s lock; unlocking what is not held succeeds. */
static void lock_give(struct cm_fs_job *j, uint64_t owner, bool posix)
{
	struct cm_fs_lk *lk = lk_of(j->fs, j->ino, owner, posix);
	if (lk == NULL || lk->state == CM_FS_LK_WAITING) {
		cm_fs__done_err(j, 0);
		return;
	}
	if (lk->state == CM_FS_LK_LOST) {
		lk->state = CM_FS_LK_DEAD;
		lk_settle(j->fs, lk);
		cm_fs__done_err(j, -ENOLCK); /* it was gone already: say so */
		return;
	}
	lk->j = j;
	lk->then = NULL;
	release_send(j->fs, lk);
}

static void run_flock(struct cm_fs_job *j)
{
	int op = (int)j->flags;
	struct cm_fs_fh *h = j->has_fi ? cm_fs__job_fh(j) : NULL;
	if (h != NULL && h->dir) {
		cm_fs__done_err(j, -EISDIR); /* the kernel keeps these itself (README) */
		return;
	}
	if (op & LOCK_UN)
		lock_give(j, flock_owner(j), false);
	else if (op & (LOCK_SH | LOCK_EX))
		lock_take(j, flock_owner(j), false, (op & LOCK_SH) != 0, !(op & LOCK_NB));
	else
		cm_fs__done_err(j, -EINVAL);
}

/* Only the whole file maps to a cluster lock: from 0 to the end. */
static bool whole_file(const struct flock *l)
{
	return l->l_start == 0 && l->l_len == 0;
}

static void run_setlk(struct cm_fs_job *j)
{
	if (!whole_file(&j->lk)) {
		cm_fs__done_err(j, -ENOLCK);
		return;
	}
	switch (j->lk.l_type) {
	case F_UNLCK: lock_give(j, j->fi.lock_owner, true); break;
	case F_RDLCK: lock_take(j, j->fi.lock_owner, true, true, j->flags != 0); break;
	case F_WRLCK: lock_take(j, j->fi.lock_owner, true, false, j->flags != 0); break;
	default: cm_fs__done_err(j, -EINVAL); break;
	}
}

/* QUERY's answer: the first holder that is not (our lease, the asking
 * owner) and conflicts with the type asked, in struct flock. */
static void getlk_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	struct cm_lock_holder *hs = NULL;
	uint32_t n = 0;
	if (err == 0)
		err = cm_lock_holders_parse(resp, &hs, &n);
	if (err != 0) {
		cm_fs__done_err(j, err);
		return;
	}
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
	uint64_t ours = j->fs->ss.id;
	for (uint32_t k = 0; k < n && fl.l_type == F_UNLCK; k++) {
		if (hs[k].lease == ours && hs[k].owner == j->fi.lock_owner)
			continue;
		if (j->lk.l_type == F_RDLCK && hs[k].shared)
			continue;
		fl.l_type = hs[k].shared ? F_RDLCK : F_WRLCK;
		/* A holder of this mount: its process; another host's: none. */
		struct cm_fs_lk *lk = hs[k].lease == ours ? lk_of(j->fs, j->ino, hs[k].owner, true)
							  : NULL;
		fl.l_pid = lk ? lk->pid : 0;
	}
	free(hs);
	fuse_reply_lock(j->req, &fl);
	cm_fs__job_free(j);
}

static void run_getlk(struct cm_fs_job *j)
{
	if (!whole_file(&j->lk)) {
		cm_fs__done_err(j, -ENOLCK);
		return;
	}
	struct cm_req r;
	int rc = cm_fs__node_path(j, NULL);
	if (rc == 0)
		rc = cm_lock_req(&r, j->path, CM_LOCK_QUERY, 0, 0);
	if (rc == 0)
		rc = j->fs->ac ? cm_ac_submit(j->fs->ac, &r, getlk_cb, j) : -ECANCELED;
	if (rc != 0)
		cm_fs__done_err(j, rc);
}

/* A blocking request was interrupted: EINTR, and out of the queue. */
static void run_interrupt(struct cm_fs_job *ij)
{
	struct cm_fs *fs = ij->fs;
	struct cm_fs_lk *lk = lk_find(fs, ij->lk_id);
	cm_fs__job_free(ij); /* nobody to answer: req is NULL */
	if (lk == NULL || lk->state != CM_FS_LK_WAITING || lk->j == NULL || lk->cancelled)
		return; /* answered already */
	lk->cancelled = true;
	lk->resend = false;
	lk_answer(lk, -EINTR);
	release_send(fs, lk);
}

void cm_fs__run_lock(struct cm_fs_job *j)
{
	switch (j->op) {
	case CM_FS_FLOCK: run_flock(j); break;
	case CM_FS_SETLK: run_setlk(j); break;
	case CM_FS_GETLK: run_getlk(j); break;
	case CM_FS_LOCK_INTR: run_interrupt(j); break;
	default: cm_fs__run_xlock(j); break;
	}
}

bool cm_fs__lock_close(struct cm_fs_job *j, void (*then)(struct cm_fs_job *j))
{
	/* flush: the closing process's POSIX locks on the file; release with
	 * flock_release: the open file's flock (the last close). */
	bool posix = j->op == CM_FS_FLUSH;
	if (!j->has_fi || (!posix && !j->fi.flock_release))
		return false;
	uint64_t owner = posix ? j->fi.lock_owner : flock_owner(j);
	struct cm_fs_lk *lk = lk_of(j->fs, j->ino, owner, posix);
	if (lk == NULL || lk->state == CM_FS_LK_WAITING)
		return false;
	if (lk->state == CM_FS_LK_LOST) {
		lk->state = CM_FS_LK_DEAD;
		lk_settle(j->fs, lk);
		return false;
	}
	lk->j = j;
	lk->then = then;
	release_send(j->fs, lk);
	return true;
}

void cm_fs_locks_lost(struct cm_fs *fs, uint64_t epoch)
{
	for (struct cm_fs_lk *lk = fs->locks; lk != NULL; lk = lk->next) {
		if (lk->epoch == epoch && lk->state == CM_FS_LK_HELD) {
			lk->state = CM_FS_LK_LOST;
			fprintf(stderr, "confman-fs: lock %s (token %llu) lost with its session\n",
				lk->path, (unsigned long long)lk->token);
		}
	}
}

int cm_fs_locks_start(struct cm_fs *fs)
{
	int rc = uv_timer_init(&fs->loop, &fs->lk_retry);
	if (rc == 0) {
		fs->lk_retry.data = fs;
		fs->lk_timer = true;
	}
	return rc;
}

void cm_fs_locks_stop(struct cm_fs *fs)
{
	if (fs->lk_timer)
		uv_close((uv_handle_t *)&fs->lk_retry, NULL);
	fs->lk_timer = false;
}

void cm_fs_locks_free(struct cm_fs *fs)
{
	while (fs->locks != NULL) {
		struct cm_fs_lk *lk = fs->locks;
		if (lk->j != NULL) { /* waited for a retry the shutdown cut short */
			lk->then = NULL;
			lk_answer(lk, -ECANCELED);
		}
		lk_free(fs, lk);
	}
}

int cm_fs__lock_token(struct cm_fs *fs, uint64_t ino, uint64_t *token)
{
	int rc = -ENODATA;
	*token = 0;
	for (struct cm_fs_lk *lk = fs->locks; lk != NULL; lk = lk->next) {
		if (lk->ino != ino)
			continue;
		if (lk->state == CM_FS_LK_HELD && lk->token >= *token) {
			*token = lk->token;
			rc = 0;
		} else if (lk->state == CM_FS_LK_LOST && rc != 0) {
			rc = -ENOLCK;
		}
	}
	return rc;
}
