/*
 * session_check.c: one client session checking its own guarantees with
 * follower reads: read-your-writes on the key it writes, and monotonic reads
 * on a key another session writes. Used by test_reads.py while followers are
 * paused and leaders killed.
 *
 *   session-check SERVERS MY_KEY OTHER_KEY SECONDS
 *
 * Prints "writes W reads R errors E violations V" and exits 1 on any
 * violation, 2 on usage errors.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "confman/client.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The value as a counter; -1 when absent or not a number. */
static long read_counter(struct cm_client *c, const char *key, int *err)
{
	void *value = NULL;
	uint32_t len = 0;
	*err = cm_get(c, key, &value, &len, NULL);
	long v = -1;
	if (*err == 0) {
		char buf[32] = {0};
		memcpy(buf, value, len < sizeof(buf) - 1 ? len : sizeof(buf) - 1);
		v = atol(buf);
	}
	free(value);
	return v;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN); /* a server may close mid-write: see client.h */
	if (argc != 5) {
		fprintf(stderr, "usage: session-check SERVERS MY_KEY OTHER_KEY SECONDS\n");
		return 2;
	}
	struct cm_client_opts o;
	cm_client_opts_init(&o);
	o.servers = argv[1];
	o.consistency = CM_READ_FOLLOWER;
	o.timeout_ms = 4000;
	struct cm_client *c;
	if (cm_client_open(&o, &c) != 0)
		return 2;
	long written = 0, other_seen = -1, writes = 0, reads = 0, errors = 0, violations = 0;
	double end = now_s() + atof(argv[4]);
	while (now_s() < end) {
		char buf[32];
		int n = snprintf(buf, sizeof(buf), "%ld", written + 1);
		if (cm_put(c, argv[2], buf, (uint32_t)n, 0, 0, NULL) == 0) {
			written++;
			writes++;
		} else {
			errors++; /* outcome unknown: a later read may show it, not less */
		}
		int err;
		long mine = read_counter(c, argv[2], &err);
		reads++;
		if (err != 0) {
			errors++;
		} else if (mine < written) {
			violations++;
			fprintf(stderr, "read-your-writes: wrote %ld, read %ld\n", written, mine);
		} else {
			written = mine; /* an unknown-outcome write did land */
		}
		long other = read_counter(c, argv[3], &err);
		reads++;
		if (err == -2 /* ENOENT */ && other_seen >= 0) {
			violations++;
			fprintf(stderr, "monotonic reads: saw %ld, then nothing\n", other_seen);
		} else if (err != 0 && err != -2 /* ENOENT: the other has not written yet */) {
			errors++;
		} else if (err == 0 && other < other_seen) {
			violations++;
			fprintf(stderr, "monotonic reads: saw %ld, then %ld\n", other_seen, other);
		} else if (err == 0) {
			other_seen = other;
		}
	}
	printf("writes %ld reads %ld errors %ld violations %ld\n", writes, reads, errors,
	       violations);
	cm_client_close(c);
	return violations ? 1 : 0;
}
