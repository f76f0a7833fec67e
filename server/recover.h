/* recover.h: --force-new-cluster, the way out when a majority of the nodes is gone for good. */
#ifndef CONFMAN_RECOVER_H
#define CONFMAN_RECOVER_H

#include <stdint.h>

#include "server/store.h"

/*
 * cm__recover_force - make node `self` the only voter of every group its
 * store holds data of (the meta group included), before any group starts.
 * Per group, in ONE write transaction for all groups (etcd's
 * --force-new-cluster semantics, README "Lost majority"):
 *   1. the log entries past the persisted commit index are discarded (they
 *      were never known committed here; etcd drops them too);
 *   2. one CONF entry is appended at commit + 1, in term
 *      max(hs.term, the last entry's term): this node alone, a voter. The
 *      core takes the latest CONF entry of the log as the configuration,
 *      so the node elects itself at start and commits that entry;
 *   3. the vote is cleared (the commit index is kept).
 * A group with a tombstone (a replica dropped) or nothing but a hard state
 * (a replica that never received its snapshot) is left as it is. One
 * warning per group names the index it resumes from and what was dropped.
 * The registry (replica lists) and the node table are not touched: the
 * dead nodes stay listed until `shard move` and `node remove` change that.
 * Returns 0; -ENOENT when the store holds no data of the meta group (an
 * empty or wiped data directory: nothing to recover); -EIO for a store whose
 * state is inconsistent (commit below the snapshot or beyond the log);
 * -ENOSPC, -ENOMEM. Nothing is written unless every group could be done.
 */
int cm__recover_force(struct cm_store *s, uint64_t self);

#endif /* CONFMAN_RECOVER_H */
