/* kv_int.h: what the kv module's files share: records, keys, path walking, a msgpack reader. */
#ifndef CONFMAN_KV_INT_H
#define CONFMAN_KV_INT_H

#include <assert.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "confman/proto.h"
#include "server/kv.h"
#include "server/kv_lease.h"

/*
 * Layout (see kv.h for why it is not keyed by path):
 *
 *   key    group u64 BE, parent ino u64 BE, name (0..CM_NAME_MAX bytes)
 *   record attr (CM_KV_ATTR_BYTES, below), ino u64 LE, [ext], value (attr.size bytes)
 *   attr   mode u32, uid u32, gid u32, mtime i64, ctime i64, create_index u64,
 *          mod_index u64, version u64, size u32 -- all little-endian
 *   ext    atime i64, nlink u32 (CM_KV_EXT_BYTES), little-endian: present
 *          when the mode word holds CM_KV_REC_EXT, which every record
 *          written since atime and nlink were kept does. A record without
 *          it (older) reads as atime = mtime, nlink 1 for a file and 0
 *          (unknown: counted by cm_kv__nlink_fix) for a directory.
 *
 * In a record (not in an event), mode's low 16 bits are the st_mode (type and
 * permissions, which never need more) and its high 16 bits the node's flags
 * (CM_KV_NODE_*, below). cm_kv__node_dec splits them: flags never reach a
 * struct cm_attr, so no client, event or result ever sees them. Records
 * written before flags existed read as flags 0.
 *
 * "/" is the only node with parent 0 (and an empty name); its ino is 1. Every
 * other ino is (index << 16 | n) for the n-th node created by the command at
 * log index `index`: unique forever, and the same on every replica.
 *
 *   event  kind u8, ext u8, path len u16 LE, path2 len u16 LE, 0, 0, attr, [ext], path, path2
 *          (ext 1: the attr's ext follows it; 0 in events written before)
 */
#define CM_KV_ATTR_BYTES 56
#define CM_KV_REC_HDR (CM_KV_ATTR_BYTES + 8)
#define CM_KV_EXT_BYTES 12
#define CM_KV_EV_HDR (8 + CM_KV_ATTR_BYTES)
#define CM_KV_KEY_HDR 16
#define CM_KV_KEY_MAX (CM_KV_KEY_HDR + CM_NAME_MAX)
#define CM_KV_ROOT_INO 1u
#define CM_KV_INO_SHIFT 16
#define CM_KV_MAX_DEPTH (CM_PATH_MAX / 2) /* "/a/a/...": 2 bytes per component */
#define CM_KV_MODE_MASK 0xffffu          /* a record's mode word: st_mode below, flags above */
#define CM_KV_FLAGS_SHIFT 16

/*
 * Node flags. BOUNDARY: the top directory of a shard split off from this
 * group (MKDIR with CM_MKDIR_BOUNDARY). It has no children, and no write at
 * or below it is accepted here any more (CM_EWRONGSHARD); nothing may remove
 * or move it, nor a directory above it (-EBUSY).
 * TOP: this group's own top directory, the node at its prefix (MKDIR with
 * CM_MKDIR_TOP, proposed by the group's leader). Its subtree is the group's;
 * nothing may remove or move it, nor replace it, nor a directory above it
 * (-EBUSY). A node is never both.
 * FROZEN (on a TOP): the group is being merged back into its parent: no
 * write at or below it any more (CM_EWRONGSHARD); reads go on.
 * MERGING (on a BOUNDARY): the merge's copies (CM_MERGE_COPY) may go below
 * it; anything else is still fenced.
 */
#define CM_KV_NODE_BOUNDARY 0x1u
#define CM_KV_NODE_TOP 0x2u
#define CM_KV_NODE_FROZEN 0x4u
#define CM_KV_NODE_MERGING 0x8u
#define CM_KV_NODE_FLAGS_KNOWN                                                                 \
	(CM_KV_NODE_BOUNDARY | CM_KV_NODE_TOP | CM_KV_NODE_FROZEN | CM_KV_NODE_MERGING)
