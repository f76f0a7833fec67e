/* store.c: the node's LMDB environment: opening it, transactions, and the small records. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/byteorder.h"
#include "server/store.h"
#include "server/store_int.h"

#define HS_BYTES 24
#define META_FIXED 32 /* applied, snap index, snap term, snap size */

int cm_store_mdb_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case ENOSPC:
		return -ENOSPC;
	case MDB_NOTFOUND:
	case ENOENT:
		return -ENOENT;
	case EACCES:
		return -EACCES;
	case ENOMEM:
		return -ENOMEM;
	default:
		/* MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_INVALID, EIO, ... */
		return -EIO;
	}
}

static int open_dbs(struct cm_store *s)
{
	static const char *const names[] = {"hs", "log", "meta", "snap", "stage", "kv", "events"};
	MDB_dbi *dbi[] = {&s->dbs.hs, &s->dbs.log, &s->dbs.meta, &s->dbs.snap,
			  &s->dbs.stage, &s->dbs.kv, &s->dbs.events};
	static_assert(sizeof(names) / sizeof(names[0]) == sizeof(dbi) / sizeof(dbi[0]),
		      "one name per database");
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		rc = mdb_dbi_open(txn, names[k], MDB_CREATE, dbi[k]);
		if (rc != 0) {
			mdb_txn_abort(txn);
			return cm_store_mdb_err(rc);
		}
	}
	return cm_store_mdb_err(mdb_txn_commit(txn));
}

int cm_store_open(const char *dir, uint64_t map_bytes, struct cm_store **out)
{
	struct cm_store *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	int rc = mdb_env_create(&s->env);
	if (rc != 0)
		goto err_free;
	/* One env per node; every group shares these databases (store.h). */
	rc = mdb_env_set_maxdbs(s->env, 8);
	s->quota = map_bytes;
	if (rc == 0 && map_bytes != 0)
		rc = mdb_env_set_mapsize(s->env, (size_t)(map_bytes + cm_store_reserve(map_bytes)));
	if (rc == 0)
		/* Every value of the node is in here, unencrypted: its user's alone. */
		rc = mdb_env_open(s->env, dir, 0, 0600);
	if (rc != 0)
		goto err_env;
	rc = open_dbs(s);
	if (rc != 0) {
		mdb_env_close(s->env);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
err_env:
	mdb_env_close(s->env);
err_free:
	free(s);
	return cm_store_mdb_err(rc);
}

void cm_store_close(struct cm_store *s)
{
	if (s == NULL)
		return;
	mdb_env_close(s->env);
	free(s);
}

MDB_env *cm_store_env(struct cm_store *s)
{
	return s->env;
}

const struct cm_store_dbs *cm_store_dbs(const struct cm_store *s)
{
	return &s->dbs;
}

int cm_store_txn_begin(struct cm_store *s, bool write, MDB_txn **txn)
{
	int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, txn);
	return cm_store_mdb_err(rc);
}

int cm_store_txn_commit(MDB_txn *txn)
{
	/* LMDB frees the transaction whatever the outcome. */
	return cm_store_mdb_err(mdb_txn_commit(txn));
}

void cm_store_txn_abort(MDB_txn *txn)
{
	mdb_txn_abort(txn);
}

/* Pages on LMDB's free list (its database 0: per freeing transaction, an
 * array of page numbers whose first element is their count), as mdb_stat -f
 * counts them. -1 if the list cannot be read. */
static double free_pages(MDB_env *env)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
		return -1;
	double pages = 0;
	int rc = mdb_cursor_open(txn, 0, &cur);
	if (rc == 0) {
		MDB_val k, v;
		while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
			size_t count;
			if (v.mv_size < sizeof(count))
				break;
			memcpy(&count, v.mv_data, sizeof(count));
			pages += (double)count;
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	return rc == MDB_NOTFOUND ? pages : -1;
}

uint64_t cm_store_reserve(uint64_t map_bytes)
{
	uint64_t quarter = map_bytes / 4, floor = 8ull << 20;
	return quarter > floor ? quarter : floor;
}

static double clamp01(double x)
{
	return x > 1.0 ? 1.0 : x < 0.0 ? 0.0 : x;
}

/* Both figures, once per committed write transaction; 1.0 when unknown
 * (the caller then refuses writes). */
