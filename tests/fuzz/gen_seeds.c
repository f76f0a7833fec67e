/* gen_seeds.c: writes the fuzz targets' seed corpora with the real encoders.
 *
 * Usage: fuzz-gen-seeds DIR   (DIR is tests/fuzz/corpus; one subdirectory per
 * target, created if missing). Seeds are valid inputs: the fuzzer mutates from
 * there, which reaches much deeper than starting from nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/codec.h"
#include "tests/fuzz/fuzz_store.h"

static const char *root;
static int written;

static void put_file(const char *target, const char *name, const void *p, size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "gen_seeds: cannot create %s\n", path);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		fprintf(stderr, "gen_seeds: cannot write %s\n", path);
		exit(1);
	}
	written++;
}

#define BYTES(s) ((struct cm_bytes){(s), (uint32_t)strlen(s)})

/* ---- frames ---- */

/* Every frame type and every RESP body layout, each one whole frame in sb. */
static void frames_hello(msgpack_sbuffer *sb)
{
	struct cm_hello h = {CM_PROTO_VERSION, BYTES("confman"), 2};
	cm_codec_hello(sb, CM_FR_HELLO, &h);
	h.node_id = 0;
	cm_codec_hello(sb, CM_FR_HELLO_OK, &h);
	cm_codec_ping(sb, 3, CM_SPACE_LOW);
	cm_codec_error(sb, -ENOSPC, "no space left on the node");
}

static void frames_req(msgpack_sbuffer *sb)
{
	struct cm_req r = {.id = 1, .op = CM_OP_PUT, .path = BYTES("/etc/app/conf"),
			   .value = BYTES("port = 80\n"), .mode = 0100644};
	cm_codec_req(sb, &r);
	r = (struct cm_req){.id = 2, .op = CM_OP_GET, .token = 17, .consistency = CM_READ_FOLLOWER,
			    .path = BYTES("/etc/app/conf")};
	cm_codec_req(sb, &r);
	r = (struct cm_req){.id = 3, .op = CM_OP_RENAME, .group = 1, .flags = CM_PUT_IF_VERSION,
			    .version = 4, .path = BYTES("/a/tmp"), .path2 = BYTES("/a/conf")};
	cm_codec_req(sb, &r);
	r = (struct cm_req){.id = 4, .op = CM_OP_WATCH, .path = BYTES("/etc"), .from_index = 9};
	cm_codec_req(sb, &r);
}

static const struct cm_attr attr = {
	.mode = 0100644, .uid = 1000, .gid = 1000, .mtime_ns = 1700000000000000000,
	.ctime_ns = 1700000000000000001, .create_index = 5, .mod_index = 9, .version = 3,
	.size = 10, .atime_ns = 1700000000000000000, .nlink = 1};

