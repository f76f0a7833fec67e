/* test_kv.c: the replicated kv state machine (server/kv*.c) on a real store. */
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

#include "confman/path.h"
#include "server/kv.h"
#include "server/store.h"

#define G 1 /* the group most tests use */
#define STAMP 1700000000000000000ll

struct fx {
	char dir[64];
	struct cm_store *s;
	uint64_t index; /* next log index to apply at */
	struct cm_kv_result res; /* of the last op() */
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
	strcpy(f->dir, "/tmp/cm-test-kv-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(cm_store_open(f->dir, 256u << 20, &f->s), 0);
	f->index = 1;
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

static struct cm_bytes B(const char *s)
{
	return (struct cm_bytes){s, (uint32_t)strlen(s)};
}

/* A write request, for op() and the codec tests. */
struct w {
	uint8_t op;
	uint32_t flags;
	const char *path, *path2, *value;
	uint64_t version;
	uint32_t mode;
};

/* Apply one command to group g at the next index, in its own transaction,
 * with mod_index as CM_PUT_IF_MOD's operand; the result's err. */
static int op_mod_in(struct fx *f, uint64_t g, struct w w, uint64_t mod_index)
{
	struct cm_req req = {.op = w.op, .flags = w.flags, .path = B(w.path),
			     .path2 = B(w.path2 ? w.path2 : ""), .value = B(w.value ? w.value : ""),
			     .version = w.version, .mode = w.mode, .uid = 1000, .gid = 100,
			     .mod_index = mod_index};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	int64_t stamp = STAMP + (int64_t)f->index;
	assert_int_equal(cm_kv_cmd_encode(&sb, &req, stamp, 64), 0);
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	assert_int_equal(cm_kv_apply(f->s, t, g, f->index++, sb.data, (uint32_t)sb.size, &f->res), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	msgpack_sbuffer_destroy(&sb);
	return f->res.err;
}

static int op_in(struct fx *f, uint64_t g, struct w w)
{
	return op_mod_in(f, g, w, 0);
}

static int op(struct fx *f, struct w w)
{
	return op_in(f, G, w);
}

static int op_mod(struct fx *f, struct w w, uint64_t mod_index)
{
	return op_mod_in(f, G, w, mod_index);
}

static int put(struct fx *f, const char *path, const char *value)
{
	return op(f, (struct w){CM_OP_PUT, 0, path, NULL, value, 0, 0});
}

static int mkdir_(struct fx *f, const char *path)
{
	return op(f, (struct w){CM_OP_MKDIR, 0, path, NULL, NULL, 0, 0});
}

static int del(struct fx *f, const char *path, uint32_t flags)
{
	return op(f, (struct w){CM_OP_DELETE, flags, path, NULL, NULL, 0, 0});
}

static int ren(struct fx *f, const char *from, const char *to)
{
	return op(f, (struct w){CM_OP_RENAME, 0, from, to, NULL, 0, 0});
}

/* get into attr and a NUL-terminated copy of the value. */
static int get_in(struct fx *f, uint64_t g, const char *path, struct cm_attr *attr, char *val, size_t cap)
{
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	struct cm_attr a;
	struct cm_bytes v = {0};
	int rc = cm_kv_get(f->s, t, g, B(path), &a, &v);
	if (rc == 0 && attr)
		*attr = a;
	if (rc == 0 && val) {
		assert_true(v.len < cap);
		memcpy(val, v.p, v.len);
		val[v.len] = 0;
	}
	cm_store_txn_abort(t);
	return rc;
}

static int get(struct fx *f, const char *path, struct cm_attr *attr, char *val, size_t cap)
{
	return get_in(f, G, path, attr, val, cap);
}

static void expect_val_in(struct fx *f, uint64_t g, const char *path, const char *want)
{
	char v[256];
	assert_int_equal(get_in(f, g, path, NULL, v, sizeof(v)), 0);
	assert_string_equal(v, want);
}

static void expect_val(struct fx *f, const char *path, const char *want)
{
	expect_val_in(f, G, path, want);
}

struct names {
	char s[1024];
	int stop_after; /* stop the listing after this many, if nonzero */
	int seen;
};

static int collect(void *arg, struct cm_bytes name, const struct cm_attr *attr)
{
	struct names *n = arg;
	size_t at = strlen(n->s);
	snprintf(n->s + at, sizeof(n->s) - at, "%s%.*s%s", at ? "," : "", (int)name.len, name.p,
		 S_ISDIR(attr->mode) ? "/" : "");
	n->seen++;
	return n->stop_after && n->seen == n->stop_after ? 77 : 0;
}

/* The children of path as "a,b/,c" (directories with a '/'), or the error. */
static int list_in(struct fx *f, uint64_t g, const char *path, struct names *n)
{
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	int rc = cm_kv_list(f->s, t, g, B(path), collect, n);
	cm_store_txn_abort(t);
	return rc;
}

static void expect_list_in(struct fx *f, uint64_t g, const char *path, const char *want)
{
	struct names n = {0};
	assert_int_equal(list_in(f, g, path, &n), 0);
	assert_string_equal(n.s, want);
}

static void expect_list(struct fx *f, const char *path, const char *want)
{
	expect_list_in(f, G, path, want);
}

/* Field by field: memcmp would compare padding too. */
static void assert_attr_equal(const struct cm_attr *a, const struct cm_attr *b)
{
	assert_int_equal(a->mode, b->mode);
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->gid, b->gid);
	assert_int_equal(a->mtime_ns, b->mtime_ns);
	assert_int_equal(a->ctime_ns, b->ctime_ns);
	assert_int_equal(a->create_index, b->create_index);
	assert_int_equal(a->mod_index, b->mod_index);
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->atime_ns, b->atime_ns);
	assert_int_equal(a->nlink, b->nlink);
}

/* ---- PUT ---- */

static void test_root_exists_as_directory_before_any_write(void **state)
{
	struct fx *f = *state;
	struct cm_attr a;
	assert_int_equal(get(f, "/", &a, NULL, 0), 0);
	assert_true(S_ISDIR(a.mode));
	assert_int_equal(a.mode & 07777, 0755);
	expect_list(f, "/", "");
}

static void test_put_then_get_returns_value_and_attr(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/a", "hello"), 0);
	assert_int_equal(f->res.event_kind, CM_EV_PUT);
	struct cm_attr a;
	expect_val(f, "/a", "hello");
	assert_int_equal(get(f, "/a", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFREG | 0644);
	assert_int_equal(a.uid, 1000);
	assert_int_equal(a.gid, 100);
	assert_int_equal(a.size, 5);
	assert_int_equal(a.version, 1);
	assert_int_equal(a.create_index, 1);
	assert_int_equal(a.mod_index, 1);
	assert_int_equal(a.mtime_ns, STAMP + 1);
	assert_int_equal(a.ctime_ns, STAMP + 1);
	assert_attr_equal(&a, &f->res.attr);
	assert_int_equal(get(f, "/b", &a, NULL, 0), -ENOENT);
}

static void test_put_overwrite_bumps_version_and_keeps_create_index(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/a", "one"), 0);
	assert_int_equal(put(f, "/b", "x"), 0);
	assert_int_equal(put(f, "/a", ""), 0);
	struct cm_attr a;
	assert_int_equal(get(f, "/a", &a, NULL, 0), 0);
	assert_int_equal(a.version, 2);
	assert_int_equal(a.create_index, 1);
	assert_int_equal(a.mod_index, 3);
	assert_int_equal(a.mtime_ns, STAMP + 3);
	assert_int_equal(a.size, 0);
	expect_val(f, "/a", "");
}

static void test_put_creates_missing_parents_like_mkdir_p(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/x/y/z", "deep"), 0);
	struct cm_attr a;
	assert_int_equal(get(f, "/x/y", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFDIR | 0755);
	assert_int_equal(a.uid, 1000);
	assert_int_equal(a.gid, 100);
	assert_int_equal(a.create_index, 1);
	expect_list(f, "/", "x/");
	expect_list(f, "/x", "y/");
	expect_list(f, "/x/y", "z");
	expect_val(f, "/x/y/z", "deep");
}

static void test_put_under_a_file_returns_enotdir(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/f", "file"), 0);
	assert_int_equal(put(f, "/f/x", "v"), -ENOTDIR);
	assert_int_equal(put(f, "/f/x/y", "v"), -ENOTDIR);
	assert_int_equal(f->res.event_kind, 0);
	assert_int_equal(get(f, "/f/x", NULL, NULL, 0), -ENOTDIR);
}

static void test_put_onto_directory_returns_eisdir(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mkdir_(f, "/d"), 0);
	assert_int_equal(put(f, "/d", "v"), -EISDIR);
	assert_int_equal(put(f, "/", "v"), -EISDIR);
}

static void test_put_create_on_existing_returns_eexist(void **state)
{
	struct fx *f = *state;
	struct w w = {CM_OP_PUT, CM_PUT_CREATE, "/a", NULL, "1", 0, 0};
	assert_int_equal(op(f, w), 0);
	assert_int_equal(op(f, w), -EEXIST);
	expect_val(f, "/a", "1");
}

static void test_put_if_version_conflict_returns_ecanceled(void **state)
{
	struct fx *f = *state;
	struct w w = {CM_OP_PUT, CM_PUT_IF_VERSION, "/a", NULL, "v1", 1, 0};
	assert_int_equal(op(f, w), -ECANCELED); /* absent: version 0 */
	w.version = 0;
	assert_int_equal(op(f, w), 0);
	assert_int_equal(op(f, w), -ECANCELED); /* exists now */
	w.version = 1;
	w.value = "v2";
	assert_int_equal(op(f, w), 0);
	assert_int_equal(f->res.attr.version, 2);
	w.value = "v3";
	assert_int_equal(op(f, w), -ECANCELED); /* lost the race */
	expect_val(f, "/a", "v2");
}

static void test_put_append_appends_to_what_is_there(void **state)
{
	struct fx *f = *state;
	struct w w = {CM_OP_PUT, CM_PUT_APPEND, "/d/log", NULL, "a\n", 0, 0};
	assert_int_equal(op(f, w), 0); /* absent: created, parents too */
	w.value = "b\n";
	assert_int_equal(op(f, w), 0);
	assert_int_equal(f->res.attr.size, 4);
	assert_int_equal(f->res.attr.version, 2);
	expect_val(f, "/d/log", "a\nb\n");
	char big[64];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0; /* 63 bytes: 67 in all, over op_in()'s 64 */
	w.value = big;
	assert_int_equal(op(f, w), -EFBIG);
	expect_val(f, "/d/log", "a\nb\n");
	w.path = "/d";
	assert_int_equal(op(f, w), -EISDIR);
}

static void test_put_if_created_names_one_incarnation(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/r/s/f", "v1"), 0);
	uint64_t born = f->res.attr.create_index;
	struct w w = {CM_OP_PUT, CM_PUT_IF_CREATED | CM_PUT_APPEND, "/r/s/f", NULL, "+", born, 0};
	assert_int_equal(op(f, w), 0);
	expect_val(f, "/r/s/f", "v1+");
	/* renamed elsewhere: the old path is gone, and nothing re-creates it */
	assert_int_equal(ren(f, "/r", "/r2"), 0);
	assert_int_equal(op(f, w), -ENOENT);
	assert_int_equal(get(f, "/r", NULL, NULL, 0), -ENOENT);
	w.path = "/r2/s/f"; /* where it is now: the same file */
	assert_int_equal(op(f, w), 0);
	expect_val(f, "/r2/s/f", "v1++");
	/* deleted and re-created: another file */
	assert_int_equal(del(f, "/r2/s/f", 0), 0);
	assert_int_equal(put(f, "/r2/s/f", "new"), 0);
	assert_int_equal(op(f, w), -ESTALE);
	expect_val(f, "/r2/s/f", "new");
}

static void test_no_parents_refuses_to_create_them(void **state)
{
	struct fx *f = *state;
	struct w w = {CM_OP_PUT, CM_NO_PARENTS, "/p/q/f", NULL, "v", 0, 0};
	assert_int_equal(op(f, w), -ENOENT);
	w.op = CM_OP_MKDIR;
	assert_int_equal(op(f, w), -ENOENT);
	assert_int_equal(get(f, "/p", NULL, NULL, 0), -ENOENT);
	assert_int_equal(mkdir_(f, "/p"), 0);
	w.path = "/p/f";
	w.op = CM_OP_PUT;
	assert_int_equal(op(f, w), 0); /* the parent exists: fine */
	struct w r = {CM_OP_RENAME, CM_NO_PARENTS, "/p/f", "/x/y", NULL, 0, 0};
	assert_int_equal(op(f, r), -ENOENT);
	expect_val(f, "/p/f", "v");
	r.path2 = "/p/g";
	assert_int_equal(op(f, r), 0);
}

static void test_put_if_mod_conflict_returns_ecanceled(void **state)
{
	struct fx *f = *state;
	struct w w = {CM_OP_PUT, CM_PUT_IF_MOD, "/a", NULL, "v1", 0, 0};
	assert_int_equal(op_mod(f, w, 5), -ECANCELED); /* absent: mod_index 0 */
	assert_int_equal(op_mod(f, w, 0), 0);
	uint64_t m1 = f->res.attr.mod_index;
	assert_int_equal(op_mod(f, w, 0), -ECANCELED); /* exists now */
	w.value = "v2";
	assert_int_equal(op_mod(f, w, m1), 0);
	assert_true(f->res.attr.mod_index > m1);
	w.value = "v3";
	assert_int_equal(op_mod(f, w, m1), -ECANCELED); /* lost the race */
	expect_val(f, "/a", "v2");
}

/* The gateway's txn bug, at the state machine: a key deleted and
 * re-created has its old version again, never its old mod_index. */
static void test_if_mod_fails_on_a_deleted_and_recreated_key(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/k", "old"), 0);
	struct cm_attr first = f->res.attr;
	assert_int_equal(del(f, "/k", 0), 0);
	assert_int_equal(put(f, "/k", "new"), 0);
	struct cm_attr second = f->res.attr;
	assert_int_equal(second.version, first.version); /* 1 again */
	struct w w = {CM_OP_PUT, CM_PUT_IF_MOD, "/k", NULL, "cas", 0, 0};
	assert_int_equal(op_mod(f, w, first.mod_index), -ECANCELED);
	w.flags = CM_PUT_IF_MOD | CM_PUT_IF_VERSION; /* both must hold */
	w.version = 1;
	assert_int_equal(op_mod(f, w, first.mod_index), -ECANCELED);
	w.version = 2;
	assert_int_equal(op_mod(f, w, second.mod_index), -ECANCELED);
	expect_val(f, "/k", "new");
	struct w d = {CM_OP_DELETE, CM_PUT_IF_MOD, "/k", NULL, NULL, 0, 0};
	assert_int_equal(op_mod(f, d, first.mod_index), -ECANCELED);
	expect_val(f, "/k", "new");
	w.version = 1;
	assert_int_equal(op_mod(f, w, second.mod_index), 0);
	expect_val(f, "/k", "cas");
	assert_int_equal(op_mod(f, d, f->res.attr.mod_index), 0);
	assert_int_equal(get(f, "/k", NULL, NULL, 0), -ENOENT);
}

/* A rename replacing the target gives it a new mod_index: a CAS holding
 * the replaced node's fails; MKDIR and a rename onto nothing see 0. */
static void test_if_mod_on_rename_and_mkdir_checks_the_target(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/src", "s"), 0);
	assert_int_equal(put(f, "/dst", "d"), 0);
	uint64_t dst_mod = f->res.attr.mod_index;
	struct w r = {CM_OP_RENAME, CM_PUT_IF_MOD, "/src", "/dst", NULL, 0, 0};
	assert_int_equal(op_mod(f, r, dst_mod + 1), -ECANCELED);
	assert_int_equal(op_mod(f, r, dst_mod), 0);
	expect_val(f, "/dst", "s");
	struct w p = {CM_OP_PUT, CM_PUT_IF_MOD, "/dst", NULL, "x", 0, 0};
	assert_int_equal(op_mod(f, p, dst_mod), -ECANCELED);
	struct w m = {CM_OP_MKDIR, CM_PUT_IF_MOD, "/dir", NULL, NULL, 0, 0};
	assert_int_equal(op_mod(f, m, 3), -ECANCELED);
	assert_int_equal(op_mod(f, m, 0), 0);
	r = (struct w){CM_OP_RENAME, CM_PUT_IF_MOD, "/dst", "/moved", NULL, 0, 0};
	assert_int_equal(op_mod(f, r, 0), 0);
	expect_val(f, "/moved", "s");
}

static void test_put_value_too_large_returns_efbig(void **state)
{
	struct fx *f = *state;
	char v[66];
	memset(v, 'v', sizeof(v) - 1);
	v[sizeof(v) - 1] = 0; /* 65 bytes, max_value is 64 in op_in() */
	assert_int_equal(put(f, "/a", v), -EFBIG);
	v[64] = 0;
	assert_int_equal(put(f, "/a", v), 0);
}

static void test_put_bad_path_returns_einval_or_enametoolong(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "a", "v"), -EINVAL);
	assert_int_equal(put(f, "/a/", "v"), -EINVAL);
	assert_int_equal(put(f, "/a/../b", "v"), -EINVAL);
	assert_int_equal(put(f, "", "v"), -EINVAL);
	char p[CM_NAME_MAX + 3] = "/";
	memset(p + 1, 'n', CM_NAME_MAX + 1);
	assert_int_equal(put(f, p, "v"), -ENAMETOOLONG);
	expect_list(f, "/", "");
}

