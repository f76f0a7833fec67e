/* restore.c: confmand --restore FILE: a new cluster from a backup.
 *
 * Every node of the new cluster runs with the same FILE on an empty data
 * directory (etcdutl snapshot restore's model: each member restores its own
 * copy). The whole file is verified first (every checksum, every group's
 * records parse): a damaged file writes nothing. The backup's shards then
 * replace the cluster file's groups, numbered 1.. in the backup's order
 * (the root first), each on every node of the cluster file (at most
 * RAFT_MAX_NODES, lowest ids), and each group's tree, as saved, becomes its
 * state at the index it was saved at: the kv, the Raft snapshot at that
 * index (term 1, those nodes as voters) and the hard state, in one LMDB
 * transaction. Identical on every node, so the groups elect and go on; the
 * meta group starts fresh and records the restored map as its seed. Values,
 * modes, owners, versions and times are the backup's bytes. The cluster id
 * must differ from the backup's unless --restore-keep-cluster-id, so that a
 * restored copy never talks to the old cluster's nodes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/snapfile.h"
#include "server/kv.h"
#include "server/log.h"
#include "server/node.h"

/* The HEAD's cluster id into out. */
static int head_cluster(const struct cm_snap_sec *s, char *out, size_t cap)
{
	msgpack_unpacked up;
	const msgpack_object *o;
	int rv = cm_snap_head_field(s, "cluster", &up, &o);
	if (rv == 0 && (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap))
		rv = -EBADMSG;
	if (rv == 0) {
		memcpy(out, o->via.str.ptr, o->via.str.size);
		out[o->via.str.size] = '\0';
	}
	msgpack_unpacked_destroy(&up);
	return rv;
}

/* The nodes every restored group runs on: the file's, lowest ids first. */
static uint32_t restore_voters(const struct cm_config *cfg, uint64_t *ids)
{
	uint32_t n = 0;
	for (uint64_t last = 0; n < RAFT_MAX_NODES; n++) {
		uint64_t next = 0;
		for (uint32_t k = 0; k < cfg->n_nodes; k++)
			if (cfg->nodes[k].id > last && (next == 0 || cfg->nodes[k].id < next))
				next = cfg->nodes[k].id;
		if (next == 0)
			break;
		ids[n] = last = next;
	}
	return n;
}

/* Add the group of a GROUP section to cfg (the new cluster's groups). */
static int add_group(struct cm_config *cfg, const struct cm_snap_group *sg)
{
	if (cfg->n_groups == cfg->cap_groups) {
		uint32_t cap = cfg->cap_groups ? 2 * cfg->cap_groups : 16;
		struct cm_group_info *v = realloc(cfg->groups, sizeof(*v) * cap);
		if (v == NULL)
			return -ENOMEM;
		cfg->groups = v;
		cfg->cap_groups = cap;
	}
	struct cm_group_info *gi = &cfg->groups[cfg->n_groups];
	memset(gi, 0, sizeof(*gi));
	gi->id = cfg->n_groups + 1;
	snprintf(gi->prefix, sizeof(gi->prefix), "%s", sg->prefix);
	gi->n_replicas = restore_voters(cfg, gi->replicas);
	cfg->n_groups++;
	return 0;
}

/* One group's state, at the index it was saved at. */
static int write_group(struct cm_node *n, MDB_txn *txn, const struct cm_group_info *gi,
		       const struct cm_snap_group *sg)
{
	struct raft_snap_meta snap = {.index = sg->index, .term = 1, .size = sg->blob_len};
	snap.conf.n = gi->n_replicas;
	for (uint32_t k = 0; k < gi->n_replicas; k++) {
		snap.conf.ids[k] = gi->replicas[k];
		snap.conf.kinds[k] = RAFT_VOTER;
	}
	struct raft_hard_state hs = {.term = 1, .commit = sg->index};
	int rv = cm_kv_restore(n->store, txn, gi->id, sg->blob, sg->blob_len);
	if (rv == 0)
		rv = cm_store_snap_put(n->store, txn, gi->id, sg->blob, sg->blob_len);
	if (rv == 0)
		rv = cm_store_hs_put(n->store, txn, gi->id, &hs);
	if (rv == 0)
		rv = cm_store_meta_put(n->store, txn, gi->id, sg->index, &snap);
	if (rv == 0)
		cm_log_warn("restore: group %" PRIu64 " (%s) from the backup's group %" PRIu64
			    ": %" PRIu64 " keys at index %" PRIu64,
			    gi->id, gi->prefix, sg->group, sg->keys, sg->index);
	return rv;
}

