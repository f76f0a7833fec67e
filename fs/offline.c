/* offline.c: the persistent cache in the mount (fs/cache.c is the store):
 * write-through of what the mount reads and writes and of the watch
 * stream, the prefetch of small prefixes, and offline mode: when the
 * cluster cannot be reached, reads are answered from the cache and
 * changes fail with EROFS (fs/README.md, "Offline"). Loop thread only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "job.h"

#define PROBE_AGAIN_MS 200 /* between probes while offline */
#define PROBE_MAX 16       /* servers a probe asks at once */

static int64_t wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t half(const struct cm_fs *fs)
{
	uint64_t h = fs->o.offline_after_ms / 2;
	return h ? h : 1;
}

int64_t cm_fs_cache_age_ms(struct cm_fs *fs)
{
	if (!fs->off.offline)
		return 0;
	int64_t age = wall_now() - fs->off.synced;
	return fs->off.synced == 0 ? -1 : age < 0 ? 0 : age;
}

/* ---- a read: the cluster's answer, or the cache's when offline ---- */

struct rd {
	struct rd *next; /* fs->off.waiting: the timer fired, waiting for the probe's verdict */
	struct cm_fs *fs;
	struct cm_fs_job *j;
	cm_ac_cb cb;
	uv_timer_t t;
	char *path; /* owned: j's path (j is gone once answered) */
	int err;    /* the cluster's failure, held for the probe's verdict */
	uint8_t op, consistency;
	uint32_t flags; /* 0 or CM_GET_ATTR_ONLY */
	bool sent;  /* a request went out (not when submitted while offline) */
	bool answered, net_done, closed, waiting, closing;
};

static void rd_unwait(struct rd *r)
{
	if (!r->waiting)
		return;
	for (struct rd **p = &r->fs->off.waiting; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	r->waiting = false;
}

static void rd_maybe_free(struct rd *r)
{
	if (r->closed && r->net_done && !r->waiting) { /* waiting: still on fs->off.waiting */
		free(r->path);
		free(r);
	}
}

static void rd_closed(uv_handle_t *h)
{
	struct rd *r = h->data;
	r->closed = true;
	rd_maybe_free(r);
}

static void rd_close(struct rd *r)
{
	if (!r->closing) {
		r->closing = true;
		uv_close((uv_handle_t *)&r->t, rd_closed);
	}
}

/* Does this job need the value (open, readlink, truncate), or only attributes? */
static bool needs_value(const struct cm_fs_job *j)
{
	return j->op == CM_FS_OPEN || j->op == CM_FS_READLINK || j->op == CM_FS_SETATTR ||
	       j->op == CM_FS_CREATE;
}

/* Answer r from the cache: as the server would have, or ENOENT where the
 * cache proves absence, EIO where it does not know (never guessed). */
static void rd_serve_cache(struct rd *r)
{
	struct cm_fs *fs = r->fs;
	struct cm_fs_job *j = r->j;
	r->answered = true;
	rd_unwait(r);
	rd_close(r);
	fs->off.served = true;
	struct cm_resp resp = {.op = r->op};
	int err;
	if (r->op == CM_OP_LIST) {
		char *names = NULL;
		err = cm_fs_cache_list(fs->off.cache, j->path, &resp.ents, &resp.n_ents, &names);
		j->cache_ok = false;
		r->cb(j, err, &resp);
		free(resp.ents);
		free(names);
		return;
	}
	struct cm_fs_cache_ent *e = NULL;
	err = cm_fs_cache_get(fs->off.cache, j->path, &e);
	if (err == 0 && needs_value(j) && !e->has_value && !S_ISDIR(e->attr.mode) &&
	    e->attr.size > 0)
		err = -EIO; /* listed, never read: its content is not here */
	if (err == 0) {
		resp.has_attr = true;
		resp.attr = e->attr;
		resp.value = (struct cm_bytes){e->value, e->has_value ? e->vlen : 0};
	} else if (strcmp(j->path, fs->o.prefix) == 0) {
		/* The mount's root, not cached (an empty or discarded cache): a
		 * bare directory, so that the mountpoint stats and the mount is
		 * seen up; listing it is EIO (never guessed as empty). */
		err = 0;
		resp.has_attr = true;
		resp.attr = (struct cm_attr){.mode = S_IFDIR | 0755, .nlink = 2};
	}
	j->cache_ok = false; /* never into the in-memory value cache */
	cm_fs__trace(j, "offline: from the cache, err %d", err);
	r->cb(j, err, &resp); /* on an error: empty, as the library's own */
	free(e);
}

/* Is err an answer of a server (then it is served), or a failure to get
 * one (then the cache may answer, if the probe finds nobody there)? */
static bool answered_by_server(int err)
{
	return err == 0 || err == -ENOENT || err == -ENOTDIR || err == -EISDIR ||
	       err == -EINVAL || err == -ENAMETOOLONG || err == -EACCES || err == -EPERM ||
	       err == -ENOMEM || err == -ECANCELED || err == -EFBIG;
}

/* Is r's answer the cache's: the whole mount offline, or its shard? */
static bool rd_offline(const struct rd *r)
{
	return r->fs->off.offline || cm_fs_shard_offline(r->fs, r->path);
}

/* No answer in time, or a failure: ask whether anyone is there, the
 * cluster as a whole and the replicas of r's shard. */
static void rd_probe(struct rd *r)
{
	cm_fs_cache_probe(r->fs);
	cm_fs_shard_probe_path(r->fs, r->path);
}

static void rd_wait(struct rd *r)
{
	if (r->waiting)
		return;
	r->waiting = true;
	r->next = r->fs->off.waiting;
	r->fs->off.waiting = r;
}

/* What a real answer teaches the cache. */
static void rd_learn(struct cm_fs *fs, const char *path, uint8_t op, uint32_t flags, int err,
		     const struct cm_resp *resp)
{
	if (err == 0 || err == -ENOENT)
		fs->off.reached = uv_now(&fs->loop);
	if (err == -ENOENT && strcmp(path, fs->o.prefix) != 0)
		cm_fs_cache_note_gone(fs->off.cache, path);
	if (err != 0 || resp == NULL)
		return;
	if (op == CM_OP_LIST)
		cm_fs_cache_note_list(fs->off.cache, path, resp->ents, resp->n_ents);
	else if (resp->has_attr)
		cm_fs_cache_note(fs->off.cache, path, &resp->attr,
				 S_ISDIR(resp->attr.mode) || (flags & CM_GET_ATTR_ONLY)
					 ? NULL /* a stat: no value, the kept one stays if current */
					 : &resp->value,
				 false);
}

static void rd_net_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct rd *r = arg;
	struct cm_fs *fs = r->fs;
	r->net_done = true;
	if (err != -ECANCELED)
		rd_learn(fs, r->path, r->op, r->flags, err, resp);
	if (r->answered) { /* served from the cache already */
		rd_maybe_free(r);
		return;
	}
	rd_close(r); /* the timer: the answer is in */
	if (!answered_by_server(err) && fs->ac != NULL && cm_fs_cache_usable(fs->off.cache)) {
		r->err = err;
		if (rd_offline(r)) {
			rd_serve_cache(r);
		} else { /* the probes' verdict: cache, or this error */
			rd_wait(r);
			rd_probe(r);
		}
	} else {
		r->answered = true;
		rd_unwait(r);
		r->cb(r->j, err, resp);
	}
	rd_maybe_free(r);
}

