/* cache.c: confman-fs's persistent cache, one LMDB environment per mount
 * identity (servers + prefix). A record per node, keyed by its server path:
 * a checksum, flags, the time it was stored, the attributes, the value if
 * known. Keys sort so that a directory's children follow "dir/", which is
 * how a listing is read back. Loop thread only (fs/offline.c). */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <xxhash.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"

enum { F_ATTR = 1, F_VALUE = 2, F_LISTED = 4 };

/* On disk, host-local (never moved between machines): native layout. */
/* Packed: LMDB keeps a record's data wherever its key ends (nodes are only
 * 2-byte aligned), so every access through a struct rec pointer into the
 * map must be an unaligned one (UBSan caught the aligned ones). */
struct __attribute__((packed)) rec {
	uint64_t sum; /* XXH3-64 of the key and everything after sum (rec_sum) */
	uint32_t flags, vlen;
	int64_t stored_ms;
	struct cm_attr attr;
};

#define FORMAT (0x43460100u + (uint32_t)sizeof(struct rec)) /* bumped with the layout */
static const char K_FORMAT[] = "\001format", K_SYNCED[] = "\001synced";

struct cm_fs_cache {
	MDB_env *env;
	MDB_dbi dbi;
	char *dir;        /* the environment's directory */
	bool broken;      /* a write failed for good (full disk, I/O): no cache from now */
	unsigned maxkey;  /* longer paths are not cached */
	time_t last_log;
};