static void test_put_mode_sets_type_and_permissions(void **state)
{
	struct fx *f = *state;
	struct cm_attr a;
	assert_int_equal(op(f, (struct w){CM_OP_PUT, 0, "/secret", NULL, "s", 0, 0600}), 0);
	assert_int_equal(get(f, "/secret", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFREG | 0600);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, 0, "/link", NULL, "/secret", 0, S_IFLNK | 0777}), 0);
	assert_int_equal(get(f, "/link", &a, NULL, 0), 0);
	assert_true(S_ISLNK(a.mode));
	expect_val(f, "/link", "/secret");
	/* an overwrite without CM_SET_MODE keeps the permissions */
	assert_int_equal(op(f, (struct w){CM_OP_PUT, 0, "/secret", NULL, "t", 0, 0666}), 0);
	assert_int_equal(get(f, "/secret", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFREG | 0600);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, CM_SET_MODE, "/secret", NULL, "u", 0, 0640}), 0);
	assert_int_equal(get(f, "/secret", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFREG | 0640);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, 0, "/dev", NULL, "", 0, S_IFCHR | 0600}), -EINVAL);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, 0, "/d", NULL, "", 0, S_IFDIR | 0755}), -EINVAL);
}

static void test_put_keep_value_with_set_mode_is_chmod(void **state)
{
	struct fx *f = *state;
	struct cm_attr a;
	uint32_t chmod = CM_SET_MODE | CM_PUT_KEEP_VALUE;
	assert_int_equal(put(f, "/a", "keep me"), 0);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, chmod, "/a", NULL, "", 0, 0600}), 0);
	assert_int_equal(get(f, "/a", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFREG | 0600);
	assert_int_equal(a.version, 2);
	assert_int_equal(a.mtime_ns, STAMP + 1); /* content untouched */
	assert_int_equal(a.ctime_ns, STAMP + 2);
	expect_val(f, "/a", "keep me");
	assert_int_equal(mkdir_(f, "/d"), 0);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, chmod, "/d", NULL, "", 0, 0700}), 0);
	assert_int_equal(get(f, "/d", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFDIR | 0700);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, chmod, "/", NULL, "", 0, 0711}), 0);
	assert_int_equal(get(f, "/", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFDIR | 0711);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, chmod, "/none", NULL, "", 0, 0600}), -ENOENT);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, chmod, "/a", NULL, "", 0, S_IFDIR | 0600}), -EINVAL);
}

/* ---- MKDIR ---- */

static void test_mkdir_creates_parents_and_existing_returns_eexist(void **state)
{
	struct fx *f = *state;
	assert_int_equal(op(f, (struct w){CM_OP_MKDIR, 0, "/a/b/c", NULL, NULL, 0, 0700}), 0);
	assert_int_equal(f->res.event_kind, CM_EV_MKDIR);
	struct cm_attr a;
	assert_int_equal(get(f, "/a/b/c", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFDIR | 0700);
	assert_int_equal(get(f, "/a/b", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFDIR | 0755);
	assert_int_equal(mkdir_(f, "/a/b/c"), -EEXIST);
	assert_int_equal(mkdir_(f, "/a"), -EEXIST);
	assert_int_equal(mkdir_(f, "/"), -EEXIST);
	assert_int_equal(put(f, "/a/file", "x"), 0);
	assert_int_equal(mkdir_(f, "/a/file"), -EEXIST);
	assert_int_equal(mkdir_(f, "/a/file/sub"), -ENOTDIR);
}

/* ---- DELETE ---- */

static void test_delete_file_and_missing_returns_enoent(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/d/a", "x"), 0);
	assert_int_equal(del(f, "/d/a", 0), 0);
	assert_int_equal(f->res.event_kind, CM_EV_DELETE);
	assert_int_equal(get(f, "/d/a", NULL, NULL, 0), -ENOENT);
	assert_int_equal(del(f, "/d/a", 0), -ENOENT);
	assert_int_equal(del(f, "/nope/a", 0), -ENOENT);
	expect_list(f, "/d", "");
}

static void test_delete_directory_needs_a_flag(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mkdir_(f, "/d"), 0);
	assert_int_equal(put(f, "/f", "x"), 0);
	assert_int_equal(del(f, "/d", 0), -EISDIR);
	assert_int_equal(del(f, "/f", CM_DEL_DIR), -ENOTDIR);
	assert_int_equal(put(f, "/d/x", "x"), 0);
	assert_int_equal(del(f, "/d", CM_DEL_DIR), -ENOTEMPTY);
	assert_int_equal(del(f, "/d/x", 0), 0);
	assert_int_equal(del(f, "/d", CM_DEL_DIR), 0);
	assert_int_equal(del(f, "/", CM_DEL_RECURSIVE), -EINVAL);
	expect_list(f, "/", "f");
}

static void test_delete_recursive_removes_the_whole_subtree(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/a/b/c/d", "1"), 0);
	assert_int_equal(put(f, "/a/b/e", "2"), 0);
	assert_int_equal(put(f, "/a/f", "3"), 0);
	assert_int_equal(mkdir_(f, "/a/g/h"), 0);
	assert_int_equal(put(f, "/ab", "sibling"), 0);
	uint64_t at = f->index;
	assert_int_equal(del(f, "/a", CM_DEL_RECURSIVE), 0);
	assert_int_equal(f->res.event_kind, CM_EV_DELETE);
	expect_list(f, "/", "ab");
	assert_int_equal(get(f, "/a/b/c/d", NULL, NULL, 0), -ENOENT);
	/* a new /a starts empty: nothing of the old subtree reappears */
	assert_int_equal(mkdir_(f, "/a"), 0);
	expect_list(f, "/a", "");
	assert_int_equal(f->res.attr.create_index, at + 1);
	/* CM_DEL_RECURSIVE on a file is rm -rf: fine */
	assert_int_equal(del(f, "/ab", CM_DEL_RECURSIVE), 0);
}

static void test_delete_if_version_checks_the_version(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/a", "1"), 0);
	assert_int_equal(op(f, (struct w){CM_OP_DELETE, CM_PUT_IF_VERSION, "/a", NULL, NULL, 2, 0}),
			 -ECANCELED);
	assert_int_equal(op(f, (struct w){CM_OP_DELETE, CM_PUT_IF_VERSION, "/a", NULL, NULL, 1, 0}), 0);
}

/* ---- LIST ---- */

static void test_list_returns_children_only_in_name_order(void **state)
{
	struct fx *f = *state;
	const char *paths[] = {"/d/b", "/d/a", "/d/c/deep", "/d/c/deeper/x", "/d/a.b", "/d0",
			       "/e/zz"};
	for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++)
		assert_int_equal(put(f, paths[k], "v"), 0);
	expect_list(f, "/", "d/,d0,e/");
	expect_list(f, "/d", "a,a.b,b,c/");
	expect_list(f, "/d/c", "deep,deeper/");
	struct names n = {0};
	assert_int_equal(list_in(f, G, "/d/a", &n), -ENOTDIR);
	assert_int_equal(list_in(f, G, "/nope", &n), -ENOENT);
	assert_int_equal(list_in(f, G, "/d/", &n), -EINVAL);
	struct names stop = {.stop_after = 2};
	assert_int_equal(list_in(f, G, "/d", &stop), 77);
	assert_string_equal(stop.s, "a,a.b");
}

static void test_groups_do_not_see_each_other(void **state)
{
	struct fx *f = *state;
	assert_int_equal(op_in(f, 2, (struct w){CM_OP_PUT, 0, "/x", NULL, "two", 0, 0}), 0);
	assert_int_equal(put(f, "/y", "one"), 0);
	expect_list_in(f, 2, "/", "x");
	expect_list(f, "/", "y");
	assert_int_equal(get(f, "/x", NULL, NULL, 0), -ENOENT);
	assert_int_equal(del(f, "/y", 0), 0);
	expect_list_in(f, 2, "/", "x");
}

/* ---- RENAME ---- */

static void test_rename_file_replaces_target_and_version_never_goes_back(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/cfg", "old"), 0);
	for (int k = 0; k < 4; k++)
		assert_int_equal(put(f, "/cfg", "old"), 0); /* version 5 */
	assert_int_equal(put(f, "/.cfg.tmp", "new"), 0);
	assert_int_equal(ren(f, "/.cfg.tmp", "/cfg"), 0);
	assert_int_equal(f->res.event_kind, CM_EV_RENAME);
	struct cm_attr a;
	assert_int_equal(get(f, "/cfg", &a, NULL, 0), 0);
	assert_int_equal(a.version, 6);
	assert_int_equal(a.create_index, 6);
	assert_int_equal(a.mod_index, 7);
	expect_val(f, "/cfg", "new");
	assert_int_equal(get(f, "/.cfg.tmp", NULL, NULL, 0), -ENOENT);
	expect_list(f, "/", "cfg");
}

static void test_rename_directory_moves_its_subtree(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/src/a", "1"), 0);
	assert_int_equal(put(f, "/src/sub/b", "2"), 0);
	assert_int_equal(put(f, "/src/sub/deeper/c", "3"), 0);
	assert_int_equal(put(f, "/srcfile", "keep"), 0);
	assert_int_equal(ren(f, "/src", "/new/place"), 0); /* target parent made too */
	expect_list(f, "/", "new/,srcfile");
	expect_list(f, "/new", "place/");
	expect_list(f, "/new/place", "a,sub/");
	expect_list(f, "/new/place/sub", "b,deeper/");
	expect_val(f, "/new/place/sub/deeper/c", "3");
	assert_int_equal(get(f, "/src/a", NULL, NULL, 0), -ENOENT);
	/* and back over an empty directory */
	assert_int_equal(mkdir_(f, "/empty"), 0);
	assert_int_equal(ren(f, "/new/place", "/empty"), 0);
	expect_list(f, "/empty", "a,sub/");
	expect_list(f, "/new", "");
}