static void space_refresh(struct cm_store *s)
{
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &st) != 0 ||
	    info.me_mapsize == 0) {
		s->usage = s->top = 1.0;
		s->usage_txnid = 0;
		return;
	}
	if (s->usage_txnid != 0 && s->usage_txnid == info.me_last_txnid)
		return;
	/* Pages below the high-water mark that deletes freed are reused by
	 * later transactions: not counting them is what lets a full store
	 * recover once clients delete. */
	double freed = free_pages(s->env);
	double top = ((double)info.me_last_pgno + 1) * (double)st.ms_psize;
	double quota = s->quota ? (double)s->quota : (double)info.me_mapsize;
	s->usage = freed < 0 ? 1.0 : clamp01((top - freed * (double)st.ms_psize) / quota);
	s->top = clamp01(top / (double)info.me_mapsize);
	s->usage_txnid = freed < 0 ? 0 : info.me_last_txnid;
}

double cm_store_usage(struct cm_store *s)
{
	space_refresh(s);
	return s->usage;
}

double cm_store_top(struct cm_store *s)
{
	space_refresh(s);
	return s->top;
}

int cm_store_range_delete(MDB_txn *txn, MDB_dbi dbi, uint64_t group, uint64_t lo, uint64_t hi)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, dbi, &c);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint8_t kb[16];
	cm_bo_put_be64(kb, group);
	cm_bo_put_be64(kb + 8, lo);
	for (;;) {
		/* Seek again after each delete rather than trust where LMDB
		 * leaves a cursor whose record went away. */
		MDB_val k = {sizeof(kb), kb}, v;
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc != 0)
			break;
		if (k.mv_size < 16 || cm_bo_get_be64(k.mv_data) != group ||
		    cm_bo_get_be64((const uint8_t *)k.mv_data + 8) > hi)
			break;
		rc = mdb_cursor_del(c, 0);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : cm_store_mdb_err(rc);
}

/* Every record of one database whose key starts with group's 8 bytes. */
static int drop_prefix(MDB_txn *txn, MDB_dbi dbi, uint64_t group)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, dbi, &c);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint8_t kb[8];
	cm_bo_put_be64(kb, group);
	for (;;) {
		MDB_val k = {sizeof(kb), kb}, v;
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc != 0)
			break;
		if (k.mv_size < 8 || cm_bo_get_be64(k.mv_data) != group)
			break;
		rc = mdb_cursor_del(c, 0);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : cm_store_mdb_err(rc);
}

/* Records of one database whose key starts with group's 8 bytes. */
static int count_prefix(MDB_txn *txn, MDB_dbi dbi, uint64_t group, uint64_t *n)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, dbi, &c);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint8_t kb[8];
	cm_bo_put_be64(kb, group);
	MDB_val k = {sizeof(kb), kb}, v;
	*n = 0;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size < 8 || cm_bo_get_be64(k.mv_data) != group)
			break;
		(*n)++;
	}
	mdb_cursor_close(c);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : cm_store_mdb_err(rc);
}

int cm_store_group_records(struct cm_store *s, MDB_txn *txn, uint64_t group,
			   uint64_t counts[CM_STORE_DBS])
{
	const MDB_dbi dbis[CM_STORE_DBS] = {s->dbs.hs, s->dbs.log, s->dbs.meta, s->dbs.snap,
					    s->dbs.stage, s->dbs.kv, s->dbs.events};
	int rv = 0;
	for (size_t k = 0; rv == 0 && k < CM_STORE_DBS; k++)
		rv = count_prefix(txn, dbis[k], group, &counts[k]);
	return rv;
}

int cm_store_group_drop(struct cm_store *s, MDB_txn *txn, uint64_t group)
{
	const MDB_dbi dbis[] = {s->dbs.hs, s->dbs.log, s->dbs.meta, s->dbs.snap,
				s->dbs.stage, s->dbs.kv, s->dbs.events};
	int rv = 0;
	for (size_t k = 0; rv == 0 && k < sizeof(dbis) / sizeof(dbis[0]); k++)
		rv = drop_prefix(txn, dbis[k], group);
	return rv;
}

int cm_store_hs_put(struct cm_store *s, MDB_txn *txn, uint64_t group, const struct raft_hard_state *hs)
{
	uint8_t kb[8], vb[HS_BYTES];
	cm_bo_put_be64(kb, group);
	cm_bo_put_le64(vb, hs->term);
	cm_bo_put_le64(vb + 8, hs->vote);
	cm_bo_put_le64(vb + 16, hs->commit);
	MDB_val k = {sizeof(kb), kb}, v = {sizeof(vb), vb};
	return cm_store_mdb_err(mdb_put(txn, s->dbs.hs, &k, &v, 0));
}

