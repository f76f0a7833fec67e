/* metrics.c: Prometheus text exposition: a capped buffer, histograms, counters. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/metrics.h"

#define BUF_FIRST_CAP 4096
#define NUM_MAX 32 /* bytes of a formatted number, NUL included */

/* ---- cm_buf ---------------------------------------------------------------- */

void cm_buf_init(struct cm_buf *b, size_t max)
{
	/* Leaves headroom so that max + 1 (the NUL) and doubling never overflow. */
	assert(max <= SIZE_MAX / 4);
	*b = (struct cm_buf){ .max = max };
}

static size_t buf_max(const struct cm_buf *b)
{
	return b->max != 0 ? b->max : CM_BUF_MAX_DEFAULT;
}

/* Make room for extra more bytes of content and the NUL; sets b->err on failure. */
static int buf_reserve(struct cm_buf *b, size_t extra)
{
	if (b->err != 0)
		return b->err;
	size_t max = buf_max(b);
	assert(b->len <= max);
	if (extra > max - b->len)
		return b->err = -ENOBUFS;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap != 0 ? b->cap : BUF_FIRST_CAP;
	while (cap < need)
		cap *= 2;
	if (cap > max + 1)
		cap = max + 1;
	char *p = realloc(b->p, cap);
	if (p == NULL)
		return b->err = -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int cm_buf_append(struct cm_buf *b, const void *data, size_t len)
{
	int rv = buf_reserve(b, len);
	if (rv != 0)
		return rv;
	if (len > 0)
		memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return 0;
}

int cm_buf_vprintf(struct cm_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return b->err != 0 ? b->err : (b->err = -EINVAL);
	int rv = buf_reserve(b, (size_t)n);
	if (rv != 0)
		return rv;
	int m = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	assert(m == n);
	b->len += (size_t)m;
	return 0;
}

int cm_buf_printf(struct cm_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rv = cm_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rv;
}

char *cm_buf_steal(struct cm_buf *b)
{
	char *p = b->p;
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}

void cm_buf_free(struct cm_buf *b)
{
	free(b->p);
	cm_buf_init(b, b->max);
}

/* ---- names and escaping ---------------------------------------------------- */

static bool name_char_ok(char c, bool first, bool colon)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
		return true;
	if (c == ':')
		return colon;
	return !first && c >= '0' && c <= '9';
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metrics; labels without ':' and not "__...". */
static bool name_ok(const char *s, bool metric)
{
	if (s == NULL || s[0] == '\0')
		return false;
	if (!metric && s[0] == '_' && s[1] == '_')
		return false; /* reserved for Prometheus itself */
	for (size_t i = 0; s[i] != '\0'; i++)
		if (!name_char_ok(s[i], i == 0, metric))
			return false;
	return true;
}

/* Bytes of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len = s[0] < 0x80 ? 1 : s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
	if (s[0] >= 0x80 && (s[0] < 0xc2 || s[0] > 0xf4))
		return 0; /* continuation byte, overlong 2-byte lead, or past U+10FFFF */
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* Overlong 3/4-byte forms, UTF-16 surrogates, and past U+10FFFF. */
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))
		return 0;
	if ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return len;
}

#define UTF8_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/*
 * Escape a label value into out, or only count the bytes when out is NULL.
 * Prometheus rejects a whole scrape over one invalid UTF-8 label value, and
 * values can be paths (any bytes): invalid bytes become U+FFFD.
 * Returns the bytes written (or that would be).
 */
static size_t escape_label_value(char *out, const char *value)
{
	const unsigned char *s = (const unsigned char *)value;
	size_t n = strlen(value), o = 0;
	for (size_t i = 0; i < n;) {
		size_t len = utf8_len(s + i, n - i);
		const char *src = (const char *)s + i;
		size_t olen = len;
		char esc[2] = { '\\', 0 };
		if (len == 0) {
			src = UTF8_REPLACEMENT;
			olen = 3;
			len = 1;
		} else if (s[i] == '\\' || s[i] == '"' || s[i] == '\n') {
			esc[1] = s[i] == '\n' ? 'n' : (char)s[i];
			src = esc;
			olen = 2;
		}
		if (out != NULL)
			memcpy(out + o, src, olen);
		o += olen;
		i += len;
	}
	return o;
}

