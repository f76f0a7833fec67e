/* shard.c: offline per shard (fs/README.md, "Offline"). The mount keeps
 * the cluster's shard map (SHARDS: prefix, group, replicas' addresses);
 * when a read below a shard stalls or fails, or the watch stream of its
 * group goes stale, every replica of that group is asked for STATUS. None
 * answering within offline_after/2 puts that shard alone offline: its
 * paths are served from the persistent cache and changes below it fail
 * with EROFS, while the other shards are served live. The whole-mount
 * state (no server at all answers) is offline.c's. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "confman/path.h"
#include "job.h"

#define SHARD_AGAIN_MS 200   /* between probes of an offline shard */
#define MAP_AGAIN_MS 1000    /* at most one SHARDS round a second */
#define MAP_ASK_MAX 16       /* servers a SHARDS round asks */

static int64_t wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void shard_clear(struct cm_fs_shard *sh)
{
	free(sh->prefix);
	sh->prefix = NULL;
	for (uint32_t i = 0; i < sh->n_addrs; i++)
		free(sh->addrs[i]);
	sh->n_addrs = 0;
}

struct cm_fs_shard *cm_fs_shard_of(struct cm_fs *fs, const char *path)
{
	struct cm_fs_off *o = &fs->off;
	struct cm_fs_shard *best = NULL;
	size_t blen = 0, len = strlen(path);
	for (uint32_t i = 0; i < o->n_shards; i++) {
		struct cm_fs_shard *sh = &o->shards[i];
		if (sh->prefix == NULL)
			continue;
		size_t n = strlen(sh->prefix);
		if (cm_path_is_under(path, (uint32_t)len, sh->prefix, (uint32_t)n) &&
		    (best == NULL || n > blen)) {
			best = sh;
			blen = n;
		}
	}
	return best;
}

bool cm_fs_shard_offline(struct cm_fs *fs, const char *path)
{
	if (fs->off.n_sh_offline == 0 || path == NULL)
		return false;
	struct cm_fs_shard *sh = cm_fs_shard_of(fs, path);
	return sh != NULL && sh->offline;
}

/* ---- the map ---- */

static struct cm_fs_shard *slot_for(struct cm_fs *fs, uint64_t group)
{
	struct cm_fs_off *o = &fs->off;
	struct cm_fs_shard *free_slot = NULL;
	for (uint32_t i = 0; i < o->n_shards; i++) {
		if (o->shards[i].group == group && o->shards[i].prefix != NULL)
			return &o->shards[i];
		if (o->shards[i].prefix == NULL && free_slot == NULL && !o->shards[i].probing)
			free_slot = &o->shards[i];
	}
	if (free_slot == NULL && o->n_shards < CM_FS_SHARDS_MAX) {
		free_slot = &o->shards[o->n_shards++];
		free_slot->fs = fs;
		free_slot->timer.data = free_slot;
		(void)uv_timer_init(&fs->loop, &free_slot->timer); /* cannot fail */
	}
	return free_slot;
}

static void shard_set_offline(struct cm_fs_shard *sh, bool off);
static void map_apply(struct cm_fs *fs, const struct cm_resp *resp);

static void map_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs *fs = arg;
	struct cm_fs_off *o = &fs->off;
	o->map_out--;
	if (fs->ac == NULL || err == -ECANCELED)
		return;
	bool first = err == 0 && resp != NULL && !o->map_round_ok;
	if (err == 0 && resp != NULL) {
		o->map_round_ok = true;
		if (resp->epoch >= o->map_epoch) { /* else a node behind the registry */
			o->map_got = uv_now(&fs->loop);
			o->map_epoch = resp->epoch;
			map_apply(fs, resp);
		}
	}
	if (!first && (o->map_out > 0 || o->map_round_ok))
		return; /* rechecks wait for the first answer (or for none at all) */
	if (!first) { /* no map: a shard is not sent offline on an old one */
		for (uint32_t i = 0; i < o->n_shards; i++) {
			struct cm_fs_shard *sh = &o->shards[i];
			if (sh->recheck) {
				sh->recheck = false;
				cm_fs_cache_shard_verdict(fs, sh, true);
			}
		}
		return;
	}
	for (uint32_t i = 0; i < o->n_shards; i++) { /* asked again, with this map */
		struct cm_fs_shard *sh = &o->shards[i];
		if (sh->recheck && sh->prefix != NULL) {
			sh->recheck = false;
			cm_fs_shard_probe(fs, sh);
		}
	}
}

