/* fuzz_kv_cmd.c: libFuzzer target: a log entry's command bytes through cm_kv_cmd_decode()
 * and cm_kv_apply(). A follower receives these from the network in APPENDs. */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "confman/error.h"
#include "tests/fuzz/fuzz_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decoding what we encode gives the same command back. */
static void check_roundtrip(const struct cm_kv_cmd *c)
{
	struct cm_req req = {.op = c->op, .flags = c->flags, .path = c->path, .path2 = c->path2,
			     .value = c->value, .version = c->version, .mode = c->mode,
			     .uid = c->uid, .gid = c->gid, .mod_index = c->mod_index};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	int rv = cm_kv_cmd_encode(&sb, &req, c->stamp_ns, c->max_value);
	assert(rv == 0);
	struct cm_kv_cmd d;
	msgpack_unpacked up;
	rv = cm_kv_cmd_decode(sb.data, (uint32_t)sb.size, &up, &d);
	assert(rv == 0);
	assert(d.op == c->op && d.flags == c->flags && d.version == c->version);
	assert(d.mod_index == c->mod_index);
	assert(d.mode == c->mode && d.stamp_ns == c->stamp_ns && d.max_value == c->max_value);
	assert(d.path.len == c->path.len && d.value.len == c->value.len);
	assert(c->value.len == 0 || memcmp(d.value.p, c->value.p, c->value.len) == 0);
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
}

/* What a successful change promises a later read in the same transaction. */
static void check_effect(struct cm_store *s, MDB_txn *txn, const struct cm_kv_cmd *c)
{
	struct cm_attr a;
	struct cm_bytes v;
	int rv;
	switch (c->op) {
	case CM_OP_PUT:
		rv = cm_kv_get(s, txn, FUZZ_GROUP, c->path, &a, &v);
		assert(rv == 0);
		if (!(c->flags & CM_PUT_KEEP_VALUE) && !S_ISDIR(a.mode)) {
			assert(v.len == c->value.len);
			assert(v.len == 0 || memcmp(v.p, c->value.p, v.len) == 0);
		}
		break;
	case CM_OP_MKDIR:
		rv = cm_kv_get(s, txn, FUZZ_GROUP, c->path, &a, &v);
		assert(rv == 0 && S_ISDIR(a.mode));
		break;
	case CM_OP_DELETE:
		assert(cm_kv_get(s, txn, FUZZ_GROUP, c->path, &a, &v) == -ENOENT);
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > UINT32_MAX)
		return 0;
	struct cm_store *s = fuzz_store_get();
	struct cm_kv_cmd c;
	msgpack_unpacked up;
	int drv = cm_kv_cmd_decode(data, (uint32_t)size, &up, &c);
	assert(drv == 0 || drv == -EBADMSG);
	msgpack_unpacked_destroy(&up);
	if (drv == 0)
		check_roundtrip(&c);
	MDB_txn *txn;
	int rv = cm_store_txn_begin(s, true, &txn);
	assert(rv == 0);
	struct cm_kv_result res;
	rv = cm_kv_apply(s, txn, FUZZ_GROUP, FUZZ_INDEX, data, (uint32_t)size, &res);
	assert(rv == 0); /* a 64 MiB map holds any one command of a fuzzer's size */
	assert(drv == 0 || res.err == -EBADMSG);
	if (res.err == 0 && res.event_kind != 0)
		check_effect(s, txn, &c);
	cm_store_txn_abort(txn); /* every input starts from the seed tree */
	return 0;
}
