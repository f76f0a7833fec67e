/* auth.c: who calls the gateway: a client certificate or a bearer token.
 *
 * Over a TLS cluster (--server-ca) the gateway talks to the servers with its
 * own certificate, which the cluster file marks as a trusted proxy
 * ([cluster] proxies), and forwards each caller's identity in every request
 * (proto.h, REQ's `as`): the servers check the caller's rights, never the
 * gateway's. A caller proves who it is with
 *   - a client certificate (--https-ca: the CA that signs them), verified
 *     here, since libmicrohttpd only asks for one: CN = user, OUs = groups,
 *     read by the same code as the servers' (common/tls.c); or
 *   - "Authorization: Bearer TOKEN" (or the bare token, as etcd clients
 *     send it), which the meta leader resolves (server/token.c); answers
 *     are cached per thread for CM_API_TOKEN_CACHE_MS.
 * The certificate wins when a caller sends both. Neither: 401. /healthz and
 * /readyz need no identity. Over an insecure cluster nothing is checked
 * anywhere, so nothing is asked either.
 */
#include <assert.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/gw.h"
#include "common/tls.h"

#define TOKEN_MAX 128 /* bytes of a token we look up at all */

/* ---- the token cache (per thread: no lock) ---- */

static struct cm_gw_tok *cache_find(struct cm_gw *gw, const char *hash)
{
	uint64_t now = uv_now(&gw->loop);
	for (unsigned k = 0; k < CM_API_TOKEN_CACHE; k++) {
		struct cm_gw_tok *e = &gw->tokens[k];
		if (e->until > now && memcmp(e->hash, hash, sizeof(e->hash)) == 0)
			return e;
	}
	return NULL;
}

/* Keep hash -> as: in an expired slot, else in the one expiring first. */
static void cache_put(struct cm_gw *gw, const char *hash, const char *as, size_t len)
{
	struct cm_gw_tok *slot = &gw->tokens[0];
	for (unsigned k = 1; k < CM_API_TOKEN_CACHE && slot->until > 0; k++)
		if (gw->tokens[k].until < slot->until)
			slot = &gw->tokens[k];
	if (len >= sizeof(slot->as))
		return;
	memcpy(slot->hash, hash, sizeof(slot->hash));
	memcpy(slot->as, as, len);
	slot->as[len] = '\0';
	slot->until = uv_now(&gw->loop) + CM_API_TOKEN_CACHE_MS;
}

/* ---- replies ---- */

/* 401 / 403 in the API's own shape: etcd's for /v3 (gRPC UNAUTHENTICATED
 * 16, PERMISSION_DENIED 7, its messages), ours for /v1. */
void cm_gw__reply_denied(struct cm_gw_req *r, bool unauthenticated, const char *why)
{
	bool v3 = r->t.route >= CM_API_R_V3_PUT;
	unsigned status = unauthenticated ? MHD_HTTP_UNAUTHORIZED : MHD_HTTP_FORBIDDEN;
	const char *msg = !v3		      ? why
			  : unauthenticated ? "etcdserver: invalid auth token"
					    : "etcdserver: permission denied";
	json_t *j = json_pack("{s:s, s:s, s:i}", "error", msg, "message", msg, "code",
			      unauthenticated ? 16 : 7);
	char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	struct MHD_Response *m = NULL;
	if (text != NULL) {
		m = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
		if (m == NULL)
			free(text);
	}
	if (m != NULL) {
		(void)MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
		if (unauthenticated)
			(void)MHD_add_response_header(m, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
						      "Bearer realm=\"confman\"");
	}
	cm_gw__reply(r, status, m);
}

/* ---- client certificates ---- */

/* What a connection's certificate proved, found at its first request and
 * kept for the others (its TLS session does not change). */
struct cm_gw_conn {
	bool known;
	int rv; /* from_cert's verdict */
	char as[CM_AS_MAX + 1];
	char why[160];
};

void cm_gw__conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
			enum MHD_ConnectionNotificationCode toe)
{
	struct cm_gw *gw = cls;
	(void)c;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED && gw->sh->opts.https_ca_pem != NULL)
		*socket_context = calloc(1, sizeof(struct cm_gw_conn)); /* NULL: not kept */
	else if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
		free(*socket_context);
}

static int verify_cert(struct cm_gw_req *r, gnutls_session_t s, char *why, size_t why_len);

/* 1: r->as holds the certificate's identity; 0: no certificate; -EACCES:
 * one that does not verify (why says so). */
static int from_cert(struct cm_gw_req *r, char *why, size_t why_len)
{
	if (r->gw->sh->opts.https_ca_pem == NULL)
		return 0;
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct cm_gw_conn *kept = ci != NULL ? ci->socket_context : NULL;
	if (kept == NULL || !kept->known) {
		ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
		if (ci == NULL || ci->tls_session == NULL)
			return 0;
		int rv = verify_cert(r, ci->tls_session, why, why_len);
		if (kept == NULL)
			return rv;
		kept->known = true;
		kept->rv = rv;
		snprintf(kept->as, sizeof(kept->as), "%s", rv == 1 ? r->as : "");
		snprintf(kept->why, sizeof(kept->why), "%s", rv < 0 ? why : "");
	}
	snprintf(why, why_len, "%s", kept->why);
	if (kept->rv == 1) {
		r->as_len = (uint32_t)strlen(kept->as);
		memcpy(r->as, kept->as, r->as_len + 1);
	}
	return kept->rv;
}

