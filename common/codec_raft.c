/* codec_raft.c: Raft messages off the wire, and frame reassembly. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec_int.h"

/* bin or nil. */
static int bin(const msgpack_object *o, const void **p, uint32_t *len)
{
	if (o->type == MSGPACK_OBJECT_NIL) {
		*p = NULL;
		*len = 0;
		return 0;
	}
	if (o->type != MSGPACK_OBJECT_BIN)
		return -EBADMSG;
	*p = o->via.bin.ptr;
	*len = o->via.bin.size;
	return 0;
}

static int dec_entry(const msgpack_object *o, struct raft_entry *e)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4)
		return -EBADMSG;
	const msgpack_object *f = o->via.array.ptr;
	uint64_t type = 0;
	const void *data = NULL;
	if (cm__codec_u64(&f[0], &e->term) | cm__codec_u64(&f[1], &e->index) | cm__codec_u64(&f[2], &type) |
	    bin(&f[3], &data, &e->len))
		return -EBADMSG;
	if (type > UINT8_MAX)
		return -EBADMSG;
	e->type = (uint8_t)type;
	e->data = (void *)data; /* the core copies what it keeps */
	return 0;
}

static int dec_entries(const msgpack_object *o, struct raft_msg *r)
{
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return -EBADMSG;
	uint32_t n = o->via.array.size;
	if (n == 0)
		return 0;
	r->entries = calloc(n, sizeof(*r->entries));
	if (r->entries == NULL)
		return -ENOMEM;
	r->n_entries = n;
	for (uint32_t k = 0; k < n; k++)
		if (dec_entry(&o->via.array.ptr[k], &r->entries[k]))
			return -EBADMSG;
	return 0;
}

static int dec_snap(const msgpack_object *o, struct raft_snap_meta *s)
{
	if (o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4)
		return -EBADMSG;
	const msgpack_object *f = o->via.array.ptr;
	const void *conf = NULL;
	uint32_t len = 0;
	if (cm__codec_u64(&f[0], &s->index) | cm__codec_u64(&f[1], &s->term) | bin(&f[2], &conf, &len) |
	    cm__codec_u64(&f[3], &s->size))
		return -EBADMSG;
	return raft_conf_decode(conf, len, &s->conf);
}

/* Fields the core checks itself (terms, indexes, entry order) are only
 * type-checked here: raft_step() is the one place that judges them. */
int cm__codec_dec_raft(const msgpack_object *f, uint32_t n, struct cm_msg *m)
{
	struct raft_msg *r = &m->raft;
	if (n != 16)
		return -EBADMSG;
	uint64_t type = 0, flags = 0, offset = 0;
	if (cm__codec_u64(&f[1], &m->group) | cm__codec_u64(&f[2], &type) | cm__codec_u64(&f[3], &flags) |
	    cm__codec_u64(&f[4], &r->from) | cm__codec_u64(&f[5], &r->to) | cm__codec_u64(&f[6], &r->term) |
	    cm__codec_u64(&f[7], &r->index) | cm__codec_u64(&f[8], &r->log_term) | cm__codec_u64(&f[9], &r->commit) |
	    cm__codec_u64(&f[10], &r->hint) | cm__codec_u64(&f[11], &r->ctx) | cm__codec_u64(&f[14], &offset))
		return -EBADMSG;
	if (type == 0 || type >= RAFT_MSG_TYPE_COUNT || flags > 7)
		return -EBADMSG;
	r->type = (uint8_t)type;
	r->reject = flags & 1;
	r->force = flags & 2;
	r->last = flags & 4;
	r->offset = offset;
	int rv = dec_entries(&f[12], r);
	if (rv == 0)
		rv = dec_snap(&f[13], &r->snap);
	if (rv == 0)
		rv = bin(&f[15], &r->data, &r->len);
	return rv;
}

/* ---- frame reassembly ---- */

void cm_framer_init(struct cm_framer *f, size_t max)
{
	memset(f, 0, sizeof(*f));
	f->max = max;
}

void cm_framer_free(struct cm_framer *f)
{
	free(f->buf);
	memset(f, 0, sizeof(*f));
}

int cm_framer_feed(struct cm_framer *f, const void *data, size_t n)
{
	if (f->len + n > f->cap && f->off > 0) {
		/* Slide the unread bytes down before growing. */
		memmove(f->buf, f->buf + f->off, f->len - f->off);
		f->len -= f->off;
		f->off = 0;
	}
	if (f->len + n > f->cap) {
		size_t cap = f->cap ? f->cap : 4096;
		while (cap < f->len + n)
			cap *= 2;
		char *b = realloc(f->buf, cap);
		if (b == NULL)
			return -ENOMEM;
		f->buf = b;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, data, n);
	f->len += n;
	return 0;
}

int cm_framer_next(struct cm_framer *f, const char **body, size_t *len)
{
	size_t avail = f->len - f->off;
	if (avail < CM_FRAME_HDR)
		return 0;
	const unsigned char *p = (const unsigned char *)f->buf + f->off;
	size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
	if (n > f->max || n == 0)
		return -EMSGSIZE;
	if (avail - CM_FRAME_HDR < n)
		return 0;
	*body = f->buf + f->off + CM_FRAME_HDR;
	*len = n;
	return 1;
}

void cm_framer_consume(struct cm_framer *f, size_t len)
{
	size_t used = CM_FRAME_HDR + len;
	if (used > f->len - f->off)
		used = f->len - f->off;
	f->off += used;
	if (f->off < f->len)
		return;
	f->off = f->len = 0;
	/* Give back a big buffer once it drained: idle connections stay small. */
	if (f->cap > (1u << 20)) {
		free(f->buf);
		f->buf = NULL;
		f->cap = 0;
	}
}