static int rd_send(struct rd *r);

static void rd_timer_cb(uv_timer_t *t)
{
	struct rd *r = t->data;
	if (r->answered)
		return;
	if (rd_offline(r)) {
		rd_serve_cache(r);
		return;
	}
	if (!r->sent) { /* submitted while offline, online since: ask the cluster */
		r->net_done = false;
		int rc = rd_send(r);
		if (rc != 0) {
			r->net_done = r->answered = true;
			rd_close(r);
			r->cb(r->j, rc, &(struct cm_resp){.op = r->op});
		}
		return;
	}
	/* Slow: is anyone there? The probes' verdict decides (go_offline
	 * serves every waiting read, a shard's verdict those below it). A
	 * cache turned off (a failed write) decides nothing: the answer will. */
	if (!cm_fs_cache_usable(r->fs->off.cache))
		return;
	rd_wait(r);
	rd_probe(r);
}

/* A failed read whose shard's probe is out waits for that verdict too. */
static bool rd_shard_probing(struct rd *r)
{
	struct cm_fs_shard *sh = cm_fs_shard_of(r->fs, r->path);
	return sh != NULL && (sh->probing || sh->recheck);
}

/* A server answered the probe: reads that failed meanwhile get their own
 * error (the cluster is there; it was not the network); those still out
 * wait for their answers. sh: only reads below that shard (NULL: all). */
static void rd_reachable(struct cm_fs *fs, const struct cm_fs_shard *sh)
{
	struct rd **p = &fs->off.waiting;
	while (*p != NULL) {
		struct rd *r = *p;
		if (!r->net_done || r->err == 0 || rd_shard_probing(r) ||
		    (sh != NULL && cm_fs_shard_of(fs, r->path) != sh)) {
			p = &r->next; /* still out: its answer (or verdict) will come */
			continue;
		}
		*p = r->next;
		r->waiting = false;
		r->answered = true;
		struct cm_resp empty = {.op = r->op};
		r->cb(r->j, r->err, &empty);
		rd_maybe_free(r);
	}
}

