/* test_store.c: the node's LMDB store (server/store.c, server/store_log.c). */
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
	strcpy(f->dir, "/tmp/cm-test-store-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(cm_store_open(f->dir, MAP_BYTES, &f->s), 0);
	*state = f;
	return 0;
}

/* Runs after a failed test too (cmocka), so no temp dir is left behind. */
static int fx_teardown(void **state)
{
	struct fx *f = *state;
	cm_store_close(f->s);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static MDB_txn *wtxn(struct fx *f)
{
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	return t;
}

static MDB_txn *rtxn(struct fx *f)
{
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	return t;
}

/* Entries first..first+n-1 of term, data "e<index>". */
static void append(struct fx *f, uint64_t group, uint64_t first, uint32_t n, uint64_t term)
{
	struct raft_entry e[64];
	char buf[64][24];
	assert_true(n <= 64);
	for (uint32_t k = 0; k < n; k++) {
		int len = snprintf(buf[k], sizeof(buf[k]), "e%llu", (unsigned long long)(first + k));
		e[k] = (struct raft_entry){.term = term, .index = first + k, .type = RAFT_ENTRY_NORMAL,
					   .len = (uint32_t)len, .data = buf[k]};
	}
	MDB_txn *t = wtxn(f);
	assert_int_equal(cm_store_log_append(f->s, t, group, e, n), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
}

/* Load group's log after `after` and check it is indexes first..last with terms from want_term(). */
static void expect_log(struct fx *f, uint64_t group, uint64_t after, uint64_t first, uint64_t last,
		       uint64_t split, uint64_t term_before, uint64_t term_from)
{
	MDB_txn *t = rtxn(f);
	struct raft_entry *e = NULL;
	uint32_t n = 0;
	assert_int_equal(cm_store_log_load(f->s, t, group, after, &e, &n), 0);
	cm_store_txn_abort(t);
	assert_int_equal(n, last >= first ? last - first + 1 : 0);
	for (uint32_t k = 0; k < n; k++) {
		char want[24];
		int len = snprintf(want, sizeof(want), "e%llu", (unsigned long long)(first + k));
		assert_int_equal(e[k].index, first + k);
		assert_int_equal(e[k].term, first + k < split ? term_before : term_from);
		assert_int_equal(e[k].type, RAFT_ENTRY_NORMAL);
		assert_int_equal(e[k].len, len);
		assert_memory_equal(e[k].data, want, (size_t)len);
	}
	cm_store_entries_free(e, n);
}

static void test_open_missing_dir_returns_enoent(void **state)
{
	(void)state;
	struct cm_store *s = NULL;
	assert_int_equal(cm_store_open("/tmp/cm-test-store-no-such-dir/x", MAP_BYTES, &s), -ENOENT);
}

static void test_hs_round_trips_and_missing_is_enoent(void **state)
{
	struct fx *f = *state;
	struct raft_hard_state hs = {.term = 7, .vote = 3, .commit = 42}, got;
	MDB_txn *t = wtxn(f);
	assert_int_equal(cm_store_hs_get(f->s, t, 1, &got), -ENOENT);
	assert_int_equal(got.term + got.vote + got.commit, 0);
	assert_int_equal(cm_store_hs_put(f->s, t, 1, &hs), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	t = rtxn(f);
	assert_int_equal(cm_store_hs_get(f->s, t, 1, &got), 0);
	assert_memory_equal(&got, &hs, sizeof(hs));
	assert_int_equal(cm_store_hs_get(f->s, t, 2, &got), -ENOENT);
	cm_store_txn_abort(t);
}

static void test_meta_round_trips_with_conf(void **state)
{
	struct fx *f = *state;
	struct raft_snap_meta m = {.index = 100, .term = 4, .size = 12345,
				   .conf = {.n = 3, .ids = {1, 2, 9}, .kinds = {1, 1, 2}}};
	struct raft_snap_meta got;
	uint64_t applied;
	MDB_txn *t = wtxn(f);
	assert_int_equal(cm_store_meta_get(f->s, t, 5, &applied, &got), -ENOENT);
	assert_int_equal(cm_store_meta_put(f->s, t, 5, 120, &m), 0);
	assert_int_equal(cm_store_meta_put(f->s, t, 6, 3, NULL), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	t = rtxn(f);
	assert_int_equal(cm_store_meta_get(f->s, t, 5, &applied, &got), 0);
	assert_int_equal(applied, 120);
	assert_int_equal(got.index, 100);
	assert_int_equal(got.term, 4);
	assert_int_equal(got.size, 12345);
	assert_int_equal(got.conf.n, 3);
	assert_int_equal(got.conf.ids[2], 9);
	assert_int_equal(got.conf.kinds[2], RAFT_LEARNER);
	assert_int_equal(cm_store_meta_get(f->s, t, 6, &applied, &got), 0);
	assert_int_equal(applied, 3);
	assert_int_equal(got.index, 0);
	assert_int_equal(got.conf.n, 0);
	cm_store_txn_abort(t);
}

static void test_snap_round_trips(void **state)
{
	struct fx *f = *state;
	static char big[300000];
	for (size_t k = 0; k < sizeof(big); k++)
		big[k] = (char)(k * 7);
	const void *p;
	uint64_t len;
	MDB_txn *t = wtxn(f);
	assert_int_equal(cm_store_snap_get(f->s, t, 1, &p, &len), -ENOENT);
	assert_int_equal(cm_store_snap_put(f->s, t, 1, big, sizeof(big)), 0);
	assert_int_equal(cm_store_snap_put(f->s, t, 2, "x", 1), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	t = rtxn(f);
	assert_int_equal(cm_store_snap_get(f->s, t, 1, &p, &len), 0);
	assert_int_equal(len, sizeof(big));
	assert_memory_equal(p, big, sizeof(big));
	cm_store_txn_abort(t);
}

static void test_log_append_and_load_round_trip(void **state)
{
	struct fx *f = *state;
	append(f, 1, 1, 10, 2);
	append(f, 2, 1, 3, 9); /* another group must not show up */
	expect_log(f, 1, 0, 1, 10, 100, 2, 2);
	expect_log(f, 1, 4, 5, 10, 100, 2, 2);
	expect_log(f, 1, 10, 11, 10, 100, 2, 2); /* nothing after the last */
	expect_log(f, 3, 0, 1, 0, 0, 0, 0);      /* a group with no log */
	MDB_txn *t = rtxn(f);
	struct raft_entry e;
	assert_int_equal(cm_store_log_get(f->s, t, 1, 7, &e), 0);
	assert_int_equal(e.index, 7);
	assert_int_equal(e.len, 2);
	assert_memory_equal(e.data, "e7", 2);
	assert_int_equal(cm_store_log_get(f->s, t, 1, 11, &e), -ENOENT);
	cm_store_txn_abort(t);
}

static void test_log_append_replaces_conflicting_suffix(void **state)
{
	struct fx *f = *state;
	append(f, 1, 1, 10, 2);
	append(f, 2, 1, 10, 2);
	append(f, 1, 6, 2, 3); /* a new leader's entries from 6: 8..10 must go */
	expect_log(f, 1, 0, 1, 7, 6, 2, 3);
	expect_log(f, 2, 0, 1, 10, 100, 2, 2); /* other group untouched */
}

static void test_log_truncate_prefix_and_delete_all(void **state)
{
	struct fx *f = *state;
	append(f, 1, 1, 10, 2);
	append(f, 2, 1, 10, 2);
	MDB_txn *t = wtxn(f);
	assert_int_equal(cm_store_log_truncate_prefix(f->s, t, 1, 4), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	expect_log(f, 1, 4, 5, 10, 100, 2, 2);
	t = rtxn(f);
	struct raft_entry e;
	assert_int_equal(cm_store_log_get(f->s, t, 1, 4, &e), -ENOENT);
	assert_int_equal(cm_store_log_get(f->s, t, 1, 5, &e), 0);
	cm_store_txn_abort(t);
	t = wtxn(f);
	assert_int_equal(cm_store_log_delete_all(f->s, t, 1), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	expect_log(f, 1, 0, 1, 0, 0, 0, 0);
	expect_log(f, 2, 0, 1, 10, 100, 2, 2);
}

static void test_log_load_detects_gap_returns_eio(void **state)
{
	struct fx *f = *state;
	append(f, 1, 1, 3, 1);
	append(f, 1, 4, 3, 1);
	append(f, 1, 10, 2, 1); /* 7..9 missing */
	MDB_txn *t = rtxn(f);
	struct raft_entry *e = NULL;
	uint32_t n = 0;
	assert_int_equal(cm_store_log_load(f->s, t, 1, 0, &e, &n), -EIO);
	/* a log that starts later than after + 1 has lost entries too */
	assert_int_equal(cm_store_log_load(f->s, t, 1, 8, &e, &n), -EIO);
	assert_int_equal(cm_store_log_load(f->s, t, 1, 9, &e, &n), 0);
	assert_int_equal(n, 2);
	cm_store_entries_free(e, n);
	cm_store_txn_abort(t);
}

static void test_stage_take_concatenates_chunks_and_deletes_them(void **state)
{
	struct fx *f = *state;
	MDB_txn *t = wtxn(f);
	assert_int_equal(cm_store_stage_put(f->s, t, 1, 0, "stale", 5), 0);
	assert_int_equal(cm_store_stage_put(f->s, t, 1, 0, "hello ", 6), 0); /* restarts */
	assert_int_equal(cm_store_stage_put(f->s, t, 1, 6, "wor", 3), 0);
	assert_int_equal(cm_store_stage_put(f->s, t, 1, 4, "o wor", 5), 0); /* overlap */
	assert_int_equal(cm_store_stage_put(f->s, t, 1, 9, "ld", 2), 0);
	assert_int_equal(cm_store_stage_put(f->s, t, 2, 0, "other", 5), 0);
	void *data = NULL;
	assert_int_equal(cm_store_stage_take(f->s, t, 1, 12, &data), -EIO); /* too long */
	assert_int_equal(cm_store_stage_take(f->s, t, 1, 10, &data), -EIO); /* bytes beyond */
	assert_int_equal(cm_store_stage_take(f->s, t, 1, 11, &data), 0);
	assert_memory_equal(data, "hello world", 11);
	free(data);
	assert_int_equal(cm_store_stage_take(f->s, t, 1, 11, &data), -EIO); /* gone */
	assert_int_equal(cm_store_stage_take(f->s, t, 2, 5, &data), 0);
	assert_memory_equal(data, "other", 5);
	free(data);
	cm_store_txn_abort(t);
}

static void test_stage_take_with_hole_returns_eio(void **state)
{
	struct fx *f = *state;
	MDB_txn *t = wtxn(f);
	assert_int_equal(cm_store_stage_put(f->s, t, 1, 0, "abc", 3), 0);
	assert_int_equal(cm_store_stage_put(f->s, t, 1, 5, "fgh", 3), 0);
	void *data = NULL;
	assert_int_equal(cm_store_stage_take(f->s, t, 1, 8, &data), -EIO);
	assert_null(data);
	cm_store_txn_abort(t);
}

static void test_groups_lists_groups_with_hard_state(void **state)
{
	struct fx *f = *state;
	struct raft_hard_state hs = {.term = 1};
	MDB_txn *t = wtxn(f);
	assert_int_equal(cm_store_hs_put(f->s, t, 300, &hs), 0);
	assert_int_equal(cm_store_hs_put(f->s, t, 2, &hs), 0);
	assert_int_equal(cm_store_hs_put(f->s, t, 1ull << 40, &hs), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	append(f, 77, 1, 1, 1); /* a log alone does not make a group */
	t = rtxn(f);
	uint64_t *g = NULL;
	uint32_t n = 0;
	assert_int_equal(cm_store_groups(f->s, t, &g, &n), 0);
	cm_store_txn_abort(t);
	assert_int_equal(n, 3);
	assert_int_equal(g[0], 2);
	assert_int_equal(g[1], 300);
	assert_int_equal(g[2], 1ull << 40);
	free(g);
}

static void test_data_survives_close_and_reopen(void **state)
{
	struct fx *f = *state;
	append(f, 1, 1, 5, 3);
	struct raft_hard_state hs = {.term = 3, .vote = 1, .commit = 5}, got;
	MDB_txn *t = wtxn(f);
	assert_int_equal(cm_store_hs_put(f->s, t, 1, &hs), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	cm_store_close(f->s);
	f->s = NULL;
	assert_int_equal(cm_store_open(f->dir, MAP_BYTES, &f->s), 0);
	expect_log(f, 1, 0, 1, 5, 100, 3, 3);
	t = rtxn(f);
	assert_int_equal(cm_store_hs_get(f->s, t, 1, &got), 0);
	assert_memory_equal(&got, &hs, sizeof(hs));
	cm_store_txn_abort(t);
}

/* Write 64 KiB entries in transactions of 4 until the map is full. */
static int fill(struct cm_store *s, uint64_t *next)
{
	static char blob[64 << 10];
	for (;;) {
		MDB_txn *t;
		int rc = cm_store_txn_begin(s, true, &t);
		if (rc != 0)
			return rc;
		for (int k = 0; k < 4 && rc == 0; k++) {
			struct raft_entry e = {.term = 1, .index = *next, .type = RAFT_ENTRY_NORMAL,
					       .len = sizeof(blob), .data = blob};
			rc = cm_store_log_append(s, t, 1, &e, 1);
			if (rc == 0)
				(*next)++;
		}
		if (rc != 0) {
			cm_store_txn_abort(t);
			return rc;
		}
		rc = cm_store_txn_commit(t);
		if (rc != 0)
			return rc;
	}
}

static void test_tiny_map_fills_with_enospc_and_stays_readable(void **state)
{
	(void)state;
	char dir[] = "/tmp/cm-test-store-full-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct cm_store *s;
	assert_int_equal(cm_store_open(dir, 1u << 20, &s), 0);
	uint64_t next = 1;
	int rc = fill(s, &next);
	double usage = cm_store_usage(s);
	MDB_txn *t;
	int rc2 = cm_store_txn_begin(s, false, &t);
	struct raft_entry *e = NULL;
	uint32_t n = 0;
	int rc3 = rc2 ? rc2 : cm_store_log_load(s, t, 1, 0, &e, &n);
	if (rc2 == 0)
		cm_store_txn_abort(t);
	cm_store_entries_free(e, n);
	cm_store_close(s);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	assert_int_equal(rc, -ENOSPC);
	assert_int_equal(rc3, 0);
	/* Whole committed transactions of 4 survive; the failed one is gone. */
	assert_true(n > 0 && n % 4 == 0 && n < next);
	assert_true(usage > 0.5 && usage <= 1.0);
}

static void test_usage_grows_with_data(void **state)
{
	struct fx *f = *state;
	double before = cm_store_usage(f->s);
	assert_true(before > 0.0 && before < 0.01);
	static char blob[1 << 20];
	MDB_txn *t = wtxn(f);
	assert_int_equal(cm_store_snap_put(f->s, t, 1, blob, sizeof(blob)), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	double after = cm_store_usage(f->s);
	assert_true(after > before + 0.01);
}

static void raw_put(struct fx *f, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t vlen)
{
	MDB_txn *t = wtxn(f);
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
	assert_int_equal(mdb_put(t, dbi, &k, &v, 0), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
}

static void test_corrupt_records_give_eio(void **state)
{
	struct fx *f = *state;
	const struct cm_store_dbs *d = cm_store_dbs(f->s);
	uint8_t g[8] = {0, 0, 0, 0, 0, 0, 0, 1};
	uint8_t gi[16] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
	raw_put(f, d->hs, g, sizeof(g), "short", 5);
	uint8_t meta[40] = {0};
	meta[32] = 13; /* 13 members in a conf of 4 bytes */
	raw_put(f, d->meta, g, sizeof(g), meta, 36);
	raw_put(f, d->log, gi, sizeof(gi), "abc", 3); /* shorter than term + type */
	MDB_txn *t = rtxn(f);
	struct raft_hard_state hs;
	struct raft_snap_meta m;
	struct raft_entry e, *v = NULL;
	uint64_t applied;
	uint32_t n = 0;
	assert_int_equal(cm_store_hs_get(f->s, t, 1, &hs), -EIO);
	assert_int_equal(cm_store_meta_get(f->s, t, 1, &applied, &m), -EIO);
	assert_int_equal(cm_store_log_get(f->s, t, 1, 1, &e), -EIO);
	assert_int_equal(cm_store_log_load(f->s, t, 1, 0, &v, &n), -EIO);
	cm_store_txn_abort(t);
	uint8_t bad_type[9] = {1, 0, 0, 0, 0, 0, 0, 0, 77};
	raw_put(f, d->log, gi, sizeof(gi), bad_type, sizeof(bad_type));
	t = rtxn(f);
	assert_int_equal(cm_store_log_get(f->s, t, 1, 1, &e), -EIO);
	cm_store_txn_abort(t);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_missing_dir_returns_enoent),
		T(test_hs_round_trips_and_missing_is_enoent),
		T(test_meta_round_trips_with_conf),
		T(test_snap_round_trips),
		T(test_log_append_and_load_round_trip),
		T(test_log_append_replaces_conflicting_suffix),
		T(test_log_truncate_prefix_and_delete_all),
		T(test_log_load_detects_gap_returns_eio),
		T(test_stage_take_concatenates_chunks_and_deletes_them),
		T(test_stage_take_with_hole_returns_eio),
		T(test_groups_lists_groups_with_hard_state),
		T(test_data_survives_close_and_reopen),
		cmocka_unit_test(test_tiny_map_fills_with_enospc_and_stays_readable),
		T(test_usage_grows_with_data),
		T(test_corrupt_records_give_eio),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
