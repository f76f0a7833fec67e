/* conn.c: one TCP connection per server: connect, handshake, send, receive. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

static void conn_close(struct cm_ac__conn *c, int err, bool fatal);

/* ---- lifetime ---- */

static void conn_unref(struct cm_ac__conn *c)
{
	assert(c->refs > 0);
	if (--c->refs > 0)
		return;
	cm_framer_free(&c->fr);
	msgpack_sbuffer_destroy(&c->out);
	msgpack_sbuffer_destroy(&c->wbuf);
	cm_tls_free(c->tls);
	free(c);
}

/* Close callback of both the tcp and the timer handle. */
static void handle_closed(uv_handle_t *h)
{
	struct cm_ac__conn *c = h->data;
	struct cm_ac *ac = c->ac;
	conn_unref(c);
	cm_ac__handle_gone(ac);
}

static void close_handles(struct cm_ac__conn *c)
{
	uv_close((uv_handle_t *)&c->tcp, handle_closed);
	uv_close((uv_handle_t *)&c->timer, handle_closed);
}

static void write_cb(uv_write_t *w, int status);
static void conn_flush(struct cm_ac__conn *c);

/* ---- TLS: between the stream and the framer ---- */

/* A write of ciphertext: handshake records, or (app) the frames of
 * conn_flush(), which then count as the write in progress. */
struct tls_wreq {
	uv_write_t req;
	struct cm_ac__conn *c;
	char *data; /* owned */
	bool app;
};

static void tls_write_cb(uv_write_t *req, int status)
{
	struct tls_wreq *w = (struct tls_wreq *)req;
	struct cm_ac__conn *c = w->c;
	bool app = w->app;
	free(w->data);
	free(w);
	if (app)
		c->writing = false;
	if (c->state == CM_AC_CONN_CLOSING)
		return;
	if (status < 0)
		conn_close(c, status, false);
	else if (app)
		cm_ac__conn_pump(c);
}

/* Write out what the session has to send. 0 or a negative errno. */
static int tls_write(struct cm_ac__conn *c, bool app)
{
	char *data;
	size_t len;
	cm_tls_take(c->tls, &data, &len);
	if (len == 0)
		return 0;
	struct tls_wreq *w = malloc(sizeof(*w));
	if (w == NULL) {
		free(data);
		return -ENOMEM;
	}
	*w = (struct tls_wreq){.c = c, .data = data, .app = app};
	uv_buf_t b = uv_buf_init(data, (unsigned)len);
	int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, tls_write_cb);
	if (rv != 0) {
		free(data);
		free(w);
		return rv;
	}
	if (app) {
		c->writing = true;
		c->wgen++;
	}
	return 0;
}

/* conn_flush() over TLS: the frames wait for the handshake (the HELLO is
 * queued before it completes), then go out as records. */
static void tls_flush(struct cm_ac__conn *c)
{
	if (!cm_tls_ready(c->tls))
		return;
	int rv = cm_tls_send(c->tls, c->out.data, c->out.size);
	c->out.size = 0;
	if (c->out.alloc > (1u << 20)) { /* an idle connection keeps no big buffer */
		msgpack_sbuffer_destroy(&c->out);
		msgpack_sbuffer_init(&c->out);
	}
	if (rv == 0)
		rv = tls_write(c, true);
	if (rv != 0)
		conn_close(c, rv, false);
}

/* A TLS failure as the caller sees it. */
static int tls_err(int rv)
{
	return rv == -EACCES ? CM_EBADCERT : rv == -EKEYREJECTED ? CM_ECERTREFUSED : CM_ETLS;
}

/* Advance the handshake: 0 once complete with a node's certificate,
 * -EAGAIN while it needs more bytes, else the error. */
static int tls_handshake(struct cm_ac__conn *c)
{
	int rv = cm_tls_handshake(c->tls);
	int wrv = tls_write(c, false);
	if (rv < 0)
		return tls_err(rv);
	if (wrv != 0)
		return wrv;
	if (rv == 0)
		return -EAGAIN;
	/* Only a node's certificate may serve: a user's, even from our CA,
	 * cannot pose as a server. */
	struct cm_identity id;
	if (cm_tls_identity(c->tls, &id) != 0 || id.node_id == 0)
		return CM_EBADCERT;
	c->tls_node = id.node_id;
	conn_flush(c);
	return 0;
}

