/* sync_shard.c: the blocking API for the shard registry: cm_shards, cm_shard_add. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client_int.h"

/* ---- cm_shards ---- */

void cm_shards_free(struct cm_shard_map *m)
{
	if (m == NULL)
		return;
	for (uint32_t k = 0; k < m->n_shards; k++)
		free(m->shards[k].prefix);
	for (uint32_t k = 0; k < m->n_nodes; k++) {
		free(m->nodes[k].addr);
		free(m->nodes[k].http);
	}
	free(m->shards);
	free(m->nodes);
	free(m);
}

static char *str_copy(struct cm_bytes b)
{
	char *s = malloc((size_t)b.len + 1);
	if (s == NULL)
		return NULL;
	if (b.len > 0)
		memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	return s;
}

/* Fill m's arrays (allocated, zeroed) from resp; m->n_* count what is
 * filled, so that cm_shards_free() undoes a partial copy. */
static int map_fill(struct cm_shard_map *m, const struct cm_resp *resp)
{
	for (uint32_t k = 0; k < resp->n_shards; k++, m->n_shards++) {
		const struct cm_shard *s = &resp->shards[k];
		struct cm_shard_info *d = &m->shards[k];
		d->group = s->group;
		d->n_replicas = s->n_replicas;
		d->parent = s->parent;
		d->born = s->born;
		memcpy(d->replicas, s->replicas, sizeof(d->replicas));
		if ((d->prefix = str_copy(s->prefix)) == NULL)
			return -ENOMEM;
	}
	for (uint32_t k = 0; k < resp->n_nodes; k++, m->n_nodes++) {
		m->nodes[k].id = resp->nodes[k].id;
		m->nodes[k].state = resp->nodes[k].state;
		m->nodes[k].addr = str_copy(resp->nodes[k].addr);
		m->nodes[k].http = str_copy(resp->nodes[k].http);
		if (m->nodes[k].addr == NULL || m->nodes[k].http == NULL)
			return -ENOMEM;
	}
	return 0;
}

static int copy_shards(struct cm_client__call *s, const struct cm_resp *resp)
{
	if (resp->n_shards > CM_CLIENT_MAX_SHARDS || resp->n_nodes > CM_CLIENT_MAX_NODES)
		return -EMSGSIZE;
	struct cm_shard_map *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->epoch = resp->epoch;
	if (resp->n_shards > 0)
		m->shards = calloc(resp->n_shards, sizeof(*m->shards));
	if (resp->n_nodes > 0)
		m->nodes = calloc(resp->n_nodes, sizeof(*m->nodes));
	bool oom = (resp->n_shards > 0 && m->shards == NULL) ||
		   (resp->n_nodes > 0 && m->nodes == NULL);
	int rv = oom ? -ENOMEM : map_fill(m, resp);
	if (rv != 0) {
		cm_shards_free(m);
		return rv;
	}
	*(struct cm_shard_map **)s->out = m;
	return 0;
}

static int shards_from(struct cm_client *c, const char *server, struct cm_shard_map **out)
{
	*out = NULL;
	struct cm_req r = {.op = CM_OP_SHARDS, .consistency = CM_READ_FOLLOWER};
	struct cm_client__call s = {.copy = copy_shards, .out = out};
	return cm_client__run(c, server, &r, &s);
}

int cm_shards(struct cm_client *c, struct cm_shard_map **out)
{
	if (c == NULL || out == NULL)
		return -EINVAL;
	return shards_from(c, NULL, out);
}

/* ---- cm_shard_add ---- */

static int check_replicas(const uint64_t *ids, uint32_t n)
{
	if (n == 0 || n > CM_CLIENT_MAX_REPLICAS || ids == NULL)
		return -EINVAL;
	for (uint32_t k = 0; k < n; k++) {
		if (ids[k] == 0)
			return -EINVAL;
		for (uint32_t j = 0; j < k; j++)
			if (ids[j] == ids[k])
				return -EINVAL;
	}
	return 0;
}

static int check_prefix(const char *prefix, struct cm_bytes *b)
{
	int rv = cm_client__path(prefix, b);
	if (rv == 0)
		rv = cm_path_validate(b->p, b->len);
	if (rv == 0 && b->len == 1)
		rv = -EINVAL; /* "/" always has its shard */
	return rv;
}

static bool map_has_node(const struct cm_shard_map *m, uint64_t id)
{
	for (uint32_t k = 0; k < m->n_nodes; k++)
		if (m->nodes[k].id == id)
			return true;
	return false;
}

/* Where a split of prefix must start: the group owning it, by a map. */
struct plan {
	uint64_t owner;
	uint64_t epoch; /* of the map that said so */
};

/* The owner of prefix by the fetched map m: its longest path prefix. */
static uint64_t owner_in(const struct cm_shard_map *m, struct cm_bytes prefix)
{
	uint64_t owner = 0;
	size_t best = 0;
	for (uint32_t k = 0; k < m->n_shards; k++) {
		const struct cm_shard_info *s = &m->shards[k];
		size_t n = strlen(s->prefix);
		if (s->group != CM_META_GROUP && cm_path_validate(s->prefix, (uint32_t)n) == 0 &&
		    cm_path_is_under(prefix.p, prefix.len, s->prefix, (uint32_t)n) &&
		    (owner == 0 || n > best)) {
			owner = s->group;
			best = n;
		}
	}
	return owner;
}

