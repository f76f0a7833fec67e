/* config.c: command-line flags and the cluster file (INI, via libinih). */
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confman/path.h"
#include "server/config.h"

static const char usage[] =
	"usage: confmand --id N --cluster-file FILE --data DIR [options]\n"
	"       confmand --id N --join ADDR[,ADDR...] --listen ADDR --data DIR [options]\n"
	"\n"
	"Runs one Confman node: the Raft groups it hosts and the client API.\n"
	"\n"
	"  --id N                 this node's id, as in the cluster file (required)\n"
	"  --cluster-file FILE    nodes, groups and cluster id (INI): seeds a new\n"
	"                         cluster; afterwards the cluster's node table wins\n"
	"  --join ADDR,...        instead of a cluster file: join a running cluster\n"
	"                         through any of its nodes. The node must have been\n"
	"                         added first (confmanctl node add N --address ADDR);\n"
	"                         it starts empty and hosts what it is later given\n"
	"  --listen ADDR          with --join: this node's peer/client address\n"
	"                         (IPv4:port; must be the one given to node add)\n"
	"  --cluster-id ID        with --join: the cluster id to expect (default\n"
	"                         confman); joining another cluster fails\n"
	"  --restore FILE         start a NEW cluster from a backup (confmanctl\n"
	"                         snapshot save): every node of the cluster file runs\n"
	"                         this with the same FILE on an empty --data; the\n"
	"                         backup's shards replace the file's [group.*], each\n"
	"                         on every node, from the index it was saved at. The\n"
	"                         cluster file's id must differ from the backup's\n"
	"  --restore-keep-cluster-id  allow the backup's own cluster id\n"
	"  --data DIR             directory of this node's LMDB store (required;\n"
	"                         created if missing)\n"
	"  --tick-ms MS           Raft tick length (default 50)\n"
	"  --election-ticks N     election timeout in ticks, randomised in [N, 2N)\n"
	"                         (default 10)\n"
	"  --map-size MB          most the store holds for clients (default 1024);\n"
	"                         LMDB's map is this plus a reserve for Raft's own\n"
	"                         writes (a quarter, at least 8 MiB; sparse)\n"
	"  --snapshot-entries N   snapshot a group every N applied entries\n"
	"                         (default 10000)\n"
	"  --keep-entries N       log entries kept behind a snapshot (default 1000)\n"
	"  --max-pending N        client requests in flight per group (default 10000)\n"
	"  --min-free-mb MB       disk space kept free in --data for Raft's own\n"
	"                         writes: below it client writes get ENOSPC except\n"
	"                         deletes and truncations, below half of it all\n"
	"                         client writes do; reads go on, and writes are\n"
	"                         accepted again once space is freed (default 128;\n"
	"                         0: no check). Above 90% of --map-size only\n"
	"                         deletes and truncations are accepted; a leader\n"
	"                         also refuses while any replica is short\n"
	"  --max-staleness-ms MS  a follower that has not heard from its leader for\n"
	"                         this long refuses follower reads (CM_ESTALE) so a\n"
	"                         partitioned replica never serves old data\n"
	"                         (default: the election timeout, ticks x tick-ms)\n"
	"  --quiesce-ticks N      an idle group stops heartbeating after N ticks;\n"
	"                         nodes still ping each other once per tick, and a\n"
	"                         quiet follower whose leader's node falls silent for\n"
	"                         an election timeout wakes up (0: never; default\n"
	"                         2 x election ticks)\n"
	"  --http ADDR            serve /healthz, /readyz and /metrics on ADDR\n"
	"                         (IPv4:port; default: the node's http = in the\n"
	"                         cluster file, else none)\n"
	"  --force-new-cluster    DISASTER RECOVERY, when a majority of the nodes is\n"
	"                         gone for good: before starting, make this node the\n"
	"                         only voter of every group in its store, keeping\n"
	"                         its data up to each group's commit index (later,\n"
	"                         uncommitted entries are discarded); then rebuild\n"
	"                         the replicas with node add, --join and shard move\n"
	"                         (README, \"Lost majority\"). Never while the other\n"
	"                         nodes may still run; refused on an empty store\n"
	"  --lease-checkpoint-ms MS a leader records how long each lease longer than\n"
	"                         this has left, this often, so that leader changes\n"
	"                         do not extend it forever (default 300000)\n"
	"  --test-skip-token-wait FOR TESTS ONLY: serve follower reads at once,\n"
	"                         without waiting for the client's token (breaks\n"
	"                         read-your-writes; shows the chaos checker fails)\n"
	"  --test-lock-no-log     FOR TESTS ONLY: grant every lock at once, without\n"
	"                         the log (breaks mutual exclusion; shows the lock\n"
	"                         checker fails)\n"
	"  --test-refuse-attr-only FOR TESTS ONLY: refuse stat-only GETs\n"
	"                         (CM_GET_ATTR_ONLY) as a server that does not\n"
	"                         know them would (the mount falls back)\n"
	"  --ca FILE              the CA bundle (overrides [cluster] ca)\n"
	"  --cert FILE            this node's certificate, CN confman-node-<id>\n"
	"                         (overrides its [node.N] cert)\n"
	"  --key FILE             its key, mode 0600 (overrides its [node.N] key)\n"
	"  --insecure             plain TCP, as insecure = true (for --join)\n"
	"  -v, --verbose          log more (repeat for debug)\n"
	"  -h, --help             this text\n"
	"\n"
	"Cluster file:\n"
	"  [cluster]\n"
	"  id = confman\n"
	"  max_value = 1048576\n"
	"  ca = /etc/confman/ca.pem          ; TLS: the CA bundle\n"
	"  ; proxies = confman-gw            ; CNs that may forward identities\n"
	"  ; insecure = true                 ; or plain TCP, warned at every start\n"
	"  [node.1]\n"
	"  address = 127.0.0.1:7001\n"
	"  cert = /etc/confman/node1.pem     ; CN confman-node-1\n"
	"  key = /etc/confman/node1.key      ; mode 0600\n"
	"  http = 127.0.0.1:8001   ; optional\n"
	"  [group.1]\n"
	"  prefix = /\n"
	"  replicas = 1,2,3\n";

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || *s == '-' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static struct cm_group_info *group_slot(struct cm_config *c, uint64_t id)
{
	for (uint32_t k = 0; k < c->n_groups; k++)
		if (c->groups[k].id == id)
			return &c->groups[k];
	if (c->n_groups == CM_MAX_GROUPS)
		return NULL;
	if (c->n_groups == c->cap_groups) {
		uint32_t cap = c->cap_groups ? c->cap_groups * 2 : 4;
		struct cm_group_info *g = realloc(c->groups, sizeof(*g) * cap);
		if (g == NULL)
			return NULL;
		c->groups = g;
		c->cap_groups = cap;
	}
	struct cm_group_info *g = &c->groups[c->n_groups++];
	memset(g, 0, sizeof(*g));
	g->id = id;
	return g;
}

