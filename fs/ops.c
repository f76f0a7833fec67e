/* ops.c: confman-fs's FUSE callbacks: copy each request into a job and queue it. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "job.h"

void cm_fs__job_free(struct cm_fs_job *j)
{
	free(j->name);
	free(j->name2);
	free(j->path);
	free(j->path2);
	free(j->data);
	free(j->wt_path);
	free(j->wt_path2);
	free(j->wt_val);
	free(j);
}

struct cm_fs_job *cm_fs__job_new(fuse_req_t req, enum cm_fs_op op)
{
	struct cm_fs_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		if (op == CM_FS_FORGET)
			fuse_reply_none(req);
		else
			fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	j->fs = fuse_req_userdata(req);
	j->op = op;
	j->req = req;
	/* The notifier replaying a remote change through the mount (notify.c):
	 * the kernel stamps the calling thread's id into every request. */
	int ntid = __atomic_load_n(&j->fs->ntid, __ATOMIC_ACQUIRE);
	j->replay = ntid != 0 && fuse_req_ctx(req)->pid == ntid;
	return j;
}

/* Hand j to the loop thread; blocks while CM_FS_QUEUE_MAX jobs wait (the
 * kernel then queues requests itself: back-pressure, not failure). */
void cm_fs__job_push(struct cm_fs_job *j)
{
	struct cm_fs *fs = j->fs;
	pthread_mutex_lock(&fs->mu);
	while (fs->queued >= CM_FS_QUEUE_MAX)
		pthread_cond_wait(&fs->not_full, &fs->mu);
	if (fs->tail)
		fs->tail->next = j;
	else
		fs->head = j;
	fs->tail = j;
	fs->queued++;
	pthread_mutex_unlock(&fs->mu);
	uv_async_send(&fs->wake);
}

/* Copy name(s); on failure reply ENOMEM and free j. */
static int job_names(struct cm_fs_job *j, const char *a, const char *b)
{
	j->name = a ? strdup(a) : NULL;
	j->name2 = b ? strdup(b) : NULL;
	if ((a && !j->name) || (b && !j->name2)) {
		fuse_reply_err(j->req, ENOMEM);
		cm_fs__job_free(j);
		return -ENOMEM;
	}
	return 0;
}

void cm_fs__job_fi(struct cm_fs_job *j, const struct fuse_file_info *fi)
{
	if (fi != NULL) {
		j->fi = *fi;
		j->has_fi = true;
	}
}

static bool read_only(fuse_req_t req)
{
	struct cm_fs *fs = fuse_req_userdata(req);
	if (!fs->o.ro)
		return false;
	fuse_reply_err(req, EROFS);
	return true;
}

static void simple(fuse_req_t req, enum cm_fs_op op, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cm_fs_job *j = cm_fs__job_new(req, op);
	if (j == NULL)
		return;
	j->ino = ino;
	cm_fs__job_fi(j, fi);
	cm_fs__job_push(j);
}

static void named(fuse_req_t req, enum cm_fs_op op, fuse_ino_t parent, const char *name)
{
	struct cm_fs_job *j = cm_fs__job_new(req, op);
	if (j == NULL || job_names(j, name, NULL) != 0)
		return;
	j->ino = parent;
	cm_fs__job_push(j);
}

static void cm_fs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* open(O_TRUNC) arrives as one OPEN: the truncation and the new content
	 * are then committed together by the PUT on close. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* The kernel must not own sizes and mtimes of a network filesystem. */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	/* setuid/setgid: the kernel clears them itself on chown and truncate
	 * (a SETATTR with the new mode); writes are direct_io, for which it
	 * only flags the WRITE (FUSE_WRITE_KILL_SUIDGID, perm.c). */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	/* Listings: READDIRPLUS carries each entry's attributes from the one
	 * LIST (fs/dir.c), for every chunk. The kernel's "auto" mode would
	 * ask for them on a directory's first chunk only, then again only
	 * once an entry it gave was looked at: ls -l stats as it reads, but
	 * find (fts) and anything that reads the whole directory first would
	 * LOOKUP every entry past the first chunk. */
	if (conn->capable & FUSE_CAP_READDIRPLUS) {
		conn->want |= FUSE_CAP_READDIRPLUS;
		conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	}
}

static void cm_fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	named(req, CM_FS_LOOKUP, parent, name);
}

static void cm_fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_FORGET);
	if (j == NULL)
		return;
	j->ino = ino;
	j->nlookup = nlookup;
	cm_fs__job_push(j);
}

static void cm_fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	simple(req, CM_FS_GETATTR, ino, fi);
}

static void cm_fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			  struct fuse_file_info *fi)
{
	if (read_only(req))
		return;
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_SETATTR);
	if (j == NULL)
		return;
	j->ino = ino;
	j->st = *attr;
	j->to_set = to_set;
	cm_fs__job_fi(j, fi);
	cm_fs__job_push(j);
}

