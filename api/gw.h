/* gw.h: confman-api's internals: a gateway loop per thread, its requests and handlers. */
#ifndef CONFMAN_API_GW_H
#define CONFMAN_API_GW_H

/*
 * Thread design. Each gateway thread owns one libuv loop, one struct cm_ac
 * (the client library is not thread-safe: a cm_ac belongs to its loop's
 * thread) and one libmicrohttpd daemon run in external-epoll mode on that
 * loop: MHD's epoll fd is watched by a uv_poll_t, its timeouts by a
 * uv_timer_t, so MHD never starts a thread of its own. A request whose
 * answer needs Confman is parsed, submitted to the cm_ac, and its
 * connection suspended (MHD_suspend_connection); the cm_ac callback queues
 * the response and resumes the connection. Nothing is shared between
 * threads but the read-only options and the readiness verdict (atomics):
 * no lock is taken on a request's path.
 *
 * With --threads N > 1 every thread opens its own listening socket on the
 * same address with SO_REUSEPORT, and the kernel spreads new connections
 * over them; a connection then stays on its thread. Each thread has its
 * own connections to the servers and its own version tokens, so a client
 * that moves between connections (or between gateway replicas) carries
 * its token in X-Confman-Token: a read whose token is ahead of what the
 * thread has seen is made linearizable, which also sees that write.
 *
 * Out of memory: the gateway holds no state of its own, every request's
 * memory is bounded below, and a supervisor restarts it: a failed
 * allocation on a request's path answers 503 when it can, and jansson or
 * MHD failures close the connection.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>
#include <uv.h>

#include "api/parse.h"
#include "confman/client.h"

#define CM_API_BODY_MAX_DEFAULT (2u << 20) /* request body bytes (413 beyond) */
#define CM_API_CONN_LIMIT 4096             /* connections per thread */
#define CM_API_CONN_MEMORY (16u << 10)     /* MHD's buffers per connection: longer
					    * request lines + headers get 431 */
#define CM_API_TIMEOUT_S 60                /* idle seconds before a connection closes */
#define CM_API_BACKLOG 1024
#define CM_API_THREADS_MAX 16
#define CM_API_DISCARD_FACTOR 4            /* chunked body over max_body: bytes dropped
					    * (x max_body) before the connection closes */
#define CM_API_BODY_BUDGET (256u << 20)    /* request body bytes held per thread: 503 beyond */
#define CM_API_SSE_BUF_MAX (256u << 10)    /* unsent bytes of one watch stream */
#define CM_API_SSE_KEEPALIVE_MS 15000      /* ": keepalive" comment on idle streams */
#define CM_API_SSE_SWEEP_MS 500            /* look for streams whose client left */
#define CM_API_RANGE_MAX 10000             /* keys one prefix range/deleterange visits */
#define CM_API_RANGE_BYTES_MAX (64u << 20) /* value bytes one prefix range returns */
#define CM_API_WALK_INFLIGHT 16            /* Confman requests one walk keeps in flight */
#define CM_API_CAS_TRIES 8                 /* txn/prev_kv: read-compare-CAS rounds */
#define CM_API_DRAIN_MS 1000               /* at shutdown: answers still going out */
#define CM_API_DRAIN_STEP_MS 10
#define CM_API_LOCK_WAIT_MS (5u * 60u * 1000u) /* --lock-wait-ms's default */
#define CM_API_PROBE_MS 1000               /* readiness probe period */
#define CM_API_PROBE_TIMEOUT_MS 1000
#define CM_API_REASON_MAX 256
#define CM_API_TOKEN_CACHE 64              /* bearer tokens resolved, per thread */
#define CM_API_TOKEN_CACHE_MS 5000         /* how long a resolved token is believed:
					    * the longest a revoke takes to bite */

#define CM_API_HDR_TOKEN "X-Confman-Token"
#define CM_API_HDR_VERSION "X-Confman-Version"
#define CM_API_HDR_MOD_INDEX "X-Confman-Mod-Index"
#define CM_API_HDR_CREATE_INDEX "X-Confman-Create-Index"

