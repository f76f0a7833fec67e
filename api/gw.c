/* gw.c: one gateway thread: libmicrohttpd on a libuv loop, requests in, replies out. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/gw.h"

#define JSON_TYPE "application/json"

/* ---- replies ------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t);

void cm_gw__resume(struct cm_gw_req *r)
{
	if (r->suspended && r->conn != NULL) {
		r->suspended = false;
		MHD_resume_connection(r->conn);
		/* MHD picks a resumed connection up on its next run: make it soon
		 * (while stopping, the drain timer runs it anyway). */
		if (!r->gw->stopping)
			uv_timer_start(&r->gw->timer, on_timer, 0, 0);
	}
}

void cm_gw__suspend(struct cm_gw_req *r)
{
	if (!r->suspended && r->conn != NULL) {
		r->suspended = true;
		MHD_suspend_connection(r->conn);
	}
}

void cm_gw__reply(struct cm_gw_req *r, unsigned status, struct MHD_Response *resp)
{
	if (r->answered || r->conn == NULL) {
		if (resp != NULL)
			MHD_destroy_response(resp);
		return;
	}
	r->answered = true;
	if (resp == NULL || MHD_queue_response(r->conn, status, resp) != MHD_YES)
		r->failed = true; /* out of memory: on_request closes the connection */
	if (resp != NULL)
		MHD_destroy_response(resp); /* MHD holds its own reference once queued */
	cm_gw__resume(r);
}

void cm_gw__reply_json(struct cm_gw_req *r, unsigned status, json_t *json)
{
	char *text = json != NULL ? json_dumps(json, JSON_COMPACT) : NULL;
	json_decref(json);
	struct MHD_Response *m = NULL;
	if (text != NULL) {
		m = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
		if (m == NULL)
			free(text);
		else
			(void)MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_TYPE);
	}
	cm_gw__reply(r, status, m);
}