static void cache_log(struct cm_fs_cache *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cache_log(struct cm_fs_cache *c, const char *fmt, ...)
{
	time_t now = time(NULL); /* at most one line a second: a failing disk must not flood */
	if (c != NULL && now == c->last_log)
		return;
	if (c != NULL)
		c->last_log = now;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "confman-fs: cache: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* XXH3-64 (Debian's libxxhash, as the backup files use) of the key, then
 * of the record after its sum: seeded with the key's hash. */
static uint64_t rec_sum(const MDB_val *k, const void *d, size_t n)
{
	uint64_t h = XXH3_64bits(k->mv_data, k->mv_size);
	return XXH3_64bits_withSeed((const char *)d + sizeof(uint64_t), n - sizeof(uint64_t), h);
}

static MDB_val key_of(const char *s)
{
	return (MDB_val){.mv_size = strlen(s), .mv_data = (void *)s};
}

/* A record read back: checked, or NULL (missing or corrupt: then deleted
 * if txn is a write txn, logged). */
static const struct rec *rec_check(struct cm_fs_cache *c, const MDB_val *k, const MDB_val *d)
{
	const struct rec *r = d->mv_data;
	if (d->mv_size < sizeof(*r) || d->mv_size != sizeof(*r) + r->vlen ||
	    r->sum != rec_sum(k, d->mv_data, d->mv_size)) {
		cache_log(c, "corrupt entry %.*s (checksum or length): discarded, not served",
		     (int)k->mv_size, (const char *)k->mv_data);
		return NULL;
	}
	return r;
}

static const struct rec *rec_get(struct cm_fs_cache *c, MDB_txn *t, const char *path, bool *corrupt)
{
	MDB_val k = key_of(path), d;
	*corrupt = false;
	if (k.mv_size > c->maxkey || mdb_get(t, c->dbi, &k, &d) != 0)
		return NULL;
	const struct rec *r = rec_check(c, &k, &d);
	*corrupt = r == NULL;
	return r;
}

static int rec_put(struct cm_fs_cache *c, MDB_txn *t, const MDB_val *k, const struct rec *h,
		   const void *value)
{
	MDB_val d = {.mv_size = sizeof(*h) + h->vlen};
	int rc = mdb_put(t, c->dbi, (MDB_val *)k, &d, MDB_RESERVE);
	if (rc != 0)
		return rc;
	struct rec *r = d.mv_data;
	*r = *h;
	if (h->vlen)
		memcpy(r + 1, value, h->vlen);
	r->sum = rec_sum(k, d.mv_data, d.mv_size);
	return 0;
}

/* "dir/" ("/" for the root): what every key below dir starts with. */
static char *below(const char *dir)
{
	size_t n = strlen(dir);
	char *p = malloc(n + 2);
	if (p == NULL)
		return NULL;
	memcpy(p, dir, n);
	if (n == 0 || dir[n - 1] != '/')
		p[n++] = '/';
	p[n] = 0;
	return p;
}

static bool has_prefix(const MDB_val *k, const char *p, size_t n)
{
	return k->mv_size >= n && memcmp(k->mv_data, p, n) == 0;
}

/* Delete path's record and everything below it. */
static int del_tree(struct cm_fs_cache *c, MDB_txn *t, const char *path)
{
	MDB_val k = key_of(path);
	int rc = mdb_del(t, c->dbi, &k, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	char *p = below(path);
	if (p == NULL)
		return -ENOMEM;
	size_t n = strlen(p);
	MDB_cursor *cur;
	rc = mdb_cursor_open(t, c->dbi, &cur);
	if (rc == 0) {
		MDB_val ck = key_of(p), d;
		/* Seek again after each delete: the cursor's position after a
		 * delete is not something to rely on. */
		while ((rc = mdb_cursor_get(cur, &ck, &d, MDB_SET_RANGE)) == 0 &&
		       has_prefix(&ck, p, n)) {
			rc = mdb_cursor_del(cur, 0);
			if (rc != 0)
				break;
			ck = key_of(p);
		}
		mdb_cursor_close(cur);
	}
	free(p);
	return rc == MDB_NOTFOUND || rc == EINVAL ? 0 : rc; /* EINVAL: past the last key */
}

/* ---- writes ---- */

typedef int (*wfn)(struct cm_fs_cache *c, MDB_txn *t, void *arg);

static int evict(struct cm_fs_cache *c);

/* One write transaction; on a full map, evict and try once more. A write
 * that fails otherwise (full disk, I/O) turns the cache off: degraded to
 * no cache, never a failed mount. */
static void wtxn(struct cm_fs_cache *c, wfn fn, void *arg)
{
	if (c == NULL || c->broken)
		return;
	int rc = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		MDB_txn *t;
		rc = mdb_txn_begin(c->env, NULL, 0, &t);
		if (rc != 0)
			break;
		rc = fn(c, t, arg);
		if (rc == 0)
			rc = mdb_txn_commit(t);
		else
			mdb_txn_abort(t);
		if (rc != MDB_MAP_FULL || attempt > 0)
			break;
		if (evict(c) != 0)
			break;
	}
	if (rc == 0 || rc == -ENOMEM)
		return;
	if (rc == MDB_MAP_FULL) {
		cache_log(c, "full (cache_size) even after eviction: entry not kept");
		return;
	}
	cache_log(c, "write failed (%s): cache off until the mount restarts", mdb_strerror(rc));
	c->broken = true;
}

struct note_arg {
	const char *path;
	const struct cm_attr *attr;
	const struct cm_bytes *value;
	bool listed;
};

static bool same_node(const struct cm_attr *a, const struct cm_attr *b)
{
	return a->create_index == b->create_index && (a->mode & S_IFMT) == (b->mode & S_IFMT);
}

static int note_in(struct cm_fs_cache *c, MDB_txn *t, void *arg)
{
	struct note_arg *a = arg;
	MDB_val k = key_of(a->path);
	if (k.mv_size > c->maxkey)
		return 0;
	bool corrupt;
	const struct rec *old = rec_get(c, t, a->path, &corrupt);
	struct rec h = {.flags = F_ATTR, .stored_ms = wall_ms(), .attr = *a->attr};
	const void *v = NULL;
	struct cm_attr old_attr;
	if (old != NULL)
		old_attr = old->attr; /* an aligned copy (struct rec is packed) */
	if (old != NULL && (old->flags & F_ATTR) && same_node(&old_attr, a->attr)) {
		if (a->attr->mod_index < old->attr.mod_index)
			return 0; /* older news than what is kept */
		if (old->flags & F_LISTED)
			h.flags |= F_LISTED;
		if (!a->value && (old->flags & F_VALUE) && old->attr.mod_index == a->attr->mod_index) {
			h.flags |= F_VALUE;
			h.vlen = old->vlen;
			v = old + 1;
		}
	} else if (old != NULL && S_ISDIR(old->attr.mode)) {
		int rc = del_tree(c, t, a->path); /* another node now: its children are gone */
		if (rc != 0)
			return rc;
	}
	if (a->listed)
		h.flags |= F_LISTED;
	if (a->value != NULL) {
		h.flags |= F_VALUE;
		h.vlen = a->value->len;
		v = a->value->p;
	}
	if (old != NULL && v == (const void *)(old + 1)) { /* into the map: copy before the put */
		void *copy = malloc(h.vlen ? h.vlen : 1);
		if (copy == NULL)
			return -ENOMEM;
		memcpy(copy, v, h.vlen);
		int rc = rec_put(c, t, &k, &h, copy);
		free(copy);
		return rc;
	}
	return rec_put(c, t, &k, &h, v);
}

void cm_fs_cache_note(struct cm_fs_cache *c, const char *path, const struct cm_attr *attr,
		      const struct cm_bytes *value, bool listed)
{
	struct note_arg a = {path, attr, value, listed};
	wtxn(c, note_in, &a);
}

struct list_arg {
	const char *dir;
	const struct cm_dirent *ents;
	uint32_t n;
};

static bool in_listing(const struct list_arg *a, const char *name, size_t len)
{
	for (uint32_t i = 0; i < a->n; i++)
		if (a->ents[i].name.len == len && memcmp(a->ents[i].name.p, name, len) == 0)
			return true;
	return false;
}

/* Children of dir kept but not in the listing: removed meanwhile. */
static int list_forget(struct cm_fs_cache *c, MDB_txn *t, const struct list_arg *a,
		       const char *p, size_t n)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(t, c->dbi, &cur);
	if (rc != 0)
		return rc;
	MDB_val k = key_of(p), d;
	char *gone = NULL;
	rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
	while (rc == 0 && has_prefix(&k, p, n)) {
		const char *name = (const char *)k.mv_data + n;
		size_t len = k.mv_size - n;
		const char *slash = memchr(name, '/', len);
		if (slash == NULL && !in_listing(a, name, len)) {
			gone = strndup(k.mv_data, k.mv_size);
			break;
		}
		rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (gone == NULL)
		return rc == 0 || rc == MDB_NOTFOUND ? 0 : rc;
	rc = del_tree(c, t, gone);
	free(gone);
	return rc == 0 ? 1 : rc; /* 1: look again */
}

static int list_in(struct cm_fs_cache *c, MDB_txn *t, void *arg)
{
	struct list_arg *a = arg;
	char *p = below(a->dir);
	if (p == NULL)
		return -ENOMEM;
	size_t n = strlen(p);
	int rc;
	while ((rc = list_forget(c, t, a, p, n)) == 1)
		;
	for (uint32_t i = 0; rc == 0 && i < a->n; i++) {
		char *path = malloc(n + a->ents[i].name.len + 1);
		if (path == NULL) {
			rc = -ENOMEM;
			break;
		}
		memcpy(path, p, n);
		memcpy(path + n, a->ents[i].name.p, a->ents[i].name.len);
		path[n + a->ents[i].name.len] = 0;
		struct note_arg na = {path, &a->ents[i].attr, NULL, false};
		rc = note_in(c, t, &na);
		free(path);
	}
	free(p);
	if (rc != 0)
		return rc;
	/* The directory itself: its listing is complete. */
	MDB_val k = key_of(a->dir);
	if (k.mv_size > c->maxkey)
		return 0;
	bool corrupt;
	const struct rec *old = rec_get(c, t, a->dir, &corrupt);
	struct rec h = {.flags = F_LISTED, .stored_ms = wall_ms()};
	if (old != NULL && (old->flags & F_ATTR)) {
		h.flags |= F_ATTR;
		h.attr = old->attr;
	}
	return rec_put(c, t, &k, &h, NULL);
}

void cm_fs_cache_note_list(struct cm_fs_cache *c, const char *dir, const struct cm_dirent *ents,
			   uint32_t n)
{
	struct list_arg a = {dir, ents, n};
	wtxn(c, list_in, &a);
}

static int gone_in(struct cm_fs_cache *c, MDB_txn *t, void *arg)
{
	return del_tree(c, t, arg);
}

void cm_fs_cache_note_gone(struct cm_fs_cache *c, const char *path)
{
	wtxn(c, gone_in, (void *)path);
}

struct move_arg {
	const char *from, *to;
};

/* The first key at or below from, copied, or NULL. */
static int first_at(struct cm_fs_cache *c, MDB_txn *t, const char *from, MDB_val *k, MDB_val *d)
{
	*k = key_of(from);
	if (mdb_get(t, c->dbi, k, d) == 0)
		return 0;
	char *p = below(from);
	if (p == NULL)
		return -ENOMEM;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(t, c->dbi, &cur);
	if (rc == 0) {
		*k = key_of(p);
		rc = mdb_cursor_get(cur, k, d, MDB_SET_RANGE);
		if (rc == 0 && !has_prefix(k, p, strlen(p)))
			rc = MDB_NOTFOUND;
		mdb_cursor_close(cur);
	}
	free(p);
	return rc;
}

static int move_in(struct cm_fs_cache *c, MDB_txn *t, void *arg)
{
	struct move_arg *a = arg;
	int rc = del_tree(c, t, a->to);
	size_t lf = strlen(a->from), lt = strlen(a->to);
	MDB_val k, d;
	/* One record at a time: re-keyed under to, checksum recomputed. */
	while (rc == 0 && (rc = first_at(c, t, a->from, &k, &d)) == 0) {
		size_t nk = lt + k.mv_size - lf;
		char *key = malloc(nk + 1);
		void *copy = malloc(d.mv_size);
		if (key == NULL || copy == NULL) {
			free(key);
			free(copy);
			return -ENOMEM;
		}
		memcpy(key, a->to, lt);
		memcpy(key + lt, (char *)k.mv_data + lf, k.mv_size - lf);
		key[nk] = 0;
		memcpy(copy, d.mv_data, d.mv_size);
		rc = mdb_del(t, c->dbi, &k, NULL);
		const struct rec *r = copy;
		MDB_val nkv = {.mv_size = nk, .mv_data = key};
		if (rc == 0 && nk <= c->maxkey && d.mv_size >= sizeof(*r) &&
		    d.mv_size == sizeof(*r) + r->vlen)
			rc = rec_put(c, t, &nkv, r, r + 1);
		free(key);
		free(copy);
	}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

void cm_fs_cache_note_move(struct cm_fs_cache *c, const char *from, const char *to)
{
	struct move_arg a = {from, to};
	wtxn(c, move_in, &a);
}

/* Full map: drop the values stored before the mean time of those kept
 * (about the oldest half); the tree stays, so ls and stat still work
 * offline. */
static int evict_scan(struct cm_fs_cache *c, MDB_txn *t, char ***keys, size_t *nk)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(t, c->dbi, &cur);
	if (rc != 0)
		return rc;
	MDB_val k, d;
	int64_t cut = 0;
	size_t n = 0, cap = 0;
	for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &d, (MDB_cursor_op)op) == 0; op = MDB_NEXT) {
		const struct rec *r = d.mv_data;
		if (d.mv_size >= sizeof(*r) && (r->flags & F_VALUE))
			cut = n++ == 0 ? r->stored_ms : cut + (r->stored_ms - cut) / (int64_t)n;
	}
	n = 0;
	for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &d, (MDB_cursor_op)op) == 0; op = MDB_NEXT) {
		const struct rec *r = d.mv_data;
		if (d.mv_size < sizeof(*r) || !(r->flags & F_VALUE) || r->stored_ms > cut)
			continue;
		if (n == cap) {
			char **nkeys = realloc(*keys, (cap = cap ? 2 * cap : 256) * sizeof(char *));
			if (nkeys == NULL)
				break;
			*keys = nkeys;
		}
		if (((*keys)[n] = strndup(k.mv_data, k.mv_size)) != NULL)
			n++;
	}
	mdb_cursor_close(cur);
	*nk = n;
	return 0;
}

