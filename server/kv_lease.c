/* kv_lease.c: leases and their keys in a group's state machine (CM_OP_LEASE, CM_PUT_LEASE). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "confman/path.h"
#include "server/byteorder.h"
#include "server/kv.h"
#include "server/kv_int.h"
#include "server/kv_lease.h"

/*
 * Layout, in the kv database under parents no node ever has (kv_lease.h):
 *
 *   (group, P_LEASE, id BE)          ttl_ms, left_ms, granted, nkeys u32, state u32 (LE)
 *   (group, P_ATTACH, id BE, ino BE) the key's path
 *   (group, P_BYINO, ino BE)         the lease id, u64 LE
 *
 * A key knows its lease through P_BYINO; a lease its keys through P_ATTACH,
 * in ino order. Attachments are not removed when their node goes (a DELETE,
 * a rename onto it): the end of the lease finds such an entry stale (no node
 * with that ino at that path) and drops it. A rename keeps the paths right:
 * of the key itself, its attachment; of a directory, every attachment of
 * the group below it (a scan of the group's attachments, which are few:
 * renaming directories is rare, and keys on leases are not the bulk).
 */
#define LEASE_REC 32
#define STATE_LIVE 0u
#define STATE_ENDING 1u

uint32_t cm_kv__rkey(uint8_t *kb, uint64_t group, uint64_t parent, const void *name, uint32_t nlen)
{
	assert(nlen <= CM_KV_RKEY_MAX - CM_KV_KEY_HDR);
	cm_bo_put_be64(kb, group);
	cm_bo_put_be64(kb + 8, parent);
	if (nlen != 0)
		memcpy(kb + CM_KV_KEY_HDR, name, nlen);
	return CM_KV_KEY_HDR + nlen;
}

static int rget(const struct cm_kv__ctx *c, uint64_t parent, const void *name, uint32_t nlen,
		MDB_val *v)
{
	uint8_t kb[CM_KV_RKEY_MAX];
	MDB_val k = {cm_kv__rkey(kb, c->group, parent, name, nlen), kb};
	return cm_store_mdb_err(mdb_get(c->txn, c->kv, &k, v));
}

int cm_kv__rput(const struct cm_kv__ctx *c, uint64_t parent, const void *name, uint32_t nlen,
		const void *val, size_t vlen)
{
	uint8_t kb[CM_KV_RKEY_MAX];
	MDB_val k = {cm_kv__rkey(kb, c->group, parent, name, nlen), kb};
	MDB_val v = {vlen, (void *)val};
	return cm_store_mdb_err(mdb_put(c->txn, c->kv, &k, &v, 0));
}

