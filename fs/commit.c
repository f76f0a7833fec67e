/* commit.c: what flush, fsync and release send for an open file (loop thread).
 *
 * A handle is committed with one PUT, addressed to the file it opened, not
 * only to a path: the PUT carries the create_index of that incarnation
 * (CM_PUT_IF_CREATED) and never creates parents (CM_NO_PARENTS). When the
 * file was moved elsewhere meanwhile (its directory renamed by another
 * mount), the server refuses, and the PUT is sent again once this mount's
 * watch has moved the inode to its new path; when the file was removed, its
 * data goes with it, as on any POSIX filesystem. A handle opened O_APPEND
 * that only appended sends only what it appended (CM_PUT_APPEND): the
 * server appends it to whatever the file holds then, so appenders on any
 * mount never overwrite each other's lines.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "job.h"

/* How often a PUT refused because its file moved looks for the new path. */
#define COMMIT_RETRY_MS 10

struct commit_retry {
	uv_timer_t timer;
	struct cm_fs_job *j;
	uint64_t deadline; /* uv_now() past which the commit fails (-EIO) */
};

static void commit_put(struct cm_fs_job *j, struct cm_fs_fh *h, struct cm_fs_node *n);

/* Wait for the handle's PUT in flight; jobs keep the kernel's order. */
static void commit_wait(struct cm_fs_fh *h, struct cm_fs_job *j)
{
	cm_fs__trace(j, "waits for the handle's PUT in flight");
	j->next = NULL;
	if (h->waiters == NULL)
		h->waiters_tail = &h->waiters;
	*h->waiters_tail = j;
	h->waiters_tail = &j->next;
}

/* The handle's PUT ended: what waited runs again, in order (the first may
 * PUT what was written meanwhile, and the rest wait for that one). A flush
 * or fsync whose data that PUT carried learns its error; a release (always
 * the last) frees the handle once nothing is in flight. */
static void commit_ended(struct cm_fs_fh *h, int err)
{
	struct cm_fs_job *w = h->waiters;
	h->waiters = NULL;
	while (w != NULL) {
		struct cm_fs_job *next = w->next;
		w->next = NULL;
		if (w->op == CM_FS_RELEASE) {
			assert(next == NULL); /* the kernel sends nothing after it */
			cm_fs__run_commit(w); /* may free h */
			return;
		}
		if (err != 0 && !h->dirty && !h->committing)
			cm_fs__done_err(w, err);
		else
			cm_fs__run_commit(w);
		w = next;
	}
}

/* The PUT of j is over (err): answer j, wake what waited. */
static void commit_finish(struct cm_fs_job *j, int err)
{
	struct cm_fs_fh *h = cm_fs__job_fh(j);
	struct cm_fs *fs = j->fs;
	assert(h->committing);
	h->committing = false;
	if (j->op == CM_FS_RELEASE) {
		assert(h->waiters == NULL); /* nothing follows a release */
		cm_fs__done_err(j, 0); /* close(2) saw flush's result already */
		cm_fs__fh_free(fs, h);
		return;
	}
	cm_fs__done_err(j, err);
	commit_ended(h, err);
}

static void retry_closed(uv_handle_t *t)
{
	free(t->data);
}

/* Look again for the file a refused PUT meant: removed (its data goes with
 * it), moved (send the PUT to where it is now), or not yet known (wait for
 * the watch, up to the mount's timeout). */
static void retry_tick(uv_timer_t *t)
{
	struct commit_retry *r = t->data;
	struct cm_fs_job *j = r->j;
	struct cm_fs_fh *h = cm_fs__job_fh(j);
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	bool gone = n == NULL || !n->linked;
	bool moved = !gone && strcmp(n->path, j->path) != 0;
	bool late = uv_now(t->loop) >= r->deadline;
	if (!gone && !moved && !late)
		return; /* the timer repeats */
	uv_timer_stop(t);
	uv_close((uv_handle_t *)t, retry_closed);
	cm_fs__trace(j, "refused put: file %s", gone ? "removed" : moved ? "moved" : "not found");
	if (moved) {
		free(j->path);
		j->path = NULL;
		commit_put(j, h, n);
		return;
	}
	if (!gone)
		fprintf(stderr, "confman-fs: ino %llu: %s is no longer the file opened, and the "
				"watch says nothing of where it went: the close fails (EIO)\n",
			(unsigned long long)j->ino, j->path);
	commit_finish(j, gone ? 0 : -EIO);
}