int cm_store_hs_get(struct cm_store *s, MDB_txn *txn, uint64_t group, struct raft_hard_state *hs)
{
	uint8_t kb[8];
	cm_bo_put_be64(kb, group);
	MDB_val k = {sizeof(kb), kb}, v;
	memset(hs, 0, sizeof(*hs));
	int rc = mdb_get(txn, s->dbs.hs, &k, &v);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	if (v.mv_size != HS_BYTES)
		return -EIO;
	const uint8_t *b = v.mv_data;
	hs->term = cm_bo_get_le64(b);
	hs->vote = cm_bo_get_le64(b + 8);
	hs->commit = cm_bo_get_le64(b + 16);
	return 0;
}

int cm_store_meta_put(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t applied,
		      const struct raft_snap_meta *snap)
{
	static const struct raft_snap_meta none;
	uint8_t kb[8], vb[META_FIXED + RAFT_CONF_MAX_BYTES];
	if (snap == NULL)
		snap = &none;
	cm_bo_put_be64(kb, group);
	cm_bo_put_le64(vb, applied);
	cm_bo_put_le64(vb + 8, snap->index);
	cm_bo_put_le64(vb + 16, snap->term);
	cm_bo_put_le64(vb + 24, snap->size);
	uint32_t n = raft_conf_encode(&snap->conf, vb + META_FIXED);
	assert(n <= RAFT_CONF_MAX_BYTES);
	MDB_val k = {sizeof(kb), kb}, v = {META_FIXED + n, vb};
	return cm_store_mdb_err(mdb_put(txn, s->dbs.meta, &k, &v, 0));
}

int cm_store_meta_get(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t *applied,
		      struct raft_snap_meta *snap)
{
	uint8_t kb[8];
	cm_bo_put_be64(kb, group);
	MDB_val k = {sizeof(kb), kb}, v;
	*applied = 0;
	memset(snap, 0, sizeof(*snap));
	int rc = mdb_get(txn, s->dbs.meta, &k, &v);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	if (v.mv_size < META_FIXED || v.mv_size > META_FIXED + RAFT_CONF_MAX_BYTES)
		return -EIO;
	const uint8_t *b = v.mv_data;
	struct raft_snap_meta m = {
		.index = cm_bo_get_le64(b + 8),
		.term = cm_bo_get_le64(b + 16),
		.size = cm_bo_get_le64(b + 24),
	};
	if (raft_conf_decode(b + META_FIXED, (uint32_t)(v.mv_size - META_FIXED), &m.conf) != 0)
		return -EIO;
	*applied = cm_bo_get_le64(b);
	*snap = m;
	return 0;
}

int cm_store_snap_put(struct cm_store *s, MDB_txn *txn, uint64_t group, const void *data, uint64_t len)
{
	uint8_t kb[8];
	cm_bo_put_be64(kb, group);
	MDB_val k = {sizeof(kb), kb}, v = {(size_t)len, (void *)data};
	return cm_store_mdb_err(mdb_put(txn, s->dbs.snap, &k, &v, 0));
}

int cm_store_snap_get(struct cm_store *s, MDB_txn *txn, uint64_t group, const void **data, uint64_t *len)
{
	uint8_t kb[8];
	cm_bo_put_be64(kb, group);
	MDB_val k = {sizeof(kb), kb}, v;
	int rc = mdb_get(txn, s->dbs.snap, &k, &v);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}

int cm_store_groups(struct cm_store *s, MDB_txn *txn, uint64_t **groups, uint32_t *n)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbs.hs, &c);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint64_t *g = NULL;
	uint32_t cnt = 0, cap = 0;
	MDB_val k, v;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 8) {
			rc = EIO;
			break;
		}
		if (cnt == cap) {
			uint32_t ncap = cap ? cap * 2 : 16;
			uint64_t *ng = realloc(g, ncap * sizeof(*g));
			if (ng == NULL) {
				rc = ENOMEM;
				break;
			}
			g = ng;
			cap = ncap;
		}
		g[cnt++] = cm_bo_get_be64(k.mv_data);
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND) {
		free(g);
		return cm_store_mdb_err(rc);
	}
	*groups = g;
	*n = cnt;
	return 0;
}
