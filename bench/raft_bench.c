/* raft_bench.c: throughput and memory of the Raft core alone (no network, no disk). */

/*
 * Two measurements, both on one thread with everything in memory:
 *
 *  throughput  A 3-node cluster; the leader gets proposals of 128-byte entries
 *              in batches each loop turn. Messages are copied like a network
 *              would copy them (entry structs and payloads into a buffer of
 *              the harness, since raft_advance() frees the batch), then stepped
 *              into their recipient. Persisting is a no-op: the contract asks
 *              nothing of a node that never restarts. An entry counts when the
 *              leader hands it out in committed[]. Every node checks that it
 *              applies every payload exactly once, in order.
 *
 *  memory      Heap bytes held per group, from glibc's mallinfo2(): in-use
 *              small chunks (uordblks) plus mmapped big ones (hblkhd).
 *              - G followers straight out of raft_new() (3-voter bootstrap);
 *              - C 3-node clusters run to an idle steady state: elected, a few
 *                entries committed, a snapshot taken everywhere (log
 *                compacted), heartbeats exchanged. Leaders and followers are
 *                then freed separately; what each free returns is what they
 *                held.
 *              - one cluster after a heavy load, compacted and idle: whether
 *                its buffers shrink back.
 *
 * mallinfo2() counts chunks parked in glibc's per-thread cache (tcache) as in
 * use, so a free that lands there returns nothing in the figures. The memory
 * part therefore runs in a child process re-executed with
 * GLIBC_TUNABLES=glibc.malloc.tcache_count=0 (and checks that it took), while
 * the throughput runs keep the allocator as a server would have it.
 *
 * Out of memory: the bench aborts (it is a measuring tool, not a server).
 */

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "raft/raft.h"

#define NODES 3
#define ENTRY_BYTES 128
#define MAX_BATCHES 8
#define SNAP_BYTES 64      /* size of the (fake) state machine snapshot */
#define SNAP_EVERY 65536   /* default entries applied between snapshots, per node */
#define SNAP_KEEP 4096     /* entries kept in memory after a snapshot */
#define TICK_EVERY 100     /* loop turns per tick: ~100 ms ticks, ~1 ms turns */
#define DRAIN_MAX_TURNS 10000
#define MAX_REPEAT 15

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (p == NULL) {
		fprintf(stderr, "raft-bench: out of memory (%zu bytes)\n", n);
		abort();
	}
	return p;
}

static void *xrealloc(void *old, size_t n)
{
	void *p = realloc(old, n);
	if (p == NULL) {
		fprintf(stderr, "raft-bench: out of memory (%zu bytes)\n", n);
		abort();
	}
	return p;
}

static uint64_t now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "raft-bench: %s: %s (%d)\n", what, cm_strerror(rc), rc);
	exit(1);
}

/* ---- arena: the harness's "network buffers", reset once delivered ---- */

struct arena_block {
	struct arena_block *next;
	size_t used;
	size_t cap;
	max_align_t data[]; /* cap bytes */
};

struct arena {
	struct arena_block *head; /* owned, all blocks */
	struct arena_block *cur;  /* borrowed: block being filled */
};

#define ARENA_BLOCK (1u << 20)

static void *arena_alloc(struct arena *a, size_t n)
{
	n = (n + 15u) & ~(size_t)15u;
	while (a->cur != NULL && a->cur->used + n > a->cur->cap)
		a->cur = a->cur->next;
	if (a->cur == NULL) {
		size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
		struct arena_block *b = xmalloc(sizeof(*b) + cap);
		b->used = 0;
		b->cap = cap;
		b->next = a->head;
		a->head = b;
		a->cur = b;
	}
	void *p = (unsigned char *)a->cur->data + a->cur->used;
	a->cur->used += n;
	return p;
}

static void arena_reset(struct arena *a)
{
	for (struct arena_block *b = a->head; b != NULL; b = b->next)
		b->used = 0;
	a->cur = a->head;
}

static void arena_free(struct arena *a)
{
	while (a->head != NULL) {
		struct arena_block *b = a->head;
		a->head = b->next;
		free(b);
	}
	a->cur = NULL;
}

/* ---- net: messages in flight, deep-copied out of the sender's batch ---- */

struct net {
	struct raft_msg *msgs; /* owned; entries and payloads live in arena */
	size_t n;
	size_t cap;
	struct arena arena;
	uint64_t sent;          /* messages, ever */
	uint64_t payload_bytes; /* entry payload bytes copied, ever */
};

/* The fake snapshot every node "takes": SNAP chunks carry these bytes. */
static const unsigned char snap_bytes[SNAP_BYTES];

