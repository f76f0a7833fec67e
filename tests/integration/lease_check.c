/*
 * lease_check.c: single lease and lock calls from the client library, for
 * what confmanctl does not offer on its own (a release of a lock not held,
 * an acquire that must not wait). Used by test_lease_cli.py.
 *
 *   lease-check SERVERS grant PATH TTL_MS          -> "OK ID"
 *   lease-check SERVERS acquire PATH LEASE         -> "OK TOKEN" (no waiting)
 *   lease-check SERVERS release PATH LEASE
 *   lease-check SERVERS query PATH                 -> "OK N" then the holders
 *
 * Prints "OK ..." or the error's name (ENOENT, EWOULDBLOCK...) and exits 0,
 * or 2 on usage errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confman/client.h"

static int run(struct cm_client *c, char **argv, int n)
{
	const char *op = argv[0], *path = argv[1];
	uint64_t x = n > 2 ? strtoull(argv[2], NULL, 10) : 0, out = 0;
	if (strcmp(op, "grant") == 0 && n == 3) {
		int rv = cm_lease_grant(c, path, (uint32_t)x, &out);
		return rv ? rv : printf("OK %" PRIu64 "\n", out) < 0;
	}
	if (strcmp(op, "acquire") == 0 && n == 3) {
		int rv = cm_lock_acquire(c, path, x, 0, 0, 0, &out);
		return rv ? rv : printf("OK %" PRIu64 "\n", out) < 0;
	}
	if (strcmp(op, "release") == 0 && n == 3) {
		int rv = cm_lock_release(c, path, x, 0);
		return rv ? rv : printf("OK\n") < 0;
	}
	if (strcmp(op, "query") == 0 && n == 2) {
		struct cm_lock_holder *h;
		uint32_t k;
		int rv = cm_lock_query(c, path, &h, &k);
		if (rv != 0)
			return rv;
		printf("OK %" PRIu32 "\n", k);
		for (uint32_t j = 0; j < k; j++)
			printf("%" PRIu64 " %" PRIu64 " %" PRIu64 " %c\n", h[j].lease, h[j].owner,
			       h[j].token, h[j].shared ? 's' : 'x');
		free(h);
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: lease-check SERVERS grant|acquire|release|query PATH ...\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct cm_client_opts o;
	cm_client_opts_init(&o);
	o.servers = argv[1];
	struct cm_client *c;
	if (cm_client_open(&o, &c) != 0)
		return 2;
	int rv = run(c, argv + 2, argc - 2);
	cm_client_close(c);
	if (rv == 1) {
		fprintf(stderr, "lease-check: bad arguments\n");
		return 2;
	}
	if (rv < 0)
		printf("%s\n", cm_errname(rv));
	return 0;
}
