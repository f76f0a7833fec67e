/* exec.c: confman-fs's loop thread: each job becomes requests to the cluster,
 * and its reply is sent when the server answers (metadata and namespace;
 * open files are file.c's). */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "job.h"

int cm_fs_errno(int err)
{
	if (err >= 0)
		return 0;
	switch (err) {
	case CM_ENOTLEADER:
	case CM_ENOLEADER:
	case CM_ETRANSFERRING:
	case -ETIMEDOUT:
		return ETIMEDOUT;
	case -ECANCELED:      /* shutdown (we send no CAS) */
	case -ECONNREFUSED:   /* no server reachable */
	case -EPROTO:
	case -EBADMSG:
		return EIO;
	default:
		break;
	}
	if (err > -4096)
		return -err;
	return EIO; /* CM_EWRONGSHARD, CM_ESTALE and the other project codes */
}

void cm_fs__trace(const struct cm_fs_job *j, const char *fmt, ...)
{
	static const char *const ops[] = {
		"lookup", "forget", "getattr", "setattr", "opendir", "readdir", "releasedir",
		"open", "read", "write", "flush", "fsync", "release", "create", "mkdir",
		"unlink", "rmdir", "rename", "symlink", "readlink", "getxattr", "listxattr",
		"mknod", "readdirplus", "flock", "getlk", "setlk", "lock-interrupt",
		"lock-getxattr", "lock-setxattr"};
	if (!j->fs->trace)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "trace %lld.%06ld pid %d %s%s ino %llu fh %#llx %s\n", (long long)ts.tv_sec,
		ts.tv_nsec / 1000, j->req ? (int)fuse_req_ctx(j->req)->pid : -1,
		(unsigned)j->op < sizeof(ops) / sizeof(ops[0]) ? ops[j->op] : "?",
		j->replay ? " (replay)" : "", (unsigned long long)j->ino,
		j->has_fi ? (unsigned long long)j->fi.fh : 0ull, msg);
}

void cm_fs__done_err(struct cm_fs_job *j, int err)
{
	cm_fs__trace(j, "done err %d", err);
	/* The daemon never makes EACCES itself (the kernel's mode checks
	 * never reach it): this is a server's refusal. */
	if (err == -EACCES && !j->replay)
		cm_fs__deny_log(j);
	fuse_reply_err(j->req, cm_fs_errno(err));
	cm_fs__job_free(j);
}

/* Nanoseconds since the epoch as a timespec; before 1970 too (tv_nsec >= 0). */
static struct timespec ns_to_ts(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000;
	}
	return ts;
}

void cm_fs__fill_stat(struct stat *st, uint64_t ino, const struct cm_attr *a, int64_t wsize)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink ? a->nlink : S_ISDIR(a->mode) ? 2 : 1; /* 0: an older server's */
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = wsize >= 0 ? wsize : (off_t)a->size;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_mtim = ns_to_ts(a->mtime_ns);
	st->st_ctim = ns_to_ts(a->ctime_ns);
	/* Stored, set at creation and by utimensat; reads never move it
	 * (a read is not a replicated write): noatime (fs/README.md). */
	st->st_atim = ns_to_ts(a->atime_ns);
}

/* The root of a prefix that does not exist (yet): an empty directory. */
static const struct cm_attr root_attr = {.mode = S_IFDIR | 0755};

/* How long the kernel may keep an answer: the mount's timeout while the
 * watch is live, else 0 (nothing would tell the kernel it changed). Answers
 * to the notifier's replay (notify.c) may hold guessed attributes: never
 * kept. */
double cm_fs__ttl(const struct cm_fs_job *j, double t)
{
	return j->replay || !j->fs->live ? 0 : t;
}

void cm_fs__reply_attr(struct cm_fs_job *j, struct cm_fs_node *n)
{
	struct stat st;
	cm_fs__fill_stat(&st, n->ino, &n->attr, n->wsize);
	if (!n->linked)
		st.st_nlink = 0;
	/* The kernel must not keep the attributes of a file with uncommitted
	 * changes (ftruncate, writes): its commit at close moves mtime and
	 * ctime, and the next stat must ask. (cm_fs__ttl: 0 for the replay's
	 * guessed attributes and while a watch stream is silent.) */
	double ttl = n->wsize < 0 ? j->fs->o.attr_timeout : 0;
	fuse_reply_attr(j->req, &st, cm_fs__ttl(j, ttl));
	cm_fs__job_free(j);
}

