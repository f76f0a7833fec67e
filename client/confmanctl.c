/* confmanctl.c: the command-line client: get, put, rm, ls, mkdir, mv, watch, status, shards,
 * nodes, export, import. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/ctl.h"
#include "client/ctl_tar.h"
#include "confman/client.h"

/*
 * Out of memory is an error like any other here: reported (ENOMEM) with
 * exit code 1. Options of a command come before its arguments ("rm -r /a");
 * "--" ends them, so a value may start with '-'.
 */

static const char usage_text[] =
	"usage: confmanctl [OPTIONS] COMMAND [ARGS]\n"
	"\n"
	"Options:\n"
	"  -s, --servers H:P,...   servers to talk to (default: $CONFMAN_SERVERS, else\n"
	"                          " CM_CLIENT_DEFAULT_SERVERS ")\n"
	"  -c, --cluster ID        cluster id (default: " CM_CLIENT_DEFAULT_CLUSTER ")\n"
	"  -t, --timeout MS        per request, retries included (default: 5000)\n"
	"      --consistency C     reads: linearizable or follower (default: linearizable)\n"
	"      --ca FILE           TLS: the CA bundle of the cluster (default:\n"
	"                          $CONFMAN_CA; none: plain TCP, insecure clusters only)\n"
	"      --cert FILE         TLS: this user's certificate, CN = user, OU = groups\n"
	"                          (default: $CONFMAN_CERT)\n"
	"      --key FILE          its key, mode 0600 (default: $CONFMAN_KEY)\n"
	"  -j, --json              machine-readable output\n"
	"  -h, --help              this text\n"
	"\n"
	"Commands:\n"
	"  get [--from H:P] PATH           print the value, raw (--json: an object with\n"
	"                                  the value, as base64 when not UTF-8, and metadata)\n"
	"  put [--if-version N] [--create] [--lease ID] PATH VALUE|-\n"
	"                                  write a value (- reads it from stdin);\n"
	"                                  --if-version: only if the version is N (0: absent);\n"
	"                                  --lease: the file goes when lease ID (of PATH's\n"
	"                                  group) ends; 0 detaches it\n"
	"  rm [-r] [-d] PATH               remove a file; -d an empty directory,\n"
	"                                  -r a directory and everything below it\n"
	"  ls [-l] PATH                    list a directory (-l: mode, version, size, mtime)\n"
	"  mkdir PATH                      create a directory\n"
	"  mv FROM TO                      rename, atomically (same shard only)\n"
	"  watch [--from INDEX] PATH       print \"INDEX KIND PATH [-> PATH2]\" per change\n"
	"                                  below PATH until interrupted\n"
	"  status                          every server's node id, health (ready or why\n"
	"                                  not, store use, fsync p50/p99, requests and\n"
	"                                  failures, each peer's link and traffic) and\n"
	"                                  groups: role, term, leader, commit/applied/last,\n"
	"                                  members (learners marked); on a group's leader\n"
	"                                  each member's match and lag, a pending change\n"
	"  shards                          the shard map: its epoch, each shard's group,\n"
	"                                  prefix and replica node ids, each node's address\n"
	"  shard add --replicas ID,... PREFIX\n"
	"                                  make PREFIX a shard of its own, served by a new\n"
	"                                  group on those nodes; nothing may exist at PREFIX\n"
	"  shard move PREFIX|meta --replicas ID,... [--timeout S]\n"
	"                                  change the nodes that serve a shard (meta: the\n"
	"                                  meta group's voters), one safe step at a time:\n"
	"                                  add learners, wait for them (progress shown),\n"
	"                                  promote, move leadership, remove; re-run to resume\n"
	"  shard split PREFIX [--replicas ID,...] [--json]\n"
	"                                  make a written PREFIX a shard, online: its keys\n"
	"                                  move to a new group on the parent's nodes at one\n"
	"                                  log index (then shard move to --replicas)\n"
	"  shard merge PREFIX [--json]     fold a shard back into its parent (writers below\n"
	"                                  PREFIX wait while its files are copied)\n"
	"  acl list | acl grant|revoke \"PERM PRINCIPAL PREFIX\"\n"
	"                                  access rules: PERM read|write|admin, PRINCIPAL\n"
	"                                  user:NAME or group:NAME (a certificate's CN, OU)\n"
	"  whoami                          the identity the servers see\n"
	"  lease grant TTL [--id ID] [--path P]\n"
	"                                  grant a lease in P's group (default /), print\n"
	"                                  its id; TTL like 10s, 500ms, 2m (1s to 30d)\n"
	"  lease keepalive ID [--once] [--path P]\n"
	"                                  keep it alive until killed (every TTL/3), print\n"
	"                                  the time left; exit 3 once it is gone\n"
	"  lease revoke ID [--path P]      end it now: its files are deleted, its locks freed\n"
	"  lease ttl ID [--keys] [--path P] | lease list [--path P]\n"
	"                                  TTL, time left, keys (--keys: their paths)\n"
	"  lock PATH [--ttl D] [--timeout D] [--shared] -- CMD [ARGS...]\n"
	"                                  run CMD holding the cluster lock PATH (FIFO;\n"
	"                                  --ttl of its lease, default 10s; --timeout: give\n"
	"                                  up waiting); CMD gets CONFMAN_FENCE=<token>, a\n"
	"                                  number that grows with every holder\n"
	"  elect PATH VALUE [--ttl D] -- CMD [ARGS...]\n"
	"                                  campaign (lock PATH), then write VALUE to PATH\n"
	"                                  for as long as we lead, and run CMD meanwhile\n"
	"  elect --watch PATH              print each new leader's VALUE\n"
	"  token create USER [--group G]... [--ttl DUR]\n"
	"                                  a bearer token for the gateway, printed once\n"
	"                                  (DUR: 90s, 15m, 12h, 30d; default: no expiry)\n"
	"  token revoke ID | token list [--json]\n"
	"                                  forget a token (ID: its part before '.'); list\n"
	"                                  ids, expiry, identities (never the tokens)\n"
	"  snapshot save FILE|- [--from-leader] [--json]\n"
	"                                  back up every shard, each at a linearizable\n"
	"                                  point, from a follower; checksummed, fsynced,\n"
	"                                  renamed into place, then verified\n"
	"  snapshot verify|inspect FILE [--json]\n"
	"                                  check every section / list shards, keys, sizes\n"
	"                                  (inspect --keys: every file as a JSON line)\n"
	"  snapshot restore FILE --path P [--to Q] [--force]\n"
	"                                  write a saved subtree back as ordinary writes\n"
	"                                  (refuses to overwrite files unless --force)\n"
	"  node list                       id, address, HTTP address, state, meta kind\n"
	"  node add ID --address H:P [--http H:P] [--timeout S]\n"
	"                                  record a node, make it a meta learner\n"
	"  node remove ID [--to ID,...] [--timeout S]\n"
	"                                  move every replica of ID to the --to nodes (the\n"
	"                                  least loaded that is not a replica already),\n"
	"                                  take it out of the meta group, mark it removed\n"
	"  export PATH [FILE|-]            the subtree below PATH as a pax tar stream (to\n"
	"                                  stdout, or FILE written whole or not at all):\n"
	"                                  names relative to PATH, contents, modes, numeric\n"
	"                                  uid/gid, times, directories, symlinks; a summary\n"
	"                                  (and progress on a terminal) on stderr\n"
	"  import [--force] FILE|- PATH    write a tar's entries below PATH as ordinary\n"
	"                                  writes (mounts see them); an existing file is\n"
	"                                  kept unless --force (exit 4). Absolute paths,\n"
	"                                  '..', devices, FIFOs, sockets, hard links, values\n"
	"                                  over the cluster's limit and invalid names are\n"
	"                                  refused or skipped, each named on stderr (exit 6)\n"
	"  help                            this text\n"
	"\n"
	"Exit codes:\n"
	"  0  success (shard move, node add|remove: done)\n"
	"  1  other error\n"
	"  2  usage error, or refused: a step that would leave a group without a\n"
	"     quorum of live, caught-up voters (NOQUORUM; the steps before it stay\n"
	"     done), an unknown node or shard, node remove with nowhere to move a\n"
	"     replica (then nothing changed)\n"
	"  3  not found (ENOENT; NONODE: no such node)\n"
	"  4  conflict: version mismatch or already exists (ECANCELED, EEXIST);\n"
	"     shard add: the prefix is not empty or is a shard already;\n"
	"     node add: the id exists with another address, or was removed;\n"
	"     import: an entry's file existed (or a directory or file was in the way)\n"
	"  5  unavailable: timeout, no leader, connection refused (ETIMEDOUT,\n"
	"     NOLEADER, ECONNREFUSED; also EIO: a write's outcome is then unknown);\n"
	"     shard move, node add|remove: --timeout passed (re-run to go on)\n"
	"  6  invalid: bad argument or path, too big, not empty, wrong type (EINVAL,\n"
	"     ENAMETOOLONG, EFBIG, ENOTEMPTY, EISDIR, ENOTDIR); import: an entry was\n"
	"     refused or skipped, or the input is no tar\n"
	"  7  denied: the access rules do not allow it (EACCES)\n"
	"  lock and elect exit with CMD's status (128+N: killed by signal N), or:\n"
	"  124  --timeout passed before the lock was acquired\n"
	"  125  the lease ended (expired, revoked, or no keepalive answered for nine\n"
	"       tenths of its TTL) while the lock was held or waited for; a running\n"
	"       CMD got SIGTERM (SIGKILL 2 s later)\n"
	"  126  CMD could not be run; 127: no such CMD\n"
	"  128+N  interrupted by signal N while waiting (the lease was revoked)\n"
	"  1-7  as above, before CMD started (granting, acquiring)\n"
	"  export exits 1 when an entry changed while it was read (the archive has\n"
	"  it as read, like GNU tar's \"file changed as we read it\"); import exits 1\n"
	"  when a write failed otherwise. Both end with a summary line on stderr.\n";