static int evict(struct cm_fs_cache *c)
{
	MDB_txn *t;
	int rc = mdb_txn_begin(c->env, NULL, 0, &t);
	if (rc != 0)
		return rc;
	char **keys = NULL;
	size_t n = 0, dropped = 0;
	rc = evict_scan(c, t, &keys, &n);
	for (size_t i = 0; i < n; i++) {
		bool corrupt;
		const struct rec *r = rc == 0 ? rec_get(c, t, keys[i], &corrupt) : NULL;
		if (r != NULL) {
			struct rec h = *r;
			h.flags &= ~(uint32_t)F_VALUE;
			h.vlen = 0;
			MDB_val k = key_of(keys[i]);
			rc = rec_put(c, t, &k, &h, NULL);
			dropped += rc == 0;
		}
		free(keys[i]);
	}
	free(keys);
	rc = rc == 0 ? mdb_txn_commit(t) : (mdb_txn_abort(t), rc);
	cache_log(c, "full (cache_size): dropped %zu values, the oldest stored", dropped);
	return rc == 0 && dropped > 0 ? 0 : MDB_MAP_FULL;
}

bool cm_fs_cache_wants_value(struct cm_fs_cache *c, const char *path, const struct cm_attr *attr)
{
	if (c == NULL || c->broken || strlen(path) > c->maxkey || S_ISDIR(attr->mode))
		return false;
	MDB_txn *t;
	if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &t) != 0)
		return false;
	bool corrupt;
	const struct rec *r = rec_get(c, t, path, &corrupt);
	struct cm_attr ra;
	if (r != NULL)
		ra = r->attr; /* an aligned copy (struct rec is packed) */
	bool want = r == NULL || !(r->flags & F_VALUE) || !same_node(&ra, attr) ||
		    ra.mod_index < attr->mod_index;
	mdb_txn_abort(t);
	return want;
}

