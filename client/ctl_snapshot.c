/* ctl_snapshot.c: `confmanctl snapshot save|verify|inspect|restore`. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "client/ctl.h"
#include "client/snap.h"
#include "confman/client.h"

static const struct option snap_lopts[] = {
	{"json", no_argument, NULL, 'j'},
	{"from-leader", no_argument, NULL, 'L'},
	{"path", required_argument, NULL, 'p'},
	{"to", required_argument, NULL, 't'},
	{"force", no_argument, NULL, 'f'},
	{"keys", no_argument, NULL, 'k'},
	{NULL, 0, NULL, 0},
};

struct snap_opts {
	bool json, from_leader, force, keys;
	const char *path, *to;
};

static int parse(int argc, char **argv, struct snap_opts *o)
{
	int c;
	optind = 0; /* a fresh scan (GNU): confmanctl's own options were parsed */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "jLp:t:fk", snap_lopts, NULL)) != -1) {
		switch (c) {
		case 'j': o->json = true; break;
		case 'L': o->from_leader = true; break;
		case 'p': o->path = optarg; break;
		case 't': o->to = optarg; break;
		case 'f': o->force = true; break;
		case 'k': o->keys = true; break;
		default: return -1;
		}
	}
	return argc - optind == 1 ? optind : -1;
}

static int open_client(struct cm_ctl_cmd *cc)
{
	int rv = cm_client_open(cc->opts, &cc->client);
	return rv ? cm_ctl_fail("cannot start the client", rv) : 0;
}

int cm_ctl_snapshot(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	if (argc < 2)
		return cm_ctl_usage("snapshot: expected save, verify, inspect or restore");
	const char *sub = argv[1];
	struct snap_opts o = {.json = cc->json};
	int first = parse(argc - 1, argv + 1, &o);
	if (first < 0)
		return cm_ctl_usage("snapshot %s: expected one FILE (and valid options)", sub);
	const char *file = argv[1 + first];
	bool needs_path = strcmp(sub, "restore") == 0;
	if (needs_path != (o.path != NULL) || (o.to && !needs_path) || (o.force && !needs_path))
		return cm_ctl_usage("snapshot %s: --path, --to and --force are restore's", sub);
	if (strcmp(sub, "verify") == 0)
		return cm_ctl_snap_verify(file, o.json, false);
	if (strcmp(sub, "inspect") == 0)
		return cm_ctl_snap_inspect(file, o.json, o.keys);
	if (strcmp(sub, "save") != 0 && !needs_path)
		return cm_ctl_usage("snapshot: unknown subcommand '%s'", sub);
	int rv = open_client(cc);
	if (rv != 0)
		return rv;
	if (needs_path)
		return cm_ctl_snap_restore(cc->client, file, o.path, o.to, o.force);
	const char *cluster = cc->opts->cluster ? cc->opts->cluster : "confman";
	return cm_ctl_snap_save(cc->client, cluster, file, o.from_leader, o.json);
}
