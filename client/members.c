/* members.c: the blocking API for membership: conf changes, transfers, the node table. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client/client_int.h"

/* One membership request, routed by the asynchronous core (ac.c checks the
 * operands, shard.c sends it to the group's or the meta group's leader). */
static int member_run(struct cm_client *c, const struct cm_req *r, uint64_t *token)
{
	if (c == NULL)
		return -EINVAL;
	struct cm_client__call s = {0};
	int rv = cm_client__run(c, NULL, r, &s);
	if (token)
		*token = rv == 0 ? s.token : 0;
	return rv;
}

int cm_conf_change(struct cm_client *c, uint64_t group, enum cm_conf_op op, uint64_t node_id,
		   uint64_t *index)
{
	struct cm_req r = {.op = CM_OP_CONF_CHANGE, .group = group, .flags = (uint32_t)op,
			   .version = node_id};
	return member_run(c, &r, index);
}

int cm_transfer(struct cm_client *c, uint64_t group, uint64_t to)
{
	struct cm_req r = {.op = CM_OP_TRANSFER, .group = group, .version = to};
	return member_run(c, &r, NULL);
}

/* "host:port" with nothing in it that would split the value's fields. */
static bool addr_ok(const char *a)
{
	return a != NULL && strpbrk(a, " \t\n") == NULL &&
	       cm_ac__addr_ok(a, strnlen(a, CM_ADDR_MAX + 1));
}

int cm_node_add(struct cm_client *c, uint64_t id, const char *peer_addr, const char *http_addr)
{
	if (id == 0 || !addr_ok(peer_addr) || (http_addr && *http_addr && !addr_ok(http_addr)))
		return -EINVAL;
	char value[2 * CM_ADDR_MAX + 2];
	int len = snprintf(value, sizeof(value), "%s%s%s", peer_addr,
			   http_addr && *http_addr ? " " : "", http_addr ? http_addr : "");
	struct cm_req r = {.op = CM_OP_NODE_ADD, .version = id,
			   .value = {value, (uint32_t)len}};
	int rv = member_run(c, &r, NULL);
	if (rv == 0)
		cm_client__refresh_map(c);
	return rv;
}

int cm_node_remove(struct cm_client *c, uint64_t id)
{
	struct cm_req r = {.op = CM_OP_NODE_REMOVE, .version = id};
	int rv = member_run(c, &r, NULL);
	if (rv == 0)
		cm_client__refresh_map(c);
	return rv;
}

int cm_shard_set(struct cm_client *c, uint64_t group, const uint64_t *ids, uint32_t n)
{
	if (ids == NULL || n == 0 || n > CM_CLIENT_MAX_REPLICAS)
		return -EINVAL;
	char text[CM_CLIENT_MAX_REPLICAS * 21]; /* 20 digits and a comma each */
	size_t len = 0;
	for (uint32_t k = 0; k < n; k++) {
		for (uint32_t j = 0; j < k; j++)
			if (ids[j] == ids[k])
				return -EINVAL;
		if (ids[k] == 0)
			return -EINVAL;
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%" PRIu64, k ? "," : "",
					ids[k]);
	}
	struct cm_req r = {.op = CM_OP_SHARD_SET, .group = group,
			   .value = {text, (uint32_t)len}};
	int rv = member_run(c, &r, NULL);
	if (rv == 0)
		cm_client__refresh_map(c);
	return rv;
}

/* ---- the leader's status ---- */

const struct cm_group_info *cm_status_group(const struct cm_node_status *st, uint64_t group)
{
	for (uint32_t k = 0; st && k < st->n_groups; k++)
		if (st->groups[k].group == group)
			return &st->groups[k];
	return NULL;
}

#define LEADER_ROUND_PAUSE_MS 100 /* between rounds over every server */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pause_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* What one round of asking learned. */
struct lead_search {
	uint64_t group;
	int32_t hint;     /* server named as leader by an answer, -1 none */
	bool answered;    /* some server answered */
	bool hosted;      /* some server runs the group */
	int err;          /* the last failure, for when nobody answered */
};

/* Ask server s. Returns 1 and *out when it leads the group, else 0 (a
 * leader it names becomes the hint), or -ENOMEM. */
static int ask(struct cm_client *c, uint32_t s, struct lead_search *ls,
	       struct cm_node_status **out)
{
	struct cm_node_status *st = NULL;
	char addr[CM_ADDR_MAX + 1];
	memcpy(addr, c->ac->servers[s].addr, sizeof(addr)); /* the call may add servers */
	int rv = cm_status(c, addr, &st);
	if (rv == -ENOMEM)
		return rv;
	if (rv != 0) {
		ls->err = rv;
		return 0;
	}
	ls->answered = true;
	const struct cm_group_info *g = cm_status_group(st, ls->group);
	if (g != NULL && g->role == RAFT_LEADER) {
		*out = st;
		return 1;
	}
	if (g != NULL) {
		ls->hosted = true;
		int32_t h = g->leader ? cm_ac__node_server(c->ac, g->leader) : -1;
		if (h >= 0 && (uint32_t)h != s)
			ls->hint = h;
	}
	cm_status_free(st);
	return 0;
}

/* One round: the leader remembered or named, then every server not asked
 * yet, each at most once (a leader an answer names goes next). */
static int round_of(struct cm_client *c, struct lead_search *ls, struct cm_node_status **out)
{
	bool asked[CM_CLIENT_MAX_SERVERS] = {0};
	const struct cm_ac__group *g = cm_ac__group_get(c->ac, ls->group, false);
	if (ls->hint < 0 && g != NULL)
		ls->hint = g->leader;
	uint32_t next = 0;
	for (;;) {
		int32_t s = ls->hint;
		ls->hint = -1;
		if (s < 0 || asked[s]) {
			while (next < c->ac->n_servers && asked[next])
				next++;
			if (next == c->ac->n_servers)
				return 0;
			s = (int32_t)next;
		}
		asked[s] = true;
		int rv = ask(c, (uint32_t)s, ls, out);
		if (rv != 0)
			return rv;
	}
}

int cm_member_status(struct cm_client *c, uint64_t group, struct cm_node_status **out)
{
	if (c == NULL || out == NULL || group == 0)
		return -EINVAL;
	*out = NULL;
	/* The node ids of the servers: from the map (best effort). */
	struct cm_shard_map *m;
	if (!c->ac->map.valid && cm_shards(c, &m) == 0)
		cm_shards_free(m);
	uint64_t deadline = now_ms() + c->ac->timeout_ms;
	struct lead_search ls = {.group = group, .hint = -1, .err = -ECONNREFUSED};
	for (;;) {
		ls.answered = ls.hosted = false;
		int rv = round_of(c, &ls, out);
		if (rv != 0)
			return rv < 0 ? rv : 0;
		if (ls.answered && !ls.hosted)
			return -ENOENT;
		if (now_ms() + LEADER_ROUND_PAUSE_MS >= deadline)
			return ls.answered ? CM_ENOLEADER : ls.err;
		pause_ms(LEADER_ROUND_PAUSE_MS);
	}
}