struct cm_gw_opts {
	const char *listen;   /* "IPv4:port"; borrowed from argv */
	const char *servers;  /* borrowed */
	const char *cluster;  /* borrowed; NULL: the default */
	/* TLS to the servers (--server-ca, --server-cert, --server-key):
	 * borrowed paths; NULL ca: plain TCP. The gateway's own HTTPS is apart. */
	const char *ca, *cert, *key;
	/* HTTPS (--https-cert, --https-key): the PEM text of the gateway's own
	 * certificate and key, read by main() (the key checked like every key
	 * file); NULL: plain HTTP. Owned by main, alive while threads run. */
	const char *https_cert_pem, *https_key_pem;
	/* --https-ca: the PEM text of the CA that signs callers' client
	 * certificates (asked for and verified when set); owned by main. */
	const char *https_ca_pem;
	uint32_t timeout_ms;  /* per Confman request */
	uint32_t lock_wait_ms; /* longest wait of a /v3/lock/lock (v3_lock.c) */
	size_t max_body;
	unsigned threads;
	bool verbose;
	uint32_t test_txn_sleep_ms; /* tests only: block between a txn's read and its write */
	bool test_txn_cas_version;  /* tests only: txn writes CAS on version (the old bug) */
};

/* What every thread shares: options (read-only once threads run) and readiness. */
struct cm_gw_shared {
	struct cm_gw_opts opts;
	uint64_t cluster_id;  /* etcd header cluster_id: FNV-1a of the cluster id */
	atomic_int ready;     /* 1 while every shard has a reachable replica */
	atomic_uint_least64_t term; /* highest Raft term seen by the last probe */
	pthread_mutex_t mu;   /* guards reason */
	char reason[CM_API_REASON_MAX];
};

struct cm_gw_req;
struct cm_gw_probe;

/* A bearer token resolved (auth.c): its SHA-256, never the token. */
struct cm_gw_tok {
	char hash[65];
	char as[CM_AS_MAX + 1]; /* the identity it stands for */
	uint64_t until;         /* loop ms; 0: empty */
};

/* One gateway thread. */
struct cm_gw {
	struct cm_gw_shared *sh; /* borrowed */
	unsigned index;          /* 0 runs the readiness probe */
	pthread_t thread;
	uv_loop_t loop;
	struct cm_ac *ac;        /* owned; NULL once closed */
	struct MHD_Daemon *mhd;  /* owned */
	uv_poll_t poll;          /* MHD's epoll fd */
	uv_timer_t timer;        /* MHD's next timeout */
	uv_timer_t keepalive;    /* SSE keepalives */
	uv_timer_t sweep;        /* CM_API_SSE_SWEEP_MS: streams whose client left */
	uv_async_t stop;         /* main thread -> this thread: shut down */
	uint16_t port;
	bool stopping;
	unsigned drain_steps;
	size_t body_bytes;         /* request bodies held now (CM_API_BODY_BUDGET) */
	struct cm_gw_req *streams; /* SSE requests, linked by next_stream */
	struct cm_gw_probe *probe; /* thread 0 only; owned */
	struct cm_gw_tok tokens[CM_API_TOKEN_CACHE];
};

/* One HTTP request; owned by its MHD connection (req_cls), freed when MHD
 * reports it completed, or by the last Confman callback if that comes after. */
