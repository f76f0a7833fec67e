/* lease.c: leases and locks at a group's leader: expiry by its clock, keepalives, checkpoints, waiters. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/kv_lease.h"
#include "server/log.h"
#include "server/node.h"

/*
 * What the log decides (kv_lease.c): that a lease exists, its TTL, its keys,
 * who holds or waits for a lock, and when a lease ends: an EXPIRE entry. What
 * only the leader decides: WHEN to propose that entry, by its own monotonic
 * clock (the loop's). Keepalives are not logged: they move the leader's
 * deadline only. So a new leader cannot know the last keepalive, and starts
 * every lease over: its time left at the last checkpoint (or its whole TTL),
 * plus an election timeout, from its own election. A lease the client kept
 * alive at the old leader until it lost its place there had at most an
 * election timeout of leadership left to be told "kept" (CheckQuorum steps
 * such a leader down in that time), so no lease ends earlier than its holder
 * was promised (etcd's lessor Promote). A keepalive of a lease that has a
 * checkpoint is answered only once its reset to the full TTL is committed:
 * a new leader starts such a lease at the checkpoint's time left, which
 * the keepalive's promise must not outrun. Checkpoints, logged every
 * lease_checkpoint_ms for leases longer than that, bound how far frequent
 * leader changes can stretch a lease (etcd's lease checkpointing); a
 * keepalive of a checkpointed lease logs a reset to its full TTL.
 */
#define CM_LEASE_EXPIRE_BATCH 64 /* EXPIREs one group proposes per tick */
#define CM_LEASE_RETRY_MS 200    /* an EXPIRE the core refused goes again after */
#define CM_LEASES_MAX 100000u    /* leases one group holds */
#define CM_LEASE_LIST_MAX (1u << 20) /* bytes of a LIST or TTL answer */

static uint64_t now_ms(struct cm_node *n)
{
	return uv_now(n->loop);
}

static uint64_t election_ms(const struct cm_node *n)
{
	return (uint64_t)n->cfg->election_ticks * n->cfg->tick_ms;
}

