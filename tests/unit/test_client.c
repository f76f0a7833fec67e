/* test_client.c: the client library (client/) against fake servers on loopback. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <uv.h>

#include "client/client_int.h" /* the per-server in-flight counts */
#include "common/codec.h"
#include "confman/client.h"

/*
 * A fake server speaks the protocol on 127.0.0.1 from the same loop as the
 * client (or from its own thread for the blocking API). It answers the
 * handshake, the client's own STATUS requests and SHARDS (from the map the
 * test gave it, empty by default) itself, and hands every other request to
 * the test's handler, after recording it.
 */

#define MAX_SEEN 256

struct seen {
	uint8_t op;
	uint8_t consistency;
	uint64_t id, group, token, from_index, version;
	uint32_t flags;
	uint32_t path_len, path2_len; /* whole lengths: path keeps only 63 bytes */
	char path[64];
	char value[64];
	struct fake_conn *conn;
};

#define MAP_MAX 4

/* The shard registry a fake answers SHARDS with. */
struct fake_map {
	uint64_t epoch;
	uint32_t n_shards, n_nodes;
	struct cm_shard shards[MAP_MAX];
	struct cm_node_addr nodes[MAP_MAX];
	char addrs[MAP_MAX][32];
};

struct fake;
typedef void (*fake_handler)(struct fake *f, struct fake_conn *c, const struct cm_req *r);

struct fake_conn {
	struct fake *f;
	uv_tcp_t tcp;
	struct cm_framer fr;
	bool closing;
	struct fake_conn *next;
	char buf[65536];
};

struct fake {
	uv_loop_t *loop;
	uv_tcp_t listener;
	bool listening;
	int port;
	char addr[32];
	fake_handler handler;
	bool own_status;        /* the handler answers STATUS too */
	bool quiet_status;      /* h_member: STATUS lists no group (no leader learned) */
	uint64_t node_id;       /* said in HELLO_OK; 0 means 9 */
	struct fake_map map;    /* answers SHARDS */
	int shards_asked;       /* SHARDS requests answered */
	bool mute_shards;       /* leave SHARDS unanswered: the client has no map */
	int reject_hello;       /* error to answer HELLO with, 0 to accept */
	int mute_hellos;        /* leave this many HELLOs unanswered */
	char hello_cluster[64]; /* last cluster id presented */
	int hellos;
	struct fake_conn *conns;
	struct seen seen[MAX_SEEN];
	int n_seen;
	void *user;
};

/* ---- the fake server ---- */

static void fconn_closed(uv_handle_t *h)
{
	struct fake_conn *c = h->data;
	cm_framer_free(&c->fr);
	free(c);
}

static void fconn_close(struct fake_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	for (struct fake_conn **p = &c->f->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	uv_close((uv_handle_t *)&c->tcp, fconn_closed);
}

static void fwrite_done(uv_write_t *w, int status)
{
	(void)status;
	free(w->data);
	free(w);
}

static void fsend(struct fake_conn *c, msgpack_sbuffer *sb)
{
	if (c->closing) {
		msgpack_sbuffer_destroy(sb);
		return;
	}
	uv_write_t *w = malloc(sizeof(*w));
	w->data = sb->data; /* freed when written */
	uv_buf_t b = uv_buf_init(sb->data, (unsigned)sb->size);
	assert_int_equal(uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, fwrite_done), 0);
	msgpack_sbuffer_init(sb);
}

static struct cm_attr attr_v(uint64_t version, uint32_t size)
{
	return (struct cm_attr){.mode = 0100644, .version = version, .mod_index = version,
				.create_index = 1, .size = size};
}

/* Answer request id: a value for GET, an attr for the other ops. */
static void freply(struct fake_conn *c, uint64_t id, uint8_t op, int err, uint64_t group,
		   uint64_t token, const char *value)
{
	struct cm_resp r = {.id = id, .op = op, .err = err, .group = group, .token = token};
	if (err == 0 && op != CM_OP_DELETE && op != CM_OP_WATCH && op != CM_OP_UNWATCH) {
		r.has_attr = true;
		r.attr = attr_v(3, value ? (uint32_t)strlen(value) : 0);
	}
	if (value)
		r.value = (struct cm_bytes){value, (uint32_t)strlen(value)};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_resp(&sb, &r), 0);
	fsend(c, &sb);
}

static void freply_redirect(struct fake_conn *c, uint64_t id, uint8_t op, const char *addr)
{
	struct cm_resp r = {.id = id, .op = op, .err = CM_ENOTLEADER, .group = 1, .token = 1,
			    .leader_id = 2, .leader_addr = {addr, (uint32_t)strlen(addr)}};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_resp(&sb, &r), 0);
	fsend(c, &sb);
}

static void fevent_g(struct fake_conn *c, uint64_t watch_id, uint64_t group, uint64_t index,
		     uint8_t kind, const char *path)
{
	struct cm_event e = {.watch_id = watch_id, .group = group, .index = index, .kind = kind,
			     .path = {path, (uint32_t)strlen(path)}};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_event(&sb, &e), 0);
	fsend(c, &sb);
}

static void fevent(struct fake_conn *c, uint64_t watch_id, uint64_t index, uint8_t kind,
		   const char *path)
{
	struct cm_event e = {.watch_id = watch_id, .group = 1, .index = index, .kind = kind,
			     .path = {path, (uint32_t)strlen(path)}};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_event(&sb, &e), 0);
	fsend(c, &sb);
}

static void fhello(struct fake *f, struct fake_conn *c, const struct cm_hello *h)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	f->hellos++;
	snprintf(f->hello_cluster, sizeof(f->hello_cluster), "%.*s", (int)h->cluster.len,
		 h->cluster.p);
	assert_int_equal(h->version, CM_PROTO_VERSION);
	assert_int_equal(h->node_id, 0);
	if (f->mute_hellos > 0) {
		f->mute_hellos--;
		msgpack_sbuffer_destroy(&sb);
		return;
	}
	if (f->reject_hello) {
		assert_int_equal(cm_codec_error(&sb, f->reject_hello, "wrong cluster"), 0);
		fsend(c, &sb);
		fconn_close(c);
		return;
	}
	struct cm_hello ok = {.version = CM_PROTO_VERSION, .cluster = h->cluster,
			      .node_id = f->node_id ? f->node_id : 9};
	assert_int_equal(cm_codec_hello(&sb, CM_FR_HELLO_OK, &ok), 0);
	fsend(c, &sb);
}

static void fstatus(struct fake_conn *c, uint64_t id)
{
	struct cm_resp r = {.id = id, .op = CM_OP_STATUS, .node_id = 9};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_resp(&sb, &r), 0);
	fsend(c, &sb);
}

static void fshards(struct fake *f, struct fake_conn *c, uint64_t id)
{
	struct cm_resp r = {.id = id, .op = CM_OP_SHARDS, .epoch = f->map.epoch,
			    .shards = f->map.shards, .n_shards = f->map.n_shards,
			    .nodes = f->map.nodes, .n_nodes = f->map.n_nodes};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_resp(&sb, &r), 0);
	f->shards_asked++; /* before the answer: a test thread may read it then */
	fsend(c, &sb);
}

/* Add a shard to m: prefix (a string literal) on replicas. */
static void map_shard(struct fake_map *m, uint64_t group, const char *prefix, uint64_t r1,
		      uint64_t r2)
{
	assert_true(m->n_shards < MAP_MAX);
	struct cm_shard *sh = &m->shards[m->n_shards++];
	*sh = (struct cm_shard){.group = group, .prefix = {prefix, (uint32_t)strlen(prefix)},
				.n_replicas = r2 ? 2 : 1, .replicas = {r1, r2}};
}

static void map_node(struct fake_map *m, uint64_t id, const char *addr)
{
	assert_true(m->n_nodes < MAP_MAX);
	uint32_t k = m->n_nodes++;
	snprintf(m->addrs[k], sizeof(m->addrs[k]), "%s", addr);
	/* SHARDS decoders refuse a node table state other than active or
	 * removed (since the node table): a fake's map says active. */
	m->nodes[k] = (struct cm_node_addr){.id = id,
					    .addr = {m->addrs[k], (uint32_t)strlen(addr)},
					    .state = CM_NODE_ACTIVE};
}

static void frecord(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	assert_true(f->n_seen < MAX_SEEN);
	struct seen *s = &f->seen[f->n_seen++];
	*s = (struct seen){.op = r->op, .consistency = r->consistency, .id = r->id,
			   .group = r->group, .token = r->token,
			   .from_index = r->from_index, .version = r->version,
			   .flags = r->flags, .path_len = r->path.len,
			   .path2_len = r->path2.len, .conn = c};
	snprintf(s->path, sizeof(s->path), "%.*s", (int)r->path.len, r->path.p);
	snprintf(s->value, sizeof(s->value), "%.*s", (int)r->value.len, r->value.p);
}

static void fframe(struct fake *f, struct fake_conn *c, const struct cm_msg *m)
{
	if (m->type == CM_FR_HELLO) {
		fhello(f, c, &m->hello);
		return;
	}
	assert_int_equal(m->type, CM_FR_REQ);
	if (m->req.op == CM_OP_STATUS && !f->own_status) {
		fstatus(c, m->req.id);
		return;
	}
	if (m->req.op == CM_OP_SHARDS) {
		if (!f->mute_shards)
			fshards(f, c, m->req.id);
		return;
	}
	frecord(f, c, &m->req);
	if (f->handler)
		f->handler(f, c, &m->req);
}

static void falloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct fake_conn *c = h->data;
	(void)hint;
	*b = uv_buf_init(c->buf, sizeof(c->buf));
}

static void fread_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct fake_conn *c = s->data;
	if (n < 0) {
		fconn_close(c);
		return;
	}
	assert_int_equal(cm_framer_feed(&c->fr, b->base, (size_t)n), 0);
	const char *body;
	size_t len;
	while (!c->closing && cm_framer_next(&c->fr, &body, &len) == 1) {
		struct cm_msg m;
		assert_int_equal(cm_codec_decode(body, len, &m), 0);
		fframe(c->f, c, &m);
		cm_codec_free(&m);
		cm_framer_consume(&c->fr, len);
	}
}

static void faccept(uv_stream_t *l, int status)
{
	struct fake *f = l->data;
	assert_int_equal(status, 0);
	struct fake_conn *c = calloc(1, sizeof(*c));
	c->f = f;
	cm_framer_init(&c->fr, CM_FRAME_MAX);
	uv_tcp_init(f->loop, &c->tcp);
	c->tcp.data = c;
	assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
	uv_tcp_nodelay(&c->tcp, 1); /* as confmand: no answer waits for an ACK */
	c->next = f->conns;
	f->conns = c;
	uv_read_start((uv_stream_t *)&c->tcp, falloc, fread_cb);
}

/* Listen on 127.0.0.1:port (0: any free port). */
static void fake_start(struct fake *f, uv_loop_t *loop, int port, fake_handler h)
{
	f->loop = loop;
	f->handler = h;
	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", port, &sa);
	assert_int_equal(uv_tcp_init(loop, &f->listener), 0);
	f->listener.data = f;
	assert_int_equal(uv_tcp_bind(&f->listener, (const struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 16, faccept), 0);
	struct sockaddr_in got;
	int len = sizeof(got);
	uv_tcp_getsockname(&f->listener, (struct sockaddr *)&got, &len);
	f->port = ntohs(got.sin_port);
	snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%d", f->port);
	f->listening = true;
}

static void fake_stop(struct fake *f)
{
	while (f->conns)
		fconn_close(f->conns);
	if (f->listening)
		uv_close((uv_handle_t *)&f->listener, NULL);
	f->listening = false;
}

/* Requests of op the fake has seen (the client's own STATUS excluded). */
static int fake_count(const struct fake *f, uint8_t op)
{
	int n = 0;
	for (int k = 0; k < f->n_seen; k++)
		n += f->seen[k].op == op;
	return n;
}

/* ---- the client side ---- */

struct done {
	bool fired;
	int calls;
	int err;
	char value[64];
	uint64_t group, token, version;
};

static void done_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct done *d = arg;
	d->fired = true;
	d->calls++;
	d->err = err;
	if (resp) {
		snprintf(d->value, sizeof(d->value), "%.*s", (int)resp->value.len, resp->value.p);
		d->group = resp->group;
		d->token = resp->token;
		d->version = resp->attr.version;
	}
}

static void guard_cb(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

static void stack_closed(uv_handle_t *h)
{
	*(bool *)h->data = true;
}

/* Close a handle that lives on the caller's stack, and wait until libuv is
 * done with it. */
static void close_on_stack(uv_loop_t *loop, uv_handle_t *h)
{
	bool closed = false;
	h->data = &closed;
	uv_close(h, stack_closed);
	while (!closed)
		uv_run(loop, UV_RUN_NOWAIT);
}

/* Run the loop until *flag, failing the test after ms. */
static void run_until(uv_loop_t *loop, const bool *flag, uint64_t ms)
{
	bool expired = false;
	uv_timer_t guard;
	uv_timer_init(loop, &guard);
	guard.data = &expired;
	uv_timer_start(&guard, guard_cb, ms, 0);
	while (!*flag && !expired)
		uv_run(loop, UV_RUN_ONCE);
	close_on_stack(loop, (uv_handle_t *)&guard);
	assert_true(*flag);
}

/* Run the loop for ms, whatever happens. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
	bool flag = false;
	uv_timer_t t;
	uv_timer_init(loop, &t);
	t.data = &flag;
	uv_timer_start(&t, guard_cb, ms, 0);
	while (!flag)
		uv_run(loop, UV_RUN_ONCE);
	close_on_stack(loop, (uv_handle_t *)&t);
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

struct env {
	uv_loop_t loop;
	struct fake f1, f2;
	struct cm_ac *ac;
};

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	uv_loop_init(&e->loop);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;
	if (e->ac) {
		bool closed = false;
		cm_ac_close(e->ac, closed_cb, &closed);
		run_until(&e->loop, &closed, 2000);
	}
	fake_stop(&e->f1);
	fake_stop(&e->f2);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&e->loop), 0); /* every handle closed */
	free(e);
	return 0;
}

static void env_client(struct env *e, const char *servers, uint32_t timeout_ms)
{
	struct cm_client_opts o;
	cm_client_opts_init(&o);
	o.servers = servers;
	o.cluster = "testcl";
	o.timeout_ms = timeout_ms;
	assert_int_equal(cm_ac_new(&e->loop, &o, &e->ac), 0);
}

static struct cm_req req_of(uint8_t op, const char *path)
{
	return (struct cm_req){.op = op, .path = {path, (uint32_t)strlen(path)},
			       .consistency = CM_READ_DEFAULT};
}

static void submit(struct env *e, uint8_t op, const char *path, const char *value,
		   struct done *d)
{
	struct cm_req r = req_of(op, path);
	if (value)
		r.value = (struct cm_bytes){value, (uint32_t)strlen(value)};
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, d), 0);
}

/* ---- handlers ---- */

static void h_get_hello(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)f;
	freply(c, r->id, r->op, 0, 1, 7, "hello");
}

static void h_ok(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)f;
	freply(c, r->id, r->op, 0, 1, 10, r->op == CM_OP_GET ? "v" : NULL);
}

static void h_redirect(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	freply_redirect(c, r->id, r->op, (const char *)f->user);
}

static void h_silent(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)f;
	(void)c;
	(void)r;
}

static void h_close_after_read(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)f;
	(void)r;
	fconn_close(c);
}

static void h_stale(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)f;
	freply(c, r->id, r->op, CM_ESTALE, 1, 1, NULL);
}

/* ---- tests ---- */

