/* v1.c: confman-api's native API: /v1/kv/PATH (GET, HEAD, PUT, DELETE) and /v1/watch/PATH (SSE). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "api/gw.h"

/* ---- JSON helpers --------------------------------------------------------------- */

/* Set key to the string p[0..n) if it is UTF-8, else key_b64 to its base64. */
static void set_name(json_t *o, const char *key, const char *p, size_t n)
{
	json_t *s = json_stringn(p, n);
	if (s != NULL) {
		json_object_set_new(o, key, s);
		return;
	}
	char *b = malloc(cm_api_b64_enclen(n) + 1);
	if (b == NULL)
		return;
	cm_api_b64_encode((const uint8_t *)p, n, b);
	char k[64];
	snprintf(k, sizeof(k), "%s_b64", key);
	json_object_set_new(o, k, json_string(b));
	free(b);
}

static const char *type_of(uint32_t mode)
{
	return S_ISDIR(mode) ? "dir" : S_ISLNK(mode) ? "symlink" : "file";
}

static void set_attr(json_t *o, const struct cm_attr *a)
{
	json_object_set_new(o, "type", json_string(type_of(a->mode)));
	json_object_set_new(o, "version", json_integer((json_int_t)a->version));
	json_object_set_new(o, "create_index", json_integer((json_int_t)a->create_index));
	json_object_set_new(o, "mod_index", json_integer((json_int_t)a->mod_index));
	json_object_set_new(o, "size", json_integer((json_int_t)a->size));
	json_object_set_new(o, "mode", json_integer((json_int_t)(a->mode & 07777)));
	json_object_set_new(o, "mtime_ns", json_integer((json_int_t)a->mtime_ns));
}

static void set_token(json_t *o, const struct cm_resp *resp)
{
	char tok[48];
	snprintf(tok, sizeof(tok), "%llu:%llu", (unsigned long long)resp->group,
		 (unsigned long long)resp->token);
	json_object_set_new(o, "token", json_string(tok));
}

static void attr_headers(struct MHD_Response *m, const struct cm_resp *resp)
{
	char v[32];
	cm_gw__token_header(m, resp);
	if (!resp->has_attr)
		return;
	snprintf(v, sizeof(v), "%llu", (unsigned long long)resp->attr.version);
	(void)MHD_add_response_header(m, CM_API_HDR_VERSION, v);
	snprintf(v, sizeof(v), "%llu", (unsigned long long)resp->attr.mod_index);
	(void)MHD_add_response_header(m, CM_API_HDR_MOD_INDEX, v);
	snprintf(v, sizeof(v), "%llu", (unsigned long long)resp->attr.create_index);
	(void)MHD_add_response_header(m, CM_API_HDR_CREATE_INDEX, v);
	snprintf(v, sizeof(v), "\"%llu\"", (unsigned long long)resp->attr.version);
	(void)MHD_add_response_header(m, MHD_HTTP_HEADER_ETAG, v);
}

/* Send m (NULL: it could not be made) with its type and the Confman headers. */
static void reply_attr(struct cm_gw_req *r, unsigned status, struct MHD_Response *m,
		       const char *type, const struct cm_resp *resp)
{
	if (m != NULL) {
		(void)MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, type);
		attr_headers(m, resp);
	}
	cm_gw__reply(r, status, m);
}

/* A JSON reply that also carries the Confman headers. */
static void reply_json_attr(struct cm_gw_req *r, unsigned status, json_t *j,
			    const struct cm_resp *resp)
{
	char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	struct MHD_Response *m = NULL;
	if (text != NULL) {
		m = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
		if (m == NULL)
			free(text);
	}
	reply_attr(r, status, m, "application/json", resp);
}

/* ---- /v1/kv ------------------------------------------------------------------- */

