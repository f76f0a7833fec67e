/* watch.c: change streams for a prefix, replayed from the events history. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/kv.h"
#include "server/log.h"
#include "server/node.h"

/* Events at or below the compaction point are gone: a watch that starts
 * there must resync (re-read) instead. Events are kept as long as the log
 * (keep_entries behind the snapshot), not just down to the snapshot. */
static uint64_t events_floor(const struct cm_group *g)
{
	return g->ev_floor;
}

void cm__watch_compacted(struct cm_group *g, uint64_t index)
{
	if (index > g->ev_floor)
		g->ev_floor = index;
}

struct deliver_ctx {
	struct cm_node *n;
	struct cm_watch *w;
	uint64_t last;
};

static int on_event(void *arg, uint64_t index, uint8_t kind, struct cm_bytes path,
		    struct cm_bytes path2, const struct cm_attr *attr)
{
	struct deliver_ctx *d = arg;
	struct cm_event e = {
		.watch_id = d->w->id,
		.group = d->w->group,
		.index = index,
		.kind = kind,
		.path = path,
		.path2 = path2,
		.has_attr = attr != NULL,
	};
	if (attr != NULL)
		e.attr = *attr;
	/* Nothing about a path the watcher may not read (a rename into view
	 * shows as the rename: its target is readable). */
	struct cm_bytes as = {d->w->prefix + d->w->plen, d->w->as_len};
	bool seen = cm__acl_reads(d->n, d->w->conn, as, path.p, path.len) ||
		    (path2.len > 0 && cm__acl_reads(d->n, d->w->conn, as, path2.p, path2.len));
	if (seen)
		cm_net_event(d->w->conn, &e);
	d->last = index;
	return cm_conn_closed(d->w->conn) ? 1 : 0;
}

static void send_resync(struct cm_watch *w, uint64_t index)
{
	struct cm_event e = {.watch_id = w->id, .group = w->group, .index = index,
			     .kind = CM_EV_RESYNC, .path = {w->prefix, w->plen}};
	cm_net_event(w->conn, &e);
}

static void deliver_one(struct cm_node *n, struct cm_group *g, MDB_txn *txn, struct cm_watch *w)
{
	if (w->sent >= g->applied || cm_conn_closed(w->conn))
		return;
	struct deliver_ctx d = {n, w, w->sent};
	int rv = cm_kv_events(n->store, txn, g->info->id, (struct cm_bytes){w->prefix, w->plen},
			      w->sent, events_floor(g), on_event, &d);
	if (rv == CM_ECOMPACTED)
		send_resync(w, g->applied);
	else if (rv < 0)
		cm_log_warn("watch %llu: %s", (unsigned long long)w->id, cm_strerror(rv));
	w->sent = g->applied;
}

void cm__watch_deliver(struct cm_node *n, struct cm_group *g, MDB_txn *rtxn)
{
	for (struct cm_watch *w = n->watches; w; w = w->next)
		if (w->group == g->info->id)
			deliver_one(n, g, rtxn, w);
}

int cm__watch_add(struct cm_node *n, struct cm_group *g, struct cm_conn *c, const struct cm_req *req)
{
	/* A replica cut off from its leader would stream an old state as if it
	 * were current: the client subscribes elsewhere. */
	if (cm__replica_stale(n, g))
		return CM_ESTALE;
	struct cm_watch *w = calloc(1, sizeof(*w));
	if (w == NULL || (w->prefix = malloc((size_t)req->path.len + req->as.len + 1)) == NULL) {
		free(w);
		return -ENOMEM;
	}
	memcpy(w->prefix, req->path.p, req->path.len);
	w->plen = req->path.len;
	if (req->as.len > 0) /* events are filtered as the forwarded identity sees them */
		memcpy(w->prefix + req->path.len, req->as.p, req->as.len);
	w->as_len = req->as.len;
	w->conn = c;
	cm_conn_ref(c);
	w->id = req->id;
	w->group = g->info->id;
	w->progress = (req->flags & CM_WATCH_PROGRESS) != 0;
	struct cm_resp r;
	cm__resp_init(n, g, req, &r);
	cm_net_reply(c, &r);
	/* from_index is the first index wanted; 0 means "changes from now on". */
	w->sent = req->from_index ? req->from_index - 1 : g->applied;
	if (req->from_index && w->sent < events_floor(g)) {
		send_resync(w, g->applied);
		w->sent = g->applied;
	}
	w->next = n->watches;
	n->watches = w;
	MDB_txn *txn;
	if (cm_store_txn_begin(n->store, false, &txn) == 0) {
		deliver_one(n, g, txn, w);
		cm_store_txn_abort(txn);
	}
	return 0;
}

/*
 * The heartbeat: "every event up to w->sent was sent, and this replica has
 * heard from its leader within the staleness bound". A stale replica stays
 * silent, so its watchers' caches stop trusting it (DESIGN.md, Consistency
 * contract) and they subscribe elsewhere.
 */
void cm__watch_progress(struct cm_node *n)
{
	for (struct cm_watch *w = n->watches; w; w = w->next) {
		if (!w->progress || cm_conn_closed(w->conn))
			continue;
		struct cm_group *g = cm__node_group(n, w->group);
		if (g == NULL || cm__replica_stale(n, g))
			continue;
		struct cm_event e = {.watch_id = w->id, .group = w->group, .index = w->sent,
				     .kind = CM_EV_PROGRESS, .path = {w->prefix, w->plen}};
		cm_net_event(w->conn, &e);
	}
}

/* Group gid's replica left this node: its watches end here. Their clients
 * hear nothing more (no heartbeat either) and subscribe elsewhere after
 * watch_silence_ms, as for a replica that went quiet. */
void cm__watch_drop_group(struct cm_node *n, uint64_t gid)
{
	struct cm_watch **pp = &n->watches;
	while (*pp) {
		struct cm_watch *w = *pp;
		if (w->group != gid) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		cm_conn_unref(w->conn);
		free(w->prefix);
		free(w);
	}
}

/* Remove watch `id` of connection c, or all of c's watches when id is 0. */
void cm__watch_remove(struct cm_node *n, struct cm_conn *c, uint64_t id)
{
	struct cm_watch **pp = &n->watches;
	while (*pp) {
		struct cm_watch *w = *pp;
		if (w->conn != c || (id != 0 && w->id != id)) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		cm_conn_unref(w->conn);
		free(w->prefix);
		free(w);
	}
}
