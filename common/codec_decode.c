/* codec_decode.c: checking and decoding frames received from the network. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec_int.h"

/*
 * msgpack-c allocates an array's storage from the count the sender declares,
 * before reading a single element ("FIXME security guard" in its template):
 * five bytes could ask for gigabytes. So every body is walked once first,
 * checking that each declared length and count fits in the bytes present.
 */
static int header_size(const unsigned char *p, size_t left, uint64_t *body, uint64_t *items)
{
	unsigned b = p[0];
	*body = 0;
	*items = 0;
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return 1;
	if (b >= 0x80 && b <= 0x8f) {
		*items = 2u * (b & 0x0f);
		return 1;
	}
	if (b >= 0x90 && b <= 0x9f) {
		*items = b & 0x0f;
		return 1;
	}
	if (b >= 0xa0 && b <= 0xbf) {
		*body = b & 0x1f;
		return 1;
	}
	static const unsigned char fixed[] = {
		[0xca - 0xc4] = 5, [0xcb - 0xc4] = 9, [0xcc - 0xc4] = 2, [0xcd - 0xc4] = 3,
		[0xce - 0xc4] = 5, [0xcf - 0xc4] = 9, [0xd0 - 0xc4] = 2, [0xd1 - 0xc4] = 3,
		[0xd2 - 0xc4] = 5, [0xd3 - 0xc4] = 9, [0xd4 - 0xc4] = 3, [0xd5 - 0xc4] = 4,
		[0xd6 - 0xc4] = 6, [0xd7 - 0xc4] = 10, [0xd8 - 0xc4] = 18,
	};
	if (b >= 0xca && b <= 0xd8)
		return fixed[b - 0xc4];
	/* Variable: the length field follows in 1, 2 or 4 bytes. */
	int lenb;
	switch (b) {
	case 0xc4: case 0xc7: case 0xd9: lenb = 1; break;
	case 0xc5: case 0xc8: case 0xda: case 0xdc: case 0xde: lenb = 2; break;
	case 0xc6: case 0xc9: case 0xdb: case 0xdd: case 0xdf: lenb = 4; break;
	default: return -1; /* 0xc1: never used */
	}
	if (left < (size_t)(1 + lenb))
		return -1;
	uint64_t n = 0;
	for (int k = 1; k <= lenb; k++)
		n = n << 8 | p[k];
	int ext = (b >= 0xc7 && b <= 0xc9) ? 1 : 0; /* the ext type byte */
	if (b == 0xdc || b == 0xdd)
		*items = n;
	else if (b == 0xde || b == 0xdf)
		*items = 2 * n;
	else
		*body = n;
	return 1 + lenb + ext;
}

static int guard(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t off = 0;
	uint64_t pending = 1; /* objects still to read */
	while (pending > 0) {
		if (off >= len || pending > len - off)
			return -EBADMSG; /* each object takes at least one byte */
		uint64_t body, items;
		int h = header_size(p + off, len - off, &body, &items);
		if (h < 0 || (size_t)h > len - off || body > len - off - (size_t)h)
			return -EBADMSG;
		off += (size_t)h + body;
		pending = pending - 1 + items;
	}
	return off == len ? 0 : -EBADMSG;
}

/* ---- typed access to a msgpack_object ---- */

int cm__codec_u64(const msgpack_object *o, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -EBADMSG;
	*v = o->via.u64;
	return 0;
}

static int get_u32(const msgpack_object *o, uint32_t *v)
{
	uint64_t x;
	if (cm__codec_u64(o, &x) != 0 || x > UINT32_MAX)
		return -EBADMSG;
	*v = (uint32_t)x;
	return 0;
}

static int get_u8(const msgpack_object *o, uint8_t *v)
{
	uint64_t x;
	if (cm__codec_u64(o, &x) != 0 || x > UINT8_MAX)
		return -EBADMSG;
	*v = (uint8_t)x;
	return 0;
}

static int get_i64(const msgpack_object *o, int64_t *v)
{
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*v = o->via.i64;
		return 0;
	}
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > INT64_MAX)
		return -EBADMSG;
	*v = (int64_t)o->via.u64;
	return 0;
}

