/* registry.c: the shard map: path prefix -> group and replicas, and its epoch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confman/error.h"
#include "confman/path.h"
#include "server/kv.h"
#include "server/log.h"
#include "server/registry.h"

static int reg_push(struct cm_registry *reg, const struct cm_group_info *gi, bool owned)
{
	if (reg->n == CM_MAX_SHARDS)
		return -ENOSPC;
	if (reg->n == reg->cap) {
		uint32_t cap = reg->cap ? reg->cap * 2 : 16;
		const struct cm_group_info **v = realloc(reg->v, sizeof(*v) * cap);
		if (v == NULL)
			return -ENOMEM;
		reg->v = v;
		bool *o = realloc(reg->owned, sizeof(*o) * cap);
		if (o == NULL)
			return -ENOMEM;
		reg->owned = o;
		reg->cap = cap;
	}
	reg->v[reg->n] = gi;
	reg->owned[reg->n] = owned;
	reg->n++;
	return 0;
}

int cm_reg_init(struct cm_registry *reg, const struct cm_config *cfg)
{
	memset(reg, 0, sizeof(*reg));
	reg->epoch = 1;
	reg->meta.id = CM_META_GROUP;
	for (uint32_t k = 0; k < cfg->n_nodes && k < RAFT_MAX_NODES; k++)
		reg->meta.replicas[reg->meta.n_replicas++] = cfg->nodes[k].id;
	reg->meta.n_founders = reg->meta.n_replicas;
	memcpy(reg->meta.founders, reg->meta.replicas, sizeof(reg->meta.founders));
	/* Copies: a replica set changes at run time (cm_reg_load). */
	for (uint32_t k = 0; k < cfg->n_groups; k++) {
		struct cm_group_info *gi = malloc(sizeof(*gi));
		int rv = gi ? reg_push(reg, gi, true) : -ENOMEM;
		if (rv != 0) {
			free(gi);
			return rv;
		}
		*gi = cfg->groups[k];
		cm_reg_found(gi);
	}
	return 0;
}

void cm_reg_found(struct cm_group_info *gi)
{
	gi->n_founders = gi->n_replicas;
	memcpy(gi->founders, gi->replicas, sizeof(gi->founders));
}

void cm_reg_free(struct cm_registry *reg)
{
	for (uint32_t k = 0; k < reg->n; k++)
		if (reg->owned[k])
			free((void *)reg->v[k]);
	free(reg->v);
	free(reg->owned);
	memset(reg, 0, sizeof(*reg));
}

bool cm_reg_hosts(const struct cm_group_info *gi, uint64_t node_id)
{
	if (gi->retired)
		return false;
	for (uint32_t k = 0; k < gi->n_replicas; k++)
		if (gi->replicas[k] == node_id)
			return true;
	return false;
}

bool cm_reg_pending(const struct cm_group_info *gi)
{
	return gi->parent != 0 && gi->born == 0;
}

bool cm_reg_founder(const struct cm_group_info *gi, uint64_t node_id)
{
	for (uint32_t k = 0; k < gi->n_founders; k++)
		if (gi->founders[k] == node_id)
			return true;
	return false;
}

const struct cm_group_info *cm_reg_route(const struct cm_registry *reg, const char *path,
					 uint32_t len)
{
	const struct cm_group_info *best = NULL;
	size_t best_len = 0;
	for (uint32_t k = 0; k < reg->n; k++) {
		size_t plen = strlen(reg->v[k]->prefix);
		if (cm_reg_pending(reg->v[k]) || reg->v[k]->retired)
			continue; /* its parent serves it (until the split, or since the merge) */
		if (cm_path_is_under(path, len, reg->v[k]->prefix, (uint32_t)plen) &&
		    (best == NULL || plen > best_len)) {
			best = reg->v[k];
			best_len = plen;
		}
	}
	return best;
}

const struct cm_group_info *cm_reg_find(const struct cm_registry *reg, const char *prefix,
					uint32_t len)
{
	for (uint32_t k = 0; k < reg->n; k++)
		if (!reg->v[k]->retired && strlen(reg->v[k]->prefix) == len &&
		    memcmp(reg->v[k]->prefix, prefix, len) == 0)
			return reg->v[k];
	return NULL;
}