static void cm_fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	simple(req, CM_FS_READLINK, ino, NULL);
}

/* mkdir and mknod: a new child of parent with the caller's owner. */
static void child_job(fuse_req_t req, enum cm_fs_op op, fuse_ino_t parent, const char *name,
		      mode_t mode)
{
	if (read_only(req))
		return;
	struct cm_fs_job *j = cm_fs__job_new(req, op);
	if (j == NULL || job_names(j, name, NULL) != 0)
		return;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	j->ino = parent;
	j->mode = mode & 07777;
	j->uid = ctx->uid;
	j->gid = ctx->gid;
	cm_fs__job_push(j);
}

static void cm_fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	child_job(req, CM_FS_MKDIR, parent, name, mode);
}

/* Regular files only: FIFOs, sockets and devices would exist only in this
 * kernel (their data never reaches the server), and the other interfaces
 * know no such node; EPERM is what Linux filesystems give for a type they
 * do not support (fs/README.md, "Node types"). Checked here: no state. */
static void cm_fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			dev_t rdev)
{
	(void)rdev;
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	child_job(req, CM_FS_MKNOD, parent, name, mode);
}

/* Hard links: a key has one path (fs/README.md). */
static void cm_fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EPERM);
}

static void cm_fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (!read_only(req))
		named(req, CM_FS_UNLINK, parent, name);
}

static void cm_fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (!read_only(req))
		named(req, CM_FS_RMDIR, parent, name);
}

static void cm_fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	if (read_only(req))
		return;
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_SYMLINK);
	if (j == NULL || job_names(j, name, link) != 0)
		return;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	j->ino = parent;
	j->uid = ctx->uid;
	j->gid = ctx->gid;
	cm_fs__job_push(j);
}

static void cm_fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			 fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	if (read_only(req))
		return;
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_RENAME);
	if (j == NULL || job_names(j, name, newname) != 0)
		return;
	j->ino = parent;
	j->ino2 = newparent;
	j->flags = flags;
	cm_fs__job_push(j);
}

static void cm_fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY && read_only(req))
		return;
	simple(req, CM_FS_OPEN, ino, fi);
}

static void cm_fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_READ);
	if (j == NULL)
		return;
	j->ino = ino;
	j->size = size;
	j->off = off;
	cm_fs__job_fi(j, fi);
	cm_fs__job_push(j);
}

static void cm_fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_WRITE);
	if (j == NULL)
		return;
	j->data = malloc(size ? size : 1);
	if (j->data == NULL) {
		fuse_reply_err(req, ENOMEM);
		cm_fs__job_free(j);
		return;
	}
	memcpy(j->data, buf, size);
	j->data_len = size;
	j->ino = ino;
	j->off = off;
	cm_fs__job_fi(j, fi);
	cm_fs__job_push(j);
}

static void cm_fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	simple(req, CM_FS_FLUSH, ino, fi);
}

static void cm_fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	simple(req, CM_FS_FSYNC, ino, fi);
}

static void cm_fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	simple(req, CM_FS_RELEASE, ino, fi);
}

static void cm_fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	simple(req, CM_FS_OPENDIR, ino, fi);
}

/* READDIR and READDIRPLUS: a chunk of the listing at off (fs/dir.c). */
static void dir_job(fuse_req_t req, enum cm_fs_op op, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct cm_fs_job *j = cm_fs__job_new(req, op);
	if (j == NULL)
		return;
	j->ino = ino;
	j->size = size;
	j->off = off;
	cm_fs__job_fi(j, fi);
	cm_fs__job_push(j);
}

static void cm_fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	dir_job(req, CM_FS_READDIR, ino, size, off, fi);
}

static void cm_fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			      struct fuse_file_info *fi)
{
	dir_job(req, CM_FS_READDIRPLUS, ino, size, off, fi);
}

static void cm_fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	simple(req, CM_FS_RELEASEDIR, ino, fi);
}

static void cm_fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 struct fuse_file_info *fi)
{
	if (read_only(req))
		return;
	struct cm_fs_job *j = cm_fs__job_new(req, CM_FS_CREATE);
	if (j == NULL || job_names(j, name, NULL) != 0)
		return;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	j->ino = parent;
	j->mode = mode & 07777;
	j->uid = ctx->uid;
	j->gid = ctx->gid;
	cm_fs__job_fi(j, fi);
	cm_fs__job_push(j);
}

/* Extended attributes: user.confman.version and user.confman.token, read-only. */
#define XA_VERSION "user.confman.version"
#define XA_TOKEN "user.confman.token"
/* Offline mode (fs/offline.c): on every node; status on the root only. */
#define XA_OFFLINE "user.confman.offline"
#define XA_AGE "user.confman.age_ms"
#define XA_STATUS "user.confman.status"