/* from_cert's work: verify the session's certificate, read its names. */
static int verify_cert(struct cm_gw_req *r, gnutls_session_t s, char *why, size_t why_len)
{
	unsigned n = 0;
	if (gnutls_certificate_get_peers(s, &n) == NULL || n == 0)
		return 0;
	/* libmicrohttpd asks for the certificate but leaves checking it to us. */
	unsigned status = 0;
	int rv = gnutls_certificate_verify_peers2(s, &status);
	if (rv < 0 || status != 0) {
		snprintf(why, why_len, "client certificate refused: %s",
			 rv < 0			      ? gnutls_strerror(rv)
			 : status & GNUTLS_CERT_EXPIRED ? "it has expired"
			 : status & GNUTLS_CERT_NOT_ACTIVATED ? "it is not yet valid"
			 : status & GNUTLS_CERT_SIGNER_NOT_FOUND ? "it is not signed by our CA"
								 : "it did not verify");
		return -EACCES;
	}
	struct cm_identity id;
	if (cm_tls_session_identity(s, &id) != 0 || id.node_id != 0) {
		snprintf(why, why_len, "client certificate refused: no usable CN, or a node's");
		return -EACCES;
	}
	int len = cm_tls_identity_text(&id, r->as, sizeof(r->as));
	if (len <= 0) {
		snprintf(why, why_len, "client certificate refused: too many names");
		return -EACCES;
	}
	r->as_len = (uint32_t)len;
	return 1;
}

/* ---- bearer tokens ---- */

static void on_resolved(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	if (err == -ENOENT || (err == 0 && (resp->value.len == 0 || resp->value.len > CM_AS_MAX))) {
		cm_gw__reply_denied(r, true, "unknown, revoked or expired token");
		return;
	}
	if (err == -EACCES) {
		cm_gw__reply_denied(r, false, "the servers do not trust this gateway to resolve "
					      "tokens ([cluster] proxies)");
		return;
	}
	if (err != 0) {
		cm_gw__reply_errno(r, err, resp != NULL);
		return;
	}
	memcpy(r->as, resp->value.p, resp->value.len);
	r->as[resp->value.len] = '\0';
	r->as_len = resp->value.len;
	cache_put(r->gw, r->tok_hash, r->as, r->as_len);
	cm_gw__dispatch(r);
}

/* The token of an Authorization header: "Bearer TOKEN" or a bare TOKEN. */
static const char *bearer(const char *v)
{
	if (strncasecmp(v, "Bearer ", 7) == 0)
		v += 7;
	while (*v == ' ')
		v++;
	return v;
}

/* 1: r->as set from the cache; 0: resolution under way (it dispatches r);
 * -ENOENT: no token; any other error: r was answered. */
static int from_token(struct cm_gw_req *r)
{
	const char *v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
	if (v == NULL)
		return -ENOENT;
	const char *t = bearer(v);
	size_t len = strnlen(t, TOKEN_MAX + 1);
	if (len == 0 || len > TOKEN_MAX) {
		cm_gw__reply_denied(r, true, "malformed Authorization header");
		return -EINVAL;
	}
	if (cm_tls_sha256_hex(t, len, r->tok_hash) != 0) {
		cm_gw__reply_errno(r, -EIO, false);
		return -EIO;
	}
	const struct cm_gw_tok *e = cache_find(r->gw, r->tok_hash);
	if (e != NULL) {
		r->as_len = (uint32_t)strlen(e->as);
		memcpy(r->as, e->as, r->as_len + 1);
		return 1;
	}
	struct cm_req cq;
	cm_gw__req_init(&cq, CM_OP_TOKEN, "/", 1);
	cq.flags = CM_TOKEN_RESOLVE;
	cq.value = (struct cm_bytes){t, (uint32_t)len};
	int rv = cm_gw__submit(r, &cq, on_resolved); /* as itself: r->as is empty yet */
	if (rv != 0) {
		cm_gw__reply_errno(r, rv, false);
		return rv;
	}
	return 0;
}

bool cm_gw__auth(struct cm_gw_req *r)
{
	if (r->gw->sh->opts.ca == NULL || r->t.route == CM_API_R_HEALTHZ ||
	    r->t.route == CM_API_R_READYZ)
		return true; /* an insecure cluster checks nobody */
	char why[160];
	int rv = from_cert(r, why, sizeof(why));
	if (rv == 1)
		return true;
	if (rv < 0) {
		cm_gw__reply_denied(r, true, why);
		return false;
	}
	rv = from_token(r);
	if (rv == -ENOENT)
		cm_gw__reply_denied(r, true, "no client certificate and no bearer token");
	return rv == 1;
}
