/* ac.c: the asynchronous client: requests, deadlines, retries, completion. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

/* ---- lists ---- */

void cm_ac__list_init(struct cm_ac__link *h)
{
	h->prev = h->next = h;
}

bool cm_ac__list_empty(const struct cm_ac__link *h)
{
	return h->next == h;
}

void cm_ac__list_push(struct cm_ac__link *h, struct cm_ac__link *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

void cm_ac__list_remove(struct cm_ac__link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

/* ---- small helpers ---- */

uint32_t cm_ac__rand(struct cm_ac *ac, uint32_t n)
{
	/* xorshift64*: jitter and server choice need spread, not secrecy. */
	ac->rng ^= ac->rng >> 12;
	ac->rng ^= ac->rng << 25;
	ac->rng ^= ac->rng >> 27;
	uint64_t x = ac->rng * 2685821657736338717ull;
	return n ? (uint32_t)((x >> 32) % n) : 0;
}

void cm_client_opts_init(struct cm_client_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->timeout_ms = CM_CLIENT_DEFAULT_TIMEOUT_MS;
	o->consistency = CM_READ_FOLLOWER;
	o->max_outstanding = CM_CLIENT_DEFAULT_OUTSTANDING;
}

static bool op_is_write(uint8_t op)
{
	return op == CM_OP_PUT || op == CM_OP_DELETE || op == CM_OP_MKDIR || op == CM_OP_RENAME ||
	       op == CM_OP_SHARD_ADD || op == CM_OP_SHARD_SPLIT || op == CM_OP_SHARD_MERGE ||
	       op == CM_OP_ACL || op == CM_OP_TOKEN ||
	       /* Leases and locks: the leader's (its clock, its queues), so
	        * all of them travel as writes, following NOT_LEADER. */
	       op == CM_OP_LEASE || op == CM_OP_LOCK ||
	       cm_ac__op_is_member(op);
}

bool cm_ac__op_is_member(uint8_t op)
{
	return op == CM_OP_CONF_CHANGE || op == CM_OP_TRANSFER || op == CM_OP_NODE_ADD ||
	       op == CM_OP_NODE_REMOVE || op == CM_OP_SHARD_SET;
}

/* The lease and lock requests that may go again once their outcome is
 * unknown: a keepalive twice is one, the reads are reads, and an ACQUIRE
 * again keeps the pair's place or gets its hold (proto.h). A GRANT, a
 * REVOKE and a RELEASE may not (EEXIST, ENOENT the second time): lease.c
 * sends them again itself and reads that answer as done. */
static bool lease_idempotent(const struct cm_req *r)
{
	if (r->op == CM_OP_LEASE)
		return r->flags == CM_LEASE_KEEPALIVE || r->flags == CM_LEASE_TTL ||
		       r->flags == CM_LEASE_LIST;
	if (r->op == CM_OP_LOCK)
		return (r->flags & (CM_LOCK_ACQUIRE | CM_LOCK_QUERY)) != 0;
	return false;
}

/* The operands of a membership op: a group where one is addressed, a node
 * id, a step, a value. Its path is not used (and not checked). */
static int member_check(const struct cm_req *r)
{
	bool group_ok = r->group != 0;
	switch (r->op) {
	case CM_OP_CONF_CHANGE:
		if (r->flags < CM_CONF_ADD_LEARNER || r->flags > CM_CONF_REMOVE)
			return -EINVAL;
		return group_ok && r->version != 0 ? 0 : -EINVAL;
	case CM_OP_TRANSFER:
		return group_ok ? 0 : -EINVAL;
	case CM_OP_NODE_ADD:
		return r->version != 0 && r->value.len > 0 ? 0 : -EINVAL;
	case CM_OP_NODE_REMOVE:
		return r->version != 0 ? 0 : -EINVAL;
	case CM_OP_SHARD_SET:
		return group_ok && r->group != CM_META_GROUP && r->value.len > 0 ? 0 : -EINVAL;
	default:
		return -EINVAL;
	}
}

/* ---- wire ids of requests in flight ---- */

static struct cm_ac__req **id_slot(struct cm_ac *ac, uint64_t id)
{
	return &ac->ids[id & ac->id_mask];
}

static void id_insert(struct cm_ac *ac, struct cm_ac__req *rq)
{
	struct cm_ac__req **s = id_slot(ac, rq->req.id);
	rq->hnext = *s;
	*s = rq;
}

void cm_ac__id_remove(struct cm_ac *ac, struct cm_ac__req *rq)
{
	for (struct cm_ac__req **p = id_slot(ac, rq->req.id); *p; p = &(*p)->hnext) {
		if (*p == rq) {
			*p = rq->hnext;
			rq->hnext = NULL;
			return;
		}
	}
}

static struct cm_ac__req *id_find(struct cm_ac *ac, uint64_t id)
{
	struct cm_ac__req *rq = *id_slot(ac, id);
	while (rq && rq->req.id != id)
		rq = rq->hnext;
	return rq;
}

/* Take rq off its connection: it is no longer waiting for an answer there. */
static void rq_detach(struct cm_ac__req *rq)
{
	if (rq->conn == NULL)
		return;
	cm_ac__list_remove(&rq->qlink);
	cm_ac__id_remove(rq->ac, rq);
	cm_ac__inflight_end(rq);
}

/* ---- creating and freeing the client ---- */

static void ac_free(struct cm_ac *ac)
{
	cm_ac_close_cb cb = ac->close_cb;
	void *arg = ac->close_arg;
	assert(cm_ac__list_empty(&ac->reqs));
	assert(cm_ac__list_empty(&ac->watches));
	cm_ac__groups_free(ac);
	cm_ac__map_free(ac);
	cm_tls_ctx_free(ac->tls);
	free(ac->ids);
	free(ac);
	if (cb)
		cb(arg);
}

void cm_ac__handle_gone(struct cm_ac *ac)
{
	assert(ac->n_handles > 0);
	ac->n_handles--;
	if (ac->closing && ac->n_handles == 0)
		ac_free(ac);
}

static int opts_apply(struct cm_ac *ac, const struct cm_client_opts *o)
{
	const char *cluster = o->cluster ? o->cluster : CM_CLIENT_DEFAULT_CLUSTER;
	size_t n = strlen(cluster);
	if (n == 0 || n > CM_CLUSTER_MAX)
		return -EINVAL;
	memcpy(ac->cluster, cluster, n + 1);
	if (o->consistency != CM_READ_LINEARIZABLE && o->consistency != CM_READ_FOLLOWER)
		return -EINVAL;
	ac->consistency = o->consistency;
	ac->timeout_ms = o->timeout_ms ? o->timeout_ms : CM_CLIENT_DEFAULT_TIMEOUT_MS;
	ac->max_outstanding = o->max_outstanding ? o->max_outstanding
						 : CM_CLIENT_DEFAULT_OUTSTANDING;
	ac->watch_silence_ms = o->watch_silence_ms ? o->watch_silence_ms
						   : CM_CLIENT_DEFAULT_WATCH_SILENCE_MS;
	if (ac->watch_silence_ms < 2 * CM_WATCH_PROGRESS_MS)
		return -EINVAL; /* every heartbeat late would kill the stream */
	if (ac->max_outstanding > (1u << 20))
		return -EINVAL;
	/* An explicit list must be usable; an empty environment variable
	 * counts as unset. */
	const char *list = o->servers;
	if (list == NULL) {
		list = getenv("CONFMAN_SERVERS");
		if (list == NULL || *list == '\0')
			list = CM_CLIENT_DEFAULT_SERVERS;
	}
	return cm_ac__parse_servers(ac, list);
}

/* The TLS credentials of opts (NULL without a ca: plain TCP). */
static int tls_load(const struct cm_client_opts *o, struct cm_tls_ctx **out, char *why,
		    size_t why_len)
{
	char buf[CM_TLS_WHY_MAX * 2];
	*out = NULL;
	if (o->ca != NULL && o->ca[0] == '\0' && o->cert == NULL && o->key == NULL)
		return 0; /* an empty CONFMAN_CA counts as unset */
	if (o->ca == NULL && (o->cert != NULL || o->key != NULL)) {
		snprintf(why ? why : buf, why ? why_len : sizeof(buf),
			 "a client certificate needs the CA bundle too (ca)");
		return -EINVAL;
	}
	if (o->ca == NULL)
		return 0;
	struct cm_tls_paths p = {o->ca, o->cert, o->key};
	return cm_tls_ctx_new(&p, out, why ? why : buf, why ? why_len : sizeof(buf));
}

int cm_client_tls_check(const struct cm_client_opts *opts, char *why, size_t why_len)
{
	struct cm_tls_ctx *x;
	if (why_len > 0)
		why[0] = '\0';
	int rv = tls_load(opts, &x, why, why_len);
	cm_tls_ctx_free(x);
	return rv;
}

static int ids_alloc(struct cm_ac *ac)
{
	uint32_t n = 64;
	while (n < 2 * ac->max_outstanding)
		n *= 2;
	ac->ids = calloc(n, sizeof(*ac->ids));
	if (ac->ids == NULL)
		return -ENOMEM;
	ac->id_mask = n - 1;
	return 0;
}

int cm_ac_new(uv_loop_t *loop, const struct cm_client_opts *opts, struct cm_ac **out)
{
	struct cm_client_opts def;
	if (opts == NULL) {
		cm_client_opts_init(&def);
		opts = &def;
	}
	struct cm_ac *ac = calloc(1, sizeof(*ac));
	if (ac == NULL)
		return -ENOMEM;
	ac->loop = loop;
	cm_ac__list_init(&ac->reqs);
	cm_ac__list_init(&ac->watches);
	int rv = opts_apply(ac, opts);
	if (rv == 0)
		rv = ids_alloc(ac);
	if (rv == 0)
		rv = tls_load(opts, &ac->tls, NULL, 0);
	if (rv != 0)
		goto err_ac;
	ac->next_id = 1;
	ac->next_watch = 1;
	ac->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)ac) | 1;
	ac->home = cm_ac__rand(ac, ac->n_listed);
	rv = uv_timer_init(loop, &ac->anchor);
	if (rv != 0)
		goto err_ac;
	ac->anchor.data = ac;
	uv_unref((uv_handle_t *)&ac->anchor);
	ac->n_handles = 1;
	rv = cm_ac__watch_timer_init(ac);
	assert(rv == 0); /* uv_timer_init cannot fail */
	*out = ac;
	return 0;
err_ac:
	cm_tls_ctx_free(ac->tls);
	free(ac->ids);
	free(ac);
	return rv;
}

