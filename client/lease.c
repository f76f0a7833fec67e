/* lease.c: the blocking API for leases and locks (CM_OP_LEASE, CM_OP_LOCK). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "client/client_int.h"

#define LOCK_FLAGS (CM_LOCK_SHARED | CM_LOCK_WAIT)
/* The codec reads CM_SET_TIMES and CM_PUT_IF_MOD whatever the op: no lock
 * or lease flag may look like them. */
_Static_assert(((CM_LOCK_ACQUIRE | CM_LOCK_RELEASE | CM_LOCK_QUERY | LOCK_FLAGS) &
		(CM_SET_TIMES | CM_PUT_IF_MOD)) == 0, "lock flags clash with PUT's");
_Static_assert(((unsigned)CM_LEASE_EXPIRE & (CM_SET_TIMES | CM_PUT_IF_MOD)) == 0,
	       "lease ops clash with PUT's flags");
#define QUEUED_RETRY_MS 100 /* a waiter the leader could not park asks again */
#define GRANT_TRIES 4 /* random ids drawn (EEXIST) or grants sent again (unknown outcome) */

static int lease_req(const char *path, uint8_t op, uint32_t flags, struct cm_req *r)
{
	*r = (struct cm_req){.op = op, .flags = flags};
	return cm_client__path(path ? path : "/", &r->path);
}

static bool id_ok(uint64_t id)
{
	return id != 0 && id <= (uint64_t)CM_LEASE_ID_MAX;
}

int cm_lease_req(struct cm_req *r, const char *path, uint32_t op, uint64_t id, uint32_t ttl_ms)
{
	if (r == NULL || op < CM_LEASE_GRANT || op > CM_LEASE_LIST)
		return -EINVAL;
	if (op == CM_LEASE_GRANT &&
	    (ttl_ms < CM_LEASE_TTL_MIN_MS || ttl_ms > CM_LEASE_TTL_MAX_MS))
		return -EINVAL;
	if (op != CM_LEASE_LIST && !id_ok(id))
		return -EINVAL;
	int rv = lease_req(path, CM_OP_LEASE, op, r);
	r->version = op == CM_LEASE_LIST ? 0 : id;
	r->from_index = op == CM_LEASE_GRANT ? ttl_ms : 0;
	return rv;
}

int cm_lock_req(struct cm_req *r, const char *path, uint32_t flags, uint64_t lease,
		uint64_t owner)
{
	uint32_t op = flags & (CM_LOCK_ACQUIRE | CM_LOCK_RELEASE | CM_LOCK_QUERY);
	bool one_op = op == CM_LOCK_ACQUIRE || op == CM_LOCK_RELEASE || op == CM_LOCK_QUERY;
	uint32_t extra = op == CM_LOCK_ACQUIRE ? (uint32_t)LOCK_FLAGS : 0;
	if (r == NULL || path == NULL || !one_op || (flags & ~(op | extra)) ||
	    (op != CM_LOCK_QUERY && !id_ok(lease)))
		return -EINVAL;
	int rv = lease_req(path, CM_OP_LOCK, flags, r);
	r->version = op == CM_LOCK_QUERY ? 0 : lease;
	r->from_index = op == CM_LOCK_QUERY ? 0 : owner;
	return rv;
}

void cm_lease_info_of(const struct cm_resp *resp, struct cm_lease_info *info)
{
	if (info == NULL)
		return;
	const struct cm_attr *a = &resp->attr;
	*info = (struct cm_lease_info){.id = a->version,
				       .ttl_ms = (uint32_t)a->mtime_ns,
				       .left_ms = a->atime_ns,
				       .n_keys = a->size,
				       .granted_index = a->mod_index};
}

static void info_from(struct cm_lease_info *info, const struct cm_attr *a)
{
	struct cm_resp resp = {.attr = *a};
	cm_lease_info_of(&resp, info);
}

static int take_text(struct cm_client__call *s, const struct cm_resp *resp)
{
	char *t = malloc((size_t)resp->value.len + 1);
	if (t == NULL)
		return -ENOMEM;
	if (resp->value.len > 0)
		memcpy(t, resp->value.p, resp->value.len);
	t[resp->value.len] = '\0';
	*(char **)s->out = t;
	return 0;
}

