/* file.c: confman-fs's open files: a per-open buffer read at open (from the
 * server, or from the value cache for a read-only open, which then uses the
 * kernel's page cache) and committed with one PUT on flush/fsync/release
 * (loop thread). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

/* ---- handles ---- */

struct cm_fs_fh *cm_fs__fh_new(struct cm_fs *fs, uint64_t ino, bool dir)
{
	struct cm_fs_fh *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->ino = ino;
	h->dir = dir;
	h->next = fs->handles;
	if (fs->handles)
		fs->handles->prev = h;
	fs->handles = h;
	return h;
}

void cm_fs__fh_free(struct cm_fs *fs, struct cm_fs_fh *h)
{
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	for (uint32_t i = 0; i < h->n_ents; i++)
		free(h->ents[i].name);
	free(h->ents);
	free(h->buf);
	free(h);
}

void cm_fs_handles_free(struct cm_fs *fs)
{
	while (fs->handles)
		cm_fs__fh_free(fs, fs->handles);
}

static int fh_reserve(struct cm_fs_fh *h, size_t need)
{
	if (need > CM_FS_BUF_MAX)
		return -EFBIG;
	if (need <= h->cap)
		return 0;
	size_t cap = h->cap ? h->cap : 4096;
	while (cap < need)
		cap *= 2;
	char *b = realloc(h->buf, cap);
	if (b == NULL)
		return -ENOMEM;
	h->buf = b;
	h->cap = cap;
	return 0;
}

/* Set the handle's content length, zero-filling growth. */
int cm_fs__fh_resize(struct cm_fs_fh *h, size_t len)
{
	int rc = fh_reserve(h, len);
	if (rc != 0)
		return rc;
	if (len > h->len)
		memset(h->buf + h->len, 0, len - h->len);
	h->len = len;
	return 0;
}

struct cm_fs_fh *cm_fs__job_fh(struct cm_fs_job *j)
{
	assert(j->has_fi);
	return (struct cm_fs_fh *)(uintptr_t)j->fi.fh;
}

/* ---- files ---- */

/* Reply to open/create with handle h; on a failed reply free it. */
void cm_fs__reply_opened(struct cm_fs_job *j, struct cm_fs_fh *h, const struct cm_attr *attr)
{
	h->lk_owner = cm_fs__lock_owner_new(j->fs);
	j->fi.fh = (uint64_t)(uintptr_t)h;
	/* Reads go to the per-open buffer, never to pages: the kernel bounds
	 * page reads by the i_size of the attributes it accepted last, which
	 * may belong to another version than the pages (its attribute replies
	 * race with our invalidations), and a reader then sees a cut or mixed
	 * value. What open took is what read returns, whole. */
	j->fi.direct_io = 1;
	/* Nothing to commit on a read-only handle: close need not wait for us. */
	j->fi.noflush = (j->fi.flags & O_ACCMODE) == O_RDONLY && !h->dir;
	int rc;
	if (attr != NULL) {
		struct cm_fs_node *n;
		rc = cm_fs_itable_ref(&j->fs->it, j->path, &n);
		if (rc != 0) {
			cm_fs__fh_free(j->fs, h);
			cm_fs__done_err(j, rc);
			return;
		}
		n->attr = *attr;
		n->has_attr = true;
		h->ino = n->ino;
		struct fuse_entry_param e = {
			.ino = n->ino,
			.attr_timeout = cm_fs__ttl(j, j->fs->o.attr_timeout),
			.entry_timeout = cm_fs__ttl(j, j->fs->o.entry_timeout),
		};
		cm_fs__fill_stat(&e.attr, n->ino, attr, -1);
		rc = fuse_reply_create(j->req, &e, &j->fi);
		if (rc != 0)
			cm_fs_itable_forget(&j->fs->it, n->ino, 1);
	} else {
		rc = fuse_reply_open(j->req, &j->fi);
	}
	if (rc != 0)
		cm_fs__fh_free(j->fs, h);
	cm_fs__job_free(j);
}

