/* test_codec.c: the wire codec (common/codec*.c): round trips, hostile input, framing. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/codec.h"

#define B(s) ((struct cm_bytes){(s), (uint32_t)strlen(s)})

/* ---- helpers ---- */

/* Strip the 4-byte length off the one frame in sb, checking it. */
static const char *frame_body(const msgpack_sbuffer *sb, size_t *len)
{
	assert_true(sb->size > CM_FRAME_HDR);
	const unsigned char *p = (const unsigned char *)sb->data;
	size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
	assert_int_equal(n, sb->size - CM_FRAME_HDR);
	*len = n;
	return sb->data + CM_FRAME_HDR;
}

/* Decode the frame in sb into m (the caller frees m and sb). */
static void decode_sb(const msgpack_sbuffer *sb, struct cm_msg *m)
{
	size_t len;
	const char *body = frame_body(sb, &len);
	assert_int_equal(cm_codec_decode(body, len, m), 0);
}

static void assert_bytes(struct cm_bytes got, const char *want)
{
	assert_int_equal(got.len, strlen(want));
	if (got.len)
		assert_memory_equal(got.p, want, got.len);
}

static struct cm_attr sample_attr(uint64_t seed)
{
	return (struct cm_attr){
		.mode = 0100644, .uid = 1000 + (uint32_t)seed, .gid = 100,
		.mtime_ns = -5 - (int64_t)seed, .ctime_ns = 1700000000123456789ll,
		.create_index = 3, .mod_index = 40 + seed, .version = 7 + seed, .size = 5,
		.atime_ns = -9 - (int64_t)seed, .nlink = 2 + (uint32_t)seed,
	};
}

static void assert_attr(const struct cm_attr *a, const struct cm_attr *b)
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

/* Every prefix of a valid body must be rejected, never crash. */
static void assert_truncations_fail(const msgpack_sbuffer *sb)
{
	size_t len;
	const char *body = frame_body(sb, &len);
	for (size_t k = 0; k < len; k++) {
		struct cm_msg m;
		char *copy = malloc(k ? k : 1); /* exact size: ASan sees overreads */
		memcpy(copy, body, k);
		assert_int_equal(cm_codec_decode(copy, k, &m), -EBADMSG);
		free(copy);
	}
}

/* ---- round trips ---- */

static void test_hello_roundtrip(void **state)
{
	(void)state;
	uint8_t types[] = {CM_FR_HELLO, CM_FR_HELLO_OK};
	for (int k = 0; k < 2; k++) {
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		struct cm_hello h = {.version = CM_PROTO_VERSION, .cluster = B("prod-eu"),
				     .node_id = (uint64_t)k * 7};
		assert_int_equal(cm_codec_hello(&sb, types[k], &h), 0);
		struct cm_msg m;
		decode_sb(&sb, &m);
		assert_int_equal(m.type, types[k]);
		assert_int_equal(m.hello.version, CM_PROTO_VERSION);
		assert_bytes(m.hello.cluster, "prod-eu");
		assert_int_equal(m.hello.node_id, (uint64_t)k * 7);
		assert_truncations_fail(&sb);
		cm_codec_free(&m);
		msgpack_sbuffer_destroy(&sb);
	}
}

static void test_req_roundtrip_every_field(void **state)
{
	(void)state;
	for (uint8_t op = CM_OP_GET; op < CM_OP_COUNT; op++) {
		struct cm_req r = {
			.id = UINT64_MAX - op, .op = op, .group = 9, .token = 123456789012ull,
			.consistency = CM_READ_FOLLOWER, .flags = CM_PUT_IF_VERSION | CM_SET_MODE,
			.path = B("/etc/app/conf"), .path2 = B("/etc/app/conf.new"),
			.value = {"\0bin\xff", 5}, .version = 42, .mode = 0100600, .uid = 7,
			.gid = 8, .from_index = 99,
		};
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		assert_int_equal(cm_codec_req(&sb, &r), 0);
		struct cm_msg m;
		decode_sb(&sb, &m);
		assert_int_equal(m.type, CM_FR_REQ);
		assert_int_equal(m.req.id, r.id);
		assert_int_equal(m.req.op, op);
		assert_int_equal(m.req.group, 9);
		assert_int_equal(m.req.token, r.token);
		assert_int_equal(m.req.consistency, CM_READ_FOLLOWER);
		assert_int_equal(m.req.flags, r.flags);
		assert_bytes(m.req.path, "/etc/app/conf");
		assert_bytes(m.req.path2, "/etc/app/conf.new");
		assert_int_equal(m.req.value.len, 5);
		assert_memory_equal(m.req.value.p, "\0bin\xff", 5);
		assert_int_equal(m.req.version, 42);
		assert_int_equal(m.req.mode, 0100600);
		assert_int_equal(m.req.uid, 7);
		assert_int_equal(m.req.gid, 8);
		assert_int_equal(m.req.from_index, 99);
		if (op == CM_OP_PUT)
			assert_truncations_fail(&sb);
		cm_codec_free(&m);
		msgpack_sbuffer_destroy(&sb);
	}
}

static void resp_roundtrip(const struct cm_resp *r, struct cm_msg *m, msgpack_sbuffer *sb)
{
	msgpack_sbuffer_init(sb);
	assert_int_equal(cm_codec_resp(sb, r), 0);
	decode_sb(sb, m);
	assert_int_equal(m->type, CM_FR_RESP);
	assert_int_equal(m->resp.id, r->id);
	assert_int_equal(m->resp.op, r->op);
	assert_int_equal(m->resp.err, r->err);
	assert_int_equal(m->resp.group, r->group);
	assert_int_equal(m->resp.token, r->token);
	assert_int_equal(m->resp.leader_id, r->leader_id);
}