static void pf_start(struct cm_fs *fs);

void cm_fs_cache_shard_online(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	if (o->offline || !o->fresh || !o->served)
		return;
	/* The watch began anew while the shard was served from the cache
	 * (the library gave up on its stream): no event will say what
	 * changed below it meanwhile. As go_online(): compare and replay. */
	fprintf(stderr, "confman-fs: resync: comparing what was served offline with the "
			"cluster\n");
	cm_fs__resync_now(fs);
	if (o->n_sh_offline == 0)
		o->fresh = o->served = false;
	pf_start(fs);
}

void cm_fs_cache_shard_verdict(struct cm_fs *fs, const struct cm_fs_shard *sh, bool reachable)
{
	struct cm_fs_off *o = &fs->off;
	if (reachable) {
		if (!o->offline && !o->probing)
			rd_reachable(fs, sh);
		return;
	}
	struct rd **p = &o->waiting;
	while (*p != NULL) {
		struct rd *r = *p;
		if (cm_fs_shard_of(fs, r->path) != sh) {
			p = &r->next;
			continue;
		}
		rd_serve_cache(r); /* unlinks it */
		rd_maybe_free(r);
	}
}

int cm_fs_cache_submit_read(struct cm_fs_job *j, struct cm_req *req, cm_ac_cb cb)
{
	struct cm_fs *fs = j->fs;
	if ((req->flags & ~(uint32_t)CM_GET_ATTR_ONLY) != 0 ||
	    req->group != 0 ||                  /* not what rd_send rebuilds: as is */
	    !cm_fs_cache_usable(fs->off.cache)) /* turned off: as without a cache */
		return cm_ac_submit(fs->ac, req, cb, j);
	struct rd *r = calloc(1, sizeof(*r));
	if (r == NULL || (r->path = strdup(j->path)) == NULL) {
		free(r);
		return -ENOMEM;
	}
	r->fs = fs;
	r->j = j;
	r->cb = cb;
	r->op = req->op;
	r->consistency = req->consistency;
	r->flags = req->flags;
	r->t.data = r;
	(void)uv_timer_init(&fs->loop, &r->t); /* cannot fail */
	if (rd_offline(r)) { /* no request: the answer is the cache's, at once */
		r->net_done = true;
		uv_timer_start(&r->t, rd_timer_cb, 0, 0);
		return 0;
	}
	int rc = rd_send(r);
	if (rc != 0) {
		r->net_done = r->answered = true;
		rd_close(r);
	}
	return rc;
}

static int rd_send(struct rd *r)
{
	struct cm_req req = {.op = r->op, .consistency = r->consistency, .flags = r->flags,
			     .path = {r->path, (uint32_t)strlen(r->path)}};
	int rc = cm_ac_submit(r->fs->ac, &req, rd_net_cb, r);
	if (rc != 0)
		return rc;
	r->sent = true;
	uv_timer_start(&r->t, rd_timer_cb, half(r->fs), 0);
	return 0;
}

/* ---- connected or offline ---- */

static void pf_abort(struct cm_fs *fs);
static void pf_start(struct cm_fs *fs);

static void seen_save(struct cm_fs *fs);

void cm_fs_cache_go_offline(struct cm_fs *fs, const char *why)
{
	struct cm_fs_off *o = &fs->off;
	if (o->offline || o->cache == NULL)
		return;
	if (!cm_fs_cache_usable(o->cache)) { /* turned off meanwhile: as without one */
		rd_reachable(fs, NULL);
		return;
	}
	o->offline = true;
	o->probe_ok = false;
	o->offline_at = uv_now(&fs->loop);
	if (o->synced > 0)
		cm_fs_cache_set_synced(o->cache, o->synced);
	seen_save(fs);
	uint64_t bytes, entries;
	const char *dir;
	cm_fs_cache_stats(o->cache, &bytes, &entries, &dir);
	fprintf(stderr, "confman-fs: offline: %s (no server answered within %u ms): reads are "
			"served from the cache %s (%llu entries, data up to %lld ms old), changes "
			"fail with EROFS\n", why, fs->o.offline_after_ms, dir,
		(unsigned long long)entries, (long long)cm_fs_cache_age_ms(fs));
	pf_abort(fs);
	while (o->waiting != NULL) {
		struct rd *r = o->waiting;
		rd_serve_cache(r); /* unlinks it */
		rd_maybe_free(r);
	}
}

