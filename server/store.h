/* store.h: one LMDB environment per node: every group's Raft state, kv data and events. */
#ifndef CONFMAN_STORE_H
#define CONFMAN_STORE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "raft/raft.h"

/*
 * Named databases (all keys big-endian so LMDB orders them numerically):
 *   "hs"     group                      -> term u64, vote u64, commit u64
 *   "log"    group, index               -> term u64, type u8, data
 *   "meta"   group                      -> applied u64, snapshot meta (index,
 *                                          term, size, conf as raft_conf_encode)
 *   "snap"   group                      -> the current snapshot's bytes
 *   "stage"  group, offset              -> a received snapshot chunk
 *   "kv"     group, parent ino, name    -> node record (see kv.h)
 *   "events" group, index               -> watch event record (see kv.h)
 * Every function that writes takes the caller's write transaction: the node
 * puts everything of one loop turn, for all groups, in ONE transaction and ONE
 * fsync (group commit). LMDB errors become negative errno at this boundary:
 * MDB_MAP_FULL and MDB_TXN_FULL -> -ENOSPC, MDB_NOTFOUND -> -ENOENT,
 * MDB_CORRUPTED/MDB_PAGE_NOTFOUND -> -EIO, anything else -> -EIO.
 *
 * Pointers "borrowed from LMDB" stay valid until the transaction ends AND no
 * write happens in it: LMDB may move a page on the next put or delete (see
 * mdb_get()). Copy what you need before writing in the same transaction.
 *
 * The environment is opened without MDB_NOTLS and used from one thread.
 */

struct cm_store; /* opaque */

/* cm_store_mdb_err - translate an LMDB (or errno) return code as above; 0 stays 0. */
int cm_store_mdb_err(int rc);

/* The databases, for kv.c (and tests); valid while the store is open. */
struct cm_store_dbs {
	MDB_dbi hs, log, meta, snap, stage, kv, events;
};

/*
 * cm_store_open - open (creating if needed) the environment in directory dir.
 * @map_bytes: what the store may hold for clients (cm_store_usage's 100%);
 * LMDB's map is that plus cm_store_reserve(map_bytes), kept for Raft's own
 * writes (replicated entries, applying, snapshots) once clients are refused.
 * Returns 0, -ENOENT (dir missing), -EACCES, -ENOMEM, -EIO.
 * cm_store_close: NULL is fine; every transaction must have ended.
 */
int cm_store_open(const char *dir, uint64_t map_bytes, struct cm_store **out);
void cm_store_close(struct cm_store *s);
MDB_env *cm_store_env(struct cm_store *s);
const struct cm_store_dbs *cm_store_dbs(const struct cm_store *s);

/* Transactions. begin: 0, -ENOSPC, -EIO. commit: 0, -ENOSPC (nothing written), -EIO. */
int cm_store_txn_begin(struct cm_store *s, bool write, MDB_txn **txn);
int cm_store_txn_commit(MDB_txn *txn);
void cm_store_txn_abort(MDB_txn *txn);

/* The map beyond map_bytes: a quarter of it, at least 8 MiB (the file is
 * sparse: a map costs disk only as it is used). */
uint64_t cm_store_reserve(uint64_t map_bytes);

/* Fraction of map_bytes in use, 0..1, for refusing writes before the map is
 * full: the high-water page minus the pages on LMDB's free list (which later
 * write transactions reuse). Computed once per committed write transaction
 * (a walk of the free list), cached in between. 1.0 if unknown. */
double cm_store_usage(struct cm_store *s);
/* The high-water page against the whole map (reserve included), 0..1. Free
 * pages serve a large value only in contiguous runs, so a fragmented free
 * list can push the file's end on while usage says there is room; this is
 * how close that end is to the map's. 1.0 if unknown. */
double cm_store_top(struct cm_store *s);

/*
 * cm_store_range_delete - delete every key of dbi that starts with (group u64
 * BE, x u64 BE) with lo <= x <= hi. Works on "log", "stage", "events" (x is
 * the index or offset) and "kv" (x is the parent ino). 0, -ENOSPC, -EIO.
 */
