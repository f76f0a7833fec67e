/* ctl_lease.c: `confmanctl lease grant|keepalive|revoke|ttl|list`. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/ctl.h"
#include "common/duration.h"
#include "confman/client.h"

struct lease_opts {
	const char *path; /* names the group: "/" unless --path */
	uint64_t id;      /* grant --id */
	bool once, keys;
};

static int parse_opts(struct cm_ctl_cmd *cc, struct lease_opts *lo, int argc, char **argv)
{
	static const struct option lopts[] = {
		{"path", required_argument, NULL, 'p'}, {"json", no_argument, NULL, 'j'},
		{"once", no_argument, NULL, 'o'},       {"keys", no_argument, NULL, 'k'},
		{"id", required_argument, NULL, 'i'},   {0},
	};
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "p:j", lopts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'p': lo->path = optarg; break;
		case 'j': cc->json = true; break;
		case 'o': lo->once = true; break;
		case 'k': lo->keys = true; break;
		case 'i':
			errno = 0;
			lo->id = strtoull(optarg, &end, 10);
			if (errno || *end || *optarg < '1' || *optarg > '9')
				return cm_ctl_usage("lease grant: --id wants a number, not '%s'",
						    optarg);
			break;
		default:
			if (optopt > ' ' && optopt < 127)
				return cm_ctl_usage("lease %s: bad option '-%c'", argv[0], optopt);
			return cm_ctl_usage("lease %s: bad option '%s'", argv[0], argv[optind - 1]);
		}
	}
	return 0;
}

/* A lease id: decimal, 1..CM_LEASE_ID_MAX. */
static int parse_id(const char *cmd, const char *s, uint64_t *id)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || errno || *end || v == 0 || v > (uint64_t)CM_LEASE_ID_MAX)
		return cm_ctl_usage("lease %s: a lease id is a number 1..%" PRId64 ", not '%s'",
				    cmd, (int64_t)CM_LEASE_ID_MAX, s);
	*id = v;
	return 0;
}

static void print_info(const struct cm_lease_info *l, bool json, const char *keys)
{
	if (!json) {
		printf("lease %" PRIu64 ": ttl %" PRIu32 " ms, %" PRId64 " ms left, %" PRIu32
		       " keys\n", l->id, l->ttl_ms, l->left_ms, l->n_keys);
		fputs(keys ? keys : "", stdout);
		return;
	}
	printf("{\"id\":%" PRIu64 ",\"ttl_ms\":%" PRIu32 ",\"left_ms\":%" PRId64
	       ",\"keys\":%" PRIu32, l->id, l->ttl_ms, l->left_ms, l->n_keys);
	if (l->granted_index)
		printf(",\"granted_index\":%" PRIu64, l->granted_index);
	if (keys) {
		fputs(",\"paths\":[", stdout);
		bool first = true;
		for (const char *p = keys; *p;) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);
			if (n > 0) {
				fputs(first ? "" : ",", stdout);
				cm_ctl_json_str(stdout, p, n);
				first = false;
			}
			p += n + (nl != NULL);
		}
		fputc(']', stdout);
	}
	puts("}");
}

