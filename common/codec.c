/* codec.c: protocol frames to and from bytes, with msgpack-c. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"

/* ---- writing ---- */

static void pack_bytes_str(msgpack_packer *pk, struct cm_bytes b)
{
	msgpack_pack_str(pk, b.len);
	if (b.len > 0)
		msgpack_pack_str_body(pk, b.p, b.len);
}

static void pack_bin(msgpack_packer *pk, const void *p, uint32_t len)
{
	msgpack_pack_bin(pk, len);
	if (len > 0)
		msgpack_pack_bin_body(pk, p, len);
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	msgpack_pack_str(pk, n);
	if (n > 0)
		msgpack_pack_str_body(pk, s, n);
}

/* Reserve the 4-byte length; returns where the frame starts. */
static size_t frame_open(msgpack_sbuffer *sb, msgpack_packer *pk)
{
	size_t start = sb->size;
	static const char zero[CM_FRAME_HDR];
	msgpack_sbuffer_write(sb, zero, sizeof(zero));
	msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
	return start;
}

/* Fill in the length, or undo the frame if it is too long or memory ran out. */
static int frame_close(msgpack_sbuffer *sb, size_t start)
{
	if (sb->data == NULL || sb->size < start + CM_FRAME_HDR)
		return -ENOMEM;
	size_t body = sb->size - start - CM_FRAME_HDR;
	if (body > CM_FRAME_MAX) {
		sb->size = start;
		return -EMSGSIZE;
	}
	unsigned char *p = (unsigned char *)sb->data + start;
	p[0] = (unsigned char)(body >> 24);
	p[1] = (unsigned char)(body >> 16);
	p[2] = (unsigned char)(body >> 8);
	p[3] = (unsigned char)body;
	return 0;
}

int cm_codec_hello(msgpack_sbuffer *sb, uint8_t type, const struct cm_hello *h)
{
	msgpack_packer pk;
	size_t start = frame_open(sb, &pk);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, type);
	msgpack_pack_uint32(&pk, h->version);
	pack_bytes_str(&pk, h->cluster);
	msgpack_pack_uint64(&pk, h->node_id);
	return frame_close(sb, start);
}

int cm_codec_req(msgpack_sbuffer *sb, const struct cm_req *r)
{
	msgpack_packer pk;
	size_t start = frame_open(sb, &pk);
	bool times = r->flags & CM_SET_TIMES;
	bool as = r->as.len > 0;
	msgpack_pack_array(&pk, as ? 18 : times ? 17 : 16);
	msgpack_pack_uint8(&pk, CM_FR_REQ);
	msgpack_pack_uint64(&pk, r->id);
	msgpack_pack_uint8(&pk, r->op);
	msgpack_pack_uint64(&pk, r->group);
	msgpack_pack_uint64(&pk, r->token);
	msgpack_pack_uint8(&pk, r->consistency);
	msgpack_pack_uint32(&pk, r->flags);
	pack_bytes_str(&pk, r->path);
	pack_bytes_str(&pk, r->path2);
	pack_bin(&pk, r->value.p, r->value.len);
	msgpack_pack_uint64(&pk, r->version);
	msgpack_pack_uint32(&pk, r->mode);
	msgpack_pack_uint32(&pk, r->uid);
	msgpack_pack_uint32(&pk, r->gid);
	msgpack_pack_uint64(&pk, r->from_index);
	/* nil without the flag: the bytes earlier clients sent */
	if (r->flags & CM_PUT_IF_MOD)
		msgpack_pack_uint64(&pk, r->mod_index);
	else
		msgpack_pack_nil(&pk);
	if (times) { /* only with the flag: 16 elements are what servers before it read */
		msgpack_pack_array(&pk, 2);
		msgpack_pack_int64(&pk, r->atime_ns);
		msgpack_pack_int64(&pk, r->mtime_ns);
	} else if (as) {
		msgpack_pack_nil(&pk);
	}
	if (as) /* only when forwarding: servers before it refuse 18 elements */
		pack_bytes_str(&pk, r->as);
	return frame_close(sb, start);
}

