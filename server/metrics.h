/* metrics.h: Prometheus text exposition: a capped buffer, histograms, counters. */
#ifndef CONFMAN_METRICS_H
#define CONFMAN_METRICS_H

/*
 * Everything here writes the Prometheus text format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): per metric
 * family one "# HELP" and one "# TYPE" line, then one sample per line,
 * `name{label="value",...} value`. Nothing is thread-safe: a node updates
 * and writes its metrics on its own loop thread.
 *
 * Metric and label names are program constants: a malformed one is a
 * programmer error and trips an assertion. Label VALUES may come from
 * anywhere (paths, addresses) and are escaped by cm_metrics_label_append().
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "confman/proto.h"

/* ---- cm_buf: a growable byte buffer with a hard cap --------------------- */

#define CM_BUF_MAX_DEFAULT (16u << 20) /* one /metrics page is never larger */

/*
 * A buffer that grows up to max bytes of content. The first write that
 * would pass max fails with -ENOBUFS and makes the buffer "failed" (err is
 * set): every later write fails the same way without writing, so a caller
 * can write a whole page and check err once at the end. Content written
 * before the failure stays, and is always whole writes (never half a line).
 * p is NUL-terminated whenever it is non-NULL (p[len] == '\0').
 * A zeroed struct is an empty buffer with max CM_BUF_MAX_DEFAULT.
 */
struct cm_buf {
	char *p;    /* owned, malloc'd; NULL until the first write */
	size_t len; /* bytes of content, excluding the NUL */
	size_t cap; /* bytes allocated at p */
	size_t max; /* the most content allowed; 0 means CM_BUF_MAX_DEFAULT */
	int err;    /* 0, or the first error (-ENOBUFS, -ENOMEM): sticky */
};

/* cm_buf_init - an empty buffer that holds at most max bytes (0: the default). */
void cm_buf_init(struct cm_buf *b, size_t max);

/*
 * cm_buf_append - append len bytes.
 * Returns 0, -ENOBUFS (max would be passed, or the buffer already failed)
 * or -ENOMEM; on error nothing is appended and b->err is set.
 */
int cm_buf_append(struct cm_buf *b, const void *data, size_t len);