/* Not a node flag: the record's format (it holds the ext), in the same
 * half of the mode word; cm_kv__node_dec takes it out of n->flags. */
#define CM_KV_REC_EXT 0x8000u

static_assert(CM_KV_KEY_MAX <= 511, "kv keys must fit LMDB's default key size limit");
static_assert(CM_PATH_MAX <= UINT16_MAX, "an event record keeps path lengths in a u16");
static_assert((1u << CM_KV_INO_SHIFT) > CM_KV_MAX_DEPTH + 1, "a command creates at most depth nodes");
static_assert((S_IFMT | 07777) == CM_KV_MODE_MASK, "st_mode fits below the record's flags");
static_assert((CM_KV_NODE_FLAGS_KNOWN >> (32 - CM_KV_FLAGS_SHIFT)) == 0, "flags fit above st_mode");
static_assert((CM_KV_NODE_FLAGS_KNOWN & CM_KV_REC_EXT) == 0, "the ext mark is no node flag");

/* One node as stored. value borrowed from LMDB: valid until the next write in the txn. */
struct cm_kv__node {
	struct cm_attr attr; /* mode <= CM_KV_MODE_MASK: never a flag in it */
	uint64_t ino;
	uint32_t flags;      /* CM_KV_NODE_* */
	struct cm_bytes value;
};

/* The databases and group one operation works on. */
struct cm_kv__ctx {
	MDB_txn *txn;
	MDB_dbi kv;
	MDB_dbi events;
	uint64_t group;
};

void cm_kv__ctx_init(struct cm_kv__ctx *c, struct cm_store *s, MDB_txn *txn, uint64_t group);

/* Attr to and from its fixed little-endian layout; ext: atime and nlink. */
void cm_kv__attr_enc(uint8_t *b, const struct cm_attr *a);
void cm_kv__attr_dec(const uint8_t *b, struct cm_attr *a);
void cm_kv__ext_enc(uint8_t *b, const struct cm_attr *a);
void cm_kv__ext_dec(const uint8_t *b, struct cm_attr *a);
/* A record without ext: what its atime and nlink read as. */
void cm_kv__ext_default(struct cm_attr *a);

/*
 * A directory whose record predates nlink (attr.nlink 0): count its
 * subdirectories now (one scan of its children). Anything else: nothing
 * to do. 0 or a storage error.
 */
int cm_kv__nlink_fix(const struct cm_kv__ctx *c, struct cm_kv__node *n);

/* Build the key of (parent, name) into kb (CM_KV_KEY_MAX bytes); returns its length. */
uint32_t cm_kv__key(uint8_t *kb, uint64_t group, uint64_t parent, const char *name, uint32_t nlen);

/* Decode a record: 0 or -EIO (too short, size disagrees with length, unknown flag). */
int cm_kv__node_dec(const void *rec, size_t len, struct cm_kv__node *n);

/* One node by (parent, name): 0, -ENOENT, -EIO. "/" is synthesised when never written. */
int cm_kv__node_get(const struct cm_kv__ctx *c, uint64_t parent, const char *name, uint32_t nlen,
		    struct cm_kv__node *n);
/* Write a node; value is copied (it must not point into the store). 0, -ENOSPC, -EIO. */
int cm_kv__node_put(const struct cm_kv__ctx *c, uint64_t parent, const char *name, uint32_t nlen,
		    const struct cm_kv__node *n);
int cm_kv__node_del(const struct cm_kv__ctx *c, uint64_t parent, const char *name, uint32_t nlen);
/*
 * Iterate the children of directory dir with cursor cur, in name order:
 * first/next return 0 with the child's key and record in k, v; -ENOENT when
 * there are no more; a storage error. child_dec decodes them (-EIO if corrupt).
 */