void cm_gw__reply_error(struct cm_gw_req *r, unsigned status, int grpc_code, const char *fmt, ...)
{
	char msg[CM_API_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* etcd's gateway shape ({error, message, code}), for both APIs. */
	json_t *j = json_pack("{s:s, s:s, s:i}", "error", msg, "message", msg, "code", grpc_code);
	cm_gw__reply_json(r, status, j);
}

/* errno (or CM_E*) -> HTTP status and gRPC code (etcd clients look at the latter). */
static void err_map(int err, bool had_resp, unsigned *status, int *grpc)
{
	switch (err) {
	case -ENOENT:
		*status = MHD_HTTP_NOT_FOUND, *grpc = 5;
		return;
	case -ECANCELED:
		if (had_resp) { /* a failed compare-and-set */
			*status = MHD_HTTP_PRECONDITION_FAILED, *grpc = 9;
			return;
		}
		*status = MHD_HTTP_SERVICE_UNAVAILABLE, *grpc = 1;
		return;
	case -EEXIST:
		*status = MHD_HTTP_PRECONDITION_FAILED, *grpc = 6;
		return;
	case -ENOTEMPTY:
	case -ENOTDIR:
	case -EISDIR:
	case -EXDEV:
	case -EBUSY:
		*status = had_resp ? MHD_HTTP_CONFLICT : MHD_HTTP_SERVICE_UNAVAILABLE, *grpc = 9;
		return;
	case -EINVAL:
	case -ENAMETOOLONG:
		*status = MHD_HTTP_BAD_REQUEST, *grpc = 3;
		return;
	case -EFBIG:
		*status = MHD_HTTP_CONTENT_TOO_LARGE, *grpc = 3;
		return;
	case -ENOSPC:
		*status = MHD_HTTP_INSUFFICIENT_STORAGE, *grpc = 8;
		return;
	case -ETIMEDOUT:
		*status = MHD_HTTP_GATEWAY_TIMEOUT, *grpc = 4;
		return;
	case -EIO:
		*status = MHD_HTTP_BAD_GATEWAY, *grpc = 14;
		return;
	case -ECONNREFUSED:
	case -ENOMEM:
	case CM_ENOLEADER:
	case CM_ENOTLEADER:
	case CM_EWRONGSHARD:
	case CM_ESTALE:
	case CM_ESHUTDOWN:
	case CM_ETRANSFERRING:
		*status = MHD_HTTP_SERVICE_UNAVAILABLE, *grpc = 14;
		return;
	default:
		*status = MHD_HTTP_INTERNAL_SERVER_ERROR, *grpc = 2;
		return;
	}
}

void cm_gw__reply_errno(struct cm_gw_req *r, int err, bool had_resp)
{
	if (err == -EACCES) { /* the servers' ACL refused the caller */
		cm_gw__reply_denied(r, false, "permission denied");
		return;
	}
	unsigned status;
	int grpc;
	err_map(err, had_resp, &status, &grpc);
	if (err == -ECANCELED && had_resp) {
		cm_gw__reply_error(r, status, grpc, "version mismatch: compare-and-set failed");
		return;
	}
	const char *extra = err == -EIO || err == -ETIMEDOUT ? " (a write's outcome is unknown)" : "";
	cm_gw__reply_error(r, status, grpc, "%s%s", cm_strerror(err), extra);
}

void cm_gw__token_header(struct MHD_Response *m, const struct cm_resp *resp)
{
	char tok[48];
	snprintf(tok, sizeof(tok), "%llu:%llu", (unsigned long long)resp->group,
		 (unsigned long long)resp->token);
	(void)MHD_add_response_header(m, CM_API_HDR_TOKEN, tok);
}

uint8_t cm_gw__consistency(struct cm_gw_req *r, uint8_t dflt)
{
	if (r->has_token && r->tok_index > cm_ac_token(r->gw->ac, r->tok_group))
		return CM_READ_LINEARIZABLE;
	return dflt;
}

/* ---- Confman requests ------------------------------------------------------------- */

void cm_gw__req_init(struct cm_req *cq, uint8_t op, const void *path, size_t len)
{
	assert(len <= UINT32_MAX); /* callers pass validated paths, <= CM_PATH_MAX */
	memset(cq, 0, sizeof(*cq));
	cq->op = op;
	cq->path.p = path;
	cq->path.len = (uint32_t)len;
}

int cm_gw__submit_arg(struct cm_gw_req *r, const struct cm_req *cq, cm_ac_cb cb, void *arg)
{
	if (r->gw->ac == NULL)
		return -ECANCELED;
	struct cm_req q = *cq;
	q.as = (struct cm_bytes){r->as, r->as_len}; /* the caller's, checked by the servers */
	int rv = cm_ac_submit(r->gw->ac, &q, cb, arg);
	if (rv != 0)
		return rv;
	r->inflight++;
	cm_gw__suspend(r);
	return 0;
}

int cm_gw__submit(struct cm_gw_req *r, const struct cm_req *cq, cm_ac_cb cb)
{
	return cm_gw__submit_arg(r, cq, cb, r);
}

void cm_gw__send(struct cm_gw_req *r, const struct cm_req *cq, cm_ac_cb cb)
{
	int rv = cm_gw__submit(r, cq, cb);
	if (rv != 0)
		cm_gw__reply_errno(r, rv, false);
}

bool cm_gw__done(struct cm_gw_req *r)
{
	assert(r->inflight > 0);
	r->inflight--;
	if (r->conn != NULL)
		return true;
	/* MHD gave the connection up while Confman was busy (shutdown). */
	if (r->inflight == 0 && r->sse == NULL)
		cm_gw__free_req(r);
	return false;
}

bool cm_gw__done_ok(struct cm_gw_req *r, int err, const struct cm_resp *resp)
{
	if (!cm_gw__done(r))
		return false;
	if (err == 0)
		return true;
	cm_gw__reply_errno(r, err, resp != NULL);
	return false;
}

void cm_gw__free_req(struct cm_gw_req *r)
{
	cm_gw__v3_free(r);
	cm_gw__sse_free(r);
	assert(r->gw->body_bytes >= r->cap);
	r->gw->body_bytes -= r->cap;
	free(r->path);
	free(r->url);
	free(r->body);
	free(r);
}

/* ---- intake ------------------------------------------------------------------- */

static void reply_early(struct MHD_Connection *c, unsigned status, int grpc, const char *msg,
			const char *allow)
{
	json_t *j = json_pack("{s:s, s:s, s:i}", "error", msg, "message", msg, "code", grpc);
	char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (text == NULL)
		return;
	struct MHD_Response *m =
		MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (m == NULL) {
		free(text);
		return;
	}
	(void)MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_TYPE);
	if (allow != NULL)
		(void)MHD_add_response_header(m, MHD_HTTP_HEADER_ALLOW, allow);
	(void)MHD_queue_response(c, status, m);
	MHD_destroy_response(m);
}

