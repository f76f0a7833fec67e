/* snapfile.c: the backup file's sections: written streaming, read checked. */
#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/snapfile.h"

static void le32(uint8_t *b, uint32_t v)
{
	for (int k = 0; k < 4; k++)
		b[k] = (uint8_t)(v >> (8 * k));
}

static void le64(uint8_t *b, uint64_t v)
{
	for (int k = 0; k < 8; k++)
		b[k] = (uint8_t)(v >> (8 * k));
}

static uint64_t get64(const uint8_t *b)
{
	uint64_t v = 0;
	for (int k = 7; k >= 0; k--)
		v = v << 8 | b[k];
	return v;
}

static uint32_t get32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* ---- writing ---- */

static int put(struct cm_snap_wr *w, const void *p, size_t n)
{
	if (w->err == 0 && n > 0 && fwrite(p, 1, n, w->f) != n)
		w->err = -EIO;
	return w->err;
}

int cm_snap_wr_open(struct cm_snap_wr *w, FILE *f)
{
	memset(w, 0, sizeof(*w));
	w->f = f;
	w->hash = XXH3_createState();
	if (w->hash == NULL)
		return w->err = -ENOMEM;
	return put(w, CM_SNAP_MAGIC, 8);
}

int cm_snap_wr_begin(struct cm_snap_wr *w, uint32_t type, uint64_t len)
{
	uint8_t h[16];
	le32(h, type);
	le32(h + 4, 0);
	le64(h + 8, len);
	if (w->err == 0 && (w->left != 0 || len > CM_SNAP_SECTION_MAX))
		w->err = -EINVAL;
	if (w->err == 0)
		XXH3_64bits_reset(w->hash);
	if (w->err == 0)
		XXH3_64bits_update(w->hash, h, sizeof(h));
	w->left = len;
	return put(w, h, sizeof(h));
}

int cm_snap_wr_data(struct cm_snap_wr *w, const void *p, size_t n)
{
	if (w->err == 0 && n > w->left)
		w->err = -EINVAL; /* more than the section said */
	if (w->err == 0) {
		XXH3_64bits_update(w->hash, p, n);
		w->left -= n;
	}
	return put(w, p, n);
}

int cm_snap_wr_end(struct cm_snap_wr *w)
{
	if (w->err == 0 && w->left != 0)
		w->err = -EIO; /* fewer bytes came than the section said */
	uint8_t t[8];
	le64(t, w->err == 0 ? XXH3_64bits_digest(w->hash) : 0);
	return put(w, t, sizeof(t));
}

void cm_snap_wr_close(struct cm_snap_wr *w)
{
	XXH3_freeState(w->hash);
	w->hash = NULL;
}

/* ---- reading ---- */

int cm_snap_rd_open(struct cm_snap_rd *r, FILE *f)
{
	memset(r, 0, sizeof(*r));
	r->f = f;
	uint8_t m[8];
	if (fread(m, 1, 8, f) != 8 || memcmp(m, CM_SNAP_MAGIC, 7) != 0) {
		snprintf(r->why, sizeof(r->why), "not a Confman snapshot file (bad magic)");
		return -EBADMSG;
	}
	if (m[7] != CM_SNAP_FORMAT) {
		snprintf(r->why, sizeof(r->why), "snapshot format %u, this tool reads %u", m[7],
			 CM_SNAP_FORMAT);
		return -EPROTONOSUPPORT;
	}
	return 0;
}

static const char *type_name(uint32_t t)
{
	return t == CM_SNAP_HEAD ? "HEAD" : t == CM_SNAP_GROUP ? "GROUP" : t == CM_SNAP_END ? "END" : "?";
}

