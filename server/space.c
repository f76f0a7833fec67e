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
 *   LOW   map above CM_STORE_HIGH_WATER, or less than --min-free-mb free on
 *         disk: writes that add get ENOSPC; a DELETE or a PUT of an empty
 *         value (rm, truncate) is still accepted, so clients can make room.
 *   FULL  map above CM_STORE_HARD_WATER, or less than half of --min-free-mb
 *         free: every client write gets ENOSPC.
 *
 * Reads write nothing: they go on. Leaving LOW needs nothing but space:
 * LMDB reuses pages that deletes freed (store.h counts them as free), and
 * disk space is sampled again every tick.
 */

enum { SPACE_OK, SPACE_LOW, SPACE_FULL };

static int level_of(const struct cm_node *n, double usage)
{
	uint64_t reserve = n->cfg->min_free_bytes;
	if (usage > CM_STORE_HARD_WATER || n->disk_free < reserve / 2)
		return SPACE_FULL;
	if (usage > CM_STORE_HIGH_WATER || n->disk_free < reserve)
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

int cm__space_check(struct cm_node *n, const struct cm_req *req)
{
	int level = level_of(n, cm_store_usage(n->store));
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

void cm__space_tick(struct cm_node *n)
{
	static const char *const what[] = {
		[SPACE_OK] = "client writes accepted again",
		[SPACE_LOW] = "client writes refused (ENOSPC) except deletes and truncations",
		[SPACE_FULL] = "every client write refused (ENOSPC)",
	};
	n->disk_free = disk_free(n->cfg->data_dir);
	double usage = cm_store_usage(n->store);
	int level = level_of(n, usage);
	if (level == n->space_level)
		return;
	n->space_level = (uint8_t)level;
	if (n->disk_free == UINT64_MAX)
		cm_log_warn("store: map %.1f%% used, disk free unknown: %s", usage * 100, what[level]);
	else
		cm_log_warn("store: map %.1f%% used, %llu MiB free on disk (reserve %llu MiB): %s",
			    usage * 100, (unsigned long long)(n->disk_free >> 20),
			    (unsigned long long)(n->cfg->min_free_bytes >> 20), what[level]);
}
