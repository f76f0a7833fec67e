/* registry.h: the shard map: path prefix -> group and replicas, and its epoch. */
#ifndef CONFMAN_REGISTRY_H
#define CONFMAN_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "server/config.h"
#include "server/store.h"

/*
 * The registry lives in the meta Raft group (CM_META_GROUP, replicated on
 * every node), in its kv:
 *
 * - the seed, "/seed": the cluster file's groups, one line "ID R1,R2 PREFIX"
 *   each, written create-only by the meta group's first leader. Until it is
 *   recorded a node uses its cluster file's groups; afterwards the seed wins:
 *   editing [group.*] sections of a running cluster's file changes nothing
 *   (a warning says so) and cannot hide keys behind a new prefix, as etcd
 *   ignores --initial-cluster once its data directory exists. Shards are
 *   added with SHARD_ADD, which checks the prefix is empty.
 * - the shards added at run time, one file per shard: "/p" + prefix + "/@"
 *   whose value is the replica ids "1,2,3". The file is created create-only,
 *   so a prefix is added once; the new group's id is CM_SHARD_GID_BASE + the
 *   file's create index, unique and the same on every node.
 *
 * - a shard split off a written prefix: the same file, whose value says
 *   "1,2,3 split PARENT" from its allocation (pending: the parent still
 *   serves the prefix; the group is neither routed nor started) and
 *   "1,2,3 split PARENT BORN" once the parent's split entry applied at
 *   index BORN (server/split.c). Its group starts from the parent's state
 *   at BORN on the parent's nodes: nobody bootstraps it.
 * - shards merged back into their parent (server/merge.c): their file is
 *   renamed to "/g/GID" (one entry: it leaves the map, the prefix is free
 *   again); the group is retired: routed nowhere, and every replica stops it
 *   and drops its data.
 * - replica sets changed at run time (shard move, node remove): "/r/GID"
 *   whose value is the nodes that run the group's replicas now, a superset
 *   of its Raft members (confmanctl grows it before adding a learner and
 *   shrinks it after removing a member). A node newly listed starts the
 *   group empty and waits for its leader's snapshot; a node no longer
 *   listed, and no longer a member, stops it and drops its data.
 *
 * The epoch is 1 + the highest create index of an added shard or modify
 * index of a changed replica set: it changes whenever the map does.
 */
#define CM_MAX_SHARDS 4096
#define CM_REG_SEED "/seed"
#define CM_REG_OVERRIDES "/r"
#define CM_REG_RETIRED "/g"

struct cm_registry {
	const struct cm_group_info **v; /* by insertion; cfg's borrowed, added ones owned */
	bool *owned;
	uint32_t n, cap;
	uint64_t epoch;
	struct cm_group_info meta; /* the meta group: every node of the cluster */
	bool seeded; /* the meta group's seed was read (and, when it differed, used) */
};

int cm_reg_init(struct cm_registry *reg, const struct cm_config *cfg);
void cm_reg_free(struct cm_registry *reg);

/* Add the shards the meta group's kv holds that reg lacks and take its
 * current replica sets. Returns the number added or changed (>= 0) or a
 * negative errno. */
int cm_reg_load(struct cm_registry *reg, const struct cm_config *cfg, struct cm_store *s,
		MDB_txn *txn);

/*
 * cm_reg_seed_check - compare the seed the meta group recorded (if any yet)
 * with the cluster file's groups; differences are logged. At boot (before
 * any path group runs) a differing seed replaces the cluster file's entries
 * of reg; later it can only be logged. Returns 0 (none recorded yet, or the
 * same), 1 (different) or a negative errno (an unusable seed).
 */
int cm_reg_seed_check(struct cm_registry *reg, const struct cm_config *cfg, struct cm_store *s,
		      MDB_txn *txn, bool boot);

/* reg_seed.c: the seed's text for cfg's groups (malloc'd, into *out). */
int cm_reg_seed_text(const struct cm_config *cfg, char **out, uint32_t *len);
/* Parse a seed into *out (malloc'd, *n groups); every replica must be a
 * node of cfg. 0 or -EINVAL. */
int cm_reg_seed_parse(const struct cm_config *cfg, const char *p, uint32_t len,
		      struct cm_group_info **out, uint32_t *n);
/* How many of cfg's groups and the seed's differ (id, prefix or replica
 * set), each logged as a warning when log is set. */
uint32_t cm_reg_seed_diff(const struct cm_config *cfg, const struct cm_group_info *seed,
			  uint32_t n, bool log);

/* The shard of a path: the longest matching prefix ("/" always matches). */
const struct cm_group_info *cm_reg_route(const struct cm_registry *reg, const char *path,
					 uint32_t len);
/* The shard whose prefix is exactly this one, or NULL. */
const struct cm_group_info *cm_reg_find(const struct cm_registry *reg, const char *prefix,
					uint32_t len);
bool cm_reg_hosts(const struct cm_group_info *gi, uint64_t node_id);
/* Whether gi is a split's group whose split has not applied yet. */
bool cm_reg_pending(const struct cm_group_info *gi);
/* Whether node_id is one of the replicas gi was created with. */
bool cm_reg_founder(const struct cm_group_info *gi, uint64_t node_id);
/* Record gi's current replicas as its founders (a group being created). */
void cm_reg_found(struct cm_group_info *gi);

/* The meta kv path of a prefix's registry file, into buf (CM_PATH_MAX + 1). */
int cm_reg_key(const char *prefix, uint32_t len, char *buf, uint32_t *out_len);

/* Parse "1,2,3" into ids that must all be cluster nodes. 0 or -EINVAL. */
int cm_reg_parse_replicas(const struct cm_config *cfg, const char *s, uint32_t len,
			  uint64_t *ids, uint32_t *n);

#endif /* CONFMAN_REGISTRY_H */
