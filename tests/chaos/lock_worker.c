/*
 * lock_worker.c: one lock chaos client: takes the same cluster lock again and
 * again through the client library and, while holding it, writes its fencing
 * token to the fenced resource (tests/chaos/lockcheck.py's fence).
 *
 *   chaos-lock-worker --servers S --worker NAME --lock PATH --fence SOCKET
 *                     --out FILE [--seconds N] [--ttl-ms T] [--hold-ms H]
 *                     [--timeout-ms MS] [--seed N]
 *
 * One lease (TTL --ttl-ms) kept alive by a keeper thread with its own client
 * every TTL/4. A keepalive sent at t0 and answered "L ms left" proves the
 * lease alive until t0 + L (the leader counted from after t0): the hold's
 * "safe until". A hold: acquire (CM_LOCK_WAIT, at most 5 s), write "begin"
 * to the fence, sleep up to --hold-ms, write "end", release. Both writes are
 * sent whatever the clock says (a stale holder's write is what the fence is
 * for) and carry the safe-until time, so the checker knows which of them a
 * correct lock service must let through. Lines of --out, one per event:
 *
 *   {"worker":"W","ev":"acquire","lease":L,"token":T,"invoke":NS,"complete":NS,
 *    "err":"NAME"}
 *   {"worker":"W","ev":"release",...}   {"worker":"W","ev":"grant",...}
 *
 * The fence protocol (a line each way on a Unix socket): "TOKEN WORKER WHAT
 * SAFE_UNTIL_NS\n", answered "ok\n" or "no MAX\n". Times are CLOCK_MONOTONIC.
 * Exits 0 after --seconds, 2 on usage errors; SIGTERM ends the loop.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "confman/client.h"
#include "confman/error.h"

#define ACQUIRE_WAIT_MS 5000u

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

struct opts {
	const char *servers, *worker, *lock, *fence, *out;
	double seconds;
	uint32_t ttl_ms, hold_ms, timeout_ms;
	uint64_t seed;
};

/* The lease and what the keeper last proved about it (under mu). */
struct keeper {
	struct cm_client *c;
	const char *path;
	uint32_t ttl_ms;
	pthread_mutex_t mu;
	uint64_t lease;
	int64_t safe_until;
	bool stop;
};

static int open_client(const struct opts *o, struct cm_client **c)
{
	struct cm_client_opts co;
	cm_client_opts_init(&co);
	co.servers = o->servers;
	co.timeout_ms = o->timeout_ms;
	co.ca = getenv("CONFMAN_CA"); /* TLS as confmanctl; unset: plain TCP */
	co.cert = getenv("CONFMAN_CERT");
	co.key = getenv("CONFMAN_KEY");
	if (co.ca == NULL || *co.ca == '\0')
		co.ca = co.cert = co.key = NULL;
	return cm_client_open(&co, c);
}

static void *keeper_main(void *arg)
{
	struct keeper *k = arg;
	for (;;) {
		pthread_mutex_lock(&k->mu);
		bool stop = k->stop;
		uint64_t lease = k->lease;
		pthread_mutex_unlock(&k->mu);
		if (stop)
			return NULL;
		if (lease != 0) {
			struct cm_lease_info info;
			int64_t t0 = now_ns();
			int rc = cm_lease_keepalive(k->c, k->path, lease, &info);
			pthread_mutex_lock(&k->mu);
			if (k->lease == lease && rc == 0)
				k->safe_until = t0 + info.left_ms * 1000000;
			else if (k->lease == lease && rc == -ENOENT)
				k->safe_until = 0;
			pthread_mutex_unlock(&k->mu);
		}
		usleep(k->ttl_ms * 250u);
	}
}

static void record(FILE *f, const struct opts *o, const char *ev, uint64_t lease, uint64_t token,
		   int64_t invoke, int64_t complete, int err)
{
	fprintf(f,
		"{\"worker\":\"%s\",\"ev\":\"%s\",\"lease\":%" PRIu64 ",\"token\":%" PRIu64
		",\"invoke\":%" PRId64 ",\"complete\":%" PRId64 ",\"err\":\"%s\"}\n",
		o->worker, ev, lease, token, invoke, complete, err ? cm_errname(err) : "");
	fflush(f);
}

/* One write to the fence; a fence that does not answer is the test's end. */
static void fence_write(const struct opts *o, uint64_t token, const char *what, int64_t safe)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", o->fence);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (fd >= 0)
			close(fd);
		stopping = 1;
		return;
	}
	char line[256], ans[64];
	int len = snprintf(line, sizeof(line), "%" PRIu64 " %s %s %" PRId64 "\n", token, o->worker,
			   what, safe);
	if (write(fd, line, (size_t)len) != len || read(fd, ans, sizeof(ans)) <= 0)
		stopping = 1;
	close(fd);
}

static uint64_t lease_now(struct keeper *k, int64_t *safe)
{
	pthread_mutex_lock(&k->mu);
	uint64_t lease = k->lease;
	*safe = k->safe_until;
	pthread_mutex_unlock(&k->mu);
	return lease;
}