/* Reply an entry for j->path with attr: one more kernel reference. */
void cm_fs__reply_entry(struct cm_fs_job *j, const struct cm_attr *attr)
{
	struct cm_fs_node *n;
	int rc = cm_fs_itable_ref(&j->fs->it, j->path, &n);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	n->attr = *attr;
	n->has_attr = true;
	struct fuse_entry_param e = {
		.ino = n->ino,
		.attr_timeout = cm_fs__ttl(j, j->fs->o.attr_timeout),
		.entry_timeout = cm_fs__ttl(j, j->fs->o.entry_timeout),
	};
	cm_fs__fill_stat(&e.attr, n->ino, attr, n->wsize);
	if (fuse_reply_entry(j->req, &e) != 0)
		cm_fs_itable_forget(&j->fs->it, n->ino, 1);
	cm_fs__job_free(j);
}

/* j->path = the server path of parent's child name. */
int cm_fs__child_path(struct cm_fs_job *j, fuse_ino_t parent, const char *name, char **out)
{
	struct cm_fs_node *p = cm_fs_itable_find(&j->fs->it, parent);
	if (p == NULL || !p->linked)
		return -ENOENT;
	size_t lp = strlen(p->path), ln = strlen(name);
	if (ln > CM_NAME_MAX)
		return -ENAMETOOLONG;
	bool root = lp == 1;
	if ((root ? 0 : lp) + 1 + ln > CM_PATH_MAX)
		return -ENAMETOOLONG;
	char *s = malloc(lp + ln + 2);
	if (s == NULL)
		return -ENOMEM;
	memcpy(s, p->path, lp);
	size_t k = root ? 0 : lp;
	s[k] = '/';
	memcpy(s + k + 1, name, ln + 1);
	*out = s;
	return 0;
}

uint32_t cm_fs__no_parents(const struct cm_fs_job *j, fuse_ino_t parent)
{
	/* The mount's root may be a prefix nobody created yet: its first
	 * child creates it. Anywhere else the parent was looked up, so a
	 * missing one was removed or moved meanwhile, and must stay so. */
	bool bare_root = parent == FUSE_ROOT_ID && strcmp(j->fs->o.prefix, "/") != 0;
	return bare_root ? 0 : CM_NO_PARENTS;
}

/* j->path = the server path of inode j->ino (linked or not). */
int cm_fs__node_path(struct cm_fs_job *j, struct cm_fs_node **np)
{
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	if (n == NULL)
		return -ENOENT;
	j->path = strdup(n->path);
	if (j->path == NULL)
		return -ENOMEM;
	if (np)
		*np = n;
	return 0;
}

void cm_fs__submit(struct cm_fs_job *j, struct cm_req *r, cm_ac_cb cb)
{
	r->path = (struct cm_bytes){j->path, (uint32_t)strlen(j->path)};
	if (r->op == CM_OP_GET || r->op == CM_OP_LIST)
		r->consistency = CM_READ_DEFAULT;
	int rc = cm_fs__submit_raw(j, r, cb);
	if (rc != 0)
		cm_fs__done_err(j, rc);
}

/* An own write: the value cache forgets what it changes, on the way out and
 * back (the page cache is not kept by the next open: fs/file.c). */
static void own_cache_drop(struct cm_fs_job *j)
{
	bool sub = j->op == CM_FS_RENAME || j->op == CM_FS_RMDIR || j->op == CM_FS_UNLINK;
	if (j->path)
		cm_fs_cache_drop_path(&j->fs->it, j->path, sub);
	if (j->path2)
		cm_fs_cache_drop_path(&j->fs->it, j->path2, sub);
}

/* Writes pass through here on their way back: the reply's token bounds the
 * index of the write, so the watch event it causes is recognised as ours. */
static void own_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	cm_fs_own_end(j->fs, j->own_gen, err, resp ? resp->token : 0);
	cm_fs_cache_wrote(j, err, resp);
	own_cache_drop(j); /* a read sent meanwhile may have seen the old value */
	j->own_cb(arg, err, resp);
}

