/* kv.h: the replicated state machine: paths -> value + metadata, applied from the Raft log. */
#ifndef CONFMAN_KV_H
#define CONFMAN_KV_H

#include <lmdb.h>
#include <msgpack.h>
#include <stdint.h>

#include "confman/proto.h"
#include "server/store.h"

/*
 * A group's kv data lives in the store's "kv" database. Every node has an
 * ino, and its key is (group u64 BE, parent's ino u64 BE, name): the children
 * of a directory are ONE contiguous range (group, ino), in byte order of
 * name, so listing never scans a subtree. (Not (group, depth, path): paths
 * reach CM_PATH_MAX = 4096 bytes and LMDB keys stop at 511; and with inos a
 * directory rename moves one record, its subtree following atomically.)
 * A record holds struct cm_attr's fields in a fixed little-endian layout
 * (the node's flags riding above st_mode in the mode word), the ino, then the
 * value (server/kv_int.h). Inos are (index << 16 | n) for the n-th node
 * created by the entry at log index `index`.
 * "/" always exists: a directory, mode 040755, uid/gid 0, version 1; it is
 * synthesised until its first change (chmod) writes it.
 *
 * Determinism: applying the same command bytes at the same index gives the
 * same bytes on every replica. Times come from the command (stamped by the
 * leader when it proposed), never from the applying node's clock.
 *
 * Pointers into the store (values returned by get, names and attrs given to
 * callbacks) follow store.h's rule: valid until the txn ends or writes.
 *
 * Shard boundaries. When a shard for prefix P is split off from this group,
 * one command in this group's log, MKDIR P with CM_MKDIR_BOUNDARY, both
 * proves that P held nothing here (it is create-only) and fences P off: from
 * its index on, every write at or below P is refused with CM_EWRONGSHARD, in
 * the same log order on every replica, so no write can land here after the
 * split. The boundary node reads as an ordinary directory (get, list, events,
 * results: the mark is never in a struct cm_attr); reads below it find
 * nothing (-ENOENT), as the server routes them to the new shard. Nothing
 * removes or moves the boundary: not even a recursive DELETE or a RENAME of
 * a directory above it (-EBUSY). Snapshots carry the mark.
 *
 * A shard's own top. The new group holds the directory at its prefix P too
 * (and P's ancestors, made as parents): the node every path of the shard
 * hangs below, which the parent's boundary shows in its listings. The
 * group's leader marks it with MKDIR P and CM_MKDIR_TOP (which creates it,
 * or marks it where a write below P made it first). Marked, it is the
 * shard's mount point: a DELETE of it (CM_DEL_DIR, CM_DEL_RECURSIVE or
 * none), a RENAME of it or onto it, and a recursive DELETE or a RENAME of a
 * directory above it are -EBUSY, so no client can leave a name that the
 * parent lists and the shard does not have. The check reads only the mark,
 * which came through the log: the same answer on every replica, whoever
 * sent the command. Snapshots carry it.
 */

/* A decoded command, as the leader proposes it (a write request + stamp). */
struct cm_kv_cmd {
	uint8_t op; /* CM_OP_PUT, DELETE, MKDIR, RENAME */
	uint32_t flags;
	struct cm_bytes path, path2, value;
	uint64_t version;  /* CM_PUT_IF_VERSION */
	uint64_t mod_index; /* CM_PUT_IF_MOD; 0 without it */
	uint32_t mode, uid, gid;
	int64_t stamp_ns; /* leader's clock at proposal: mtime/ctime */
	uint32_t max_value; /* value limit in force (deterministic); 0: CM_VALUE_MAX_DEFAULT */
	int64_t atime_ns, mtime_ns; /* CM_SET_TIMES: a time or CM_TIME_OMIT */
	uint64_t arg; /* LEASE: GRANT's TTL, CHECKPOINT's ms left; LOCK: the owner;
		       * PUT with CM_PUT_LEASE: the lease (the request's from_index) */
};