/* ---- reads (offline) ---- */

static char *parent_of(const char *path)
{
	const char *s = strrchr(path, '/');
	if (s == NULL || s[1] == 0)
		return NULL;
	return s == path ? strdup("/") : strndup(path, (size_t)(s - path));
}

/* A corrupt record is deleted (its own write txn) once the read is over. */
static void drop_corrupt(struct cm_fs_cache *c, const char *path)
{
	wtxn(c, gone_in, (void *)path);
}

int cm_fs_cache_get(struct cm_fs_cache *c, const char *path, struct cm_fs_cache_ent **out)
{
	*out = NULL;
	if (c == NULL || c->broken)
		return -EIO;
	MDB_txn *t;
	if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &t) != 0)
		return -EIO;
	bool corrupt, pc = false;
	const struct rec *r = rec_get(c, t, path, &corrupt);
	int rc = -EIO;
	if (r != NULL && (r->flags & F_ATTR)) {
		struct cm_fs_cache_ent *e = malloc(sizeof(*e) + r->vlen + 1);
		if (e != NULL) {
			e->attr = r->attr;
			e->has_attr = true;
			e->has_value = r->flags & F_VALUE;
			e->listed = r->flags & F_LISTED;
			e->vlen = r->vlen;
			memcpy(e->value, r + 1, r->vlen);
			e->value[r->vlen] = 0;
			*out = e;
			rc = 0;
		} else {
			rc = -ENOMEM;
		}
	} else if (r == NULL && !corrupt) {
		char *parent = parent_of(path);
		const struct rec *pr = parent ? rec_get(c, t, parent, &pc) : NULL;
		if (pr != NULL && (pr->flags & F_LISTED))
			rc = -ENOENT; /* the parent's whole listing is known: proved absent */
		free(parent);
	}
	mdb_txn_abort(t);
	if (corrupt)
		drop_corrupt(c, path);
	return rc;
}