int cm_fs__submit_raw(struct cm_fs_job *j, struct cm_req *r, cm_ac_cb cb)
{
	bool read = r->op == CM_OP_GET || r->op == CM_OP_LIST;
	if (r->op == CM_OP_GET)
		j->fs->n_get++;
	else if (r->op == CM_OP_LIST)
		j->fs->n_list++;
	if (read && j->fs->off.cache != NULL)
		return cm_fs_cache_submit_read(j, r, cb);
	if (r->op == CM_OP_PUT || r->op == CM_OP_MKDIR || r->op == CM_OP_DELETE ||
	    r->op == CM_OP_RENAME) {
		int rc = cm_fs_cache_refuse_write(j, r);
		if (rc != 0)
			return rc;
		cm_fs_cache_will_write(j, r);
		own_cache_drop(j);
		j->own_gen = cm_fs_own_begin(j->fs, r->op, j->path);
		j->own_cb = cb;
		cb = own_cb;
	}
	int rc = cm_ac_submit(j->fs->ac, r, cb, j);
	if (rc != 0 && j->own_gen != 0)
		cm_fs_own_end(j->fs, j->own_gen, rc, 0);
	return rc;
}

void cm_fs__submit_get(struct cm_fs_job *j, cm_ac_cb cb)
{
	struct cm_req r = {.op = CM_OP_GET};
	cm_fs__submit(j, &r, cb);
}

/* lookup and getattr: a stat-only GET (CM_GET_ATTR_ONLY), unless a server
 * refused one; the answer's value, if an older server sent it, is unused. */
static void submit_stat(struct cm_fs_job *j, cm_ac_cb cb)
{
	j->attr_only = !j->fs->no_attr_only && !j->attr_retry;
	struct cm_req r = {.op = CM_OP_GET, .flags = j->attr_only ? CM_GET_ATTR_ONLY : 0};
	if (!j->lin_retry) {
		cm_fs__submit(j, &r, cb);
		return;
	}
	r.consistency = CM_READ_LINEARIZABLE; /* the read-your-writes guard's redo */
	r.path = (struct cm_bytes){j->path, (uint32_t)strlen(j->path)};
	int rc = cm_fs__submit_raw(j, &r, cb);
	if (rc != 0)
		cm_fs__done_err(j, rc);
}

/* A server that does not know CM_GET_ATTR_ONLY and refuses it (-EINVAL):
 * the same GET again without it; if that one is not refused too, the
 * mount stats with whole GETs from then on (logged once). */
static bool stat_fallback(struct cm_fs_job *j, int err, cm_ac_cb cb)
{
	struct cm_fs *fs = j->fs;
	if (j->attr_retry && err != -EINVAL && !fs->no_attr_only) {
		fs->no_attr_only = true;
		fprintf(stderr, "confman-fs: a server refused stat-only reads (CM_GET_ATTR_ONLY): "
				"lookup and getattr fetch whole values from now on\n");
	}
	if (err != -EINVAL || !j->attr_only)
		return false;
	j->attr_retry = true;
	submit_stat(j, cb);
	return true;
}

/* Was this answer (err, resp) to a read of j->path older than this mount's
 * own acknowledged write of it: missing, or an older mod_index? */
static bool older_than_own(struct cm_fs_node *n, int err, const struct cm_resp *resp)
{
	if (n == NULL || n->own_mod == 0)
		return false;
	if (err == -ENOENT)
		return true;
	return err == 0 && resp->has_attr && resp->attr.mod_index < n->own_mod;
}