static int get_i32(const msgpack_object *o, int32_t *v)
{
	int64_t x;
	if (get_i64(o, &x) != 0 || x < INT32_MIN || x > INT32_MAX)
		return -EBADMSG;
	*v = (int32_t)x;
	return 0;
}

/* str, bin, or nil (empty). */
static int get_bytes(const msgpack_object *o, struct cm_bytes *b)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		*b = (struct cm_bytes){NULL, 0};
		return 0;
	case MSGPACK_OBJECT_STR:
		*b = (struct cm_bytes){o->via.str.ptr, o->via.str.size};
		return 0;
	case MSGPACK_OBJECT_BIN:
		*b = (struct cm_bytes){o->via.bin.ptr, o->via.bin.size};
		return 0;
	default:
		return -EBADMSG;
	}
}

static const msgpack_object *array_of(const msgpack_object *o, uint32_t n)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != n)
		return NULL;
	return o->via.array.ptr;
}

/* 11 elements, or the 9 of servers before atime and nlink (see proto.h). */
int cm_codec_unpack_attr(const msgpack_object *o, struct cm_attr *a)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || (o->via.array.size != 9 && o->via.array.size != 11))
		return -EBADMSG;
	const msgpack_object *f = o->via.array.ptr;
	int rv = get_u32(&f[0], &a->mode) | get_u32(&f[1], &a->uid) | get_u32(&f[2], &a->gid) |
		 get_i64(&f[3], &a->mtime_ns) | get_i64(&f[4], &a->ctime_ns) |
		 cm__codec_u64(&f[5], &a->create_index) | cm__codec_u64(&f[6], &a->mod_index) |
		 cm__codec_u64(&f[7], &a->version) | get_u32(&f[8], &a->size);
	a->atime_ns = a->mtime_ns;
	a->nlink = 0;
	if (rv == 0 && o->via.array.size == 11)
		rv = get_i64(&f[9], &a->atime_ns) | get_u32(&f[10], &a->nlink);
	return rv ? -EBADMSG : 0;
}

/* ---- per frame type ---- */

static int dec_hello(const msgpack_object *f, uint32_t n, struct cm_msg *m)
{
	if (n != 4)
		return -EBADMSG;
	int rv = get_u32(&f[1], &m->hello.version) | get_bytes(&f[2], &m->hello.cluster) |
		 cm__codec_u64(&f[3], &m->hello.node_id);
	return rv || m->hello.cluster.len > CM_CLUSTER_MAX ? -EBADMSG : 0;
}

/* CM_SET_TIMES's [atime_ns, mtime_ns]: the 17th element, with the flag and
 * only with it (nil there when an 18th, the forwarded identity, follows). */
static int dec_req_times(const msgpack_object *f, uint32_t n, struct cm_req *r)
{
	r->atime_ns = r->mtime_ns = 0;
	bool times = n >= 17 && f[16].type != MSGPACK_OBJECT_NIL;
	if (n == 17 && f[16].type == MSGPACK_OBJECT_NIL)
		return -EBADMSG;
	if (times != ((r->flags & CM_SET_TIMES) != 0))
		return -EBADMSG;
	if (!times)
		return 0;
	const msgpack_object *t = array_of(&f[16], 2);
	if (t == NULL || get_i64(&t[0], &r->atime_ns) != 0 || get_i64(&t[1], &r->mtime_ns) != 0)
		return -EBADMSG;
	return 0;
}