static void on_bytes(struct cm_ac__conn *c, const char *p, size_t n);

static void tls_in(struct cm_ac__conn *c, const char *p, size_t n)
{
	int rv = cm_tls_feed(c->tls, p, n);
	if (rv == 0 && !cm_tls_ready(c->tls))
		rv = tls_handshake(c);
	char plain[16384]; /* a record's plaintext at most */
	while (rv == 0 && c->state != CM_AC_CONN_CLOSING) {
		ssize_t got = cm_tls_recv(c->tls, plain, sizeof(plain));
		if (got <= 0) {
			rv = got == 0 ? 0 : got == -ECONNRESET ? -ECONNRESET : tls_err((int)got);
			break;
		}
		on_bytes(c, plain, (size_t)got);
	}
	if (rv == 0 && c->state != CM_AC_CONN_CLOSING)
		rv = tls_write(c, false); /* what receiving produced (a KeyUpdate's answer) */
	if (rv < 0 && rv != -EAGAIN && c->state != CM_AC_CONN_CLOSING)
		conn_close(c, rv, rv <= CM_ETLS && rv >= CM_EBADCERT);
}

/* ---- sending ---- */

static void conn_flush(struct cm_ac__conn *c)
{
	if (c->writing || c->out.size == 0)
		return;
	if (c->state != CM_AC_CONN_HANDSHAKE && c->state != CM_AC_CONN_READY)
		return;
	if (c->tls != NULL) {
		tls_flush(c);
		return;
	}
	/* Swap buffers: frames encoded while this write runs go to the other. */
	msgpack_sbuffer t = c->wbuf;
	c->wbuf = c->out;
	c->out = t;
	c->out.size = 0;
	uv_buf_t b = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.size);
	c->wreq.data = c;
	int rv = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
	if (rv != 0) {
		conn_close(c, rv, false);
		return;
	}
	c->writing = true;
	c->wgen++;
}

static void write_cb(uv_write_t *w, int status)
{
	struct cm_ac__conn *c = w->data;
	c->writing = false;
	c->wbuf.size = 0;
	if (c->wbuf.alloc > (1u << 20)) {
		/* An idle connection should not keep a big buffer. */
		msgpack_sbuffer_destroy(&c->wbuf);
		msgpack_sbuffer_init(&c->wbuf);
	}
	if (c->state == CM_AC_CONN_CLOSING)
		return;
	if (status < 0) {
		conn_close(c, status, false);
		return;
	}
	cm_ac__conn_pump(c);
}

static size_t queued_bytes(const struct cm_ac__conn *c)
{
	return c->out.size + (c->writing ? c->wbuf.size : 0);
}

/* A group's token goes only with that group named on the wire: the server
 * then refuses the path if another group owns it (WRONGSHARD), so the token
 * is never held against another group's index (shard.c, lin_unrouted). */
static uint64_t token_for(struct cm_ac *ac, const struct cm_ac__req *rq)
{
	uint64_t t = rq->req.token;
	if (rq->wgroup == 0)
		return t;
	struct cm_ac__group *g = cm_ac__group_get(ac, rq->wgroup, false);
	return g && g->token > t ? g->token : t;
}

void cm_ac__conn_pump(struct cm_ac__conn *c)
{
	struct cm_ac *ac = c->ac;
	while (c->state == CM_AC_CONN_READY && !cm_ac__list_empty(&c->waitq) &&
	       queued_bytes(c) < CM_CLIENT_SEND_MAX) {
		struct cm_ac__req *rq =
			CM_AC__CONTAINER(c->waitq.next, struct cm_ac__req, qlink);
		cm_ac__list_remove(&rq->qlink);
		struct cm_req wire = rq->req;
		wire.group = rq->wgroup;
		wire.token = token_for(ac, rq); /* the freshest, at the last moment */
		if (rq->lin_unrouted)
			wire.consistency = CM_READ_LINEARIZABLE;
		int rv = cm_codec_req(&c->out, &wire);
		if (rv != 0) {
			cm_ac__list_push(&c->sentq, &rq->qlink); /* finish() detaches */
			cm_ac__finish(rq, rv, NULL);
			continue;
		}
		rq->state = CM_AC_RQ_SENT;
		rq->wgen = c->wgen + 1; /* goes out with the next uv_write() */
		cm_ac__list_push(&c->sentq, &rq->qlink);
	}
	if (c->state == CM_AC_CONN_READY)
		conn_flush(c);
}

