/* nodes.c: the node table: which nodes the cluster has, where, and which
 * were removed. It lives in the meta group's kv (DESIGN.md, "Operating a
 * cluster"); cfg->nodes is this node's copy of what it applied.
 *
 * - "/nodes-seed": the cluster file's nodes, one line "ID ADDR HTTP" each
 *   (HTTP "-" when none), written create-only by the meta group's first
 *   leader, like the registry's seed. Afterwards the recorded table wins: a
 *   changed address in a node's cluster file is a warning, not an override.
 * - "/n/ID": a node added at run time ("ADDR HTTP active", create-only, so
 *   an id is taken once) or any node's later state ("ADDR HTTP removed").
 *   A removed id is never used again: NODE_ADD refuses every id the table
 *   has, and peers refuse a removed node's connections (net.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/kv.h"
#include "server/log.h"
#include "server/node.h"

#define NODES_SEED "/nodes-seed"
#define NODES_DIR "/n"
#define NODE_LINE_MAX (2 * CM_ADDR_MAX + 64)

struct rec {
	uint64_t id;
	char addr[CM_ADDR_MAX + 1];
	char http[CM_ADDR_MAX + 1];
	uint8_t state;
};

static bool addr_ok(const char *a)
{
	return strlen(a) <= CM_ADDR_MAX && strchr(a, ':') != NULL;
}

/* "ADDR HTTP[ STATE]" into r (the id is the caller's). 0 or -EINVAL. */
static int parse_fields(const char *p, uint32_t len, bool with_state, struct rec *r)
{
	char line[NODE_LINE_MAX], st[16] = "active";
	if (len >= sizeof(line))
		return -EINVAL;
	memcpy(line, p, len);
	line[len] = '\0';
	int want = with_state ? 3 : 2;
	char a[CM_ADDR_MAX + 2], h[CM_ADDR_MAX + 2];
	if (sscanf(line, "%64s %64s %15s", a, h, st) != want || !addr_ok(a))
		return -EINVAL;
	strcpy(r->addr, a);
	strcpy(r->http, strcmp(h, "-") == 0 ? "" : h);
	if (r->http[0] && !addr_ok(r->http))
		return -EINVAL;
	r->state = strcmp(st, "active") == 0 ? CM_NODE_ACTIVE
		 : strcmp(st, "removed") == 0 ? CM_NODE_REMOVED : 0;
	return r->state ? 0 : -EINVAL;
}

/* Put one recorded node into cfg->nodes. 1 if anything changed, 0, -ENOSPC. */
static int upsert(struct cm_node *n, const struct rec *r)
{
	struct cm_config *cfg = n->cfg;
	struct cm_node_info *ni = (struct cm_node_info *)cm_config_node(cfg, r->id);
	if (ni == NULL) {
		if (cfg->n_nodes == CM_MAX_PEERS)
			return -ENOSPC;
		ni = &cfg->nodes[cfg->n_nodes++];
		memset(ni, 0, sizeof(*ni));
		ni->id = r->id;
	} else if (strcmp(ni->addr, r->addr) != 0 && ni->state == CM_NODE_ACTIVE &&
		   !n->nodes_loaded) {
		cm_log_warn("node %" PRIu64 ": this node's configuration says %s, the cluster "
			    "recorded %s: using the cluster's (change it with the node table, "
			    "not the cluster file)", r->id, ni->addr, r->addr);
	}
	bool changed = strcmp(ni->addr, r->addr) != 0 || strcmp(ni->http, r->http) != 0 ||
		       ni->state != r->state;
	strcpy(ni->addr, r->addr);
	strcpy(ni->http, r->http);
	ni->state = r->state;
	return changed;
}

static int load_seed(struct cm_node *n, MDB_txn *txn, bool seen[CM_MAX_PEERS])
{
	struct cm_attr attr;
	struct cm_bytes v;
	int rv = cm_kv_get(n->store, txn, CM_META_GROUP,
			   (struct cm_bytes){NODES_SEED, sizeof(NODES_SEED) - 1}, &attr, &v);
	if (rv != 0)
		return rv;
	int changed = 0;
	for (const char *p = v.p, *end = v.p + v.len; rv >= 0 && p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		char *rest;
		struct rec r = {.id = strtoull(p, &rest, 10)};
		if (r.id == 0 || rest >= le || *rest != ' ' ||
		    parse_fields(rest + 1, (uint32_t)(le - rest - 1), false, &r) != 0)
			return -EINVAL;
		rv = upsert(n, &r);
		changed += rv > 0;
		for (uint32_t k = 0; k < n->cfg->n_nodes; k++)
			seen[k] |= n->cfg->nodes[k].id == r.id;
		p = le + 1;
	}
	return rv < 0 ? rv : changed;
}

