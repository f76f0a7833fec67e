/* ctl_split.c: `confmanctl shard split` and `shard merge` (client/split.c). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client/ctl.h"
#include "confman/client.h"
#include "confman/error.h"

static int open_client(struct cm_ctl_cmd *cc)
{
	int rv = cm_client_open(cc->opts, &cc->client);
	return rv ? cm_ctl_fail("cannot start the client", rv) : 0;
}

/* What a refusal means here, on top of cm_ctl_fail's message. */
static int refused(const char *cmd, const char *prefix, int err)
{
	const char *why = err == -EEXIST	   ? "a shard already"
			  : err == -EBUSY	   ? "a shard lies below it (split or merge that one first)"
			  : err == -ENOENT	   ? "no such directory, or no such shard"
			  : err == CM_ECONFPENDING ? "its group is still changing members (after 10 s)"
			  : err == -EINVAL	   ? "not allowed here (\"/\", or a shard of the cluster file)"
						   : NULL;
	if (why != NULL) {
		fprintf(stderr, "confmanctl: shard %s %s: %s (%s)\n", cmd, prefix, why,
			cm_errname(err));
		return err == -ENOENT ? CM_CTL_NOTFOUND : CM_CTL_USAGE;
	}
	return cm_ctl_fail(prefix, err);
}

static const struct option split_lopts[] = {
	{"replicas", required_argument, NULL, 'r'},
	{"json", no_argument, NULL, 'j'},
	{NULL, 0, NULL, 0},
};

/* shard split PREFIX [--replicas IDS]: then `shard move` when asked. */
int cm_ctl_shard_split(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	const char *replicas = NULL;
	int opt;
	optind = 0; /* a fresh scan (GNU): confmanctl's own options were parsed */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "r:j", split_lopts, NULL)) != -1) {
		if (opt == 'r')
			replicas = optarg;
		else if (opt == 'j')
			cc->json = true;
		else
			return cm_ctl_usage("shard split: bad option");
	}
	if (argc - optind != 1)
		return cm_ctl_usage("shard split: expected PREFIX");
	const char *prefix = argv[optind];
	int rv = open_client(cc);
	if (rv != 0)
		return rv;
	uint64_t group = 0, born = 0;
	int err = cm_shard_split(cc->client, prefix, &group, &born);
	/* The parent still applying a membership change (a move just ran):
	 * transient, every step is repeatable, so wait it out (10 s at most). */
	for (int k = 0; k < 50 && err == CM_ECONFPENDING; k++) {
		struct timespec ts = {0, 200 * 1000 * 1000};
		nanosleep(&ts, NULL);
		err = cm_shard_split(cc->client, prefix, &group, &born);
	}
	if (err != 0)
		return refused("split", prefix, err);
	if (cc->json)
		printf("{\"prefix\":\"%s\",\"group\":%" PRIu64 ",\"born\":%" PRIu64 "}\n", prefix,
		       group, born);
	else
		printf("%s: split off to group %" PRIu64 " at index %" PRIu64 "\n", prefix, group,
		       born);
	fflush(stdout);
	if (replicas == NULL)
		return CM_CTL_OK;
	char *move[] = {"move", (char *)prefix, "--replicas", (char *)replicas, NULL};
	return cm_ctl_shard_move(cc, 4, move);
}

static void on_progress(void *arg, uint64_t copied)
{
	(void)arg;
	fprintf(stderr, "  copied %" PRIu64 " files and directories\n", copied);
}

/* shard merge PREFIX */
int cm_ctl_shard_merge(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[2], "--json") == 0) {
		cc->json = true;
		argc--;
	}
	if (argc != 2 || argv[1][0] != '/')
		return cm_ctl_usage("shard merge: expected PREFIX");
	const char *prefix = argv[1];
	int rv = open_client(cc);
	if (rv != 0)
		return rv;
	int err = cm_shard_merge(cc->client, prefix, on_progress, NULL);
	if (err != 0)
		return refused("merge", prefix, err);
	if (cc->json)
		printf("{\"prefix\":\"%s\",\"merged\":true}\n", prefix);
	else
		printf("%s: merged back into its parent\n", prefix);
	return CM_CTL_OK;
}