/* A handle over value (or empty and dirty with O_TRUNC). */
struct cm_fs_fh *cm_fs__open_handle(struct cm_fs_job *j, const struct cm_bytes *value, int *err)
{
	struct cm_fs_fh *h = cm_fs__fh_new(j->fs, j->ino, false);
	if (h == NULL) {
		*err = -ENOMEM;
		return NULL;
	}
	h->append = (j->fi.flags & O_APPEND) != 0;
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	if (n != NULL && n->has_attr)
		h->born = n->attr.create_index; /* open_cb: from the GET's answer */
	if (j->fi.flags & O_TRUNC && (j->fi.flags & O_ACCMODE) != O_RDONLY) {
		h->dirty = true; /* the empty file is committed on close */
		h->trunc_only = true;
		h->rewrite = true;
		return h;
	}
	if (value && value->len) {
		*err = cm_fs__fh_resize(h, value->len);
		if (*err != 0) {
			cm_fs__fh_free(j->fs, h);
			return NULL;
		}
		memcpy(h->buf, value->p, value->len);
	}
	h->sent_len = h->len;
	return h;
}

/* ---- the value cache (see fs/README.md, "Value cache and page cache") ---- */

/* May a read-only open of n be answered from (or fill) the value cache? */
static bool cache_allowed(struct cm_fs_job *j)
{
	struct cm_fs *fs = j->fs;
	return fs->live && strcmp(fs->o.consistency, "linearizable") != 0 &&
	       (j->fi.flags & O_ACCMODE) == O_RDONLY && !(j->fi.flags & O_TRUNC);
}

/* Is a copy read from group at token current, and kept so by the watch?
 * Only while that group's stream is live (heard from within the silence
 * bound), and only if the answer is at least as new as every event of that
 * group seen (a lagging follower's older value is not kept: no event would
 * ever drop it). Indexes of one group only: each group counts its own. */
static bool cache_current(struct cm_fs *fs, uint64_t group, uint64_t token)
{
	uint64_t last;
	return fs->live && cm_ac_watch_covers(fs->ac, fs->watch_id, group, &last) && token >= last;
}

/* May a copy read from group be served now? While its stream is live. */
static bool cache_live(struct cm_fs *fs, uint64_t group)
{
	uint64_t last;
	return fs->live && cm_ac_watch_covers(fs->ac, fs->watch_id, group, &last);
}

static void open_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (cm_fs__redo_if_older(j, err, resp, open_cb))
		return;
	if (err != 0) {
		cm_fs__done_err(j, err);
		return;
	}
	if (resp->has_attr && S_ISDIR(resp->attr.mode)) {
		cm_fs__done_err(j, -EISDIR);
		return;
	}
	struct cm_fs_fh *h = cm_fs__open_handle(j, &resp->value, &err);
	if (h == NULL) {
		cm_fs__done_err(j, err);
		return;
	}
	if (resp->has_attr) {
		h->born = resp->attr.create_index;
		h->bgroup = resp->group;
	}
	struct cm_fs *fs = j->fs;
	struct cm_fs_node *n = cm_fs_itable_find(&fs->it, h->ino);
	/* Keep the value if nothing touched the path since the GET was sent,
	 * the watch stayed live, and its group's stream vouches for it. */
	if (j->cache_ok && n != NULL && n->linked && n->cgen == j->cache_gen &&
	    fs->it.cepoch == j->cache_epoch &&
	    cache_allowed(j) && resp->has_attr && S_ISREG(resp->attr.mode) &&
	    cache_current(fs, resp->group, resp->token) && resp->value.len == resp->attr.size &&
	    cm_fs_cache_put(&fs->it, n, resp->value.p, resp->value.len, &resp->attr))
		n->cgroup = resp->group;
	cm_fs__reply_opened(j, h, NULL);
}