/* A PUT refused because the path no longer names the opened file. */
static bool retry_start(struct cm_fs_job *j)
{
	struct commit_retry *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return false;
	uv_loop_t *loop = &j->fs->loop;
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	r->j = j;
	r->deadline = uv_now(loop) + j->fs->o.timeout_ms;
	uv_timer_start(&r->timer, retry_tick, 0, COMMIT_RETRY_MS);
	return true;
}

/* The incarnation's number where the file is now (relearn), then the PUT. */
static void relearn_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	struct cm_fs_fh *h = cm_fs__job_fh(j);
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	bool file = err == 0 && resp->has_attr && S_ISREG(resp->attr.mode);
	cm_fs__trace(j, "relearned err %d group %llu create_index %llu", err,
		     resp ? (unsigned long long)resp->group : 0ull,
		     file ? (unsigned long long)resp->attr.create_index : 0ull);
	if (!file || n == NULL || !n->linked || strcmp(n->path, j->path) != 0) {
		/* gone or moved meanwhile: what a refusal in place does */
		if (retry_start(j))
			return;
		commit_finish(j, -EIO);
		return;
	}
	h->born = resp->attr.create_index;
	h->bgroup = resp->group;
	free(j->path);
	j->path = NULL;
	commit_put(j, h, n);
}

/* Refused by another group than the one whose index `born` is: the file's
 * shard was merged into its parent, which renumbered it (a merge's copies
 * get the parent's indexes, README "Merging back"). The same path in the
 * group that serves it now is the file this handle opened, unless it was
 * replaced after the merge (fs/README.md, "Splits and merges under a
 * mount"). A split keeps the indexes: its refusals are real. */
static bool relearn_start(struct cm_fs_job *j, struct cm_fs_fh *h, const struct cm_resp *resp)
{
	if (resp == NULL || resp->group == 0 || h->bgroup == 0 || resp->group == h->bgroup)
		return false;
	cm_fs__trace(j, "put refused by group %llu, opened in group %llu: relearn",
		     (unsigned long long)resp->group, (unsigned long long)h->bgroup);
	h->bgroup = resp->group; /* once: a second refusal there is a real one */
	struct cm_req r = {.op = CM_OP_GET, .consistency = CM_READ_LINEARIZABLE,
			   .path = {j->path, (uint32_t)strlen(j->path)}};
	return cm_fs__submit_raw(j, &r, relearn_cb) == 0;
}

static void commit_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	cm_fs__trace(j, "put answered err %d mod_index %llu token %llu", err,
		     resp && resp->has_attr ? (unsigned long long)resp->attr.mod_index : 0ull,
		     resp ? (unsigned long long)resp->token : 0ull);
	struct cm_fs_fh *h = cm_fs__job_fh(j);
	if ((err == -ENOENT || err == -ESTALE) && relearn_start(j, h, resp))
		return;
	if ((err == -ENOENT || err == -ESTALE) && retry_start(j))
		return;
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	if (err == 0 && n != NULL && resp->has_attr) {
		n->attr = resp->attr;
		n->has_attr = true;
		if (resp->attr.mod_index > n->own_mod) {
			n->own_mod = resp->attr.mod_index;
			n->own_token = resp->token;
		}
	}
	if (err == 0) {
		h->sent_len = j->data_len; /* what the server now has of this handle's appends */
		if (h->born != 0 && resp != NULL && resp->group != 0)
			h->bgroup = resp->group; /* the incarnation the PUT matched is its */
	}
	commit_finish(j, err);
}

/* The request that commits h: its appends alone, or the whole buffer; to
 * the incarnation it opened (when known), never creating a parent. */
