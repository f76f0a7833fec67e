/* client_int.h: the asynchronous client's internals, shared by the files of client/. */
#ifndef CONFMAN_CLIENT_INT_H
#define CONFMAN_CLIENT_INT_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/codec.h"
#include "common/tls.h"
#include "confman/client.h"
#include "confman/path.h"

/*
 * Lifetimes. Every piece of memory with a libuv handle is freed in that
 * handle's close callback, never synchronously: a user callback may close
 * the client at any point, and the code that called it still touches the
 * request, the connection and the client afterwards. A watch has no handle;
 * it is reference-counted while its callback runs.
 *
 * Out of memory is returned (-ENOMEM), never fatal: this is a library.
 */

#define CM_AC_BACKOFF_MIN_MS 20
#define CM_AC_BACKOFF_MAX_MS 500
#define CM_AC_REDIRECTS_FAST 3   /* redirects followed without waiting */
#define CM_AC_ATTEMPT_MIN_MS 100 /* a read waits at least this for one server */
#define CM_AC_CONNECT_MAX_MS 1000 /* connect + handshake, at most */
#define CM_AC_RECV_CHUNK 65536
#define CM_AC_MAP_HINT_MS 1000  /* a map fetch on a mere hint, at most this often */
#define CM_AC_MAP_RETRY_MS 100  /* a map fetch for an epoch asked already, at most this often */
#define CM_AC_WATCH_MAP_MS 5000 /* while watching, the map is fetched at least this often */
#define CM_AC_WATCH_PROBE_MS 2000 /* after a MKDIR event (a new shard's top?), for this long */
#define CM_AC_WATCH_PROBE_EVERY_MS 250 /* ... the map is fetched this often */

/* An intrusive doubly-linked list (libuv's QUEUE, by another name). */
struct cm_ac__link {
	struct cm_ac__link *prev, *next;
};

void cm_ac__list_init(struct cm_ac__link *h);
bool cm_ac__list_empty(const struct cm_ac__link *h);
void cm_ac__list_push(struct cm_ac__link *h, struct cm_ac__link *n);
void cm_ac__list_remove(struct cm_ac__link *n);
#define CM_AC__CONTAINER(ptr, type, field) ((type *)((char *)(ptr) - offsetof(type, field)))

enum cm_ac__conn_state {
	CM_AC_CONN_RESOLVING = 1,
	CM_AC_CONN_CONNECTING,
	CM_AC_CONN_HANDSHAKE,
	CM_AC_CONN_READY,
	CM_AC_CONN_CLOSING,
};

struct cm_ac__conn {
	struct cm_ac *ac;
	uint32_t server; /* index in ac->servers */
	enum cm_ac__conn_state state;
	int refs;        /* the tcp and timer handles + a pending getaddrinfo */
	uv_getaddrinfo_t gai;
	uv_timer_t timer; /* connect + handshake deadline */
	uv_connect_t creq;
	uv_tcp_t tcp;
	uv_write_t wreq;
	struct cm_framer fr;
	msgpack_sbuffer out;  /* frames not yet handed to the socket */
	msgpack_sbuffer wbuf; /* the frames of the write in progress (plain TCP) */
	struct cm_tls *tls;   /* owned; NULL: plain TCP */
	uint64_t tls_node;    /* the node its certificate names (TLS) */
	bool writing;
	uint64_t wgen;        /* uv_write()s started so far */
	struct cm_ac__link waitq; /* requests not yet encoded, in order */
	struct cm_ac__link sentq; /* requests encoded, awaiting an answer */
	struct cm_ac__link watches; /* active watches subscribed here */
	char rbuf[CM_AC_RECV_CHUNK];
};

struct cm_ac__server {
	char addr[CM_ADDR_MAX + 1];  /* "host:port" as listed or redirected to */
	char host[CM_ADDR_MAX + 1];
	char port[8];
	struct cm_ac__conn *conn;    /* owned; NULL when not connected */
	uint64_t node_id;            /* its HELLO_OK's, else the shard map's; 0 unknown */
	uint64_t down_until;         /* uv_now(): avoid it until then */
	uint32_t backoff;            /* ms, for the next failure */
	uint32_t inflight;           /* this client's attempts waiting on it (route.c) */
	int8_t local;                /* its last connection had our address at both
				      * ends: 1, or not: 0; -1 before any connection */
};

struct cm_ac__group {
	uint64_t id;
	uint64_t token;  /* highest applied index seen */
	int32_t leader;  /* server index, -1 unknown */
	char *prefix;    /* from STATUS; owned, NULL unknown: guesses tokens before the map */
	uint32_t plen;
};