static struct cm_lease_slot *slot_find(struct cm_leases *L, uint64_t id)
{
	uint32_t lo = 0, hi = L->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (L->v[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < L->n && L->v[lo].id == id ? &L->v[lo] : NULL;
}

static int slot_add(struct cm_leases *L, const struct cm_lease_slot *s)
{
	if (slot_find(L, s->id) != NULL)
		return 0;
	if (L->n >= CM_LEASES_MAX)
		return -ENOSPC;
	if (L->n == L->cap) {
		uint32_t cap = L->cap ? 2 * L->cap : 16;
		struct cm_lease_slot *v = realloc(L->v, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		L->v = v;
		L->cap = cap;
	}
	uint32_t at = L->n;
	while (at > 0 && L->v[at - 1].id > s->id)
		at--;
	memmove(&L->v[at + 1], &L->v[at], (L->n - at) * sizeof(*L->v));
	L->v[at] = *s;
	L->n++;
	return 0;
}

static void slot_del(struct cm_leases *L, uint64_t id)
{
	struct cm_lease_slot *s = slot_find(L, id);
	if (s == NULL)
		return;
	uint32_t at = (uint32_t)(s - L->v);
	memmove(&L->v[at], &L->v[at + 1], (L->n - at - 1) * sizeof(*L->v));
	L->n--;
}

/* This node leads g: its term; 0 otherwise. */
static raft_term leading(const struct cm_group *g)
{
	struct raft_status st;
	raft_status(g->raft, &st);
	return st.role == RAFT_LEADER ? st.term : 0;
}

static void waits_fail(struct cm_node *n, struct cm_group *g, int err)
{
	struct cm_pending_list *w = &g->leases.waits;
	for (uint32_t k = 0; k < w->n; k++) {
		struct cm_req req = {.id = w->v[k].req_id, .op = CM_OP_LOCK};
		cm__reply_err(n, g, w->v[k].conn, &req, err);
		cm__pending_release(&w->v[k]);
	}
	w->n = 0;
}

static void unload(struct cm_node *n, struct cm_group *g, int err)
{
	g->leases.n = 0;
	g->leases.term = 0;
	waits_fail(n, g, err); /* they ask the next leader: their places are kept */
}

void cm__lease_free(struct cm_node *n, struct cm_group *g, int err)
{
	unload(n, g, err);
	cm__pending_free(&g->leases.waits);
	free(g->leases.v);
	memset(&g->leases, 0, sizeof(g->leases));
}

struct load_ctx {
	struct cm_node *n;
	struct cm_leases *L;
	uint64_t now;
};

static int load_one(void *arg, const struct cm_kv_lease *l)
{
	struct load_ctx *x = arg;
	uint64_t left = l->left_ms ? l->left_ms : l->ttl_ms;
	struct cm_lease_slot s = {
		.id = l->id,
		.ttl_ms = l->ttl_ms,
		.deadline = l->ending ? x->now : x->now + left + election_ms(x->n),
		.cp_left = l->left_ms,
		.ending = l->ending,
	};
	return slot_add(x->L, &s);
}

/* A new leadership: every lease's clock starts over (see above). */
static int load(struct cm_node *n, struct cm_group *g, raft_term term)
{
	struct cm_leases *L = &g->leases;
	MDB_txn *txn;
	L->n = 0;
	int rc = cm_store_txn_begin(n->store, false, &txn);
	if (rc != 0)
		return rc;
	struct load_ctx x = {n, L, now_ms(n)};
	rc = cm_kv_lease_each(n->store, txn, g->info->id, load_one, &x);
	cm_store_txn_abort(txn);
	if (rc != 0) {
		cm_log_warn("group %" PRIu64 ": leases not loaded: %s", g->info->id, cm_strerror(rc));
		L->n = 0;
		return rc;
	}
	L->term = term;
	L->next_checkpoint = x.now + n->cfg->lease_checkpoint_ms;
	return 0;
}

/* The leader's own entry: EXPIRE or CHECKPOINT of lease id. 0 once in its log. */
static int propose(struct cm_node *n, struct cm_group *g, uint32_t op, uint64_t id, uint64_t arg)
{
	const char *prefix = g->info->prefix;
	struct cm_req r = {.op = CM_OP_LEASE, .flags = op, .version = id, .from_index = arg,
			   .path = {prefix, (uint32_t)strlen(prefix)}};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	int rc = cm_kv_cmd_encode(&sb, &r, cm__wall_ns(), n->cfg->max_value);
	rc = rc ? rc : raft_propose(g->raft, sb.data, (uint32_t)sb.size, NULL);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static void group_tick(struct cm_node *n, struct cm_group *g)
{
	struct cm_leases *L = &g->leases;
	/* Most groups here follow and hold nothing of ours: no status copy. */
	if (L->term == 0 && L->waits.n == 0 && raft_leader(g->raft) != n->cfg->node_id)
		return;
	raft_term term = leading(g);
	if (term == 0) {
		if (L->term != 0 || L->waits.n != 0)
			unload(n, g, CM_ENOTLEADER);
		return;
	}
	if (L->term != term && load(n, g, term) != 0)
		return;
	uint64_t now = now_ms(n);
	uint32_t batch = 0;
	for (uint32_t k = 0; k < L->n && batch < CM_LEASE_EXPIRE_BATCH; k++) {
		struct cm_lease_slot *s = &L->v[k];
		if ((s->ending || now >= s->deadline) && now >= s->busy_until) {
			/* In the log, it applies or this leadership ends (then the
			 * next one reloads): no keepalive may answer for the lease
			 * meanwhile. Refused by the core (too much uncommitted):
			 * again a little later. */
			int rc = propose(n, g, CM_LEASE_EXPIRE, s->id, 0);
			s->busy_until = rc == 0 ? UINT64_MAX : now + CM_LEASE_RETRY_MS;
			batch++;
		}
	}
	if (now < L->next_checkpoint)
		return;
	L->next_checkpoint = now + n->cfg->lease_checkpoint_ms;
	for (uint32_t k = 0; k < L->n; k++) {
		struct cm_lease_slot *s = &L->v[k];
		if (!s->ending && s->ttl_ms > n->cfg->lease_checkpoint_ms && s->deadline > now)
			(void)propose(n, g, CM_LEASE_CHECKPOINT, s->id, s->deadline - now);
	}
}

void cm__lease_tick(struct cm_node *n)
{
	for (uint32_t k = 0; k < n->n_groups; k++)
		group_tick(n, &n->groups[k]);
}

void cm__lease_applied(struct cm_node *n, struct cm_group *g, const struct cm_kv_result *res)
{
	struct cm_leases *L = &g->leases;
	if (res->lock_moved)
		L->locks_moved = true;
	if (res->lease_op == 0 || L->term == 0)
		return; /* not a lease entry, or not leading: loaded when it leads */
	struct cm_lease_slot *s = slot_find(L, res->lease);
	switch (res->lease_op) {
	case CM_LEASE_GRANT: {
		struct cm_lease_slot ns = {.id = res->lease, .ttl_ms = res->lease_arg,
					   .deadline = now_ms(n) + res->lease_arg};
		if (slot_add(L, &ns) != 0)
			L->term = 0; /* reload at the next tick rather than lose one */
		return;
	}
	case CM_LEASE_CHECKPOINT:
		if (s != NULL)
			s->cp_left = res->lease_arg;
		return;
	default: /* REVOKE, EXPIRE */
		if (res->lease_gone) {
			slot_del(L, res->lease);
		} else if (s != NULL) {
			s->ending = true;
			s->busy_until = 0; /* the next key goes at the next tick */
		}
		return;
	}
}

/* ---- requests ---- */

static void reply_attr(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		       const struct cm_req *req, const struct cm_attr *a, struct cm_bytes value)
{
	struct cm_resp r;
	cm__resp_init(n, g, req, &r);
	r.has_attr = true;
	r.attr = *a;
	r.value = value;
	cm_net_reply(c, &r);
}

/* A bounded text buffer for LIST, TTL and QUERY answers. */
struct text {
	char *p;
	size_t len, cap;
	int err;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
	char line[CM_PATH_MAX + 128];
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (t->err != 0 || len < 0)
		return;
	if (t->len + (size_t)len > CM_LEASE_LIST_MAX) {
		t->err = -E2BIG;
		return;
	}
	if (t->len + (size_t)len > t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 4096;
		while (cap < t->len + (size_t)len)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (p == NULL) {
			t->err = -ENOMEM;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
	memcpy(t->p + t->len, line, (size_t)len);
	t->len += (size_t)len;
}

/* The answer: err, or a and t's lines; t is freed. */
static void reply_text(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		       const struct cm_req *req, int err, const struct cm_attr *a, struct text *t)
{
	err = err ? err : t->err;
	if (err != 0)
		cm__reply_err(n, g, c, req, err);
	else
		reply_attr(n, g, c, req, a, (struct cm_bytes){t->p ? t->p : "", (uint32_t)t->len});
	free(t->p);
	t->p = NULL;
}

static int key_line(void *arg, struct cm_bytes path)
{
	text_add(arg, "%.*s\n", (int)path.len, path.p);
	return 0;
}

static void lease_attr(const struct cm_lease_slot *s, uint64_t now, const struct cm_kv_lease *l,
		       struct cm_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->version = s->id;
	a->mtime_ns = (int64_t)s->ttl_ms;
	a->atime_ns = (int64_t)(s->deadline > now ? s->deadline - now : 0);
	a->size = l ? l->nkeys : 0;
	a->mod_index = l ? l->granted : 0;
}

/* KEEPALIVE, TTL, LIST: the leader answers from its clock, unlogged. */
static void lease_read(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		       const struct cm_req *req)
{
	struct cm_leases *L = &g->leases;
	raft_term term = leading(g);
	int err = term == 0 ? (raft_leader(g->raft) ? CM_ENOTLEADER : CM_ENOLEADER) : 0;
	if (err == 0 && L->term != term)
		err = load(n, g, term);
	MDB_txn *txn = NULL;
	err = err ? err : cm_store_txn_begin(n->store, false, &txn);
	if (err != 0) {
		cm__reply_err(n, g, c, req, err);
		return;
	}
	uint64_t now = now_ms(n);
	struct text t = {0};
	struct cm_attr a = {0};
	struct cm_kv_lease l;
	struct cm_lease_slot *s = slot_find(L, req->version);
	if (req->flags == CM_LEASE_LIST) {
		for (uint32_t k = 0; k < L->n; k++) {
			s = &L->v[k];
			if (s->ending || cm_kv_lease_find(n->store, txn, g->info->id, s->id, &l) != 0)
				continue;
			text_add(&t, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %u\n", s->id, s->ttl_ms,
				 s->deadline > now ? s->deadline - now : 0, l.nkeys);
			a.size++;
		}
	} else if (s == NULL || s->ending || s->busy_until > now ||
		   cm_kv_lease_find(n->store, txn, g->info->id, s->id, &l) != 0) {
		err = -ENOENT; /* unknown, ended, or its expiry is under way */
	} else if (req->flags == CM_LEASE_KEEPALIVE) {
		s->deadline = now + s->ttl_ms;
		if (s->cp_left != 0) {
			/* A new leader would start it at cp_left: the full TTL
			 * again is promised once the reset is committed (the
			 * answer is that entry's: its TTL left, counted after). */
			struct cm_req w = *req;
			w.flags = CM_LEASE_CHECKPOINT;
			w.from_index = 0;
			cm_store_txn_abort(txn);
			cm__req_write(n, g, c, &w);
			return;
		}
		lease_attr(s, now, &l, &a);
	} else {
		lease_attr(s, now, &l, &a);
		err = cm_kv_lease_keys(n->store, txn, g->info->id, s->id, CM_LEASE_KEYS_MAX, key_line, &t);
	}
	cm_store_txn_abort(txn);
	reply_text(n, g, c, req, err, &a, &t);
}

/* QUERY: the holders, read from what this node applied (the leader's). */
static void lock_query(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		       const struct cm_req *req)
{
	struct cm_kv_lock_ent *v = malloc(CM_LOCK_ENTRIES_MAX * sizeof(*v));
	MDB_txn *txn = NULL;
	uint32_t cnt = 0;
	int err = v == NULL ? -ENOMEM : cm_store_txn_begin(n->store, false, &txn);
	err = err ? err : cm_kv_lock_get(n->store, txn, g->info->id, req->path, v, &cnt);
	if (txn != NULL)
		cm_store_txn_abort(txn);
	struct text t = {0};
	struct cm_attr a = {0};
	for (uint32_t k = 0; err == 0 && k < cnt; k++) {
		if (!v[k].held) {
			a.size++; /* waiters: counted */
			continue;
		}
		text_add(&t, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %s\n", v[k].lease, v[k].owner,
			 v[k].token, v[k].shared ? "s" : "x");
		if (!v[k].shared || a.version == 0)
			a.version = v[k].token;
	}
	free(v);
	reply_text(n, g, c, req, err, &a, &t);
}

/* --test-lock-no-log: every ACQUIRE granted at once, as a broken server would. */
static void lock_unlogged(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
			  const struct cm_req *req)
{
	struct cm_attr a = {.version = g->applied + 1};
	reply_attr(n, g, c, req, &a, (struct cm_bytes){"", 0});
}

static int lease_check(const struct cm_node *n, const struct cm_group *g, const struct cm_req *req)
{
	if (req->op == CM_OP_LOCK)
		return req->flags == CM_LOCK_QUERY || req->flags == CM_LOCK_RELEASE ||
				       ((req->flags & CM_LOCK_ACQUIRE) &&
					(req->flags & ~(uint32_t)(CM_LOCK_ACQUIRE | CM_LOCK_SHARED |
								  CM_LOCK_WAIT)) == 0)
			       ? 0
			       : -EINVAL;
	if (req->flags != CM_LEASE_LIST && (req->version == 0 || req->version > CM_LEASE_ID_MAX))
		return -EINVAL;
	switch (req->flags) {
	case CM_LEASE_GRANT:
		if (req->from_index < CM_LEASE_TTL_MIN_MS || req->from_index > CM_LEASE_TTL_MAX_MS)
			return -EINVAL;
		return g->leases.n >= CM_LEASES_MAX ? -ENOSPC : 0;
	case CM_LEASE_KEEPALIVE: case CM_LEASE_REVOKE: case CM_LEASE_TTL: case CM_LEASE_LIST:
		return 0;
	default: /* CHECKPOINT and EXPIRE are the leader's own */
		(void)n;
		return -EINVAL;
	}
}

void cm__lease_handle(struct cm_node *n, struct cm_group *g, struct cm_conn *c,
		      const struct cm_req *req)
{
	int err = lease_check(n, g, req);
	if (err != 0) {
		cm__reply_err(n, g, c, req, err);
		return;
	}
	if (req->op == CM_OP_LOCK && req->flags == CM_LOCK_QUERY)
		lock_query(n, g, c, req);
	else if (req->op == CM_OP_LOCK && (req->flags & CM_LOCK_ACQUIRE) && n->cfg->test_lock_no_log)
		lock_unlogged(n, g, c, req);
	else if (req->op == CM_OP_LOCK || req->flags == CM_LEASE_GRANT ||
		 req->flags == CM_LEASE_REVOKE)
		cm__req_write(n, g, c, req); /* decided by the log */
	else
		lease_read(n, g, c, req);
}

/* ---- lock waiters ---- */

bool cm__lock_park(struct cm_node *n, struct cm_group *g, struct cm_pending *p)
{
	struct cm_pending *w;
	if (p->path == NULL || cm__pending_push(&g->leases.waits, n->cfg->max_pending, &w) != 0)
		return false; /* answered "queued" (token 0): the client asks again */
	*w = *p; /* the connection's reference and the path move with it */
	return true;
}

static int waiter_state(const struct cm_kv_lock_ent *v, uint32_t cnt, const struct cm_pending *p,
			uint64_t *token)
{
	for (uint32_t k = 0; k < cnt; k++)
		if (v[k].lease == p->lease && v[k].owner == p->owner) {
			*token = v[k].token;
			return v[k].held ? 1 : 0;
		}
	return -ENOENT; /* its lease ended, or it let go (an interrupted wait) */
}

void cm__lock_wake(struct cm_node *n, struct cm_group *g, MDB_txn *rtxn)
{
	struct cm_leases *L = &g->leases;
	if (!L->locks_moved || L->waits.n == 0) {
		L->locks_moved = false;
		return;
	}
	L->locks_moved = false;
	struct cm_kv_lock_ent *v = malloc(CM_LOCK_ENTRIES_MAX * sizeof(*v));
	if (v == NULL)
		return; /* they wait for the next change */
	uint32_t kept = 0;
	for (uint32_t k = 0; k < L->waits.n; k++) {
		struct cm_pending *p = &L->waits.v[k];
		uint32_t cnt = 0;
		uint64_t token = 0;
		int st = cm_kv_lock_get(n->store, rtxn, g->info->id,
					(struct cm_bytes){p->path, p->path_len}, v, &cnt);
		st = st ? st : waiter_state(v, cnt, p, &token);
		if (st == 0) {
			L->waits.v[kept++] = *p;
			continue;
		}
		struct cm_req req = {.id = p->req_id, .op = CM_OP_LOCK};
		if (st == 1) {
			struct cm_attr a = {.version = token};
			reply_attr(n, g, p->conn, &req, &a, (struct cm_bytes){"", 0});
		} else {
			cm__reply_err(n, g, p->conn, &req, st);
		}
		cm__pending_release(p);
	}
	L->waits.n = kept;
	free(v);
}
