/* cm_load.c: a closed-loop load generator for confmand, on the asynchronous client API. */

/*
 * One libuv loop, one or more struct cm_ac (--conns; each keeps one TCP
 * connection per server), and --clients virtual clients. A client has at
 * most one request outstanding and sends its next one from the completion
 * callback of the previous one (a closed loop), so --clients is the number
 * of requests in flight and the library pipelines them on its connections.
 *
 * Phases:
 *   preload  for get and mixed: PUT every key once, with the same
 *            concurrency; not timed. A key that fails is retried a few
 *            times; a key that cannot be written stops the run.
 *   warmup   the load runs, nothing is recorded (connections, leader
 *            discovery, caches).
 *   measure  every completion is recorded: a success's latency goes into
 *            the histogram, an error is counted by its name.
 *   drain    no new requests; those in flight finish (not recorded), then
 *            the clients close. Bounded by the request timeout.
 *
 * Latency is the time from cm_ac_submit() to the completion callback,
 * measured with uv_hrtime(); it includes the library's own queueing and
 * any retries it made. The histogram is log-linear (HdrHistogram's idea):
 * 128 linear sub-buckets per power of two of nanoseconds, so a reported
 * percentile is the upper edge of its bucket, at most 0.8 % above the true
 * value; the maximum is exact.
 *
 * Out of memory: the tool prints what failed and exits (it measures, it is
 * not a service).
 */

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "confman/client.h"

#define MAX_CLIENTS 4096  /* = CM_CLIENT_DEFAULT_OUTSTANDING: one cm_ac can hold them all */
#define MAX_CONNS 64
#define MAX_KEYS 10000000u
#define MAX_SECONDS 3600
#define MAX_ERR_KINDS 32  /* distinct error codes told apart; more are "OTHER" */
#define PRELOAD_TRIES 5   /* attempts per key before the preload gives up */
#define RETRY_SUBMIT_MS 10 /* a submit the library refused is tried again after this */
#define DRAIN_EXTRA_MS 1000 /* beyond the request timeout, before closing anyway */
#define KEY_MAX 64
#define MAX_CPU_PIDS 16   /* --cpu-pids: processes whose CPU use is reported */

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_BITS 40 /* 2^40 ns = 18 minutes: longer latencies are clamped */
#define HIST_BUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS) * HIST_SUB + HIST_SUB)

enum op_kind { OP_PUT = 1, OP_GET, OP_MIXED };
enum phase { PH_PRELOAD = 1, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };

struct opts {
	const char *servers; /* borrowed from argv */
	const char *prefix;
	uint32_t clients;
	uint32_t conns;
	enum op_kind op;
	uint32_t read_pct;
	uint32_t value_size;
	uint32_t keys;
	double duration, warmup; /* seconds */
	uint8_t consistency;
	uint32_t timeout_ms;
	bool json;
	int pids[MAX_CPU_PIDS]; /* --cpu-pids */
	uint32_t n_pids;
};

struct hist {
	uint64_t counts[HIST_BUCKETS];
	uint64_t n, max, sum; /* ns */
};

struct err_count {
	int code;
	uint64_t n;
};

struct errs {
	struct err_count v[MAX_ERR_KINDS];
	uint32_t n;
	uint64_t other; /* codes beyond MAX_ERR_KINDS distinct ones */
	uint64_t total;
};

struct load;

struct client {
	struct load *ld;  /* borrowed */
	struct cm_ac *ac; /* borrowed from ld->acs */
	uint64_t t0;      /* uv_hrtime() at submit */
	uint32_t key;     /* preload: the key being written */
	uint32_t tries;   /* preload: attempts at that key */
	bool busy;        /* a request of this client is outstanding */
	uv_timer_t retry; /* RETRY_SUBMIT_MS after a refused submit */
};