int cm_snap_rd_next(struct cm_snap_rd *r)
{
	free(r->sec.data);
	r->sec.data = NULL;
	uint32_t idx = r->sec.type ? r->sec.index + 1 : 0;
	uint8_t h[16], t[8];
	size_t got = fread(h, 1, sizeof(h), r->f);
	if (got == 0 && feof(r->f))
		return 0;
	if (got != sizeof(h)) {
		snprintf(r->why, sizeof(r->why), "section %u: truncated header", idx);
		return -EBADMSG;
	}
	r->sec = (struct cm_snap_sec){.type = get32(h), .index = idx, .len = get64(h + 8)};
	if (r->sec.type < CM_SNAP_HEAD || r->sec.type > CM_SNAP_END || get32(h + 4) != 0 ||
	    r->sec.len > CM_SNAP_SECTION_MAX) {
		snprintf(r->why, sizeof(r->why), "section %u: unknown type %u or length %llu", idx,
			 r->sec.type, (unsigned long long)r->sec.len);
		return -EBADMSG;
	}
	r->sec.data = malloc(r->sec.len ? r->sec.len : 1);
	if (r->sec.data == NULL)
		return -ENOMEM;
	if (fread(r->sec.data, 1, r->sec.len, r->f) != r->sec.len || fread(t, 1, 8, r->f) != 8) {
		snprintf(r->why, sizeof(r->why), "section %u (%s): truncated", idx,
			 type_name(r->sec.type));
		return -EBADMSG;
	}
	XXH3_state_t *st = XXH3_createState();
	if (st == NULL)
		return -ENOMEM;
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, h, sizeof(h));
	XXH3_64bits_update(st, r->sec.data, r->sec.len);
	uint64_t sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	if (sum != get64(t)) {
		snprintf(r->why, sizeof(r->why), "section %u (%s, %llu bytes): checksum mismatch",
			 idx, type_name(r->sec.type), (unsigned long long)r->sec.len);
		return -EBADMSG;
	}
	return 1;
}

void cm_snap_rd_close(struct cm_snap_rd *r)
{
	free(r->sec.data);
	r->sec.data = NULL;
}

int cm_snap_group_parse(const struct cm_snap_sec *s, struct cm_snap_group *g)
{
	memset(g, 0, sizeof(*g));
	if (s->type != CM_SNAP_GROUP || s->len < 4)
		return -EBADMSG;
	uint32_t n = get32(s->data);
	if (n > s->len - 4)
		return -EBADMSG;
	msgpack_unpacked up;
	msgpack_unpacked_init(&up);
	int rv = -EBADMSG;
	if (msgpack_unpack_next(&up, (const char *)s->data + 4, n, NULL) == MSGPACK_UNPACK_SUCCESS) {
		const msgpack_object *o = &up.data;
		const msgpack_object *f = o->via.array.ptr;
		if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 5 &&
		    f[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		    f[1].type == MSGPACK_OBJECT_STR && f[1].via.str.size < sizeof(g->prefix) &&
		    f[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		    f[3].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		    f[4].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		    f[4].via.u64 == s->len - 4 - n) {
			g->group = f[0].via.u64;
			memcpy(g->prefix, f[1].via.str.ptr, f[1].via.str.size);
			g->index = f[2].via.u64;
			g->keys = f[3].via.u64;
			g->blob = s->data + 4 + n;
			g->blob_len = f[4].via.u64;
			rv = 0;
		}
	}
	msgpack_unpacked_destroy(&up);
	return rv;
}

int cm_snap_head_field(const struct cm_snap_sec *s, const char *key, msgpack_unpacked *up,
		       const msgpack_object **out)
{
	msgpack_unpacked_init(up);
	if (s->type != CM_SNAP_HEAD ||
	    msgpack_unpack_next(up, (const char *)s->data, s->len, NULL) != MSGPACK_UNPACK_SUCCESS ||
	    up->data.type != MSGPACK_OBJECT_MAP)
		return -EBADMSG;
	size_t kl = strlen(key);
	for (uint32_t k = 0; k < up->data.via.map.size; k++) {
		const msgpack_object_kv *kv = &up->data.via.map.ptr[k];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == kl &&
		    memcmp(kv->key.via.str.ptr, key, kl) == 0) {
			*out = &kv->val;
			return 0;
		}
	}
	return -EBADMSG;
}
