/* test_http.c: the admin HTTP endpoint, driven by a real libuv loop, probed over TCP. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "server/http.h"

/*
 * Each test runs the endpoint in a loop on the test's thread, exactly as the
 * node would, and a script on a client thread that talks plain blocking TCP
 * and records what it saw. cmocka's assertions are not thread-safe, so only
 * the test thread checks, after the client thread is joined.
 */

#define N_RESP 8
#define N_IDLE 70
#define CLIENT_TIMEOUT_S 5 /* a read that waits this long fails the request */

struct resp {
	int status; /* 0: no (complete) response */
	char ctype[96];
	char allow[32];
	long clen;   /* Content-Length, -1 if absent */
	char *body;  /* malloc'd, NUL-terminated; NULL for none */
	size_t body_len;
};

struct ctx {
	uv_loop_t loop;
	struct cm_http *http;
	uint16_t port;
	uv_async_t done;
	pthread_t client;
	void (*script)(struct ctx *);
	bool stop_sent; /* client thread only: done may be sent once, never after close */
	/* The fake node: set before the client starts, read by the handlers. */
	int health_rc, ready_rc;
	const char *health_reason, *ready_reason;
	size_t metrics_fill; /* bytes of padding comment to add to /metrics */
	pthread_t loop_thread;
	unsigned calls;
	bool off_loop_thread; /* a handler ran on some other thread */
	/* What the script saw. */
	struct resp r[N_RESP];
	double elapsed;
	int eof[4]; /* 1: the server closed that connection */
};

/* ---- the fake node ------------------------------------------------------------ */

static void note_call(struct ctx *x)
{
	x->calls++;
	if (!pthread_equal(pthread_self(), x->loop_thread))
		x->off_loop_thread = true;
}

static int fake_check(struct ctx *x, int rc, const char *why, char *reason, size_t cap)
{
	note_call(x);
	if (rc != 0)
		snprintf(reason, cap, "%s", why);
	return rc;
}

static int fake_healthz(void *arg, char *reason, size_t cap)
{
	struct ctx *x = arg;
	return fake_check(x, x->health_rc, x->health_reason, reason, cap);
}

static int fake_readyz(void *arg, char *reason, size_t cap)
{
	struct ctx *x = arg;
	return fake_check(x, x->ready_rc, x->ready_reason, reason, cap);
}

static void fake_metrics(void *arg, struct cm_buf *out)
{
	struct ctx *x = arg;
	note_call(x);
	struct cm_req_counters c = { 0 };
	cm_metrics_count_request(&c, CM_OP_PUT, 0);
	cm_metrics_write_requests(out, &c);
	cm_metrics_write_header(out, "confman_up", "Always 1.", "gauge");
	cm_metrics_write_value(out, "confman_up", NULL, 1);
	static char pad[4096];
	memset(pad, 'x', sizeof(pad));
	pad[0] = '#';
	pad[sizeof(pad) - 1] = '\n';
	for (size_t n = 0; n < x->metrics_fill && out->err == 0; n += sizeof(pad))
		cm_buf_append(out, pad, sizeof(pad));
}

static const struct cm_http_handlers fake_handlers = {
	.healthz = fake_healthz,
	.readyz = fake_readyz,
	.metrics = fake_metrics,
};

/* ---- a blocking HTTP/1.1 client -------------------------------------------------- */

static int cli_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { .tv_sec = CLIENT_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool cli_send(int fd, const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		s += w;
		n -= (size_t)w;
	}
	return true;
}

/* The value of header name (case-insensitive) in the header block, into dst. */
static void header_value(const char *hdrs, const char *name, char *dst, size_t cap)
{
	dst[0] = '\0';
	size_t n = strlen(name);
	for (const char *p = strstr(hdrs, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, n) != 0 || p[2 + n] != ':')
			continue;
		const char *v = p + 3 + n;
		v += strspn(v, " ");
		size_t len = strcspn(v, "\r");
		snprintf(dst, cap, "%.*s", (int)(len < cap ? len : cap - 1), v);
		return;
	}
}

