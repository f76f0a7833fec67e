/* resync.c: what a watch RESYNC skipped, told to inotify watchers (loop thread).
 *
 * A RESYNC means the server no longer has the events since the stream's
 * resume index (compacted away while the stream was lost or silent). The
 * caches are invalidated at once (notify.c), and the kernel then forgets
 * most inodes; so, before each invalidation, the mount keeps a snapshot of
 * what it knew (path and attributes of every inode the kernel held). After
 * a RESYNC, every directory of that snapshot is listed again and compared:
 *  - a child the snapshot does not have, created after the last event this
 *    mount saw of its group: a create (IN_CREATE);
 *  - a child with a newer mod_index than the snapshot's: a change
 *    (IN_MODIFY, or IN_ATTRIB for a chmod/chown/touch);
 *  - a child of the snapshot missing from the listing: a delete.
 * A rename shows as a delete and a create. Each difference goes through the
 * event path as a synthetic event, so it is replayed like a live one. What
 * a live event brought since (the stream goes on) is not replayed again: an
 * inode the table holds with a newer mod_index, or created after the
 * listing, is left alone.
 * Bounds: CM_FS_RESYNC_NODES inodes in a snapshot, CM_FS_RESYNC_DIRS
 * directories listed, CM_FS_RESYNC_WINDOW listings in flight. A snapshot
 * is kept until a resync uses it, or the streams have been live again for
 * CM_FS_RESYNC_KEEP_MS (a RESYNC comes right after the stream is back).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs.h"

struct resync_list {
	struct cm_fs *fs;
	uint64_t gen; /* the resync it belongs to (fs->rs.gen when sent) */
	char *dir;    /* owned: the directory's server path */
};

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct cm_fs_known *)a)->path, ((const struct cm_fs_known *)b)->path);
}

static void known_free(struct cm_fs_resync *rs)
{
	rs->live_at = 0;
	for (uint32_t i = 0; i < rs->n_known; i++)
		free(rs->known[i].path);
	free(rs->known);
	rs->known = NULL;
	rs->n_known = 0;
}

void cm_fs_resync_snapshot(struct cm_fs *fs)
{
	struct cm_fs_resync *rs = &fs->rs;
	/* The first is the richest (the kernel forgets inodes after each
	 * invalidation), and the RESYNC that uses it may come just after the
	 * streams are live again: it is kept until CM_FS_RESYNC_KEEP_MS of
	 * liveness passed, or a resync used it. */
	bool expired = rs->live_at != 0 && uv_now(&fs->loop) - rs->live_at > CM_FS_RESYNC_KEEP_MS;
	if (rs->known != NULL && !expired)
		return;
	if (rs->n > 0)
		return; /* a resync runs on it */
	known_free(rs);
	uint32_t cap = fs->it.n < CM_FS_RESYNC_NODES ? fs->it.n : CM_FS_RESYNC_NODES;
	rs->known = calloc(cap ? cap : 1, sizeof(*rs->known));
	if (rs->known == NULL)
		return;
	for (uint32_t b = 0; b < CM_FS_HASH_BUCKETS && rs->n_known < cap; b++) {
		for (struct cm_fs_node *x = fs->it.by_ino[b]; x && rs->n_known < cap;
		     x = x->ino_next) {
			if (!x->linked || !x->has_attr)
				continue;
			struct cm_fs_known *k = &rs->known[rs->n_known];
			k->path = strdup(x->path);
			k->attr = x->attr;
			if (k->path != NULL)
				rs->n_known++;
		}
	}
	qsort(rs->known, rs->n_known, sizeof(*rs->known), by_path);
	rs->n_since = fs->n_seen;
	memcpy(rs->since, fs->seen, fs->n_seen * sizeof(fs->seen[0]));
}

static const struct cm_fs_known *known_find(const struct cm_fs_resync *rs, const char *path)
{
	struct cm_fs_known key = {.path = (char *)path};
	return bsearch(&key, rs->known, rs->n_known, sizeof(*rs->known), by_path);
}

/* The last index of group this mount had seen an event of when the
 * snapshot was taken (0 if none: every child unknown then counts as new). */
static uint64_t since_of(const struct cm_fs_resync *rs, uint64_t group)
{
	for (uint32_t i = 0; i < rs->n_since; i++)
		if (rs->since[i].group == group)
			return rs->since[i].index;
	return 0;
}

static void feed(struct cm_fs *fs, uint8_t kind, const char *path, const struct cm_attr *a,
		 uint64_t group, uint64_t index)
{
	struct cm_event ev = {
		.group = group,
		.index = index,
		.kind = kind,
		.path = {path, (uint32_t)strlen(path)},
		.has_attr = true,
		.attr = *a,
	};
	cm_fs__event(fs, &ev);
}

static char *child_path(const char *dir, const char *name, uint32_t len)
{
	size_t ld = strlen(dir);
	size_t k = ld == 1 ? 0 : ld;
	char *p = malloc(k + len + 2);
	if (p == NULL)
		return NULL;
	memcpy(p, dir, k);
	p[k] = '/';
	memcpy(p + k + 1, name, len);
	p[k + 1 + len] = 0;
	return p;
}

/* A live event already told this mount of that state or a newer one. */
static bool already(struct cm_fs *fs, const char *path, uint64_t mod_index)
{
	struct cm_fs_node *x = cm_fs_itable_lookup(&fs->it, path);
	return x != NULL && x->has_attr && x->attr.mod_index >= mod_index;
}