/* Children names of the listed directory whose "dir/" is p, into a buffer
 * of NUL-terminated names; attributes in *attrs. */
static int list_collect(struct cm_fs_cache *c, MDB_txn *t, const char *p, char **names,
			size_t *nb, struct cm_attr **attrs, uint32_t *n)
{
	size_t np = strlen(p), cap = 0, acap = 0;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(t, c->dbi, &cur);
	if (rc != 0)
		return -EIO;
	MDB_val k = key_of(p), d;
	rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
	while (rc == 0 && has_prefix(&k, p, np) && *n < CM_FS_CACHE_LIST_MAX) {
		const char *name = (const char *)k.mv_data + np;
		size_t len = k.mv_size - np;
		const struct rec *r = memchr(name, '/', len) ? NULL : rec_check(c, &k, &d);
		if (r != NULL && (r->flags & F_ATTR) && len > 0) {
			if (*nb + len + 1 > cap) {
				char *nn = realloc(*names, cap = 2 * (cap + len + 64));
				if (nn == NULL)
					break;
				*names = nn;
			}
			if (*n == acap) {
				struct cm_attr *na = realloc(*attrs, (acap = acap ? 2 * acap : 64) *
								     sizeof(*na));
				if (na == NULL)
					break;
				*attrs = na;
			}
			memcpy(*names + *nb, name, len);
			(*names)[*nb + len] = 0;
			*nb += len + 1;
			(*attrs)[(*n)++] = r->attr;
		}
		rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return 0;
}

int cm_fs_cache_list(struct cm_fs_cache *c, const char *dir, struct cm_dirent **ents,
		     uint32_t *n, char **names)
{
	*ents = NULL;
	*names = NULL;
	*n = 0;
	if (c == NULL || c->broken)
		return -EIO;
	MDB_txn *t;
	if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &t) != 0)
		return -EIO;
	bool corrupt;
	const struct rec *r = rec_get(c, t, dir, &corrupt);
	char *p = below(dir);
	struct cm_attr *attrs = NULL;
	size_t nb = 0;
	int rc = -EIO;
	if (r != NULL && (r->flags & F_LISTED) && p != NULL)
		rc = list_collect(c, t, p, names, &nb, &attrs, n);
	mdb_txn_abort(t);
	free(p);
	if (rc == 0 && *n > 0 && (*ents = calloc(*n, sizeof(**ents))) == NULL)
		rc = -ENOMEM;
	size_t off = 0;
	for (uint32_t i = 0; rc == 0 && i < *n; i++) {
		size_t len = strlen(*names + off);
		(*ents)[i].name = (struct cm_bytes){*names + off, (uint32_t)len};
		(*ents)[i].attr = attrs[i];
		off += len + 1;
	}
	free(attrs);
	if (rc != 0) {
		free(*names);
		*names = NULL;
		*n = 0;
	}
	return rc;
}