/* cm_buf_printf - append printf output; returns as cm_buf_append. */
int cm_buf_printf(struct cm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cm_buf_vprintf(struct cm_buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/*
 * cm_buf_steal - take the content away: returns p (owned by the caller,
 * free() it; NULL if nothing was ever written) and leaves b empty, with
 * its max and err untouched.
 */
char *cm_buf_steal(struct cm_buf *b);

/* cm_buf_free - release the memory; b is then an empty buffer again. */
void cm_buf_free(struct cm_buf *b);

/* ---- labels, headers and samples ---------------------------------------- */

/*
 * cm_metrics_label_append - append `key="value"` to the label string dst
 * (NUL-terminated, cap bytes in all), after a comma when dst is not empty.
 * value is escaped as the format requires (\\, \", \n). Use the result as
 * the labels argument of the writers below.
 * Returns 0, or -ENAMETOOLONG when the result would not fit (dst is then
 * left as it was).
 */
int cm_metrics_label_append(char *dst, size_t cap, const char *key, const char *value);

/*
 * cm_metrics_write_header - the "# HELP" and "# TYPE" lines of a family.
 * type is "counter", "gauge", "histogram", "summary" or "untyped"; help is
 * escaped (\\, \n). Write it once per family, before the family's samples.
 * Returns as cm_buf_append.
 */
int cm_metrics_write_header(struct cm_buf *out, const char *name, const char *help,
			    const char *type);

/*
 * cm_metrics_write_value - one sample: `name{labels} value`. labels is a
 * string built with cm_metrics_label_append(), or NULL / "" for none.
 * NaN and infinities are written as Prometheus spells them.
 * Returns as cm_buf_append.
 */
int cm_metrics_write_value(struct cm_buf *out, const char *name, const char *labels, double value);

/* cm_metrics_write_u64 - as cm_metrics_write_value, exact for any counter. */
int cm_metrics_write_u64(struct cm_buf *out, const char *name, const char *labels, uint64_t value);

/* ---- latency histograms -------------------------------------------------- */

/* Bucket upper bounds, in seconds: 100 us .. 10 s, then +Inf. */
#define CM_HIST_BUCKETS 16

/* Observations by bucket. A zeroed struct is an empty histogram. */
struct cm_hist {
	uint64_t n[CM_HIST_BUCKETS + 1]; /* NOT cumulative; [CM_HIST_BUCKETS] is > 10 s */
	uint64_t count;
	uint64_t sum_ns; /* saturates at UINT64_MAX (584 years of latency) */
};

/* The upper bound of bucket i (0 <= i < CM_HIST_BUCKETS), in nanoseconds. */
uint64_t cm_metrics_hist_bound_ns(unsigned i);

/* cm_metrics_hist_observe - count one latency of ns nanoseconds. */
void cm_metrics_hist_observe(struct cm_hist *h, uint64_t ns);

/* cm_metrics_hist_quantile_ns - the upper bound of the bucket holding the
 * q-quantile (0 < q <= 1): an upper estimate, as Prometheus' le buckets
 * give. 0 for an empty histogram, UINT64_MAX beyond the last bound. */
uint64_t cm_metrics_hist_quantile_ns(const struct cm_hist *h, double q);

/*
 * cm_metrics_write_hist - a histogram's samples: name_bucket{labels,le="..."}
 * (cumulative, ending with le="+Inf"), name_sum (seconds) and name_count.
 * With help non-NULL the family's HELP/TYPE lines come first; pass NULL for
 * the second and later label sets of one family (the format allows a
 * family's header only once). labels as in cm_metrics_write_value(); it
 * must not contain "le".
 * Returns as cm_buf_append.
 */
int cm_metrics_write_hist(struct cm_buf *out, const char *name, const char *help,
			  const char *labels, const struct cm_hist *h);

/* ---- client requests by op and result ------------------------------------ */

/* What became of a request, coarsely: what an operator alerts on. */
enum cm_result {
	CM_RESULT_OK = 0,
	CM_RESULT_NOT_FOUND,   /* -ENOENT */
	CM_RESULT_CONFLICT,    /* well-formed, but the current state refuses it:
				  -EEXIST, -ENOTEMPTY, -ECANCELED (CAS), -ENOTDIR,
				  -EISDIR, CM_ECONFPENDING */
	CM_RESULT_NOT_LEADER,  /* CM_ENOTLEADER: the client should go to the leader */
	CM_RESULT_UNAVAILABLE, /* retry later or elsewhere: CM_ENOLEADER,
				  CM_ETRANSFERRING, CM_ESTALE, CM_ESHUTDOWN,
				  CM_ELAGGING, -ETIMEDOUT, -EAGAIN, -EBUSY,
				  -ENOBUFS, -ENOSPC, -ENOTCONN, -ECONNRESET */
	CM_RESULT_INVALID,     /* wrong whatever the state: -EINVAL,
				  -ENAMETOOLONG, -EFBIG, -EMSGSIZE, -EBADMSG,
				  -EPROTO, -EXDEV, -EOPNOTSUPP, -ENOSYS,
				  -EOVERFLOW */
	CM_RESULT_OTHER,       /* anything else (-EIO, -ENOMEM, CM_EWRONGSHARD,
				  CM_ECOMPACTED, ...) */
	CM_RESULT_COUNT
};

/* cm_metrics_result - the class of a request's outcome (0 or a negative code). */
enum cm_result cm_metrics_result(int err);

/* cm_metrics_result_name - "ok", "not_found", ...; never NULL. */
const char *cm_metrics_result_name(enum cm_result r);

/* cm_metrics_op_name - "get", "put", ...; "unknown" outside 1..CM_OP_COUNT-1. */
const char *cm_metrics_op_name(uint8_t op);

/* Requests answered, by op (row 0: ops outside enum cm_op) and result. */
struct cm_req_counters {
	uint64_t n[CM_OP_COUNT][CM_RESULT_COUNT];
};

/* cm_metrics_count_request - count one answered request: op as on the wire, err its result. */
void cm_metrics_count_request(struct cm_req_counters *c, uint8_t op, int err);

/* cm_metrics_requests_sum - every answered request, and those that failed
 * for the service's sake (CM_RESULT_UNAVAILABLE or CM_RESULT_OTHER): what
 * `confmanctl status` shows. Not found, conflicts, bad input and redirects
 * are answers, not failures. */
void cm_metrics_requests_sum(const struct cm_req_counters *c, uint64_t *total, uint64_t *failed);

/*
 * cm_metrics_write_requests - the family confman_requests_total (counter),
 * one sample per known op and result, zeros included (so that rate() works
 * from the first scrape); the "unknown" op only once it has been counted.
 * Returns as cm_buf_append.
 */
int cm_metrics_write_requests(struct cm_buf *out, const struct cm_req_counters *c);

#endif /* CONFMAN_METRICS_H */