/* The listing's children against the snapshot: creates and changes. */
static void diff_children(struct cm_fs *fs, const char *dir, const struct cm_resp *r)
{
	const struct cm_fs_resync *rs = &fs->rs;
	uint64_t since = since_of(rs, r->group);
	for (uint32_t i = 0; i < r->n_ents; i++) {
		const struct cm_attr *a = &r->ents[i].attr;
		char *p = child_path(dir, r->ents[i].name.p, r->ents[i].name.len);
		if (p == NULL)
			return;
		const struct cm_fs_known *k = known_find(rs, p);
		if (!already(fs, p, a->mod_index)) {
			if (k == NULL && a->create_index > since)
				feed(fs, S_ISDIR(a->mode) ? CM_EV_MKDIR : CM_EV_PUT, p, a, r->group,
				     a->create_index);
			else if (k != NULL && a->mod_index > k->attr.mod_index && !S_ISDIR(a->mode))
				feed(fs, CM_EV_PUT, p, a, r->group, a->mod_index);
		}
		free(p);
	}
}

static bool listed(const struct cm_resp *r, const char *name)
{
	size_t len = strlen(name);
	for (uint32_t i = 0; i < r->n_ents; i++)
		if (r->ents[i].name.len == len && memcmp(r->ents[i].name.p, name, len) == 0)
			return true;
	return false;
}

/* Children of dir in the snapshot that the listing no longer has: deletes
 * (not one that a live event re-created after the listing was taken). The
 * snapshot is sorted by path: dir's subtree is one run of it. */
static void diff_gone(struct cm_fs *fs, const char *dir, const struct cm_resp *r)
{
	const struct cm_fs_resync *rs = &fs->rs;
	size_t ld = strlen(dir);
	size_t k = ld == 1 ? 0 : ld; /* children are dir[0..k) + '/' + name */
	for (uint32_t i = 0; i < rs->n_known; i++) {
		const struct cm_fs_known *e = &rs->known[i];
		if (strncmp(e->path, dir, k) != 0 || e->path[k] != '/' || e->path[k + 1] == 0)
			continue;
		const char *name = e->path + k + 1;
		if (strchr(name, '/') != NULL || listed(r, name))
			continue;
		struct cm_fs_node *x = cm_fs_itable_lookup(&fs->it, e->path);
		if (x != NULL && x->has_attr && x->attr.create_index > r->token)
			continue;
		feed(fs, CM_EV_DELETE, e->path, &e->attr, r->group, r->token);
	}
}

static void send_next(struct cm_fs *fs);

static void finish_if_done(struct cm_fs_resync *rs)
{
	if (rs->inflight == 0 && rs->next == rs->n) {
		for (uint32_t i = 0; i < rs->n; i++)
			free(rs->dirs[i]);
		rs->n = rs->next = 0;
		known_free(rs);
	}
}

static void list_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct resync_list *l = arg;
	struct cm_fs *fs = l->fs;
	struct cm_fs_resync *rs = &fs->rs;
	if (l->gen == rs->gen) {
		rs->inflight--;
		if (err == 0 && resp != NULL) {
			diff_children(fs, l->dir, resp);
			diff_gone(fs, l->dir, resp);
		}
		send_next(fs);
		finish_if_done(rs);
	}
	free(l->dir);
	free(l);
}

static void send_next(struct cm_fs *fs)
{
	struct cm_fs_resync *rs = &fs->rs;
	while (rs->inflight < CM_FS_RESYNC_WINDOW && rs->next < rs->n) {
		struct resync_list *l = calloc(1, sizeof(*l));
		if (l == NULL)
			return;
		l->fs = fs;
		l->gen = rs->gen;
		l->dir = rs->dirs[rs->next];
		rs->dirs[rs->next++] = NULL;
		struct cm_req r = {.op = CM_OP_LIST, .consistency = CM_READ_DEFAULT,
				   .path = {l->dir, (uint32_t)strlen(l->dir)}};
		if (cm_ac_submit(fs->ac, &r, list_cb, l) != 0) {
			free(l->dir);
			free(l);
			continue;
		}
		rs->inflight++;
	}
}

void cm_fs_resync_start(struct cm_fs *fs)
{
	struct cm_fs_resync *rs = &fs->rs;
	if (fs->ac == NULL || rs->known == NULL || rs->n > 0)
		return; /* nothing known, or a resync of this snapshot runs */
	rs->gen++;
	for (uint32_t i = 0; i < rs->n_known && rs->n < CM_FS_RESYNC_DIRS; i++)
		if (S_ISDIR(rs->known[i].attr.mode) &&
		    (rs->dirs[rs->n] = strdup(rs->known[i].path)) != NULL)
			rs->n++;
	if (rs->n == CM_FS_RESYNC_DIRS)
		fprintf(stderr, "confman-fs: resync: more than %u directories known; the rest "
				"only invalidated\n", CM_FS_RESYNC_DIRS);
	send_next(fs);
	finish_if_done(rs);
}

void cm_fs_resync_live(struct cm_fs *fs)
{
	/* Not freed now: the RESYNC may follow the LIVE. */
	if (fs->rs.known != NULL && fs->rs.live_at == 0)
		fs->rs.live_at = uv_now(&fs->loop); /* no RESYNC came: events resumed, nothing lost */
}

void cm_fs_resync_free(struct cm_fs *fs)
{
	struct cm_fs_resync *rs = &fs->rs;
	for (uint32_t i = 0; i < rs->n; i++)
		free(rs->dirs[i]);
	rs->n = rs->next = rs->inflight = 0;
	rs->gen++; /* listings still out are ignored when they return */
	known_free(rs);
}