void cm_ac__conn_enqueue(struct cm_ac__conn *c, struct cm_ac__req *rq)
{
	cm_ac__list_push(&c->waitq, &rq->qlink);
	cm_ac__conn_pump(c);
}

/* ---- failing ---- */

/* What becomes of a request whose connection went away. */
static void rq_conn_lost(struct cm_ac__req *rq, int err, bool sent, bool fatal)
{
	if (fatal || rq->kind == CM_AC_RQ_UNWATCH) {
		cm_ac__finish(rq, err, NULL);
		return;
	}
	if (rq->is_write && sent && !rq->idempotent) {
		/* The server may have applied it: retrying could apply it twice. */
		cm_ac__finish(rq, -EIO, NULL);
		return;
	}
	rq->avoid = rq->srv;
	cm_ac__retry(rq, err, false);
}

static void fail_queue(struct cm_ac__conn *c, struct cm_ac__link *q, int err, bool fatal)
{
	while (!cm_ac__list_empty(q)) {
		struct cm_ac__req *rq = CM_AC__CONTAINER(q->next, struct cm_ac__req, qlink);
		bool sent = rq->state == CM_AC_RQ_SENT && rq->wgen <= c->wgen;
		cm_ac__list_remove(&rq->qlink);
		cm_ac__id_remove(c->ac, rq);
		cm_ac__inflight_end(rq);
		rq_conn_lost(rq, err, sent, fatal);
	}
}

/*
 * Close c and settle everything that depended on it. fatal: the server
 * refused us (handshake), so the requests waiting here fail instead of
 * going elsewhere.
 */
static void conn_close(struct cm_ac__conn *c, int err, bool fatal)
{
	struct cm_ac *ac = c->ac;
	if (c->state == CM_AC_CONN_CLOSING)
		return;
	bool resolving = c->state == CM_AC_CONN_RESOLVING;
	c->state = CM_AC_CONN_CLOSING;
	ac->servers[c->server].conn = NULL;
	if (err != -ECANCELED)
		cm_ac__server_failed(ac, c->server);
	if (resolving)
		uv_cancel((uv_req_t *)&c->gai);
	close_handles(c);
	fail_queue(c, &c->sentq, err, fatal);
	fail_queue(c, &c->waitq, err, fatal);
	cm_ac__watch_conn_lost(c);
}

void cm_ac__conn_fail(struct cm_ac__conn *c, int err)
{
	conn_close(c, err, false);
}

/* ---- receiving ---- */

static void on_hello_ok(struct cm_ac__conn *c, const struct cm_hello *h)
{
	if (c->state != CM_AC_CONN_HANDSHAKE || h->version != CM_PROTO_VERSION) {
		conn_close(c, -EPROTO, true);
		return;
	}
	if (c->tls != NULL && h->node_id != c->tls_node) {
		conn_close(c, CM_EBADCERT, true); /* node A's certificate, node B's HELLO */
		return;
	}
	struct cm_ac *ac = c->ac;
	c->state = CM_AC_CONN_READY;
	uv_timer_stop(&c->timer);
	cm_ac__server_ok(ac, c->server);
	if (h->node_id != 0)
		ac->servers[c->server].node_id = h->node_id; /* fresher than the map's */
	cm_ac__status_map(ac, c->server);
	if (!ac->map.valid)
		cm_ac__map_fetch(ac, (int32_t)c->server, 0);
	cm_ac__conn_pump(c);
}

static void on_error_frame(struct cm_ac__conn *c, const struct cm_errframe *e)
{
	int err = e->err < 0 ? e->err : -EPROTO;
	/* Refused at the handshake (wrong cluster id, version): a setting is
	 * wrong, and waiting until the deadline would only hide it. */
	conn_close(c, err, c->state == CM_AC_CONN_HANDSHAKE);
}