static void frames_resp(msgpack_sbuffer *sb)
{
	struct cm_resp r = {.id = 2, .op = CM_OP_GET, .group = 1, .token = 17, .attr = attr,
			    .has_attr = true, .value = BYTES("port = 80\n")};
	cm_codec_resp(sb, &r);
	struct cm_dirent ents[2] = {{BYTES("conf"), attr}, {BYTES("d"), attr}};
	r = (struct cm_resp){.id = 5, .op = CM_OP_LIST, .group = 1, .ents = ents, .n_ents = 2};
	cm_codec_resp(sb, &r);
	struct cm_group_status gs = {.group = 1, .prefix = BYTES("/"), .role = RAFT_LEADER, .term = 2,
				     .leader = 1, .commit = 10, .applied = 10, .last = 11,
				     .snap_index = 0, .n_members = 3, .members = {1, 2, 3},
				     .kinds = {1, 1, 2}, .match = {11, 11, 5}, .conf_pending = true};
	r = (struct cm_resp){.id = 6, .op = CM_OP_STATUS, .node_id = 1, .groups = &gs, .n_groups = 1};
	cm_codec_resp(sb, &r);
	struct cm_shard sh = {.group = 2, .prefix = BYTES("/apps"), .n_replicas = 3,
			      .replicas = {1, 2, 3}, .parent = 1, .born = 40};
	struct cm_node_addr na = {.id = 1, .addr = BYTES("127.0.0.1:7001"),
				  .http = BYTES("127.0.0.1:8001"), .state = CM_NODE_ACTIVE};
	r = (struct cm_resp){.id = 7, .op = CM_OP_SHARDS, .epoch = 3, .shards = &sh, .n_shards = 1,
			     .nodes = &na, .n_nodes = 1};
	cm_codec_resp(sb, &r);
	r = (struct cm_resp){.id = 8, .op = CM_OP_PUT, .attr = attr, .has_attr = true};
	cm_codec_resp(sb, &r);
	r = (struct cm_resp){.id = 9, .op = CM_OP_PUT, .err = CM_ENOTLEADER, .leader_id = 2,
			     .leader_addr = BYTES("127.0.0.1:7002")};
	cm_codec_resp(sb, &r);
	struct cm_event e = {1, 1, 12, CM_EV_RENAME, BYTES("/a/tmp"), BYTES("/a/conf"), true, attr};
	cm_codec_event(sb, &e);
}

static void frames_raft(msgpack_sbuffer *sb)
{
	char d1[] = "one";
	struct raft_entry ents[2] = {{2, 2, RAFT_ENTRY_NOOP, 0, NULL},
				     {2, 3, RAFT_ENTRY_NORMAL, 3, d1}};
	struct raft_msg m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 2, .index = 1,
			     .log_term = 1, .commit = 1, .n_entries = 2, .entries = ents};
	cm_codec_raft(sb, 1, &m);
	m = (struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 2, .index = 3};
	cm_codec_raft(sb, 1, &m);
	m = (struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .reject = true, .from = 3, .to = 1,
			      .term = 2, .index = 3, .hint = 1, .log_term = 1};
	cm_codec_raft(sb, 1, &m);
	m = (struct raft_msg){.type = RAFT_MSG_PREVOTE, .from = 3, .to = 2, .term = 3, .index = 3,
			      .log_term = 2};
	cm_codec_raft(sb, 1, &m);
	m = (struct raft_msg){.type = RAFT_MSG_VOTE, .force = true, .from = 3, .to = 1, .term = 3,
			      .index = 3, .log_term = 2};
	cm_codec_raft(sb, 1, &m);
	m = (struct raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 3, .term = 3};
	cm_codec_raft(sb, 1, &m);
	static const uint8_t chunk[64];
	m = (struct raft_msg){.type = RAFT_MSG_SNAP, .from = 1, .to = 3, .term = 2, .offset = 0,
			      .len = sizeof(chunk), .data = chunk};
	m.snap = (struct raft_snap_meta){3, 2, {3, {1, 2, 3}, {1, 1, 1}}, 128};
	cm_codec_raft(sb, 1, &m);
	m.offset = 64;
	m.last = true;
	cm_codec_raft(sb, 1, &m);
	m = (struct raft_msg){.type = RAFT_MSG_SNAP_RESP, .from = 3, .to = 1, .term = 2, .index = 3,
			      .offset = 128, .last = true};
	cm_codec_raft(sb, 1, &m);
	m = (struct raft_msg){.type = RAFT_MSG_READ_INDEX, .from = 2, .to = 1, .term = 2, .ctx = 7};
	cm_codec_raft(sb, 1, &m);
	m = (struct raft_msg){.type = RAFT_MSG_READ_INDEX_RESP, .from = 1, .to = 2, .term = 2,
			      .ctx = 7, .index = 3};
	cm_codec_raft(sb, 1, &m);
	m = (struct raft_msg){.type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 2, .term = 2};
	cm_codec_raft(sb, 1, &m);
	struct cm_beat beats[3] = {{1, RAFT_MSG_HEARTBEAT, 0, 2, 3, 7},
				   {2, RAFT_MSG_HEARTBEAT, 2, 2, 1, 0},
				   {1, RAFT_MSG_HEARTBEAT_RESP, 0, 2, 0, 7}};
	cm_codec_beats(sb, 1, 2, beats, 2);
	cm_codec_beats(sb, 2, 1, beats + 2, 1);
}

