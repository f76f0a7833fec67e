/* net.c: TCP transport of a node: framing, handshake, peers, clients, back-pressure. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tls.h"
#include "server/log.h"
#include "server/net.h"

enum conn_state {
	CONN_HELLO = 1, /* accepted, waiting for HELLO */
	CONN_CLIENT,
	CONN_PEER_IN,   /* a peer's connection to us: we receive on it */
	CONN_DIALING,   /* our connection to a peer: we send on it */
	CONN_OUT_HELLO, /* dialed, HELLO sent, waiting for HELLO_OK */
	CONN_OUT_READY,
};

struct cm_peer;

struct cm_conn {
	uv_tcp_t tcp;
	struct cm_net *net;
	struct cm_framer fr;
	msgpack_sbuffer out; /* queued until the end of the turn */
	uint64_t node_id;    /* peer id after the handshake; 0 for clients */
	uint8_t state;
	bool closed;
	bool dirty; /* in net->dirty */
	bool linger; /* close once the queued bytes are written */
	uint32_t refs;
	size_t queued; /* bytes handed to uv_write and not yet written */
	struct cm_peer *peer; /* outbound connections only */
	uint64_t born_ms;     /* loop time of accept: a HELLO is due within CM_HELLO_MS */
	uv_connect_t connect;
	struct cm_conn *next, *prev; /* net->conns */
	/* TLS between the stream and the framer (owned; NULL: plain TCP). */
	struct cm_tls *tls;
	struct cm_identity id; /* from the peer's certificate once the handshake is done */
	bool tls_seen;         /* its first bytes were looked at (plain_client) */
};

struct cm_peer {
	struct cm_net *net;
	uint64_t id;
	struct sockaddr_in addr;
	struct cm_conn *conn; /* outbound; NULL while down */
	uv_timer_t timer;     /* reconnect */
	uint32_t backoff_ms;
	struct cm_peer_stats stats;
	uint64_t heard_ms; /* loop time of the last frame from it; 0: never */
	uint8_t space;     /* its store's level, from its last PING (CM_SPACE_*) */
	bool tls_warned;   /* a failed TLS handshake with it was logged (once until one works) */
	struct cm_beat *beats; /* owned: this turn's heartbeats, sent as one frame */
	uint32_t n_beats, cap_beats;
};

struct cm_net {
	uv_loop_t *loop;
	const struct cm_config *cfg;
	struct cm_net_handlers h;
	uv_tcp_t listener;
	struct cm_peer peers[CM_MAX_PEERS];
	uint32_t n_peers;
	bool removed; /* a peer said this node was removed: it dials no more */
	bool refused_logged[CM_MAX_PEERS]; /* by cfg->nodes index: logged once */
	struct cm_conn *conns;
	uint32_t n_conns;
	struct cm_conn *dirty[CM_MAX_CONNS + CM_MAX_PEERS];
	uint32_t n_dirty;
	struct cm_net_stats stats;
	bool stopping;
	uint32_t handles; /* open handles, to know when memory can go */
	char rbuf[64 * 1024];
};

struct write_req {
	uv_write_t req;
	struct cm_conn *conn;
	char *data; /* owned */
	size_t len;
};

static void conn_close(struct cm_conn *c);
static void peer_schedule(struct cm_peer *p);
static struct cm_peer *find_peer(struct cm_net *n, uint64_t id);

int cm__net_parse_addr(const char *s, struct sockaddr_in *sa);

int cm__net_parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port <= 0 || port > 65535)
		return -EINVAL;
	return uv_ip4_addr(host, (int)port, sa) == 0 ? 0 : -EINVAL;
}

void cm_conn_ref(struct cm_conn *c)
{
	c->refs++;
}

void cm_conn_unref(struct cm_conn *c)
{
	assert(c->refs > 0);
	if (--c->refs > 0)
		return;
	assert(c->closed);
	cm_framer_free(&c->fr);
	msgpack_sbuffer_destroy(&c->out);
	cm_tls_free(c->tls);
	free(c);
}

bool cm_conn_closed(const struct cm_conn *c)
{
	return c->closed;
}

static void on_write(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct cm_conn *c = w->conn;
	c->queued -= w->len;
	c->net->stats.bytes_out += status == 0 ? w->len : 0;
	if (!c->closed && (status != 0 || (c->linger && c->queued == 0)))
		conn_close(c);
	free(w->data);
	free(w);
	cm_conn_unref(c);
}

