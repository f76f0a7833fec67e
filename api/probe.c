/* probe.c: confman-api's readiness: can it reach a replica of every shard? */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/gw.h"

/*
 * Thread 0 runs one probe round every CM_API_PROBE_MS on a client of its
 * own (timeout CM_API_PROBE_TIMEOUT_MS, so a paused server fails the round
 * quickly): SHARDS for the registry, then STATUS to every node of it. The
 * gateway is ready while every shard has a replica that answered STATUS in
 * the last round. The verdict and its reason go to the shared state, which
 * every thread's /readyz reads.
 */

#define PROBE_MAX_NODES 256
#define PROBE_MAX_SHARDS 1024

struct probe_shard {
	uint64_t group;
	char prefix[CM_PATH_MAX + 1];
	uint32_t n_replicas;
	uint64_t replicas[CM_CLIENT_MAX_REPLICAS];
};

struct cm_gw_probe {
	struct cm_gw *gw;
	struct cm_ac *ac; /* owned */
	uv_timer_t timer;
	bool busy, closing;
	unsigned pending; /* STATUS requests in flight */
	uint32_t n_shards, n_nodes;
	struct probe_shard *shards; /* owned, PROBE_MAX_SHARDS */
	uint64_t node_ids[PROBE_MAX_NODES];
	bool node_ok[PROBE_MAX_NODES];
	uint64_t term;
};

static void verdict(struct cm_gw_probe *p, bool ready, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void verdict(struct cm_gw_probe *p, bool ready, const char *fmt, ...)
{
	struct cm_gw_shared *sh = p->gw->sh;
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&sh->mu);
	vsnprintf(sh->reason, sizeof(sh->reason), fmt, ap);
	pthread_mutex_unlock(&sh->mu);
	va_end(ap);
	atomic_store(&sh->ready, ready ? 1 : 0);
	p->busy = false;
}

static void round_done(struct cm_gw_probe *p)
{
	if (p->term > 0)
		atomic_store(&p->gw->sh->term, p->term);
	for (uint32_t s = 0; s < p->n_shards; s++) {
		const struct probe_shard *sh = &p->shards[s];
		bool any = false;
		for (uint32_t k = 0; k < sh->n_replicas && !any; k++)
			for (uint32_t n = 0; n < p->n_nodes; n++)
				if (p->node_ids[n] == sh->replicas[k] && p->node_ok[n])
					any = true;
		if (!any) {
			verdict(p, false, "shard %s (group %llu): no replica reachable", sh->prefix,
				(unsigned long long)sh->group);
			return;
		}
	}
	verdict(p, true, "ready");
}

struct status_ctx {
	struct cm_gw_probe *p;
	uint32_t node;
};

static void on_status(void *arg, int err, const struct cm_resp *resp)
{
	struct status_ctx *sc = arg;
	struct cm_gw_probe *p = sc->p;
	if (err == 0 && resp != NULL) {
		p->node_ok[sc->node] = true;
		for (uint32_t g = 0; g < resp->n_groups; g++)
			if (resp->groups[g].term > p->term)
				p->term = resp->groups[g].term;
	}
	free(sc);
	if (--p->pending == 0 && !p->closing)
		round_done(p);
}

static void on_shards(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_gw_probe *p = arg;
	if (p->closing)
		return;
	if (err != 0 || resp == NULL) {
		verdict(p, false, "cannot read the shard map: %s", cm_strerror(err));
		return;
	}
	if (resp->n_shards == 0 || resp->n_shards > PROBE_MAX_SHARDS ||
	    resp->n_nodes > PROBE_MAX_NODES) {
		verdict(p, false, "shard map with %u shards and %u nodes: not probed",
			resp->n_shards, resp->n_nodes);
		return;
	}
	p->n_shards = resp->n_shards;
	for (uint32_t s = 0; s < resp->n_shards; s++) {
		struct probe_shard *d = &p->shards[s];
		const struct cm_shard *src = &resp->shards[s];
		d->group = src->group;
		snprintf(d->prefix, sizeof(d->prefix), "%.*s", (int)src->prefix.len, src->prefix.p);
		d->n_replicas = src->n_replicas < CM_CLIENT_MAX_REPLICAS ? src->n_replicas
									  : CM_CLIENT_MAX_REPLICAS;
		memcpy(d->replicas, src->replicas, d->n_replicas * sizeof(uint64_t));
	}
	p->n_nodes = resp->n_nodes;
	p->term = 0;
	p->pending = 1; /* held until every STATUS is sent */
	for (uint32_t n = 0; n < resp->n_nodes; n++) {
		p->node_ids[n] = resp->nodes[n].id;
		p->node_ok[n] = false;
		char addr[CM_ADDR_MAX + 1];
		snprintf(addr, sizeof(addr), "%.*s", (int)resp->nodes[n].addr.len,
			 resp->nodes[n].addr.p);
		struct status_ctx *sc = malloc(sizeof(*sc));
		if (sc == NULL)
			continue;
		*sc = (struct status_ctx){p, n};
		struct cm_req cq = {.op = CM_OP_STATUS, .consistency = CM_READ_FOLLOWER};
		if (cm_ac_submit_to(p->ac, addr, &cq, on_status, sc) == 0)
			p->pending++;
		else
			free(sc);
	}
	if (--p->pending == 0)
		round_done(p);
}

static void on_tick(uv_timer_t *t)
{
	struct cm_gw_probe *p = t->data;
	if (p->busy || p->closing)
		return;
	struct cm_req cq = {.op = CM_OP_SHARDS, .consistency = CM_READ_FOLLOWER};
	int rv = cm_ac_submit(p->ac, &cq, on_shards, p);
	if (rv != 0) {
		verdict(p, false, "cannot ask for the shard map: %s", cm_strerror(rv));
		return;
	}
	p->busy = true;
}

int cm_gw__probe_start(struct cm_gw *gw)
{
	struct cm_gw_probe *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->shards = calloc(PROBE_MAX_SHARDS, sizeof(*p->shards));
	if (p->shards == NULL) {
		free(p);
		return -ENOMEM;
	}
	p->gw = gw;
	struct cm_client_opts co;
	cm_client_opts_init(&co);
	co.servers = gw->sh->opts.servers;
	co.cluster = gw->sh->opts.cluster;
	co.timeout_ms = CM_API_PROBE_TIMEOUT_MS;
	co.ca = gw->sh->opts.ca;
	co.cert = gw->sh->opts.cert;
	co.key = gw->sh->opts.key;
	int rv = cm_ac_new(&gw->loop, &co, &p->ac);
	if (rv != 0) {
		free(p->shards);
		free(p);
		return rv;
	}
	uv_timer_init(&gw->loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, on_tick, 0, CM_API_PROBE_MS);
	gw->probe = p;
	return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct cm_gw_probe *p = h->data;
	free(p->shards);
	free(p);
}

void cm_gw__probe_stop(struct cm_gw *gw)
{
	struct cm_gw_probe *p = gw->probe;
	if (p == NULL)
		return;
	gw->probe = NULL;
	p->closing = true;
	cm_ac_close(p->ac, NULL, NULL); /* every callback runs now, with -ECANCELED */
	uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}