int cm_reg_key(const char *prefix, uint32_t len, char *buf, uint32_t *out_len)
{
	if (len < 2 || len + 4 > CM_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(buf, "/p", 2);
	memcpy(buf + 2, prefix, len);
	memcpy(buf + 2 + len, "/@", 2);
	*out_len = len + 4;
	buf[*out_len] = '\0';
	return 0;
}

int cm_reg_parse_replicas(const struct cm_config *cfg, const char *s, uint32_t len,
			  uint64_t *ids, uint32_t *n)
{
	char buf[256];
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	*n = 0;
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long long id = strtoull(t, &end, 10);
		if (*end != '\0' || id == 0 || *n == RAFT_MAX_NODES || !cm_config_node(cfg, id))
			return -EINVAL;
		for (uint32_t k = 0; k < *n; k++)
			if (ids[k] == id)
				return -EINVAL;
		ids[(*n)++] = id;
	}
	return *n ? 0 : -EINVAL;
}

/* ---- loading the added shards from the meta group's kv ---- */

struct names {
	char (*v)[CM_NAME_MAX + 1];
	bool *dir;
	uint32_t n, cap;
};

static int collect(void *arg, struct cm_bytes name, const struct cm_attr *attr)
{
	struct names *ns = arg;
	if (name.len > CM_NAME_MAX)
		return -EIO;
	if (ns->n == ns->cap) {
		uint32_t cap = ns->cap ? ns->cap * 2 : 8;
		void *v = realloc(ns->v, sizeof(*ns->v) * cap);
		if (v == NULL)
			return -ENOMEM;
		ns->v = v;
		bool *d = realloc(ns->dir, sizeof(*d) * cap);
		if (d == NULL)
			return -ENOMEM;
		ns->dir = d;
		ns->cap = cap;
	}
	memcpy(ns->v[ns->n], name.p, name.len);
	ns->v[ns->n][name.len] = '\0';
	ns->dir[ns->n] = (attr->mode & 0170000) == 0040000;
	ns->n++;
	return 0;
}

/* A shard file's value: "R1,R2[ split PARENT[ BORN]]" (registry.h). */
static int parse_value(const struct cm_config *cfg, struct cm_bytes v, struct cm_group_info *gi)
{
	const char *sp = memchr(v.p, ' ', v.len);
	uint32_t rlen = sp ? (uint32_t)(sp - v.p) : v.len;
	int rv = cm_reg_parse_replicas(cfg, v.p, rlen, gi->replicas, &gi->n_replicas);
	if (rv != 0 || sp == NULL)
		return rv;
	char tail[64];
	uint32_t tl = v.len - rlen - 1;
	if (tl >= sizeof(tail))
		return -EINVAL;
	memcpy(tail, sp + 1, tl);
	tail[tl] = '\0';
	unsigned long long parent = 0, born = 0;
	int got = sscanf(tail, "split %llu %llu", &parent, &born);
	if (got < 1 || parent == 0)
		return -EINVAL;
	gi->parent = parent;
	gi->born = got == 2 ? born : 0;
	return 0;
}

/* The shard file at path ("/p<prefix>/@"): add it if new, take a split's
 * progress (pending -> born) if not. 1 when something changed. */
static int add_file(struct cm_registry *reg, const struct cm_config *cfg, struct cm_store *s,
		    MDB_txn *txn, const char *path, uint32_t len)
{
	struct cm_attr attr;
	struct cm_bytes value;
	int rv = cm_kv_get(s, txn, CM_META_GROUP, (struct cm_bytes){path, len}, &attr, &value);
	if (rv != 0)
		return rv;
	uint32_t plen = len - 4; /* strip "/p" and "/@" */
	struct cm_group_info *gi = calloc(1, sizeof(*gi));
	if (gi == NULL)
		return -ENOMEM;
	gi->id = CM_SHARD_GID_BASE + attr.create_index;
	memcpy(gi->prefix, path + 2, plen);
	gi->prefix[plen] = '\0';
	rv = parse_value(cfg, value, gi);
	/* A pending split changes no route: clients are not sent for a new
	 * map (they retry WRONGSHARD until the split's group is born). */
	if (rv == 0 && !cm_reg_pending(gi) && attr.mod_index + 1 > reg->epoch)
		reg->epoch = attr.mod_index + 1;
	struct cm_group_info *old = (struct cm_group_info *)cm_reg_find(reg, path + 2, plen);
	if (rv != 0 || old != NULL) {
		bool born = rv == 0 && old != NULL && gi->born != old->born;
		if (born)
			old->born = gi->born; /* the split applied: routed and started now */
		free(gi);
		return rv != 0 ? rv : born;
	}
	if (gi->parent == 0)
		cm_reg_found(gi); /* a split's group has no founders: see node.c */
	rv = reg_push(reg, gi, true);
	if (rv != 0) {
		free(gi);
		return rv;
	}
	return 1;
}