/* ---- submitting ---- */

static int check_path(struct cm_bytes b)
{
	if (b.len > 0 && b.p == NULL)
		return -EINVAL;
	return cm_path_validate(b.p, b.len);
}

static int req_check(const struct cm_req *r, enum cm_ac__kind kind)
{
	bool internal = kind != CM_AC_RQ_USER;
	switch (r->op) {
	case CM_OP_GET: case CM_OP_LIST: case CM_OP_PUT: case CM_OP_DELETE:
	case CM_OP_MKDIR: case CM_OP_RENAME: case CM_OP_STATUS: case CM_OP_SHARDS:
	case CM_OP_SHARD_ADD:
		break;
	case CM_OP_CONF_CHANGE: case CM_OP_TRANSFER: case CM_OP_NODE_ADD:
	case CM_OP_NODE_REMOVE: case CM_OP_SHARD_SET:
		break;
	case CM_OP_ACL: case CM_OP_WHOAMI: /* acl.c */
	case CM_OP_TOKEN: /* token.c */
		break;
	case CM_OP_LEASE: case CM_OP_LOCK: /* at path's group: lease.c */
		break;
	case CM_OP_DUMP: /* a backup's chunks: snapshot.c */
		if (r->group == 0)
			return -EINVAL;
		break;
	case CM_OP_SHARD_SPLIT: case CM_OP_SHARD_MERGE: /* at the group named: split.c */
		if (r->group == 0)
			return -EINVAL;
		break;
	case CM_OP_WATCH: case CM_OP_UNWATCH:
		if (!internal)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	if (r->consistency > CM_READ_FOLLOWER && r->consistency != CM_READ_DEFAULT)
		return -EINVAL;
	if (r->value.len > CM_VALUE_MAX_LIMIT)
		return -EFBIG;
	if ((r->value.len > 0 && r->value.p == NULL) || (r->path2.len > 0 && r->path2.p == NULL))
		return -EINVAL;
	if (r->as.len > CM_AS_MAX || (r->as.len > 0 && r->as.p == NULL))
		return -EINVAL;
	if (r->op == CM_OP_STATUS || r->op == CM_OP_SHARDS || r->op == CM_OP_UNWATCH)
		return 0;
	if (cm_ac__op_is_member(r->op))
		return member_check(r);
	int rv = check_path(r->path);
	if (rv == 0 && r->op == CM_OP_RENAME)
		rv = check_path(r->path2);
	return rv;
}

/* Copy the request and the bytes it points at into one allocation. */
static struct cm_ac__req *rq_alloc(const struct cm_req *req)
{
	size_t n = (size_t)req->path.len + req->path2.len + req->value.len + req->as.len;
	struct cm_ac__req *rq = calloc(1, sizeof(*rq) + n + 1);
	if (rq == NULL)
		return NULL;
	rq->req = *req;
	char *p = rq->data;
	const struct cm_bytes *src[] = {&req->path, &req->path2, &req->value, &req->as};
	struct cm_bytes *dst[] = {&rq->req.path, &rq->req.path2, &rq->req.value, &rq->req.as};
	for (int k = 0; k < 4; k++) {
		if (src[k]->len > 0)
			memcpy(p, src[k]->p, src[k]->len);
		*dst[k] = (struct cm_bytes){p, src[k]->len};
		p += src[k]->len;
	}
	return rq;
}

static void rq_timer_cb(uv_timer_t *t);

int cm_ac__submit(struct cm_ac *ac, enum cm_ac__kind kind, int32_t pinned,
		  const struct cm_req *req, cm_ac_cb cb, void *arg, struct cm_ac__req **out)
{
	if (ac->closing)
		return -ECANCELED;
	int rv = req_check(req, kind);
	if (rv != 0)
		return rv;
	if (kind == CM_AC_RQ_USER && ac->n_outstanding >= ac->max_outstanding)
		return -EBUSY;
	struct cm_ac__req *rq = rq_alloc(req);
	if (rq == NULL)
		return -ENOMEM;
	rv = uv_timer_init(ac->loop, &rq->timer);
	if (rv != 0) {
		free(rq);
		return rv;
	}
	rq->ac = ac;
	rq->kind = kind;
	rq->cb = cb;
	rq->arg = arg;
	rq->timer.data = rq;
	ac->n_handles++;
	if (rq->req.consistency == CM_READ_DEFAULT)
		rq->req.consistency = ac->consistency;
	rq->is_write = op_is_write(req->op);
	if (req->op == CM_OP_SHARD_ADD || req->op == CM_OP_NODE_ADD ||
	    req->op == CM_OP_NODE_REMOVE || req->op == CM_OP_ACL || req->op == CM_OP_TOKEN)
		rq->req.group = CM_META_GROUP; /* the registry's group decides */
	/* Setting a shard's replica set twice is setting it once: the one
	 * membership op that may go again after its outcome became unknown.
	 * A CONF_CHANGE may not (a second ADD_LEARNER is EEXIST, a second
	 * REMOVE UNKNOWNPEER): its caller re-reads the state instead. */
	rq->idempotent = req->op == CM_OP_SHARD_SET || req->op == CM_OP_SHARD_SPLIT ||
			 req->op == CM_OP_SHARD_MERGE || /* each step answers again as it did */
			 req->op == CM_OP_ACL || /* a rule granted twice is granted once */
			 lease_idempotent(req) ||
			 (req->op == CM_OP_TOKEN && req->flags != CM_TOKEN_CREATE);
	rq->pinned = pinned;
	rq->avoid = rq->target = rq->srv = -1;
	rq->backoff = CM_AC_BACKOFF_MIN_MS;
	rq->last_err = -ETIMEDOUT;
	/* The loop's clock is stale after the caller worked outside it; a
	 * deadline taken from it would expire early. */
	uv_update_time(ac->loop);
	rq->deadline = uv_now(ac->loop) + ac->timeout_ms;
	rq->state = CM_AC_RQ_IDLE;
	cm_ac__list_push(&ac->reqs, &rq->all);
	if (kind == CM_AC_RQ_USER)
		ac->n_outstanding++;
	/* The first attempt runs from the loop, so that no callback can fire
	 * inside this call (the contract of cm_ac_submit). */
	uv_timer_start(&rq->timer, rq_timer_cb, 0, 0);
	if (out)
		*out = rq;
	return 0;
}

int cm_ac_submit(struct cm_ac *ac, const struct cm_req *req, cm_ac_cb cb, void *arg)
{
	if (cb == NULL)
		return -EINVAL;
	return cm_ac__submit(ac, CM_AC_RQ_USER, -1, req, cb, arg, NULL);
}

int cm_ac_submit_to(struct cm_ac *ac, const char *server, const struct cm_req *req, cm_ac_cb cb,
		    void *arg)
{
	if (cb == NULL || server == NULL)
		return -EINVAL;
	if (ac->closing)
		return -ECANCELED;
	int s = cm_ac__server_find(ac, server, (uint32_t)strnlen(server, CM_ADDR_MAX + 1), true);
	if (s < 0)
		return s;
	return cm_ac__submit(ac, CM_AC_RQ_USER, s, req, cb, arg, NULL);
}

/* ---- attempts, retries, deadlines ---- */

/* What a request that ran out of time reports: the reason the cluster was
 * unreachable when there is one, else a plain timeout. */
static int expiry_err(const struct cm_ac__req *rq)
{
	if (rq->state == CM_AC_RQ_SENT)
		return -ETIMEDOUT;
	switch (rq->last_err) {
	case -ECONNREFUSED: case -EHOSTUNREACH: case -ENETUNREACH: case CM_ENOLEADER:
	case CM_EWRONGSHARD:
		return rq->last_err;
	default:
		return -ETIMEDOUT;
	}
}

static uint64_t attempt_due(const struct cm_ac__req *rq, uint64_t now)
{
	/* A read that one server sits on goes to another before the deadline
	 * (a stopped process keeps its socket open). A write never does: its
	 * outcome would become unknown. A WATCH does (the abandoned one is
	 * undone: cm_ac__watch_attempt_abandoned). */
	if (rq->is_write || rq->pinned >= 0)
		return rq->deadline;
	uint64_t per = rq->ac->timeout_ms / 4;
	if (per < CM_AC_ATTEMPT_MIN_MS)
		per = CM_AC_ATTEMPT_MIN_MS;
	return now + per < rq->deadline ? now + per : rq->deadline;
}

void cm_ac__attempt(struct cm_ac__req *rq)
{
	struct cm_ac *ac = rq->ac;
	assert(rq->state == CM_AC_RQ_IDLE);
	uint64_t now = uv_now(ac->loop);
	if (now >= rq->deadline) {
		cm_ac__finish(rq, expiry_err(rq), NULL);
		return;
	}
	const struct cm_ac__shard *sh = cm_ac__route(ac, rq);
	int32_t s = cm_ac__pick(ac, rq, sh);
	struct cm_ac__conn *c;
	int rv = cm_ac__conn_get(ac, (uint32_t)s, &c);
	rq->srv = s;
	if (rv != 0) {
		if (rv == -ENOMEM) {
			cm_ac__finish(rq, rv, NULL);
			return;
		}
		cm_ac__server_failed(ac, (uint32_t)s);
		rq->avoid = s;
		cm_ac__retry(rq, rv, false);
		return;
	}
	rq->req.id = ac->next_id++;
	if (rq->wsub)
		rq->wsub->wire_id = rq->req.id;
	id_insert(ac, rq);
	rq->conn = c;
	ac->servers[s].inflight++;
	rq->wgen = 0;
	rq->state = CM_AC_RQ_WAITING;
	uv_timer_start(&rq->timer, rq_timer_cb, attempt_due(rq, now) - now, 0);
	cm_ac__conn_enqueue(c, rq); /* may complete rq: touch nothing after */
}

void cm_ac__retry(struct cm_ac__req *rq, int err, bool now)
{
	struct cm_ac *ac = rq->ac;
	rq_detach(rq);
	rq->state = CM_AC_RQ_IDLE;
	rq->last_err = err;
	if (ac->closing) {
		cm_ac__finish(rq, -ECANCELED, NULL);
		return;
	}
	if (rq->pinned >= 0) {
		cm_ac__finish(rq, err, NULL); /* one server only: no failover */
		return;
	}
	uint64_t t = uv_now(ac->loop);
	if (t >= rq->deadline) {
		cm_ac__finish(rq, expiry_err(rq), NULL);
		return;
	}
	uint64_t delay = 0;
	if (!now) {
		delay = rq->backoff / 2 + cm_ac__rand(ac, rq->backoff / 2 + 1);
		rq->backoff = rq->backoff * 2 > CM_AC_BACKOFF_MAX_MS ? CM_AC_BACKOFF_MAX_MS
								  : rq->backoff * 2;
	}
	if (delay > rq->deadline - t)
		delay = rq->deadline - t;
	uv_timer_start(&rq->timer, rq_timer_cb, delay, 0);
}

void cm_ac__wake(struct cm_ac__req *rq)
{
	assert(rq->state == CM_AC_RQ_IDLE);
	uv_timer_start(&rq->timer, rq_timer_cb, 0, 0);
}

static void rq_timer_cb(uv_timer_t *t)
{
	struct cm_ac__req *rq = t->data;
	uint64_t now = uv_now(rq->ac->loop);
	switch (rq->state) {
	case CM_AC_RQ_IDLE:
		cm_ac__attempt(rq);
		return;
	case CM_AC_RQ_WAITING:
	case CM_AC_RQ_SENT:
		if (now >= rq->deadline) {
			int err = expiry_err(rq);
			rq_detach(rq);
			cm_ac__finish(rq, err, NULL);
			return;
		}
		/* A read's attempt timed out: that server is slow or stopped. */
		if (rq->kind == CM_AC_RQ_WATCH)
			cm_ac__watch_attempt_abandoned(rq);
		cm_ac__server_failed(rq->ac, (uint32_t)rq->srv);
		rq->avoid = rq->srv;
		cm_ac__retry(rq, -ETIMEDOUT, true);
		return;
	case CM_AC_RQ_DONE:
		return;
	}
}

static void rq_closed(uv_handle_t *h)
{
	struct cm_ac__req *rq = h->data;
	struct cm_ac *ac = rq->ac;
	free(rq);
	cm_ac__handle_gone(ac);
}

void cm_ac__finish(struct cm_ac__req *rq, int err, const struct cm_resp *resp)
{
	struct cm_ac *ac = rq->ac;
	assert(rq->state != CM_AC_RQ_DONE);
	rq_detach(rq);
	rq->state = CM_AC_RQ_DONE;
	cm_ac__list_remove(&rq->all);
	uv_timer_stop(&rq->timer);
	uv_close((uv_handle_t *)&rq->timer, rq_closed); /* frees rq, later */
	switch (rq->kind) {
	case CM_AC_RQ_USER:
		ac->n_outstanding--;
		rq->cb(rq->arg, err, resp);
		return;
	case CM_AC_RQ_STATUS_MAP:
		if (err == 0 && resp && rq->srv >= 0)
			cm_ac__status_merge(ac, (uint32_t)rq->srv, resp);
		return;
	case CM_AC_RQ_SHARDS_MAP:
		/* An answer was installed by cm_ac__learn(); whatever came of
		 * it, what waited for it goes now. */
		ac->map_pending = false;
		cm_ac__map_wake(ac);
		return;
	case CM_AC_RQ_WATCH:
		cm_ac__watch_sub_done(rq, err, resp);
		return;
	case CM_AC_RQ_UNWATCH:
		return;
	}
}

/* ---- answers ---- */

static bool read_retryable(int err)
{
	return err == CM_ESTALE || err == CM_ESHUTDOWN;
}

static void on_not_leader(struct cm_ac__req *rq, const struct cm_resp *resp)
{
	struct cm_ac *ac = rq->ac;
	int s = -1;
	if (resp->leader_addr.len > 0)
		s = cm_ac__server_find(ac, resp->leader_addr.p, resp->leader_addr.len, true);
	struct cm_ac__group *g = cm_ac__group_get(ac, cm_ac__leader_group(rq, resp), true);
	if (g)
		g->leader = s >= 0 ? s : -1;
	if (s < 0 || s == rq->srv) {
		cm_ac__retry(rq, CM_ENOLEADER, false);
		return;
	}
	rq->target = s;
	rq->redirects++;
	/* Follow a redirect at once, but not forever: two nodes that each
	 * name the other (during an election) must not spin. */
	cm_ac__retry(rq, CM_ENOTLEADER, rq->redirects <= CM_AC_REDIRECTS_FAST);
}

/* Refused for the path, so not applied: go again. When our map is older
 * than the server's, wait for the fetch under way (until the deadline)
 * rather than ask the same server again with the same map. */
static void on_wrong_shard(struct cm_ac__req *rq, const struct cm_resp *resp)
{
	struct cm_ac *ac = rq->ac;
	bool newer = ac->map.valid && resp->token > ac->map.epoch;
	bool behind = cm_ac__map_wrongshard(ac, resp->token, rq->srv);
	/* The caller named the group: when that group itself refused the
	 * path (a boundary fences it), or the registry gave the path to
	 * another group, no retry can succeed. */
	if (rq->req.group != 0 && (resp->group == rq->req.group || newer)) {
		cm_ac__finish(rq, CM_EWRONGSHARD, resp);
		return;
	}
	if (!behind)
		rq->avoid = rq->srv; /* as new a map as ours: it lags or does not host */
	cm_ac__retry(rq, CM_EWRONGSHARD, false);
	if (behind && ac->map_pending && rq->state == CM_AC_RQ_IDLE)
		uv_timer_start(&rq->timer, rq_timer_cb, rq->deadline - uv_now(ac->loop), 0);
}

static void on_answer(struct cm_ac__req *rq, const struct cm_resp *resp)
{
	int err = resp->err;
	if (rq->pinned >= 0 || err == 0) {
		cm_ac__finish(rq, err, resp);
		return;
	}
	if (err == CM_ENOTLEADER) {
		on_not_leader(rq, resp);
		return;
	}
	if (err == CM_EWRONGSHARD) {
		on_wrong_shard(rq, resp);
		return;
	}
	/* Not applied: the server refused before proposing. */
	if (err == CM_ENOLEADER || err == CM_ETRANSFERRING) {
		cm_ac__retry(rq, err, false);
		return;
	}
	if (!rq->is_write && read_retryable(err)) {
		rq->avoid = rq->srv;
		cm_ac__retry(rq, err, false);
		return;
	}
	cm_ac__finish(rq, err, resp);
}

void cm_ac__on_resp(struct cm_ac__conn *c, const struct cm_resp *resp)
{
	struct cm_ac *ac = c->ac;
	struct cm_ac__req *rq = id_find(ac, resp->id);
	if (rq == NULL || rq->conn != c) {
		/* The answer to an attempt given up on; its token still counts. */
		cm_ac__learn(ac, NULL, resp);
		return;
	}
	rq_detach(rq);
	cm_ac__learn(ac, rq, resp);
	on_answer(rq, resp);
}

/* ---- closing ---- */

static void anchor_closed(uv_handle_t *h)
{
	cm_ac__handle_gone(h->data);
}

void cm_ac_close(struct cm_ac *ac, cm_ac_close_cb cb, void *arg)
{
	assert(!ac->closing);
	ac->closing = true;
	ac->close_cb = cb;
	ac->close_arg = arg;
	/* Pop from the front: a callback may add or finish other requests. */
	while (!cm_ac__list_empty(&ac->reqs)) {
		struct cm_ac__req *rq = CM_AC__CONTAINER(ac->reqs.next, struct cm_ac__req, all);
		cm_ac__finish(rq, -ECANCELED, NULL);
	}
	cm_ac__watch_close_all(ac);
	uv_close((uv_handle_t *)&ac->wtimer, anchor_closed);
	for (uint32_t k = 0; k < ac->n_servers; k++)
		if (ac->servers[k].conn)
			cm_ac__conn_fail(ac->servers[k].conn, -ECANCELED);
	uv_close((uv_handle_t *)&ac->anchor, anchor_closed);
}

uint64_t cm_ac_group_of(const struct cm_ac *ac, const char *path, uint32_t len)
{
	const struct cm_ac__shard *sh = ac->map.valid ? cm_ac__map_find(ac, path, len) : NULL;
	return sh != NULL ? sh->group : 0;
}

uint64_t cm_ac_token(const struct cm_ac *ac, uint64_t group)
{
	for (uint32_t k = 0; k < ac->n_groups; k++)
		if (ac->groups[k].id == group)
			return ac->groups[k].token;
	return 0;
}