struct ctl {
	struct cm_client_opts opts;
	const char *servers;      /* the list in force, for status */
	bool json;
	struct cm_client *client; /* opened by the command */
};

typedef int (*ctl_cmd_fn)(struct ctl *ctl, int argc, char **argv);

/* ---- reporting: cm_ctl_fail(), cm_ctl_usage() (ctl_fmt.c) ---- */

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	if (s == NULL || *s < '0' || *s > '9')
		return false;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*v = x;
	return true;
}

static int open_client(struct ctl *ctl)
{
	int rv = cm_client_open(&ctl->opts, &ctl->client);
	if (rv == -EINVAL)
		return cm_ctl_usage("bad --servers or --cluster ('%s')", ctl->servers);
	return rv ? cm_ctl_fail("client", rv) : 0;
}

/* Parse a command's options; returns the index of its first argument or -1. */
static int cmd_opts(int argc, char **argv, const char *sopts, const struct option *lopts,
		    int (*on)(void *arg, int opt, const char *val), void *arg)
{
	optind = 0; /* GNU: restart scanning, on a new argv */
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, sopts, lopts, NULL)) != -1) {
		if (c == '?' || c == ':') {
			cm_ctl_usage("%s: bad option '%s'", argv[0], argv[optind - 1]);
			return -1;
		}
		if (on(arg, c, optarg) != 0)
			return -1;
	}
	return optind;
}

