/* kv_cmd.c: commands as msgpack bytes, and the bounds-checked reader that decodes them. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "server/kv.h"
#include "server/kv_int.h"

/* A command with CM_PUT_IF_MOD has a 12th field, its operand; every other
 * command keeps the 11 fields of earlier releases, so their logs still
 * decode and their replicas still read what a newer leader proposes. A
 * replica from before the flag would apply a command carrying it as
 * undecodable (-EBADMSG) where the others apply it: every server must be
 * upgraded before a client uses the flag (README.md, kv). */
#define CMD_FIELDS 11
#define CMD_FIELDS_IF_MOD 12
/* CM_SET_TIMES adds atime, mtime after them: each a time or CM_TIME_OMIT,
 * never CM_TIME_NOW, which the leader replaced with its stamp. */
#define CMD_FIELDS_TIMES 2
#define CMD_FLAGS_KNOWN (CM_WRITE_FLAGS_KNOWN | CM_MKDIR_TOP) /* TOP: leaders only */

static int need(const struct cm_kv__rd *r, size_t n)
{
	return (size_t)(r->end - r->p) >= n ? 0 : -EBADMSG;
}

/* n big-endian bytes at r->p (need() already checked), consumed. */
static uint64_t take_be(struct cm_kv__rd *r, unsigned n)
{
	uint64_t v = 0;
	for (unsigned k = 0; k < n; k++)
		v = v << 8 | r->p[k];
	r->p += n;
	return v;
}

/* n bytes of body at r->p, consumed. */
static int take_n(struct cm_kv__rd *r, uint64_t n, struct cm_bytes *b)
{
	if (need(r, n) != 0)
		return -EBADMSG;
	b->p = (const char *)r->p;
	b->len = (uint32_t)n;
	r->p += n;
	return 0;
}

/* A length-prefixed body: 1, 2 or 4 length bytes after the tag, then that many bytes. */
static int take_body(struct cm_kv__rd *r, unsigned lenbytes, struct cm_bytes *b)
{
	if (need(r, lenbytes) != 0)
		return -EBADMSG;
	return take_n(r, take_be(r, lenbytes), b);
}

int cm_kv__rd_array(struct cm_kv__rd *r, uint32_t *n)
{
	if (need(r, 1) != 0)
		return -EBADMSG;
	uint8_t t = *r->p++;
	if (t >= 0x90 && t <= 0x9f) {
		*n = t & 0x0fu;
		return 0;
	}
	unsigned w = t == 0xdc ? 2 : t == 0xdd ? 4 : 0;
	if (w == 0 || need(r, w) != 0)
		return -EBADMSG;
	*n = (uint32_t)take_be(r, w);
	return 0;
}

/* One integer of any msgpack width: *neg says whether it is below zero (then in *s, else *u). */
static int rd_int(struct cm_kv__rd *r, bool *neg, uint64_t *u, int64_t *s)
{
	if (need(r, 1) != 0)
		return -EBADMSG;
	uint8_t t = *r->p++;
	*neg = false;
	if (t <= 0x7f) {
		*u = t;
		return 0;
	}
	if (t >= 0xe0) {
		*neg = true;
		*s = (int8_t)t;
		return 0;
	}
	if (t < 0xcc || t > 0xd3)
		return -EBADMSG;
	unsigned w = 1u << ((t - 0xcc) & 3); /* cc..cf: uint 1-8; d0..d3: int 1-8 */
	if (need(r, w) != 0)
		return -EBADMSG;
	uint64_t raw = take_be(r, w);
	if (t <= 0xcf) {
		*u = raw;
		return 0;
	}
	unsigned shift = 64 - 8 * w; /* sign-extend the w-byte value */
	int64_t v = (int64_t)(raw << shift) >> shift;
	if (v < 0) {
		*neg = true;
		*s = v;
	} else {
		*u = (uint64_t)v;
	}
	return 0;
}

int cm_kv__rd_u64(struct cm_kv__rd *r, uint64_t *v)
{
	bool neg;
	int64_t s;
	if (rd_int(r, &neg, v, &s) != 0 || neg)
		return -EBADMSG;
	return 0;
}

int cm_kv__rd_u32(struct cm_kv__rd *r, uint32_t *v)
{
	uint64_t u;
	if (cm_kv__rd_u64(r, &u) != 0 || u > UINT32_MAX)
		return -EBADMSG;
	*v = (uint32_t)u;
	return 0;
}

int cm_kv__rd_i64(struct cm_kv__rd *r, int64_t *v)
{
	bool neg;
	uint64_t u;
	if (rd_int(r, &neg, &u, v) != 0)
		return -EBADMSG;
	if (!neg) {
		if (u > INT64_MAX)
			return -EBADMSG;
		*v = (int64_t)u;
	}
	return 0;
}