/* One request; attr and text (may be NULL) filled from the answer. */
static int call(struct cm_client *c, const struct cm_req *r, struct cm_attr *attr, char **text)
{
	struct cm_client__call s = {.attr = attr, .copy = text ? take_text : NULL, .out = text};
	if (text)
		*text = NULL;
	return cm_client__run(c, NULL, r, &s);
}

/* An outcome the server never decided: the same request may be sent again. */
static bool unknown_outcome(int err)
{
	return err == -EIO || err == -ETIMEDOUT;
}

/* A request that may not go again by itself (GRANT, REVOKE, RELEASE): sent
 * once more after an unknown outcome; then `again` (EEXIST, ENOENT), which
 * the first one's success would cause, counts as done. */
static int call_once_more(struct cm_client *c, const struct cm_req *r, int again)
{
	struct cm_attr a;
	int rv = call(c, r, &a, NULL);
	if (!unknown_outcome(rv))
		return rv;
	rv = call(c, r, &a, NULL);
	return rv == again ? 0 : rv;
}

static int random_id(uint64_t *id)
{
	uint64_t x = 0;
	while (x == 0) {
		if (getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x))
			return -errno;
		x &= (uint64_t)CM_LEASE_ID_MAX;
	}
	*id = x;
	return 0;
}

int cm_lease_grant(struct cm_client *c, const char *path, uint32_t ttl_ms, uint64_t *id)
{
	if (c == NULL || id == NULL || *id > (uint64_t)CM_LEASE_ID_MAX ||
	    ttl_ms < CM_LEASE_TTL_MIN_MS || ttl_ms > CM_LEASE_TTL_MAX_MS)
		return -EINVAL;
	struct cm_req r;
	int rv = cm_lease_req(&r, path, CM_LEASE_GRANT, *id ? *id : 1, ttl_ms);
	if (rv != 0)
		return rv;
	bool chosen = *id != 0;
	for (int k = 0; k < GRANT_TRIES; k++) {
		if (!chosen && (rv = random_id(&r.version)) != 0)
			return rv;
		if (chosen)
			r.version = *id;
		/* An id of our own choosing: a second EEXIST is the first grant. */
		rv = chosen ? call(c, &r, NULL, NULL) : call_once_more(c, &r, -EEXIST);
		if (rv == 0)
			*id = r.version;
		if (rv != -EEXIST || chosen)
			return rv;
	}
	return -EEXIST;
}

int cm_lease_keepalive(struct cm_client *c, const char *path, uint64_t id,
		       struct cm_lease_info *info)
{
	struct cm_req r;
	int rv = cm_lease_req(&r, path, CM_LEASE_KEEPALIVE, id, 0);
	if (rv != 0 || c == NULL)
		return rv ? rv : -EINVAL;
	struct cm_attr a;
	rv = call(c, &r, &a, NULL);
	if (rv == 0)
		info_from(info, &a);
	return rv;
}

int cm_lease_revoke(struct cm_client *c, const char *path, uint64_t id)
{
	struct cm_req r;
	int rv = cm_lease_req(&r, path, CM_LEASE_REVOKE, id, 0);
	if (rv != 0 || c == NULL)
		return rv ? rv : -EINVAL;
	return call_once_more(c, &r, -ENOENT);
}

int cm_lease_ttl(struct cm_client *c, const char *path, uint64_t id, struct cm_lease_info *info,
		 char **keys)
{
	struct cm_req r;
	int rv = cm_lease_req(&r, path, CM_LEASE_TTL, id, 0);
	if (rv != 0 || c == NULL)
		return rv ? rv : -EINVAL;
	struct cm_attr a;
	char *text = NULL;
	rv = call(c, &r, &a, &text);
	if (rv != 0)
		return rv;
	info_from(info, &a);
	if (keys)
		*keys = text;
	else
		free(text);
	return 0;
}

/* Count the non-empty lines of text. */
static uint32_t count_lines(const char *text)
{
	uint32_t n = 0;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		n += len > 0;
		p += len + (nl != NULL);
	}
	return n;
}

