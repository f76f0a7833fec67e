/* config.h: a node's configuration: command-line flags and the cluster file. */
#ifndef CONFMAN_CONFIG_H
#define CONFMAN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "confman/proto.h"
#include "raft/raft.h"

#define CM_MAX_PEERS 16   /* nodes in one cluster file */
#define CM_MAX_GROUPS 4096 /* groups in one cluster file */

struct cm_tls_ctx;

struct cm_node_info {
	uint64_t id;
	char addr[CM_ADDR_MAX + 1]; /* host:port for peers and clients */
	char http[CM_ADDR_MAX + 1]; /* host:port of /healthz, /readyz, /metrics; "" none */
	uint8_t state; /* enum cm_node_state; the node table's (server/nodes.c) */
};

struct cm_group_info {
	uint64_t id;
	char prefix[CM_PATH_MAX + 1];
	uint32_t n_replicas;
	uint64_t replicas[RAFT_MAX_NODES]; /* the nodes that run it now */
	/* The replicas it was created with: only these bootstrap it (with this
	 * configuration); a node given a replica later starts it empty and
	 * waits for the leader's snapshot (registry.h). */
	uint32_t n_founders;
	uint64_t founders[RAFT_MAX_NODES];
	/* A shard split off a written prefix (registry.h): its parent group and
	 * the parent's index it was born at (0 until the split applied: then it
	 * is pending, neither routed nor started). 0 for any other shard. */
	uint64_t parent, born;
	bool retired; /* merged back into its parent: not routed, hosted nowhere */
};

/*
 * The cluster file (INI, parsed with Debian's libinih):
 *
 *   [cluster]
 *   id = confman            ; cluster id, checked in every handshake
 *   max_value = 1048576     ; largest value in bytes
 *   admin = alice           ; the first admin (a certificate's CN): acl.c
 *   proxies = confman-gw    ; CNs trusted to forward their callers' identities
 *   ca = /etc/confman/ca.pem ; the CA bundle: TLS on every connection
 *   insecure = false        ; true: plain TCP (no ca), warned at every start
 *   [node.1]
 *   address = 127.0.0.1:7001
 *   cert = /etc/confman/node1.pem ; this node's certificate (CN confman-node-1)
 *   key = /etc/confman/node1.key  ; its key: mode 0600, owned by the user
 *   [group.1]
 *   prefix = /
 *   replicas = 1,2,3
 */
#define CM_PROXIES_MAX 8 /* [cluster] proxies names */

struct cm_config {
	/* Flags. */
	uint64_t node_id;
	char cluster_file[4096];
	char data_dir[4096];
	uint32_t tick_ms;
	uint32_t election_ticks;
	uint64_t map_bytes;
	uint64_t snapshot_entries; /* take a snapshot after this many applied entries */
	uint64_t keep_entries;     /* log entries kept behind a snapshot */
	uint32_t max_pending;      /* client requests in flight per group */
	uint64_t min_free_bytes;   /* --min-free-mb: disk kept for Raft's own writes */
	uint32_t max_staleness_ms; /* a follower this long without its leader refuses reads */
	uint32_t quiesce_ticks;    /* idle ticks before a group goes quiet; 0: never */
	bool quiesce_set;
	bool force_new_cluster;    /* recover.c: this node becomes every group's only voter */
	bool test_skip_token_wait; /* tests only: follower reads ignore the token */
	bool test_lock_no_log;     /* tests only: locks granted without the log */
	uint32_t lease_checkpoint_ms; /* a leader records leases' time left this often */
	bool test_refuse_attr_only; /* tests only: a GET with CM_GET_ATTR_ONLY is -EINVAL */
	int verbose;
	char http_addr[CM_ADDR_MAX + 1]; /* --http: overrides the cluster file */
	char join[1024];                 /* --join: peers to ask, "a:p,b:q"; "" none */
	char listen[CM_ADDR_MAX + 1];    /* --listen: this node's address (--join) */
	char restore[4096];              /* --restore: a backup file to start from; "" none */
	bool restore_keep_id;            /* --restore-keep-cluster-id */
	/* TLS: --ca/--cert/--key override the cluster file's ca and this
	 * node's cert and key; --insecure (for --join) is insecure = true. */
	char ca[4096], cert[4096], key[4096];
	bool insecure;
	struct cm_tls_ctx *tls; /* loaded by main() from the paths; NULL: plain TCP */
	/* Cluster file. */
	char cluster_id[CM_CLUSTER_MAX + 1];
	char admin[65];   /* [cluster] admin: the user the first rule makes admin of "/" */
	/* [cluster] proxies: certificate CNs whose requests may carry a
	 * forwarded identity (acl.c); from this node's file, not replicated. */
	char proxies[CM_PROXIES_MAX][65];
	uint32_t n_proxies;
	uint32_t max_value;
	uint32_t n_nodes;
	struct cm_node_info nodes[CM_MAX_PEERS];
	uint32_t n_groups, cap_groups;
	struct cm_group_info *groups; /* owned */
};

/*
 * cm_config_parse - fill cfg from argv and the cluster file it names.
 * Prints a clear message to stderr on any error. Returns 0, 1 when --help
 * was printed (exit 0), or -EINVAL.
 */
int cm_config_parse(struct cm_config *cfg, int argc, char **argv);
void cm_config_free(struct cm_config *cfg);
/*
 * cm_config_security - TLS, or plain TCP by explicit choice: refuses a
 * configuration with neither a CA nor insecure = true, a CA without this
 * node's cert and key, or both. Prints why to stderr. 0 or -EINVAL.
 */
int cm_config_security(const struct cm_config *cfg);
const struct cm_node_info *cm_config_node(const struct cm_config *cfg, uint64_t id);

#endif /* CONFMAN_CONFIG_H */
