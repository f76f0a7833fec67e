/* shards.c: the registry operations: SHARDS (read the map) and SHARD_ADD. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "confman/path.h"
#include "server/kv.h"
#include "server/log.h"
#include "server/node.h"

static void reply_shards(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_resp r;
	cm__resp_init(n, NULL, req, &r);
	r.epoch = n->reg.epoch;
	r.shards = calloc(n->reg.n ? n->reg.n : 1, sizeof(*r.shards));
	r.nodes = calloc(n->cfg->n_nodes ? n->cfg->n_nodes : 1, sizeof(*r.nodes));
	if (r.shards == NULL || r.nodes == NULL) {
		r.err = -ENOMEM;
	} else {
		for (uint32_t k = 0; k < n->reg.n; k++) {
			const struct cm_group_info *gi = n->reg.v[k];
			if (cm_reg_pending(gi) || gi->retired)
				continue; /* not routed: its parent serves it */
			struct cm_shard *sh = &r.shards[r.n_shards++];
			sh->parent = gi->parent;
			sh->born = gi->born;
			sh->group = gi->id;
			sh->prefix = (struct cm_bytes){gi->prefix, (uint32_t)strlen(gi->prefix)};
			sh->n_replicas = gi->n_replicas;
			memcpy(sh->replicas, gi->replicas, sizeof(uint64_t) * gi->n_replicas);
		}
		r.n_nodes = n->cfg->n_nodes;
		for (uint32_t k = 0; k < n->cfg->n_nodes; k++) {
			const struct cm_node_info *ni = &n->cfg->nodes[k];
			r.nodes[k] = (struct cm_node_addr){
				.id = ni->id,
				.addr = {ni->addr, (uint32_t)strlen(ni->addr)},
				.http = {ni->http, (uint32_t)strlen(ni->http)},
				.state = ni->state ? ni->state : CM_NODE_ACTIVE,
			};
		}
	}
	cm_net_reply(c, &r);
	free(r.shards);
	free(r.nodes);
}

/* A split's group is allocated already: answer as its allocation did (the
 * registry file's create index, which makes the group's id). */
static void reply_allocated(struct cm_node *n, struct cm_conn *c, const struct cm_req *req,
			    const struct cm_group_info *gi)
{
	struct cm_resp r;
	cm__resp_init(n, &n->groups[0], req, &r);
	r.has_attr = true;
	r.attr.create_index = gi->id - CM_SHARD_GID_BASE;
	cm_net_reply(c, &r);
}

/*
 * A value "R1,R2 split PARENT" allocates a split's group (split.c): PARENT
 * must be the group that serves the prefix now. Sets *rlen to the length
 * of the replica list. 0, -EINVAL.
 */
static int split_alloc_check(struct cm_node *n, const struct cm_req *req, uint32_t *rlen)
{
	const char *sp = memchr(req->value.p, ' ', req->value.len);
	*rlen = sp ? (uint32_t)(sp - req->value.p) : req->value.len;
	if (sp == NULL)
		return 0;
	char tail[48];
	uint32_t tl = req->value.len - *rlen - 1;
	unsigned long long parent = 0;
	char extra;
	if (tl >= sizeof(tail))
		return -EINVAL;
	memcpy(tail, sp + 1, tl);
	tail[tl] = '\0';
	if (sscanf(tail, "split %llu%c", &parent, &extra) != 1)
		return -EINVAL;
	const struct cm_group_info *owner = cm_reg_route(&n->reg, req->path.p, req->path.len);
	return owner != NULL && owner->id == parent ? 0 : -EXDEV;
}

/*
 * Add a shard: one create-only file in the meta group's kv. The client has
 * already made the prefix a boundary in its parent shard (a create-only MKDIR
 * with CM_MKDIR_BOUNDARY): that proved it empty and fences later writes there.
 */