/* Read until have holds at least want bytes (or EOF / error / timeout). */
static size_t read_until(int fd, char **buf, size_t *cap, size_t have, size_t want)
{
	while (have < want) {
		if (have + 1 >= *cap) {
			*cap *= 2;
			*buf = realloc(*buf, *cap);
		}
		ssize_t r = recv(fd, *buf + have, *cap - have - 1, 0);
		if (r <= 0)
			break;
		have += (size_t)r;
		(*buf)[have] = '\0';
		if (want == SIZE_MAX && strstr(*buf, "\r\n\r\n") != NULL)
			break;
	}
	return have;
}

/* Read one response on fd; head: the request was HEAD (no body follows). */
static void cli_read_resp(int fd, bool head, struct resp *r)
{
	size_t cap = 4096;
	char *buf = calloc(1, cap);
	size_t have = read_until(fd, &buf, &cap, 0, SIZE_MAX);
	char *end = strstr(buf, "\r\n\r\n");
	memset(r, 0, sizeof(*r));
	if (end == NULL || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
		r->status = 0;
		free(buf);
		return;
	}
	end[2] = '\0'; /* the header block keeps its last line's CRLF */
	size_t hlen = (size_t)(end - buf) + 4;
	char clen[24];
	header_value(buf, "Content-Type", r->ctype, sizeof(r->ctype));
	header_value(buf, "Allow", r->allow, sizeof(r->allow));
	header_value(buf, "Content-Length", clen, sizeof(clen));
	r->clen = clen[0] != '\0' ? strtol(clen, NULL, 10) : -1;
	size_t blen = head ? 0 : r->clen >= 0 ? (size_t)r->clen : 0;
	have = read_until(fd, &buf, &cap, have, hlen + blen);
	if (have < hlen + blen) {
		r->status = 0; /* truncated */
		free(buf);
		return;
	}
	r->body = malloc(blen + 1);
	memcpy(r->body, buf + hlen, blen);
	r->body[blen] = '\0';
	r->body_len = blen;
	free(buf);
}

/* One request on its own connection; the raw request text is sent as is. */
static void cli_request(struct ctx *x, const char *raw, struct resp *r)
{
	int fd = cli_connect(x->port);
	memset(r, 0, sizeof(*r));
	if (fd < 0)
		return;
	if (cli_send(fd, raw))
		cli_read_resp(fd, strncmp(raw, "HEAD ", 5) == 0, r);
	close(fd);
}

static void cli_get(struct ctx *x, const char *path, struct resp *r)
{
	char raw[256];
	snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
	cli_request(x, raw, r);
}