/* Split a buffer of whole frames into one seed per frame. */
static void each_frame(const msgpack_sbuffer *sb, void (*fn)(const char *, size_t, int))
{
	size_t off = 0;
	for (int k = 0; off + CM_FRAME_HDR <= sb->size; k++) {
		const unsigned char *p = (const unsigned char *)sb->data + off;
		size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
		fn(sb->data + off, CM_FRAME_HDR + n, k);
		off += CM_FRAME_HDR + n;
	}
}

static void decode_seed(const char *frame, size_t n, int k)
{
	char name[32];
	snprintf(name, sizeof(name), "frame-%02d", k);
	put_file("decode", name, frame + CM_FRAME_HDR, n - CM_FRAME_HDR);
}

/* fuzz_raft's script: op 4 + (node << 3) steps a frame, after a 2-byte length. */
static msgpack_sbuffer raft_script;

static void raft_seed(const char *frame, size_t n, int k)
{
	char name[32];
	uint8_t pre[3] = {4, (uint8_t)((n - CM_FRAME_HDR) >> 8), (uint8_t)(n - CM_FRAME_HDR)};
	msgpack_sbuffer one;
	msgpack_sbuffer_init(&one);
	msgpack_sbuffer_write(&one, (const char *)pre, 3);
	msgpack_sbuffer_write(&one, frame + CM_FRAME_HDR, n - CM_FRAME_HDR);
	static const uint8_t after[] = {1, 0, 1, 2, 1, 0x08, 1};
	msgpack_sbuffer_write(&one, (const char *)after, sizeof(after));
	snprintf(name, sizeof(name), "step-%02d", k);
	put_file("raft", name, one.data, one.size);
	msgpack_sbuffer_write(&raft_script, one.data, one.size);
	msgpack_sbuffer_destroy(&one);
}

static void gen_frames(void)
{
	msgpack_sbuffer all, raft;
	msgpack_sbuffer_init(&all);
	msgpack_sbuffer_init(&raft);
	msgpack_sbuffer_init(&raft_script);
	frames_hello(&all);
	frames_req(&all);
	frames_resp(&all);
	frames_raft(&raft);
	msgpack_sbuffer_write(&all, raft.data, raft.size);
	each_frame(&all, decode_seed);
	each_frame(&raft, raft_seed);
	/* Ticks, proposals, deliveries and a snapshot with no frame at all. */
	static const uint8_t own[] = {0, 2, 1, 1, 2, 2, 1, 1, 3, 0x0b, 0x13, 0x18, 1, 1, 1, 0x1f, 1};
	put_file("raft", "own-traffic", own, sizeof(own));
	put_file("raft", "script-all", raft_script.data, raft_script.size);
	/* The framer's first byte seeds the cut points. */
	for (uint8_t seed = 1; seed <= 3; seed++) {
		char name[32];
		msgpack_sbuffer s;
		msgpack_sbuffer_init(&s);
		msgpack_sbuffer_write(&s, (const char *)&seed, 1);
		msgpack_sbuffer_write(&s, all.data, all.size);
		snprintf(name, sizeof(name), "stream-%u", seed);
		put_file("framer", name, s.data, s.size);
		msgpack_sbuffer_destroy(&s);
	}
	static const uint8_t huge[] = {7, 0x7f, 0xff, 0xff, 0xff, 0x93, 0x08, 0x01};
	put_file("framer", "declares-2g", huge, sizeof(huge));
	msgpack_sbuffer_destroy(&all);
	msgpack_sbuffer_destroy(&raft);
	msgpack_sbuffer_destroy(&raft_script);
}