/* Hand data (malloc'ed, owned from here on) to libuv in one write. */
static void conn_write_bytes(struct cm_conn *c, char *data, size_t len)
{
	struct write_req *w = malloc(sizeof(*w));
	if (w == NULL) {
		free(data);
		conn_close(c);
		return;
	}
	w->conn = c;
	w->len = len;
	w->data = data;
	uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);
	cm_conn_ref(c);
	c->queued += w->len;
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
		c->queued -= w->len;
		free(w->data);
		free(w);
		cm_conn_unref(c);
		conn_close(c);
	}
}

/* Write out what the TLS session has to send (handshake, alerts, records). */
static void tls_flush(struct cm_conn *c)
{
	char *data;
	size_t len;
	cm_tls_take(c->tls, &data, &len);
	if (len > 0)
		conn_write_bytes(c, data, len);
}

/* Encrypt the queued frames, once the handshake is done (until then they
 * wait: a dialer's HELLO is queued before it). */
static void tls_write_out(struct cm_conn *c)
{
	if (!cm_tls_ready(c->tls))
		return;
	int rv = cm_tls_send(c->tls, c->out.data, c->out.size);
	c->out.size = 0;
	if (c->out.alloc > (1u << 20)) { /* an idle connection keeps no big buffer */
		msgpack_sbuffer_destroy(&c->out);
		msgpack_sbuffer_init(&c->out);
	}
	if (rv != 0) {
		cm_log_warn("TLS to %s %llu: %s", c->node_id ? "node" : "client",
			    (unsigned long long)c->node_id, cm_tls_why(c->tls));
		conn_close(c);
		return;
	}
	tls_flush(c);
}

/* Hand the connection's queued bytes to libuv in one write. */
static void conn_write_out(struct cm_conn *c)
{
	c->dirty = false;
	if (c->closed || c->out.size == 0)
		return;
	if (c->tls != NULL) {
		tls_write_out(c);
		return;
	}
	size_t len = c->out.size;
	conn_write_bytes(c, msgpack_sbuffer_release(&c->out), len);
}

static void mark_dirty(struct cm_conn *c)
{
	if (c->dirty)
		return;
	assert(c->net->n_dirty < sizeof(c->net->dirty) / sizeof(c->net->dirty[0]));
	c->dirty = true;
	cm_conn_ref(c);
	c->net->dirty[c->net->n_dirty++] = c;
}

/* The turn's heartbeats to a peer, every group's, as one BEATS frame. */
static void beats_out(struct cm_net *n, struct cm_peer *p, struct cm_conn *c)
{
	if (p->n_beats == 0)
		return;
	if (cm_codec_beats(&c->out, n->cfg->node_id, p->id, p->beats, p->n_beats) == 0) {
		n->stats.frames_out++;
		p->stats.frames_out++;
	} else {
		n->stats.dropped += p->n_beats;
		p->stats.dropped += p->n_beats;
	}
	p->n_beats = 0;
}

void cm_net_flush(struct cm_net *n)
{
	for (uint32_t k = 0; k < n->n_dirty; k++) {
		struct cm_conn *c = n->dirty[k];
		if (c->peer != NULL && !c->closed) {
			size_t before = c->out.size;
			beats_out(n, c->peer, c);
			c->peer->stats.bytes_out += c->out.size - before;
		}
		conn_write_out(c);
		cm_conn_unref(c);
	}
	n->n_dirty = 0;
}

/* The net's memory goes with its last handle, once it is stopping. */
static void net_handle_gone(struct cm_net *n)
{
	assert(n->handles > 0);
	if (--n->handles > 0 || !n->stopping)
		return;
	for (uint32_t k = 0; k < n->n_peers; k++)
		free(n->peers[k].beats);
	free(n);
}

static void on_closed(uv_handle_t *h)
{
	struct cm_conn *c = h->data;
	struct cm_net *n = c->net;
	cm_conn_unref(c);
	net_handle_gone(n);
}

