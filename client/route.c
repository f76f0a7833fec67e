/* route.c: where a request goes: servers, leaders and tokens. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

/* ---- servers ---- */

static bool port_ok(const char *p, size_t n)
{
	if (n == 0 || n > 5)
		return false;
	unsigned v = 0;
	for (size_t k = 0; k < n; k++) {
		if (p[k] < '0' || p[k] > '9')
			return false;
		v = v * 10 + (unsigned)(p[k] - '0');
	}
	return v > 0 && v <= 65535;
}

/* Split "host:port" or "[v6]:port" into srv. */
static int server_parse(struct cm_ac__server *srv, const char *a, size_t n)
{
	if (n == 0 || n > CM_ADDR_MAX)
		return -EINVAL;
	const char *colon = NULL;
	size_t hs = 0, hn;
	if (a[0] == '[') {
		const char *rb = memchr(a, ']', n);
		if (rb == NULL || rb + 1 >= a + n || rb[1] != ':')
			return -EINVAL;
		hs = 1;
		hn = (size_t)(rb - a) - 1;
		colon = rb + 1;
	} else {
		for (size_t k = n; k-- > 0;)
			if (a[k] == ':') {
				colon = a + k;
				break;
			}
		if (colon == NULL)
			return -EINVAL;
		hn = (size_t)(colon - a);
	}
	size_t pn = n - (size_t)(colon + 1 - a);
	if (hn == 0 || memchr(a, '\0', n) || !port_ok(colon + 1, pn))
		return -EINVAL;
	memset(srv, 0, sizeof(*srv));
	memcpy(srv->addr, a, n);
	memcpy(srv->host, a + hs, hn);
	memcpy(srv->port, colon + 1, pn);
	srv->backoff = CM_AC_BACKOFF_MIN_MS;
	srv->local = -1; /* not known before a connection */
	return 0;
}

bool cm_ac__addr_ok(const char *a, size_t n)
{
	struct cm_ac__server srv;
	return server_parse(&srv, a, n) == 0;
}

int cm_ac__server_find(struct cm_ac *ac, const char *addr, uint32_t len, bool add)
{
	for (uint32_t k = 0; k < ac->n_servers; k++) {
		const char *a = ac->servers[k].addr;
		if (strlen(a) == len && memcmp(a, addr, len) == 0)
			return (int)k;
	}
	if (!add)
		return -ENOENT;
	if (ac->n_servers == CM_CLIENT_MAX_SERVERS)
		return -ENOSPC;
	int rv = server_parse(&ac->servers[ac->n_servers], addr, len);
	if (rv != 0)
		return rv;
	return (int)ac->n_servers++;
}

int cm_ac__parse_servers(struct cm_ac *ac, const char *list)
{
	const char *p = list;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t n = strcspn(p, ", ");
		if (n == 0)
			break;
		uint32_t len = (uint32_t)(n > CM_ADDR_MAX ? CM_ADDR_MAX + 1 : n); /* too long */
		int rv = cm_ac__server_find(ac, p, len, true);
		if (rv < 0)
			return -EINVAL;
		p += n;
	}
	ac->n_listed = ac->n_servers;
	return ac->n_servers > 0 ? 0 : -EINVAL;
}

static uint32_t jitter(struct cm_ac *ac, uint32_t ms)
{
	return ms / 2 + cm_ac__rand(ac, ms / 2 + 1);
}

void cm_ac__server_failed(struct cm_ac *ac, uint32_t server)
{
	struct cm_ac__server *srv = &ac->servers[server];
	srv->down_until = uv_now(ac->loop) + jitter(ac, srv->backoff);
	srv->backoff = srv->backoff * 2 > CM_AC_BACKOFF_MAX_MS ? CM_AC_BACKOFF_MAX_MS
							       : srv->backoff * 2;
	for (uint32_t k = 0; k < ac->n_groups; k++)
		if (ac->groups[k].leader == (int32_t)server)
			ac->groups[k].leader = -1;
}

void cm_ac__server_ok(struct cm_ac *ac, uint32_t server)
{
	ac->servers[server].backoff = CM_AC_BACKOFF_MIN_MS;
	ac->servers[server].down_until = 0;
}

static bool usable(const struct cm_ac *ac, uint32_t s, int32_t avoid, uint64_t now)
{
	return (int32_t)s != avoid && ac->servers[s].down_until <= now;
}

/* The next server after home that is not down; if all are, the one that
 * comes back first (a retry has to go somewhere). */
static uint32_t next_home(struct cm_ac *ac, int32_t avoid, uint64_t now)
{
	uint32_t n = ac->n_servers, best = ac->home;
	for (uint32_t k = 1; k <= n; k++) {
		uint32_t s = (ac->home + k) % n;
		if (usable(ac, s, avoid, now))
			return s;
		uint64_t until = ac->servers[s].down_until;
		if ((int32_t)best == avoid ||
		    ((int32_t)s != avoid && until < ac->servers[best].down_until))
			best = s;
	}
	return best;
}