bool cm_fs__redo_if_older(struct cm_fs_job *j, int err, const struct cm_resp *resp, cm_ac_cb cb)
{
	struct cm_fs *fs = j->fs;
	struct cm_fs_node *n = j->path ? cm_fs_itable_lookup(&fs->it, j->path) : NULL;
	if (j->lin_retry) {
		if (n != NULL && err == -ENOENT)
			n->own_mod = 0; /* removed since, for real */
		return false;
	}
	if (!older_than_own(n, err, resp))
		return false;
	char what[48] = "ENOENT";
	if (err == 0)
		snprintf(what, sizeof(what), "mod_index %llu",
			 (unsigned long long)resp->attr.mod_index);
	fprintf(stderr,
		"confman-fs: %s: read-your-writes: a read answered %s (group %llu, replica at "
		"index %llu, client token now %llu) after this mount's write at mod_index %llu "
		"(token %llu): reading again from the leader\n",
		j->path, what, (unsigned long long)(resp ? resp->group : 0),
		(unsigned long long)(resp ? resp->token : 0),
		(unsigned long long)cm_ac_token(fs->ac, resp && resp->group ? resp->group : 1),
		(unsigned long long)n->own_mod, (unsigned long long)n->own_token);
	j->lin_retry = true;
	j->cache_ok = false;
	struct cm_req r = {.op = CM_OP_GET, .consistency = CM_READ_LINEARIZABLE,
			   .flags = j->attr_only ? CM_GET_ATTR_ONLY : 0,
			   .path = {j->path, (uint32_t)strlen(j->path)}};
	int rc = cm_fs__submit_raw(j, &r, cb);
	if (rc != 0)
		cm_fs__done_err(j, rc);
	return true;
}

/* ---- lookup, getattr, readlink ---- */

static void lookup_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (stat_fallback(j, err, lookup_cb) || cm_fs__redo_if_older(j, err, resp, lookup_cb))
		return;
	if (err != 0 || !resp->has_attr) {
		cm_fs__done_err(j, err ? err : -EIO);
		return;
	}
	cm_fs__reply_entry(j, &resp->attr);
}

static void run_lookup(struct cm_fs_job *j)
{
	int rc = cm_fs__child_path(j, j->ino, j->name, &j->path);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	submit_stat(j, lookup_cb);
}

static void getattr_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (stat_fallback(j, err, getattr_cb) || cm_fs__redo_if_older(j, err, resp, getattr_cb))
		return;
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	if (n == NULL) {
		cm_fs__done_err(j, -ENOENT);
		return;
	}
	if (err == -ENOENT && j->ino == FUSE_ROOT_ID) {
		n->attr = root_attr;
	} else if (err != 0 || !resp->has_attr) {
		cm_fs__done_err(j, err ? err : -EIO);
		return;
	} else {
		n->attr = resp->attr;
	}
	n->has_attr = true;
	cm_fs__reply_attr(j, n);
}

static void run_getattr(struct cm_fs_job *j)
{
	struct cm_fs_node *n;
	int rc = cm_fs__node_path(j, &n);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	if (!n->linked && n->has_attr) { /* unlinked while open */
		cm_fs__reply_attr(j, n);
		return;
	}
	if (cm_fs__cache_attr(j, n)) {
		cm_fs__reply_attr(j, n);
		return;
	}
	submit_stat(j, getattr_cb);
}

static void readlink_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (err != 0) {
		cm_fs__done_err(j, err);
		return;
	}
	if (!resp->has_attr || !S_ISLNK(resp->attr.mode)) {
		cm_fs__done_err(j, -EINVAL);
		return;
	}
	char *s = strndup(resp->value.p ? resp->value.p : "", resp->value.len);
	if (s == NULL) {
		cm_fs__done_err(j, -ENOMEM);
		return;
	}
	fuse_reply_readlink(j->req, s);
	free(s);
	cm_fs__job_free(j);
}

static void run_readlink(struct cm_fs_job *j)
{
	int rc = cm_fs__node_path(j, NULL);
	if (rc != 0)
		cm_fs__done_err(j, rc);
	else
		cm_fs__submit_get(j, readlink_cb);
}

/* ---- setattr ---- */

#define OWNERISH (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)
#define TIMEISH (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW | \
		 FUSE_SET_ATTR_MTIME_NOW)
#define MODEISH (OWNERISH | TIMEISH)

/* A SETATTR is a CAS on the mod index of the attributes (and value) it was
 * computed from: chmod resends the uid/gid it last saw and truncate(path)
 * the bytes it read, so a change made meanwhile elsewhere (a chown, a
 * write) must not be undone. On a conflict it reads again and recomputes,
 * at most SETATTR_TRIES times. */
#define SETATTR_TRIES 8

static void setattr_put(struct cm_fs_job *j, struct cm_fs_node *n, bool value);
static void truncate_get_cb(void *arg, int err, const struct cm_resp *resp);