static bool takes_body(const struct cm_api_target *t)
{
	return (t->route == CM_API_R_KV && t->method == CM_API_PUT) || t->method == CM_API_POST;
}

/* Content-Length, if declared (MHD has already refused a malformed one). */
static bool declared_length(struct MHD_Connection *c, uint64_t *len)
{
	const char *cl =
		MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl == NULL)
		return false;
	if (cm_api_parse_u64(cl, strlen(cl), len) != 0)
		*len = UINT64_MAX;
	return true;
}

struct query_ctx {
	struct cm_gw_req *r;
	int rv;
	char err[CM_API_ERR_MAX];
};

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *value)
{
	struct query_ctx *q = cls;
	(void)kind;
	q->rv = cm_api_query_add(&q->r->q, q->r->t.route, key, value, q->err, sizeof(q->err));
	return q->rv == 0 ? MHD_YES : MHD_NO;
}

/* Headers that change a request: the token, If-Match, If-None-Match. */
static int read_headers(struct cm_gw_req *r, struct MHD_Connection *c, const char **what)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, CM_API_HDR_TOKEN);
	if (v != NULL) {
		*what = "bad " CM_API_HDR_TOKEN " (expected GROUP:INDEX)";
		if (cm_api_parse_token(v, &r->tok_group, &r->tok_index) != 0)
			return -EINVAL;
		r->has_token = true;
	}
	v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MATCH);
	if (v != NULL) {
		*what = "bad If-Match (expected a version)";
		if (cm_api_parse_if_match(v, &r->if_match) != 0)
			return -EINVAL;
		r->has_if_match = true;
	}
	v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	if (v != NULL) {
		*what = "bad If-None-Match (only * is supported)";
		if (strcmp(v, "*") != 0)
			return -EINVAL;
		r->if_none_match = true;
	}
	return 0;
}

/* The first call for a request: its headers are in, its body (if any) not yet. */
static enum MHD_Result first_call(struct cm_gw *gw, struct MHD_Connection *c, const char *url,
				  const char *method, void **req_cls)
{
	struct cm_api_target t;
	int rv = cm_api_route_parse(method, url, &t);
	if (rv == -ENOENT) {
		reply_early(c, MHD_HTTP_NOT_FOUND, 5, "no such endpoint", NULL);
		return MHD_YES;
	}
	if (rv == -EPERM) {
		reply_early(c, MHD_HTTP_METHOD_NOT_ALLOWED, 12, "method not allowed",
			    cm_api_route_allow(url));
		return MHD_YES;
	}
	if (rv != 0) {
		reply_early(c, MHD_HTTP_BAD_REQUEST, 3,
			    rv == -ENAMETOOLONG ? "path too long" : "bad path", NULL);
		return MHD_YES;
	}
	uint64_t len = 0;
	bool declared = declared_length(c, &len) && len > 0;
	bool chunked = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						   MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
	/* Refused from the headers alone: the body is never read. */
	if ((declared || chunked) && !takes_body(&t)) {
		reply_early(c, MHD_HTTP_CONTENT_TOO_LARGE, 3, "this request takes no body", NULL);
		return MHD_YES;
	}
	if (declared && len > gw->sh->opts.max_body) {
		reply_early(c, MHD_HTTP_CONTENT_TOO_LARGE, 8, "request body too large", NULL);
		return MHD_YES;
	}
	if (declared && len > CM_API_BODY_BUDGET - gw->body_bytes) {
		reply_early(c, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "too many request bodies in flight",
			    NULL);
		return MHD_YES;
	}
	struct cm_gw_req *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return MHD_NO;
	r->gw = gw;
	r->conn = c;
	r->t = t;
	cm_api_query_init(&r->q);
	r->url = strdup(url);
	if (t.path != NULL)
		r->path = strndup(t.path, t.path_len);
	if (r->url == NULL || (t.path != NULL && r->path == NULL)) {
		cm_gw__free_req(r);
		return MHD_NO;
	}
	r->t.path = r->path;
	*req_cls = r; /* freed in on_completed from now on */
	const char *what = "";
	if (read_headers(r, c, &what) != 0) {
		r->answered = true;
		reply_early(c, MHD_HTTP_BAD_REQUEST, 3, what, NULL);
		return MHD_YES;
	}
	struct query_ctx q = {.r = r};
	(void)MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_arg, &q);
	if (q.rv != 0) {
		r->answered = true;
		reply_early(c, MHD_HTTP_BAD_REQUEST, 3, q.err, NULL);
	}
	return MHD_YES;
}