static void net_send(struct net *net, const struct raft_msg *m)
{
	if (m->type == RAFT_MSG_SNAP) {
		/* The caller attaches the chunk; drop what we do not have. */
		if (m->offset > SNAP_BYTES || m->len > SNAP_BYTES - m->offset)
			return;
	}
	if (net->n == net->cap) {
		net->cap = net->cap ? net->cap * 2 : 64;
		net->msgs = xrealloc(net->msgs, net->cap * sizeof(*net->msgs));
	}
	struct raft_msg *c = &net->msgs[net->n++];
	*c = *m;
	if (m->type == RAFT_MSG_SNAP)
		c->data = snap_bytes + m->offset;
	if (m->n_entries == 0) {
		c->entries = NULL;
		net->sent++;
		return;
	}
	c->entries = arena_alloc(&net->arena, m->n_entries * sizeof(*c->entries));
	for (uint32_t i = 0; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];
		c->entries[i] = *e;
		if (e->len > 0) {
			c->entries[i].data = arena_alloc(&net->arena, e->len);
			memcpy(c->entries[i].data, e->data, e->len);
			net->payload_bytes += e->len;
		}
	}
	net->sent++;
}

static void net_reset(struct net *net)
{
	net->n = 0;
	arena_reset(&net->arena);
}

static void net_free(struct net *net)
{
	free(net->msgs);
	arena_free(&net->arena);
	memset(net, 0, sizeof(*net));
}

/* ---- cluster: NODES groups of one Raft group, ids 1..NODES ---- */

struct node {
	struct raft *r;      /* owned */
	raft_index applied;  /* state machine applied index */
	uint64_t next_seq;   /* sequence number the next NORMAL entry must carry */
	uint64_t applied_normal;
	raft_index snap_at;  /* applied index of the last snapshot taken */
	enum raft_role role;
};

struct cluster {
	struct node nodes[NODES];
	struct net *out;     /* borrowed: messages sent this turn */
	struct net *in;      /* borrowed: messages being delivered */
	uint64_t core_ns;    /* time spent inside raft_* calls */
	bool timed;          /* measure core_ns */
	uint64_t errors;     /* verification failures */
	raft_index snap_every; /* 0: never take snapshots */
};

static void cluster_conf(struct raft_conf *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->n = NODES;
	for (uint32_t i = 0; i < NODES; i++) {
		conf->ids[i] = i + 1;
		conf->kinds[i] = RAFT_VOTER;
	}
}

static struct raft *group_new(const struct raft_config *base, raft_id id, uint64_t seed)
{
	struct raft_config cfg = *base;
	cfg.id = id;
	cfg.seed = seed;
	struct raft_boot boot;
	memset(&boot, 0, sizeof(boot));
	cluster_conf(&boot.snap.conf);
	struct raft *r = NULL;
	int rc = raft_new(&cfg, &boot, &r);
	if (rc != 0)
		die("raft_new", rc);
	return r;
}

static void cluster_init(struct cluster *c, const struct raft_config *cfg, uint64_t seed,
			 struct net *out, struct net *in)
{
	memset(c, 0, sizeof(*c));
	for (uint32_t i = 0; i < NODES; i++) {
		c->nodes[i].r = group_new(cfg, i + 1, seed * NODES + i + 1);
		c->nodes[i].next_seq = 1;
		c->nodes[i].role = RAFT_FOLLOWER;
	}
	c->out = out;
	c->in = in;
}

/* Apply one committed entry: NORMAL payloads carry their sequence number. */
static void node_apply(struct cluster *c, struct node *n, const struct raft_entry *e)
{
	if (e->index != n->applied + 1) {
		fprintf(stderr, "raft-bench: applied index %" PRIu64 " after %" PRIu64 "\n",
			e->index, n->applied);
		c->errors++;
	}
	n->applied = e->index;
	if (e->type != RAFT_ENTRY_NORMAL)
		return;
	uint64_t seq = 0;
	if (e->len == ENTRY_BYTES)
		memcpy(&seq, e->data, sizeof(seq));
	if (seq != n->next_seq) {
		fprintf(stderr, "raft-bench: entry %" PRIu64 " has seq %" PRIu64
			", expected %" PRIu64 "\n", e->index, seq, n->next_seq);
		c->errors++;
	}
	n->next_seq = seq + 1;
	n->applied_normal++;
}

