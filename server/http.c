/* http.c: the node's admin HTTP endpoint (/healthz, /readyz, /metrics) on its libuv loop. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "server/http.h"

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define PROM_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define ALLOWED_METHODS "GET, HEAD"

struct cm_http {
	uv_loop_t *loop;           /* borrowed */
	struct cm_http_handlers h; /* copy */
	struct MHD_Daemon *mhd;    /* owned; NULL once stopped */
	uv_poll_t poll;            /* MHD's epoll fd */
	uv_timer_t timer;          /* MHD's next timeout */
	uint16_t port;
	unsigned open_handles;     /* close callbacks still to come */
};

/* ---- responses -------------------------------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
			     const char *type)
{
	if (r == NULL)
		return MHD_NO; /* out of memory: MHD closes the connection */
	enum MHD_Result rv = MHD_NO;
	/* Health and metrics are live values: no proxy or client may cache them. */
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) == MHD_YES &&
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES &&
	    (status != MHD_HTTP_METHOD_NOT_ALLOWED ||
	     MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, ALLOWED_METHODS) == MHD_YES))
		rv = MHD_queue_response(c, status, r);
	MHD_destroy_response(r); /* MHD holds its own reference once queued */
	return rv;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
								 MHD_RESPMEM_MUST_COPY);
	return queue(c, status, r, TEXT_PLAIN);
}

/* /healthz and /readyz: 200 with ok_text, or 503 with the check's one-line reason. */
static enum MHD_Result reply_check(struct cm_http *http, struct MHD_Connection *c,
				   int (*check)(void *, char *, size_t), const char *ok_text,
				   const char *fallback)
{
	char reason[CM_HTTP_REASON_MAX + 1]; /* + the newline we append */
	memset(reason, 0, sizeof(reason));
	if (check(http->h.arg, reason, CM_HTTP_REASON_MAX) == 0)
		return reply_text(c, MHD_HTTP_OK, ok_text);
	reason[CM_HTTP_REASON_MAX - 1] = '\0'; /* in case the check forgot */
	/* One line, so that probes and `curl` show all of it. */
	for (char *p = reason; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (reason[0] == '\0')
		strcpy(reason, fallback);
	strcat(reason, "\n");
	return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, reason);
}

static enum MHD_Result reply_metrics(struct cm_http *http, struct MHD_Connection *c)
{
	struct cm_buf b;
	cm_buf_init(&b, CM_HTTP_METRICS_MAX);
	http->h.metrics(http->h.arg, &b);
	if (b.err != 0) {
		/* A partial page would read as counters gone back to zero: refuse it. */
		cm_buf_free(&b);
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics page too large\n");
	}
	if (b.len == 0)
		return queue(c, MHD_HTTP_OK,
			     MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT),
			     PROM_TEXT);
	size_t len = b.len;
	char *page = cm_buf_steal(&b);
	/* The page can be megabytes: MHD takes it over rather than copying it. */
	struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, page, free);
	if (r == NULL)
		free(page);
	return queue(c, MHD_HTTP_OK, r, PROM_TEXT);
}

/* ---- routing ---------------------------------------------------------------- */

/* Does the request declare a body? Either header says so (RFC 9112 6.3). */
static bool has_body(struct MHD_Connection *c)
{
	if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
		return true;
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl == NULL)
		return false;
	/* "0" (or "00") is no body; anything else, malformed included, is one. */
	return cl[strspn(cl, "0")] != '\0';
}

/* The request's first call: refuse what no route accepts, before any body is read. */
static enum MHD_Result first_call(struct MHD_Connection *c, const char *method, void **req_cls)
{
	static char headers_seen; /* any non-NULL marker will do */
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (has_body(c))
		return reply_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "no request body accepted\n");
	/* Answer at the next call, once MHD has the whole request: a response
	 * queued now would make MHD close the connection (no keep-alive). */
	*req_cls = &headers_seen;
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	struct cm_http *http = cls;
	(void)version;
	(void)upload_data;
	if (*req_cls == NULL)
		return first_call(c, method, req_cls);
	/* No body was declared, so MHD has none to hand us; if it did, drop the connection. */
	if (*upload_data_size != 0)
		return MHD_NO;
	if (strcmp(url, "/healthz") == 0)
		return reply_check(http, c, http->h.healthz, "ok\n", "unhealthy");
	if (strcmp(url, "/readyz") == 0)
		return reply_check(http, c, http->h.readyz, "ready\n", "not ready");
	if (strcmp(url, "/metrics") == 0)
		return reply_metrics(http, c);
	return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* ---- driving MHD from the loop ------------------------------------------------ */

