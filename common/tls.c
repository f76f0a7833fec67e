/* tls.c: TLS 1.3 sessions over in-memory buffers (GnuTLS), for libuv streams.
 *
 * GnuTLS is the project's one TLS stack: Debian's libmicrohttpd (the
 * gateway) is built on it, so OpenSSL would have been a second one. Its
 * custom transport lets a session read and write two bounded buffers, so a
 * connection stays an ordinary non-blocking libuv stream.
 */
#include <assert.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/tls.h"

/* TLS 1.3 and nothing older: no downgrade, no renegotiation to reason about. */
#define PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3"

struct cm_tls_ctx {
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t prio;
};

struct tbuf {
	char *p; /* owned */
	size_t off, len, cap; /* unread bytes are p[off, len) */
};

struct cm_tls {
	gnutls_session_t s;
	struct tbuf in, out;
	bool ready;
	char why[CM_TLS_WHY_MAX];
};

/* ---- bounded buffers ---- */

static int tbuf_append(struct tbuf *b, const void *p, size_t n, size_t max)
{
	if (b->off > 0 && b->off == b->len)
		b->off = b->len = 0;
	if (n > max || b->len - b->off > max - n)
		return -ENOBUFS;
	if (b->off > 0 && b->len + n > b->cap) { /* room at the front: use it */
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		while (cap < b->len + n)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (q == NULL)
			return -ENOMEM;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* ---- GnuTLS's custom transport ---- */

static ssize_t pull(gnutls_transport_ptr_t arg, void *p, size_t n)
{
	struct cm_tls *t = arg;
	size_t avail = t->in.len - t->in.off;
	if (avail == 0) {
		gnutls_transport_set_errno(t->s, EAGAIN); /* non-blocking: come back later */
		return -1;
	}
	if (n > avail)
		n = avail;
	memcpy(p, t->in.p + t->in.off, n);
	t->in.off += n;
	return (ssize_t)n;
}

/* Only consulted with a handshake timeout, which is off: the caller's own
 * deadlines (HELLO, connect) bound a stalled handshake instead. */
static int pull_timeout(gnutls_transport_ptr_t arg, unsigned ms)
{
	struct cm_tls *t = arg;
	(void)ms;
	return t->in.len > t->in.off ? 1 : 0;
}

static ssize_t push(gnutls_transport_ptr_t arg, const void *p, size_t n)
{
	struct cm_tls *t = arg;
	int rv = tbuf_append(&t->out, p, n, CM_TLS_OUT_MAX);
	if (rv != 0) {
		gnutls_transport_set_errno(t->s, -rv);
		return -1;
	}
	return (ssize_t)n;
}

/* ---- credentials ---- */

int cm_tls_key_check(const char *path, char *why, size_t why_len)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		int e = errno;
		snprintf(why, why_len, "key file %s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, why_len, "key file %s: not a regular file", path);
		return -EPERM;
	}
	if (st.st_uid != geteuid()) {
		snprintf(why, why_len, "key file %s: owned by uid %u, not by this user (uid %u)",
			 path, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(why, why_len,
			 "key file %s: mode %04o lets other users read it; it must be 0600 or "
			 "stricter (chmod 600 %s)",
			 path, (unsigned)(st.st_mode & 07777), path);
		return -EPERM;
	}
	return 0;
}

static int ctx_load(struct cm_tls_ctx *x, const struct cm_tls_paths *p, char *why, size_t len)
{
	int n = gnutls_certificate_set_x509_trust_file(x->cred, p->ca, GNUTLS_X509_FMT_PEM);
	if (n <= 0) {
		snprintf(why, len, "CA bundle %s: %s", p->ca,
			 n < 0 ? gnutls_strerror(n) : "no certificate in it");
		return -EINVAL;
	}
	if (p->cert != NULL) {
		int rv = gnutls_certificate_set_x509_key_file2(x->cred, p->cert, p->key,
							       GNUTLS_X509_FMT_PEM, NULL, 0);
		if (rv < 0) {
			snprintf(why, len, "certificate %s with key %s: %s", p->cert, p->key,
				 gnutls_strerror(rv));
			return -EINVAL;
		}
	}
	if (gnutls_priority_init(&x->prio, PRIORITY, NULL) < 0) {
		snprintf(why, len, "this GnuTLS does not offer TLS 1.3");
		return -EINVAL;
	}
	return 0;
}

int cm_tls_ctx_new(const struct cm_tls_paths *p, struct cm_tls_ctx **out, char *why,
		   size_t why_len)
{
	if (p->ca == NULL || p->ca[0] == '\0') {
		snprintf(why, why_len, "no CA bundle given");
		return -EINVAL;
	}
	if ((p->cert == NULL) != (p->key == NULL)) {
		snprintf(why, why_len, "a certificate needs its key, and a key its certificate");
		return -EINVAL;
	}
	if (p->key != NULL) {
		int rv = cm_tls_key_check(p->key, why, why_len);
		if (rv != 0)
			return rv;
	}
	struct cm_tls_ctx *x = calloc(1, sizeof(*x));
	if (x == NULL || gnutls_certificate_allocate_credentials(&x->cred) < 0) {
		free(x);
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	int rv = ctx_load(x, p, why, why_len);
	if (rv != 0) {
		gnutls_certificate_free_credentials(x->cred);
		free(x);
		return rv;
	}
	*out = x;
	return 0;
}

void cm_tls_ctx_free(struct cm_tls_ctx *x)
{
	if (x == NULL)
		return;
	gnutls_priority_deinit(x->prio);
	gnutls_certificate_free_credentials(x->cred);
	free(x);
}

/* ---- sessions ---- */

int cm_tls_new(struct cm_tls_ctx *x, bool server, struct cm_tls **out)
{
	struct cm_tls *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	/* No tickets: connections are long-lived, resumption buys nothing. */
	unsigned flags = (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK |
			 GNUTLS_NO_TICKETS;
	if (gnutls_init(&t->s, flags) < 0) {
		free(t);
		return -ENOMEM;
	}
	if (gnutls_priority_set(t->s, x->prio) < 0 ||
	    gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, x->cred) < 0) {
		gnutls_deinit(t->s);
		free(t);
		return -EINVAL;
	}
	if (server) {
		gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
		/* No list of acceptable CAs: a client then sends whatever it has,
		 * and a certificate from another CA is refused as such (and
		 * logged so), not taken for a missing one. */
		gnutls_certificate_send_x509_rdn_sequence(t->s, 1);
	}
	/* Chain, dates and signatures are checked inside the handshake; names
	 * are ours to check (cm_tls_identity), there is no host name. */
	gnutls_session_set_verify_cert(t->s, NULL, 0);
	gnutls_transport_set_ptr(t->s, t);
	gnutls_transport_set_push_function(t->s, push);
	gnutls_transport_set_pull_function(t->s, pull);
	gnutls_transport_set_pull_timeout_function(t->s, pull_timeout);
	gnutls_handshake_set_timeout(t->s, 0);
	*out = t;
	return 0;
}

void cm_tls_free(struct cm_tls *t)
{
	if (t == NULL)
		return;
	gnutls_deinit(t->s);
	free(t->in.p);
	free(t->out.p);
	free(t);
}

int cm_tls_feed(struct cm_tls *t, const void *p, size_t n)
{
	return tbuf_append(&t->in, p, n, CM_TLS_IN_MAX);
}

/* The verification status in words: the cause first, GnuTLS's text after. */
static void verify_why(struct cm_tls *t)
{
	unsigned st = gnutls_session_get_verify_cert_status(t->s);
	const char *cause = (st & GNUTLS_CERT_EXPIRED)            ? "it has expired"
			    : (st & GNUTLS_CERT_NOT_ACTIVATED)    ? "it is not yet valid"
			    : (st & GNUTLS_CERT_SIGNER_NOT_FOUND) ? "it is not signed by our CA"
			    : (st & GNUTLS_CERT_REVOKED)          ? "it was revoked"
								  : "it did not verify";
	gnutls_datum_t txt = {NULL, 0};
	gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &txt, 0);
	snprintf(t->why, sizeof(t->why), "peer certificate refused: %s (%s)", cause,
		 txt.data ? (const char *)txt.data : "no detail");
	gnutls_free(txt.data);
}

static bool cert_alert(gnutls_alert_description_t a)
{
	return a == GNUTLS_A_BAD_CERTIFICATE || a == GNUTLS_A_UNSUPPORTED_CERTIFICATE ||
	       a == GNUTLS_A_CERTIFICATE_REVOKED || a == GNUTLS_A_CERTIFICATE_EXPIRED ||
	       a == GNUTLS_A_CERTIFICATE_UNKNOWN || a == GNUTLS_A_UNKNOWN_CA ||
	       a == GNUTLS_A_ACCESS_DENIED || a == GNUTLS_A_CERTIFICATE_REQUIRED;
}

/* A GnuTLS failure: explain it, tell the peer (an alert in the output). */
static int fail(struct cm_tls *t, int rv)
{
	if (rv == GNUTLS_E_FATAL_ALERT_RECEIVED || rv == GNUTLS_E_WARNING_ALERT_RECEIVED) {
		gnutls_alert_description_t a = gnutls_alert_get(t->s);
		snprintf(t->why, sizeof(t->why), "the peer refused us (TLS alert: %s)",
			 gnutls_alert_get_name(a));
		return cert_alert(a) ? -EKEYREJECTED : -EPROTO;
	}
	gnutls_alert_send_appropriate(t->s, rv);
	if (rv == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		verify_why(t);
		return -EACCES;
	}
	if (rv == GNUTLS_E_NO_CERTIFICATE_FOUND || rv == GNUTLS_E_CERTIFICATE_REQUIRED) {
		snprintf(t->why, sizeof(t->why), "the peer sent no certificate");
		return -EACCES;
	}
	snprintf(t->why, sizeof(t->why), "TLS: %s", gnutls_strerror(rv));
	return -EPROTO;
}

int cm_tls_handshake(struct cm_tls *t)
{
	if (t->ready)
		return 1;
	int rv = gnutls_handshake(t->s);
	if (rv == GNUTLS_E_SUCCESS) {
		t->ready = true;
		return 1;
	}
	if (rv == GNUTLS_E_AGAIN || rv == GNUTLS_E_INTERRUPTED)
		return 0;
	return fail(t, rv);
}

bool cm_tls_ready(const struct cm_tls *t)
{
	return t->ready;
}

ssize_t cm_tls_recv(struct cm_tls *t, void *buf, size_t cap)
{
	assert(t->ready);
	ssize_t rv = gnutls_record_recv(t->s, buf, cap);
	if (rv > 0)
		return rv;
	if (rv == 0) {
		snprintf(t->why, sizeof(t->why), "the peer closed the TLS session");
		return -ECONNRESET;
	}
	if (rv == GNUTLS_E_AGAIN || rv == GNUTLS_E_INTERRUPTED)
		return 0;
	return fail(t, (int)rv);
}

int cm_tls_send(struct cm_tls *t, const void *p, size_t n)
{
	if (!t->ready)
		return -EAGAIN;
	const char *q = p;
	while (n > 0) {
		ssize_t w = gnutls_record_send(t->s, q, n);
		if (w < 0) {
			snprintf(t->why, sizeof(t->why), "TLS: %s", gnutls_strerror((int)w));
			return w == GNUTLS_E_PUSH_ERROR ? -ENOBUFS : -EPROTO;
		}
		q += w;
		n -= (size_t)w;
	}
	return 0;
}

void cm_tls_take(struct cm_tls *t, char **data, size_t *len)
{
	*len = t->out.len - t->out.off;
	if (*len == 0) {
		*data = NULL;
		return;
	}
	if (t->out.off > 0)
		memmove(t->out.p, t->out.p + t->out.off, *len);
	*data = t->out.p;
	t->out = (struct tbuf){NULL, 0, 0, 0};
}

const char *cm_tls_why(const struct cm_tls *t)
{
	return t->why[0] ? t->why : "no error";
}

/* ---- identities ---- */

uint64_t cm_tls_node_of(const char *name)
{
	size_t plen = strlen(CM_TLS_NODE_PREFIX);
	if (strncmp(name, CM_TLS_NODE_PREFIX, plen) != 0)
		return 0;
	const char *d = name + plen;
	if (*d < '1' || *d > '9' || strlen(d) > 10) /* no sign, no leading 0 */
		return 0;
	uint64_t v = 0;
	for (; *d; d++) {
		if (*d < '0' || *d > '9')
			return 0;
		v = v * 10 + (uint64_t)(*d - '0');
	}
	return v <= UINT32_MAX ? v : 0;
}

/* The node id of a certificate: its CN's, else its first DNS SAN's of the
 * form CM_TLS_NODE_PREFIX<id>; 0 when it names no node. */
static uint64_t crt_node(gnutls_x509_crt_t crt, const char *cn)
{
	uint64_t id = cm_tls_node_of(cn);
	for (unsigned k = 0; id == 0 && k < 64; k++) {
		char name[CM_TLS_NAME_MAX + 1];
		size_t len = sizeof(name) - 1;
		int type = gnutls_x509_crt_get_subject_alt_name(crt, k, name, &len, NULL);
		if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (type != GNUTLS_SAN_DNSNAME || len >= sizeof(name))
			continue;
		name[len] = '\0';
		id = cm_tls_node_of(name);
	}
	return id;
}

/* CN and OU values; a value too long to keep refuses the certificate. */
static int crt_names(gnutls_x509_crt_t crt, struct cm_identity *id)
{
	size_t len = sizeof(id->user);
	int rv = gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, id->user,
					       &len);
	if (rv < 0 || strlen(id->user) != len)
		return -EINVAL; /* no CN, too long, or a NUL inside */
	for (unsigned k = 0; id->n_groups < CM_TLS_GROUPS_MAX; k++) {
		char *g = id->groups[id->n_groups];
		len = CM_TLS_NAME_MAX + 1;
		rv = gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_ORGANIZATIONAL_UNIT_NAME, k,
						   0, g, &len);
		if (rv == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (rv < 0 || strlen(g) != len)
			return -EINVAL;
		id->n_groups++;
	}
	return 0;
}

int cm_tls_identity(const struct cm_tls *t, struct cm_identity *id)
{
	memset(id, 0, sizeof(*id));
	if (!t->ready)
		return -EINVAL;
	return cm_tls_session_identity(t->s, id);
}

int cm_tls_session_identity(void *session, struct cm_identity *id)
{
	memset(id, 0, sizeof(*id));
	unsigned n = 0;
	const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
	if (certs == NULL || n == 0)
		return -EINVAL;
	gnutls_x509_crt_t crt;
	if (gnutls_x509_crt_init(&crt) < 0)
		return -ENOMEM;
	int rv = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0 ? -EINVAL : 0;
	if (rv == 0)
		rv = crt_names(crt, id);
	if (rv == 0)
		id->node_id = crt_node(crt, id->user);
	gnutls_x509_crt_deinit(crt);
	if (rv != 0)
		memset(id, 0, sizeof(*id));
	return rv;
}

int cm_tls_identity_text(const struct cm_identity *id, char *buf, size_t cap)
{
	int len = snprintf(buf, cap, "%s", id->user);
	for (uint32_t k = 0; len >= 0 && (size_t)len < cap && k < id->n_groups; k++)
		len += snprintf(buf + len, cap - (size_t)len, " %s", id->groups[k]);
	return len < 0 || (size_t)len >= cap ? -ENOSPC : len;
}

/* ---- digests and random ---- */

static void hex(const unsigned char *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t k = 0; k < n; k++) {
		out[2 * k] = digits[d[k] >> 4];
		out[2 * k + 1] = digits[d[k] & 15];
	}
	out[2 * n] = '\0';
}

