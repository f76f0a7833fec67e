/* watch.c: watches that fan in every shard below a prefix, prove their
 * streams live, and survive connection loss by re-subscribing elsewhere. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

/*
 * A watch is one stream (sub) per group at and below its prefix (DESIGN.md,
 * Consistency contract): sub 0 for the prefix's owner, one more per shard
 * the map nests below it. Each asks its server for heartbeats
 * (CM_WATCH_PROGRESS); the liveness timer declares a stream dead when it
 * has been silent for watch_silence_ms (a stopped server keeps its socket
 * open, so a dropped connection alone proves nothing) and subscribes it
 * elsewhere from its own resume index. One log index carries at most one
 * event (the server keys its history by (group, index)), so resuming from
 * the index after the last one delivered skips nothing.
 */

static bool sub_active(const struct cm_ac__wsub *s)
{
	return s->conn != NULL;
}

/* Take s off its connection (it stays subscribed on the server until an
 * UNWATCH or the connection's end). */
static void sub_detach(struct cm_ac__wsub *s)
{
	if (s->conn) {
		cm_ac__list_remove(&s->clink);
		s->conn = NULL;
	}
	s->srv = -1;
}

/* Take w out of the client's list and its subs off their connections. */
static void watch_unlink(struct cm_ac__watch *w)
{
	if (w->link.next != &w->link) {
		cm_ac__list_remove(&w->link);
		w->ac->n_watches--;
	}
	for (uint32_t k = 0; k < w->n_subs; k++)
		sub_detach(w->subs[k]);
	if (w->ac->n_watches == 0)
		uv_timer_stop(&w->ac->wtimer);
}

/* Free w once nothing refers to it: no callback running, no subscription
 * in flight (its request points at the sub). */