static bool wants_leader(const struct cm_ac__req *rq)
{
	return rq->is_write || rq->lin_unrouted ||
	       (rq->req.op != CM_OP_STATUS && rq->req.op != CM_OP_SHARDS &&
		rq->req.consistency == CM_READ_LINEARIZABLE);
}

/* Of two servers that are down, the better retry: not the one that just
 * failed, then the one that comes back first. */
static bool better_down(const struct cm_ac *ac, int32_t s, int32_t best, int32_t avoid)
{
	if ((s == avoid) != (best == avoid))
		return best == avoid;
	return ac->servers[s].down_until < ac->servers[best].down_until;
}

/* Of two usable replicas, the one to read from: a local one when locality
 * tells them apart, then the one with fewer of our attempts in flight,
 * then home (a client that reads one at a time stays on one replica). */
static bool better_up(const struct cm_ac *ac, int32_t s, int32_t best, bool by_locality)
{
	const struct cm_ac__server *a = &ac->servers[s], *b = &ac->servers[best];
	if (by_locality && (a->local == 1) != (b->local == 1))
		return a->local == 1;
	if (a->inflight != b->inflight)
		return a->inflight < b->inflight;
	return (uint32_t)s == ac->home;
}

/* Locality counts only when some usable replicas are known to be local and
 * some known not to be (on a loopback cluster all are: it says nothing). */
static bool locality_differs(const struct cm_ac *ac, const struct cm_ac__req *rq,
			     const struct cm_ac__shard *sh, uint64_t now)
{
	uint32_t local = 0, remote = 0;
	for (uint32_t k = 0; k < sh->n_replicas; k++) {
		int32_t s = cm_ac__node_server(ac, sh->replicas[k]);
		if (s >= 0 && usable(ac, (uint32_t)s, rq->avoid, now)) {
			local += ac->servers[s].local == 1;
			remote += ac->servers[s].local == 0;
		}
	}
	return local > 0 && remote > 0;
}

/*
 * A replica of sh for a follower read (any is correct: the token decides
 * what it must have applied): the local or least-loaded usable one (the
 * scan starts at a different replica each time, so that ties spread); if
 * none is usable, the best to retry; -1 when no replica's address is known.
 */
static int32_t pick_replica(struct cm_ac *ac, const struct cm_ac__req *rq,
			    const struct cm_ac__shard *sh, uint64_t now)
{
	bool by_locality = locality_differs(ac, rq, sh, now);
	int32_t best = -1, down = -1;
	uint32_t start = sh->n_replicas ? ac->turn++ % sh->n_replicas : 0;
	for (uint32_t j = 0; j < sh->n_replicas; j++) {
		int32_t s = cm_ac__node_server(ac, sh->replicas[(start + j) % sh->n_replicas]);
		if (s < 0)
			continue;
		if (usable(ac, (uint32_t)s, rq->avoid, now)) {
			if (best < 0 || better_up(ac, s, best, by_locality))
				best = s;
		} else if (down < 0 || better_down(ac, s, down, rq->avoid)) {
			down = s;
		}
	}
	return best >= 0 ? best : down;
}

int32_t cm_ac__pick(struct cm_ac *ac, struct cm_ac__req *rq, const struct cm_ac__shard *sh)
{
	if (rq->pinned >= 0)
		return rq->pinned;
	if (rq->target >= 0) {
		int32_t s = rq->target; /* a redirect names the leader */
		rq->target = -1;
		return s;
	}
	uint64_t now = uv_now(ac->loop);
	if (wants_leader(rq) && rq->pgroup) {
		struct cm_ac__group *g = cm_ac__group_get(ac, rq->pgroup, false);
		if (g && g->leader >= 0 && usable(ac, (uint32_t)g->leader, rq->avoid, now))
			return g->leader;
	}
	/* A server that does not host the group would only refuse the path. */
	int32_t s = sh ? pick_replica(ac, rq, sh, now) : -1;
	if (s >= 0)
		return s;
	if (!usable(ac, ac->home, rq->avoid, now))
		ac->home = next_home(ac, rq->avoid, now);
	return (int32_t)ac->home;
}

/* ---- groups: tokens, leaders, prefixes ---- */

struct cm_ac__group *cm_ac__group_get(struct cm_ac *ac, uint64_t id, bool add)
{
	if (id == 0)
		return NULL;
	for (uint32_t k = 0; k < ac->n_groups; k++)
		if (ac->groups[k].id == id)
			return &ac->groups[k];
	if (!add || ac->n_groups == CM_CLIENT_MAX_GROUPS)
		return NULL;
	if ((ac->n_groups & (ac->n_groups - 1)) == 0) { /* 0, 1, 2, 4 ...: grow */
		uint32_t cap = ac->n_groups ? ac->n_groups * 2 : 4;
		struct cm_ac__group *g = realloc(ac->groups, cap * sizeof(*g));
		if (g == NULL)
			return NULL;
		ac->groups = g;
	}
	struct cm_ac__group *g = &ac->groups[ac->n_groups++];
	*g = (struct cm_ac__group){.id = id, .leader = -1};
	return g;
}

