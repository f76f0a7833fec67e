/* session.c: the mount's session lease (loop thread).
 *
 * One lease id per mount, drawn at random when first needed. A lease is a
 * group's (proto.h, CM_OP_LEASE), so the id is granted lazily in each group
 * where the mount takes a lock or attaches a file: a request naming it that
 * is answered "no such lease" (ENOENT) grants it at that request's path and
 * goes again (fs/lock.c). Every TTL/3 the loop sends a KEEPALIVE to each of
 * those groups, at the path the grant was made for. When a group has not
 * answered a keepalive sent within the last TTL, or answers that the lease
 * is gone, the session is lost: it is logged, every lock taken under it is
 * marked lost (its handles then report ENOLCK), the old id is revoked where
 * it may live on, and the next need draws a new id: a new session.
 *
 * A GRANT that succeeds in a group the session had already been granted in
 * means that the lease had ended there unseen: the session is lost too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "fs.h"

/* One request of the session in flight. */
struct scall {
	struct cm_fs *fs;
	uint64_t epoch; /* the session it was sent for */
	uint64_t sent;  /* uv_now() when sent */
	uint64_t group; /* KEEPALIVE: its group */
	char *path;     /* owned: GRANT's */
	void (*done)(void *arg, int err);
	void *arg;
};

static struct scall *scall_new(struct cm_fs *fs, const char *path)
{
	struct scall *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->path = path ? strdup(path) : NULL;
	if (path && c->path == NULL) {
		free(c);
		return NULL;
	}
	c->fs = fs;
	c->epoch = fs->ss.epoch;
	c->sent = uv_now(&fs->loop);
	return c;
}

static void scall_free(struct scall *c)
{
	free(c->path);
	free(c);
}

uint64_t cm_fs_session_id(struct cm_fs *fs)
{
	struct cm_fs_session *ss = &fs->ss;
	while (ss->id == 0) {
		uint64_t x = 0;
		if (getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x)) {
			/* Cannot fail for 8 bytes once the pool is ready; do not spin. */
			x = (uint64_t)uv_hrtime() ^ ((uint64_t)getpid() << 32);
		}
		ss->id = x & (uint64_t)CM_LEASE_ID_MAX;
	}
	return ss->id;
}

static struct cm_fs_sgroup *group_find(struct cm_fs_session *ss, uint64_t group)
{
	for (uint32_t k = 0; k < ss->n; k++)
		if (ss->g[k].group == group)
			return &ss->g[k];
	return NULL;
}

/* Keep the lease of group alive from now on, at path. false: the table is
 * full (CM_FS_GROUPS_MAX) or no memory: that group is not kept alive. */
static bool group_add(struct cm_fs *fs, uint64_t group, const char *path, uint64_t ok_at)
{
	struct cm_fs_session *ss = &fs->ss;
	char *p = strdup(path);
	if (ss->n == CM_FS_GROUPS_MAX || p == NULL) {
		free(p);
		fprintf(stderr, "confman-fs: session lease %llu: group %llu cannot be kept alive "
				"(%u groups at most)\n", (unsigned long long)ss->id,
			(unsigned long long)group, CM_FS_GROUPS_MAX);
		return false;
	}
	ss->g[ss->n++] = (struct cm_fs_sgroup){.group = group, .path = p, .ok_at = ok_at};
	return true;
}

void cm_fs_session_seen(struct cm_fs *fs, uint64_t epoch, uint64_t group, const char *path)
{
	if (epoch != fs->ss.epoch || group == 0 || group_find(&fs->ss, group) != NULL)
		return;
	/* Known here only by a request's success (its grant's answer was lost):
	 * the lease was alive a moment ago. */
	group_add(fs, group, path, uv_now(&fs->loop));
}

static void revoke_cb(void *arg, int err, const struct cm_resp *resp)
{
	(void)err, (void)resp;
	scall_free(arg); /* best effort: the TTL ends it anyway */
}

/* REVOKE id at path, answered by nobody. */
static void lease_revoke(struct cm_fs *fs, const char *path, uint64_t id)
{
	struct cm_req r;
	struct scall *c = fs->ac ? scall_new(fs, path) : NULL;
	if (c == NULL)
		return;
	if (cm_lease_req(&r, c->path, CM_LEASE_REVOKE, id, 0) != 0 ||
	    cm_ac_submit(fs->ac, &r, revoke_cb, c) != 0)
		scall_free(c);
}

void cm_fs_session_lost(struct cm_fs *fs, const char *why)
{
	struct cm_fs_session *ss = &fs->ss;
	uint64_t old = ss->id, epoch = ss->epoch;
	ss->lost++;
	fprintf(stderr, "confman-fs: session lease %llu lost (%s): its locks are gone; a new "
			"session starts\n", (unsigned long long)old, why);
	ss->id = 0;
	ss->epoch++;
	for (uint32_t k = 0; k < ss->n; k++) {
		if (old != 0)
			lease_revoke(fs, ss->g[k].path, old);
		free(ss->g[k].path);
	}
	ss->n = 0;
	cm_fs_locks_lost(fs, epoch);
}