static void conn_close(struct cm_conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	struct cm_net *n = c->net;
	if (c->peer != NULL) {
		c->peer->conn = NULL;
		peer_schedule(c->peer);
	} else {
		if (c->prev)
			c->prev->next = c->next;
		else
			n->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		n->n_conns--;
		if (c->state == CONN_CLIENT && n->h.on_close)
			n->h.on_close(n->h.arg, c);
	}
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Read no more; close once what is queued is written. */
static void conn_linger(struct cm_conn *c)
{
	c->linger = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (c->queued == 0)
		conn_close(c);
}

/* Send an ERROR frame, then close once it is written. */
static void conn_fail(struct cm_conn *c, int err, const char *why)
{
	c->net->stats.bad_frames++;
	if (c->closed || c->linger)
		return;
	c->linger = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	cm_codec_error(&c->out, err, why);
	conn_write_out(c);
	if (c->queued == 0)
		conn_close(c);
}

static struct cm_conn *conn_new(struct cm_net *n)
{
	struct cm_conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->net = n;
	c->refs = 1; /* released by on_closed */
	cm_framer_init(&c->fr, CM_FRAME_MAX);
	msgpack_sbuffer_init(&c->out);
	uv_tcp_init(n->loop, &c->tcp);
	c->tcp.data = c;
	n->handles++;
	return c;
}

/* ---- receiving ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)hint;
	struct cm_conn *c = h->data;
	/* One buffer per node: read_cb consumes it before the next read. */
	*buf = uv_buf_init(c->net->rbuf, sizeof(c->net->rbuf));
}

static const struct cm_node_info *known_node(const struct cm_net *n, uint64_t id)
{
	return id != 0 && id != n->cfg->node_id ? cm_config_node(n->cfg, id) : NULL;
}

static void on_hello(struct cm_conn *c, const struct cm_msg *m)
{
	struct cm_net *n = c->net;
	const struct cm_hello *h = &m->hello;
	if (h->version != CM_PROTO_VERSION) {
		cm_log_warn("refused a connection: protocol version %u", h->version);
		conn_fail(c, -EPROTONOSUPPORT, "unsupported protocol version");
		return;
	}
	if (h->cluster.len != strlen(n->cfg->cluster_id) ||
	    memcmp(h->cluster.p, n->cfg->cluster_id, h->cluster.len) != 0) {
		cm_log_warn("refused node %llu: cluster id '%.*s' is not ours ('%s')",
			    (unsigned long long)h->node_id, (int)h->cluster.len, h->cluster.p,
			    n->cfg->cluster_id);
		n->stats.refused++;
		conn_fail(c, CM_EUNKNOWNPEER, "wrong cluster id");
		return;
	}
	const struct cm_node_info *ni = h->node_id ? known_node(n, h->node_id) : NULL;
	if (c->tls != NULL && h->node_id != 0 && c->id.node_id != h->node_id) {
		/* A peer proves its id with its certificate (README, "TLS and
		 * identities"): a user's certificate never gets to be a node. */
		cm_log_warn("refused node %llu: its certificate names '%s', not %s%llu: only a "
			    "node's own certificate can act as a peer",
			    (unsigned long long)h->node_id, c->id.user, CM_TLS_NODE_PREFIX,
			    (unsigned long long)h->node_id);
		n->stats.refused++;
		conn_fail(c, CM_ENOTPEER, "the certificate does not name this node id");
		return;
	}
	if (h->node_id != 0 && (ni == NULL || ni->state != CM_NODE_ACTIVE)) {
		/* A removed node that comes back must not take part in anything:
		 * refused here, its votes never reach a group (README, "Changing
		 * the cluster"). Logged once per connection attempt. */
		if (ni == NULL || ni->state == 0 || !n->refused_logged[ni - n->cfg->nodes])
			cm_log_warn("refused %s node %llu: %s", ni == NULL ? "unknown" : "removed",
				    (unsigned long long)h->node_id,
				    ni == NULL ? "not in the node table"
					       : "it was removed from the cluster (ids are never reused)");
		if (ni != NULL)
			n->refused_logged[ni - n->cfg->nodes] = true; /* once per removed node */
		n->stats.refused++;
		conn_fail(c, ni == NULL ? CM_EUNKNOWNPEER : CM_ENONODE,
			  ni == NULL ? "unknown node id" : "this node was removed from the cluster");
		return;
	}
	c->node_id = h->node_id;
	c->state = h->node_id ? CONN_PEER_IN : CONN_CLIENT;
	struct cm_hello ok = {CM_PROTO_VERSION,
			      {n->cfg->cluster_id, (uint32_t)strlen(n->cfg->cluster_id)},
			      n->cfg->node_id};
	cm_codec_hello(&c->out, CM_FR_HELLO_OK, &ok);
	mark_dirty(c);
}