void cm_codec_pack_attr(msgpack_packer *pk, const struct cm_attr *a)
{
	msgpack_pack_array(pk, 11);
	msgpack_pack_uint32(pk, a->mode);
	msgpack_pack_uint32(pk, a->uid);
	msgpack_pack_uint32(pk, a->gid);
	msgpack_pack_int64(pk, a->mtime_ns);
	msgpack_pack_int64(pk, a->ctime_ns);
	msgpack_pack_uint64(pk, a->create_index);
	msgpack_pack_uint64(pk, a->mod_index);
	msgpack_pack_uint64(pk, a->version);
	msgpack_pack_uint32(pk, a->size);
	msgpack_pack_int64(pk, a->atime_ns);
	msgpack_pack_uint32(pk, a->nlink);
}

static void pack_bool(msgpack_packer *pk, bool b)
{
	if (b)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
}

static void pack_health(msgpack_packer *pk, const struct cm_node_health *h)
{
	msgpack_pack_array(pk, 10);
	pack_bool(pk, h->ready);
	pack_bytes_str(pk, (struct cm_bytes){h->reason, (uint32_t)strlen(h->reason)});
	msgpack_pack_uint8(pk, h->space);
	msgpack_pack_uint32(pk, h->store_permille);
	msgpack_pack_uint64(pk, h->fsyncs);
	msgpack_pack_uint64(pk, h->fsync_p50_us);
	msgpack_pack_uint64(pk, h->fsync_p99_us);
	msgpack_pack_uint64(pk, h->requests);
	msgpack_pack_uint64(pk, h->failed);
	msgpack_pack_array(pk, h->n_peers);
	for (uint32_t k = 0; k < h->n_peers; k++) {
		const struct cm_peer_health *p = &h->peers[k];
		msgpack_pack_array(pk, 7);
		msgpack_pack_uint64(pk, p->id);
		pack_bool(pk, p->up);
		msgpack_pack_uint64(pk, p->silence_ms);
		msgpack_pack_uint64(pk, p->frames_out);
		msgpack_pack_uint64(pk, p->bytes_out);
		msgpack_pack_uint64(pk, p->frames_in);
		msgpack_pack_uint64(pk, p->bytes_in);
	}
}

static void pack_status(msgpack_packer *pk, const struct cm_resp *r)
{
	bool health = r->has_health && r->health != NULL;
	msgpack_pack_array(pk, health ? 3 : 2);
	msgpack_pack_uint64(pk, r->node_id);
	msgpack_pack_array(pk, r->n_groups);
	for (uint32_t k = 0; k < r->n_groups; k++) {
		const struct cm_group_status *g = &r->groups[k];
		msgpack_pack_array(pk, 13);
		msgpack_pack_uint64(pk, g->group);
		pack_bytes_str(pk, g->prefix);
		msgpack_pack_uint8(pk, g->role);
		msgpack_pack_uint64(pk, g->term);
		msgpack_pack_uint64(pk, g->leader);
		msgpack_pack_uint64(pk, g->commit);
		msgpack_pack_uint64(pk, g->applied);
		msgpack_pack_uint64(pk, g->last);
		msgpack_pack_uint64(pk, g->snap_index);
		msgpack_pack_array(pk, g->n_members);
		for (uint32_t j = 0; j < g->n_members; j++)
			msgpack_pack_uint64(pk, g->members[j]);
		msgpack_pack_array(pk, g->n_members);
		for (uint32_t j = 0; j < g->n_members; j++)
			msgpack_pack_uint8(pk, g->kinds[j]);
		msgpack_pack_array(pk, g->n_members);
		for (uint32_t j = 0; j < g->n_members; j++)
			msgpack_pack_uint64(pk, g->match[j]);
		if (g->conf_pending)
			msgpack_pack_true(pk);
		else
			msgpack_pack_false(pk);
	}
	if (health)
		pack_health(pk, r->health);
}

