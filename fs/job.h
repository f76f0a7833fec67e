/* job.h: a FUSE request handed from the FUSE thread to the loop thread. */
#ifndef CONFMAN_FS_JOB_H
#define CONFMAN_FS_JOB_H

#include <sys/stat.h>

#include "fs.h"

enum cm_fs_op {
	CM_FS_LOOKUP,
	CM_FS_FORGET,
	CM_FS_GETATTR,
	CM_FS_SETATTR,
	CM_FS_OPENDIR,
	CM_FS_READDIR,
	CM_FS_RELEASEDIR,
	CM_FS_OPEN,
	CM_FS_READ,
	CM_FS_WRITE,
	CM_FS_FLUSH,
	CM_FS_FSYNC,
	CM_FS_RELEASE,
	CM_FS_CREATE,
	CM_FS_MKDIR,
	CM_FS_UNLINK,
	CM_FS_RMDIR,
	CM_FS_RENAME,
	CM_FS_SYMLINK,
	CM_FS_READLINK,
	CM_FS_GETXATTR,
	CM_FS_LISTXATTR,
	CM_FS_MKNOD,
	CM_FS_READDIRPLUS,
	/* fs/lock.c */
	CM_FS_FLOCK,
	CM_FS_GETLK,
	CM_FS_SETLK,
	CM_FS_LOCK_INTR,     /* a blocking lock's request was interrupted (req NULL) */
	CM_FS_LOCK_GETXATTR,
	CM_FS_LOCK_SETXATTR,
};

/*
 * Everything a request needs, copied out of libfuse's arguments on the FUSE
 * thread (they are valid only during the callback). Owned by the queue, then
 * by the loop thread, which replies exactly once and frees it (cm_fs__job_free).
 */
struct cm_fs_job {
	struct cm_fs_job *next;
	struct cm_fs *fs;
	enum cm_fs_op op;
	fuse_req_t req;
	fuse_ino_t ino, ino2; /* the inode or parent; rename's new parent */
	char *name, *name2;   /* owned: names in the request */
	char *path, *path2;   /* owned: server paths, computed on the loop thread */
	struct fuse_file_info fi;
	bool has_fi;
	struct stat st; /* setattr */
	int to_set;
	size_t size;
	off_t off;
	char *data; /* owned: write data, symlink target, a value being rebuilt */
	size_t data_len;
	uint64_t nlookup;
	uint32_t mode, uid, gid;
	unsigned int flags;
	struct cm_fs_fh *fh; /* a handle being opened; owned until replied */
	bool replay;         /* sent by the notifier thread: answer locally (notify.c) */
	uint64_t own_gen;    /* the write's entry in fs->own (0: none) */
	cm_ac_cb own_cb;     /* the callback behind the own-write trampoline */
	bool cache_ok;       /* open: the reply may be kept in the value cache... */
	uint64_t cache_gen;  /* ...if the node's cgen is still this */
	uint64_t cache_epoch; /* ...and the cache was not cleared (it.cepoch) */
	bool lin_retry;      /* open: redone as a linearizable read (file.c) */
	bool attr_only;      /* lookup, getattr: the GET asks attributes only */
	bool attr_retry;     /* ...and was refused once: sent again without */
	uint64_t chg;        /* opendir: the table's chg when the LIST left */
	uint8_t tries;       /* setattr, kill_suid: CAS attempts so far (exec.c, perm.c) */
	bool killed;         /* write, open: setuid/setgid already cleared if due (perm.c) */
	void (*then)(struct cm_fs_job *j, int err); /* perm.c: what follows the clearing */
	/* The write in flight, for the persistent cache's write-through (offline.c). */
	char *wt_path, *wt_path2, *wt_val; /* owned */
	uint32_t wt_len;
	uint8_t wt_op;
	bool wt_has_val;
	/* Locks (fs/lock.c): the interrupt's id of a blocking request, and
	 * getlk/setlk's struct flock. */
	uint64_t lk_id;
	struct flock lk;
};

void cm_fs__job_free(struct cm_fs_job *j);
/* ops.c, FUSE thread: a job for req (NULL after replying ENOMEM); queue it
 * for the loop thread; copy fi into it. */