int cm_kv__rd_str(struct cm_kv__rd *r, struct cm_bytes *b)
{
	if (need(r, 1) != 0)
		return -EBADMSG;
	uint8_t t = *r->p++;
	if (t >= 0xa0 && t <= 0xbf)
		return take_n(r, t & 0x1fu, b);
	unsigned w = t == 0xd9 ? 1 : t == 0xda ? 2 : t == 0xdb ? 4 : 0;
	return w == 0 ? -EBADMSG : take_body(r, w, b);
}

int cm_kv__rd_bin(struct cm_kv__rd *r, struct cm_bytes *b)
{
	if (need(r, 1) != 0)
		return -EBADMSG;
	uint8_t t = *r->p++;
	unsigned w = t == 0xc4 ? 1 : t == 0xc5 ? 2 : t == 0xc6 ? 4 : 0;
	return w == 0 ? -EBADMSG : take_body(r, w, b);
}

static int pack_bytes(msgpack_packer *pk, struct cm_bytes b, bool bin)
{
	int rc = bin ? msgpack_pack_bin(pk, b.len) : msgpack_pack_str(pk, b.len);
	/* An empty body is not written at all: b.p may be NULL. */
	if (rc == 0 && b.len != 0)
		rc = bin ? msgpack_pack_bin_body(pk, b.p, b.len) : msgpack_pack_str_body(pk, b.p, b.len);
	return rc;
}

static bool is_write_op(uint32_t op)
{
	return op == CM_OP_PUT || op == CM_OP_DELETE || op == CM_OP_MKDIR || op == CM_OP_RENAME ||
	       op == CM_OP_SHARD_SPLIT || op == CM_OP_SHARD_MERGE || /* by a leader: split.c, merge.c */
	       op == CM_OP_LEASE || op == CM_OP_LOCK;
}

/* LEASE and LOCK carry an operand (arg), and so does a PUT with CM_PUT_LEASE. */
static bool has_arg(uint32_t op, uint32_t flags)
{
	return op == CM_OP_LEASE || op == CM_OP_LOCK || (op == CM_OP_PUT && (flags & CM_PUT_LEASE));
}

/* The flags of LEASE (one logged step) and LOCK (ACQUIRE with its modes, or RELEASE). */
static bool lease_lock_flags(uint32_t op, uint32_t flags)
{
	if (op == CM_OP_LEASE)
		return flags == CM_LEASE_GRANT || flags == CM_LEASE_REVOKE ||
		       flags == CM_LEASE_CHECKPOINT || flags == CM_LEASE_EXPIRE;
	if (flags == CM_LOCK_RELEASE)
		return true;
	return (flags & CM_LOCK_ACQUIRE) &&
	       (flags & ~(uint32_t)(CM_LOCK_ACQUIRE | CM_LOCK_SHARED | CM_LOCK_WAIT)) == 0;
}

/* A boundary or a top is only ever made by MKDIR, and a directory is never
 * both: otherwise the flags mean a broken proposer. */
static bool flags_fit_op(uint32_t op, uint32_t flags)
{
	uint32_t marks = flags & (CM_MKDIR_BOUNDARY | CM_MKDIR_TOP);
	if (op == CM_OP_LEASE || op == CM_OP_LOCK)
		return lease_lock_flags(op, flags);
	if ((flags & CM_PUT_LEASE) && op != CM_OP_PUT)
		return false;
	if ((flags & CM_SET_TIMES) && op != CM_OP_PUT)
		return false;
	if (op == CM_OP_SHARD_SPLIT && flags != 0)
		return false;
	if (op == CM_OP_SHARD_MERGE)
		return flags >= CM_MERGE_FREEZE && flags <= CM_MERGE_COMMIT;
	if ((flags & CM_MERGE_COPY) && op != CM_OP_PUT && op != CM_OP_MKDIR)
		return false;
	if (marks == 0)
		return true;
	return op == CM_OP_MKDIR && marks != (CM_MKDIR_BOUNDARY | CM_MKDIR_TOP);
}