int cm_store_range_delete(MDB_txn *txn, MDB_dbi dbi, uint64_t group, uint64_t lo, uint64_t hi);

/* Hard state. get: 0 or -ENOENT (never written: all zero). */
int cm_store_hs_put(struct cm_store *s, MDB_txn *txn, uint64_t group, const struct raft_hard_state *hs);
int cm_store_hs_get(struct cm_store *s, MDB_txn *txn, uint64_t group, struct raft_hard_state *hs);

/* Log. append deletes every entry >= entries[0].index first (a follower's
 * truncation), then writes these (contiguous: asserted). truncate_prefix
 * deletes entries <= index. All: 0, -ENOSPC, -EIO. */
int cm_store_log_append(struct cm_store *s, MDB_txn *txn, uint64_t group,
			const struct raft_entry *entries, uint32_t n);
int cm_store_log_truncate_prefix(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t index);
int cm_store_log_delete_all(struct cm_store *s, MDB_txn *txn, uint64_t group);
/* cm_store_log_first - the lowest index of group's stored entries, 0 when it
 * has none: 0, -EIO. */
int cm_store_log_first(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t *first);
/*
 * cm_store_log_load - every entry of group after `after`, in order, as one
 * malloc'd array; each entry's data is malloc'd too (free with
 * cm_store_entries_free). The first must be after + 1 and none may be
 * missing up to the last. No entries: 0 with *n = 0 (*entries NULL).
 * 0, -ENOMEM, -EIO (a gap or a corrupt record).
 */
int cm_store_log_load(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t after,
		      struct raft_entry **entries, uint32_t *n);
void cm_store_entries_free(struct raft_entry *entries, uint32_t n);
/* One entry, data borrowed from LMDB (read-only; see "borrowed" above). 0, -ENOENT, -EIO. */
int cm_store_log_get(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t index,
		     struct raft_entry *e);

/* Meta: applied index and current snapshot meta (snap NULL: none, all zero).
 * get: 0, -ENOENT (all zero), -EIO (corrupt). */
int cm_store_meta_put(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t applied,
		      const struct raft_snap_meta *snap);
int cm_store_meta_get(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t *applied,
		      struct raft_snap_meta *snap);

/* Snapshot bytes of the current snapshot. get borrows (see "borrowed" above); 0, -ENOENT. */
int cm_store_snap_put(struct cm_store *s, MDB_txn *txn, uint64_t group, const void *data, uint64_t len);
int cm_store_snap_get(struct cm_store *s, MDB_txn *txn, uint64_t group, const void **data, uint64_t *len);

/* Staging of a snapshot being received: chunk at offset 0 discards older chunks.
 * stage_take concatenates the chunks into one malloc'd buffer of exactly len bytes
 * (-EIO if they do not cover [0, len) exactly, or reach beyond it; then nothing
 * is deleted) and deletes them. Overlapping chunks are fine (same bytes).
 * len is checked against the staged bytes before anything is allocated. */
int cm_store_stage_put(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t offset,
		       const void *data, uint32_t len);
int cm_store_stage_take(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t len, void **data);

/* Groups that have any hard state, for recovery: malloc'd array in group order
 * (NULL if none). 0, -ENOMEM, -EIO. */
int cm_store_groups(struct cm_store *s, MDB_txn *txn, uint64_t **groups, uint32_t *n);
/* Delete everything stored for group (Raft state, log, snapshot, staged
 * chunks, files and events): a replica moved off this node. 0 or -errno. */
int cm_store_group_drop(struct cm_store *s, MDB_txn *txn, uint64_t group);
/* How many records group has in each database, in the order hs, log, meta,
 * snap, stage, kv, events (for tools and tests: what a drop left). */
#define CM_STORE_DBS 7
int cm_store_group_records(struct cm_store *s, MDB_txn *txn, uint64_t group,
			   uint64_t counts[CM_STORE_DBS]);

#endif /* CONFMAN_STORE_H */