struct cm_fs_job *cm_fs__job_new(fuse_req_t req, enum cm_fs_op op);
void cm_fs__job_push(struct cm_fs_job *j);
void cm_fs__job_fi(struct cm_fs_job *j, const struct fuse_file_info *fi);
/* lock.c, loop thread: run a lock job; the lock side of a flush or
 * release: true if then(j) will be called once the owner's locks are
 * given back (false: nothing to give back, j untouched). */
void cm_fs__run_lock(struct cm_fs_job *j);
bool cm_fs__lock_close(struct cm_fs_job *j, void (*then)(struct cm_fs_job *j));
/* lock_xattr.c: user.confman.lock_token and user.confman.ephemeral. */
void cm_fs__run_xlock(struct cm_fs_job *j);
/* lock.c: the highest token of this mount's holds of ino: 0 (and the
 * token), -ENOLCK (only lost ones), -ENODATA (none). */
int cm_fs__lock_token(struct cm_fs *fs, uint64_t ino, uint64_t *token);
/* A new open's flock owner (struct cm_fs_fh.lk_owner). */
uint64_t cm_fs__lock_owner_new(struct cm_fs *fs);

/* With CONFMAN_FS_TRACE=1 in the environment, one line per step of a file
 * job on stderr (CLOCK_MONOTONIC seconds, thread of the request, op, inode,
 * handle, then fmt): what the chaos worker's history is matched against. */