static void test_rename_follows_rename_2_rules(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/d1/x", "1"), 0);
	assert_int_equal(put(f, "/d2/y", "2"), 0);
	assert_int_equal(mkdir_(f, "/e"), 0);
	assert_int_equal(put(f, "/f", "file"), 0);
	assert_int_equal(ren(f, "/d1", "/d2"), -ENOTEMPTY);
	assert_int_equal(ren(f, "/d1", "/f"), -ENOTDIR);
	assert_int_equal(ren(f, "/f", "/e"), -EISDIR);
	assert_int_equal(ren(f, "/d1", "/d1/x/inside"), -EINVAL);
	assert_int_equal(ren(f, "/d1", "/d1/sub"), -EINVAL);
	assert_int_equal(ren(f, "/nope", "/z"), -ENOENT);
	assert_int_equal(ren(f, "/f", "/f/z"), -ENOTDIR);
	assert_int_equal(ren(f, "/", "/z"), -EINVAL);
	assert_int_equal(ren(f, "/f", "/"), -EINVAL);
	assert_int_equal(ren(f, "/f", "/bad/"), -EINVAL);
	assert_int_equal(ren(f, "/d1/x", "/d1"), -EISDIR); /* onto its own parent */
	assert_int_equal(op(f, (struct w){CM_OP_RENAME, CM_PUT_CREATE, "/d1/x", "/d2/y", NULL, 0, 0}),
			 -EEXIST);
	assert_int_equal(op(f, (struct w){CM_OP_RENAME, CM_PUT_IF_VERSION, "/d1/x", "/d2/y", NULL, 2, 0}),
			 -ECANCELED);
	assert_int_equal(op(f, (struct w){CM_OP_RENAME, CM_PUT_IF_VERSION, "/d1/x", "/d2/y", NULL, 1, 0}),
			 0);
	expect_val(f, "/d2/y", "1");
	expect_list(f, "/d1", "");
}

static void test_rename_onto_itself_changes_nothing(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/a", "v"), 0);
	assert_int_equal(ren(f, "/a", "/a"), 0);
	assert_int_equal(f->res.event_kind, 0);
	struct cm_attr a;
	assert_int_equal(get(f, "/a", &a, NULL, 0), 0);
	assert_int_equal(a.version, 1);
}

static void test_rename_that_makes_a_path_too_long_returns_enametoolong(void **state)
{
	struct fx *f = *state;
	char deep[CM_PATH_MAX + 1] = "/d";
	while (strlen(deep) + 101 <= CM_PATH_MAX) {
		strcat(deep, "/");
		memset(deep + strlen(deep), 'x', 99);
	}
	size_t len = strlen(deep); /* > 900 */
	assert_int_equal(put(f, deep, "leaf"), 0);
	char target[CM_PATH_MAX + 1] = "/";
	memset(target + 1, 't', CM_PATH_MAX - len + 2);
	target[CM_PATH_MAX - len + 3] = 0; /* the leaf would be CM_PATH_MAX + 1 bytes */
	assert_int_equal(ren(f, "/d", target), -ENAMETOOLONG);
	target[strlen(target) - 1] = 0; /* one byte shorter: fits exactly */
	assert_int_equal(ren(f, "/d", target), 0);
}

/* ---- failures change nothing; determinism ---- */

static void snapshot_of(struct fx *f, uint64_t g, msgpack_sbuffer *sb)
{
	MDB_txn *t;
	msgpack_sbuffer_init(sb);
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_kv_snapshot(f->s, t, g, sb), 0);
	cm_store_txn_abort(t);
}

static void build_tree(struct fx *f, uint64_t g)
{
	assert_int_equal(op_in(f, g, (struct w){CM_OP_PUT, 0, "/etc/app/conf", NULL, "a=1", 0, 0}), 0);
	assert_int_equal(op_in(f, g, (struct w){CM_OP_PUT, 0, "/etc/app/bin", NULL, "\x01\x00\xff", 0, 0}), 0);
	assert_int_equal(op_in(f, g, (struct w){CM_OP_MKDIR, 0, "/var/empty", NULL, NULL, 0, 0700}), 0);
	assert_int_equal(op_in(f, g, (struct w){CM_OP_PUT, 0, "/ln", NULL, "/etc", 0, S_IFLNK | 0777}), 0);
	assert_int_equal(op_in(f, g, (struct w){CM_OP_RENAME, 0, "/etc/app", "/opt/app", NULL, 0, 0}), 0);
	assert_int_equal(op_in(f, g, (struct w){CM_OP_PUT, CM_SET_MODE | CM_PUT_KEEP_VALUE, "/", NULL, NULL, 0, 0750}), 0);
}

static void test_failed_ops_change_nothing(void **state)
{
	struct fx *f = *state;
	build_tree(f, G);
	msgpack_sbuffer before, after;
	snapshot_of(f, G, &before);
	assert_int_equal(put(f, "/opt/app/conf/x", "v"), -ENOTDIR);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, CM_PUT_CREATE, "/opt/app/conf", NULL, "v", 0, 0}), -EEXIST);
	assert_int_equal(del(f, "/opt", CM_DEL_DIR), -ENOTEMPTY);
	assert_int_equal(ren(f, "/opt", "/var"), -ENOTEMPTY);
	assert_int_equal(mkdir_(f, "/ln/x"), -ENOTDIR);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, CM_PUT_IF_VERSION, "/new/dir/file", NULL, "v", 3, 0}),
			 -ECANCELED); /* no parents made either */
	snapshot_of(f, G, &after);
	assert_int_equal(before.size, after.size);
	assert_memory_equal(before.data, after.data, before.size);
	msgpack_sbuffer_destroy(&before);
	msgpack_sbuffer_destroy(&after);
}

static void test_same_commands_give_same_bytes(void **state)
{
	struct fx *f = *state;
	uint64_t start = f->index;
	build_tree(f, 10);
	f->index = start; /* the same indexes, as on another replica */
	build_tree(f, 11);
	msgpack_sbuffer a, b;
	snapshot_of(f, 10, &a);
	snapshot_of(f, 11, &b);
	assert_int_equal(a.size, b.size);
	assert_memory_equal(a.data, b.data, a.size);
	msgpack_sbuffer_destroy(&a);
	msgpack_sbuffer_destroy(&b);
}

static void test_apply_garbage_is_an_ebadmsg_result(void **state)
{
	struct fx *f = *state;
	MDB_txn *t;
	struct cm_kv_result res;
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	assert_int_equal(cm_kv_apply(f->s, t, G, 1, "\x93\x01\x02", 3, &res), 0);
	assert_int_equal(res.err, -EBADMSG);
	assert_int_equal(res.event_kind, 0);
	assert_int_equal(cm_kv_apply(f->s, t, G, 2, NULL, 0, &res), 0);
	assert_int_equal(res.err, -EBADMSG);
	assert_int_equal(cm_store_txn_commit(t), 0);
}

/* ---- command codec ---- */

static size_t encode(const struct cm_req *req, uint8_t *out, size_t cap)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_kv_cmd_encode(&sb, req, -5, 1000), 0);
	assert_true(sb.size <= cap);
	memcpy(out, sb.data, sb.size);
	size_t n = sb.size;
	msgpack_sbuffer_destroy(&sb);
	return n;
}

static int decode(const void *buf, size_t len, struct cm_kv_cmd *c)
{
	msgpack_unpacked up;
	int rc = cm_kv_cmd_decode(buf, (uint32_t)len, &up, c);
	msgpack_unpacked_destroy(&up);
	return rc;
}

static void test_cmd_encode_decode_round_trip(void **state)
{
	(void)state;
	struct cm_req req = {.op = CM_OP_RENAME, .flags = CM_PUT_IF_VERSION, .path = B("/a/b"),
			     .path2 = B("/c"), .value = B("bytes"), .version = 1ull << 40,
			     .mode = 0100600, .uid = 4000000000u, .gid = 7};
	uint8_t buf[256];
	size_t n = encode(&req, buf, sizeof(buf));
	struct cm_kv_cmd c;
	assert_int_equal(decode(buf, n, &c), 0);
	assert_int_equal(c.op, CM_OP_RENAME);
	assert_int_equal(c.flags, CM_PUT_IF_VERSION);
	assert_int_equal(c.path.len, 4);
	assert_memory_equal(c.path.p, "/a/b", 4);
	assert_memory_equal(c.path2.p, "/c", 2);
	assert_memory_equal(c.value.p, "bytes", 5);
	assert_int_equal(c.version, 1ull << 40);
	assert_int_equal(c.mode, 0100600);
	assert_int_equal(c.uid, 4000000000u);
	assert_int_equal(c.gid, 7);
	assert_int_equal(c.stamp_ns, -5);
	assert_int_equal(c.max_value, 1000);
	struct cm_req get = {.op = CM_OP_GET, .path = B("/a")};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_kv_cmd_encode(&sb, &get, 0, 0), -EINVAL);
	assert_int_equal(sb.size, 0);
	msgpack_sbuffer_destroy(&sb);
}

static void test_cmd_decode_rejects_malformed_commands(void **state)
{
	(void)state;
	struct cm_req req = {.op = CM_OP_PUT, .path = B("/a"), .value = B("v")};
	uint8_t buf[256];
	size_t n = encode(&req, buf, sizeof(buf));
	struct cm_kv_cmd c;
	for (size_t k = 0; k < n; k++) /* every truncation */
		assert_int_equal(decode(buf, k, &c), -EBADMSG);
	uint8_t longer[300];
	memcpy(longer, buf, n);
	longer[n] = 0;
	assert_int_equal(decode(longer, n + 1, &c), -EBADMSG); /* trailing byte */
	memcpy(longer, buf, n);
	longer[1] = CM_OP_GET; /* [0x9b, op, ...]: op is a positive fixint */
	assert_int_equal(decode(longer, n, &c), -EBADMSG);
	longer[1] = 0x7f;
	assert_int_equal(decode(longer, n, &c), -EBADMSG);
	memcpy(longer, buf, n);
	longer[0] = 0x9a; /* ten fields */
	assert_int_equal(decode(longer, n, &c), -EBADMSG);
	memcpy(longer, buf, n);
	longer[2] = 0x80; /* flags not an integer (0x80: an empty map) */
	assert_int_equal(decode(longer, n, &c), -EBADMSG);
	memcpy(longer, buf, n);
	longer[3] = 0xc4; /* path as bin instead of str: wrong type */
	assert_int_equal(decode(longer, n, &c), -EBADMSG);
	assert_int_equal(decode(buf, n, &c), 0);
}

/* CM_PUT_IF_MOD's operand is a 12th field, written only with the flag:
 * every other command keeps the 11 fields older releases wrote and read. */
static void test_cmd_if_mod_field_only_with_its_flag(void **state)
{
	(void)state;
	struct cm_req req = {.op = CM_OP_DELETE, .flags = CM_PUT_IF_MOD, .path = B("/a"),
			     .mod_index = 1ull << 50};
	uint8_t buf[256], alt[256];
	size_t n = encode(&req, buf, sizeof(buf));
	assert_int_equal(buf[0], 0x9c); /* fixarray of 12 */
	struct cm_kv_cmd c;
	assert_int_equal(decode(buf, n, &c), 0);
	assert_int_equal(c.flags, CM_PUT_IF_MOD);
	assert_int_equal(c.mod_index, 1ull << 50);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(decode(buf, k, &c), -EBADMSG);
	memcpy(alt, buf, n);
	alt[0] = 0x9b; /* the flag without its operand (and a byte too many) */
	assert_int_equal(decode(alt, n, &c), -EBADMSG);
	req.flags = 0; /* no flag: 11 fields, as before, whatever mod_index holds */
	size_t m = encode(&req, alt, sizeof(alt));
	assert_int_equal(alt[0], 0x9b);
	assert_int_equal(decode(alt, m, &c), 0);
	assert_int_equal(c.mod_index, 0);
	memcpy(alt, buf, n);
	alt[2] = 0; /* 12 fields without the flag */
	assert_int_equal(decode(alt, n, &c), -EBADMSG);
	req.flags = 0x80000; /* a flag nobody knows */
	m = encode(&req, alt, sizeof(alt));
	assert_int_equal(decode(alt, m, &c), -EBADMSG);
}

static void test_cmd_decode_of_random_bytes_never_crashes(void **state)
{
	(void)state;
	struct cm_req req = {.op = CM_OP_PUT, .flags = CM_SET_MODE, .path = B("/some/path"),
			     .path2 = B(""), .value = B("value bytes"), .version = 3, .mode = 0644};
	uint8_t valid[256], buf[300];
	size_t n = encode(&req, valid, sizeof(valid));
	srand(12345);
	int ok = 0;
	for (int round = 0; round < 100000; round++) {
		size_t len = (size_t)rand() % sizeof(buf);
		if (round % 2) { /* a valid command with a few bytes changed */
			len = n;
			memcpy(buf, valid, n);
			for (int k = rand() % 4; k >= 0; k--)
				buf[(size_t)rand() % n] = (uint8_t)rand();
		} else {
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)rand();
		}
		/* exactly len bytes on the heap, so ASan sees any overread */
		uint8_t *heap = malloc(len ? len : 1);
		assert_non_null(heap);
		memcpy(heap, buf, len);
		struct cm_kv_cmd c;
		if (decode(heap, len, &c) == 0) {
			ok++;
			assert_true(c.path.p >= (char *)heap && c.path.p + c.path.len <= (char *)heap + len);
			assert_true(c.value.p + c.value.len <= (char *)heap + len);
		}
		free(heap);
	}
	assert_true(ok > 0 && ok < 50000);
}

/* ---- events ---- */

struct evs {
	char s[2048];
};

