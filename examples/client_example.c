/*
 * client_example.c: the synchronous client API in a few calls: write a key,
 * read it back, then change it with compare-and-set (CAS).
 *
 *   build/examples/client-example [SERVERS]
 *
 * SERVERS is "host:port,..." (default: $CONFMAN_SERVERS, else the three
 * local servers of scripts/run.sh). Exits 0 on success, 1 on any error
 * (including "no server reachable").
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confman/client.h"

#define KEY "/examples/greeting"

static int report(const char *what, int err)
{
	fprintf(stderr, "client-example: %s: %s (%s)\n", what, cm_strerror(err),
		cm_errname(err));
	return 1;
}

static int put_and_read(struct cm_client *c, uint64_t *version)
{
	struct cm_attr a;
	int err = cm_mkdir(c, "/examples", 0, NULL);
	if (err != 0 && err != -EEXIST)
		return report("mkdir /examples", err);
	err = cm_put(c, KEY, "hello", 5, 0, 0, &a);
	if (err != 0)
		return report("put " KEY, err);
	printf("put %s = \"hello\" -> version %llu\n", KEY, (unsigned long long)a.version);
	void *value;
	uint32_t len;
	err = cm_get(c, KEY, &value, &len, &a);
	if (err != 0)
		return report("get " KEY, err);
	printf("get %s = \"%.*s\" (version %llu)\n", KEY, (int)len, (char *)value,
	       (unsigned long long)a.version);
	free(value);
	*version = a.version;
	return 0;
}

static int compare_and_set(struct cm_client *c, uint64_t version)
{
	struct cm_attr a;
	const char *v = "hello, again";
	int err = cm_put(c, KEY, v, (uint32_t)strlen(v), CM_PUT_IF_VERSION, version, &a);
	if (err != 0)
		return report("CAS " KEY, err);
	printf("CAS %s if version %llu = \"%s\" -> version %llu\n", KEY,
	       (unsigned long long)version, v, (unsigned long long)a.version);
	/* The same CAS again must fail: the version moved on. */
	err = cm_put(c, KEY, "lost update", 11, CM_PUT_IF_VERSION, version, NULL);
	if (err != -ECANCELED)
		return report("second CAS (expected ECANCELED)", err ? err : -EINVAL);
	printf("CAS %s if version %llu again -> %s, as expected\n", KEY,
	       (unsigned long long)version, cm_errname(err));
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN); /* a server may close mid-write: see client.h */
	struct cm_client_opts opts;
	cm_client_opts_init(&opts);
	opts.servers = argc > 1 ? argv[1] : NULL;
	opts.timeout_ms = 3000;
	struct cm_client *c;
	int err = cm_client_open(&opts, &c);
	if (err != 0)
		return report("open", err);
	uint64_t version = 0;
	int rv = put_and_read(c, &version);
	if (rv == 0)
		rv = compare_and_set(c, version);
	cm_client_close(c);
	return rv;
}