/* Step 1: nothing changes unless the registry says it can work. The owner
 * comes from the client's map, the newest it has seen (a SHARDS answer is
 * installed when newer), else from the one just fetched. */
static int check_registry(struct cm_client *c, struct cm_bytes prefix, const uint64_t *ids,
			  uint32_t n, struct plan *pl)
{
	struct cm_shard_map *m;
	int rv = cm_shards(c, &m);
	if (rv != 0)
		return rv;
	for (uint32_t k = 0; rv == 0 && k < m->n_shards; k++)
		if (strcmp(m->shards[k].prefix, prefix.p) == 0)
			rv = -EEXIST;
	for (uint32_t k = 0; rv == 0 && k < n; k++)
		if (!map_has_node(m, ids[k]))
			rv = -EINVAL;
	const struct cm_ac *ac = c->ac;
	const struct cm_ac__shard *sh = cm_ac__map_find(ac, prefix.p, prefix.len);
	if (rv == 0 && sh != NULL && sh->plen == prefix.len)
		rv = -EEXIST;
	if (sh != NULL)
		*pl = (struct plan){sh->group, ac->map.epoch};
	else
		*pl = (struct plan){owner_in(m, prefix), m->epoch};
	if (rv == 0 && pl->owner == 0)
		rv = -EPROTO; /* a registry without "/" */
	cm_shards_free(m);
	return rv;
}

/*
 * Step 2: the top directory, create-only, on the group that owns it now
 * (REQ.group = that group, never re-routed: a boundary inside the new
 * shard's own group would fence all of it). *fenced: that group itself
 * refused, at the epoch planned with, because a boundary is there already:
 * an earlier attempt got this far.
 */
static int make_boundary(struct cm_client *c, struct cm_bytes prefix, const struct plan *pl,
			 bool *fenced)
{
	struct cm_req r = {.op = CM_OP_MKDIR, .flags = CM_MKDIR_BOUNDARY, .group = pl->owner,
			   .mode = S_IFDIR | 0755, .path = prefix,
			   .uid = (uint32_t)getuid(), .gid = (uint32_t)getgid()};
	struct cm_client__call s = {0};
	int rv = cm_client__run(c, NULL, &r, &s);
	*fenced = rv == CM_EWRONGSHARD && s.answered && s.group == pl->owner &&
		  s.token <= pl->epoch;
	return rv;
}

/* Step 3: register it with the meta group's leader. */
static int register_shard(struct cm_client *c, struct cm_bytes prefix, const uint64_t *ids,
			  uint32_t n)
{
	char text[CM_CLIENT_MAX_REPLICAS * 21]; /* 20 digits and a comma each */
	size_t len = 0;
	for (uint32_t k = 0; k < n; k++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%" PRIu64, k ? "," : "",
					ids[k]);
	struct cm_req r = {.op = CM_OP_SHARD_ADD, .group = CM_META_GROUP, .path = prefix,
			   .value = {text, (uint32_t)len}};
	struct cm_client__call s = {0};
	return cm_client__run(c, NULL, &r, &s);
}

/* Bring the client's map to the new epoch, from the meta leader that just
 * applied it (any other server may not have yet). Best effort: a request
 * refused for an old map fetches it anyway. */
void cm_client__refresh_map(struct cm_client *c)
{
	const struct cm_ac__group *g = cm_ac__group_get(c->ac, CM_META_GROUP, false);
	const char *server = g && g->leader >= 0 ? c->ac->servers[g->leader].addr : NULL;
	struct cm_shard_map *m;
	if (shards_from(c, server, &m) == 0)
		cm_shards_free(m); /* installed on the way in (cm_ac__learn) */
}

/* Registry reads when the prefix's owner moved while we worked. */
#define SHARD_ADD_ROUNDS 3

/* Steps 1 and 2, again while a refusal says the registry moved on. */
static int prepare(struct cm_client *c, struct cm_bytes prefix, const uint64_t *ids, uint32_t n)
{
	for (int round = 1;; round++) {
		struct plan pl;
		bool fenced = false;
		int rv = check_registry(c, prefix, ids, n, &pl);
		if (rv == 0)
			rv = make_boundary(c, prefix, &pl, &fenced);
		if (rv == 0 || (rv == CM_EWRONGSHARD && fenced))
			return 0;
		if (rv != CM_EWRONGSHARD || round == SHARD_ADD_ROUNDS)
			return rv;
	}
}

int cm_shard_add(struct cm_client *c, const char *prefix, const uint64_t *replicas, uint32_t n)
{
	struct cm_bytes p;
	if (c == NULL)
		return -EINVAL;
	int rv = check_prefix(prefix, &p);
	if (rv == 0)
		rv = check_replicas(replicas, n);
	if (rv == 0)
		rv = prepare(c, p, replicas, n);
	if (rv == 0)
		rv = register_shard(c, p, replicas, n);
	if (rv == 0)
		cm_client__refresh_map(c);
	return rv;
}