static void test_handshake_then_get_answered(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_get_hello);
	env_client(e, e->f1.addr, 2000);
	struct done d = {0};
	submit(e, CM_OP_GET, "/app/key", NULL, &d);
	assert_false(d.fired); /* never from inside cm_ac_submit() */
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, 0);
	assert_string_equal(d.value, "hello");
	assert_int_equal(d.version, 3);
	assert_int_equal(e->f1.hellos, 1);
	assert_string_equal(e->f1.hello_cluster, "testcl");
	assert_int_equal(fake_count(&e->f1, CM_OP_GET), 1);
	assert_string_equal(e->f1.seen[0].path, "/app/key");
	assert_int_equal(e->f1.seen[0].group, 0); /* routed by path */
	assert_int_equal(cm_ac_token(e->ac, 1), 7);
}

static void test_not_leader_redirects_to_named_leader(void **state)
{
	struct env *e = *state;
	fake_start(&e->f2, &e->loop, 0, h_ok);
	fake_start(&e->f1, &e->loop, 0, h_redirect);
	e->f1.user = e->f2.addr;
	env_client(e, e->f1.addr, 2000);
	struct done d = {0};
	submit(e, CM_OP_PUT, "/k", "v1", &d);
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, 0);
	assert_int_equal(fake_count(&e->f1, CM_OP_PUT), 1);
	assert_int_equal(fake_count(&e->f2, CM_OP_PUT), 1);
	/* The leader is remembered: the next write goes straight to it. */
	struct done d2 = {0};
	submit(e, CM_OP_PUT, "/k", "v2", &d2);
	run_until(&e->loop, &d2.fired, 2000);
	assert_int_equal(d2.err, 0);
	assert_int_equal(fake_count(&e->f1, CM_OP_PUT), 1);
	assert_int_equal(fake_count(&e->f2, CM_OP_PUT), 2);
}

static void test_redirect_without_address_is_noleader_then_times_out(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_redirect);
	e->f1.user = ""; /* leader unknown */
	env_client(e, e->f1.addr, 300);
	struct done d = {0};
	submit(e, CM_OP_PUT, "/k", "v", &d);
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, CM_ENOLEADER);
	assert_true(fake_count(&e->f1, CM_OP_PUT) >= 2); /* retried: not applied */
}

struct late_start {
	struct env *e;
	int port;
};

static void start_later(uv_timer_t *t)
{
	struct late_start *ls = t->data;
	fake_start(&ls->e->f1, &ls->e->loop, ls->port, h_ok);
}

static void test_write_retried_after_connection_refused(void **state)
{
	struct env *e = *state;
	/* Find a free port, and leave it closed for a while. */
	fake_start(&e->f1, &e->loop, 0, h_ok);
	int port = e->f1.port;
	char addr[32];
	snprintf(addr, sizeof(addr), "%s", e->f1.addr);
	fake_stop(&e->f1);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	env_client(e, addr, 3000);
	struct done d = {0};
	submit(e, CM_OP_PUT, "/k", "v", &d);
	struct late_start ls = {e, port};
	uv_timer_t t;
	uv_timer_init(&e->loop, &t);
	t.data = &ls;
	uv_timer_start(&t, start_later, 150, 0);
	run_until(&e->loop, &d.fired, 3000);
	close_on_stack(&e->loop, (uv_handle_t *)&t);
	assert_int_equal(d.err, 0);
	assert_int_equal(fake_count(&e->f1, CM_OP_PUT), 1);
}

static void test_refused_everywhere_reports_econnrefused(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_ok);
	char addr[32];
	snprintf(addr, sizeof(addr), "%s", e->f1.addr);
	fake_stop(&e->f1);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	env_client(e, addr, 200);
	struct done d = {0};
	submit(e, CM_OP_GET, "/k", NULL, &d);
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, -ECONNREFUSED);
}

static void test_no_answer_times_out_with_etimedout(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_silent);
	env_client(e, e->f1.addr, 300);
	struct done rd = {0}, wd = {0};
	uint64_t t0 = uv_now(&e->loop);
	submit(e, CM_OP_GET, "/k", NULL, &rd);
	submit(e, CM_OP_PUT, "/k", "v", &wd);
	run_until(&e->loop, &wd.fired, 3000);
	run_until(&e->loop, &rd.fired, 3000);
	uint64_t took = uv_now(&e->loop) - t0;
	assert_int_equal(rd.err, -ETIMEDOUT);
	assert_int_equal(wd.err, -ETIMEDOUT);
	assert_true(took >= 250 && took < 1500);
	assert_int_equal(fake_count(&e->f1, CM_OP_PUT), 1); /* never resent */
	assert_int_equal(rd.calls, 1);
	assert_int_equal(wd.calls, 1);
}

static void test_write_not_retried_after_connection_broke(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_close_after_read);
	env_client(e, e->f1.addr, 2000);
	struct done d = {0};
	submit(e, CM_OP_PUT, "/k", "v", &d);
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, -EIO); /* outcome unknown */
	run_for(&e->loop, 100);
	assert_int_equal(fake_count(&e->f1, CM_OP_PUT), 1);
}

static void test_read_retried_after_connection_broke(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_close_after_read);
	fake_start(&e->f2, &e->loop, 0, h_ok);
	char list[80];
	snprintf(list, sizeof(list), "%s,%s", e->f1.addr, e->f2.addr);
	env_client(e, list, 2000);
	struct done d[4] = {{0}};
	for (int k = 0; k < 4; k++)
		submit(e, CM_OP_GET, "/k", NULL, &d[k]);
	for (int k = 0; k < 4; k++) {
		run_until(&e->loop, &d[k].fired, 2000);
		assert_int_equal(d[k].err, 0);
		assert_string_equal(d[k].value, "v");
	}
}

static void test_stale_replica_read_goes_to_another(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_stale);
	fake_start(&e->f2, &e->loop, 0, h_ok);
	char list[80];
	snprintf(list, sizeof(list), "%s,%s", e->f1.addr, e->f2.addr);
	env_client(e, list, 2000);
	for (int k = 0; k < 3; k++) {
		struct done d = {0};
		submit(e, CM_OP_GET, "/k", NULL, &d);
		run_until(&e->loop, &d.fired, 2000);
		assert_int_equal(d.err, 0);
	}
	assert_true(fake_count(&e->f2, CM_OP_GET) >= 3);
}

/* Answers GET with group 3 and the tokens 10 then 5 then 6. */
static void h_tokens(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	static const uint64_t tokens[] = {10, 5, 6, 6};
	int n = fake_count(f, CM_OP_GET) - 1;
	freply(c, r->id, r->op, 0, 3, tokens[n < 4 ? n : 3], "v");
}

static void test_token_sent_is_highest_seen(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_tokens);
	/* A token goes with its group named: the map says "/" is group 3. */
	e->f1.map.epoch = 1;
	map_node(&e->f1.map, 9, e->f1.addr);
	map_shard(&e->f1.map, 3, "/", 9, 0);
	env_client(e, e->f1.addr, 2000);
	for (int k = 0; k < 4; k++) {
		struct done d = {0};
		submit(e, CM_OP_GET, "/t", NULL, &d);
		run_until(&e->loop, &d.fired, 2000);
		assert_int_equal(d.err, 0);
		if (k == 0)
			run_for(&e->loop, 50); /* the map arrives */
	}
	assert_int_equal(e->f1.shards_asked, 1);
	assert_int_equal(fake_count(&e->f1, CM_OP_GET), 4);
	assert_int_equal(e->f1.seen[0].token, 0);  /* nothing seen yet */
	assert_int_equal(e->f1.seen[1].token, 10);
	assert_int_equal(e->f1.seen[1].group, 3);
	assert_int_equal(e->f1.seen[2].token, 10); /* 5 does not lower it */
	assert_int_equal(e->f1.seen[3].token, 10);
	assert_int_equal(cm_ac_token(e->ac, 3), 10);
}

/* Holds GETs until two arrived, then answers the second first. */
static void h_reorder(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)r;
	if (fake_count(f, CM_OP_GET) < 2)
		return;
	for (int k = 1; k >= 0; k--)
		freply(c, f->seen[k].id, CM_OP_GET, 0, 1, 1, f->seen[k].path + 1);
}

static void test_out_of_order_answers_matched_by_id(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_reorder);
	env_client(e, e->f1.addr, 2000);
	struct done a = {0}, b = {0};
	submit(e, CM_OP_GET, "/A", NULL, &a);
	submit(e, CM_OP_GET, "/B", NULL, &b);
	run_until(&e->loop, &a.fired, 2000);
	run_until(&e->loop, &b.fired, 2000);
	assert_int_equal(a.err, 0);
	assert_int_equal(b.err, 0);
	assert_string_equal(a.value, "A");
	assert_string_equal(b.value, "B");
}

/* Watch: acks with token 20, then sends events 21 and 22. */
static void h_watch(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	if (r->op == CM_OP_UNWATCH)
		return;
	assert_int_equal(r->op, CM_OP_WATCH);
	freply(c, r->id, r->op, 0, 1, 20, NULL);
	if (fake_count(f, CM_OP_WATCH) == 1) {
		fevent(c, r->id, 21, CM_EV_PUT, "/w/x");
		fevent(c, r->id + 1000, 21, CM_EV_PUT, "/w/other"); /* no such watch */
		fevent(c, r->id, 22, CM_EV_DELETE, "/w/x");
	} else {
		fevent(c, r->id, r->from_index, CM_EV_MKDIR, "/w/d");
	}
}

struct events {
	int n;
	uint64_t index[8];
	uint8_t kind[8];
	int final_err;
	bool ended;
};

static void event_cb(void *arg, int err, const struct cm_event *ev)
{
	struct events *evs = arg;
	if (err) {
		evs->ended = true;
		evs->final_err = err;
		return;
	}
	assert_true(evs->n < 8);
	evs->index[evs->n] = ev->index;
	evs->kind[evs->n++] = ev->kind;
}

static bool events_at_least(struct env *e, struct events *evs, int n)
{
	bool got = false;
	for (int k = 0; k < 200 && !got; k++) {
		uv_run(&e->loop, UV_RUN_NOWAIT);
		got = evs->n >= n;
		if (!got)
			run_for(&e->loop, 5);
	}
	return got;
}

static void test_watch_events_delivered_and_resumed(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_watch);
	env_client(e, e->f1.addr, 2000);
	struct events evs = {0};
	uint64_t wid;
	assert_int_equal(cm_ac_watch(e->ac, "/w", 0, event_cb, &evs, &wid), 0);
	assert_true(events_at_least(e, &evs, 2));
	assert_int_equal(evs.n, 2);
	assert_int_equal(evs.index[0], 21);
	assert_int_equal(evs.kind[0], CM_EV_PUT);
	assert_int_equal(evs.index[1], 22);
	assert_int_equal(evs.kind[1], CM_EV_DELETE);
	assert_int_equal(e->f1.seen[0].from_index, 0);
	/* The server drops the connection: the watch resumes after 22. */
	fconn_close(e->f1.conns);
	assert_true(events_at_least(e, &evs, 3));
	assert_int_equal(fake_count(&e->f1, CM_OP_WATCH), 2);
	assert_int_equal(e->f1.seen[1].from_index, 23);
	assert_int_equal(evs.index[2], 23);
	assert_int_equal(evs.kind[2], CM_EV_MKDIR);
	assert_int_equal(cm_ac_unwatch(e->ac, wid), 0);
	assert_int_equal(cm_ac_unwatch(e->ac, wid), -ENOENT);
	run_for(&e->loop, 50);
	assert_int_equal(fake_count(&e->f1, CM_OP_UNWATCH), 1);
	assert_int_equal(e->f1.seen[e->f1.n_seen - 1].version, e->f1.seen[1].id);
	assert_false(evs.ended); /* unwatched: no final call */
}


/* Fan-in: group 1 owns "/", group 2 the nested shard "/app". A WATCH is
 * answered by the group its path routes to (token 20 for group 1, 5 for
 * group 2), then one event of that group. */
static void h_fanin(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)f;
	if (r->op == CM_OP_UNWATCH)
		return;
	assert_int_equal(r->op, CM_OP_WATCH);
	assert_true(r->flags & CM_WATCH_PROGRESS);
	bool app = strncmp(r->path.p, "/app", 4) == 0;
	uint64_t g = app ? 2 : 1;
	uint64_t from = r->from_index ? r->from_index : (app ? 6 : 21);
	freply(c, r->id, r->op, 0, g, from - 1, NULL);
	fevent_g(c, r->id, g, from, CM_EV_PUT, app ? "/app/y" : "/x");
	fevent_g(c, r->id, g, from, CM_EV_PROGRESS, app ? "/app" : "/"); /* not passed on */
}

struct gevents {
	int n;
	uint64_t group[16], index[16];
	uint8_t kind[16];
};

static void gevent_cb(void *arg, int err, const struct cm_event *ev)
{
	struct gevents *g = arg;
	assert_int_equal(err, 0);
	assert_true(g->n < 16);
	g->group[g->n] = ev->group;
	g->index[g->n] = ev->index;
	g->kind[g->n++] = ev->kind;
}

static int gevents_count(const struct gevents *g, uint8_t kind, uint64_t group)
{
	int n = 0;
	for (int k = 0; k < g->n; k++)
		n += g->kind[k] == kind && (group == 0 || g->group[k] == group);
	return n;
}

static void run_until_events(struct env *e, const struct gevents *g, uint8_t kind,
			     uint64_t group, int n, uint64_t ms)
{
	for (uint64_t t = 0; t < ms && gevents_count(g, kind, group) < n; t += 5)
		run_for(&e->loop, 5);
	assert_true(gevents_count(g, kind, group) >= n);
}

static void test_watch_fans_in_nested_shards_with_own_resume_index(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_fanin);
	e->f1.map.epoch = 3;
	map_shard(&e->f1.map, 1, "/", 9, 0);
	map_shard(&e->f1.map, 2, "/app", 9, 0);
	map_node(&e->f1.map, 9, e->f1.addr);
	env_client(e, e->f1.addr, 2000);
	struct gevents g = {0};
	uint64_t wid;
	assert_int_equal(cm_ac_watch_ex(e->ac, "/", 0, CM_AC_WATCH_STATE, gevent_cb, &g, &wid), 0);
	run_until_events(e, &g, CM_EV_PUT, 2, 1, 2000);
	run_until_events(e, &g, CM_EV_PUT, 1, 1, 2000);
	run_until_events(e, &g, CM_EV_LIVE, 0, 1, 2000);
	assert_int_equal(gevents_count(&g, CM_EV_PROGRESS, 0), 0);
	uint64_t last = 0;
	assert_true(cm_ac_watch_covers(e->ac, wid, 1, &last));
	assert_int_equal(last, 21);
	assert_true(cm_ac_watch_covers(e->ac, wid, 2, &last));
	assert_int_equal(last, 6);
	assert_false(cm_ac_watch_covers(e->ac, wid, 3, &last));
	/* The connection drops: each stream resumes from its own group's index
	 * (never one group's index for another). */
	int before = g.n;
	fconn_close(e->f1.conns);
	run_until_events(e, &g, CM_EV_PUT, 1, 2, 2000);
	run_until_events(e, &g, CM_EV_PUT, 2, 2, 2000);
	assert_true(g.n > before);
	assert_true(gevents_count(&g, CM_EV_STALE, 0) >= 1); /* lost, then live again */
	uint64_t from1 = 0, from2 = 0;
	for (int k = 0; k < e->f1.n_seen; k++) {
		const struct seen *s = &e->f1.seen[k];
		if (s->op != CM_OP_WATCH)
			continue;
		if (strcmp(s->path, "/") == 0)
			from1 = s->from_index;
		else if (strcmp(s->path, "/app") == 0)
			from2 = s->from_index;
	}
	assert_int_equal(from1, 22);
	assert_int_equal(from2, 7);
	assert_int_equal(cm_ac_unwatch(e->ac, wid), 0);
}