static void test_resp_get_roundtrip(void **state)
{
	(void)state;
	struct cm_resp r = {.id = 5, .op = CM_OP_GET, .group = 2, .token = 77,
			    .has_attr = true, .attr = sample_attr(1), .value = B("hello")};
	struct cm_msg m;
	msgpack_sbuffer sb;
	resp_roundtrip(&r, &m, &sb);
	assert_true(m.resp.has_attr);
	assert_attr(&m.resp.attr, &r.attr);
	assert_bytes(m.resp.value, "hello");
	assert_truncations_fail(&sb);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

static void test_resp_list_roundtrip(void **state)
{
	(void)state;
	struct cm_dirent ents[3] = {
		{B("a"), sample_attr(1)}, {B("bb"), sample_attr(2)}, {B("dir"), sample_attr(3)},
	};
	ents[2].attr.mode = 040755;
	struct cm_resp r = {.id = 6, .op = CM_OP_LIST, .group = 1, .token = 3, .ents = ents,
			    .n_ents = 3};
	struct cm_msg m;
	msgpack_sbuffer sb;
	resp_roundtrip(&r, &m, &sb);
	assert_int_equal(m.resp.n_ents, 3);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(m.resp.ents[k].name.len, ents[k].name.len);
		assert_memory_equal(m.resp.ents[k].name.p, ents[k].name.p, ents[k].name.len);
		assert_attr(&m.resp.ents[k].attr, &ents[k].attr);
	}
	assert_truncations_fail(&sb);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
	/* An empty directory. */
	r.n_ents = 0;
	resp_roundtrip(&r, &m, &sb);
	assert_int_equal(m.resp.n_ents, 0);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

static void test_resp_status_roundtrip(void **state)
{
	(void)state;
	struct cm_group_status gs[2] = {
		{.group = 1, .prefix = B("/"), .role = 4, .term = 3, .leader = 1, .commit = 10,
		 .applied = 9, .last = 11, .snap_index = 2, .n_members = 3, .members = {1, 2, 3},
		 .kinds = {1, 1, 2}, .match = {11, 10, 3}, .conf_pending = true},
		{.group = 2, .prefix = B("/etc"), .role = 1, .term = 5, .leader = 2, .commit = 8,
		 .applied = 8, .last = 8, .snap_index = 0, .n_members = 12,
		 .members = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
	};
	struct cm_resp r = {.id = 7, .op = CM_OP_STATUS, .node_id = 3, .groups = gs,
			    .n_groups = 2};
	struct cm_msg m;
	msgpack_sbuffer sb;
	resp_roundtrip(&r, &m, &sb);
	assert_false(m.resp.has_health); /* an older node's STATUS */
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
	struct cm_node_health h = {
		.ready = false, .reason = "group 2 has no leader", .space = CM_SPACE_LOW,
		.store_permille = 917, .fsyncs = 1234, .fsync_p50_us = 250,
		.fsync_p99_us = UINT64_MAX, .requests = 99, .failed = 7, .n_peers = 2,
		.peers = {{.id = 1, .up = true, .silence_ms = 12, .frames_out = 5, .bytes_out = 500,
			   .frames_in = 6, .bytes_in = 600},
			  {.id = 2, .up = false, .silence_ms = UINT64_MAX}},
	};
	r.health = &h;
	r.has_health = true;
	resp_roundtrip(&r, &m, &sb);
	assert_true(m.resp.has_health);
	const struct cm_node_health *d = m.resp.health;
	assert_false(d->ready);
	assert_string_equal(d->reason, "group 2 has no leader");
	assert_int_equal(d->space, CM_SPACE_LOW);
	assert_int_equal(d->store_permille, 917);
	assert_int_equal(d->fsyncs, 1234);
	assert_int_equal(d->fsync_p50_us, 250);
	assert_true(d->fsync_p99_us == UINT64_MAX);
	assert_int_equal(d->requests, 99);
	assert_int_equal(d->failed, 7);
	assert_int_equal(d->n_peers, 2);
	const struct cm_peer_health *p0 = &d->peers[0];
	assert_true(p0->id == 1 && p0->up && p0->silence_ms == 12 && p0->frames_out == 5 &&
		    p0->bytes_out == 500 && p0->frames_in == 6 && p0->bytes_in == 600);
	assert_true(d->peers[1].silence_ms == UINT64_MAX && !d->peers[1].up);
	assert_int_equal(m.resp.node_id, 3);
	assert_int_equal(m.resp.n_groups, 2);
	for (int k = 0; k < 2; k++) {
		const struct cm_group_status *a = &m.resp.groups[k], *b = &gs[k];
		assert_int_equal(a->group, b->group);
		assert_int_equal(a->prefix.len, b->prefix.len);
		assert_memory_equal(a->prefix.p, b->prefix.p, b->prefix.len);
		assert_int_equal(a->role, b->role);
		assert_int_equal(a->term, b->term);
		assert_int_equal(a->leader, b->leader);
		assert_int_equal(a->commit, b->commit);
		assert_int_equal(a->applied, b->applied);
		assert_int_equal(a->last, b->last);
		assert_int_equal(a->snap_index, b->snap_index);
		assert_int_equal(a->n_members, b->n_members);
		assert_memory_equal(a->members, b->members, b->n_members * sizeof(uint64_t));
		assert_memory_equal(a->kinds, b->kinds, b->n_members);
		assert_memory_equal(a->match, b->match, b->n_members * sizeof(uint64_t));
		assert_int_equal(a->conf_pending, b->conf_pending);
	}
	assert_truncations_fail(&sb);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

static void test_resp_shards_roundtrip(void **state)
{
	(void)state;
	struct cm_shard sh[3] = {
		{.group = 1, .prefix = B("/"), .n_replicas = 3, .replicas = {1, 2, 3}},
		{.group = 7, .prefix = B("/etc/app"), .n_replicas = 12,
		 .replicas = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, UINT64_MAX}},
		{.group = CM_META_GROUP, .prefix = B(""), .n_replicas = 0},
	};
	struct cm_node_addr nodes[2] = {{.id = 1, .addr = B("10.0.0.1:7001"), .http = B("10.0.0.1:8001"),
					 .state = CM_NODE_ACTIVE},
					{.id = UINT64_MAX, .addr = B("[::1]:7002"), .state = CM_NODE_REMOVED}};
	struct cm_resp r = {.id = 8, .op = CM_OP_SHARDS, .group = CM_META_GROUP, .token = 4,
			    .epoch = 42, .shards = sh, .n_shards = 3, .nodes = nodes, .n_nodes = 2};
	struct cm_msg m;
	msgpack_sbuffer sb;
	resp_roundtrip(&r, &m, &sb);
	assert_int_equal(m.resp.epoch, 42);
	assert_int_equal(m.resp.n_shards, 3);
	for (int k = 0; k < 3; k++) {
		const struct cm_shard *a = &m.resp.shards[k], *b = &sh[k];
		assert_int_equal(a->group, b->group);
		assert_int_equal(a->prefix.len, b->prefix.len);
		if (b->prefix.len)
			assert_memory_equal(a->prefix.p, b->prefix.p, b->prefix.len);
		assert_int_equal(a->n_replicas, b->n_replicas);
		if (b->n_replicas)
			assert_memory_equal(a->replicas, b->replicas,
					    b->n_replicas * sizeof(uint64_t));
	}
	assert_int_equal(m.resp.n_nodes, 2);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(m.resp.nodes[k].id, nodes[k].id);
		assert_bytes(m.resp.nodes[k].addr, k ? "[::1]:7002" : "10.0.0.1:7001");
		assert_bytes(m.resp.nodes[k].http, k ? "" : "10.0.0.1:8001");
		assert_int_equal(m.resp.nodes[k].state, nodes[k].state);
	}
	assert_truncations_fail(&sb);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
	/* An empty registry, and a refusal (its epoch in token, no body). */
	struct cm_resp e = {.id = 9, .op = CM_OP_SHARDS};
	resp_roundtrip(&e, &m, &sb);
	assert_int_equal(m.resp.epoch, 0);
	assert_int_equal(m.resp.n_shards, 0);
	assert_null(m.resp.shards);
	assert_int_equal(m.resp.n_nodes, 0);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
	struct cm_resp w = {.id = 10, .op = CM_OP_GET, .err = CM_EWRONGSHARD, .group = 1,
			    .token = 43};
	resp_roundtrip(&w, &m, &sb);
	assert_int_equal(m.resp.err, CM_EWRONGSHARD);
	assert_int_equal(m.resp.token, 43);
	assert_int_equal(m.resp.n_shards, 0);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

static void test_resp_write_ops_roundtrip(void **state)
{
	(void)state;
	uint8_t ops[] = {CM_OP_PUT, CM_OP_MKDIR, CM_OP_RENAME};
	for (int k = 0; k < 3; k++) {
		struct cm_resp r = {.id = 8, .op = ops[k], .group = 4, .token = 100 + (uint64_t)k,
				    .has_attr = true, .attr = sample_attr((uint64_t)k)};
		struct cm_msg m;
		msgpack_sbuffer sb;
		resp_roundtrip(&r, &m, &sb);
		assert_true(m.resp.has_attr);
		assert_attr(&m.resp.attr, &r.attr);
		cm_codec_free(&m);
		msgpack_sbuffer_destroy(&sb);
	}
	/* DELETE and WATCH carry no body. */
	uint8_t nil_ops[] = {CM_OP_DELETE, CM_OP_WATCH, CM_OP_UNWATCH};
	for (int k = 0; k < 3; k++) {
		struct cm_resp r = {.id = 9, .op = nil_ops[k], .group = 4, .token = 5};
		struct cm_msg m;
		msgpack_sbuffer sb;
		resp_roundtrip(&r, &m, &sb);
		assert_false(m.resp.has_attr);
		cm_codec_free(&m);
		msgpack_sbuffer_destroy(&sb);
	}
}

static void test_resp_lease_and_lock_have_gets_shape(void **state)
{
	(void)state;
	/* proto.h: CM_OP_LEASE and CM_OP_LOCK answer [attr, value] as GET
	 * does; numbers in attr, lines in value. */
	uint8_t ops[] = {CM_OP_LEASE, CM_OP_LOCK};
	const char *vals[] = {"123 10000 9500 2\n", "123 0 77 x\n"};
	for (int k = 0; k < 2; k++) {
		struct cm_attr a = {.version = (uint64_t)INT64_MAX, .mtime_ns = 10000,
				    .atime_ns = 9500, .size = 2, .mod_index = 77};
		struct cm_resp r = {.id = 3, .op = ops[k], .group = 1ull << 32, .token = 9,
				    .has_attr = true, .attr = a, .value = B(vals[k])};
		struct cm_msg m;
		msgpack_sbuffer sb;
		resp_roundtrip(&r, &m, &sb);
		assert_true(m.resp.has_attr);
		assert_attr(&m.resp.attr, &r.attr);
		assert_bytes(m.resp.value, vals[k]);
		assert_truncations_fail(&sb);
		cm_codec_free(&m);
		msgpack_sbuffer_destroy(&sb);
	}
	/* A request: the lease id in version, the TTL or owner in from_index,
	 * the op in flags; no SET_TIMES element whatever the flags. */
	struct cm_req q = {.id = 4, .op = CM_OP_LOCK, .flags = CM_LOCK_ACQUIRE | CM_LOCK_WAIT |
							      CM_LOCK_SHARED,
			   .path = B("/locks/a"), .version = (uint64_t)INT64_MAX,
			   .from_index = UINT64_MAX};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_req(&sb, &q), 0);
	struct cm_msg m;
	decode_sb(&sb, &m);
	assert_int_equal(m.req.op, CM_OP_LOCK);
	assert_int_equal(m.req.flags, q.flags);
	assert_int_equal(m.req.version, q.version);
	assert_int_equal(m.req.from_index, UINT64_MAX);
	assert_bytes(m.req.path, "/locks/a");
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

static void test_resp_error_carries_leader_hint(void **state)
{
	(void)state;
	struct cm_resp r = {.id = 10, .op = CM_OP_PUT, .err = CM_ENOTLEADER, .group = 2,
			    .token = 50, .leader_id = 3, .leader_addr = B("10.0.0.3:7001")};
	struct cm_msg m;
	msgpack_sbuffer sb;
	resp_roundtrip(&r, &m, &sb);
	assert_int_equal(m.resp.err, CM_ENOTLEADER);
	assert_bytes(m.resp.leader_addr, "10.0.0.3:7001");
	assert_false(m.resp.has_attr);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
	r.err = -ENOENT; /* errno values travel negative */
	r.leader_addr = B("");
	resp_roundtrip(&r, &m, &sb);
	assert_int_equal(m.resp.err, -ENOENT);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

static void test_beats_and_ping_roundtrip(void **state)
{
	(void)state;
	struct cm_beat v[3] = {
		{.group = 1, .type = RAFT_MSG_HEARTBEAT, .term = 7, .commit = 99, .ctx = 3},
		{.group = 4294967295u, .type = RAFT_MSG_HEARTBEAT, .flags = 2, .term = 2, .commit = 5},
		{.group = (1ull << 32) + 17, .type = RAFT_MSG_HEARTBEAT_RESP, .term = 9, .ctx = 11},
	};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_beats(&sb, 2, 3, v, 3), 0);
	size_t len;
	const char *body = frame_body(&sb, &len);
	struct cm_msg m;
	assert_int_equal(cm_codec_decode(body, len, &m), 0);
	assert_int_equal(m.type, CM_FR_BEATS);
	assert_int_equal(m.beats_from, 2);
	assert_int_equal(m.beats_to, 3);
	assert_int_equal(m.n_beats, 3);
	assert_memory_equal(m.beats, v, sizeof(v));
	struct raft_msg rm;
	cm_codec_beat_msg(&m.beats[1], 2, 3, &rm);
	assert_true(rm.force);
	assert_int_equal(rm.type, RAFT_MSG_HEARTBEAT);
	assert_int_equal(rm.commit, 5);
	cm_codec_free(&m);
	/* A beat of another message type is not a beat. */
	msgpack_sbuffer_clear(&sb);
	v[0].type = RAFT_MSG_APPEND;
	assert_int_equal(cm_codec_beats(&sb, 2, 3, v, 1), 0);
	body = frame_body(&sb, &len);
	assert_int_equal(cm_codec_decode(body, len, &m), -EBADMSG);
	msgpack_sbuffer_clear(&sb);
	assert_int_equal(cm_codec_ping(&sb, 5, CM_SPACE_LOW), 0);
	body = frame_body(&sb, &len);
	assert_int_equal(cm_codec_decode(body, len, &m), 0);
	assert_int_equal(m.type, CM_FR_PING);
	assert_int_equal(m.ping_node, 5);
	assert_int_equal(m.ping_space, CM_SPACE_LOW);
	cm_codec_free(&m);
	/* An older peer's PING has no level: it reports nothing of its store. */
	static const uint8_t old_ping[] = {0x92, 0x08, 0x05};
	assert_int_equal(cm_codec_decode(old_ping, sizeof(old_ping), &m), 0);
	assert_int_equal(m.ping_node, 5);
	assert_int_equal(m.ping_space, CM_SPACE_OK);
	cm_codec_free(&m);
	static const uint8_t bad_level[] = {0x93, 0x08, 0x05, 0x03};
	assert_int_equal(cm_codec_decode(bad_level, sizeof(bad_level), &m), -EBADMSG);
	static const uint8_t no_node[] = {0x91, 0x08};
	assert_int_equal(cm_codec_decode(no_node, sizeof(no_node), &m), -EBADMSG);
	msgpack_sbuffer_destroy(&sb);
}

static void test_event_roundtrip(void **state)
{
	(void)state;
	for (int with_attr = 0; with_attr < 2; with_attr++) {
		struct cm_event e = {.watch_id = 11, .group = 3, .index = 1234,
				     .kind = CM_EV_RENAME, .path = B("/a/x"), .path2 = B("/a/y"),
				     .has_attr = with_attr, .attr = sample_attr(9)};
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		assert_int_equal(cm_codec_event(&sb, &e), 0);
		struct cm_msg m;
		decode_sb(&sb, &m);
		assert_int_equal(m.type, CM_FR_EVENT);
		assert_int_equal(m.event.watch_id, 11);
		assert_int_equal(m.event.group, 3);
		assert_int_equal(m.event.index, 1234);
		assert_int_equal(m.event.kind, CM_EV_RENAME);
		assert_bytes(m.event.path, "/a/x");
		assert_bytes(m.event.path2, "/a/y");
		assert_int_equal(m.event.has_attr, with_attr);
		if (with_attr)
			assert_attr(&m.event.attr, &e.attr);
		assert_truncations_fail(&sb);
		cm_codec_free(&m);
		msgpack_sbuffer_destroy(&sb);
	}
}

/* PROGRESS travels; STALE and LIVE are the library's own, never on the wire;
 * an unknown kind is a protocol error. */
static void test_event_kinds_bounded(void **state)
{
	(void)state;
	const uint8_t kinds[] = {0, CM_EV_PROGRESS, CM_EV_STALE, CM_EV_LIVE, 200};
	const int want[] = {-EBADMSG, 0, -EBADMSG, -EBADMSG, -EBADMSG};
	for (size_t k = 0; k < sizeof(kinds); k++) {
		struct cm_event e = {.watch_id = 1, .group = 2, .index = 3, .kind = kinds[k],
				     .path = B("/p")};
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		assert_int_equal(cm_codec_event(&sb, &e), 0);
		struct cm_msg m;
		int rv = cm_codec_decode(sb.data + CM_FRAME_HDR, sb.size - CM_FRAME_HDR, &m);
		assert_int_equal(rv, want[k]);
		if (rv == 0) {
			assert_int_equal(m.event.kind, CM_EV_PROGRESS);
			assert_int_equal(m.event.index, 3);
			cm_codec_free(&m);
		}
		msgpack_sbuffer_destroy(&sb);
	}
}

/* "/yyy..." of exactly len bytes (a '/' every 200), malloc'd, NUL-terminated. */
static char *long_path(uint32_t len)
{
	char *p = malloc(len + 1);
	assert_non_null(p);
	for (uint32_t k = 0; k < len; k++)
		p[k] = k % 200 == 0 ? '/' : 'y';
	p[len] = 0;
	return p;
}

/* PATH_MAX is 4096 (literal: the kernel's): the largest request there is,
 * a rename-sized pair of 4096-byte paths with the largest value any node
 * may allow, still fits a frame and the framer every connection uses. */
static void test_req_with_two_4096_byte_paths_and_largest_value_fits_a_frame(void **state)
{
	(void)state;
	char *path = long_path(4096), *path2 = long_path(4096);
	path2[1] = 'z';
	char *value = calloc(1, CM_VALUE_MAX_LIMIT);
	assert_non_null(value);
	struct cm_req r = {.id = 1, .op = CM_OP_PUT, .flags = CM_SET_MODE | CM_PUT_IF_MOD,
			   .path = B(path), .path2 = B(path2),
			   .value = {value, CM_VALUE_MAX_LIMIT}, .mod_index = UINT64_MAX};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_req(&sb, &r), 0);
	assert_true(sb.size - CM_FRAME_HDR <= CM_FRAME_MAX);
	struct cm_framer f;
	cm_framer_init(&f, CM_FRAME_MAX);
	assert_int_equal(cm_framer_feed(&f, sb.data, sb.size), 0);
	const char *body;
	size_t len;
	assert_int_equal(cm_framer_next(&f, &body, &len), 1);
	struct cm_msg m;
	assert_int_equal(cm_codec_decode(body, len, &m), 0);
	assert_int_equal(m.req.path.len, 4096);
	assert_memory_equal(m.req.path.p, path, 4096);
	assert_int_equal(m.req.path2.len, 4096);
	assert_memory_equal(m.req.path2.p, path2, 4096);
	assert_int_equal(m.req.value.len, CM_VALUE_MAX_LIMIT);
	cm_codec_free(&m);
	cm_framer_free(&f);
	msgpack_sbuffer_destroy(&sb);
	free(value);
	free(path);
	free(path2);
}

/* Events carry paths of up to 4096 bytes (a rename's two); a longer one
 * is a protocol error, as before at 1024. */
static void test_event_paths_bounded_at_4096_bytes(void **state)
{
	(void)state;
	const uint32_t lens[] = {4095, 4096, 4097};
	const int want[] = {0, 0, -EBADMSG};
	for (size_t k = 0; k < 3; k++)
		for (int which = 0; which < 2; which++) {
			char *lp = long_path(lens[k]);
			struct cm_event e = {.watch_id = 1, .group = 2, .index = 3,
					     .kind = CM_EV_RENAME, .path = B("/short"),
					     .path2 = B("/other")};
			if (which == 0)
				e.path = B(lp);
			else
				e.path2 = B(lp);
			msgpack_sbuffer sb;
			msgpack_sbuffer_init(&sb);
			assert_int_equal(cm_codec_event(&sb, &e), 0);
			struct cm_msg m;
			int rv = cm_codec_decode(sb.data + CM_FRAME_HDR, sb.size - CM_FRAME_HDR, &m);
			if (rv != want[k])
				fail_msg("event path%s of %u bytes: %d, want %d", which ? "2" : "",
					 lens[k], rv, want[k]);
			if (rv == 0) {
				struct cm_bytes got = which ? m.event.path2 : m.event.path;
				assert_int_equal(got.len, lens[k]);
				assert_memory_equal(got.p, lp, lens[k]);
				cm_codec_free(&m);
			}
			msgpack_sbuffer_destroy(&sb);
			free(lp);
		}
}

static void test_error_roundtrip(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_error(&sb, CM_EUNKNOWNPEER, "wrong cluster id"), 0);
	struct cm_msg m;
	decode_sb(&sb, &m);
	assert_int_equal(m.type, CM_FR_ERROR);
	assert_int_equal(m.error.err, CM_EUNKNOWNPEER);
	assert_bytes(m.error.message, "wrong cluster id");
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
	/* A NULL message is an empty string. */
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_error(&sb, -EPROTO, NULL), 0);
	decode_sb(&sb, &m);
	assert_int_equal(m.error.err, -EPROTO);
	assert_int_equal(m.error.message.len, 0);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

