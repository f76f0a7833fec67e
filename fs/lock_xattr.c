/* lock_xattr.c: the FUSE side of the mount's locks (flock, getlk, setlk:
 * FUSE thread), and the xattrs user.confman.lock_token and
 * user.confman.ephemeral (loop thread).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "job.h"

#define XA_LOCK_TOKEN "user.confman.lock_token"
#define XA_EPHEMERAL "user.confman.ephemeral"

/* ---- FUSE thread ---- */

/* Interrupt of a blocking lock request (FUSE thread, libfuse holding the
 * request). The request may be answered by the loop thread at any moment,
 * so nothing of it is touched: the loop finds the wait by its id. */
static void lock_interrupt(fuse_req_t req, void *data)
{
	struct cm_fs *fs = fuse_req_userdata(req);
	struct cm_fs_job *ij = calloc(1, sizeof(*ij));
	if (ij == NULL)
		return; /* the wait goes on until granted */
	ij->fs = fs;
	ij->op = CM_FS_LOCK_INTR;
	ij->lk_id = (uint64_t)(uintptr_t)data;
	cm_fs__job_push(ij);
}

/* Queue j; a request that may sleep can be interrupted (EINTR). */
static void lock_push(struct cm_fs_job *j, bool sleeps)
{
	if (sleeps) {
		j->lk_id = __atomic_add_fetch(&j->fs->lk_next, 1, __ATOMIC_RELAXED);
		fuse_req_interrupt_func(j->req, lock_interrupt, (void *)(uintptr_t)j->lk_id);
		/* Interrupted already: lock_interrupt ran, before j was queued,
		 * and found nothing to stop. */
		if (fuse_req_interrupted(j->req)) {
			fuse_reply_err(j->req, EINTR);
			cm_fs__job_free(j);
			return;
		}
	}
	cm_fs__job_push(j);
}

void cm_fs_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_FLOCK);
	if (j == NULL)
		return;
	j->ino = ino;
	j->flags = (unsigned)op;
	cm_fs__job_fi(j, fi);
	lock_push(j, (op & (LOCK_SH | LOCK_EX)) && !(op & LOCK_NB));
}

void cm_fs_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock)
{
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_GETLK);
	if (j == NULL)
		return;
	j->ino = ino;
	j->lk = *lock;
	cm_fs__job_fi(j, fi);
	cm_fs__job_push(j);
}

void cm_fs_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock,
		 int sleep)
{
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_SETLK);
	if (j == NULL)
		return;
	j->ino = ino;
	j->lk = *lock;
	j->flags = sleep != 0;
	cm_fs__job_fi(j, fi);
	lock_push(j, sleep && lock->l_type != F_UNLCK);
}

bool cm_fs_lock_xattr_name(const char *name)
{
	return strcmp(name, XA_LOCK_TOKEN) == 0 || strcmp(name, XA_EPHEMERAL) == 0;
}

void cm_fs_lock_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			 size_t size)
{
	struct cm_fs *fs = fuse_req_userdata(req);
	if (strcmp(name, XA_EPHEMERAL) != 0) {
		fuse_reply_err(req, EPERM); /* lock_token: read-only */
		return;
	}
	/* "1" or "0", a newline allowed after it (echo). */
	bool one = size >= 1 && value[0] == '1', zero = size >= 1 && value[0] == '0';
	if ((!one && !zero) || size > 2 || (size == 2 && value[1] != '\n')) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (fs->o.ro) {
		fuse_reply_err(req, EROFS);
		return;
	}
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_LOCK_SETXATTR);
	if (j == NULL)
		return;
	j->ino = ino;
	j->flags = one;
	cm_fs__job_push(j);
}

/* ---- loop thread ---- */

static void reply_text(struct cm_fs_job *j, const char *buf, size_t len)
{
	if (j->size == 0)
		fuse_reply_xattr(j->req, len);
	else if (j->size < len)
		fuse_reply_err(j->req, ERANGE);
	else
		fuse_reply_buf(j->req, buf, len);
	cm_fs__job_free(j);
}