/* A new lease when there is none (or it ended): 0 or the grant's error. */
static int ensure_lease(struct cm_client *c, const struct opts *o, struct keeper *k, FILE *f)
{
	int64_t safe;
	if (lease_now(k, &safe) != 0)
		return 0;
	uint64_t id = 0;
	int64_t t0 = now_ns();
	int rc = cm_lease_grant(c, o->lock, o->ttl_ms, &id);
	record(f, o, "grant", id, 0, t0, now_ns(), rc);
	if (rc != 0)
		return rc;
	pthread_mutex_lock(&k->mu);
	k->lease = id;
	k->safe_until = t0 + (int64_t)o->ttl_ms * 1000000; /* granted after t0 */
	pthread_mutex_unlock(&k->mu);
	return 0;
}

static void drop_lease(struct keeper *k)
{
	pthread_mutex_lock(&k->mu);
	k->lease = 0;
	k->safe_until = 0;
	pthread_mutex_unlock(&k->mu);
}

static void hold_once(struct cm_client *c, const struct opts *o, struct keeper *k, FILE *f,
		      uint64_t *rng)
{
	if (ensure_lease(c, o, k, f) != 0) {
		usleep(100000);
		return;
	}
	int64_t safe;
	uint64_t lease = lease_now(k, &safe), token = 0;
	int64_t t0 = now_ns();
	int rc = cm_lock_acquire(c, o->lock, lease, 0, CM_LOCK_WAIT, ACQUIRE_WAIT_MS, &token);
	record(f, o, "acquire", lease, token, t0, now_ns(), rc);
	if (rc == -ENOENT) {
		drop_lease(k); /* it ended: a new one next time */
		return;
	}
	if (rc != 0) {
		(void)cm_lock_release(c, o->lock, lease, 0); /* an unknown outcome may hold */
		return;
	}
	lease_now(k, &safe);
	fence_write(o, token, "begin", safe);
	*rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
	usleep((useconds_t)(1000u * (o->hold_ms / 2 + *rng % (o->hold_ms / 2 + 1))));
	lease_now(k, &safe);
	fence_write(o, token, "end", safe);
	t0 = now_ns();
	rc = cm_lock_release(c, o->lock, lease, 0);
	record(f, o, "release", lease, token, t0, now_ns(), rc);
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"servers", required_argument, NULL, 's'}, {"worker", required_argument, NULL, 'w'},
		{"lock", required_argument, NULL, 'l'},    {"fence", required_argument, NULL, 'f'},
		{"out", required_argument, NULL, 'o'},     {"seconds", required_argument, NULL, 'n'},
		{"ttl-ms", required_argument, NULL, 'T'},  {"hold-ms", required_argument, NULL, 'H'},
		{"timeout-ms", required_argument, NULL, 't'},
		{"seed", required_argument, NULL, 'S'},    {NULL, 0, NULL, 0},
	};
	*o = (struct opts){.seconds = 10, .ttl_ms = 1500, .hold_ms = 100, .timeout_ms = 2000,
			   .seed = 1};
	int opt;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 's': o->servers = optarg; break;
		case 'w': o->worker = optarg; break;
		case 'l': o->lock = optarg; break;
		case 'f': o->fence = optarg; break;
		case 'o': o->out = optarg; break;
		case 'n': o->seconds = atof(optarg); break;
		case 'T': o->ttl_ms = (uint32_t)atoi(optarg); break;
		case 'H': o->hold_ms = (uint32_t)atoi(optarg); break;
		case 't': o->timeout_ms = (uint32_t)atoi(optarg); break;
		case 'S': o->seed = strtoull(optarg, NULL, 10) | 1; break;
		default: return -EINVAL;
		}
	}
	if (!o->servers || !o->worker || !o->lock || !o->fence || !o->out || optind != argc ||
	    o->ttl_ms < CM_LEASE_TTL_MIN_MS || o->hold_ms == 0 || strchr(o->worker, ' '))
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	struct opts o;
	if (parse_args(argc, argv, &o) != 0) {
		fputs("usage: chaos-lock-worker --servers S --worker NAME --lock PATH --fence SOCKET "
		      "--out FILE [--seconds N] [--ttl-ms T] [--hold-ms H] [--timeout-ms MS] "
		      "[--seed N]\n", stderr);
		return 2;
	}
	FILE *f = fopen(o.out, "w");
	struct cm_client *c = NULL;
	struct keeper k = {.path = o.lock, .ttl_ms = o.ttl_ms, .mu = PTHREAD_MUTEX_INITIALIZER};
	pthread_t th;
	if (f == NULL || open_client(&o, &c) != 0 || open_client(&o, &k.c) != 0 ||
	    pthread_create(&th, NULL, keeper_main, &k) != 0) {
		fputs("chaos-lock-worker: cannot start\n", stderr);
		return 2;
	}
	uint64_t rng = o.seed * 0x9e3779b97f4a7c15ull;
	int64_t end = now_ns() + (int64_t)(o.seconds * 1e9);
	while (!stopping && now_ns() < end)
		hold_once(c, &o, &k, f, &rng);
	pthread_mutex_lock(&k.mu);
	k.stop = true;
	uint64_t lease = k.lease;
	pthread_mutex_unlock(&k.mu);
	pthread_join(th, NULL);
	if (lease != 0)
		(void)cm_lease_revoke(c, o.lock, lease);
	cm_client_close(k.c);
	cm_client_close(c);
	fclose(f);
	return 0;
}