static void dispatch(struct cm_ac__conn *c, const struct cm_msg *m)
{
	bool ready = c->state == CM_AC_CONN_READY;
	switch (m->type) {
	case CM_FR_HELLO_OK:
		on_hello_ok(c, &m->hello);
		return;
	case CM_FR_ERROR:
		on_error_frame(c, &m->error);
		return;
	case CM_FR_RESP:
		if (ready) {
			cm_ac__on_resp(c, &m->resp);
			return;
		}
		break;
	case CM_FR_EVENT:
		if (ready) {
			cm_ac__watch_on_event(c, &m->event);
			return;
		}
		break;
	default:
		break;
	}
	conn_close(c, -EPROTO, false); /* a frame a client never expects */
}

static void on_bytes(struct cm_ac__conn *c, const char *p, size_t n)
{
	int rv = cm_framer_feed(&c->fr, p, n);
	while (rv == 0 && c->state != CM_AC_CONN_CLOSING) {
		const char *body;
		size_t len;
		rv = cm_framer_next(&c->fr, &body, &len);
		if (rv <= 0)
			break;
		struct cm_msg m;
		rv = cm_codec_decode(body, len, &m);
		if (rv != 0)
			break;
		dispatch(c, &m);
		cm_codec_free(&m);
		if (c->state != CM_AC_CONN_CLOSING)
			cm_framer_consume(&c->fr, len);
		rv = 0;
	}
	if (rv < 0)
		conn_close(c, rv, false);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct cm_ac__conn *c = h->data;
	(void)hint;
	*buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct cm_ac__conn *c = s->data;
	(void)buf;
	c->ac->n_reads++;
	if (c->state == CM_AC_CONN_CLOSING)
		return;
	if (nread < 0) {
		conn_close(c, nread == UV_EOF ? -ECONNRESET : (int)nread, false);
		return;
	}
	if (nread > 0 && c->tls != NULL)
		tls_in(c, c->rbuf, (size_t)nread);
	else if (nread > 0)
		on_bytes(c, c->rbuf, (size_t)nread);
}

/* ---- connecting ---- */

static void send_hello(struct cm_ac__conn *c)
{
	struct cm_hello h = {
		.version = CM_PROTO_VERSION,
		.cluster = {c->ac->cluster, (uint32_t)strlen(c->ac->cluster)},
		.node_id = 0,
	};
	int rv = cm_codec_hello(&c->out, CM_FR_HELLO, &h);
	if (rv != 0) {
		conn_close(c, rv, false);
		return;
	}
	conn_flush(c);
}

/* Whether the connection has the same address at both ends: the server
 * runs on this machine (route.c prefers it for follower reads). */
static bool same_host(const uv_tcp_t *t)
{
	struct sockaddr_storage a, b;
	int la = sizeof(a), lb = sizeof(b);
	if (uv_tcp_getsockname(t, (struct sockaddr *)&a, &la) != 0 ||
	    uv_tcp_getpeername(t, (struct sockaddr *)&b, &lb) != 0 || a.ss_family != b.ss_family)
		return false;
	if (a.ss_family == AF_INET)
		return ((struct sockaddr_in *)&a)->sin_addr.s_addr ==
		       ((struct sockaddr_in *)&b)->sin_addr.s_addr;
	if (a.ss_family == AF_INET6)
		return memcmp(&((struct sockaddr_in6 *)&a)->sin6_addr,
			      &((struct sockaddr_in6 *)&b)->sin6_addr, 16) == 0;
	return false;
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct cm_ac__conn *c = req->data;
	if (status == UV_ECANCELED || c->state == CM_AC_CONN_CLOSING)
		return;
	if (status < 0) {
		conn_close(c, status, false);
		return;
	}
	c->state = CM_AC_CONN_HANDSHAKE;
	c->ac->servers[c->server].local = same_host(&c->tcp) ? 1 : 0;
	uv_tcp_nodelay(&c->tcp, 1);
	int rv = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	if (rv == 0 && c->ac->tls != NULL) {
		rv = cm_tls_new(c->ac->tls, false, &c->tls);
		rv = rv == 0 ? tls_handshake(c) : rv; /* the ClientHello goes out */
		rv = rv == -EAGAIN ? 0 : rv;
	}
	if (rv != 0) {
		conn_close(c, rv, rv <= CM_ETLS && rv >= CM_EBADCERT);
		return;
	}
	send_hello(c);
}