static void assert_raft_header(const struct raft_msg *a, const struct raft_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->reject, b->reject);
	assert_int_equal(a->force, b->force);
	assert_int_equal(a->last, b->last);
	assert_int_equal(a->from, b->from);
	assert_int_equal(a->to, b->to);
	assert_int_equal(a->term, b->term);
	assert_int_equal(a->index, b->index);
	assert_int_equal(a->log_term, b->log_term);
	assert_int_equal(a->commit, b->commit);
	assert_int_equal(a->hint, b->hint);
	assert_int_equal(a->ctx, b->ctx);
	assert_int_equal(a->offset, b->offset);
}

static void test_raft_append_with_entries_roundtrip(void **state)
{
	(void)state;
	struct raft_entry ents[3] = {
		{.term = 2, .index = 10, .type = RAFT_ENTRY_NORMAL, .len = 3, .data = "abc"},
		{.term = 2, .index = 11, .type = RAFT_ENTRY_NOOP, .len = 0, .data = NULL},
		{.term = 3, .index = 12, .type = RAFT_ENTRY_NORMAL, .len = 1, .data = "z"},
	};
	struct raft_msg r = {.type = RAFT_MSG_APPEND, .reject = true, .force = false, .last = true,
			     .from = 1, .to = 2, .term = 3, .index = 9, .log_term = 2,
			     .commit = 8, .hint = 4, .ctx = 77, .n_entries = 3, .entries = ents};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_raft(&sb, 42, &r), 0);
	struct cm_msg m;
	decode_sb(&sb, &m);
	assert_int_equal(m.type, CM_FR_RAFT);
	assert_int_equal(m.group, 42);
	assert_raft_header(&m.raft, &r);
	assert_int_equal(m.raft.n_entries, 3);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(m.raft.entries[k].term, ents[k].term);
		assert_int_equal(m.raft.entries[k].index, ents[k].index);
		assert_int_equal(m.raft.entries[k].type, ents[k].type);
		assert_int_equal(m.raft.entries[k].len, ents[k].len);
		if (ents[k].len)
			assert_memory_equal(m.raft.entries[k].data, ents[k].data, ents[k].len);
	}
	assert_truncations_fail(&sb);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

