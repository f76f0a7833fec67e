/*
 * lock_loop.c: uncontended lock round trips through the client library, for
 * bench/lock-bench.sh. One lease (granted once, TTL 60 s), then ROUNDS times:
 * acquire (no wait: nobody else holds it) and release, one after the other.
 *
 *   cm-lock-loop --servers S [--path P] [--rounds N]
 *
 * Prints one JSON object: rounds, seconds, round_trips_per_s, and the
 * acquire latency percentiles in microseconds (p50, p90, p99). The servers
 * must be plain TCP or $CONFMAN_CA/CERT/KEY set. Exit 1 on any error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "confman/client.h"
#include "confman/error.h"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int64_t pct(const int64_t *v, uint32_t n, uint32_t p)
{
	return v[(uint64_t)(n - 1) * p / 100] / 1000;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"servers", required_argument, NULL, 's'},
					   {"path", required_argument, NULL, 'p'},
					   {"rounds", required_argument, NULL, 'n'},
					   {NULL, 0, NULL, 0}};
	const char *servers = NULL, *path = "/bench/lock";
	uint32_t rounds = 1000;
	int opt;
	signal(SIGPIPE, SIG_IGN);
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (opt == 's')
			servers = optarg;
		else if (opt == 'p')
			path = optarg;
		else if (opt == 'n')
			rounds = (uint32_t)strtoul(optarg, NULL, 10);
		else
			return 2;
	}
	if (servers == NULL || rounds == 0 || rounds > 10000000) {
		fputs("usage: cm-lock-loop --servers S [--path P] [--rounds N]\n", stderr);
		return 2;
	}
	struct cm_client_opts co;
	cm_client_opts_init(&co);
	co.servers = servers;
	co.ca = getenv("CONFMAN_CA");
	co.cert = getenv("CONFMAN_CERT");
	co.key = getenv("CONFMAN_KEY");
	if (co.ca == NULL || *co.ca == '\0')
		co.ca = co.cert = co.key = NULL;
	struct cm_client *c;
	int64_t *lat = malloc(rounds * sizeof(*lat));
	uint64_t lease = 0, token;
	int rc = lat == NULL ? -ENOMEM : cm_client_open(&co, &c);
	rc = rc ? rc : cm_lease_grant(c, path, 60000, &lease);
	if (rc != 0) {
		fprintf(stderr, "cm-lock-loop: %s\n", cm_strerror(rc));
		return 1;
	}
	int64_t start = now_ns();
	for (uint32_t i = 0; i < rounds && rc == 0; i++) {
		int64_t t0 = now_ns();
		rc = cm_lock_acquire(c, path, lease, 0, 0, 0, &token);
		lat[i] = now_ns() - t0;
		rc = rc ? rc : cm_lock_release(c, path, lease, 0);
	}
	double secs = (double)(now_ns() - start) / 1e9;
	(void)cm_lease_revoke(c, path, lease);
	cm_client_close(c);
	if (rc != 0) {
		fprintf(stderr, "cm-lock-loop: %s\n", cm_strerror(rc));
		return 1;
	}
	qsort(lat, rounds, sizeof(*lat), cmp_i64);
	printf("{\"rounds\":%u,\"seconds\":%.3f,\"round_trips_per_s\":%.1f,"
	       "\"acquire_us\":{\"p50\":%lld,\"p90\":%lld,\"p99\":%lld}}\n",
	       rounds, secs, rounds / secs, (long long)pct(lat, rounds, 50),
	       (long long)pct(lat, rounds, 90), (long long)pct(lat, rounds, 99));
	free(lat);
	return 0;
}