static void shard_add(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_group *meta = &n->groups[0];
	assert(meta->info->id == CM_META_GROUP);
	uint64_t ids[RAFT_MAX_NODES];
	uint32_t n_ids;
	int err = cm_path_validate(req->path.p, req->path.len);
	if (err == 0 && req->path.len == 1)
		err = -EINVAL; /* "/" always has its shard */
	const struct cm_group_info *had = err ? NULL : cm_reg_find(&n->reg, req->path.p, req->path.len);
	if (had != NULL && cm_reg_pending(had) && req->value.len > 0 &&
	    memmem(req->value.p, req->value.len, " split ", 7) != NULL) {
		reply_allocated(n, c, req, had); /* step 1 again: the same group */
		return;
	}
	if (had != NULL)
		err = -EEXIST;
	uint32_t rlen = 0;
	if (err == 0)
		err = split_alloc_check(n, req, &rlen);
	if (err == 0)
		err = cm_reg_parse_replicas(n->cfg, req->value.p, rlen, ids, &n_ids);
	char key[CM_PATH_MAX + 1];
	uint32_t key_len = 0;
	if (err == 0)
		err = cm_reg_key(req->path.p, req->path.len, key, &key_len);
	if (err != 0) {
		cm__reply_err(n, meta, c, req, err);
		return;
	}
	struct cm_req put = {
		.id = req->id,
		.op = CM_OP_PUT,
		.flags = CM_PUT_CREATE, /* a prefix is added once */
		.path = {key, key_len},
		.value = req->value,
		.mode = 0100644,
	};
	cm_log_info("shard add %.*s on %.*s", (int)req->path.len, req->path.p, (int)req->value.len,
		    req->value.p);
	cm__req_write(n, meta, c, &put);
}

/*
 * Change the nodes that run a shard's replicas: "/r/GID" in the meta kv
 * (registry.h). Every node must be active in the table; where this node
 * hosts the group it also checks that no member of its configuration is
 * left out (confmanctl removes a member before unlisting it: node.c drops
 * an unlisted replica's data).
 */
static int set_check(struct cm_node *n, const struct cm_req *req, char *key, uint32_t *key_len)
{
	const struct cm_group_info *gi = NULL;
	for (uint32_t k = 0; k < n->reg.n && gi == NULL; k++)
		if (n->reg.v[k]->id == req->group)
			gi = n->reg.v[k];
	if (gi == NULL)
		return -ENOENT;
	uint64_t ids[RAFT_MAX_NODES];
	uint32_t n_ids;
	int err = cm_reg_parse_replicas(n->cfg, req->value.p, req->value.len, ids, &n_ids);
	for (uint32_t k = 0; err == 0 && k < n_ids; k++)
		if (cm_config_node(n->cfg, ids[k])->state != CM_NODE_ACTIVE)
			err = CM_ENONODE;
	/* Only the group's leader knows its members for sure: a replica that
	 * was removed never hears of it and still counts itself. */
	struct cm_group *g = cm__node_group(n, gi->id);
	if (g != NULL && raft_leader(g->raft) != n->cfg->node_id)
		g = NULL;
	if (err == 0 && g != NULL) {
		struct raft_status st;
		raft_status(g->raft, &st);
		for (uint32_t k = 0; k < st.conf.n && err == 0; k++) {
			bool listed = false;
			for (uint32_t j = 0; j < n_ids; j++)
				listed |= ids[j] == st.conf.ids[k];
			if (!listed)
				err = -EBUSY; /* remove the member from the group first */
		}
	}
	if (err == 0)
		*key_len = (uint32_t)snprintf(key, 48, CM_REG_OVERRIDES "/%llu",
					      (unsigned long long)gi->id);
	return err;
}

static void shard_set(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_group *meta = &n->groups[0];
	char key[48];
	uint32_t key_len = 0;
	int err = set_check(n, req, key, &key_len);
	if (err != 0) {
		cm__reply_err(n, meta, c, req, err);
		return;
	}
	struct cm_req put = {
		.id = req->id,
		.op = CM_OP_PUT,
		.path = {key, key_len},
		.value = req->value,
		.mode = 0100644,
	};
	cm_log_info("shard set group %llu on %.*s", (unsigned long long)req->group,
		    (int)req->value.len, req->value.p);
	cm__req_write(n, meta, c, &put);
}

/* ---- the tops: the directories that tie a shard into the tree ---- */

/* Propose a write nobody waits for: create-only, so it has happened
 * afterwards either way (EEXIST after the first time). */