static int dec_req(const msgpack_object *f, uint32_t n, struct cm_msg *m)
{
	struct cm_req *r = &m->req;
	if (n < 16 || n > 18)
		return -EBADMSG;
	int rv = cm__codec_u64(&f[1], &r->id) | get_u8(&f[2], &r->op) | cm__codec_u64(&f[3], &r->group) |
		 cm__codec_u64(&f[4], &r->token) | get_u8(&f[5], &r->consistency) |
		 get_u32(&f[6], &r->flags) | get_bytes(&f[7], &r->path) |
		 get_bytes(&f[8], &r->path2) | get_bytes(&f[9], &r->value) |
		 cm__codec_u64(&f[10], &r->version) | get_u32(&f[11], &r->mode) |
		 get_u32(&f[12], &r->uid) | get_u32(&f[13], &r->gid) |
		 cm__codec_u64(&f[14], &r->from_index);
	if (rv || r->op == 0 || r->op >= CM_OP_COUNT)
		return -EBADMSG;
	/* mod_index: nil (0) from clients before CM_PUT_IF_MOD, which needs it */
	r->mod_index = 0;
	if (f[15].type != MSGPACK_OBJECT_NIL && cm__codec_u64(&f[15], &r->mod_index) != 0)
		return -EBADMSG;
	if ((r->flags & CM_PUT_IF_MOD) && f[15].type == MSGPACK_OBJECT_NIL)
		return -EBADMSG;
	r->as = (struct cm_bytes){NULL, 0};
	if (n == 18 && (get_bytes(&f[17], &r->as) != 0 || r->as.len == 0 ||
			r->as.len > CM_AS_MAX))
		return -EBADMSG;
	return dec_req_times(f, n, r);
}

static int dec_list(const msgpack_object *o, struct cm_resp *r)
{
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return -EBADMSG;
	uint32_t n = o->via.array.size;
	r->ents = n ? calloc(n, sizeof(*r->ents)) : NULL;
	if (n && r->ents == NULL)
		return -ENOMEM;
	r->n_ents = n;
	for (uint32_t k = 0; k < n; k++) {
		const msgpack_object *e = array_of(&o->via.array.ptr[k], 2);
		if (e == NULL || get_bytes(&e[0], &r->ents[k].name) ||
		    cm_codec_unpack_attr(&e[1], &r->ents[k].attr))
			return -EBADMSG;
	}
	return 0;
}

static int get_bool(const msgpack_object *o, bool *b);

/* A member list of n entries, each read by one (u64 or u8) getter. */
static int dec_members(const msgpack_object *o, uint32_t n, uint64_t *u64, uint8_t *u8)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != n)
		return -EBADMSG;
	for (uint32_t k = 0; k < n; k++)
		if (u64 ? cm__codec_u64(&o->via.array.ptr[k], &u64[k])
			: get_u8(&o->via.array.ptr[k], &u8[k]))
			return -EBADMSG;
	return 0;
}

/* 13 fields, or the 10 of servers before membership changes. */
static int dec_group_status(const msgpack_object *o, struct cm_group_status *g)
{
	if (o->type != MSGPACK_OBJECT_ARRAY ||
	    (o->via.array.size != 10 && o->via.array.size != 13))
		return -EBADMSG;
	const msgpack_object *f = o->via.array.ptr;
	int rv = cm__codec_u64(&f[0], &g->group) | get_bytes(&f[1], &g->prefix) |
		 get_u8(&f[2], &g->role) | cm__codec_u64(&f[3], &g->term) |
		 cm__codec_u64(&f[4], &g->leader) | cm__codec_u64(&f[5], &g->commit) |
		 cm__codec_u64(&f[6], &g->applied) | cm__codec_u64(&f[7], &g->last) |
		 cm__codec_u64(&f[8], &g->snap_index);
	if (rv || f[9].type != MSGPACK_OBJECT_ARRAY || f[9].via.array.size > 12)
		return -EBADMSG;
	g->n_members = f[9].via.array.size;
	if (dec_members(&f[9], g->n_members, g->members, NULL))
		return -EBADMSG;
	if (o->via.array.size == 10)
		return 0;
	if (dec_members(&f[10], g->n_members, NULL, g->kinds) ||
	    dec_members(&f[11], g->n_members, g->match, NULL) || get_bool(&f[12], &g->conf_pending))
		return -EBADMSG;
	return 0;
}

static int get_bool(const msgpack_object *o, bool *b)
{
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return -EBADMSG;
	*b = o->via.boolean;
	return 0;
}

static int dec_peer_health(const msgpack_object *o, struct cm_peer_health *p)
{
	const msgpack_object *f = array_of(o, 7);
	if (f == NULL || cm__codec_u64(&f[0], &p->id) || get_bool(&f[1], &p->up))
		return -EBADMSG;
	uint64_t *v[] = {&p->silence_ms, &p->frames_out, &p->bytes_out, &p->frames_in,
			 &p->bytes_in};
	for (uint32_t k = 0; k < 5; k++)
		if (cm__codec_u64(&f[2 + k], v[k]))
			return -EBADMSG;
	return 0;
}