static void setattr_refetch_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	if (err != 0 || n == NULL || !resp->has_attr) {
		cm_fs__done_err(j, err ? err : -ENOENT);
		return;
	}
	n->attr = resp->attr;
	n->has_attr = true;
	if (j->data != NULL)
		truncate_get_cb(arg, 0, resp); /* the new value, cut again */
	else
		setattr_put(j, n, false);
}

static void setattr_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	if (err == -ECANCELED && j->tries < SETATTR_TRIES) {
		j->tries++;
		cm_fs__submit_get(j, setattr_refetch_cb);
		return;
	}
	if (err != 0 || n == NULL || !resp->has_attr) {
		cm_fs__done_err(j, err ? err : -ENOENT);
		return;
	}
	n->attr = resp->attr;
	n->has_attr = true;
	cm_fs__reply_attr(j, n);
}

/* utimensat/futimens: what the kernel asks is what the server sets; NOW is
 * the leader's stamp (one clock for every time of the tree), an unset time
 * is kept (UTIME_OMIT). Not with a size change: (f)truncate sends the
 * kernel's own clock as mtime, and the server stamps the new value anyway. */
static void setattr_times(const struct cm_fs_job *j, struct cm_req *r)
{
	int s = j->to_set;
	if (!(s & TIMEISH) || (s & FUSE_SET_ATTR_SIZE))
		return;
	r->flags |= CM_SET_TIMES;
	r->atime_ns = r->mtime_ns = CM_TIME_OMIT;
	if (s & FUSE_SET_ATTR_ATIME_NOW)
		r->atime_ns = CM_TIME_NOW;
	else if (s & FUSE_SET_ATTR_ATIME)
		r->atime_ns = (int64_t)j->st.st_atim.tv_sec * 1000000000 + j->st.st_atim.tv_nsec;
	if (s & FUSE_SET_ATTR_MTIME_NOW)
		r->mtime_ns = CM_TIME_NOW;
	else if (s & FUSE_SET_ATTR_MTIME)
		r->mtime_ns = (int64_t)j->st.st_mtim.tv_sec * 1000000000 + j->st.st_mtim.tv_nsec;
}

/* Times set while a handle of n holds writes not yet committed: that
 * commit, stamped later, would move mtime past them (cp -p and tar call
 * futimens before close), so it carries them too. */
static void times_to_handles(struct cm_fs *fs, struct cm_fs_node *n, const struct cm_req *r)
{
	for (struct cm_fs_fh *h = fs->handles; h != NULL; h = h->next) {
		if (h->dir || h->ino != n->ino || !h->dirty)
			continue;
		h->times = true;
		h->atime_ns = r->atime_ns;
		h->mtime_ns = r->mtime_ns;
	}
}

/* One PUT: the new value in j->data (size/truncate) and/or mode, uid, gid,
 * times, if the node is still what n->attr says. */
static void setattr_put(struct cm_fs_job *j, struct cm_fs_node *n, bool value)
{
	struct cm_req r = {.op = CM_OP_PUT, .flags = CM_NO_PARENTS};
	if (n->has_attr) {
		r.flags |= CM_PUT_IF_MOD;
		r.mod_index = n->attr.mod_index;
	}
	if (value)
		r.value = (struct cm_bytes){j->data, (uint32_t)j->data_len};
	else
		r.flags |= CM_PUT_KEEP_VALUE;
	if (j->to_set & OWNERISH) {
		/* Unset fields keep the values last seen (the CAS makes sure
		 * they still are). */
		r.flags |= CM_SET_MODE;
		r.mode = (j->to_set & FUSE_SET_ATTR_MODE ? j->st.st_mode : n->attr.mode) & 07777;
		r.uid = j->to_set & FUSE_SET_ATTR_UID ? j->st.st_uid : n->attr.uid;
		r.gid = j->to_set & FUSE_SET_ATTR_GID ? j->st.st_gid : n->attr.gid;
	}
	setattr_times(j, &r);
	if (r.flags & CM_SET_TIMES)
		times_to_handles(j->fs, n, &r);
	cm_fs__submit(j, &r, setattr_cb);
}

static void truncate_get_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	if (err != 0 || n == NULL || !resp->has_attr) {
		cm_fs__done_err(j, err ? err : -ENOENT);
		return;
	}
	n->attr = resp->attr; /* the CAS is on what was read */
	n->has_attr = true;
	size_t keep = resp->value.len < j->data_len ? resp->value.len : j->data_len;
	memset(j->data, 0, j->data_len);
	if (keep > 0)
		memcpy(j->data, resp->value.p, keep);
	setattr_put(j, n, true);
}

