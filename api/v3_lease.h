/* v3_lease.h: the state of a lease or lock request, shared by v3_lease.c and v3_lock.c. */
#ifndef CONFMAN_API_V3_LEASE_H
#define CONFMAN_API_V3_LEASE_H

/*
 * How an etcd lease spans shards (api/README.md "Leases and locks"): a
 * lease is granted in the root group ("/"), which is its authority: it
 * exists while the root holds it, with the root's TTL. A put with the
 * lease on a key of another shard, or a lock named there, first grants
 * the same id in that shard's group with the root's TTL (an "ensure").
 * The gateway remembers nothing: keepalive, revoke and timetolive ask the
 * shard map and send to every group (each group not holding the id
 * answers ENOENT, which is skipped), so any gateway replica, or one just
 * restarted, serves any lease.
 */

#include <stdbool.h>
#include <stdint.h>

#include "api/gw.h"

#define CM_API_LEASE_ROOT "/"
#define CM_API_LEASE_TTL_MIN_S 2           /* etcd's minimum (a smaller TTL gets it) */
#define CM_API_LEASE_FANOUT_MAX 1024       /* groups one lease request asks */
#define CM_API_LEASE_GRANT_TRIES 4         /* random ids drawn on EEXIST */
#define CM_API_LOCK_WAITERS_MAX 1024       /* lock requests waiting per gateway thread */

struct cm_gw_lease;
typedef void (*cm_gw_lease_step)(struct cm_gw_req *r);

struct cm_gw_lease {
	struct cm_etcd_lease q;
	uint64_t id;                 /* the lease concerned */
	/* grant */
	bool chosen, resent;
	unsigned tries;
	uint32_t ttl_ms;
	/* the root group's answer (keepalive, timetolive) */
	struct cm_attr root;
	uint64_t hdr_group, hdr_token; /* the header's member_id and revision */
	/* fan-out to every group */
	uint32_t fan_flags;
	bool fan_root;               /* the root group too (revoke) */
	cm_gw_lease_step fan_done;
	char **prefixes;
	uint32_t n_prefixes, pending, n_ok;
	int fan_err;
	bool fan_err_resp;
	json_t *keys;                /* timetolive: base64 keys; owned */
	/* ensure: grant id in path's group with the root's TTL, then `then` */
	bool ensured;
	const char *ens_path;        /* borrowed from the request */
	size_t ens_len;
	cm_gw_lease_step then;
	/* lock */
	char *lock_name;             /* owned, NUL-terminated */
	size_t lock_len;
	uint64_t lock_lease, deadline_ms;
	bool counted;                /* counted in the thread's waiters */
};

/* v3_lease.c, for v3_lock.c */
struct cm_gw_lease *cm_gw__lease_state(struct cm_gw_req *r); /* r->lease, allocated */
void cm_gw__lease_ensure(struct cm_gw_req *r, const char *path, size_t len, cm_gw_lease_step then);
void cm_gw__lease_header_reply(struct cm_gw_req *r, const struct cm_resp *resp, json_t *o);
void cm_gw__lease_not_found(struct cm_gw_req *r, bool as_lock);

/* v3_lock.c */
void cm_gw__v3_lock(struct cm_gw_req *r);
void cm_gw__v3_unlock(struct cm_gw_req *r);
void cm_gw__lock_free(struct cm_gw_lease *l);

#endif /* CONFMAN_API_V3_LEASE_H */