/* The shard map of a SHARDS answer replaces the one kept. */
static void map_apply(struct cm_fs *fs, const struct cm_resp *resp)
{
	struct cm_fs_off *o = &fs->off;
	for (uint32_t i = 0; i < o->n_shards; i++)
		o->shards[i].seen = false;
	for (uint32_t k = 0; k < resp->n_shards; k++) {
		const struct cm_shard *s = &resp->shards[k];
		struct cm_fs_shard *sh = slot_for(fs, s->group);
		if (sh == NULL) { /* the bound: shards past it are watched as a whole */
			if (!o->map_full)
				fprintf(stderr, "confman-fs: cache: more than %d shards: the others "
						"go offline only with the whole mount\n",
					CM_FS_SHARDS_MAX);
			o->map_full = true;
			break;
		}
		char *prefix = strndup(s->prefix.p ? s->prefix.p : "", s->prefix.len);
		if (prefix == NULL)
			continue;
		shard_clear(sh);
		sh->prefix = prefix;
		sh->group = s->group;
		sh->seen = true;
		for (uint32_t r = 0; r < s->n_replicas && r < CM_CLIENT_MAX_REPLICAS; r++)
			for (uint32_t n = 0; n < resp->n_nodes; n++)
				if (resp->nodes[n].id == s->replicas[r] && resp->nodes[n].addr.len &&
				    (sh->addrs[sh->n_addrs] = strndup(resp->nodes[n].addr.p,
								      resp->nodes[n].addr.len)))
					sh->n_addrs++;
	}
	for (uint32_t i = 0; i < o->n_shards; i++) { /* merged away: forget it */
		struct cm_fs_shard *sh = &o->shards[i];
		if (sh->prefix != NULL && !sh->seen) {
			shard_set_offline(sh, false);
			shard_clear(sh);
		}
	}
}

/* SHARDS to every server of the mount's list at once (one round at a
 * time), whatever the rate limit: the first answer is used at once, later
 * ones if their registry epoch is newer. All at once for the reason the
 * probes are (offline.c): a server cut off drops, it does not refuse. */
static void map_ask(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	if (o->map_out > 0 || fs->ac == NULL)
		return;
	o->map_round_ok = false;
	o->map_at = uv_now(&fs->loop);
	struct cm_req r = {.op = CM_OP_SHARDS};
	const char *s = fs->o.servers;
	char a[256];
	for (int n = 0; *s && n < MAP_ASK_MAX; n++) {
		size_t len = strcspn(s, ",");
		if (len > 0 && len < sizeof(a)) {
			memcpy(a, s, len);
			a[len] = 0;
			if (cm_ac_submit_to(fs->ac, a, &r, map_cb, fs) == 0)
				o->map_out++;
		}
		s += len + (s[len] == ',');
	}
}

void cm_fs_shard_map_refresh(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	uint64_t now = uv_now(&fs->loop);
	if (o->cache == NULL || (o->map_at != 0 && now - o->map_at < MAP_AGAIN_MS))
		return;
	map_ask(fs);
}

/* ---- a probe: STATUS to every replica of the shard ---- */

struct sp {
	struct cm_fs_shard *sh;
	uint32_t gen;
};

