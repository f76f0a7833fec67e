/* test_recover.c: --force-new-cluster's rewrite of a store (server/recover.c). */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "confman/proto.h"
#include "server/log.h"
#include "server/recover.h"
#include "server/store.h"

#define MAP_BYTES (64u << 20)

struct fx {
	char dir[64];
	struct cm_store *s;
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
	strcpy(f->dir, "/tmp/cm-test-recover-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(cm_store_open(f->dir, MAP_BYTES, &f->s), 0);
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

static const struct raft_conf three = {3, {1, 2, 3}, {RAFT_VOTER, RAFT_VOTER, RAFT_VOTER}};

/* A group as a founder leaves it: entry 1 the founders' CONF, then
 * normal entries up to last (term 1 up to 5, term 3 after), commit and
 * applied as given, a snapshot at snap (0: none). */
static void put_group(struct fx *f, uint64_t g, uint64_t last, uint64_t commit, uint64_t snap)
{
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	uint8_t conf[RAFT_CONF_MAX_BYTES], data[8] = "payload";
	for (uint64_t i = snap + 1; i <= last; i++) {
		struct raft_entry e = {.term = i <= 5 ? 1 : 3, .index = i, .type = RAFT_ENTRY_NORMAL,
				       .len = sizeof(data), .data = data};
		if (i == 1) {
			e.type = RAFT_ENTRY_CONF;
			e.len = raft_conf_encode(&three, conf);
			e.data = conf;
		}
		assert_int_equal(cm_store_log_append(f->s, t, g, &e, 1), 0);
	}
	struct raft_hard_state hs = {.term = 3, .vote = 2, .commit = commit};
	assert_int_equal(cm_store_hs_put(f->s, t, g, &hs), 0);
	struct raft_snap_meta sm = {.index = snap, .term = snap ? 1 : 0, .conf = three};
	assert_int_equal(cm_store_meta_put(f->s, t, g, commit, &sm), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
}

/* What node.c gives the core at start; the core's configuration after it. */
static void boot_conf(struct fx *f, uint64_t g, struct raft_status *st)
{
	MDB_txn *t;
	struct raft_boot b = {0};
	struct raft_entry *ents = NULL;
	uint32_t n = 0;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_store_hs_get(f->s, t, g, &b.hs), 0);
	assert_int_equal(cm_store_meta_get(f->s, t, g, &b.applied, &b.snap), 0);
	assert_int_equal(cm_store_log_load(f->s, t, g, b.snap.index, &ents, &n), 0);
	cm_store_txn_abort(t);
	b.entries = ents;
	b.n_entries = n;
	struct raft_config rc;
	raft_config_default(&rc, 1, 42);
	struct raft *r;
	assert_int_equal(raft_new(&rc, &b, &r), 0);
	raft_status(r, st);
	raft_free(r);
	cm_store_entries_free(ents, n);
}

static void test_discards_uncommitted_and_appends_conf(void **state)
{
	struct fx *f = *state;
	put_group(f, CM_META_GROUP, 10, 7, 0);
	assert_int_equal(cm__recover_force(f->s, 1), 0);
	MDB_txn *t;
	struct raft_hard_state hs;
	struct raft_entry e;
	struct raft_conf c;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_store_hs_get(f->s, t, CM_META_GROUP, &hs), 0);
	assert_int_equal(hs.term, 3);
	assert_int_equal(hs.vote, 0);
	assert_int_equal(hs.commit, 7);
	assert_int_equal(cm_store_log_get(f->s, t, CM_META_GROUP, 8, &e), 0);
	assert_int_equal(e.type, RAFT_ENTRY_CONF);
	assert_int_equal(e.term, 3);
	assert_int_equal(raft_conf_decode(e.data, e.len, &c), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.ids[0], 1);
	assert_int_equal(c.kinds[0], RAFT_VOTER);
	assert_int_equal(cm_store_log_get(f->s, t, CM_META_GROUP, 9, &e), -ENOENT);
	assert_int_equal(cm_store_log_get(f->s, t, CM_META_GROUP, 7, &e), 0);
	assert_int_equal(e.type, RAFT_ENTRY_NORMAL);
	cm_store_txn_abort(t);
	struct raft_status st;
	boot_conf(f, CM_META_GROUP, &st);
	assert_int_equal(st.conf.n, 1);
	assert_int_equal(st.conf.ids[0], 1);
	assert_int_equal(st.conf_index, 8);
	assert_int_equal(st.last_index, 8);
}

/* A split's group: a snapshot and no log. A tombstone stays one. */
static void test_snapshot_only_group_and_tombstone(void **state)
{
	struct fx *f = *state;
	put_group(f, CM_META_GROUP, 6, 6, 0);
	put_group(f, 5, 50, 50, 50);
	MDB_txn *t;
	const struct raft_hard_state tomb = {0};
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	assert_int_equal(cm_store_hs_put(f->s, t, 9, &tomb), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	assert_int_equal(cm__recover_force(f->s, 2), 0);
	struct raft_status st;
	boot_conf(f, 5, &st);
	assert_int_equal(st.conf.n, 1);
	assert_int_equal(st.conf.ids[0], 2);
	assert_int_equal(st.conf_index, 51);
	struct raft_hard_state hs;
	struct raft_entry e;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_store_hs_get(f->s, t, 9, &hs), 0);
	assert_int_equal(hs.term + hs.vote + hs.commit, 0);
	assert_int_equal(cm_store_log_get(f->s, t, 9, 1, &e), -ENOENT);
	cm_store_txn_abort(t);
}

/* Refusals write nothing: an empty store, a store without the meta
 * group's data, an inconsistent group next to a good one. */
static void test_refusals_write_nothing(void **state)
{
	struct fx *f = *state;
	assert_int_equal(cm__recover_force(f->s, 1), -ENOENT);
	put_group(f, 1, 10, 7, 0);
	assert_int_equal(cm__recover_force(f->s, 1), -ENOENT);
	put_group(f, CM_META_GROUP, 10, 12, 0); /* commit beyond the log */
	assert_int_equal(cm__recover_force(f->s, 1), -EIO);
	MDB_txn *t;
	struct raft_entry e;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_store_log_get(f->s, t, 1, 10, &e), 0);
	assert_int_equal(e.type, RAFT_ENTRY_NORMAL);
	cm_store_txn_abort(t);
}

int main(void)
{
	cm_log_setup(1, CM_LOG_ERROR);
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_discards_uncommitted_and_appends_conf),
		T(test_snapshot_only_group_and_tombstone),
		T(test_refusals_write_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