static int want_args(int argc, int first, int n, const char *cmd)
{
	if (first < 0)
		return CM_CTL_USAGE;
	if (argc - first != n)
		return cm_ctl_usage("%s: expected %d argument%s", cmd, n, n == 1 ? "" : "s");
	return 0;
}

/* ---- get ---- */

static void print_attr_json(const struct cm_attr *a)
{
	printf("\"version\":%" PRIu64 ",\"mod_index\":%" PRIu64 ",\"create_index\":%" PRIu64
	       ",\"mode\":%" PRIu32 ",\"uid\":%" PRIu32 ",\"gid\":%" PRIu32 ",\"size\":%" PRIu32
	       ",\"mtime_ns\":%" PRId64 ",\"ctime_ns\":%" PRId64,
	       a->version, a->mod_index, a->create_index, a->mode, a->uid, a->gid, a->size,
	       a->mtime_ns, a->ctime_ns);
}

static void print_get_json(const char *path, const char *v, uint32_t len,
			   const struct cm_attr *a)
{
	fputs("{\"path\":", stdout);
	cm_ctl_json_str(stdout, path, strlen(path));
	fputs(",\"value\":", stdout);
	if (cm_ctl_utf8_valid(v, len)) {
		cm_ctl_json_str(stdout, v, len);
	} else {
		cm_ctl_base64(stdout, v, len);
		fputs(",\"encoding\":\"base64\"", stdout);
	}
	fputc(',', stdout);
	print_attr_json(a);
	fputs("}\n", stdout);
}

static int json_opt(void *arg, int opt, const char *val)
{
	(void)val;
	if (opt == 'j')
		((struct ctl *)arg)->json = true;
	return 0;
}

static const struct option json_only[] = {{"json", no_argument, NULL, 'j'}, {0}};

struct get_opts {
	struct ctl *ctl;
	const char *from;
};

static int get_opt(void *arg, int opt, const char *val)
{
	struct get_opts *g = arg;
	if (opt == 'f')
		g->from = val;
	return json_opt(g->ctl, opt, val);
}