static void shard_set_offline(struct cm_fs_shard *sh, bool off)
{
	struct cm_fs *fs = sh->fs;
	if (sh->offline == off)
		return;
	sh->offline = off;
	if (off) {
		fs->off.n_sh_offline++;
		sh->offline_at = uv_now(&fs->loop);
		sh->synced = wall_now(); /* its stream was live until about now */
		fprintf(stderr, "confman-fs: offline: shard %s (group %llu): none of its %u "
				"replicas (%s%s) answered within %llu ms: reads below it are served "
				"from the cache, changes below it fail with EROFS; other shards "
				"stay live\n", sh->prefix, (unsigned long long)sh->group, sh->n_addrs,
			sh->n_addrs ? sh->addrs[0] : "", sh->n_addrs > 1 ? ", ..." : "",
			(unsigned long long)fs->o.offline_after_ms);
	} else {
		fs->off.n_sh_offline--;
		fprintf(stderr, "confman-fs: shard %s (group %llu) online again after %llu ms "
				"offline\n", sh->prefix ? sh->prefix : "?",
			(unsigned long long)sh->group,
			(unsigned long long)(uv_now(&fs->loop) - sh->offline_at));
	}
}

static void again_cb(uv_timer_t *t)
{
	struct cm_fs_shard *sh = t->data;
	cm_fs_shard_map_refresh(sh->fs); /* moved while offline? (once a second) */
	if (sh->prefix != NULL && sh->offline)
		cm_fs_shard_probe(sh->fs, sh);
}

/* The round's outcome: reachable or not. An offline shard goes online once
 * a replica answers and the watch's stream of its group is live again (its
 * missed changes are then being delivered as events). */
static void verdict(struct cm_fs_shard *sh, bool reachable)
{
	struct cm_fs *fs = sh->fs;
	sh->probing = false;
	uv_timer_stop(&sh->timer);
	if (fs->ac == NULL || sh->prefix == NULL)
		return;
	if (!reachable && !sh->offline && fs->off.map_got < sh->started) {
		/* Its replicas as of an older map did not answer: the shard
		 * may have moved since (a shard move, a node replaced). Only a
		 * map fetched after this round began can send it offline: ask
		 * for one, and probe again with it. If no server answers even
		 * that, the whole mount goes offline (offline.c). */
		sh->recheck = true;
		map_ask(fs);
		return;
	}
	if (!reachable) {
		shard_set_offline(sh, true);
	} else if (sh->offline) {
		uint64_t last;
		if (fs->watching && cm_ac_watch_covers(fs->ac, fs->watch_id, sh->group, &last)) {
			shard_set_offline(sh, false);
			cm_fs_cache_shard_online(fs);
		}
	}
	cm_fs_cache_shard_verdict(fs, sh, reachable);
	if (sh->offline)
		uv_timer_start(&sh->timer, again_cb, SHARD_AGAIN_MS, 0);
}

static void sp_cb(void *arg, int err, const struct cm_resp *resp)
{
	(void)resp;
	struct sp *p = arg;
	struct cm_fs_shard *sh = p->sh;
	bool current = p->gen == sh->gen && sh->probing;
	free(p);
	if (!current || err == -ECANCELED)
		return;
	sh->out--;
	/* STATUS: 0. The pinned GET: a server's answer of any kind. */
	if (err == 0 || err == -ENOENT || err == -EISDIR || err == -ENOTDIR ||
	    err == CM_EWRONGSHARD)
		verdict(sh, true);
	else if (sh->out == 0) /* every replica refused: no need to wait */
		verdict(sh, false);
}

static void deadline_cb(uv_timer_t *t)
{
	struct cm_fs_shard *sh = t->data;
	if (sh->probing)
		verdict(sh, false);
}

