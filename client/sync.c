/* sync.c: the blocking API, each call running the asynchronous core on a private loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client_int.h"

int cm_client_open(const struct cm_client_opts *opts, struct cm_client **out)
{
	struct cm_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	int rv = uv_loop_init(&c->loop);
	if (rv != 0)
		goto err_c;
	rv = cm_ac_new(&c->loop, opts, &c->ac);
	if (rv != 0)
		goto err_loop;
	*out = c;
	return 0;
err_loop:
	uv_loop_close(&c->loop);
err_c:
	free(c);
	return rv;
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

void cm_client_close(struct cm_client *c)
{
	if (c == NULL)
		return;
	bool closed = false;
	cm_ac_close(c->ac, closed_cb, &closed);
	while (!closed)
		uv_run(&c->loop, UV_RUN_DEFAULT);
	uv_run(&c->loop, UV_RUN_DEFAULT); /* any close callback still queued */
	int rv = uv_loop_close(&c->loop);
	(void)rv; /* every handle is closed by now; EBUSY would be our bug */
	free(c);
}

static void sync_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_client__call *s = arg;
	s->done = true;
	s->err = err;
	s->answered = resp != NULL;
	s->group = resp ? resp->group : 0;
	s->token = resp ? resp->token : 0;
	if (err == 0 && resp != NULL && s->attr != NULL && resp->has_attr)
		*s->attr = resp->attr;
	if (err == 0 && resp != NULL && s->copy != NULL)
		s->err = s->copy(s, resp);
}

/*
 * Between calls nobody runs the loop: a connection the server closed
 * meanwhile is still open to us. Notice that before sending, or a write
 * would go out on a dead socket and come back -EIO (outcome unknown).
 * One turn is not enough: libuv stops reading a socket after a short read,
 * so an end-of-stream behind buffered bytes shows on the next turn. Turn
 * while there is something to read, a bounded number of times.
 */
#define CATCH_UP_TURNS 16

void cm_client__catch_up(struct cm_client *c)
{
	for (int k = 0; k < CATCH_UP_TURNS; k++) {
		uint64_t before = c->ac->n_reads;
		uv_run(&c->loop, UV_RUN_NOWAIT);
		if (c->ac->n_reads == before)
			return;
	}
}

int cm_client__run(struct cm_client *c, const char *server, const struct cm_req *req,
		   struct cm_client__call *s)
{
	cm_client__catch_up(c);
	int rv = server ? cm_ac_submit_to(c->ac, server, req, sync_cb, s)
			: cm_ac_submit(c->ac, req, sync_cb, s);
	if (rv != 0)
		return rv;
	while (!s->done)
		uv_run(&c->loop, UV_RUN_ONCE);
	return s->err;
}

int cm_client__path(const char *path, struct cm_bytes *b)
{
	if (path == NULL)
		return -EINVAL;
	size_t n = strnlen(path, CM_PATH_MAX + 1);
	*b = (struct cm_bytes){path, (uint32_t)n};
	return n > CM_PATH_MAX ? -ENAMETOOLONG : 0;
}

/* ---- reads ---- */

static int copy_value(struct cm_client__call *s, const struct cm_resp *resp)
{
	char *v = malloc((size_t)resp->value.len + 1);
	if (v == NULL)
		return -ENOMEM;
	if (resp->value.len > 0)
		memcpy(v, resp->value.p, resp->value.len);
	v[resp->value.len] = '\0';
	if (s->out2)
		*(uint32_t *)s->out2 = resp->value.len;
	if (s->out)
		*(void **)s->out = v;
	else
		free(v);
	return 0;
}

int cm_get(struct cm_client *c, const char *path, void **value, uint32_t *len,
	   struct cm_attr *attr)
{
	struct cm_req r = {.op = CM_OP_GET, .consistency = CM_READ_DEFAULT};
	int rv = cm_client__path(path, &r.path);
	if (rv != 0)
		return rv;
	struct cm_client__call s = {.copy = copy_value, .out = value, .out2 = len, .attr = attr};
	return cm_client__run(c, NULL, &r, &s);
}

int cm_get_from(struct cm_client *c, const char *server, const char *path, void **value,
		uint32_t *len, struct cm_attr *attr)
{
	struct cm_req r = {.op = CM_OP_GET, .consistency = CM_READ_DEFAULT};
	int rv = cm_client__path(path, &r.path);
	if (rv != 0)
		return rv;
	struct cm_client__call s = {.copy = copy_value, .out = value, .out2 = len, .attr = attr};
	return cm_client__run(c, server, &r, &s);
}