/* Take every batch a node has: persist (no-op), send, apply, advance. */
static void node_flush(struct cluster *c, struct node *n)
{
	for (;;) {
		uint64_t t0 = c->timed ? now_ns(CLOCK_MONOTONIC) : 0;
		if (!raft_has_ready(n->r)) {
			if (c->timed)
				c->core_ns += now_ns(CLOCK_MONOTONIC) - t0;
			break;
		}
		struct raft_ready rd;
		raft_ready(n->r, &rd);
		if (c->timed)
			c->core_ns += now_ns(CLOCK_MONOTONIC) - t0;
		for (uint32_t i = 1; i < rd.n_entries; i++) {
			if (rd.entries[i].index != rd.entries[i - 1].index + 1)
				c->errors++;
		}
		for (uint32_t i = 0; i < rd.n_msgs; i++)
			net_send(c->out, &rd.msgs[i]);
		if (rd.snap_installed) {
			n->applied = rd.snap.index;
			n->snap_at = rd.snap.index;
		}
		for (uint32_t i = 0; i < rd.n_committed; i++)
			node_apply(c, n, &rd.committed[i]);
		n->role = rd.role;
		t0 = c->timed ? now_ns(CLOCK_MONOTONIC) : 0;
		raft_advance(n->r);
		if (c->snap_every != 0 && n->applied >= n->snap_at + c->snap_every) {
			int rc = raft_snapshot_taken(n->r, n->applied, SNAP_BYTES, SNAP_KEEP, NULL);
			if (rc != 0)
				die("raft_snapshot_taken", rc);
			n->snap_at = n->applied;
		}
		if (c->timed)
			c->core_ns += now_ns(CLOCK_MONOTONIC) - t0;
	}
}

/* Deliver what was sent; returns the number of messages delivered. */
static size_t cluster_deliver(struct cluster *c)
{
	struct net *t = c->in;
	c->in = c->out;
	c->out = t;
	uint64_t t0 = c->timed ? now_ns(CLOCK_MONOTONIC) : 0;
	for (size_t i = 0; i < c->in->n; i++) {
		const struct raft_msg *m = &c->in->msgs[i];
		if (m->to < 1 || m->to > NODES) {
			c->errors++;
			continue;
		}
		int rc = raft_step(c->nodes[m->to - 1].r, m);
		if (rc != 0)
			die("raft_step", rc);
	}
	if (c->timed)
		c->core_ns += now_ns(CLOCK_MONOTONIC) - t0;
	size_t n = c->in->n;
	net_reset(c->in);
	return n;
}

/* One loop turn: every node's batches, then deliver. Leader first. */
static size_t cluster_turn(struct cluster *c, uint32_t leader_slot)
{
	node_flush(c, &c->nodes[leader_slot]);
	for (uint32_t i = 0; i < NODES; i++) {
		if (i != leader_slot)
			node_flush(c, &c->nodes[i]);
	}
	return cluster_deliver(c);
}

/* Run turns until nothing is sent any more. */
static void cluster_drain(struct cluster *c, uint32_t leader_slot)
{
	for (int turn = 0; turn < DRAIN_MAX_TURNS; turn++) {
		if (cluster_turn(c, leader_slot) == 0)
			return;
	}
	fprintf(stderr, "raft-bench: cluster did not go quiet in %d turns\n", DRAIN_MAX_TURNS);
	c->errors++;
}

static void cluster_tick(struct cluster *c)
{
	for (uint32_t i = 0; i < NODES; i++)
		raft_tick(c->nodes[i].r);
}

/* Make node 1 the leader (it campaigns and skips PreVote). */
static void cluster_elect(struct cluster *c)
{
	int rc = raft_campaign(c->nodes[0].r);
	if (rc != 0)
		die("raft_campaign", rc);
	cluster_drain(c, 0);
	if (raft_leader(c->nodes[0].r) != 1 || c->nodes[0].role != RAFT_LEADER) {
		fprintf(stderr, "raft-bench: node 1 did not become leader\n");
		exit(1);
	}
}

/* Tick and drain until every node has applied what the leader applied. */
static void cluster_settle(struct cluster *c)
{
	cluster_drain(c, 0);
	for (int i = 0; i < 100; i++) {
		bool behind = false;
		for (uint32_t k = 1; k < NODES; k++)
			behind |= c->nodes[k].applied < c->nodes[0].applied;
		if (!behind)
			return;
		cluster_tick(c);
		cluster_drain(c, 0);
	}
	fprintf(stderr, "raft-bench: followers did not catch up\n");
	c->errors++;
}

static int propose_seq(struct raft *r, uint64_t seq)
{
	unsigned char buf[ENTRY_BYTES];
	memset(buf, (int)(seq & 0xff), sizeof(buf));
	memcpy(buf, &seq, sizeof(seq));
	return raft_propose(r, buf, ENTRY_BYTES, NULL);
}

/* Propose `target` entries in batches of `batch` per loop turn and run turns
 * until the leader has applied them all. Returns the number of turns. */