struct cm_gw_req {
	struct cm_gw *gw;
	struct MHD_Connection *conn; /* NULL once MHD is done with it */
	struct cm_api_target t;      /* t.path points to path */
	char *path;                  /* owned copy, NUL-terminated */
	char *url;                   /* owned copy, for the Allow header */
	struct cm_api_query q;
	char *body;                  /* owned; NUL-terminated */
	size_t len, cap;
	bool has_token, has_if_match, if_none_match;
	/* The caller's identity, forwarded with every Confman request (auth.c):
	 * "USER[ GROUP...]"; as_len 0: none (an insecure cluster). */
	char as[CM_AS_MAX + 1];
	uint32_t as_len;
	char tok_hash[65];           /* its bearer token's SHA-256, while resolving */
	uint64_t tok_group, tok_index, if_match;
	bool suspended, answered;
	bool failed;                 /* answered, but no response could be queued */
	bool too_large;              /* a chunked body passed max_body */
	size_t discarded;            /* bytes of it dropped since */
	unsigned inflight;           /* Confman requests not yet called back */
	/* per-handler state */
	struct cm_etcd_req etcd;
	struct cm_gw_walk *walk;     /* prefix range / deleterange; owned */
	struct cm_gw_txn *txn;       /* txn, prev_kv delete; owned */
	struct cm_gw_sse *sse;       /* watch stream; owned */
	struct cm_gw_lease *lease;   /* lease, lock, put with a lease; owned */
	struct cm_gw_req *next_stream;
};

/* ---- gw.c ---- */

/* cm_gw_init_shared - fill sh from opts (copied). Returns 0, -EINVAL. */
int cm_gw_init_shared(struct cm_gw_shared *sh, const struct cm_gw_opts *opts);

/*
 * cm_gw_start - set up gateway thread gw (loop, cm_ac, MHD listening on
 * port, SO_REUSEPORT when sh->opts.threads > 1) and start its thread.
 * port 0 binds the port of listen (itself possibly 0: then gw->port says
 * what it became). Returns 0, -EINVAL, -EADDRINUSE, -EIO, -ENOMEM.
 */
int cm_gw_start(struct cm_gw *gw, struct cm_gw_shared *sh, unsigned index, uint16_t port);

/* cm_gw_stop - ask the thread to finish its requests and exit; then join it. */
void cm_gw_stop(struct cm_gw *gw);

/* Replies. Each answers the request once (later calls are ignored) and
 * resumes its connection if it was suspended. json is stolen. */
void cm_gw__reply_json(struct cm_gw_req *r, unsigned status, json_t *json);
void cm_gw__reply_error(struct cm_gw_req *r, unsigned status, int grpc_code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* An error of a Confman request, as status + JSON body; had_resp: it came
 * with a server's answer (-ECANCELED is then a failed CAS: 412; without
 * one the request was cancelled: 503). */
void cm_gw__reply_errno(struct cm_gw_req *r, int err, bool had_resp);
void cm_gw__reply(struct cm_gw_req *r, unsigned status, struct MHD_Response *resp);

/*
 * cm_gw__submit - send one Confman request for r: counts it in flight and
 * suspends r's connection until cb has run. cb gets r as arg; it must call
 * cm_gw__done(r) first and return at once if that says false.
 * Returns 0, or a cm_ac_submit error (then cb never runs).
 */
int cm_gw__submit(struct cm_gw_req *r, const struct cm_req *cq, cm_ac_cb cb);

/* cm_gw__submit_arg - cm_gw__submit, but cb gets arg (a context that leads
 * back to r; cb still calls cm_gw__done(r) first). Returns as cm_gw__submit. */
int cm_gw__submit_arg(struct cm_gw_req *r, const struct cm_req *cq, cm_ac_cb cb, void *arg);

/* cm_gw__send - cm_gw__submit; if that fails, answer r with its error. */
void cm_gw__send(struct cm_gw_req *r, const struct cm_req *cq, cm_ac_cb cb);

/* cm_gw__req_init - zero cq and set its op and path (borrowed: must stay
 * valid until cq is submitted). Precondition: len <= UINT32_MAX. */
void cm_gw__req_init(struct cm_req *cq, uint8_t op, const void *path, size_t len);

/* cm_gw__done - one Confman callback of r ran; false if r's client is gone
 * (r is freed when this was its last one): stop touching r. */
bool cm_gw__done(struct cm_gw_req *r);

