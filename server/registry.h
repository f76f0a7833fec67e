/* registry.h: the shard map: path prefix -> group and replicas, and its epoch. */
#ifndef CONFMAN_REGISTRY_H
#define CONFMAN_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "server/config.h"
#include "server/store.h"

/*
 * The registry is the cluster file's groups (the seed, the same on every
 * node) plus the shards added at run time, which the meta Raft group
 * (CM_META_GROUP, replicated on every node) holds in its kv as one file per
 * shard: "/p" + prefix + "/@" whose value is the replica ids "1,2,3". The
 * file is created create-only, so a prefix is added once; the new group's id
 * is CM_SHARD_GID_BASE + the file's create index, unique and the same on
 * every node. The epoch is 1 + the highest such create index: it changes
 * whenever the map does.
 */
#define CM_SHARD_GID_BASE (1ull << 32)
#define CM_MAX_SHARDS 4096

struct cm_registry {
	const struct cm_group_info **v; /* by insertion; cfg's borrowed, added ones owned */
	bool *owned;
	uint32_t n, cap;
	uint64_t epoch;
	struct cm_group_info meta; /* the meta group: every node of the cluster */
};

int cm_reg_init(struct cm_registry *reg, const struct cm_config *cfg);
void cm_reg_free(struct cm_registry *reg);

/* Add the shards the meta group's kv holds that reg lacks. Returns the
 * number added (>= 0) or a negative errno. */
int cm_reg_load(struct cm_registry *reg, const struct cm_config *cfg, struct cm_store *s,
		MDB_txn *txn);

/* The shard of a path: the longest matching prefix ("/" always matches). */
const struct cm_group_info *cm_reg_route(const struct cm_registry *reg, const char *path,
					 uint32_t len);
/* The shard whose prefix is exactly this one, or NULL. */
const struct cm_group_info *cm_reg_find(const struct cm_registry *reg, const char *prefix,
					uint32_t len);
bool cm_reg_hosts(const struct cm_group_info *gi, uint64_t node_id);

/* The meta kv path of a prefix's registry file, into buf (CM_PATH_MAX + 1). */
int cm_reg_key(const char *prefix, uint32_t len, char *buf, uint32_t *out_len);

/* Parse "1,2,3" into ids that must all be cluster nodes. 0 or -EINVAL. */
int cm_reg_parse_replicas(const struct cm_config *cfg, const char *s, uint32_t len,
			  uint64_t *ids, uint32_t *n);

#endif /* CONFMAN_REGISTRY_H */