void cm__propose_create(struct cm_node *n, struct cm_group *g, const struct cm_req *req)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	raft_index index;
	int rv = cm_kv_cmd_encode(&sb, req, cm__wall_ns(), n->cfg->max_value);
	if (rv == 0)
		rv = raft_propose(g->raft, sb.data, (uint32_t)sb.size, &index);
	msgpack_sbuffer_destroy(&sb);
	if (rv != 0)
		cm_log_debug("group %llu: create %.*s: %s", (unsigned long long)g->info->id,
			     (int)req->path.len, req->path.p, cm_strerror(rv));
}

static void propose_mkdir(struct cm_node *n, struct cm_group *g, const char *path, uint32_t flags)
{
	struct cm_req req = {
		.op = CM_OP_MKDIR,
		.flags = flags,
		.path = {path, (uint32_t)strlen(path)},
		.mode = S_IFDIR | 0755,
	};
	cm__propose_create(n, g, &req);
}

/* The meta group's leader records the cluster file's groups, once for the
 * cluster's life (registry.h); until a node has read it back, every new
 * leader tries again and gets EEXIST. */
static void propose_seed(struct cm_node *n, struct cm_group *meta)
{
	char *text;
	uint32_t len;
	if (n->reg.seeded || cm_reg_seed_text(n->cfg, &text, &len) != 0)
		return;
	struct cm_req req = {
		.op = CM_OP_PUT,
		.flags = CM_PUT_CREATE,
		.path = {CM_REG_SEED, (uint32_t)strlen(CM_REG_SEED)},
		.value = {text, len},
		.mode = S_IFREG | 0644,
	};
	cm__propose_create(n, meta, &req);
	free(text);
}

/* The length of path's parent directory ("/" for "/a"). */
static uint32_t parent_len(const char *path)
{
	const char *slash = strrchr(path, '/');
	assert(slash != NULL);
	return slash == path ? 1 : (uint32_t)(slash - path);
}

/*
 * Shards of the cluster file have no directory in their parent shard, so
 * `ls` of the parent would not show them and their own top would not exist
 * until a write below it. Once per leadership, a leader proposes what is
 * missing: MKDIR of its own prefix with CM_MKDIR_TOP (which also marks a top
 * that a write below it made first, or that predates the mark; from then on
 * the group refuses to remove or move it), and a CM_MKDIR_BOUNDARY MKDIR (as
 * shard add's) of every cluster-file shard whose parent directory it owns. Create-only:
 * after the first term they fail with EEXIST and change nothing. Shards
 * added at run time made their boundary when they were added. The meta
 * group's leader records the seed instead.
 */
void cm__shards_tops(struct cm_node *n, struct cm_group *g)
{
	/* Every tick, for every group: only the cheap leader check here. */
	if (raft_leader(g->raft) != n->cfg->node_id) {
		g->tops_made = false;
		return;
	}
	if (g->tops_made)
		return;
	g->tops_made = true;
	if (g->info->id == CM_META_GROUP) {
		propose_seed(n, g);
		cm__nodes_propose_seed(n, g);
		cm__acl_propose_seed(n, g);
		return;
	}
	if (strcmp(g->info->prefix, "/") != 0)
		propose_mkdir(n, g, g->info->prefix, CM_MKDIR_TOP);
	const char *mine = g->info->prefix;
	uint32_t mine_len = (uint32_t)strlen(mine);
	for (uint32_t k = 0; k < n->reg.n; k++) {
		const struct cm_group_info *c = n->reg.v[k];
		bool added = c->id >= CM_SHARD_GID_BASE;
		if (added || c->id == g->info->id || strcmp(c->prefix, "/") == 0)
			continue;
		/* Only shards below this one can have their parent here: the
		 * cheap test first, or 1,000 groups electing cost 10^9 steps. */
		if (!cm_path_is_under(c->prefix, (uint32_t)strlen(c->prefix), mine, mine_len))
			continue;
		const struct cm_group_info *owner = cm_reg_route(&n->reg, c->prefix,
								 parent_len(c->prefix));
		if (owner != NULL && owner->id == g->info->id)
			propose_mkdir(n, g, c->prefix, CM_MKDIR_BOUNDARY);
	}
}

void cm__shards_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	if (req->op == CM_OP_SHARDS)
		reply_shards(n, c, req);
	else if (req->op == CM_OP_SHARD_SET)
		shard_set(n, c, req);
	else
		shard_add(n, c, req);
}