static uint64_t cluster_load(struct cluster *c, uint32_t batch, uint64_t target,
			     uint64_t *busy)
{
	struct raft *leader = c->nodes[0].r;
	uint64_t start = c->nodes[0].applied_normal;
	uint64_t seq = c->nodes[0].next_seq; /* the leader has applied all before */
	uint64_t last = seq + target - 1;
	uint64_t turns = 0;
	while (c->nodes[0].applied_normal - start < target) {
		uint64_t t0 = c->timed ? now_ns(CLOCK_MONOTONIC) : 0;
		for (uint32_t i = 0; i < batch && seq <= last; i++) {
			int rc = propose_seq(leader, seq);
			if (rc == -EBUSY) {
				(*busy)++;
				break;
			}
			if (rc != 0)
				die("raft_propose", rc);
			seq++;
		}
		if (c->timed)
			c->core_ns += now_ns(CLOCK_MONOTONIC) - t0;
		cluster_turn(c, 0);
		if (c->nodes[0].role != RAFT_LEADER) {
			fprintf(stderr, "raft-bench: leader lost leadership mid-run\n");
			exit(1);
		}
		if (++turns % TICK_EVERY == 0) {
			t0 = c->timed ? now_ns(CLOCK_MONOTONIC) : 0;
			cluster_tick(c);
			if (c->timed)
				c->core_ns += now_ns(CLOCK_MONOTONIC) - t0;
		}
	}
	return turns;
}

/* Settle, then check every node applied `total` entries once, in order. */
static void cluster_verify(struct cluster *c, uint64_t total)
{
	cluster_settle(c);
	for (uint32_t i = 0; i < NODES; i++) {
		const struct node *n = &c->nodes[i];
		if (n->applied_normal != total || n->next_seq != total + 1) {
			fprintf(stderr, "raft-bench: node %u applied %" PRIu64 " of %" PRIu64 "\n",
				i + 1, n->applied_normal, total);
			c->errors++;
		}
	}
}

/* ---- throughput ---- */

struct tp_result {
	const char *config;
	uint32_t batch;
	uint32_t max_msg_entries;
	uint32_t max_inflight;
	uint64_t entries;
	uint64_t turns;
	uint64_t busy; /* proposals refused with -EBUSY */
	uint64_t msgs;
	double wall_s;
	double cpu_s;
	double core_s;
	double entries_per_s;
	double ns_per_entry;
	double core_ns_per_entry;
	double cpu_entries_per_s;  /* by CPU time: steadier on a shared machine */
	uint32_t repeat;           /* runs; the figures above are the median's */
	double min_entries_per_s;  /* slowest run */
	double max_entries_per_s;  /* fastest run */
	uint64_t errors;
};

static int cmp_rate(const void *a, const void *b)
{
	double x = ((const struct tp_result *)a)->entries_per_s;
	double y = ((const struct tp_result *)b)->entries_per_s;
	return (x > y) - (x < y);
}

static void run_throughput(const struct raft_config *cfg, const char *name, uint32_t batch,
			   uint64_t target, uint64_t snap_every, struct tp_result *res)
{
	struct net a = {0}, b = {0};
	struct cluster c;
	cluster_init(&c, cfg, 1, &a, &b);
	cluster_elect(&c);
	c.snap_every = snap_every;

	uint64_t busy = 0, msgs0 = a.sent + b.sent;
	c.timed = true;
	uint64_t w0 = now_ns(CLOCK_MONOTONIC);
	uint64_t p0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	uint64_t turns = cluster_load(&c, batch, target, &busy);
	uint64_t wall = now_ns(CLOCK_MONOTONIC) - w0;
	uint64_t cpu = now_ns(CLOCK_PROCESS_CPUTIME_ID) - p0;
	c.timed = false;
	cluster_verify(&c, target);

	memset(res, 0, sizeof(*res));
	res->config = name;
	res->batch = batch;
	res->max_msg_entries = cfg->max_msg_entries;
	res->max_inflight = cfg->max_inflight;
	res->entries = target;
	res->turns = turns;
	res->busy = busy;
	res->msgs = a.sent + b.sent - msgs0;
	res->wall_s = (double)wall / 1e9;
	res->cpu_s = (double)cpu / 1e9;
	res->core_s = (double)c.core_ns / 1e9;
	res->entries_per_s = (double)target / res->wall_s;
	res->ns_per_entry = (double)wall / (double)target;
	res->core_ns_per_entry = (double)c.core_ns / (double)target;
	res->cpu_entries_per_s = (double)target / res->cpu_s;
	res->errors = c.errors;
	net_free(&a);
	net_free(&b);
	for (uint32_t i = 0; i < NODES; i++)
		raft_free(c.nodes[i].r);
}

/* ---- memory ---- */

static long long heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return (long long)mi.uordblks + (long long)mi.hblkhd;
}

/* Bytes a free of r returns to the heap: what the group held. */
static long long free_measured(struct raft *r)
{
	long long before = heap_in_use();
	raft_free(r);
	return before - heap_in_use();
}

/* Whether a free shows in mallinfo2() (false while tcache hides it). */
static bool frees_visible(void)
{
	void *p = xmalloc(200);
	long long before = heap_in_use();
	free(p);
	return heap_in_use() < before;
}