int cm_metrics_label_append(char *dst, size_t cap, const char *key, const char *value)
{
	assert(name_ok(key, false));
	assert(memchr(dst, '\0', cap) != NULL);
	size_t used = strlen(dst), klen = strlen(key);
	size_t elen = escape_label_value(NULL, value);
	/* A comma, key="value", the NUL; elen <= 3 * strlen(value): no overflow. */
	size_t need = (size_t)(used > 0) + klen + 2 + elen + 2;
	if (need > cap - used)
		return -ENAMETOOLONG;
	char *p = dst + used;
	if (used > 0)
		*p++ = ',';
	memcpy(p, key, klen);
	p += klen;
	memcpy(p, "=\"", 2);
	p += 2;
	p += escape_label_value(p, value);
	memcpy(p, "\"", 2);
	return 0;
}

/* ---- headers and samples --------------------------------------------------- */

static bool type_ok(const char *t)
{
	static const char *const types[] = { "counter", "gauge", "histogram", "summary", "untyped" };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(t, types[i]) == 0)
			return true;
	return false;
}

int cm_metrics_write_header(struct cm_buf *out, const char *name, const char *help,
			    const char *type)
{
	assert(name_ok(name, true));
	assert(type_ok(type));
	cm_buf_printf(out, "# HELP %s ", name);
	/* HELP escapes only backslash and newline (quotes stay as they are). */
	for (const char *s = help; *s != '\0'; s++) {
		if (*s == '\\')
			cm_buf_append(out, "\\\\", 2);
		else if (*s == '\n')
			cm_buf_append(out, "\\n", 2);
		else
			cm_buf_append(out, s, 1);
	}
	return cm_buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

/* The shortest of %.15g / %.17g that reads back as v; Prometheus' spellings otherwise. */
static void format_double(char *s, size_t cap, double v)
{
	if (isnan(v)) {
		snprintf(s, cap, "NaN");
	} else if (isinf(v)) {
		snprintf(s, cap, "%s", v > 0 ? "+Inf" : "-Inf");
	} else {
		/* The server never calls setlocale: "%g" writes a '.' as the format wants. */
		snprintf(s, cap, "%.15g", v);
		if (strtod(s, NULL) != v)
			snprintf(s, cap, "%.17g", v);
	}
}

static int write_sample(struct cm_buf *out, const char *name, const char *suffix,
			const char *labels, const char *value)
{
	assert(name_ok(name, true));
	if (labels == NULL || labels[0] == '\0')
		return cm_buf_printf(out, "%s%s %s\n", name, suffix, value);
	return cm_buf_printf(out, "%s%s{%s} %s\n", name, suffix, labels, value);
}

int cm_metrics_write_value(struct cm_buf *out, const char *name, const char *labels, double value)
{
	char num[NUM_MAX];
	format_double(num, sizeof(num), value);
	return write_sample(out, name, "", labels, num);
}

int cm_metrics_write_u64(struct cm_buf *out, const char *name, const char *labels, uint64_t value)
{
	char num[NUM_MAX];
	snprintf(num, sizeof(num), "%" PRIu64, value);
	return write_sample(out, name, "", labels, num);
}

/* ---- histograms ------------------------------------------------------------ */

/* The bounds, and their spelling in "le" (exact, so no float formatting). */
static const struct {
	uint64_t ns;
	const char *le;
} hist_bounds[CM_HIST_BUCKETS] = {
	{ 100000, "0.0001" },   { 250000, "0.00025" },   { 500000, "0.0005" },
	{ 1000000, "0.001" },   { 2500000, "0.0025" },   { 5000000, "0.005" },
	{ 10000000, "0.01" },   { 25000000, "0.025" },   { 50000000, "0.05" },
	{ 100000000, "0.1" },   { 250000000, "0.25" },   { 500000000, "0.5" },
	{ 1000000000, "1" },    { 2500000000, "2.5" },   { 5000000000, "5" },
	{ 10000000000, "10" },
};

uint64_t cm_metrics_hist_bound_ns(unsigned i)
{
	assert(i < CM_HIST_BUCKETS);
	return hist_bounds[i].ns;
}

void cm_metrics_hist_observe(struct cm_hist *h, uint64_t ns)
{
	unsigned i = 0;
	/* le is inclusive: an observation equal to a bound belongs to it. */
	while (i < CM_HIST_BUCKETS && ns > hist_bounds[i].ns)
		i++;
	h->n[i]++;
	h->count++;
	h->sum_ns = ns > UINT64_MAX - h->sum_ns ? UINT64_MAX : h->sum_ns + ns;
}

uint64_t cm_metrics_hist_quantile_ns(const struct cm_hist *h, double q)
{
	if (h->count == 0)
		return 0;
	/* The smallest bucket holding at least q of the observations. */
	double want = q * (double)h->count;
	uint64_t cum = 0;
	for (unsigned i = 0; i < CM_HIST_BUCKETS; i++) {
		cum += h->n[i];
		if ((double)cum >= want)
			return hist_bounds[i].ns;
	}
	return UINT64_MAX;
}

static int write_bucket(struct cm_buf *out, const char *name, const char *labels,
			const char *le, uint64_t cum)
{
	const char *comma = labels != NULL && labels[0] != '\0' ? "," : "";
	return cm_buf_printf(out, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name,
			     comma[0] != '\0' ? labels : "", comma, le, cum);
}

int cm_metrics_write_hist(struct cm_buf *out, const char *name, const char *help,
			  const char *labels, const struct cm_hist *h)
{
	assert(name_ok(name, true));
	/* No assertion that labels lacks "le": a label VALUE may well contain
	 * "le=" (a path), and telling the two apart would mean parsing labels. */
	if (help != NULL)
		cm_metrics_write_header(out, name, help, "histogram");
	uint64_t cum = 0;
	for (unsigned i = 0; i < CM_HIST_BUCKETS; i++) {
		cum += h->n[i];
		write_bucket(out, name, labels, hist_bounds[i].le, cum);
	}
	cum += h->n[CM_HIST_BUCKETS];
	assert(cum == h->count);
	write_bucket(out, name, labels, "+Inf", cum);
	/* The sum in seconds, printed exactly from the integer nanoseconds. */
	char num[NUM_MAX];
	snprintf(num, sizeof(num), "%" PRIu64 ".%09" PRIu64, h->sum_ns / 1000000000u,
		 h->sum_ns % 1000000000u);
	write_sample(out, name, "_sum", labels, num);
	snprintf(num, sizeof(num), "%" PRIu64, h->count);
	return write_sample(out, name, "_count", labels, num);
}

/* ---- requests by op and result --------------------------------------------- */

static enum cm_result result_of_errno(int e)
{
	switch (e) {
	case ENOENT:
		return CM_RESULT_NOT_FOUND;
	case EEXIST: case ENOTEMPTY: case ECANCELED: case ENOTDIR: case EISDIR:
		return CM_RESULT_CONFLICT;
	case ETIMEDOUT: case EAGAIN: case EBUSY: case ENOBUFS: case ENOSPC:
	case ENOTCONN: case ECONNRESET:
		return CM_RESULT_UNAVAILABLE;
	case EINVAL: case ENAMETOOLONG: case EFBIG: case EMSGSIZE: case EBADMSG:
	case EPROTO: case EXDEV: case EOPNOTSUPP: case ENOSYS: case EOVERFLOW:
		return CM_RESULT_INVALID;
	default:
		return CM_RESULT_OTHER;
	}
}

enum cm_result cm_metrics_result(int err)
{
	switch (err) {
	case 0:
		return CM_RESULT_OK;
	case CM_ENOTLEADER:
		return CM_RESULT_NOT_LEADER;
	case CM_ENOLEADER: case CM_ETRANSFERRING: case CM_ESTALE: case CM_ESHUTDOWN:
	case CM_ELAGGING:
		return CM_RESULT_UNAVAILABLE;
	case CM_ECONFPENDING:
		return CM_RESULT_CONFLICT;
	default:
		/* errno values are small; project codes start at -10001. */
		return err < 0 && err > -4096 ? result_of_errno(-err) : CM_RESULT_OTHER;
	}
}

const char *cm_metrics_result_name(enum cm_result r)
{
	static const char *const names[CM_RESULT_COUNT] = {
		[CM_RESULT_OK] = "ok",
		[CM_RESULT_NOT_FOUND] = "not_found",
		[CM_RESULT_CONFLICT] = "conflict",
		[CM_RESULT_NOT_LEADER] = "not_leader",
		[CM_RESULT_UNAVAILABLE] = "unavailable",
		[CM_RESULT_INVALID] = "invalid",
		[CM_RESULT_OTHER] = "other",
	};
	return (unsigned)r < CM_RESULT_COUNT ? names[r] : "other";
}

const char *cm_metrics_op_name(uint8_t op)
{
	static const char *const names[CM_OP_COUNT] = {
		[0] = "unknown",
		[CM_OP_GET] = "get",
		[CM_OP_LIST] = "list",
		[CM_OP_PUT] = "put",
		[CM_OP_DELETE] = "delete",
		[CM_OP_MKDIR] = "mkdir",
		[CM_OP_RENAME] = "rename",
		[CM_OP_WATCH] = "watch",
		[CM_OP_UNWATCH] = "unwatch",
		[CM_OP_STATUS] = "status",
		[CM_OP_SHARDS] = "shards",
		[CM_OP_SHARD_ADD] = "shard_add",
		[CM_OP_CONF_CHANGE] = "conf_change",
		[CM_OP_TRANSFER] = "transfer",
		[CM_OP_NODE_ADD] = "node_add",
		[CM_OP_NODE_REMOVE] = "node_remove",
		[CM_OP_SHARD_SET] = "shard_set",
		[CM_OP_SHARD_SPLIT] = "shard_split",
		[CM_OP_SHARD_MERGE] = "shard_merge",
		[CM_OP_DUMP] = "dump",
		[CM_OP_ACL] = "acl",
		[CM_OP_WHOAMI] = "whoami",
		[CM_OP_LEASE] = "lease",
		[CM_OP_LOCK] = "lock",
		[CM_OP_TOKEN] = "token",
	};
	/* A new op without a name here fails the names test, not a scrape. */
	return op < CM_OP_COUNT && names[op] != NULL ? names[op] : "unknown";
}

void cm_metrics_count_request(struct cm_req_counters *c, uint8_t op, int err)
{
	/* Ops come off the wire: anything unknown is row 0, never an index out of range. */
	unsigned row = op < CM_OP_COUNT ? op : 0;
	c->n[row][cm_metrics_result(err)]++;
}

void cm_metrics_requests_sum(const struct cm_req_counters *c, uint64_t *total, uint64_t *failed)
{
	*total = *failed = 0;
	for (unsigned row = 0; row < CM_OP_COUNT; row++)
		for (unsigned r = 0; r < CM_RESULT_COUNT; r++) {
			*total += c->n[row][r];
			if (r == CM_RESULT_UNAVAILABLE || r == CM_RESULT_OTHER)
				*failed += c->n[row][r];
		}
}

static bool row_used(const struct cm_req_counters *c, unsigned row)
{
	for (unsigned r = 0; r < CM_RESULT_COUNT; r++)
		if (c->n[row][r] != 0)
			return true;
	return false;
}

int cm_metrics_write_requests(struct cm_buf *out, const struct cm_req_counters *c)
{
	static const char name[] = "confman_requests_total";
	cm_metrics_write_header(out, name, "Client requests answered, by op and result.",
				"counter");
	for (unsigned op = 0; op < CM_OP_COUNT; op++) {
		if (op == 0 && !row_used(c, 0))
			continue;
		for (unsigned r = 0; r < CM_RESULT_COUNT; r++) {
			char labels[64];
			/* Both values are short constants: the fixed array always suffices. */
			snprintf(labels, sizeof(labels), "op=\"%s\",result=\"%s\"",
				 cm_metrics_op_name((uint8_t)op),
				 cm_metrics_result_name((enum cm_result)r));
			cm_metrics_write_u64(out, name, labels, c->n[op][r]);
		}
	}
	return out->err;
}