/* Answers a WATCH and then says nothing at all, like a stopped process
 * whose socket stays open. */
static void h_watch_mute(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)f;
	if (r->op == CM_OP_WATCH)
		freply(c, r->id, r->op, 0, 1, 20, NULL);
}

static void test_silent_watch_stream_is_stale_and_moves(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_watch_mute);
	fake_start(&e->f2, &e->loop, 0, h_watch_mute);
	char servers[80];
	snprintf(servers, sizeof(servers), "%s,%s", e->f1.addr, e->f2.addr);
	struct cm_client_opts o;
	cm_client_opts_init(&o);
	o.servers = servers;
	o.cluster = "testcl";
	o.timeout_ms = 2000;
	o.watch_silence_ms = 100;
	assert_int_equal(cm_ac_new(&e->loop, &o, &e->ac), -EINVAL); /* < 2 heartbeats */
	o.watch_silence_ms = 400;
	assert_int_equal(cm_ac_new(&e->loop, &o, &e->ac), 0);
	struct gevents g = {0};
	uint64_t wid, last;
	assert_int_equal(cm_ac_watch_ex(e->ac, "/", 0, CM_AC_WATCH_STATE, gevent_cb, &g, &wid), 0);
	run_until_events(e, &g, CM_EV_LIVE, 0, 1, 2000);
	assert_true(cm_ac_watch_covers(e->ac, wid, 1, &last));
	assert_int_equal(last, 20);
	struct fake *first = fake_count(&e->f1, CM_OP_WATCH) ? &e->f1 : &e->f2;
	struct fake *other = first == &e->f1 ? &e->f2 : &e->f1;
	/* Silent for 400 ms: stale, UNWATCHed there, subscribed on the other
	 * server from the index after the last one it delivered. */
	run_until_events(e, &g, CM_EV_STALE, 1, 1, 2000);
	assert_true(g.n >= 2 && g.kind[0] == CM_EV_LIVE && g.kind[1] == CM_EV_STALE);
	for (int t = 0; t < 400 && fake_count(other, CM_OP_WATCH) == 0; t += 5)
		run_for(&e->loop, 5);
	assert_int_equal(fake_count(other, CM_OP_WATCH), 1);
	assert_int_equal(other->seen[other->n_seen - 1].from_index, 21);
	for (int t = 0; t < 400 && fake_count(first, CM_OP_UNWATCH) == 0; t += 5)
		run_for(&e->loop, 5);
	assert_int_equal(fake_count(first, CM_OP_UNWATCH), 1);
	run_until_events(e, &g, CM_EV_LIVE, 0, 2, 2000);
	assert_int_equal(cm_ac_unwatch(e->ac, wid), 0);
}

static void test_close_cancels_requests_and_watches(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_silent);
	struct cm_client_opts o;
	cm_client_opts_init(&o);
	o.servers = e->f1.addr;
	o.max_outstanding = 2;
	assert_int_equal(cm_ac_new(&e->loop, &o, &e->ac), 0);
	struct done a = {0}, b = {0}, c = {0};
	submit(e, CM_OP_GET, "/a", NULL, &a);
	submit(e, CM_OP_PUT, "/b", "v", &b);
	struct cm_req r = req_of(CM_OP_GET, "/c");
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &c), -EBUSY);
	struct events evs = {0};
	assert_int_equal(cm_ac_watch(e->ac, "/", 0, event_cb, &evs, NULL), 0);
	run_for(&e->loop, 50);
	bool closed = false;
	cm_ac_close(e->ac, closed_cb, &closed);
	e->ac = NULL;
	assert_int_equal(a.err, -ECANCELED);
	assert_int_equal(b.err, -ECANCELED);
	assert_true(evs.ended);
	assert_int_equal(evs.final_err, -ECANCELED);
	assert_false(c.fired);
	run_until(&e->loop, &closed, 2000);
	assert_int_equal(a.calls + b.calls, 2);
}

static void test_handshake_refused_fails_fast(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_ok);
	e->f1.reject_hello = CM_EUNKNOWNPEER;
	env_client(e, e->f1.addr, 5000);
	struct done d = {0};
	uint64_t t0 = uv_now(&e->loop);
	submit(e, CM_OP_PUT, "/k", "v", &d);
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, CM_EUNKNOWNPEER);
	assert_true(uv_now(&e->loop) - t0 < 1000);
	assert_int_equal(fake_count(&e->f1, CM_OP_PUT), 0);
}

static void test_hung_handshake_reconnects_and_write_goes_through(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_ok);
	e->f1.mute_hellos = 1; /* accepts, then says nothing */
	env_client(e, e->f1.addr, 2000);
	struct done d = {0};
	submit(e, CM_OP_PUT, "/k", "v", &d);
	run_until(&e->loop, &d.fired, 3000);
	assert_int_equal(d.err, 0); /* never sent on the hung connection: safe */
	assert_int_equal(e->f1.hellos, 2);
	assert_int_equal(fake_count(&e->f1, CM_OP_PUT), 1);
}

static void test_bad_arguments_rejected_without_callback(void **state)
{
	struct env *e = *state;
	struct cm_ac *ac;
	struct cm_client_opts o;
	cm_client_opts_init(&o);
	const char *bad[] = {"", "nohost", "h:0", "h:65536", "h:12x", ":7001", "[::1]7001"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		o.servers = bad[k];
		assert_int_equal(cm_ac_new(&e->loop, &o, &ac), -EINVAL);
	}
	o.servers = "localhost:7001, [::1]:7002";
	o.cluster = "a-cluster-id-that-is-far-too-long-to-be-accepted-by-the-protocol!";
	assert_int_equal(cm_ac_new(&e->loop, &o, &ac), -EINVAL);
	o.cluster = NULL;
	env_client(e, o.servers, 1000);
	struct done d = {0};
	const char *paths[] = {"rel", "/a//b", "/a/", "/a/./b", "/..", ""};
	for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
		struct cm_req r = req_of(CM_OP_GET, paths[k]);
		assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d), -EINVAL);
	}
	char longname[300];
	memset(longname, 'x', sizeof(longname));
	longname[0] = '/';
	struct cm_req r = req_of(CM_OP_GET, "/");
	r.path.p = longname;
	r.path.len = sizeof(longname);
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d), -ENAMETOOLONG);
	r = req_of(CM_OP_PUT, "/big");
	r.value.p = longname;
	r.value.len = CM_VALUE_MAX_LIMIT + 1;
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d), -EFBIG);
	r = req_of(CM_OP_WATCH, "/w");
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d), -EINVAL);
	r = req_of(CM_OP_RENAME, "/a");
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d), -EINVAL); /* no target */
	assert_int_equal(cm_ac_watch(e->ac, "w", 0, event_cb, NULL, NULL), -EINVAL);
	run_for(&e->loop, 20);
	assert_false(d.fired);
}

/* ---- limits: PATH_MAX 4096, NAME_MAX 255 (literal: the kernel's) ---- */

/* "/yyy..." of exactly len bytes (a '/' every 200), NUL-terminated. */
static void long_path(char *p, uint32_t len, char c)
{
	for (uint32_t k = 0; k < len; k++)
		p[k] = k % 200 == 0 ? '/' : c;
	p[len] = 0;
}

/* Answers every request; a WATCH also gets one event naming its prefix. */
static void h_echo_watch(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)f;
	if (r->op == CM_OP_UNWATCH)
		return;
	freply(c, r->id, r->op, 0, 1, 10, r->op == CM_OP_GET ? "v" : NULL);
	if (r->op != CM_OP_WATCH)
		return;
	struct cm_event e = {.watch_id = r->id, .group = 1, .index = 11, .kind = CM_EV_RENAME,
			     .path = r->path, .path2 = r->path};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_event(&sb, &e), 0);
	fsend(c, &sb);
}

struct ev_lens {
	int n;
	uint32_t len, len2;
};

static void ev_len_cb(void *arg, int err, const struct cm_event *ev)
{
	struct ev_lens *l = arg;
	if (err)
		return;
	l->n++;
	l->len = ev->path.len;
	l->len2 = ev->path2.len;
}

static void test_paths_up_to_4096_bytes_are_sent_and_4097_refused(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_echo_watch);
	env_client(e, e->f1.addr, 2000);
	static char p[4200], q[4200];
	long_path(p, 4096, 'y');
	long_path(q, 4096, 'z');
	struct done d = {0};
	submit(e, CM_OP_PUT, p, "v", &d);
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, 0);
	struct cm_req r = req_of(CM_OP_RENAME, p);
	r.path2 = (struct cm_bytes){q, 4096};
	memset(&d, 0, sizeof(d));
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d), 0);
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, 0);
	assert_int_equal(fake_count(&e->f1, CM_OP_PUT), 1);
	assert_int_equal(e->f1.seen[0].path_len, 4096);
	assert_int_equal(e->f1.seen[1].path_len, 4096);
	assert_int_equal(e->f1.seen[1].path2_len, 4096);
	/* one byte more: refused before anything is sent */
	long_path(q, 4097, 'z');
	r = req_of(CM_OP_GET, q);
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d), -ENAMETOOLONG);
	r = req_of(CM_OP_RENAME, p);
	r.path2 = (struct cm_bytes){q, 4097};
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d), -ENAMETOOLONG);
	/* names: 255 bytes go, 256 do not */
	char n[260] = "/";
	memset(n + 1, 'n', 256);
	n[257] = 0;
	r = req_of(CM_OP_GET, n);
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d), -ENAMETOOLONG);
	n[256] = 0;
	memset(&d, 0, sizeof(d));
	submit(e, CM_OP_GET, n, NULL, &d);
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, 0);
	/* a watch of a 4096-byte prefix, and its events' 4096-byte paths */
	assert_int_equal(cm_ac_watch(e->ac, q, 0, ev_len_cb, NULL, NULL), -ENAMETOOLONG);
	struct ev_lens l = {0};
	uint64_t wid;
	assert_int_equal(cm_ac_watch(e->ac, p, 0, ev_len_cb, &l, &wid), 0);
	for (int k = 0; k < 200 && l.n == 0; k++)
		run_for(&e->loop, 5);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.len, 4096);
	assert_int_equal(l.len2, 4096);
	assert_int_equal(cm_ac_unwatch(e->ac, wid), 0);
	run_for(&e->loop, 20);
}

/* ---- the shard map ---- */

/* Token a fake answers with for group g: 5 for group 1, 9 for the others. */
static uint64_t token_of(uint64_t g)
{
	return g == 1 ? 5 : 9;
}

/* Answers in the group the request named (1 for "route by path"). */
static void h_in_group(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)f;
	uint64_t g = r->group ? r->group : 1;
	freply(c, r->id, r->op, 0, g, token_of(g), r->op == CM_OP_GET ? "v" : NULL);
}

/* *dst = *src, the node addresses pointing into dst's own copies. */
static void map_copy(struct fake_map *dst, const struct fake_map *src)
{
	*dst = *src;
	for (uint32_t k = 0; k < dst->n_nodes; k++)
		dst->nodes[k].addr.p = dst->addrs[k];
}

/* Two fakes, f1 node 1 and f2 node 2, both knowing both at epoch; no shards yet. */
static void two_nodes(struct env *e, fake_handler h1, fake_handler h2, uint64_t epoch)
{
	fake_start(&e->f1, &e->loop, 0, h1);
	fake_start(&e->f2, &e->loop, 0, h2);
	e->f1.node_id = 1;
	e->f2.node_id = 2;
	e->f1.map.epoch = epoch;
	map_node(&e->f1.map, 1, e->f1.addr);
	map_node(&e->f1.map, 2, e->f2.addr);
	map_copy(&e->f2.map, &e->f1.map);
}

static void get_ok(struct env *e, uint8_t op, const char *path)
{
	struct done d = {0};
	submit(e, op, path, op == CM_OP_PUT ? "x" : NULL, &d);
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, 0);
}

/* The last request f saw. */
static const struct seen *last_seen(const struct fake *f)
{
	assert_true(f->n_seen > 0);
	return &f->seen[f->n_seen - 1];
}

static void test_map_routes_with_owning_group_and_its_token(void **state)
{
	struct env *e = *state;
	two_nodes(e, h_in_group, h_in_group, 3);
	map_shard(&e->f1.map, 1, "/", 1, 0);
	map_shard(&e->f1.map, 2, "/app", 2, 0);
	map_copy(&e->f2.map, &e->f1.map);
	env_client(e, e->f1.addr, 2000); /* f2 is known from the map only */
	/* Before the map arrives the server routes (REQ.group 0). */
	get_ok(e, CM_OP_GET, "/warm");
	assert_int_equal(e->f1.seen[0].group, 0);
	run_for(&e->loop, 50);
	assert_int_equal(e->f1.shards_asked, 1);
	/* /app belongs to group 2, served by node 2 alone. */
	get_ok(e, CM_OP_GET, "/app/x");
	assert_int_equal(e->f2.n_seen, 1);
	assert_string_equal(last_seen(&e->f2)->path, "/app/x");
	assert_int_equal(last_seen(&e->f2)->group, 2);
	assert_int_equal(last_seen(&e->f2)->token, 0); /* group 2's: none yet */
	get_ok(e, CM_OP_GET, "/app/y");
	assert_int_equal(last_seen(&e->f2)->group, 2);
	assert_int_equal(last_seen(&e->f2)->token, 9);
	/* The rest is group 1's, with group 1's token. */
	get_ok(e, CM_OP_GET, "/apple");
	assert_string_equal(last_seen(&e->f1)->path, "/apple");
	assert_int_equal(last_seen(&e->f1)->group, 1);
	assert_int_equal(last_seen(&e->f1)->token, 5);
	/* A write with no leader known goes to a replica of its group. */
	get_ok(e, CM_OP_PUT, "/app/z");
	assert_int_equal(last_seen(&e->f2)->op, CM_OP_PUT);
	assert_int_equal(last_seen(&e->f2)->group, 2);
	assert_int_equal(last_seen(&e->f2)->token, 9);
	assert_int_equal(cm_ac_token(e->ac, 1), 5);
	assert_int_equal(cm_ac_token(e->ac, 2), 9);
	assert_int_equal(e->f1.shards_asked + e->f2.shards_asked, 1); /* no refresh needed */
}

#define SPREAD_N 20

static uint32_t inflight(const struct env *e, uint32_t k)
{
	return e->ac->servers[k].inflight;
}

/* Follower reads go to the least-loaded replica: SPREAD_N reads submitted
 * at once (the replicas hold their answers) split between the two, and
 * the in-flight counts return to zero through timeouts and a dropped
 * connection. The old rule (home, else the first replica) sent them all
 * to one server. */