struct mem_result {
	bool exact;                   /* frees visible: tcache off */
	uint32_t groups;              /* bare followers created */
	double bare_follower_bytes;   /* per group, from the heap growth */
	double bare_follower_freed;   /* per group, from what freeing returned */
	uint32_t clusters;
	uint32_t entries_per_cluster;
	double follower_bytes;        /* per idle follower group */
	double leader_bytes;          /* per idle leader group */
	double avg_bytes;             /* per group, leaders and followers */
	uint64_t load_entries;        /* entries pushed before the after-load figures */
	double load_leader_bytes;     /* leader after load, compacted and idle */
	double load_follower_bytes;   /* follower likewise */
	uint64_t errors;
};

/* G followers straight out of raft_new(): the node-local struct of idle groups. */
static void mem_bare(const struct raft_config *cfg, uint32_t groups, struct mem_result *res)
{
	struct raft **rs = xmalloc(groups * sizeof(*rs));
	long long before = heap_in_use();
	for (uint32_t g = 0; g < groups; g++) {
		rs[g] = group_new(cfg, 1, g + 1);
		if (raft_has_ready(rs[g])) {
			struct raft_ready rd;
			raft_ready(rs[g], &rd);
			raft_advance(rs[g]);
		}
	}
	long long after = heap_in_use();
	res->bare_follower_bytes = (double)(after - before) / groups;
	long long freed = 0;
	for (uint32_t g = 0; g < groups; g++)
		freed += free_measured(rs[g]);
	res->bare_follower_freed = (double)freed / groups;
	free(rs);
}

/* Bring a cluster to its idle steady state: snapshot at applied everywhere
 * (nothing left in the log) and a few heartbeat rounds exchanged. */
static void cluster_idle(struct cluster *c)
{
	for (uint32_t i = 0; i < NODES; i++) {
		struct node *n = &c->nodes[i];
		if (n->applied == n->snap_at)
			continue;
		int rc = raft_snapshot_taken(n->r, n->applied, SNAP_BYTES, 0, NULL);
		if (rc != 0)
			die("raft_snapshot_taken", rc);
		n->snap_at = n->applied;
	}
	for (int t = 0; t < 3; t++) {
		cluster_tick(c);
		cluster_drain(c, 0);
	}
}

/* C clusters elected, `entries` committed, compacted, idle; then freed by role. */
static void mem_clusters(const struct raft_config *cfg, uint32_t clusters, uint32_t entries,
			 struct mem_result *res)
{
	struct cluster *cs = xmalloc(clusters * sizeof(*cs));
	struct net a = {0}, b = {0};
	for (uint32_t k = 0; k < clusters; k++) {
		struct cluster *c = &cs[k];
		cluster_init(c, cfg, 1000 + k, &a, &b);
		cluster_elect(c);
		uint64_t busy = 0;
		cluster_load(c, entries, entries, &busy);
		cluster_verify(c, entries);
		cluster_idle(c);
		res->errors += c->errors + busy;
	}
	net_free(&a);
	net_free(&b);

	long long fol = 0, lead = 0;
	for (uint32_t k = 0; k < clusters; k++) {
		for (uint32_t i = 1; i < NODES; i++)
			fol += free_measured(cs[k].nodes[i].r);
	}
	for (uint32_t k = 0; k < clusters; k++)
		lead += free_measured(cs[k].nodes[0].r);
	free(cs);
	res->follower_bytes = (double)fol / (clusters * (NODES - 1));
	res->leader_bytes = (double)lead / clusters;
	res->avg_bytes = (double)(fol + lead) / (clusters * NODES);
}

/* One cluster pushed hard, then compacted and idle: do buffers shrink back? */
static void mem_after_load(const struct raft_config *cfg, uint64_t entries, uint32_t batch,
			   struct mem_result *res)
{
	struct net a = {0}, b = {0};
	struct cluster c;
	cluster_init(&c, cfg, 7, &a, &b);
	cluster_elect(&c);
	c.snap_every = SNAP_EVERY;
	uint64_t busy = 0;
	cluster_load(&c, batch, entries, &busy);
	cluster_verify(&c, entries);
	cluster_idle(&c);
	net_free(&a);
	net_free(&b);
	res->load_entries = entries;
	res->load_leader_bytes = (double)free_measured(c.nodes[0].r);
	long long fb = 0;
	for (uint32_t i = 1; i < NODES; i++)
		fb += free_measured(c.nodes[i].r);
	res->load_follower_bytes = (double)fb / (NODES - 1);
	res->errors += c.errors;
}

#define MEM_FMT "MEM %d %u %lf %lf %u %u %lf %lf %lf %" SCNu64 " %lf %lf %" SCNu64

