/* test_lease.c: leases, their keys and locks in the kv state machine (server/kv_lease.c, kv_lock.c). */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "server/kv.h"
#include "server/kv_lease.h"
#include "server/store.h"

#define G 1
#define STAMP 1700000000000000000ll

struct fx {
	char dir[64];
	struct cm_store *s;
	uint64_t index;
	struct cm_kv_result res;
};

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	strcpy(f->dir, "/tmp/cm-test-lease-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(cm_store_open(f->dir, 256u << 20, &f->s), 0);
	f->index = 1;
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	cm_store_close(f->s);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct cm_bytes B(const char *s)
{
	return (struct cm_bytes){s, (uint32_t)strlen(s)};
}

/* Apply one request as a command at the next index; its result's err. */
static int req(struct fx *f, uint8_t op, uint32_t flags, const char *path, const char *path2,
	       const char *value, uint64_t version, uint64_t arg)
{
	struct cm_req r = {.op = op, .flags = flags, .path = B(path), .path2 = B(path2 ? path2 : ""),
			   .value = B(value ? value : ""), .version = version, .from_index = arg};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_kv_cmd_encode(&sb, &r, STAMP + (int64_t)f->index, 0), 0);
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	assert_int_equal(cm_kv_apply(f->s, t, G, f->index++, sb.data, (uint32_t)sb.size, &f->res), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	msgpack_sbuffer_destroy(&sb);
	return f->res.err;
}

static int grant(struct fx *f, uint64_t id, uint64_t ttl)
{
	return req(f, CM_OP_LEASE, CM_LEASE_GRANT, "/", NULL, NULL, id, ttl);
}

static int lput(struct fx *f, const char *path, uint64_t lease)
{
	return req(f, CM_OP_PUT, CM_PUT_LEASE, path, NULL, "v", 0, lease);
}

static int expire(struct fx *f, uint64_t id)
{
	return req(f, CM_OP_LEASE, CM_LEASE_EXPIRE, "/", NULL, NULL, id, 0);
}

static int lock(struct fx *f, const char *path, uint64_t lease, uint64_t owner, uint32_t flags)
{
	return req(f, CM_OP_LOCK, CM_LOCK_ACQUIRE | flags, path, NULL, NULL, lease, owner);
}

static int unlock(struct fx *f, const char *path, uint64_t lease, uint64_t owner)
{
	return req(f, CM_OP_LOCK, CM_LOCK_RELEASE, path, NULL, NULL, lease, owner);
}

static bool exists(struct fx *f, const char *path)
{
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	struct cm_attr a;
	int rc = cm_kv_get(f->s, t, G, B(path), &a, NULL);
	cm_store_txn_abort(t);
	return rc == 0;
}

static int lease_of(struct fx *f, uint64_t id, struct cm_kv_lease *l)
{
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	int rc = cm_kv_lease_find(f->s, t, G, id, l);
	cm_store_txn_abort(t);
	return rc;
}

/* Expire until the lease is gone; the number of entries it took. */
static int expire_all(struct fx *f, uint64_t id)
{
	int steps = 0;
	do {
		assert_int_equal(expire(f, id), 0);
		steps++;
		assert_true(steps < 100);
	} while (!f->res.lease_gone);
	return steps;
}

static void grant_rules(void **state)
{
	struct fx *f = *state;
	assert_int_equal(grant(f, 7, 500), -EINVAL);   /* under the minimum TTL */
	assert_int_equal(grant(f, 7, UINT64_C(1) << 40), -EINVAL);
	assert_int_equal(grant(f, 0, 5000), -EINVAL);
	assert_int_equal(grant(f, 7, 5000), 0);
	assert_int_equal(f->res.attr.version, 7);
	assert_int_equal(f->res.attr.mtime_ns, 5000);
	assert_int_equal(grant(f, 7, 5000), -EEXIST);
	assert_int_equal(expire(f, 8), -ENOENT);
	assert_int_equal(lput(f, "/a", 8), -ENOENT); /* an unknown lease */
	assert_false(exists(f, "/a"));
	assert_int_equal(req(f, CM_OP_MKDIR, 0, "/d", NULL, NULL, 0, 0), 0);
	assert_int_equal(req(f, CM_OP_PUT, CM_PUT_LEASE | CM_PUT_KEEP_VALUE, "/d", NULL, NULL, 0, 7),
			 -EISDIR);
}

/* A file attached with its value kept (CM_PUT_KEEP_VALUE, what the mount's
 * user.confman.ephemeral sends): attached, value untouched, and detached
 * the same way. The apply once answered -EIO here (the kept node's inode
 * was not passed on), which stopped every replica (fail-stop). */
static void attach_keeping_value(void **state)
{
	struct fx *f = *state;
	const uint32_t keep = CM_PUT_LEASE | CM_PUT_KEEP_VALUE;
	assert_int_equal(grant(f, 9, 10000), 0);
	assert_int_equal(req(f, CM_OP_PUT, 0, "/svc/host", NULL, "host:80", 0, 0), 0);
	assert_int_equal(req(f, CM_OP_PUT, keep, "/svc/host", NULL, NULL, 0, 9), 0);
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	struct cm_attr a;
	struct cm_bytes v;
	assert_int_equal(cm_kv_get(f->s, t, G, B("/svc/host"), &a, &v), 0);
	assert_int_equal(v.len, 7);
	assert_memory_equal(v.p, "host:80", 7);
	cm_store_txn_abort(t);
	struct cm_kv_lease l;
	assert_int_equal(lease_of(f, 9, &l), 0);
	assert_int_equal(l.nkeys, 1);
	assert_int_equal(req(f, CM_OP_PUT, keep, "/svc/host", NULL, NULL, 0, 0), 0); /* detach */
	assert_int_equal(req(f, CM_OP_PUT, keep, "/svc/host", NULL, NULL, 0, 9), 0);
	expire_all(f, 9);
	assert_false(exists(f, "/svc/host"));
}

/* Each end step deletes one key, with its own DELETE event; the last drops
 * the lease. A deleted or re-created key is not the lease's any more. */
static void expiry_deletes_keys(void **state)
{
	struct fx *f = *state;
	assert_int_equal(grant(f, 5, 10000), 0);
	assert_int_equal(lput(f, "/svc/a", 5), 0);
	assert_int_equal(lput(f, "/svc/b", 5), 0);
	assert_int_equal(lput(f, "/svc/c", 5), 0);
	assert_int_equal(req(f, CM_OP_PUT, 0, "/svc/plain", NULL, "x", 0, 0), 0);
	/* c deleted and re-created without the lease: the new c is nobody's. */
	assert_int_equal(req(f, CM_OP_DELETE, 0, "/svc/c", NULL, NULL, 0, 0), 0);
	assert_int_equal(req(f, CM_OP_PUT, 0, "/svc/c", NULL, "new", 0, 0), 0);
	/* b detached by a PUT with lease 0. */
	assert_int_equal(lput(f, "/svc/b", 0), 0);
	struct cm_kv_lease l;
	assert_int_equal(lease_of(f, 5, &l), 0);
	assert_int_equal(l.nkeys, 2); /* a, and c's stale entry */
	assert_int_equal(expire(f, 5), 0);
	assert_int_equal(f->res.event_kind, CM_EV_DELETE);
	assert_false(exists(f, "/svc/a"));
	assert_int_equal(lease_of(f, 5, &l), 0);
	assert_true(l.ending);
	assert_int_equal(lput(f, "/svc/d", 5), -ENOENT); /* ending: no key joins */
	assert_int_equal(expire(f, 5), 0);
	assert_true(f->res.lease_gone);
	assert_int_equal(f->res.event_kind, 0);
	assert_int_equal(lease_of(f, 5, &l), -ENOENT);
	assert_true(exists(f, "/svc/b"));
	assert_true(exists(f, "/svc/c"));
	assert_true(exists(f, "/svc/plain"));
}

/* Renames keep a key on its lease: of the key, and of a directory above. */
static void renames_follow(void **state)
{
	struct fx *f = *state;
	assert_int_equal(grant(f, 9, 10000), 0);
	assert_int_equal(lput(f, "/x/y/k", 9), 0);
	assert_int_equal(lput(f, "/x/k2", 9), 0);
	assert_int_equal(req(f, CM_OP_RENAME, 0, "/x/y", "/z", NULL, 0, 0), 0);
	assert_int_equal(req(f, CM_OP_RENAME, 0, "/x/k2", "/z/k3", NULL, 0, 0), 0);
	assert_int_equal(req(f, CM_OP_RENAME, 0, "/z", "/w/z", NULL, 0, 0), 0);
	assert_int_equal(expire_all(f, 9), 3);
	assert_false(exists(f, "/w/z/k"));
	assert_false(exists(f, "/w/z/k3"));
	assert_true(exists(f, "/w/z"));
}

/* FIFO locks: shared holds together, an exclusive waiter is not passed,
 * tokens of exclusive holds strictly increase; a lease's end frees. */
static void locks_fifo(void **state)
{
	struct fx *f = *state;
	assert_int_equal(grant(f, 1, 10000), 0);
	assert_int_equal(grant(f, 2, 10000), 0);
	assert_int_equal(grant(f, 3, 10000), 0);
	assert_int_equal(lock(f, "/l", 1, 0, 0), 0);
	uint64_t t1 = f->res.attr.version;
	assert_true(t1 > 0);
	assert_int_equal(lock(f, "/l", 1, 0, 0), 0); /* again: the same hold */
	assert_int_equal(f->res.attr.version, t1);
	assert_int_equal(lock(f, "/l", 2, 0, 0), -EWOULDBLOCK);
	assert_int_equal(lock(f, "/l", 2, 0, CM_LOCK_WAIT), 0);
	assert_int_equal(f->res.attr.version, 0); /* queued */
	assert_int_equal(lock(f, "/l", 3, 0, CM_LOCK_WAIT | CM_LOCK_SHARED), 0);
	assert_int_equal(f->res.attr.version, 0);
	assert_int_equal(lock(f, "/l", 2, 0, CM_LOCK_WAIT), 0); /* a retry keeps its place */
	assert_int_equal(f->res.attr.version, 0);
	assert_int_equal(unlock(f, "/l", 1, 0), 0);
	assert_int_equal(unlock(f, "/l", 1, 0), -ENOENT);
	MDB_txn *t;
	struct cm_kv_lock_ent v[CM_LOCK_ENTRIES_MAX];
	uint32_t n;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_kv_lock_get(f->s, t, G, B("/l"), v, &n), 0);
	cm_store_txn_abort(t);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].lease, 2);
	assert_true(v[0].held);
	assert_true(v[0].token > t1);
	assert_false(v[1].held); /* shared, behind the exclusive holder */
	/* Lease 2 expires: its hold goes, the shared waiter gets it. */
	expire_all(f, 2);
	assert_int_equal(lock(f, "/l", 3, 0, CM_LOCK_SHARED), 0);
	assert_true(f->res.attr.version > v[0].token);
	assert_int_equal(lock(f, "/l", 1, 5, CM_LOCK_SHARED), 0); /* shares it */
	assert_int_equal(lock(f, "/l", 1, 6, 0), -EWOULDBLOCK);
	assert_int_equal(lock(f, "/l", 99, 0, 0), -ENOENT); /* no such lease */
}

