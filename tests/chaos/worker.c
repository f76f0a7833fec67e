/*
 * worker.c: one chaos client: reads, writes and CAS on a few keys through the
 * synchronous client library, each operation recorded as one JSON line.
 *
 *   chaos-worker --servers S --process P --out FILE --keys K1,K2,...
 *                [--write-keys K,...] [--seconds N] [--consistency lin|follower]
 *                [--mix READS,WRITES,CAS] [--seed N] [--timeout-ms MS]
 *                [--pause-ms MS]
 *
 * Reads go to any of --keys; writes and CAS only to --write-keys (default:
 * all of --keys). Every written value is unique ("p<P>-<seq>") so a read
 * names the write it saw. CAS expects the version this process last saw for
 * the key. A line, written when the operation completes:
 *
 *   {"process":P,"type":"read|write|cas","key":"/k","value":"..."|null,
 *    "expect":V,"invoke":NS,"complete":NS,"outcome":"ok|fail|unknown",
 *    "version":V,"mod_index":I,"err":"NAME","consistency":"lin|follower"}
 *
 * Times are CLOCK_MONOTONIC nanoseconds (one clock for every process on the
 * machine). Outcomes: a read that returned is ok (ENOENT: value null,
 * version 0); a failed read is fail (no effect either way). A write or CAS
 * that got -ETIMEDOUT or -EIO is unknown (client.h: it may or may not have
 * been applied); a CAS that got -ECANCELED is fail (the version differed);
 * other errors of writes are the ones client.h says were never applied
 * (fail), except codes this program does not know, recorded as unknown.
 *
 * Exits 0 after --seconds (default 10), 2 on usage errors; SIGTERM or SIGINT
 * ends the loop after the operation in flight.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "confman/client.h"

#define MAX_KEYS 64
#define VALUE_MAX 64

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct keyset {
	char *names[MAX_KEYS]; /* point into the argv copy in buf */
	uint32_t n;
	char buf[4096];
};

static int parse_keys(const char *arg, struct keyset *ks)
{
	if (strlen(arg) >= sizeof(ks->buf))
		return -EINVAL;
	strcpy(ks->buf, arg);
	ks->n = 0;
	for (char *save = NULL, *k = strtok_r(ks->buf, ",", &save); k;
	     k = strtok_r(NULL, ",", &save)) {
		if (ks->n == MAX_KEYS || k[0] != '/')
			return -EINVAL;
		ks->names[ks->n++] = k;
	}
	return ks->n ? 0 : -EINVAL;
}