/* Child side (--memory-child): measure and print one MEM_FMT line. */
static int memory_child(const struct raft_config *cfg, uint32_t groups, uint32_t clusters,
			uint32_t batch)
{
	struct mem_result r;
	memset(&r, 0, sizeof(r));
	r.exact = frees_visible();
	r.groups = groups;
	r.clusters = clusters;
	r.entries_per_cluster = 10;
	mem_bare(cfg, groups, &r);
	mem_clusters(cfg, clusters, r.entries_per_cluster, &r);
	mem_after_load(cfg, 200000, batch, &r);
	printf("MEM %d %u %f %f %u %u %f %f %f %" PRIu64 " %f %f %" PRIu64 "\n", r.exact,
	       r.groups, r.bare_follower_bytes, r.bare_follower_freed, r.clusters,
	       r.entries_per_cluster, r.follower_bytes, r.leader_bytes, r.avg_bytes,
	       r.load_entries, r.load_leader_bytes, r.load_follower_bytes, r.errors);
	return 0;
}

/* Parent side: re-execute this binary with tcache off and read its MEM line. */
static void run_memory(uint32_t groups, uint32_t clusters, uint32_t batch,
		       struct mem_result *res)
{
	memset(res, 0, sizeof(*res));
	int fds[2];
	if (pipe(fds) != 0) {
		perror("raft-bench: pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("raft-bench: fork");
		exit(1);
	}
	if (pid == 0) {
		char g[16], c[16], bt[16], tun[512];
		snprintf(g, sizeof(g), "%u", groups);
		snprintf(c, sizeof(c), "%u", clusters);
		snprintf(bt, sizeof(bt), "%u", batch);
		const char *old = getenv("GLIBC_TUNABLES");
		snprintf(tun, sizeof(tun), "%s%sglibc.malloc.tcache_count=0", old ? old : "",
			 old ? ":" : "");
		setenv("GLIBC_TUNABLES", tun, 1);
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execl("/proc/self/exe", "raft-bench", "--memory-child", "--groups", g,
		      "--clusters", c, "--batches", bt, (char *)NULL);
		perror("raft-bench: exec /proc/self/exe");
		_exit(127);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	int exact = 0;
	int n = f ? fscanf(f, MEM_FMT, &exact, &res->groups, &res->bare_follower_bytes,
			   &res->bare_follower_freed, &res->clusters, &res->entries_per_cluster,
			   &res->follower_bytes, &res->leader_bytes, &res->avg_bytes,
			   &res->load_entries, &res->load_leader_bytes, &res->load_follower_bytes,
			   &res->errors) : 0;
	if (f)
		fclose(f);
	int status = 0;
	waitpid(pid, &status, 0);
	if (n != 13 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "raft-bench: memory child failed (status %d, %d fields)\n",
			status, n);
		exit(1);
	}
	res->exact = exact != 0;
}

/* ---- main ---- */

struct opts {
	uint64_t entries;
	uint32_t batches[MAX_BATCHES];
	uint32_t n_batches;
	uint32_t groups;
	uint32_t clusters;
	bool json;
	bool smoke;
	bool no_throughput;
	bool no_memory;
	bool memory_child;
	uint64_t snap_every; /* 0: no snapshots during throughput runs */
	uint32_t repeat;     /* throughput runs per setting; the median is kept */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: raft-bench [--entries N] [--batches B,B,...] [--groups G]\n"
		"                  [--clusters C] [--snap-every N] [--repeat R]\n"
		"                  [--json] [--smoke]\n"
		"                  [--no-throughput] [--no-memory]\n"
		"  --entries N   entries committed per throughput run (2000000)\n"
		"  --batches L   proposals per loop turn, comma separated (256,512,1024)\n"
		"  --groups G    bare follower groups for the memory test (10000)\n"
		"  --clusters C  3-node clusters run to idle for the memory test (1000)\n"
		"  --snap-every N  throughput: snapshot (keep 4096) every N applied\n"
		"                entries per node, 0 for never (65536)\n"
		"  --repeat R    throughput runs per setting, median reported (3)\n"
		"  --json        print one JSON object instead of text\n"
		"  --smoke       small run that only checks the harness and the core agree\n");
}
static uint64_t parse_u64(const char *s, const char *opt)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v == 0) {
		fprintf(stderr, "raft-bench: %s needs a positive integer, got '%s'\n", opt, s);
		exit(2);
	}
	return v;
}

static uint32_t parse_u32(const char *s, const char *opt)
{
	uint64_t v = parse_u64(s, opt);
	if (v > UINT32_MAX) {
		fprintf(stderr, "raft-bench: %s too large\n", opt);
		exit(2);
	}
	return (uint32_t)v;
}