static void test_follower_reads_spread_to_least_loaded_replica(void **state)
{
	struct env *e = *state;
	two_nodes(e, h_in_group, h_in_group, 3);
	map_shard(&e->f1.map, 1, "/", 1, 2);
	map_copy(&e->f2.map, &e->f1.map);
	char list[80];
	snprintf(list, sizeof(list), "%s,%s", e->f1.addr, e->f2.addr);
	env_client(e, list, 600);
	get_ok(e, CM_OP_GET, "/warm"); /* the map arrives after this */
	run_for(&e->loop, 50);
	int before1 = fake_count(&e->f1, CM_OP_GET), before2 = fake_count(&e->f2, CM_OP_GET);
	e->f1.handler = e->f2.handler = h_silent;
	struct done d[SPREAD_N] = {0};
	for (int k = 0; k < SPREAD_N; k++) {
		struct cm_req r = req_of(CM_OP_GET, "/spread");
		r.consistency = CM_READ_FOLLOWER;
		assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d[k]), 0);
	}
	run_for(&e->loop, 100);
	int got1 = fake_count(&e->f1, CM_OP_GET) - before1;
	int got2 = fake_count(&e->f2, CM_OP_GET) - before2;
	assert_int_equal(got1 + got2, SPREAD_N);
	assert_true(got1 >= SPREAD_N / 2 - 1 && got2 >= SPREAD_N / 2 - 1);
	assert_int_equal(inflight(e, 0) + inflight(e, 1), SPREAD_N);
	/* One replica goes away: its reads move to the other, then all time out. */
	fake_stop(&e->f2);
	run_for(&e->loop, 900);
	for (int k = 0; k < SPREAD_N; k++) {
		assert_int_equal(d[k].calls, 1);
		assert_int_equal(d[k].err, -ETIMEDOUT);
	}
	assert_int_equal(inflight(e, 0), 0);
	assert_int_equal(inflight(e, 1), 0);
}

/* A replica on this machine (same address at both ends) is preferred when
 * the others are not: here the test says so, as a loopback test cannot
 * make a remote one. */
static void test_follower_reads_prefer_a_local_replica(void **state)
{
	struct env *e = *state;
	two_nodes(e, h_in_group, h_in_group, 3);
	map_shard(&e->f1.map, 1, "/", 1, 2);
	map_copy(&e->f2.map, &e->f1.map);
	char list[80];
	snprintf(list, sizeof(list), "%s,%s", e->f1.addr, e->f2.addr);
	env_client(e, list, 2000);
	get_ok(e, CM_OP_GET, "/warm");
	run_for(&e->loop, 50);
	/* Loopback: whichever the client connected to has our address at both ends. */
	assert_true(e->ac->servers[0].local == 1 || e->ac->servers[1].local == 1);
	assert_true(e->ac->servers[0].local != 0 && e->ac->servers[1].local != 0);
	int before2 = fake_count(&e->f2, CM_OP_GET);
	e->ac->servers[0].local = 0; /* f1 "remote", f2 local */
	e->ac->servers[1].local = 1;
	struct done d[6] = {0};
	for (int k = 0; k < 6; k++) {
		struct cm_req r = req_of(CM_OP_GET, "/local");
		r.consistency = CM_READ_FOLLOWER;
		assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, &d[k]), 0);
	}
	for (int k = 0; k < 6; k++)
		run_until(&e->loop, &d[k].fired, 2000);
	assert_int_equal(fake_count(&e->f2, CM_OP_GET) - before2, 6);
	assert_int_equal(inflight(e, 0) + inflight(e, 1), 0);
}

#define NEW_EPOCH 1000

/* Group 1 that gave /app to group 2 at epoch NEW_EPOCH. */
static void h_gave_app(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	if (strncmp(r->path.p, "/app/", 5) == 0 && r->path.len > 5) {
		freply(c, r->id, r->op, CM_EWRONGSHARD, 1, NEW_EPOCH, NULL);
		return;
	}
	h_in_group(f, c, r);
}

static void test_wrongshard_with_newer_epoch_refetches_map_and_retries_on_owner(void **state)
{
	struct env *e = *state;
	two_nodes(e, h_gave_app, h_in_group, 1);
	map_shard(&e->f1.map, 1, "/", 1, 0);
	env_client(e, e->f1.addr, 2000);
	get_ok(e, CM_OP_GET, "/warm");
	run_for(&e->loop, 50);
	assert_int_equal(e->f1.shards_asked, 1);
	/* Meanwhile /app became a shard of its own, on node 2. */
	e->f1.map.epoch = NEW_EPOCH;
	map_shard(&e->f1.map, 2, "/app", 2, 0);
	struct done a = {0}, b = {0}, c = {0};
	submit(e, CM_OP_GET, "/app/a", NULL, &a);
	submit(e, CM_OP_PUT, "/app/b", "v", &b);
	submit(e, CM_OP_GET, "/app/c", NULL, &c);
	run_until(&e->loop, &a.fired, 2000);
	run_until(&e->loop, &b.fired, 2000);
	run_until(&e->loop, &c.fired, 2000);
	assert_int_equal(a.err, 0);
	assert_int_equal(b.err, 0); /* refused, so not applied: retried */
	assert_int_equal(c.err, 0);
	/* Three refusals at one epoch, one fetch, from the server that said so. */
	assert_int_equal(e->f1.shards_asked, 2);
	assert_int_equal(e->f2.shards_asked, 0);
	assert_int_equal(fake_count(&e->f1, CM_OP_PUT), 1);
	assert_int_equal(fake_count(&e->f2, CM_OP_PUT), 1);
	assert_int_equal(fake_count(&e->f2, CM_OP_GET), 2);
	for (int k = 0; k < e->f2.n_seen; k++)
		assert_int_equal(e->f2.seen[k].group, 2);
	for (int k = 1; k < e->f1.n_seen; k++)
		assert_int_equal(e->f1.seen[k].group, 1);
	/* A refusal's token is an epoch, not an index of group 1. */
	assert_int_equal(cm_ac_token(e->ac, 1), 5);
}

/* Refuses everything at the map's epoch: it does not host group 1 (yet). */
static void h_not_hosting(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	freply(c, r->id, r->op, CM_EWRONGSHARD, 1, f->map.epoch, NULL);
}

static void test_wrongshard_at_same_epoch_tries_another_replica_without_refetch(void **state)
{
	struct env *e = *state;
	two_nodes(e, h_not_hosting, h_in_group, 5);
	map_shard(&e->f1.map, 1, "/", 1, 2);
	map_copy(&e->f2.map, &e->f1.map);
	env_client(e, e->f1.addr, 2000);
	for (int k = 0; k < 3; k++)
		get_ok(e, CM_OP_GET, "/k");
	assert_int_equal(fake_count(&e->f2, CM_OP_GET), 3);
	assert_int_equal(e->f2.seen[0].group, 1);
	assert_int_equal(e->f1.shards_asked + e->f2.shards_asked, 1);
}

static void test_wrongshard_until_deadline_reports_ewrongshard(void **state)
{
	struct env *e = *state;
	fake_start(&e->f1, &e->loop, 0, h_not_hosting);
	e->f1.node_id = 1;
	e->f1.map.epoch = 5;
	map_node(&e->f1.map, 1, e->f1.addr);
	map_shard(&e->f1.map, 1, "/", 1, 0);
	env_client(e, e->f1.addr, 300);
	struct done d = {0};
	submit(e, CM_OP_PUT, "/k", "v", &d);
	run_until(&e->loop, &d.fired, 2000);
	assert_int_equal(d.err, CM_EWRONGSHARD); /* never applied, and says why */
	assert_true(fake_count(&e->f1, CM_OP_PUT) >= 2);
	assert_int_equal(e->f1.shards_asked, 1); /* same epoch: nothing to fetch */
}

/* ---- no map yet: tokens go only to their own group ---- */

/*
 * A server of two shards that routes paths itself, as confmand does for
 * REQ.group 0: "/" is group 1 (applied 100), "/s1" group 2, whose leader has
 * applied 3 but whose replica here only 2 (it lags). A follower read waits
 * for its token in the group the path routes to and gives up with STALE; a
 * request naming a group that does not own its path gets WRONGSHARD.
 */
static uint64_t nested_route(const struct cm_req *r)
{
	return strncmp(r->path.p, "/s1", 3) == 0 && (r->path.len == 3 || r->path.p[3] == '/') ? 2
											    : 1;
}

static void h_nested(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	uint64_t g = nested_route(r);
	if (r->group != 0 && r->group != g) {
		freply(c, r->id, r->op, CM_EWRONGSHARD, r->group, f->map.epoch, NULL);
		return;
	}
	uint64_t applied = g == 1 ? 100 : 2;
	if (r->op != CM_OP_GET) {
		freply(c, r->id, r->op, 0, g, g == 1 ? 100 : 3, NULL);
		return;
	}
	if (r->consistency == CM_READ_LINEARIZABLE) {
		freply(c, r->id, r->op, 0, g, g == 1 ? 100 : 3, g == 1 ? "root" : "new");
		return;
	}
	if (r->token > applied) {
		freply(c, r->id, r->op, CM_ESTALE, g, applied, NULL);
		return;
	}
	freply(c, r->id, r->op, 0, g, applied, g == 1 ? "root" : "old");
}

static void nested_client(struct env *e)
{
	fake_start(&e->f1, &e->loop, 0, h_nested);
	e->f1.mute_shards = true; /* the map never comes */
	e->f1.map.epoch = 4;
	env_client(e, e->f1.addr, 1500);
}

static void get_follower(struct env *e, const char *path, struct done *d)
{
	struct cm_req r = req_of(CM_OP_GET, path);
	r.consistency = CM_READ_FOLLOWER;
	assert_int_equal(cm_ac_submit(e->ac, &r, done_cb, d), 0);
	run_until(&e->loop, &d->fired, 3000);
}

/* No request of f's went out with a token and no group: the server would
 * have held it to whichever group it routed the path to. */
static void assert_no_token_without_group(const struct fake *f)
{
	for (int k = 0; k < f->n_seen; k++)
		if (f->seen[k].group == 0)
			assert_int_equal(f->seen[k].token, 0);
}

/* The issue's case: with one group seen, the client took it for the group
 * of every path and sent its token (100) for a path of /s1, whose replica
 * waited for index 100 and answered STALE until the deadline. */
static void test_without_map_a_token_is_not_sent_for_another_shards_path(void **state)
{
	struct env *e = *state;
	nested_client(e);
	get_ok(e, CM_OP_PUT, "/x");
	assert_int_equal(cm_ac_token(e->ac, 1), 100);
	struct done d = {0};
	get_follower(e, "/s1/y", &d);
	assert_int_equal(d.err, 0);
	assert_int_equal(d.group, 2);
	assert_int_equal(fake_count(&e->f1, CM_OP_GET), 1); /* no STALE first */
	assert_no_token_without_group(&e->f1);
	assert_int_equal(e->f1.shards_asked, 0);
}

/* Read-your-writes without a map: the client wrote /s1/w at index 3 of
 * group 2, then learned group 1 too; the follower read of /s1/w must not
 * go without the token that names its write (the lagging replica would
 * answer the value from before it). */
static void test_without_map_a_follower_read_still_reads_its_writes(void **state)
{
	struct env *e = *state;
	nested_client(e);
	get_ok(e, CM_OP_PUT, "/s1/w");
	get_ok(e, CM_OP_PUT, "/x");
	assert_int_equal(cm_ac_token(e->ac, 2), 3);
	struct done d = {0};
	get_follower(e, "/s1/w", &d);
	assert_int_equal(d.err, 0);
	assert_string_equal(d.value, "new");
	assert_no_token_without_group(&e->f1);
	/* A client that has seen nothing has nothing to keep: a follower read. */
	struct done f = {0};
	struct cm_ac *old = e->ac;
	bool closed = false;
	cm_ac_close(old, closed_cb, &closed);
	run_until(&e->loop, &closed, 2000);
	env_client(e, e->f1.addr, 1500);
	get_follower(e, "/s1/w", &f);
	assert_int_equal(f.err, 0);
	assert_int_equal(last_seen(&e->f1)->consistency, CM_READ_FOLLOWER);
}

/* ---- the blocking API, against a fake in its own thread ---- */

struct kv {
	char path[8][64];
	char value[8][64];
	uint64_t version[8];
	int n;
	uint64_t index;
};

static int kv_find(struct kv *kv, const struct cm_bytes *p)
{
	for (int k = 0; k < kv->n; k++)
		if (strlen(kv->path[k]) == p->len && memcmp(kv->path[k], p->p, p->len) == 0)
			return k;
	return -1;
}

static void kv_get(struct kv *kv, struct fake_conn *c, const struct cm_req *r)
{
	int k = kv_find(kv, &r->path);
	if (k < 0) {
		freply(c, r->id, r->op, -ENOENT, 1, kv->index, NULL);
		return;
	}
	struct cm_resp resp = {.id = r->id, .op = r->op, .group = 1, .token = kv->index,
			       .has_attr = true, .attr = attr_v(kv->version[k], 0),
			       .value = {kv->value[k], (uint32_t)strlen(kv->value[k])}};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_resp(&sb, &resp), 0);
	fsend(c, &sb);
}

static void kv_put(struct kv *kv, struct fake_conn *c, const struct cm_req *r)
{
	int k = kv_find(kv, &r->path);
	uint64_t cur = k < 0 ? 0 : kv->version[k];
	if ((r->flags & CM_PUT_IF_VERSION) && r->version != cur) {
		freply(c, r->id, r->op, -ECANCELED, 1, kv->index, NULL);
		return;
	}
	if (k < 0) {
		k = kv->n++;
		snprintf(kv->path[k], 64, "%.*s", (int)r->path.len, r->path.p);
	}
	snprintf(kv->value[k], 64, "%.*s", (int)r->value.len, r->value.p);
	kv->version[k] = cur + 1;
	kv->index++;
	struct cm_resp resp = {.id = r->id, .op = r->op, .group = 1, .token = kv->index,
			       .has_attr = true, .attr = attr_v(cur + 1, r->value.len)};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_resp(&sb, &resp), 0);
	fsend(c, &sb);
}

static void kv_list(struct kv *kv, struct fake_conn *c, const struct cm_req *r)
{
	struct cm_dirent ents[8];
	for (int k = 0; k < kv->n; k++)
		ents[k] = (struct cm_dirent){{kv->path[k] + 1, (uint32_t)strlen(kv->path[k]) - 1},
					     attr_v(kv->version[k], 0)};
	struct cm_resp resp = {.id = r->id, .op = r->op, .group = 1, .token = kv->index,
			       .ents = ents, .n_ents = (uint32_t)kv->n};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_resp(&sb, &resp), 0);
	fsend(c, &sb);
}

static void kv_status(struct fake_conn *c, const struct cm_req *r)
{
	struct cm_group_status g = {.group = 1, .prefix = {"/", 1}, .role = 4, .term = 2,
				    .leader = 9, .commit = 5, .applied = 5, .last = 5,
				    .n_members = 1, .members = {9}};
	struct cm_resp resp = {.id = r->id, .op = r->op, .node_id = 9, .groups = &g,
			       .n_groups = 1};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_resp(&sb, &resp), 0);
	fsend(c, &sb);
}

static void h_kv(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	struct kv *kv = f->user;
	switch (r->op) {
	case CM_OP_GET: kv_get(kv, c, r); return;
	case CM_OP_PUT: kv_put(kv, c, r); return;
	case CM_OP_LIST: kv_list(kv, c, r); return;
	case CM_OP_STATUS: kv_status(c, r); return;
	case CM_OP_MKDIR:
		freply(c, r->id, r->op, kv_find(kv, &r->path) >= 0 ? -EEXIST : 0, 1, ++kv->index,
		       NULL);
		return;
	case CM_OP_SHARD_ADD:
		freply(c, r->id, r->op, 0, CM_META_GROUP, 2, NULL);
		return;
	case CM_OP_DELETE:
		if (kv_find(kv, &r->path) < 0) {
			freply(c, r->id, r->op, -ENOENT, 1, kv->index, NULL);
			return;
		}
		kv->n = 0; /* good enough for one key */
		freply(c, r->id, r->op, 0, 1, ++kv->index, NULL);
		return;
	default:
		freply(c, r->id, r->op, -EINVAL, 1, kv->index, NULL);
	}
}