static void on_frame(struct cm_conn *c, const struct cm_msg *m)
{
	struct cm_net *n = c->net;
	n->stats.frames_in++;
	switch (c->state) {
	case CONN_HELLO:
		if (m->type != CM_FR_HELLO)
			conn_fail(c, -EPROTO, "expected HELLO");
		else
			on_hello(c, m);
		return;
	case CONN_OUT_HELLO:
		if (m->type == CM_FR_HELLO_OK && m->hello.node_id == c->node_id) {
			c->state = CONN_OUT_READY;
			c->peer->backoff_ms = 0;
			cm_log_info("connected to node %llu", (unsigned long long)c->node_id);
		} else if (m->type == CM_FR_ERROR && m->error.err == CM_ENONODE) {
			/* We were removed: take no further part, quietly (net.h). */
			if (!n->removed)
				cm_log_error("node %llu says this node was removed from the cluster: "
					     "it stops dialing its peers (its data can be deleted)",
					     (unsigned long long)c->node_id);
			bool first = !n->removed;
			n->removed = true;
			conn_close(c);
			if (first && n->h.on_removed)
				n->h.on_removed(n->h.arg);
		} else {
			cm_log_warn("node %llu refused our handshake", (unsigned long long)c->node_id);
			conn_fail(c, -EPROTO, "expected HELLO_OK");
		}
		return;
	case CONN_PEER_IN: {
		struct cm_peer *from = find_peer(n, c->node_id);
		if (from != NULL) {
			from->stats.frames_in++;
			from->heard_ms = uv_now(n->loop);
		}
		if (m->type == CM_FR_PING && m->ping_node == c->node_id) {
			if (from != NULL)
				from->space = m->ping_space;
			return;
		}
		if (m->type == CM_FR_BEATS && m->beats_from == c->node_id &&
		    m->beats_to == n->cfg->node_id) {
			for (uint32_t k = 0; k < m->n_beats && !c->closed; k++) {
				struct raft_msg rm;
				cm_codec_beat_msg(&m->beats[k], c->node_id, m->beats_to, &rm);
				n->h.on_raft(n->h.arg, c->node_id, m->beats[k].group, &rm);
			}
			return;
		}
		if (m->type != CM_FR_RAFT || m->raft.from != c->node_id ||
		    m->raft.to != n->cfg->node_id) {
			conn_fail(c, -EPROTO, "expected a Raft message from the peer");
			return;
		}
		n->h.on_raft(n->h.arg, c->node_id, m->group, &m->raft);
		return;
	}
	case CONN_CLIENT:
		if (m->type != CM_FR_REQ) {
			conn_fail(c, -EPROTO, "expected a request");
			return;
		}
		n->h.on_req(n->h.arg, c, &m->req);
		return;
	default:
		conn_fail(c, -EPROTO, "unexpected frame");
	}
}

static void drain_frames(struct cm_conn *c)
{
	const char *body;
	size_t len;
	int rv;
	while (!c->closed && !c->linger && (rv = cm_framer_next(&c->fr, &body, &len)) == 1) {
		struct cm_msg m;
		int drv = cm_codec_decode(body, len, &m);
		if (drv != 0) {
			cm_log_warn("bad frame from %s %llu: %s", c->node_id ? "node" : "client",
				    (unsigned long long)c->node_id, cm_strerror(drv));
			conn_fail(c, drv, "malformed frame");
			return;
		}
		if (c->state == CONN_PEER_IN) {
			struct cm_peer *p = find_peer(c->net, c->node_id);
			if (p != NULL)
				p->stats.bytes_in += len + CM_FRAME_HDR;
		}
		on_frame(c, &m);
		cm_codec_free(&m);
		cm_framer_consume(&c->fr, len);
	}
	if (rv < 0 && !c->closed) {
		cm_log_warn("frame over %u bytes: closing", CM_FRAME_MAX);
		conn_fail(c, -EMSGSIZE, "frame too long");
	}
}

/* ---- TLS: between the stream and the framer ---- */

static void conn_peer_name(const struct cm_conn *c, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	snprintf(buf, len, "?");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0 &&
	    ss.ss_family == AF_INET) {
		const struct sockaddr_in *sa = (const struct sockaddr_in *)&ss;
		char ip[32];
		uv_ip4_name(sa, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(sa->sin_port));
	}
}

/* A handshake failed: say why (once per peer until one works), send the
 * alert, close. */
static void tls_refused(struct cm_conn *c)
{
	char who[64];
	conn_peer_name(c, who, sizeof(who));
	if (c->peer == NULL) {
		c->net->stats.refused++;
		cm_log_warn("refused a TLS connection from %s: %s", who, cm_tls_why(c->tls));
	} else if (!c->peer->tls_warned) {
		c->peer->tls_warned = true;
		cm_log_warn("TLS with node %llu at %s failed: %s", (unsigned long long)c->node_id,
			    who, cm_tls_why(c->tls));
	}
	conn_linger(c);
}