static void parse_batches(struct opts *o, const char *s)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	o->n_batches = 0;
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		if (o->n_batches == MAX_BATCHES) {
			fprintf(stderr, "raft-bench: at most %d batch sizes\n", MAX_BATCHES);
			exit(2);
		}
		o->batches[o->n_batches++] = parse_u32(t, "--batches");
	}
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->entries = 2000000;
	parse_batches(o, "256,512,1024");
	o->groups = 10000;
	o->clusters = 1000;
	o->snap_every = SNAP_EVERY;
	o->repeat = 3;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool has_value = true;
		if (strcmp(a, "--json") == 0) {
			o->json = true, has_value = false;
		} else if (strcmp(a, "--smoke") == 0) {
			o->smoke = true, has_value = false;
			o->entries = 20000;
			o->groups = 200;
			o->clusters = 20;
			o->repeat = 1;
		} else if (strcmp(a, "--no-throughput") == 0) {
			o->no_throughput = true, has_value = false;
		} else if (strcmp(a, "--memory-child") == 0) {
			o->memory_child = true, has_value = false;
		} else if (strcmp(a, "--no-memory") == 0) {
			o->no_memory = true, has_value = false;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (v == NULL) {
			usage(stderr);
			exit(2);
		} else if (strcmp(a, "--entries") == 0) {
			o->entries = parse_u64(v, a);
		} else if (strcmp(a, "--repeat") == 0) {
			o->repeat = parse_u32(v, a);
			if (o->repeat > MAX_REPEAT) {
				fprintf(stderr, "raft-bench: --repeat at most %d\n", MAX_REPEAT);
				exit(2);
			}
		} else if (strcmp(a, "--snap-every") == 0) {
			o->snap_every = strcmp(v, "0") == 0 ? 0 : parse_u64(v, a);
		} else if (strcmp(a, "--batches") == 0) {
			parse_batches(o, v);
		} else if (strcmp(a, "--groups") == 0) {
			o->groups = parse_u32(v, a);
		} else if (strcmp(a, "--clusters") == 0) {
			o->clusters = parse_u32(v, a);
		} else {
			usage(stderr);
			exit(2);
		}
		if (has_value)
			i++;
	}
}

static void print_tp_text(const struct tp_result *r)
{
	printf("throughput %-7s batch %4u  max_msg_entries %4u max_inflight %3u: "
	       "%9.0f entries/s [%.0f..%.0f]  %6.1f ns/entry (core %5.1f)  "
	       "per cpu-s %9.0f  cpu %.2fs wall %.2fs  %" PRIu64 " turns %" PRIu64 " msgs "
	       "%" PRIu64 " busy\n",
	       r->config, r->batch, r->max_msg_entries, r->max_inflight, r->entries_per_s,
	       r->min_entries_per_s, r->max_entries_per_s, r->ns_per_entry,
	       r->core_ns_per_entry, r->cpu_entries_per_s, r->cpu_s, r->wall_s, r->turns,
	       r->msgs, r->busy);
}

static void print_tp_json(const struct tp_result *r, bool comma)
{
	printf("    {\"config\": \"%s\", \"batch\": %u, \"max_msg_entries\": %u, "
	       "\"max_inflight\": %u, \"entries\": %" PRIu64 ", \"turns\": %" PRIu64 ", "
	       "\"msgs\": %" PRIu64 ", \"busy\": %" PRIu64 ", \"wall_s\": %.4f, "
	       "\"cpu_s\": %.4f, \"core_s\": %.4f, \"entries_per_s\": %.0f, "
	       "\"ns_per_entry\": %.2f, \"core_ns_per_entry\": %.2f, "
	       "\"cpu_entries_per_s\": %.0f, \"repeat\": %u, \"min_entries_per_s\": %.0f, "
	       "\"max_entries_per_s\": %.0f, "
	       "\"errors\": %" PRIu64 "}%s\n",
	       r->config, r->batch, r->max_msg_entries, r->max_inflight, r->entries, r->turns,
	       r->msgs, r->busy, r->wall_s, r->cpu_s, r->core_s, r->entries_per_s,
	       r->ns_per_entry, r->core_ns_per_entry, r->cpu_entries_per_s, r->repeat,
	       r->min_entries_per_s,
	       r->max_entries_per_s, r->errors, comma ? "," : "");
}