int cm_kv_cmd_encode(msgpack_sbuffer *sb, const struct cm_req *req, int64_t stamp_ns,
		     uint32_t max_value)
{
	if (!is_write_op(req->op) || !flags_fit_op(req->op, req->flags))
		return -EINVAL;
	size_t before = sb->size;
	bool lease_lock = req->op == CM_OP_LEASE || req->op == CM_OP_LOCK;
	bool if_mod = !lease_lock && (req->flags & CM_PUT_IF_MOD);
	bool times = !lease_lock && (req->flags & CM_SET_TIMES);
	bool arg = has_arg(req->op, req->flags);
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	int rc = msgpack_pack_array(&pk, (if_mod ? CMD_FIELDS_IF_MOD : CMD_FIELDS) +
						 (times ? CMD_FIELDS_TIMES : 0) + (arg ? 1 : 0));
	rc = rc ? rc : msgpack_pack_uint8(&pk, req->op);
	rc = rc ? rc : msgpack_pack_uint32(&pk, req->flags);
	rc = rc ? rc : pack_bytes(&pk, req->path, false);
	rc = rc ? rc : pack_bytes(&pk, req->path2, false);
	rc = rc ? rc : pack_bytes(&pk, req->value, true);
	rc = rc ? rc : msgpack_pack_uint64(&pk, req->version);
	rc = rc ? rc : msgpack_pack_uint32(&pk, req->mode);
	rc = rc ? rc : msgpack_pack_uint32(&pk, req->uid);
	rc = rc ? rc : msgpack_pack_uint32(&pk, req->gid);
	rc = rc ? rc : msgpack_pack_int64(&pk, stamp_ns);
	rc = rc ? rc : msgpack_pack_uint32(&pk, max_value);
	if (if_mod)
		rc = rc ? rc : msgpack_pack_uint64(&pk, req->mod_index);
	if (times) { /* UTIME_NOW is the leader's stamp: the same on every replica */
		rc = rc ? rc : msgpack_pack_int64(&pk, req->atime_ns == CM_TIME_NOW ? stamp_ns : req->atime_ns);
		rc = rc ? rc : msgpack_pack_int64(&pk, req->mtime_ns == CM_TIME_NOW ? stamp_ns : req->mtime_ns);
	}
	if (arg)
		rc = rc ? rc : msgpack_pack_uint64(&pk, req->from_index);
	if (rc != 0) {
		sb->size = before; /* leave no half command behind */
		return -ENOMEM;
	}
	return 0;
}

/* The fields after path, path2 and value. */
static int decode_tail(struct cm_kv__rd *r, struct cm_kv_cmd *c)
{
	if (cm_kv__rd_u64(r, &c->version) != 0 || cm_kv__rd_u32(r, &c->mode) != 0 ||
	    cm_kv__rd_u32(r, &c->uid) != 0 || cm_kv__rd_u32(r, &c->gid) != 0 ||
	    cm_kv__rd_i64(r, &c->stamp_ns) != 0 || cm_kv__rd_u32(r, &c->max_value) != 0)
		return -EBADMSG;
	if (c->max_value > CM_VALUE_MAX_LIMIT)
		return -EBADMSG;
	return 0;
}

int cm_kv_cmd_decode(const void *buf, uint32_t len, msgpack_unpacked *up, struct cm_kv_cmd *cmd)
{
	/* Nothing goes in *up (see kv.h); it is initialised so that the
	 * caller's msgpack_unpacked_destroy() is always right. */
	msgpack_unpacked_init(up);
	if (buf == NULL)
		return -EBADMSG;
	struct cm_kv__rd r = {buf, (const uint8_t *)buf + len};
	struct cm_kv_cmd c = {0};
	uint32_t n, op;
	if (cm_kv__rd_array(&r, &n) != 0 || n < CMD_FIELDS ||
	    n > CMD_FIELDS_IF_MOD + CMD_FIELDS_TIMES + 1)
		return -EBADMSG;
	if (cm_kv__rd_u32(&r, &op) != 0 || !is_write_op(op))
		return -EBADMSG;
	c.op = (uint8_t)op;
	if (cm_kv__rd_u32(&r, &c.flags) != 0 || (c.flags & ~(uint32_t)CMD_FLAGS_KNOWN) != 0 ||
	    !flags_fit_op(op, c.flags))
		return -EBADMSG;
	if (cm_kv__rd_str(&r, &c.path) != 0 || cm_kv__rd_str(&r, &c.path2) != 0 ||
	    cm_kv__rd_bin(&r, &c.value) != 0)
		return -EBADMSG;
	if (decode_tail(&r, &c) != 0)
		return -EBADMSG;
	/* The operands come with their flags, and only with them (as encoded). */
	bool lease_lock = op == CM_OP_LEASE || op == CM_OP_LOCK;
	bool if_mod = !lease_lock && (c.flags & CM_PUT_IF_MOD);
	bool times = !lease_lock && (c.flags & CM_SET_TIMES), arg = has_arg(op, c.flags);
	if (n != CMD_FIELDS + (if_mod ? 1u : 0u) + (times ? CMD_FIELDS_TIMES : 0u) + (arg ? 1u : 0u))
		return -EBADMSG;
	if (if_mod && cm_kv__rd_u64(&r, &c.mod_index) != 0)
		return -EBADMSG;
	if (times && (cm_kv__rd_i64(&r, &c.atime_ns) != 0 || cm_kv__rd_i64(&r, &c.mtime_ns) != 0 ||
		      c.atime_ns == CM_TIME_NOW || c.mtime_ns == CM_TIME_NOW))
		return -EBADMSG;
	if (arg && cm_kv__rd_u64(&r, &c.arg) != 0)
		return -EBADMSG;
	if (r.p != r.end)
		return -EBADMSG;
	*cmd = c;
	return 0;
}