struct load {
	uv_loop_t *loop;
	struct opts o;
	enum phase phase;
	struct cm_ac *acs[MAX_CONNS]; /* owned; closed at the end */
	uint32_t n_open;              /* acs not yet closed */
	struct client *cl;            /* owned, o.clients of them */
	uint32_t busy;                /* clients with a request outstanding */
	uint64_t rng;
	char *value;                  /* owned, o.value_size bytes */
	uint64_t seq;                 /* stamped into each value written */
	uint32_t preload_next, preload_done;
	int fatal;                    /* why the run stopped early, 0 if it did not */
	uv_timer_t phase_timer;
	uv_timer_t drain_timer;
	uint64_t t_start, t_end;      /* measure window, uv_hrtime() */
	double cpu_start, cpu_end;    /* this process's CPU seconds */
	double pid_start[MAX_CPU_PIDS], pid_end[MAX_CPU_PIDS]; /* --cpu-pids; < 0 unreadable */
	double host_start, host_end;  /* busy CPU seconds of the whole machine; < 0 unknown */
	uint64_t ok;                  /* successes in the window */
	uint64_t outside_errs;        /* errors in warmup and drain */
	uint64_t preload_ns;
	struct hist h;
	struct errs e;
};

/* ---- histogram ---- */

static uint32_t hist_index(uint64_t v)
{
	if (v >= (1ull << HIST_MAX_BITS))
		v = (1ull << HIST_MAX_BITS) - 1;
	if (v < HIST_SUB)
		return (uint32_t)v;
	uint32_t shift = (uint32_t)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
	return shift * HIST_SUB + (uint32_t)(v >> shift);
}