static int cmd_get(struct ctl *ctl, int argc, char **argv)
{
	static const struct option lo[] = {{"json", no_argument, NULL, 'j'},
					   {"from", required_argument, NULL, 'f'}, {0}};
	struct get_opts go = {.ctl = ctl};
	int first = cmd_opts(argc, argv, "+jf:", lo, get_opt, &go);
	int rv = want_args(argc, first, 1, "get");
	if (rv || (rv = open_client(ctl)))
		return rv;
	const char *path = argv[first];
	void *v;
	uint32_t len;
	struct cm_attr a;
	/* --from: what that one replica holds, with no failover (diagnostics). */
	int err = go.from ? cm_get_from(ctl->client, go.from, path, &v, &len, &a)
			  : cm_get(ctl->client, path, &v, &len, &a);
	if (err)
		return cm_ctl_fail(path, err);
	if (ctl->json)
		print_get_json(path, v, len, &a);
	else
		fwrite(v, 1, len, stdout);
	free(v);
	return CM_CTL_OK;
}

/* ---- put ---- */

struct put_opts {
	struct ctl *ctl;
	uint32_t flags;
	uint64_t version;
	uint64_t lease; /* with CM_PUT_LEASE */
};

static int put_opt(void *arg, int opt, const char *val)
{
	struct put_opts *po = arg;
	switch (opt) {
	case 'v':
		if (!parse_u64(val, &po->version))
			return cm_ctl_usage("put: --if-version wants a number, not '%s'", val);
		po->flags |= CM_PUT_IF_VERSION;
		return 0;
	case 'c':
		po->flags |= CM_PUT_CREATE;
		return 0;
	case 'l':
		if (!parse_u64(val, &po->lease) || po->lease > (uint64_t)CM_LEASE_ID_MAX)
			return cm_ctl_usage("put: --lease wants a lease id (0: none), not '%s'", val);
		po->flags |= CM_PUT_LEASE;
		return 0;
	default:
		return json_opt(po->ctl, opt, val);
	}
}

/* Read stdin whole, up to one byte past the largest value any server takes. */
static int read_stdin(char **out, uint32_t *len)
{
	size_t cap = 65536, n = 0, limit = (size_t)CM_VALUE_MAX_LIMIT + 1;
	char *buf = malloc(cap);
	while (buf != NULL) {
		n += fread(buf + n, 1, cap - n, stdin);
		if (n < cap || n >= limit)
			break;
		char *b = realloc(buf, cap * 2);
		if (b == NULL)
			break;
		buf = b;
		cap *= 2;
	}
	if (buf == NULL || (n == cap && n < limit)) {
		free(buf);
		return -ENOMEM;
	}
	int err = ferror(stdin) ? -EIO : n > CM_VALUE_MAX_LIMIT ? -EFBIG : 0;
	if (err)
		free(buf);
	*out = err ? NULL : buf;
	*len = (uint32_t)n;
	return err;
}

static int cmd_put(struct ctl *ctl, int argc, char **argv)
{
	static const struct option lo[] = {{"if-version", required_argument, NULL, 'v'},
					   {"create", no_argument, NULL, 'c'},
					   {"lease", required_argument, NULL, 'l'},
					   {"json", no_argument, NULL, 'j'}, {0}};
	struct put_opts po = {.ctl = ctl};
	int first = cmd_opts(argc, argv, "+v:cj", lo, put_opt, &po);
	int rv = want_args(argc, first, 2, "put");
	if (rv)
		return rv;
	const char *path = argv[first], *value = argv[first + 1];
	char *buf = NULL;
	uint32_t len = (uint32_t)strnlen(value, (size_t)CM_VALUE_MAX_LIMIT + 1);
	if (strcmp(value, "-") == 0 && (rv = read_stdin(&buf, &len)) != 0)
		return cm_ctl_fail("stdin", rv);
	if ((rv = open_client(ctl)) != 0) {
		free(buf);
		return rv;
	}
	struct cm_attr a;
	struct cm_put_args pa = {.flags = po.flags, .if_version = po.version, .lease = po.lease};
	int err = cm_put_ex(ctl->client, path, buf ? buf : value, len, &pa, &a);
	free(buf);
	if (err)
		return cm_ctl_fail(path, err);
	if (ctl->json) {
		fputs("{\"path\":", stdout);
		cm_ctl_json_str(stdout, path, strlen(path));
		fputc(',', stdout);
		print_attr_json(&a);
		fputs("}\n", stdout);
	}
	return CM_CTL_OK;
}

/* ---- rm, mkdir, mv ---- */

static int rm_opt(void *arg, int opt, const char *val)
{
	(void)val;
	*(uint32_t *)arg |= opt == 'r' ? CM_DEL_RECURSIVE : CM_DEL_DIR;
	return 0;
}