/* ---- meta, stats ---- */

int64_t cm_fs_cache_synced(struct cm_fs_cache *c)
{
	int64_t v = 0;
	MDB_txn *t;
	if (c == NULL || mdb_txn_begin(c->env, NULL, MDB_RDONLY, &t) != 0)
		return 0;
	MDB_val k = key_of(K_SYNCED), d;
	if (mdb_get(t, c->dbi, &k, &d) == 0 && d.mv_size == sizeof(v))
		memcpy(&v, d.mv_data, sizeof(v));
	mdb_txn_abort(t);
	return v;
}

static int synced_in(struct cm_fs_cache *c, MDB_txn *t, void *arg)
{
	MDB_val k = key_of(K_SYNCED), d = {.mv_size = sizeof(int64_t), .mv_data = arg};
	return mdb_put(t, c->dbi, &k, &d, 0);
}

void cm_fs_cache_set_synced(struct cm_fs_cache *c, int64_t wall)
{
	wtxn(c, synced_in, &wall);
}

struct meta_arg {
	char key[64];
	const void *buf;
	size_t len;
};

static int meta_in(struct cm_fs_cache *c, MDB_txn *t, void *arg)
{
	struct meta_arg *a = arg;
	MDB_val k = key_of(a->key), d = {.mv_size = a->len, .mv_data = (void *)a->buf};
	return mdb_put(t, c->dbi, &k, &d, 0);
}