/* cm_gw__done_ok - cm_gw__done, then answer r with err if the request
 * failed: true only when the callback goes on with a successful resp. */
bool cm_gw__done_ok(struct cm_gw_req *r, int err, const struct cm_resp *resp);

/* cm_gw__suspend / cm_gw__resume - pause / restart r's connection (idempotent). */
void cm_gw__suspend(struct cm_gw_req *r);
void cm_gw__resume(struct cm_gw_req *r);

/* cm_gw__consistency - a read's consistency: linearizable when r carries a
 * token ahead of what this thread has seen for its group, else dflt. */
uint8_t cm_gw__consistency(struct cm_gw_req *r, uint8_t dflt);

/* cm_gw__token_header - add X-Confman-Token: GROUP:INDEX of resp. */
void cm_gw__token_header(struct MHD_Response *m, const struct cm_resp *resp);

/* cm_gw__free_req - free r and what its handlers hold. */
void cm_gw__free_req(struct cm_gw_req *r);

/* cm_gw__dispatch - run r's handler (its caller is known). */
void cm_gw__dispatch(struct cm_gw_req *r);

/* ---- auth.c: the caller's identity ---- */
/* cm_gw__auth - find who calls (client certificate, bearer token): true
 * when r may be dispatched now; false when it was answered (401, 403) or a
 * token is being resolved (which dispatches r when it is done). */
bool cm_gw__auth(struct cm_gw_req *r);
/* MHD_OPTION_NOTIFY_CONNECTION: a connection's room for what its client
 * certificate proved (verified once per connection, not per request). */
void cm_gw__conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
			enum MHD_ConnectionNotificationCode toe);
/* 401 (unauthenticated) or 403, in the shape of r's API (etcd's for /v3). */
void cm_gw__reply_denied(struct cm_gw_req *r, bool unauthenticated, const char *why);

/* ---- v1.c: the native API ---- */
void cm_gw__v1_kv(struct cm_gw_req *r);
void cm_gw__v1_watch(struct cm_gw_req *r);
void cm_gw__sse_free(struct cm_gw_req *r);
void cm_gw__sse_keepalive(struct cm_gw *gw);
/* End the suspended streams whose client has gone (their watch slots are
 * free at once, their connections close on MHD's next run); how many. */
unsigned cm_gw__sse_sweep(struct cm_gw *gw);
void cm_gw__sse_shutdown(struct cm_gw *gw);

/* ---- v3.c, v3_walk.c, v3_txn.c: the etcd subset ---- */
void cm_gw__v3(struct cm_gw_req *r);
void cm_gw__v3_free(struct cm_gw_req *r);
json_t *cm_gw__v3_header(struct cm_gw_req *r, const struct cm_resp *resp, uint64_t revision);
json_t *cm_gw__v3_kv(const char *key, size_t klen, const struct cm_attr *a, const void *value,
		     size_t vlen, bool with_value);
json_t *cm_gw__v3_u64(uint64_t v); /* an int64 as etcd's gateway writes it: a string */
void cm_gw__v3_walk(struct cm_gw_req *r, bool del);
void cm_gw__v3_txn(struct cm_gw_req *r);
void cm_gw__v3_txn_free(struct cm_gw_txn *t);
void cm_gw__v3_delete_prev(struct cm_gw_req *r);

/* ---- v3_lease.c, v3_lock.c: leases and locks (api/v3_lease.h) ---- */
void cm_gw__v3_lease(struct cm_gw_req *r);     /* every CM_API_R_IS_LEASE route */
void cm_gw__v3_put_lease(struct cm_gw_req *r); /* a put with a lease (key valid) */
void cm_gw__v3_lease_free(struct cm_gw_req *r);

/* ---- probe.c: readiness ---- */
int cm_gw__probe_start(struct cm_gw *gw);
void cm_gw__probe_stop(struct cm_gw *gw);

#endif /* CONFMAN_API_GW_H */
