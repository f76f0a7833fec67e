/* sim.c: the cluster: per-seed parameters, one step of simulated time, faults. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef unsigned long long ull; /* for printf */

bool sim_fail(struct sim *s, const char *what, const char *fmt, ...)
{
	if (s->failed)
		return true; /* the first violation of a seed is the one that matters */
	s->failed = true;
	snprintf(s->what, sizeof(s->what), "%s", what);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->detail, sizeof(s->detail), fmt, ap);
	va_end(ap);
	return true;
}

struct sim_node *sim_node_by_id(struct sim *s, raft_id id)
{
	return id >= 1 && id <= s->n_slots ? &s->nodes[id - 1] : NULL;
}

/* Busy with a slow write or stopped: it takes no message and no request. */
bool sim_node_busy(const struct sim_node *n)
{
	return n->persist_left > 0 || n->stall_left > 0;
}

static uint32_t pick(struct sim_rng *g, uint32_t lo, uint32_t span)
{
	return lo + (uint32_t)sim_rng_below(g, span);
}

/* Some seeds are calm, some harsh: the mix finds both slow-burning and violent bugs. */
static void pick_params(struct sim *s)
{
	struct sim_params *p = &s->p;
	struct sim_rng *g = &s->rng;
	uint32_t harsh = pick(g, 0, 4);
	p->loss = harsh ? pick(g, 0, 20000 * harsh) : 0;
	p->dup = harsh ? pick(g, 0, 20000) : 0;
	p->delay_max = pick(g, 1, 2 + 2 * harsh);
	p->partition = harsh ? pick(g, 1000 * harsh, 5000) : 0;
	p->heal = pick(g, 20000, 60000);
	p->crash = harsh ? pick(g, 1000 * harsh, 5000) : 0;
	p->restart_min = 3;
	p->restart_span = pick(g, 10, 100);
	p->slow_disk = pick(g, 0, 4) ? pick(g, 0, 150000) : 0;
	p->slow_max = pick(g, 1, 5);
	p->propose = pick(g, 100000, 600000);
	p->read = pick(g, 20000, 200000);
	p->change = pick(g, 0, 3) ? pick(g, 2000, 20000) : 0;
	p->transfer = pick(g, 0, 3) ? pick(g, 0, 10000) : 0;
	p->skip_tick = pick(g, 0, 2) ? pick(g, 0, 50000) : 0;
	p->max_down = harsh == 3 ? s->n_slots : (s->n_voters - 1) / 2;
	p->max_apply = pick(g, 0, 2) ? pick(g, 1, 8) : 64;
	p->max_uncommitted = pick(g, 1024, 4096);
	p->max_reads = pick(g, 2, 14);
	p->nemesis = harsh >= 2 ? pick(g, 0, 500000) : 0;
	p->quiesce = pick(g, 0, 2) ? pick(g, 2, 15) : 0;
	p->false_wake = pick(g, 0, 2) ? pick(g, 0, 20000) : 0;
	p->stall = pick(g, 0, 3) ? pick(g, 1000, 15000) : 0;
	p->stall_max = pick(g, 5, 80);
	if (p->quiesce && pick(g, 0, 2)) {
		/* A light load: groups go quiet between requests, and faults hit
		 * them while they are quiet. */
		p->propose = pick(g, 2000, 60000);
		p->read = pick(g, 0, 20000);
	}
}

void sim_init(struct sim *s, uint64_t seed, uint32_t n_voters, bool trace, bool scripted)
{
	memset(s, 0, sizeof(*s));
	s->seed = seed;
	s->n_voters = n_voters;
	s->n_slots = n_voters == 3 ? 4 : 5;
	s->trace.live = trace;
	s->next_payload = 1;
	sim_rng_seed(&s->rng, seed);
	pick_params(s);
	if (scripted)
		sim_scenario_params(&s->p);
	struct raft_conf conf = {.n = n_voters};
	for (uint32_t i = 0; i < n_voters; i++) {
		conf.ids[i] = i + 1;
		conf.kinds[i] = RAFT_VOTER;
	}
	sim_hist_init(&s->hist, &conf);
	s->net.q = sim_xcalloc(2 * SIM_NET_MAX, sizeof(*s->net.q));
	for (uint32_t i = 0; i < s->n_slots; i++) {
		struct sim_node *n = &s->nodes[i];
		n->id = i + 1;
		n->was_member = i < n_voters;
		n->snap_every = scripted ? UINT32_MAX : pick(&s->rng, 10, 50);
		sim_store_init(&n->disk, i < n_voters ? &conf : NULL);
		if (i < n_voters)
			sim_node_start(s, n);
	}
}

void sim_destroy(struct sim *s)
{
	for (uint32_t i = 0; i < s->n_slots; i++) {
		raft_free(s->nodes[i].r);
		sim_store_free(&s->nodes[i].disk);
	}
	sim_net_free(&s->net);
	sim_hist_free(&s->hist);
	free(s->term_leader);
	free(s->reads);
	free(s->props);
}

/* Crash a node, the leader more often than the others (leaders hold the most state). */
static void crash_one(struct sim *s)
{
	uint32_t down = 0, up = 0;
	struct sim_node *cand[SIM_MAX_NODES], *leader = NULL;
	for (uint32_t i = 0; i < s->n_slots; i++) {
		struct sim_node *n = &s->nodes[i];
		down += n->restart_at != 0;
		if (n->r) {
			cand[up++] = n;
			if (n->st.role == RAFT_LEADER)
				leader = n;
		}
	}
	if (down >= s->p.max_down || !up)
		return;
	struct sim_node *victim = cand[sim_rng_below(&s->rng, up)];
	if (leader && sim_rng_below(&s->rng, 2))
		victim = leader;
	sim_node_crash(s, victim,
		       s->now + s->p.restart_min + sim_rng_below(&s->rng, s->p.restart_span));
}