/* GETATTR of a file whose value is cached: its attributes came with it and
 * stay current just as long (every read through a handle makes the kernel
 * drop its atime, so a cat's fstat would otherwise cost a round trip). */
bool cm_fs__cache_attr(struct cm_fs_job *j, struct cm_fs_node *n)
{
	struct cm_fs *fs = j->fs;
	if (j->replay || strcmp(fs->o.consistency, "linearizable") == 0 ||
	    !n->cached || !n->linked || n->wsize >= 0 || !cache_live(fs, n->cgroup))
		return false;
	n->attr = n->cattr;
	n->has_attr = true;
	cm_fs_cache_touch(&fs->it, n);
	return true;
}

static void open_killed(struct cm_fs_job *j, int err)
{
	if (err != 0) {
		cm_fs__done_err(j, err);
		return;
	}
	j->killed = true;
	free(j->path);
	j->path = NULL;
	cm_fs__run_open(j);
}

void cm_fs__run_open(struct cm_fs_job *j)
{
	int rc = cm_fs__node_path(j, NULL);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	if (n != NULL && (j->fi.flags & O_ACCMODE) != O_RDONLY && !j->replay)
		cm_fs_cache_drop(&j->fs->it, n); /* a writer: the copy is refetched */
	if (j->fi.flags & O_TRUNC && (j->fi.flags & O_ACCMODE) != O_RDONLY) {
		/* The truncation is ours (atomic O_TRUNC): so is clearing
		 * setuid/setgid, before the open returns (perm.c). */
		if (!j->killed && cm_fs__kill_suid(j, n, open_killed))
			return;
		struct cm_fs_fh *h = cm_fs__open_handle(j, NULL, &rc);
		if (h == NULL)
			cm_fs__done_err(j, rc);
		else
			cm_fs__reply_opened(j, h, NULL);
		return;
	}
	if (n != NULL && !j->replay && cache_allowed(j)) {
		if (n->cached && n->linked && n->wsize < 0 && cache_live(j->fs, n->cgroup)) {
			/* A valid copy: no request to the server. */
			struct cm_fs_fh *h = cm_fs__fh_new(j->fs, j->ino, false);
			if (h != NULL && (rc = cm_fs__fh_resize(h, n->clen)) != 0) {
				cm_fs__fh_free(j->fs, h);
				h = NULL;
			}
			if (h == NULL) {
				cm_fs__done_err(j, rc ? rc : -ENOMEM);
				return;
			}
			if (n->clen)
				memcpy(h->buf, n->cval, n->clen);
			cm_fs_cache_touch(&j->fs->it, n);
			cm_fs__reply_opened(j, h, NULL);
			return;
		}
		j->cache_ok = true;
		j->cache_gen = n->cgen;
		j->cache_epoch = j->fs->it.cepoch;
	}
	cm_fs__submit_get(j, open_cb);
}

static void serve(struct cm_fs_job *j, const char *buf, size_t len)
{
	size_t off = j->off < 0 ? 0 : (size_t)j->off;
	if (off >= len) {
		fuse_reply_buf(j->req, NULL, 0);
	} else {
		size_t n = len - off < j->size ? len - off : j->size;
		fuse_reply_buf(j->req, buf + off, n);
	}
	cm_fs__job_free(j);
}

void cm_fs__run_read(struct cm_fs_job *j)
{
	struct cm_fs_fh *h = cm_fs__job_fh(j);
	serve(j, h->buf, h->len);
}

static void write_killed(struct cm_fs_job *j, int err)
{
	if (err != 0) {
		cm_fs__done_err(j, err);
		return;
	}
	j->killed = true;
	cm_fs__run_write(j);
}