static int ev_collect(void *arg, uint64_t index, uint8_t kind, struct cm_bytes path,
		      struct cm_bytes path2, const struct cm_attr *attr)
{
	struct evs *e = arg;
	size_t at = strlen(e->s);
	(void)attr;
	snprintf(e->s + at, sizeof(e->s) - at, "%s%llu:%d:%.*s%s%.*s", at ? " " : "",
		 (unsigned long long)index, kind, (int)path.len, path.p, path2.len ? ">" : "",
		 (int)path2.len, path2.p);
	return 0;
}

static int events(struct fx *f, const char *prefix, uint64_t from, uint64_t compacted, struct evs *e)
{
	MDB_txn *t;
	memset(e, 0, sizeof(*e));
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	int rc = cm_kv_events(f->s, t, G, B(prefix), from, compacted, ev_collect, e);
	cm_store_txn_abort(t);
	return rc;
}

static void test_events_record_changes_filtered_by_prefix(void **state)
{
	struct fx *f = *state;
	char big[100];
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(put(f, "/a/x", "1"), 0);    /* 1 */
	assert_int_equal(mkdir_(f, "/b"), 0);        /* 2 */
	assert_int_equal(put(f, "/ab", "2"), 0);     /* 3 */
	assert_int_equal(put(f, "/a/x", big), -EFBIG); /* 4: no event */
	assert_int_equal(put(f, "/a/x", "3"), 0);    /* 5 */
	struct evs e;
	assert_int_equal(events(f, "/", 0, 0, &e), 0);
	assert_string_equal(e.s, "1:1:/a/x 2:3:/b 3:1:/ab 5:1:/a/x");
	assert_int_equal(events(f, "/a", 0, 0, &e), 0);
	assert_string_equal(e.s, "1:1:/a/x 5:1:/a/x");
	assert_int_equal(events(f, "/a", 1, 0, &e), 0);
	assert_string_equal(e.s, "5:1:/a/x");
	assert_int_equal(events(f, "/a", 5, 0, &e), 0);
	assert_string_equal(e.s, "");
}

static void test_events_cover_renames_deletes_and_compaction(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/a/x", "1"), 0);                  /* 1 */
	assert_int_equal(put(f, "/ab", "2"), 0);                   /* 2 */
	assert_int_equal(mkdir_(f, "/b"), 0);                      /* 3 */
	assert_int_equal(ren(f, "/a/x", "/b/x"), 0);               /* 4 */
	assert_int_equal(del(f, "/nope", 0), -ENOENT);             /* 5: no event */
	assert_int_equal(put(f, "/a/deep/er", "3"), 0);            /* 6 */
	assert_int_equal(del(f, "/a", CM_DEL_RECURSIVE), 0);       /* 7 */
	struct evs e;
	assert_int_equal(events(f, "/", 0, 0, &e), 0);
	assert_string_equal(e.s, "1:1:/a/x 2:1:/ab 3:3:/b 4:4:/a/x>/b/x 6:1:/a/deep/er 7:2:/a");
	assert_int_equal(events(f, "/a", 0, 0, &e), 0);
	assert_string_equal(e.s, "1:1:/a/x 4:4:/a/x>/b/x 6:1:/a/deep/er 7:2:/a");
	assert_int_equal(events(f, "/b", 3, 0, &e), 0);
	assert_string_equal(e.s, "4:4:/a/x>/b/x");
	/* a watcher below a deleted ancestor hears of it */
	assert_int_equal(events(f, "/a/deep/er", 5, 0, &e), 0);
	assert_string_equal(e.s, "6:1:/a/deep/er 7:2:/a");
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	assert_int_equal(cm_kv_events_compact(f->s, t, G, 4), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	assert_int_equal(events(f, "/", 3, 4, &e), CM_ECOMPACTED);
	assert_int_equal(events(f, "/", 4, 4, &e), 0);
	assert_string_equal(e.s, "6:1:/a/deep/er 7:2:/a");
	assert_int_equal(events(f, "/", 0, 0, &e), 0); /* the caller's floor says what is gone */
	assert_string_equal(e.s, "6:1:/a/deep/er 7:2:/a");
	assert_int_equal(events(f, "bad", 0, 0, &e), -EINVAL);
}

/* ---- snapshot and restore ---- */

static int restore(struct fx *f, uint64_t g, const void *buf, size_t len)
{
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	int rc = cm_kv_restore(f->s, t, g, buf, len);
	assert_int_equal(cm_store_txn_commit(t), 0);
	return rc;
}

static void expect_same_node(struct fx *f, uint64_t g1, uint64_t g2, const char *path)
{
	struct cm_attr a, b;
	char va[64], vb[64];
	assert_int_equal(get_in(f, g1, path, &a, va, sizeof(va)), 0);
	assert_int_equal(get_in(f, g2, path, &b, vb, sizeof(vb)), 0);
	assert_attr_equal(&a, &b);
	assert_string_equal(va, vb);
	if (S_ISDIR(a.mode)) {
		struct names na = {0}, nb = {0};
		assert_int_equal(list_in(f, g1, path, &na), 0);
		assert_int_equal(list_in(f, g2, path, &nb), 0);
		assert_string_equal(na.s, nb.s);
	}
}

static void test_snapshot_restore_round_trip_into_another_group(void **state)
{
	struct fx *f = *state;
	build_tree(f, G);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_PUT, 0, "/stale/x", NULL, "old", 0, 0}), 0);
	msgpack_sbuffer sb, again;
	snapshot_of(f, G, &sb);
	assert_int_equal(restore(f, 9, sb.data, sb.size), 0);
	const char *paths[] = {"/", "/opt", "/opt/app", "/opt/app/conf", "/opt/app/bin", "/var",
			       "/var/empty", "/ln", "/etc"};
	for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++)
		expect_same_node(f, G, 9, paths[k]);
	assert_int_equal(get_in(f, 9, "/stale", NULL, NULL, 0), -ENOENT);
	snapshot_of(f, 9, &again);
	assert_int_equal(sb.size, again.size);
	assert_memory_equal(sb.data, again.data, sb.size);
	/* the restored group keeps working, with the same inos as the original */
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_PUT, 0, "/opt/app/new", NULL, "n", 0, 0}), 0);
	expect_list_in(f, 9, "/opt/app", "bin,conf,new");
	struct evs e;
	MDB_txn *t;
	memset(&e, 0, sizeof(e));
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_kv_events(f->s, t, 9, B("/"), 0, 0, ev_collect, &e), 0);
	cm_store_txn_abort(t);
	assert_int_equal(strchr(e.s, ' '), NULL); /* only the put after the restore */
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&again);
}

/* ---- limits: PATH_MAX 4096 and NAME_MAX 255 (literal: the kernel's) ---- */

/* "/yyy.../yyy..." of exactly len bytes, NUL-terminated: a '/' every 200
 * bytes, so only the whole length decides; c varies the names. */
static void long_path(char *p, uint32_t len, char c)
{
	for (uint32_t k = 0; k < len; k++)
		p[k] = k % 200 == 0 ? '/' : c;
	p[len] = 0;
}

struct evlens {
	int n;
	uint32_t len[8], len2[8];
};

static int ev_len(void *arg, uint64_t index, uint8_t kind, struct cm_bytes path,
		  struct cm_bytes path2, const struct cm_attr *attr)
{
	struct evlens *e = arg;
	(void)index;
	(void)kind;
	(void)attr;
	assert_true(cm_path_validate(path.p, path.len) == 0);
	if (e->n < 8) {
		e->len[e->n] = path.len;
		e->len2[e->n] = path2.len;
	}
	e->n++;
	return 0;
}

static void test_paths_up_to_4096_bytes_work_and_4097_is_enametoolong(void **state)
{
	struct fx *f = *state;
	static char p[4200], q[4200];
	long_path(p, 4096, 'y');
	assert_int_equal(put(f, p, "v4096"), 0); /* its parents are created too */
	expect_val(f, p, "v4096");
	long_path(q, 4095, 'y');
	assert_int_equal(put(f, q, "v4095"), 0);
	expect_val(f, q, "v4095");
	long_path(q, 4097, 'y');
	assert_int_equal(put(f, q, "v"), -ENAMETOOLONG);
	assert_int_equal(mkdir_(f, q), -ENAMETOOLONG);
	assert_int_equal(get(f, q, NULL, NULL, 0), -ENAMETOOLONG);
	long_path(q, 4096, 'z');
	assert_int_equal(mkdir_(f, q), 0);
	/* a rename onto a 4096-byte path, and not onto a 4097-byte one */
	assert_int_equal(put(f, "/short", "s"), 0);
	long_path(q, 4096, 'r');
	assert_int_equal(ren(f, "/short", q), 0);
	expect_val(f, q, "s");
	long_path(q, 4097, 'r');
	assert_int_equal(ren(f, p, q), -ENAMETOOLONG);
	/* a directory rename that would push p to 4097 bytes: "/y..." -> "/yy..." */
	char from[201], to[202];
	memcpy(from, p, 200);
	from[200] = 0;
	memcpy(to, p, 200);
	to[200] = 'y';
	to[201] = 0;
	assert_int_equal(ren(f, from, to), -ENAMETOOLONG);
	to[199] = 0; /* one byte shorter: p becomes 4095 bytes */
	assert_int_equal(ren(f, from, to), 0);
	/* names: 255 bytes fit, 256 do not */
	char n[260] = "/";
	memset(n + 1, 'n', 255);
	assert_int_equal(put(f, n, "255"), 0);
	n[256] = 'n';
	assert_int_equal(put(f, n, "256"), -ENAMETOOLONG);
	/* the events of the 4096-byte writes keep their whole paths */
	struct evlens e = {0};
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_kv_events(f->s, t, G, B("/"), 0, 0, ev_len, &e), 0);
	cm_store_txn_abort(t);
	assert_int_equal(e.n, 7); /* put, put, mkdir, put, rename, rename, put */
	assert_int_equal(e.len[0], 4096);
	assert_int_equal(e.len[2], 4096);
	assert_int_equal(e.len2[4], 4096);
	/* and a watch of a 4096-byte prefix is served */
	memset(&e, 0, sizeof(e));
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_kv_events(f->s, t, G, B(p), 0, 0, ev_len, &e), 0);
	cm_store_txn_abort(t);
	assert_true(e.n >= 1);
	assert_int_equal(e.len[0], 4096);
}

/* The deepest path there is: "/a" 2048 times, 4096 bytes, created by one
 * command (2,047 parents), kept by a snapshot, removed by one rm -r. */
static void test_deepest_4096_byte_path_survives_snapshot_and_recursive_delete(void **state)
{
	struct fx *f = *state;
	static char p[4200];
	for (uint32_t k = 0; k < 2048; k++)
		memcpy(p + 2 * k, "/a", 2);
	p[4096] = 0;
	assert_int_equal(put(f, p, "deep"), 0);
	expect_val(f, p, "deep");
	static char lp[4200];
	long_path(lp, 4096, 'w');
	assert_int_equal(put(f, lp, "wide"), 0);
	msgpack_sbuffer sb, again;
	snapshot_of(f, G, &sb);
	assert_int_equal(restore(f, 9, sb.data, sb.size), 0);
	expect_val_in(f, 9, p, "deep");
	expect_val_in(f, 9, lp, "wide");
	snapshot_of(f, 9, &again);
	assert_int_equal(sb.size, again.size);
	assert_memory_equal(sb.data, again.data, sb.size);
	struct cm_attr a;
	assert_int_equal(get_in(f, 9, "/a", &a, NULL, 0), 0);
	assert_int_equal(a.nlink, 3); /* 2 + its one subdirectory */
	assert_int_equal(del(f, "/a", CM_DEL_RECURSIVE), 0);
	assert_int_equal(get(f, p, NULL, NULL, 0), -ENOENT);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&again);
}

static void test_snapshot_of_empty_group_restores_to_empty(void **state)
{
	struct fx *f = *state;
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_PUT, 0, "/x", NULL, "old", 0, 0}), 0);
	msgpack_sbuffer sb;
	snapshot_of(f, G, &sb);
	assert_int_equal(restore(f, 9, sb.data, sb.size), 0);
	expect_list_in(f, 9, "/", "");
	msgpack_sbuffer_destroy(&sb);
}

static void test_restore_of_garbage_returns_ebadmsg_and_changes_nothing(void **state)
{
	struct fx *f = *state;
	build_tree(f, G);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_PUT, 0, "/keep", NULL, "me", 0, 0}), 0);
	msgpack_sbuffer good, before, after;
	snapshot_of(f, G, &good);
	snapshot_of(f, 9, &before);
	for (size_t k = 0; k < good.size; k++) /* every truncation */
		assert_int_equal(restore(f, 9, good.data, k), -EBADMSG);
	srand(99);
	uint8_t *bad = malloc(good.size);
	assert_non_null(bad);
	for (int round = 0; round < 2000; round++) {
		memcpy(bad, good.data, good.size);
		bad[(size_t)rand() % good.size] ^= (uint8_t)(1 + rand() % 255);
		int rc = restore(f, 9, bad, good.size);
		if (rc == 0) /* a flip in a value or a time: still a valid tree */
			assert_int_equal(restore(f, 9, before.data, before.size), 0);
		else
			assert_int_equal(rc, -EBADMSG);
	}
	free(bad);
	snapshot_of(f, 9, &after);
	assert_int_equal(before.size, after.size);
	assert_memory_equal(before.data, after.data, before.size);
	expect_val(f, "/opt/app/conf", "a=1");
	msgpack_sbuffer_destroy(&good);
	msgpack_sbuffer_destroy(&before);
	msgpack_sbuffer_destroy(&after);
}

/* One snapshot record, packed the way cm_kv_snapshot does; flags < 0: the
 * 11 fields of blobs from before boundaries, which restore still takes. */