static void print_json(const struct raft_config *def, const struct tp_result *tps,
		       uint32_t n_tps, double best, bool have_mem, const struct mem_result *m,
		       uint64_t errors)
{
	printf("{\n  \"bench\": \"raft-core\",\n  \"entry_bytes\": %d,\n  \"nodes\": %d,\n",
	       ENTRY_BYTES, NODES);
	printf("  \"default_config\": {\"max_msg_entries\": %u, \"max_msg_bytes\": %u, "
	       "\"max_inflight\": %u, \"max_apply_entries\": %u, "
	       "\"max_uncommitted_bytes\": %" PRIu64 ", \"max_outbox\": %u},\n",
	       def->max_msg_entries, def->max_msg_bytes, def->max_inflight,
	       def->max_apply_entries, def->max_uncommitted_bytes, def->max_outbox);
	printf("  \"throughput\": [\n");
	for (uint32_t i = 0; i < n_tps; i++)
		print_tp_json(&tps[i], i + 1 < n_tps);
	printf("  ],\n  \"best_entries_per_s\": %.0f,\n", best);
	if (have_mem) {
		printf("  \"memory\": {\"exact\": %s, \"bare_followers\": %u, "
		       "\"bare_follower_bytes\": %.1f, \"bare_follower_bytes_freed\": %.1f, "
		       "\"clusters\": %u, \"entries_per_cluster\": %u, "
		       "\"idle_follower_bytes\": %.1f, \"idle_leader_bytes\": %.1f, "
		       "\"idle_avg_bytes\": %.1f, \"load_entries\": %" PRIu64 ", "
		       "\"after_load_leader_bytes\": %.1f, \"after_load_follower_bytes\": %.1f},\n",
		       m->exact ? "true" : "false", m->groups, m->bare_follower_bytes,
		       m->bare_follower_freed, m->clusters, m->entries_per_cluster,
		       m->follower_bytes, m->leader_bytes, m->avg_bytes, m->load_entries,
		       m->load_leader_bytes, m->load_follower_bytes);
	}
	printf("  \"errors\": %" PRIu64 "\n}\n", errors);
}

static void print_mem_text(const struct mem_result *m)
{
	if (!m->exact)
		printf("memory: WARNING: tcache could not be disabled; figures undercount\n");
	printf("memory: %u bare followers: %.0f B/group (heap growth), %.0f B/group "
	       "(returned by raft_free)\n", m->groups, m->bare_follower_bytes,
	       m->bare_follower_freed);
	printf("memory: %u idle 3-node clusters (%u entries, snapshot, compacted): "
	       "follower %.0f B, leader %.0f B, average %.0f B per group\n", m->clusters,
	       m->entries_per_cluster, m->follower_bytes, m->leader_bytes, m->avg_bytes);
	printf("memory: one cluster after %" PRIu64 " entries, compacted and idle: "
	       "leader %.0f B, follower %.0f B\n", m->load_entries, m->load_leader_bytes,
	       m->load_follower_bytes);
}

int main(int argc, char **argv)
{
	struct opts o;
	parse_opts(argc, argv, &o);

	struct raft_config def;
	raft_config_default(&def, 1, 1);
	uint32_t max_batch = 0;
	for (uint32_t i = 0; i < o.n_batches; i++)
		max_batch = o.batches[i] > max_batch ? o.batches[i] : max_batch;
	if (o.memory_child)
		return memory_child(&def, o.groups, o.clusters, max_batch);

	/* Tuned: one APPEND carries a whole turn's batch (the largest batch size
	 * asked for), so a turn sends one APPEND per follower, not batch/256. */
	struct raft_config tuned = def;
	if (max_batch > tuned.max_msg_entries)
		tuned.max_msg_entries = max_batch;

	struct tp_result tps[2 * MAX_BATCHES];
	uint32_t n_tps = 0;
	uint64_t errors = 0;
	double best = 0;
	if (!o.no_throughput) {
		/* Warm-up, not reported: the first run pays for the heap's growth. */
		struct tp_result warm;
		run_throughput(&def, "warm-up", o.batches[0], o.entries / 4 + 1, o.snap_every,
			       &warm);
		errors += warm.errors;
	}
	for (uint32_t i = 0; !o.no_throughput && i < o.n_batches; i++) {
		for (int t = 0; t < 2; t++) {
			struct tp_result *r = &tps[n_tps++];
			struct tp_result runs[MAX_REPEAT];
			for (uint32_t k = 0; k < o.repeat; k++) {
				run_throughput(t == 0 ? &def : &tuned, t == 0 ? "default" : "tuned",
					       o.batches[i], o.entries, o.snap_every, &runs[k]);
				errors += runs[k].errors;
			}
			qsort(runs, o.repeat, sizeof(runs[0]), cmp_rate);
			*r = runs[o.repeat / 2];
			r->repeat = o.repeat;
			r->min_entries_per_s = runs[0].entries_per_s;
			r->max_entries_per_s = runs[o.repeat - 1].entries_per_s;
			best = r->entries_per_s > best ? r->entries_per_s : best;
			if (!o.json)
				print_tp_text(r);
		}
	}
	if (!o.json && n_tps > 0)
		printf("throughput best: %.0f entries/s (%.1f ns/entry)\n", best, 1e9 / best);

	struct mem_result mem;
	memset(&mem, 0, sizeof(mem));
	if (!o.no_memory) {
		run_memory(o.groups, o.clusters, max_batch, &mem);
		errors += mem.errors;
		if (!o.json)
			print_mem_text(&mem);
	}

	if (o.json)
		print_json(&def, tps, n_tps, best, !o.no_memory, &mem, errors);
	else
		printf("errors: %" PRIu64 "\n", errors);
	return errors == 0 ? 0 : 1;
}