/*
 * A piece of the body: kept, up to max_body. A body whose length was
 * declared is refused from the headers (first_call); a chunked one may not
 * say it. Past max_body the rest is read and dropped, up to
 * CM_API_DISCARD_FACTOR times max_body, and answered 413 once the request
 * ends; beyond that the connection is closed without an answer. (MHD
 * 0.9.75 spins in MHD_run if a response is queued while a body is still
 * arriving: the answer must wait for the end of the request.)
 */
static enum MHD_Result body_data(struct cm_gw_req *r, const char *data, size_t *size)
{
	size_t n = *size;
	*size = 0;
	size_t max = r->gw->sh->opts.max_body;
	if (r->too_large || n > max - r->len) {
		r->too_large = true;
		r->discarded += n;
		return r->discarded <= CM_API_DISCARD_FACTOR * max ? MHD_YES : MHD_NO;
	}
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		while (cap < r->len + n + 1)
			cap *= 2;
		if (cap - r->cap > CM_API_BODY_BUDGET - r->gw->body_bytes)
			return MHD_NO; /* over the thread's budget: drop the connection */
		char *b = realloc(r->body, cap);
		if (b == NULL)
			return MHD_NO;
		r->gw->body_bytes += cap - r->cap;
		r->body = b;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	r->body[r->len] = '\0';
	return MHD_YES;
}

static void reply_health(struct cm_gw_req *r, bool ready)
{
	struct cm_gw_shared *sh = r->gw->sh;
	char text[CM_API_REASON_MAX + 2] = "ok\n";
	unsigned status = MHD_HTTP_OK;
	if (ready) {
		if (atomic_load(&sh->ready)) {
			strcpy(text, "ready\n");
		} else {
			pthread_mutex_lock(&sh->mu);
			snprintf(text, sizeof(text), "%s\n", sh->reason);
			pthread_mutex_unlock(&sh->mu);
			status = MHD_HTTP_SERVICE_UNAVAILABLE;
		}
	} else if (r->gw->stopping) {
		strcpy(text, "shutting down\n");
		status = MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	struct MHD_Response *m =
		MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_COPY);
	if (m != NULL) {
		(void)MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE,
					      "text/plain; charset=utf-8");
		(void)MHD_add_response_header(m, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	}
	cm_gw__reply(r, status, m);
}

