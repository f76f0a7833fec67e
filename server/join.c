/* join.c: --join: ask a running cluster for its node table before starting.
 *
 * A joining node has no cluster file: it only knows its own id and address.
 * Before its loop runs it asks the nodes named by --join, one after the
 * other, for the map (SHARDS, as a client would: the HELLO carries the
 * cluster id, so a node of another cluster refuses it), checks that the
 * table has this node (`confmanctl node add` put it there) and takes the
 * table's nodes as its peers. Later the meta group's replica it receives
 * (it is added as a learner) keeps the table current (nodes.c). A node that
 * restarts with its data already there skips this: its store has the table.
 * On a TLS cluster the exchange runs in a cm_tls session over the blocking
 * socket (this happens once, before the loop), with this node's certificate,
 * and the node asked must present a node's certificate.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/codec.h"
#include "common/tls.h"
#include "server/log.h"
#include "server/node.h"

#define JOIN_TIMEOUT_MS 5000
#define JOIN_FRAME_MAX (4u << 20)

int cm__net_parse_addr(const char *s, struct sockaddr_in *sa);

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Send what the session has to send. */
static int tls_out(int fd, struct cm_tls *t)
{
	char *d;
	size_t n;
	cm_tls_take(t, &d, &n);
	int rv = n > 0 ? send_all(fd, d, n) : 0;
	free(d);
	return rv;
}

/* Wait for bytes and read them: 0, -ETIMEDOUT, -ECONNRESET, -errno. */
static int recv_some(int fd, char *buf, size_t cap, size_t *got)
{
	struct pollfd pfd = {fd, POLLIN, 0};
	if (poll(&pfd, 1, JOIN_TIMEOUT_MS) <= 0)
		return -ETIMEDOUT;
	ssize_t r = recv(fd, buf, cap, 0);
	if (r <= 0)
		return r == 0 ? -ECONNRESET : -errno;
	*got = (size_t)r;
	return 0;
}

/* The TLS handshake, blocking; the node asked must show a node's certificate. */
static int tls_connect(int fd, struct cm_tls *t, const char *addr)
{
	static char buf[16384];
	int rv;
	while ((rv = cm_tls_handshake(t)) == 0) {
		size_t n = 0;
		if ((rv = tls_out(fd, t)) != 0 || (rv = recv_some(fd, buf, sizeof(buf), &n)) != 0 ||
		    (rv = cm_tls_feed(t, buf, n)) != 0)
			return rv;
	}
	int orv = tls_out(fd, t);
	struct cm_identity id;
	if (rv == 1 && (cm_tls_identity(t, &id) != 0 || id.node_id == 0)) {
		fprintf(stderr, "confmand: %s does not present a node's certificate\n", addr);
		return CM_EBADCERT;
	}
	if (rv < 0)
		fprintf(stderr, "confmand: TLS with %s: %s\n", addr, cm_tls_why(t));
	return rv < 0 ? CM_ETLS : orv;
}

/* Bytes into the framer: decrypted first on a TLS connection. */
static int feed(struct cm_framer *f, struct cm_tls *t, const char *p, size_t n)
{
	if (t == NULL)
		return cm_framer_feed(f, p, n);
	static char rec[16384];
	int rv = cm_tls_feed(t, p, n);
	ssize_t got;
	while (rv == 0 && (got = cm_tls_recv(t, rec, sizeof(rec))) != 0)
		rv = got < 0 ? (int)got : cm_framer_feed(f, rec, (size_t)got);
	return rv;
}

/* Read frames until one of type `want` (or an ERROR) is decoded into m.
 * m may point into the framer's buffer: the caller consumes *used bytes
 * once done with m. */
static int recv_frame(int fd, struct cm_tls *t, struct cm_framer *f, uint8_t want,
		      struct cm_msg *m, size_t *used)
{
	for (;;) {
		const char *body;
		size_t len;
		int rv = cm_framer_next(f, &body, &len);
		if (rv < 0)
			return rv;
		if (rv > 0) {
			rv = cm_codec_decode(body, len, m);
			if (rv != 0)
				return rv;
			if (m->type == want || m->type == CM_FR_ERROR) {
				*used = len;
				return 0;
			}
			cm_codec_free(m);
			cm_framer_consume(f, len);
			continue;
		}
		char buf[65536];
		size_t n = 0;
		if ((rv = recv_some(fd, buf, sizeof(buf), &n)) != 0 || (rv = feed(f, t, buf, n)) != 0)
			return rv;
	}
}