void cm_list_free(struct cm_list_entry *ents, uint32_t n)
{
	for (uint32_t k = 0; ents && k < n; k++)
		free(ents[k].name);
	free(ents);
}

static int copy_list(struct cm_client__call *s, const struct cm_resp *resp)
{
	struct cm_list_entry *e = NULL;
	if (resp->n_ents > 0 && (e = calloc(resp->n_ents, sizeof(*e))) == NULL)
		return -ENOMEM;
	for (uint32_t k = 0; k < resp->n_ents; k++) {
		const struct cm_bytes *nm = &resp->ents[k].name;
		e[k].attr = resp->ents[k].attr;
		e[k].name = malloc((size_t)nm->len + 1);
		if (e[k].name == NULL) {
			cm_list_free(e, k);
			return -ENOMEM;
		}
		if (nm->len > 0)
			memcpy(e[k].name, nm->p, nm->len);
		e[k].name[nm->len] = '\0';
	}
	*(struct cm_list_entry **)s->out = e;
	*(uint32_t *)s->out2 = resp->n_ents;
	return 0;
}

int cm_list(struct cm_client *c, const char *path, struct cm_list_entry **ents, uint32_t *n)
{
	struct cm_req r = {.op = CM_OP_LIST, .consistency = CM_READ_DEFAULT};
	int rv = cm_client__path(path, &r.path);
	if (rv != 0 || ents == NULL || n == NULL)
		return rv ? rv : -EINVAL;
	*ents = NULL;
	*n = 0;
	struct cm_client__call s = {.copy = copy_list, .out = ents, .out2 = n};
	return cm_client__run(c, NULL, &r, &s);
}

/* ---- writes ---- */

static int sync_write(struct cm_client *c, struct cm_req *r, struct cm_attr *attr)
{
	r->uid = (uint32_t)getuid();
	r->gid = (uint32_t)getgid();
	struct cm_client__call s = {.attr = attr};
	return cm_client__run(c, NULL, r, &s);
}

int cm_put(struct cm_client *c, const char *path, const void *value, uint32_t len,
	   uint32_t flags, uint64_t if_version, struct cm_attr *attr)
{
	if (flags & ~(uint32_t)(CM_PUT_IF_VERSION | CM_PUT_CREATE))
		return -EINVAL;
	struct cm_req r = {.op = CM_OP_PUT, .flags = flags, .version = if_version};
	int rv = cm_client__path(path, &r.path);
	if (rv != 0)
		return rv;
	r.value = (struct cm_bytes){value, len};
	return sync_write(c, &r, attr);
}

#define PUT_EX_FLAGS                                                                    \
	(CM_PUT_IF_VERSION | CM_PUT_CREATE | CM_SET_MODE | CM_SET_TIMES | CM_PUT_KEEP_VALUE | \
	 CM_NO_PARENTS | CM_PUT_LEASE)

int cm_put_ex(struct cm_client *c, const char *path, const void *value, uint32_t len,
	      const struct cm_put_args *args, struct cm_attr *attr)
{
	if (args == NULL || (args->flags & ~(uint32_t)PUT_EX_FLAGS))
		return -EINVAL;
	uint32_t type = args->mode & S_IFMT;
	if ((type != 0 && type != S_IFREG && type != S_IFLNK) ||
	    (args->mode & ~(uint32_t)(S_IFMT | 07777)))
		return -EINVAL;
	struct cm_req r = {.op = CM_OP_PUT, .flags = args->flags, .version = args->if_version,
			   .mode = args->mode, .atime_ns = args->atime_ns,
			   .mtime_ns = args->mtime_ns};
	if (args->flags & CM_PUT_LEASE) {
		if (args->lease > CM_LEASE_ID_MAX)
			return -EINVAL;
		r.from_index = args->lease; /* proto.h: CM_PUT_LEASE's operand */
	}
	int rv = cm_client__path(path, &r.path);
	if (rv != 0)
		return rv;
	if (!(args->flags & CM_PUT_KEEP_VALUE))
		r.value = (struct cm_bytes){value, len};
	if (!(args->flags & CM_SET_MODE))
		return sync_write(c, &r, attr);
	r.uid = args->uid;
	r.gid = args->gid;
	struct cm_client__call s = {.attr = attr};
	return cm_client__run(c, NULL, &r, &s);
}

int cm_delete(struct cm_client *c, const char *path, uint32_t flags)
{
	if (flags & ~(uint32_t)(CM_DEL_RECURSIVE | CM_DEL_DIR))
		return -EINVAL;
	struct cm_req r = {.op = CM_OP_DELETE, .flags = flags};
	int rv = cm_client__path(path, &r.path);
	return rv ? rv : sync_write(c, &r, NULL);
}

