/* http.h: the node's admin HTTP endpoint (/healthz, /readyz, /metrics) on its libuv loop. */
#ifndef CONFMAN_HTTP_H
#define CONFMAN_HTTP_H

/*
 * libmicrohttpd parses HTTP; this module runs it inside the node's loop with
 * no thread of its own: MHD is started with external epoll polling, its
 * epoll fd is watched by a uv_poll_t and its timeouts by a uv_timer_t. Every
 * handler below is therefore called on the loop thread, from those handles'
 * callbacks like any other node code, and may read node state without
 * locking. It must not block: the whole node waits while it runs.
 *
 * Routes (GET, and HEAD which MHD answers as GET without the body):
 *   /healthz  200 "ok\n"     or 503 "REASON\n"
 *   /readyz   200 "ready\n"  or 503 "REASON\n"
 *   /metrics  200, Content-Type: text/plain; version=0.0.4; charset=utf-8
 *             (500 when the page passes CM_HTTP_METRICS_MAX)
 *   anything else 404. Other methods get 405 (with Allow), and a request
 *   that declares a body (Content-Length > 0 or Transfer-Encoding) 413,
 *   both answered from the headers alone: the body is never read, and the
 *   connection is closed after the answer. Other connections are kept
 *   alive (HTTP/1.1) until idle for the timeout.
 * Bounds: CM_HTTP_CONN_LIMIT connections (more wait in the listen backlog
 * until one closes), CM_HTTP_TIMEOUT_S seconds of inactivity closes a
 * connection, CM_HTTP_CONN_MEMORY bytes of buffers per connection (longer
 * request headers get 431 from MHD).
 */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "server/metrics.h"

#define CM_HTTP_CONN_LIMIT 64           /* connections served at once */
#define CM_HTTP_TIMEOUT_S 10            /* idle seconds before a connection is closed */
#define CM_HTTP_CONN_MEMORY (32u << 10) /* MHD's buffers per connection */
#define CM_HTTP_BACKLOG 64              /* listen(2) backlog */
#define CM_HTTP_REASON_MAX 256          /* bytes of a 503 reason, NUL included */
#define CM_HTTP_METRICS_MAX CM_BUF_MAX_DEFAULT /* bytes of one /metrics page */

struct cm_http;

/* What the endpoint asks the node. Called on the loop thread; arg is passed back. */
struct cm_http_handlers {
	void *arg; /* borrowed; must outlive the endpoint */
	/* 0 when healthy, else nonzero and a one-line reason written to reason
	 * (cap bytes, NUL-terminated; a newline in it is replaced by a space). */
	int (*healthz)(void *arg, char *reason, size_t cap);
	/* As healthz, for readiness (serving requests, caught up). */
	int (*readyz)(void *arg, char *reason, size_t cap);
	/* Append the whole Prometheus text exposition to out. Writes past the
	 * buffer's cap fail and make the page a 500: no need to check each one. */
	void (*metrics)(void *arg, struct cm_buf *out);
};

/* Limits of one endpoint; cm_http_start uses the defaults above. */
struct cm_http_opts {
	unsigned conn_limit;      /* 1..1024 */
	unsigned timeout_s;       /* 1..3600 */
	unsigned per_ip_limit;    /* connections from one address; 0: no limit */
	/* HTTPS (TLS 1.3) with this certificate and key, PEM text (borrowed:
	 * alive until cm_http_stop); NULL: plain HTTP. A node of a TLS cluster
	 * serves with its own certificate; only insecure = true serves HTTP. */
	const char *cert_pem, *key_pem;
};

/*
 * cm_http_start - listen on addr ("IPv4:port"; port 0 picks a free port,
 * see cm_http_port) and serve the routes above from loop.
 *   loop: borrowed; runs the endpoint until cm_http_stop.
 *   h: copied; every callback must be non-NULL.
 *   out: the endpoint, owned by the caller until cm_http_stop.
 * Returns 0, or -EINVAL (bad address or handlers), -EADDRINUSE,
 * -EADDRNOTAVAIL, -EACCES (from bind), -ENOMEM, -EIO (MHD would not start),
 * or another negative errno from socket(2)/listen(2)/libuv. On error
 * nothing is left open and *out is untouched.
 */
int cm_http_start(uv_loop_t *loop, const char *addr, const struct cm_http_handlers *h,
		  struct cm_http **out);
/* cm_http_start over HTTPS (cert_pem, key_pem: as in cm_http_opts). */
int cm_http_start_tls(uv_loop_t *loop, const char *addr, const struct cm_http_handlers *h,
		      const char *cert_pem, const char *key_pem, struct cm_http **out);

/* cm_http_start_opts - cm_http_start with explicit limits (-EINVAL when out of range). */
int cm_http_start_opts(uv_loop_t *loop, const char *addr, const struct cm_http_handlers *h,
		       const struct cm_http_opts *opts, struct cm_http **out);

/* cm_http_port - the port the endpoint listens on (what port 0 became). */
uint16_t cm_http_port(const struct cm_http *h);

/*
 * cm_http_stop - close every connection and the listening socket now, and
 * the libuv handles; no handler is called after it returns. The memory is
 * freed in the handles' close callbacks, so the loop must run once more.
 */
void cm_http_stop(struct cm_http *h);

#endif /* CONFMAN_HTTP_H */