/* Meta keys start with \001: they sort before every path. */
void cm_fs_cache_meta_set(struct cm_fs_cache *c, const char *name, const void *buf, size_t len)
{
	struct meta_arg a = {.buf = buf, .len = len};
	snprintf(a.key, sizeof(a.key), "\001%s", name);
	wtxn(c, meta_in, &a);
}

int cm_fs_cache_meta_get(struct cm_fs_cache *c, const char *name, void *buf, size_t cap,
			 size_t *len)
{
	char key[64];
	snprintf(key, sizeof(key), "\001%s", name);
	MDB_txn *t;
	if (c == NULL || c->broken || mdb_txn_begin(c->env, NULL, MDB_RDONLY, &t) != 0)
		return -ENOENT;
	MDB_val k = key_of(key), d;
	int rc = -ENOENT;
	if (mdb_get(t, c->dbi, &k, &d) == 0 && d.mv_size <= cap) {
		memcpy(buf, d.mv_data, d.mv_size);
		*len = d.mv_size;
		rc = 0;
	}
	mdb_txn_abort(t);
	return rc;
}

void cm_fs_cache_stats(struct cm_fs_cache *c, uint64_t *bytes, uint64_t *entries,
		       const char **dir)
{
	*bytes = *entries = 0;
	*dir = c == NULL ? "none" : c->broken ? "off (a write failed)" : c->dir;
	if (c == NULL || c->broken)
		return;
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(c->env, &info) == 0 && mdb_env_stat(c->env, &st) == 0)
		*bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
	MDB_txn *t;
	if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &t) == 0) {
		if (mdb_stat(t, c->dbi, &st) == 0)
			*entries = st.ms_entries;
		mdb_txn_abort(t);
	}
}

void cm_fs_cache_sync(struct cm_fs_cache *c)
{
	if (c != NULL && !c->broken)
		(void)mdb_env_sync(c->env, 1);
}

/* ---- open, close ---- */

static int mkdirs(const char *dir)
{
	char buf[4096];
	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *s = buf + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	return mkdir(buf, 0700) != 0 && errno != EEXIST ? -errno : 0;
}

/* The identity in words, for whoever looks into the directory. */
static void write_identity(const char *dir, const char *servers, const char *prefix,
			   const char *who)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/identity", dir);
	FILE *f = fopen(path, "w");
	if (f != NULL) {
		fprintf(f, "servers %s\nprefix %s\nidentity %s", servers, prefix,
			who[0] ? "" : "(none)");
		for (const char *w = who; *w; w++) /* user\ngroup...: one line */
			fputc(*w == '\n' ? ' ' : *w, f);
		fputc('\n', f);
		fclose(f);
	}
}

bool cm_fs_cache_usable(const struct cm_fs_cache *c)
{
	return c != NULL && !c->broken;
}

/* A data file shorter than the pages its meta page says are in use was cut
 * (a copy, a full disk, a truncating tool): LMDB would map the missing
 * pages and the first read of one would SIGBUS. MDB_CORRUPTED, to discard. */
static int env_check_size(struct cm_fs_cache *c)
{
	MDB_envinfo info;
	MDB_stat st;
	struct stat sb;
	char p[4200];
	snprintf(p, sizeof(p), "%s/data.mdb", c->dir);
	if (mdb_env_info(c->env, &info) != 0 || mdb_env_stat(c->env, &st) != 0 ||
	    stat(p, &sb) != 0)
		return MDB_CORRUPTED;
	uint64_t need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	if ((uint64_t)sb.st_size >= need)
		return 0;
	cache_log(NULL, "%s: data.mdb has %lld bytes, its pages in use need %llu: cut short",
		  c->dir, (long long)sb.st_size, (unsigned long long)need);
	return MDB_CORRUPTED;
}

/* LMDB maps its lock file and writes it through the mapping: on a full
 * disk (a tmpfs that cannot give it a page) that write is a SIGBUS, not an
 * error. Its blocks are allocated first, so a full disk is ENOSPC here and
 * the mount runs without a cache. 16 KiB: what LMDB sizes it to (8 KiB for
 * its 126 readers) with room; a larger file only gives it more readers. */