static void go_online(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	o->offline = false;
	o->synced = wall_now();
	fprintf(stderr, "confman-fs: online again after %llu ms offline: reads go to the "
			"cluster, changes are accepted\n",
		(unsigned long long)(uv_now(&fs->loop) - o->offline_at));
	if (o->fresh && o->served) {
		/* The watch began after what the mount served was cached (boot,
		 * or a watch that ended): no event will say what changed since.
		 * The resync compares what the kernel knows with the cluster and
		 * replays the differences to inotify watchers (fs/resync.c). */
		fprintf(stderr, "confman-fs: resync: comparing what was served offline with the "
				"cluster\n");
		cm_fs__resync_now(fs);
	}
	o->fresh = o->served = false;
	pf_start(fs);
}

/* Online again: a server answers and every watch stream is live (so the
 * missed changes are being replayed: RESYNC, fs/resync.c). */
static void maybe_online(struct cm_fs *fs)
{
	if (fs->off.offline && fs->off.probe_ok && fs->live)
		go_online(fs);
}

static void probe_again_cb(uv_timer_t *t)
{
	cm_fs_cache_probe(t->data);
}

static void probe_cb(struct cm_fs *fs, int err)
{
	struct cm_fs_off *o = &fs->off;
	o->probing = false;
	uv_timer_stop(&o->deadline);
	if (fs->ac == NULL || err == -ECANCELED)
		return;
	if (err == 0) {
		o->reached = uv_now(&fs->loop);
		o->probe_ok = true;
		maybe_online(fs);
		cm_fs_shard_map_refresh(fs);
		if (!o->offline)
			rd_reachable(fs, NULL);
	} else {
		cm_fs_cache_go_offline(fs, "the cluster does not answer");
	}
	if (o->offline)
		uv_timer_start(&o->again, probe_again_cb, PROBE_AGAIN_MS, 0);
}

static void deadline_cb(uv_timer_t *t)
{
	struct cm_fs *fs = t->data;
	cm_fs_cache_go_offline(fs, "the cluster does not answer");
}

/* One STATUS of a probe round. */
struct wp {
	struct cm_fs *fs;
	uint32_t gen;
};

static void probe_one_cb(void *arg, int err, const struct cm_resp *resp)
{
	(void)resp;
	struct wp *p = arg;
	struct cm_fs *fs = p->fs;
	bool current = p->gen == fs->off.probe_gen && fs->off.probing;
	free(p);
	if (!current)
		return;
	if (err == -ECANCELED) { /* closing */
		probe_cb(fs, err);
		return;
	}
	fs->off.probe_out--;
	if (err == 0 || fs->off.probe_out == 0) /* the first answer, or none at all */
		probe_cb(fs, err);
}