static void rec_f(msgpack_packer *pk, const char *path, uint64_t ino, uint32_t mode, const char *value,
		  int64_t flags)
{
	msgpack_pack_array(pk, flags < 0 ? 11 : 12);
	msgpack_pack_str_with_body(pk, path, strlen(path));
	msgpack_pack_uint64(pk, ino);
	msgpack_pack_uint32(pk, mode);
	for (int k = 0; k < 4; k++)
		msgpack_pack_uint32(pk, 0); /* uid, gid, mtime, ctime */
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint64(pk, 1); /* create, mod, version */
	msgpack_pack_bin_with_body(pk, value, strlen(value));
	if (flags >= 0)
		msgpack_pack_int64(pk, flags);
}

/* A record without flags (the older layout). */
static void rec(msgpack_packer *pk, const char *path, uint64_t ino, uint32_t mode, const char *value)
{
	rec_f(pk, path, ino, mode, value, -1);
}

/* Restore into group 9 a blob of n records built by recs(); the result. */
static int restore_recs(struct fx *f, uint32_t n, void (*recs)(msgpack_packer *))
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, n);
	recs(&pk);
	int rc = restore(f, 9, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static void recs_good(msgpack_packer *pk)
{
	rec(pk, "/d", 1 << 16, S_IFDIR | 0755, "");
	rec(pk, "/d/f", 2 << 16, S_IFREG | 0644, "v");
}

static void recs_orphan(msgpack_packer *pk)
{
	rec(pk, "/d/f", 2 << 16, S_IFREG | 0644, "v");
	rec(pk, "/d", 1 << 16, S_IFDIR | 0755, "");
}

static void recs_dup_path(msgpack_packer *pk)
{
	recs_good(pk);
	rec(pk, "/d/f", 3 << 16, S_IFREG | 0644, "w");
}

static void recs_dup_dir_ino(msgpack_packer *pk)
{
	recs_good(pk);
	rec(pk, "/e", 1 << 16, S_IFDIR | 0755, "");
}

static void recs_under_file(msgpack_packer *pk)
{
	recs_good(pk);
	rec(pk, "/d/f/g", 3 << 16, S_IFREG | 0644, "w");
}

static void recs_bad_values(msgpack_packer *pk)
{
	rec(pk, "/d", 1 << 16, S_IFDIR | 0755, "dirs have no value");
}

static void recs_bad_root(msgpack_packer *pk)
{
	rec(pk, "/", 5, S_IFDIR | 0755, "");
}

static void recs_bad_path(msgpack_packer *pk)
{
	rec(pk, "/d/../x", 1 << 16, S_IFREG | 0644, "");
}

static void test_restore_rejects_trees_that_cannot_be(void **state)
{
	struct fx *f = *state;
	assert_int_equal(restore_recs(f, 2, recs_good), 0);
	expect_val_in(f, 9, "/d/f", "v");
	assert_int_equal(restore_recs(f, 2, recs_orphan), -EBADMSG);
	assert_int_equal(restore_recs(f, 3, recs_dup_path), -EBADMSG);
	assert_int_equal(restore_recs(f, 3, recs_dup_dir_ino), -EBADMSG);
	assert_int_equal(restore_recs(f, 3, recs_under_file), -EBADMSG);
	assert_int_equal(restore_recs(f, 1, recs_bad_values), -EBADMSG);
	assert_int_equal(restore_recs(f, 1, recs_bad_root), -EBADMSG);
	assert_int_equal(restore_recs(f, 1, recs_bad_path), -EBADMSG);
	assert_int_equal(restore_recs(f, 3, recs_good), -EBADMSG); /* count says 3, holds 2 */
	assert_int_equal(restore(f, 9, "", 0), -EBADMSG);
	expect_val_in(f, 9, "/d/f", "v"); /* still the good tree */
}

/* ---- shard boundaries ---- */

static int boundary(struct fx *f, const char *path)
{
	return op(f, (struct w){CM_OP_MKDIR, CM_MKDIR_BOUNDARY, path, NULL, NULL, 0, 0});
}

static void expect_snapshot_equal(struct fx *f, uint64_t g, const msgpack_sbuffer *want)
{
	msgpack_sbuffer now;
	snapshot_of(f, g, &now);
	assert_int_equal(now.size, want->size);
	assert_memory_equal(now.data, want->data, now.size);
	msgpack_sbuffer_destroy(&now);
}

static void test_boundary_on_empty_prefix_reads_as_an_ordinary_directory(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/apps/web/conf", "w"), 0);
	assert_int_equal(boundary(f, "/apps/payments"), 0);
	assert_int_equal(f->res.event_kind, CM_EV_MKDIR);
	assert_int_equal(f->res.attr.mode, S_IFDIR | 0755);
	struct cm_attr a;
	assert_int_equal(get(f, "/apps/payments", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFDIR | 0755);
	assert_int_equal(a.version, 1);
	assert_int_equal(a.create_index, 2);
	assert_int_equal(a.size, 0);
	expect_list(f, "/apps", "payments/,web/");
	expect_list(f, "/apps/payments", "");
	/* reads below it find nothing: the new shard answers them */
	assert_int_equal(get(f, "/apps/payments/x", NULL, NULL, 0), -ENOENT);
	/* parents are made as for MKDIR */
	assert_int_equal(boundary(f, "/new/deep/shard"), 0);
	assert_int_equal(get(f, "/new/deep", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFDIR | 0755);
	expect_list(f, "/new/deep", "shard/");
}

static void test_boundary_on_existing_path_returns_eexist(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/apps/payments/x", "1"), 0);
	assert_int_equal(mkdir_(f, "/apps/empty"), 0);
	assert_int_equal(put(f, "/apps/file", "f"), 0);
	msgpack_sbuffer before;
	snapshot_of(f, G, &before);
	assert_int_equal(boundary(f, "/apps/payments"), -EEXIST);
	assert_int_equal(boundary(f, "/apps/empty"), -EEXIST); /* even empty: it exists */
	assert_int_equal(boundary(f, "/apps/file"), -EEXIST);
	assert_int_equal(boundary(f, "/apps"), -EEXIST);
	assert_int_equal(boundary(f, "/apps/file/sub"), -ENOTDIR);
	assert_int_equal(f->res.event_kind, 0);
	expect_snapshot_equal(f, G, &before);
	/* nothing was fenced off */
	assert_int_equal(put(f, "/apps/payments/y", "2"), 0);
	msgpack_sbuffer_destroy(&before);
}

static void test_boundary_at_root_returns_einval(void **state)
{
	struct fx *f = *state;
	assert_int_equal(boundary(f, "/"), -EINVAL);
	assert_int_equal(put(f, "/a", "still writable"), 0);
}

static void test_writes_at_or_below_a_boundary_return_ewrongshard(void **state)
{
	struct fx *f = *state;
	const uint32_t chmod = CM_SET_MODE | CM_PUT_KEEP_VALUE;
	assert_int_equal(put(f, "/f", "file"), 0);
	assert_int_equal(boundary(f, "/p"), 0);
	msgpack_sbuffer before;
	snapshot_of(f, G, &before);
	struct w refused[] = {
		{CM_OP_PUT, 0, "/p", NULL, "v", 0, 0},
		{CM_OP_PUT, 0, "/p/x", NULL, "v", 0, 0},
		{CM_OP_PUT, 0, "/p/x/y", NULL, "v", 0, 0},
		{CM_OP_PUT, CM_PUT_CREATE, "/p/x", NULL, "v", 0, 0},
		{CM_OP_PUT, CM_PUT_IF_VERSION, "/p/x", NULL, "v", 0, 0},
		{CM_OP_PUT, chmod, "/p", NULL, NULL, 0, 0700},
		{CM_OP_MKDIR, 0, "/p", NULL, NULL, 0, 0},
		{CM_OP_MKDIR, 0, "/p/x/y", NULL, NULL, 0, 0},
		{CM_OP_MKDIR, CM_MKDIR_BOUNDARY, "/p", NULL, NULL, 0, 0}, /* a retried split */
		{CM_OP_MKDIR, CM_MKDIR_BOUNDARY, "/p/sub", NULL, NULL, 0, 0},
		{CM_OP_DELETE, 0, "/p", NULL, NULL, 0, 0},
		{CM_OP_DELETE, CM_DEL_DIR, "/p", NULL, NULL, 0, 0},
		{CM_OP_DELETE, CM_DEL_RECURSIVE, "/p", NULL, NULL, 0, 0},
		{CM_OP_DELETE, CM_PUT_IF_VERSION, "/p", NULL, NULL, 1, 0},
		{CM_OP_DELETE, 0, "/p/x", NULL, NULL, 0, 0},
		{CM_OP_RENAME, 0, "/p", "/q", NULL, 0, 0},
		{CM_OP_RENAME, 0, "/p", "/p", NULL, 0, 0},
		{CM_OP_RENAME, 0, "/p/x", "/q", NULL, 0, 0},
		{CM_OP_RENAME, 0, "/f", "/p", NULL, 0, 0},
	};
	for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++) {
		assert_int_equal(op(f, refused[k]), CM_EWRONGSHARD);
		assert_int_equal(f->res.event_kind, 0);
	}
	expect_snapshot_equal(f, G, &before);
	/* fenced by path components, not by bytes: siblings stay writable */
	assert_int_equal(put(f, "/p2/x", "v"), 0);
	assert_int_equal(put(f, "/p.bak", "v"), 0);
	msgpack_sbuffer_destroy(&before);
}

static void test_rename_into_a_boundary_returns_ewrongshard(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/f", "file"), 0);
	assert_int_equal(put(f, "/d/x", "1"), 0);
	assert_int_equal(boundary(f, "/apps/payments"), 0);
	assert_int_equal(ren(f, "/f", "/apps/payments/f"), CM_EWRONGSHARD);
	assert_int_equal(ren(f, "/f", "/apps/payments/new/f"), CM_EWRONGSHARD);
	assert_int_equal(ren(f, "/d", "/apps/payments/d"), CM_EWRONGSHARD);
	assert_int_equal(op(f, (struct w){CM_OP_RENAME, CM_PUT_CREATE, "/d", "/apps/payments", NULL, 0, 0}),
			 CM_EWRONGSHARD);
	expect_val(f, "/f", "file");
	expect_val(f, "/d/x", "1");
	expect_list(f, "/apps/payments", "");
	/* next to the boundary is still this group's */
	assert_int_equal(ren(f, "/f", "/apps/f"), 0);
	expect_list(f, "/apps", "f,payments/");
}

static void test_recursive_delete_above_a_boundary_returns_ebusy_and_deletes_nothing(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/apps/a", "1"), 0);
	assert_int_equal(put(f, "/apps/b/c", "2"), 0);
	assert_int_equal(boundary(f, "/apps/b/deep/payments"), 0);
	assert_int_equal(boundary(f, "/lone/shard"), 0);
	msgpack_sbuffer before;
	snapshot_of(f, G, &before);
	assert_int_equal(del(f, "/apps", CM_DEL_RECURSIVE), -EBUSY);
	assert_int_equal(del(f, "/apps/b", CM_DEL_RECURSIVE), -EBUSY);
	assert_int_equal(del(f, "/apps/b/deep", CM_DEL_RECURSIVE), -EBUSY);
	assert_int_equal(del(f, "/apps", CM_DEL_DIR), -ENOTEMPTY);
	/* a directory whose only child is a boundary is not empty */
	assert_int_equal(del(f, "/lone", CM_DEL_DIR), -ENOTEMPTY);
	assert_int_equal(del(f, "/lone", CM_DEL_RECURSIVE), -EBUSY);
	assert_int_equal(f->res.event_kind, 0);
	expect_snapshot_equal(f, G, &before);
	/* what is beside the boundary can still go */
	assert_int_equal(del(f, "/apps/a", 0), 0);
	assert_int_equal(del(f, "/apps/b/c", 0), 0);
	expect_list(f, "/apps/b", "deep/");
	msgpack_sbuffer_destroy(&before);
}

static void test_rename_above_a_boundary_returns_ebusy(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/apps/a", "1"), 0);
	assert_int_equal(boundary(f, "/apps/sub/payments"), 0);
	assert_int_equal(mkdir_(f, "/empty"), 0);
	assert_int_equal(mkdir_(f, "/d"), 0);
	msgpack_sbuffer before;
	snapshot_of(f, G, &before);
	assert_int_equal(ren(f, "/apps", "/moved"), -EBUSY);
	assert_int_equal(ren(f, "/apps/sub", "/moved"), -EBUSY);
	assert_int_equal(ren(f, "/apps", "/empty"), -EBUSY);
	/* onto a directory holding a boundary: not empty, as rename(2) says */
	assert_int_equal(ren(f, "/d", "/apps/sub"), -ENOTEMPTY);
	expect_snapshot_equal(f, G, &before);
	assert_int_equal(del(f, "/d", CM_DEL_DIR), 0);
	assert_int_equal(ren(f, "/apps/a", "/apps/b"), 0);
	expect_list(f, "/apps", "b,sub/");
	msgpack_sbuffer_destroy(&before);
}

static void test_snapshot_restore_keeps_boundaries_refusing_writes(void **state)
{
	struct fx *f = *state;
	build_tree(f, G);
	assert_int_equal(boundary(f, "/opt/app/payments"), 0);
	msgpack_sbuffer sb;
	snapshot_of(f, G, &sb);
	assert_int_equal(restore(f, 9, sb.data, sb.size), 0);
	expect_snapshot_equal(f, 9, &sb);
	expect_same_node(f, G, 9, "/opt/app");
	expect_same_node(f, G, 9, "/opt/app/payments");
	struct cm_attr a;
	assert_int_equal(get_in(f, 9, "/opt/app/payments", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFDIR | 0755);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_PUT, 0, "/opt/app/payments/x", NULL, "v", 0, 0}),
			 CM_EWRONGSHARD);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_DELETE, CM_DEL_RECURSIVE, "/opt", NULL, NULL, 0, 0}),
			 -EBUSY);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_RENAME, 0, "/opt", "/x", NULL, 0, 0}), -EBUSY);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_PUT, 0, "/opt/app/other", NULL, "v", 0, 0}), 0);
	msgpack_sbuffer_destroy(&sb);
}