static void test_raft_snap_chunk_roundtrip(void **state)
{
	(void)state;
	struct raft_msg r = {.type = RAFT_MSG_SNAP, .force = true, .last = true, .from = 1,
			     .to = 3, .term = 7, .offset = 65536, .len = 6, .data = "chunk!"};
	r.snap = (struct raft_snap_meta){.index = 500, .term = 6, .size = 65542};
	r.snap.conf.n = 3;
	for (uint32_t k = 0; k < 3; k++) {
		r.snap.conf.ids[k] = k + 1;
		r.snap.conf.kinds[k] = k == 2 ? RAFT_LEARNER : RAFT_VOTER;
	}
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_raft(&sb, 5, &r), 0);
	struct cm_msg m;
	decode_sb(&sb, &m);
	assert_int_equal(m.group, 5);
	assert_raft_header(&m.raft, &r);
	assert_int_equal(m.raft.snap.index, 500);
	assert_int_equal(m.raft.snap.term, 6);
	assert_int_equal(m.raft.snap.size, 65542);
	assert_int_equal(m.raft.snap.conf.n, 3);
	for (uint32_t k = 0; k < 3; k++) {
		assert_int_equal(raft_conf_kind(&m.raft.snap.conf, k + 1),
				 k == 2 ? RAFT_LEARNER : RAFT_VOTER);
	}
	assert_int_equal(m.raft.len, 6);
	assert_memory_equal(m.raft.data, "chunk!", 6);
	assert_truncations_fail(&sb);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