void cm_ac__groups_free(struct cm_ac *ac)
{
	for (uint32_t k = 0; k < ac->n_groups; k++)
		free(ac->groups[k].prefix);
	free(ac->groups);
	ac->groups = NULL;
	ac->n_groups = 0;
}

bool cm_ac__holds_tokens(const struct cm_ac *ac)
{
	for (uint32_t k = 0; k < ac->n_groups; k++)
		if (ac->groups[k].token != 0)
			return true;
	return false;
}

uint64_t cm_ac__predict(struct cm_ac *ac, const char *path, uint32_t len)
{
	const struct cm_ac__group *best = NULL;
	if (len == 0)
		return 0;
	for (uint32_t k = 0; k < ac->n_groups; k++) {
		const struct cm_ac__group *g = &ac->groups[k];
		if (g->prefix && cm_path_is_under(path, len, g->prefix, g->plen) &&
		    (best == NULL || g->plen > best->plen))
			best = g;
	}
	if (best)
		return best->id;
	/* No shard map yet: with one group seen, it is the one. */
	return ac->n_groups == 1 ? ac->groups[0].id : 0;
}

/* The token field of these answers is a registry epoch, not an index, or
 * (SHARD_SET, NODE_*) the meta group's, whatever group the answer names. */
static bool token_is_index(const struct cm_resp *resp)
{
	return resp->err != CM_EWRONGSHARD && resp->op != CM_OP_SHARDS &&
	       resp->op != CM_OP_SHARD_ADD && resp->op != CM_OP_SHARD_SET &&
	       resp->op != CM_OP_NODE_ADD && resp->op != CM_OP_NODE_REMOVE;
}

uint64_t cm_ac__leader_group(const struct cm_ac__req *rq, const struct cm_resp *resp)
{
	uint8_t op = rq->req.op;
	if (op == CM_OP_SHARD_ADD || op == CM_OP_SHARD_SET || op == CM_OP_NODE_ADD ||
	    op == CM_OP_NODE_REMOVE)
		return CM_META_GROUP;
	return resp->group ? resp->group : rq->pgroup;
}

void cm_ac__learn(struct cm_ac *ac, struct cm_ac__req *rq, const struct cm_resp *resp)
{
	if (resp->op == CM_OP_SHARDS && resp->err == 0)
		cm_ac__map_install(ac, resp);
	struct cm_ac__group *g = NULL;
	if (token_is_index(resp) && (g = cm_ac__group_get(ac, resp->group, true)) != NULL &&
	    resp->token > g->token)
		g->token = resp->token;
	if (rq == NULL)
		return;
	if (resp->err == 0 && rq->is_write && rq->srv >= 0) {
		/* It just committed a write: it leads that group; or, having
		 * started a transfer, soon will not. */
		g = cm_ac__group_get(ac, cm_ac__leader_group(rq, resp), true);
		if (g)
			g->leader = rq->req.op == CM_OP_TRANSFER ? -1 : rq->srv;
	}
	if (rq->wgroup == 0 && rq->req.path.len > 0 && resp->group != 0)
		cm_ac__map_hint(ac); /* the server routed it: we have no map */
}

void cm_ac__status_map(struct cm_ac *ac, uint32_t server)
{
	struct cm_req r = {.op = CM_OP_STATUS, .consistency = CM_READ_FOLLOWER};
	/* A hint only: if it cannot be sent, there is nothing to undo. */
	(void)cm_ac__submit(ac, CM_AC_RQ_STATUS_MAP, (int32_t)server, &r, NULL, NULL, NULL);
}

static void set_prefix(struct cm_ac__group *g, struct cm_bytes p)
{
	if (p.len == 0 || p.p[0] != '/' || p.len > CM_PATH_MAX)
		return; /* e.g. the meta group: no path range */
	if (g->prefix && g->plen == p.len && memcmp(g->prefix, p.p, p.len) == 0)
		return;
	char *s = malloc(p.len + 1);
	if (s == NULL)
		return; /* the map is a hint: do without */
	memcpy(s, p.p, p.len);
	s[p.len] = '\0';
	free(g->prefix);
	g->prefix = s;
	g->plen = p.len;
}

void cm_ac__status_merge(struct cm_ac *ac, uint32_t server, const struct cm_resp *resp)
{
	for (uint32_t k = 0; k < resp->n_groups; k++) {
		const struct cm_group_status *gs = &resp->groups[k];
		struct cm_ac__group *g = cm_ac__group_get(ac, gs->group, true);
		if (g == NULL)
			continue;
		set_prefix(g, gs->prefix);
		if (gs->role == RAFT_LEADER)
			g->leader = (int32_t)server;
		else if (g->leader == (int32_t)server)
			g->leader = -1;
	}
}
