/* inode.c: confman-fs's inode table: kernel inode numbers <-> server paths. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"

/* Inode numbers handed out by the table stay below this; readdir's pseudo
 * numbers for names never looked up have the top bit set. */
#define HASH_INO_BIT (1ull << 63)

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static uint32_t bucket_ino(uint64_t ino)
{
	return (uint32_t)(ino * 11400714819323198485ull >> 48) & (CM_FS_HASH_BUCKETS - 1);
}

static uint32_t bucket_path(const char *path)
{
	return (uint32_t)fnv(path) & (CM_FS_HASH_BUCKETS - 1);
}

uint64_t cm_fs_itable_hash_ino(const char *path)
{
	return fnv(path) | HASH_INO_BIT;
}

static void path_link(struct cm_fs_itable *t, struct cm_fs_node *n)
{
	assert(!n->linked);
	uint32_t b = bucket_path(n->path);
	n->path_next = t->by_path[b];
	t->by_path[b] = n;
	n->linked = true;
}

static void path_unlink(struct cm_fs_itable *t, struct cm_fs_node *n)
{
	assert(n->linked);
	struct cm_fs_node **pp = &t->by_path[bucket_path(n->path)];
	while (*pp != n)
		pp = &(*pp)->path_next;
	*pp = n->path_next;
	n->path_next = NULL;
	n->linked = false;
}

static struct cm_fs_node *node_new(struct cm_fs_itable *t, const char *path)
{
	struct cm_fs_node *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return NULL;
	n->path = strdup(path);
	if (n->path == NULL) {
		free(n);
		return NULL;
	}
	n->ino = t->next_ino++;
	assert(n->ino < HASH_INO_BIT);
	n->wsize = -1;
	uint32_t b = bucket_ino(n->ino);
	n->ino_next = t->by_ino[b];
	t->by_ino[b] = n;
	path_link(t, n);
	t->n++;
	return n;
}

int cm_fs_itable_init(struct cm_fs_itable *t, const char *root_path)
{
	memset(t, 0, sizeof(*t));
	t->by_ino = calloc(CM_FS_HASH_BUCKETS, sizeof(*t->by_ino));
	t->by_path = calloc(CM_FS_HASH_BUCKETS, sizeof(*t->by_path));
	t->next_ino = FUSE_ROOT_ID;
	if (t->by_ino == NULL || t->by_path == NULL)
		goto err;
	struct cm_fs_node *root = node_new(t, root_path);
	if (root == NULL)
		goto err;
	assert(root->ino == FUSE_ROOT_ID);
	root->nlookup = 1; /* the kernel's reference to the root is never forgotten */
	return 0;
err:
	free(t->by_ino);
	free(t->by_path);
	return -ENOMEM;
}

void cm_fs_itable_free(struct cm_fs_itable *t)
{
	for (uint32_t b = 0; t->by_ino && b < CM_FS_HASH_BUCKETS; b++) {
		struct cm_fs_node *n = t->by_ino[b];
		while (n != NULL) {
			struct cm_fs_node *next = n->ino_next;
			free(n->cval);
			free(n->path);
			free(n);
			n = next;
		}
	}
	free(t->by_ino);
	free(t->by_path);
	memset(t, 0, sizeof(*t));
}

struct cm_fs_node *cm_fs_itable_find(struct cm_fs_itable *t, uint64_t ino)
{
	for (struct cm_fs_node *n = t->by_ino[bucket_ino(ino)]; n; n = n->ino_next)
		if (n->ino == ino)
			return n;
	return NULL;
}

static struct cm_fs_node *find_path(struct cm_fs_itable *t, const char *path)
{
	for (struct cm_fs_node *n = t->by_path[bucket_path(path)]; n; n = n->path_next)
		if (strcmp(n->path, path) == 0)
			return n;
	return NULL;
}

struct cm_fs_node *cm_fs_itable_lookup(struct cm_fs_itable *t, const char *path)
{
	return find_path(t, path);
}

int cm_fs_itable_ref(struct cm_fs_itable *t, const char *path, struct cm_fs_node **out)
{
	struct cm_fs_node *n = find_path(t, path);
	if (n == NULL) {
		if (t->n >= CM_FS_INODES_MAX)
			return -ENFILE;
		n = node_new(t, path);
		if (n == NULL)
			return -ENOMEM;
	}
	n->nlookup++;
	*out = n;
	return 0;
}