static void watch_release(struct cm_ac__watch *w)
{
	if (!w->dead || w->refs != 0)
		return;
	for (uint32_t k = 0; k < w->n_subs; k++)
		if (w->subs[k]->rq != NULL)
			return;
	for (uint32_t k = 0; k < w->n_subs; k++)
		free(w->subs[k]);
	free(w->subs);
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

static uint64_t resume_index(const struct cm_ac__wsub *s)
{
	return s->has_last ? s->last + 1 : s->from;
}

/* "From now" means after what this client has seen of the group, not after
 * what the replica that answers has applied (a lagging one would replay
 * changes the client already knows of). Only with the map: a guessed
 * group's token would be another group's index. */
static void sub_from_now(struct cm_ac__wsub *s)
{
	struct cm_ac *ac = s->w->ac;
	if (s->has_last || s->from != 0 || !ac->map.valid)
		return;
	const struct cm_ac__shard *sh = cm_ac__map_find(ac, s->prefix, s->plen);
	uint64_t t = sh ? cm_ac_token(ac, sh->group) : 0;
	if (t == 0)
		return;
	s->from = t + 1;
	s->group = sh->group; /* an answer from another group restarts it (RESYNC) */
}

static int sub_start(struct cm_ac__wsub *s, int32_t avoid)
{
	sub_from_now(s);
	struct cm_req r = {
		.op = CM_OP_WATCH,
		.consistency = CM_READ_FOLLOWER,
		.flags = CM_WATCH_PROGRESS,
		.path = {s->prefix, s->plen},
		.from_index = resume_index(s),
		.as = {s->w->as, s->w->as_len}, /* a proxy's caller: events as it may see them */
	};
	struct cm_ac__req *rq;
	int rv = cm_ac__submit(s->w->ac, CM_AC_RQ_WATCH, -1, &r, NULL, NULL, &rq);
	if (rv != 0)
		return rv;
	rq->wsub = s;
	rq->avoid = avoid;
	s->rq = rq;
	return 0;
}

static struct cm_ac__wsub *sub_new(struct cm_ac__watch *w, const char *prefix, uint32_t plen,
				   uint64_t group, uint64_t from)
{
	if (w->n_subs == w->cap_subs) {
		if (w->cap_subs >= CM_CLIENT_MAX_SHARDS)
			return NULL;
		uint32_t cap = w->cap_subs ? 2 * w->cap_subs : 4;
		struct cm_ac__wsub **a = realloc(w->subs, cap * sizeof(*a));
		if (a == NULL)
			return NULL;
		w->subs = a;
		w->cap_subs = cap;
	}
	struct cm_ac__wsub *s = calloc(1, sizeof(*s) + plen + 1);
	if (s == NULL)
		return NULL;
	memcpy(s->prefix, prefix, plen);
	s->plen = plen;
	s->w = w;
	s->group = group;
	s->from = from;
	s->srv = -1;
	cm_ac__list_init(&s->clink);
	w->subs[w->n_subs++] = s;
	return s;
}

/* ---- liveness ---- */

static bool sub_live(const struct cm_ac__wsub *s, uint64_t now)
{
	return sub_active(s) && now - s->heard <= s->w->ac->watch_silence_ms;
}

/* A stream of a shard that appeared after the watch began misses nothing
 * while it subscribes (it starts from the shard's first index of its own,
 * new_shard_from): it counts as live for as long as a silent stream would,
 * watch_silence_ms from its creation. Not live at once, a split would turn
 * every watch above it stale, and a mount would drop every cache and inode
 * (st_ino changed under open directories). */
static bool sub_live_or_starting(const struct cm_ac__wsub *s, uint64_t now)
{
	if (sub_live(s, now))
		return true;
	return s->starting && !sub_active(s) && now - s->heard <= s->w->ac->watch_silence_ms;
}

static struct cm_ac__wsub *sub_of_group(const struct cm_ac__watch *w, uint64_t group)
{
	for (uint32_t k = 0; k < w->n_subs; k++)
		if (w->subs[k]->group == group)
			return w->subs[k];
	return NULL;
}

/* Does the map nest shard sh strictly below w's prefix? */
static bool nested(const struct cm_ac__watch *w, const struct cm_ac__shard *sh)
{
	return sh->routable && sh->plen > w->plen &&
	       cm_path_is_under(sh->prefix, sh->plen, w->prefix, w->plen);
}

/* Every group at and below the prefix has a live stream. */
static bool watch_is_live(const struct cm_ac__watch *w, uint64_t now)
{
	const struct cm_ac *ac = w->ac;
	if (!ac->map.valid || w->n_subs == 0 || !sub_live(w->subs[0], now))
		return false;
	const struct cm_ac__shard *own = cm_ac__map_find(ac, w->prefix, w->plen);
	if (own != NULL && own->group != w->subs[0]->group)
		return false; /* the prefix moved to another group: not yet followed */
	for (uint32_t k = 0; k < ac->map.n_shards; k++) {
		const struct cm_ac__shard *sh = &ac->map.shards[k];
		if (!nested(w, sh))
			continue;
		const struct cm_ac__wsub *s = sub_of_group(w, sh->group);
		if (s == NULL || !sub_live_or_starting(s, now))
			return false;
	}
	return true;
}

/* Tell a watcher that asked when its watch stops or starts being live. */
static void watch_state(struct cm_ac__watch *w, uint64_t failed_group)
{
	bool live = watch_is_live(w, uv_now(w->ac->loop));
	if (live == w->live || w->dead)
		return;
	w->live = live;
	if (!(w->flags & CM_AC_WATCH_STATE))
		return;
	struct cm_event ev = {.group = live ? 0 : failed_group,
			      .kind = live ? CM_EV_LIVE : CM_EV_STALE,
			      .path = {w->prefix, w->plen}};
	watch_call(w, 0, &ev);
}

/* s has been silent too long: its server is stopped, cut off, or stale
 * (a stale replica sends no heartbeat). Leave it for another. */
static void sub_silent(struct cm_ac__wsub *s)
{
	struct cm_ac *ac = s->w->ac;
	int32_t srv = s->srv;
	struct cm_req r = {.op = CM_OP_UNWATCH, .version = s->wire_id};
	(void)cm_ac__submit(ac, CM_AC_RQ_UNWATCH, srv, &r, NULL, NULL, NULL);
	assert(srv >= 0); /* active */
	cm_ac__server_failed(ac, (uint32_t)srv);
	sub_detach(s);
	int rv = sub_start(s, srv);
	watch_state(s->w, s->group);
	if (rv != 0)
		watch_end(s->w, rv);
}

/* ---- nested shards ---- */

static void send_unwatch(struct cm_ac *ac, int32_t server, uint64_t wire_id);

/* Is group a shard the map nests below w's prefix? */
static bool group_nested(const struct cm_ac__watch *w, uint64_t group)
{
	const struct cm_ac *ac = w->ac;
	for (uint32_t k = 0; k < ac->map.n_shards; k++)
		if (ac->map.shards[k].group == group && nested(w, &ac->map.shards[k]))
			return true;
	return false;
}

/* Streams of shards the map no longer nests below w (merged back into
 * their parent, whose stream covers the prefix now) end: left alone, one
 * would go silent when its group stops, subscribe again by its prefix,
 * land in the parent and deliver every change there a second time. One
 * whose subscription is in flight is looked at again at the next tick. */
static void watch_uncover(struct cm_ac__watch *w)
{
	uint32_t k = 1; /* subs[0] is the prefix's own stream */
	while (k < w->n_subs) {
		struct cm_ac__wsub *s = w->subs[k];
		if (s->group == 0 || s->rq != NULL || group_nested(w, s->group)) {
			k++;
			continue;
		}
		if (s->conn != NULL && !w->ac->closing)
			send_unwatch(w->ac, s->srv, s->wire_id);
		sub_detach(s);
		free(s);
		w->subs[k] = w->subs[--w->n_subs];
	}
}

/* Where a stream of a shard that appeared after the watch's first map
 * starts: everything in it happened after the watch began. A shard split
 * off a written prefix continues its parent's index space from `born` (its
 * state at born came from the parent, whose stream covered it until then):
 * its own events start after born, and the change made right after the
 * split, before this client learned of it, is replayed as itself. From 1
 * it would be a RESYNC: born is below the new group's first event. */
static uint64_t new_shard_from(const struct cm_ac__shard *sh)
{
	return sh->born != 0 ? sh->born + 1 : 1;
}

/* Add a stream for every shard the map nests below w's prefix. Shards the
 * watch saw in its first map start from now; later ones from their first
 * index (new_shard_from). Calls no
 * callback (it runs inside the map's installation): a stream that cannot
 * start now (-ENOMEM) is tried again at the next tick, and the watch is not
 * live meanwhile. */
static void watch_cover(struct cm_ac__watch *w)
{
	struct cm_ac *ac = w->ac;
	if (!ac->map.valid || w->dead || ac->closing)
		return;
	bool first = w->map_epoch == 0;
	if (first)
		w->map_epoch = ac->map.epoch;
	watch_uncover(w);
	for (uint32_t k = 0; k < ac->map.n_shards; k++) {
		const struct cm_ac__shard *sh = &ac->map.shards[k];
		if (!nested(w, sh) || sub_of_group(w, sh->group) != NULL)
			continue;
		struct cm_ac__wsub *s = sub_new(w, sh->prefix, sh->plen, sh->group,
						 first ? 0 : new_shard_from(sh));
		if (s != NULL && !first) {
			s->starting = true;
			s->heard = uv_now(ac->loop);
		}
		if (s != NULL && sub_start(s, -1) != 0) {
			w->n_subs--;
			free(s);
		}
	}
}

static void on_wtimer(uv_timer_t *t);

void cm_ac__watch_map_changed(struct cm_ac *ac)
{
	struct cm_ac__link *l;
	for (l = ac->watches.next; l != &ac->watches; l = l->next)
		watch_cover(CM_AC__CONTAINER(l, struct cm_ac__watch, link));
	/* Liveness may have changed (the map was the missing piece): check
	 * from the loop, where callbacks may fire, rather than a tick later. */
	if (ac->n_watches > 0 && !ac->closing) {
		uint64_t every = ac->watch_silence_ms / 4;
		uv_timer_start(&ac->wtimer, on_wtimer, 0, every);
	}
}

/* ---- the liveness timer ---- */

static void watch_tick(struct cm_ac__watch *w, uint64_t now)
{
	watch_cover(w);
	for (uint32_t k = 0; k < w->n_subs && !w->dead; k++) {
		struct cm_ac__wsub *s = w->subs[k];
		if (sub_active(s) && now - s->heard > w->ac->watch_silence_ms)
			sub_silent(s);
	}
	watch_state(w, 0);
}

static void map_refresh(struct cm_ac *ac, uint64_t now)
{
	uint64_t every = now < ac->map_probe_until ? CM_AC_WATCH_PROBE_EVERY_MS : CM_AC_WATCH_MAP_MS;
	if (now - ac->map_at >= every)
		cm_ac__map_fetch(ac, -1, 0);
}

static void on_wtimer(uv_timer_t *t)
{
	struct cm_ac *ac = t->data;
	uint64_t now = uv_now(ac->loop);
	struct cm_ac__link *l = ac->watches.next;
	while (l != &ac->watches) {
		struct cm_ac__watch *w = CM_AC__CONTAINER(l, struct cm_ac__watch, link);
		w->refs++;
		watch_tick(w, now);
		l = l->next; /* w is still listed unless it ended */
		w->refs--;
		if (w->dead) {
			watch_release(w);
			l = ac->watches.next; /* restart: the list changed under us */
			continue;
		}
	}
	if (ac->n_watches > 0 && !ac->closing)
		map_refresh(ac, now);
}

int cm_ac__watch_timer_init(struct cm_ac *ac)
{
	int rv = uv_timer_init(ac->loop, &ac->wtimer);
	if (rv != 0)
		return rv;
	ac->wtimer.data = ac;
	uv_unref((uv_handle_t *)&ac->wtimer); /* the streams' connections hold the loop */
	ac->n_handles++;
	return 0;
}

static void wtimer_start(struct cm_ac *ac)
{
	uint64_t every = ac->watch_silence_ms / 4;
	if (!uv_is_active((uv_handle_t *)&ac->wtimer))
		uv_timer_start(&ac->wtimer, on_wtimer, every, every);
}

/* ---- the API ---- */

int cm_ac_watch_as(struct cm_ac *ac, const char *prefix, uint64_t from_index, uint32_t flags,
		   const char *as, cm_ac_event_cb cb, void *arg, uint64_t *watch_id)
{
	if (ac->closing)
		return -ECANCELED;
	if (prefix == NULL || cb == NULL || (flags & ~(uint32_t)CM_AC_WATCH_STATE) != 0)
		return -EINVAL;
	size_t n = strnlen(prefix, CM_PATH_MAX + 1);
	size_t an = as ? strnlen(as, CM_AS_MAX + 1) : 0;
	int rv = cm_path_validate(prefix, (uint32_t)n);
	if (rv != 0)
		return rv;
	if (an > CM_AS_MAX)
		return -EINVAL;
	if (ac->n_watches >= CM_CLIENT_MAX_WATCHES)
		return -EBUSY;
	struct cm_ac__watch *w = calloc(1, sizeof(*w) + n + 1 + an + 1);
	if (w == NULL)
		return -ENOMEM;
	memcpy(w->prefix, prefix, n);
	w->plen = (uint32_t)n;
	w->as = w->prefix + n + 1;
	if (an > 0)
		memcpy(w->as, as, an);
	w->as_len = (uint32_t)an;
	w->ac = ac;
	w->cb = cb;
	w->arg = arg;
	w->flags = flags;
	w->handle = ac->next_watch++;
	struct cm_ac__wsub *s = sub_new(w, prefix, (uint32_t)n, 0, from_index);
	rv = s == NULL ? -ENOMEM : sub_start(s, -1);
	if (rv != 0) {
		free(s);
		free(w->subs);
		free(w);
		return rv;
	}
	cm_ac__list_push(&ac->watches, &w->link);
	ac->n_watches++;
	wtimer_start(ac);
	/* Streams of nested shards: now if the map is known, else when it is
	 * installed (no callback can fire here: subscriptions start from the
	 * loop). */
	watch_cover(w);
	if (watch_id)
		*watch_id = w->handle;
	return 0;
}

int cm_ac_watch_ex(struct cm_ac *ac, const char *prefix, uint64_t from_index, uint32_t flags,
		   cm_ac_event_cb cb, void *arg, uint64_t *watch_id)
{
	return cm_ac_watch_as(ac, prefix, from_index, flags, NULL, cb, arg, watch_id);
}

int cm_ac_watch(struct cm_ac *ac, const char *prefix, uint64_t from_index, cm_ac_event_cb cb,
		void *arg, uint64_t *watch_id)
{
	return cm_ac_watch_ex(ac, prefix, from_index, 0, cb, arg, watch_id);
}

/* Fire and forget: the server also drops watches with the connection. */
static void send_unwatch(struct cm_ac *ac, int32_t server, uint64_t wire_id)
{
	struct cm_req r = {.op = CM_OP_UNWATCH, .version = wire_id};
	(void)cm_ac__submit(ac, CM_AC_RQ_UNWATCH, server, &r, NULL, NULL, NULL);
}

static struct cm_ac__watch *watch_find(const struct cm_ac *ac, uint64_t watch_id)
{
	const struct cm_ac__link *l;
	for (l = ac->watches.next; l != &ac->watches; l = l->next) {
		struct cm_ac__watch *w = CM_AC__CONTAINER(l, struct cm_ac__watch, link);
		if (w->handle == watch_id)
			return w;
	}
	return NULL;
}

int cm_ac_unwatch(struct cm_ac *ac, uint64_t watch_id)
{
	struct cm_ac__watch *w = watch_find(ac, watch_id);
	if (w == NULL)
		return -ENOENT;
	for (uint32_t k = 0; k < w->n_subs; k++) {
		struct cm_ac__wsub *s = w->subs[k];
		if (s->conn && !ac->closing)
			send_unwatch(ac, s->srv, s->wire_id);
	}
	w->dead = true;
	watch_unlink(w);
	watch_release(w);
	return 0;
}

bool cm_ac_watch_covers(const struct cm_ac *ac, uint64_t watch_id, uint64_t group,
			uint64_t *last)
{
	const struct cm_ac__watch *w = watch_find(ac, watch_id);
	const struct cm_ac__wsub *s = w ? sub_of_group(w, group) : NULL;
	if (s == NULL || group == 0 || !s->has_last || !sub_live(s, uv_now(ac->loop)))
		return false;
	*last = s->last;
	return true;
}

void cm_ac__watch_attempt_abandoned(struct cm_ac__req *rq)
{
	/* It may have been subscribed already, answer and events on the way:
	 * the UNWATCH follows on the same connection, so it undoes it. */
	if (rq->state == CM_AC_RQ_SENT && rq->srv >= 0 && !rq->ac->closing)
		send_unwatch(rq->ac, rq->srv, rq->req.id);
}

/* The first answer of a stream tells its group; one that moved (the prefix
 * became a shard of its own, say) restarts from the new group's now, and
 * the watcher must re-read (RESYNC): the old group's index means nothing
 * there. */
static void sub_group_learned(struct cm_ac__wsub *s, const struct cm_resp *resp)
{
	if (s->group == resp->group)
		return;
	bool moved = s->group != 0;
	s->group = resp->group;
	if (!moved)
		return;
	s->last = resp->token;
	s->has_last = true;
	struct cm_event ev = {.group = resp->group, .index = resp->token, .kind = CM_EV_RESYNC,
			      .path = {s->prefix, s->plen}};
	watch_call(s->w, 0, &ev);
}

void cm_ac__watch_sub_done(struct cm_ac__req *rq, int err, const struct cm_resp *resp)
{
	struct cm_ac__wsub *s = rq->wsub;
	struct cm_ac__watch *w = s->w;
	struct cm_ac *ac = rq->ac;
	s->rq = NULL;
	if (w->dead) {
		/* Unwatched while subscribing: undo it on the server too. */
		if (err == 0 && rq->srv >= 0 && !ac->closing)
			send_unwatch(ac, rq->srv, s->wire_id);
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
	s->conn = c;
	s->srv = rq->srv;
	s->starting = false;
	s->heard = uv_now(ac->loop);
	cm_ac__list_push(&c->watches, &s->clink);
	if (!s->has_last && (s->from > 0 || resp != NULL)) {
		/* From now on means after the replica's applied index. */
		s->last = s->from > 0 ? s->from - 1 : resp->token;
		s->has_last = true;
	}
	w->refs++;
	if (resp != NULL)
		sub_group_learned(s, resp);
	watch_state(w, 0);
	w->refs--;
	watch_release(w);
}

static struct cm_ac__wsub *sub_on_conn(struct cm_ac__conn *c, uint64_t wire_id)
{
	struct cm_ac__link *l;
	for (l = c->watches.next; l != &c->watches; l = l->next) {
		struct cm_ac__wsub *s = CM_AC__CONTAINER(l, struct cm_ac__wsub, clink);
		if (s->wire_id == wire_id)
			return s;
	}
	return NULL;
}

void cm_ac__watch_on_event(struct cm_ac__conn *c, const struct cm_event *ev)
{
	struct cm_ac *ac = c->ac;
	struct cm_ac__wsub *s = sub_on_conn(c, ev->watch_id);
	if (s == NULL)
		return; /* an abandoned subscription's: its UNWATCH is on the way */
	struct cm_ac__watch *w = s->w;
	s->heard = uv_now(ac->loop);
	if (ev->group != s->group && s->group != 0)
		return; /* not this stream's: a confused server */
	bool fresh = !s->has_last || ev->index > s->last;
	if (fresh || ev->kind == CM_EV_RESYNC) {
		s->last = ev->index;
		s->has_last = true;
	}
	struct cm_ac__group *g = cm_ac__group_get(ac, ev->group, true);
	if (g && ev->index > g->token)
		g->token = ev->index; /* that replica has applied it */
	if (ev->kind == CM_EV_MKDIR)
		ac->map_probe_until = uv_now(ac->loop) + CM_AC_WATCH_PROBE_MS; /* a new shard? */
	w->refs++;
	if (ev->kind == CM_EV_PROGRESS)
		watch_state(w, 0); /* the heartbeat is ours, not the watcher's */
	else if (fresh || ev->kind == CM_EV_RESYNC)
		watch_call(w, 0, ev);
	w->refs--;
	watch_release(w);
}

void cm_ac__watch_conn_lost(struct cm_ac__conn *c)
{
	struct cm_ac *ac = c->ac;
	while (!cm_ac__list_empty(&c->watches)) {
		struct cm_ac__wsub *s =
			CM_AC__CONTAINER(c->watches.next, struct cm_ac__wsub, clink);
		struct cm_ac__watch *w = s->w;
		sub_detach(s);
		int rv = ac->closing ? -ECANCELED : sub_start(s, -1);
		w->refs++;
		if (rv != 0)
			watch_end(w, rv);
		else
			watch_state(w, s->group);
		w->refs--;
		watch_release(w);
	}
}

void cm_ac__watch_close_all(struct cm_ac *ac)
{
	uv_timer_stop(&ac->wtimer);
	while (!cm_ac__list_empty(&ac->watches)) {
		struct cm_ac__watch *w =
			CM_AC__CONTAINER(ac->watches.next, struct cm_ac__watch, link);
		watch_end(w, -ECANCELED);
	}
}