void cm_fs_shard_probe(struct cm_fs *fs, struct cm_fs_shard *sh)
{
	if (sh == NULL || sh->probing || sh->n_addrs == 0 || fs->ac == NULL ||
	    !cm_fs_cache_usable(fs->off.cache))
		return;
	sh->gen++;
	sh->out = 0;
	sh->probing = true;
	sh->started = uv_now(&fs->loop);
	struct cm_req r = {.op = CM_OP_STATUS, .consistency = CM_READ_FOLLOWER};
	for (uint32_t i = 0; i < sh->n_addrs; i++) {
		struct sp *p = malloc(sizeof(*p));
		if (p == NULL)
			continue;
		*p = (struct sp){sh, sh->gen};
		if (cm_ac_submit_to(fs->ac, sh->addrs[i], &r, sp_cb, p) != 0) {
			free(p);
			continue;
		}
		sh->out++;
	}
	/* And a read of the shard's top pinned to its group, routed by the
	 * library: its own map and redirects may know replicas the mount's
	 * map does not yet (a node behind the registry answered SHARDS). */
	struct sp *g = malloc(sizeof(*g));
	if (g != NULL) {
		*g = (struct sp){sh, sh->gen};
		struct cm_req get = {.op = CM_OP_GET, .group = sh->group,
				     .consistency = CM_READ_FOLLOWER,
				     .path = {sh->prefix, (uint32_t)strlen(sh->prefix)}};
		if (cm_ac_submit(fs->ac, &get, sp_cb, g) == 0)
			sh->out++;
		else
			free(g);
	}
	if (sh->out == 0) { /* nothing could be sent: say nothing */
		sh->probing = false;
		return;
	}
	/* The whole offline_after: a live replica slow to answer (a loaded
	 * host) must not send its shard offline; a refused connection still
	 * decides at once. */
	uv_timer_start(&sh->timer, deadline_cb, fs->o.offline_after_ms ? fs->o.offline_after_ms : 1,
		       0);
}

void cm_fs_shard_probe_path(struct cm_fs *fs, const char *path)
{
	if (fs->off.n_shards > 1) /* one shard: the whole mount's probe says it all */
		cm_fs_shard_probe(fs, cm_fs_shard_of(fs, path));
}

void cm_fs_shard_stale(struct cm_fs *fs, uint64_t group)
{
	cm_fs_shard_map_refresh(fs); /* a split or a move may be why */
	struct cm_fs_off *o = &fs->off;
	if (o->n_shards <= 1)
		return;
	for (uint32_t i = 0; i < o->n_shards; i++)
		if (o->shards[i].prefix != NULL && o->shards[i].group == group)
			cm_fs_shard_probe(fs, &o->shards[i]);
}

int64_t cm_fs_shard_age_ms(struct cm_fs *fs, const char *path)
{
	struct cm_fs_shard *sh = path ? cm_fs_shard_of(fs, path) : NULL;
	if (sh == NULL || !sh->offline)
		return 0;
	int64_t age = wall_now() - sh->synced;
	return age < 0 ? 0 : age;
}

size_t cm_fs_shard_list(struct cm_fs *fs, char *buf, size_t cap)
{
	struct cm_fs_off *o = &fs->off;
	size_t len = 0;
	for (uint32_t i = 0; i < o->n_shards && len < cap; i++) {
		const struct cm_fs_shard *sh = &o->shards[i];
		if (sh->prefix != NULL && sh->offline) {
			int n = snprintf(buf + len, cap - len, "%s%s", len ? " " : "", sh->prefix);
			len += n < 0 ? 0 : (size_t)n;
		}
	}
	if (len == 0 && cap > 1)
		len = (size_t)snprintf(buf, cap, "-");
	return len < cap ? len : cap - 1;
}

void cm_fs_shard_stop(struct cm_fs *fs)
{
	struct cm_fs_off *o = &fs->off;
	for (uint32_t i = 0; i < o->n_shards; i++) {
		shard_clear(&o->shards[i]);
		o->shards[i].probing = false; /* answers still out are ignored */
		uv_close((uv_handle_t *)&o->shards[i].timer, NULL);
	}
	o->n_shards = 0;
	o->n_sh_offline = 0;
}