/* "ID TTL_MS LEFT_MS KEYS" */
static int parse_lease_line(const char *line, struct cm_lease_info *l)
{
	uint64_t id, keys;
	uint32_t ttl;
	int64_t left;
	int used = 0;
	if (sscanf(line, "%" SCNu64 " %" SCNu32 " %" SCNd64 " %" SCNu64 "%n", &id, &ttl, &left,
		   &keys, &used) != 4)
		return -EBADMSG;
	if (line[used] != '\n' && line[used] != '\0')
		return -EBADMSG;
	*l = (struct cm_lease_info){.id = id, .ttl_ms = ttl, .left_ms = left,
				    .n_keys = (uint32_t)keys};
	return 0;
}

/* "LEASE OWNER TOKEN MODE" */
static int parse_holder_line(const char *line, struct cm_lock_holder *h)
{
	char mode[2];
	int used = 0;
	if (sscanf(line, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %1[xs]%n", &h->lease, &h->owner,
		   &h->token, mode, &used) != 4)
		return -EBADMSG;
	if (line[used] != '\n' && line[used] != '\0')
		return -EBADMSG;
	h->shared = mode[0] == 's';
	return 0;
}

/* Parse text's lines into a malloc'd array of elements of size sz. */
static int parse_lines(const char *text, size_t sz, int (*one)(const char *line, void *el),
		       void **out, uint32_t *n)
{
	uint32_t cap = count_lines(text), k = 0;
	char *arr = cap ? calloc(cap, sz) : NULL;
	if (cap && arr == NULL)
		return -ENOMEM;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > 0 && one(p, arr + (size_t)k++ * sz) != 0) {
			free(arr);
			return -EBADMSG;
		}
		p += len + (nl != NULL);
	}
	assert(k == cap);
	*out = arr;
	*n = k;
	return 0;
}

static int lease_line(const char *line, void *el)
{
	return parse_lease_line(line, el);
}

static int holder_line(const char *line, void *el)
{
	return parse_holder_line(line, el);
}

int cm_lease_list(struct cm_client *c, const char *path, struct cm_lease_info **out,
		  uint32_t *n)
{
	struct cm_req r;
	int rv = cm_lease_req(&r, path, CM_LEASE_LIST, 0, 0);
	if (rv != 0 || c == NULL || out == NULL || n == NULL)
		return rv ? rv : -EINVAL;
	*out = NULL;
	*n = 0;
	char *text;
	if ((rv = call(c, &r, NULL, &text)) != 0)
		return rv;
	rv = parse_lines(text, sizeof(**out), lease_line, (void **)out, n);
	free(text);
	return rv;
}

int cm_lock_holders_parse(const struct cm_resp *resp, struct cm_lock_holder **out, uint32_t *n)
{
	if (resp == NULL || out == NULL || n == NULL)
		return -EINVAL;
	*out = NULL;
	*n = 0;
	char *text = malloc((size_t)resp->value.len + 1);
	if (text == NULL)
		return -ENOMEM;
	if (resp->value.len > 0)
		memcpy(text, resp->value.p, resp->value.len);
	text[resp->value.len] = '\0';
	int rv = parse_lines(text, sizeof(**out), holder_line, (void **)out, n);
	free(text);
	return rv;
}

int cm_lock_query(struct cm_client *c, const char *path, struct cm_lock_holder **out,
		  uint32_t *n)
{
	struct cm_req r;
	int rv = cm_lock_req(&r, path, CM_LOCK_QUERY, 0, 0);
	if (rv != 0 || c == NULL || out == NULL || n == NULL)
		return rv ? rv : -EINVAL;
	*out = NULL;
	*n = 0;
	char *text;
	if ((rv = call(c, &r, NULL, &text)) != 0)
		return rv;
	rv = parse_lines(text, sizeof(**out), holder_line, (void **)out, n);
	free(text);
	return rv;
}