void cm_fs_itable_forget(struct cm_fs_itable *t, uint64_t ino, uint64_t nl)
{
	struct cm_fs_node *n = cm_fs_itable_find(t, ino);
	if (n == NULL || ino == FUSE_ROOT_ID)
		return;
	/* The kernel's count, not trusted: never below zero. */
	n->nlookup -= nl < n->nlookup ? nl : n->nlookup;
	if (n->nlookup > 0)
		return;
	if (n->linked)
		path_unlink(t, n);
	struct cm_fs_node **pp = &t->by_ino[bucket_ino(ino)];
	while (*pp != n)
		pp = &(*pp)->ino_next;
	*pp = n->ino_next;
	t->n--;
	cm_fs_cache_drop(t, n);
	free(n->path);
	free(n);
}

/* Is path at or below top? */
static bool under(const char *path, const char *top)
{
	size_t k = strlen(top);
	if (strncmp(path, top, k) != 0)
		return false;
	return path[k] == '\0' || path[k] == '/' || (k == 1 && top[0] == '/');
}

/* Every linked node at or below top. The table is walked whole: O(inodes),
 * acceptable for rename/unlink of what the kernel holds (bounded). */
typedef int (*visit_fn)(struct cm_fs_itable *t, struct cm_fs_node *n, void *arg);

static int visit_under(struct cm_fs_itable *t, const char *top, visit_fn fn, void *arg)
{
	/* Collect first: fn relinks nodes in the path index. */
	struct cm_fs_node **v = NULL;
	uint32_t nv = 0, cap = 0;
	for (uint32_t b = 0; b < CM_FS_HASH_BUCKETS; b++) {
		for (struct cm_fs_node *n = t->by_ino[b]; n; n = n->ino_next) {
			if (!n->linked || n->ino == FUSE_ROOT_ID || !under(n->path, top))
				continue;
			if (nv == cap) {
				cap = cap ? cap * 2 : 16;
				struct cm_fs_node **nvv = realloc(v, cap * sizeof(*v));
				if (nvv == NULL) {
					free(v);
					return -ENOMEM;
				}
				v = nvv;
			}
			v[nv++] = n;
		}
	}
	int rc = 0;
	for (uint32_t i = 0; i < nv && rc == 0; i++)
		rc = fn(t, v[i], arg);
	free(v);
	return rc;
}

static int detach(struct cm_fs_itable *t, struct cm_fs_node *n, void *arg)
{
	(void)arg;
	path_unlink(t, n);
	return 0;
}

void cm_fs_itable_unlink(struct cm_fs_itable *t, const char *path)
{
	/* On -ENOMEM stale nodes keep their path: a later lookup finds the old
	 * inode, whose getattr then fails with ENOENT. */
	(void)visit_under(t, path, detach, NULL);
}

struct move {
	const char *from, *to;
};

static int move_one(struct cm_fs_itable *t, struct cm_fs_node *n, void *arg)
{
	const struct move *m = arg;
	size_t kf = strlen(m->from), kt = strlen(m->to);
	size_t rest = strlen(n->path) - kf;
	char *p = malloc(kt + rest + 1);
	if (p == NULL)
		return -ENOMEM;
	memcpy(p, m->to, kt);
	memcpy(p + kt, n->path + kf, rest + 1);
	path_unlink(t, n);
	free(n->path);
	n->path = p;
	path_link(t, n);
	return 0;
}

int cm_fs_itable_rename(struct cm_fs_itable *t, const char *from, const char *to,
			const struct cm_attr *moved)
{
	assert(strcmp(from, "/") != 0);
	/* What the rename replaced is the one node at `to` (a directory is
	 * replaced only empty), unless that node is the moved one itself: a
	 * lookup through the new name, made before this mount's watch reported
	 * the rename, gave it a node of its own, and files may be open below
	 * it. Those stay linked; the moved nodes join them (two nodes may name
	 * one server node for a while: lookups take either, and every change
	 * by path visits both). */
	struct cm_fs_node *at = cm_fs_itable_lookup(t, to);
	bool same = at != NULL && moved != NULL && at->has_attr &&
		    at->attr.create_index == moved->create_index;
	if (at != NULL && !same && at->ino != FUSE_ROOT_ID)
		path_unlink(t, at);
	struct move m = {from, to};
	return visit_under(t, from, move_one, &m);
}

/* ---- the value cache ---- */

static void lru_unlink(struct cm_fs_itable *t, struct cm_fs_node *n)
{
	if (n->lru_prev)
		n->lru_prev->lru_next = n->lru_next;
	else
		t->lru_head = n->lru_next;
	if (n->lru_next)
		n->lru_next->lru_prev = n->lru_prev;
	else
		t->lru_tail = n->lru_prev;
	n->lru_prev = n->lru_next = NULL;
}