void cm_fs__run_write(struct cm_fs_job *j)
{
	struct cm_fs_fh *h = cm_fs__job_fh(j);
	/* Another user's write clears setuid/setgid first (perm.c). */
	if (!j->killed && cm_fs__kill_suid(j, cm_fs_itable_find(&j->fs->it, h->ino), write_killed))
		return;
	size_t off = h->append ? h->len : (size_t)j->off;
	if (j->off < 0 || off > CM_FS_BUF_MAX || j->data_len > CM_FS_BUF_MAX - off) {
		cm_fs__done_err(j, -EFBIG);
		return;
	}
	size_t end = off + j->data_len;
	int rc = cm_fs__fh_resize(h, end > h->len ? end : h->len);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	memcpy(h->buf + off, j->data, j->data_len);
	if (!h->append)
		h->rewrite = true; /* a write in place: the whole buffer is the value */
	cm_fs__trace(j, "write %zu bytes at %zu: %.*s", j->data_len, off,
		     (int)(j->data_len < 32 ? j->data_len : 32), j->data);
	h->dirty = true;
	h->trunc_only = false;
	h->times = false; /* this write moves mtime at commit */
	h->unsent++;
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, h->ino);
	if (n != NULL)
		n->wsize = (int64_t)h->len;
	fuse_reply_write(j->req, j->data_len);
	cm_fs__job_free(j);
}

/* create: an empty file now (so it exists for other processes, O_EXCL holds),
 * its content on close. */
static void create_get_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (err != 0 || !resp->has_attr) {
		cm_fs__done_err(j, err ? err : -EIO);
		return;
	}
	if (S_ISDIR(resp->attr.mode)) {
		cm_fs__done_err(j, -EISDIR);
		return;
	}
	struct cm_fs_fh *h = cm_fs__open_handle(j, &resp->value, &err);
	if (h == NULL) {
		cm_fs__done_err(j, err);
		return;
	}
	h->born = resp->attr.create_index;
	h->bgroup = resp->group;
	cm_fs__repath_child(j);
	cm_fs__reply_opened(j, h, &resp->attr);
}

static void create_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (err == -EEXIST && !(j->fi.flags & O_EXCL)) {
		cm_fs__submit_get(j, create_get_cb); /* created elsewhere meanwhile: open it */
		return;
	}
	if (err != 0 || !resp->has_attr) {
		cm_fs__done_err(j, err ? err : -EIO);
		return;
	}
	struct cm_fs_fh *h = cm_fs__open_handle(j, NULL, &err);
	if (h == NULL) {
		cm_fs__done_err(j, err);
		return;
	}
	h->dirty = false; /* committed empty already */
	h->born = resp->attr.create_index;
	h->bgroup = resp->group;
	h->sent_len = 0;
	cm_fs__repath_child(j);
	cm_fs__reply_opened(j, h, &resp->attr);
}

/* The PUT that creates j->name in directory j->ino as an empty regular file,
 * answered to cb (create and mknod differ only in their replies). */
static void create_submit(struct cm_fs_job *j, cm_ac_cb cb)
{
	int rc = cm_fs__child_path(j, j->ino, j->name, &j->path);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	cm_fs__inherit_group(j, j->ino, false);
	struct cm_req r = {.op = CM_OP_PUT,
			   .flags = CM_PUT_CREATE | CM_SET_MODE | cm_fs__no_parents(j, j->ino),
			   .mode = S_IFREG | j->mode, .uid = j->uid, .gid = j->gid};
	cm_fs__submit(j, &r, cb);
}

void cm_fs__run_create(struct cm_fs_job *j)
{
	create_submit(j, create_cb);
}

static void mknod_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	if (err != 0 || !resp->has_attr) {
		cm_fs__done_err(j, err ? err : -EIO);
		return;
	}
	cm_fs__repath_child(j); /* as for create: the directory may have moved */
	cm_fs__reply_entry(j, &resp->attr);
}

void cm_fs__run_mknod(struct cm_fs_job *j)
{
	create_submit(j, mknod_cb);
}
