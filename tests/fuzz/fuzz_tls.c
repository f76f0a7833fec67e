/* fuzz_tls.c: libFuzzer target: frames reassembled from TLS records (common/tls.c),
 * the ciphertext cut at arbitrary points, sometimes corrupted; and garbage
 * fed to a server session's handshake.
 *
 * Each input runs a real TLS 1.3 handshake between two cm_tls sessions (the
 * credentials are made once, in memory, by GnuTLS: a CA, a node and a user),
 * then the client encrypts a stream of frames whose lengths come from the
 * input, the ciphertext goes to the server in pieces of arbitrary size, and
 * every plaintext record goes through cm_framer_* as server/net.c does.
 * Checked: nothing crashes, every frame comes out whole and in order, all of
 * them unless a byte was flipped, and then the session fails cleanly.
 */
#include <assert.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/codec.h"
#include "common/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FRAME_MAX (64u << 10)
#define PLAIN_MAX (256u << 10) /* plaintext per input */

static struct cm_tls_ctx *srv_ctx, *cli_ctx;

/* ---- credentials, made once ---- */

static void save(const char *dir, const char *name, const gnutls_datum_t *d)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert(f != NULL);
	assert(fwrite(d->data, 1, d->size, f) == d->size);
	fclose(f);
	chmod(path, 0600);
}

static gnutls_x509_privkey_t new_key(const char *dir, const char *name)
{
	gnutls_x509_privkey_t k;
	assert(gnutls_x509_privkey_init(&k) == 0);
	assert(gnutls_x509_privkey_generate(k, GNUTLS_PK_ECDSA,
					    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) == 0);
	gnutls_datum_t d;
	assert(gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d) == 0);
	save(dir, name, &d);
	gnutls_free(d.data);
	return k;
}

/* A certificate for key named cn, signed by (ca, ca_key), or self-signed. */
static gnutls_x509_crt_t new_crt(const char *dir, const char *name, gnutls_x509_privkey_t key,
				 const char *cn, gnutls_x509_crt_t ca, gnutls_x509_privkey_t ca_key)
{
	static unsigned char serial = 1;
	gnutls_x509_crt_t c;
	assert(gnutls_x509_crt_init(&c) == 0);
	gnutls_x509_crt_set_version(c, 3);
	serial++;
	gnutls_x509_crt_set_serial(c, &serial, 1);
	gnutls_x509_crt_set_activation_time(c, time(NULL) - 3600);
	gnutls_x509_crt_set_expiration_time(c, time(NULL) + 30 * 86400);
	gnutls_x509_crt_set_dn_by_oid(c, GNUTLS_OID_X520_COMMON_NAME, 0, cn, (unsigned)strlen(cn));
	gnutls_x509_crt_set_key(c, key);
	gnutls_x509_crt_set_basic_constraints(c, ca == NULL, -1);
	if (ca == NULL) {
		gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_KEY_CERT_SIGN);
	} else {
		gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_DIGITAL_SIGNATURE);
		gnutls_x509_crt_set_key_purpose_oid(c, GNUTLS_KP_TLS_WWW_SERVER, 0);
		gnutls_x509_crt_set_key_purpose_oid(c, GNUTLS_KP_TLS_WWW_CLIENT, 0);
	}
	assert(gnutls_x509_crt_sign2(c, ca ? ca : c, ca ? ca_key : key, GNUTLS_DIG_SHA256, 0) == 0);
	gnutls_datum_t d;
	assert(gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_PEM, &d) == 0);
	save(dir, name, &d);
	gnutls_free(d.data);
	return c;
}

static struct cm_tls_ctx *load(const char *dir, const char *who)
{
	char ca[256], pem[256], key[256], why[512];
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(pem, sizeof(pem), "%s/%s.pem", dir, who);
	snprintf(key, sizeof(key), "%s/%s.key", dir, who);
	struct cm_tls_paths p = {ca, pem, key};
	struct cm_tls_ctx *x = NULL;
	int rv = cm_tls_ctx_new(&p, &x, why, sizeof(why));
	if (rv != 0)
		fprintf(stderr, "fuzz_tls: %s\n", why);
	assert(rv == 0);
	return x;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char dir[] = "/tmp/fuzz-tls-XXXXXX";
	assert(mkdtemp(dir) != NULL);
	gnutls_x509_privkey_t cak = new_key(dir, "ca.key");
	gnutls_x509_crt_t ca = new_crt(dir, "ca.pem", cak, "fuzz CA", NULL, NULL);
	gnutls_x509_privkey_t nk = new_key(dir, "node.key");
	gnutls_x509_crt_t node = new_crt(dir, "node.pem", nk, "confman-node-1", ca, cak);
	gnutls_x509_privkey_t uk = new_key(dir, "user.key");
	gnutls_x509_crt_t user = new_crt(dir, "user.pem", uk, "alice", ca, cak);
	srv_ctx = load(dir, "node");
	cli_ctx = load(dir, "user");
	gnutls_x509_crt_deinit(ca);
	gnutls_x509_crt_deinit(node);
	gnutls_x509_crt_deinit(user);
	gnutls_x509_privkey_deinit(cak);
	gnutls_x509_privkey_deinit(nk);
	gnutls_x509_privkey_deinit(uk);
	const char *files[] = {"ca.key", "ca.pem", "node.key", "node.pem", "user.key", "user.pem"};
	for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
		char path[256];
		snprintf(path, sizeof(path), "%s/%s", dir, files[k]);
		unlink(path);
	}
	rmdir(dir);
	return 0;
}