static int probe_send(struct cm_fs *fs, const char *addr, size_t len)
{
	char a[256];
	if (len == 0 || len >= sizeof(a))
		return -EINVAL;
	memcpy(a, addr, len);
	a[len] = 0;
	struct wp *p = malloc(sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	*p = (struct wp){fs, fs->off.probe_gen};
	struct cm_req r = {.op = CM_OP_STATUS, .consistency = CM_READ_FOLLOWER};
	int rc = cm_ac_submit_to(fs->ac, a, &r, probe_one_cb, p);
	if (rc != 0)
		free(p);
	else
		fs->off.probe_out++;
	return rc;
}

/* STATUS to every server of the mount's list at once (at most
 * PROBE_MAX): any answer, even from a node without a leader, says the
 * cluster is there (slow, electing: reads wait as before). All of them at
 * once because one server cut off by a partition drops the request
 * rather than refusing it: asked alone, its silence would look like the
 * whole cluster's. */
void cm_fs_cache_probe(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	if (!cm_fs_cache_usable(o->cache) || fs->ac == NULL)
		return; /* no cache (or one turned off): reads wait and fail as before */
	if (o->probing)
		return;
	o->probe_gen++;
	o->probe_out = 0;
	o->probing = true;
	const char *s = fs->o.servers;
	for (int n = 0; *s && n < PROBE_MAX; n++) {
		size_t len = strcspn(s, ",");
		(void)probe_send(fs, s, len);
		s += len + (s[len] == ',');
	}
	if (o->probe_out == 0) { /* nothing sent: as if nobody answered */
		o->probing = false;
		return;
	}
	if (!o->offline)
		uv_timer_start(&o->deadline, deadline_cb, half(fs), 0);
}

void cm_fs_cache_on_watch(struct cm_fs *fs, const struct cm_event *ev)
{
	struct cm_fs_off *o = &fs->off;
	if (o->cache == NULL)
		return;
	if (ev->kind == CM_EV_STALE) {
		cm_fs_cache_probe(fs); /* all nodes gone? say so before anyone asks */
		cm_fs_shard_stale(fs, ev->group); /* or those of this group's shard? */
		return;
	}
	if (ev->kind == CM_EV_LIVE) {
		o->synced = wall_now();
		if (o->offline)
			cm_fs_cache_probe(fs);
		maybe_online(fs);
		if (!o->offline) {
			/* A resumed stream brings what it missed as events: the
			 * walk is needed only once, and after a watch that began
			 * anew (go_online walks after offline itself). */
			bool walk = !o->pf_walked || o->fresh;
			/* live, and nothing served from the cache since it began;
			 * an offline shard's return decides on its own resync */
			if (o->n_sh_offline == 0)
				o->fresh = false;
			if (walk)
				pf_start(fs);
		}
	}
}

/* ---- what the watch stream and the mount's own writes change ---- */

static bool in_mount(const struct cm_fs *fs, const char *p)
{
	size_t n = strlen(fs->o.prefix);
	return n == 1 || (strncmp(p, fs->o.prefix, n) == 0 && (p[n] == 0 || p[n] == '/'));
}

static void pf_push(struct cm_fs *fs, char kind, const char *path);
static void pf_pump(struct cm_fs *fs);

void cm_fs_cache_event(struct cm_fs *fs, const struct cm_event *ev)
{
	struct cm_fs_cache *c = fs->off.cache;
	if (c == NULL || ev->path.len > CM_PATH_MAX)
		return;
	char path[CM_PATH_MAX + 1], path2[CM_PATH_MAX + 1];
	snprintf(path, sizeof(path), "%.*s", (int)ev->path.len, ev->path.p ? ev->path.p : "");
	switch (ev->kind) {
	case CM_EV_PUT:
	case CM_EV_MKDIR:
		if (!ev->has_attr)
			break;
		cm_fs_cache_note(c, path, &ev->attr, NULL, ev->kind == CM_EV_MKDIR);
		if (fs->o.prefetch_max > 0 && cm_fs_cache_wants_value(c, path, &ev->attr)) {
			pf_push(fs, 'G', path); /* keep the value current, not only read ones */
			pf_pump(fs);
		}
		break;
	case CM_EV_DELETE:
		cm_fs_cache_note_gone(c, path);
		break;
	case CM_EV_RENAME:
		if (ev->path2.len > CM_PATH_MAX)
			break;
		snprintf(path2, sizeof(path2), "%.*s", (int)ev->path2.len,
			 ev->path2.p ? ev->path2.p : "");
		if (in_mount(fs, path2))
			cm_fs_cache_note_move(c, path, path2);
		else
			cm_fs_cache_note_gone(c, path);
		break;
	default:
		break;
	}
}

void cm_fs_cache_will_write(struct cm_fs_job *j, const struct cm_req *r)
{
	if (j->fs->off.cache == NULL)
		return;
	free(j->wt_path);
	free(j->wt_path2);
	free(j->wt_val);
	j->wt_path = strndup(r->path.p ? r->path.p : "", r->path.len);
	j->wt_path2 = r->op == CM_OP_RENAME ? strndup(r->path2.p, r->path2.len) : NULL;
	j->wt_op = r->op;
	/* The whole new value is known only for a plain PUT. */
	j->wt_has_val = r->op == CM_OP_PUT && !(r->flags & (CM_PUT_APPEND | CM_PUT_KEEP_VALUE));
	j->wt_val = NULL;
	j->wt_len = 0;
	if (j->wt_has_val && (j->wt_val = malloc(r->value.len ? r->value.len : 1)) != NULL) {
		if (r->value.len)
			memcpy(j->wt_val, r->value.p, r->value.len);
		j->wt_len = r->value.len;
	}
	j->wt_has_val = j->wt_has_val && j->wt_val != NULL;
}

void cm_fs_cache_wrote(struct cm_fs_job *j, int err, const struct cm_resp *resp)
{
	struct cm_fs_cache *c = j->fs->off.cache;
	if (c == NULL || err != 0 || j->wt_path == NULL)
		return;
	j->fs->off.reached = uv_now(&j->fs->loop);
	struct cm_bytes v = {j->wt_val, j->wt_len};
	switch (j->wt_op) {
	case CM_OP_PUT:
	case CM_OP_MKDIR:
		if (resp != NULL && resp->has_attr)
			cm_fs_cache_note(c, j->wt_path, &resp->attr, j->wt_has_val ? &v : NULL,
					 j->wt_op == CM_OP_MKDIR);
		break;
	case CM_OP_DELETE:
		cm_fs_cache_note_gone(c, j->wt_path);
		break;
	case CM_OP_RENAME:
		if (j->wt_path2 != NULL)
			cm_fs_cache_note_move(c, j->wt_path, j->wt_path2);
		break;
	default:
		break;
	}
}

/* ---- changes while offline: refused at once ---- */

static void refused_log(struct cm_fs *fs, const char *what, const char *path)
{
	uint64_t now = uv_now(&fs->loop);
	fs->off.refused++;
	if (now - fs->off.refused_logged < 1000 && fs->off.refused_logged != 0)
		return; /* one line a second at most */
	fprintf(stderr, "confman-fs: offline: %s %s refused (EROFS; %llu refused so far, "
			"nothing is queued)\n", what, path ? path : "",
		(unsigned long long)fs->off.refused);
	fs->off.refused_logged = now;
}

static bool path_offline(struct cm_fs *fs, const struct cm_bytes *p)
{
	char path[CM_PATH_MAX + 1];
	if (p->p == NULL || p->len == 0 || p->len > CM_PATH_MAX)
		return false;
	snprintf(path, sizeof(path), "%.*s", (int)p->len, p->p);
	return cm_fs_shard_offline(fs, path);
}

int cm_fs_cache_refuse_write(struct cm_fs_job *j, const struct cm_req *r)
{
	if (!j->fs->off.offline && !path_offline(j->fs, &r->path) &&
	    !path_offline(j->fs, &r->path2))
		return 0;
	refused_log(j->fs, "write of", j->path);
	return -EROFS;
}

/* Is the inode (a node, or the parent of the name a change is about) below
 * an offline shard? */
static bool ino_offline(struct cm_fs *fs, fuse_ino_t ino)
{
	struct cm_fs_node *n = cm_fs_itable_find(&fs->it, ino);
	return n != NULL && cm_fs_shard_offline(fs, n->path);
}

bool cm_fs_cache_refuse(struct cm_fs_job *j)
{
	struct cm_fs *fs = j->fs;
	if (!fs->off.offline &&
	    (fs->off.n_sh_offline == 0 ||
	     !(ino_offline(fs, j->ino) || (j->op == CM_FS_RENAME && ino_offline(fs, j->ino2)))))
		return false;
	switch (j->op) {
	case CM_FS_SETATTR: case CM_FS_CREATE: case CM_FS_MKNOD: case CM_FS_MKDIR:
	case CM_FS_UNLINK: case CM_FS_RMDIR: case CM_FS_RENAME: case CM_FS_SYMLINK:
		break;
	case CM_FS_OPEN:
		if ((j->fi.flags & O_ACCMODE) == O_RDONLY && !(j->fi.flags & O_TRUNC))
			return false;
		break;
	default:
		return false;
	}
	static const char *const what[] = {
		[CM_FS_SETATTR] = "setattr", [CM_FS_CREATE] = "create", [CM_FS_MKNOD] = "mknod",
		[CM_FS_MKDIR] = "mkdir", [CM_FS_UNLINK] = "unlink", [CM_FS_RMDIR] = "rmdir",
		[CM_FS_RENAME] = "rename", [CM_FS_SYMLINK] = "symlink",
		[CM_FS_OPEN] = "open for writing"};
	refused_log(j->fs, what[j->op], j->name);
	fuse_reply_err(j->req, EROFS);
	cm_fs__job_free(j);
	return true;
}

/* ---- xattrs: user.confman.offline, user.confman.age_ms, user.confman.status ---- */

static void reply_text(struct cm_fs_job *j, const char *buf, size_t len)
{
	if (j->size == 0)
		fuse_reply_xattr(j->req, len);
	else if (j->size < len)
		fuse_reply_err(j->req, ERANGE);
	else
		fuse_reply_buf(j->req, buf, len);
	cm_fs__job_free(j);
}

bool cm_fs_cache_xattr(struct cm_fs_job *j)
{
	struct cm_fs *fs = j->fs;
	char buf[1024];
	int len;
	struct cm_fs_node *n = cm_fs_itable_find(&fs->it, j->ino);
	const char *path = n ? n->path : NULL;
	if (strcmp(j->name, "user.confman.offline") == 0) {
		bool off = fs->off.offline || cm_fs_shard_offline(fs, path);
		len = snprintf(buf, sizeof(buf), "%d", off ? 1 : 0);
	} else if (strcmp(j->name, "user.confman.age_ms") == 0) {
		int64_t age = fs->off.offline ? cm_fs_cache_age_ms(fs) : cm_fs_shard_age_ms(fs, path);
		len = snprintf(buf, sizeof(buf), "%lld", (long long)age);
	} else if (strcmp(j->name, "user.confman.status") == 0) {
		if (j->ino != FUSE_ROOT_ID) {
			cm_fs__done_err(j, -ENODATA);
			return true;
		}
		uint64_t bytes, entries;
		const char *dir;
		char shards[512];
		cm_fs_cache_stats(fs->off.cache, &bytes, &entries, &dir);
		(void)cm_fs_shard_list(fs, shards, sizeof(shards));
		len = snprintf(buf, sizeof(buf),
			       "state %s\nage_ms %lld\noffline_ms %llu\ncache %s\ncache_bytes %llu\n"
			       "cache_entries %llu\nrefused %llu\nprefetch %s\ninodes %u\n"
			       "gets %llu\nlists %llu\nstat_only %s\noffline_shards %s\n",
			       fs->off.offline ? "offline" : "online",
			       (long long)cm_fs_cache_age_ms(fs),
			       fs->off.offline ? (unsigned long long)(uv_now(&fs->loop) -
								      fs->off.offline_at) : 0ull,
			       dir, (unsigned long long)bytes, (unsigned long long)entries,
			       (unsigned long long)fs->off.refused,
			       fs->o.prefetch_max == 0 ? "off" : fs->off.pf_over ? "too large"
				       : fs->off.pf_running ? "running" : "done",
			       fs->it.n, (unsigned long long)fs->n_get,
			       (unsigned long long)fs->n_list, fs->no_attr_only ? "off" : "on", shards);
	} else {
		return false;
	}
	if (len >= (int)sizeof(buf))
		len = (int)sizeof(buf) - 1; /* cut, never read past it */
	reply_text(j, buf, (size_t)(len < 0 ? 0 : len));
	return true;
}

/* ---- prefetch: the whole prefix, when it has at most prefetch= nodes ---- */

struct pf {
	struct cm_fs *fs;
	char kind; /* 'L' list, 'G' get */
	char path[];
};

static void pf_push(struct cm_fs *fs, char kind, const char *path)
{
	struct cm_fs_off *o = &fs->off;
	if (o->pq_n >= fs->o.prefetch_max) /* the bound: never more than the walk's limit */
		return;
	if (o->pq_n == o->pq_cap) {
		uint32_t cap = o->pq_cap ? 2 * o->pq_cap : 64;
		char **q = realloc(o->pq, cap * sizeof(*q));
		if (q == NULL)
			return;
		o->pq = q;
		o->pq_cap = cap;
	}
	size_t n = strlen(path);
	char *e = malloc(n + 2);
	if (e == NULL)
		return;
	e[0] = kind;
	memcpy(e + 1, path, n + 1);
	o->pq[o->pq_n++] = e;
}

static void pf_abort(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	for (uint32_t i = 0; i < o->pq_n; i++)
		free(o->pq[i]);
	o->pq_n = 0;
	o->pf_running = false;
}

static void pf_child(struct cm_fs *fs, const char *dir, const struct cm_dirent *d)
{
	struct cm_fs_off *o = &fs->off;
	if (++o->pf_seen > fs->o.prefetch_max) {
		if (!o->pf_over)
			fprintf(stderr, "confman-fs: cache: the prefix has more than prefetch=%u "
					"nodes: not prefetched, what the mount reads is cached\n",
				fs->o.prefetch_max);
		o->pf_over = true;
		return;
	}
	size_t ld = strlen(dir);
	char path[CM_PATH_MAX + 2];
	if (ld + 1 + d->name.len > CM_PATH_MAX)
		return;
	snprintf(path, sizeof(path), "%s/%.*s", ld == 1 ? "" : dir, (int)d->name.len, d->name.p);
	if (S_ISDIR(d->attr.mode))
		pf_push(fs, 'L', path);
	else if (cm_fs_cache_wants_value(o->cache, path, &d->attr))
		pf_push(fs, 'G', path);
}

static void pf_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct pf *p = arg;
	struct cm_fs *fs = p->fs;
	struct cm_fs_off *o = &fs->off;
	o->pf_inflight--;
	if (err != -ECANCELED && fs->ac != NULL) {
		rd_learn(fs, p->path, p->kind == 'L' ? CM_OP_LIST : CM_OP_GET, 0, err, resp);
		if (err == 0 && p->kind == 'L' && !o->pf_over && o->pf_running)
			for (uint32_t i = 0; i < resp->n_ents && !o->pf_over; i++)
				pf_child(fs, p->path, &resp->ents[i]);
		pf_pump(fs);
	}
	free(p);
}