/* Snapshots carry leases, keys' attachments and locks. */
static void snapshot_roundtrip(void **state)
{
	struct fx *f = *state;
	assert_int_equal(grant(f, 4, 10000), 0);
	assert_int_equal(lput(f, "/e", 4), 0);
	assert_int_equal(lock(f, "/lk", 4, 1, 0), 0);
	MDB_txn *t;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	assert_int_equal(cm_kv_snapshot(f->s, t, G, &sb), 0);
	assert_int_equal(cm_kv_restore(f->s, t, 2, sb.data, sb.size), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	msgpack_sbuffer_destroy(&sb);
	struct cm_kv_lease l;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_kv_lease_find(f->s, t, 2, 4, &l), 0);
	assert_int_equal(l.nkeys, 1);
	struct cm_kv_lock_ent v[CM_LOCK_ENTRIES_MAX];
	uint32_t n;
	assert_int_equal(cm_kv_lock_get(f->s, t, 2, B("/lk"), v, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(cm_kv_lease_under(f->s, t, 2, B("/e")), 1);
	assert_int_equal(cm_kv_lease_under(f->s, t, 2, B("/q")), 0);
	cm_store_txn_abort(t);
}

/* A subtree holding a key on a lease, or a lock, is not split off. */
static void split_refused(void **state)
{
	struct fx *f = *state;
	assert_int_equal(grant(f, 6, 10000), 0);
	assert_int_equal(lput(f, "/s/a/k", 6), 0);
	assert_int_equal(req(f, CM_OP_PUT, 0, "/t/b/k", NULL, "x", 0, 0), 0);
	assert_int_equal(lock(f, "/t/b/lock", 6, 0, 0), 0);
	assert_int_equal(req(f, CM_OP_SHARD_SPLIT, 0, "/s", NULL, "1,2,3", 77, 0), -EBUSY);
	assert_int_equal(req(f, CM_OP_SHARD_SPLIT, 0, "/t/b", NULL, "1,2,3", 77, 0), -EBUSY);
	expire_all(f, 6);
	assert_int_equal(req(f, CM_OP_SHARD_SPLIT, 0, "/t/b", NULL, "1,2,3", 77, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(grant_rules, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(expiry_deletes_keys, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(attach_keeping_value, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(renames_follow, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(locks_fifo, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(snapshot_roundtrip, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(split_refused, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
