/* kv_lock.c: cluster-wide locks in a group's state machine (CM_OP_LOCK): holders, FIFO waiters. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "confman/path.h"
#include "server/byteorder.h"
#include "server/kv.h"
#include "server/kv_int.h"

/*
 * A lock is one record (group, P_LOCK, path): its entries, holders first in
 * the order they were granted, then waiters in the order their ACQUIRE was
 * committed. Each entry: lease, owner, token (u64 LE), mode, held, 6 zero
 * bytes. The first waiter gets the lock as soon as it is compatible with the
 * holders (exclusive: none; shared: no exclusive one), and nobody passes a
 * waiter: FIFO, so a stream of shared holds cannot starve an exclusive one.
 * A grant's token is the index of the entry that granted it, so the tokens
 * of a lock's exclusive holds strictly increase, in any group the path's
 * shard ever lived in (a split's group continues its parent's indexes).
 */
#define ENT_BYTES 32

struct lock {
	struct cm_kv_lock_ent v[CM_LOCK_ENTRIES_MAX];
	uint32_t n;
};

static int lock_load(const struct cm_kv__ctx *c, struct cm_bytes path, struct lock *l)
{
	uint8_t kb[CM_KV_RKEY_MAX];
	MDB_val k = {cm_kv__rkey(kb, c->group, CM_KV_P_LOCK, path.p, path.len), kb}, v;
	l->n = 0;
	int rc = mdb_get(c->txn, c->kv, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return cm_store_mdb_err(rc);
	if (v.mv_size % ENT_BYTES != 0 || v.mv_size / ENT_BYTES > CM_LOCK_ENTRIES_MAX)
		return -EIO;
	const uint8_t *b = v.mv_data;
	for (size_t j = 0; j < v.mv_size / ENT_BYTES; j++, b += ENT_BYTES) {
		struct cm_kv_lock_ent *e = &l->v[l->n++];
		e->lease = cm_bo_get_le64(b);
		e->owner = cm_bo_get_le64(b + 8);
		e->token = cm_bo_get_le64(b + 16);
		e->shared = b[24] != 0;
		e->held = b[25] != 0;
	}
	return 0;
}

static int lock_store(const struct cm_kv__ctx *c, struct cm_bytes path, const struct lock *l)
{
	if (l->n == 0)
		return cm_kv__rdel(c, CM_KV_P_LOCK, path.p, path.len);
	uint8_t b[CM_LOCK_ENTRIES_MAX * ENT_BYTES];
	memset(b, 0, (size_t)l->n * ENT_BYTES);
	for (uint32_t j = 0; j < l->n; j++) {
		uint8_t *e = b + (size_t)j * ENT_BYTES;
		cm_bo_put_le64(e, l->v[j].lease);
		cm_bo_put_le64(e + 8, l->v[j].owner);
		cm_bo_put_le64(e + 16, l->v[j].token);
		e[24] = l->v[j].shared;
		e[25] = l->v[j].held;
	}
	return cm_kv__rput(c, CM_KV_P_LOCK, path.p, path.len, b, (size_t)l->n * ENT_BYTES);
}

static int find(const struct lock *l, uint64_t lease, uint64_t owner)
{
	for (uint32_t j = 0; j < l->n; j++)
		if (l->v[j].lease == lease && l->v[j].owner == owner)
			return (int)j;
	return -1;
}

static void remove_at(struct lock *l, uint32_t j)
{
	assert(j < l->n);
	memmove(&l->v[j], &l->v[j + 1], (l->n - j - 1) * sizeof(l->v[0]));
	l->n--;
}

/* Whether a hold of this mode fits beside the current holders. */
static bool fits(const struct lock *l, bool shared)
{
	for (uint32_t j = 0; j < l->n && l->v[j].held; j++)
		if (!shared || !l->v[j].shared)
			return false;
	return true;
}

static bool has_waiter(const struct lock *l)
{
	return l->n > 0 && !l->v[l->n - 1].held;
}

/* Grant the waiters at the head of the queue that fit, in order, at index. */
static void promote(struct lock *l, uint64_t index)
{
	for (uint32_t j = 0; j < l->n; j++) {
		struct cm_kv_lock_ent *e = &l->v[j];
		if (e->held)
			continue;
		if (!fits(l, e->shared))
			return;
		e->held = true;
		e->token = index;
	}
}

static int acquire(struct lock *l, const struct cm_kv_cmd *k, uint64_t index, uint64_t *token)
{
	bool shared = k->flags & CM_LOCK_SHARED, wait = k->flags & CM_LOCK_WAIT;
	int j = find(l, k->version, k->arg);
	*token = 0;
	if (j >= 0 && l->v[j].held && l->v[j].shared == shared) {
		*token = l->v[j].token; /* asked again (a retry): it holds it */
		return 0;
	}
	if (j >= 0 && !l->v[j].held)
		return wait ? 1 : -EWOULDBLOCK; /* queued already: keeps its place */
	struct lock next = *l;
	if (j >= 0)
		remove_at(&next, (uint32_t)j); /* a conversion: flock(2) does not promise it atomic */
	if (!has_waiter(&next) && fits(&next, shared)) {
		uint32_t at = 0;
		while (at < next.n && next.v[at].held)
			at++;
		if (next.n == CM_LOCK_ENTRIES_MAX)
			return -ENOLCK;
		memmove(&next.v[at + 1], &next.v[at], (next.n - at) * sizeof(next.v[0]));
		next.v[at] = (struct cm_kv_lock_ent){k->version, k->arg, index, shared, true};
		next.n++;
		*token = index;
	} else if (wait) {
		if (next.n == CM_LOCK_ENTRIES_MAX)
			return -ENOLCK;
		next.v[next.n++] = (struct cm_kv_lock_ent){k->version, k->arg, index, shared, false};
		promote(&next, index); /* a conversion may have freed the head */
	} else {
		return -EWOULDBLOCK;
	}
	*l = next;
	return 1;
}

int cm_kv__lock(const struct cm_kv__ctx *c, const struct cm_kv_cmd *k, uint64_t index,
		struct cm_kv_result *res, bool *wrote)
{
	if (k->path.len > CM_LOCK_PATH_MAX)
		return -ENAMETOOLONG;
	struct cm_kv_lease ls;
	int rc = cm_kv__lease_get(c, k->version, &ls);
	if (rc == 0 && ls.ending && (k->flags & CM_LOCK_ACQUIRE))
		rc = -ENOENT;
	if (rc != 0)
		return rc;
	struct lock *l = malloc(sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	rc = lock_load(c, k->path, l);
	uint64_t token = 0;
	if (rc == 0 && (k->flags & CM_LOCK_ACQUIRE)) {
		rc = acquire(l, k, index, &token);
		if (rc == 1) {
			int j = find(l, k->version, k->arg);
			token = j >= 0 && l->v[j].held ? l->v[j].token : 0;
		}
	} else if (rc == 0) {
		int j = find(l, k->version, k->arg);
		if (j < 0) {
			rc = -ENOENT;
		} else {
			remove_at(l, (uint32_t)j);
			promote(l, index);
			rc = 1;
		}
	}
	if (rc == 1) {
		*wrote = true;
		rc = lock_store(c, k->path, l);
	}
	free(l);
	/* ACQUIRE: the token, 0 while queued (the leader then waits: lease.c). */
	res->attr.version = token;
	return rc;
}

int cm_kv__locks_drop_lease(const struct cm_kv__ctx *c, uint64_t id, uint64_t index)
{
	MDB_cursor *cur;
	int rc = cm_store_mdb_err(mdb_cursor_open(c->txn, c->kv, &cur));
	if (rc != 0)
		return rc;
	/* The paths of the locks id is in; then each is rewritten. */
	struct cm_bytes *paths = NULL;
	size_t n = 0, cap = 0;
	MDB_val k, v;
	for (rc = cm_kv__rrange_first(c, cur, CM_KV_P_LOCK, NULL, 0, &k, &v); rc == 0;
	     rc = cm_kv__rrange_next(c, cur, CM_KV_P_LOCK, NULL, 0, &k, &v)) {
		bool in = false;
		for (size_t o = 0; o + ENT_BYTES <= v.mv_size && !in; o += ENT_BYTES)
			in = cm_bo_get_le64((const uint8_t *)v.mv_data + o) == id;
		if (!in)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 8;
			struct cm_bytes *np = realloc(paths, cap * sizeof(*np));
			if (np == NULL) {
				rc = -ENOMEM;
				break;
			}
			paths = np;
		}
		uint32_t len = (uint32_t)(k.mv_size - CM_KV_KEY_HDR);
		char *p = malloc(len ? len : 1);
		if (p == NULL) {
			rc = -ENOMEM;
			break;
		}
		memcpy(p, (const char *)k.mv_data + CM_KV_KEY_HDR, len);
		paths[n++] = (struct cm_bytes){p, len};
	}
	mdb_cursor_close(cur);
	if (rc == -ENOENT)
		rc = 0;
	struct lock *l = n && rc == 0 ? malloc(sizeof(*l)) : NULL;
	if (n && rc == 0 && l == NULL)
		rc = -ENOMEM;
	for (size_t j = 0; j < n; j++) {
		if (rc == 0)
			rc = lock_load(c, paths[j], l);
		for (uint32_t e = 0; rc == 0 && e < l->n;)
			if (l->v[e].lease == id)
				remove_at(l, e);
			else
				e++;
		if (rc == 0) {
			promote(l, index);
			rc = lock_store(c, paths[j], l);
		}
		free((void *)paths[j].p);
	}
	free(l);
	free(paths);
	return rc;
}

int cm_kv_lock_get(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes path,
		   struct cm_kv_lock_ent *v, uint32_t *n)
{
	struct cm_kv__ctx c;
	cm_kv__ctx_init(&c, s, txn, group);
	*n = 0;
	if (path.len > CM_LOCK_PATH_MAX)
		return -ENAMETOOLONG;
	struct lock *l = malloc(sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	int rc = lock_load(&c, path, l);
	if (rc == 0) {
		memcpy(v, l->v, l->n * sizeof(l->v[0]));
		*n = l->n;
	}
	free(l);
	return rc;
}