struct server_thread {
	uv_loop_t loop;
	uv_async_t stop;
	struct fake f;
	struct kv kv;
	pthread_t thread;
	uv_async_t drop; /* close every connection, from the test thread */
	bool dropped;
};

static void on_stop(uv_async_t *a)
{
	struct server_thread *st = a->data;
	fake_stop(&st->f);
	uv_close((uv_handle_t *)a, NULL);
	uv_close((uv_handle_t *)&st->drop, NULL);
}

static void drop_conns(uv_async_t *a)
{
	struct server_thread *st = a->data;
	while (st->f.conns)
		fconn_close(st->f.conns);
	__atomic_store_n(&st->dropped, true, __ATOMIC_RELEASE);
}

static void *serve(void *arg)
{
	struct server_thread *st = arg;
	uv_run(&st->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* A fake on its own loop, listening; server_run() starts its thread. */
static struct server_thread *server_init(fake_handler h, uint64_t node_id)
{
	struct server_thread *st = calloc(1, sizeof(*st));
	uv_loop_init(&st->loop);
	fake_start(&st->f, &st->loop, 0, h);
	st->f.node_id = node_id;
	uv_async_init(&st->loop, &st->stop, on_stop);
	st->stop.data = st;
	uv_async_init(&st->loop, &st->drop, drop_conns);
	st->drop.data = st;
	return st;
}

static void server_run(struct server_thread *st)
{
	pthread_create(&st->thread, NULL, serve, st);
}

/* One node (9) holding "/" (group 1) at epoch 1, with a small kv store. */
static struct server_thread *kv_server_start(void)
{
	struct server_thread *st = server_init(h_kv, 9);
	st->f.user = &st->kv;
	st->f.own_status = true;
	st->f.map.epoch = 1;
	map_shard(&st->f.map, 1, "/", 9, 0);
	map_node(&st->f.map, 9, st->f.addr);
	server_run(st);
	return st;
}

static void kv_server_stop(struct server_thread *st)
{
	uv_async_send(&st->stop);
	pthread_join(st->thread, NULL);
	uv_run(&st->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&st->loop), 0);
	free(st);
}

/* What a server from before 4096-byte paths answers (its limit was 1024):
 * a clear -ENAMETOOLONG, which the client passes on as it is. */
static void h_old_server(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	(void)f;
	bool too_long = r->path.len > 1024 || r->path2.len > 1024;
	freply(c, r->id, r->op, too_long ? -ENAMETOOLONG : 0, 1, 10, NULL);
}

static void test_sync_api_4096_byte_paths_and_an_older_server(void **state)
{
	(void)state;
	static char p[4200];
	for (int old = 0; old < 2; old++) {
		struct server_thread *st = server_init(old ? h_old_server : h_echo_watch, 9);
		st->f.map.epoch = 1;
		map_shard(&st->f.map, 1, "/", 9, 0);
		map_node(&st->f.map, 9, st->f.addr);
		server_run(st);
		struct cm_client_opts o;
		cm_client_opts_init(&o);
		o.servers = st->f.addr;
		o.timeout_ms = 2000;
		struct cm_client *c;
		assert_int_equal(cm_client_open(&o, &c), 0);
		long_path(p, 4096, 'y');
		assert_int_equal(cm_put(c, p, "v", 1, 0, 0, NULL), old ? -ENAMETOOLONG : 0);
		assert_int_equal(cm_mkdir(c, p, 0755, NULL), old ? -ENAMETOOLONG : 0);
		long_path(p, 1024, 'y');
		assert_int_equal(cm_put(c, p, "v", 1, 0, 0, NULL), 0);
		long_path(p, 4097, 'y');
		assert_int_equal(cm_put(c, p, "v", 1, 0, 0, NULL), -ENAMETOOLONG);
		assert_int_equal(cm_get(c, p, NULL, NULL, NULL), -ENAMETOOLONG);
		cm_client_close(c);
		kv_server_stop(st);
	}
}

static void test_sync_api_round_trip(void **state)
{
	(void)state;
	struct server_thread *st = kv_server_start();
	struct cm_client_opts o;
	cm_client_opts_init(&o);
	o.servers = st->f.addr;
	o.timeout_ms = 2000;
	struct cm_client *c;
	assert_int_equal(cm_client_open(&o, &c), 0);
	struct cm_attr a;
	assert_int_equal(cm_put(c, "/cfg", "one", 3, 0, 0, &a), 0);
	assert_int_equal(a.version, 1);
	void *v;
	uint32_t len;
	assert_int_equal(cm_get(c, "/cfg", &v, &len, &a), 0);
	assert_int_equal(len, 3);
	assert_string_equal(v, "one");
	free(v);
	assert_int_equal(cm_put(c, "/cfg", "two", 3, CM_PUT_IF_VERSION, 1, &a), 0);
	assert_int_equal(a.version, 2);
	assert_int_equal(cm_put(c, "/cfg", "three", 5, CM_PUT_IF_VERSION, 1, NULL), -ECANCELED);
	assert_int_equal(cm_put(c, "/cfg", "x", 1, 0x8000, 0, NULL), -EINVAL);
	/* cm_put_ex: refused before anything is sent, then an ordinary write. */
	struct cm_put_args pa = {.flags = CM_PUT_APPEND};
	assert_int_equal(cm_put_ex(c, "/cfg", "x", 1, &pa, NULL), -EINVAL);
	pa = (struct cm_put_args){.flags = CM_SET_MODE, .mode = S_IFDIR | 0755};
	assert_int_equal(cm_put_ex(c, "/cfg", "x", 1, &pa, NULL), -EINVAL);
	pa.mode = 0170000 | 0755; /* no type at all */
	assert_int_equal(cm_put_ex(c, "/cfg", "x", 1, &pa, NULL), -EINVAL);
	assert_int_equal(cm_put_ex(c, "/cfg", "x", 1, NULL, NULL), -EINVAL);
	assert_int_equal(cm_put_ex(c, "cfg", "x", 1, &pa, NULL), -EINVAL);
	pa = (struct cm_put_args){.flags = CM_SET_MODE | CM_SET_TIMES | CM_PUT_IF_VERSION,
				  .if_version = 2, .mode = S_IFREG | 04755, .uid = 7, .gid = 8,
				  .atime_ns = 1, .mtime_ns = 2};
	assert_int_equal(cm_put_ex(c, "/cfg", "four", 4, &pa, &a), 0);
	assert_int_equal(a.version, 3);
	struct cm_list_entry *ents;
	uint32_t n;
	assert_int_equal(cm_list(c, "/", &ents, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ents[0].name, "cfg");
	cm_list_free(ents, n);
	struct cm_node_status *ns;
	assert_int_equal(cm_status(c, st->f.addr, &ns), 0);
	assert_int_equal(ns->node_id, 9);
	assert_int_equal(ns->n_groups, 1);
	assert_string_equal(ns->groups[0].prefix, "/");
	cm_status_free(ns);
	assert_int_equal(cm_delete(c, "/cfg", 0), 0);
	assert_int_equal(cm_get(c, "/cfg", NULL, NULL, NULL), -ENOENT);
	assert_int_equal(cm_get(c, "cfg", NULL, NULL, NULL), -EINVAL);
	assert_int_equal(cm_status(c, "127.0.0.1:1", &ns), -ECONNREFUSED);
	cm_client_close(c);
	kv_server_stop(st);
}

static void test_sync_write_after_idle_connection_dropped(void **state)
{
	(void)state;
	struct server_thread *st = kv_server_start();
	struct cm_client_opts o;
	cm_client_opts_init(&o);
	o.servers = st->f.addr;
	o.timeout_ms = 2000;
	struct cm_client *c;
	assert_int_equal(cm_client_open(&o, &c), 0);
	assert_int_equal(cm_put(c, "/cfg", "one", 3, 0, 0, NULL), 0);
	/* The server closes the idle connection (a restart, say)... */
	uv_async_send(&st->drop);
	while (!__atomic_load_n(&st->dropped, __ATOMIC_ACQUIRE))
		usleep(1000);
	usleep(20000); /* the FIN reaches us */
	/* ... and the next write is not lost to it. */
	assert_int_equal(cm_put(c, "/cfg", "two", 3, 0, 0, NULL), 0);
	cm_client_close(c);
	kv_server_stop(st);
}

static void freply_wrongshard(struct fake_conn *c, const struct cm_req *r, uint64_t group,
			      uint64_t epoch)
{
	freply(c, r->id, r->op, CM_EWRONGSHARD, group, epoch, NULL);
}

static bool path_is(const struct cm_req *r, const char *path)
{
	return r->path.len == strlen(path) && memcmp(r->path.p, path, r->path.len) == 0;
}

/* Boundary MKDIRs the parent refuses, and how (see the tests below). */
static bool parent_refuses(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	if (r->op != CM_OP_MKDIR)
		return false;
	if (path_is(r, "/half")) {
		/* A boundary from an earlier attempt fences it, at our epoch. */
		freply_wrongshard(c, r, r->group, f->map.epoch);
		return true;
	}
	if (path_is(r, "/raced")) {
		/* Someone made it a shard meanwhile: refused by routing. */
		f->map.epoch++;
		map_shard(&f->map, 4, "/raced", 1, 0);
		freply_wrongshard(c, r, 0, f->map.epoch);
		return true;
	}
	if (path_is(r, "/sub/x") && r->group == 1) {
		/* Fenced by /sub, split off (on node 2) at a newer epoch. */
		f->map.epoch++;
		map_shard(&f->map, 6, "/sub", 2, 0);
		freply_wrongshard(c, r, r->group, f->map.epoch);
		return true;
	}
	return false;
}

/* The parent shard's node (1): holds "/" (group 1); /busy exists; sends
 * SHARD_ADD to the meta leader at f->user. */
static void h_parent(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	if (parent_refuses(f, c, r))
		return;
	if (r->op == CM_OP_SHARD_ADD) {
		const char *leader = f->user;
		struct cm_resp resp = {.id = r->id, .op = r->op, .err = CM_ENOTLEADER,
				       .group = CM_META_GROUP, .leader_id = 2,
				       .leader_addr = {leader, (uint32_t)strlen(leader)}};
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		assert_int_equal(cm_codec_resp(&sb, &resp), 0);
		fsend(c, &sb);
		return;
	}
	bool busy = r->op == CM_OP_MKDIR && r->path.len == 5 && memcmp(r->path.p, "/busy", 5) == 0;
	uint64_t g = r->group ? r->group : 1;
	freply(c, r->id, r->op, busy ? -EEXIST : 0, g, token_of(g), NULL);
}

/* The meta leader (node 2): registers /app as group 2 on nodes 1 and 2. */
static void h_meta(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	if (r->op != CM_OP_SHARD_ADD) {
		freply(c, r->id, r->op, 0, r->group, token_of(r->group), NULL);
		return;
	}
	f->map.epoch++;
	map_shard(&f->map, 2, "/app", 1, 2);
	freply(c, r->id, r->op, 0, CM_META_GROUP, f->map.epoch, NULL);
}

/* Node 1 (parent shard "/") and node 2 (meta leader), both at epoch 1;
 * extra adds a shard to both maps (NULL: none). */
static void shard_servers(struct server_thread **p1, struct server_thread **p2,
			  const char *extra)
{
	struct server_thread *s1 = server_init(h_parent, 1), *s2 = server_init(h_meta, 2);
	s1->f.user = s2->f.addr;
	s1->f.map.epoch = 1;
	map_shard(&s1->f.map, 1, "/", 1, 0);
	if (extra)
		map_shard(&s1->f.map, 3, extra, 1, 0);
	map_node(&s1->f.map, 1, s1->f.addr);
	map_node(&s1->f.map, 2, s2->f.addr);
	map_copy(&s2->f.map, &s1->f.map);
	server_run(s1);
	server_run(s2);
	*p1 = s1;
	*p2 = s2;
}

static struct cm_client *client_for(const char *addr)
{
	struct cm_client_opts o;
	cm_client_opts_init(&o);
	o.servers = addr;
	o.timeout_ms = 2000;
	struct cm_client *c;
	assert_int_equal(cm_client_open(&o, &c), 0);
	return c;
}

static void test_shard_add_makes_boundary_on_parent_then_asks_meta_leader(void **state)
{
	(void)state;
	struct server_thread *s1, *s2;
	shard_servers(&s1, &s2, NULL);
	struct cm_client *c = client_for(s1->f.addr); /* node 2 known from the map */
	const uint64_t ids[] = {1, 2};
	assert_int_equal(cm_shard_add(c, "/app", ids, 2), 0);
	/* The boundary: a create-only MKDIR on the shard owning /app now. */
	assert_int_equal(fake_count(&s1->f, CM_OP_MKDIR), 1);
	const struct seen *mk = &s1->f.seen[0];
	assert_int_equal(mk->op, CM_OP_MKDIR);
	assert_string_equal(mk->path, "/app");
	assert_int_equal(mk->group, 1);
	assert_true(mk->flags & CM_MKDIR_BOUNDARY);
	/* The registration: redirected by node 1 to the meta leader. */
	assert_int_equal(fake_count(&s1->f, CM_OP_SHARD_ADD), 1);
	assert_int_equal(s1->f.seen[1].group, CM_META_GROUP);
	assert_int_equal(fake_count(&s2->f, CM_OP_SHARD_ADD), 1);
	const struct seen *add = &s2->f.seen[0];
	assert_string_equal(add->path, "/app");
	assert_int_equal(add->group, CM_META_GROUP);
	assert_string_equal(add->value, "1,2");
	/* The map came from the meta leader, which has the new epoch: /app now
	 * goes to group 2 (node 1, listed first, is one of its replicas). */
	assert_true(s2->f.shards_asked >= 1);
	assert_int_equal(cm_get(c, "/app/k", NULL, NULL, NULL), 0);
	assert_string_equal(last_seen(&s1->f)->path, "/app/k");
	assert_int_equal(last_seen(&s1->f)->group, 2);
	struct cm_shard_map *m;
	assert_int_equal(cm_shards(c, &m), 0);
	assert_true(m->epoch >= 1);
	assert_int_equal(m->n_nodes, 2);
	assert_int_equal(m->nodes[1].id, 2);
	assert_string_equal(m->nodes[1].addr, s2->f.addr);
	assert_string_equal(m->shards[0].prefix, "/");
	cm_shards_free(m);
	cm_client_close(c);
	kv_server_stop(s1);
	kv_server_stop(s2);
}

static void test_shard_add_refuses_shards_nonempty_prefixes_and_bad_arguments(void **state)
{
	(void)state;
	struct server_thread *s1, *s2;
	shard_servers(&s1, &s2, "/etc");
	struct cm_client *c = client_for(s1->f.addr);
	const uint64_t one[] = {1}, two[] = {1, 1}, zero[] = {0}, stranger[] = {7};
	uint64_t many[CM_CLIENT_MAX_REPLICAS + 1];
	for (int k = 0; k <= CM_CLIENT_MAX_REPLICAS; k++)
		many[k] = (uint64_t)k + 1;
	/* Nothing reaches a server for these. */
	assert_int_equal(cm_shard_add(c, "/", one, 1), -EINVAL);
	assert_int_equal(cm_shard_add(c, "rel", one, 1), -EINVAL);
	assert_int_equal(cm_shard_add(c, "/a/", one, 1), -EINVAL);
	assert_int_equal(cm_shard_add(c, NULL, one, 1), -EINVAL);
	assert_int_equal(cm_shard_add(c, "/a", one, 0), -EINVAL);
	assert_int_equal(cm_shard_add(c, "/a", NULL, 1), -EINVAL);
	assert_int_equal(cm_shard_add(c, "/a", two, 2), -EINVAL);
	assert_int_equal(cm_shard_add(c, "/a", zero, 1), -EINVAL);
	assert_int_equal(cm_shard_add(c, "/a", many, CM_CLIENT_MAX_REPLICAS + 1), -EINVAL);
	assert_int_equal(s1->f.shards_asked + s2->f.shards_asked, 0);
	/* Checked against the registry, before anything changes. */
	assert_int_equal(cm_shard_add(c, "/etc", one, 1), -EEXIST);
	assert_int_equal(cm_shard_add(c, "/new", stranger, 1), -EINVAL);
	assert_int_equal(fake_count(&s1->f, CM_OP_MKDIR), 0);
	/* Something at the prefix: the boundary is refused, nothing registered. */
	assert_int_equal(cm_shard_add(c, "/busy", one, 1), -EEXIST);
	assert_int_equal(fake_count(&s1->f, CM_OP_MKDIR), 1);
	assert_int_equal(fake_count(&s1->f, CM_OP_SHARD_ADD), 0);
	assert_int_equal(fake_count(&s2->f, CM_OP_SHARD_ADD), 0);
	/* The map as a server has it, copied out. */
	struct cm_shard_map *m;
	assert_int_equal(cm_shards(c, &m), 0);
	assert_int_equal(m->epoch, 1);
	assert_int_equal(m->n_shards, 2);
	assert_int_equal(m->shards[1].group, 3);
	assert_string_equal(m->shards[1].prefix, "/etc");
	assert_int_equal(m->shards[1].n_replicas, 1);
	assert_int_equal(m->shards[1].replicas[0], 1);
	assert_int_equal(m->n_nodes, 2);
	assert_string_equal(m->nodes[0].addr, s1->f.addr);
	cm_shards_free(m);
	cm_shards_free(NULL);
	assert_int_equal(cm_shards(c, NULL), -EINVAL);
	cm_client_close(c);
	kv_server_stop(s1);
	kv_server_stop(s2);
}

static void test_shard_add_completes_a_split_whose_boundary_is_there(void **state)
{
	(void)state;
	struct server_thread *s1, *s2;
	shard_servers(&s1, &s2, NULL);
	struct cm_client *c = client_for(s1->f.addr);
	const uint64_t one[] = {1};
	uint64_t t0 = uv_hrtime();
	assert_int_equal(cm_shard_add(c, "/half", one, 1), 0);
	assert_true(uv_hrtime() - t0 < 1000000000ull); /* the refusal is final: no waiting */
	assert_int_equal(fake_count(&s1->f, CM_OP_MKDIR), 1);
	assert_int_equal(fake_count(&s2->f, CM_OP_SHARD_ADD), 1);
	assert_string_equal(last_seen(&s2->f)->path, "/half");
	assert_string_equal(last_seen(&s2->f)->value, "1");
	cm_client_close(c);
	kv_server_stop(s1);
	kv_server_stop(s2);
}

static void test_shard_add_reads_registry_again_when_owner_moved(void **state)
{
	(void)state;
	struct server_thread *s1, *s2;
	shard_servers(&s1, &s2, NULL);
	struct cm_client *c = client_for(s1->f.addr);
	const uint64_t one[] = {1};
	/* Registered by someone else between our read and our MKDIR. */
	assert_int_equal(cm_shard_add(c, "/raced", one, 1), -EEXIST);
	assert_int_equal(fake_count(&s1->f, CM_OP_MKDIR), 1);
	assert_int_equal(fake_count(&s2->f, CM_OP_SHARD_ADD), 0);
	/* A fence in group 1 at a newer epoch is /sub's split, not ours: the
	 * boundary goes to /sub's group (6, on node 2) instead. */
	assert_int_equal(cm_shard_add(c, "/sub/x", one, 1), 0);
	assert_int_equal(fake_count(&s1->f, CM_OP_MKDIR), 2);
	const struct seen *mk = &s2->f.seen[0];
	assert_int_equal(mk->op, CM_OP_MKDIR);
	assert_string_equal(mk->path, "/sub/x");
	assert_int_equal(mk->group, 6);
	assert_true(mk->flags & CM_MKDIR_BOUNDARY);
	assert_int_equal(fake_count(&s2->f, CM_OP_SHARD_ADD), 1);
	assert_string_equal(last_seen(&s2->f)->path, "/sub/x");
	cm_client_close(c);
	kv_server_stop(s1);
	kv_server_stop(s2);
}

/* ---- membership ops ---- */

/* The last request of op f saw (its STATUS requests are recorded too). */
static const struct seen *last_of(const struct fake *f, uint8_t op)
{
	for (int k = f->n_seen; k-- > 0;)
		if (f->seen[k].op == op)
			return &f->seen[k];
	fail_msg("no request of op %d", op);
	return NULL;
}

/* Node 1 follows every group, naming node 2 (f->user: its address) as
 * leader; node 2 leads group 5 (on nodes 1, 2 and learner 4) and the meta
 * group. Member ops to node 2 succeed: a CONF_CHANGE with index 77, a
 * SHARD_SET answered in the shard's group with a meta index (1000). */
static void member_status(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	bool lead = f->node_id == 2;
	struct cm_group_status g[2] = {
		{.group = 5, .prefix = {"/app", 4}, .role = lead ? 4 : 1, .term = 3, .leader = 2,
		 .commit = 90, .applied = 90, .last = 100, .n_members = 3, .members = {1, 2, 4},
		 .kinds = {1, 1, 2}, .match = {lead ? 100 : 0, lead ? 100 : 0, lead ? 81 : 0},
		 .conf_pending = lead},
		{.group = CM_META_GROUP, .prefix = {"", 0}, .role = lead ? 4 : 1, .term = 2,
		 .leader = 2, .last = 7, .n_members = 2, .members = {1, 2}, .kinds = {1, 1}},
	};
	struct cm_resp resp = {.id = r->id, .op = r->op, .node_id = f->node_id, .groups = g,
			       .n_groups = f->quiet_status ? 0 : 2};
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_resp(&sb, &resp), 0);
	fsend(c, &sb);
}

static void h_member(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	if (r->op == CM_OP_STATUS) {
		member_status(f, c, r);
		return;
	}
	if (f->node_id != 2) {
		const char *leader = f->user;
		struct cm_resp resp = {.id = r->id, .op = r->op, .err = CM_ENOTLEADER,
				       .group = r->group, .leader_id = 2,
				       .leader_addr = {leader, (uint32_t)strlen(leader)}};
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		assert_int_equal(cm_codec_resp(&sb, &resp), 0);
		fsend(c, &sb);
		return;
	}
	if (r->op == CM_OP_CONF_CHANGE && r->version == 9) {
		freply(c, r->id, r->op, CM_ENOQUORUM, r->group, 50, NULL);
		return;
	}
	uint64_t token = r->op == CM_OP_CONF_CHANGE ? 77 : 1000;
	freply(c, r->id, r->op, 0, r->group, token, NULL);
}

/* Node 1 (listed) and node 2 (the leader, known from the map); group 5 is
 * /app on both. */
static void member_servers(struct server_thread **p1, struct server_thread **p2, bool quiet)
{
	struct server_thread *s1 = server_init(h_member, 1), *s2 = server_init(h_member, 2);
	s1->f.user = s2->f.addr;
	s1->f.own_status = s2->f.own_status = true;
	s1->f.quiet_status = s2->f.quiet_status = quiet;
	s1->f.map.epoch = 1;
	map_shard(&s1->f.map, 1, "/", 1, 2);
	map_shard(&s1->f.map, 5, "/app", 1, 2);
	map_node(&s1->f.map, 1, s1->f.addr);
	map_node(&s1->f.map, 2, s2->f.addr);
	map_copy(&s2->f.map, &s1->f.map);
	server_run(s1);
	server_run(s2);
	*p1 = s1;
	*p2 = s2;
}

static void test_conf_change_and_transfer_go_to_the_groups_leader(void **state)
{
	(void)state;
	struct server_thread *s1, *s2;
	member_servers(&s1, &s2, false);
	struct cm_client *c = client_for(s1->f.addr);
	uint64_t index = 0;
	assert_int_equal(cm_conf_change(c, 5, CM_CONF_ADD_LEARNER, 4, &index), 0);
	assert_int_equal(index, 77);
	/* Node 1 redirected it; node 2 applied it, with the operands as sent. */
	assert_int_equal(fake_count(&s1->f, CM_OP_CONF_CHANGE), 1);
	const struct seen *cc = last_of(&s2->f, CM_OP_CONF_CHANGE);
	assert_int_equal(cc->op, CM_OP_CONF_CHANGE);
	assert_int_equal(cc->group, 5);
	assert_int_equal(cc->flags, CM_CONF_ADD_LEARNER);
	assert_int_equal(cc->version, 4);
	/* The leader is remembered: the next ones go straight to it. */
	assert_int_equal(cm_conf_change(c, 5, CM_CONF_PROMOTE, 4, NULL), 0);
	assert_int_equal(cm_transfer(c, 5, 1), 0);
	assert_int_equal(fake_count(&s1->f, CM_OP_CONF_CHANGE), 1);
	assert_int_equal(fake_count(&s1->f, CM_OP_TRANSFER), 0);
	assert_int_equal(last_of(&s2->f, CM_OP_TRANSFER)->version, 1);
	/* After a transfer started, its old leader is not assumed to lead. */
	assert_int_equal(cm_conf_change(c, CM_META_GROUP, CM_CONF_REMOVE, 3, NULL), 0);
	assert_int_equal(last_of(&s2->f, CM_OP_CONF_CHANGE)->group, CM_META_GROUP);
	assert_int_equal(cm_conf_change(c, 5, CM_CONF_REMOVE, 1, NULL), 0);
	assert_int_equal(fake_count(&s1->f, CM_OP_CONF_CHANGE), 2); /* asked node 1 again */
	/* A refusal is passed on, not retried. */
	assert_int_equal(cm_conf_change(c, 5, CM_CONF_REMOVE, 9, NULL), CM_ENOQUORUM);
	assert_int_equal(fake_count(&s2->f, CM_OP_CONF_CHANGE), 5);
	cm_client_close(c);
	kv_server_stop(s1);
	kv_server_stop(s2);
}

static void test_registry_and_node_ops_go_to_the_meta_leader(void **state)
{
	(void)state;
	struct server_thread *s1, *s2;
	member_servers(&s1, &s2, true); /* leaders known from answers only */
	struct cm_client *c = client_for(s1->f.addr);
	const uint64_t ids[] = {1, 2, 4};
	assert_int_equal(cm_shard_set(c, 5, ids, 3), 0);
	assert_int_equal(fake_count(&s1->f, CM_OP_SHARD_SET), 1); /* redirected */
	const struct seen *ss = last_of(&s2->f, CM_OP_SHARD_SET);
	assert_int_equal(ss->group, 5); /* names the shard on the wire */
	assert_string_equal(ss->value, "1,2,4");
	/* Its answer's token is the meta group's: not group 5's version token
	 * (a follower read of /app would wait for index 1000 and go STALE). */
	assert_int_equal(cm_ac_token(c->ac, 5), 0);
	/* The meta leader is remembered: NODE_ADD goes straight to node 2. */
	assert_int_equal(cm_node_add(c, 4, "10.0.0.4:7001", "10.0.0.4:8001"), 0);
	assert_int_equal(fake_count(&s1->f, CM_OP_NODE_ADD), 0);
	ss = last_of(&s2->f, CM_OP_NODE_ADD);
	assert_int_equal(ss->group, CM_META_GROUP);
	assert_int_equal(ss->version, 4);
	assert_string_equal(ss->value, "10.0.0.4:7001 10.0.0.4:8001");
	assert_int_equal(cm_node_add(c, 5, "10.0.0.5:7001", NULL), 0);
	assert_string_equal(last_of(&s2->f, CM_OP_NODE_ADD)->value, "10.0.0.5:7001");
	assert_int_equal(cm_node_remove(c, 3), 0);
	assert_int_equal(last_of(&s2->f, CM_OP_NODE_REMOVE)->version, 3);
	assert_int_equal(fake_count(&s1->f, CM_OP_NODE_REMOVE), 0);
	/* ... and not taken for group 5's leader, though SHARD_SET named 5. */
	const struct cm_ac__group *g5 = cm_ac__group_get(c->ac, 5, false);
	assert_true(g5 == NULL || g5->leader < 0);
	assert_int_equal(cm_ac__group_get(c->ac, CM_META_GROUP, false)->leader,
			 cm_ac__node_server(c->ac, 2));
	cm_client_close(c);
	kv_server_stop(s1);
	kv_server_stop(s2);
}

static void test_member_status_is_the_leaders(void **state)
{
	(void)state;
	struct server_thread *s1, *s2;
	member_servers(&s1, &s2, false);
	struct cm_client *c = client_for(s1->f.addr); /* node 2 only from the map */
	struct cm_node_status *st;
	assert_int_equal(cm_member_status(c, 5, &st), 0);
	assert_int_equal(st->node_id, 2);
	const struct cm_group_info *g = cm_status_group(st, 5);
	assert_non_null(g);
	assert_int_equal(g->role, 4);
	assert_int_equal(g->n_members, 3);
	assert_int_equal(g->kinds[2], 2);
	assert_int_equal(g->match[2], 81);
	assert_int_equal(g->last, 100);
	assert_true(g->conf_pending);
	assert_null(cm_status_group(st, 6));
	cm_status_free(st);
	assert_int_equal(cm_member_status(c, CM_META_GROUP, &st), 0);
	assert_int_equal(st->node_id, 2);
	cm_status_free(st);
	/* Nobody runs group 6. */
	assert_int_equal(cm_member_status(c, 6, &st), -ENOENT);
	assert_null(st);
	assert_int_equal(cm_member_status(c, 0, &st), -EINVAL);
	cm_client_close(c);
	kv_server_stop(s1);
	kv_server_stop(s2);
}

/* Closes the connection on a CONF_CHANGE, and on the first SHARD_SET; then
 * answers. */
static void h_member_drop(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	int *sets = f->user;
	if (r->op == CM_OP_CONF_CHANGE || (r->op == CM_OP_SHARD_SET && (*sets)++ == 0)) {
		fconn_close(c);
		return;
	}
	freply(c, r->id, r->op, 0, r->group, 3, NULL);
}

static void test_member_ops_not_resent_on_unknown_outcome_but_shard_set(void **state)
{
	(void)state;
	struct server_thread *st = server_init(h_member_drop, 1);
	int sets = 0;
	st->f.user = &sets;
	st->f.map.epoch = 1;
	map_shard(&st->f.map, 5, "/", 1, 0);
	map_node(&st->f.map, 1, st->f.addr);
	server_run(st);
	struct cm_client *c = client_for(st->f.addr);
	assert_int_equal(cm_conf_change(c, 5, CM_CONF_ADD_LEARNER, 2, NULL), -EIO);
	assert_int_equal(fake_count(&st->f, CM_OP_CONF_CHANGE), 1);
	const uint64_t ids[] = {1, 2};
	assert_int_equal(cm_shard_set(c, 5, ids, 2), 0); /* set twice is set once */
	assert_int_equal(fake_count(&st->f, CM_OP_SHARD_SET), 2);
	cm_client_close(c);
	kv_server_stop(st);
}

static void test_member_ops_check_their_operands(void **state)
{
	(void)state;
	struct server_thread *s1, *s2;
	member_servers(&s1, &s2, false);
	struct cm_client *c = client_for(s1->f.addr);
	const uint64_t ids[] = {1, 2}, dup[] = {1, 1}, zero[] = {0};
	assert_int_equal(cm_conf_change(c, 0, CM_CONF_ADD_LEARNER, 4, NULL), -EINVAL);
	assert_int_equal(cm_conf_change(c, 5, (enum cm_conf_op)0, 4, NULL), -EINVAL);
	assert_int_equal(cm_conf_change(c, 5, (enum cm_conf_op)4, 4, NULL), -EINVAL);
	assert_int_equal(cm_conf_change(c, 5, CM_CONF_PROMOTE, 0, NULL), -EINVAL);
	assert_int_equal(cm_transfer(c, 0, 1), -EINVAL);
	assert_int_equal(cm_node_add(c, 0, "h:1", NULL), -EINVAL);
	assert_int_equal(cm_node_add(c, 4, "nohost", NULL), -EINVAL);
	assert_int_equal(cm_node_add(c, 4, "h:1 x", NULL), -EINVAL);
	assert_int_equal(cm_node_add(c, 4, "h:1", "h:99999"), -EINVAL);
	assert_int_equal(cm_node_add(c, 4, NULL, NULL), -EINVAL);
	assert_int_equal(cm_node_remove(c, 0), -EINVAL);
	assert_int_equal(cm_shard_set(c, CM_META_GROUP, ids, 2), -EINVAL);
	assert_int_equal(cm_shard_set(c, 0, ids, 2), -EINVAL);
	assert_int_equal(cm_shard_set(c, 5, dup, 2), -EINVAL);
	assert_int_equal(cm_shard_set(c, 5, zero, 1), -EINVAL);
	assert_int_equal(cm_shard_set(c, 5, ids, 0), -EINVAL);
	assert_int_equal(s1->f.n_seen + s2->f.n_seen, 0); /* nothing was sent */
	cm_client_close(c);
	kv_server_stop(s1);
	kv_server_stop(s2);
}

/* Run "confmanctl --servers addr ARGS" through sh; its stdout and stderr
 * land in out. Returns the exit code. */
static int run_ctl(const char *addr, const char *args, char *out, size_t n)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s --servers %s --timeout 2000 %s 2>&1", getenv("CONFMANCTL"),
		 addr, args);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t got = fread(out, 1, n - 1, p);
	out[got] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void assert_has(const char *out, const char *want)
{
	if (strstr(out, want) == NULL)
		fail_msg("output lacks '%s':\n%s", want, out);
}