/* One shard of the map: a path prefix served by a group on some nodes. */
struct cm_ac__shard {
	uint64_t group;
	const char *prefix;  /* NUL-terminated, in the map's allocation */
	uint32_t plen;
	bool routable;       /* a clean absolute path of a path group (not the meta group) */
	uint32_t n_replicas;
	uint64_t replicas[CM_CLIENT_MAX_REPLICAS]; /* node ids */
	uint64_t born;       /* a split's: the parent's index it began at (0: not split) */
};

/* The shard registry as the newest SHARDS answer had it. */
struct cm_ac__map {
	bool valid;          /* an answer was installed */
	uint64_t epoch;
	uint32_t n_shards;   /* <= CM_CLIENT_MAX_SHARDS */
	struct cm_ac__shard *shards; /* owned; the prefixes follow in the same block */
};

enum cm_ac__kind {
	CM_AC_RQ_USER = 1,
	CM_AC_RQ_STATUS_MAP, /* internal: learn a server's groups and leaderships */
	CM_AC_RQ_SHARDS_MAP, /* internal: fetch the shard map */
	CM_AC_RQ_WATCH,      /* internal: (re)subscribe a watch */
	CM_AC_RQ_UNWATCH,    /* internal: fire and forget */
};

enum cm_ac__rq_state {
	CM_AC_RQ_IDLE = 1, /* waiting for its backoff timer */
	CM_AC_RQ_WAITING,  /* on a connection's waitq */
	CM_AC_RQ_SENT,     /* on a connection's sentq */
	CM_AC_RQ_DONE,     /* completed; timer closing */
};

struct cm_ac__watch;

struct cm_ac__req {
	struct cm_ac *ac;
	enum cm_ac__kind kind;
	enum cm_ac__rq_state state;
	struct cm_ac__link all;   /* ac->reqs */
	struct cm_ac__link qlink; /* conn->waitq or sentq */
	struct cm_ac__req *hnext; /* ac->ids bucket chain */
	struct cm_req req;        /* path, path2, value point into data */
	cm_ac_cb cb;
	void *arg;
	struct cm_ac__wsub *wsub; /* CM_AC_RQ_WATCH: borrowed, outlives rq */
	uv_timer_t timer;         /* deadline, attempt timeout and backoff */
	uint64_t deadline;        /* uv_now() */
	uint32_t backoff;         /* ms */
	uint32_t redirects;
	int32_t pinned;           /* server index, or -1 */
	int32_t avoid;            /* server that just failed it, or -1 */
	int32_t target;           /* server the next attempt goes to, or -1 */
	int32_t srv;              /* server of the current/last attempt, or -1 */
	uint64_t pgroup;          /* group of the path (map, guess or req.group), 0 unknown */
	uint64_t wgroup;          /* REQ.group on the wire: req.group, else the map's, else 0;
				   * a token goes out only with a group (conn.c) */
	bool lin_unrouted;        /* this attempt is a follower read the server routes (no
				   * map) while we hold tokens: sent linearizable (shard.c) */
	struct cm_ac__conn *conn; /* borrowed, while WAITING or SENT */
	uint64_t wgen;            /* the write its frame went out with */
	int last_err;             /* why the last attempt failed */
	bool is_write;
	bool idempotent;          /* a write that may go again after a lost connection */
	char data[];              /* path, path2, value */
};

/*
 * One change stream behind a watch: a server-side watch of one group.
 * Sub 0 subscribes with the watch's prefix and goes wherever the prefix
 * routes (the owner of the prefix); the others with the prefix of a shard
 * nested below it (found in the shard map), one per group. Each keeps its
 * own resume index: indexes of different groups never compare.
 */
struct cm_ac__wsub {
	struct cm_ac__watch *w;   /* borrowed: the owner, outlives the sub */
	struct cm_ac__link clink; /* conn->watches while active */
	uint64_t group;           /* the group it streams; 0 until the first answer */
	uint64_t wire_id;         /* id of the subscription request in force */
	struct cm_ac__conn *conn; /* borrowed: where it is active, or NULL */
	struct cm_ac__req *rq;    /* borrowed: subscription in progress, or NULL */
	int32_t srv;              /* server it is active on, or -1 */
	uint64_t from;            /* first index wanted (first subscription); 0: now */
	uint64_t last;            /* last index delivered (or acked from) */
	bool has_last;
	bool starting;            /* a later shard's first subscription: owed nothing yet */
	uint64_t heard;           /* uv_now(): its last sign of life (answer, event) */
	uint32_t plen;
	char prefix[];            /* the path it subscribes with */
};

