/* fuzz_store.c: a throw-away LMDB store for the kv targets, holding a small tree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuzz/fuzz_store.h"

static struct cm_store *store;
static char dir[64];

static void die(const char *what, int rv)
{
	fprintf(stderr, "fuzz_store: %s: %d\n", what, rv);
	abort();
}

static void cleanup(void)
{
	char p[96];
	cm_store_close(store);
	store = NULL;
	snprintf(p, sizeof(p), "%s/data.mdb", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", dir);
	unlink(p);
	rmdir(dir);
}

/* Apply one write as the leader would have proposed it. */
static void seed_one(MDB_txn *txn, uint64_t index, uint8_t op, uint32_t flags, const char *path,
		     const char *value, uint32_t mode)
{
	struct cm_req req = {.op = op, .flags = flags, .mode = mode};
	req.path = (struct cm_bytes){path, (uint32_t)strlen(path)};
	req.value = (struct cm_bytes){value, (uint32_t)strlen(value)};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	struct cm_kv_result res;
	int rv = cm_kv_cmd_encode(&sb, &req, 1700000000000000000, 0);
	if (rv == 0)
		rv = cm_kv_apply(store, txn, FUZZ_GROUP, index, sb.data, (uint32_t)sb.size, &res);
	if (rv != 0 || res.err != 0)
		die(path, rv ? rv : res.err);
	msgpack_sbuffer_destroy(&sb);
}

struct cm_store *fuzz_store_get(void)
{
	if (store != NULL)
		return store;
	strcpy(dir, "/dev/shm/confman-fuzz-XXXXXX");
	if (mkdtemp(dir) == NULL)
		die("mkdtemp", -1);
	int rv = cm_store_open(dir, 64u << 20, &store);
	if (rv != 0)
		die("open", rv);
	atexit(cleanup);
	MDB_txn *txn;
	if ((rv = cm_store_txn_begin(store, true, &txn)) != 0)
		die("begin", rv);
	seed_one(txn, 1, CM_OP_PUT, 0, "/etc/app/conf", "port = 80\n", 0);
	seed_one(txn, 2, CM_OP_MKDIR, 0, "/etc/app/d", "", 0);
	seed_one(txn, 3, CM_OP_PUT, 0, "/link", "/etc/app/conf", S_IFLNK | 0777);
	seed_one(txn, 4, CM_OP_MKDIR, CM_MKDIR_BOUNDARY, "/shard", "", 0);
	if ((rv = cm_store_txn_commit(txn)) != 0)
		die("commit", rv);
	return store;
}
