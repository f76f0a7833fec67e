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
 * A node gone from one listed directory and new in another (or the same)
 * with the same create_index was renamed: one RENAME, which moves the
 * mount's inodes, files open below a moved directory included (a delete
 * would unlink them, and their close would drop its data as if the file had
 * been removed). Creates and deletes are held until every listing is in,
 * to be paired. Each difference goes through the event path as a
 * synthetic event, so it is replayed like a live one. What
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

static bool already(struct cm_fs *fs, const char *path, uint64_t mod_index);

static void feed2(struct cm_fs *fs, uint8_t kind, const char *path, const char *path2,
		  const struct cm_attr *a, uint64_t group, uint64_t index)
{
	struct cm_event ev = {
		.group = group,
		.index = index,
		.kind = kind,
		.path = {path, (uint32_t)strlen(path)},
		.path2 = {path2 ? path2 : "", path2 ? (uint32_t)strlen(path2) : 0},
		.has_attr = true,
		.attr = *a,
	};
	cm_fs__event(fs, &ev);
}

static void feed(struct cm_fs *fs, uint8_t kind, const char *path, const struct cm_attr *a,
		 uint64_t group, uint64_t index)
{
	feed2(fs, kind, path, NULL, a, group, index);
}

/* A create or delete found by a listing, held until every listing is in:
 * a node gone from one place and new in another with the same create_index
 * was renamed (a node keeps it across renames), and is replayed as one
 * RENAME, which moves this mount's inodes (and files open below a moved
 * directory) instead of unlinking them. */
static void hold(struct cm_fs_resync *rs, bool gone, const char *path, const struct cm_attr *a,
		 uint64_t group, uint64_t index)
{
	struct cm_fs_change **v = gone ? &rs->gone : &rs->born;
	uint32_t *n = gone ? &rs->n_gone : &rs->n_born;
	uint32_t *cap = gone ? &rs->cap_gone : &rs->cap_born;
	if (*n == *cap) {
		uint32_t c = *cap ? 2 * *cap : 16;
		struct cm_fs_change *nv = realloc(*v, c * sizeof(**v));
		if (nv == NULL)
			return; /* ENOMEM: that one is only invalidated */
		*v = nv;
		*cap = c;
	}
	struct cm_fs_change *e = &(*v)[*n];
	e->path = strdup(path);
	if (e->path == NULL)
		return;
	e->attr = *a;
	e->group = group;
	e->index = index;
	e->used = false;
	(*n)++;
}

/* Is a file open at or below path? A delete the resync could not pair may
 * still be a move out of the listed directories: replaying it would unlink
 * the open file, whose close would then drop its data as if the file had
 * been removed. Such a delete is not replayed (its close then fails with
 * EIO if the file cannot be found, rather than report a loss as success). */
static bool open_below(struct cm_fs *fs, const char *path)
{
	size_t k = strlen(path);
	for (struct cm_fs_fh *h = fs->handles; h != NULL; h = h->next) {
		struct cm_fs_node *n = cm_fs_itable_find(&fs->it, h->ino);
		if (n != NULL && strncmp(n->path, path, k) == 0 &&
		    (n->path[k] == 0 || n->path[k] == '/'))
			return true;
	}
	return false;
}

/* Every listing is in: renames first (they move inodes), then deletes,
 * then creates. */
static void flush_held(struct cm_fs *fs)
{
	struct cm_fs_resync *rs = &fs->rs;
	/* Several old names may pair with one new name: the table can hold
	 * two names of one node for a while (fs/inode.c, rename), and each
	 * must move, none be deleted. */
	for (uint32_t i = 0; i < rs->n_gone; i++) {
		struct cm_fs_change *g = &rs->gone[i];
		for (uint32_t j = 0; j < rs->n_born && !g->used; j++) {
			struct cm_fs_change *b = &rs->born[j];
			if (b->group != g->group || b->attr.create_index != g->attr.create_index)
				continue;
			feed2(fs, CM_EV_RENAME, g->path, b->path, &b->attr, b->group,
			      b->attr.mod_index);
			g->used = b->used = true;
		}
	}
	for (uint32_t i = 0; i < rs->n_gone; i++)
		if (!rs->gone[i].used && !open_below(fs, rs->gone[i].path))
			feed(fs, CM_EV_DELETE, rs->gone[i].path, &rs->gone[i].attr,
			     rs->gone[i].group, rs->gone[i].index);
	for (uint32_t j = 0; j < rs->n_born; j++) {
		struct cm_fs_change *b = &rs->born[j];
		if (!b->used && b->attr.create_index > since_of(rs, b->group) &&
		    !already(fs, b->path, b->attr.mod_index))
			feed(fs, S_ISDIR(b->attr.mode) ? CM_EV_MKDIR : CM_EV_PUT, b->path,
			     &b->attr, b->group, b->attr.create_index);
	}
}