static void pf_pump(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	while (o->pf_inflight < CM_FS_PREFETCH_INFLIGHT && o->pq_n > 0 && !o->offline &&
	       fs->ac != NULL) {
		char *e = o->pq[--o->pq_n];
		size_t n = strlen(e + 1);
		struct pf *p = malloc(sizeof(*p) + n + 1);
		if (p == NULL) {
			free(e);
			continue;
		}
		p->fs = fs;
		p->kind = e[0];
		memcpy(p->path, e + 1, n + 1);
		free(e);
		struct cm_req r = {.op = p->kind == 'L' ? CM_OP_LIST : CM_OP_GET,
				   .path = {p->path, (uint32_t)n}};
		if (cm_ac_submit(fs->ac, &r, pf_cb, p) != 0) {
			free(p);
			continue;
		}
		o->pf_inflight++;
	}
	if (o->pf_running && o->pq_n == 0 && o->pf_inflight == 0) {
		o->pf_running = false;
		o->pf_walked = true; /* a prefix too large is not walked again on every LIVE */
		if (!o->pf_over)
			fprintf(stderr, "confman-fs: cache: prefetch done: %u nodes of %s in %llu ms\n",
				o->pf_seen, fs->o.prefix,
				(unsigned long long)(uv_now(&fs->loop) - o->pf_started));
	}
}