static int cmd_rm(struct ctl *ctl, int argc, char **argv)
{
	static const struct option lo[] = {{"recursive", no_argument, NULL, 'r'},
					   {"dir", no_argument, NULL, 'd'}, {0}};
	uint32_t flags = 0;
	int first = cmd_opts(argc, argv, "+rd", lo, rm_opt, &flags);
	int rv = want_args(argc, first, 1, "rm");
	if (rv || (rv = open_client(ctl)))
		return rv;
	int err = cm_delete(ctl->client, argv[first], flags);
	return err ? cm_ctl_fail(argv[first], err) : CM_CTL_OK;
}

static int cmd_mkdir(struct ctl *ctl, int argc, char **argv)
{
	int first = cmd_opts(argc, argv, "+j", json_only, json_opt, ctl);
	int rv = want_args(argc, first, 1, "mkdir");
	if (rv || (rv = open_client(ctl)))
		return rv;
	int err = cm_mkdir(ctl->client, argv[first], 0, NULL);
	return err ? cm_ctl_fail(argv[first], err) : CM_CTL_OK;
}

static int cmd_mv(struct ctl *ctl, int argc, char **argv)
{
	int first = cmd_opts(argc, argv, "+j", json_only, json_opt, ctl);
	int rv = want_args(argc, first, 2, "mv");
	if (rv || (rv = open_client(ctl)))
		return rv;
	int err = cm_rename(ctl->client, argv[first], argv[first + 1], NULL);
	return err ? cm_ctl_fail(argv[first], err) : CM_CTL_OK;
}

/* ---- ls ---- */

static void print_entry_long(const struct cm_list_entry *e)
{
	char mode[11], when[32];
	cm_ctl_mode_str(e->attr.mode, mode);
	cm_ctl_time_str(e->attr.mtime_ns, when, sizeof(when));
	printf("%s %8" PRIu64 " %8" PRIu32 " %s %s\n", mode, e->attr.version, e->attr.size,
	       when, e->name);
}

static void print_list_json(const char *path, const struct cm_list_entry *e, uint32_t n)
{
	fputs("{\"path\":", stdout);
	cm_ctl_json_str(stdout, path, strlen(path));
	fputs(",\"entries\":[", stdout);
	for (uint32_t k = 0; k < n; k++) {
		fputs(k ? ",{\"name\":" : "{\"name\":", stdout);
		cm_ctl_json_str(stdout, e[k].name, strlen(e[k].name));
		fputc(',', stdout);
		print_attr_json(&e[k].attr);
		fputc('}', stdout);
	}
	fputs("]}\n", stdout);
}

struct ls_opts {
	struct ctl *ctl;
	bool longfmt;
};

static int ls_opt(void *arg, int opt, const char *val)
{
	struct ls_opts *lo = arg;
	if (opt == 'l')
		lo->longfmt = true;
	return json_opt(lo->ctl, opt, val);
}

static int cmd_ls(struct ctl *ctl, int argc, char **argv)
{
	static const struct option lo[] = {{"long", no_argument, NULL, 'l'},
					   {"json", no_argument, NULL, 'j'}, {0}};
	struct ls_opts o = {.ctl = ctl};
	int first = cmd_opts(argc, argv, "+lj", lo, ls_opt, &o);
	int rv = want_args(argc, first, 1, "ls");
	if (rv || (rv = open_client(ctl)))
		return rv;
	struct cm_list_entry *e;
	uint32_t n;
	int err = cm_list(ctl->client, argv[first], &e, &n);
	if (err)
		return cm_ctl_fail(argv[first], err);
	if (ctl->json)
		print_list_json(argv[first], e, n);
	for (uint32_t k = 0; !ctl->json && k < n; k++) {
		if (o.longfmt)
			print_entry_long(&e[k]);
		else
			printf("%s\n", e[k].name);
	}
	cm_list_free(e, n);
	return CM_CTL_OK;
}

/* ---- watch ---- */

static void print_event_json(const struct cm_event *ev)
{
	printf("{\"index\":%" PRIu64 ",\"group\":%" PRIu64 ",\"kind\":\"%s\",\"path\":",
	       ev->index, ev->group, cm_ctl_kind_name(ev->kind));
	cm_ctl_json_str(stdout, ev->path.p, ev->path.len);
	if (ev->path2.len > 0) {
		fputs(",\"path2\":", stdout);
		cm_ctl_json_str(stdout, ev->path2.p, ev->path2.len);
	}
	if (ev->has_attr) {
		fputc(',', stdout);
		print_attr_json(&ev->attr);
	}
	fputs("}\n", stdout);
}