/* The largest value that lands in bucket idx. */
static uint64_t hist_upper(uint32_t idx)
{
	if (idx < 2 * HIST_SUB)
		return idx;
	uint32_t shift = idx / HIST_SUB - 1;
	uint64_t m = idx - shift * HIST_SUB;
	return ((m + 1) << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t v)
{
	uint32_t idx = hist_index(v);
	assert(idx < HIST_BUCKETS); /* hist_index clamps */
	h->counts[idx]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

/* The q-quantile (0 < q <= 1) in ns; 0 for an empty histogram. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
	if (h->n == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (uint32_t k = 0; k < HIST_BUCKETS; k++) {
		seen += h->counts[k];
		if (seen >= rank) {
			uint64_t u = hist_upper(k);
			return u < h->max ? u : h->max;
		}
	}
	return h->max;
}

/* ---- errors by name ---- */

static void errs_add(struct errs *e, int code)
{
	e->total++;
	for (uint32_t k = 0; k < e->n; k++)
		if (e->v[k].code == code) {
			e->v[k].n++;
			return;
		}
	if (e->n == MAX_ERR_KINDS) {
		e->other++;
		return;
	}
	e->v[e->n++] = (struct err_count){code, 1};
}

/* ---- small helpers ---- */

static uint64_t rng_next(struct load *ld)
{
	/* xorshift64*: the key choice needs spread, not secrecy. */
	ld->rng ^= ld->rng >> 12;
	ld->rng ^= ld->rng << 25;
	ld->rng ^= ld->rng >> 27;
	return ld->rng * 2685821657736338717ull;
}

static uint32_t rng_below(struct load *ld, uint32_t n)
{
	return (uint32_t)((rng_next(ld) >> 32) % n);
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/*
 * CPU seconds (user + system) another process used so far, from
 * /proc/PID/stat (fields 14 and 15, counted after the ')' that ends the
 * command name, which may itself hold spaces). -1 when unreadable.
 */
static double proc_cpu_seconds(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (p == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	long hz = sysconf(_SC_CLK_TCK);
	return hz > 0 ? (double)(ut + st) / (double)hz : -1;
}

/*
 * Busy CPU seconds of the whole machine, all cores (the first line of
 * /proc/stat less idle and iowait): with the servers' and our own share it
 * tells how much of the machine other programs took during the window.
 * -1 when unreadable.
 */
static double host_busy_seconds(void)
{
	FILE *f = fopen("/proc/stat", "r");
	if (f == NULL)
		return -1;
	unsigned long long v[8] = {0};
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		       &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	long hz = sysconf(_SC_CLK_TCK);
	if (n != 8 || hz <= 0)
		return -1;
	/* user nice system idle iowait irq softirq steal */
	unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
	return (double)busy / (double)hz;
}

static void sample_pids(const struct load *ld, double *out)
{
	for (uint32_t k = 0; k < ld->o.n_pids; k++)
		out[k] = proc_cpu_seconds(ld->o.pids[k]);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL) {
		fprintf(stderr, "cm-load: out of memory\n");
		exit(1);
	}
	return p;
}

/* ---- issuing requests ---- */

static void on_done(void *arg, int err, const struct cm_resp *resp);
static void finish_run(struct load *ld);

static void retry_cb(uv_timer_t *t);

/* Send c's next request: a PUT of key when putting, else a GET. */
static void submit(struct client *c, bool put, uint32_t key)
{
	struct load *ld = c->ld;
	char path[KEY_MAX];
	int n = snprintf(path, sizeof(path), "%s/k%08" PRIu32, ld->o.prefix, key);
	struct cm_req r = {
		.op = put ? CM_OP_PUT : CM_OP_GET,
		.consistency = ld->o.consistency,
		.path = {path, (uint32_t)n},
	};
	if (put) {
		/* A fresh value each time: a server may not skip a same-value write. */
		uint64_t s = ++ld->seq;
		memcpy(ld->value, &s, ld->o.value_size < sizeof(s) ? ld->o.value_size : sizeof(s));
		r.value = (struct cm_bytes){ld->value, ld->o.value_size};
	}
	c->t0 = uv_hrtime();
	int rv = cm_ac_submit(c->ac, &r, on_done, c);
	if (rv == 0) {
		c->busy = true;
		ld->busy++;
		return;
	}
	/* Refused before it started (-EBUSY, -ENOMEM): counted, tried again soon. */
	if (ld->phase == PH_MEASURE)
		errs_add(&ld->e, rv);
	else
		ld->outside_errs++;
	uv_timer_start(&c->retry, retry_cb, RETRY_SUBMIT_MS, 0);
}

static void issue(struct client *c)
{
	struct load *ld = c->ld;
	if (ld->phase == PH_PRELOAD) {
		if (ld->preload_next == ld->o.keys)
			return; /* every key is taken: this client waits for the run */
		c->key = ld->preload_next++;
		c->tries = 0;
		submit(c, true, c->key);
		return;
	}
	if (ld->phase != PH_WARMUP && ld->phase != PH_MEASURE)
		return;
	bool put = ld->o.op == OP_PUT ||
		   (ld->o.op == OP_MIXED && rng_below(ld, 100) >= ld->o.read_pct);
	submit(c, put, rng_below(ld, ld->o.keys));
}

static void retry_cb(uv_timer_t *t)
{
	struct client *c = t->data;
	if (c->ld->phase == PH_PRELOAD)
		submit(c, true, c->key);
	else
		issue(c);
}

/* ---- phases ---- */

static void start_measure(struct load *ld);
static void end_measure(struct load *ld);

static void phase_cb(uv_timer_t *t)
{
	struct load *ld = t->data;
	if (ld->phase == PH_WARMUP)
		start_measure(ld);
	else if (ld->phase == PH_MEASURE)
		end_measure(ld);
}

static void start_run(struct load *ld)
{
	ld->phase = PH_WARMUP;
	uv_timer_start(&ld->phase_timer, phase_cb, (uint64_t)(ld->o.warmup * 1000.0), 0);
	for (uint32_t k = 0; k < ld->o.clients; k++)
		if (!ld->cl[k].busy)
			issue(&ld->cl[k]);
}

static void start_measure(struct load *ld)
{
	ld->phase = PH_MEASURE;
	ld->t_start = uv_hrtime();
	ld->cpu_start = cpu_seconds();
	sample_pids(ld, ld->pid_start);
	ld->host_start = host_busy_seconds();
	uv_timer_start(&ld->phase_timer, phase_cb, (uint64_t)(ld->o.duration * 1000.0), 0);
}

static void drain_cb(uv_timer_t *t)
{
	finish_run(t->data); /* requests still out are cancelled by the close */
}

static void end_measure(struct load *ld)
{
	ld->t_end = uv_hrtime();
	ld->cpu_end = cpu_seconds();
	sample_pids(ld, ld->pid_end);
	ld->host_end = host_busy_seconds();
	ld->phase = PH_DRAIN;
	for (uint32_t k = 0; k < ld->o.clients; k++)
		uv_timer_stop(&ld->cl[k].retry);
	if (ld->busy == 0) {
		finish_run(ld);
		return;
	}
	uv_timer_start(&ld->drain_timer, drain_cb, ld->o.timeout_ms + DRAIN_EXTRA_MS, 0);
}

static void handle_closed(uv_handle_t *h)
{
	(void)h;
}

static void ac_closed(void *arg)
{
	struct load *ld = arg;
	ld->n_open--;
}

static void finish_run(struct load *ld)
{
	if (ld->phase == PH_DONE)
		return;
	ld->phase = PH_DONE;
	uv_close((uv_handle_t *)&ld->phase_timer, handle_closed);
	uv_close((uv_handle_t *)&ld->drain_timer, handle_closed);
	for (uint32_t k = 0; k < ld->o.clients; k++)
		uv_close((uv_handle_t *)&ld->cl[k].retry, handle_closed);
	for (uint32_t k = 0; k < ld->o.conns; k++)
		cm_ac_close(ld->acs[k], ac_closed, ld);
}

/* A preload PUT finished: next key, the same key again, or give up. */
static void preload_done(struct client *c, int err)
{
	struct load *ld = c->ld;
	if (err != 0) {
		if (++c->tries < PRELOAD_TRIES) {
			submit(c, true, c->key);
			return;
		}
		fprintf(stderr, "cm-load: preload: key %" PRIu32 " failed %d times, last: %s\n",
			c->key, PRELOAD_TRIES, cm_strerror(err));
		ld->fatal = err;
		finish_run(ld);
		return;
	}
	if (++ld->preload_done == ld->o.keys) {
		ld->preload_ns = uv_hrtime() - ld->preload_ns;
		start_run(ld);
		return;
	}
	issue(c);
}

/* A success must carry what was asked for: a GET the whole value, a PUT
 * the node's new attributes. Anything else counts as -EBADMSG. */
static bool resp_ok(const struct load *ld, const struct cm_resp *resp)
{
	if (resp == NULL || !resp->has_attr)
		return false;
	if (resp->op == CM_OP_GET)
		return resp->value.len == ld->o.value_size && resp->attr.size == ld->o.value_size;
	return resp->op == CM_OP_PUT && resp->attr.version > 0;
}

static void on_done(void *arg, int err, const struct cm_resp *resp)
{
	struct client *c = arg;
	struct load *ld = c->ld;
	uint64_t lat = uv_hrtime() - c->t0;
	c->busy = false;
	ld->busy--;
	switch (ld->phase) {
	case PH_PRELOAD:
		preload_done(c, err);
		return;
	case PH_WARMUP:
		if (err != 0)
			ld->outside_errs++;
		issue(c);
		return;
	case PH_MEASURE:
		if (err == 0 && !resp_ok(ld, resp))
			err = -EBADMSG;
		if (err == 0) {
			ld->ok++;
			hist_add(&ld->h, lat);
		} else {
			errs_add(&ld->e, err);
		}
		issue(c);
		return;
	case PH_DRAIN:
		if (err != 0)
			ld->outside_errs++;
		if (ld->busy == 0)
			finish_run(ld);
		return;
	case PH_DONE:
		return; /* cancelled by the close */
	}
}

/* ---- options ---- */

static const char usage_text[] =
	"usage: cm-load --servers H:P,... [options]\n"
	"\n"
	"Closed-loop load on confmand through the asynchronous client library:\n"
	"each client keeps one request outstanding and sends the next when it\n"
	"completes. Prints ops/s, latency percentiles and errors by name.\n"
	"\n"
	"  --servers H:P,...     servers (default: $CONFMAN_SERVERS, else the\n"
	"                        library's default)\n"
	"  --clients N           concurrent requests (default 64, at most 4096)\n"
	"  --conns N             client instances (each one TCP connection per\n"
	"                        server) the clients are spread over (default 1)\n"
	"  --op put|get|mixed    what to send (default put); get and mixed first\n"
	"                        write every key once (preload, not timed)\n"
	"  --read-pct N          mixed: percent of GETs (default 90)\n"
	"  --value-size BYTES    PUT value size (default 256)\n"
	"  --keys N              keys PREFIX/k00000000.. chosen uniformly (default 10000)\n"
	"  --prefix PATH         directory of the keys (default /cm-load)\n"
	"  --duration S          measured seconds (default 10)\n"
	"  --warmup S            seconds run before measuring (default 2)\n"
	"  --consistency C       GETs: linearizable or follower (default linearizable)\n"
	"  --timeout MS          per request, the library's retries included\n"
	"                        (default 5000)\n"
	"  --cpu-pids PID,...    also report the CPU use of these processes (e.g.\n"
	"                        the servers) over the measured window, from /proc\n"
	"                        (the machine's busy CPU is always reported)\n"
	"  --json                one JSON object instead of text\n"
	"  -h, --help            this text\n"
	"\n"
	"TLS: $CONFMAN_CA, $CONFMAN_CERT and $CONFMAN_KEY as for confmanctl\n"
	"(unset: plain TCP).\n"
	"\n"
	"Exit status: 0 if any request succeeded in the measured window, 1 if none\n"
	"did or the preload failed, 2 for bad usage.\n";

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || *s == '-' || v < min || v > max)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_secs(const char *s, double min, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min) || v > MAX_SECONDS)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_op(const char *s, enum op_kind *op)
{
	if (strcmp(s, "put") == 0)
		*op = OP_PUT;
	else if (strcmp(s, "get") == 0)
		*op = OP_GET;
	else if (strcmp(s, "mixed") == 0)
		*op = OP_MIXED;
	else
		return -EINVAL;
	return 0;
}

static int parse_consistency(const char *s, uint8_t *c)
{
	if (strcmp(s, "linearizable") == 0)
		*c = CM_READ_LINEARIZABLE;
	else if (strcmp(s, "follower") == 0)
		*c = CM_READ_FOLLOWER;
	else
		return -EINVAL;
	return 0;
}

static int check_prefix(const char *p)
{
	size_t n = strlen(p);
	/* Room for "/k" and eight digits within KEY_MAX; the server checks the rest. */
	if (n < 2 || p[0] != '/' || p[n - 1] == '/' || n + 11 >= KEY_MAX)
		return -EINVAL;
	return 0;
}

static int parse_pids(struct opts *o, const char *a)
{
	char buf[256];
	if (strlen(a) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, a);
	o->n_pids = 0;
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		uint32_t v;
		if (o->n_pids == MAX_CPU_PIDS || parse_u32(t, 1, INT32_MAX, &v) != 0)
			return -EINVAL;
		o->pids[o->n_pids++] = (int)v;
	}
	return o->n_pids > 0 ? 0 : -EINVAL;
}