static bool xa_ours(const char *name)
{
	return strcmp(name, XA_VERSION) == 0 || strcmp(name, XA_TOKEN) == 0 ||
	       strcmp(name, XA_OFFLINE) == 0 || strcmp(name, XA_AGE) == 0 ||
	       strcmp(name, XA_STATUS) == 0;
}

static void cm_fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	bool lock = cm_fs_lock_xattr_name(name); /* fs/lock.c */
	if (!lock && !xa_ours(name)) {
		/* Only the user namespace exists here: no security labels, no
		 * ACLs, no trusted names (setxattr of them is ENOTSUP too).
		 * Saying so lets ls -l remember it per device (coreutils'
		 * getfilecon_cache, file_has_acl_cache) instead of sending a
		 * GETXATTR for every file it lists. */
		fuse_reply_err(req, strncmp(name, "user.", 5) == 0 ? ENODATA : ENOTSUP);
		return;
	}
	struct cm_fs_job *j = cm_fs__job_new(req, lock ? CM_FS_LOCK_GETXATTR : CM_FS_GETXATTR);
	if (j == NULL || job_names(j, name, NULL) != 0)
		return;
	j->ino = ino;
	j->size = size;
	cm_fs__job_push(j);
}

static void cm_fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	/* Every node has these; no server round trip needed for the names. */
	(void)ino;
	static const char names[] = XA_VERSION "\0" XA_TOKEN "\0" XA_OFFLINE "\0" XA_AGE;
	if (size == 0)
		fuse_reply_xattr(req, sizeof(names));
	else if (size < sizeof(names))
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, names, sizeof(names));
}

static void cm_fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			   size_t size, int flags)
{
	(void)flags;
	if (cm_fs_lock_xattr_name(name)) {
		cm_fs_lock_setxattr(req, ino, name, value, size); /* fs/lock.c */
		return;
	}
	fuse_reply_err(req, xa_ours(name) ? EPERM : ENOTSUP);
}

static void cm_fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino;
	fuse_reply_err(req, xa_ours(name) || cm_fs_lock_xattr_name(name) ? EPERM : ENODATA);
}

/* No state: answered on the FUSE thread. Confman has no block accounting;
 * report a large, mostly free filesystem with the value limit as block size
 * is not useful either, so 4 KiB blocks and the name limit of the protocol. */
static void cm_fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs sv = {
		.f_bsize = 4096,
		.f_frsize = 4096,
		.f_blocks = 1u << 20,
		.f_bfree = 1u << 20,
		.f_bavail = 1u << 20,
		.f_files = 1u << 20,
		.f_ffree = 1u << 20,
		.f_favail = 1u << 20,
		.f_namemax = CM_NAME_MAX,
	};
	fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops cm_fs_ops = {
	.init = cm_fs_init,
	.lookup = cm_fs_lookup,
	.forget = cm_fs_forget,
	.getattr = cm_fs_getattr,
	.setattr = cm_fs_setattr,
	.readlink = cm_fs_readlink,
	.mknod = cm_fs_mknod,
	.mkdir = cm_fs_mkdir,
	.unlink = cm_fs_unlink,
	.rmdir = cm_fs_rmdir,
	.symlink = cm_fs_symlink,
	.rename = cm_fs_rename,
	.link = cm_fs_link,
	.open = cm_fs_open,
	.read = cm_fs_read,
	.write = cm_fs_write,
	.flush = cm_fs_flush,
	.fsync = cm_fs_fsync,
	.release = cm_fs_release,
	.opendir = cm_fs_opendir,
	.readdir = cm_fs_readdir,
	.readdirplus = cm_fs_readdirplus,
	.releasedir = cm_fs_releasedir,
	.create = cm_fs_create,
	.statfs = cm_fs_statfs,
	.getxattr = cm_fs_getxattr,
	.listxattr = cm_fs_listxattr,
	.setxattr = cm_fs_setxattr,
	.removexattr = cm_fs_removexattr,
	/* fs/lock.c: cluster-wide flock(2) and whole-file fcntl(2) locks */
	.flock = cm_fs_flock,
	.getlk = cm_fs_getlk,
	.setlk = cm_fs_setlk,
};

/* Loop thread: take the whole queue at once, then run it outside the lock. */
void cm_fs_drain(uv_async_t *h)
{
	struct cm_fs *fs = h->data;
	pthread_mutex_lock(&fs->mu);
	struct cm_fs_job *j = fs->head;
	fs->head = fs->tail = NULL;
	fs->queued = 0;
	pthread_cond_broadcast(&fs->not_full);
	pthread_mutex_unlock(&fs->mu);
	while (j != NULL) {
		struct cm_fs_job *next = j->next;
		j->next = NULL;
		cm_fs__job_run(j);
		j = next;
	}
}