/* The handshake is done: who is it? A node we dialed must prove its id. */
static int tls_verified(struct cm_conn *c)
{
	if (cm_tls_identity(c->tls, &c->id) != 0) {
		cm_log_warn("refused a certificate without a usable CN (at most %d bytes)",
			    CM_TLS_NAME_MAX);
		conn_close(c);
		return -EACCES;
	}
	if (c->peer == NULL)
		return 0;
	c->peer->tls_warned = false;
	if (c->id.node_id != c->node_id) {
		cm_log_warn("node %llu presents a certificate for '%s', not %s%llu: not a peer; "
			    "closing", (unsigned long long)c->node_id, c->id.user,
			    CM_TLS_NODE_PREFIX, (unsigned long long)c->node_id);
		conn_close(c);
		return -EACCES;
	}
	return 0;
}

/* Advance the handshake: 0 once it is complete and the peer verified. */
static int tls_handshake(struct cm_conn *c)
{
	int rv = cm_tls_handshake(c->tls);
	tls_flush(c);
	if (c->closed)
		return -ECONNRESET;
	if (rv == 0)
		return -EAGAIN;
	if (rv < 0) {
		tls_refused(c);
		return rv;
	}
	rv = tls_verified(c);
	if (rv == 0)
		conn_write_out(c); /* a dialer's HELLO waited for this */
	return rv;
}

/* A plain-TCP client (no --ca) starts with a frame length where a TLS
 * client sends a handshake record (0x16): tell it in words it can read. */
static bool plain_client(struct cm_conn *c, const char *p, size_t n)
{
	if (c->peer != NULL || c->tls_seen || n == 0)
		return false;
	c->tls_seen = true;
	if ((unsigned char)p[0] == 0x16)
		return false;
	char who[64];
	conn_peer_name(c, who, sizeof(who));
	cm_log_warn("refused a plain TCP connection from %s: this cluster requires TLS", who);
	c->net->stats.refused++;
	cm_codec_error(&c->out, CM_ETLS, "this cluster requires TLS: give the CA (--ca)");
	size_t len = c->out.size;
	conn_write_bytes(c, msgpack_sbuffer_release(&c->out), len);
	conn_linger(c);
	return true;
}