static void test_encode_over_frame_max_is_emsgsize_and_undone(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	struct cm_hello h = {.version = 1, .cluster = B("c")};
	assert_int_equal(cm_codec_hello(&sb, CM_FR_HELLO, &h), 0);
	size_t before = sb.size;
	char *big = calloc(1, CM_FRAME_MAX + 1);
	assert_non_null(big);
	struct cm_req r = {.id = 1, .op = CM_OP_PUT, .path = B("/big"),
			   .value = {big, CM_FRAME_MAX + 1}};
	assert_int_equal(cm_codec_req(&sb, &r), -EMSGSIZE);
	assert_int_equal(sb.size, before); /* the earlier frame is intact */
	free(big);
	msgpack_sbuffer_destroy(&sb);
}

/* ---- hostile input ---- */

static int decode_raw(const void *p, size_t n)
{
	struct cm_msg m;
	int rv = cm_codec_decode(p, n, &m);
	if (rv == 0)
		cm_codec_free(&m);
	return rv;
}

static void test_huge_declared_array_fails_fast(void **state)
{
	(void)state;
	/* array32 declaring 2^31 elements, then nothing: 5 bytes. */
	static const unsigned char arr[] = {0xdd, 0x80, 0x00, 0x00, 0x00};
	assert_int_equal(decode_raw(arr, sizeof(arr)), -EBADMSG);
	/* The same count inside a RESP LIST body, after valid fields. */
	static const unsigned char list[] = {0x99, 0x05, 0x01, 0x02, 0x00, 0x01, 0x01, 0x00,
					     0xa0, 0xdd, 0x80, 0x00, 0x00, 0x00};
	assert_int_equal(decode_raw(list, sizeof(list)), -EBADMSG);
	/* map32, bin32 and str32 lengths of 2^31 too. */
	static const unsigned char map[] = {0xdf, 0x80, 0x00, 0x00, 0x00};
	static const unsigned char bin[] = {0x92, 0x07, 0xc6, 0x80, 0x00, 0x00, 0x00};
	static const unsigned char str[] = {0x92, 0x07, 0xdb, 0x80, 0x00, 0x00, 0x00};
	assert_int_equal(decode_raw(map, sizeof(map)), -EBADMSG);
	assert_int_equal(decode_raw(bin, sizeof(bin)), -EBADMSG);
	assert_int_equal(decode_raw(str, sizeof(str)), -EBADMSG);
}

/* Pack a whole body with a callback into sb; returns it for decoding. */
static int decode_packed(void (*pack)(msgpack_packer *pk))
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack(&pk);
	int rv = decode_raw(sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	return rv;
}

static void pack_hello_str_version(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint8(pk, CM_FR_HELLO);
	msgpack_pack_str_with_body(pk, "1", 1); /* version must be an integer */
	msgpack_pack_str_with_body(pk, "c", 1);
	msgpack_pack_uint64(pk, 0);
}

static void pack_req_int_path(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 16);
	msgpack_pack_uint8(pk, CM_FR_REQ);
	for (int k = 0; k < 6; k++)
		msgpack_pack_uint64(pk, 1); /* id op group token consistency flags */
	msgpack_pack_uint64(pk, 5); /* path: an integer, not a string */
	for (int k = 0; k < 8; k++)
		msgpack_pack_nil(pk);
}

static void pack_resp_str_err(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 9);
	msgpack_pack_uint8(pk, CM_FR_RESP);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint8(pk, CM_OP_DELETE);
	msgpack_pack_str_with_body(pk, "ENOENT", 6); /* err must be an integer */
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint64(pk, 0);
	msgpack_pack_str_with_body(pk, "", 0);
	msgpack_pack_nil(pk);
}

static void pack_resp_short_attr(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 9);
	msgpack_pack_uint8(pk, CM_FR_RESP);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint8(pk, CM_OP_PUT);
	msgpack_pack_int32(pk, 0);
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint64(pk, 0);
	msgpack_pack_str_with_body(pk, "", 0);
	msgpack_pack_array(pk, 1);
	msgpack_pack_array(pk, 8); /* attr has 9 fields */
	for (int k = 0; k < 8; k++)
		msgpack_pack_uint64(pk, 1);
}

static void pack_event_negative_index(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 8);
	msgpack_pack_uint8(pk, CM_FR_EVENT);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_int64(pk, -3); /* index is unsigned */
	msgpack_pack_uint8(pk, CM_EV_PUT);
	msgpack_pack_str_with_body(pk, "/a", 2);
	msgpack_pack_str_with_body(pk, "", 0);
	msgpack_pack_nil(pk);
}

static void pack_not_an_array(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 1);
	msgpack_pack_uint8(pk, CM_FR_HELLO);
	msgpack_pack_uint8(pk, 1);
}

