/* v3_lock.c: etcd's /v3/lock/lock and /v3/lock/unlock on CM_OP_LOCK. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "api/v3_lease.h"
#include "confman/path.h"

/*
 * A lock is named by a path (the name, which need not exist) and held by
 * the pair (lease, owner 0) in the group owning the name; the lease must be
 * held there, so a name in another shard than the root gets the lease
 * granted there first (cm_gw__lease_ensure). The key answered names the
 * hold as etcd's do, NAME/LEASE-in-hex: unlock takes it apart again. No
 * node is created at that key (the lock lives in the group's lock table).
 *
 * Waiting: an ACQUIRE with CM_LOCK_WAIT is answered when granted, FIFO.
 * The gateway thread does not block: the connection is suspended and the
 * request sits in the client library, which ends it after --timeout ms
 * (-ETIMEDOUT); it is then sent again (the server keeps the pair's place)
 * until --lock-wait-ms (default CM_API_LOCK_WAIT_MS, 5 min) have passed
 * since the request came (checked at each resend: the wait may last one
 * --timeout more); the pair then leaves the queue (RELEASE) and the
 * caller gets 504. Between two
 * sends, and before answering a grant, the caller's socket is peeked: a
 * caller that has gone leaves the queue (or gives the hold back). At most
 * CM_API_LOCK_WAITERS_MAX lock requests wait per gateway thread (503).
 */

static _Thread_local unsigned lock_waiters; /* this gateway thread's */

void cm_gw__lock_free(struct cm_gw_lease *l)
{
	if (l->counted) {
		lock_waiters--;
		l->counted = false;
	}
	free(l->lock_name);
	l->lock_name = NULL;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Has the caller of a suspended request gone? MHD polls no suspended
 * connection: a peek tells without consuming anything (0: closed). */
static bool caller_gone(struct cm_gw_req *r)
{
	if (r->conn == NULL)
		return true;
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci == NULL)
		return false;
	char c;
	ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void lock_req(struct cm_req *cq, const struct cm_gw_lease *l, uint32_t flags)
{
	cm_gw__req_init(cq, CM_OP_LOCK, l->lock_name, l->lock_len);
	cq->flags = flags;
	cq->version = l->lock_lease;
	cq->from_index = 0; /* the owner: one per lease, as etcd's lock key */
}

/* ---- giving up: leave the queue, or give a hold back --------------------------- */

static void on_give_up(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	(void)err;
	(void)resp;
	if (!cm_gw__done(r))
		return;
	cm_gw__reply_error(r, MHD_HTTP_GATEWAY_TIMEOUT, 4,
			   "lock not acquired within %u ms (confman-api --lock-wait-ms)",
			   r->gw->sh->opts.lock_wait_ms);
}

static void give_up(struct cm_gw_req *r)
{
	struct cm_req cq;
	lock_req(&cq, r->lease, CM_LOCK_RELEASE);
	cm_gw__send(r, &cq, on_give_up);
}

/* ---- lock ------------------------------------------------------------------------ */

static void acquire_send(struct cm_gw_req *r);

static void lock_granted(struct cm_gw_req *r, const struct cm_resp *resp)
{
	struct cm_gw_lease *l = r->lease;
	if (caller_gone(r)) { /* nobody would learn of the hold */
		give_up(r);
		return;
	}
	char hex[20];
	int n = snprintf(hex, sizeof(hex), "/%" PRIx64, l->lock_lease);
	size_t klen = l->lock_len + (size_t)n;
	char *key = malloc(klen + 1), *b = malloc(cm_api_b64_enclen(klen) + 1);
	json_t *o = NULL;
	if (key != NULL && b != NULL) {
		memcpy(key, l->lock_name, l->lock_len);
		memcpy(key + l->lock_len, hex, (size_t)n + 1);
		cm_api_b64_encode((const uint8_t *)key, klen, b);
		o = json_pack("{s:s}", "key", b);
	}
	free(key);
	free(b);
	if (o == NULL) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return;
	}
	cm_gw__lease_header_reply(r, resp, o);
}