static void tls_in(struct cm_conn *c, const char *p, size_t n)
{
	if (plain_client(c, p, n))
		return;
	if (cm_tls_feed(c->tls, p, n) != 0) {
		conn_close(c); /* more than a record behind: not a TLS peer */
		return;
	}
	if (!cm_tls_ready(c->tls) && tls_handshake(c) != 0)
		return;
	char plain[16384]; /* a record's plaintext at most */
	ssize_t got = 0;
	while (!c->closed && !c->linger && (got = cm_tls_recv(c->tls, plain, sizeof(plain))) > 0) {
		if (cm_framer_feed(&c->fr, plain, (size_t)got) != 0) {
			conn_close(c);
			return;
		}
		drain_frames(c);
	}
	if (got < 0 && !c->closed) {
		cm_log_info("TLS from %s %llu: %s", c->node_id ? "node" : "client",
			    (unsigned long long)c->node_id, cm_tls_why(c->tls));
		tls_flush(c);
		conn_linger(c);
	} else if (!c->closed) {
		tls_flush(c); /* what receiving produced (a KeyUpdate's answer) */
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct cm_conn *c = s->data;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	if (nread == 0 || c->closed)
		return;
	c->net->stats.bytes_in += (uint64_t)nread;
	cm_conn_ref(c);
	if (c->tls != NULL)
		tls_in(c, buf->base, (size_t)nread);
	else if (cm_framer_feed(&c->fr, buf->base, (size_t)nread) != 0)
		conn_close(c);
	else
		drain_frames(c);
	cm_conn_unref(c);
}

const struct cm_identity *cm_conn_identity(const struct cm_conn *c)
{
	return &c->id;
}

static void on_accept(uv_stream_t *server, int status)
{
	struct cm_net *n = server->data;
	if (status != 0 || n->stopping)
		return;
	struct cm_conn *c = conn_new(n);
	if (c == NULL)
		return;
	c->state = CONN_HELLO;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || n->n_conns >= CM_MAX_CONNS) {
		c->closed = true;
		uv_close((uv_handle_t *)&c->tcp, on_closed);
		return;
	}
	if (n->cfg->tls != NULL && cm_tls_new(n->cfg->tls, true, &c->tls) != 0) {
		c->closed = true;
		uv_close((uv_handle_t *)&c->tcp, on_closed);
		return;
	}
	c->id.insecure = n->cfg->tls == NULL;
	c->born_ms = uv_now(n->loop);
	c->next = n->conns;
	if (n->conns)
		n->conns->prev = c;
	n->conns = c;
	n->n_conns++;
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- peers: one outbound connection each, redialled with backoff ---- */

static void on_connect(uv_connect_t *req, int status)
{
	struct cm_conn *c = req->data;
	if (c->closed)
		return;
	if (status != 0) {
		cm_log_debug("dial node %llu: %s", (unsigned long long)c->node_id, uv_strerror(status));
		conn_close(c);
		return;
	}
	struct cm_net *n = c->net;
	uv_tcp_nodelay(&c->tcp, 1);
	c->state = CONN_OUT_HELLO;
	struct cm_hello h = {CM_PROTO_VERSION,
			     {n->cfg->cluster_id, (uint32_t)strlen(n->cfg->cluster_id)},
			     n->cfg->node_id};
	cm_codec_hello(&c->out, CM_FR_HELLO, &h);
	c->id.insecure = n->cfg->tls == NULL;
	if (n->cfg->tls == NULL) {
		conn_write_out(c);
	} else if (cm_tls_new(n->cfg->tls, false, &c->tls) != 0) {
		conn_close(c);
		return;
	} else if (tls_handshake(c) != -EAGAIN) { /* the ClientHello goes out */
		return;
	}
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void peer_dial(uv_timer_t *t)
{
	struct cm_peer *p = t->data;
	struct cm_net *n = p->net;
	const struct cm_node_info *ni = cm_config_node(n->cfg, p->id);
	if (n->stopping || n->removed || p->conn != NULL || ni == NULL ||
	    ni->state != CM_NODE_ACTIVE)
		return;
	struct cm_conn *c = conn_new(n);
	if (c == NULL) {
		peer_schedule(p);
		return;
	}
	c->peer = p;
	c->node_id = p->id;
	c->state = CONN_DIALING;
	c->connect.data = c;
	p->conn = c;
	if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&p->addr, on_connect) != 0)
		conn_close(c);
}

/* Redial after a pause that doubles up to 1 s, so a dead peer costs little. */
static void peer_schedule(struct cm_peer *p)
{
	if (p->net->stopping)
		return;
	p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : 20;
	if (p->backoff_ms > 1000)
		p->backoff_ms = 1000;
	uv_timer_start(&p->timer, peer_dial, p->backoff_ms, 0);
}

static struct cm_peer *find_peer(struct cm_net *n, uint64_t id)
{
	for (uint32_t k = 0; k < n->n_peers; k++)
		if (n->peers[k].id == id)
			return &n->peers[k];
	return NULL;
}

/* Heartbeats of all groups for one peer wait for the flush: one frame each turn. */
static int queue_beat(struct cm_net *n, struct cm_peer *p, struct cm_conn *c, uint64_t group,
		      const struct raft_msg *m)
{
	if (p->n_beats == CM_BEATS_MAX)
		beats_out(n, p, c);
	if (p->n_beats == p->cap_beats) {
		uint32_t cap = p->cap_beats ? p->cap_beats * 2 : 64;
		struct cm_beat *v = realloc(p->beats, sizeof(*v) * cap);
		if (v == NULL) {
			n->stats.dropped++;
			p->stats.dropped++;
			return -ENOMEM;
		}
		p->beats = v;
		p->cap_beats = cap;
	}
	p->beats[p->n_beats++] = (struct cm_beat){
		.group = group, .type = m->type, .flags = (uint8_t)(m->force ? 2 : 0),
		.term = m->term, .commit = m->commit, .ctx = m->ctx};
	mark_dirty(c);
	return 0;
}

int cm_net_send_raft(struct cm_net *n, uint64_t to, uint64_t group, const struct raft_msg *m)
{
	struct cm_peer *p = find_peer(n, to);
	struct cm_conn *c = p ? p->conn : NULL;
	if (c == NULL || c->state != CONN_OUT_READY) {
		n->stats.dropped++;
		if (p != NULL)
			p->stats.dropped++;
		return -ENOTCONN;
	}
	/* Back-pressure: a slow peer loses messages (Raft resends), it never
	 * grows a queue without bound. */
	if (c->queued + c->out.size > CM_PEER_QUEUE_MAX) {
		n->stats.dropped++;
		p->stats.dropped++;
		return -ENOBUFS;
	}
	if (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_HEARTBEAT_RESP)
		return queue_beat(n, p, c, group, m);
	size_t before = c->out.size;
	int rv = cm_codec_raft(&c->out, group, m);
	if (rv != 0) {
		n->stats.dropped++;
		p->stats.dropped++;
		return rv;
	}
	n->stats.frames_out++;
	p->stats.frames_out++;
	p->stats.bytes_out += c->out.size - before;
	mark_dirty(c);
	return 0;
}