static void pack_shards(msgpack_packer *pk, const struct cm_resp *r)
{
	msgpack_pack_array(pk, 3);
	msgpack_pack_uint64(pk, r->epoch);
	msgpack_pack_array(pk, r->n_shards);
	for (uint32_t k = 0; k < r->n_shards; k++) {
		const struct cm_shard *sh = &r->shards[k];
		bool split = sh->parent != 0;
		msgpack_pack_array(pk, split ? 5 : 3);
		msgpack_pack_uint64(pk, sh->group);
		pack_bytes_str(pk, sh->prefix);
		msgpack_pack_array(pk, sh->n_replicas);
		for (uint32_t j = 0; j < sh->n_replicas; j++)
			msgpack_pack_uint64(pk, sh->replicas[j]);
		if (split) {
			msgpack_pack_uint64(pk, sh->parent);
			msgpack_pack_uint64(pk, sh->born);
		}
	}
	msgpack_pack_array(pk, r->n_nodes);
	for (uint32_t k = 0; k < r->n_nodes; k++) {
		msgpack_pack_array(pk, 4);
		msgpack_pack_uint64(pk, r->nodes[k].id);
		pack_bytes_str(pk, r->nodes[k].addr);
		pack_bytes_str(pk, r->nodes[k].http);
		msgpack_pack_uint8(pk, r->nodes[k].state);
	}
}

static void pack_resp_body(msgpack_packer *pk, const struct cm_resp *r)
{
	if (r->err != 0) {
		msgpack_pack_nil(pk);
		return;
	}
	switch (r->op) {
	case CM_OP_GET:
	case CM_OP_ACL:    /* list: the rules, in value */
	case CM_OP_WHOAMI: /* the identity, in value */
	case CM_OP_TOKEN:  /* list, resolve: in value */
	case CM_OP_DUMP: /* a chunk of a group's tree, its attr says where */
	case CM_OP_LEASE: /* numbers in attr, LIST's and TTL's lines in value */
	case CM_OP_LOCK:  /* the token in attr, the holders' lines in value */
		msgpack_pack_array(pk, 2);
		cm_codec_pack_attr(pk, &r->attr);
		pack_bin(pk, r->value.p, r->value.len);
		return;
	case CM_OP_LIST:
		msgpack_pack_array(pk, r->n_ents);
		for (uint32_t k = 0; k < r->n_ents; k++) {
			msgpack_pack_array(pk, 2);
			pack_bytes_str(pk, r->ents[k].name);
			cm_codec_pack_attr(pk, &r->ents[k].attr);
		}
		return;
	case CM_OP_STATUS:
		pack_status(pk, r);
		return;
	case CM_OP_SHARDS:
		pack_shards(pk, r);
		return;
	default:
		if (!r->has_attr) {
			msgpack_pack_nil(pk);
			return;
		}
		msgpack_pack_array(pk, 1);
		cm_codec_pack_attr(pk, &r->attr);
		return;
	}
}

int cm_codec_resp(msgpack_sbuffer *sb, const struct cm_resp *r)
{
	msgpack_packer pk;
	size_t start = frame_open(sb, &pk);
	msgpack_pack_array(&pk, 9);
	msgpack_pack_uint8(&pk, CM_FR_RESP);
	msgpack_pack_uint64(&pk, r->id);
	msgpack_pack_uint8(&pk, r->op);
	msgpack_pack_int32(&pk, r->err);
	msgpack_pack_uint64(&pk, r->group);
	msgpack_pack_uint64(&pk, r->token);
	msgpack_pack_uint64(&pk, r->leader_id);
	pack_bytes_str(&pk, r->leader_addr);
	pack_resp_body(&pk, r);
	return frame_close(sb, start);
}

int cm_codec_event(msgpack_sbuffer *sb, const struct cm_event *e)
{
	msgpack_packer pk;
	size_t start = frame_open(sb, &pk);
	msgpack_pack_array(&pk, 8);
	msgpack_pack_uint8(&pk, CM_FR_EVENT);
	msgpack_pack_uint64(&pk, e->watch_id);
	msgpack_pack_uint64(&pk, e->group);
	msgpack_pack_uint64(&pk, e->index);
	msgpack_pack_uint8(&pk, e->kind);
	pack_bytes_str(&pk, e->path);
	pack_bytes_str(&pk, e->path2);
	if (e->has_attr)
		cm_codec_pack_attr(&pk, &e->attr);
	else
		msgpack_pack_nil(&pk);
	return frame_close(sb, start);
}

