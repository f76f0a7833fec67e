/* admin.c: the node's /healthz, /readyz and /metrics, served from its own loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"
#include "server/log.h"
#include "server/node.h"

void cm__admin_count(void *arg, const struct cm_resp *r)
{
	struct cm_node *n = arg;
	cm_metrics_count_request(&n->reqs, r->op, r->err);
}

/* Answered from the loop thread: if this runs, the loop turns. */
static int healthz(void *arg, char *reason, size_t cap)
{
	struct cm_node *n = arg;
	if (n->stopping) {
		snprintf(reason, cap, "shutting down");
		return 1;
	}
	return 0;
}

/* Ready: every hosted group has a leader, and this replica has heard from
 * it within the staleness bound (so its follower reads are served). */
int cm__node_ready(struct cm_node *n, char *reason, size_t cap)
{
	for (uint32_t k = 0; k < n->n_groups; k++) {
		struct raft_status st;
		raft_status(n->groups[k].raft, &st);
		unsigned long long id = (unsigned long long)n->groups[k].info->id;
		if (st.leader == 0) {
			snprintf(reason, cap, "group %llu has no leader", id);
			return 1;
		}
		uint64_t silent_ms = (uint64_t)st.leader_silence * n->cfg->tick_ms;
		if (st.role != RAFT_LEADER && silent_ms > n->cfg->max_staleness_ms) {
			snprintf(reason, cap, "group %llu: no word from leader %llu for %llu ms", id,
				 (unsigned long long)st.leader, (unsigned long long)silent_ms);
			return 1;
		}
	}
	return 0;
}

static int readyz(void *arg, char *reason, size_t cap)
{
	return cm__node_ready(arg, reason, cap);
}

static uint64_t ns_to_us(uint64_t ns)
{
	return ns == UINT64_MAX ? UINT64_MAX : (ns + 999) / 1000;
}

void cm__node_health(struct cm_node *n, struct cm_node_health *h)
{
	memset(h, 0, sizeof(*h));
	h->ready = cm__node_ready(n, h->reason, sizeof(h->reason)) == 0;
	if (h->ready)
		h->reason[0] = '\0';
	h->space = n->space_level;
	h->store_permille = (uint32_t)(cm_store_usage(n->store) * 1000 + 0.5);
	h->fsyncs = n->fsync.count;
	h->fsync_p50_us = ns_to_us(cm_metrics_hist_quantile_ns(&n->fsync, 0.50));
	h->fsync_p99_us = ns_to_us(cm_metrics_hist_quantile_ns(&n->fsync, 0.99));
	cm_metrics_requests_sum(&n->reqs, &h->requests, &h->failed);
	for (uint32_t k = 0; k < cm_net_peer_count(n->net) && k < CM_STATUS_MAX_PEERS; k++) {
		struct cm_peer_stats ps;
		cm_net_peer_stats(n->net, k, &ps);
		h->peers[k] = (struct cm_peer_health){
			.id = ps.id,
			.up = ps.connected,
			.silence_ms = cm_net_peer_silence(n->net, ps.id),
			.frames_out = ps.frames_out,
			.bytes_out = ps.bytes_out,
			.frames_in = ps.frames_in,
			.bytes_in = ps.bytes_in,
		};
		h->n_peers++;
	}
}

static void group_metrics(struct cm_node *n, struct cm_buf *out)
{
	static const struct {
		const char *name, *help;
	} g[] = {
		{"confman_raft_term", "Current Raft term of the group on this node."},
		{"confman_raft_commit_index", "Highest log index known committed."},
		{"confman_raft_applied_index", "Highest log index applied to the state machine."},
		{"confman_raft_last_index", "Last log index held."},
		{"confman_raft_is_leader", "1 if this node leads the group."},
	};
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		cm_metrics_write_header(out, g[i].name, g[i].help, "gauge");
		for (uint32_t k = 0; k < n->n_groups; k++) {
			struct raft_status st;
			raft_status(n->groups[k].raft, &st);
			char labels[256] = "", id[32];
			snprintf(id, sizeof(id), "%llu", (unsigned long long)n->groups[k].info->id);
			cm_metrics_label_append(labels, sizeof(labels), "group", id);
			cm_metrics_label_append(labels, sizeof(labels), "role", raft_role_name(st.role));
			uint64_t v[] = {st.term, st.commit, st.applied, st.last_index,
					st.role == RAFT_LEADER};
			cm_metrics_write_u64(out, g[i].name, labels, v[i]);
		}
	}
}

