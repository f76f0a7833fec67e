/* net.c: the simulated network: delay, reordering, loss, duplication, partitions. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef unsigned long long ull; /* for printf */

/*
 * A message in flight is one allocation: struct sim_msg, then its entries,
 * then their payloads, then the snapshot chunk. Everything a ready batch
 * points at is freed by raft_advance(), and the sender's snapshot may be
 * replaced before delivery, so the network keeps its own copy of all of it.
 */
static struct sim_msg *msg_copy(const struct raft_msg *m, const uint8_t *chunk, uint64_t at,
				uint64_t seq)
{
	size_t total = sizeof(struct sim_msg) + (size_t)m->n_entries * sizeof(struct raft_entry);
	for (uint32_t k = 0; k < m->n_entries; k++)
		total += m->entries[k].len;
	if (chunk)
		total += m->len;
	struct sim_msg *c = sim_xmalloc(total);
	c->at = at;
	c->seq = seq;
	c->m = *m;
	struct raft_entry *es = (struct raft_entry *)(c + 1);
	uint8_t *p = (uint8_t *)(es + m->n_entries);
	for (uint32_t k = 0; k < m->n_entries; k++) {
		es[k] = m->entries[k];
		es[k].data = m->entries[k].len ? p : NULL;
		if (m->entries[k].len)
			memcpy(p, m->entries[k].data, m->entries[k].len);
		p += m->entries[k].len;
	}
	c->m.entries = m->n_entries ? es : NULL;
	c->m.data = NULL;
	if (chunk) {
		memcpy(p, chunk, m->len);
		c->m.data = p;
	}
	return c;
}

/* SNAP messages leave the core without bytes: the sender attaches its snapshot's. */
static const uint8_t *snap_chunk(struct sim *s, struct sim_node *from, const struct raft_msg *m,
				 bool *drop)
{
	const struct sim_store *d = &from->disk;
	*drop = false;
	if (d->snap.index != m->snap.index || !d->snap_data) {
		*drop = true; /* we no longer have that snapshot: the core retries */
		sim_trace_msg(s, SIM_EV_DROP, SIM_DROP_SNAP, m);
		return NULL;
	}
	if (m->snap.term != d->snap.term || m->snap.size != d->snap.size ||
	    m->offset > d->snap.size || m->len > d->snap.size - m->offset) {
		sim_fail(s, "snap-msg",
			 "n%llu: SNAP %llu/t%llu %llu+%u of %llu bytes, stored %llu/t%llu "
			 "(%llu bytes)",
			 (ull)from->id, (ull)m->snap.index, (ull)m->snap.term, (ull)m->offset,
			 m->len, (ull)m->snap.size, (ull)d->snap.index, (ull)d->snap.term,
			 (ull)d->snap.size);
		*drop = true;
		return NULL;
	}
	return d->snap_data + m->offset;
}

static void enqueue(struct sim *s, const struct raft_msg *m, const uint8_t *chunk)
{
	struct sim_net *net = &s->net;
	if (net->n == SIM_NET_MAX) {
		sim_trace_msg(s, SIM_EV_DROP, SIM_DROP_FULL, m);
		return;
	}
	uint64_t at = s->now + 1 + sim_rng_below(&s->rng, s->p.delay_max);
	net->q[net->n++] = msg_copy(m, chunk, at, net->seq++);
}

void sim_net_send(struct sim *s, struct sim_node *from, const struct raft_msg *m)
{
	const uint8_t *chunk = NULL;
	bool drop = false;
	sim_trace_msg(s, SIM_EV_SEND, 0, m);
	sim_guard_sent(s, from, m);
	if (m->type == RAFT_MSG_SNAP && !(chunk = snap_chunk(s, from, m, &drop)) && drop)
		return;
	if (!s->calm && s->p.loss && sim_rng_ppm(&s->rng, s->p.loss)) {
		sim_trace_msg(s, SIM_EV_DROP, SIM_DROP_LOSS, m);
		return;
	}
	enqueue(s, m, chunk);
	if (!s->calm && s->p.dup && sim_rng_ppm(&s->rng, s->p.dup))
		enqueue(s, m, chunk);
}