int cm_codec_error(msgpack_sbuffer *sb, int err, const char *message)
{
	msgpack_packer pk;
	size_t start = frame_open(sb, &pk);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint8(&pk, CM_FR_ERROR);
	msgpack_pack_int32(&pk, err);
	pack_cstr(&pk, message);
	return frame_close(sb, start);
}

static void pack_snap(msgpack_packer *pk, const struct raft_msg *m)
{
	if (m->type != RAFT_MSG_SNAP) {
		msgpack_pack_nil(pk);
		return;
	}
	uint8_t conf[RAFT_CONF_MAX_BYTES];
	uint32_t n = raft_conf_encode(&m->snap.conf, conf);
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint64(pk, m->snap.index);
	msgpack_pack_uint64(pk, m->snap.term);
	pack_bin(pk, conf, n);
	msgpack_pack_uint64(pk, m->snap.size);
}

int cm_codec_raft(msgpack_sbuffer *sb, uint64_t group, const struct raft_msg *m)
{
	msgpack_packer pk;
	size_t start = frame_open(sb, &pk);
	msgpack_pack_array(&pk, 16);
	msgpack_pack_uint8(&pk, CM_FR_RAFT);
	msgpack_pack_uint64(&pk, group);
	msgpack_pack_uint8(&pk, m->type);
	msgpack_pack_uint8(&pk, (uint8_t)(m->reject | m->force << 1 | m->last << 2));
	msgpack_pack_uint64(&pk, m->from);
	msgpack_pack_uint64(&pk, m->to);
	msgpack_pack_uint64(&pk, m->term);
	msgpack_pack_uint64(&pk, m->index);
	msgpack_pack_uint64(&pk, m->log_term);
	msgpack_pack_uint64(&pk, m->commit);
	msgpack_pack_uint64(&pk, m->hint);
	msgpack_pack_uint64(&pk, m->ctx);
	msgpack_pack_array(&pk, m->n_entries);
	for (uint32_t k = 0; k < m->n_entries; k++) {
		const struct raft_entry *e = &m->entries[k];
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint64(&pk, e->term);
		msgpack_pack_uint64(&pk, e->index);
		msgpack_pack_uint8(&pk, e->type);
		pack_bin(&pk, e->data, e->len);
	}
	pack_snap(&pk, m);
	msgpack_pack_uint64(&pk, m->offset);
	if (m->type == RAFT_MSG_SNAP)
		pack_bin(&pk, m->data, m->len);
	else
		msgpack_pack_nil(&pk);
	return frame_close(sb, start);
}

int cm_codec_ping(msgpack_sbuffer *sb, uint64_t node_id, uint8_t space)
{
	msgpack_packer pk;
	size_t start = frame_open(sb, &pk);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint8(&pk, CM_FR_PING);
	msgpack_pack_uint64(&pk, node_id);
	msgpack_pack_uint8(&pk, space);
	return frame_close(sb, start);
}

int cm_codec_beats(msgpack_sbuffer *sb, uint64_t from, uint64_t to, const struct cm_beat *v,
		   uint32_t n)
{
	assert(n <= CM_BEATS_MAX);
	msgpack_packer pk;
	size_t start = frame_open(sb, &pk);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, CM_FR_BEATS);
	msgpack_pack_uint64(&pk, from);
	msgpack_pack_uint64(&pk, to);
	msgpack_pack_array(&pk, n);
	for (uint32_t k = 0; k < n; k++) {
		msgpack_pack_array(&pk, 6);
		msgpack_pack_uint64(&pk, v[k].group);
		msgpack_pack_uint8(&pk, v[k].type);
		msgpack_pack_uint64(&pk, v[k].term);
		msgpack_pack_uint64(&pk, v[k].commit);
		msgpack_pack_uint64(&pk, v[k].ctx);
		msgpack_pack_uint8(&pk, v[k].flags);
	}
	return frame_close(sb, start);
}

void cm_codec_beat_msg(const struct cm_beat *b, uint64_t from, uint64_t to, struct raft_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = b->type;
	m->from = from;
	m->to = to;
	m->term = b->term;
	m->commit = b->commit;
	m->ctx = b->ctx;
	m->force = (b->flags & 2) != 0;
}