int cm_kv__child_first(const struct cm_kv__ctx *c, MDB_cursor *cur, uint64_t dir, MDB_val *k, MDB_val *v);
int cm_kv__child_next(const struct cm_kv__ctx *c, MDB_cursor *cur, uint64_t dir, MDB_val *k, MDB_val *v);
int cm_kv__child_dec(const MDB_val *k, const MDB_val *v, struct cm_bytes *name, struct cm_kv__node *n);
/* Whether directory ino has any child: 1, 0, or a negative storage error. */
int cm_kv__dir_has_children(const struct cm_kv__ctx *c, uint64_t ino);

/*
 * Resolve a valid path. On 0: found says whether the node exists; if it does,
 * node and parent are set; if not, dir is the deepest existing directory on
 * the way and miss the offset in the path of the first missing component.
 * fenced says whether the path is at or below a boundary: the node found is
 * one, or the walk went through one (and then stopped just below it).
 * -ENOTDIR: a component before the last is not a directory. -EIO: corrupt.
 */
struct cm_kv__walk {
	bool found;
	bool fenced;
	bool merging; /* fenced by a boundary being merged (CM_MERGE_COPY may pass) */
	uint64_t parent;
	struct cm_kv__node node;
	uint64_t dir;
	uint32_t miss;
};
int cm_kv__walk(const struct cm_kv__ctx *c, const char *p, uint32_t len, struct cm_kv__walk *w);

/*
 * Subtrees. tree_delete deletes everything below directory ino (not ino
 * itself): 0 or a storage error. tree_fits says whether every path below
 * directory ino, now at a path of oldlen bytes, still fits CM_PATH_MAX at a
 * path of newlen bytes: 0, -ENAMETOOLONG, or a storage error. tree_busy says
 * whether a boundary lies anywhere below directory ino: -EBUSY, 0, or a
 * storage error (-EIO too for a tree deeper than any path allows: corrupt).
 */
int cm_kv__tree_delete(const struct cm_kv__ctx *c, uint64_t ino);
/* Visit every record below directory ino, depth first; take must remove
 * the record at the cursor (delete it, or move it: kv_split.c). 0, take's
 * error, or a storage error. tree_delete is tree_take with a delete. */
typedef int (*cm_kv__take_fn)(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v);
int cm_kv__tree_take(const struct cm_kv__ctx *c, uint64_t ino, cm_kv__take_fn take, void *arg);
int cm_kv__tree_fits(const struct cm_kv__ctx *c, uint64_t ino, uint32_t oldlen, uint32_t newlen);
int cm_kv__tree_busy(const struct cm_kv__ctx *c, uint64_t ino);

/* kv_split.c: SHARD_MERGE's phases at P (k->flags): 0 or the error. */
int cm_kv__merge(const struct cm_kv__ctx *c, const struct cm_kv_cmd *k, uint64_t index,
		 struct cm_kv_result *res, bool *wrote);
/* Whether a write with flags may go where walk w went (fenced or not). */
bool cm_kv__write_fenced(const struct cm_kv__walk *w, uint32_t flags);

/* kv_split.c: SHARD_SPLIT (path, version = the new group, value = its
 * members): 0 or the error; *wrote once anything was written. */
int cm_kv__split(const struct cm_kv__ctx *c, const struct cm_kv_cmd *k, uint64_t index,
		 struct cm_kv_result *res, bool *wrote);

/* The last component of a valid path other than "/". */
struct cm_bytes cm_kv__basename(const char *p, uint32_t len);

/* Append an event record at index. 0, -ENOSPC, -EIO. */
int cm_kv__event_put(const struct cm_kv__ctx *c, uint64_t index, uint8_t kind, struct cm_bytes path,
		     struct cm_bytes path2, const struct cm_attr *attr);

/*
 * A bounds-checked msgpack reader over a buffer: every function consumes one
 * object of the named type or returns -EBADMSG without reading past end.
 * Nothing is allocated, whatever lengths the bytes declare.
 */
struct cm_kv__rd {
	const uint8_t *p;
	const uint8_t *end;
};
int cm_kv__rd_array(struct cm_kv__rd *r, uint32_t *n);
int cm_kv__rd_u64(struct cm_kv__rd *r, uint64_t *v);
int cm_kv__rd_u32(struct cm_kv__rd *r, uint32_t *v);
int cm_kv__rd_i64(struct cm_kv__rd *r, int64_t *v);
int cm_kv__rd_str(struct cm_kv__rd *r, struct cm_bytes *b);
int cm_kv__rd_bin(struct cm_kv__rd *r, struct cm_bytes *b);

