/* dir.c: confman-fs's directories: opendir takes one LIST (names and
 * attributes, the server's one range scan), readdir and readdirplus serve
 * it, readdirplus with each entry's attributes so that `ls -l` and `find`
 * cost no LOOKUP per entry (fs/README.md, "Listings"). Loop thread. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

/* Is a listing of dir read from group at token at least as new as every
 * change of that directory's entries the watch delivered (so that the
 * kernel may keep what it says as it keeps a LOOKUP's answer)? Not while
 * any stream is silent. Events of other directories do not matter: the
 * replica that answered may lag the watch's own by a few indexes. */
static bool list_current(struct cm_fs *fs, const struct cm_fs_node *dir, uint64_t group,
			 uint64_t token)
{
	uint64_t last;
	if (!fs->live || group == 0 || !cm_ac_watch_covers(fs->ac, fs->watch_id, group, &last))
		return false;
	if (token >= last)
		return true;
	/* A last event of another group: its indexes say nothing here. */
	return dir->ev_group == 0 || (dir->ev_group == group && token >= dir->ev_index);
}

/* "dir/name" (dir "/" gives "/name"); NULL on ENOMEM. */
static char *join(const char *dir, const char *name, size_t nlen)
{
	size_t lp = strlen(dir);
	char *full = malloc(lp + nlen + 2);
	if (full != NULL)
		snprintf(full, lp + nlen + 2, "%s/%.*s", lp == 1 ? "" : dir, (int)nlen, name);
	return full;
}

/* One entry of the LIST into e. A subdirectory that is another shard's top
 * shows here with the attributes its parent group keeps, not the ones a
 * LOOKUP (answered by its own group) gives: readdirplus leaves it to LOOKUP. */
static int dent_fill(struct cm_fs *fs, struct cm_fs_dent *e, const char *dir,
		     const struct cm_dirent *d, uint64_t group)
{
	e->name = strndup(d->name.p, d->name.len);
	char *full = join(dir, d->name.p, d->name.len);
	if (e->name == NULL || full == NULL) {
		free(e->name);
		free(full);
		return -ENOMEM;
	}
	e->ino = cm_fs_itable_hash_ino(full);
	e->attr = d->attr;
	e->plus = !S_ISDIR(d->attr.mode) ||
		  cm_ac_group_of(fs->ac, full, (uint32_t)strlen(full)) == group;
	free(full);
	return 0;
}

static void opendir_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	struct cm_fs *fs = j->fs;
	if (err == -ENOENT && j->ino == FUSE_ROOT_ID)
		err = 0; /* a prefix not created yet: empty */
	if (err != 0) {
		cm_fs__done_err(j, err);
		return;
	}
	struct cm_fs_fh *h = cm_fs__fh_new(fs, j->ino, true);
	uint32_t n = resp ? resp->n_ents : 0;
	if (h == NULL || (n && !(h->ents = calloc(n, sizeof(*h->ents))))) {
		if (h)
			cm_fs__fh_free(fs, h);
		cm_fs__done_err(j, -ENOMEM);
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (dent_fill(fs, &h->ents[h->n_ents], j->path, &resp->ents[i], resp->group) != 0) {
			cm_fs__fh_free(fs, h);
			cm_fs__done_err(j, -ENOMEM);
			return;
		}
		h->n_ents++;
	}
	struct cm_fs_node *d = cm_fs_itable_find(&fs->it, j->ino);
	h->plus = n > 0 && d != NULL && list_current(fs, d, resp->group, resp->token);
	h->list_chg = j->chg;
	j->fi.fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_open(j->req, &j->fi) != 0)
		cm_fs__fh_free(fs, h);
	cm_fs__job_free(j);
}

void cm_fs__run_opendir(struct cm_fs_job *j)
{
	int rc = cm_fs__node_path(j, NULL);
	if (rc != 0) {
		cm_fs__done_err(j, rc);
		return;
	}
	j->chg = j->fs->it.chg; /* a change from now on may not be in the answer */
	struct cm_req r = {.op = CM_OP_LIST};
	cm_fs__submit(j, &r, opendir_cb);
}

static const char *dent_name(const struct cm_fs_fh *h, uint64_t i)
{
	return i == 0 ? "." : i == 1 ? ".." : h->ents[i - 2].name;
}

