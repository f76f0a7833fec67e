/* kv_lease.h: leases, their keys and locks in a group's state machine (kv_lease.c, kv_lock.c). */
#ifndef CONFMAN_KV_LEASE_H
#define CONFMAN_KV_LEASE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "confman/proto.h"
#include "server/store.h"

/*
 * Leases, the keys attached to them and locks are records of the group's kv
 * database under parent inos no node ever has (an ino is index << 16 | n, and
 * no index comes near 2^48): a group's snapshot, restore and drop carry them
 * with its tree. Everything here is applied from the log, so it is the same
 * on every replica; time is not: when a lease ends is the leader's decision
 * (server/lease.c), which it commits as CM_LEASE_EXPIRE entries.
 */
#define CM_KV_P_LEASE (UINT64_MAX - 1)
#define CM_KV_P_ATTACH (UINT64_MAX - 2)
#define CM_KV_P_BYINO (UINT64_MAX - 3)
#define CM_KV_P_LOCK (UINT64_MAX - 4)
#define CM_KV_P_FIRST CM_KV_P_LOCK /* the lowest reserved parent */
#define CM_KV_RKEY_MAX 511u        /* LMDB's default key size limit */
#define CM_LOCK_PATH_MAX (CM_KV_RKEY_MAX - 16u) /* a lock's path: its key holds it */
#define CM_LOCK_ENTRIES_MAX 256u   /* holders and waiters of one lock */

struct cm_kv_lease {
	uint64_t id;
	uint64_t ttl_ms;
	uint64_t left_ms; /* the last checkpoint: ms left then; 0: the full TTL */
	uint64_t granted; /* the index of its GRANT */
	uint32_t nkeys;   /* attachments, stale ones included until pruned */
	bool ending;      /* revoked or expired: its keys are being deleted */
};

struct cm_kv_lock_ent {
	uint64_t lease, owner;
	uint64_t token; /* held: the index it was granted at; waiting: of its ACQUIRE */
	bool shared, held;
};

/* Reads for the leader and for answers (any read txn). 0, a storage error or cb's value. */
typedef int (*cm_kv_lease_cb)(void *arg, const struct cm_kv_lease *l);
int cm_kv_lease_each(struct cm_store *s, MDB_txn *txn, uint64_t group, cm_kv_lease_cb cb, void *arg);
int cm_kv_lease_find(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t id,
		     struct cm_kv_lease *l);
/* The live keys of lease id (paths), at most max: cb per key. */
typedef int (*cm_kv_path_cb)(void *arg, struct cm_bytes path);
int cm_kv_lease_keys(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t id, uint32_t max,
		     cm_kv_path_cb cb, void *arg);
/* The holders and waiters of lock path: *n entries into v (CM_LOCK_ENTRIES_MAX). */
int cm_kv_lock_get(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes path,
		   struct cm_kv_lock_ent *v, uint32_t *n);
/* Whether a key on a lease or a lock lies at or below prefix: 1, 0, or an error. */
int cm_kv_lease_under(struct cm_store *s, MDB_txn *txn, uint64_t group, struct cm_bytes prefix);

#endif /* CONFMAN_KV_LEASE_H */