static const struct option long_opts[] = {
	{"servers", required_argument, NULL, 's'},
	{"clients", required_argument, NULL, 'c'},
	{"conns", required_argument, NULL, 'C'},
	{"op", required_argument, NULL, 'o'},
	{"read-pct", required_argument, NULL, 'r'},
	{"value-size", required_argument, NULL, 'V'},
	{"keys", required_argument, NULL, 'k'},
	{"prefix", required_argument, NULL, 'P'},
	{"duration", required_argument, NULL, 'd'},
	{"warmup", required_argument, NULL, 'w'},
	{"consistency", required_argument, NULL, 'y'},
	{"timeout", required_argument, NULL, 't'},
	{"cpu-pids", required_argument, NULL, 'p'},
	{"json", no_argument, NULL, 'j'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int parse_one(struct opts *o, int ch, const char *a)
{
	switch (ch) {
	case 's': o->servers = a; return 0;
	case 'c': return parse_u32(a, 1, MAX_CLIENTS, &o->clients);
	case 'C': return parse_u32(a, 1, MAX_CONNS, &o->conns);
	case 'o': return parse_op(a, &o->op);
	case 'r': return parse_u32(a, 0, 100, &o->read_pct);
	case 'V': return parse_u32(a, 0, CM_VALUE_MAX_DEFAULT, &o->value_size);
	case 'k': return parse_u32(a, 1, MAX_KEYS, &o->keys);
	case 'P': o->prefix = a; return check_prefix(a);
	case 'd': return parse_secs(a, 0.1, &o->duration);
	case 'w': return parse_secs(a, 0.0, &o->warmup);
	case 'y': return parse_consistency(a, &o->consistency);
	case 't': return parse_u32(a, 100, 600000, &o->timeout_ms);
	case 'p': return parse_pids(o, a);
	case 'j': o->json = true; return 0;
	default: return -EINVAL;
	}
}

/* 0 to run, 1 after --help, -EINVAL for bad usage (already reported). */
static int parse_args(struct opts *o, int argc, char **argv)
{
	*o = (struct opts){
		.prefix = "/cm-load", .clients = 64, .conns = 1, .op = OP_PUT, .read_pct = 90,
		.value_size = 256, .keys = 10000, .duration = 10, .warmup = 2,
		.consistency = CM_READ_LINEARIZABLE, .timeout_ms = CM_CLIENT_DEFAULT_TIMEOUT_MS,
	};
	int ch, li = 0;
	while ((ch = getopt_long(argc, argv, "h", long_opts, &li)) != -1) {
		if (ch == 'h') {
			fputs(usage_text, stdout);
			return 1;
		}
		if (ch == '?' || parse_one(o, ch, optarg) != 0) {
			if (ch != '?')
				fprintf(stderr, "cm-load: bad value for --%s: %s\n", long_opts[li].name,
					optarg);
			fputs("Try 'cm-load --help'.\n", stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cm-load: unexpected argument %s\nTry 'cm-load --help'.\n", argv[optind]);
		return -EINVAL;
	}
	if (o->conns > o->clients) {
		fprintf(stderr, "cm-load: --conns must not exceed --clients\n");
		return -EINVAL;
	}
	return 0;
}

/* ---- reporting ---- */

static const char *op_name(enum op_kind op)
{
	return op == OP_PUT ? "put" : op == OP_GET ? "get" : "mixed";
}

static const char *consistency_name(uint8_t c)
{
	return c == CM_READ_FOLLOWER ? "follower" : "linearizable";
}

static double window_s(const struct load *ld)
{
	return (double)(ld->t_end - ld->t_start) / 1e9;
}

static double us(uint64_t ns)
{
	return (double)ns / 1e3;
}

static void print_errs_text(const struct errs *e)
{
	if (e->total == 0) {
		printf("none\n");
		return;
	}
	for (uint32_t k = 0; k < e->n; k++)
		printf("%s%s %" PRIu64, k ? ", " : "", cm_errname(e->v[k].code), e->v[k].n);
	if (e->other)
		printf(", OTHER %" PRIu64, e->other);
	printf("\n");
}

/* CPU use of --cpu-pids process k over the window, in % of one core; -1 unknown. */
static double pid_pct(const struct load *ld, uint32_t k)
{
	if (ld->pid_start[k] < 0 || ld->pid_end[k] < 0)
		return -1;
	return 100.0 * (ld->pid_end[k] - ld->pid_start[k]) / window_s(ld);
}

/* The machine's busy CPU over the window, in % of one core; -1 unknown. */
static double host_pct(const struct load *ld)
{
	if (ld->host_start < 0 || ld->host_end < 0)
		return -1;
	return 100.0 * (ld->host_end - ld->host_start) / window_s(ld);
}

static void print_text(const struct load *ld)
{
	const struct opts *o = &ld->o;
	const struct hist *h = &ld->h;
	double w = window_s(ld);
	printf("cm-load: %s, %" PRIu32 " clients on %" PRIu32 " connection set(s), %" PRIu32
	       "-byte values, %" PRIu32 " keys",
	       op_name(o->op), o->clients, o->conns, o->value_size, o->keys);
	if (o->op != OP_PUT)
		printf(", %s reads", consistency_name(o->consistency));
	if (o->op == OP_MIXED)
		printf(", %" PRIu32 " %% reads", o->read_pct);
	printf("\n");
	if (o->op != OP_PUT)
		printf("preload      %" PRIu32 " keys in %.2f s\n", o->keys, (double)ld->preload_ns / 1e9);
	printf("window       %.2f s after %.1f s warmup\n", w, o->warmup);
	printf("ops/s        %.1f  (%" PRIu64 " ok)\n", (double)ld->ok / w, ld->ok);
	printf("latency us   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
	       us(hist_quantile(h, 0.5)), us(hist_quantile(h, 0.9)), us(hist_quantile(h, 0.99)),
	       us(hist_quantile(h, 0.999)), us(h->max), h->n ? us(h->sum / h->n) : 0.0);
	printf("errors       ");
	print_errs_text(&ld->e);
	printf("outside      %" PRIu64 " errors in warmup and drain\n", ld->outside_errs);
	printf("client cpu   %.1f %% of one core\n", 100.0 * (ld->cpu_end - ld->cpu_start) / w);
	for (uint32_t k = 0; k < o->n_pids; k++)
		printf("pid %-8d %.1f %% of one core\n", o->pids[k], pid_pct(ld, k));
	printf("machine cpu  %.1f %% of one core busy (all processes, %ld cores)\n", host_pct(ld),
	       sysconf(_SC_NPROCESSORS_ONLN));
}

static void print_json(const struct load *ld)
{
	const struct opts *o = &ld->o;
	const struct hist *h = &ld->h;
	double w = window_s(ld);
	printf("{\"op\":\"%s\",\"clients\":%" PRIu32 ",\"conns\":%" PRIu32 ",\"value_size\":%" PRIu32
	       ",\"keys\":%" PRIu32 ",\"consistency\":\"%s\",\"warmup_s\":%.3f,\"window_s\":%.3f,",
	       op_name(o->op), o->clients, o->conns, o->value_size, o->keys,
	       consistency_name(o->consistency), o->warmup, w);
	if (o->op == OP_MIXED)
		printf("\"read_pct\":%" PRIu32 ",", o->read_pct);
	if (o->op != OP_PUT)
		printf("\"preload_s\":%.3f,", (double)ld->preload_ns / 1e9);
	printf("\"ok\":%" PRIu64 ",\"ops_per_s\":%.1f,", ld->ok, (double)ld->ok / w);
	printf("\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
	       "\"mean\":%.1f},",
	       us(hist_quantile(h, 0.5)), us(hist_quantile(h, 0.9)), us(hist_quantile(h, 0.99)),
	       us(hist_quantile(h, 0.999)), us(h->max), h->n ? us(h->sum / h->n) : 0.0);
	printf("\"errors\":{");
	for (uint32_t k = 0; k < ld->e.n; k++)
		printf("%s\"%s\":%" PRIu64, k ? "," : "", cm_errname(ld->e.v[k].code), ld->e.v[k].n);
	if (ld->e.other)
		printf("%s\"OTHER\":%" PRIu64, ld->e.n ? "," : "", ld->e.other);
	printf("},\"errors_total\":%" PRIu64 ",\"outside_errors\":%" PRIu64
	       ",\"client_cpu_pct\":%.1f,\"pid_cpu_pct\":{",
	       ld->e.total, ld->outside_errs, 100.0 * (ld->cpu_end - ld->cpu_start) / w);
	for (uint32_t k = 0; k < o->n_pids; k++)
		printf("%s\"%d\":%.1f", k ? "," : "", o->pids[k], pid_pct(ld, k));
	printf("},\"host_cpu_pct\":%.1f,\"host_cores\":%ld}\n", host_pct(ld),
	       sysconf(_SC_NPROCESSORS_ONLN));
}

/* ---- setup ---- */

static int open_clients(struct load *ld)
{
	struct cm_client_opts co;
	cm_client_opts_init(&co);
	co.servers = ld->o.servers;
	co.timeout_ms = ld->o.timeout_ms;
	co.consistency = ld->o.consistency;
	co.max_outstanding = ld->o.clients;
	/* TLS as confmanctl: the CA and the user's certificate from the
	 * environment (unset or empty: plain TCP). */
	co.ca = getenv("CONFMAN_CA");
	co.cert = getenv("CONFMAN_CERT");
	co.key = getenv("CONFMAN_KEY");
	if (co.ca == NULL || *co.ca == '\0')
		co.ca = co.cert = co.key = NULL;
	for (uint32_t k = 0; k < ld->o.conns; k++) {
		int rv = cm_ac_new(ld->loop, &co, &ld->acs[k]);
		if (rv != 0) {
			fprintf(stderr, "cm-load: cannot create a client: %s\n", cm_strerror(rv));
			for (uint32_t j = 0; j < k; j++)
				cm_ac_close(ld->acs[j], ac_closed, ld);
			return rv;
		}
		ld->n_open++;
	}
	return 0;
}

static void init_load(struct load *ld, uv_loop_t *loop)
{
	ld->loop = loop;
	ld->rng = uv_hrtime() | 1;
	ld->value = xcalloc(ld->o.value_size ? ld->o.value_size : 1, 1);
	for (uint32_t k = 0; k < ld->o.value_size; k++)
		ld->value[k] = (char)('a' + rng_below(ld, 26));
	ld->cl = xcalloc(ld->o.clients, sizeof(*ld->cl));
	for (uint32_t k = 0; k < ld->o.clients; k++) {
		struct client *c = &ld->cl[k];
		c->ld = ld;
		c->ac = ld->acs[k % ld->o.conns];
		uv_timer_init(loop, &c->retry);
		c->retry.data = c;
	}
	uv_timer_init(loop, &ld->phase_timer);
	ld->phase_timer.data = ld;
	uv_timer_init(loop, &ld->drain_timer);
	ld->drain_timer.data = ld;
}

static void start(struct load *ld)
{
	if (ld->o.op == OP_PUT) {
		start_run(ld);
		return;
	}
	ld->phase = PH_PRELOAD;
	ld->preload_ns = uv_hrtime();
	for (uint32_t k = 0; k < ld->o.clients; k++)
		issue(&ld->cl[k]);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN); /* a server may close mid-write: see client.h */
	static struct load ld; /* the histogram is 35 KiB: not on the stack */
	int rv = parse_args(&ld.o, argc, argv);
	if (rv != 0)
		return rv == 1 ? 0 : 2;
	uv_loop_t loop;
	uv_loop_init(&loop);
	ld.loop = &loop;
	if (open_clients(&ld) != 0) {
		uv_run(&loop, UV_RUN_DEFAULT);
		return 1;
	}
	init_load(&ld, &loop);
	start(&ld);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (ld.n_open != 0 || uv_loop_close(&loop) != 0)
		fprintf(stderr, "cm-load: handles left open at exit\n");
	bool measured = ld.fatal == 0 && ld.t_end != 0;
	if (measured && ld.o.json)
		print_json(&ld);
	else if (measured)
		print_text(&ld);
	free(ld.cl);
	free(ld.value);
	return measured && ld.ok > 0 ? 0 : 1;
}