static void lru_push(struct cm_fs_itable *t, struct cm_fs_node *n)
{
	n->lru_prev = NULL;
	n->lru_next = t->lru_head;
	if (t->lru_head)
		t->lru_head->lru_prev = n;
	else
		t->lru_tail = n;
	t->lru_head = n;
}

void cm_fs_cache_drop(struct cm_fs_itable *t, struct cm_fs_node *n)
{
	n->cgen++; /* a fetch in flight must not install what it read */
	if (!n->cached)
		return;
	lru_unlink(t, n);
	t->cbytes -= n->clen;
	free(n->cval);
	n->cval = NULL;
	n->clen = 0;
	n->cached = false;
}

/* The node of path's parent directory; *nomem on ENOMEM. */
static struct cm_fs_node *parent_of(struct cm_fs_itable *t, const char *path, bool *nomem)
{
	*nomem = false;
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return NULL;
	size_t k = slash == path ? 1 : (size_t)(slash - path);
	char *dir = strndup(path, k);
	*nomem = dir == NULL;
	struct cm_fs_node *d = dir ? cm_fs_itable_lookup(t, dir) : NULL;
	free(dir);
	return d;
}

/* path and its parent directory changed now: listings taken before are
 * stale there (cm_fs_itable_changed_since). */
static void stamp_change(struct cm_fs_itable *t, const char *path, struct cm_fs_node *n)
{
	t->chg++;
	if (n != NULL)
		n->child_chg = t->chg;
	bool nomem;
	struct cm_fs_node *d = parent_of(t, path, &nomem);
	if (nomem)
		t->clear_chg = t->chg; /* as if everything changed */
	if (d != NULL)
		d->child_chg = t->chg;
}

static void event_note(struct cm_fs_node *n, uint64_t group, uint64_t index)
{
	if (n->ev_group != group || index > n->ev_index) {
		n->ev_group = group;
		n->ev_index = index;
	}
}

void cm_fs_itable_event_at(struct cm_fs_itable *t, const char *path, uint64_t group,
			   uint64_t index)
{
	struct cm_fs_node *n = cm_fs_itable_lookup(t, path);
	if (n != NULL)
		event_note(n, group, index);
	bool nomem;
	struct cm_fs_node *d = parent_of(t, path, &nomem);
	if (nomem)
		t->clear_chg = ++t->chg; /* unknown: no listing in hand tells attributes */
	if (d != NULL)
		event_note(d, group, index);
}

bool cm_fs_itable_changed_since(struct cm_fs_itable *t, uint64_t dir_ino, uint64_t chg)
{
	struct cm_fs_node *d = cm_fs_itable_find(t, dir_ino);
	return d == NULL || t->clear_chg > chg || d->child_chg > chg;
}

void cm_fs_cache_drop_path(struct cm_fs_itable *t, const char *path, bool sub)
{
	struct cm_fs_node *n = cm_fs_itable_lookup(t, path);
	stamp_change(t, path, n);
	if (n != NULL)
		cm_fs_cache_drop(t, n);
	if (!sub)
		return;
	for (struct cm_fs_node *x = t->lru_head, *next; x != NULL; x = next) {
		next = x->lru_next;
		if (under(x->path, path))
			cm_fs_cache_drop(t, x);
	}
}

void cm_fs_cache_clear(struct cm_fs_itable *t)
{
	t->cepoch++; /* fetches in flight keep nothing */
	t->clear_chg = ++t->chg; /* listings in hand tell no attributes */
	while (t->lru_head)
		cm_fs_cache_drop(t, t->lru_head);
}

bool cm_fs_cache_put(struct cm_fs_itable *t, struct cm_fs_node *n, const char *value,
		     uint32_t len, const struct cm_attr *attr)
{
	uint64_t gen = n->cgen;
	bool same = n->cached && n->cattr.version == attr->version &&
		    n->cattr.mod_index == attr->mod_index;
	cm_fs_cache_drop(t, n);
	if (same)
		n->cgen = gen; /* the same value again: handles over it stay current */
	if (len > CM_FS_CACHE_MAX)
		return false;
	while (t->lru_tail && t->cbytes + len > CM_FS_CACHE_MAX)
		cm_fs_cache_drop(t, t->lru_tail);
	char *v = malloc(len ? len : 1);
	if (v == NULL)
		return false;
	if (len)
		memcpy(v, value, len);
	n->cval = v;
	n->clen = len;
	n->cattr = *attr;
	n->cached = true;
	t->cbytes += len;
	lru_push(t, n);
	return true;
}

void cm_fs_cache_touch(struct cm_fs_itable *t, struct cm_fs_node *n)
{
	if (n->cached && t->lru_head != n) {
		lru_unlink(t, n);
		lru_push(t, n);
	}
}