static int dial(const char *addr)
{
	struct sockaddr_in sa;
	if (cm__net_parse_addr(addr, &sa) != 0)
		return -EINVAL;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* Take the table's nodes: this node must be one of them, and active. */
static int take_table(struct cm_config *cfg, const struct cm_resp *r)
{
	const struct cm_node_addr *me = NULL;
	for (uint32_t k = 0; k < r->n_nodes; k++)
		if (r->nodes[k].id == cfg->node_id)
			me = &r->nodes[k];
	if (me == NULL || me->state != CM_NODE_ACTIVE) {
		fprintf(stderr, "confmand: node %" PRIu64 " is %s the cluster's node table: add "
				"it first (confmanctl node add %" PRIu64 " --address %s)\n",
			cfg->node_id, me ? "removed from" : "not in", cfg->node_id, cfg->listen);
		return me ? CM_ENONODE : -ENOENT;
	}
	if (me->addr.len != strlen(cfg->listen) || memcmp(me->addr.p, cfg->listen, me->addr.len)) {
		fprintf(stderr, "confmand: the cluster recorded node %" PRIu64 " at %.*s, not at "
				"--listen %s\n", cfg->node_id, (int)me->addr.len, me->addr.p, cfg->listen);
		return -EINVAL;
	}
	if (r->n_nodes > CM_MAX_PEERS)
		return -ENOSPC;
	cfg->n_nodes = 0;
	for (uint32_t k = 0; k < r->n_nodes; k++) {
		const struct cm_node_addr *a = &r->nodes[k];
		struct cm_node_info *ni = &cfg->nodes[cfg->n_nodes++];
		memset(ni, 0, sizeof(*ni));
		ni->id = a->id;
		memcpy(ni->addr, a->addr.p, a->addr.len);
		memcpy(ni->http, a->http.p, a->http.len);
		ni->state = a->state;
	}
	if (cfg->http_addr[0]) /* --http wins for this node, as with a cluster file */
		strcpy(((struct cm_node_info *)cm_config_node(cfg, cfg->node_id))->http, cfg->http_addr);
	return 0;
}

/* One node: HELLO as a client, then SHARDS. 0, a CM_E* / -errno, with a
 * message on stderr for what the operator must fix. */
static int ask(struct cm_config *cfg, const char *addr)
{
	int fd = dial(addr);
	if (fd < 0)
		return fd;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	struct cm_hello h = {CM_PROTO_VERSION, {cfg->cluster_id, (uint32_t)strlen(cfg->cluster_id)}, 0};
	struct cm_req req = {.id = 1, .op = CM_OP_SHARDS, .consistency = CM_READ_FOLLOWER};
	struct cm_tls *t = NULL;
	int rv = cfg->tls != NULL ? cm_tls_new(cfg->tls, false, &t) : 0;
	if (rv == 0 && t != NULL)
		rv = tls_connect(fd, t, addr);
	if (rv == 0)
		rv = cm_codec_hello(&sb, CM_FR_HELLO, &h);
	if (rv == 0)
		rv = cm_codec_req(&sb, &req);
	if (rv == 0 && t != NULL)
		rv = cm_tls_send(t, sb.data, sb.size);
	if (rv == 0 && t != NULL)
		rv = tls_out(fd, t);
	else if (rv == 0)
		rv = send_all(fd, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	struct cm_framer f;
	cm_framer_init(&f, JOIN_FRAME_MAX);
	struct cm_msg m;
	size_t used = 0;
	for (int step = 0; rv == 0 && step < 2; step++) {
		rv = recv_frame(fd, t, &f, step == 0 ? CM_FR_HELLO_OK : CM_FR_RESP, &m, &used);
		if (rv != 0)
			break;
		if (m.type == CM_FR_ERROR) {
			fprintf(stderr, "confmand: %s refused to let this node join: %.*s\n", addr,
				(int)m.error.message.len, m.error.message.p);
			rv = m.error.err ? m.error.err : -EPERM;
		} else if (step == 1) {
			rv = m.resp.err ? m.resp.err : take_table(cfg, &m.resp);
		}
		cm_codec_free(&m);
		cm_framer_consume(&f, used);
	}
	cm_framer_free(&f);
	cm_tls_free(t);
	close(fd);
	return rv;
}

int cm__join(struct cm_config *cfg)
{
	char list[sizeof(cfg->join)];
	strcpy(list, cfg->join);
	int rv = -EINVAL;
	char *save = NULL;
	for (char *a = strtok_r(list, ",", &save); a != NULL; a = strtok_r(NULL, ",", &save)) {
		rv = ask(cfg, a);
		if (rv == 0) {
			cm_log_info("joined through %s: %u nodes in the table", a, cfg->n_nodes);
			return 0;
		}
		cm_log_warn("join through %s: %s", a, cm_strerror(rv));
		if (rv == CM_ENONODE || rv == -ENOENT || rv == CM_EUNKNOWNPEER)
			return rv; /* the table's answer or a wrong cluster: final */
	}
	fprintf(stderr, "confmand: could not join through any of %s\n", cfg->join);
	return rv;
}
