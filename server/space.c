/* space.c: refusing client writes before the store or its disk fills up (etcd's NOSPACE). */
#include <errno.h>
#include <stdint.h>
#include <sys/statvfs.h>

#include "server/log.h"
#include "server/node.h"

/*
 * Two things fill up: the LMDB map (--map-size) and the filesystem holding
 * --data (LMDB's file is sparse: it takes blocks as it grows, so a commit
 * can fail with ENOSPC long before the map is full). A failed commit stops
 * the node (turn.c: the core was promised its batch is durable, and nothing
 * was acknowledged; fail-stop is the only safe answer). So clients are
 * refused first, with ENOSPC, and Raft's own writes (entries other nodes
 * proposed, hard state, applying what committed, snapshots) go on in what
 * is left:
 *
 *   LOW   more than CM_STORE_HIGH_WATER of --map-size used, the file's end
 *         past CM_STORE_HIGH_WATER of the whole map, or less than
 *         --min-free-mb free on disk: writes that add get ENOSPC; a DELETE
 *         or a PUT of an empty value (rm, truncate) is still accepted, so
 *         clients can make room (the map's reserve holds their entries).
 *   FULL  the file's end past CM_STORE_HARD_WATER of the whole map, or less
 *         than half of --min-free-mb free: every client write gets ENOSPC.
 *
 * Reads write nothing: they go on. Leaving LOW needs nothing but space:
 * LMDB reuses pages that deletes freed (store.h counts them as free), and
 * disk space is sampled again every tick.
 *
 * That a leader has room does not mean its followers do: their stores differ
 * (free-page fragmentation, staged snapshot chunks, their own disks), and a
 * follower whose store fills stops. So every node's PING carries its level,
 * and a leader refuses a client write when any replica of the group heard
 * from within an election timeout is short, as etcd's NOSPACE alarm stops
 * writes cluster-wide. LMDB's map itself is --map-size plus a reserve
 * (store.c): the levels are measured against --map-size, so Raft's own
 * writes still fit after clients were stopped.
 */

#define SPACE_OK CM_SPACE_OK
#define SPACE_LOW CM_SPACE_LOW
#define SPACE_FULL CM_SPACE_FULL

static int level_of(const struct cm_node *n)
{
	uint64_t reserve = n->cfg->min_free_bytes;
	double usage = cm_store_usage(n->store), top = cm_store_top(n->store);
	if (top > CM_STORE_HARD_WATER || n->disk_free < reserve / 2)
		return SPACE_FULL;
	if (usage > CM_STORE_HIGH_WATER || top > CM_STORE_HIGH_WATER || n->disk_free < reserve)
		return SPACE_LOW;
	return SPACE_OK;
}

/* rm, rmdir, truncate and `: > file` give space back, however little. */
static bool frees_space(const struct cm_req *req)
{
	if (req->op == CM_OP_DELETE)
		return true;
	return req->op == CM_OP_PUT && req->value.len == 0 && !(req->flags & CM_PUT_KEEP_VALUE);
}

/* The shortest of space among g's replicas: this node's own, measured now,
 * and the others' as their last PINGs said. */
static int group_level(struct cm_node *n, const struct cm_group *g)
{
	int level = level_of(n);
	uint64_t within = (uint64_t)n->cfg->election_ticks * n->cfg->tick_ms;
	for (uint32_t k = 0; k < g->info->n_replicas; k++) {
		uint64_t id = g->info->replicas[k];
		int peer = id == n->cfg->node_id ? SPACE_OK : cm_net_peer_space(n->net, id, within);
		level = peer > level ? peer : level;
	}
	return level;
}

int cm__space_check(struct cm_node *n, const struct cm_group *g, const struct cm_req *req)
{
	int level = group_level(n, g);
	if (level == SPACE_OK || (level == SPACE_LOW && frees_space(req)))
		return 0;
	return -ENOSPC;
}

/* statvfs is one syscall and no I/O: cheap enough for every tick. A data
 * directory that cannot be measured is not held against clients: a commit
 * that then fails still stops the node before anything is acknowledged. */
static uint64_t disk_free(const char *dir)
{
	struct statvfs sv;
	if (statvfs(dir, &sv) != 0)
		return UINT64_MAX;
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

/* Say when a peer's store level changes: on a leader that is why clients
 * get ENOSPC though its own store has room. */
static void log_peers(struct cm_node *n)
{
	static const char *const what[] = {"has room again", "is short of space (LOW)",
					   "is full (FULL)"};
	for (uint32_t k = 0; k < n->cfg->n_nodes; k++) {
		uint64_t id = n->cfg->nodes[k].id;
		if (id == n->cfg->node_id)
			continue;
		uint8_t level = cm_net_peer_space(n->net, id, UINT64_MAX);
		if (level == n->peer_space[k])
			continue;
		n->peer_space[k] = level;
		cm_log_warn("node %llu's store %s: client writes to the groups it replicates %s",
			    (unsigned long long)id, what[level],
			    level == SPACE_OK ? "are accepted" : "get ENOSPC");
	}
}

void cm__space_tick(struct cm_node *n)
{
	if (n->net != NULL) /* not yet when the node starts */
		log_peers(n);
	static const char *const what[] = {
		[SPACE_OK] = "client writes accepted again",
		[SPACE_LOW] = "client writes refused (ENOSPC) except deletes and truncations",
		[SPACE_FULL] = "every client write refused (ENOSPC)",
	};
	n->disk_free = disk_free(n->cfg->data_dir);
	double usage = cm_store_usage(n->store);
	int level = level_of(n);
	if (level == n->space_level)
		return;
	n->space_level = (uint8_t)level;
	if (n->disk_free == UINT64_MAX)
		cm_log_warn("store: map %.1f%% used (end at %.1f%%), disk free unknown: %s",
			    usage * 100, cm_store_top(n->store) * 100, what[level]);
	else
		cm_log_warn("store: map %.1f%% used (end at %.1f%%), %llu MiB free on disk "
			    "(reserve %llu MiB): %s",
			    usage * 100, cm_store_top(n->store) * 100,
			    (unsigned long long)(n->disk_free >> 20),
			    (unsigned long long)(n->cfg->min_free_bytes >> 20), what[level]);
}