static void on_acquire(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	struct cm_gw_lease *l = r->lease;
	if (err == 0) {
		lock_granted(r, resp);
	} else if (err == -ENOENT && !l->ensured) {
		cm_gw__lease_ensure(r, l->lock_name, l->lock_len, acquire_send);
	} else if (err == -ENOENT) {
		cm_gw__lease_not_found(r, true);
	} else if (cm_lock_again(err) && !r->gw->stopping /* as cm_lock_acquire */) {
		if (caller_gone(r) || mono_ms() >= l->deadline_ms)
			give_up(r);
		else
			acquire_send(r);
	} else {
		cm_gw__reply_errno(r, err, resp != NULL);
	}
}

static void acquire_send(struct cm_gw_req *r)
{
	struct cm_req cq;
	lock_req(&cq, r->lease, CM_LOCK_ACQUIRE | CM_LOCK_WAIT);
	cm_gw__send(r, &cq, on_acquire);
}

/* The name as a NUL-terminated path; false (answered 400) if it is none. */
static bool take_name(struct cm_gw_req *r, const struct cm_api_buf *name)
{
	struct cm_gw_lease *l = r->lease;
	if (name->len > CM_PATH_MAX ||
	    cm_path_validate((const char *)name->p, (uint32_t)name->len) != 0) {
		cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 3,
				   "a lock name must be an absolute Confman path such as /locks/a");
		return false;
	}
	l->lock_name = strndup((const char *)name->p, name->len);
	l->lock_len = name->len;
	if (l->lock_name == NULL) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return false;
	}
	return true;
}

void cm_gw__v3_lock(struct cm_gw_req *r)
{
	struct cm_gw_lease *l = r->lease;
	if (!take_name(r, &l->q.name))
		return;
	if (l->q.lease == 0) {
		cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 3,
				   "confman-api locks need a lease (grant one with /v3/lease/grant)");
		return;
	}
	if (lock_waiters >= CM_API_LOCK_WAITERS_MAX) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14,
				   "too many lock requests waiting");
		return;
	}
	lock_waiters++;
	l->counted = true;
	l->id = l->lock_lease = (uint64_t)l->q.lease;
	uint32_t wait = r->gw->sh->opts.lock_wait_ms;
	l->deadline_ms = mono_ms() + (wait != 0 ? wait : CM_API_LOCK_WAIT_MS);
	acquire_send(r);
}

/* ---- unlock ---------------------------------------------------------------------- */

static void on_release(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	struct cm_gw_lease *l = r->lease;
	if ((err == -EIO || err == -ETIMEDOUT) && !l->ensured) {
		l->ensured = true; /* here: sent again once; its ENOENT is then done */
		struct cm_req cq;
		lock_req(&cq, l, CM_LOCK_RELEASE);
		cm_gw__send(r, &cq, on_release);
		return;
	}
	/* etcd's unlock deletes the key: not holding it is no error. */
	if (err == 0 || err == -ENOENT)
		cm_gw__lease_header_reply(r, resp, json_object());
	else
		cm_gw__reply_errno(r, err, resp != NULL);
}

void cm_gw__v3_unlock(struct cm_gw_req *r)
{
	struct cm_gw_lease *l = r->lease;
	const struct cm_api_buf *k = &l->q.name;
	size_t slash = k->len;
	while (slash > 0 && k->p[slash - 1] != '/')
		slash--;
	/* NAME/HEX: HEX 1 to 16 hex digits of a lease 1..INT64_MAX. */
	size_t hl = k->len - slash;
	uint64_t lease = 0;
	bool ok = slash > 1 && hl >= 1 && hl <= 16;
	for (size_t i = slash; ok && i < k->len; i++) {
		char c = (char)k->p[i];
		int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		ok = v >= 0;
		lease = lease << 4 | (uint64_t)(v >= 0 ? v : 0);
	}
	if (!ok || lease == 0 || lease > (uint64_t)CM_LEASE_ID_MAX) {
		cm_gw__reply_error(r, MHD_HTTP_BAD_REQUEST, 3,
				   "not a lock key of confman-api (NAME/LEASE in hex)");
		return;
	}
	struct cm_api_buf name = {.p = k->p, .len = slash - 1};
	if (!take_name(r, &name))
		return;
	l->id = l->lock_lease = lease;
	struct cm_req cq;
	lock_req(&cq, l, CM_LOCK_RELEASE);
	cm_gw__send(r, &cq, on_release);
}
