/* check.c: Raft's safety properties, checked on durable state after every step. */
#include <string.h>

#include "sim.h"

typedef unsigned long long ull; /* for printf */

static bool entry_same(const struct raft_entry *a, const struct raft_entry *b)
{
	return a->term == b->term && a->type == b->type && a->len == b->len &&
	       (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

/*
 * Log Matching (Raft §5.3): if two logs hold an entry with the same index and
 * term, they are identical up to it. Checked on the durable logs, which are
 * what survives and what we can see.
 */
static void check_pair(struct sim *s, const struct sim_node *a, const struct sim_node *b)
{
	const struct sim_log *la = &a->disk.log, *lb = &b->disk.log;
	if (!la->n || !lb->n)
		return;
	raft_index lo = la->e[0].index > lb->e[0].index ? la->e[0].index : lb->e[0].index;
	raft_index ha = la->e[la->n - 1].index, hb = lb->e[lb->n - 1].index;
	raft_index top = 0;
	for (raft_index i = ha < hb ? ha : hb; i >= lo && i > 0; i--) {
		if (sim_store_entry(&a->disk, i)->term == sim_store_entry(&b->disk, i)->term) {
			top = i;
			break;
		}
	}
	for (raft_index i = lo; i <= top; i++) {
		const struct raft_entry *x = sim_store_entry(&a->disk, i);
		const struct raft_entry *y = sim_store_entry(&b->disk, i);
		if (!entry_same(x, y)) {
			sim_fail(
			    s, "log-matching",
			    "n%llu and n%llu agree on %llu/t%llu but differ at %llu: t%llu type %u "
			    "vs t%llu type %u",
			    (ull)a->id, (ull)b->id, (ull)top,
			    (ull)sim_store_entry(&a->disk, top)->term, (ull)i, (ull)x->term,
			    x->type, (ull)y->term, y->type);
			return;
		}
	}
}

static void check_log_matching(struct sim *s)
{
	for (uint32_t i = 0; i < s->n_slots; i++)
		for (uint32_t j = i + 1; j < s->n_slots; j++)
			if (s->nodes[i].log_dirty || s->nodes[j].log_dirty)
				check_pair(s, &s->nodes[i], &s->nodes[j]);
	for (uint32_t i = 0; i < s->n_slots; i++)
		s->nodes[i].log_dirty = false;
}

/* Highest index first applied while every term seen was below t (0: none). */
static raft_index committed_before(const struct sim *s, raft_term t)
{
	raft_index lo = 0, hi = s->hist.n; /* known_term grows with the index */
	while (lo < hi) {
		raft_index mid = lo + (hi - lo + 1) / 2;
		if (s->hist.e[mid - 1].known_term < t)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/*
 * Leader Completeness (Raft §5.4): a leader of term t holds every entry
 * committed in an earlier term. An entry first applied while the highest term
 * anywhere was below t was certainly committed before t.
 */
static void check_leader(struct sim *s, const struct sim_node *l)
{
	raft_index top = committed_before(s, l->st.term);
	if (l->st.last_index < top) {
		sim_fail(
		    s, "leader-completeness",
		    "n%llu leads term %llu with last index %llu, but %llu was committed before",
		    (ull)l->id, (ull)l->st.term, (ull)l->st.last_index, (ull)top);
		return;
	}
	const struct sim_log *lg = &l->disk.log;
	for (uint32_t k = 0; k < lg->n && lg->e[k].index <= top; k++) {
		const struct sim_hist_ent *h = sim_hist_at(s, lg->e[k].index);
		if (h && lg->e[k].term != h->term) {
			sim_fail(
			    s, "leader-completeness",
			    "n%llu leads term %llu with %llu/t%llu, but %llu/t%llu was committed",
			    (ull)l->id, (ull)l->st.term, (ull)lg->e[k].index, (ull)lg->e[k].term,
			    (ull)lg->e[k].index, (ull)h->term);
			return;
		}
	}
}

#define MAX_CANDIDATES 32

/*
 * Configurations that may hold a committed entry: the newest one in the
 * history, and every newer one in a durable log (committed but not applied
 * yet, or not committed at all).
 */
static uint32_t candidate_confs(const struct sim *s, struct raft_conf *out)
{
	const struct sim_conf_at *base = &s->hist.confs[s->hist.n_confs - 1];
	uint32_t n = 0;
	out[n++] = base->conf;
	for (uint32_t k = 0; k < s->n_slots; k++) {
		const struct sim_log *lg = &s->nodes[k].disk.log;
		for (uint32_t j = 0; j < lg->n && n < MAX_CANDIDATES; j++) {
			const struct raft_entry *e = &lg->e[j];
			if (e->index > base->index && e->type == RAFT_ENTRY_CONF &&
			    raft_conf_decode(e->data, e->len, &out[n]) == 0)
				n++;
		}
	}
	return n;
}

static bool durable_on(const struct sim_node *n, raft_index i, const struct sim_hist_ent *h)
{
	if (n->disk.snap.index >= i)
		return true;
	const struct raft_entry *e = sim_store_entry(&n->disk, i);
	return e && e->term == h->term;
}

/*
 * A committed entry i sits on a majority of the configuration C that committed
 * it. With one-server changes, any such C is C*, the newest committed
 * configuration, or one step from it, and a majority of a neighbour of C* is
 * at least half of C* (rounded up). So: i must be durable (log or snapshot) on
 * ceil(|voters|/2) voters of some candidate configuration.
 */
static void check_not_lost(struct sim *s, raft_index i, const struct raft_conf *cands,
			   uint32_t n_cands)
{
	const struct sim_hist_ent *h = sim_hist_at(s, i);
	uint32_t best = 0, best_of = 0;
	for (uint32_t c = 0; c < n_cands; c++) {
		uint32_t voters = 0, have = 0;
		for (uint32_t k = 0; k < cands[c].n; k++) {
			const struct sim_node *n = sim_node_by_id(s, cands[c].ids[k]);
			if (cands[c].kinds[k] != RAFT_VOTER || !n)
				continue;
			voters++;
			have += durable_on(n, i, h);
		}
		if (2 * have >= voters)
			return;
		if (!best_of || have * best_of > best * voters) {
			best = have;
			best_of = voters;
		}
	}
	sim_fail(s, "committed-lost", "entry %llu/t%llu is durable on only %u of %u voters", (ull)i,
		 (ull)h->term, best, best_of);
}

void sim_check_step(struct sim *s)
{
	if (s->failed)
		return;
	check_log_matching(s);
	for (uint32_t i = 0; i < s->n_slots && !s->failed; i++) {
		const struct sim_node *n = &s->nodes[i];
		if (n->r && !n->persist_left && n->st.role == RAFT_LEADER)
			check_leader(s, n);
	}
	if (s->failed || !s->hist.n)
		return;
	struct raft_conf cands[MAX_CANDIDATES];
	uint32_t nc = candidate_confs(s, cands);
	check_not_lost(s, s->hist.n, cands, nc);
	if (!s->failed)
		check_not_lost(s, 1 + sim_rng_below(&s->rng, s->hist.n), cands, nc);
}

/* A proposal acknowledged at (index, term) is the entry there if that term won. */
static void check_props(struct sim *s)
{
	uint8_t buf[64];
	for (uint64_t k = 0; k < s->n_props && !s->failed; k++) {
		const struct sim_prop *p = &s->props[k];
		const struct sim_hist_ent *h = sim_hist_at(s, p->index);
		if (!h || h->term != p->term)
			continue;
		sim_payload_encode(p->id, buf);
		if (h->type != RAFT_ENTRY_NORMAL ||
		    h->data_hash != sim_hash_bytes(buf, sim_payload_len(p->id)))
			sim_fail(s, "proposal-identity",
				 "payload %llu was accepted at %llu/t%llu, which holds other data",
				 (ull)p->id, (ull)p->index, (ull)p->term);
	}
}

void sim_check_final(struct sim *s)
{
	if (s->failed)
		return;
	struct raft_conf cands[MAX_CANDIDATES];
	uint32_t nc = candidate_confs(s, cands);
	for (raft_index i = 1; i <= s->hist.n && !s->failed; i++)
		check_not_lost(s, i, cands, nc);
	check_props(s);
}