static int parse_replicas(struct cm_group_info *g, const char *v)
{
	char buf[512];
	if (strlen(v) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, v);
	char *save = NULL;
	for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		uint64_t id;
		if (g->n_replicas == RAFT_MAX_NODES || parse_u64(t, 1, UINT32_MAX, &id) != 0)
			return -EINVAL;
		g->replicas[g->n_replicas++] = id;
	}
	return g->n_replicas ? 0 : -EINVAL;
}

/* "confman-gw, gw-2": the CNs trusted to forward identities (acl.c). */
static int parse_proxies(struct cm_config *c, const char *value)
{
	char buf[CM_PROXIES_MAX * 66];
	if (strlen(value) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, value);
	char *save = NULL;
	c->n_proxies = 0;
	for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		if (c->n_proxies == CM_PROXIES_MAX || strlen(t) >= sizeof(c->proxies[0]))
			return -EINVAL;
		strcpy(c->proxies[c->n_proxies++], t);
	}
	return 0;
}

static int on_cluster(struct cm_config *c, const char *name, const char *value)
{
	uint64_t v;
	if (strcmp(name, "admin") == 0) { /* the first admin's user name (acl.c) */
		if (strlen(value) == 0 || strlen(value) >= sizeof(c->admin))
			return -EINVAL;
		strcpy(c->admin, value);
		return 0;
	}
	if (strcmp(name, "proxies") == 0)
		return parse_proxies(c, value);
	if (strcmp(name, "id") == 0) {
		if (strlen(value) == 0 || strlen(value) > CM_CLUSTER_MAX)
			return -EINVAL;
		strcpy(c->cluster_id, value);
		return 0;
	}
	if (strcmp(name, "ca") == 0) {
		if (strlen(value) == 0 || strlen(value) >= sizeof(c->ca))
			return -EINVAL;
		if (!c->ca[0]) /* --ca wins */
			strcpy(c->ca, value);
		return 0;
	}
	if (strcmp(name, "insecure") == 0) {
		if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
			return -EINVAL;
		c->insecure |= strcmp(value, "true") == 0;
		return 0;
	}
	if (strcmp(name, "max_value") == 0) {
		if (parse_u64(value, 1, CM_VALUE_MAX_LIMIT, &v) != 0)
			return -EINVAL;
		c->max_value = (uint32_t)v;
		return 0;
	}
	return -EINVAL;
}