void cm_gw__dispatch(struct cm_gw_req *r)
{
	switch (r->t.route) {
	case CM_API_R_HEALTHZ:
		reply_health(r, false);
		return;
	case CM_API_R_READYZ:
		reply_health(r, true);
		return;
	case CM_API_R_KV:
		cm_gw__v1_kv(r);
		return;
	case CM_API_R_WATCH:
		cm_gw__v1_watch(r);
		return;
	default:
		cm_gw__v3(r);
		return;
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	struct cm_gw *gw = cls;
	(void)version;
	if (*req_cls == NULL)
		return first_call(gw, c, url, method, req_cls);
	struct cm_gw_req *r = *req_cls;
	if (r->failed)
		return MHD_NO; /* no answer could be queued: close the connection */
	if (*upload_data_size != 0)
		return body_data(r, upload_data, upload_data_size);
	if (r->answered || r->inflight > 0 || r->sse != NULL)
		return MHD_YES; /* answered or under way */
	if (r->too_large) {
		cm_gw__reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, 8, "request body too large");
		return MHD_YES;
	}
	if (gw->stopping) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "shutting down");
		return MHD_YES;
	}
	if (cm_gw__auth(r))
		cm_gw__dispatch(r);
	return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct cm_gw_req *r = *req_cls;
	if (r == NULL)
		return;
	*req_cls = NULL;
	r->conn = NULL;
	r->suspended = false;
	if (r->inflight == 0)
		cm_gw__free_req(r);
	/* else the last Confman callback frees it (cm_gw__done) */
}

/* ---- MHD on the loop -------------------------------------------------------------- */

#define MAX_SLEEP_MS 1000 /* see server/http.c: MHD may need a run nothing announces */

static void run(struct cm_gw *gw)
{
	if (gw->mhd == NULL)
		return;
	MHD_run(gw->mhd);
	MHD_UNSIGNED_LONG_LONG ms;
	if (MHD_get_timeout(gw->mhd, &ms) != MHD_YES || ms > MAX_SLEEP_MS)
		ms = MAX_SLEEP_MS;
	uv_timer_start(&gw->timer, on_timer, (uint64_t)ms, 0);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct cm_gw *gw = p->data;
	(void)status;
	(void)events;
	if (!gw->stopping)
		run(gw);
}

static void on_timer(uv_timer_t *t)
{
	struct cm_gw *gw = t->data;
	if (!gw->stopping)
		run(gw);
}

static void on_keepalive(uv_timer_t *t)
{
	cm_gw__sse_keepalive(t->data);
}

static void on_sweep(uv_timer_t *t)
{
	(void)cm_gw__sse_sweep(t->data);
}

/* "a.b.c.d:port". */
static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(s, ':');
	uint64_t port;
	if (colon == NULL || (size_t)(colon - s) >= sizeof(host) ||
	    cm_api_parse_u64(colon + 1, strlen(colon + 1), &port) != 0 || port > 65535)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

/*
 * The listening socket is ours, handed to MHD (which closes it when it
 * stops): SO_REUSEADDR so that a restart binds despite connections in
 * TIME-WAIT, and SO_REUSEPORT only with several threads, which then share
 * the port (a second gateway started on the same port by mistake fails
 * instead of taking half of the connections).
 */
static int listen_socket(const struct sockaddr_in *sa, bool reuseport, int *out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int one = 1, rv = 0;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
	    bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 ||
	    listen(fd, CM_API_BACKLOG) != 0)
		rv = -errno;
	if (rv != 0) {
		close(fd);
		return rv;
	}
	*out = fd;
	return 0;
}

static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return cm_api_unescape(s);
}

