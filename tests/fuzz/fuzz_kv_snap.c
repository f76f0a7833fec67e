/* fuzz_kv_snap.c: libFuzzer target: snapshot bytes (a follower receives them from the
 * leader in chunks) through cm_kv_restore(), and back through cm_kv_snapshot(). */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "tests/fuzz/fuzz_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GROUP_A 2
#define GROUP_B 3

/* A tree restored from anything must snapshot to bytes that restore to the
 * same tree: otherwise a follower could not install its leader's snapshot. */
static void check_stable(struct cm_store *s, MDB_txn *txn)
{
	msgpack_sbuffer a, b;
	msgpack_sbuffer_init(&a);
	msgpack_sbuffer_init(&b);
	int rv = cm_kv_snapshot(s, txn, GROUP_A, &a);
	assert(rv == 0);
	rv = cm_kv_restore(s, txn, GROUP_B, a.data, a.size);
	assert(rv == 0);
	rv = cm_kv_snapshot(s, txn, GROUP_B, &b);
	assert(rv == 0);
	assert(a.size == b.size && memcmp(a.data, b.data, a.size) == 0);
	msgpack_sbuffer_destroy(&a);
	msgpack_sbuffer_destroy(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cm_store *s = fuzz_store_get();
	MDB_txn *txn;
	int rv = cm_store_txn_begin(s, true, &txn);
	assert(rv == 0);
	rv = cm_kv_restore(s, txn, GROUP_A, data, size);
	assert(rv == 0 || rv == -EBADMSG);
	if (rv == 0)
		check_stable(s, txn);
	cm_store_txn_abort(txn);
	return 0;
}