struct dir_walk {
	struct cm_node *n;
	MDB_txn *txn;
	bool *seen;
	int changed;
};

static int load_one(void *arg, struct cm_bytes name, const struct cm_attr *attr)
{
	(void)attr;
	struct dir_walk *w = arg;
	char path[64];
	if (name.len == 0 || name.len > 20)
		return 0;
	int pl = snprintf(path, sizeof(path), NODES_DIR "/%.*s", (int)name.len, name.p);
	struct cm_attr a;
	struct cm_bytes v;
	struct rec r = {.id = strtoull(path + 3, NULL, 10)};
	if (r.id == 0 || cm_kv_get(w->n->store, w->txn, CM_META_GROUP,
				   (struct cm_bytes){path, (uint32_t)pl}, &a, &v) != 0 ||
	    parse_fields(v.p, v.len, true, &r) != 0) {
		cm_log_error("node table: %s is unreadable: skipped", path);
		return 0;
	}
	int rv = upsert(w->n, &r);
	if (rv < 0)
		return rv;
	w->changed += rv;
	for (uint32_t k = 0; k < w->n->cfg->n_nodes; k++)
		w->seen[k] |= w->n->cfg->nodes[k].id == r.id;
	return 0;
}

/* Nodes this node's cluster file has but the cluster does not: not ours. */
static void forget_unrecorded(struct cm_node *n, const bool seen[CM_MAX_PEERS])
{
	for (uint32_t k = 0; k < n->cfg->n_nodes; k++) {
		struct cm_node_info *ni = &n->cfg->nodes[k];
		if (seen[k] || ni->state == 0)
			continue;
		if (ni->id == n->cfg->node_id)
			cm_log_error("this node (%" PRIu64 ") is not in the cluster's node table: "
				     "its peers refuse it (add it with `confmanctl node add`)", ni->id);
		else
			cm_log_warn("node %" PRIu64 " (%s) is not in the cluster's node table: "
				    "ignored (add it with `confmanctl node add`)", ni->id, ni->addr);
		ni->state = 0;
	}
}

int cm__nodes_load(struct cm_node *n, MDB_txn *txn)
{
	bool seen[CM_MAX_PEERS] = {false};
	int rv = load_seed(n, txn, seen);
	if (rv == -ENOENT)
		return 0; /* not recorded yet: the cluster file is the table */
	if (rv < 0) {
		cm_log_error("node table: the recorded seed is unusable: %s", cm_strerror(rv));
		return rv;
	}
	struct dir_walk w = {n, txn, seen, rv};
	rv = cm_kv_list(n->store, txn, CM_META_GROUP, (struct cm_bytes){NODES_DIR, 2}, load_one, &w);
	if (rv != 0 && rv != -ENOENT)
		return rv;
	forget_unrecorded(n, seen);
	n->nodes_loaded = true;
	if (w.changed > 0 && n->net != NULL)
		cm_net_sync_peers(n->net);
	const struct cm_node_info *me = cm_config_node(n->cfg, n->cfg->node_id);
	if (me != NULL && me->state == CM_NODE_REMOVED && n->net != NULL)
		cm__node_removed(n);
	return w.changed;
}

/* ---- writes: the seed, NODE_ADD, NODE_REMOVE (at the meta leader) ---- */

/* The cluster file's nodes, once for the cluster's life: proposed by every
 * new meta leader until recorded (create-only: EEXIST afterwards). A node
 * that joined has no cluster file and proposes nothing. */