static int on_node(struct cm_config *c, uint64_t id, const char *name, const char *value)
{
	struct cm_node_info *n = NULL;
	for (uint32_t k = 0; k < c->n_nodes; k++)
		if (c->nodes[k].id == id)
			n = &c->nodes[k];
	if (n == NULL) {
		if (c->n_nodes == CM_MAX_PEERS)
			return -EINVAL;
		n = &c->nodes[c->n_nodes++];
		memset(n, 0, sizeof(*n));
		n->id = id;
		n->state = CM_NODE_ACTIVE;
	}
	if (strcmp(name, "cert") == 0 || strcmp(name, "key") == 0) {
		char *dst = name[0] == 'c' ? c->cert : c->key;
		if (strlen(value) == 0 || strlen(value) >= sizeof(c->cert))
			return -EINVAL;
		if (id == c->node_id && !dst[0]) /* this node's; a flag wins */
			strcpy(dst, value);
		return 0;
	}
	if (strlen(value) > CM_ADDR_MAX || !strchr(value, ':'))
		return -EINVAL;
	if (strcmp(name, "address") == 0)
		strcpy(n->addr, value);
	else if (strcmp(name, "http") == 0)
		strcpy(n->http, value);
	else
		return -EINVAL;
	return 0;
}

static int on_group(struct cm_config *c, uint64_t id, const char *name, const char *value)
{
	struct cm_group_info *g = group_slot(c, id);
	if (g == NULL)
		return -EINVAL;
	if (strcmp(name, "prefix") == 0) {
		uint32_t len = (uint32_t)strlen(value);
		if (cm_path_validate(value, len) != 0)
			return -EINVAL;
		strcpy(g->prefix, value);
		return 0;
	}
	if (strcmp(name, "replicas") == 0)
		return parse_replicas(g, value);
	return -EINVAL;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
	struct cm_config *c = user;
	uint64_t id;
	int rv = -EINVAL;
	if (strcmp(section, "cluster") == 0)
		rv = on_cluster(c, name, value);
	else if (strncmp(section, "node.", 5) == 0 && parse_u64(section + 5, 1, UINT32_MAX, &id) == 0)
		rv = on_node(c, id, name, value);
	else if (strncmp(section, "group.", 6) == 0 && parse_u64(section + 6, 1, UINT32_MAX - 1, &id) == 0)
		rv = on_group(c, id, name, value);
	if (rv != 0)
		fprintf(stderr, "confmand: %s: [%s] %s = %s: invalid\n", c->cluster_file, section, name,
			value);
	return rv == 0;
}

const struct cm_node_info *cm_config_node(const struct cm_config *cfg, uint64_t id)
{
	for (uint32_t k = 0; k < cfg->n_nodes; k++)
		if (cfg->nodes[k].id == id)
			return &cfg->nodes[k];
	return NULL;
}

/* Every group needs a prefix and known replicas; "/" must be served. */
static int check_cluster(const struct cm_config *c)
{
	bool root = false;
	if (cm_config_node(c, c->node_id) == NULL) {
		fprintf(stderr, "confmand: node %llu is not in %s\n", (unsigned long long)c->node_id,
			c->cluster_file);
		return -EINVAL;
	}
	for (uint32_t k = 0; k < c->n_groups; k++) {
		const struct cm_group_info *g = &c->groups[k];
		if (g->prefix[0] == '\0' || g->n_replicas == 0) {
			fprintf(stderr, "confmand: group %llu needs a prefix and replicas\n",
				(unsigned long long)g->id);
			return -EINVAL;
		}
		for (uint32_t j = 0; j < g->n_replicas; j++)
			if (cm_config_node(c, g->replicas[j]) == NULL) {
				fprintf(stderr, "confmand: group %llu: unknown node %llu\n",
					(unsigned long long)g->id, (unsigned long long)g->replicas[j]);
				return -EINVAL;
			}
		root |= strcmp(g->prefix, "/") == 0;
	}
	if (!root) {
		fprintf(stderr, "confmand: %s: no group has prefix \"/\"\n", c->cluster_file);
		return -EINVAL;
	}
	return 0;
}