static int on_event(void *arg, const struct cm_event *ev)
{
	const struct ctl *ctl = arg;
	if (ctl->json) {
		print_event_json(ev);
	} else {
		printf("%" PRIu64 " %s %.*s", ev->index, cm_ctl_kind_name(ev->kind),
		       (int)ev->path.len, ev->path.p);
		if (ev->path2.len > 0)
			printf(" -> %.*s", (int)ev->path2.len, ev->path2.p);
		putchar('\n');
	}
	/* One line per change, now: a pipe reader must not wait for a buffer. */
	return fflush(stdout) != 0 || ferror(stdout) ? 1 : 0;
}

struct watch_opts {
	struct ctl *ctl;
	uint64_t from;
};

static int watch_opt(void *arg, int opt, const char *val)
{
	struct watch_opts *wo = arg;
	if (opt == 'f' && !parse_u64(val, &wo->from))
		return cm_ctl_usage("watch: --from wants an index, not '%s'", val);
	return json_opt(wo->ctl, opt, val);
}

static int cmd_watch(struct ctl *ctl, int argc, char **argv)
{
	static const struct option lo[] = {{"from", required_argument, NULL, 'f'},
					   {"json", no_argument, NULL, 'j'}, {0}};
	struct watch_opts wo = {.ctl = ctl};
	int first = cmd_opts(argc, argv, "+f:j", lo, watch_opt, &wo);
	int rv = want_args(argc, first, 1, "watch");
	if (rv || (rv = open_client(ctl)))
		return rv;
	int err = cm_watch(ctl->client, argv[first], wo.from, on_event, ctl);
	if (err > 0)
		return CM_CTL_OK; /* stdout went away: nobody is listening */
	return cm_ctl_fail(argv[first], err);
}

/* ---- status ---- */

/* Ask one server; returns whether it answered. */
static bool status_one(struct ctl *ctl, const char *addr, bool first)
{
	struct cm_node_status *st = NULL;
	int err = cm_status(ctl->client, addr, &st);
	if (ctl->json)
		fputs(first ? "" : ",", stdout);
	cm_ctl_print_status(stdout, addr, st, err, ctl->json);
	cm_status_free(st);
	return err == 0;
}

static int cmd_status(struct ctl *ctl, int argc, char **argv)
{
	int first = cmd_opts(argc, argv, "+j", json_only, json_opt, ctl);
	int rv = want_args(argc, first, 0, "status");
	if (rv || (rv = open_client(ctl)))
		return rv;
	char *list = strdup(ctl->servers);
	if (list == NULL)
		return cm_ctl_fail("status", -ENOMEM);
	int up = 0, n = 0;
	if (ctl->json)
		fputs("{\"servers\":[", stdout);
	char *save = NULL;
	for (char *a = strtok_r(list, ", ", &save); a; a = strtok_r(NULL, ", ", &save))
		up += status_one(ctl, a, n++ == 0);
	if (ctl->json)
		fputs("]}\n", stdout);
	free(list);
	return up > 0 ? CM_CTL_OK : CM_CTL_UNAVAILABLE;
}

/* ---- shards ---- */

static int cmd_shards(struct ctl *ctl, int argc, char **argv)
{
	int first = cmd_opts(argc, argv, "+j", json_only, json_opt, ctl);
	int rv = want_args(argc, first, 0, "shards");
	if (rv || (rv = open_client(ctl)))
		return rv;
	struct cm_shard_map *m;
	int err = cm_shards(ctl->client, &m);
	if (err)
		return cm_ctl_fail("shards", err);
	cm_ctl_print_shards(stdout, m, ctl->json);
	cm_shards_free(m);
	return CM_CTL_OK;
}

struct add_opts {
	struct ctl *ctl;
	uint64_t ids[CM_CLIENT_MAX_REPLICAS];
	int n; /* -1: no --replicas */
};

static int add_opt(void *arg, int opt, const char *val)
{
	struct add_opts *ao = arg;
	if (opt != 'r')
		return json_opt(ao->ctl, opt, val);
	ao->n = cm_ctl_parse_ids(val, ao->ids, CM_CLIENT_MAX_REPLICAS);
	if (ao->n == -1)
		return cm_ctl_usage("shard add: --replicas wants node ids like 1,2,3, not '%s'",
				   val);
	if (ao->n == -2) {
		fprintf(stderr, "confmanctl: shard add: at most %d replicas\n",
			CM_CLIENT_MAX_REPLICAS);
		return CM_CTL_INVALID;
	}
	return 0;
}