static int dec_health(const msgpack_object *o, struct cm_node_health *h)
{
	const msgpack_object *f = array_of(o, 10);
	struct cm_bytes reason;
	if (f == NULL || get_bool(&f[0], &h->ready) || get_bytes(&f[1], &reason) ||
	    reason.len > CM_STATUS_REASON_MAX || get_u8(&f[2], &h->space) ||
	    get_u32(&f[3], &h->store_permille) || f[9].type != MSGPACK_OBJECT_ARRAY ||
	    f[9].via.array.size > CM_STATUS_MAX_PEERS)
		return -EBADMSG;
	if (reason.len)
		memcpy(h->reason, reason.p, reason.len);
	h->reason[reason.len] = '\0';
	uint64_t *v[] = {&h->fsyncs, &h->fsync_p50_us, &h->fsync_p99_us, &h->requests, &h->failed};
	for (uint32_t k = 0; k < 5; k++)
		if (cm__codec_u64(&f[4 + k], v[k]))
			return -EBADMSG;
	h->n_peers = f[9].via.array.size;
	for (uint32_t k = 0; k < h->n_peers; k++)
		if (dec_peer_health(&f[9].via.array.ptr[k], &h->peers[k]))
			return -EBADMSG;
	return 0;
}

/* [node_id, groups] from an older node, [node_id, groups, health] now. */
static int dec_status(const msgpack_object *o, struct cm_resp *r)
{
	const msgpack_object *f = array_of(o, 3);
	if (f == NULL)
		f = array_of(o, 2);
	if (f == NULL || cm__codec_u64(&f[0], &r->node_id) || f[1].type != MSGPACK_OBJECT_ARRAY)
		return -EBADMSG;
	if (o->via.array.size == 3) {
		r->health = calloc(1, sizeof(*r->health));
		if (r->health == NULL)
			return -ENOMEM;
		r->has_health = true;
		if (dec_health(&f[2], r->health))
			return -EBADMSG;
	}
	uint32_t n = f[1].via.array.size;
	r->groups = n ? calloc(n, sizeof(*r->groups)) : NULL;
	if (n && r->groups == NULL)
		return -ENOMEM;
	r->n_groups = n;
	for (uint32_t k = 0; k < n; k++)
		if (dec_group_status(&f[1].via.array.ptr[k], &r->groups[k]))
			return -EBADMSG;
	return 0;
}

/* 3 fields, or 5 for a shard born of a split (parent, born). */
static int dec_shard(const msgpack_object *o, struct cm_shard *sh)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || (o->via.array.size != 3 && o->via.array.size != 5))
		return -EBADMSG;
	const msgpack_object *f = o->via.array.ptr;
	if (cm__codec_u64(&f[0], &sh->group) || get_bytes(&f[1], &sh->prefix) ||
	    f[2].type != MSGPACK_OBJECT_ARRAY || f[2].via.array.size > 12)
		return -EBADMSG;
	sh->n_replicas = f[2].via.array.size;
	for (uint32_t k = 0; k < sh->n_replicas; k++)
		if (cm__codec_u64(&f[2].via.array.ptr[k], &sh->replicas[k]))
			return -EBADMSG;
	if (o->via.array.size == 5 &&
	    (cm__codec_u64(&f[3], &sh->parent) || cm__codec_u64(&f[4], &sh->born) || sh->parent == 0))
		return -EBADMSG;
	return 0;
}

/* id, addr, http, state; or the id and addr of servers before the node table. */
static int dec_node(const msgpack_object *o, struct cm_node_addr *a)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || (o->via.array.size != 2 && o->via.array.size != 4))
		return -EBADMSG;
	const msgpack_object *e = o->via.array.ptr;
	if (cm__codec_u64(&e[0], &a->id) || get_bytes(&e[1], &a->addr) || a->addr.len > CM_ADDR_MAX)
		return -EBADMSG;
	if (o->via.array.size == 2) {
		a->state = CM_NODE_ACTIVE;
		return 0;
	}
	if (get_bytes(&e[2], &a->http) || a->http.len > CM_ADDR_MAX || get_u8(&e[3], &a->state) ||
	    a->state > CM_NODE_REMOVED) /* 0: not in the table (yet) */
		return -EBADMSG;
	return 0;
}