static int walk(struct cm_registry *reg, const struct cm_config *cfg, struct cm_store *s,
		MDB_txn *txn, char *path, uint32_t len)
{
	struct names ns = {0};
	int rv = cm_kv_list(s, txn, CM_META_GROUP, (struct cm_bytes){path, len}, collect, &ns);
	int added = 0;
	for (uint32_t k = 0; rv >= 0 && k < ns.n; k++) {
		uint32_t nl = (uint32_t)strlen(ns.v[k]);
		if (len + 1 + nl > CM_PATH_MAX)
			continue;
		path[len] = '/';
		memcpy(path + len + 1, ns.v[k], nl + 1);
		if (ns.dir[k])
			rv = walk(reg, cfg, s, txn, path, len + 1 + nl);
		else if (strcmp(ns.v[k], "@") == 0)
			rv = add_file(reg, cfg, s, txn, path, len + 1 + nl);
		if (rv > 0)
			added += rv;
		path[len] = '\0';
	}
	free(ns.v);
	free(ns.dir);
	if (rv == -ENOENT)
		rv = 0; /* nothing added yet */
	return rv < 0 ? rv : added;
}

/* ---- replica sets changed at run time: "/r/GID" = "1,2,4" ---- */

struct over_walk {
	struct cm_registry *reg;
	const struct cm_config *cfg;
	struct cm_store *s;
	MDB_txn *txn;
	int changed;
};

static struct cm_group_info *reg_by_id(struct cm_registry *reg, uint64_t id)
{
	for (uint32_t k = 0; k < reg->n; k++)
		if (reg->v[k]->id == id)
			return (struct cm_group_info *)reg->v[k];
	return NULL;
}

static int load_override(void *arg, struct cm_bytes name, const struct cm_attr *attr)
{
	(void)attr;
	struct over_walk *w = arg;
	char path[48];
	if (name.len == 0 || name.len > 20)
		return 0;
	int pl = snprintf(path, sizeof(path), CM_REG_OVERRIDES "/%.*s", (int)name.len, name.p);
	struct cm_group_info *gi = reg_by_id(w->reg, strtoull(path + 3, NULL, 10));
	struct cm_attr a;
	struct cm_bytes v;
	uint64_t ids[RAFT_MAX_NODES];
	uint32_t n_ids;
	if (gi == NULL)
		return 0; /* a shard this node has not loaded yet: next time */
	if (cm_kv_get(w->s, w->txn, CM_META_GROUP, (struct cm_bytes){path, (uint32_t)pl}, &a, &v) != 0 ||
	    cm_reg_parse_replicas(w->cfg, v.p, v.len, ids, &n_ids) != 0) {
		cm_log_error("registry: %s is unreadable: skipped", path);
		return 0;
	}
	if (a.mod_index + 1 > w->reg->epoch)
		w->reg->epoch = a.mod_index + 1;
	if (n_ids == gi->n_replicas && memcmp(ids, gi->replicas, n_ids * sizeof(ids[0])) == 0)
		return 0;
	memcpy(gi->replicas, ids, n_ids * sizeof(ids[0]));
	gi->n_replicas = n_ids;
	w->changed++;
	return 0;
}

/* "/g/GID": a shard merged back. Its entry stays (running groups point at
 * it) but is retired; its prefix may be added again (a new group). */
static int load_retired(void *arg, struct cm_bytes name, const struct cm_attr *attr)
{
	struct over_walk *w = arg;
	char id[24];
	if (name.len == 0 || name.len >= sizeof(id))
		return 0;
	memcpy(id, name.p, name.len);
	id[name.len] = '\0';
	struct cm_group_info *gi = reg_by_id(w->reg, strtoull(id, NULL, 10));
	if (attr->mod_index + 1 > w->reg->epoch)
		w->reg->epoch = attr->mod_index + 1;
	if (gi == NULL || gi->retired)
		return 0;
	gi->retired = true;
	w->changed++;
	return 0;
}

