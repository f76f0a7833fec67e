/* request.c: client requests: validation, routing, proposals, reads, replies. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "confman/path.h"
#include "server/kv.h"
#include "server/log.h"
#include "server/node.h"

int cm__pending_push(struct cm_pending_list *l, uint32_t max, struct cm_pending **out)
{
	if (l->n >= max)
		return -EBUSY;
	if (l->n == l->cap) {
		uint32_t cap = l->cap ? l->cap * 2 : 16;
		struct cm_pending *v = realloc(l->v, sizeof(*v) * cap);
		if (v == NULL)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	*out = &l->v[l->n++];
	memset(*out, 0, sizeof(**out));
	return 0;
}

void cm__pending_release(struct cm_pending *p)
{
	cm_conn_unref(p->conn);
	free(p->path);
}

void cm__pending_free(struct cm_pending_list *l)
{
	for (uint32_t k = 0; k < l->n; k++)
		cm__pending_release(&l->v[k]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void cm__resp_init(struct cm_node *n, struct cm_group *g, const struct cm_req *req,
		   struct cm_resp *r)
{
	memset(r, 0, sizeof(*r));
	r->id = req->id;
	r->op = req->op;
	if (g == NULL)
		return;
	r->group = g->info->id;
	r->token = g->applied;
	r->leader_id = raft_leader(g->raft);
	const struct cm_node_info *li = r->leader_id ? cm_config_node(n->cfg, r->leader_id) : NULL;
	if (li != NULL)
		r->leader_addr = (struct cm_bytes){li->addr, (uint32_t)strlen(li->addr)};
}

void cm__reply_err(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		   const struct cm_req *req, int err)
{
	struct cm_resp r;
	cm__resp_init(n, g, req, &r);
	r.err = err;
	cm_net_reply(c, &r);
}

static uint64_t now_ms(struct cm_node *n)
{
	return uv_now(n->loop);
}

/* ---- reads ---- */

struct list_ctx {
	struct cm_dirent *v;
	uint32_t n, cap;
};