static int dec_shards(const msgpack_object *o, struct cm_resp *r)
{
	const msgpack_object *f = array_of(o, 3);
	if (f == NULL || cm__codec_u64(&f[0], &r->epoch) || f[1].type != MSGPACK_OBJECT_ARRAY ||
	    f[2].type != MSGPACK_OBJECT_ARRAY)
		return -EBADMSG;
	uint32_t ns = f[1].via.array.size, nn = f[2].via.array.size;
	r->shards = ns ? calloc(ns, sizeof(*r->shards)) : NULL;
	r->nodes = nn ? calloc(nn, sizeof(*r->nodes)) : NULL;
	if ((ns && r->shards == NULL) || (nn && r->nodes == NULL))
		return -ENOMEM;
	r->n_shards = ns;
	r->n_nodes = nn;
	for (uint32_t k = 0; k < ns; k++)
		if (dec_shard(&f[1].via.array.ptr[k], &r->shards[k]))
			return -EBADMSG;
	for (uint32_t k = 0; k < nn; k++)
		if (dec_node(&f[2].via.array.ptr[k], &r->nodes[k]))
			return -EBADMSG;
	return 0;
}

static int dec_resp_body(const msgpack_object *o, struct cm_resp *r)
{
	if (o->type == MSGPACK_OBJECT_NIL)
		return 0;
	const msgpack_object *f;
	switch (r->op) {
	case CM_OP_GET:
	case CM_OP_ACL:
	case CM_OP_WHOAMI:
	case CM_OP_TOKEN:
	case CM_OP_DUMP:
	case CM_OP_LEASE:
	case CM_OP_LOCK:
		if ((f = array_of(o, 2)) == NULL || get_bytes(&f[1], &r->value))
			return -EBADMSG;
		r->has_attr = true;
		return cm_codec_unpack_attr(&f[0], &r->attr);
	case CM_OP_LIST:
		return dec_list(o, r);
	case CM_OP_STATUS:
		return dec_status(o, r);
	case CM_OP_SHARDS:
		return dec_shards(o, r);
	default:
		if ((f = array_of(o, 1)) == NULL)
			return -EBADMSG;
		r->has_attr = true;
		return cm_codec_unpack_attr(&f[0], &r->attr);
	}
}

static int dec_resp(const msgpack_object *f, uint32_t n, struct cm_msg *m)
{
	struct cm_resp *r = &m->resp;
	if (n != 9)
		return -EBADMSG;
	int rv = cm__codec_u64(&f[1], &r->id) | get_u8(&f[2], &r->op) | get_i32(&f[3], &r->err) |
		 cm__codec_u64(&f[4], &r->group) | cm__codec_u64(&f[5], &r->token) |
		 cm__codec_u64(&f[6], &r->leader_id) | get_bytes(&f[7], &r->leader_addr);
	if (rv || r->leader_addr.len > CM_ADDR_MAX)
		return -EBADMSG;
	return dec_resp_body(&f[8], r);
}

static int dec_event(const msgpack_object *f, uint32_t n, struct cm_msg *m)
{
	struct cm_event *e = &m->event;
	if (n != 8)
		return -EBADMSG;
	int rv = cm__codec_u64(&f[1], &e->watch_id) | cm__codec_u64(&f[2], &e->group) |
		 cm__codec_u64(&f[3], &e->index) | get_u8(&f[4], &e->kind) |
		 get_bytes(&f[5], &e->path) | get_bytes(&f[6], &e->path2);
	if (rv || e->kind < CM_EV_PUT || e->kind > CM_EV_WIRE_MAX || e->path.len > CM_PATH_MAX ||
	    e->path2.len > CM_PATH_MAX)
		return -EBADMSG;
	if (f[7].type == MSGPACK_OBJECT_NIL)
		return 0;
	e->has_attr = true;
	return cm_codec_unpack_attr(&f[7], &e->attr);
}