static struct cm_req commit_req(struct cm_fs_job *j, const struct cm_fs_fh *h)
{
	struct cm_req r = {.op = CM_OP_PUT, .flags = CM_NO_PARENTS,
			   .value = {h->buf, (uint32_t)h->len},
			   .path = {j->path, (uint32_t)strlen(j->path)}};
	if (h->born != 0) {
		r.flags |= CM_PUT_IF_CREATED;
		r.version = h->born;
	}
	if (h->times) { /* set after the last write: they stay (fs/exec.c) */
		r.flags |= CM_SET_TIMES;
		r.atime_ns = h->atime_ns;
		r.mtime_ns = h->mtime_ns;
	}
	if (h->append && !h->rewrite) {
		assert(h->sent_len <= h->len);
		r.flags |= CM_PUT_APPEND;
		r.value = (struct cm_bytes){h->buf + h->sent_len, (uint32_t)(h->len - h->sent_len)};
	}
	return r;
}

/* The PUT of h for job j, to node n's path now. */
static void commit_put(struct cm_fs_job *j, struct cm_fs_fh *h, struct cm_fs_node *n)
{
	/* One attempt per close: a failed PUT (EFBIG...) is reported by this
	 * flush and not repeated by release. */
	h->dirty = false;
	h->unsent = 0;
	j->ino = h->ino;
	j->data_len = h->len; /* sent_len once answered */
	j->path = strdup(n->path);
	int rc = j->path == NULL ? -ENOMEM : 0;
	if (rc == 0) {
		struct cm_req r = commit_req(j, h);
		h->committing = true;
		rc = cm_fs__submit_raw(j, &r, commit_cb);
	}
	if (rc == 0)
		return;
	h->committing = false;
	bool release = j->op == CM_FS_RELEASE;
	struct cm_fs *fs = j->fs;
	cm_fs__done_err(j, rc); /* frees j */
	if (release)
		cm_fs__fh_free(fs, h);
}

/* A FLUSH of a handle dirty only by O_TRUNC: commit the truncation now,
 * unless the closing process holds another writable descriptor of the
 * file (the shell's `echo x > f`: open, dup2, close, write, close), whose
 * close will commit truncation and content together (fs/fdscan.c). */
static bool trunc_deferred(struct cm_fs_job *j, const struct cm_fs_fh *h)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(j->req);
	return cm_fs_fdscan_other_writer(j->fs->mnt_id, ctx ? ctx->pid : 0, h->ino);
}

/* flush, fsync, release: one PUT if the handle changed. */
void cm_fs__run_commit(struct cm_fs_job *j)
{
	struct cm_fs_fh *h = cm_fs__job_fh(j);
	if (h->committing) {
		commit_wait(h, j);
		return;
	}
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, h->ino);
	bool put = h->dirty && n != NULL && n->linked; /* unlinked: data goes nowhere */
	cm_fs__trace(j, "commit? dirty %d trunc_only %d unsent %u len %zu node %s", h->dirty,
		     h->trunc_only, h->unsent, h->len,
		     n == NULL ? "gone" : n->linked ? "linked" : "unlinked");
	if (put && h->trunc_only && j->op == CM_FS_FLUSH && trunc_deferred(j, h)) {
		cm_fs__trace(j, "truncation left to the other descriptor's close");
		cm_fs__done_err(j, 0);
		return;
	}
	if (n != NULL)
		n->wsize = -1;
	if (h->unsent > 0 && !put && !j->replay)
		/* Rare and suspect (RELIABILITY.md, anomaly 2): say so. */
		fprintf(stderr, "confman-fs: ino %llu: %s after %u write(s) commits nothing: "
				"dirty %d, the inode is %s\n", (unsigned long long)h->ino,
			j->op == CM_FS_FLUSH ? "flush" : "fsync/release", h->unsent, h->dirty,
			n == NULL ? "forgotten" : n->linked ? "linked" : "unlinked");
	if (put) {
		commit_put(j, h, n);
		return;
	}
	bool release = j->op == CM_FS_RELEASE;
	struct cm_fs *fs = j->fs;
	cm_fs__done_err(j, 0); /* frees j */
	if (release)
		cm_fs__fh_free(fs, h);
}