int cm_mkdir(struct cm_client *c, const char *path, uint32_t mode, struct cm_attr *attr)
{
	struct cm_req r = {.op = CM_OP_MKDIR, .mode = mode ? mode : 0755};
	if (r.mode & ~(uint32_t)07777)
		return -EINVAL;
	r.mode |= S_IFDIR;
	int rv = cm_client__path(path, &r.path);
	return rv ? rv : sync_write(c, &r, attr);
}

int cm_rename(struct cm_client *c, const char *from, const char *to, struct cm_attr *attr)
{
	struct cm_req r = {.op = CM_OP_RENAME};
	int rv = cm_client__path(from, &r.path);
	if (rv == 0)
		rv = cm_client__path(to, &r.path2);
	return rv ? rv : sync_write(c, &r, attr);
}

/* ---- status ---- */

void cm_status_free(struct cm_node_status *st)
{
	if (st == NULL)
		return;
	for (uint32_t k = 0; k < st->n_groups; k++)
		free(st->groups[k].prefix);
	free(st->groups);
	free(st);
}

static int copy_group(struct cm_group_info *d, const struct cm_group_status *g)
{
	d->group = g->group;
	d->role = g->role;
	d->term = g->term;
	d->leader = g->leader;
	d->commit = g->commit;
	d->applied = g->applied;
	d->last = g->last;
	d->snap_index = g->snap_index;
	d->n_members = g->n_members;
	memcpy(d->members, g->members, sizeof(d->members));
	memcpy(d->kinds, g->kinds, sizeof(d->kinds));
	memcpy(d->match, g->match, sizeof(d->match));
	d->conf_pending = g->conf_pending;
	d->prefix = malloc((size_t)g->prefix.len + 1);
	if (d->prefix == NULL)
		return -ENOMEM;
	if (g->prefix.len > 0)
		memcpy(d->prefix, g->prefix.p, g->prefix.len);
	d->prefix[g->prefix.len] = '\0';
	return 0;
}

static int copy_status(struct cm_client__call *s, const struct cm_resp *resp)
{
	struct cm_node_status *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return -ENOMEM;
	st->node_id = resp->node_id;
	if (resp->has_health && resp->health != NULL) {
		st->has_health = true;
		st->health = *resp->health;
	}
	if (resp->n_groups > 0) {
		st->groups = calloc(resp->n_groups, sizeof(*st->groups));
		if (st->groups == NULL) {
			free(st);
			return -ENOMEM;
		}
	}
	for (uint32_t k = 0; k < resp->n_groups; k++, st->n_groups++) {
		if (copy_group(&st->groups[k], &resp->groups[k]) != 0) {
			cm_status_free(st);
			return -ENOMEM;
		}
	}
	*(struct cm_node_status **)s->out = st;
	return 0;
}

int cm_status(struct cm_client *c, const char *server, struct cm_node_status **out)
{
	if (server == NULL || out == NULL)
		return -EINVAL;
	*out = NULL;
	struct cm_req r = {.op = CM_OP_STATUS, .consistency = CM_READ_FOLLOWER};
	struct cm_client__call s = {.copy = copy_status, .out = out};
	return cm_client__run(c, server, &r, &s);
}

/* ---- watch ---- */

struct sync_watch {
	struct cm_ac *ac;
	cm_watch_fn fn;
	void *arg;
	uint64_t id;
	bool done;
	int result;
};

static void sync_event(void *arg, int err, const struct cm_event *ev)
{
	struct sync_watch *sw = arg;
	if (sw->done)
		return;
	if (err != 0) {
		sw->done = true;
		sw->result = err;
		return;
	}
	int rv = sw->fn(sw->arg, ev);
	if (rv != 0) {
		sw->done = true;
		sw->result = rv;
		cm_ac_unwatch(sw->ac, sw->id);
	}
}

int cm_watch(struct cm_client *c, const char *prefix, uint64_t from_index, cm_watch_fn fn,
	     void *arg)
{
	if (fn == NULL)
		return -EINVAL;
	struct sync_watch sw = {.ac = c->ac, .fn = fn, .arg = arg};
	cm_client__catch_up(c);
	int rv = cm_ac_watch(c->ac, prefix, from_index, sync_event, &sw, &sw.id);
	if (rv != 0)
		return rv;
	while (!sw.done)
		uv_run(&c->loop, UV_RUN_ONCE);
	return sw.result;
}