static int cmd_shard_add(struct ctl *ctl, int argc, char **argv)
{
	static const struct option lo[] = {{"replicas", required_argument, NULL, 'r'},
					   {"json", no_argument, NULL, 'j'}, {0}};
	struct add_opts ao = {.ctl = ctl, .n = -1};
	int first = cmd_opts(argc, argv, "r:j", lo, add_opt, &ao); /* PREFIX --replicas too */
	if (first < 0 && ao.n == -2)
		return CM_CTL_INVALID;
	int rv = want_args(argc, first, 1, "shard add");
	if (rv)
		return rv;
	if (ao.n < 0)
		return cm_ctl_usage("shard add: --replicas is required");
	if ((rv = open_client(ctl)) != 0)
		return rv;
	const char *prefix = argv[first];
	int err = cm_shard_add(ctl->client, prefix, ao.ids, (uint32_t)ao.n);
	if (err == -EEXIST) {
		fprintf(stderr, "confmanctl: %s: not empty, or a shard already (EEXIST)\n", prefix);
		return cm_ctl_exit_code(err);
	}
	return err ? cm_ctl_fail(prefix, err) : CM_CTL_OK;
}

/* A command of ctl_member.c; the client it opened is closed by main(). */
static int member_cmd(struct ctl *ctl, int argc, char **argv,
		      int (*fn)(struct cm_ctl_cmd *cc, int argc, char **argv))
{
	struct cm_ctl_cmd cc = {.opts = &ctl->opts, .json = ctl->json};
	int rv = fn(&cc, argc, argv);
	ctl->client = cc.client;
	return rv;
}

static int cmd_shard(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 2)
		return cm_ctl_usage("shard: expected a subcommand (add, move, split, merge)");
	if (strcmp(argv[1], "add") == 0)
		return cmd_shard_add(ctl, argc - 1, argv + 1);
	if (strcmp(argv[1], "move") == 0)
		return member_cmd(ctl, argc - 1, argv + 1, cm_ctl_shard_move);
	if (strcmp(argv[1], "split") == 0)
		return member_cmd(ctl, argc - 1, argv + 1, cm_ctl_shard_split);
	if (strcmp(argv[1], "merge") == 0)
		return member_cmd(ctl, argc - 1, argv + 1, cm_ctl_shard_merge);
	return cm_ctl_usage("shard: unknown subcommand '%s'", argv[1]);
}

static int cmd_node(struct ctl *ctl, int argc, char **argv)
{
	return member_cmd(ctl, argc, argv, cm_ctl_node);
}

static int cmd_acl(struct ctl *ctl, int argc, char **argv)
{
	return member_cmd(ctl, argc, argv, cm_ctl_acl);
}

static int cmd_whoami(struct ctl *ctl, int argc, char **argv)
{
	return member_cmd(ctl, argc, argv, cm_ctl_whoami);
}

static int cmd_lease(struct ctl *ctl, int argc, char **argv)
{
	return member_cmd(ctl, argc, argv, cm_ctl_lease);
}

static int cmd_lock(struct ctl *ctl, int argc, char **argv)
{
	return member_cmd(ctl, argc, argv, cm_ctl_lock);
}

static int cmd_elect(struct ctl *ctl, int argc, char **argv)
{
	return member_cmd(ctl, argc, argv, cm_ctl_elect);
}

static int cmd_token(struct ctl *ctl, int argc, char **argv)
{
	return member_cmd(ctl, argc, argv, cm_ctl_token);
}

static int cmd_snapshot(struct ctl *ctl, int argc, char **argv)
{
	return member_cmd(ctl, argc, argv, cm_ctl_snapshot);
}

static int cmd_export(struct ctl *ctl, int argc, char **argv)
{
	return member_cmd(ctl, argc, argv, cm_ctl_export);
}

static int cmd_import(struct ctl *ctl, int argc, char **argv)
{
	return member_cmd(ctl, argc, argv, cm_ctl_import);
}

/* ---- main ---- */

static int cmd_help(struct ctl *ctl, int argc, char **argv)
{
	(void)ctl;
	(void)argc;
	(void)argv;
	fputs(usage_text, stdout);
	return CM_CTL_OK;
}

static const struct {
	const char *name;
	ctl_cmd_fn fn;
} commands[] = {
	{"get", cmd_get},     {"put", cmd_put},     {"rm", cmd_rm},
	{"ls", cmd_ls},       {"mkdir", cmd_mkdir}, {"mv", cmd_mv},
	{"watch", cmd_watch}, {"status", cmd_status}, {"shards", cmd_shards},
	{"shard", cmd_shard}, {"node", cmd_node},   {"export", cmd_export},
	{"import", cmd_import}, {"snapshot", cmd_snapshot}, {"help", cmd_help},
	{"acl", cmd_acl},     {"whoami", cmd_whoami},
	{"lease", cmd_lease}, {"lock", cmd_lock},   {"elect", cmd_elect},
	{"token", cmd_token},
};