/* ---- paths, commands, snapshots, cluster files ---- */

static void gen_paths(void)
{
	static const char *const paths[] = {"/", "/a", "/etc/app/conf", "/a//b", "/a/./b", "/a/..",
					    "/trailing/", "relative", "/sp ace/\xc3\xa9t\xc3\xa9"};
	for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
		char name[32];
		snprintf(name, sizeof(name), "path-%02zu", k);
		put_file("path", name, paths[k], strlen(paths[k]));
	}
	char deep[CM_PATH_MAX + 2];
	for (size_t k = 0; k < sizeof(deep) - 1; k += 2)
		memcpy(deep + k, "/a", 2);
	put_file("path", "too-long", deep, sizeof(deep) - 1);
	put_file("path", "deepest", deep, CM_PATH_MAX); /* "/a" x 2048: valid */
	/* the longest names filling the longest path: ("/" + 255 bytes) x 16 */
	for (size_t k = 0; k < CM_PATH_MAX; k++)
		deep[k] = k % (CM_NAME_MAX + 1) == 0 ? '/' : 'n';
	put_file("path", "longest-names", deep, CM_PATH_MAX);
}

static void cmd_seed(int k, uint8_t op, uint32_t flags, const char *path, const char *path2,
		     const char *value, uint32_t mode, uint64_t version)
{
	struct cm_req r = {.op = op, .flags = flags, .path = BYTES(path), .path2 = BYTES(path2),
			   .value = BYTES(value), .mode = mode, .version = version, .uid = 1000};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	if (cm_kv_cmd_encode(&sb, &r, 1700000000000000000, CM_VALUE_MAX_DEFAULT) != 0)
		exit(1);
	char name[32];
	snprintf(name, sizeof(name), "cmd-%02d", k);
	put_file("kv_cmd", name, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

static void gen_cmds(void)
{
	int k = 0;
	cmd_seed(k++, CM_OP_PUT, 0, "/etc/app/conf", "", "port = 81\n", 0, 0);
	cmd_seed(k++, CM_OP_PUT, CM_PUT_IF_VERSION, "/etc/app/conf", "", "v", 0, 1);
	cmd_seed(k++, CM_OP_PUT, CM_PUT_CREATE, "/new/deep/file", "", "x", 0100600, 0);
	cmd_seed(k++, CM_OP_PUT, CM_SET_MODE | CM_PUT_KEEP_VALUE, "/etc/app", "", "", 040700, 0);
	cmd_seed(k++, CM_OP_PUT, 0, "/l2", "", "/etc", 0120777, 0);
	cmd_seed(k++, CM_OP_MKDIR, 0, "/etc/app/d2", "", "", 040755, 0);
	cmd_seed(k++, CM_OP_MKDIR, CM_MKDIR_BOUNDARY, "/apps", "", "", 0, 0);
	cmd_seed(k++, CM_OP_DELETE, 0, "/etc/app/conf", "", "", 0, 0);
	cmd_seed(k++, CM_OP_DELETE, CM_DEL_RECURSIVE, "/etc", "", "", 0, 0);
	cmd_seed(k++, CM_OP_DELETE, CM_DEL_DIR, "/etc/app/d", "", "", 0, 0);
	cmd_seed(k++, CM_OP_RENAME, 0, "/etc/app/conf", "/etc/app/d/conf", "", 0, 0);
	cmd_seed(k++, CM_OP_RENAME, CM_PUT_CREATE, "/etc/app", "/moved", "", 0, 0);
	cmd_seed(k++, CM_OP_PUT, 0, "/shard/below", "", "x", 0, 0);
}

static void gen_snaps(void)
{
	struct cm_store *s = fuzz_store_get();
	MDB_txn *txn;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	if (cm_store_txn_begin(s, false, &txn) != 0 || cm_kv_snapshot(s, txn, FUZZ_GROUP, &sb) != 0)
		exit(1);
	cm_store_txn_abort(txn);
	put_file("kv_snap", "seed-tree", sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	static const uint8_t empty[] = {0x90};
	put_file("kv_snap", "empty", empty, sizeof(empty));
}

static void gen_cluster_files(void)
{
	static const char one[] = "[cluster]\nid = confman\nmax_value = 1048576\n"
				  "[node.1]\naddress = 127.0.0.1:7001\nhttp = 127.0.0.1:8001\n"
				  "[group.1]\nprefix = /\nreplicas = 1\n";
	static const char three[] = "[cluster]\nid = prod ; comment\n"
				    "[node.1]\naddress = 10.0.0.1:7001\n"
				    "[node.2]\naddress = 10.0.0.2:7001\n"
				    "[node.3]\naddress = 10.0.0.3:7001\n"
				    "[group.1]\nprefix = /\nreplicas = 1,2,3\n"
				    "[group.2]\nprefix = /apps\nreplicas = 1, 2, 3\n";
	put_file("cluster_file", "one-node.ini", one, strlen(one));
	put_file("cluster_file", "three-nodes.ini", three, strlen(three));
}

/* fuzz_gateway: the first byte picks the parser (see fuzz_gateway.c). */
static void gen_gateway(void)
{
	static const char *const seeds[] = {
		"\x00GET\0/v1/kv/etc/app/conf",
		"\x00" "DELETE\0/v1/kv/etc/app",
		"\x00recursive\0",
		"\x00" "from\0" "42",
		"\x01\"17\"",
		"\x01" "1:42",
		"\x02hello, world",
		"\x03{\"key\":\"Zm9v\",\"value\":\"YmFy\"}",
		"\x04{\"key\":\"Zm9v\",\"range_end\":\"Zm9w\",\"limit\":\"10\"}",
		"\x05{\"key\":\"Zm9v\",\"prev_kv\":true}",
		"\x06{\"compare\":[{\"key\":\"Zm9v\",\"target\":\"VERSION\",\"result\":"
		"\"EQUAL\",\"version\":\"1\"}],\"success\":[{\"request_put\":{\"key\":"
		"\"Zm9v\",\"value\":\"YmFy\"}}],\"failure\":[{\"request_range\":{\"key\":"
		"\"Zm9v\"}}]}",
		/* 7: lease and lock bodies; the next byte picks the route (7 is grant) */
		"\x07\x07{\"TTL\":60,\"ID\":7000}",
		"\x07\x01{\"ID\":\"7000\"}",
		"\x07\x02{\"ID\":7000}",
		"\x07\x03{\"ID\":7000,\"keys\":true}",
		"\x07\x04",
		"\x07\x05{\"name\":\"L2ZsL2xvY2s=\",\"lease\":7000}",
		"\x07\x06{\"key\":\"L2ZsL2xvY2svMWI1OA==\"}",
	};
	for (size_t k = 0; k < sizeof(seeds) / sizeof(seeds[0]); k++) {
		char name[32];
		size_t n = strlen(seeds[k]);
		if (seeds[k][0] == '\0') /* the selector 0 is a NUL: the string starts after it */
			n = 1 + strlen(seeds[k] + 1) + 1 + strlen(seeds[k] + 2 + strlen(seeds[k] + 1));
		snprintf(name, sizeof(name), "req-%02zu", k);
		put_file("gateway", name, seeds[k], n);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: fuzz-gen-seeds CORPUS_DIR\n");
		return 2;
	}
	root = argv[1];
	gen_frames();
	gen_paths();
	gen_cmds();
	gen_snaps();
	gen_cluster_files();
	gen_gateway();
	printf("gen_seeds: %d files under %s\n", written, root);
	return 0;
}