static int start_mhd(struct cm_gw *gw, uint16_t port)
{
	struct sockaddr_in sa;
	if (parse_addr(gw->sh->opts.listen, &sa) != 0)
		return -EINVAL;
	if (port != 0)
		sa.sin_port = htons(port);
	int fd = -1;
	int rv = listen_socket(&sa, gw->sh->opts.threads > 1, &fd);
	if (rv != 0)
		return rv;
	/* HTTPS through libmicrohttpd's own TLS, which is GnuTLS: TLS 1.3 only,
	 * as on every other connection of the project. */
	const struct cm_gw_opts *o = &gw->sh->opts;
	bool https = o->https_cert_pem != NULL;
	/* --https-ca: MHD asks callers for a certificate (auth.c checks it). */
	struct MHD_OptionItem tls[] = {
		{MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)o->https_cert_pem},
		{MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)o->https_key_pem},
		{MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3"},
		{o->https_ca_pem ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0,
		 (void *)o->https_ca_pem},
		{MHD_OPTION_END, 0, NULL}};
	struct MHD_OptionItem none[] = {{MHD_OPTION_END, 0, NULL}};
	gw->mhd = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_SUPPRESS_DATE_NO_CLOCK |
			(https ? MHD_USE_TLS : 0),
		0, NULL, NULL, on_request, gw, MHD_OPTION_ARRAY, https ? tls : none,
		MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)CM_API_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CM_API_TIMEOUT_S,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CM_API_CONN_MEMORY,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, gw, MHD_OPTION_NOTIFY_CONNECTION,
		cm_gw__conn_notify, gw, MHD_OPTION_UNESCAPE_CALLBACK,
		unescape, NULL, MHD_OPTION_END);
	if (gw->mhd == NULL) {
		close(fd);
		return -EIO;
	}
	const union MHD_DaemonInfo *ep = MHD_get_daemon_info(gw->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	const union MHD_DaemonInfo *pi = MHD_get_daemon_info(gw->mhd, MHD_DAEMON_INFO_BIND_PORT);
	if (ep == NULL || pi == NULL) {
		MHD_stop_daemon(gw->mhd);
		gw->mhd = NULL;
		return -EIO;
	}
	gw->port = pi->port;
	rv = uv_poll_init(&gw->loop, &gw->poll, ep->epoll_fd);
	if (rv != 0) {
		MHD_stop_daemon(gw->mhd);
		gw->mhd = NULL;
		return rv;
	}
	gw->poll.data = gw;
	rv = uv_poll_start(&gw->poll, UV_READABLE, on_poll);
	assert(rv == 0);
	return 0;
}

/* ---- thread life ------------------------------------------------------------------- */

static void close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/*
 * Shutdown, on the thread: the listening socket closes (MHD_quiesce_daemon)
 * and no new request is dispatched; closing the client completes every
 * Confman request (-ECANCELED: 503) and ends every watch stream with a last
 * event, which resumes every suspended connection. MHD then runs every
 * CM_API_DRAIN_STEP_MS for at most CM_API_DRAIN_MS, until no connection is
 * left, so those answers go out; then it stops (MHD_stop_daemon must not
 * see a suspended connection: none is left once the client is closed).
 */
