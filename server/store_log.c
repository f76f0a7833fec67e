/* store_log.c: a group's Raft log entries and the staging area of a snapshot being received. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/byteorder.h"
#include "server/store.h"
#include "server/store_int.h"

#define ENTRY_HDR 9 /* term u64, type u8 */

static void key16(uint8_t kb[16], uint64_t group, uint64_t x)
{
	cm_bo_put_be64(kb, group);
	cm_bo_put_be64(kb + 8, x);
}

static int entry_put(struct cm_store *s, MDB_txn *txn, uint64_t group, const struct raft_entry *e)
{
	uint8_t kb[16];
	key16(kb, group, e->index);
	MDB_val k = {sizeof(kb), kb}, v = {ENTRY_HDR + (size_t)e->len, NULL};
	/* Reserve, then fill: the data is copied once, straight into the page. */
	int rc = mdb_put(txn, s->dbs.log, &k, &v, MDB_RESERVE);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint8_t *b = v.mv_data;
	cm_bo_put_le64(b, e->term);
	b[8] = e->type;
	if (e->len != 0)
		memcpy(b + ENTRY_HDR, e->data, e->len);
	return 0;
}

int cm_store_log_append(struct cm_store *s, MDB_txn *txn, uint64_t group,
			const struct raft_entry *entries, uint32_t n)
{
	if (n == 0)
		return 0;
	/* A follower's new entries replace any conflicting suffix (Raft §5.3). */
	int rc = cm_store_range_delete(txn, s->dbs.log, group, entries[0].index, UINT64_MAX);
	for (uint32_t k = 0; rc == 0 && k < n; k++) {
		assert(entries[k].index == entries[0].index + k);
		assert(entries[k].len == 0 || entries[k].data != NULL);
		rc = entry_put(s, txn, group, &entries[k]);
	}
	return rc;
}

int cm_store_log_truncate_prefix(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t index)
{
	return cm_store_range_delete(txn, s->dbs.log, group, 0, index);
}

int cm_store_log_first(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t *first)
{
	uint8_t kb[16];
	key16(kb, group, 0);
	MDB_val k = {sizeof(kb), kb}, v;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, s->dbs.log, &cur);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	*first = 0;
	if (rc == 0 && k.mv_size == 16 && cm_bo_get_be64(k.mv_data) == group)
		*first = cm_bo_get_be64((const uint8_t *)k.mv_data + 8);
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : cm_store_mdb_err(rc);
}

int cm_store_log_delete_all(struct cm_store *s, MDB_txn *txn, uint64_t group)
{
	return cm_store_range_delete(txn, s->dbs.log, group, 0, UINT64_MAX);
}

/* Decode a log record; data borrowed. -EIO if it cannot be one. */
static int entry_decode(const MDB_val *k, const MDB_val *v, struct raft_entry *e)
{
	if (k->mv_size != 16 || v->mv_size < ENTRY_HDR || v->mv_size - ENTRY_HDR > UINT32_MAX)
		return -EIO;
	const uint8_t *b = v->mv_data;
	if (b[8] < RAFT_ENTRY_NORMAL || b[8] > RAFT_ENTRY_CONF)
		return -EIO;
	e->index = cm_bo_get_be64((const uint8_t *)k->mv_data + 8);
	e->term = cm_bo_get_le64(b);
	e->type = b[8];
	e->len = (uint32_t)(v->mv_size - ENTRY_HDR);
	e->data = e->len ? (void *)(b + ENTRY_HDR) : NULL;
	return 0;
}

int cm_store_log_get(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t index,
		     struct raft_entry *e)
{
	uint8_t kb[16];
	key16(kb, group, index);
	MDB_val k = {sizeof(kb), kb}, v;
	int rc = mdb_get(txn, s->dbs.log, &k, &v);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	return entry_decode(&k, &v, e);
}

void cm_store_entries_free(struct raft_entry *entries, uint32_t n)
{
	if (entries == NULL)
		return;
	for (uint32_t k = 0; k < n; k++)
		free(entries[k].data);
	free(entries);
}