/* --join: the only node known before the cluster answers is this one. */
static int join_self(struct cm_config *c)
{
	if (!c->listen[0]) {
		fprintf(stderr, "confmand: --join needs --listen ADDR (this node's address)\n");
		return -EINVAL;
	}
	struct cm_node_info *me = &c->nodes[c->n_nodes++];
	me->id = c->node_id;
	strcpy(me->addr, c->listen);
	strcpy(me->http, c->http_addr);
	me->state = CM_NODE_ACTIVE;
	return 0;
}

static const struct option long_opts[] = {
	{"id", required_argument, NULL, 'i'},
	{"cluster-file", required_argument, NULL, 'c'},
	{"data", required_argument, NULL, 'd'},
	{"tick-ms", required_argument, NULL, 't'},
	{"election-ticks", required_argument, NULL, 'e'},
	{"map-size", required_argument, NULL, 'm'},
	{"snapshot-entries", required_argument, NULL, 's'},
	{"keep-entries", required_argument, NULL, 'k'},
	{"max-pending", required_argument, NULL, 'p'},
	{"min-free-mb", required_argument, NULL, 'F'},
	{"max-staleness-ms", required_argument, NULL, 'S'},
	{"http", required_argument, NULL, 'H'},
	{"join", required_argument, NULL, 'J'},
	{"listen", required_argument, NULL, 'L'},
	{"cluster-id", required_argument, NULL, 'C'},
	{"restore", required_argument, NULL, 'R'},
	{"restore-keep-cluster-id", no_argument, NULL, 'K'},
	{"quiesce-ticks", required_argument, NULL, 'Q'},
	{"force-new-cluster", no_argument, NULL, 'N'},
	{"test-skip-token-wait", no_argument, NULL, 'T'},
	{"test-lock-no-log", no_argument, NULL, 'U'},
	{"lease-checkpoint-ms", required_argument, NULL, 'P'},
	{"test-refuse-attr-only", no_argument, NULL, 'G'},
	{"ca", required_argument, NULL, 'A'},
	{"cert", required_argument, NULL, 'E'},
	{"key", required_argument, NULL, 'Y'},
	{"insecure", no_argument, NULL, 'I'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int set_flag(struct cm_config *c, int opt, const char *arg)
{
	uint64_t v = 0;
	switch (opt) {
	case 'i':
		if (parse_u64(arg, 1, UINT32_MAX, &c->node_id))
			return -EINVAL;
		return 0;
	case 'c':
	case 'd':
		if (strlen(arg) >= sizeof(c->data_dir))
			return -EINVAL;
		strcpy(opt == 'c' ? c->cluster_file : c->data_dir, arg);
		return 0;
	case 't':
		if (parse_u64(arg, 1, 10000, &v))
			return -EINVAL;
		c->tick_ms = (uint32_t)v;
		return 0;
	case 'e':
		if (parse_u64(arg, 3, 10000, &v))
			return -EINVAL;
		c->election_ticks = (uint32_t)v;
		return 0;
	case 'm':
		if (parse_u64(arg, 1, 1u << 24, &v))
			return -EINVAL;
		c->map_bytes = v << 20;
		return 0;
	case 's':
		return parse_u64(arg, 10, UINT32_MAX, &c->snapshot_entries);
	case 'k':
		return parse_u64(arg, 0, UINT32_MAX, &c->keep_entries);
	case 'p':
		if (parse_u64(arg, 1, 1000000, &v))
			return -EINVAL;
		c->max_pending = (uint32_t)v;
		return 0;
	case 'F':
		if (parse_u64(arg, 0, 1u << 24, &v))
			return -EINVAL;
		c->min_free_bytes = v << 20;
		return 0;
	case 'S':
		if (parse_u64(arg, 1, 3600000, &v))
			return -EINVAL;
		c->max_staleness_ms = (uint32_t)v;
		return 0;
	case 'Q':
		if (parse_u64(arg, 0, 1000000, &v))
			return -EINVAL;
		c->quiesce_ticks = (uint32_t)v;
		c->quiesce_set = true;
		return 0;
	case 'H':
		if (strlen(arg) > CM_ADDR_MAX || !strchr(arg, ':'))
			return -EINVAL;
		strcpy(c->http_addr, arg);
		return 0;
	case 'J':
		if (strlen(arg) >= sizeof(c->join))
			return -EINVAL;
		strcpy(c->join, arg);
		return 0;
	case 'L':
		if (strlen(arg) > CM_ADDR_MAX || !strchr(arg, ':'))
			return -EINVAL;
		strcpy(c->listen, arg);
		return 0;
	case 'C':
		if (strlen(arg) == 0 || strlen(arg) > CM_CLUSTER_MAX)
			return -EINVAL;
		strcpy(c->cluster_id, arg);
		return 0;
	case 'R':
		if (strlen(arg) >= sizeof(c->restore))
			return -EINVAL;
		strcpy(c->restore, arg);
		return 0;
	case 'K':
		c->restore_keep_id = true;
		return 0;
	case 'N':
		c->force_new_cluster = true;
		return 0;
	case 'T':
		c->test_skip_token_wait = true;
		return 0;
	case 'U':
		c->test_lock_no_log = true;
		return 0;
	case 'P':
		if (parse_u64(arg, 100, 86400000, &v))
			return -EINVAL;
		c->lease_checkpoint_ms = (uint32_t)v;
		return 0;
	case 'G':
		c->test_refuse_attr_only = true;
		return 0;
	case 'A':
	case 'E':
	case 'Y': {
		char *dst = opt == 'A' ? c->ca : opt == 'E' ? c->cert : c->key;
		if (strlen(arg) == 0 || strlen(arg) >= sizeof(c->ca))
			return -EINVAL;
		strcpy(dst, arg);
		return 0;
	}
	case 'I':
		c->insecure = true;
		return 0;
	case 'v':
		c->verbose++;
		return 0;
	default:
		return -EINVAL;
	}
}

static void defaults(struct cm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->tick_ms = 50;
	c->election_ticks = 10;
	c->map_bytes = 1024ull << 20;
	c->snapshot_entries = 10000;
	c->keep_entries = 1000;
	c->max_pending = 10000;
	c->lease_checkpoint_ms = 300000;
	c->min_free_bytes = 128ull << 20;
	c->max_value = CM_VALUE_MAX_DEFAULT;
	strcpy(c->cluster_id, "confman");
}

int cm_config_parse(struct cm_config *c, int argc, char **argv)
{
	defaults(c);
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage, stdout);
			return 1;
		}
		if (opt == '?' || set_flag(c, opt, optarg) != 0) {
			fprintf(stderr, "confmand: bad option (see --help)\n");
			return -EINVAL;
		}
	}
	if (optind != argc || c->node_id == 0 || !c->data_dir[0] ||
	    !c->cluster_file[0] == !c->join[0]) {
		fprintf(stderr, "confmand: --id, --data and one of --cluster-file or --join "
				"are required\n%s", usage);
		return -EINVAL;
	}
	if (c->max_staleness_ms == 0)
		c->max_staleness_ms = c->election_ticks * c->tick_ms;
	if (!c->quiesce_set)
		c->quiesce_ticks = 2 * c->election_ticks;
	if (c->join[0])
		return join_self(c);
	int rv = ini_parse(c->cluster_file, on_ini, c);
	if (rv != 0) {
		if (rv < 0)
			fprintf(stderr, "confmand: cannot read %s\n", c->cluster_file);
		else
			fprintf(stderr, "confmand: %s: error on line %d\n", c->cluster_file, rv);
		cm_config_free(c);
		return -EINVAL;
	}
	if (check_cluster(c) != 0) {
		cm_config_free(c);
		return -EINVAL;
	}
	return 0;
}