static void run_setattr(struct cm_fs_job *j)
{
	struct cm_fs_node *n;
	int rc = cm_fs__node_path(j, &n);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	struct cm_fs_fh *h = j->has_fi ? cm_fs__job_fh(j) : NULL;
	if (!(j->to_set & FUSE_SET_ATTR_SIZE)) {
		if (j->to_set & MODEISH)
			setattr_put(j, n, false);
		else
			cm_fs__reply_attr(j, n);
		return;
	}
	if (j->st.st_size < 0 || (uint64_t)j->st.st_size > CM_FS_BUF_MAX) {
		cm_fs__done_err(j, -EFBIG);
		return;
	}
	size_t size = (size_t)j->st.st_size;
	if (h != NULL && !h->dir) { /* ftruncate: the buffer, committed on close */
		rc = cm_fs__fh_resize(h, size);
		if (rc != 0) {
			cm_fs__done_err(j, rc);
			return;
		}
		h->dirty = true;
		h->trunc_only = false;
		h->rewrite = true;
		n->wsize = (int64_t)h->len;
		if (j->to_set & OWNERISH) /* times: the commit at close stamps them */
			setattr_put(j, n, false);
		else
			cm_fs__reply_attr(j, n);
		return;
	}
	/* truncate(path): the shortened (or zero-extended) value, now. */
	j->data = calloc(1, size ? size : 1);
	if (j->data == NULL) {
		cm_fs__done_err(j, -ENOMEM);
		return;
	}
	j->data_len = size;
	if (size == 0)
		setattr_put(j, n, true);
	else
		cm_fs__submit_get(j, truncate_get_cb);
}

static void run_release_handle(struct cm_fs_job *j)
{
	cm_fs__fh_free(j->fs, cm_fs__job_fh(j));
	fuse_reply_err(j->req, 0);
	cm_fs__job_free(j);
}

/* ---- namespace ---- */

void cm_fs__repath_child(struct cm_fs_job *j)
{
	/* The server created j->name in the directory j->ino named when the
	 * request left. If another mount renamed that directory since, and
	 * this mount's watch has already moved the directory's inode, the new
	 * entry lives under the directory's new path: a node at the old one
	 * would be a name the watch never moves again (its close would find
	 * nothing there). */
	char *now;
	if (cm_fs__child_path(j, j->ino, j->name, &now) != 0)
		return; /* the directory is gone too: its own unlink covers it */
	if (strcmp(now, j->path) == 0) {
		free(now);
		return;
	}
	cm_fs__trace(j, "created under a directory renamed meanwhile: %s, not %s", now, j->path);
	free(j->path);
	j->path = now;
}

static void entry_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (err != 0 || !resp->has_attr) {
		cm_fs__done_err(j, err ? err : -EIO);
		return;
	}
	cm_fs__repath_child(j);
	cm_fs__reply_entry(j, &resp->attr);
}

static void run_mkdir(struct cm_fs_job *j)
{
	int rc = cm_fs__child_path(j, j->ino, j->name, &j->path);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	cm_fs__inherit_group(j, j->ino, true);
	struct cm_req r = {.op = CM_OP_MKDIR, .flags = cm_fs__no_parents(j, j->ino),
			   .mode = j->mode ? j->mode : 0755, .uid = j->uid, .gid = j->gid};
	cm_fs__submit(j, &r, entry_cb);
}

static void run_symlink(struct cm_fs_job *j)
{
	int rc = cm_fs__child_path(j, j->ino, j->name, &j->path);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	size_t len = strlen(j->name2);
	if (len > CM_PATH_MAX) {
		cm_fs__done_err(j, -ENAMETOOLONG);
		return;
	}
	cm_fs__inherit_group(j, j->ino, false);
	struct cm_req r = {.op = CM_OP_PUT,
			   .flags = CM_PUT_CREATE | CM_SET_MODE | cm_fs__no_parents(j, j->ino),
			   .mode = S_IFLNK | 0777, .uid = j->uid, .gid = j->gid,
			   .value = {j->name2, (uint32_t)len}};
	cm_fs__submit(j, &r, entry_cb);
}