static void recs_boundary(msgpack_packer *pk)
{
	rec_f(pk, "/d", 1 << 16, S_IFDIR | 0755, "", 0);
	rec_f(pk, "/d/p", 2 << 16, S_IFDIR | 0755, "", 1);
}

static void recs_boundary_file(msgpack_packer *pk)
{
	rec_f(pk, "/d", 1 << 16, S_IFREG | 0644, "", 1);
}

static void recs_boundary_root(msgpack_packer *pk)
{
	rec_f(pk, "/", 1, S_IFDIR | 0755, "", 1);
}

static void recs_under_boundary(msgpack_packer *pk)
{
	recs_boundary(pk);
	rec_f(pk, "/d/p/x", 3 << 16, S_IFREG | 0644, "v", 0);
}

static void recs_unknown_flag(msgpack_packer *pk)
{
	rec_f(pk, "/d", 1 << 16, S_IFDIR | 0755, "", 0x40);
}

static void recs_mode_beyond_st_mode(msgpack_packer *pk)
{
	rec_f(pk, "/d", 1 << 16, (1u << 16) | S_IFDIR | 0755, "", 0);
}

static void test_restore_rejects_boundaries_that_cannot_be(void **state)
{
	struct fx *f = *state;
	assert_int_equal(restore_recs(f, 2, recs_boundary), 0);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_PUT, 0, "/d/p/x", NULL, "v", 0, 0}), CM_EWRONGSHARD);
	assert_int_equal(restore_recs(f, 1, recs_boundary_file), -EBADMSG);
	assert_int_equal(restore_recs(f, 1, recs_boundary_root), -EBADMSG);
	assert_int_equal(restore_recs(f, 3, recs_under_boundary), -EBADMSG);
	assert_int_equal(restore_recs(f, 1, recs_unknown_flag), -EBADMSG);
	assert_int_equal(restore_recs(f, 1, recs_mode_beyond_st_mode), -EBADMSG);
	expect_list_in(f, 9, "/d", "p/"); /* still the good tree */
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_DELETE, CM_DEL_RECURSIVE, "/d", NULL, NULL, 0, 0}),
			 -EBUSY);
}

static int ev_modes(void *arg, uint64_t index, uint8_t kind, struct cm_bytes path, struct cm_bytes path2,
		    const struct cm_attr *attr)
{
	struct evs *e = arg;
	size_t at = strlen(e->s);
	(void)index;
	(void)path2;
	snprintf(e->s + at, sizeof(e->s) - at, "%s%d:%.*s:%o", at ? " " : "", kind, (int)path.len, path.p,
		 attr->mode);
	return 0;
}

static void test_boundary_mkdir_produces_an_ordinary_mkdir_event(void **state)
{
	struct fx *f = *state;
	assert_int_equal(boundary(f, "/apps/payments"), 0);
	assert_int_equal(put(f, "/apps/payments/x", "v"), CM_EWRONGSHARD); /* no event */
	struct evs e;
	assert_int_equal(events(f, "/", 0, 0, &e), 0);
	assert_string_equal(e.s, "1:3:/apps/payments");
	assert_int_equal(events(f, "/apps/payments", 0, 0, &e), 0);
	assert_string_equal(e.s, "1:3:/apps/payments");
	MDB_txn *t;
	memset(&e, 0, sizeof(e));
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_kv_events(f->s, t, G, B("/"), 0, 0, ev_modes, &e), 0);
	cm_store_txn_abort(t);
	assert_string_equal(e.s, "3:/apps/payments:40755");
}

static void test_cmd_boundary_flag_only_with_mkdir(void **state)
{
	(void)state;
	struct cm_req req = {.op = CM_OP_MKDIR, .flags = CM_MKDIR_BOUNDARY, .path = B("/p")};
	uint8_t buf[256];
	size_t n = encode(&req, buf, sizeof(buf));
	struct cm_kv_cmd c;
	assert_int_equal(decode(buf, n, &c), 0);
	assert_int_equal(c.op, CM_OP_MKDIR);
	assert_int_equal(c.flags, CM_MKDIR_BOUNDARY);
	buf[1] = CM_OP_PUT; /* [0x9b, op, flags, ...] */
	assert_int_equal(decode(buf, n, &c), -EBADMSG);
	buf[1] = CM_OP_DELETE;
	assert_int_equal(decode(buf, n, &c), -EBADMSG);
	buf[1] = CM_OP_RENAME;
	assert_int_equal(decode(buf, n, &c), -EBADMSG);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	req.op = CM_OP_PUT;
	assert_int_equal(cm_kv_cmd_encode(&sb, &req, 0, 0), -EINVAL);
	assert_int_equal(sb.size, 0);
	msgpack_sbuffer_destroy(&sb);
}

/* ---- a shard's own top directory ---- */

static int top(struct fx *f, const char *path)
{
	return op(f, (struct w){CM_OP_MKDIR, CM_MKDIR_TOP, path, NULL, NULL, 0, 0});
}

static void test_top_mkdir_creates_an_ordinary_directory_once(void **state)
{
	struct fx *f = *state;
	assert_int_equal(top(f, "/parent/s1"), 0);
	assert_int_equal(f->res.event_kind, CM_EV_MKDIR); /* watchers see a plain mkdir */
	assert_int_equal(f->res.attr.mode, S_IFDIR | 0755);
	struct cm_attr a;
	assert_int_equal(get(f, "/parent/s1", &a, NULL, 0), 0);
	assert_int_equal(a.mode, S_IFDIR | 0755);
	assert_int_equal(a.version, 1);
	expect_list(f, "/parent", "s1/");
	/* each new leader proposes it again: nothing changes */
	msgpack_sbuffer before;
	snapshot_of(f, G, &before);
	assert_int_equal(top(f, "/parent/s1"), -EEXIST);
	assert_int_equal(mkdir_(f, "/parent/s1"), -EEXIST);
	assert_int_equal(f->res.event_kind, 0);
	expect_snapshot_equal(f, G, &before);
	assert_int_equal(top(f, "/"), -EINVAL);
	msgpack_sbuffer_destroy(&before);
}

/* The case: rmdir of an empty top returned 0 and left a name the
 * parent shard lists and this one does not have. */
static void test_rmdir_of_an_empty_top_returns_ebusy(void **state)
{
	struct fx *f = *state;
	assert_int_equal(top(f, "/s1"), 0);
	assert_int_equal(del(f, "/s1", CM_DEL_DIR), -EBUSY);
	assert_int_equal(del(f, "/s1", CM_DEL_RECURSIVE), -EBUSY);
	assert_int_equal(f->res.event_kind, 0);
	assert_int_equal(get(f, "/s1", NULL, NULL, 0), 0);
	assert_int_equal(mkdir_(f, "/s1/d"), 0); /* and it still takes what is below it */
}

static void test_removing_moving_or_replacing_a_top_returns_ebusy(void **state)
{
	struct fx *f = *state;
	const uint32_t chmod = CM_SET_MODE | CM_PUT_KEEP_VALUE;
	assert_int_equal(top(f, "/parent/s1"), 0);
	assert_int_equal(put(f, "/parent/s1/sub/f", "v"), 0);
	assert_int_equal(put(f, "/parent/s1/g", "w"), 0);
	assert_int_equal(mkdir_(f, "/parent/s1/empty"), 0);
	msgpack_sbuffer before;
	snapshot_of(f, G, &before);
	struct w refused[] = {
		{CM_OP_DELETE, CM_DEL_DIR, "/parent/s1", NULL, NULL, 0, 0},
		{CM_OP_DELETE, CM_DEL_RECURSIVE, "/parent/s1", NULL, NULL, 0, 0},
		{CM_OP_DELETE, 0, "/parent/s1", NULL, NULL, 0, 0},
		{CM_OP_DELETE, CM_DEL_RECURSIVE | CM_PUT_IF_VERSION, "/parent/s1", NULL, NULL, 1, 0},
		{CM_OP_DELETE, CM_DEL_RECURSIVE, "/parent", NULL, NULL, 0, 0}, /* above it */
		{CM_OP_RENAME, 0, "/parent/s1", "/s2", NULL, 0, 0},
		{CM_OP_RENAME, 0, "/parent/s1", "/parent/s2", NULL, 0, 0},
		{CM_OP_RENAME, 0, "/parent", "/moved", NULL, 0, 0}, /* above it */
		{CM_OP_RENAME, 0, "/parent/s1/empty", "/parent/s1", NULL, 0, 0}, /* over it */
		{CM_OP_RENAME, 0, "/parent/s1/sub", "/parent/s1", NULL, 0, 0},
		{CM_OP_RENAME, 0, "/parent/s1/g", "/parent/s1", NULL, 0, 0},
		{CM_OP_RENAME, CM_PUT_CREATE, "/parent/s1/empty", "/parent/s1", NULL, 0, 0},
	};
	for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++) {
		assert_int_equal(op(f, refused[k]), -EBUSY);
		assert_int_equal(f->res.event_kind, 0);
	}
	expect_snapshot_equal(f, G, &before);
	/* a directory holding the top is not empty, as for a boundary */
	assert_int_equal(del(f, "/parent", CM_DEL_DIR), -ENOTEMPTY);
	/* everything below the top is the group's to change, the top's mode too */
	assert_int_equal(del(f, "/parent/s1/sub", CM_DEL_RECURSIVE), 0);
	assert_int_equal(ren(f, "/parent/s1/g", "/parent/s1/h"), 0);
	assert_int_equal(op(f, (struct w){CM_OP_PUT, chmod, "/parent/s1", NULL, NULL, 0, 0700}), 0);
	assert_int_equal(del(f, "/parent/s1", CM_DEL_RECURSIVE), -EBUSY); /* chmod kept the mark */
	assert_int_equal(ren(f, "/parent/s1", "/x"), -EBUSY);
	expect_list(f, "/parent/s1", "empty/,h");
	msgpack_sbuffer_destroy(&before);
}

/* A write below the top can come first (PUT makes parents), and a top made
 * before the mark existed has none: the leader's MKDIR marks it. */
static void test_top_mkdir_marks_an_existing_directory_silently(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/s1/x", "v"), 0);
	struct cm_attr was, now;
	assert_int_equal(get(f, "/s1", &was, NULL, 0), 0);
	assert_int_equal(top(f, "/s1"), 0);
	assert_int_equal(f->res.event_kind, 0); /* nothing a watcher can see changed */
	assert_attr_equal(&f->res.attr, &was);
	assert_int_equal(get(f, "/s1", &now, NULL, 0), 0);
	assert_attr_equal(&now, &was);
	struct evs e;
	assert_int_equal(events(f, "/", 0, 0, &e), 0);
	assert_string_equal(e.s, "1:1:/s1/x");
	assert_int_equal(del(f, "/s1", CM_DEL_RECURSIVE), -EBUSY);
	assert_int_equal(top(f, "/s1"), -EEXIST);
	/* a file at the prefix is not made a top; fenced paths stay fenced */
	assert_int_equal(put(f, "/f", "file"), 0);
	assert_int_equal(top(f, "/f"), -EEXIST);
	assert_int_equal(del(f, "/f", 0), 0);
	assert_int_equal(boundary(f, "/s1/b"), 0);
	assert_int_equal(top(f, "/s1/b"), CM_EWRONGSHARD);
}

static void test_snapshot_restore_keeps_tops(void **state)
{
	struct fx *f = *state;
	assert_int_equal(top(f, "/a/s1"), 0);
	assert_int_equal(put(f, "/a/s1/x", "v"), 0);
	msgpack_sbuffer sb;
	snapshot_of(f, G, &sb);
	assert_int_equal(restore(f, 9, sb.data, sb.size), 0);
	expect_snapshot_equal(f, 9, &sb);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_DELETE, CM_DEL_RECURSIVE, "/a/s1", NULL, NULL, 0, 0}),
			 -EBUSY);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_RENAME, 0, "/a", "/b", NULL, 0, 0}), -EBUSY);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_DELETE, 0, "/a/s1/x", NULL, NULL, 0, 0}), 0);
	msgpack_sbuffer_destroy(&sb);
}

static void recs_top(msgpack_packer *pk)
{
	rec_f(pk, "/d", 1 << 16, S_IFDIR | 0755, "", 2);
	rec_f(pk, "/d/x", 2 << 16, S_IFREG | 0644, "v", 0); /* a top has children */
}

static void recs_top_file(msgpack_packer *pk)
{
	rec_f(pk, "/d", 1 << 16, S_IFREG | 0644, "", 2);
}

static void recs_top_root(msgpack_packer *pk)
{
	rec_f(pk, "/", 1, S_IFDIR | 0755, "", 2);
}

static void recs_top_and_boundary(msgpack_packer *pk)
{
	rec_f(pk, "/d", 1 << 16, S_IFDIR | 0755, "", 3);
}

static void test_restore_rejects_tops_that_cannot_be(void **state)
{
	struct fx *f = *state;
	assert_int_equal(restore_recs(f, 2, recs_top), 0);
	assert_int_equal(op_in(f, 9, (struct w){CM_OP_DELETE, CM_DEL_RECURSIVE, "/d", NULL, NULL, 0, 0}),
			 -EBUSY);
	assert_int_equal(restore_recs(f, 1, recs_top_file), -EBADMSG);
	assert_int_equal(restore_recs(f, 1, recs_top_root), -EBADMSG);
	assert_int_equal(restore_recs(f, 1, recs_top_and_boundary), -EBADMSG);
	expect_list_in(f, 9, "/d", "x"); /* still the good tree */
}

