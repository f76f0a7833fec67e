/* fuzz_store.h: a throw-away LMDB store for the kv targets, holding a small tree. */
#ifndef CONFMAN_FUZZ_STORE_H
#define CONFMAN_FUZZ_STORE_H

#include "server/kv.h"
#include "server/store.h"

#define FUZZ_GROUP 1  /* the group holding the seed tree */
#define FUZZ_INDEX 1000 /* the log index a fuzzed command is applied at */

/*
 * fuzz_store_get - the process's store (created on first use in a temporary
 * directory under /dev/shm, removed at exit), with FUZZ_GROUP holding
 * /etc/app/conf (a file), /etc/app/d (an empty directory), /link (a
 * symlink) and a shard boundary /shard. Aborts on any failure: a target
 * without its store tests nothing.
 */
struct cm_store *fuzz_store_get(void);

#endif /* CONFMAN_FUZZ_STORE_H */