static void test_confmanctl_output_and_exit_codes(void **state)
{
	(void)state;
	if (getenv("CONFMANCTL") == NULL)
		skip(); /* set by meson to the confmanctl it built */
	struct server_thread *st = kv_server_start();
	const char *a = st->f.addr;
	char out[4096];
	assert_int_equal(run_ctl(a, "put /cfg hello", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(run_ctl(a, "get /cfg", out, sizeof(out)), 0);
	assert_string_equal(out, "hello"); /* raw: nothing added */
	assert_int_equal(run_ctl(a, "get --json /cfg", out, sizeof(out)), 0);
	assert_has(out, "{\"path\":\"/cfg\",\"value\":\"hello\",\"version\":1,");
	assert_int_equal(run_ctl(a, "put --if-version 7 /cfg x", out, sizeof(out)), 4);
	assert_has(out, "confmanctl: /cfg: ");
	assert_has(out, "(ECANCELED)\n");
	assert_int_equal(run_ctl(a, "put --if-version 1 /cfg again", out, sizeof(out)), 0);
	assert_int_equal(run_ctl(a, "ls /", out, sizeof(out)), 0);
	assert_string_equal(out, "cfg\n");
	assert_int_equal(run_ctl(a, "ls -l /", out, sizeof(out)), 0);
	assert_has(out, "-rw-r--r--");
	assert_has(out, " cfg\n");
	assert_int_equal(run_ctl(a, "status", out, sizeof(out)), 0);
	assert_has(out, "node 9");
	assert_has(out, "leader");
	assert_int_equal(run_ctl(a, "--json status", out, sizeof(out)), 0);
	assert_has(out, "\"reachable\":true,\"node_id\":9,\"groups\":[{\"group\":1,");
	assert_int_equal(run_ctl(a, "rm /cfg", out, sizeof(out)), 0);
	assert_int_equal(run_ctl(a, "get /cfg", out, sizeof(out)), 3);
	assert_has(out, "(ENOENT)");
	/* Not UTF-8: base64 in JSON. Value from stdin. */
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "put /bin - < /dev/null; printf '\\377\\376' | %s "
		 "--servers %s put /bin -", getenv("CONFMANCTL"), a);
	assert_int_equal(run_ctl(a, cmd, out, sizeof(out)), 0);
	assert_int_equal(run_ctl(a, "get --json /bin", out, sizeof(out)), 0);
	assert_has(out, "\"value\":\"//4=\",\"encoding\":\"base64\"");
	/* The shard map. */
	assert_int_equal(run_ctl(a, "shards", out, sizeof(out)), 0);
	assert_has(out, "epoch 1\n");
	assert_has(out, "GROUP      PREFIX                   REPLICAS\n");
	assert_has(out, "1          /                        9\n");
	char want[256];
	snprintf(want, sizeof(want), "9          %s\n", a);
	assert_has(out, want);
	assert_int_equal(run_ctl(a, "shards --json", out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "{\"epoch\":1,\"shards\":[{\"group\":1,\"prefix\":\"/\","
		 "\"replicas\":[9]}],\"nodes\":[{\"id\":9,\"addr\":\"%s\"}]}\n", a);
	assert_string_equal(out, want);
	assert_int_equal(run_ctl(a, "shard add --replicas 9 /conf", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(run_ctl(a, "put /cfg x", out, sizeof(out)), 0);
	assert_int_equal(run_ctl(a, "shard add --replicas 9 /cfg", out, sizeof(out)), 4);
	assert_has(out, "confmanctl: /cfg: not empty, or a shard already (EEXIST)\n");
	assert_int_equal(run_ctl(a, "shard add --replicas 9 /", out, sizeof(out)), 6);
	assert_int_equal(run_ctl(a, "shard add --replicas 4 /x", out, sizeof(out)), 6);
	assert_has(out, "(EINVAL)");
	kv_server_stop(st);
}

static void test_confmanctl_membership_output(void **state)
{
	(void)state;
	if (getenv("CONFMANCTL") == NULL)
		skip();
	struct server_thread *s1, *s2;
	member_servers(&s1, &s2, false);
	const char *a = s1->f.addr;
	char out[8192];
	/* status: learners marked; the leader's match, lag and pending change. */
	char args[256];
	snprintf(args, sizeof(args), "--servers %s status", s2->f.addr);
	assert_int_equal(run_ctl(a, args, out, sizeof(out)), 0);
	assert_has(out, "  1,2,4(learner)\n");
	assert_has(out, "node 1 voter match 100 lag 0; node 2 voter match 100 lag 0; "
			"node 4 learner match 81 lag 19; change pending\n");
	snprintf(args, sizeof(args), "--servers %s --json status", s2->f.addr);
	assert_int_equal(run_ctl(a, args, out, sizeof(out)), 0);
	assert_has(out, "\"members\":[1,2,4],\"kinds\":[\"voter\",\"voter\",\"learner\"],"
			"\"match\":[100,100,81],\"lag\":[0,0,19],\"conf_pending\":true}");
	assert_has(out, "\"members\":[1,2],\"kinds\":[\"voter\",\"voter\"],\"match\":null,"
			"\"lag\":null,\"conf_pending\":false}");
	/* node list: the table and the meta group's kinds, from its leader. */
	assert_int_equal(run_ctl(a, "node list", out, sizeof(out)), 0);
	assert_has(out, "NODE   ADDR                     HTTP                     STATE    META\n");
	char want[256];
	snprintf(want, sizeof(want), "2      %-24s -                        active   voter\n",
		 s2->f.addr);
	assert_has(out, want);
	assert_int_equal(run_ctl(a, "node list --json", out, sizeof(out)), 0);
	assert_has(out, "{\"nodes\":[{\"id\":1,");
	assert_has(out, "\"http\":\"\",\"state\":\"active\",\"meta\":\"voter\"}");
	/* shard move: unknown shard or node refused before any step. */
	assert_int_equal(run_ctl(a, "shard move --replicas 1,2 /nope", out, sizeof(out)), 2);
	assert_has(out, "/nope: not a shard");
	assert_int_equal(run_ctl(a, "shard move --replicas 1,7 /app", out, sizeof(out)), 2);
	assert_has(out, "node 7 is not an active node");
	assert_int_equal(fake_count(&s2->f, CM_OP_SHARD_SET), 0);
	/* Node 4's learner of /app (81 of 100: within 64) is promoted first;
	 * this fake never changes, so the command runs out of time. */
	assert_int_equal(run_ctl(a, "shard move --replicas 1,2 --timeout 1 --json /app", out,
				 sizeof(out)), 5);
	assert_has(out, "{\"group\":5,\"prefix\":\"/app\",\"step\":\"shard_set\",\"replicas\":[1,2,4]}");
	assert_has(out, "not done after 1 s");
	/* node remove: nowhere to go is refused with nothing changed. */
	int sets = fake_count(&s2->f, CM_OP_SHARD_SET);
	assert_int_equal(run_ctl(a, "node remove 2 --to 1", out, sizeof(out)), 2);
	assert_has(out, "/app (group 5): nowhere to move node 2's replica");
	assert_int_equal(fake_count(&s2->f, CM_OP_SHARD_SET), sets);
	assert_int_equal(fake_count(&s2->f, CM_OP_CONF_CHANGE), 0);
	assert_int_equal(run_ctl(a, "node remove 8", out, sizeof(out)), 3);
	kv_server_stop(s1);
	kv_server_stop(s2);
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)

/* ---- leases and locks (client/lease.c) against a fake leader ---- */

/* One group's leases and one lock, /lk, with a FIFO queue of waiters
 * whose answers are held back until they are granted (proto.h). */
struct lk {
	uint64_t lease[8];
	uint32_t ttl[8];
	int n_leases;
	uint64_t holder, token, index;
	struct {
		uint64_t lease, id;
		struct fake_conn *c;
	} q[8];
	int nq;
	int eexist_grants; /* answer this many GRANTs EEXIST */
	int unparked;      /* answer this many new waiters "queued" (token 0) */
};

static void freply_attr(struct fake_conn *c, const struct cm_req *r, int err,
			const struct cm_attr *a, const char *value)
{
	struct cm_resp resp = {.id = r->id, .op = r->op, .err = err, .group = 1, .token = 1};
	if (err == 0) {
		resp.has_attr = true;
		resp.attr = *a;
		if (value)
			resp.value = (struct cm_bytes){value, (uint32_t)strlen(value)};
	}
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	assert_int_equal(cm_codec_resp(&sb, &resp), 0);
	fsend(c, &sb);
}

static int lk_find(const struct lk *l, uint64_t id)
{
	for (int k = 0; k < l->n_leases; k++)
		if (l->lease[k] == id)
			return k;
	return -1;
}

static bool conn_live(const struct fake *f, const struct fake_conn *c)
{
	for (const struct fake_conn *x = f->conns; x; x = x->next)
		if (x == c)
			return true;
	return false;
}

/* The lock is free: the head of the queue gets it, answered if its
 * connection is still there (else its ACQUIRE sent again finds it). */
static void lk_next(struct fake *f, struct lk *l)
{
	l->holder = 0;
	if (l->nq == 0)
		return;
	l->holder = l->q[0].lease;
	l->token = ++l->index;
	struct cm_req r = {.id = l->q[0].id, .op = CM_OP_LOCK};
	struct cm_attr a = {.version = l->token};
	if (conn_live(f, l->q[0].c))
		freply_attr(l->q[0].c, &r, 0, &a, NULL);
	memmove(&l->q[0], &l->q[1], (size_t)--l->nq * sizeof(l->q[0]));
}

static void h_lease(struct fake *f, struct fake_conn *c, const struct cm_req *r)
{
	struct lk *l = f->user;
	int k = lk_find(l, r->version);
	struct cm_attr a = {.version = r->version};
	if (r->op == CM_OP_PUT) {
		freply_attr(c, r, 0, &a, NULL);
		return;
	}
	if (r->op == CM_OP_LEASE) {
		switch (r->flags) {
		case CM_LEASE_GRANT:
			if (l->eexist_grants > 0 || k >= 0) {
				l->eexist_grants--;
				freply_attr(c, r, -EEXIST, &a, NULL);
				return;
			}
			l->lease[l->n_leases] = r->version;
			l->ttl[l->n_leases++] = (uint32_t)r->from_index;
			a.mtime_ns = a.atime_ns = (int64_t)r->from_index;
			freply_attr(c, r, 0, &a, NULL);
			return;
		case CM_LEASE_LIST: {
			char text[512] = "";
			for (int j = 0; j < l->n_leases; j++)
				snprintf(text + strlen(text), sizeof(text) - strlen(text),
					 "%" PRIu64 " %u %u 0\n", l->lease[j], l->ttl[j],
					 l->ttl[j] - 1);
			freply_attr(c, r, 0, &a, text);
			return;
		}
		default:
			break;
		}
		if (k < 0) {
			freply_attr(c, r, -ENOENT, &a, NULL);
			return;
		}
		a = (struct cm_attr){.version = r->version, .mtime_ns = l->ttl[k],
				     .atime_ns = l->ttl[k] - 1, .size = 2, .mod_index = 4};
		if (r->flags == CM_LEASE_REVOKE) {
			l->lease[k] = l->lease[--l->n_leases];
			l->ttl[k] = l->ttl[l->n_leases];
			if (l->holder == r->version)
				lk_next(f, l);
		}
		freply_attr(c, r, 0, &a, r->flags == CM_LEASE_TTL ? "/a\n/b\n" : NULL);
		return;
	}
	assert_int_equal(r->op, CM_OP_LOCK);
	if (r->flags & CM_LOCK_QUERY) {
		char text[128] = "";
		if (l->holder)
			snprintf(text, sizeof(text), "%" PRIu64 " 0 %" PRIu64 " x\n", l->holder,
				 l->token);
		a.version = l->token;
		freply_attr(c, r, 0, &a, text);
		return;
	}
	int at = -1;
	for (int j = 0; j < l->nq; j++)
		if (l->q[j].lease == r->version)
			at = j;
	if (r->flags & CM_LOCK_RELEASE) {
		bool had = l->holder == r->version || at >= 0;
		if (l->holder == r->version)
			lk_next(f, l);
		else if (at >= 0)
			memmove(&l->q[at], &l->q[at + 1], (size_t)(--l->nq - at) * sizeof(l->q[0]));
		freply_attr(c, r, had ? 0 : -ENOENT, &a, NULL);
		return;
	}
	if (k < 0) {
		freply_attr(c, r, -ENOENT, &a, NULL);
	} else if (l->holder == r->version || (l->holder == 0 && l->nq == 0)) {
		if (l->holder == 0)
			l->token = ++l->index;
		l->holder = r->version;
		a.version = l->token;
		freply_attr(c, r, 0, &a, NULL);
	} else if (at >= 0) { /* sent again: same place, answer there */
		l->q[at].id = r->id;
		l->q[at].c = c;
	} else if (r->flags & CM_LOCK_WAIT) {
		l->q[l->nq].lease = r->version;
		l->q[l->nq].id = r->id;
		l->q[l->nq++].c = c;
		if (l->unparked > 0) { /* queued, not kept waiting: it asks again */
			l->unparked--;
			a.version = 0;
			freply_attr(c, r, 0, &a, NULL);
		}
	} else {
		freply_attr(c, r, -EWOULDBLOCK, &a, NULL);
	}
}

static struct server_thread *lease_server_start(struct lk *l)
{
	struct server_thread *st = server_init(h_lease, 9);
	st->f.user = l;
	st->f.map.epoch = 1;
	map_shard(&st->f.map, 1, "/", 9, 0);
	map_node(&st->f.map, 9, st->f.addr);
	server_run(st);
	return st;
}

static struct cm_client *lease_client(const struct server_thread *st, uint32_t timeout_ms)
{
	struct cm_client_opts o;
	cm_client_opts_init(&o);
	o.servers = st->f.addr;
	o.timeout_ms = timeout_ms;
	struct cm_client *c;
	assert_int_equal(cm_client_open(&o, &c), 0);
	return c;
}

/* The requests of op seen by the fake with these flags. */
static int seen_ops(const struct fake *f, uint8_t op, uint32_t flags)
{
	int n = 0;
	for (int k = 0; k < f->n_seen; k++)
		n += f->seen[k].op == op && f->seen[k].flags == flags;
	return n;
}

static void test_lease_calls_send_the_contract_and_read_its_answers(void **state)
{
	(void)state;
	struct lk l = {.eexist_grants = 1};
	struct server_thread *st = lease_server_start(&l);
	struct cm_client *c = lease_client(st, 2000);
	uint64_t id = 0;
	/* A random id, drawn again after EEXIST. */
	assert_int_equal(cm_lease_grant(c, "/app", 5000, &id), 0);
	assert_true(id >= 1 && id <= (uint64_t)INT64_MAX);
	assert_int_equal(seen_ops(&st->f, CM_OP_LEASE, CM_LEASE_GRANT), 2);
	const struct seen *g = last_seen(&st->f);
	assert_int_equal(g->version, id);
	assert_int_equal(g->from_index, 5000);
	assert_string_equal(g->path, "/app");
	assert_true(st->f.seen[st->f.n_seen - 2].version != id);
	/* An id of one's own: its EEXIST is the caller's. */
	uint64_t same = id;
	assert_int_equal(cm_lease_grant(c, NULL, 5000, &same), -EEXIST);
	uint64_t mine = 77;
	assert_int_equal(cm_lease_grant(c, NULL, 3000, &mine), 0);
	assert_int_equal(mine, 77);
	assert_string_equal(last_seen(&st->f)->path, "/");
	struct cm_lease_info info;
	assert_int_equal(cm_lease_keepalive(c, "/", 77, &info), 0);
	assert_int_equal(info.id, 77);
	assert_int_equal(info.ttl_ms, 3000);
	assert_int_equal(info.left_ms, 2999);
	assert_int_equal(info.n_keys, 2);
	assert_int_equal(info.granted_index, 4);
	char *keys;
	assert_int_equal(cm_lease_ttl(c, "/", 77, &info, &keys), 0);
	assert_string_equal(keys, "/a\n/b\n");
	free(keys);
	struct cm_lease_info *ls;
	uint32_t n;
	assert_int_equal(cm_lease_list(c, "/", &ls, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ls[0].id, id);
	assert_int_equal(ls[1].id, 77);
	assert_int_equal(ls[1].ttl_ms, 3000);
	assert_int_equal(ls[1].left_ms, 2999);
	free(ls);
	/* put --lease: the flag, and the id where proto.h says. */
	struct cm_put_args pa = {.flags = CM_PUT_LEASE, .lease = 77};
	assert_int_equal(cm_put_ex(c, "/app/x", "v", 1, &pa, NULL), 0);
	assert_int_equal(last_seen(&st->f)->flags, CM_PUT_LEASE);
	assert_int_equal(last_seen(&st->f)->from_index, 77);
	assert_int_equal(cm_lease_revoke(c, "/", 77), 0);
	assert_int_equal(cm_lease_revoke(c, "/", 77), -ENOENT);
	assert_int_equal(cm_lease_keepalive(c, "/", 77, NULL), -ENOENT);
	/* Refused before anything is sent. */
	int before = st->f.n_seen;
	uint64_t z = 0;
	assert_int_equal(cm_lease_grant(c, "/", CM_LEASE_TTL_MIN_MS - 1, &z), -EINVAL);
	assert_int_equal(cm_lease_grant(c, "/", CM_LEASE_TTL_MAX_MS + 1, &z), -EINVAL);
	z = (uint64_t)INT64_MAX + 1;
	assert_int_equal(cm_lease_grant(c, "/", 5000, &z), -EINVAL);
	assert_int_equal(cm_lease_keepalive(c, "/", 0, NULL), -EINVAL);
	assert_int_equal(cm_lease_revoke(c, "rel", 5), -EINVAL);
	assert_int_equal(cm_lock_acquire(c, "/lk", 0, 0, 0, 0, &z), -EINVAL);
	assert_int_equal(cm_lock_acquire(c, "/lk", 1, 0, CM_LOCK_RELEASE, 0, &z), -EINVAL);
	pa.lease = (uint64_t)INT64_MAX + 1;
	assert_int_equal(cm_put_ex(c, "/app/x", "v", 1, &pa, NULL), -EINVAL);
	assert_int_equal(st->f.n_seen, before);
	cm_client_close(c);
	kv_server_stop(st);
}

/* The builders confman-fs submits on its own loop: the contract's fields,
 * and what the sync calls refuse before sending. */
static void test_lease_and_lock_request_builders(void **state)
{
	(void)state;
	struct cm_req r;
	assert_int_equal(cm_lease_req(&r, "/app", CM_LEASE_GRANT, 9, 5000), 0);
	assert_int_equal(r.op, CM_OP_LEASE);
	assert_int_equal(r.flags, CM_LEASE_GRANT);
	assert_int_equal(r.version, 9);
	assert_int_equal(r.from_index, 5000);
	assert_int_equal(r.path.len, 4);
	assert_int_equal(cm_lease_req(&r, NULL, CM_LEASE_KEEPALIVE, 9, 0), 0);
	assert_int_equal(r.from_index, 0);
	assert_memory_equal(r.path.p, "/", 1);
	assert_int_equal(cm_lease_req(&r, "/", CM_LEASE_LIST, 0, 0), 0);
	assert_int_equal(cm_lease_req(&r, "/", CM_LEASE_GRANT, 9, CM_LEASE_TTL_MIN_MS - 1), -EINVAL);
	assert_int_equal(cm_lease_req(&r, "/", CM_LEASE_TTL, 0, 0), -EINVAL);
	assert_int_equal(cm_lease_req(&r, "/", CM_LEASE_REVOKE, (uint64_t)INT64_MAX + 1, 0),
			 -EINVAL);
	assert_int_equal(cm_lease_req(&r, "/", CM_LEASE_EXPIRE, 9, 0), -EINVAL); /* the leader's */
	assert_int_equal(cm_lock_req(&r, "/lk", CM_LOCK_ACQUIRE | CM_LOCK_SHARED | CM_LOCK_WAIT, 9,
				     42), 0);
	assert_int_equal(r.op, CM_OP_LOCK);
	assert_int_equal(r.version, 9);
	assert_int_equal(r.from_index, 42);
	assert_int_equal(cm_lock_req(&r, "/lk", CM_LOCK_QUERY, 0, 0), 0);
	assert_int_equal(cm_lock_req(&r, "/lk", CM_LOCK_RELEASE | CM_LOCK_WAIT, 9, 42), -EINVAL);
	assert_int_equal(cm_lock_req(&r, "/lk", CM_LOCK_ACQUIRE | CM_LOCK_RELEASE, 9, 42), -EINVAL);
	assert_int_equal(cm_lock_req(&r, "/lk", CM_LOCK_ACQUIRE, 0, 42), -EINVAL);
	assert_int_equal(cm_lock_req(&r, NULL, CM_LOCK_QUERY, 0, 0), -EINVAL);
	assert_true(cm_lock_again(-ETIMEDOUT) && cm_lock_again(CM_ENOTLEADER));
	assert_false(cm_lock_again(-EWOULDBLOCK) || cm_lock_again(-ENOENT));
	struct cm_resp resp = {.value = {"1 2 3 x\n4 5 6 s\n", 16}};
	struct cm_lock_holder *hs;
	uint32_t n;
	assert_int_equal(cm_lock_holders_parse(&resp, &hs, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(hs[1].lease, 4);
	assert_true(hs[1].shared && !hs[0].shared);
	free(hs);
	resp.value = (struct cm_bytes){"1 2 x\n", 6};
	assert_int_equal(cm_lock_holders_parse(&resp, &hs, &n), -EBADMSG);
}

struct waiter {
	struct server_thread *st;
	uint32_t timeout_ms;
	uint64_t lease, token;
	int rv;
	bool done;
};

static void *wait_lock(void *arg)
{
	struct waiter *w = arg;
	struct cm_client *c = lease_client(w->st, w->timeout_ms);
	w->rv = cm_lock_acquire(c, "/lk", w->lease, 0, CM_LOCK_WAIT, 0, &w->token);
	cm_client_close(c);
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void test_lock_waits_in_line_through_timeouts_and_gives_up_when_told(void **state)
{
	(void)state;
	struct lk l = {0};
	struct server_thread *st = lease_server_start(&l);
	struct cm_client *c = lease_client(st, 2000);
	uint64_t a = 11, b = 22, ta, tb;
	assert_int_equal(cm_lease_grant(c, "/", 5000, &a), 0);
	assert_int_equal(cm_lease_grant(c, "/", 5000, &b), 0);
	assert_int_equal(cm_lock_acquire(c, "/lk", a, 0, 0, 0, &ta), 0);
	assert_int_equal(ta, 1);
	/* Again by the holder: its hold. */
	assert_int_equal(cm_lock_acquire(c, "/lk", a, 0, 0, 0, &ta), 0);
	assert_int_equal(ta, 1);
	assert_int_equal(cm_lock_acquire(c, "/lk", b, 0, 0, 0, &tb), -EWOULDBLOCK);
	/* A bounded wait gives up when told, and leaves the queue. */
	uint64_t t0 = now_ms();
	assert_int_equal(cm_lock_acquire(c, "/lk", b, 0, CM_LOCK_WAIT, 300, &tb), -EWOULDBLOCK);
	uint64_t took = now_ms() - t0;
	assert_true(took >= 300 && took < 1500);
	assert_int_equal(seen_ops(&st->f, CM_OP_LOCK, CM_LOCK_RELEASE), 1);
	assert_int_equal(l.nq, 0);
	/* An unbounded wait outlives its requests' timeouts (300 ms each): it is
	 * sent again, keeps its place, and is granted after the release. */
	struct waiter w = {.st = st, .timeout_ms = 300, .lease = b};
	pthread_t th;
	pthread_create(&th, NULL, wait_lock, &w);
	usleep(1000 * 1000);
	assert_true(seen_ops(&st->f, CM_OP_LOCK, CM_LOCK_ACQUIRE | CM_LOCK_WAIT) >= 3);
	assert_int_equal(l.nq, 1);
	assert_int_equal(cm_lock_release(c, "/lk", a, 0), 0);
	pthread_join(th, NULL);
	assert_int_equal(w.rv, 0);
	assert_true(w.token > ta);
	struct cm_lock_holder *h;
	uint32_t n;
	assert_int_equal(cm_lock_query(c, "/lk", &h, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(h[0].lease, b);
	assert_int_equal(h[0].token, w.token);
	assert_false(h[0].shared);
	free(h);
	/* A waiter whose connection drops sends ACQUIRE again; so does one
	 * answered "queued" (token 0), not granted. */
	l.unparked = 1;
	w = (struct waiter){.st = st, .timeout_ms = 5000, .lease = a};
	pthread_create(&th, NULL, wait_lock, &w);
	while (__atomic_load_n(&l.nq, __ATOMIC_ACQUIRE) == 0)
		usleep(1000);
	while (__atomic_load_n(&l.unparked, __ATOMIC_ACQUIRE) > 0)
		usleep(1000);
	usleep(300 * 1000); /* asked again after "queued" */
	assert_false(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)); /* still waiting */
	int sent = seen_ops(&st->f, CM_OP_LOCK, CM_LOCK_ACQUIRE | CM_LOCK_WAIT);
	uv_async_send(&st->drop);
	for (int k = 0; seen_ops(&st->f, CM_OP_LOCK, CM_LOCK_ACQUIRE | CM_LOCK_WAIT) == sent; k++) {
		assert_true(k < 3000); /* sent again within 3 s */
		usleep(1000);
	}
	assert_int_equal(cm_lease_revoke(c, "/", b), 0); /* b's end frees the lock */
	pthread_join(th, NULL);
	assert_int_equal(w.rv, 0);
	assert_true(w.token > tb);
	cm_client_close(c);
	kv_server_stop(st);
}

int main(void)
{
	/* A fake answering a client that already left must not kill the
	 * tests (confmand ignores SIGPIPE too). */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		T(test_handshake_then_get_answered),
		T(test_paths_up_to_4096_bytes_are_sent_and_4097_refused),
		T(test_sync_api_4096_byte_paths_and_an_older_server),
		T(test_not_leader_redirects_to_named_leader),
		T(test_redirect_without_address_is_noleader_then_times_out),
		T(test_write_retried_after_connection_refused),
		T(test_refused_everywhere_reports_econnrefused),
		T(test_no_answer_times_out_with_etimedout),
		T(test_write_not_retried_after_connection_broke),
		T(test_read_retried_after_connection_broke),
		T(test_stale_replica_read_goes_to_another),
		T(test_follower_reads_spread_to_least_loaded_replica),
		T(test_follower_reads_prefer_a_local_replica),
		T(test_token_sent_is_highest_seen),
		T(test_out_of_order_answers_matched_by_id),
		T(test_watch_events_delivered_and_resumed),
		T(test_watch_fans_in_nested_shards_with_own_resume_index),
		T(test_silent_watch_stream_is_stale_and_moves),
		T(test_close_cancels_requests_and_watches),
		T(test_handshake_refused_fails_fast),
		T(test_hung_handshake_reconnects_and_write_goes_through),
		T(test_bad_arguments_rejected_without_callback),
		T(test_map_routes_with_owning_group_and_its_token),
		T(test_wrongshard_with_newer_epoch_refetches_map_and_retries_on_owner),
		T(test_wrongshard_at_same_epoch_tries_another_replica_without_refetch),
		T(test_wrongshard_until_deadline_reports_ewrongshard),
		T(test_without_map_a_token_is_not_sent_for_another_shards_path),
		T(test_without_map_a_follower_read_still_reads_its_writes),
		cmocka_unit_test(test_sync_api_round_trip),
		cmocka_unit_test(test_sync_write_after_idle_connection_dropped),
		cmocka_unit_test(test_shard_add_makes_boundary_on_parent_then_asks_meta_leader),
		cmocka_unit_test(test_shard_add_refuses_shards_nonempty_prefixes_and_bad_arguments),
		cmocka_unit_test(test_shard_add_completes_a_split_whose_boundary_is_there),
		cmocka_unit_test(test_shard_add_reads_registry_again_when_owner_moved),
		cmocka_unit_test(test_confmanctl_output_and_exit_codes),
		cmocka_unit_test(test_conf_change_and_transfer_go_to_the_groups_leader),
		cmocka_unit_test(test_registry_and_node_ops_go_to_the_meta_leader),
		cmocka_unit_test(test_member_status_is_the_leaders),
		cmocka_unit_test(test_member_ops_not_resent_on_unknown_outcome_but_shard_set),
		cmocka_unit_test(test_member_ops_check_their_operands),
		cmocka_unit_test(test_confmanctl_membership_output),
		cmocka_unit_test(test_lease_calls_send_the_contract_and_read_its_answers),
		cmocka_unit_test(test_lease_and_lock_request_builders),
		cmocka_unit_test(test_lock_waits_in_line_through_timeouts_and_gives_up_when_told),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