void cm_fs__run_readdir(struct cm_fs_job *j)
{
	struct cm_fs_fh *h = cm_fs__job_fh(j);
	char *buf = malloc(j->size ? j->size : 1);
	if (buf == NULL) {
		cm_fs__done_err(j, -ENOMEM);
		return;
	}
	size_t pos = 0;
	for (uint64_t i = (uint64_t)j->off; i < (uint64_t)h->n_ents + 2; i++) {
		struct stat st = {0};
		st.st_ino = i < 2 ? (i == 0 ? h->ino : FUSE_ROOT_ID) : h->ents[i - 2].ino;
		st.st_mode = i < 2 ? S_IFDIR : h->ents[i - 2].attr.mode;
		size_t len = fuse_add_direntry(j->req, buf + pos, j->size - pos, dent_name(h, i),
					       &st, (off_t)(i + 1));
		if (len > j->size - pos)
			break;
		pos += len;
	}
	fuse_reply_buf(j->req, buf, pos);
	free(buf);
	cm_fs__job_free(j);
}

/*
 * The entry for e with its attributes, one more kernel reference (the
 * kernel counts a lookup for every readdirplus entry but "." and "..", and
 * FORGETs it like a LOOKUP's): 0 and *ino set, or nonzero when e goes as a
 * bare name (the kernel then LOOKUPs it if asked): something newer than the
 * listing is known of that path, a write of it is open, or the table is full.
 */
static int dent_plus(struct cm_fs_job *j, const char *dir, const struct cm_fs_dent *e,
		     struct fuse_entry_param *ep)
{
	struct cm_fs *fs = j->fs;
	char *full = join(dir, e->name, strlen(e->name));
	if (full == NULL)
		return -ENOMEM;
	struct cm_fs_node *n = cm_fs_itable_lookup(&fs->it, full);
	if (n != NULL && (n->wsize >= 0 ||
			  (n->has_attr && (n->attr.create_index != e->attr.create_index ||
					   n->attr.mod_index > e->attr.mod_index)))) {
		free(full);
		return -EAGAIN;
	}
	int rc = cm_fs_itable_ref(&fs->it, full, &n);
	free(full);
	if (rc != 0)
		return rc;
	n->attr = e->attr;
	n->has_attr = true;
	ep->ino = n->ino;
	ep->attr_timeout = cm_fs__ttl(j, fs->o.attr_timeout);
	ep->entry_timeout = cm_fs__ttl(j, fs->o.entry_timeout);
	cm_fs__fill_stat(&ep->attr, n->ino, &e->attr, -1);
	return 0;
}

/* The kernel never got the entries of a reply that failed: their references. */
static void unref_all(struct cm_fs *fs, const uint64_t *inos, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++)
		cm_fs_itable_forget(&fs->it, inos[k], 1);
}

void cm_fs__run_readdirplus(struct cm_fs_job *j)
{
	struct cm_fs *fs = j->fs;
	struct cm_fs_fh *h = cm_fs__job_fh(j);
	struct cm_fs_node *d = cm_fs_itable_find(&fs->it, h->ino);
	/* Attributes only from a listing nothing in the directory has changed
	 * since (events, own writes, a cleared cache), while the watch is live:
	 * the kernel keeps them for attr_timeout as a LOOKUP's answer. */
	bool plus = h->plus && d != NULL && fs->live && !j->replay &&
		    !cm_fs_itable_changed_since(&fs->it, h->ino, h->list_chg);
	size_t cap = j->size ? j->size : 1;
	char *buf = malloc(cap);
	/* Each entry takes more than 128 bytes: a bound on the references. */
	uint64_t *refs = calloc(cap / 128 + 1, sizeof(*refs));
	if (buf == NULL || refs == NULL) {
		free(buf);
		free(refs);
		cm_fs__done_err(j, -ENOMEM);
		return;
	}
	size_t pos = 0;
	uint32_t n_refs = 0;
	for (uint64_t i = (uint64_t)j->off; i < (uint64_t)h->n_ents + 2; i++) {
		const char *name = dent_name(h, i);
		if (fuse_add_direntry_plus(j->req, NULL, 0, name, NULL, 0) > j->size - pos)
			break; /* before any reference is taken */
		struct fuse_entry_param ep = {0};
		const struct cm_fs_dent *e = i < 2 ? NULL : &h->ents[i - 2];
		if (e == NULL || !plus || !e->plus || dent_plus(j, d->path, e, &ep) != 0) {
			memset(&ep, 0, sizeof(ep)); /* ino 0: a name only */
			ep.attr.st_ino = e ? e->ino : i == 0 ? h->ino : FUSE_ROOT_ID;
			ep.attr.st_mode = e ? e->attr.mode : S_IFDIR;
		} else {
			assert(n_refs < cap / 128 + 1);
			refs[n_refs++] = ep.ino;
		}
		pos += fuse_add_direntry_plus(j->req, buf + pos, j->size - pos, name, &ep,
					      (off_t)(i + 1));
	}
	if (fuse_reply_buf(j->req, buf, pos) != 0)
		unref_all(fs, refs, n_refs);
	free(buf);
	free(refs);
	cm_fs__job_free(j);
}