static int global_opt(struct ctl *ctl, int c, const char *val)
{
	uint64_t ms;
	switch (c) {
	case 's':
		ctl->servers = ctl->opts.servers = val;
		return 0;
	case 'c':
		ctl->opts.cluster = val;
		return 0;
	case 't':
		if (!parse_u64(val, &ms) || ms == 0 || ms > 86400000)
			return cm_ctl_usage("--timeout wants milliseconds, not '%s'", val);
		ctl->opts.timeout_ms = (uint32_t)ms;
		return 0;
	case 'C':
		if (strcmp(val, "linearizable") == 0)
			ctl->opts.consistency = CM_READ_LINEARIZABLE;
		else if (strcmp(val, "follower") == 0)
			ctl->opts.consistency = CM_READ_FOLLOWER;
		else
			return cm_ctl_usage("--consistency: linearizable or follower, not '%s'",
					   val);
		return 0;
	case 'A':
		ctl->opts.ca = val;
		return 0;
	case 'E':
		ctl->opts.cert = val;
		return 0;
	case 'Y':
		ctl->opts.key = val;
		return 0;
	case 'j':
		ctl->json = true;
		return 0;
	case 'h':
		fputs(usage_text, stdout);
		exit(CM_CTL_OK);
	default:
		return cm_ctl_usage("unknown option '%s'", val ? val : "?");
	}
}

/* The TLS files: flags, else the environment; a key others can read, or a
 * certificate that does not load, stops here with the file and the reason. */
static int tls_opts(struct ctl *ctl)
{
	const char *env[3] = {getenv("CONFMAN_CA"), getenv("CONFMAN_CERT"), getenv("CONFMAN_KEY")};
	const char **opt[3] = {&ctl->opts.ca, &ctl->opts.cert, &ctl->opts.key};
	for (int k = 0; k < 3; k++)
		if (*opt[k] == NULL && env[k] != NULL && *env[k] != '\0')
			*opt[k] = env[k];
	char why[512];
	if (cm_client_tls_check(&ctl->opts, why, sizeof(why)) != 0) {
		fprintf(stderr, "confmanctl: %s\n", why);
		return -1;
	}
	return 0;
}

static int parse_globals(struct ctl *ctl, int argc, char **argv)
{
	static const struct option lo[] = {
		{"servers", required_argument, NULL, 's'},
		{"cluster", required_argument, NULL, 'c'},
		{"timeout", required_argument, NULL, 't'},
		{"consistency", required_argument, NULL, 'C'},
		{"json", no_argument, NULL, 'j'},
		{"ca", required_argument, NULL, 'A'},
		{"cert", required_argument, NULL, 'E'},
		{"key", required_argument, NULL, 'Y'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+s:c:t:jh", lo, NULL)) != -1) {
		const char *val = c == '?' || c == ':' ? argv[optind - 1] : optarg;
		if (global_opt(ctl, c, val) != 0)
			return -1;
	}
	return optind;
}

int main(int argc, char **argv)
{
	struct ctl ctl = {0};
	/* A server that closes while we write must cost a retry, not the
	 * process; a closed stdout shows as a write error (see on_event). */
	signal(SIGPIPE, SIG_IGN);
	cm_client_opts_init(&ctl.opts);
	/* Each run is a new process with no token: read linearizably unless asked
	 * otherwise, as etcdctl does; --consistency follower opts in. */
	ctl.opts.consistency = CM_READ_LINEARIZABLE;
	int first = parse_globals(&ctl, argc, argv);
	if (first < 0)
		return CM_CTL_USAGE;
	if (first >= argc)
		return cm_ctl_usage("no command");
	if (ctl.servers == NULL)
		ctl.servers = getenv("CONFMAN_SERVERS");
	if (ctl.servers == NULL || *ctl.servers == '\0')
		ctl.servers = CM_CLIENT_DEFAULT_SERVERS;
	ctl.opts.servers = ctl.servers;
	if (tls_opts(&ctl) != 0)
		return CM_CTL_USAGE;
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
		if (strcmp(argv[first], commands[k].name) != 0)
			continue;
		int rv = commands[k].fn(&ctl, argc - first, argv + first);
		cm_client_close(ctl.client);
		return rv;
	}
	return cm_ctl_usage("unknown command '%s'", argv[first]);
}