/* A SHARDS body whose one shard lists 13 replicas: over struct cm_shard's 12. */
static void pack_shards_13_replicas(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 9);
	msgpack_pack_uint8(pk, CM_FR_RESP);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint8(pk, CM_OP_SHARDS);
	msgpack_pack_int32(pk, 0);
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint64(pk, 0);
	msgpack_pack_str_with_body(pk, "", 0);
	msgpack_pack_array(pk, 3);
	msgpack_pack_uint64(pk, 5);
	msgpack_pack_array(pk, 1);
	msgpack_pack_array(pk, 3);
	msgpack_pack_uint64(pk, 2);
	msgpack_pack_str_with_body(pk, "/a", 2);
	msgpack_pack_array(pk, 13);
	for (int k = 0; k < 13; k++)
		msgpack_pack_uint64(pk, (uint64_t)k + 1);
	msgpack_pack_array(pk, 0);
}

/* A SHARDS body whose node address is an integer. */
static void pack_shards_int_addr(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 9);
	msgpack_pack_uint8(pk, CM_FR_RESP);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint8(pk, CM_OP_SHARDS);
	msgpack_pack_int32(pk, 0);
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint64(pk, 0);
	msgpack_pack_str_with_body(pk, "", 0);
	msgpack_pack_array(pk, 3);
	msgpack_pack_uint64(pk, 5);
	msgpack_pack_array(pk, 0);
	msgpack_pack_array(pk, 1);
	msgpack_pack_array(pk, 2);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint64(pk, 7001);
}

static void test_wrong_field_types_rejected(void **state)
{
	(void)state;
	assert_int_equal(decode_packed(pack_hello_str_version), -EBADMSG);
	assert_int_equal(decode_packed(pack_req_int_path), -EBADMSG);
	assert_int_equal(decode_packed(pack_resp_str_err), -EBADMSG);
	assert_int_equal(decode_packed(pack_resp_short_attr), -EBADMSG);
	assert_int_equal(decode_packed(pack_event_negative_index), -EBADMSG);
	assert_int_equal(decode_packed(pack_not_an_array), -EBADMSG);
	assert_int_equal(decode_packed(pack_shards_13_replicas), -EBADMSG);
	assert_int_equal(decode_packed(pack_shards_int_addr), -EBADMSG);
}

static void pack_unknown_type(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint8(pk, 99);
	msgpack_pack_uint32(pk, 1);
	msgpack_pack_str_with_body(pk, "c", 1);
	msgpack_pack_uint64(pk, 0);
}

static void pack_type_zero(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 3);
	msgpack_pack_uint8(pk, 0);
	msgpack_pack_int32(pk, -1);
	msgpack_pack_str_with_body(pk, "", 0);
}

static void pack_req_unknown_op(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 16);
	msgpack_pack_uint8(pk, CM_FR_REQ);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint8(pk, CM_OP_COUNT); /* one past the last op */
	for (int k = 0; k < 13; k++)
		msgpack_pack_nil(pk);
}

/* A PUT REQ whose last field (CM_PUT_IF_MOD's operand) is what *req_tail says. */
enum req_tail { TAIL_NIL, TAIL_U64, TAIL_STR, TAIL_NEG };
static enum req_tail req_tail;
static uint32_t req_tail_flags;

static void pack_req_tail(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 16);
	msgpack_pack_uint8(pk, CM_FR_REQ);
	msgpack_pack_uint64(pk, 1);          /* id */
	msgpack_pack_uint8(pk, CM_OP_PUT);
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint64(pk, 0);  /* group token consistency */
	msgpack_pack_uint32(pk, req_tail_flags);
	msgpack_pack_str_with_body(pk, "/k", 2);
	msgpack_pack_str_with_body(pk, "", 0);
	msgpack_pack_bin_with_body(pk, "v", 1);
	for (int k = 0; k < 5; k++)
		msgpack_pack_uint64(pk, 0);  /* version mode uid gid from_index */
	switch (req_tail) {
	case TAIL_NIL: msgpack_pack_nil(pk); break;
	case TAIL_U64: msgpack_pack_uint64(pk, 77); break;
	case TAIL_STR: msgpack_pack_str_with_body(pk, "77", 2); break;
	case TAIL_NEG: msgpack_pack_int64(pk, -77); break;
	}
}

static void test_req_mod_index_field(void **state)
{
	(void)state;
	/* Earlier clients send nil there: accepted, mod_index 0. */
	req_tail_flags = CM_PUT_IF_VERSION;
	req_tail = TAIL_NIL;
	assert_int_equal(decode_packed(pack_req_tail), 0);
	req_tail = TAIL_U64;
	assert_int_equal(decode_packed(pack_req_tail), 0);
	req_tail = TAIL_STR;
	assert_int_equal(decode_packed(pack_req_tail), -EBADMSG);
	req_tail = TAIL_NEG;
	assert_int_equal(decode_packed(pack_req_tail), -EBADMSG);
	/* CM_PUT_IF_MOD needs its operand. */
	req_tail_flags = CM_PUT_IF_MOD;
	req_tail = TAIL_NIL;
	assert_int_equal(decode_packed(pack_req_tail), -EBADMSG);
	req_tail = TAIL_U64;
	assert_int_equal(decode_packed(pack_req_tail), 0);
}

static void test_req_if_mod_roundtrip(void **state)
{
	(void)state;
	uint64_t mods[] = {0, 1, 0x123456789abull, UINT64_MAX};
	for (size_t k = 0; k < sizeof(mods) / sizeof(mods[0]); k++) {
		struct cm_req r = {.id = 5, .op = CM_OP_DELETE, .flags = CM_PUT_IF_MOD,
				   .path = B("/a/b"), .mod_index = mods[k]};
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		assert_int_equal(cm_codec_req(&sb, &r), 0);
		struct cm_msg m;
		decode_sb(&sb, &m);
		assert_int_equal(m.req.flags, CM_PUT_IF_MOD);
		assert_int_equal(m.req.mod_index, mods[k]);
		assert_int_equal(m.req.version, 0);
		assert_truncations_fail(&sb);
		cm_codec_free(&m);
		msgpack_sbuffer_destroy(&sb);
	}
	/* Without the flag the field stays nil, whatever mod_index holds:
	 * the bytes are those of a client from before CM_PUT_IF_MOD. */
	struct cm_req r = {.id = 5, .op = CM_OP_PUT, .path = B("/a"), .mod_index = 9};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_req(&sb, &r), 0);
	size_t len;
	const char *body = frame_body(&sb, &len);
	assert_int_equal((unsigned char)body[len - 1], 0xc0);
	struct cm_msg m;
	decode_sb(&sb, &m);
	assert_int_equal(m.req.mod_index, 0);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

/* An EVENT whose attr has the 9 fields of servers before atime and nlink. */
static void pack_event_attr9(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 8);
	msgpack_pack_uint8(pk, CM_FR_EVENT);
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint64(pk, 1); /* watch_id group index */
	msgpack_pack_uint8(pk, CM_EV_PUT);
	msgpack_pack_str_with_body(pk, "/a", 2);
	msgpack_pack_str_with_body(pk, "", 0);
	msgpack_pack_array(pk, 9);
	for (int k = 0; k < 9; k++)
		msgpack_pack_uint64(pk, 40 + (uint64_t)k); /* mtime 43 */
}