static int list_cb(void *arg, struct cm_bytes name, const struct cm_attr *attr)
{
	struct list_ctx *l = arg;
	if (l->n == l->cap) {
		uint32_t cap = l->cap ? l->cap * 2 : 32;
		struct cm_dirent *v = realloc(l->v, sizeof(*v) * cap);
		if (v == NULL)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (struct cm_dirent){name, *attr};
	return 0;
}

/* Serve a GET or LIST from this replica's applied state. */
/* A listing of a directory the caller reads only on the way to something
 * below: only the children on that way show. */
static void acl_narrow(struct cm_node *n, struct cm_conn *c, struct cm_bytes as,
		       struct cm_bytes dir, struct list_ctx *l)
{
	uint32_t kept = 0;
	for (uint32_t k = 0; k < l->n; k++)
		if (cm__acl_shows(n, c, as, dir.p, dir.len, l->v[k].name.p, l->v[k].name.len))
			l->v[kept++] = l->v[k];
	l->n = kept;
}

static void serve_read(struct cm_node *n, struct cm_group *g, MDB_txn *txn, struct cm_conn *c,
		       const struct cm_req *req, struct cm_bytes path)
{
	if (req->op == CM_OP_DUMP) {
		cm__dump_start(n, g, txn, c, req);
		return;
	}
	struct cm_resp r;
	cm__resp_init(n, g, req, &r);
	struct list_ctx l = {0};
	bool reads = cm__acl_reads(n, c, req->as, path.p, path.len);
	if (req->op == CM_OP_GET) {
		r.err = cm_kv_get(n->store, txn, g->info->id, path, &r.attr,
				  (req->flags & CM_GET_ATTR_ONLY) ? NULL : &r.value);
		/* Not readable, only on the way to something that is: a
		 * directory's attributes, never a file (acl.c). */
		if (r.err == 0 && !reads && !S_ISDIR(r.attr.mode))
			r.err = -EACCES;
		r.has_attr = r.err == 0;
	} else {
		r.err = cm_kv_list(n->store, txn, g->info->id, path, list_cb, &l);
		if (r.err == 0 && !reads)
			acl_narrow(n, c, req->as, path, &l);
		r.ents = l.v;
		r.n_ents = l.n;
	}
	/* Nothing there may mean it lives in a shard split off here whose map
	 * entry is not out yet (split.c): say so, never "no such file". A
	 * boundary is empty here, so only empty answers need the check. */
	if ((r.err == -ENOENT || (r.err == 0 && req->op == CM_OP_LIST && l.n == 0)) &&
	    cm_kv_fenced(n->store, txn, g->info->id, path) == 1) {
		memset(&r, 0, sizeof(r));
		cm__resp_init(n, NULL, req, &r);
		r.err = CM_EWRONGSHARD;
		r.token = n->reg.epoch;
	}
	cm_net_reply(c, &r);
	free(l.v);
}

static void serve_read_now(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
			   const struct cm_req *req)
{
	MDB_txn *txn;
	int rv = cm_store_txn_begin(n->store, false, &txn);
	if (rv != 0) {
		cm__reply_err(n, g, c, req, rv);
		return;
	}
	serve_read(n, g, txn, c, req, req->path);
	cm_store_txn_abort(txn);
}

/*
 * A follower that has not heard from a leader for max_staleness_ms may be cut
 * off from a majority that moved on: it refuses follower reads, and the
 * client goes to another replica (DESIGN.md, Consistency contract).
 */
bool cm__replica_stale(const struct cm_node *n, const struct cm_group *g)
{
	struct raft_status st;
	raft_status(g->raft, &st);
	if (st.role == RAFT_LEADER)
		return false; /* CheckQuorum: a cut-off leader steps down in time */
	if (st.role != RAFT_FOLLOWER || st.leader == 0)
		return true;
	return (uint64_t)st.leader_silence * n->cfg->tick_ms > n->cfg->max_staleness_ms;
}

/*
 * A read: follower reads are served as soon as this replica has applied the
 * client's token (read-your-writes, monotonic reads); linearizable ones first
 * get a read index from the leader (ReadIndex, thesis §6.4).
 */
static void handle_read(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
			const struct cm_req *req)
{
	/* A split's group serves nothing older than its birth: a replica that
	 * started empty waits for its snapshot like any stale one (split.c). */
	struct cm_req floored;
	if (req->token < g->info->born) {
		floored = *req;
		floored.token = g->info->born;
		req = &floored;
	}
	/* --test-refuse-attr-only (tests only): a server that knows no
	 * stat-only GET and refuses it, for the mount's fallback. */
	if ((req->flags & CM_GET_ATTR_ONLY) && n->cfg->test_refuse_attr_only) {
		cm__reply_err(n, g, c, req, -EINVAL);
		return;
	}
	if (req->consistency == CM_READ_FOLLOWER && cm__replica_stale(n, g)) {
		cm__reply_err(n, g, c, req, CM_ESTALE);
		return;
	}
	/* --test-skip-token-wait (tests only) breaks this on purpose. */
	if (req->consistency == CM_READ_FOLLOWER &&
	    (g->applied >= req->token || n->cfg->test_skip_token_wait)) {
		serve_read_now(n, g, c, req);
		return;
	}
	struct cm_pending *p;
	int rv = cm__pending_push(&g->reads, n->cfg->max_pending, &p);
	if (rv != 0) {
		cm__reply_err(n, g, c, req, rv);
		return;
	}
	/* the path, then the forwarded identity it is read as (if any) */
	p->path = malloc((size_t)req->path.len + req->as.len + 1);
	p->ctx = ++g->read_seq; /* every read: keeps the list in ctx order */
	p->done = req->consistency == CM_READ_FOLLOWER; /* its read point is the token */
	if (p->path == NULL)
		rv = -ENOMEM;
	else if (!p->done)
		rv = raft_read_index(g->raft, p->ctx);
	if (rv != 0) {
		free(p->path);
		g->reads.n--; /* the last one: the read never started */
		cm__reply_err(n, g, c, req, rv);
		return;
	}
	memcpy(p->path, req->path.p, req->path.len);
	p->path_len = req->path.len;
	if (req->as.len > 0)
		memcpy(p->path + req->path.len, req->as.p, req->as.len);
	p->as_len = req->as.len;
	p->conn = c;
	cm_conn_ref(c);
	p->req_id = req->id;
	p->op = req->op;
	p->consistency = req->consistency;
	p->flags = req->flags;
	p->index = req->consistency == CM_READ_FOLLOWER ? req->token : 0;
	p->deadline = now_ms(n) + (req->consistency == CM_READ_FOLLOWER ? CM_READ_WAIT_MS
									: CM_LIN_READ_WAIT_MS);
}

/* ---- writes ---- */

int64_t cm__wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static enum raft_role role_of(const struct raft *r)
{
	struct raft_status st;
	raft_status(r, &st);
	return st.role;
}

/* Whether path is the top directory of shard gi (a prefix other than "/"). */
static bool is_top(const struct cm_group_info *gi, struct cm_bytes path)
{
	return gi != NULL && path.len > 1 && strlen(gi->prefix) == path.len &&
	       memcmp(gi->prefix, path.p, path.len) == 0;
}

/*
 * A rename whose ends lie in two shards never reaches a state machine.
 * Moving a shard's top, or replacing one, is -EBUSY as for a mount point in
 * rename(2), so that mv stops at once (on EXDEV it would copy the tree and
 * then fail to delete the top); anything else is -EXDEV: tools copy and delete.
 */
static int rename_across(struct cm_node *n, const struct cm_group *g, const struct cm_req *req)
{
	if (is_top(g->info, req->path) ||
	    is_top(cm_reg_route(&n->reg, req->path2.p, req->path2.len), req->path2))
		return -EBUSY;
	return -EXDEV;
}

static int check_write(struct cm_node *n, struct cm_group *g, const struct cm_req *req)
{
	if (role_of(g->raft) != RAFT_LEADER)
		return raft_leader(g->raft) ? CM_ENOTLEADER : CM_ENOLEADER;
	if (req->flags & ~(uint32_t)CM_WRITE_FLAGS_KNOWN)
		return -EINVAL; /* refused here: the log only holds what applies */
	if ((req->flags & CM_PUT_IF_VERSION) && (req->flags & CM_PUT_IF_CREATED))
		return -EINVAL; /* both read `version` */
	if (req->op == CM_OP_PUT && req->value.len > n->cfg->max_value)
		return -EFBIG;
	if (req->op == CM_OP_RENAME && g->info->id != CM_META_GROUP) { /* meta: its own names */
		int err;
		int rv = cm_path_validate(req->path2.p, req->path2.len);
		if (rv != 0)
			return rv;
		if (cm__node_route(n, req->path2.p, req->path2.len, &err) != g)
			return rename_across(n, g, req);
	}
	/* Leave room for Raft's own writes: clients get ENOSPC, reads go on. */
	return cm__space_check(n, g, req);
}

/* Wait for the entry proposed at index (in p, pushed on g->writes): the
 * reply goes out once it applied and is durable, whoever leads then. */
static void track_write(struct cm_group *g, struct cm_pending *p, struct cm_conn *c,
			const struct cm_req *req, raft_index index)
{
	struct raft_status st;
	raft_status(g->raft, &st);
	p->conn = c;
	cm_conn_ref(c);
	p->req_id = req->id;
	p->op = req->op;
	p->index = index;
	p->term = st.term;
	p->deadline = UINT64_MAX;
	/* Keep the list in index order (turn.c searches it): a new leadership
	 * can reuse indexes of proposals still waiting from an older one. */
	for (uint32_t k = g->writes.n - 1; k > 0 && g->writes.v[k - 1].index > index; k--) {
		struct cm_pending t = g->writes.v[k];
		g->writes.v[k] = g->writes.v[k - 1];
		g->writes.v[k - 1] = t;
	}
}

/* Propose a write; the reply goes out once its entry is applied and durable. */
void cm__req_write(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		   const struct cm_req *req)
{
	int rv = check_write(n, g, req);
	struct cm_pending *p = NULL;
	if (rv == 0)
		rv = cm__pending_push(&g->writes, n->cfg->max_pending, &p);
	if (rv != 0) {
		cm__reply_err(n, g, c, req, rv);
		return;
	}
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	raft_index index = 0;
	rv = cm_kv_cmd_encode(&sb, req, cm__wall_ns(), n->cfg->max_value);
	if (rv == 0)
		rv = raft_propose(g->raft, sb.data, (uint32_t)sb.size, &index);
	msgpack_sbuffer_destroy(&sb);
	if (rv != 0) {
		g->writes.n--;
		cm__reply_err(n, g, c, req, rv == -EMSGSIZE ? -EFBIG : rv);
		return;
	}
	track_write(g, p, c, req, index);
	if (req->op == CM_OP_LOCK && (req->flags & CM_LOCK_WAIT)) {
		/* It may come back queued: then it waits for its grant (lease.c). */
		p->path = malloc(req->path.len ? req->path.len : 1);
		if (p->path != NULL)
			memcpy(p->path, req->path.p, req->path.len);
		p->path_len = req->path.len;
		p->flags = req->flags;
		p->lease = req->version;
		p->owner = req->from_index;
	}
}

void cm__req_conf(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		  const struct cm_req *req, enum raft_change_op op, uint64_t id)
{
	struct cm_pending *p = NULL;
	raft_index index = 0;
	int rv = cm__pending_push(&g->writes, n->cfg->max_pending, &p);
	if (rv != 0) {
		cm__reply_err(n, g, c, req, rv);
		return;
	}
	rv = raft_change(g->raft, op, id, &index);
	if (rv != 0) {
		g->writes.n--;
		cm__reply_err(n, g, c, req, rv);
		return;
	}
	track_write(g, p, c, req, index);
}

/* A dump starts as a linearizable read of the group (dump.c). */
static void handle_dump(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
			const struct cm_req *req)
{
	if (req->version != 0) {
		cm__dump_chunk(n, g, c, req);
		return;
	}
	bool meta = g->info->id == CM_META_GROUP;
	if (!meta && (req->path.len != strlen(g->info->prefix) ||
		      memcmp(req->path.p, g->info->prefix, req->path.len) != 0 || req->group == 0)) {
		cm__reply_err(n, g, c, req, -EINVAL); /* a whole group, named, by its prefix */
		return;
	}
	struct cm_req lin = *req;
	lin.consistency = CM_READ_LINEARIZABLE;
	handle_read(n, g, c, &lin);
}

/* ---- status ---- */

static void handle_status(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_resp r;
	cm__resp_init(n, NULL, req, &r);
	r.node_id = n->cfg->node_id;
	struct cm_node_health health;
	cm__node_health(n, &health);
	r.health = &health;
	r.has_health = true;
	r.groups = calloc(n->n_groups ? n->n_groups : 1, sizeof(*r.groups));
	if (r.groups == NULL) {
		cm__reply_err(n, NULL, c, req, -ENOMEM);
		return;
	}
	r.n_groups = n->n_groups;
	for (uint32_t k = 0; k < n->n_groups; k++) {
		struct cm_group *g = &n->groups[k];
		struct cm_group_status *gs = &r.groups[k];
		struct raft_status st;
		raft_status(g->raft, &st);
		gs->group = g->info->id;
		gs->prefix = (struct cm_bytes){g->info->prefix, (uint32_t)strlen(g->info->prefix)};
		gs->role = (uint8_t)st.role;
		gs->term = st.term;
		gs->leader = st.leader;
		gs->commit = st.commit;
		gs->applied = st.applied;
		gs->last = st.last_index;
		gs->snap_index = st.snap_index;
		gs->n_members = st.conf.n;
		memcpy(gs->members, st.conf.ids, sizeof(uint64_t) * st.conf.n);
		memcpy(gs->kinds, st.conf.kinds, st.conf.n);
		for (uint32_t j = 0; j < st.conf.n; j++) {
			bool active;
			if (raft_member_progress(g->raft, st.conf.ids[j], &gs->match[j], &active) != 0)
				gs->match[j] = 0;
		}
		gs->conf_pending = st.conf_index > st.applied;
	}
	cm_net_reply(c, &r);
	free(r.groups);
}

static void handle_dump(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
			const struct cm_req *req);

void cm__req_handle(void *arg, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_node *n = arg;
	int denied = cm__acl_check(n, c, req);
	if (denied != 0) {
		cm__reply_err(n, NULL, c, req, denied);
		return;
	}
	if (req->op == CM_OP_ACL || req->op == CM_OP_WHOAMI) {
		cm__acl_handle(n, c, req);
		return;
	}
	if (req->op == CM_OP_TOKEN) {
		cm__token_handle(n, c, req);
		return;
	}
	if (req->op == CM_OP_STATUS) {
		handle_status(n, c, req);
		return;
	}
	if (req->op == CM_OP_UNWATCH) {
		cm__watch_remove(n, c, req->version);
		cm__reply_err(n, NULL, c, req, 0);
		return;
	}
	if (req->op == CM_OP_SHARDS || req->op == CM_OP_SHARD_ADD || req->op == CM_OP_SHARD_SET) {
		cm__shards_handle(n, c, req);
		return;
	}
	if (req->op == CM_OP_NODE_ADD || req->op == CM_OP_NODE_REMOVE) {
		cm__nodes_handle(n, c, req);
		return;
	}
	if (req->op == CM_OP_SHARD_SPLIT) {
		cm__split_handle(n, c, req);
		return;
	}
	if (req->op == CM_OP_SHARD_MERGE) {
		cm__merge_handle(n, c, req);
		return;
	}
	if (req->op == CM_OP_DUMP && req->group == CM_META_GROUP) {
		handle_dump(n, &n->groups[0], c, req); /* the registry and node table */
		return;
	}
	if (req->op == CM_OP_CONF_CHANGE || req->op == CM_OP_TRANSFER) {
		cm__members_handle(n, c, req);
		return;
	}
	int err = cm_path_validate(req->path.p, req->path.len);
	struct cm_group *g = err ? NULL : cm__node_route(n, req->path.p, req->path.len, &err);
	/* A merge's copy goes to the parent it names, below the boundary the
	 * map still routes past (merge.c); the parent's kv checks the fence.
	 * Also on a replica of the parent that does not host the child (the
	 * child moved off it): the route's WRONGSHARD is the child's, not the
	 * parent's, and the parent's leader may well be such a node. */
	if ((err == 0 || err == CM_EWRONGSHARD) && (req->flags & CM_MERGE_COPY) &&
	    req->op != CM_OP_GET && req->op != CM_OP_LIST && req->op != CM_OP_WATCH) {
		g = cm__node_group(n, req->group);
		err = 0;
	}
	if (g == NULL && err == 0)
		err = CM_EWRONGSHARD;
	/* The client names the group it thinks owns the path: a stale map must
	 * not pair its token with another group's index space. */
	if (err == 0 && req->group != 0 && req->group != g->info->id)
		err = CM_EWRONGSHARD;
	if (err == CM_EWRONGSHARD) {
		struct cm_resp r;
		cm__resp_init(n, NULL, req, &r);
		r.err = err;
		r.token = n->reg.epoch;
		cm_net_reply(c, &r);
		return;
	}
	if (err != 0) {
		cm__reply_err(n, g, c, req, err);
		return;
	}
	switch (req->op) {
	case CM_OP_GET:
	case CM_OP_LIST:
		handle_read(n, g, c, req);
		return;
	case CM_OP_DUMP:
		handle_dump(n, g, c, req);
		return;
	case CM_OP_WATCH:
		err = cm__watch_add(n, g, c, req);
		if (err != 0)
			cm__reply_err(n, g, c, req, err);
		return;
	case CM_OP_LEASE:
	case CM_OP_LOCK:
		cm__lease_handle(n, g, c, req);
		return;
	default:
		cm__req_write(n, g, c, req);
		return;
	}
}

/* ---- completion ---- */

static void reply_write(struct cm_node *n, struct cm_group *g, struct cm_pending *p)
{
	struct cm_req req = {.id = p->req_id, .op = p->op};
	struct cm_resp r;
	cm__resp_init(n, g, &req, &r);
	r.err = p->err;
	r.has_attr = p->err == 0 && p->op != CM_OP_DELETE && p->op != CM_OP_CONF_CHANGE;
	if (p->op == CM_OP_CONF_CHANGE && p->err == 0)
		r.token = p->index; /* the configuration entry */
	r.attr = p->attr;
	if (p->err == CM_EWRONGSHARD)
		r.token = n->reg.epoch; /* fenced by a boundary: the map moved on */
	cm_net_reply(p->conn, &r);
}

static void complete_writes(struct cm_node *n, struct cm_group *g)
{
	struct cm_pending_list *l = &g->writes;
	uint32_t kept = 0;
	for (uint32_t k = 0; k < l->n; k++) {
		struct cm_pending *p = &l->v[k];
		if (!p->done && p->index > g->applied) {
			l->v[kept++] = *p;
			continue;
		}
		if (!p->done) /* applied, yet not seen: taken over by a snapshot */
			p->err = -EIO; /* outcome unknown to us: the client must re-read */
		if (p->op == CM_OP_LOCK && p->err == 0 && p->attr.version == 0 &&
		    (p->flags & CM_LOCK_WAIT) && cm__lock_park(n, g, p))
			continue; /* queued in the lock: answered when granted */
		reply_write(n, g, p);
		cm__pending_release(p);
	}
	l->n = kept;
}

static void complete_reads(struct cm_node *n, struct cm_group *g, MDB_txn *txn)
{
	struct cm_pending_list *l = &g->reads;
	uint32_t kept = 0;
	for (uint32_t k = 0; k < l->n; k++) {
		struct cm_pending *p = &l->v[k];
		if (!p->done || p->index > g->applied) {
			l->v[kept++] = *p;
			continue;
		}
		struct cm_req req = {.id = p->req_id, .op = p->op, .flags = p->flags,
				     .as = {p->path + p->path_len, p->as_len}};
		serve_read(n, g, txn, p->conn, &req, (struct cm_bytes){p->path, p->path_len});
		cm__pending_release(p);
	}
	l->n = kept;
}

void cm__req_after_turn(struct cm_node *n, struct cm_group *g, MDB_txn *rtxn)
{
	complete_writes(n, g);
	complete_reads(n, g, rtxn);
	cm__lock_wake(n, g, rtxn);
}

/* Reads that waited too long: a follower read lets the client try elsewhere. */
void cm__req_expire(struct cm_node *n)
{
	uint64_t now = now_ms(n);
	for (uint32_t k = 0; k < n->n_groups; k++) {
		struct cm_group *g = &n->groups[k];
		struct cm_pending_list *l = &g->reads;
		uint32_t kept = 0;
		for (uint32_t j = 0; j < l->n; j++) {
			struct cm_pending *p = &l->v[j];
			if (p->deadline > now) {
				l->v[kept++] = *p;
				continue;
			}
			struct cm_req req = {.id = p->req_id, .op = p->op,
				     .as = {p->path + p->path_len, p->as_len}};
			cm__reply_err(n, g, p->conn, &req,
				  p->consistency == CM_READ_FOLLOWER ? CM_ESTALE : -ETIMEDOUT);
			cm__pending_release(p);
		}
		l->n = kept;
	}
}

/* g is going away (its replica moved off this node): everything waiting on
 * it gets err. A write's outcome is then unknown to the client, as after
 * any lost reply; WRONGSHARD sends it to the map's new replicas. */
void cm__req_fail_group(struct cm_node *n, struct cm_group *g, int err)
{
	cm__lease_free(n, g, err);
	struct cm_pending_list *lists[] = {&g->writes, &g->reads};
	for (uint32_t j = 0; j < 2; j++) {
		struct cm_pending_list *l = lists[j];
		for (uint32_t k = 0; k < l->n; k++) {
			struct cm_pending *p = &l->v[k];
			struct cm_req req = {.id = p->req_id, .op = p->op,
				     .as = {p->path + p->path_len, p->as_len}};
			struct cm_resp r;
			cm__resp_init(n, NULL, &req, &r);
			r.err = err;
			r.token = n->reg.epoch;
			cm_net_reply(p->conn, &r);
			cm__pending_release(p);
		}
		l->n = 0;
	}
}

void cm__req_conn_closed(void *arg, struct cm_conn *c)
{
	cm__watch_remove(arg, c, 0);
}