/*
 * Stop a running node, a follower more often than not, for a while (a
 * SIGSTOP, a VM pause, a long GC): it ticks, processes and receives nothing,
 * while messages to it wait in the network as in its socket. The others go
 * on and compact; on waking it takes everything that waited in one step,
 * often a leader's snapshot while its own snapshot is due (node.c).
 */
static void stall_one(struct sim *s)
{
	struct sim_node *cand[SIM_MAX_NODES];
	uint32_t up = 0;
	for (uint32_t i = 0; i < s->n_slots; i++) {
		struct sim_node *n = &s->nodes[i];
		if (n->r && !sim_node_busy(n) && (n->st.role != RAFT_LEADER || !sim_rng_below(&s->rng, 4)))
			cand[up++] = n;
	}
	if (!up)
		return;
	struct sim_node *n = cand[sim_rng_below(&s->rng, up)];
	n->stall_left = 1 + (uint32_t)sim_rng_below(&s->rng, s->p.stall_max);
	sim_trace(s, SIM_EV_STALL, n->id, 0, 0, 0, n->stall_left, 0, 0, 0);
}

static void faults(struct sim *s)
{
	if (s->p.stall && sim_rng_ppm(&s->rng, s->p.stall))
		stall_one(s);
	if (s->net.partitioned ? sim_rng_ppm(&s->rng, s->p.heal)
			       : s->p.partition && sim_rng_ppm(&s->rng, s->p.partition)) {
		if (s->net.partitioned)
			sim_net_heal(s);
		else
			sim_net_partition(s);
	}
	if (s->p.crash && sim_rng_ppm(&s->rng, s->p.crash))
		crash_one(s);
	/* A leader that loses touch right after winning leaves entries of its
	 * term on itself alone: the raw material of Figure 8 (Raft §5.4.2). */
	struct sim_node *l = sim_node_by_id(s, s->fresh_leader);
	if (l && l->r && s->p.nemesis && sim_rng_ppm(&s->rng, s->p.nemesis)) {
		if (sim_rng_below(&s->rng, 2))
			sim_net_isolate(s, l->id);
		else
			sim_node_crash(s, l,
				       s->now + s->p.restart_min +
					   sim_rng_below(&s->rng, s->p.restart_span));
	}
}

static void restarts(struct sim *s)
{
	for (uint32_t i = 0; i < s->n_slots && !s->failed; i++) {
		struct sim_node *n = &s->nodes[i];
		if (!n->r && n->restart_at && n->restart_at <= s->now)
			sim_node_start(s, n);
	}
}

/* One unit of time: deliveries, ticks, disk work, faults, clients, then the checks. */
void sim_step(struct sim *s)
{
	s->now++;
	s->fresh_leader = 0;
	for (uint32_t i = 0; i < s->n_slots; i++)
		if (s->nodes[i].stall_left)
			s->nodes[i].stall_left--; /* at 0 it takes what waited, this step */
	sim_net_deliver(s);
	for (uint32_t i = 0; i < s->n_slots && !s->failed; i++)
		sim_node_tick(s, &s->nodes[i]);
	for (uint32_t i = 0; i < s->n_slots && !s->failed; i++)
		sim_node_process(s, &s->nodes[i]);
	if (!s->failed && !s->calm)
		faults(s);
	if (!s->failed)
		sim_client_step(s);
	restarts(s);
	sim_check_step(s);
}

/* Liveness phase: heal, restart everyone who crashed, and stop injecting faults. */
void sim_calm(struct sim *s)
{
	s->calm = true;
	sim_trace(s, SIM_EV_CALM, 0, 0, 0, 0, 0, 0, 0, 0);
	if (s->net.partitioned)
		sim_net_heal(s);
	for (uint32_t i = 0; i < s->n_slots; i++) {
		if (!s->nodes[i].r && s->nodes[i].restart_at)
			s->nodes[i].restart_at = s->now;
		s->nodes[i].stall_left = 0;
	}
}

static void describe(struct sim *s)
{
	char *p = s->detail + strlen(s->detail);
	const char *end = s->detail + sizeof(s->detail);
	for (uint32_t i = 0; i < s->n_slots && p < end - 1; i++) {
		const struct sim_node *n = &s->nodes[i];
		int w = n->r ? snprintf(p, (size_t)(end - p), "; n%u %s t%llu c%llu a%llu",
					(unsigned)n->id, raft_role_name(n->st.role),
					(ull)n->st.term, (ull)n->st.commit, (ull)n->sm.applied)
			     : snprintf(p, (size_t)(end - p), "; n%u down", (unsigned)n->id);
		p += w > 0 ? w : 0;
	}
}

/* Calm phase: within a bound, one leader must get a fresh entry applied on every voter. */
bool sim_liveness(struct sim *s)
{
	sim_calm(s);
	uint64_t bound = 20 * SIM_ELECTION_TICKS + 200;
	for (uint64_t k = 0; k < bound && !s->failed; k++) {
		sim_step(s);
		if (!s->failed && sim_client_probe(s)) {
			sim_check_final(s);
			return !s->failed;
		}
	}
	if (!s->failed) {
		sim_fail(s, "liveness",
			 "%llu calm steps without one leader and a fresh entry "
			 "applied on every voter",
			 (ull)bound);
		describe(s);
	}
	return false;
}

/* The whole seed: a faulty run, then the calm phase. */
bool sim_run(struct sim *s, uint64_t steps)
{
	for (uint64_t k = 0; k < steps && !s->failed; k++)
		sim_step(s);
	return !s->failed && sim_liveness(s);
}
