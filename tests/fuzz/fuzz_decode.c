/* fuzz_decode.c: libFuzzer target: cm_codec_decode() on one frame body, every frame type. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A decoded message whose body a re-encoding carries must survive a round
 * trip: what the peer decodes is what we meant to send. Checked for the
 * frames whose encoders take exactly the decoded structs. */
static void check_req_roundtrip(const struct cm_req *r)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	int rv = cm_codec_req(&sb, r);
	assert(rv == 0 || rv == -EMSGSIZE);
	if (rv == 0) {
		struct cm_msg m2;
		rv = cm_codec_decode(sb.data + CM_FRAME_HDR, sb.size - CM_FRAME_HDR, &m2);
		assert(rv == 0);
		assert(m2.type == CM_FR_REQ);
		assert(m2.req.id == r->id && m2.req.op == r->op && m2.req.flags == r->flags);
		assert(m2.req.path.len == r->path.len && m2.req.value.len == r->value.len);
		assert(r->path.len == 0 || memcmp(m2.req.path.p, r->path.p, r->path.len) == 0);
		cm_codec_free(&m2);
	}
	msgpack_sbuffer_destroy(&sb);
}

static void check_raft_roundtrip(uint64_t group, const struct raft_msg *m)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	int rv = cm_codec_raft(&sb, group, m);
	assert(rv == 0 || rv == -EMSGSIZE);
	if (rv == 0) {
		struct cm_msg m2;
		rv = cm_codec_decode(sb.data + CM_FRAME_HDR, sb.size - CM_FRAME_HDR, &m2);
		assert(rv == 0);
		assert(m2.group == group && m2.raft.type == m->type && m2.raft.term == m->term);
		assert(m2.raft.n_entries == m->n_entries);
		/* Snapshot meta and chunk bytes only travel with SNAP. */
		if (m->type == RAFT_MSG_SNAP) {
			assert(m2.raft.len == m->len && m2.raft.snap.index == m->snap.index);
			assert(m2.raft.snap.conf.n == m->snap.conf.n);
		}
		cm_codec_free(&m2);
	}
	msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cm_msg m;
	int rv = cm_codec_decode(data, size, &m);
	assert(rv == 0 || rv == -EBADMSG || rv == -ENOMEM);
	if (rv != 0)
		return 0;
	switch (m.type) {
	case CM_FR_REQ:
		check_req_roundtrip(&m.req);
		break;
	case CM_FR_RAFT:
		check_raft_roundtrip(m.group, &m.raft);
		break;
	case CM_FR_BEATS:
		assert(m.n_beats <= CM_BEATS_MAX);
		for (uint32_t k = 0; k < m.n_beats; k++) {
			struct raft_msg rm;
			cm_codec_beat_msg(&m.beats[k], m.beats_from, m.beats_to, &rm);
			assert(rm.type == RAFT_MSG_HEARTBEAT || rm.type == RAFT_MSG_HEARTBEAT_RESP);
		}
		break;
	case CM_FR_RESP:
		/* Every count the decoder allocated from was backed by bytes. */
		assert((uint64_t)m.resp.n_ents + m.resp.n_groups + m.resp.n_shards + m.resp.n_nodes <=
		       size);
		break;
	default:
		break;
	}
	cm_codec_free(&m);
	return 0;
}