/* A walk of the prefix after each return to live: listings replace what
 * the cache holds of each directory, values are fetched where the cached
 * one is not the current version. */
static void pf_start(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	if (o->cache == NULL || fs->o.prefetch_max == 0 || o->pf_running || o->offline ||
	    (o->pf_over && o->pf_walked))
		return;
	o->pf_running = true;
	o->pf_over = false;
	o->pf_seen = 0;
	o->pf_started = uv_now(&fs->loop);
	pf_push(fs, 'L', fs->o.prefix);
	pf_push(fs, 'G', fs->o.prefix); /* the root's own attributes */
	pf_pump(fs);
}

/* ---- start, stop ---- */

/* Every second: flush the environment; while connected and live, the
 * cache is current now (its age, should the cluster vanish). */
/* The last event index of each group goes with the cache: after a boot,
 * the resync's "since" (fs/resync.c) then tells a child created while the
 * mount was away (IN_CREATE) from one the cache already had (nothing). */
static void seen_save(struct cm_fs *fs)
{
	cm_fs_cache_meta_set(fs->off.cache, "seen", fs->seen, fs->n_seen * sizeof(fs->seen[0]));
}

static void seen_load(struct cm_fs *fs)
{
	size_t len = 0;
	if (cm_fs_cache_meta_get(fs->off.cache, "seen", fs->seen, sizeof(fs->seen), &len) == 0 &&
	    len % sizeof(fs->seen[0]) == 0)
		fs->n_seen = (uint32_t)(len / sizeof(fs->seen[0]));
}