static int msg_order(const void *a, const void *b)
{
	const struct sim_msg *x = *(struct sim_msg *const *)a;
	const struct sim_msg *y = *(struct sim_msg *const *)b;
	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void deliver_one(struct sim *s, struct sim_msg *sm)
{
	const struct raft_msg *m = &sm->m;
	struct sim_node *to = sim_node_by_id(s, m->to);
	if (!to->r) {
		sim_trace_msg(s, SIM_EV_DROP, SIM_DROP_DOWN, m);
		return;
	}
	if (s->net.cut[m->from][m->to]) {
		sim_trace_msg(s, SIM_EV_DROP, SIM_DROP_CUT, m);
		return;
	}
	sim_trace_msg(s, SIM_EV_RECV, 0, m);
	struct sim_guard_ctx g;
	sim_guard_before(s, to, m, &g);
	int rc = raft_step(to->r, m);
	if (rc)
		sim_fail(s, "api", "n%llu: raft_step(%s from n%llu, t%llu): %s", (ull)to->id,
			 raft_msg_type_name(m->type), (ull)m->from, (ull)m->term, cm_errname(rc));
	sim_node_observe(s, to);
	sim_guard_after(s, to, m, &g);
}

/*
 * Deliver what is due, in (time, send order). A node busy with a slow write
 * takes nothing: its messages wait in the network until it is done.
 */
void sim_net_deliver(struct sim *s)
{
	struct sim_net *net = &s->net;
	struct sim_msg **due = net->q + net->n; /* scratch: q has 2 * SIM_NET_MAX slots */
	uint32_t n_due = 0, keep = 0;
	for (uint32_t i = 0; i < net->n; i++) {
		struct sim_msg *m = net->q[i];
		const struct sim_node *to = sim_node_by_id(s, m->m.to);
		if (m->at <= s->now && !sim_node_busy(to))
			due[n_due++] = m;
		else
			net->q[keep++] = m;
	}
	/* Compact the kept ones first: due[] lives beyond the old end, no overlap. */
	net->n = keep;
	qsort(due, n_due, sizeof(*due), msg_order);
	for (uint32_t k = 0; k < n_due; k++) {
		if (!s->failed)
			deliver_one(s, due[k]);
		free(due[k]);
	}
}

void sim_net_free(struct sim_net *net)
{
	for (uint32_t i = 0; i < net->n; i++)
		free(net->q[i]);
	free(net->q);
	memset(net, 0, sizeof(*net));
}

void sim_net_heal(struct sim *s)
{
	memset(s->net.cut, 0, sizeof(s->net.cut));
	s->net.partitioned = false;
	sim_trace(s, SIM_EV_HEAL, 0, 0, 0, 0, 0, 0, 0, 0);
}

static struct sim_node *some_leader(struct sim *s)
{
	struct sim_node *best = NULL;
	for (uint32_t i = 0; i < s->n_slots; i++) {
		struct sim_node *n = &s->nodes[i];
		if (n->r && n->st.role == RAFT_LEADER && (!best || n->st.term > best->st.term))
			best = n;
	}
	return best;
}

static void cut_split(struct sim *s)
{
	bool side[SIM_MAX_NODES + 1] = {0};
	uint32_t a = 0;
	for (uint32_t i = 1; i <= s->n_slots; i++)
		a += side[i] = sim_rng_below(&s->rng, 2);
	if (a == 0 || a == s->n_slots) /* both sides nonempty */
		side[1 + sim_rng_below(&s->rng, s->n_slots)] ^= 1;
	for (uint32_t i = 1; i <= s->n_slots; i++)
		for (uint32_t j = 1; j <= s->n_slots; j++)
			s->net.cut[i][j] = side[i] != side[j];
}

static void cut_node(struct sim *s, raft_id id)
{
	for (uint32_t j = 1; j <= s->n_slots; j++)
		s->net.cut[id][j] = s->net.cut[j][id] = j != id;
}

static void trace_cuts(struct sim *s, uint8_t kind)
{
	uint64_t mask = 0;
	for (uint32_t i = 1; i <= s->n_slots; i++)
		for (uint32_t j = 1; j <= s->n_slots; j++)
			if (s->net.cut[i][j])
				mask |= 1ULL << ((i - 1) * 8 + (j - 1));
	s->net.partitioned = true;
	sim_trace(s, SIM_EV_PARTITION, 0, 0, kind, 0, mask, 0, 0, 0);
}

/* Symmetric split, random one-way cuts, or the leader cut off both ways. */
void sim_net_partition(struct sim *s)
{
	uint64_t kind = sim_rng_below(&s->rng, 3);
	struct sim_node *l = some_leader(s);
	memset(s->net.cut, 0, sizeof(s->net.cut));
	if (kind == 1) {
		for (uint32_t i = 1; i <= s->n_slots; i++)
			for (uint32_t j = 1; j <= s->n_slots; j++)
				s->net.cut[i][j] = i != j && sim_rng_ppm(&s->rng, 300000);
	} else if (kind == 2 && l) {
		cut_node(s, l->id);
	} else {
		kind = 0;
		cut_split(s);
	}
	trace_cuts(s, (uint8_t)kind);
}

/* Cut one node off both ways, on top of whatever is cut already. */
void sim_net_isolate(struct sim *s, raft_id id)
{
	cut_node(s, id);
	trace_cuts(s, 2);
}