static void test_cmd_top_flag_only_with_mkdir_and_never_with_boundary(void **state)
{
	(void)state;
	struct cm_req req = {.op = CM_OP_MKDIR, .flags = CM_MKDIR_TOP, .path = B("/p")};
	uint8_t buf[256];
	size_t n = encode(&req, buf, sizeof(buf));
	struct cm_kv_cmd c;
	assert_int_equal(decode(buf, n, &c), 0);
	assert_int_equal(c.flags, CM_MKDIR_TOP);
	buf[1] = CM_OP_DELETE; /* [0x9b, op, flags, ...] */
	assert_int_equal(decode(buf, n, &c), -EBADMSG);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	req.op = CM_OP_RENAME;
	assert_int_equal(cm_kv_cmd_encode(&sb, &req, 0, 0), -EINVAL);
	req.op = CM_OP_MKDIR;
	req.flags = CM_MKDIR_TOP | CM_MKDIR_BOUNDARY;
	assert_int_equal(cm_kv_cmd_encode(&sb, &req, 0, 0), -EINVAL);
	assert_int_equal(sb.size, 0);
	msgpack_sbuffer_destroy(&sb);
}

/* Put raw bytes under a raw key of one of the store's databases. */
static void raw_put(struct fx *f, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t vlen)
{
	MDB_txn *t;
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	assert_int_equal(mdb_put(t, dbi, &k, &v, 0), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
}

static void test_corrupt_records_give_eio_never_a_crash(void **state)
{
	struct fx *f = *state;
	const struct cm_store_dbs *d = cm_store_dbs(f->s);
	assert_int_equal(put(f, "/ok", "v"), 0);
	/* group 1, parent "/" (ino 1), name "bad": a record too short to hold an attr */
	uint8_t key[19] = {0, 0, 0, 0, 0, 0, 0, G, 0, 0, 0, 0, 0, 0, 0, 1, 'b', 'a', 'd'};
	raw_put(f, d->kv, key, sizeof(key), "short", 5);
	assert_int_equal(get(f, "/bad", NULL, NULL, 0), -EIO);
	struct names n = {0};
	assert_int_equal(list_in(f, G, "/", &n), -EIO);
	MDB_txn *t;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	assert_int_equal(cm_kv_snapshot(f->s, t, G, &sb), -EIO);
	cm_store_txn_abort(t);
	assert_int_equal(sb.size, 0);
	msgpack_sbuffer_destroy(&sb);
	/* a record whose mode word holds an unknown node flag */
	uint8_t flagged[64] = {0xed, 0x41, 0x40, 0x00}; /* mode 040755, flag 0x40 */
	flagged[56] = 9;                                /* ino */
	raw_put(f, d->kv, key, sizeof(key), flagged, sizeof(flagged));
	assert_int_equal(get(f, "/bad", NULL, NULL, 0), -EIO);
	/* a record whose size field disagrees with its length */
	uint8_t rec[70] = {0};
	rec[0] = 0xa4; rec[1] = 0x81; /* mode 0100644 */
	rec[52] = 200;                /* size 200, but 6 value bytes follow */
	rec[56] = 9;                  /* ino */
	raw_put(f, d->kv, key, sizeof(key), rec, sizeof(rec));
	assert_int_equal(get(f, "/bad", NULL, NULL, 0), -EIO);
	/* apply reports it as a storage failure: the turn must not commit */
	struct cm_req req = {.op = CM_OP_PUT, .path = B("/bad"), .value = B("x")};
	struct cm_kv_result res;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_kv_cmd_encode(&sb, &req, 1, 0), 0);
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	assert_int_equal(cm_kv_apply(f->s, t, G, 50, sb.data, (uint32_t)sb.size, &res), -EIO);
	cm_store_txn_abort(t);
	msgpack_sbuffer_destroy(&sb);
	/* an event record too short for the lengths it declares */
	uint8_t ekey[16] = {0, 0, 0, 0, 0, 0, 0, G, 0, 0, 0, 0, 0, 0, 0, 99};
	uint8_t ev[70] = {CM_EV_PUT, 0, 50, 0};
	raw_put(f, d->events, ekey, sizeof(ekey), ev, sizeof(ev));
	struct evs e;
	assert_int_equal(events(f, "/", 0, 0, &e), -EIO);
}

static void test_full_store_makes_apply_return_enospc(void **state)
{
	(void)state;
	char dir[] = "/tmp/cm-test-kv-full-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct cm_store *s;
	assert_int_equal(cm_store_open(dir, 1u << 20, &s), 0);
	static char big[50000];
	memset(big, 'z', sizeof(big));
	int rc = 0, rc_read = 0;
	uint64_t index = 1;
	struct cm_kv_result res = {0};
	while (rc == 0 && index < 1000) {
		char path[32];
		snprintf(path, sizeof(path), "/f%llu", (unsigned long long)index);
		struct cm_req req = {.op = CM_OP_PUT, .path = B(path), .value = {big, sizeof(big)}};
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		rc = cm_kv_cmd_encode(&sb, &req, 1, CM_VALUE_MAX_DEFAULT);
		MDB_txn *t;
		rc = rc ? rc : cm_store_txn_begin(s, true, &t);
		if (rc == 0) {
			rc = cm_kv_apply(s, t, G, index++, sb.data, (uint32_t)sb.size, &res);
			if (rc == 0 && res.err == 0)
				rc = cm_store_txn_commit(t);
			else
				cm_store_txn_abort(t);
		}
		msgpack_sbuffer_destroy(&sb);
	}
	MDB_txn *t;
	struct cm_attr a;
	struct cm_bytes v = {0};
	rc_read = cm_store_txn_begin(s, false, &t);
	if (rc_read == 0) {
		rc_read = cm_kv_get(s, t, G, B("/f1"), &a, &v);
		cm_store_txn_abort(t);
	}
	cm_store_close(s);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	assert_int_equal(rc, -ENOSPC);
	assert_true(index > 3);
	assert_int_equal(rc_read, 0);
	assert_int_equal(a.size, sizeof(big));
}

/* ---- times and directory link counts (issue 12) ---- */

/* PUT with CM_PUT_KEEP_VALUE | CM_SET_TIMES (touch, utimensat); the result's err. */
static int op_times(struct fx *f, const char *path, int64_t atime, int64_t mtime)
{
	struct cm_req req = {.op = CM_OP_PUT, .flags = CM_PUT_KEEP_VALUE | CM_SET_TIMES,
			     .path = B(path), .atime_ns = atime, .mtime_ns = mtime};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_kv_cmd_encode(&sb, &req, STAMP + (int64_t)f->index, 64), 0);
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, true, &t), 0);
	assert_int_equal(cm_kv_apply(f->s, t, G, f->index++, sb.data, (uint32_t)sb.size, &f->res), 0);
	assert_int_equal(cm_store_txn_commit(t), 0);
	msgpack_sbuffer_destroy(&sb);
	return f->res.err;
}

static struct cm_attr attr_of(struct fx *f, const char *path)
{
	struct cm_attr a;
	assert_int_equal(get(f, path, &a, NULL, 0), 0);
	return a;
}

static void test_set_times_sets_exactly_what_it_says(void **state)
{
	struct fx *f = *state;
	assert_int_equal(put(f, "/f", "v"), 0);
	struct cm_attr a = attr_of(f, "/f");
	assert_int_equal(a.atime_ns, STAMP + 1); /* created: all three at the stamp */
	assert_int_equal(a.nlink, 1);
	uint64_t at = f->index;
	assert_int_equal(op_times(f, "/f", 981158400000000007ll, -12345), 0); /* touch -d */
	a = attr_of(f, "/f");
	assert_int_equal(a.atime_ns, 981158400000000007ll);
	assert_int_equal(a.mtime_ns, -12345); /* before 1970 is a time too */
	assert_int_equal(a.ctime_ns, STAMP + (int64_t)at);
	assert_int_equal(a.version, 2);
	assert_int_equal(a.size, 1);
	expect_val(f, "/f", "v");
	at = f->index;
	assert_int_equal(op_times(f, "/f", CM_TIME_OMIT, CM_TIME_NOW), 0); /* touch -m */
	a = attr_of(f, "/f");
	assert_int_equal(a.atime_ns, 981158400000000007ll);
	assert_int_equal(a.mtime_ns, STAMP + (int64_t)at); /* NOW: the leader's stamp */
	assert_int_equal(a.ctime_ns, STAMP + (int64_t)at);
	at = f->index;
	assert_int_equal(op_times(f, "/f", CM_TIME_NOW, CM_TIME_OMIT), 0); /* touch -a */
	a = attr_of(f, "/f");
	assert_int_equal(a.atime_ns, STAMP + (int64_t)at);
	assert_int_equal(a.mtime_ns, STAMP + (int64_t)at - 1);
	/* directories and "/" too; a missing node is ENOENT */
	assert_int_equal(mkdir_(f, "/d"), 0);
	assert_int_equal(op_times(f, "/d", 1, 2), 0);
	assert_int_equal(attr_of(f, "/d").mtime_ns, 2);
	assert_int_equal(op_times(f, "/", 3, 4), 0);
	assert_int_equal(attr_of(f, "/").atime_ns, 3);
	assert_int_equal(op_times(f, "/nope", 1, 2), -ENOENT);
	/* a write moves mtime and ctime, not atime (reads never do either) */
	int64_t atime = attr_of(f, "/f").atime_ns;
	at = f->index;
	assert_int_equal(put(f, "/f", "w"), 0);
	a = attr_of(f, "/f");
	assert_int_equal(a.mtime_ns, STAMP + (int64_t)at);
	assert_int_equal(a.atime_ns, atime);
}

static void test_cmd_times_fields_only_with_their_flag(void **state)
{
	(void)state;
	struct cm_req req = {.op = CM_OP_PUT, .flags = CM_SET_TIMES | CM_PUT_KEEP_VALUE,
			     .path = B("/a"), .atime_ns = CM_TIME_NOW, .mtime_ns = CM_TIME_OMIT};
	uint8_t buf[256], alt[256];
	size_t n = encode(&req, buf, sizeof(buf));
	assert_int_equal(buf[0], 0x9d); /* 13 fields */
	struct cm_kv_cmd c;
	assert_int_equal(decode(buf, n, &c), 0);
	assert_int_equal(c.atime_ns, -5); /* NOW became the stamp: no replica reads a clock */
	assert_int_equal(c.mtime_ns, CM_TIME_OMIT);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(decode(buf, k, &c), -EBADMSG);
	memcpy(alt, buf, n);
	alt[0] = 0x9b; /* the flag without its operands */
	assert_int_equal(decode(alt, n, &c), -EBADMSG);
	req.flags |= CM_PUT_IF_MOD;
	req.mod_index = 77;
	n = encode(&req, buf, sizeof(buf));
	assert_int_equal(buf[0], 0x9e); /* 14 fields: mod_index, then the times */
	assert_int_equal(decode(buf, n, &c), 0);
	assert_int_equal(c.mod_index, 77);
	assert_int_equal(c.atime_ns, -5);
	/* a command holding CM_TIME_NOW was not stamped: refused */
	req.flags = CM_SET_TIMES;
	req.atime_ns = 1;
	req.mtime_ns = 2;
	n = encode(&req, buf, sizeof(buf));
	assert_int_equal(decode(buf, n, &c), 0);
	assert_int_equal(c.mtime_ns, 2);
	memcpy(alt, buf, n);
	/* replace mtime (a positive fixint 2, the last byte) by int64 NOW: too
	 * long for the buffer's end, so rebuild by hand */
	size_t m = n - 1;
	alt[m++] = 0xd3;
	uint64_t now = (uint64_t)CM_TIME_NOW;
	for (int k = 7; k >= 0; k--)
		alt[m++] = (uint8_t)(now >> (8 * k));
	assert_int_equal(decode(alt, m, &c), -EBADMSG);
	/* only PUT sets times */
	req.op = CM_OP_MKDIR;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_kv_cmd_encode(&sb, &req, 0, 0), -EINVAL);
	msgpack_sbuffer_destroy(&sb);
}

/* The directory's mtime and ctime are the stamp of index at, its version not moved. */
static void expect_dir_touched(struct fx *f, const char *dir, uint64_t at, uint64_t version)
{
	struct cm_attr a = attr_of(f, dir);
	assert_int_equal(a.mtime_ns, STAMP + (int64_t)at);
	assert_int_equal(a.ctime_ns, STAMP + (int64_t)at);
	assert_int_equal(a.version, version);
}

static void test_entries_move_their_parents_times(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mkdir_(f, "/d"), 0);
	assert_int_equal(mkdir_(f, "/e"), 0);
	expect_dir_touched(f, "/", 2, 1); /* made by mkdir /e */
	uint64_t at = f->index;
	assert_int_equal(put(f, "/d/f", "1"), 0);
	expect_dir_touched(f, "/d", at, 1);
	expect_dir_touched(f, "/", 2, 1); /* a grandchild is not its entry */
	assert_int_equal(put(f, "/d/f", "2"), 0); /* new content: no new entry */
	expect_dir_touched(f, "/d", at, 1);
	at = f->index;
	assert_int_equal(ren(f, "/d/f", "/e/f"), 0);
	expect_dir_touched(f, "/d", at, 1);
	expect_dir_touched(f, "/e", at, 1);
	at = f->index;
	assert_int_equal(ren(f, "/e/f", "/e/g"), 0);
	expect_dir_touched(f, "/e", at, 1);
	at = f->index;
	assert_int_equal(del(f, "/e/g", 0), 0);
	expect_dir_touched(f, "/e", at, 1);
	at = f->index;
	assert_int_equal(put(f, "/e/x/y/z", "deep"), 0); /* parents made: /e gained x */
	expect_dir_touched(f, "/e", at, 1);
	expect_dir_touched(f, "/e/x", at, 1);
	at = f->index;
	assert_int_equal(del(f, "/e/x", CM_DEL_RECURSIVE), 0);
	expect_dir_touched(f, "/e", at, 1);
	/* a failed op moves nothing */
	assert_int_equal(del(f, "/e/nope", 0), -ENOENT);
	expect_dir_touched(f, "/e", at, 1);
	/* chmod of the parent still a CAS on its own mod_index */
	struct cm_attr e = attr_of(f, "/e");
	assert_int_equal(op_mod(f, (struct w){CM_OP_PUT, CM_PUT_KEEP_VALUE | CM_SET_MODE |
						       CM_PUT_IF_MOD, "/e", NULL, NULL, 0, 0700},
				e.mod_index),
			 0);
}

