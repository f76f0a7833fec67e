/* store_groups.c: what a stopped node's store holds per group, for tests:
 * "GROUP hs log meta snap stage kv events" (record counts), one line per
 * group that has any record, in group order. Usage: store-groups DATA_DIR */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "server/store.h"

/* Every group id a database key starts with: walk the kv and the hard
 * states (a group without either has nothing worth counting). */
int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: store-groups DATA_DIR\n");
		return 2;
	}
	struct cm_store *s;
	int rv = cm_store_open(argv[1], 1024ull << 20, &s);
	if (rv != 0) {
		fprintf(stderr, "store-groups: %s: cannot open (%d)\n", argv[1], rv);
		return 1;
	}
	MDB_txn *txn;
	uint64_t *ids = NULL;
	uint32_t n = 0;
	rv = cm_store_txn_begin(s, false, &txn);
	if (rv == 0)
		rv = cm_store_groups(s, txn, &ids, &n);
	for (uint32_t k = 0; rv == 0 && k < n; k++) {
		uint64_t c[CM_STORE_DBS];
		rv = cm_store_group_records(s, txn, ids[k], c);
		if (rv == 0)
			printf("%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
			       " %" PRIu64 " %" PRIu64 "\n",
			       ids[k], c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
	}
	if (rv == 0)
		cm_store_txn_abort(txn);
	free(ids);
	cm_store_close(s);
	return rv == 0 ? 0 : 1;
}