/* Connections that never said HELLO would hold slots (CM_MAX_CONNS) forever
 * and, at the limit, keep peers out: they get CM_HELLO_MS. */
static void sweep_silent(struct cm_net *n)
{
	uint64_t now = uv_now(n->loop);
	for (struct cm_conn *c = n->conns, *next; c; c = next) {
		next = c->next;
		if (c->state == CONN_HELLO && !c->linger && now - c->born_ms > CM_HELLO_MS)
			conn_fail(c, -ETIMEDOUT, "no HELLO in time");
	}
}

void cm_net_ping(struct cm_net *n, uint8_t space)
{
	sweep_silent(n);
	for (uint32_t k = 0; k < n->n_peers; k++) {
		struct cm_conn *c = n->peers[k].conn;
		if (c == NULL || c->state != CONN_OUT_READY ||
		    c->queued + c->out.size > CM_PEER_QUEUE_MAX)
			continue;
		if (cm_codec_ping(&c->out, n->cfg->node_id, space) == 0)
			mark_dirty(c);
	}
}

uint64_t cm_net_peer_silence(const struct cm_net *n, uint64_t id)
{
	for (uint32_t k = 0; k < n->n_peers; k++)
		if (n->peers[k].id == id)
			return n->peers[k].heard_ms ? uv_now(n->loop) - n->peers[k].heard_ms
						    : UINT64_MAX;
	return UINT64_MAX;
}

uint8_t cm_net_peer_space(const struct cm_net *n, uint64_t id, uint64_t within_ms)
{
	for (uint32_t k = 0; k < n->n_peers; k++)
		if (n->peers[k].id == id)
			return cm_net_peer_silence(n, id) <= within_ms ? n->peers[k].space : CM_SPACE_OK;
	return CM_SPACE_OK;
}

/* ---- client replies ---- */

static void client_queue(struct cm_conn *c, int rv)
{
	if (rv != 0) {
		cm_log_warn("reply not encoded: %s", cm_strerror(rv));
		return;
	}
	c->net->stats.frames_out++;
	if (c->queued + c->out.size > CM_CLIENT_QUEUE_MAX) {
		cm_log_warn("client too slow (%zu bytes queued): closing", c->queued);
		conn_close(c);
		return;
	}
	mark_dirty(c);
}

void cm_net_reply(struct cm_conn *c, const struct cm_resp *r)
{
	if (c->net->h.on_reply != NULL)
		c->net->h.on_reply(c->net->h.arg, r);
	if (c->closed || c->linger)
		return;
	client_queue(c, cm_codec_resp(&c->out, r));
}

void cm_net_event(struct cm_conn *c, const struct cm_event *e)
{
	if (c->closed || c->linger)
		return;
	client_queue(c, cm_codec_event(&c->out, e));
}

void cm_net_stats(const struct cm_net *n, struct cm_net_stats *st)
{
	*st = n->stats;
}

uint32_t cm_net_peer_count(const struct cm_net *n)
{
	return n->n_peers;
}

void cm_net_peer_stats(const struct cm_net *n, uint32_t k, struct cm_peer_stats *st)
{
	assert(k < n->n_peers);
	*st = n->peers[k].stats;
	st->id = n->peers[k].id;
	st->connected = n->peers[k].conn != NULL && n->peers[k].conn->state == CONN_OUT_READY;
}

/* ---- start and stop ---- */

static int peer_add(struct cm_net *n, const struct cm_node_info *ni)
{
	if (n->n_peers == CM_MAX_PEERS)
		return -ENOSPC;
	struct cm_peer *p = &n->peers[n->n_peers];
	memset(p, 0, sizeof(*p));
	p->net = n;
	p->id = ni->id;
	if (cm__net_parse_addr(ni->addr, &p->addr) != 0) {
		cm_log_error("node %llu: bad address '%s' (want IPv4:port)",
			     (unsigned long long)ni->id, ni->addr);
		return -EINVAL;
	}
	n->n_peers++;
	uv_timer_init(n->loop, &p->timer);
	p->timer.data = p;
	n->handles++;
	uv_timer_start(&p->timer, peer_dial, 0, 0);
	return 0;
}

