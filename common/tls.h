/* tls.h: TLS 1.3 sessions over in-memory buffers (GnuTLS), for libuv streams. */
#ifndef CONFMAN_TLS_H
#define CONFMAN_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The session never touches a socket: the caller feeds it the ciphertext a
 * read brought (cm_tls_feed), takes what must be written (cm_tls_take) and
 * hands that to its own uv_write. So a TLS connection costs no thread and
 * runs on the loop like a plain one. GnuTLS reaches the buffers through its
 * custom transport (push/pull functions).
 */

#define CM_TLS_IN_MAX (256u << 10)  /* ciphertext received, not yet decrypted */
#define CM_TLS_OUT_MAX (128u << 20) /* ciphertext not yet taken by the caller */
#define CM_TLS_NAME_MAX 64          /* longest CN or OU value kept */
#define CM_TLS_GROUPS_MAX 8         /* OU values kept per certificate */
#define CM_TLS_WHY_MAX 256          /* a refusal's explanation */
#define CM_TLS_NODE_PREFIX "confman-node-" /* a node's CN or DNS SAN: prefix + id */

/*
 * Who is at the other end of a connection, from its certificate. Clients:
 * user is the CN and groups are the OU values. A node's certificate names
 * CM_TLS_NODE_PREFIX<id> (CN or a DNS SAN); node_id is that id, 0 for any
 * other certificate (which can never act as a peer).
 */
struct cm_identity {
	char user[CM_TLS_NAME_MAX + 1]; /* "" on a plain connection */
	char groups[CM_TLS_GROUPS_MAX][CM_TLS_NAME_MAX + 1];
	uint32_t n_groups;
	uint64_t node_id;
	bool insecure; /* plain TCP (insecure = true): nothing was proven */
};

/* Where the credentials are. ca is required; cert and key go together
 * (a client may have none: servers then refuse it). Borrowed. */
struct cm_tls_paths {
	const char *ca, *cert, *key;
};

struct cm_tls_ctx; /* credentials, shared by every session of a process */
struct cm_tls;     /* one connection's session */

/*
 * cm_tls_key_check - refuse a key file others could read: it must be a
 * regular file of mode 0600 or stricter, owned by the effective user.
 * why: filled with the file and the reason on error.
 * Returns 0, -ENOENT (or another errno from stat), -EPERM (mode or owner).
 */
int cm_tls_key_check(const char *path, char *why, size_t why_len);

/*
 * cm_tls_ctx_new - load the CA bundle, and the certificate and key when
 * given (the key checked by cm_tls_key_check first).
 * why: filled with the file and the reason on error (never key material).
 * Returns 0, -EINVAL (missing ca, cert without key, unreadable contents),
 * -EPERM (key mode or owner), -ENOENT, -ENOMEM.
 */
int cm_tls_ctx_new(const struct cm_tls_paths *p, struct cm_tls_ctx **out, char *why,
		   size_t why_len);
void cm_tls_ctx_free(struct cm_tls_ctx *x);

/*
 * cm_tls_new - a session: TLS 1.3 only, the peer's certificate verified
 * against the CA during the handshake; a server requires one.
 * Returns 0 or -ENOMEM, -EINVAL.
 */
int cm_tls_new(struct cm_tls_ctx *x, bool server, struct cm_tls **out);
void cm_tls_free(struct cm_tls *t);

/* Append received ciphertext. 0, or -ENOBUFS beyond CM_TLS_IN_MAX. */
int cm_tls_feed(struct cm_tls *t, const void *p, size_t n);
/*
 * cm_tls_handshake - advance the handshake with what was fed. Returns 1
 * when it is complete (now or before), 0 when more bytes are needed, or
 * -EACCES (we refused the peer's certificate), -EKEYREJECTED (the peer
 * refused ours: its alert), -EPROTO (any other failure); cm_tls_why says
 * why. On error an alert may wait in the output: take and send it.
 */
int cm_tls_handshake(struct cm_tls *t);
bool cm_tls_ready(const struct cm_tls *t);
/*
 * cm_tls_recv - decrypt the next record: its plaintext length (> 0), 0
 * when no complete record is buffered, -ECONNRESET when the peer closed,
 * -EKEYREJECTED when it sent an alert about our certificate (TLS 1.3: a
 * server refuses a client's certificate after the client's handshake is
 * complete), -EPROTO.
 */
ssize_t cm_tls_recv(struct cm_tls *t, void *buf, size_t cap);
/* Encrypt plaintext into the output. 0, -EAGAIN before the handshake is
 * complete, -ENOBUFS beyond CM_TLS_OUT_MAX, -EPROTO. */
int cm_tls_send(struct cm_tls *t, const void *p, size_t n);
/* The ciphertext waiting to go out: *data (malloc'ed, transferred to the
 * caller; NULL when *len is 0). */
void cm_tls_take(struct cm_tls *t, char **data, size_t *len);
/* Why the last handshake or receive failed (a static-lifetime-of-t string). */
const char *cm_tls_why(const struct cm_tls *t);
/* The peer's identity, once the handshake is complete. 0 or -EINVAL. */
int cm_tls_identity(const struct cm_tls *t, struct cm_identity *id);
/*
 * cm_tls_session_identity - cm_tls_identity for a GnuTLS session opened
 * elsewhere (libmicrohttpd's, in the gateway): session is a
 * gnutls_session_t whose handshake is complete. 0, -EINVAL (no
 * certificate, or a name too long), -ENOMEM.
 */
int cm_tls_session_identity(void *session, struct cm_identity *id);
/* An identity as "USER[ GROUP...]" (a forwarded identity's text, proto.h):
 * its length, or -ENOSPC when cap is too small. */
int cm_tls_identity_text(const struct cm_identity *id, char *buf, size_t cap);
/* The SHA-256 of p[0, len) in lower-case hex (64 digits and a NUL). 0, -EIO. */
int cm_tls_sha256_hex(const void *p, size_t len, char out[65]);
/* n random bytes from GnuTLS's key generator as 2n hex digits and a NUL
 * (out holds 2n + 1). 0, -EIO. */
int cm_tls_random_hex(char *out, size_t n);
/* The node id a name ("confman-node-7") stands for; 0 for any other name. */
uint64_t cm_tls_node_of(const char *name);

/*
 * cm_tls_cert_identity - the identity a certificate file (PEM; its first
 * certificate) names, as a server will read it from the handshake: for a
 * client to say who it is (confman-fs's log, its cache's key) before any
 * connection. Returns 0, -EINVAL (unreadable, no CN, a name too long),
 * -ENOMEM.
 */
int cm_tls_cert_identity(const char *path, struct cm_identity *id);

#endif /* CONFMAN_TLS_H */
