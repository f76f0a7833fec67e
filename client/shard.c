/* shard.c: the client's shard map: fetching it, installing it, routing paths by it. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

static_assert(sizeof(((struct cm_shard *)0)->replicas) ==
		      CM_CLIENT_MAX_REPLICAS * sizeof(uint64_t),
	      "struct cm_shard and the client agree on the replicas of a shard");

/* ---- lookups ---- */

/* The shard of a path: the longest matching prefix (DESIGN.md, Sharding). */
const struct cm_ac__shard *cm_ac__map_find(const struct cm_ac *ac, const char *path,
					   uint32_t len)
{
	const struct cm_ac__shard *best = NULL;
	for (uint32_t k = 0; k < ac->map.n_shards; k++) {
		const struct cm_ac__shard *sh = &ac->map.shards[k];
		if (sh->routable && cm_path_is_under(path, len, sh->prefix, sh->plen) &&
		    (best == NULL || sh->plen > best->plen))
			best = sh;
	}
	return best;
}

const struct cm_ac__shard *cm_ac__map_group(const struct cm_ac *ac, uint64_t group)
{
	for (uint32_t k = 0; k < ac->map.n_shards; k++)
		if (ac->map.shards[k].group == group)
			return &ac->map.shards[k];
	return NULL;
}

int32_t cm_ac__node_server(const struct cm_ac *ac, uint64_t node_id)
{
	/* Lowest index first: a listed address wins over one the map added
	 * for the same node. */
	for (uint32_t k = 0; node_id != 0 && k < ac->n_servers; k++)
		if (ac->servers[k].node_id == node_id)
			return (int32_t)k;
	return -1;
}

/* Ops whose path says where they go; STATUS and SHARDS have none, and an
 * UNWATCH goes where its watch is. */
static bool routes_by_path(uint8_t op)
{
	switch (op) {
	case CM_OP_GET: case CM_OP_LIST: case CM_OP_PUT: case CM_OP_DELETE:
	case CM_OP_MKDIR: case CM_OP_RENAME: case CM_OP_WATCH:
	case CM_OP_LEASE: case CM_OP_LOCK: /* the group of the path's shard */
		return true;
	default:
		return false;
	}
}

/*
 * Without a map the server routes the path (REQ.group 0), and no token can
 * go with it: the server would hold the token to whichever group owns the
 * path, and which group that is we can only guess (the root group's token,
 * sent for a path of a nested shard, made its replica wait for an index it
 * had not reached, then answer STALE). A follower read without its token
 * could read backwards or miss our own write, so when we hold any token it
 * goes linearizable instead (ReadIndex: at least as new as anything
 * acknowledged). A client that has seen nothing has nothing to keep.
 */
static bool lin_unrouted(const struct cm_ac *ac, const struct cm_ac__req *rq)
{
	uint8_t op = rq->req.op;
	return (op == CM_OP_GET || op == CM_OP_LIST) && rq->pinned < 0 &&
	       rq->req.consistency == CM_READ_FOLLOWER && cm_ac__holds_tokens(ac);
}

const struct cm_ac__shard *cm_ac__route(struct cm_ac *ac, struct cm_ac__req *rq)
{
	const struct cm_req *r = &rq->req;
	rq->pgroup = rq->wgroup = r->group;
	rq->lin_unrouted = false;
	if (r->op == CM_OP_SHARD_SET) {
		/* REQ.group names the shard; the meta group's leader decides. */
		rq->pgroup = CM_META_GROUP;
		return NULL; /* every node runs a meta replica */
	}
	if (r->group != 0)
		return cm_ac__map_group(ac, r->group); /* the caller named it */
	if (!routes_by_path(r->op))
		return NULL;
	const struct cm_ac__shard *sh = cm_ac__map_find(ac, r->path.p, r->path.len);
	if (sh != NULL) {
		rq->pgroup = rq->wgroup = sh->group;
		return sh;
	}
	/* No map (yet): the server routes (REQ.group 0); the group is only
	 * guessed, to find a leader; no token goes (lin_unrouted). */
	rq->pgroup = cm_ac__predict(ac, r->path.p, r->path.len);
	rq->lin_unrouted = lin_unrouted(ac, rq);
	return NULL;
}

/* ---- fetching ---- */

void cm_ac__map_fetch(struct cm_ac *ac, int32_t target, uint64_t epoch)
{
	if (ac->map_pending || ac->closing)
		return;
	struct cm_req r = {.op = CM_OP_SHARDS, .consistency = CM_READ_FOLLOWER};
	struct cm_ac__req *rq;
	if (cm_ac__submit(ac, CM_AC_RQ_SHARDS_MAP, -1, &r, NULL, NULL, &rq) != 0)
		return; /* the next hint or refusal tries again */
	rq->target = target; /* first attempt only: it may fail over */
	ac->map_pending = true;
	ac->map_at = uv_now(ac->loop);
	if (epoch > ac->map_asked)
		ac->map_asked = epoch;
}