static int start_peers(struct cm_net *n)
{
	for (uint32_t k = 0; k < n->cfg->n_nodes; k++) {
		const struct cm_node_info *ni = &n->cfg->nodes[k];
		if (ni->id == n->cfg->node_id || ni->state != CM_NODE_ACTIVE)
			continue;
		int rv = peer_add(n, ni);
		if (rv != 0)
			return rv;
	}
	return 0;
}

void cm_net_sync_peers(struct cm_net *n)
{
	for (uint32_t k = 0; k < n->cfg->n_nodes; k++) {
		const struct cm_node_info *ni = &n->cfg->nodes[k];
		if (ni->id == n->cfg->node_id)
			continue;
		struct cm_peer *p = find_peer(n, ni->id);
		if (p == NULL && ni->state == CM_NODE_ACTIVE) {
			if (peer_add(n, ni) != 0)
				cm_log_error("node %llu: cannot add it as a peer",
					     (unsigned long long)ni->id);
			continue;
		}
		if (p == NULL)
			continue;
		struct sockaddr_in sa;
		bool moved = cm__net_parse_addr(ni->addr, &sa) == 0 &&
			     (sa.sin_addr.s_addr != p->addr.sin_addr.s_addr || sa.sin_port != p->addr.sin_port);
		if (moved)
			p->addr = sa; /* redialled at the new address */
		if ((moved || ni->state != CM_NODE_ACTIVE) && p->conn != NULL)
			conn_close(p->conn);
		if (ni->state != CM_NODE_ACTIVE)
			uv_timer_stop(&p->timer); /* and never redialled: see peer_dial */
	}
	/* Its own connections to us go too: nothing more is read from it. */
	for (struct cm_conn *c = n->conns, *next; c != NULL; c = next) {
		next = c->next;
		const struct cm_node_info *ni = c->state == CONN_PEER_IN ? known_node(n, c->node_id) : NULL;
		if (c->state == CONN_PEER_IN && (ni == NULL || ni->state != CM_NODE_ACTIVE))
			conn_close(c);
	}
}

int cm_net_start(uv_loop_t *loop, const struct cm_config *cfg, const struct cm_net_handlers *h,
		 struct cm_net **out)
{
	struct cm_net *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return -ENOMEM;
	n->loop = loop;
	n->cfg = cfg;
	n->h = *h;
	struct sockaddr_in sa;
	const struct cm_node_info *me = cm_config_node(cfg, cfg->node_id);
	int rv = cm__net_parse_addr(me->addr, &sa);
	if (rv != 0) {
		cm_log_error("bad address '%s' for this node (want IPv4:port)", me->addr);
		free(n);
		return rv;
	}
	uv_tcp_init(loop, &n->listener);
	n->listener.data = n;
	n->handles++;
	rv = uv_tcp_bind(&n->listener, (const struct sockaddr *)&sa, 0);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)&n->listener, 512, on_accept);
	if (rv == 0)
		rv = start_peers(n);
	if (rv != 0) {
		cm_log_error("listen on %s: %s", me->addr, uv_strerror(rv));
		*out = n;
		cm_net_stop(n);
		return rv;
	}
	*out = n;
	return 0;
}

static void on_net_handle_closed(uv_handle_t *h)
{
	net_handle_gone(h->data);
}

void cm_net_stop(struct cm_net *n)
{
	/* A failed start stops the transport itself, and the node's own
	 * shutdown stops it again: closing a handle twice aborts in libuv. */
	if (n->stopping)
		return;
	n->stopping = true;
	/* Conns marked dirty this turn hold a reference until the turn's flush,
	 * which will not run when the node stops in mid-turn (a drain that
	 * ends in a tick): their bytes go nowhere now, let go of them. */
	for (uint32_t k = 0; k < n->n_dirty; k++) {
		struct cm_conn *c = n->dirty[k];
		c->dirty = false;
		cm_conn_unref(c);
	}
	n->n_dirty = 0;
	for (uint32_t k = 0; k < n->n_peers; k++) {
		if (n->peers[k].conn)
			conn_close(n->peers[k].conn);
		n->peers[k].timer.data = n;
		uv_close((uv_handle_t *)&n->peers[k].timer, on_net_handle_closed);
	}
	while (n->conns)
		conn_close(n->conns);
	n->listener.data = n;
	uv_close((uv_handle_t *)&n->listener, on_net_handle_closed);
}