static void unlink_cb(void *arg, int err, const struct cm_resp *resp)
{
	(void)resp;
	struct cm_fs_job *j = arg;
	if (err == 0)
		cm_fs_itable_unlink(&j->fs->it, j->path);
	cm_fs__done_err(j, err);
}

static void run_unlink(struct cm_fs_job *j)
{
	int rc = cm_fs__child_path(j, j->ino, j->name, &j->path);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	struct cm_req r = {.op = CM_OP_DELETE, .flags = j->op == CM_FS_RMDIR ? CM_DEL_DIR : 0};
	cm_fs__submit(j, &r, unlink_cb);
}

static void rename_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (err == 0)
		err = cm_fs_itable_rename(&j->fs->it, j->path, j->path2,
					  resp->has_attr ? &resp->attr : NULL);
	cm_fs__done_err(j, err);
}

static void run_rename(struct cm_fs_job *j)
{
	if (j->flags & ~(unsigned)RENAME_NOREPLACE) {
		cm_fs__done_err(j, -EINVAL); /* RENAME_EXCHANGE, RENAME_WHITEOUT */
		return;
	}
	int rc = cm_fs__child_path(j, j->ino, j->name, &j->path);
	if (rc == 0)
		rc = cm_fs__child_path(j, j->ino2, j->name2, &j->path2);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	struct cm_req r = {.op = CM_OP_RENAME,
			   .flags = (j->flags & RENAME_NOREPLACE ? CM_PUT_CREATE : 0) |
				    cm_fs__no_parents(j, j->ino2),
			   .path2 = {j->path2, (uint32_t)strlen(j->path2)}};
	cm_fs__submit(j, &r, rename_cb);
}

void cm_fs__job_run(struct cm_fs_job *j)
{
	cm_fs__trace(j, "run flags %#x", j->has_fi ? (unsigned)j->fi.flags : 0u);
	if (j->replay && cm_fs__run_replay(j))
		return;
	if (!j->replay && cm_fs_cache_refuse(j))
		return;
	switch (j->op) {
	case CM_FS_LOOKUP: run_lookup(j); break;
	case CM_FS_FORGET:
		cm_fs_itable_forget(&j->fs->it, j->ino, j->nlookup);
		fuse_reply_none(j->req);
		cm_fs__job_free(j);
		break;
	case CM_FS_GETATTR: run_getattr(j); break;
	case CM_FS_SETATTR: run_setattr(j); break;
	case CM_FS_OPENDIR: cm_fs__run_opendir(j); break;
	case CM_FS_READDIR: cm_fs__run_readdir(j); break;
	case CM_FS_READDIRPLUS: cm_fs__run_readdirplus(j); break;
	case CM_FS_RELEASEDIR: run_release_handle(j); break;
	case CM_FS_OPEN: cm_fs__run_open(j); break;
	case CM_FS_READ: cm_fs__run_read(j); break;
	case CM_FS_WRITE: cm_fs__run_write(j); break;
	case CM_FS_FLUSH:
	case CM_FS_RELEASE:
		/* The owner's cluster locks go first (fs/lock.c), then the data. */
		if (!cm_fs__lock_close(j, cm_fs__run_commit))
			cm_fs__run_commit(j);
		break;
	case CM_FS_FSYNC: cm_fs__run_commit(j); break;
	case CM_FS_CREATE: cm_fs__run_create(j); break;
	case CM_FS_MKNOD: cm_fs__run_mknod(j); break;
	case CM_FS_MKDIR: run_mkdir(j); break;
	case CM_FS_UNLINK:
	case CM_FS_RMDIR: run_unlink(j); break;
	case CM_FS_RENAME: run_rename(j); break;
	case CM_FS_SYMLINK: run_symlink(j); break;
	case CM_FS_READLINK: run_readlink(j); break;
	case CM_FS_GETXATTR:
	case CM_FS_LISTXATTR: cm_fs__run_xattr(j); break;
	case CM_FS_FLOCK:
	case CM_FS_GETLK:
	case CM_FS_SETLK:
	case CM_FS_LOCK_INTR:
	case CM_FS_LOCK_GETXATTR:
	case CM_FS_LOCK_SETXATTR: cm_fs__run_lock(j); break;
	}
}