/* What applying one command did; the event (if any) goes to watchers. */
struct cm_kv_result {
	int err; /* 0, -ENOENT, -EEXIST, -ENOTEMPTY, -ENOTDIR, -EISDIR, -EINVAL,
		  * -ECANCELED (CAS conflict), -EFBIG, -ENAMETOOLONG, -EOVERFLOW
		  * (index >= 2^48: no inos left), -EBADMSG (undecodable),
		  * CM_EWRONGSHARD (at or below a boundary; already negative),
		  * -EBUSY (a boundary or a shard's top at or below what
		  * would be removed, moved or replaced) */
	struct cm_attr attr; /* the node after the change (PUT, MKDIR, RENAME);
			      * DELETE: the node as it was; all zero on error */
	uint8_t event_kind;  /* 0 if nothing changed */
	/* SHARD_SPLIT applied (kv_split.c): the new group, which now holds the
	 * subtree, and its members ("1,2,3", pointing into the command). */
	uint64_t split_group;
	struct cm_bytes split_members;
	/* LEASE applied: its id, and whether it is gone now (its last step);
	 * LOCK applied: a lock's holders or waiters may have moved. */
	uint64_t lease;
	uint32_t lease_op;  /* enum cm_lease_op of the entry; 0: not a LEASE */
	uint64_t lease_arg; /* GRANT's TTL, CHECKPOINT's ms left */
	bool lease_gone;
	bool lock_moved;
};

/*
 * cm_kv_cmd_encode - append a write request (op PUT, DELETE, MKDIR, RENAME)
 * as command bytes: msgpack [op, flags, path:str, path2:str, value:bin,
 * version, mode, uid, gid, stamp_ns, max_value], and mod_index after them
 * only with CM_PUT_IF_MOD (other commands keep the 11 fields of releases
 * before it), then atime_ns, mtime_ns only with CM_SET_TIMES (CM_TIME_NOW
 * written as stamp_ns: replicas never read a clock). 0, -EINVAL (not a
 * write op, or CM_MKDIR_BOUNDARY with an op other than MKDIR, CM_MKDIR_TOP
 * likewise, or both, CM_SET_TIMES with an op other than PUT), -ENOMEM; on
 * error sb is as it was.
 */
int cm_kv_cmd_encode(msgpack_sbuffer *sb, const struct cm_req *req, int64_t stamp_ns,
		     uint32_t max_value);
/*
 * cm_kv_cmd_decode - decode command bytes with a bounds-checked reader that
 * allocates nothing, whatever lengths the bytes declare. cmd's path, path2
 * and value point into buf, which must outlive cmd. *up is only initialised
 * (empty), so msgpack_unpacked_destroy(up) is always right; it is kept for
 * the interface's sake. 0 or -EBADMSG: not an array of 11 elements (one more
 * with CM_PUT_IF_MOD, two more with CM_SET_TIMES, and only with them; a
 * CM_TIME_NOW among the times), a wrong type
 * or width, an unknown op or flag bit, CM_MKDIR_BOUNDARY or CM_MKDIR_TOP
 * with an op other than MKDIR, or both (which the encoder never writes; apply then gives an -EBADMSG
 * result, like any undecodable command), max_value > CM_VALUE_MAX_LIMIT,
 * truncated, or bytes after the array.
 */
int cm_kv_cmd_decode(const void *buf, uint32_t len, msgpack_unpacked *up, struct cm_kv_cmd *cmd);