void cm__nodes_propose_seed(struct cm_node *n, struct cm_group *meta)
{
	if (n->nodes_loaded || n->cfg->join[0])
		return;
	char *text = malloc((size_t)CM_MAX_PEERS * NODE_LINE_MAX);
	if (text == NULL)
		return;
	size_t len = 0;
	for (uint32_t k = 0; k < n->cfg->n_nodes; k++) {
		const struct cm_node_info *ni = &n->cfg->nodes[k];
		len += (size_t)snprintf(text + len, NODE_LINE_MAX, "%" PRIu64 " %s %s\n", ni->id,
					ni->addr, ni->http[0] ? ni->http : "-");
	}
	struct cm_req req = {
		.op = CM_OP_PUT,
		.flags = CM_PUT_CREATE,
		.path = {NODES_SEED, sizeof(NODES_SEED) - 1},
		.value = {text, (uint32_t)len},
		.mode = S_IFREG | 0644,
	};
	cm__propose_create(n, meta, &req);
	free(text);
}

/* Whether any shard's replica set names id (or the meta group has it as a member). */
static bool node_hosts(struct cm_node *n, uint64_t id)
{
	for (uint32_t k = 0; k < n->reg.n; k++)
		if (cm_reg_hosts(n->reg.v[k], id))
			return true;
	struct raft_status st;
	raft_status(n->groups[0].raft, &st);
	return raft_conf_kind(&st.conf, id) != 0;
}

static void node_write(struct cm_node *n, struct cm_conn *c, const struct cm_req *req,
		       const struct rec *r, uint32_t flags)
{
	char path[32], val[NODE_LINE_MAX];
	int pl = snprintf(path, sizeof(path), NODES_DIR "/%" PRIu64, r->id);
	int vl = snprintf(val, sizeof(val), "%s %s %s", r->addr, r->http[0] ? r->http : "-",
			  r->state == CM_NODE_REMOVED ? "removed" : "active");
	struct cm_req put = {
		.id = req->id,
		.op = CM_OP_PUT,
		.flags = flags,
		.path = {path, (uint32_t)pl},
		.value = {val, (uint32_t)vl},
		.mode = S_IFREG | 0644,
	};
	cm__req_write(n, &n->groups[0], c, &put);
}

static int add_check(struct cm_node *n, const struct cm_req *req, struct rec *r)
{
	r->id = req->version;
	if (r->id == 0 || r->id > UINT32_MAX ||
	    parse_fields(req->value.p, req->value.len, false, r) != 0) {
		/* "ADDR" alone is fine too: no HTTP address */
		char one[CM_ADDR_MAX + 8];
		int l = snprintf(one, sizeof(one), "%.*s -", (int)req->value.len, req->value.p);
		if (r->id == 0 || r->id > UINT32_MAX || l >= (int)sizeof(one) ||
		    parse_fields(one, (uint32_t)l, false, r) != 0)
			return -EINVAL;
	}
	if (cm_config_node(n->cfg, r->id) != NULL)
		return -EEXIST; /* ids are never reused, a removed one neither */
	for (uint32_t k = 0; k < n->cfg->n_nodes; k++)
		if (n->cfg->nodes[k].state == CM_NODE_ACTIVE && strcmp(n->cfg->nodes[k].addr, r->addr) == 0)
			return -EADDRINUSE;
	return n->cfg->n_nodes == CM_MAX_PEERS ? -ENOSPC : 0;
}

void cm__nodes_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_group *meta = &n->groups[0];
	struct rec r = {0};
	int err = 0;
	if (!n->nodes_loaded) {
		err = CM_ENOLEADER; /* the table is not recorded yet: try again */
	} else if (req->op == CM_OP_NODE_ADD) {
		err = add_check(n, req, &r);
		r.state = CM_NODE_ACTIVE;
	} else {
		const struct cm_node_info *ni = cm_config_node(n->cfg, req->version);
		if (ni == NULL || ni->state == 0)
			err = CM_ENONODE;
		else if (node_hosts(n, ni->id))
			err = -EBUSY; /* move its replicas off first (node remove does) */
		else if (ni->state == CM_NODE_REMOVED)
			err = 1; /* done already */
		if (ni != NULL) {
			r.id = ni->id;
			strcpy(r.addr, ni->addr);
			strcpy(r.http, ni->http);
			r.state = CM_NODE_REMOVED;
		}
	}
	if (err == 1 || err != 0) {
		cm__reply_err(n, meta, c, req, err == 1 ? 0 : err);
		return;
	}
	cm_log_info("node %s %" PRIu64 " (%s)", req->op == CM_OP_NODE_ADD ? "add" : "remove", r.id,
		    r.addr);
	node_write(n, c, req, &r, req->op == CM_OP_NODE_ADD ? CM_PUT_CREATE : 0);
}