struct cm_ac__watch {
	struct cm_ac *ac;
	struct cm_ac__link link;  /* ac->watches */
	uint64_t handle;          /* what cm_ac_watch() returned */
	cm_ac_event_cb cb;
	void *arg;
	uint32_t flags;           /* CM_AC_WATCH_* */
	bool live;                /* every stream live, as last reported */
	bool dead;
	int refs;                 /* callbacks running */
	uint64_t map_epoch;       /* the map epoch its first nested subs came from; 0 none yet */
	struct cm_ac__wsub **subs; /* owned array of owned subs; [0] the prefix's own */
	uint32_t n_subs, cap_subs; /* n_subs <= CM_CLIENT_MAX_SHARDS */
	uint32_t plen;
	char *as;                 /* forwarded identity (cm_ac_watch_as), after prefix */
	uint32_t as_len;          /* 0: none */
	char prefix[];
};

struct cm_ac {
	uv_loop_t *loop;
	char cluster[CM_CLUSTER_MAX + 1];
	uint32_t timeout_ms;
	uint8_t consistency;
	uint32_t max_outstanding;
	uint32_t n_outstanding;   /* user requests not yet completed */
	uint64_t next_id;         /* wire ids: unique per client, never reused */
	uint64_t next_watch;
	uint64_t rng;
	bool closing;
	cm_ac_close_cb close_cb;
	void *close_arg;
	uint32_t n_handles;       /* open libuv handles; freed when 0 */
	uint64_t n_reads;         /* read callbacks so far (sync.c's catch-up) */
	uv_timer_t anchor;        /* makes closing asynchronous even when idle */
	struct cm_ac__server servers[CM_CLIENT_MAX_SERVERS];
	uint32_t n_servers;
	uint32_t n_listed;        /* servers[0, n_listed) came from opts */
	uint32_t home;            /* preferred server for reads */
	uint32_t turn;            /* where the next scan of replicas starts (route.c) */
	struct cm_ac__group *groups;  /* owned array */
	uint32_t n_groups;
	struct cm_ac__map map;
	bool map_pending;         /* a SHARDS fetch is in flight */
	uint64_t map_asked;       /* the newest epoch a fetch was started for */
	uint64_t map_at;          /* uv_now() when the last fetch started */
	struct cm_ac__req **ids;  /* owned buckets of borrowed requests, by wire id */
	uint32_t id_mask;
	struct cm_ac__link reqs;  /* every request not yet DONE (owned) */
	struct cm_ac__link watches; /* live watches (owned) */
	uint32_t n_watches;
	uint32_t watch_silence_ms; /* a stream silent this long is dead */
	uv_timer_t wtimer;        /* checks the streams' liveness while watches exist */
	uint64_t map_probe_until; /* uv_now(): fetch the map often until then (a new shard?) */
	struct cm_tls_ctx *tls;   /* owned; NULL: plain TCP */
};

/* An attempt of rq leaves its connection (answered, retried, lost): the
 * server's count of this client's attempts in flight, which route.c reads
 * to prefer the least-loaded replica, goes down. */
static inline void cm_ac__inflight_end(struct cm_ac__req *rq)
{
	struct cm_ac__server *srv = &rq->ac->servers[rq->srv];
	assert(rq->srv >= 0 && srv->inflight > 0);
	srv->inflight--;
	rq->conn = NULL;
}

/* ac.c */
/* CONF_CHANGE, TRANSFER, NODE_ADD, NODE_REMOVE, SHARD_SET: group-addressed
 * writes with no path, sent to a leader. */
bool cm_ac__op_is_member(uint8_t op);
int cm_ac__submit(struct cm_ac *ac, enum cm_ac__kind kind, int32_t pinned,
		  const struct cm_req *req, cm_ac_cb cb, void *arg, struct cm_ac__req **out);
void cm_ac__attempt(struct cm_ac__req *rq);
void cm_ac__retry(struct cm_ac__req *rq, int err, bool now);
void cm_ac__finish(struct cm_ac__req *rq, int err, const struct cm_resp *resp);
void cm_ac__on_resp(struct cm_ac__conn *c, const struct cm_resp *resp);
void cm_ac__handle_gone(struct cm_ac *ac);
void cm_ac__id_remove(struct cm_ac *ac, struct cm_ac__req *rq);
void cm_ac__wake(struct cm_ac__req *rq);
uint32_t cm_ac__rand(struct cm_ac *ac, uint32_t n);

/* conn.c */
int cm_ac__conn_get(struct cm_ac *ac, uint32_t server, struct cm_ac__conn **out);
void cm_ac__conn_enqueue(struct cm_ac__conn *c, struct cm_ac__req *rq);
void cm_ac__conn_pump(struct cm_ac__conn *c);
void cm_ac__conn_fail(struct cm_ac__conn *c, int err);