/* One pass over the file: verify (txn NULL: collect the groups into cfg)
 * or write (txn set). */
static int restore_pass(struct cm_node *n, MDB_txn *txn, char *why, size_t cap)
{
	FILE *f = fopen(n->cfg->restore, "rb");
	if (f == NULL) {
		snprintf(why, cap, "cannot open: %s", strerror(errno));
		return -errno;
	}
	struct cm_snap_rd r;
	char cluster[CM_CLUSTER_MAX + 1] = "";
	uint32_t k = 0;
	bool end = false;
	int rv = cm_snap_rd_open(&r, f);
	while (rv == 0 && (rv = cm_snap_rd_next(&r)) == 1) {
		struct cm_snap_group sg;
		rv = 0;
		if (r.sec.type == CM_SNAP_HEAD)
			rv = head_cluster(&r.sec, cluster, sizeof(cluster));
		else if (r.sec.type == CM_SNAP_END)
			end = true;
		else if ((rv = cm_snap_group_parse(&r.sec, &sg)) == 0 && sg.group != CM_META_GROUP)
			rv = txn ? write_group(n, txn, &n->cfg->groups[k++], &sg)
				 : add_group(n->cfg, &sg);
	}
	if (rv == 0 && !end)
		rv = -EBADMSG;
	snprintf(why, cap, "%s", r.why[0] ? r.why : rv == -EBADMSG ? "incomplete (no END)" : "");
	cm_snap_rd_close(&r);
	fclose(f);
	if (rv == 0 && txn == NULL && !n->cfg->restore_keep_id &&
	    strcmp(cluster, n->cfg->cluster_id) == 0) {
		snprintf(why, cap, "the backup is of cluster '%s': give the new cluster another id "
			 "([cluster] id), or --restore-keep-cluster-id", cluster);
		rv = -EEXIST;
	}
	return rv;
}

int cm__restore(struct cm_node *n)
{
	if (!n->cfg->restore[0])
		return 0;
	MDB_txn *txn;
	struct raft_hard_state hs;
	char why[512] = "";
	int rv = cm_store_txn_begin(n->store, false, &txn);
	if (rv != 0)
		return rv;
	rv = cm_store_hs_get(n->store, txn, CM_META_GROUP, &hs);
	cm_store_txn_abort(txn);
	if (rv == 0) {
		fprintf(stderr, "confmand: --restore: %s holds a node's data already: restore "
				"into an empty directory\n", n->cfg->data_dir);
		return -EEXIST;
	}
	n->cfg->n_groups = 0; /* the backup's shards replace the file's */
	rv = restore_pass(n, NULL, why, sizeof(why));
	if (rv == 0 && n->cfg->n_groups == 0) {
		snprintf(why, sizeof(why), "no shard in it");
		rv = -EBADMSG;
	}
	if (rv == 0 && (rv = cm_store_txn_begin(n->store, true, &txn)) == 0) {
		rv = restore_pass(n, txn, why, sizeof(why));
		if (rv == 0)
			rv = cm_store_txn_commit(txn);
		else
			cm_store_txn_abort(txn);
	}
	if (rv != 0) {
		fprintf(stderr, "confmand: --restore %s: %s (%s); nothing written\n", n->cfg->restore,
			why[0] ? why : "cannot restore", cm_strerror(rv));
		return rv;
	}
	cm_log_warn("restore: a new cluster '%s' from %s: %u shards", n->cfg->cluster_id,
		    n->cfg->restore, n->cfg->n_groups);
	return 0;
}