int cm_tls_sha256_hex(const void *p, size_t len, char out[65])
{
	unsigned char d[32];
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, p, len, d) < 0)
		return -EIO;
	hex(d, sizeof(d), out);
	return 0;
}

int cm_tls_random_hex(char *out, size_t n)
{
	unsigned char d[64];
	if (n > sizeof(d) || gnutls_rnd(GNUTLS_RND_KEY, d, n) < 0)
		return -EIO;
	hex(d, n, out);
	return 0;
}

int cm_tls_cert_identity(const char *path, struct cm_identity *id)
{
	memset(id, 0, sizeof(*id));
	gnutls_datum_t pem = {NULL, 0};
	if (gnutls_load_file(path, &pem) < 0)
		return -EINVAL;
	gnutls_x509_crt_t crt;
	int rv = gnutls_x509_crt_init(&crt) < 0 ? -ENOMEM : 0;
	if (rv == 0) {
		rv = gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM) < 0 ? -EINVAL : 0;
		if (rv == 0)
			rv = crt_names(crt, id);
		if (rv == 0)
			id->node_id = crt_node(crt, id->user);
		gnutls_x509_crt_deinit(crt);
	}
	gnutls_free(pem.data);
	if (rv != 0)
		memset(id, 0, sizeof(*id));
	return rv;
}