#define LOCK_BYTES 16384

static int lock_alloc(const struct cm_fs_cache *c)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/lock.mdb", c->dir);
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = posix_fallocate(fd, 0, LOCK_BYTES);
	close(fd);
	return -rc; /* posix_fallocate returns the error */
}

static int env_open(struct cm_fs_cache *c, uint64_t max_bytes)
{
	int rc = lock_alloc(c);
	if (rc != 0)
		return rc;
	rc = mdb_env_create(&c->env);
	if (rc != 0)
		return rc;
	mdb_env_set_mapsize(c->env, (size_t)max_bytes);
	/* NOSYNC: a timer flushes every second (a crash loses at most that,
	 * and LMDB stays consistent); each write-through would otherwise pay
	 * an fsync. Several mounts of one identity share it (LMDB's lock). */
	rc = mdb_env_open(c->env, c->dir, MDB_NOSYNC, 0600);
	if (rc == 0)
		rc = env_check_size(c);
	MDB_txn *t = NULL;
	if (rc == 0)
		rc = mdb_txn_begin(c->env, NULL, 0, &t);
	if (rc == 0)
		rc = mdb_dbi_open(t, NULL, 0, &c->dbi);
	if (rc == 0) {
		MDB_val k = key_of(K_FORMAT), d;
		uint32_t f = FORMAT;
		if (mdb_get(t, c->dbi, &k, &d) != 0 || d.mv_size != sizeof(f) ||
		    memcmp(d.mv_data, &f, sizeof(f)) != 0) {
			rc = mdb_drop(t, c->dbi, 0); /* another layout (or none): start empty */
			d = (MDB_val){.mv_size = sizeof(f), .mv_data = &f};
			if (rc == 0)
				rc = mdb_put(t, c->dbi, &k, &d, 0);
		}
	}
	if (t != NULL)
		rc = rc == 0 ? mdb_txn_commit(t) : (mdb_txn_abort(t), rc);
	if (rc != 0) {
		mdb_env_close(c->env);
		c->env = NULL;
	}
	return rc;
}

static void remove_files(const char *dir)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/data.mdb", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", dir);
	unlink(p);
}

int cm_fs_cache_open(const char *dir, const char *servers, const char *prefix,
		     const char *who, uint64_t max_bytes, struct cm_fs_cache **out)
{
	*out = NULL;
	struct cm_fs_cache *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	uint64_t id = XXH3_64bits_withSeed(prefix, strlen(prefix),
					   XXH3_64bits(servers, strlen(servers) + 1));
	if (who[0] != '\0') /* "": the key of a mount without identity, as before */
		id = XXH3_64bits_withSeed(who, strlen(who) + 1, id);
	size_t n = strlen(dir) + 24;
	c->dir = malloc(n);
	if (c->dir == NULL) {
		free(c);
		return -ENOMEM;
	}
	snprintf(c->dir, n, "%s/%016llx", dir, (unsigned long long)id);
	int rc = mkdirs(c->dir);
	if (rc == 0) {
		write_identity(c->dir, servers, prefix, who);
		rc = env_open(c, max_bytes);
		if (rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH ||
		    rc == MDB_PAGE_NOTFOUND) {
			cache_log(NULL, "%s unreadable (%s): discarded, starting empty", c->dir,
			     mdb_strerror(rc));
			remove_files(c->dir);
			rc = env_open(c, max_bytes);
		}
	}
	if (rc != 0) {
		cache_log(NULL, "cannot open %s (%s): running without a cache", c->dir,
		     rc < 0 ? strerror(-rc) : mdb_strerror(rc));
		free(c->dir);
		free(c);
		return rc < 0 ? rc : -EIO;
	}
	c->maxkey = (unsigned)mdb_env_get_maxkeysize(c->env);
	*out = c;
	return 0;
}

void cm_fs_cache_close(struct cm_fs_cache *c)
{
	if (c == NULL)
		return;
	cm_fs_cache_sync(c);
	mdb_env_close(c->env);
	free(c->dir);
	free(c);
}
