/* net.h: TCP transport of a node: framing, handshake, peers, clients, back-pressure. */
#ifndef CONFMAN_NET_H
#define CONFMAN_NET_H

#include <msgpack.h>
#include <uv.h>

#include "common/codec.h"
#include "common/tls.h"
#include "server/config.h"

#define CM_MAX_CONNS 4096             /* accepted connections */
#define CM_PEER_QUEUE_MAX (32u << 20) /* unsent bytes to one peer: then drop */
#define CM_CLIENT_QUEUE_MAX (64u << 20) /* unsent bytes to one client: then close */
#define CM_HELLO_MS 5000              /* an accepted connection must say HELLO by then */

struct cm_net;
struct cm_conn; /* a connection; reference-counted */

/* What the transport hands to the node. Messages are borrowed for the call. */
struct cm_net_handlers {
	void *arg;
	void (*on_raft)(void *arg, uint64_t from, uint64_t group, const struct raft_msg *m);
	void (*on_req)(void *arg, struct cm_conn *c, const struct cm_req *req);
	void (*on_close)(void *arg, struct cm_conn *c); /* a client connection went away */
	void (*on_reply)(void *arg, const struct cm_resp *r); /* counted for metrics; may be NULL */
	void (*on_removed)(void *arg); /* a peer says this node was removed; may be NULL */
};

/*
 * cm_net_start - listen on this node's address and dial every other node.
 * Returns 0 or a negative errno (-EADDRINUSE, -EINVAL for a bad address).
 */
int cm_net_start(uv_loop_t *loop, const struct cm_config *cfg,
		 const struct cm_net_handlers *h, struct cm_net **out);
/* A node that a peer refuses as removed (CM_ENONODE in the handshake's
 * ERROR) stops dialing: it takes no further part and cannot disrupt a group.
 * The node table changed (cfg->nodes): dial nodes added, redial nodes whose
 * address changed, drop and stop dialing nodes no longer active. */
void cm_net_sync_peers(struct cm_net *n);
/* Close everything; the memory goes once the loop has run the close callbacks. */
void cm_net_stop(struct cm_net *n);

/*
 * cm_net_send_raft - queue a Raft message for peer `to`; it goes out with
 * everything else queued this turn at cm_net_flush(). Dropped (Raft
 * tolerates it) when the peer is not connected or is CM_PEER_QUEUE_MAX
 * behind. Returns 0 or -ENOTCONN, -ENOBUFS, -EMSGSIZE, -ENOMEM (dropped).
 */
int cm_net_send_raft(struct cm_net *n, uint64_t to, uint64_t group, const struct raft_msg *m);
/* Queue a PING carrying this node's space level (CM_SPACE_*) to every
 * connected peer (once per tick: node liveness), and close accepted
 * connections that have not said HELLO within CM_HELLO_MS. */
void cm_net_ping(struct cm_net *n, uint8_t space);
/* Milliseconds (loop time) since anything arrived from peer id; UINT64_MAX
 * if nothing ever did or the peer is unknown. */
uint64_t cm_net_peer_silence(const struct cm_net *n, uint64_t id);
/* The space level peer id's last PING reported, if it was heard from within
 * within_ms; CM_SPACE_OK otherwise (a silent peer is sent nothing to store). */
uint8_t cm_net_peer_space(const struct cm_net *n, uint64_t id, uint64_t within_ms);

/* Write out every peer's queued messages: one write per peer per turn. */
void cm_net_flush(struct cm_net *n);

/* Reply on a client connection (dropped if it closed). */
void cm_net_reply(struct cm_conn *c, const struct cm_resp *r);
void cm_net_event(struct cm_conn *c, const struct cm_event *e);
void cm_conn_ref(struct cm_conn *c);
void cm_conn_unref(struct cm_conn *c);
bool cm_conn_closed(const struct cm_conn *c);
/*
 * cm_conn_identity - who is at the other end of a client connection, from
 * its certificate (common/tls.h): user = CN, groups = OU values; node_id
 * when the certificate is a node's. With insecure = true every connection
 * has insecure set and no name. Valid while c is referenced; filled before
 * the first request reaches on_req.
 */
const struct cm_identity *cm_conn_identity(const struct cm_conn *c);

/* Counters for status and metrics. */
struct cm_net_stats {
	uint64_t frames_in, frames_out, bytes_in, bytes_out, dropped, refused, bad_frames;
};
void cm_net_stats(const struct cm_net *n, struct cm_net_stats *st);

/* Traffic with one peer node: peer k of this node (k < count), for metrics. */
struct cm_peer_stats {
	uint64_t id;
	bool connected;
	uint64_t frames_in, frames_out, bytes_in, bytes_out, dropped;
};
uint32_t cm_net_peer_count(const struct cm_net *n);
void cm_net_peer_stats(const struct cm_net *n, uint32_t k, struct cm_peer_stats *st);

#endif /* CONFMAN_NET_H */