/*
 * cm_kv_apply - apply the command of log entry `index` of `group` in txn.
 * Operation errors (ENOENT, CAS conflict, ...) are results, not failures: they
 * go in res->err and nothing changes. The return value is 0, or a storage
 * error (-ENOSPC, -EIO, -ENOMEM) that means the transaction must be aborted.
 * A change also writes an event record (index, kind, path, path2, attr) to the
 * "events" database. cmd must not point into the store (LMDB may move it on
 * the first write); the core's committed entries are fine.
 *
 * Semantics, as a filesystem user expects (paths checked by cm_path_validate):
 *  PUT     creates missing parents (040755, the request's uid/gid) like
 *          mkdir -p. New node: mode = req.mode, S_IFREG added if it has no
 *          type bits, 0100644 if 0; S_IFLNK makes a symlink (value = target).
 *          Existing node: value replaced, type from req.mode's type bits if
 *          any, permissions/uid/gid only with CM_SET_MODE. CM_PUT_KEEP_VALUE:
 *          the value is kept (chmod/chown with CM_SET_MODE; works on
 *          directories and "/"; -ENOENT if absent). CM_PUT_CREATE: -EEXIST if
 *          present. CM_PUT_IF_VERSION: -ECANCELED unless version == current
 *          (0: absent). CM_PUT_IF_MOD: the same with mod_index against the
 *          node's mod_index (0: absent); both flags: both must hold. A
 *          version restarts at 1 when a path is deleted and re-created, a
 *          mod_index never repeats in a group: only IF_MOD proves that
 *          the node is still exactly the one read.
 *          CM_PUT_APPEND: value is appended to the current
 *          value (created if absent; -EFBIG if the sum passes max_value).
 *          CM_PUT_IF_CREATED: only onto the node whose create_index ==
 *          version: -ENOENT if absent, -ESTALE if the path names another
 *          node (re-created); never with CM_PUT_IF_VERSION (the server
 *          refuses the pair). CM_NO_PARENTS (PUT, MKDIR, RENAME's target): a
 *          missing parent is -ENOENT instead of being created.
 *          -EISDIR onto a directory, -ENOTDIR under a file,
 *          -EFBIG beyond max_value, -EINVAL for another type (dir, device).
 *          version 1 on create, +1 per change; mtime/ctime = stamp_ns
 *          (KEEP_VALUE: ctime only), atime = stamp_ns on create only.
 *          CM_SET_TIMES: then atime/mtime = the command's atime_ns/mtime_ns
 *          where not CM_TIME_OMIT (utimensat; also on directories and "/"
 *          with KEEP_VALUE), ctime = stamp_ns.
 *  MKDIR   creates parents too; -EEXIST if present; mode's permission bits
 *          (040755 if mode is 0). CM_MKDIR_BOUNDARY: the same, and the new
 *          directory is a shard boundary (see above); -EEXIST if the path
 *          exists (the prefix was not empty: a node at it is the only way to
 *          anything below it); "/": -EINVAL. Its event is an ordinary MKDIR.
 *          CM_MKDIR_TOP (the group's own prefix, from its leader): the same,
 *          and the new directory is the group's top (see above); an
 *          existing unmarked directory is marked, with result 0, its attr
 *          unchanged and no event; a marked one or a file: -EEXIST; "/":
 *          -EINVAL.
 *  DELETE  a file; a directory needs CM_DEL_DIR (empty, else -ENOTEMPTY) or
 *          CM_DEL_RECURSIVE (the whole subtree, one change; also fine on a
 *          file); neither: -EISDIR; CM_DEL_DIR on a file: -ENOTDIR; "/":
 *          -EINVAL; CM_PUT_IF_VERSION and CM_PUT_IF_MOD as for PUT.
 *  RENAME  path -> path2 like rename(2): a target file is replaced; a
 *          directory replaces an empty directory (-ENOTEMPTY otherwise);
 *          directory onto file -ENOTDIR, file onto directory -EISDIR; into its
 *          own subtree or from/to "/" -EINVAL; -ENOENT without a source;
 *          missing target parents are created; a descendant path that would
 *          exceed CM_PATH_MAX: -ENAMETOOLONG. CM_PUT_CREATE: -EEXIST if the
 *          target exists (RENAME_NOREPLACE); CM_PUT_IF_VERSION and
 *          CM_PUT_IF_MOD check the TARGET (0: absent). The moved node keeps its ino and
 *          create_index; its version becomes max(source, replaced target) + 1
 *          so a CAS holding the old target's version fails; its ctime moves.
 *          Onto itself: 0, nothing changes, no event.
 *
 * Directories, in the same entry as the change (so whoever sends it: a
 * mount, confmanctl, the gateway): creating, removing or renaming an entry
 * sets its parent directory's mtime and ctime to stamp_ns (a rename: both
 * parents; parents that PUT or MKDIR create are new anyway, and their own
 * parent moves); a directory's nlink is 2 + its subdirectories, kept in its
 * record and moved by MKDIR, DELETE and RENAME of a directory. A parent's
 * version and mod_index do not move: they count changes of the directory
 * node itself (chmod, chown, times), so a CAS on it is not defeated by
 * entries coming and going below it; nor does the parent get an event (the
 * child's event says what changed). Records written before nlink was kept
 * read as nlink 0 and are counted (a scan of the directory) when read or
 * next written.
 *
 * Boundaries, in every op: a path at or below a boundary (the boundary
 * itself too) gives CM_EWRONGSHARD as soon as it is resolved: after the
 * path checks (and PUT's -EFBIG), before -ENOENT, -EEXIST, CAS and the rest.
 * That includes a second boundary MKDIR of the same prefix: a retried split
 * learns it already happened (-EEXIST would say the prefix was not empty).
 * RENAME checks path (before -ENOENT) and path2 (after -EINVAL for a move
 * into its own subtree). DELETE with CM_DEL_RECURSIVE of a directory, and
 * RENAME of a directory, with a boundary anywhere below: -EBUSY, after the
 * other checks (a RENAME's -ENAMETOOLONG excepted), so after a scan of the
 * subtree. CM_DEL_DIR of a directory holding a boundary: -ENOTEMPTY.
 *
 * Tops: DELETE of a top, with any flags: -EBUSY, after -ENOENT and before
 * CAS and the rest. RENAME of a top: -EBUSY after the onto-itself case;
 * RENAME onto a top: -EBUSY after the target's fence check, before the
 * target rules (-EEXIST, -ENOTEMPTY...). Above a top, as above a boundary.
 */
