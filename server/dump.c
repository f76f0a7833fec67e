/* dump.c: a group's whole tree for a backup, read at a linearizable point
 * and fetched in chunks (CM_OP_DUMP in include/confman/proto.h).
 *
 * The first request goes through the read path as a linearizable read
 * (request.c): on a follower too, ReadIndex asks the leader for the commit
 * index and the replica waits until it has applied it, so the dump holds
 * every write acknowledged before the backup asked. Then the tree is
 * serialised once, in one LMDB read transaction (a consistent cut: the
 * index it was taken at is the replica's applied index then), and kept
 * here while the client fetches it; a few dumps at most, bounded in bytes,
 * and dropped after CM_DUMP_IDLE_MS without a fetch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/log.h"
#include "server/node.h"

#define CM_DUMP_SLOTS 8
#define CM_DUMP_BYTES_MAX (1ull << 30) /* held for fetching, all dumps together */
#define CM_DUMP_IDLE_MS 120000

struct cm_dump {
	uint64_t id;    /* 0: a free slot */
	uint64_t group;
	uint64_t index;
	uint64_t used_ms;
	msgpack_sbuffer sb;
};

struct cm_dumps {
	struct cm_dump v[CM_DUMP_SLOTS];
	uint64_t seq;
};

static void dump_free(struct cm_dump *d)
{
	if (d->id != 0)
		msgpack_sbuffer_destroy(&d->sb);
	memset(d, 0, sizeof(*d));
}

static uint64_t held_bytes(const struct cm_dumps *ds)
{
	uint64_t b = 0;
	for (int k = 0; k < CM_DUMP_SLOTS; k++)
		b += ds->v[k].id ? ds->v[k].sb.size : 0;
	return b;
}

/* A free slot, the least recently used one freed if none is. */
static struct cm_dump *slot(struct cm_dumps *ds)
{
	struct cm_dump *old = &ds->v[0];
	for (int k = 0; k < CM_DUMP_SLOTS; k++) {
		if (ds->v[k].id == 0)
			return &ds->v[k];
		if (ds->v[k].used_ms < old->used_ms)
			old = &ds->v[k];
	}
	dump_free(old);
	return old;
}

static void reply_chunk(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
			const struct cm_req *req, struct cm_dump *d, uint64_t off)
{
	struct cm_resp r;
	cm__resp_init(n, g, req, &r);
	uint64_t len = d->sb.size > off ? d->sb.size - off : 0;
	if (len > CM_DUMP_CHUNK)
		len = CM_DUMP_CHUNK;
	r.token = d->index;
	r.has_attr = true;
	r.attr.version = d->sb.size;
	r.attr.mod_index = d->id;
	r.value = (struct cm_bytes){d->sb.data + off, (uint32_t)len};
	d->used_ms = uv_now(n->loop);
	cm_net_reply(c, &r);
}

static struct cm_dumps *dumps(struct cm_node *n)
{
	if (n->dumps == NULL) {
		n->dumps = calloc(1, sizeof(*n->dumps));
		if (n->dumps != NULL)
			n->dumps->seq = uv_hrtime(); /* ids of an earlier run never match */
	}
	return n->dumps;
}

void cm__dump_start(struct cm_node *n, struct cm_group *g, MDB_txn *txn, struct cm_conn *c,
		    const struct cm_req *req)
{
	struct cm_dumps *ds = dumps(n);
	if (ds == NULL) {
		cm__reply_err(n, g, c, req, -ENOMEM);
		return;
	}
	struct cm_dump *d = slot(ds);
	msgpack_sbuffer_init(&d->sb);
	d->id = ++ds->seq;
	d->group = g->info->id;
	d->index = g->applied;
	int rv = cm_kv_snapshot(n->store, txn, d->group, &d->sb);
	if (rv == 0 && held_bytes(ds) > CM_DUMP_BYTES_MAX)
		rv = -EBUSY; /* too many backups at once: one finishes first */
	if (rv != 0) {
		dump_free(d);
		cm__reply_err(n, g, c, req, rv);
		return;
	}
	cm_log_info("group %llu: dump %llu at index %llu, %zu bytes", (unsigned long long)d->group,
		    (unsigned long long)d->id, (unsigned long long)d->index, d->sb.size);
	reply_chunk(n, g, c, req, d, 0);
}

void cm__dump_chunk(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		    const struct cm_req *req)
{
	struct cm_dumps *ds = n->dumps;
	for (int k = 0; ds != NULL && k < CM_DUMP_SLOTS; k++) {
		struct cm_dump *d = &ds->v[k];
		if (d->id != req->version || d->group != g->info->id)
			continue;
		if (req->from_index > d->sb.size) {
			cm__reply_err(n, g, c, req, -EINVAL);
			return;
		}
		reply_chunk(n, g, c, req, d, req->from_index);
		if (req->from_index + CM_DUMP_CHUNK >= d->sb.size)
			dump_free(d); /* the last chunk went out */
		return;
	}
	cm__reply_err(n, g, c, req, CM_ESTALE); /* gone (or never here): start again */
}

void cm__dump_tick(struct cm_node *n)
{
	uint64_t now = uv_now(n->loop);
	for (int k = 0; n->dumps != NULL && k < CM_DUMP_SLOTS; k++)
		if (n->dumps->v[k].id != 0 && now - n->dumps->v[k].used_ms > CM_DUMP_IDLE_MS)
			dump_free(&n->dumps->v[k]);
}

void cm__dump_free_all(struct cm_node *n)
{
	for (int k = 0; n->dumps != NULL && k < CM_DUMP_SLOTS; k++)
		dump_free(&n->dumps->v[k]);
	free(n->dumps);
	n->dumps = NULL;
}