static void on_get(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done(r))
		return;
	if (err == 0 && resp->has_attr && S_ISDIR(resp->attr.mode))
		err = -EISDIR;
	if (err != 0) {
		if (err == -EISDIR)
			cm_gw__reply_error(r, MHD_HTTP_CONFLICT, 9, "is a directory (add ?list)");
		else
			cm_gw__reply_errno(r, err, resp != NULL);
		return;
	}
	struct MHD_Response *m = MHD_create_response_from_buffer(
		resp->value.len, (void *)resp->value.p, MHD_RESPMEM_MUST_COPY);
	reply_attr(r, MHD_HTTP_OK, m, "application/octet-stream", resp);
}

static void on_list(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done_ok(r, err, resp))
		return;
	json_t *o = json_object(), *a = json_array();
	for (uint32_t i = 0; o != NULL && a != NULL && i < resp->n_ents; i++) {
		json_t *e = json_object();
		if (e == NULL)
			break;
		set_name(e, "name", resp->ents[i].name.p, resp->ents[i].name.len);
		set_attr(e, &resp->ents[i].attr);
		json_array_append_new(a, e);
	}
	set_name(o, "path", r->path, r->t.path_len);
	json_object_set_new(o, "children", a);
	set_token(o, resp);
	reply_json_attr(r, MHD_HTTP_OK, o, resp);
}

static void on_write(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_req *r = arg;
	if (!cm_gw__done_ok(r, err, resp))
		return;
	json_t *o = json_object();
	set_name(o, "path", r->path, r->t.path_len);
	if (resp->has_attr)
		set_attr(o, &resp->attr);
	if (r->t.method == CM_API_DELETE)
		json_object_set_new(o, "deleted", json_true());
	set_token(o, resp);
	bool created = r->t.method == CM_API_PUT && resp->has_attr && resp->attr.version == 1;
	reply_json_attr(r, created ? MHD_HTTP_CREATED : MHD_HTTP_OK, o, resp);
}

static uint8_t read_consistency(struct cm_gw_req *r)
{
	uint8_t dflt = r->q.consistency >= 0 ? (uint8_t)r->q.consistency : CM_READ_FOLLOWER;
	return cm_gw__consistency(r, dflt);
}

/* If-Match: VERSION makes a write conditional on the node's version. */
static void set_if_match(struct cm_req *cq, const struct cm_gw_req *r)
{
	if (r->has_if_match) {
		cq->flags |= CM_PUT_IF_VERSION;
		cq->version = r->if_match;
	}
}

void cm_gw__v1_kv(struct cm_gw_req *r)
{
	struct cm_req cq;
	cm_gw__req_init(&cq, 0, r->path, r->t.path_len);
	cm_ac_cb cb = on_write;
	switch (r->t.method) {
	case CM_API_GET:
	case CM_API_HEAD:
		cq.op = r->q.list ? CM_OP_LIST : CM_OP_GET;
		cq.consistency = read_consistency(r);
		cb = r->q.list ? on_list : on_get;
		break;
	case CM_API_PUT:
		cq.op = r->q.mkdir ? CM_OP_MKDIR : CM_OP_PUT;
		if (r->len > UINT32_MAX) {
			cm_gw__reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, 8, "value too large");
			return;
		}
		cq.value.p = r->body != NULL ? r->body : "";
		cq.value.len = (uint32_t)r->len;
		set_if_match(&cq, r);
		if (r->if_none_match)
			cq.flags |= CM_PUT_CREATE;
		break;
	case CM_API_DELETE:
		cq.op = CM_OP_DELETE;
		cq.flags = (r->q.recursive ? CM_DEL_RECURSIVE : 0) | (r->q.dir ? CM_DEL_DIR : 0);
		set_if_match(&cq, r);
		break;
	default:
		cm_gw__reply_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, 12, "method not allowed");
		return;
	}
	cm_gw__send(r, &cq, cb);
}

/* ---- /v1/watch: Server-Sent Events ---------------------------------------------------- */