static void pack_event_attr10(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 8);
	msgpack_pack_uint8(pk, CM_FR_EVENT);
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint8(pk, CM_EV_PUT);
	msgpack_pack_str_with_body(pk, "/a", 2);
	msgpack_pack_str_with_body(pk, "", 0);
	msgpack_pack_array(pk, 10); /* neither the old nor the new attr */
	for (int k = 0; k < 10; k++)
		msgpack_pack_uint64(pk, 1);
}

static void test_attr_of_older_servers_still_decodes(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_event_attr9(&pk);
	struct cm_msg m;
	assert_int_equal(cm_codec_decode(sb.data, sb.size, &m), 0);
	assert_int_equal(m.event.attr.mtime_ns, 43);
	assert_int_equal(m.event.attr.atime_ns, 43); /* atime reads as mtime */
	assert_int_equal(m.event.attr.nlink, 0);     /* unknown */
	assert_int_equal(m.event.attr.size, 48);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
	assert_int_equal(decode_packed(pack_event_attr10), -EBADMSG);
}

static int req_times_fields; /* 0: none; 1: [a, m]; 2: [a]; 3: a str */

static void pack_req_times(msgpack_packer *pk)
{
	msgpack_pack_array(pk, req_times_fields ? 17 : 16);
	msgpack_pack_uint8(pk, CM_FR_REQ);
	msgpack_pack_uint64(pk, 1);
	msgpack_pack_uint8(pk, CM_OP_PUT);
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint64(pk, 0);
	msgpack_pack_uint32(pk, req_tail_flags);
	msgpack_pack_str_with_body(pk, "/k", 2);
	msgpack_pack_str_with_body(pk, "", 0);
	msgpack_pack_bin_with_body(pk, "v", 1);
	for (int k = 0; k < 5; k++)
		msgpack_pack_uint64(pk, 0);
	msgpack_pack_nil(pk);
	if (req_times_fields == 1) {
		msgpack_pack_array(pk, 2);
		msgpack_pack_int64(pk, -1);
		msgpack_pack_int64(pk, 2);
	} else if (req_times_fields == 2) {
		msgpack_pack_array(pk, 1);
		msgpack_pack_int64(pk, -1);
	} else if (req_times_fields == 3) {
		msgpack_pack_str_with_body(pk, "12", 2);
	}
}

/* CM_SET_TIMES's [atime, mtime] is a 17th element, with the flag and only with it. */
static void test_req_set_times_field(void **state)
{
	(void)state;
	struct cm_req r = {.id = 5, .op = CM_OP_PUT, .flags = CM_SET_TIMES | CM_PUT_KEEP_VALUE,
			   .path = B("/a"), .atime_ns = CM_TIME_NOW, .mtime_ns = CM_TIME_OMIT};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_req(&sb, &r), 0);
	struct cm_msg m;
	decode_sb(&sb, &m);
	assert_int_equal(m.req.atime_ns, CM_TIME_NOW);
	assert_int_equal(m.req.mtime_ns, CM_TIME_OMIT);
	assert_truncations_fail(&sb);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
	req_tail_flags = CM_SET_TIMES;
	req_times_fields = 1;
	assert_int_equal(decode_packed(pack_req_times), 0);
	for (req_times_fields = 0; req_times_fields <= 3; req_times_fields += 2)
		assert_int_equal(decode_packed(pack_req_times), -EBADMSG);
	req_tail_flags = 0; /* the operands without the flag */
	req_times_fields = 1;
	assert_int_equal(decode_packed(pack_req_times), -EBADMSG);
	req_times_fields = 0;
	assert_int_equal(decode_packed(pack_req_times), 0);
}

/* A forwarded identity is an 18th element, only when there is one: the
 * 17th is then the times or nil. */
static void test_req_forwarded_identity_field(void **state)
{
	(void)state;
	for (int times = 0; times <= 1; times++) {
		struct cm_req r = {.id = 9, .op = CM_OP_GET, .path = B("/a"), .as = B("alice ops dev")};
		if (times) {
			r.op = CM_OP_PUT;
			r.flags = CM_SET_TIMES;
			r.atime_ns = 5;
			r.mtime_ns = 6;
		}
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		assert_int_equal(cm_codec_req(&sb, &r), 0);
		struct cm_msg m;
		decode_sb(&sb, &m);
		assert_bytes(m.req.as, "alice ops dev");
		assert_int_equal(m.req.mtime_ns, times ? 6 : 0);
		assert_truncations_fail(&sb);
		cm_codec_free(&m);
		msgpack_sbuffer_destroy(&sb);
	}
	/* Without one: 16 elements, as clients before it sent. */
	struct cm_req r = {.id = 9, .op = CM_OP_GET, .path = B("/a")};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_req(&sb, &r), 0);
	size_t len;
	const char *body = frame_body(&sb, &len);
	assert_int_equal((unsigned char)body[0], 0xdc); /* array16 */
	assert_int_equal((unsigned char)body[2], 16);
	struct cm_msg m;
	decode_sb(&sb, &m);
	assert_int_equal(m.req.as.len, 0);
	cm_codec_free(&m);
	msgpack_sbuffer_destroy(&sb);
}

static void test_unknown_frame_type_rejected(void **state)
{
	(void)state;
	assert_int_equal(decode_packed(pack_unknown_type), -EBADMSG);
	assert_int_equal(decode_packed(pack_type_zero), -EBADMSG);
	assert_int_equal(decode_packed(pack_req_unknown_op), -EBADMSG);
	assert_int_equal(decode_raw("", 0), -EBADMSG);
}

static void test_trailing_bytes_rejected(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_error(&sb, -EIO, "x"), 0);
	size_t len;
	const char *body = frame_body(&sb, &len);
	char *buf = malloc(len + 1);
	memcpy(buf, body, len);
	buf[len] = (char)0xc0; /* a whole extra object: nil */
	assert_int_equal(decode_raw(buf, len), 0);
	assert_int_equal(decode_raw(buf, len + 1), -EBADMSG);
	free(buf);
	msgpack_sbuffer_destroy(&sb);
}

/* ---- framing ---- */

static void test_framer_byte_by_byte(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	struct cm_hello h = {.version = 1, .cluster = B("cluster")};
	assert_int_equal(cm_codec_hello(&sb, CM_FR_HELLO, &h), 0);
	size_t end1 = sb.size;
	assert_int_equal(cm_codec_error(&sb, -EIO, "second"), 0);
	size_t end2 = sb.size;
	struct cm_event e = {.watch_id = 1, .index = 2, .kind = CM_EV_PUT, .path = B("/p")};
	assert_int_equal(cm_codec_event(&sb, &e), 0);
	size_t ends[] = {end1, end2, sb.size};
	uint8_t types[] = {CM_FR_HELLO, CM_FR_ERROR, CM_FR_EVENT};
	struct cm_framer f;
	cm_framer_init(&f, CM_FRAME_MAX);
	int got = 0;
	for (size_t k = 0; k < sb.size; k++) {
		assert_int_equal(cm_framer_feed(&f, sb.data + k, 1), 0);
		const char *body;
		size_t len;
		int rv = cm_framer_next(&f, &body, &len);
		if (k + 1 != ends[got]) {
			assert_int_equal(rv, 0); /* incomplete until the last byte */
			continue;
		}
		assert_int_equal(rv, 1);
		struct cm_msg m;
		assert_int_equal(cm_codec_decode(body, len, &m), 0);
		assert_int_equal(m.type, types[got]);
		cm_codec_free(&m);
		cm_framer_consume(&f, len);
		assert_int_equal(cm_framer_next(&f, &body, &len), 0);
		got++;
	}
	assert_int_equal(got, 3);
	cm_framer_free(&f);
	msgpack_sbuffer_destroy(&sb);
}