int cm_lock_release(struct cm_client *c, const char *path, uint64_t lease, uint64_t owner)
{
	struct cm_req r;
	int rv = cm_lock_req(&r, path, CM_LOCK_RELEASE, lease, owner);
	if (rv != 0 || c == NULL)
		return rv ? rv : -EINVAL;
	return call_once_more(c, &r, -ENOENT);
}

/* ---- acquiring, with a wait that outlives any one request ---- */

/* One ACQUIRE in flight; heap-allocated, because a wait that ends first
 * leaves it behind: its completion, which the core always calls, frees it. */
struct acq {
	bool done, abandoned;
	int err;
	uint64_t token;
};

static void acq_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct acq *a = arg;
	if (a->abandoned) {
		free(a);
		return;
	}
	a->done = true;
	a->err = err;
	if (err == 0 && resp != NULL)
		a->token = resp->attr.version;
}

static void wait_timer_cb(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

static void timer_closed(uv_handle_t *h)
{
	*(bool *)h->data = true;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Run the loop until a is answered or the monotonic time until_ms passes
 * (0: no limit). Returns whether it was answered. */
static bool acq_run(struct cm_client *c, struct acq *a, uint64_t until_ms)
{
	if (until_ms == 0) {
		while (!a->done)
			uv_run(&c->loop, UV_RUN_ONCE);
		return true;
	}
	uint64_t now = mono_ms();
	bool fired = now >= until_ms, closed = false;
	uv_timer_t t;
	uv_timer_init(&c->loop, &t);
	t.data = &fired;
	uv_timer_start(&t, wait_timer_cb, fired ? 0 : until_ms - now, 0);
	while (!a->done && !fired)
		uv_run(&c->loop, UV_RUN_ONCE);
	t.data = &closed;
	uv_close((uv_handle_t *)&t, timer_closed);
	while (!closed)
		uv_run(&c->loop, UV_RUN_ONCE);
	return a->done;
}

static void pause_ms(uint32_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

bool cm_lock_again(int err)
{
	switch (err) {
	case -ETIMEDOUT: case -EIO: case -ECONNREFUSED: case -ECONNRESET:
	case CM_ENOTLEADER: case CM_ENOLEADER: case CM_ETRANSFERRING: case CM_ESTALE:
	case CM_ESHUTDOWN:
		return true;
	default:
		return false;
	}
}

/* The wait ran out: leave the queue (or give back a hold granted just now). */
static int acquire_give_up(struct cm_client *c, const struct cm_req *r)
{
	int rv = cm_lock_release(c, r->path.p, r->version, r->from_index);
	return rv == 0 || rv == -ENOENT ? -EWOULDBLOCK : rv;
}

int cm_lock_acquire(struct cm_client *c, const char *path, uint64_t lease, uint64_t owner,
		    uint32_t flags, uint32_t wait_ms, uint64_t *token)
{
	struct cm_req r;
	int rv = cm_lock_req(&r, path, CM_LOCK_ACQUIRE | flags, lease, owner);
	if (rv != 0 || c == NULL || token == NULL || (flags & ~(uint32_t)LOCK_FLAGS))
		return rv ? rv : -EINVAL;
	bool wait = flags & CM_LOCK_WAIT;
	uint64_t until = wait && wait_ms ? mono_ms() + wait_ms : 0;
	for (;;) {
		struct acq *a = calloc(1, sizeof(*a));
		if (a == NULL)
			return -ENOMEM;
		cm_client__catch_up(c);
		if ((rv = cm_ac_submit(c->ac, &r, acq_cb, a)) != 0) {
			free(a);
			return rv;
		}
		if (!acq_run(c, a, until)) {
			a->abandoned = true; /* acq_cb frees it */
			return acquire_give_up(c, &r);
		}
		rv = a->err;
		*token = a->token;
		free(a);
		/* Token 0: queued, but the leader could not keep the request
		 * waiting (its table of waiters was full): ask again soon. */
		bool queued = rv == 0 && *token == 0 && wait;
		if ((rv == 0 && !queued) || !wait || (!queued && !cm_lock_again(rv)))
			return rv;
		if (until != 0 && mono_ms() >= until)
			return acquire_give_up(c, &r);
		if (queued)
			pause_ms(QUEUED_RETRY_MS);
	}
}