static void on_timer(uv_timer_t *t);

/*
 * The longest the endpoint sleeps without a run of MHD, whatever MHD says.
 * MHD can need a run with no socket ready and no timeout pending (it stops
 * watching its listener at the connection limit, or when accept() hits
 * EMFILE, and watches it again only at its next run); this bounds how long
 * such a state can last. One epoll_wait(0) a second costs nothing.
 */
#define MAX_SLEEP_MS 1000

/* Ask MHD when it next needs to run, even with no socket ready (timeouts). */
static void arm_timer(struct cm_http *http)
{
	MHD_UNSIGNED_LONG_LONG ms;
	if (MHD_get_timeout(http->mhd, &ms) != MHD_YES || ms > MAX_SLEEP_MS)
		ms = MAX_SLEEP_MS;
	uv_timer_start(&http->timer, on_timer, (uint64_t)ms, 0);
}

static unsigned n_connections(struct cm_http *http)
{
	const union MHD_DaemonInfo *i =
		MHD_get_daemon_info(http->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return i != NULL ? i->num_connections : 0;
}

/*
 * One bounded pass of MHD: it drains its epoll set without blocking (a
 * fixed number of events per call), accepts, reads, answers, times out. What
 * is left keeps the epoll fd readable, or makes MHD_get_timeout 0, so it is
 * done next loop iteration rather than in a loop here.
 */
static void run(struct cm_http *http)
{
	assert(http->mhd != NULL);
	unsigned before = n_connections(http);
	MHD_run(http->mhd);
	/* Connections went (timed out, closed): if that freed a slot at the
	 * limit, MHD takes its listener back only on its next run. Make that
	 * run now, or a backlog of waiting probes sits until MAX_SLEEP_MS. */
	if (n_connections(http) < before)
		uv_timer_start(&http->timer, on_timer, 0, 0);
	else
		arm_timer(http);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	(void)status; /* an error on the epoll fd: MHD's own epoll_wait reports it */
	(void)events;
	run(p->data);
}

static void on_timer(uv_timer_t *t)
{
	run(t->data);
}

static void on_close(uv_handle_t *handle)
{
	struct cm_http *http = handle->data;
	assert(http->open_handles > 0);
	if (--http->open_handles == 0)
		free(http);
}

/* ---- start and stop ----------------------------------------------------------- */

/* "a.b.c.d:port", port 0..65535 (0: any free port). */
static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(s, ':');
	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	const char *port = colon + 1;
	size_t digits = strspn(port, "0123456789");
	if (digits == 0 || digits > 5 || port[digits] != '\0')
		return -EINVAL;
	unsigned long v = strtoul(port, NULL, 10);
	if (v > 65535)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)v);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

/*
 * MHD says only that it failed. Binding the address ourselves tells why
 * (EADDRINUSE, EACCES ...); if that works, the fault was MHD's own.
 */
static int diagnose_bind(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1, rv = -EIO;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0)
		rv = -errno;
	close(fd);
	return rv;
}

static struct MHD_Daemon *start_mhd(struct cm_http *http, const struct sockaddr_in *sa,
				    const struct cm_http_opts *o)
{
	/* External polling through MHD's epoll fd: MHD starts no thread.
	 * HTTPS through MHD's own TLS, which is GnuTLS, TLS 1.3 only as on
	 * every other connection of the project. */
	bool tls = o->cert_pem != NULL;
	struct MHD_OptionItem tls_opts[] = {
		{MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)o->cert_pem},
		{MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)o->key_pem},
		{MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3"},
		{MHD_OPTION_END, 0, NULL}};
	struct MHD_OptionItem none[] = {{MHD_OPTION_END, 0, NULL}};
	return MHD_start_daemon(MHD_USE_EPOLL | (tls ? MHD_USE_TLS : 0), 0, NULL, NULL,
				on_request, http, MHD_OPTION_ARRAY, tls ? tls_opts : none,
				MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)sa,
				MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)CM_HTTP_BACKLOG,
				MHD_OPTION_CONNECTION_LIMIT, o->conn_limit,
				MHD_OPTION_PER_IP_CONNECTION_LIMIT, o->per_ip_limit,
				MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_s,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CM_HTTP_CONN_MEMORY,
				MHD_OPTION_END);
}