/* route.c */
int cm_ac__parse_servers(struct cm_ac *ac, const char *list);
int cm_ac__server_find(struct cm_ac *ac, const char *addr, uint32_t len, bool add);
int32_t cm_ac__pick(struct cm_ac *ac, struct cm_ac__req *rq, const struct cm_ac__shard *sh);
void cm_ac__server_failed(struct cm_ac *ac, uint32_t server);
void cm_ac__server_ok(struct cm_ac *ac, uint32_t server);
struct cm_ac__group *cm_ac__group_get(struct cm_ac *ac, uint64_t id, bool add);
/* Whether any group's token is nonzero (something to read after). */
bool cm_ac__holds_tokens(const struct cm_ac *ac);
/* Without a map: the group a path probably belongs to (STATUS prefixes, or
 * the only group seen), 0 unknown. A guess for choosing a leader only: it
 * never decides where a token goes. */
uint64_t cm_ac__predict(struct cm_ac *ac, const char *path, uint32_t len);
void cm_ac__learn(struct cm_ac *ac, struct cm_ac__req *rq, const struct cm_resp *resp);
/* The group whose leader answered rq: the meta group for the registry's
 * and the node table's ops (SHARD_SET names a shard but is the meta
 * leader's), else the answer's group. */
uint64_t cm_ac__leader_group(const struct cm_ac__req *rq, const struct cm_resp *resp);
/* Whether "host:port" (or "[v6]:port"), n bytes, is an address we can dial. */
bool cm_ac__addr_ok(const char *a, size_t n);
void cm_ac__status_map(struct cm_ac *ac, uint32_t server);
void cm_ac__status_merge(struct cm_ac *ac, uint32_t server, const struct cm_resp *resp);
void cm_ac__groups_free(struct cm_ac *ac);

/* shard.c */
const struct cm_ac__shard *cm_ac__route(struct cm_ac *ac, struct cm_ac__req *rq);
const struct cm_ac__shard *cm_ac__map_find(const struct cm_ac *ac, const char *path,
					   uint32_t len);
const struct cm_ac__shard *cm_ac__map_group(const struct cm_ac *ac, uint64_t group);
int32_t cm_ac__node_server(const struct cm_ac *ac, uint64_t node_id);
void cm_ac__map_fetch(struct cm_ac *ac, int32_t target, uint64_t epoch);
void cm_ac__map_hint(struct cm_ac *ac);
bool cm_ac__map_wrongshard(struct cm_ac *ac, uint64_t epoch, int32_t server);
void cm_ac__map_install(struct cm_ac *ac, const struct cm_resp *resp);
void cm_ac__map_wake(struct cm_ac *ac);
void cm_ac__map_free(struct cm_ac *ac);

/* sync.c: the blocking API's calls, shared with sync_shard.c */
struct cm_client {
	uv_loop_t loop;
	struct cm_ac *ac; /* owned */
};

/* One blocking call: the completion copies what the caller asked for. */
struct cm_client__call {
	bool done;
	int err;
	int (*copy)(struct cm_client__call *s, const struct cm_resp *resp);
	void *out;       /* what copy fills; depends on the call */
	void *out2;
	struct cm_attr *attr;
	bool answered;   /* a server answered (err may be its error) */
	uint64_t group;  /* the answer's group and token, when answered */
	uint64_t token;
};

/* Run req to completion: to server ("host:port") only, or routed (NULL). */
int cm_client__run(struct cm_client *c, const char *server, const struct cm_req *req,
		   struct cm_client__call *s);
int cm_client__path(const char *path, struct cm_bytes *b);
/* Notice what arrived while nobody ran the loop (a closed connection)
 * before sending: see sync.c. */
void cm_client__catch_up(struct cm_client *c);
/* sync_shard.c: bring the client's map up to date from the meta leader (best effort). */
void cm_client__refresh_map(struct cm_client *c);

/* watch.c */
void cm_ac__watch_on_event(struct cm_ac__conn *c, const struct cm_event *ev);
void cm_ac__watch_sub_done(struct cm_ac__req *rq, int err, const struct cm_resp *resp);
void cm_ac__watch_conn_lost(struct cm_ac__conn *c);
void cm_ac__watch_close_all(struct cm_ac *ac);
/* An attempt of a WATCH gave up on its server: undo what it may have made. */
void cm_ac__watch_attempt_abandoned(struct cm_ac__req *rq);
/* The shard map changed: add the streams of shards nested below a prefix. */
void cm_ac__watch_map_changed(struct cm_ac *ac);
int cm_ac__watch_timer_init(struct cm_ac *ac);

#endif /* CONFMAN_CLIENT_INT_H */