void cm_fs__trace(const struct cm_fs_job *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * cm_fs__redo_if_older - the mount's read-your-writes guard. A follower read
 * answering j->path as missing or older (mod_index) than this mount's own
 * acknowledged write of it must not be served: the client library's token
 * should have prevented it (RELIABILITY.md, anomaly 3). Logs what the answer
 * carried, then reads again from the leader (ReadIndex) with cb and returns
 * true; false when the answer may be served. Used by lookup, getattr, open.
 */
bool cm_fs__redo_if_older(struct cm_fs_job *j, int err, const struct cm_resp *resp, cm_ac_cb cb);
/* Loop thread: start one job. */
void cm_fs__job_run(struct cm_fs_job *j);

/* access.c: log j's refusal by the cluster's rules (EACCES), rate-limited. */
void cm_fs__deny_log(const struct cm_fs_job *j);

/* ---- exec.c: helpers shared by the loop thread's files ---- */
/* Reply fuse_reply_err(cm_fs_errno(err)) (0: success) and free j. */
void cm_fs__done_err(struct cm_fs_job *j, int err);
/* struct stat from a node's attributes; wsize >= 0 overrides the size. */
void cm_fs__fill_stat(struct stat *st, uint64_t ino, const struct cm_attr *a, int64_t wsize);
/* *out = malloc'd server path of parent's child name (caller frees).
 * 0, -ENOENT (unknown or unlinked parent), -ENAMETOOLONG, -ENOMEM. */
int cm_fs__child_path(struct cm_fs_job *j, fuse_ino_t parent, const char *name, char **out);
/* CM_NO_PARENTS for a write creating a child of parent, or 0 where the
 * mount's own root prefix may not exist yet. */
uint32_t cm_fs__no_parents(const struct cm_fs_job *j, fuse_ino_t parent);
/* After a create (j->ino: the parent, j->name): j->path follows the parent's
 * path now, in case the watch moved the parent while the request was out. */
void cm_fs__repath_child(struct cm_fs_job *j);
/* j->path = server path of j->ino; *np (may be NULL) its node. 0, -ENOENT, -ENOMEM. */
int cm_fs__node_path(struct cm_fs_job *j, struct cm_fs_node **np);
/* Send r for j->path (reads at the mount's consistency); cb owns j from then
 * on. On a refused submit j is answered with the error and freed. */
void cm_fs__submit(struct cm_fs_job *j, struct cm_req *r, cm_ac_cb cb);
void cm_fs__submit_get(struct cm_fs_job *j, cm_ac_cb cb);
/* cm_ac_submit for j with r as is; writes are remembered as this mount's own.
 * Returns cm_ac_submit's result (cb never fires on an error). */
int cm_fs__submit_raw(struct cm_fs_job *j, struct cm_req *r, cm_ac_cb cb);
/* Reply an entry for j->path with attr (one more kernel reference), free j. */
void cm_fs__reply_entry(struct cm_fs_job *j, const struct cm_attr *attr);
void cm_fs__reply_attr(struct cm_fs_job *j, struct cm_fs_node *n);
double cm_fs__ttl(const struct cm_fs_job *j, double t);
/* n's attributes as sent to the kernel in a reply (wsize as in fill_stat). */

/* ---- dir.c: directories ---- */
/* opendir: one LIST, kept in the handle; readdir and readdirplus serve it. */
void cm_fs__run_opendir(struct cm_fs_job *j);
void cm_fs__run_readdir(struct cm_fs_job *j);
void cm_fs__run_readdirplus(struct cm_fs_job *j);

/* ---- notify.c: requests of the notifier's replay, answered locally ---- */
/* true if j was the notifier's and has been answered (and freed). */
bool cm_fs__run_replay(struct cm_fs_job *j);
void cm_fs__run_xattr(struct cm_fs_job *j);

/* ---- perm.c: setuid/setgid ---- */
/* The bits of a->mode (S_ISUID, S_ISGID) a write or O_TRUNC by process pid
 * must clear, as the kernel decides for local filesystems. */
uint32_t cm_fs_perm_kill_bits(pid_t pid, const struct cm_attr *a);
/* If n is a regular file with setuid/setgid, clear what j's caller must
 * (a CAS PUT of the mode) and call then(j, err) when done, and return true;
 * false (then not called) when there is nothing to look at. */
bool cm_fs__kill_suid(struct cm_fs_job *j, struct cm_fs_node *n,
		      void (*then)(struct cm_fs_job *j, int err));
/* Creating in parent (j->uid, j->gid, j->mode from the caller): a setgid
 * parent gives its gid, and to a directory (dir) its setgid bit. */
void cm_fs__inherit_group(struct cm_fs_job *j, fuse_ino_t parent, bool dir);

/* ---- file.c: open files ---- */
/* A new handle listed in fs->handles; NULL on ENOMEM. */
struct cm_fs_fh *cm_fs__fh_new(struct cm_fs *fs, uint64_t ino, bool dir);
void cm_fs__fh_free(struct cm_fs *fs, struct cm_fs_fh *h);
/* Content length len, zero-filling growth. 0, -EFBIG (over CM_FS_BUF_MAX), -ENOMEM. */
int cm_fs__fh_resize(struct cm_fs_fh *h, size_t len);
/* The handle of a job that carries a fuse_file_info. */
struct cm_fs_fh *cm_fs__job_fh(struct cm_fs_job *j);
void cm_fs__run_open(struct cm_fs_job *j);
void cm_fs__run_read(struct cm_fs_job *j);
bool cm_fs__cache_attr(struct cm_fs_job *j, struct cm_fs_node *n);
void cm_fs__run_write(struct cm_fs_job *j);
/* flush, fsync, release: one PUT of the buffer if dirty. */
void cm_fs__run_commit(struct cm_fs_job *j);
void cm_fs__run_create(struct cm_fs_job *j);
/* mknod of a regular file: created empty, like create without the open. */
void cm_fs__run_mknod(struct cm_fs_job *j);
/* Reply to open (attr NULL) or create with handle h; frees j. */
void cm_fs__reply_opened(struct cm_fs_job *j, struct cm_fs_fh *h, const struct cm_attr *attr);
/* A fresh handle for j: empty, or dirty and empty with O_TRUNC. */
struct cm_fs_fh *cm_fs__open_handle(struct cm_fs_job *j, const struct cm_bytes *value, int *err);

/* ---- offline.c ---- */
/* A GET or LIST for j: answered by the cluster, or by the cache when it
 * cannot be reached. Returns as cm_ac_submit. */
int cm_fs_cache_submit_read(struct cm_fs_job *j, struct cm_req *r, cm_ac_cb cb);
/* Writes: -EROFS while offline (logged), else 0; will_write/wrote: the
 * committed write into the cache. */
int cm_fs_cache_refuse_write(struct cm_fs_job *j, const struct cm_req *r);
void cm_fs_cache_will_write(struct cm_fs_job *j, const struct cm_req *r);
void cm_fs_cache_wrote(struct cm_fs_job *j, int err, const struct cm_resp *resp);
/* A change of the namespace while offline: answered EROFS (true). */
bool cm_fs_cache_refuse(struct cm_fs_job *j);
/* user.confman.offline, age_ms, status: answered (true). */
bool cm_fs_cache_xattr(struct cm_fs_job *j);

#endif /* CONFMAN_FS_JOB_H */