static bool args_ok(const struct cm_http_handlers *h, const struct cm_http_opts *o)
{
	if (h == NULL || h->healthz == NULL || h->readyz == NULL || h->metrics == NULL)
		return false;
	return o->conn_limit >= 1 && o->conn_limit <= 1024 && o->timeout_s >= 1 &&
	       o->timeout_s <= 3600 && (o->cert_pem == NULL) == (o->key_pem == NULL);
}

/* The uv side: watch MHD's epoll fd and arm its timer. */
static int start_uv(struct cm_http *http)
{
	const union MHD_DaemonInfo *ep = MHD_get_daemon_info(http->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	const union MHD_DaemonInfo *port = MHD_get_daemon_info(http->mhd, MHD_DAEMON_INFO_BIND_PORT);
	if (ep == NULL || port == NULL)
		return -EIO;
	http->port = port->port;
	int rv = uv_poll_init(http->loop, &http->poll, ep->epoll_fd);
	if (rv != 0)
		return rv; /* libuv's codes are negative errno on Unix */
	uv_timer_init(http->loop, &http->timer);
	http->poll.data = http;
	http->timer.data = http;
	http->open_handles = 2;
	/* An epoll fd is readable while its ready list is not empty. */
	rv = uv_poll_start(&http->poll, UV_READABLE, on_poll);
	assert(rv == 0); /* fails only for a closing handle or bad events */
	arm_timer(http);
	return 0;
}

int cm_http_start_opts(uv_loop_t *loop, const char *addr, const struct cm_http_handlers *h,
		       const struct cm_http_opts *opts, struct cm_http **out)
{
	struct sockaddr_in sa;
	if (loop == NULL || addr == NULL || out == NULL || !args_ok(h, opts) ||
	    parse_addr(addr, &sa) != 0)
		return -EINVAL;
	struct cm_http *http = calloc(1, sizeof(*http));
	if (http == NULL)
		return -ENOMEM;
	http->loop = loop;
	http->h = *h;
	http->mhd = start_mhd(http, &sa, opts);
	if (http->mhd == NULL) {
		int rv = diagnose_bind(&sa);
		free(http);
		return rv;
	}
	int rv = start_uv(http);
	if (rv != 0) {
		MHD_stop_daemon(http->mhd);
		free(http);
		return rv;
	}
	*out = http;
	return 0;
}

int cm_http_start(uv_loop_t *loop, const char *addr, const struct cm_http_handlers *h,
		  struct cm_http **out)
{
	const struct cm_http_opts o = {
		.conn_limit = CM_HTTP_CONN_LIMIT,
		.timeout_s = CM_HTTP_TIMEOUT_S,
		.per_ip_limit = 0,
	};
	return cm_http_start_opts(loop, addr, h, &o, out);
}

int cm_http_start_tls(uv_loop_t *loop, const char *addr, const struct cm_http_handlers *h,
		      const char *cert_pem, const char *key_pem, struct cm_http **out)
{
	if (cert_pem == NULL || key_pem == NULL)
		return -EINVAL;
	const struct cm_http_opts o = {
		.conn_limit = CM_HTTP_CONN_LIMIT,
		.timeout_s = CM_HTTP_TIMEOUT_S,
		.cert_pem = cert_pem,
		.key_pem = key_pem,
	};
	return cm_http_start_opts(loop, addr, h, &o, out);
}

uint16_t cm_http_port(const struct cm_http *h)
{
	return h->port;
}

void cm_http_stop(struct cm_http *http)
{
	assert(http->mhd != NULL); /* stopped once */
	/* uv_close takes the epoll fd out of the loop's epoll set right away
	 * (only the callback waits), so MHD may close that fd just after. */
	uv_close((uv_handle_t *)&http->poll, on_close);
	uv_close((uv_handle_t *)&http->timer, on_close);
	MHD_stop_daemon(http->mhd); /* closes every connection and the listener now */
	http->mhd = NULL;
}