/* The JSON string of a value this program wrote or read back. */
static void put_json_str(FILE *f, const char *s, uint32_t len)
{
	fputc('"', f);
	for (uint32_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

struct op {
	const char *type;
	const char *key;
	const char *value; /* written value, or the read's (NULL: absent) */
	uint32_t value_len;
	uint64_t expect; /* CAS */
	int64_t invoke, complete;
	const char *outcome;
	uint64_t version, mod_index;
	int err;
};

static void record(FILE *f, unsigned process, const char *consistency, const struct op *op)
{
	fprintf(f, "{\"process\":%u,\"type\":\"%s\",\"key\":", process, op->type);
	put_json_str(f, op->key, (uint32_t)strlen(op->key));
	fputs(",\"value\":", f);
	if (op->value)
		put_json_str(f, op->value, op->value_len);
	else
		fputs("null", f);
	fprintf(f,
		",\"expect\":%llu,\"invoke\":%lld,\"complete\":%lld,\"outcome\":\"%s\","
		"\"version\":%llu,\"mod_index\":%llu,\"err\":\"%s\",\"consistency\":\"%s\"}\n",
		(unsigned long long)op->expect, (long long)op->invoke, (long long)op->complete,
		op->outcome, (unsigned long long)op->version, (unsigned long long)op->mod_index,
		op->err ? cm_errname(op->err) : "", consistency);
	fflush(f);
}

/* Outcome of a write or CAS that returned err != 0 (see the header). */
static const char *write_outcome(int err)
{
	switch (err) {
	case -ETIMEDOUT:
	case -EIO:
		return "unknown";
	case -ECANCELED: /* CAS: the version differed */
	case -ECONNREFUSED:
	case -ENOSPC:
	case CM_ENOLEADER:
	case CM_ENOTLEADER:
	case CM_ETRANSFERRING:
	case CM_EWRONGSHARD:
		return "fail";
	default:
		return "unknown"; /* not known to be harmless: assume it may have happened */
	}
}

static uint32_t pick(uint64_t *rng, uint32_t n)
{
	/* xorshift64: the seed makes a run's choices repeatable */
	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	return (uint32_t)(*rng % n);
}

static const char usage[] =
	"usage: chaos-worker --servers S --process P --out FILE --keys K1,K2 [--write-keys K]\n"
	"       [--seconds N] [--consistency lin|follower] [--mix R,W,C] [--seed N]\n"
	"       [--timeout-ms MS] [--pause-ms MS]\n";

struct opts {
	const char *servers, *out, *consistency;
	unsigned process;
	struct keyset keys, wkeys;
	double seconds;
	unsigned mix[3];
	uint64_t seed;
	uint32_t timeout_ms, pause_ms;
};

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"servers", required_argument, NULL, 's'}, {"process", required_argument, NULL, 'p'},
		{"out", required_argument, NULL, 'o'},     {"keys", required_argument, NULL, 'k'},
		{"write-keys", required_argument, NULL, 'w'},
		{"seconds", required_argument, NULL, 'n'},
		{"consistency", required_argument, NULL, 'c'},
		{"mix", required_argument, NULL, 'm'},     {"seed", required_argument, NULL, 'S'},
		{"timeout-ms", required_argument, NULL, 't'},
		{"pause-ms", required_argument, NULL, 'P'}, {NULL, 0, NULL, 0},
	};
	memset(o, 0, sizeof(*o));
	o->consistency = "lin";
	o->seconds = 10;
	o->mix[0] = 50, o->mix[1] = 30, o->mix[2] = 20;
	o->seed = 1;
	o->timeout_ms = 3000;
	bool wkeys = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 's': o->servers = optarg; break;
		case 'p': o->process = (unsigned)atoi(optarg); break;
		case 'o': o->out = optarg; break;
		case 'k': if (parse_keys(optarg, &o->keys)) return -EINVAL; break;
		case 'w': if (parse_keys(optarg, &o->wkeys)) return -EINVAL; wkeys = true; break;
		case 'n': o->seconds = atof(optarg); break;
		case 'c': o->consistency = optarg; break;
		case 'm':
			if (sscanf(optarg, "%u,%u,%u", &o->mix[0], &o->mix[1], &o->mix[2]) != 3)
				return -EINVAL;
			break;
		case 'S': o->seed = strtoull(optarg, NULL, 10) | 1; break;
		case 't': o->timeout_ms = (uint32_t)atoi(optarg); break;
		case 'P': o->pause_ms = (uint32_t)atoi(optarg); break;
		default: return -EINVAL;
		}
	}
	if (!o->servers || !o->out || !o->keys.n || optind != argc ||
	    o->mix[0] + o->mix[1] + o->mix[2] == 0 ||
	    (strcmp(o->consistency, "lin") && strcmp(o->consistency, "follower")))
		return -EINVAL;
	if (!wkeys)
		o->wkeys = o->keys;
	for (uint32_t i = 0; i < o->wkeys.n; i++) /* names must point into wkeys' own buf */
		o->wkeys.names[i] = o->wkeys.buf + (o->wkeys.names[i] -
			(wkeys ? o->wkeys.buf : o->keys.buf));
	return 0;
}

/* The version this process last saw per write key (for CAS). */
static uint64_t seen[MAX_KEYS];