static void ephemeral_put(struct cm_fs_job *j);

static void ephemeral_granted(void *arg, int err)
{
	struct cm_fs_job *j = arg;
	if (err == 0 || err == -EAGAIN)
		ephemeral_put(j);
	else
		cm_fs__done_err(j, err);
}

static void ephemeral_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (err == -ENOENT && j->flags && j->tries++ == 0) {
		/* No such lease in the file's group yet (or no such file:
		 * the PUT after the grant says which). */
		cm_fs_session_grant(j->fs, j->path, ephemeral_granted, j);
		return;
	}
	if (err == 0 && j->flags && resp != NULL)
		cm_fs_session_seen(j->fs, j->lk_id, resp->group, j->path);
	cm_fs__done_err(j, err);
}

/* Attach the file to the session lease (flags 1) or detach it (0): its
 * value, mode and times stay; a directory is refused by the server too. */
static void ephemeral_put(struct cm_fs_job *j)
{
	struct cm_fs *fs = j->fs;
	uint64_t lease = j->flags ? cm_fs_session_id(fs) : 0;
	j->lk_id = fs->ss.epoch; /* the session the answer is about */
	struct cm_req r = {.op = CM_OP_PUT,
			   .flags = CM_PUT_KEEP_VALUE | CM_PUT_LEASE | CM_NO_PARENTS,
			   .from_index = lease};
	cm_fs__submit(j, &r, ephemeral_cb);
}

static void run_set_ephemeral(struct cm_fs_job *j)
{
	struct cm_fs_node *n;
	int rc = cm_fs__node_path(j, &n);
	if (rc == 0 && n->has_attr && S_ISDIR(n->attr.mode))
		rc = -EISDIR; /* a lease holds files only (proto.h) */
	if (rc != 0)
		cm_fs__done_err(j, rc);
	else
		ephemeral_put(j);
}

/* LEASE TTL's answer lists the lease's files in the group: is j's one? */
static void ephemeral_get_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (err != 0 && err != -ENOENT) { /* ENOENT: no session lease in that group */
		cm_fs__done_err(j, err);
		return;
	}
	bool in = false;
	size_t len = strlen(j->path);
	const char *p = err == 0 && resp->value.p ? resp->value.p : "";
	const char *end = p + (err == 0 ? resp->value.len : 0);
	while (p < end && !in) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		in = l == len && memcmp(p, j->path, len) == 0;
		p += l + 1;
	}
	reply_text(j, in ? "1" : "0", 1);
}

static void run_get_ephemeral(struct cm_fs_job *j)
{
	struct cm_fs *fs = j->fs;
	struct cm_req r;
	int rc = cm_fs__node_path(j, NULL);
	if (rc == 0 && fs->ss.id == 0) {
		reply_text(j, "0", 1); /* no session yet: nothing attached */
		return;
	}
	if (rc == 0)
		rc = cm_lease_req(&r, j->path, CM_LEASE_TTL, fs->ss.id, 0);
	if (rc == 0)
		rc = fs->ac ? cm_ac_submit(fs->ac, &r, ephemeral_get_cb, j) : -ECANCELED;
	if (rc != 0)
		cm_fs__done_err(j, rc);
}

static void run_get_token(struct cm_fs_job *j)
{
	uint64_t token;
	int rc = cm_fs__lock_token(j->fs, j->ino, &token);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	char buf[24];
	int len = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)token);
	reply_text(j, buf, (size_t)len);
}

void cm_fs__run_xlock(struct cm_fs_job *j)
{
	if (j->op == CM_FS_LOCK_SETXATTR)
		run_set_ephemeral(j);
	else if (strcmp(j->name, XA_LOCK_TOKEN) == 0)
		run_get_token(j);
	else
		run_get_ephemeral(j);
}