void cm_ac__map_hint(struct cm_ac *ac)
{
	if (!ac->map.valid && uv_now(ac->loop) - ac->map_at >= CM_AC_MAP_HINT_MS)
		cm_ac__map_fetch(ac, -1, 0);
}

/*
 * A server refused a path at registry epoch `epoch`. When the map is older,
 * fetch it from that server, which has applied epoch: once per new epoch,
 * and again at most every CM_AC_MAP_RETRY_MS while the answers come back
 * older (a server that lost its newer state, say). Returns whether the map
 * is older; if not, the server lags or does not host the group.
 */
bool cm_ac__map_wrongshard(struct cm_ac *ac, uint64_t epoch, int32_t server)
{
	if (ac->map.valid && epoch <= ac->map.epoch)
		return false;
	bool fresh = epoch > ac->map_asked;
	if (fresh || uv_now(ac->loop) - ac->map_at >= CM_AC_MAP_RETRY_MS)
		cm_ac__map_fetch(ac, server, epoch);
	return true;
}

/* ---- installing ---- */

void cm_ac__map_free(struct cm_ac *ac)
{
	free(ac->map.shards);
	memset(&ac->map, 0, sizeof(ac->map));
}

static bool prefix_routable(const struct cm_shard *s)
{
	return s->group != 0 && s->group != CM_META_GROUP && s->prefix.len > 0 &&
	       cm_path_validate(s->prefix.p, s->prefix.len) == 0;
}

/* Copy the shards of resp into one block: the array, then the prefixes. */
static struct cm_ac__shard *shards_copy(const struct cm_resp *resp)
{
	size_t bytes = (size_t)resp->n_shards * sizeof(struct cm_ac__shard);
	for (uint32_t k = 0; k < resp->n_shards; k++)
		bytes += (size_t)resp->shards[k].prefix.len + 1;
	struct cm_ac__shard *a = malloc(bytes ? bytes : 1);
	if (a == NULL)
		return NULL;
	char *p = (char *)(a + resp->n_shards);
	for (uint32_t k = 0; k < resp->n_shards; k++) {
		const struct cm_shard *s = &resp->shards[k];
		a[k] = (struct cm_ac__shard){.group = s->group, .prefix = p, .plen = s->prefix.len,
					     .routable = prefix_routable(s),
					     .n_replicas = s->n_replicas,
					     .born = s->parent != 0 ? s->born : 0};
		assert(s->n_replicas <= CM_CLIENT_MAX_REPLICAS); /* the decoder's bound */
		memcpy(a[k].replicas, s->replicas, sizeof(a[k].replicas));
		if (s->prefix.len > 0)
			memcpy(p, s->prefix.p, s->prefix.len);
		p[s->prefix.len] = '\0';
		p += s->prefix.len + 1;
	}
	return a;
}

/* Where each node is: a server known by that id, else its address from the
 * map (added while CM_CLIENT_MAX_SERVERS allows). */
static void nodes_learn(struct cm_ac *ac, const struct cm_resp *resp)
{
	for (uint32_t k = 0; k < resp->n_nodes; k++) {
		const struct cm_node_addr *na = &resp->nodes[k];
		/* A removed node serves nothing: no server slot for it. */
		if (na->id == 0 || na->state == CM_NODE_REMOVED || cm_ac__node_server(ac, na->id) >= 0)
			continue;
		int s = cm_ac__server_find(ac, na->addr.p, na->addr.len, true);
		if (s >= 0 && ac->servers[s].node_id == 0)
			ac->servers[s].node_id = na->id;
	}
}

/* Requests that a server refused for an older map go again now: they were
 * waiting for a fetch, or out their backoff. */
void cm_ac__map_wake(struct cm_ac *ac)
{
	for (struct cm_ac__link *l = ac->reqs.next; l != &ac->reqs; l = l->next) {
		struct cm_ac__req *rq = CM_AC__CONTAINER(l, struct cm_ac__req, all);
		if (rq->state == CM_AC_RQ_IDLE && rq->last_err == CM_EWRONGSHARD)
			cm_ac__wake(rq);
	}
}

void cm_ac__map_install(struct cm_ac *ac, const struct cm_resp *resp)
{
	if (ac->map.valid && resp->epoch <= ac->map.epoch)
		return; /* a lagging server's, or the one we have */
	if (resp->n_shards > CM_CLIENT_MAX_SHARDS || resp->n_nodes > CM_CLIENT_MAX_NODES)
		return; /* over our bounds: route by the server's judgement instead */
	struct cm_ac__shard *a = shards_copy(resp);
	if (a == NULL)
		return; /* the map is an optimisation: keep the old one */
	free(ac->map.shards);
	ac->map = (struct cm_ac__map){.valid = true, .epoch = resp->epoch,
				      .n_shards = resp->n_shards, .shards = a};
	nodes_learn(ac, resp);
	cm_ac__map_wake(ac);
	cm_ac__watch_map_changed(ac);
}