int cm_config_security(const struct cm_config *c)
{
	const char *file = c->cluster_file[0] ? c->cluster_file : "--join";
	if (c->insecure && c->ca[0]) {
		fprintf(stderr, "confmand: %s: both a CA (ca = / --ca) and insecure = true: choose "
				"one\n", file);
		return -EINVAL;
	}
	if (c->insecure)
		return 0;
	if (!c->ca[0]) {
		fprintf(stderr,
			"confmand: %s: no CA: set [cluster] ca = PATH and each node's cert and key "
			"for TLS (the default), or insecure = true for plain TCP, where anyone "
			"who reaches a port can read and write everything and act as a node "
			"(--ca/--cert/--key or --insecure with --join)\n", file);
		return -EINVAL;
	}
	if (!c->cert[0] || !c->key[0]) {
		fprintf(stderr, "confmand: %s: node %llu has no %s: set cert = and key = in its "
				"[node.%llu] section (or --cert/--key)\n", file,
			(unsigned long long)c->node_id, c->cert[0] ? "key" : "certificate",
			(unsigned long long)c->node_id);
		return -EINVAL;
	}
	return 0;
}

void cm_config_free(struct cm_config *c)
{
	free(c->groups);
	c->groups = NULL;
	c->n_groups = c->cap_groups = 0;
}