static void on_drain(uv_timer_t *t)
{
	struct cm_gw *gw = t->data;
	MHD_run(gw->mhd);
	const union MHD_DaemonInfo *i =
		MHD_get_daemon_info(gw->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	bool busy = i != NULL && i->num_connections > 0;
	if (busy && ++gw->drain_steps < CM_API_DRAIN_MS / CM_API_DRAIN_STEP_MS)
		return;
	uv_timer_stop(t);
	uv_close((uv_handle_t *)&gw->poll, NULL);
	MHD_stop_daemon(gw->mhd);
	gw->mhd = NULL;
	close_handle((uv_handle_t *)&gw->timer);
	close_handle((uv_handle_t *)&gw->keepalive);
	close_handle((uv_handle_t *)&gw->sweep);
	close_handle((uv_handle_t *)&gw->stop);
}

static void on_stop(uv_async_t *a)
{
	struct cm_gw *gw = a->data;
	if (gw->stopping)
		return;
	gw->stopping = true;
	MHD_socket lfd = MHD_quiesce_daemon(gw->mhd);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	cm_gw__probe_stop(gw);
	cm_gw__sse_shutdown(gw);
	if (gw->ac != NULL) {
		cm_ac_close(gw->ac, NULL, NULL);
		gw->ac = NULL;
	}
	uv_timer_stop(&gw->keepalive);
	uv_timer_stop(&gw->sweep);
	/* The MHD timer now only drains: run() would re-arm it. */
	uv_poll_stop(&gw->poll);
	uv_timer_start(&gw->timer, on_drain, 0, CM_API_DRAIN_STEP_MS);
}

static void *thread_main(void *arg)
{
	struct cm_gw *gw = arg;
	uv_run(&gw->loop, UV_RUN_DEFAULT);
	int rv = uv_loop_close(&gw->loop);
	assert(rv == 0);
	(void)rv;
	return NULL;
}

int cm_gw_start(struct cm_gw *gw, struct cm_gw_shared *sh, unsigned index, uint16_t port)
{
	memset(gw, 0, sizeof(*gw));
	gw->sh = sh;
	gw->index = index;
	int rv = uv_loop_init(&gw->loop);
	if (rv != 0)
		return rv;
	struct cm_client_opts co;
	cm_client_opts_init(&co);
	co.servers = sh->opts.servers;
	co.cluster = sh->opts.cluster;
	co.timeout_ms = sh->opts.timeout_ms;
	co.ca = sh->opts.ca;
	co.cert = sh->opts.cert;
	co.key = sh->opts.key;
	rv = cm_ac_new(&gw->loop, &co, &gw->ac);
	if (rv != 0)
		goto err_loop;
	uv_timer_init(&gw->loop, &gw->timer);
	uv_timer_init(&gw->loop, &gw->keepalive);
	uv_timer_init(&gw->loop, &gw->sweep);
	gw->timer.data = gw;
	gw->keepalive.data = gw;
	gw->sweep.data = gw;
	rv = uv_async_init(&gw->loop, &gw->stop, on_stop);
	assert(rv == 0);
	gw->stop.data = gw;
	rv = start_mhd(gw, port);
	if (rv != 0)
		goto err_handles;
	uv_timer_start(&gw->timer, on_timer, 0, 0);
	uv_timer_start(&gw->keepalive, on_keepalive, CM_API_SSE_KEEPALIVE_MS,
		       CM_API_SSE_KEEPALIVE_MS);
	uv_timer_start(&gw->sweep, on_sweep, CM_API_SSE_SWEEP_MS, CM_API_SSE_SWEEP_MS);
	if (index == 0 && (rv = cm_gw__probe_start(gw)) != 0)
		goto err_mhd;
	rv = pthread_create(&gw->thread, NULL, thread_main, gw);
	if (rv != 0) {
		rv = -rv;
		cm_gw__probe_stop(gw);
		goto err_mhd;
	}
	return 0;
err_mhd:
	uv_close((uv_handle_t *)&gw->poll, NULL);
	MHD_stop_daemon(gw->mhd);
	gw->mhd = NULL;
err_handles:
	cm_ac_close(gw->ac, NULL, NULL);
	gw->ac = NULL;
	uv_close((uv_handle_t *)&gw->timer, NULL);
	uv_close((uv_handle_t *)&gw->keepalive, NULL);
	uv_close((uv_handle_t *)&gw->sweep, NULL);
	uv_close((uv_handle_t *)&gw->stop, NULL);
	uv_run(&gw->loop, UV_RUN_DEFAULT);
err_loop:
	(void)uv_loop_close(&gw->loop);
	return rv;
}

void cm_gw_stop(struct cm_gw *gw)
{
	uv_async_send(&gw->stop);
	pthread_join(gw->thread, NULL);
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 14695981039346656037ull;
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

int cm_gw_init_shared(struct cm_gw_shared *sh, const struct cm_gw_opts *opts)
{
	struct sockaddr_in sa;
	if (opts->listen == NULL || parse_addr(opts->listen, &sa) != 0 || opts->threads == 0 ||
	    opts->threads > CM_API_THREADS_MAX || opts->max_body == 0)
		return -EINVAL;
	memset(sh, 0, sizeof(*sh));
	sh->opts = *opts;
	sh->cluster_id = fnv1a(opts->cluster != NULL ? opts->cluster : CM_CLIENT_DEFAULT_CLUSTER);
	atomic_init(&sh->ready, 0);
	atomic_init(&sh->term, 0);
	pthread_mutex_init(&sh->mu, NULL);
	snprintf(sh->reason, sizeof(sh->reason), "not probed yet");
	return 0;
}