static int connect_to(struct cm_ac__conn *c, const struct sockaddr *sa)
{
	c->state = CM_AC_CONN_CONNECTING;
	c->creq.data = c;
	return uv_tcp_connect(&c->creq, &c->tcp, sa, connect_cb);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct cm_ac__conn *c = req->data;
	struct cm_ac *ac = c->ac;
	if (c->state == CM_AC_CONN_RESOLVING) {
		/* Resolver codes (UV_EAI_*) are no errno: say "unreachable". */
		int rv = status < 0 || res == NULL ? -EHOSTUNREACH : connect_to(c, res->ai_addr);
		if (rv != 0)
			conn_close(c, rv, false);
	}
	uv_freeaddrinfo(res);
	conn_unref(c);
	cm_ac__handle_gone(ac); /* last: it may free ac */
}

static int start_connect(struct cm_ac__conn *c)
{
	const struct cm_ac__server *srv = &c->ac->servers[c->server];
	struct sockaddr_storage ss;
	int port = atoi(srv->port);
	if (uv_ip4_addr(srv->host, port, (struct sockaddr_in *)&ss) == 0 ||
	    uv_ip6_addr(srv->host, port, (struct sockaddr_in6 *)&ss) == 0)
		return connect_to(c, (const struct sockaddr *)&ss);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	c->state = CM_AC_CONN_RESOLVING;
	c->gai.data = c;
	int rv = uv_getaddrinfo(c->ac->loop, &c->gai, gai_cb, srv->host, srv->port, &hints);
	if (rv != 0)
		return -EHOSTUNREACH;
	c->refs++;
	c->ac->n_handles++;
	return 0;
}

/* A host that drops SYNs, or a process that accepts and then hangs, must
 * not hold requests that were never sent: they can go elsewhere. */
static void connect_timeout_cb(uv_timer_t *t)
{
	struct cm_ac__conn *c = t->data;
	if (c->state != CM_AC_CONN_READY)
		conn_close(c, -ETIMEDOUT, false);
}

static uint64_t connect_ms(const struct cm_ac *ac)
{
	uint64_t ms = ac->timeout_ms / 4;
	if (ms < CM_AC_ATTEMPT_MIN_MS)
		ms = CM_AC_ATTEMPT_MIN_MS;
	return ms < CM_AC_CONNECT_MAX_MS ? ms : CM_AC_CONNECT_MAX_MS;
}

int cm_ac__conn_get(struct cm_ac *ac, uint32_t server, struct cm_ac__conn **out)
{
	struct cm_ac__server *srv = &ac->servers[server];
	if (srv->conn) {
		*out = srv->conn;
		return 0;
	}
	struct cm_ac__conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	int rv = uv_tcp_init(ac->loop, &c->tcp);
	if (rv != 0) {
		free(c);
		return rv;
	}
	uv_timer_init(ac->loop, &c->timer); /* cannot fail */
	c->ac = ac;
	c->server = server;
	c->refs = 2;
	c->tcp.data = c;
	c->timer.data = c;
	ac->n_handles += 2;
	cm_framer_init(&c->fr, CM_FRAME_MAX);
	msgpack_sbuffer_init(&c->out);
	msgpack_sbuffer_init(&c->wbuf);
	cm_ac__list_init(&c->waitq);
	cm_ac__list_init(&c->sentq);
	cm_ac__list_init(&c->watches);
	rv = start_connect(c);
	if (rv != 0) {
		c->state = CM_AC_CONN_CLOSING;
		close_handles(c);
		return rv;
	}
	uv_timer_start(&c->timer, connect_timeout_cb, connect_ms(ac), 0);
	srv->conn = c;
	*out = c;
	return 0;
}