int cm_reg_load(struct cm_registry *reg, const struct cm_config *cfg, struct cm_store *s,
		MDB_txn *txn)
{
	char path[CM_PATH_MAX + 1] = "/p";
	int added = walk(reg, cfg, s, txn, path, 2);
	if (added < 0)
		return added;
	struct over_walk w = {reg, cfg, s, txn, 0};
	int rv = cm_kv_list(s, txn, CM_META_GROUP,
			    (struct cm_bytes){CM_REG_OVERRIDES, sizeof(CM_REG_OVERRIDES) - 1},
			    load_override, &w);
	if (rv == 0 || rv == -ENOENT)
		rv = cm_kv_list(s, txn, CM_META_GROUP,
				(struct cm_bytes){CM_REG_RETIRED, sizeof(CM_REG_RETIRED) - 1},
				load_retired, &w);
	if (rv != 0 && rv != -ENOENT)
		return rv;
	return added + w.changed;
}

/* ---- the seed ---- */

/* Put the seed's groups where the cluster file's were: reg then routes and
 * hosts what the cluster recorded, not what this node's file says now. */
static int reg_use_seed(struct cm_registry *reg, const struct cm_group_info *seed, uint32_t n)
{
	struct cm_registry old = *reg;
	reg->v = NULL;
	reg->owned = NULL;
	reg->n = reg->cap = 0;
	int rv = 0;
	for (uint32_t k = 0; rv == 0 && k < n; k++) {
		struct cm_group_info *gi = malloc(sizeof(*gi));
		rv = gi ? reg_push(reg, gi, true) : -ENOMEM;
		if (rv == 0) {
			*gi = seed[k];
			cm_reg_found(gi);
		} else {
			free(gi);
		}
	}
	for (uint32_t k = 0; rv == 0 && k < old.n; k++)
		if (old.v[k]->id >= CM_SHARD_GID_BASE) /* shards added at run time */
			rv = reg_push(reg, old.v[k], true);
	if (rv != 0) {
		for (uint32_t k = 0; k < reg->n; k++) /* added ones are still old's */
			if (reg->v[k]->id < CM_SHARD_GID_BASE)
				free((void *)reg->v[k]);
		free(reg->v);
		free(reg->owned);
		reg->v = old.v;
		reg->owned = old.owned;
		reg->n = old.n;
		reg->cap = old.cap;
		return rv;
	}
	for (uint32_t k = 0; k < old.n; k++) /* the file's groups, replaced */
		if (old.v[k]->id < CM_SHARD_GID_BASE)
			free((void *)old.v[k]);
	free(old.v);
	free(old.owned);
	return 0;
}

int cm_reg_seed_check(struct cm_registry *reg, const struct cm_config *cfg, struct cm_store *s,
		      MDB_txn *txn, bool boot)
{
	if (reg->seeded)
		return 0;
	struct cm_attr attr;
	struct cm_bytes value;
	int rv = cm_kv_get(s, txn, CM_META_GROUP, (struct cm_bytes){CM_REG_SEED, 5}, &attr, &value);
	if (rv == -ENOENT)
		return 0; /* the first start: the meta group has not recorded it yet */
	struct cm_group_info *seed = NULL;
	uint32_t n = 0;
	if (rv == 0)
		rv = cm_reg_seed_parse(cfg, value.p, value.len, &seed, &n);
	if (rv != 0) {
		cm_log_error("registry: the recorded seed is unusable (%s): does the cluster "
			     "file still list every node it names?", cm_strerror(rv));
		return rv;
	}
	reg->seeded = true;
	if (cm_reg_seed_diff(cfg, seed, n, true) == 0) {
		cm_log_info("registry: seeded with the cluster file's %u groups", n);
		free(seed);
		return 0;
	}
	if (boot) {
		cm_log_warn("registry: the cluster file's groups are read at the first start "
			    "only; using the %u the cluster recorded then (add shards with "
			    "`confmanctl shard add`)", n);
		rv = reg_use_seed(reg, seed, n);
	} else {
		cm_log_error("registry: this node started from a cluster file whose groups "
			     "differ from the cluster's; restart it to use the cluster's");
	}
	free(seed);
	return rv < 0 ? rv : 1;
}