/* ---- grants ---- */

static void grant_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct scall *c = arg;
	struct cm_fs *fs = c->fs;
	if (c->epoch != fs->ss.epoch) {
		err = -EAGAIN; /* lost meanwhile: the caller goes again with the new id */
	} else if (err == -EEXIST) {
		err = 0; /* held there already: an earlier grant of ours */
	} else if (err == 0 && resp != NULL && resp->group != 0) {
		if (group_find(&fs->ss, resp->group) != NULL) {
			char why[96];
			snprintf(why, sizeof(why), "it had ended in group %llu",
				 (unsigned long long)resp->group);
			cm_fs_session_lost(fs, why); /* revokes this grant too */
			err = -EAGAIN;
		} else {
			group_add(fs, resp->group, c->path, c->sent);
		}
	}
	c->done(c->arg, err);
	scall_free(c);
}

void cm_fs_session_grant(struct cm_fs *fs, const char *path, void (*done)(void *arg, int err),
			 void *arg)
{
	struct cm_req r;
	struct scall *c = fs->ac ? scall_new(fs, path) : NULL;
	if (c == NULL) {
		done(arg, fs->ac ? -ENOMEM : -ECANCELED);
		return;
	}
	c->done = done;
	c->arg = arg;
	int rc = cm_lease_req(&r, c->path, CM_LEASE_GRANT, cm_fs_session_id(fs),
			      (uint32_t)fs->o.lock_ttl_ms);
	if (rc == 0)
		rc = cm_ac_submit(fs->ac, &r, grant_cb, c);
	if (rc != 0) {
		scall_free(c);
		done(arg, rc);
	}
}

/* ---- keepalives ---- */

static void keepalive_cb(void *arg, int err, const struct cm_resp *resp)
{
	(void)resp;
	struct scall *c = arg;
	struct cm_fs *fs = c->fs;
	struct cm_fs_sgroup *g = c->epoch == fs->ss.epoch ? group_find(&fs->ss, c->group) : NULL;
	if (g != NULL) {
		g->ka_out = false;
		if (err == 0 && c->sent > g->ok_at) {
			g->ok_at = c->sent;
		} else if (err == -ENOENT) {
			char why[96];
			snprintf(why, sizeof(why), "group %llu no longer holds it",
				 (unsigned long long)c->group);
			cm_fs_session_lost(fs, why);
		}
	}
	scall_free(c);
}

static void keepalive(struct cm_fs *fs, struct cm_fs_sgroup *g)
{
	struct cm_req r;
	struct scall *c = scall_new(fs, g->path);
	if (c == NULL)
		return; /* the next tick tries again */
	c->group = g->group;
	int rc = cm_lease_req(&r, c->path, CM_LEASE_KEEPALIVE, fs->ss.id, 0);
	if (rc == 0)
		rc = cm_ac_submit(fs->ac, &r, keepalive_cb, c);
	if (rc != 0)
		scall_free(c);
	else
		g->ka_out = true;
}

static void tick_cb(uv_timer_t *t)
{
	struct cm_fs *fs = t->data;
	struct cm_fs_session *ss = &fs->ss;
	uint64_t now = uv_now(t->loop);
	if (fs->ac == NULL)
		return;
	for (uint32_t k = 0; k < ss->n; k++) {
		struct cm_fs_sgroup *g = &ss->g[k];
		if (now - g->ok_at > fs->o.lock_ttl_ms) {
			char why[128];
			snprintf(why, sizeof(why), "no keepalive answered in group %llu for %llu ms",
				 (unsigned long long)g->group, (unsigned long long)(now - g->ok_at));
			cm_fs_session_lost(fs, why);
			return;
		}
		if (!g->ka_out)
			keepalive(fs, g);
	}
}

int cm_fs_session_start(struct cm_fs *fs)
{
	uint64_t every = fs->o.lock_ttl_ms / 3;
	int rc = uv_timer_init(&fs->loop, &fs->ss.tick);
	if (rc != 0)
		return rc;
	fs->ss.tick.data = fs;
	fs->ss.timer = true;
	fs->ss.epoch = 1;
	return uv_timer_start(&fs->ss.tick, tick_cb, every, every);
}

void cm_fs_session_stop(struct cm_fs *fs)
{
	if (fs->ss.timer)
		uv_close((uv_handle_t *)&fs->ss.tick, NULL);
	fs->ss.timer = false;
	for (uint32_t k = 0; k < fs->ss.n; k++)
		free(fs->ss.g[k].path);
	fs->ss.n = 0;
}