static void peer_metrics(struct cm_node *n, struct cm_buf *out)
{
	static const char *const names[] = {
		"confman_peer_frames_received_total", "confman_peer_frames_sent_total",
		"confman_peer_bytes_received_total", "confman_peer_bytes_sent_total",
		"confman_peer_messages_dropped_total",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		cm_metrics_write_header(out, names[i], "Raft traffic with a peer node.", "counter");
		for (uint32_t k = 0; k < cm_net_peer_count(n->net); k++) {
			struct cm_peer_stats ps;
			cm_net_peer_stats(n->net, k, &ps);
			char labels[64] = "", id[32];
			snprintf(id, sizeof(id), "%llu", (unsigned long long)ps.id);
			cm_metrics_label_append(labels, sizeof(labels), "peer", id);
			uint64_t v[] = {ps.frames_in, ps.frames_out, ps.bytes_in, ps.bytes_out,
					ps.dropped};
			cm_metrics_write_u64(out, names[i], labels, v[i]);
		}
	}
}

static void metrics(void *arg, struct cm_buf *out)
{
	struct cm_node *n = arg;
	group_metrics(n, out);
	cm_metrics_write_hist(out, "confman_fsync_seconds",
			      "Latency of the loop turn's one commit (fsync) of all groups.", NULL,
			      &n->fsync);
	cm_metrics_write_requests(out, &n->reqs);
	peer_metrics(n, out);
	cm_metrics_write_header(out, "confman_shard_map_epoch", "Epoch of the shard map.", "gauge");
	cm_metrics_write_u64(out, "confman_shard_map_epoch", NULL, n->reg.epoch);
	cm__members_metrics(n, out);
	cm_metrics_write_header(out, "confman_store_used_ratio",
				"Fraction of --map-size in use (LMDB pages less its free list).",
				"gauge");
	cm_metrics_write_value(out, "confman_store_used_ratio", NULL, cm_store_usage(n->store));
	cm_metrics_write_header(out, "confman_store_space_level",
				"0 ok, 1 low (only deletes accepted), 2 full (no client write).",
				"gauge");
	cm_metrics_write_u64(out, "confman_store_space_level", NULL, n->space_level);
}

/* A PEM file's text for MHD (malloc'd), at most 1 MiB; NULL when unreadable. */
static char *read_pem(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		cm_log_error("http: %s: %s", path, strerror(errno));
		return NULL;
	}
	size_t cap = 1u << 20;
	char *buf = malloc(cap + 1);
	size_t len = buf ? fread(buf, 1, cap + 1, f) : 0;
	fclose(f);
	if (buf == NULL || len == 0 || len > cap) {
		cm_log_error("http: %s: empty, unreadable or over 1 MiB", path);
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

int cm__admin_start(struct cm_node *n)
{
	const char *addr = n->cfg->http_addr;
	if (addr[0] == '\0')
		addr = cm_config_node(n->cfg, n->cfg->node_id)->http;
	if (addr[0] == '\0')
		return 0; /* not asked for */
	struct cm_http_handlers h = {.arg = n, .healthz = healthz, .readyz = readyz,
				     .metrics = metrics};
	/* A TLS node serves HTTPS with its own certificate (the key's mode
	 * was checked when TLS was loaded); plain HTTP only when insecure. */
	bool tls = !n->cfg->insecure && n->cfg->cert[0] && n->cfg->key[0];
	int rv = 0;
	if (tls && ((n->http_cert = read_pem(n->cfg->cert)) == NULL ||
		    (n->http_key = read_pem(n->cfg->key)) == NULL))
		rv = -EINVAL;
	if (rv == 0)
		rv = tls ? cm_http_start_tls(n->loop, addr, &h, n->http_cert, n->http_key, &n->http)
			 : cm_http_start(n->loop, addr, &h, &n->http);
	if (rv != 0)
		cm_log_error("http on %s: %s", addr, cm_strerror(rv));
	else
		cm_log_info("%s on %s", tls ? "https" : "http", addr);
	return rv;
}