int cm_kv__rdel(const struct cm_kv__ctx *c, uint64_t parent, const void *name, uint32_t nlen)
{
	uint8_t kb[CM_KV_RKEY_MAX];
	MDB_val k = {cm_kv__rkey(kb, c->group, parent, name, nlen), kb};
	int rc = mdb_del(c->txn, c->kv, &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : cm_store_mdb_err(rc);
}

int cm_kv__lease_get(const struct cm_kv__ctx *c, uint64_t id, struct cm_kv_lease *l)
{
	uint8_t name[8];
	cm_bo_put_be64(name, id);
	MDB_val v;
	int rc = rget(c, CM_KV_P_LEASE, name, 8, &v);
	if (rc != 0)
		return rc;
	if (v.mv_size != LEASE_REC)
		return -EIO;
	const uint8_t *b = v.mv_data;
	l->id = id;
	l->ttl_ms = cm_bo_get_le64(b);
	l->left_ms = cm_bo_get_le64(b + 8);
	l->granted = cm_bo_get_le64(b + 16);
	l->nkeys = cm_bo_get_le32(b + 24);
	l->ending = cm_bo_get_le32(b + 28) != STATE_LIVE;
	return 0;
}

static int lease_put(const struct cm_kv__ctx *c, const struct cm_kv_lease *l)
{
	uint8_t name[8], b[LEASE_REC];
	cm_bo_put_be64(name, l->id);
	cm_bo_put_le64(b, l->ttl_ms);
	cm_bo_put_le64(b + 8, l->left_ms);
	cm_bo_put_le64(b + 16, l->granted);
	cm_bo_put_le32(b + 24, l->nkeys);
	cm_bo_put_le32(b + 28, l->ending ? STATE_ENDING : STATE_LIVE);
	return cm_kv__rput(c, CM_KV_P_LEASE, name, 8, b, sizeof(b));
}

static void lease_attr(const struct cm_kv_lease *l, struct cm_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->version = l->id;
	a->mtime_ns = (int64_t)l->ttl_ms;
	a->atime_ns = (int64_t)(l->left_ms ? l->left_ms : l->ttl_ms);
	a->size = l->nkeys;
	a->mod_index = l->granted;
}

/* GRANT and CHECKPOINT: no key moves. */
int cm_kv__lease_set(const struct cm_kv__ctx *c, const struct cm_kv_cmd *k, uint64_t index,
		     struct cm_kv_result *res, bool *wrote)
{
	struct cm_kv_lease l = {0};
	if (k->version == 0 || k->version > CM_LEASE_ID_MAX)
		return -EINVAL;
	int rc = cm_kv__lease_get(c, k->version, &l);
	if (k->flags == CM_LEASE_GRANT) {
		if (rc == 0)
			return -EEXIST;
		if (rc != -ENOENT)
			return rc;
		if (k->arg < CM_LEASE_TTL_MIN_MS || k->arg > CM_LEASE_TTL_MAX_MS)
			return -EINVAL;
		l = (struct cm_kv_lease){.id = k->version, .ttl_ms = k->arg, .granted = index};
	} else {
		assert(k->flags == CM_LEASE_CHECKPOINT);
		if (rc != 0)
			return rc;
		if (l.ending)
			return -ENOENT;
		l.left_ms = k->arg < l.ttl_ms ? k->arg : 0;
	}
	*wrote = true;
	rc = lease_put(c, &l);
	if (rc == 0)
		lease_attr(&l, &res->attr);
	return rc;
}

/* ---- keys ---- */

int cm_kv__lease_put_check(const struct cm_kv__ctx *c, uint64_t id)
{
	if (id == 0)
		return 0; /* a detach */
	struct cm_kv_lease l;
	int rc = cm_kv__lease_get(c, id, &l);
	if (rc != 0)
		return rc;
	if (l.ending)
		return -ENOENT; /* being revoked: no new key may join it */
	return l.nkeys >= CM_LEASE_KEYS_MAX ? -ENOSPC : 0;
}

static uint32_t attach_name(uint8_t name[16], uint64_t id, uint64_t ino)
{
	cm_bo_put_be64(name, id);
	cm_bo_put_be64(name + 8, ino);
	return 16;
}

static int attach_put(const struct cm_kv__ctx *c, uint64_t id, uint64_t ino, struct cm_bytes path)
{
	uint8_t name[16];
	assert(path.len <= CM_PATH_MAX);
	return cm_kv__rput(c, CM_KV_P_ATTACH, name, attach_name(name, id, ino), path.p, path.len);
}

/* The lease node ino belongs to: 0 when none. */
static int lease_of(const struct cm_kv__ctx *c, uint64_t ino, uint64_t *id)
{
	uint8_t name[8];
	cm_bo_put_be64(name, ino);
	MDB_val v;
	int rc = rget(c, CM_KV_P_BYINO, name, 8, &v);
	*id = 0;
	if (rc == -ENOENT)
		return 0;
	if (rc == 0 && v.mv_size != 8)
		rc = -EIO;
	if (rc == 0)
		*id = cm_bo_get_le64(v.mv_data);
	return rc;
}

static int nkeys_add(const struct cm_kv__ctx *c, uint64_t id, int delta)
{
	struct cm_kv_lease l;
	int rc = cm_kv__lease_get(c, id, &l);
	if (rc == -ENOENT)
		return 0; /* dropped already */
	if (rc != 0)
		return rc;
	if (delta < 0 && l.nkeys == 0)
		return -EIO;
	l.nkeys = (uint32_t)((int64_t)l.nkeys + delta);
	return lease_put(c, &l);
}

static int detach(const struct cm_kv__ctx *c, uint64_t id, uint64_t ino)
{
	uint8_t name[16], iname[8];
	cm_bo_put_be64(iname, ino);
	int rc = cm_kv__rdel(c, CM_KV_P_ATTACH, name, attach_name(name, id, ino));
	rc = rc ? rc : cm_kv__rdel(c, CM_KV_P_BYINO, iname, 8);
	return rc ? rc : nkeys_add(c, id, -1);
}

int cm_kv__lease_attach(const struct cm_kv__ctx *c, uint64_t id, uint64_t ino, struct cm_bytes path)
{
	uint64_t old;
	int rc = lease_of(c, ino, &old);
	if (rc == 0 && old != 0 && old != id)
		rc = detach(c, old, ino);
	if (rc != 0 || id == 0)
		return rc;
	uint8_t iname[8], b[8];
	cm_bo_put_be64(iname, ino);
	cm_bo_put_le64(b, id);
	rc = attach_put(c, id, ino, path);
	rc = rc ? rc : cm_kv__rput(c, CM_KV_P_BYINO, iname, 8, b, 8);
	return rc || old == id ? rc : nkeys_add(c, id, 1);
}

int cm_kv__lease_moved(const struct cm_kv__ctx *c, uint64_t ino, struct cm_bytes path)
{
	uint64_t id;
	int rc = lease_of(c, ino, &id);
	if (rc != 0 || id == 0)
		return rc;
	return attach_put(c, id, ino, path);
}

/* ---- ranges of reserved records ---- */

int cm_kv__rrange_first(const struct cm_kv__ctx *c, MDB_cursor *cur, uint64_t parent,
			const void *pfx, uint32_t plen, MDB_val *k, MDB_val *v)
{
	uint8_t kb[CM_KV_RKEY_MAX];
	k->mv_size = cm_kv__rkey(kb, c->group, parent, pfx, plen);
	k->mv_data = kb;
	int rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	if (k->mv_size < CM_KV_KEY_HDR + (size_t)plen || memcmp(k->mv_data, kb, CM_KV_KEY_HDR + plen) != 0)
		return -ENOENT;
	return 0;
}

int cm_kv__rrange_next(const struct cm_kv__ctx *c, MDB_cursor *cur, uint64_t parent,
		       const void *pfx, uint32_t plen, MDB_val *k, MDB_val *v)
{
	int rc = mdb_cursor_get(cur, k, v, MDB_NEXT);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint8_t kb[CM_KV_RKEY_MAX];
	uint32_t len = cm_kv__rkey(kb, c->group, parent, pfx, plen);
	if (k->mv_size < len || memcmp(k->mv_data, kb, len) != 0)
		return -ENOENT;
	return 0;
}

/* Whether the node at path is the file ino. */
static int key_live(const struct cm_kv__ctx *c, struct cm_bytes path, uint64_t ino)
{
	if (cm_path_validate(path.p, path.len) != 0)
		return -EIO;
	struct cm_kv__walk w;
	int rc = cm_kv__walk(c, path.p, path.len, &w);
	if (rc == -ENOTDIR)
		return 0;
	if (rc != 0)
		return rc;
	return w.found && !w.fenced && w.node.ino == ino && !S_ISDIR(w.node.attr.mode);
}

/*
 * Visit lease id's keys still attached (the node at the kept path is that
 * ino), in ino order, path copied into buf (CM_PATH_MAX bytes): fn returns 0
 * to go on, anything else stops the walk and is returned (an error, or a
 * positive "found"). Stale entries are skipped, not removed (no write).
 */
typedef int (*attach_fn)(void *arg, const char *path, uint32_t len, uint64_t ino);

static int attach_each(const struct cm_kv__ctx *c, uint64_t id, char *buf, attach_fn fn, void *arg)
{
	MDB_cursor *cur;
	int rc = cm_store_mdb_err(mdb_cursor_open(c->txn, c->kv, &cur));
	if (rc != 0)
		return rc;
	uint8_t pfx[8];
	cm_bo_put_be64(pfx, id);
	MDB_val k, v;
	int out = 0;
	for (rc = cm_kv__rrange_first(c, cur, CM_KV_P_ATTACH, pfx, 8, &k, &v); rc == 0 && out == 0;
	     rc = cm_kv__rrange_next(c, cur, CM_KV_P_ATTACH, pfx, 8, &k, &v)) {
		if (k.mv_size != CM_KV_KEY_HDR + 16 || v.mv_size > CM_PATH_MAX || v.mv_size == 0) {
			out = -EIO;
			break;
		}
		uint32_t len = (uint32_t)v.mv_size;
		uint64_t ino = cm_bo_get_be64((const uint8_t *)k.mv_data + CM_KV_KEY_HDR + 8);
		memcpy(buf, v.mv_data, len); /* the walk below reads the store */
		out = key_live(c, (struct cm_bytes){buf, len}, ino);
		if (out == 1)
			out = fn(arg, buf, len, ino);
	}
	mdb_cursor_close(cur);
	if (out != 0)
		return out;
	return rc == -ENOENT ? 0 : rc;
}

struct first {
	uint32_t *plen;
	uint64_t *ino;
};

static int take_first(void *arg, const char *path, uint32_t len, uint64_t ino)
{
	struct first *f = arg;
	(void)path; /* already in the caller's buffer */
	*f->plen = len;
	*f->ino = ino;
	return 1;
}

int cm_kv__lease_next(const struct cm_kv__ctx *c, uint64_t id, char *path, uint32_t *plen,
		      uint64_t *ino)
{
	struct first f = {plen, ino};
	return attach_each(c, id, path, take_first, &f);
}

/* Drop id's attachments with ino <= upto (all: UINT64_MAX), their P_BYINO
 * entries where those still name id, and count them off. */
int cm_kv__lease_prune(const struct cm_kv__ctx *c, uint64_t id, uint64_t upto)
{
	uint8_t pfx[8];
	cm_bo_put_be64(pfx, id);
	for (;;) {
		MDB_cursor *cur;
		int rc = cm_store_mdb_err(mdb_cursor_open(c->txn, c->kv, &cur));
		if (rc != 0)
			return rc;
		MDB_val k, v;
		rc = cm_kv__rrange_first(c, cur, CM_KV_P_ATTACH, pfx, 8, &k, &v);
		uint64_t ino = rc == 0 && k.mv_size == CM_KV_KEY_HDR + 16
				       ? cm_bo_get_be64((const uint8_t *)k.mv_data + CM_KV_KEY_HDR + 8)
				       : 0;
		mdb_cursor_close(cur);
		if (rc == -ENOENT || (rc == 0 && ino > upto))
			return 0;
		if (rc != 0)
			return rc;
		uint64_t owner;
		rc = lease_of(c, ino, &owner);
		if (rc == 0 && owner == id)
			rc = detach(c, id, ino);
		else if (rc == 0) { /* the node moved to another lease: only this entry is ours */
			uint8_t name[16];
			rc = cm_kv__rdel(c, CM_KV_P_ATTACH, name, attach_name(name, id, ino));
			rc = rc ? rc : nkeys_add(c, id, -1);
		}
		if (rc != 0)
			return rc;
	}
}

int cm_kv__lease_drop(const struct cm_kv__ctx *c, uint64_t id)
{
	uint8_t name[8];
	cm_bo_put_be64(name, id);
	int rc = cm_kv__lease_prune(c, id, UINT64_MAX);
	return rc ? rc : cm_kv__rdel(c, CM_KV_P_LEASE, name, 8);
}

int cm_kv__lease_mark_ending(const struct cm_kv__ctx *c, struct cm_kv_lease *l)
{
	if (l->ending)
		return 0;
	l->ending = true;
	return lease_put(c, l);
}

/* A rename of directory from to to: the attachments below it follow. */
int cm_kv__lease_dir_moved(const struct cm_kv__ctx *c, struct cm_bytes from, struct cm_bytes to)
{
	MDB_cursor *cur;
	int rc = cm_store_mdb_err(mdb_cursor_open(c->txn, c->kv, &cur));
	if (rc != 0)
		return rc;
	/* Collect first: rewriting under an open cursor would move it. */
	struct moved {
		uint8_t name[16];
		uint32_t len;
		char *path;
	} *v = NULL;
	size_t n = 0, cap = 0;
	MDB_val k, val;
	for (rc = cm_kv__rrange_first(c, cur, CM_KV_P_ATTACH, NULL, 0, &k, &val); rc == 0;
	     rc = cm_kv__rrange_next(c, cur, CM_KV_P_ATTACH, NULL, 0, &k, &val)) {
		const char *p = val.mv_data;
		if (k.mv_size != CM_KV_KEY_HDR + 16 || val.mv_size <= from.len ||
		    memcmp(p, from.p, from.len) != 0 || p[from.len] != '/')
			continue;
		size_t rest = val.mv_size - from.len, len = to.len + rest;
		if (len > CM_PATH_MAX) {
			rc = -EIO; /* the rename checked that every path fits */
			break;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 8;
			struct moved *nv = realloc(v, cap * sizeof(*v));
			if (nv == NULL) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
		}
		char *np = malloc(len);
		if (np == NULL) {
			rc = -ENOMEM;
			break;
		}
		memcpy(np, to.p, to.len);
		memcpy(np + to.len, p + from.len, rest);
		memcpy(v[n].name, (const uint8_t *)k.mv_data + CM_KV_KEY_HDR, 16);
		v[n].len = (uint32_t)len;
		v[n++].path = np;
	}
	mdb_cursor_close(cur);
	if (rc == -ENOENT)
		rc = 0;
	for (size_t j = 0; j < n; j++) {
		if (rc == 0)
			rc = cm_kv__rput(c, CM_KV_P_ATTACH, v[j].name, 16, v[j].path, v[j].len);
		free(v[j].path);
	}
	free(v);
	return rc;
}

/* ---- reads ---- */

int cm_kv_lease_find(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t id,
		     struct cm_kv_lease *l)
{
	struct cm_kv__ctx c;
	cm_kv__ctx_init(&c, s, txn, group);
	return cm_kv__lease_get(&c, id, l);
}

int cm_kv_lease_each(struct cm_store *s, MDB_txn *txn, uint64_t group, cm_kv_lease_cb cb, void *arg)
{
	struct cm_kv__ctx c;
	cm_kv__ctx_init(&c, s, txn, group);
	MDB_cursor *cur;
	int rc = cm_store_mdb_err(mdb_cursor_open(txn, c.kv, &cur));
	if (rc != 0)
		return rc;
	MDB_val k, v;
	for (rc = cm_kv__rrange_first(&c, cur, CM_KV_P_LEASE, NULL, 0, &k, &v); rc == 0;
	     rc = cm_kv__rrange_next(&c, cur, CM_KV_P_LEASE, NULL, 0, &k, &v)) {
		struct cm_kv_lease l;
		if (k.mv_size != CM_KV_KEY_HDR + 8) {
			rc = -EIO;
			break;
		}
		rc = cm_kv__lease_get(&c, cm_bo_get_be64((const uint8_t *)k.mv_data + CM_KV_KEY_HDR), &l);
		rc = rc ? rc : cb(arg, &l);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc == -ENOENT ? 0 : rc;
}

struct keys {
	uint32_t n, max;
	cm_kv_path_cb cb;
	void *arg;
};

static int key_one(void *arg, const char *path, uint32_t len, uint64_t ino)
{
	struct keys *x = arg;
	(void)ino;
	if (x->n == x->max)
		return 2; /* enough: not an error */
	x->n++;
	return x->cb(x->arg, (struct cm_bytes){path, len});
}

int cm_kv_lease_keys(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t id, uint32_t max,
		     cm_kv_path_cb cb, void *arg)
{
	struct cm_kv__ctx c;
	cm_kv__ctx_init(&c, s, txn, group);
	char *path = malloc(CM_PATH_MAX);
	if (path == NULL)
		return -ENOMEM;
	struct keys x = {0, max, cb, arg};
	int rc = attach_each(&c, id, path, key_one, &x);
	free(path);
	return rc == 2 ? 0 : rc;
}

static bool under(const char *p, size_t len, struct cm_bytes prefix)
{
	if (prefix.len == 1)
		return true; /* "/" */
	return len >= prefix.len && memcmp(p, prefix.p, prefix.len) == 0 &&
	       (len == prefix.len || p[prefix.len] == '/');
}

int cm_kv_lease_under(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes prefix)
{
	struct cm_kv__ctx c;
	cm_kv__ctx_init(&c, s, txn, group);
	return cm_kv__lease_under(&c, prefix);
}

int cm_kv__lease_under(const struct cm_kv__ctx *cx, struct cm_bytes prefix)
{
	struct cm_kv__ctx c = *cx;
	MDB_cursor *cur;
	int rc = cm_store_mdb_err(mdb_cursor_open(c.txn, c.kv, &cur));
	if (rc != 0)
		return rc;
	MDB_val k, v;
	int hit = 0;
	for (rc = cm_kv__rrange_first(&c, cur, CM_KV_P_ATTACH, NULL, 0, &k, &v); rc == 0 && !hit;
	     rc = cm_kv__rrange_next(&c, cur, CM_KV_P_ATTACH, NULL, 0, &k, &v))
		hit = under(v.mv_data, v.mv_size, prefix);
	for (rc = hit ? rc : cm_kv__rrange_first(&c, cur, CM_KV_P_LOCK, NULL, 0, &k, &v);
	     rc == 0 && !hit; rc = cm_kv__rrange_next(&c, cur, CM_KV_P_LOCK, NULL, 0, &k, &v))
		hit = under((const char *)k.mv_data + CM_KV_KEY_HDR, k.mv_size - CM_KV_KEY_HDR, prefix);
	mdb_cursor_close(cur);
	if (hit)
		return 1;
	return rc == -ENOENT ? 0 : rc;
}

/* ---- snapshots ---- */

int cm_kv__reserved_pack(const struct cm_kv__ctx *c, msgpack_packer *pk)
{
	MDB_cursor *cur;
	int rc = cm_store_mdb_err(mdb_cursor_open(c->txn, c->kv, &cur));
	if (rc != 0)
		return rc;
	/* Count, then pack: msgpack wants the length first. */
	uint32_t n = 0;
	for (int pass = 0; pass < 2 && rc == 0; pass++) {
		if (pass == 1 && n == 0)
			break; /* a group without leases: the tree alone, as before them */
		if (pass == 1 && msgpack_pack_array(pk, n) != 0)
			rc = -ENOMEM;
		for (uint64_t p = CM_KV_P_FIRST; rc == 0 && p <= CM_KV_P_LEASE; p++) {
			MDB_val k, v;
			for (rc = cm_kv__rrange_first(c, cur, p, NULL, 0, &k, &v); rc == 0;
			     rc = cm_kv__rrange_next(c, cur, p, NULL, 0, &k, &v)) {
				if (pass == 0) {
					n++;
					continue;
				}
				size_t nl = k.mv_size - CM_KV_KEY_HDR;
				if (msgpack_pack_array(pk, 3) || msgpack_pack_uint64(pk, p) ||
				    msgpack_pack_bin(pk, nl) ||
				    msgpack_pack_bin_body(pk, (const char *)k.mv_data + CM_KV_KEY_HDR, nl) ||
				    msgpack_pack_bin(pk, v.mv_size) ||
				    msgpack_pack_bin_body(pk, v.mv_data, v.mv_size)) {
					rc = -ENOMEM;
					break;
				}
			}
			if (rc == -ENOENT)
				rc = 0;
		}
	}
	mdb_cursor_close(cur);
	return rc;
}

int cm_kv__reserved_restore(const struct cm_kv__ctx *c, struct cm_kv__rd *r)
{
	uint32_t n;
	if (cm_kv__rd_array(r, &n) != 0)
		return -EBADMSG;
	for (uint32_t j = 0; j < n; j++) {
		uint32_t f;
		uint64_t p;
		struct cm_bytes name, val;
		if (cm_kv__rd_array(r, &f) != 0 || f != 3 || cm_kv__rd_u64(r, &p) != 0 ||
		    cm_kv__rd_bin(r, &name) != 0 || cm_kv__rd_bin(r, &val) != 0)
			return -EBADMSG;
		if (p < CM_KV_P_FIRST || p > CM_KV_P_LEASE || name.len == 0 ||
		    name.len > CM_KV_RKEY_MAX - CM_KV_KEY_HDR || val.len > CM_PATH_MAX + 64 * 1024)
			return -EBADMSG;
		int rc = cm_kv__rput(c, p, name.p, name.len, val.p, val.len);
		if (rc != 0)
			return rc;
	}
	return 0;
}