static void tick_cb(uv_timer_t *t)
{
	struct cm_fs *fs = t->data;
	struct cm_fs_off *o = &fs->off;
	if (!o->offline && fs->live) {
		o->synced = wall_now();
		if (++o->ticks % 10 == 0) {
			cm_fs_cache_set_synced(o->cache, o->synced);
			seen_save(fs);
		}
	}
	cm_fs_cache_sync(o->cache);
}

int cm_fs_cache_start(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	if (fs->o.cache_dir == NULL || strcmp(fs->o.cache_dir, "none") == 0)
		return 0;
	if (cm_fs_cache_open(fs->o.cache_dir, fs->o.servers, fs->o.prefix, fs->deny.key,
			     fs->o.cache_size, &o->cache) != 0)
		return 0; /* logged: the mount runs without a cache */
	o->synced = cm_fs_cache_synced(o->cache);
	seen_load(fs);
	o->tick.data = o->deadline.data = o->again.data = fs;
	(void)uv_timer_init(&fs->loop, &o->tick);
	(void)uv_timer_init(&fs->loop, &o->deadline);
	(void)uv_timer_init(&fs->loop, &o->again);
	uv_timer_start(&o->tick, tick_cb, 1000, 1000);
	o->timers = true;
	o->fresh = true; /* the watch begins now: what the cache holds may be older */
	cm_fs_cache_probe(fs); /* booting without the cluster: offline within offline_after/2 */
	return 0;
}

void cm_fs_cache_stop(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	pf_abort(fs);
	cm_fs_shard_stop(fs);
	free(o->pq);
	o->pq = NULL;
	o->pq_cap = 0;
	if (o->timers) {
		uv_close((uv_handle_t *)&o->tick, NULL);
		uv_close((uv_handle_t *)&o->deadline, NULL);
		uv_close((uv_handle_t *)&o->again, NULL);
		o->timers = false;
	}
}

void cm_fs_cache_free(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	if (o->cache != NULL && o->synced > 0 && !o->offline)
		cm_fs_cache_set_synced(o->cache, o->synced);
	if (o->cache != NULL)
		seen_save(fs); /* unchanged while offline: events stopped */
	cm_fs_cache_close(o->cache);
	o->cache = NULL;
}