/* nlink of each path, as "2,3,..." */
static void expect_nlinks(struct fx *f, const char *const *paths, size_t n, const char *want)
{
	char got[128] = "";
	for (size_t k = 0; k < n; k++) {
		size_t at = strlen(got);
		snprintf(got + at, sizeof(got) - at, "%s%u", k ? "," : "", attr_of(f, paths[k]).nlink);
	}
	assert_string_equal(got, want);
}

static void test_directory_nlink_is_two_plus_subdirectories(void **state)
{
	struct fx *f = *state;
	const char *p[] = {"/", "/a", "/z"};
	assert_int_equal(mkdir_(f, "/a"), 0);
	assert_int_equal(mkdir_(f, "/a/b"), 0);
	assert_int_equal(mkdir_(f, "/a/c"), 0);
	assert_int_equal(put(f, "/a/f", "x"), 0);
	assert_int_equal(mkdir_(f, "/z"), 0);
	expect_nlinks(f, p, 3, "4,4,2");
	assert_int_equal(del(f, "/a/c", CM_DEL_DIR), 0);
	expect_nlinks(f, p, 3, "4,3,2");
	assert_int_equal(ren(f, "/a/b", "/z/b"), 0);
	expect_nlinks(f, p, 3, "4,2,3");
	assert_int_equal(mkdir_(f, "/a/e"), 0);
	assert_int_equal(ren(f, "/z/b", "/a/e"), 0); /* onto an empty directory */
	expect_nlinks(f, p, 3, "4,3,2");
	assert_int_equal(ren(f, "/a/e", "/a/e2"), 0); /* within one directory */
	expect_nlinks(f, p, 3, "4,3,2");
	assert_int_equal(ren(f, "/a/f", "/z/f"), 0); /* a file moves no link */
	expect_nlinks(f, p, 3, "4,3,2");
	assert_int_equal(put(f, "/z/p/q/r", "v"), 0); /* parents made */
	const char *q[] = {"/z", "/z/p", "/z/p/q"};
	expect_nlinks(f, q, 3, "3,3,2");
	assert_int_equal(mkdir_(f, "/z/m/n/o"), 0);
	const char *m[] = {"/z", "/z/m", "/z/m/n", "/z/m/n/o"};
	expect_nlinks(f, m, 4, "4,3,3,2");
	assert_int_equal(ren(f, "/z/m", "/a/m2/x"), 0); /* into parents it makes */
	const char *r[] = {"/a", "/a/m2", "/a/m2/x", "/z"};
	expect_nlinks(f, r, 4, "4,3,3,3");
	assert_int_equal(del(f, "/a", CM_DEL_RECURSIVE), 0);
	expect_nlinks(f, p + 2, 1, "3");
	expect_nlinks(f, p, 1, "3");
	/* a listing carries them too */
	struct names n = {0};
	assert_int_equal(list_in(f, G, "/", &n), 0);
}

/* Rewrite path's record (parent ino, name) in the layout written before
 * atime and nlink: no ext, no ext mark. */
static void record_to_old_layout(struct fx *f, uint64_t parent, const char *name)
{
	const struct cm_store_dbs *d = cm_store_dbs(f->s);
	uint8_t key[16 + 64] = {0, 0, 0, 0, 0, 0, 0, G};
	for (int k = 0; k < 8; k++)
		key[8 + k] = (uint8_t)(parent >> (56 - 8 * k));
	size_t nl = strlen(name);
	memcpy(key + 16, name, nl);
	MDB_txn *t;
	assert_int_equal(cm_store_txn_begin(f->s, false, &t), 0);
	MDB_val k = {16 + nl, key}, v;
	assert_int_equal(mdb_get(t, d->kv, &k, &v), 0);
	uint8_t old[512];
	assert_true(v.mv_size >= 76 && v.mv_size - 12 <= sizeof(old));
	const uint8_t *b = v.mv_data;
	memcpy(old, b, 64);
	memcpy(old + 64, b + 76, v.mv_size - 76);
	size_t len = v.mv_size - 12;
	cm_store_txn_abort(t);
	assert_true(old[3] & 0x80); /* the ext mark: bit 15 of the flags half */
	old[3] &= 0x7f;
	raw_put(f, d->kv, key, 16 + nl, old, len);
}

static void test_records_from_before_nlink_read_and_count_right(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mkdir_(f, "/old/s1"), 0); /* index 1: /old is ino 1 << 16 */
	assert_int_equal(mkdir_(f, "/old/s2"), 0);
	assert_int_equal(put(f, "/old/f", "v"), 0);
	struct cm_attr before = attr_of(f, "/old");
	assert_int_equal(before.nlink, 4);
	record_to_old_layout(f, 1, "old");
	record_to_old_layout(f, 1ull << 16, "f");
	struct cm_attr a = attr_of(f, "/old");
	assert_int_equal(a.nlink, 4); /* counted: none stored */
	assert_int_equal(a.atime_ns, a.mtime_ns);
	assert_int_equal(a.version, before.version);
	a = attr_of(f, "/old/f");
	assert_int_equal(a.nlink, 1);
	assert_int_equal(a.atime_ns, a.mtime_ns);
	expect_val(f, "/old/f", "v");
	expect_list(f, "/old", "f,s1/,s2/");
	/* the next entry counts it, and stores it */
	assert_int_equal(mkdir_(f, "/old/s3"), 0);
	assert_int_equal(attr_of(f, "/old").nlink, 5);
	assert_int_equal(del(f, "/old/s1", CM_DEL_DIR), 0);
	assert_int_equal(attr_of(f, "/old").nlink, 4);
	record_to_old_layout(f, 1, "old");
	assert_int_equal(ren(f, "/old/s2", "/s2"), 0); /* unknown source parent */
	assert_int_equal(attr_of(f, "/old").nlink, 3);
	assert_int_equal(attr_of(f, "/").nlink, 4);
}

/* A snapshot blob of 12-field records (before atime and nlink) restores,
 * and its directories count their subdirectories. */
static void test_restore_of_records_without_atime_and_nlink(void **state)
{
	struct fx *f = *state;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	const char *paths[] = {"/d", "/d/e", "/d/f"};
	uint32_t modes[] = {040755, 040700, 0100644};
	msgpack_pack_array(&pk, 3);
	for (int k = 0; k < 3; k++) {
		msgpack_pack_array(&pk, 12);
		msgpack_pack_str_with_body(&pk, paths[k], strlen(paths[k]));
		msgpack_pack_uint64(&pk, (uint64_t)(k + 2) << 16);
		msgpack_pack_uint32(&pk, modes[k]);
		msgpack_pack_uint32(&pk, 0);
		msgpack_pack_uint32(&pk, 0);
		msgpack_pack_int64(&pk, 1000 + k); /* mtime */
		msgpack_pack_int64(&pk, 2000);
		msgpack_pack_uint64(&pk, 5);
		msgpack_pack_uint64(&pk, 5);
		msgpack_pack_uint64(&pk, 1);
		msgpack_pack_bin(&pk, 0);
		msgpack_pack_uint32(&pk, 0);
	}
	assert_int_equal(restore(f, G, sb.data, sb.size), 0);
	struct cm_attr a = attr_of(f, "/d");
	assert_int_equal(a.nlink, 3);
	assert_int_equal(a.atime_ns, 1000);
	assert_int_equal(attr_of(f, "/d/e").nlink, 2);
	assert_int_equal(attr_of(f, "/d/f").nlink, 1);
	assert_int_equal(attr_of(f, "/d/f").atime_ns, 1002);
	assert_int_equal(attr_of(f, "/").nlink, 3);
	/* a new snapshot carries them, and a directory of nlink 1 is refused */
	msgpack_sbuffer again;
	snapshot_of(f, G, &again);
	assert_int_equal(restore(f, 9, again.data, again.size), 0);
	struct cm_attr b;
	assert_int_equal(get_in(f, 9, "/d/f", &b, NULL, 0), 0);
	assert_int_equal(b.atime_ns, 1002);
	sb.size = 0;
	msgpack_pack_array(&pk, 1);
	msgpack_pack_array(&pk, 14);
	msgpack_pack_str_with_body(&pk, "/x", 2);
	msgpack_pack_uint64(&pk, 7 << 16);
	msgpack_pack_uint32(&pk, 040755);
	for (int k = 0; k < 2; k++)
		msgpack_pack_uint32(&pk, 0);
	for (int k = 0; k < 2; k++)
		msgpack_pack_int64(&pk, 1);
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint64(&pk, 1);
	msgpack_pack_bin(&pk, 0);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_int64(&pk, 1);
	msgpack_pack_uint32(&pk, 1); /* nlink 1: no directory has it */
	assert_int_equal(restore(f, 9, sb.data, sb.size), -EBADMSG);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&again);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_root_exists_as_directory_before_any_write),
		T(test_put_then_get_returns_value_and_attr),
		T(test_put_overwrite_bumps_version_and_keeps_create_index),
		T(test_put_creates_missing_parents_like_mkdir_p),
		T(test_put_under_a_file_returns_enotdir),
		T(test_put_onto_directory_returns_eisdir),
		T(test_put_create_on_existing_returns_eexist),
		T(test_put_if_version_conflict_returns_ecanceled),
		T(test_put_if_mod_conflict_returns_ecanceled),
		T(test_if_mod_fails_on_a_deleted_and_recreated_key),
		T(test_if_mod_on_rename_and_mkdir_checks_the_target),
		T(test_put_value_too_large_returns_efbig),
		T(test_put_append_appends_to_what_is_there),
		T(test_put_if_created_names_one_incarnation),
		T(test_no_parents_refuses_to_create_them),
		T(test_put_bad_path_returns_einval_or_enametoolong),
		T(test_put_mode_sets_type_and_permissions),
		T(test_put_keep_value_with_set_mode_is_chmod),
		T(test_mkdir_creates_parents_and_existing_returns_eexist),
		T(test_delete_file_and_missing_returns_enoent),
		T(test_delete_directory_needs_a_flag),
		T(test_delete_recursive_removes_the_whole_subtree),
		T(test_delete_if_version_checks_the_version),
		T(test_list_returns_children_only_in_name_order),
		T(test_groups_do_not_see_each_other),
		T(test_rename_file_replaces_target_and_version_never_goes_back),
		T(test_rename_directory_moves_its_subtree),
		T(test_rename_follows_rename_2_rules),
		T(test_rename_onto_itself_changes_nothing),
		T(test_rename_that_makes_a_path_too_long_returns_enametoolong),
		T(test_failed_ops_change_nothing),
		T(test_same_commands_give_same_bytes),
		T(test_apply_garbage_is_an_ebadmsg_result),
		T(test_cmd_encode_decode_round_trip),
		T(test_cmd_decode_rejects_malformed_commands),
		T(test_cmd_if_mod_field_only_with_its_flag),
		T(test_cmd_decode_of_random_bytes_never_crashes),
		T(test_events_record_changes_filtered_by_prefix),
		T(test_events_cover_renames_deletes_and_compaction),
		T(test_snapshot_restore_round_trip_into_another_group),
		T(test_paths_up_to_4096_bytes_work_and_4097_is_enametoolong),
		T(test_deepest_4096_byte_path_survives_snapshot_and_recursive_delete),
		T(test_snapshot_of_empty_group_restores_to_empty),
		T(test_restore_of_garbage_returns_ebadmsg_and_changes_nothing),
		T(test_restore_rejects_trees_that_cannot_be),
		T(test_boundary_on_empty_prefix_reads_as_an_ordinary_directory),
		T(test_boundary_on_existing_path_returns_eexist),
		T(test_boundary_at_root_returns_einval),
		T(test_writes_at_or_below_a_boundary_return_ewrongshard),
		T(test_rename_into_a_boundary_returns_ewrongshard),
		T(test_recursive_delete_above_a_boundary_returns_ebusy_and_deletes_nothing),
		T(test_rename_above_a_boundary_returns_ebusy),
		T(test_snapshot_restore_keeps_boundaries_refusing_writes),
		T(test_restore_rejects_boundaries_that_cannot_be),
		T(test_boundary_mkdir_produces_an_ordinary_mkdir_event),
		T(test_cmd_boundary_flag_only_with_mkdir),
		T(test_top_mkdir_creates_an_ordinary_directory_once),
		T(test_rmdir_of_an_empty_top_returns_ebusy),
		T(test_removing_moving_or_replacing_a_top_returns_ebusy),
		T(test_top_mkdir_marks_an_existing_directory_silently),
		T(test_snapshot_restore_keeps_tops),
		T(test_restore_rejects_tops_that_cannot_be),
		T(test_cmd_top_flag_only_with_mkdir_and_never_with_boundary),
		T(test_corrupt_records_give_eio_never_a_crash),
		cmocka_unit_test(test_full_store_makes_apply_return_enospc),
		T(test_set_times_sets_exactly_what_it_says),
		cmocka_unit_test(test_cmd_times_fields_only_with_their_flag),
		T(test_entries_move_their_parents_times),
		T(test_directory_nlink_is_two_plus_subdirectories),
		T(test_records_from_before_nlink_read_and_count_right),
		T(test_restore_of_records_without_atime_and_nlink),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