struct cm_gw_sse {
	char *buf; /* owned: bytes [off, len) not yet handed to MHD */
	size_t off, len, cap;
	uint64_t watch_id;
	bool watching; /* the cm_ac watch is live */
	bool ended;    /* no more events: end the stream once buf is sent */
};

static void sse_append(struct cm_gw_req *r, const char *p, size_t n)
{
	struct cm_gw_sse *s = r->sse;
	if (s->ended)
		return;
	if (s->off > 0 && s->off == s->len)
		s->off = s->len = 0;
	if (s->len - s->off + n > CM_API_SSE_BUF_MAX) {
		/* The client reads slower than changes come: end its stream (it
		 * resumes with ?from= the last id it got) rather than grow. */
		if (s->watching && r->gw->ac != NULL)
			(void)cm_ac_unwatch(r->gw->ac, s->watch_id);
		s->watching = false;
		static const char msg[] = "event: error\ndata: {\"error\":\"client too slow\"}\n\n";
		n = sizeof(msg) - 1;
		p = msg;
		s->ended = true;
	}
	if (s->len + n > s->cap) {
		if (s->off > 0) {
			memmove(s->buf, s->buf + s->off, s->len - s->off);
			s->len -= s->off;
			s->off = 0;
		}
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + n)
			cap *= 2;
		char *b = realloc(s->buf, cap);
		if (b == NULL) {
			s->ended = true;
			return;
		}
		s->buf = b;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void sse_append_str(struct cm_gw_req *r, const char *s)
{
	sse_append(r, s, strlen(s));
}

static const char *kind_name(uint8_t k)
{
	static const char *const names[] = {"", "put", "delete", "mkdir", "rename", "resync"};
	return k < sizeof(names) / sizeof(names[0]) && k > 0 ? names[k] : "unknown";
}

static void on_event(void *arg, int err, const struct cm_event *ev)
{
	struct cm_gw_req *r = arg;
	struct cm_gw_sse *s = r->sse;
	json_t *o = json_object();
	char head[96];
	if (err != 0) {
		s->watching = false;
		json_object_set_new(o, "error", json_string(cm_strerror(err)));
		snprintf(head, sizeof(head), "event: error\ndata: ");
	} else {
		json_object_set_new(o, "group", json_integer((json_int_t)ev->group));
		json_object_set_new(o, "index", json_integer((json_int_t)ev->index));
		json_object_set_new(o, "kind", json_string(kind_name(ev->kind)));
		set_name(o, "path", ev->path.p, ev->path.len);
		if (ev->path2.len > 0)
			set_name(o, "path2", ev->path2.p, ev->path2.len);
		if (ev->has_attr)
			set_attr(o, &ev->attr);
		snprintf(head, sizeof(head), "id: %llu\nevent: %s\ndata: ",
			 (unsigned long long)ev->index, kind_name(ev->kind));
	}
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	sse_append(r, head, strlen(head));
	if (text != NULL) {
		sse_append(r, text, strlen(text));
		free(text);
	}
	sse_append(r, "\n\n", 2);
	if (err != 0)
		s->ended = true;
	cm_gw__resume(r);
}

/* MHD asks for the stream's next bytes: what is buffered, or suspend until an event. */
static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct cm_gw_req *r = cls;
	struct cm_gw_sse *s = r->sse;
	(void)pos;
	if (s->off < s->len) {
		size_t n = s->len - s->off < max ? s->len - s->off : max;
		memcpy(out, s->buf + s->off, n);
		s->off += n;
		return (ssize_t)n;
	}
	if (s->ended)
		return MHD_CONTENT_READER_END_OF_STREAM;
	/* The pattern microhttpd.h prescribes: suspend and return 0; an event
	 * or a keepalive resumes the connection. */
	cm_gw__suspend(r);
	return 0;
}