static void held_free(struct cm_fs_resync *rs)
{
	for (uint32_t i = 0; i < rs->n_gone; i++)
		free(rs->gone[i].path);
	for (uint32_t j = 0; j < rs->n_born; j++)
		free(rs->born[j].path);
	free(rs->gone);
	free(rs->born);
	rs->gone = rs->born = NULL;
	rs->n_gone = rs->n_born = rs->cap_gone = rs->cap_born = 0;
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
	struct cm_fs_resync *rs = &fs->rs;
	for (uint32_t i = 0; i < r->n_ents; i++) {
		const struct cm_attr *a = &r->ents[i].attr;
		char *p = child_path(dir, r->ents[i].name.p, r->ents[i].name.len);
		if (p == NULL)
			return;
		const struct cm_fs_known *k = known_find(rs, p);
		if (k == NULL)
			/* new, or a rename's target (created before `since` then:
			 * not reported unless paired with what it replaced) */
			hold(&fs->rs, false, p, a, r->group, a->create_index);
		else if (k != NULL && a->mod_index > k->attr.mod_index && !S_ISDIR(a->mode) &&
			 !already(fs, p, a->mod_index))
			feed(fs, CM_EV_PUT, p, a, r->group, a->mod_index);
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

/* First snapshot entry not below (by strcmp) prefix[0..k): the snapshot is
 * sorted by path, so every path starting with the prefix follows from here. */
static uint32_t lower_bound(const struct cm_fs_resync *rs, const char *prefix, size_t k)
{
	uint32_t lo = 0, hi = rs->n_known;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (strncmp(rs->known[mid].path, prefix, k) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Children of dir in the snapshot that the listing no longer has: deletes
 * (not one that a live event re-created after the listing was taken). The
 * paths with prefix dir + '/' are one run of the sorted snapshot: visit only
 * that run, so a resync costs O(dirs log n + entries), not O(dirs * n). */
static void diff_gone(struct cm_fs *fs, const char *dir, const struct cm_resp *r)
{
	struct cm_fs_resync *rs = &fs->rs;
	size_t ld = strlen(dir);
	size_t k = ld == 1 ? 0 : ld; /* children are dir[0..k) + '/' + name */
	char prefix[CM_PATH_MAX + 2];
	if (k + 1 >= sizeof(prefix))
		return;
	memcpy(prefix, dir, k);
	prefix[k] = '/';
	for (uint32_t i = lower_bound(rs, prefix, k + 1); i < rs->n_known; i++) {
		const struct cm_fs_known *e = &rs->known[i];
		if (strncmp(e->path, prefix, k + 1) != 0)
			break; /* past the run */
		const char *name = e->path + k + 1;
		if (*name == 0 || strchr(name, '/') != NULL || listed(r, name))
			continue;
		struct cm_fs_node *x = cm_fs_itable_lookup(&fs->it, e->path);
		if (x != NULL && x->has_attr && x->attr.create_index > r->token)
			continue;
		hold(&fs->rs, true, e->path, &e->attr, r->group, r->token);
	}
}

static void send_next(struct cm_fs *fs);

static void finish_if_done(struct cm_fs *fs)
{
	struct cm_fs_resync *rs = &fs->rs;
	if (rs->inflight == 0 && rs->next == rs->n) {
		flush_held(fs);
		held_free(rs);
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
		finish_if_done(fs);
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
	finish_if_done(fs);
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
	held_free(rs);
	known_free(rs);
}
