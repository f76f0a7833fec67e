/* kv_events.c: the watch history: one event record per change, keyed (group, index). */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "confman/path.h"
#include "server/byteorder.h"
#include "server/kv.h"
#include "server/kv_int.h"

struct event {
	uint64_t index;
	uint8_t kind;
	struct cm_bytes path, path2;
	struct cm_attr attr;
};

static void ev_key(uint8_t kb[16], uint64_t group, uint64_t index)
{
	cm_bo_put_be64(kb, group);
	cm_bo_put_be64(kb + 8, index);
}

int cm_kv__event_put(const struct cm_kv__ctx *c, uint64_t index, uint8_t kind, struct cm_bytes path,
		     struct cm_bytes path2, const struct cm_attr *attr)
{
	assert(kind >= CM_EV_PUT);
	assert(kind <= CM_EV_RENAME);
	assert(path.len <= CM_PATH_MAX);
	assert(path2.len <= CM_PATH_MAX);
	uint8_t kb[16];
	ev_key(kb, c->group, index);
	MDB_val k = {sizeof(kb), kb};
	const size_t hdr = CM_KV_EV_HDR + CM_KV_EXT_BYTES;
	MDB_val v = {hdr + (size_t)path.len + path2.len, NULL};
	int rc = mdb_put(c->txn, c->events, &k, &v, MDB_RESERVE);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint8_t *b = v.mv_data;
	memset(b, 0, 8);
	b[0] = kind;
	b[1] = 1; /* the ext follows the attr */
	cm_bo_put_le16(b + 2, (uint16_t)path.len);
	cm_bo_put_le16(b + 4, (uint16_t)path2.len);
	cm_kv__attr_enc(b + 8, attr);
	cm_kv__ext_enc(b + CM_KV_EV_HDR, attr);
	if (path.len != 0)
		memcpy(b + hdr, path.p, path.len);
	if (path2.len != 0)
		memcpy(b + hdr + path.len, path2.p, path2.len);
	return 0;
}

/* Decode an event record; borrowed pointers. -EIO if it cannot be one. */
static int ev_dec(const MDB_val *k, const MDB_val *v, struct event *e)
{
	const uint8_t *b = v->mv_data;
	if (k->mv_size != 16 || v->mv_size < CM_KV_EV_HDR || b[1] > 1)
		return -EIO;
	size_t hdr = CM_KV_EV_HDR + (b[1] ? CM_KV_EXT_BYTES : 0); /* 0: written before ext */
	uint32_t plen = cm_bo_get_le16(b + 2), p2len = cm_bo_get_le16(b + 4);
	if (v->mv_size != hdr + (size_t)plen + p2len)
		return -EIO;
	if (b[0] < CM_EV_PUT || b[0] > CM_EV_RENAME)
		return -EIO;
	e->index = cm_bo_get_be64((const uint8_t *)k->mv_data + 8);
	e->kind = b[0];
	cm_kv__attr_dec(b + 8, &e->attr);
	if (b[1])
		cm_kv__ext_dec(b + CM_KV_EV_HDR, &e->attr);
	else
		cm_kv__ext_default(&e->attr);
	e->path = (struct cm_bytes){(const char *)b + hdr, plen};
	e->path2 = (struct cm_bytes){(const char *)b + hdr + plen, p2len};
	return 0;
}

/*
 * Whether a watcher of prefix cares: the change touched something under it,
 * or removed or replaced an ancestor of it (rm -r /a, mv /x /a: a watcher of
 * /a/b/c must hear that its subtree is gone or different).
 */
static bool ev_matches(const struct event *e, struct cm_bytes prefix)
{
	if (cm_path_is_under(e->path.p, e->path.len, prefix.p, prefix.len))
		return true;
	if (e->path2.len != 0 && cm_path_is_under(e->path2.p, e->path2.len, prefix.p, prefix.len))
		return true;
	if (e->kind != CM_EV_DELETE && e->kind != CM_EV_RENAME)
		return false;
	if (cm_path_is_under(prefix.p, prefix.len, e->path.p, e->path.len))
		return true;
	return e->path2.len != 0 && cm_path_is_under(prefix.p, prefix.len, e->path2.p, e->path2.len);
}

static int ev_walk(const struct cm_kv__ctx *c, MDB_cursor *cur, struct cm_bytes prefix, uint64_t from,
		   cm_kv_event_cb cb, void *arg)
{
	uint8_t kb[16];
	ev_key(kb, c->group, from + 1);
	MDB_val k = {sizeof(kb), kb}, v;
	int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < 8 || cm_bo_get_be64(k.mv_data) != c->group)
			return 0;
		struct event e;
		if (ev_dec(&k, &v, &e) != 0)
			return -EIO;
		if (!ev_matches(&e, prefix))
			continue;
		int stop = cb(arg, e.index, e.kind, e.path, e.path2, &e.attr);
		if (stop != 0)
			return stop;
	}
	return rc == MDB_NOTFOUND ? 0 : cm_store_mdb_err(rc);
}

int cm_kv_events(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes prefix,
		 uint64_t from, uint64_t compacted_upto, cm_kv_event_cb cb, void *arg)
{
	int rc = cm_path_validate(prefix.p, prefix.len);
	if (rc != 0)
		return rc;
	if (from < compacted_upto)
		return CM_ECOMPACTED;
	if (from == UINT64_MAX)
		return 0;
	struct cm_kv__ctx c;
	cm_kv__ctx_init(&c, s, txn, group);
	MDB_cursor *cur;
	rc = mdb_cursor_open(txn, c.events, &cur);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	rc = ev_walk(&c, cur, prefix, from, cb, arg);
	mdb_cursor_close(cur);
	return rc;
}

int cm_kv_events_compact(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t index)
{
	return cm_store_range_delete(txn, cm_store_dbs(s)->events, group, 0, index);
}