/* Has the client of a suspended stream gone? MHD polls no suspended
 * connection, so a client that left is otherwise noticed only by the next
 * write. A peek on its socket tells without consuming anything: 0 bytes is
 * an orderly close, an error other than EAGAIN a reset. */
static bool sse_peer_gone(struct cm_gw_req *r)
{
	if (r->conn == NULL)
		return false;
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci == NULL)
		return false;
	char c;
	ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

unsigned cm_gw__sse_sweep(struct cm_gw *gw)
{
	unsigned gone = 0;
	for (struct cm_gw_req *r = gw->streams; r != NULL; r = r->next_stream) {
		struct cm_gw_sse *s = r->sse;
		if (!r->suspended || s->ended || !sse_peer_gone(r))
			continue;
		/* Free its watch slot now; MHD closes the connection when it
		 * runs it again (a write to a closed socket fails). */
		if (s->watching && gw->ac != NULL)
			(void)cm_ac_unwatch(gw->ac, s->watch_id);
		s->watching = false;
		s->ended = true;
		cm_gw__resume(r);
		gone++;
	}
	return gone;
}

void cm_gw__v1_watch(struct cm_gw_req *r)
{
	struct cm_gw *gw = r->gw;
	if (gw->ac == NULL) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "shutting down");
		return;
	}
	r->sse = calloc(1, sizeof(*r->sse));
	if (r->sse == NULL) {
		cm_gw__reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, 14, "out of memory");
		return;
	}
	int rv = cm_ac_watch_as(gw->ac, r->path, r->q.from, 0, r->as_len ? r->as : NULL, on_event, r,
				    &r->sse->watch_id);
	if (rv == -EBUSY && cm_gw__sse_sweep(gw) > 0) /* slots held by departed clients */
		rv = cm_ac_watch_as(gw->ac, r->path, r->q.from, 0, r->as_len ? r->as : NULL, on_event, r,
				    &r->sse->watch_id);
	if (rv != 0) {
		free(r->sse);
		r->sse = NULL;
		cm_gw__reply_errno(r, rv, false);
		return;
	}
	r->sse->watching = true;
	r->next_stream = gw->streams;
	gw->streams = r;
	struct MHD_Response *m =
		MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, r, NULL);
	if (m != NULL) {
		(void)MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
		(void)MHD_add_response_header(m, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	}
	/* The headers go out now; events follow as they come. */
	sse_append_str(r, ": watching\n\n");
	cm_gw__reply(r, MHD_HTTP_OK, m);
}

void cm_gw__sse_free(struct cm_gw_req *r)
{
	struct cm_gw_sse *s = r->sse;
	if (s == NULL)
		return;
	if (s->watching && r->gw->ac != NULL)
		(void)cm_ac_unwatch(r->gw->ac, s->watch_id);
	for (struct cm_gw_req **p = &r->gw->streams; *p != NULL; p = &(*p)->next_stream)
		if (*p == r) {
			*p = r->next_stream;
			break;
		}
	free(s->buf);
	free(s);
	r->sse = NULL;
}

void cm_gw__sse_keepalive(struct cm_gw *gw)
{
	/* A comment line: EventSource ignores it; a dead client shows up as a
	 * failed write (MHD does not notice disconnects while suspended). */
	for (struct cm_gw_req *r = gw->streams; r != NULL; r = r->next_stream) {
		sse_append_str(r, ": keepalive\n\n");
		cm_gw__resume(r);
	}
}

void cm_gw__sse_shutdown(struct cm_gw *gw)
{
	for (struct cm_gw_req *r = gw->streams; r != NULL; r = r->next_stream) {
		if (r->sse->watching && gw->ac != NULL)
			(void)cm_ac_unwatch(gw->ac, r->sse->watch_id);
		r->sse->watching = false;
		sse_append_str(r, "event: error\ndata: {\"error\":\"gateway shutting down\"}\n\n");
		r->sse->ended = true;
		cm_gw__resume(r);
	}
}