/*
 * kv_lease.c, kv_lock.c: reserved records (kv_lease.h). rkey builds the key
 * (group, parent, name) of up to CM_KV_RKEY_MAX bytes; rrange_first/next
 * walk the records under parent whose name starts with pfx (-ENOENT past).
 */
uint32_t cm_kv__rkey(uint8_t *kb, uint64_t group, uint64_t parent, const void *name, uint32_t nlen);
int cm_kv__rput(const struct cm_kv__ctx *c, uint64_t parent, const void *name, uint32_t nlen,
		const void *val, size_t vlen);
int cm_kv__rdel(const struct cm_kv__ctx *c, uint64_t parent, const void *name, uint32_t nlen);
int cm_kv__rrange_first(const struct cm_kv__ctx *c, MDB_cursor *cur, uint64_t parent,
			const void *pfx, uint32_t plen, MDB_val *k, MDB_val *v);
int cm_kv__rrange_next(const struct cm_kv__ctx *c, MDB_cursor *cur, uint64_t parent,
		       const void *pfx, uint32_t plen, MDB_val *k, MDB_val *v);
int cm_kv__lease_get(const struct cm_kv__ctx *c, uint64_t id, struct cm_kv_lease *l);
/* GRANT, CHECKPOINT. */
int cm_kv__lease_set(const struct cm_kv__ctx *c, const struct cm_kv_cmd *k, uint64_t index,
		     struct cm_kv_result *res, bool *wrote);
/* A PUT with CM_PUT_LEASE: may id take one more key (0: a detach, fine)? */
int cm_kv__lease_put_check(const struct cm_kv__ctx *c, uint64_t id);
/* After that PUT: the file ino at path is id's (0: nobody's). */
int cm_kv__lease_attach(const struct cm_kv__ctx *c, uint64_t id, uint64_t ino, struct cm_bytes path);
/* Renames: of the file ino (now at path), of directory from (now to). */
int cm_kv__lease_moved(const struct cm_kv__ctx *c, uint64_t ino, struct cm_bytes path);
int cm_kv__lease_dir_moved(const struct cm_kv__ctx *c, struct cm_bytes from, struct cm_bytes to);
/* The end of a lease, one key per entry: next finds the first key still
 * attached (1, path in path (CM_PATH_MAX bytes), 0 when none; no write),
 * prune drops attachments up to ino upto, drop the lease and all. */
int cm_kv__lease_next(const struct cm_kv__ctx *c, uint64_t id, char *path, uint32_t *plen,
		      uint64_t *ino);
int cm_kv__lease_prune(const struct cm_kv__ctx *c, uint64_t id, uint64_t upto);
int cm_kv__lease_drop(const struct cm_kv__ctx *c, uint64_t id);
int cm_kv__lease_mark_ending(const struct cm_kv__ctx *c, struct cm_kv_lease *l);
/* CM_OP_LOCK; and a lease's end: its holds released, its waits left. */
int cm_kv__lock(const struct cm_kv__ctx *c, const struct cm_kv_cmd *k, uint64_t index,
		struct cm_kv_result *res, bool *wrote);
int cm_kv__locks_drop_lease(const struct cm_kv__ctx *c, uint64_t id, uint64_t index);
/* A key on a lease, or a lock, at or below prefix: 1, 0, or an error (an
 * error refuses too: callers treat nonzero as busy). */
int cm_kv__lease_under(const struct cm_kv__ctx *c, struct cm_bytes prefix);
/* Snapshots: the reserved records as [[parent, name:bin, value:bin]...]. */
int cm_kv__reserved_pack(const struct cm_kv__ctx *c, msgpack_packer *pk);
int cm_kv__reserved_restore(const struct cm_kv__ctx *c, struct cm_kv__rd *r);

#endif /* CONFMAN_KV_INT_H */