/* ---- one input ---- */

static uint64_t next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void pump(struct cm_tls *from, struct cm_tls *to)
{
	char *d;
	size_t n;
	cm_tls_take(from, &d, &n);
	if (to != NULL && n > 0)
		assert(cm_tls_feed(to, d, n) == 0);
	free(d);
}

static bool handshake(struct cm_tls *c, struct cm_tls *s)
{
	for (int k = 0; k < 8; k++) {
		int rc = cm_tls_handshake(c);
		pump(c, s);
		int rs = cm_tls_handshake(s);
		pump(s, c);
		assert(rc >= 0 && rs >= 0);
		if (rc == 1 && rs == 1)
			return true;
	}
	return false;
}

static uint8_t pattern(size_t frame, size_t j)
{
	return (uint8_t)(frame * 31 + j * 7 + 1);
}

/* The frames the input asks for: 4-byte length, then a checkable body. */
static size_t build(const uint8_t *data, size_t size, char *plain, size_t *n_frames)
{
	size_t len = 0, k = 0;
	for (size_t i = 0; i + 1 < size; i += 2, k++) {
		size_t body = ((size_t)data[i] << 8 | data[i + 1]) % 40000 + 1;
		if (len + 4 + body > PLAIN_MAX)
			break;
		uint32_t be = (uint32_t)body;
		unsigned char hdr[4] = {(unsigned char)(be >> 24), (unsigned char)(be >> 16),
					(unsigned char)(be >> 8), (unsigned char)be};
		memcpy(plain + len, hdr, 4);
		for (size_t j = 0; j < body; j++)
			plain[len + 4 + j] = (char)pattern(k, j);
		len += 4 + body;
	}
	*n_frames = k;
	return len;
}

/* Decrypt what was fed, frame it, check each frame. false: the session failed. */
static bool receive(struct cm_tls *s, struct cm_framer *fr, size_t *got)
{
	static char rec[16384];
	for (;;) {
		ssize_t n = cm_tls_recv(s, rec, sizeof(rec));
		if (n == 0)
			return true;
		if (n < 0) {
			assert(n == -EPROTO || n == -EKEYREJECTED || n == -ECONNRESET);
			return false;
		}
		assert(n <= (ssize_t)sizeof(rec));
		assert(cm_framer_feed(fr, rec, (size_t)n) == 0);
		const char *body;
		size_t len;
		int rv;
		while ((rv = cm_framer_next(fr, &body, &len)) == 1) {
			for (size_t j = 0; j < len; j++)
				assert((uint8_t)body[j] == pattern(*got, j));
			cm_framer_consume(fr, len);
			(*got)++;
		}
		assert(rv == 0);
	}
}

static void records(const uint8_t *data, size_t size, uint64_t seed)
{
	static char plain[PLAIN_MAX];
	struct cm_tls *c, *s;
	assert(cm_tls_new(cli_ctx, false, &c) == 0);
	assert(cm_tls_new(srv_ctx, true, &s) == 0);
	assert(handshake(c, s));
	size_t n_frames, len = build(data + 1, size - 1, plain, &n_frames);
	for (size_t off = 0; off < len;) { /* sends of arbitrary sizes: records of any size */
		size_t n = next(&seed) % 20000 + 1;
		n = n < len - off ? n : len - off;
		assert(cm_tls_send(c, plain + off, n) == 0);
		off += n;
	}
	char *wire;
	size_t wlen;
	cm_tls_take(c, &wire, &wlen);
	bool corrupt = (data[0] & 1) && wlen > 0;
	if (corrupt)
		wire[next(&seed) % wlen] ^= (char)(next(&seed) % 255 + 1);
	struct cm_framer fr;
	cm_framer_init(&fr, FRAME_MAX);
	size_t got = 0;
	bool ok = true;
	for (size_t off = 0; off < wlen && ok;) { /* cut anywhere, as reads would */
		size_t n = next(&seed) % 70000 + 1;
		n = n < wlen - off ? n : wlen - off;
		assert(cm_tls_feed(s, wire + off, n) == 0); /* drained below: never full */
		off += n;
		ok = receive(s, &fr, &got);
	}
	assert(got <= n_frames);
	assert(corrupt || (ok && got == n_frames));
	free(wire);
	cm_framer_free(&fr);
	cm_tls_free(c);
	cm_tls_free(s);
}

/* Bytes from nowhere as a client's handshake: refused cleanly, never more. */
static void garbage(const uint8_t *data, size_t size, uint64_t seed)
{
	struct cm_tls *s;
	assert(cm_tls_new(srv_ctx, true, &s) == 0);
	for (size_t off = 1; off < size;) {
		size_t n = next(&seed) % 512 + 1;
		n = n < size - off ? n : size - off;
		assert(cm_tls_feed(s, data + off, n) == 0);
		off += n;
		int rv = cm_tls_handshake(s);
		pump(s, NULL);
		assert(rv == 0 || rv == 1 || rv == -EPROTO || rv == -EACCES || rv == -EKEYREJECTED);
		if (rv != 0)
			break;
	}
	cm_tls_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	for (size_t k = 0; k < size; k++)
		seed = (seed ^ data[k]) * 0x100000001b3ull;
	seed |= 1;
	if (data[0] & 2)
		garbage(data, size, seed);
	else
		records(data, size, seed);
	return 0;
}