static void do_read(struct cm_client *c, const struct opts *o, uint64_t *rng, struct op *op,
		    void **value)
{
	op->type = "read";
	op->key = o->keys.names[pick(rng, o->keys.n)];
	struct cm_attr a = {0};
	op->invoke = now_ns();
	op->err = cm_get(c, op->key, value, &op->value_len, &a);
	op->complete = now_ns();
	if (op->err == 0 || op->err == -ENOENT) {
		op->outcome = "ok";
		op->value = op->err == 0 ? *value : NULL;
		op->version = a.version;
		op->mod_index = a.mod_index;
		op->err = 0;
		for (uint32_t i = 0; i < o->wkeys.n; i++)
			if (strcmp(o->wkeys.names[i], op->key) == 0)
				seen[i] = a.version;
	} else {
		op->outcome = op->err == -ETIMEDOUT ? "unknown" : "fail";
	}
}

static void do_write(struct cm_client *c, const struct opts *o, uint64_t *rng, struct op *op,
		     bool cas, char *buf, unsigned long seq)
{
	uint32_t k = pick(rng, o->wkeys.n);
	op->type = cas ? "cas" : "write";
	op->key = o->wkeys.names[k];
	op->value_len = (uint32_t)snprintf(buf, VALUE_MAX, "p%u-%lu", o->process, seq);
	op->value = buf;
	op->expect = cas ? seen[k] : 0;
	struct cm_attr a = {0};
	op->invoke = now_ns();
	op->err = cm_put(c, op->key, buf, op->value_len, cas ? CM_PUT_IF_VERSION : 0, op->expect,
			 &a);
	op->complete = now_ns();
	if (op->err == 0) {
		op->outcome = "ok";
		op->version = a.version;
		op->mod_index = a.mod_index;
		seen[k] = a.version;
	} else {
		op->outcome = write_outcome(op->err);
	}
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN); /* a server may close mid-write: see client.h */
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	struct opts o;
	if (parse_args(argc, argv, &o) != 0) {
		fputs(usage, stderr);
		return 2;
	}
	FILE *f = fopen(o.out, "w");
	if (f == NULL) {
		perror(o.out);
		return 2;
	}
	struct cm_client_opts co;
	cm_client_opts_init(&co);
	co.servers = o.servers;
	co.timeout_ms = o.timeout_ms;
	co.consistency = strcmp(o.consistency, "lin") == 0 ? CM_READ_LINEARIZABLE : CM_READ_FOLLOWER;
	/* TLS as confmanctl: $CONFMAN_CA, $CONFMAN_CERT, $CONFMAN_KEY (the
	 * nemesis's clusters run on TLS); unset or empty: plain TCP. */
	co.ca = getenv("CONFMAN_CA");
	co.cert = getenv("CONFMAN_CERT");
	co.key = getenv("CONFMAN_KEY");
	if (co.ca == NULL || *co.ca == '\0')
		co.ca = co.cert = co.key = NULL;
	struct cm_client *c;
	if (cm_client_open(&co, &c) != 0) {
		fputs("chaos-worker: bad server list\n", stderr);
		return 2;
	}
	uint64_t rng = o.seed * 0x9e3779b97f4a7c15ull + o.process;
	unsigned total = o.mix[0] + o.mix[1] + o.mix[2];
	unsigned long seq = 0, counts[3] = {0};
	int64_t end = now_ns() + (int64_t)(o.seconds * 1e9);
	while (!stopping && now_ns() < end) {
		struct op op = {0};
		void *value = NULL;
		char buf[VALUE_MAX];
		unsigned r = pick(&rng, total);
		if (r < o.mix[0]) {
			do_read(c, &o, &rng, &op, &value);
			counts[0]++;
		} else {
			do_write(c, &o, &rng, &op, r >= o.mix[0] + o.mix[1], buf, ++seq);
			counts[strcmp(op.type, "cas") == 0 ? 2 : 1]++;
		}
		record(f, o.process, o.consistency, &op);
		free(value);
		if (o.pause_ms)
			usleep(o.pause_ms * 1000u);
	}
	cm_client_close(c);
	fclose(f);
	printf("process %u: reads %lu writes %lu cas %lu\n", o.process, counts[0], counts[1],
	       counts[2]);
	return 0;
}