/* Did the server close fd (EOF or reset) rather than leave it open? */
static int cli_closed_by_server(int fd)
{
	char c;
	ssize_t r = recv(fd, &c, 1, 0);
	return r == 0 || (r < 0 && errno == ECONNRESET);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- running a test ---------------------------------------------------------------- */

static void on_done(uv_async_t *a)
{
	struct ctx *x = a->data;
	cm_http_stop(x->http);
	uv_close((uv_handle_t *)a, NULL);
}

static void *client_main(void *arg)
{
	struct ctx *x = arg;
	x->script(x);
	if (!x->stop_sent)
		uv_async_send(&x->done); /* the server stops */
	return NULL;
}

static struct ctx *ctx_new(void)
{
	struct ctx *x = calloc(1, sizeof(*x));
	x->health_reason = "unhealthy for a test";
	x->ready_reason = "not ready for a test";
	return x;
}

static void ctx_free(struct ctx *x)
{
	for (int i = 0; i < N_RESP; i++)
		free(x->r[i].body);
	free(x);
}

/* Serve from a fresh loop until the script is done; the loop must end clean. */
static void run_opts(struct ctx *x, const struct cm_http_opts *o, void (*script)(struct ctx *))
{
	struct cm_http_handlers h = fake_handlers;
	h.arg = x;
	assert_int_equal(uv_loop_init(&x->loop), 0);
	int rv = o != NULL ? cm_http_start_opts(&x->loop, "127.0.0.1:0", &h, o, &x->http)
			   : cm_http_start(&x->loop, "127.0.0.1:0", &h, &x->http);
	assert_int_equal(rv, 0);
	x->port = cm_http_port(x->http);
	assert_true(x->port != 0);
	assert_int_equal(uv_async_init(&x->loop, &x->done, on_done), 0);
	x->done.data = x;
	x->script = script;
	x->loop_thread = pthread_self();
	assert_int_equal(pthread_create(&x->client, NULL, client_main, x), 0);
	assert_int_equal(uv_run(&x->loop, UV_RUN_DEFAULT), 0);
	pthread_join(x->client, NULL);
	/* Every handle closed, so the memory went in the close callbacks. */
	assert_int_equal(uv_loop_close(&x->loop), 0);
	assert_false(x->off_loop_thread);
}

static void run(struct ctx *x, void (*script)(struct ctx *))
{
	run_opts(x, NULL, script);
}

/* ---- routes ------------------------------------------------------------------------- */

static void script_health_and_ready(struct ctx *x)
{
	cli_get(x, "/healthz", &x->r[0]);
	cli_get(x, "/readyz", &x->r[1]);
	cli_get(x, "/healthz?verbose=1", &x->r[2]);
}

static void test_healthz_and_readyz_ok(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	run(x, script_health_and_ready);
	assert_int_equal(x->r[0].status, 200);
	assert_string_equal(x->r[0].body, "ok\n");
	assert_string_equal(x->r[0].ctype, "text/plain; charset=utf-8");
	assert_int_equal(x->r[1].status, 200);
	assert_string_equal(x->r[1].body, "ready\n");
	assert_int_equal(x->r[2].status, 200); /* the query string is not the path */
	assert_int_equal(x->calls, 3);
	ctx_free(x);
}

static void test_failing_checks_return_503_with_reason(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	x->health_rc = 1;
	x->health_reason = "store: map 97% full";
	x->ready_rc = -1;
	x->ready_reason = "group 3: no leader\nsince 12 s"; /* made one line */
	run(x, script_health_and_ready);
	assert_int_equal(x->r[0].status, 503);
	assert_string_equal(x->r[0].body, "store: map 97% full\n");
	assert_int_equal(x->r[1].status, 503);
	assert_string_equal(x->r[1].body, "group 3: no leader since 12 s\n");
	ctx_free(x);
}

static void test_failing_check_without_reason_says_why_generically(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	x->health_rc = 1;
	x->health_reason = "";
	x->ready_rc = 1;
	x->ready_reason = "";
	run(x, script_health_and_ready);
	assert_string_equal(x->r[0].body, "unhealthy\n");
	assert_string_equal(x->r[1].body, "not ready\n");
	ctx_free(x);
}

static void test_long_reason_is_cut_to_the_cap(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	static char longer[4 * CM_HTTP_REASON_MAX];
	memset(longer, 'r', sizeof(longer) - 1);
	x->health_rc = 1;
	x->health_reason = longer;
	run(x, script_health_and_ready);
	assert_int_equal(x->r[0].status, 503);
	assert_int_equal(x->r[0].body_len, CM_HTTP_REASON_MAX - 1 + 1); /* text + newline */
	assert_int_equal(x->r[0].body[x->r[0].body_len - 1], '\n');
	ctx_free(x);
}

static void script_metrics(struct ctx *x)
{
	cli_get(x, "/metrics", &x->r[0]);
}

static void test_metrics_content_type_and_body(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	run(x, script_metrics);
	assert_int_equal(x->r[0].status, 200);
	assert_string_equal(x->r[0].ctype, "text/plain; version=0.0.4; charset=utf-8");
	assert_non_null(strstr(x->r[0].body, "# TYPE confman_requests_total counter\n"));
	assert_non_null(strstr(x->r[0].body,
			       "\nconfman_requests_total{op=\"put\",result=\"ok\"} 1\n"));
	assert_non_null(strstr(x->r[0].body, "\nconfman_up 1\n"));
	assert_int_equal(x->r[0].clen, (long)x->r[0].body_len);
	ctx_free(x);
}

static void test_metrics_large_page_arrives_whole(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	x->metrics_fill = 4u << 20;
	run(x, script_metrics);
	assert_int_equal(x->r[0].status, 200);
	assert_true(x->r[0].body_len > x->metrics_fill);
	assert_int_equal(x->r[0].body[x->r[0].body_len - 1], '\n');
	ctx_free(x);
}

static void test_metrics_page_over_cap_returns_500(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	x->metrics_fill = CM_HTTP_METRICS_MAX + 4096;
	run(x, script_metrics);
	assert_int_equal(x->r[0].status, 500);
	assert_string_equal(x->r[0].body, "metrics page too large\n");
	ctx_free(x);
}

static void script_not_found(struct ctx *x)
{
	cli_get(x, "/nope", &x->r[0]);
	cli_get(x, "/healthz/", &x->r[1]);
	cli_get(x, "/", &x->r[2]);
	cli_get(x, "/HEALTHZ", &x->r[3]);
}

static void test_unknown_paths_return_404(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	run(x, script_not_found);
	for (int i = 0; i < 4; i++)
		assert_int_equal(x->r[i].status, 404);
	assert_int_equal(x->calls, 0);
	ctx_free(x);
}

static void script_methods(struct ctx *x)
{
	cli_request(x, "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
		       "Connection: close\r\n\r\n", &x->r[0]);
	cli_request(x, "PUT /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
		       "Connection: close\r\n\r\n", &x->r[1]);
	cli_request(x, "DELETE /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &x->r[2]);
	cli_request(x, "HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &x->r[3]);
}

static void test_other_methods_return_405_and_head_works(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	run(x, script_methods);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(x->r[i].status, 405);
		assert_string_equal(x->r[i].allow, "GET, HEAD");
	}
	assert_int_equal(x->r[3].status, 200);
	assert_int_equal(x->r[3].clen, 3); /* the length of "ok\n", without the body */
	assert_int_equal(x->calls, 1);
	ctx_free(x);
}

/*
 * A body is refused from the headers alone: the body is never sent here, so
 * the answer cannot have come from reading it (and the server closing on
 * unread bytes cannot turn into a reset that eats the answer).
 */
static void script_bodies(struct ctx *x)
{
	cli_request(x, "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n"
		       "Connection: close\r\n\r\n", &x->r[0]);
	cli_request(x, "GET /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
		       "Connection: close\r\n\r\n", &x->r[1]);
	cli_request(x, "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
		       "Connection: close\r\n\r\n", &x->r[2]);
	cli_request(x, "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
		       "Expect: 100-continue\r\nConnection: close\r\n\r\n", &x->r[3]);
}

static void test_request_with_body_returns_413(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	run(x, script_bodies);
	assert_int_equal(x->r[0].status, 413);
	assert_int_equal(x->r[1].status, 413);
	assert_int_equal(x->r[2].status, 200); /* an empty body is no body */
	assert_int_equal(x->r[3].status, 413); /* and no "100 Continue" first */
	assert_int_equal(x->calls, 1);
	ctx_free(x);
}

/* Two requests on one connection: the loop keeps serving a kept-alive socket. */
static void script_keep_alive(struct ctx *x)
{
	int fd = cli_connect(x->port);
	if (fd < 0)
		return;
	if (cli_send(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"))
		cli_read_resp(fd, false, &x->r[0]);
	if (cli_send(fd, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"))
		cli_read_resp(fd, false, &x->r[1]);
	close(fd);
}

static void test_keep_alive_connection_serves_several_requests(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	run(x, script_keep_alive);
	assert_int_equal(x->r[0].status, 200);
	assert_string_equal(x->r[0].body, "ok\n");
	assert_int_equal(x->r[1].status, 200);
	assert_string_equal(x->r[1].body, "ready\n");
	ctx_free(x);
}

/*
 * A client that leaves in the middle of a large response: the server's
 * writes fail (EPIPE / ECONNRESET, never a SIGPIPE that kills the node) and
 * it goes on serving.
 */
static void script_client_leaves_mid_response(struct ctx *x)
{
	int fd = cli_connect(x->port);
	if (fd < 0)
		return;
	char some[256];
	if (cli_send(fd, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
		x->eof[0] = recv(fd, some, sizeof(some), 0) > 0;
	/* Unread bytes on close: the kernel answers the server with a reset. */
	close(fd);
	usleep(50 * 1000);
	cli_get(x, "/healthz", &x->r[0]);
}

static void test_client_leaving_mid_response_is_harmless(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	x->metrics_fill = 8u << 20;
	run(x, script_client_leaves_mid_response);
	assert_int_equal(x->eof[0], 1); /* it did start answering */
	assert_int_equal(x->r[0].status, 200);
	ctx_free(x);
}

/* ---- bounds ---------------------------------------------------------------------------- */

/*
 * More idle connections than the limit: they hold every slot until the
 * inactivity timeout (driven by the uv timer from MHD_get_timeout) closes
 * them; then the waiting /healthz is accepted and answered.
 */
static void script_idle(struct ctx *x)
{
	int idle[N_IDLE];
	/* From the first connect: a burst can overflow the accept queue, and
	 * then a connect waits out a SYN retransmission (1 s) by itself. */
	double t0 = now_s();
	for (int i = 0; i < N_IDLE; i++)
		idle[i] = cli_connect(x->port);
	cli_get(x, "/healthz", &x->r[0]);
	x->elapsed = now_s() - t0;
	x->eof[0] = idle[0] >= 0 && cli_closed_by_server(idle[0]);
	x->eof[1] = idle[N_IDLE / 2] >= 0 && cli_closed_by_server(idle[N_IDLE / 2]);
	for (int i = 0; i < N_IDLE; i++)
		if (idle[i] >= 0)
			close(idle[i]);
}

static void test_idle_connections_time_out_and_healthz_answers(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	const struct cm_http_opts o = { .conn_limit = 64, .timeout_s = 1 };
	run_opts(x, &o, script_idle);
	assert_int_equal(x->r[0].status, 200);
	assert_string_equal(x->r[0].body, "ok\n");
	/* It had to wait for the idle ones to time out (1 s; MHD adds ~0.1 s),
	 * and not for the 1 s safety timer after that (2.1 s): the run after
	 * connections closed must take the listener back at once. */
	assert_true(x->elapsed > 0.9);
	assert_true(x->elapsed < 1.9);
	assert_int_equal(x->eof[0], 1);
	assert_int_equal(x->eof[1], 1);
	ctx_free(x);
}

/* Request headers beyond CM_HTTP_CONN_MEMORY are refused by MHD itself. */
static void script_huge_headers(struct ctx *x)
{
	size_t n = 2 * CM_HTTP_CONN_MEMORY;
	char *raw = malloc(n + 128);
	int len = snprintf(raw, n + 128, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
	memset(raw + len, 'b', n);
	strcpy(raw + (size_t)len + n, "\r\nConnection: close\r\n\r\n");
	int fd = cli_connect(x->port);
	if (fd >= 0) {
		/* The server answers before it has read it all: send may fail. */
		(void)cli_send(fd, raw);
		cli_read_resp(fd, false, &x->r[0]);
		close(fd);
	}
	free(raw);
	cli_get(x, "/healthz", &x->r[1]);
}

static void test_oversized_headers_refused(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	run(x, script_huge_headers);
	assert_true(x->r[0].status == 431 || x->r[0].status == 0); /* 0: reset ate it */
	assert_int_equal(x->r[1].status, 200);
	assert_int_equal(x->calls, 1);
	ctx_free(x);
}

/* Over the per-address limit a connection is accepted and closed at once. */
static void script_per_ip(struct ctx *x)
{
	int a = cli_connect(x->port), b = cli_connect(x->port);
	usleep(50 * 1000); /* both accepted before the third arrives */
	cli_get(x, "/healthz", &x->r[0]);
	close(a);
	close(b);
	usleep(50 * 1000);
	cli_get(x, "/healthz", &x->r[1]);
}

static void test_per_ip_limit_refuses_extra_connections(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	const struct cm_http_opts o = { .conn_limit = 64, .timeout_s = 10, .per_ip_limit = 2 };
	run_opts(x, &o, script_per_ip);
	assert_int_equal(x->r[0].status, 0);
	assert_int_equal(x->r[1].status, 200);
	ctx_free(x);
}

/* Stop while a client is connected mid-request: the client sees the close. */
static void script_stop_with_open_connection(struct ctx *x)
{
	int fd = cli_connect(x->port);
	if (fd < 0)
		return;
	cli_send(fd, "GET /heal");
	usleep(50 * 1000); /* let the server accept and read it */
	x->stop_sent = true;
	uv_async_send(&x->done);
	x->eof[0] = cli_closed_by_server(fd);
	close(fd);
}

static void test_stop_closes_open_connections(void **state)
{
	(void)state;
	struct ctx *x = ctx_new();
	run(x, script_stop_with_open_connection);
	assert_int_equal(x->eof[0], 1);
	ctx_free(x);
}

/* ---- start errors ------------------------------------------------------------------------ */

static void test_start_rejects_bad_arguments(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct cm_http *h = NULL;
	struct cm_http_handlers fh = fake_handlers;
	assert_int_equal(uv_loop_init(&loop), 0);
	static const char *const bad[] = {
		"127.0.0.1", "127.0.0.1:", ":80", "localhost:80", "127.0.0.1:70000",
		"127.0.0.1:-1", "127.0.0.1:80x", "127.0.0.1:000080000", "::1:80", "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cm_http_start(&loop, bad[i], &fh, &h), -EINVAL);
	fh.metrics = NULL;
	assert_int_equal(cm_http_start(&loop, "127.0.0.1:0", &fh, &h), -EINVAL);
	fh = fake_handlers;
	struct cm_http_opts o = { .conn_limit = 0, .timeout_s = 10 };
	assert_int_equal(cm_http_start_opts(&loop, "127.0.0.1:0", &fh, &o, &h), -EINVAL);
	o = (struct cm_http_opts){ .conn_limit = 8, .timeout_s = 0 };
	assert_int_equal(cm_http_start_opts(&loop, "127.0.0.1:0", &fh, &o, &h), -EINVAL);
	assert_null(h);
	assert_int_equal(uv_loop_close(&loop), 0); /* nothing was left open */
}

static void on_walk_close(uv_handle_t *handle, void *arg)
{
	(void)arg;
	if (!uv_is_closing(handle))
		uv_close(handle, NULL);
}

static void test_start_reports_bind_errors_and_port_is_freed_by_stop(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct cm_http *a, *b = NULL;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(cm_http_start(&loop, "127.0.0.1:0", &fake_handlers, &a), 0);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", cm_http_port(a));
	assert_int_equal(cm_http_start(&loop, addr, &fake_handlers, &b), -EADDRINUSE);
	/* TEST-NET-1: no interface here has it. */
	assert_int_equal(cm_http_start(&loop, "192.0.2.1:0", &fake_handlers, &b), -EADDRNOTAVAIL);
	assert_null(b);
	cm_http_stop(a);
	/* The listener is closed by stop itself, not later: the port is free now. */
	assert_int_equal(cm_http_start(&loop, addr, &fake_handlers, &b), 0);
	cm_http_stop(b);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	uv_walk(&loop, on_walk_close, NULL); /* none expected; keeps a failure tidy */
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healthz_and_readyz_ok),
		cmocka_unit_test(test_failing_checks_return_503_with_reason),
		cmocka_unit_test(test_failing_check_without_reason_says_why_generically),
		cmocka_unit_test(test_long_reason_is_cut_to_the_cap),
		cmocka_unit_test(test_metrics_content_type_and_body),
		cmocka_unit_test(test_metrics_large_page_arrives_whole),
		cmocka_unit_test(test_metrics_page_over_cap_returns_500),
		cmocka_unit_test(test_unknown_paths_return_404),
		cmocka_unit_test(test_other_methods_return_405_and_head_works),
		cmocka_unit_test(test_request_with_body_returns_413),
		cmocka_unit_test(test_keep_alive_connection_serves_several_requests),
		cmocka_unit_test(test_client_leaving_mid_response_is_harmless),
		cmocka_unit_test(test_oversized_headers_refused),
		cmocka_unit_test(test_idle_connections_time_out_and_healthz_answers),
		cmocka_unit_test(test_per_ip_limit_refuses_extra_connections),
		cmocka_unit_test(test_stop_closes_open_connections),
		cmocka_unit_test(test_start_rejects_bad_arguments),
		cmocka_unit_test(test_start_reports_bind_errors_and_port_is_freed_by_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