static int dec_error(const msgpack_object *f, uint32_t n, struct cm_msg *m)
{
	if (n != 3)
		return -EBADMSG;
	return get_i32(&f[1], &m->error.err) | get_bytes(&f[2], &m->error.message) ? -EBADMSG : 0;
}

static int dec_beat(const msgpack_object *o, struct cm_beat *b)
{
	const msgpack_object *f = array_of(o, 6);
	if (f == NULL || cm__codec_u64(&f[0], &b->group) || get_u8(&f[1], &b->type) ||
	    cm__codec_u64(&f[2], &b->term) || cm__codec_u64(&f[3], &b->commit) || cm__codec_u64(&f[4], &b->ctx) ||
	    get_u8(&f[5], &b->flags))
		return -EBADMSG;
	if ((b->type != RAFT_MSG_HEARTBEAT && b->type != RAFT_MSG_HEARTBEAT_RESP) || b->flags > 7)
		return -EBADMSG;
	return 0;
}

/* A PING without a space level (an older peer's) says nothing of its store. */
static int dec_ping(const msgpack_object *f, uint32_t n, struct cm_msg *m)
{
	uint64_t space = CM_SPACE_OK;
	if ((n != 2 && n != 3) || cm__codec_u64(&f[1], &m->ping_node) != 0)
		return -EBADMSG;
	if (n == 3 && (cm__codec_u64(&f[2], &space) != 0 || space > CM_SPACE_FULL))
		return -EBADMSG;
	m->ping_space = (uint8_t)space;
	return 0;
}

static int dec_beats(const msgpack_object *f, uint32_t n, struct cm_msg *m)
{
	if (n != 4 || cm__codec_u64(&f[1], &m->beats_from) || cm__codec_u64(&f[2], &m->beats_to) ||
	    f[3].type != MSGPACK_OBJECT_ARRAY || f[3].via.array.size > CM_BEATS_MAX)
		return -EBADMSG;
	uint32_t nb = f[3].via.array.size;
	m->beats = nb ? calloc(nb, sizeof(*m->beats)) : NULL;
	if (nb && m->beats == NULL)
		return -ENOMEM;
	m->n_beats = nb;
	for (uint32_t k = 0; k < nb; k++)
		if (dec_beat(&f[3].via.array.ptr[k], &m->beats[k]))
			return -EBADMSG;
	return 0;
}

static int dispatch(const msgpack_object *f, uint32_t n, struct cm_msg *m)
{
	switch (m->type) {
	case CM_FR_HELLO:
	case CM_FR_HELLO_OK:
		return dec_hello(f, n, m);
	case CM_FR_REQ:
		return dec_req(f, n, m);
	case CM_FR_RESP:
		return dec_resp(f, n, m);
	case CM_FR_EVENT:
		return dec_event(f, n, m);
	case CM_FR_ERROR:
		return dec_error(f, n, m);
	case CM_FR_RAFT:
		return cm__codec_dec_raft(f, n, m);
	case CM_FR_BEATS:
		return dec_beats(f, n, m);
	case CM_FR_PING:
		return dec_ping(f, n, m);
	default:
		return -EBADMSG;
	}
}

int cm_codec_decode(const void *body, size_t len, struct cm_msg *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0 || len > CM_FRAME_MAX || guard(body, len) != 0)
		return -EBADMSG;
	msgpack_unpacked_init(&out->up);
	size_t off = 0;
	msgpack_unpack_return ur = msgpack_unpack_next(&out->up, body, len, &off);
	int rv = -EBADMSG;
	if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
		rv = -ENOMEM;
	if (ur == MSGPACK_UNPACK_SUCCESS && off == len) {
		const msgpack_object *o = &out->up.data;
		if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size >= 1 &&
		    get_u8(&o->via.array.ptr[0], &out->type) == 0)
			rv = dispatch(o->via.array.ptr, o->via.array.size, out);
	}
	if (rv != 0)
		cm_codec_free(out);
	return rv;
}

void cm_codec_free(struct cm_msg *m)
{
	free(m->resp.ents);
	free(m->resp.groups);
	free(m->resp.health);
	free(m->resp.shards);
	free(m->beats);
	free(m->resp.nodes);
	free(m->raft.entries);
	msgpack_unpacked_destroy(&m->up);
	memset(m, 0, sizeof(*m));
}