int cm_kv_apply(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t index,
		const void *cmd, uint32_t len, struct cm_kv_result *res);

/* Read one node. value (may be NULL) borrowed from LMDB. 0, -ENOENT, -ENOTDIR
 * (a parent is a file), -EINVAL, -ENAMETOOLONG (bad path), -EIO. A boundary
 * is an ordinary directory here, and has no children. */
int cm_kv_get(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes path,
	      struct cm_attr *attr, struct cm_bytes *value);

/* Whether path is at or below a boundary of group (it is served by a shard
 * split off there): 1, 0, or a negative errno. */
int cm_kv_fenced(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes path);

/* List the children of directory path (not grandchildren): cb(name, attr) per
 * child in byte order of name; stops early if cb returns nonzero. cb must not
 * write in txn. 0, -ENOENT, -ENOTDIR, -EINVAL, -ENAMETOOLONG, -EIO, or cb's value. */
typedef int (*cm_kv_list_cb)(void *arg, struct cm_bytes name, const struct cm_attr *attr);
int cm_kv_list(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes path,
	       cm_kv_list_cb cb, void *arg);

/*
 * cm_kv_snapshot - append the group's whole kv tree to sb: msgpack array32
 * of records [path:str, ino, mode, uid, gid, mtime_ns, ctime_ns,
 * create_index, mod_index, version, value:bin, flags], parents before
 * children; flags: 1 for a boundary, 2 for a top, else 0. The same tree
 * gives the same bytes. A group holding leases or locks (kv_lease.h) has a
 * second array after it: those records as [parent, name:bin, value:bin].
 * 0, -ENOMEM, -EIO; on error sb is as it was.
 *
 * cm_kv_restore - replace the group's kv tree with a serialised one, and drop
 * all the group's events (the caller then treats events up to the snapshot
 * index as compacted). txn must be a write txn; buf must not point into the
 * store. Runs in a nested transaction: on ANY error nothing has changed.
 * Records of 11 fields (blobs from before boundaries: flags 0) are taken too.
 * 0, -EBADMSG (does not parse; bad path, type, ino, a dir with a value, a
 * value over CM_VALUE_MAX_LIMIT, mode bits beyond S_IFMT | 07777, an unknown
 * flag, a boundary or top that is "/" or not a directory, both marks on one
 * node; a record before its parent, under a file or a boundary, twice; two
 * directories with one ino; trailing bytes), -ENOSPC, -ENOMEM, -EIO.
 */
int cm_kv_snapshot(struct cm_store *s, MDB_txn *txn, uint64_t group, msgpack_sbuffer *sb);
int cm_kv_restore(struct cm_store *s, MDB_txn *txn, uint64_t group, const void *buf, uint64_t len);

/* Watch history: events of group with index > from, in index order, cb per
 * event; stops if cb returns nonzero (and returns that). An event is
 * delivered if its path or path2 is under prefix, or, for DELETE and RENAME,
 * if prefix is under path or path2 (an ancestor of what is watched was
 * removed or replaced). Events at or below compacted_upto are gone: returns
 * CM_ECOMPACTED if from < compacted_upto; -EINVAL for a bad prefix; -EIO.
 * cm_kv_events_compact drops events <= index: 0, -ENOSPC, -EIO. */
typedef int (*cm_kv_event_cb)(void *arg, uint64_t index, uint8_t kind, struct cm_bytes path,
			      struct cm_bytes path2, const struct cm_attr *attr);
int cm_kv_events(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes prefix,
		 uint64_t from, uint64_t compacted_upto, cm_kv_event_cb cb, void *arg);
int cm_kv_events_compact(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t index);

#endif /* CONFMAN_KV_H */