static int lease_grant(struct cm_ctl_cmd *cc, const struct lease_opts *lo, const char *ttl)
{
	uint64_t ms;
	if (cm_parse_duration(ttl, &ms) != 0)
		return cm_ctl_usage("lease grant: a TTL is like 10s, 500ms or 2m, not '%s'", ttl);
	if (ms < CM_LEASE_TTL_MIN_MS || ms > CM_LEASE_TTL_MAX_MS) {
		fprintf(stderr, "confmanctl: lease grant: the TTL must be 1s to 30d, not %s\n", ttl);
		return CM_CTL_INVALID;
	}
	if (lo->id > (uint64_t)CM_LEASE_ID_MAX)
		return cm_ctl_usage("lease grant: --id at most %" PRId64, (int64_t)CM_LEASE_ID_MAX);
	uint64_t id = lo->id;
	int err = cm_lease_grant(cc->client, lo->path, (uint32_t)ms, &id);
	if (err)
		return cm_ctl_fail("lease grant", err);
	if (cc->json)
		printf("{\"id\":%" PRIu64 ",\"ttl_ms\":%" PRIu64 "}\n", id, ms);
	else
		printf("%" PRIu64 "\n", id);
	return CM_CTL_OK;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Keep id alive until it is gone or we are killed: one keepalive every
 * third of the TTL, the time left printed after each. */
static int lease_keepalive(struct cm_ctl_cmd *cc, const struct lease_opts *lo, uint64_t id)
{
	char what[64];
	snprintf(what, sizeof(what), "lease %" PRIu64, id);
	for (;;) {
		struct cm_lease_info info;
		int err = cm_lease_keepalive(cc->client, lo->path, id, &info);
		if (err == -ENOENT || (err != 0 && lo->once)) {
			if (err == -ENOENT)
				fprintf(stderr, "confmanctl: %s: not held (expired, revoked or never "
					"granted in %s's group) (ENOENT)\n", what, lo->path);
			return err == -ENOENT ? CM_CTL_NOTFOUND : cm_ctl_fail(what, err);
		}
		if (err != 0) {
			cm_ctl_fail(what, err); /* the cluster may come back: go on */
			sleep_ms(500);
			continue;
		}
		print_info(&info, cc->json, NULL);
		if (fflush(stdout) != 0 || lo->once)
			return CM_CTL_OK;
		sleep_ms(info.ttl_ms / 3 ? info.ttl_ms / 3 : 1000);
	}
}

static int lease_list(struct cm_ctl_cmd *cc, const struct lease_opts *lo)
{
	struct cm_lease_info *ls;
	uint32_t n;
	int err = cm_lease_list(cc->client, lo->path, &ls, &n);
	if (err)
		return cm_ctl_fail("lease list", err);
	if (cc->json)
		fputs("{\"leases\":[", stdout);
	else
		printf("%-20s %10s %10s %6s\n", "ID", "TTL_MS", "LEFT_MS", "KEYS");
	for (uint32_t k = 0; k < n; k++) {
		if (cc->json)
			printf("%s{\"id\":%" PRIu64 ",\"ttl_ms\":%" PRIu32 ",\"left_ms\":%" PRId64
			       ",\"keys\":%" PRIu32 "}", k ? "," : "", ls[k].id, ls[k].ttl_ms,
			       ls[k].left_ms, ls[k].n_keys);
		else
			printf("%-20" PRIu64 " %10" PRIu32 " %10" PRId64 " %6" PRIu32 "\n", ls[k].id,
			       ls[k].ttl_ms, ls[k].left_ms, ls[k].n_keys);
	}
	if (cc->json)
		puts("]}");
	free(ls);
	return CM_CTL_OK;
}

static int lease_on_id(struct cm_ctl_cmd *cc, const struct lease_opts *lo, const char *sub,
		       uint64_t id)
{
	if (strcmp(sub, "keepalive") == 0)
		return lease_keepalive(cc, lo, id);
	char what[64];
	snprintf(what, sizeof(what), "lease %" PRIu64, id);
	if (strcmp(sub, "revoke") == 0) {
		int err = cm_lease_revoke(cc->client, lo->path, id);
		return err ? cm_ctl_fail(what, err) : CM_CTL_OK;
	}
	struct cm_lease_info info;
	char *keys = NULL;
	int err = cm_lease_ttl(cc->client, lo->path, id, &info, lo->keys ? &keys : NULL);
	if (err)
		return cm_ctl_fail(what, err);
	print_info(&info, cc->json, keys);
	free(keys);
	return CM_CTL_OK;
}

int cm_ctl_lease(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	if (argc < 2)
		return cm_ctl_usage("lease: expected grant, keepalive, revoke, ttl or list");
	const char *sub = argv[1];
	struct lease_opts lo = {.path = "/"};
	int rv = parse_opts(cc, &lo, argc - 1, argv + 1);
	if (rv != 0)
		return rv;
	int nargs = argc - 1 - optind; /* after getopt's permutation */
	char **args = argv + 1 + optind;
	bool list = strcmp(sub, "list") == 0, grant = strcmp(sub, "grant") == 0;
	bool on_id = strcmp(sub, "keepalive") == 0 || strcmp(sub, "revoke") == 0 ||
		     strcmp(sub, "ttl") == 0;
	if (!list && !grant && !on_id)
		return cm_ctl_usage("lease: unknown subcommand '%s'", sub);
	if (nargs != (list ? 0 : 1))
		return cm_ctl_usage("lease %s: expected %s", sub,
				    list ? "no argument" : grant ? "a TTL" : "a lease id");
	uint64_t id = 0;
	if (on_id && (rv = parse_id(sub, args[0], &id)) != 0)
		return rv;
	if ((rv = cm_client_open(cc->opts, &cc->client)) != 0)
		return cm_ctl_fail("cannot start the client", rv);
	if (list)
		return lease_list(cc, &lo);
	return grant ? lease_grant(cc, &lo, args[0]) : lease_on_id(cc, &lo, sub, id);
}