/* Append a copy of e (data borrowed from LMDB) to the growing array *v. */
static int load_push(struct raft_entry **v, uint32_t *n, uint32_t *cap, const struct raft_entry *e)
{
	if (*n == *cap) {
		if (*cap > UINT32_MAX / 2)
			return -ENOMEM;
		uint32_t ncap = *cap ? *cap * 2 : 64;
		struct raft_entry *nv = realloc(*v, ncap * sizeof(**v));
		if (nv == NULL)
			return -ENOMEM;
		*v = nv;
		*cap = ncap;
	}
	struct raft_entry c = *e;
	if (e->len != 0) {
		c.data = malloc(e->len);
		if (c.data == NULL)
			return -ENOMEM;
		memcpy(c.data, e->data, e->len);
	}
	(*v)[(*n)++] = c;
	return 0;
}

int cm_store_log_load(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t after,
		      struct raft_entry **entries, uint32_t *n)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbs.log, &c);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	struct raft_entry *v = NULL;
	uint32_t cnt = 0, cap = 0;
	uint8_t kb[16];
	key16(kb, group, after + 1);
	MDB_val k = {sizeof(kb), kb}, d;
	int mrc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	rc = 0;
	for (; mrc == 0 && rc == 0; mrc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size < 8 || cm_bo_get_be64(k.mv_data) != group)
			break;
		struct raft_entry e;
		rc = entry_decode(&k, &d, &e);
		/* The log is contiguous from after + 1: a hole means lost entries. */
		if (rc == 0 && e.index != after + 1 + cnt)
			rc = -EIO;
		if (rc == 0)
			rc = load_push(&v, &cnt, &cap, &e);
	}
	mdb_cursor_close(c);
	if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = cm_store_mdb_err(mrc);
	if (rc != 0) {
		cm_store_entries_free(v, cnt);
		return rc;
	}
	*entries = v;
	*n = cnt;
	return 0;
}

int cm_store_stage_put(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t offset,
		       const void *data, uint32_t len)
{
	if (offset == 0) {
		/* A transfer that starts over replaces whatever was staged. */
		int rc = cm_store_range_delete(txn, s->dbs.stage, group, 0, UINT64_MAX);
		if (rc != 0)
			return rc;
	}
	uint8_t kb[16];
	key16(kb, group, offset);
	MDB_val k = {sizeof(kb), kb}, v = {len, (void *)data};
	return cm_store_mdb_err(mdb_put(txn, s->dbs.stage, &k, &v, 0));
}

/*
 * Walk the staged chunks of group in offset order. With buf NULL only check
 * that they cover [0, len) exactly; otherwise also copy them into buf.
 * Chunks may overlap (a retransmission with another chunk size): later bytes
 * of the same offset are identical, so the first copy wins.
 */
static int stage_walk(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t len, uint8_t *buf)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbs.stage, &c);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint8_t kb[16];
	key16(kb, group, 0);
	MDB_val k = {sizeof(kb), kb}, v;
	uint64_t covered = 0;
	int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	rc = 0;
	for (; mrc == 0; mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 16 || cm_bo_get_be64(k.mv_data) != group)
			break;
		uint64_t off = cm_bo_get_be64((const uint8_t *)k.mv_data + 8);
		if (off > covered || v.mv_size > len || off > len - v.mv_size) {
			rc = -EIO; /* a hole, or bytes beyond the snapshot's end */
			break;
		}
		uint64_t end = off + v.mv_size;
		if (end > covered && buf != NULL)
			memcpy(buf + covered, (const uint8_t *)v.mv_data + (covered - off), end - covered);
		if (end > covered)
			covered = end;
	}
	mdb_cursor_close(c);
	if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = cm_store_mdb_err(mrc);
	if (rc == 0 && covered != len)
		rc = -EIO;
	return rc;
}

int cm_store_stage_take(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t len, void **data)
{
	/* len comes from a peer's snapshot meta: allocate only once the staged
	 * chunks have proven that many bytes exist. */
	int rc = stage_walk(s, txn, group, len, NULL);
	if (rc != 0)
		return rc;
	if (len > SIZE_MAX - 1)
		return -ENOMEM;
	uint8_t *buf = malloc(len ? (size_t)len : 1);
	if (buf == NULL)
		return -ENOMEM;
	rc = stage_walk(s, txn, group, len, buf);
	if (rc == 0)
		rc = cm_store_range_delete(txn, s->dbs.stage, group, 0, UINT64_MAX);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	*data = buf;
	return 0;
}
