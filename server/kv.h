/* kv.h: the replicated state machine: paths -> value + metadata, applied from the Raft log. */
#ifndef CONFMAN_KV_H
#define CONFMAN_KV_H

#include <lmdb.h>
#include <msgpack.h>
#include <stdint.h>

#include "confman/proto.h"
#include "server/store.h"

/*
 * A group's kv data lives in the store's "kv" database under keys
 * (group u64 BE, depth u16 BE, path bytes): the depth of "/" is 0, of "/a" 1,
 * of "/a/b" 2, so the children of a directory are ONE contiguous range
 * (depth+1, "dir/") and listing never scans a subtree. A record holds
 * struct cm_attr's fields in a fixed little-endian layout, then the value.
 * "/" always exists (a directory, mode 040755, created lazily on first use).
 *
 * Determinism: applying the same command bytes at the same index gives the
 * same bytes on every replica. Times come from the command (stamped by the
 * leader when it proposed), never from the applying node's clock.
 */

/* A decoded command, as the leader proposes it (a write request + stamp). */
struct cm_kv_cmd {
	uint8_t op; /* CM_OP_PUT, DELETE, MKDIR, RENAME */
	uint32_t flags;
	struct cm_bytes path, path2, value;
	uint64_t version;
	uint32_t mode, uid, gid;
	int64_t stamp_ns; /* leader's clock at proposal: mtime/ctime */
	uint32_t max_value; /* value limit in force (deterministic) */
};

/* What applying one command did; the event (if any) goes to watchers. */
struct cm_kv_result {
	int err; /* 0, -ENOENT, -EEXIST, -ENOTEMPTY, -ENOTDIR, -EISDIR, -EINVAL,
		  * -ECANCELED (CAS conflict), -EFBIG, -EBADMSG (undecodable) */
	struct cm_attr attr; /* the node after the change (PUT, MKDIR, RENAME) */
	uint8_t event_kind;  /* 0 if nothing changed */
};

/* Encode a write request as command bytes (msgpack) into sb. 0 or -ENOMEM. */
int cm_kv_cmd_encode(msgpack_sbuffer *sb, const struct cm_req *req, int64_t stamp_ns,
		     uint32_t max_value);
/* Decode command bytes; pointers refer into *up (free with msgpack_unpacked_destroy). 0 or -EBADMSG. */
int cm_kv_cmd_decode(const void *buf, uint32_t len, msgpack_unpacked *up, struct cm_kv_cmd *cmd);

/*
 * cm_kv_apply - apply the command of log entry `index` of `group` in txn.
 * Operation errors (ENOENT, CAS conflict, ...) are results, not failures: they
 * go in res->err and nothing changes. The return value is 0, or a storage
 * error (-ENOSPC, -EIO, -ENOMEM) that means the transaction must be aborted.
 * A change also writes an event record (index, kind, path, path2, attr) to the
 * "events" database.
 */
int cm_kv_apply(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t index,
		const void *cmd, uint32_t len, struct cm_kv_result *res);

/* Read one node. value borrowed from LMDB: valid until txn ends. 0, -ENOENT. */
int cm_kv_get(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes path,
	      struct cm_attr *attr, struct cm_bytes *value);

/* List the children of directory path: cb(name, attr) per child in byte order
 * of name; stops early if cb returns nonzero. 0, -ENOENT, -ENOTDIR, or cb's value. */
typedef int (*cm_kv_list_cb)(void *arg, struct cm_bytes name, const struct cm_attr *attr);
int cm_kv_list(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes path,
	       cm_kv_list_cb cb, void *arg);

/* Snapshot: serialise the group's whole kv range (msgpack) into sb; and replace
 * the group's kv range with a serialised one (-EBADMSG if it does not parse). */
int cm_kv_snapshot(struct cm_store *s, MDB_txn *txn, uint64_t group, msgpack_sbuffer *sb);
int cm_kv_restore(struct cm_store *s, MDB_txn *txn, uint64_t group, const void *buf, uint64_t len);

/* Watch history: events of group with index > from whose path or path2 is
 * under prefix, in index order, cb per event; stops if cb returns nonzero.
 * Events at or below compacted_upto are gone: returns CM_ECOMPACTED if
 * from < compacted_upto. Also drop events <= index (compaction). */
typedef int (*cm_kv_event_cb)(void *arg, uint64_t index, uint8_t kind, struct cm_bytes path,
			      struct cm_bytes path2, const struct cm_attr *attr);
int cm_kv_events(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes prefix,
		 uint64_t from, uint64_t compacted_upto, cm_kv_event_cb cb, void *arg);
int cm_kv_events_compact(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t index);

#endif /* CONFMAN_KV_H */