static void test_framer_oversize_length_is_emsgsize(void **state)
{
	(void)state;
	struct cm_framer f;
	cm_framer_init(&f, 1024);
	const unsigned char hdr[] = {0x00, 0x00, 0x04, 0x01}; /* 1025 > max */
	assert_int_equal(cm_framer_feed(&f, hdr, sizeof(hdr)), 0);
	const char *body;
	size_t len;
	assert_int_equal(cm_framer_next(&f, &body, &len), -EMSGSIZE);
	cm_framer_free(&f);
	/* The protocol maximum: 2^31 declared with the real limit. */
	cm_framer_init(&f, CM_FRAME_MAX);
	const unsigned char big[] = {0x80, 0x00, 0x00, 0x00};
	assert_int_equal(cm_framer_feed(&f, big, sizeof(big)), 0);
	assert_int_equal(cm_framer_next(&f, &body, &len), -EMSGSIZE);
	cm_framer_free(&f);
	/* A zero length is no frame either. */
	cm_framer_init(&f, CM_FRAME_MAX);
	const unsigned char zero[] = {0, 0, 0, 0};
	assert_int_equal(cm_framer_feed(&f, zero, sizeof(zero)), 0);
	assert_int_equal(cm_framer_next(&f, &body, &len), -EMSGSIZE);
	cm_framer_free(&f);
}

/* ---- random input ---- */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Valid frames to mutate: random bytes alone rarely get past the header. */
static void seed_frames(msgpack_sbuffer *seeds, size_t *offs, int *n)
{
	struct cm_attr a = sample_attr(1);
	struct cm_dirent ents[2] = {{B("a"), a}, {B("b"), a}};
	struct cm_group_status gs = {.group = 1, .prefix = B("/"), .n_members = 2,
				     .members = {1, 2}};
	struct cm_resp list = {.id = 1, .op = CM_OP_LIST, .ents = ents, .n_ents = 2};
	struct cm_resp get = {.id = 2, .op = CM_OP_GET, .has_attr = true, .attr = a,
			      .value = B("v")};
	struct cm_resp st = {.id = 3, .op = CM_OP_STATUS, .groups = &gs, .n_groups = 1};
	struct cm_req req = {.id = 4, .op = CM_OP_PUT, .path = B("/x"), .value = B("y")};
	struct cm_event ev = {.watch_id = 5, .kind = CM_EV_PUT, .path = B("/x"),
			      .has_attr = true, .attr = a};
	struct raft_entry e = {.term = 1, .index = 1, .type = 1, .len = 1, .data = "d"};
	struct raft_msg rm = {.type = RAFT_MSG_APPEND, .n_entries = 1, .entries = &e};
	*n = 0;
	offs[(*n)++] = seeds->size;
	cm_codec_resp(seeds, &list);
	offs[(*n)++] = seeds->size;
	cm_codec_resp(seeds, &get);
	offs[(*n)++] = seeds->size;
	cm_codec_resp(seeds, &st);
	offs[(*n)++] = seeds->size;
	cm_codec_req(seeds, &req);
	offs[(*n)++] = seeds->size;
	cm_codec_event(seeds, &ev);
	offs[(*n)++] = seeds->size;
	cm_codec_raft(seeds, 1, &rm);
	offs[*n] = seeds->size;
}

static void test_random_buffers_never_crash(void **state)
{
	(void)state;
	msgpack_sbuffer seeds;
	msgpack_sbuffer_init(&seeds);
	size_t offs[8];
	int n_seeds;
	seed_frames(&seeds, offs, &n_seeds);
	uint64_t s = 0x9e3779b97f4a7c15ull;
	int ok = 0;
	for (int iter = 0; iter < 200000; iter++) {
		unsigned char buf[256];
		size_t len;
		if (iter % 2 == 0) {
			len = rng_next(&s) % 64;
			for (size_t k = 0; k < len; k++)
				buf[k] = (unsigned char)rng_next(&s);
		} else {
			int k = (int)(rng_next(&s) % (uint64_t)n_seeds);
			len = offs[k + 1] - offs[k] - CM_FRAME_HDR;
			memcpy(buf, seeds.data + offs[k] + CM_FRAME_HDR, len);
			for (int flips = 1 + (int)(rng_next(&s) % 4); flips > 0; flips--)
				buf[rng_next(&s) % len] = (unsigned char)rng_next(&s);
			if (rng_next(&s) % 4 == 0)
				len = rng_next(&s) % (len + 1);
		}
		unsigned char *exact = malloc(len ? len : 1); /* ASan sees any overread */
		memcpy(exact, buf, len);
		int rv = decode_raw(exact, len);
		assert_true(rv == 0 || rv == -EBADMSG);
		ok += rv == 0;
		free(exact);
	}
	assert_true(ok > 0); /* some mutations stay valid: the path is exercised */
	msgpack_sbuffer_destroy(&seeds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_roundtrip),
		cmocka_unit_test(test_beats_and_ping_roundtrip),
		cmocka_unit_test(test_req_roundtrip_every_field),
		cmocka_unit_test(test_req_if_mod_roundtrip),
		cmocka_unit_test(test_req_mod_index_field),
		cmocka_unit_test(test_attr_of_older_servers_still_decodes),
		cmocka_unit_test(test_req_set_times_field),
		cmocka_unit_test(test_req_forwarded_identity_field),
		cmocka_unit_test(test_resp_get_roundtrip),
		cmocka_unit_test(test_resp_list_roundtrip),
		cmocka_unit_test(test_resp_status_roundtrip),
		cmocka_unit_test(test_resp_shards_roundtrip),
		cmocka_unit_test(test_resp_write_ops_roundtrip),
		cmocka_unit_test(test_resp_lease_and_lock_have_gets_shape),
		cmocka_unit_test(test_resp_error_carries_leader_hint),
		cmocka_unit_test(test_event_roundtrip),
		cmocka_unit_test(test_event_kinds_bounded),
		cmocka_unit_test(test_req_with_two_4096_byte_paths_and_largest_value_fits_a_frame),
		cmocka_unit_test(test_event_paths_bounded_at_4096_bytes),
		cmocka_unit_test(test_error_roundtrip),
		cmocka_unit_test(test_raft_append_with_entries_roundtrip),
		cmocka_unit_test(test_raft_snap_chunk_roundtrip),
		cmocka_unit_test(test_encode_over_frame_max_is_emsgsize_and_undone),
		cmocka_unit_test(test_huge_declared_array_fails_fast),
		cmocka_unit_test(test_wrong_field_types_rejected),
		cmocka_unit_test(test_unknown_frame_type_rejected),
		cmocka_unit_test(test_trailing_bytes_rejected),
		cmocka_unit_test(test_framer_byte_by_byte),
		cmocka_unit_test(test_framer_oversize_length_is_emsgsize),
		cmocka_unit_test(test_random_buffers_never_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
