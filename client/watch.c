/* watch.c: watches that survive connection loss by re-subscribing elsewhere. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

/* Take w out of the client's and its connection's lists (once). */
static void watch_unlink(struct cm_ac__watch *w)
{
	if (w->link.next != &w->link) {
		cm_ac__list_remove(&w->link);
		w->ac->n_watches--;
	}
	if (w->conn) {
		cm_ac__list_remove(&w->clink);
		w->conn = NULL;
	}
}

/* Free w once nothing refers to it: no callback running, no subscription. */
static void watch_release(struct cm_ac__watch *w)
{
	if (w->dead && w->refs == 0 && w->rq == NULL)
		free(w);
}

static void watch_call(struct cm_ac__watch *w, int err, const struct cm_event *ev)
{
	w->refs++;
	w->cb(w->arg, err, ev);
	w->refs--;
}

/* The watch is over: tell the owner (once) and let go. */
static void watch_end(struct cm_ac__watch *w, int err)
{
	if (w->dead)
		return;
	w->dead = true;
	watch_unlink(w);
	watch_call(w, err, NULL);
	watch_release(w);
}

static uint64_t resume_index(const struct cm_ac__watch *w)
{
	return w->has_last ? w->last + 1 : w->from;
}

static int sub_start(struct cm_ac__watch *w)
{
	struct cm_req r = {
		.op = CM_OP_WATCH,
		.consistency = CM_READ_FOLLOWER,
		.path = {w->prefix, w->plen},
		.from_index = resume_index(w),
	};
	struct cm_ac__req *rq;
	int rv = cm_ac__submit(w->ac, CM_AC_RQ_WATCH, -1, &r, NULL, NULL, &rq);
	if (rv != 0)
		return rv;
	rq->watch = w;
	w->rq = rq;
	return 0;
}

int cm_ac_watch(struct cm_ac *ac, const char *prefix, uint64_t from_index, cm_ac_event_cb cb,
		void *arg, uint64_t *watch_id)
{
	if (ac->closing)
		return -ECANCELED;
	if (prefix == NULL || cb == NULL)
		return -EINVAL;
	size_t n = strnlen(prefix, CM_PATH_MAX + 1);
	int rv = cm_path_validate(prefix, (uint32_t)n);
	if (rv != 0)
		return rv;
	if (ac->n_watches >= CM_CLIENT_MAX_WATCHES)
		return -EBUSY;
	struct cm_ac__watch *w = calloc(1, sizeof(*w) + n + 1);
	if (w == NULL)
		return -ENOMEM;
	memcpy(w->prefix, prefix, n);
	w->plen = (uint32_t)n;
	w->ac = ac;
	w->cb = cb;
	w->arg = arg;
	w->from = from_index;
	w->handle = ac->next_watch++;
	cm_ac__list_push(&ac->watches, &w->link);
	ac->n_watches++;
	rv = sub_start(w);
	if (rv != 0) {
		watch_unlink(w);
		free(w);
		return rv;
	}
	if (watch_id)
		*watch_id = w->handle;
	return 0;
}

/* Fire and forget: the server also drops watches with the connection. */
static void send_unwatch(struct cm_ac *ac, int32_t server, const struct cm_ac__watch *w)
{
	struct cm_req r = {
		.op = CM_OP_UNWATCH,
		.path = {w->prefix, w->plen},
		.version = w->wire_id,
	};
	(void)cm_ac__submit(ac, CM_AC_RQ_UNWATCH, server, &r, NULL, NULL, NULL);
}

int cm_ac_unwatch(struct cm_ac *ac, uint64_t watch_id)
{
	struct cm_ac__link *l;
	for (l = ac->watches.next; l != &ac->watches; l = l->next) {
		struct cm_ac__watch *w = CM_AC__CONTAINER(l, struct cm_ac__watch, link);
		if (w->handle != watch_id)
			continue;
		if (w->conn && !ac->closing)
			send_unwatch(ac, (int32_t)w->conn->server, w);
		w->dead = true;
		watch_unlink(w);
		watch_release(w);
		return 0;
	}
	return -ENOENT;
}

void cm_ac__watch_sub_done(struct cm_ac__req *rq, int err, const struct cm_resp *resp)
{
	struct cm_ac__watch *w = rq->watch;
	struct cm_ac *ac = rq->ac;
	w->rq = NULL;
	if (w->dead) {
		/* Unwatched while subscribing: undo it on the server too. */
		if (err == 0 && rq->srv >= 0 && !ac->closing)
			send_unwatch(ac, rq->srv, w);
		watch_release(w);
		return;
	}
	struct cm_ac__conn *c = rq->srv >= 0 ? ac->servers[rq->srv].conn : NULL;
	if (err == 0 && (c == NULL || c->state != CM_AC_CONN_READY))
		err = -ECONNRESET; /* cannot happen: the answer came through it */
	if (err != 0) {
		watch_end(w, err);
		return;
	}
	w->conn = c;
	cm_ac__list_push(&c->watches, &w->clink);
	if (!w->has_last && (w->from > 0 || resp != NULL)) {
		/* From now on means after the replica's applied index. */
		w->last = w->from > 0 ? w->from - 1 : resp->token;
		w->has_last = true;
	}
}

void cm_ac__watch_on_event(struct cm_ac__conn *c, const struct cm_event *ev)
{
	struct cm_ac *ac = c->ac;
	struct cm_ac__link *l;
	for (l = ac->watches.next; l != &ac->watches; l = l->next) {
		struct cm_ac__watch *w = CM_AC__CONTAINER(l, struct cm_ac__watch, link);
		bool here = w->conn == c || (w->rq && w->rq->conn == c);
		if (w->wire_id != ev->watch_id || !here)
			continue;
		if (!w->has_last || ev->index > w->last || ev->kind == CM_EV_RESYNC) {
			w->last = ev->index;
			w->has_last = true;
		}
		struct cm_ac__group *g = cm_ac__group_get(ac, ev->group, true);
		if (g && ev->index > g->token)
			g->token = ev->index; /* that replica has applied it */
		watch_call(w, 0, ev);
		watch_release(w);
		return;
	}
}

void cm_ac__watch_conn_lost(struct cm_ac__conn *c)
{
	struct cm_ac *ac = c->ac;
	while (!cm_ac__list_empty(&c->watches)) {
		struct cm_ac__watch *w =
			CM_AC__CONTAINER(c->watches.next, struct cm_ac__watch, clink);
		cm_ac__list_remove(&w->clink);
		w->conn = NULL;
		int rv = ac->closing ? -ECANCELED : sub_start(w);
		if (rv != 0)
			watch_end(w, rv);
	}
}

void cm_ac__watch_close_all(struct cm_ac *ac)
{
	while (!cm_ac__list_empty(&ac->watches)) {
		struct cm_ac__watch *w =
			CM_AC__CONTAINER(ac->watches.next, struct cm_ac__watch, link);
		watch_end(w, -ECANCELED);
	}
}
