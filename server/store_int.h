/* store_int.h: what store.c and store_log.c share; nothing outside the store includes it. */
#ifndef CONFMAN_STORE_INT_H
#define CONFMAN_STORE_INT_H

#include <lmdb.h>

#include "server/store.h"

struct cm_store {
	MDB_env *env; /* owned */
	struct cm_store_dbs dbs;
	/* cm_store_usage's last answer and the transaction it was computed
	 * at: the free list is walked once per committed write, not per call. */
	size_t usage_txnid;
	double usage;
	double top;
	uint64_t quota; /* map_bytes as asked; LMDB's map is this plus a reserve */
};

#endif /* CONFMAN_STORE_INT_H */
