/* history.c: the global history of committed entries, and State Machine Safety. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef unsigned long long ull; /* for printf */

/*
 * Whoever applies index i first defines H[i]; every later applier of i must
 * agree (Raft's State Machine Safety). H is contiguous: a node applies in
 * order, and a snapshot at i was made by someone who applied 1..i.
 */

void sim_hist_init(struct sim_hist *h, const struct raft_conf *initial)
{
	memset(h, 0, sizeof(*h));
	h->cap_confs = 16;
	h->confs = sim_xmalloc(h->cap_confs * sizeof(*h->confs));
	h->confs[0] = (struct sim_conf_at){0, *initial};
	h->n_confs = 1;
}

void sim_hist_free(struct sim_hist *h)
{
	free(h->e);
	free(h->confs);
	memset(h, 0, sizeof(*h));
}

const struct sim_hist_ent *sim_hist_at(const struct sim *s, raft_index i)
{
	return i && i <= s->hist.n ? &s->hist.e[i - 1] : NULL;
}

/* The configuration as of index i: the newest configuration entry at or before it. */
const struct raft_conf *sim_hist_conf_at(const struct sim *s, raft_index i)
{
	uint32_t k = s->hist.n_confs;
	while (k > 1 && s->hist.confs[k - 1].index > i)
		k--;
	return &s->hist.confs[k - 1].conf;
}

static void hist_push(struct sim *s, const struct raft_entry *e, uint64_t dh, uint64_t hash)
{
	struct sim_hist *h = &s->hist;
	assert(e->index == h->n + 1);
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 4096;
		h->e = sim_xrealloc(h->e, h->cap * sizeof(*h->e));
	}
	h->e[h->n++] = (struct sim_hist_ent){e->term, e->type, dh, hash, s->max_term};
}

static void conf_push(struct sim *s, raft_index i, const struct raft_conf *c)
{
	struct sim_hist *h = &s->hist;
	if (h->n_confs == h->cap_confs) {
		h->cap_confs *= 2;
		h->confs = sim_xrealloc(h->confs, h->cap_confs * sizeof(*h->confs));
	}
	h->confs[h->n_confs++] = (struct sim_conf_at){i, *c};
}

/* The state machine's transition for e; false (and a violation) if e is garbage. */
static bool sm_next(struct sim *s, struct sim_node *n, const struct raft_entry *e, uint64_t *hash,
		    struct raft_conf *conf)
{
	uint64_t id;
	*hash = n->sm.hash;
	if (e->type == RAFT_ENTRY_NORMAL) {
		if (sim_payload_decode(e->data, e->len, &id) == 0) {
			*hash = sim_sm_step(*hash, id);
			return true;
		}
	} else if (e->type == RAFT_ENTRY_CONF) {
		if (raft_conf_decode(e->data, e->len, conf) == 0)
			return true;
	} else if (e->type == RAFT_ENTRY_NOOP) {
		return true;
	}
	return !sim_fail(s, "entry-data", "n%llu: entry %llu/t%llu type %u has bad data (%u bytes)",
			 (ull)n->id, (ull)e->index, (ull)e->term, e->type, e->len);
}

void sim_check_apply(struct sim *s, struct sim_node *n, const struct raft_entry *e)
{
	uint64_t hash, dh = sim_hash_bytes(e->data, e->len);
	struct raft_conf conf;
	if (!sm_next(s, n, e, &hash, &conf))
		return;
	const struct sim_hist_ent *h = sim_hist_at(s, e->index);
	if (!h && e->index != s->hist.n + 1) {
		sim_fail(s, "history-gap", "n%llu: applies %llu but nobody applied %llu",
			 (ull)n->id, (ull)e->index, (ull)s->hist.n + 1);
		return;
	}
	if (!h) {
		hist_push(s, e, dh, hash);
		if (e->type == RAFT_ENTRY_CONF)
			conf_push(s, e->index, &conf);
	} else if (h->term != e->term || h->type != e->type || h->data_hash != dh ||
		   h->sm_hash != hash) {
		sim_fail(
		    s, "state-machine-safety",
		    "n%llu applies %llu/t%llu type %u, but %llu/t%llu type %u was applied before%s",
		    (ull)n->id, (ull)e->index, (ull)e->term, e->type, (ull)e->index, (ull)h->term,
		    h->type,
		    h->term == e->term && h->type == e->type ? " (same term, other data)" : "");
		return;
	}
	n->sm.applied = e->index;
	n->sm.hash = hash;
}

/* A snapshot must be the state machine of the history at its index. */
bool sim_check_snapshot(struct sim *s, struct sim_node *n, const struct raft_snap_meta *m,
			const uint8_t *data)
{
	raft_index idx;
	uint64_t hash;
	if (sim_snap_decode(data, m->size, &idx, &hash) || idx != m->index)
		return !sim_fail(s, "snapshot-data", "n%llu: snapshot %llu (%llu bytes) is garbled",
				 (ull)n->id, (ull)m->index, (ull)m->size);
	const struct sim_hist_ent *h = sim_hist_at(s, idx);
	if (!h || h->sm_hash != hash)
		return !sim_fail(s, "state-machine-safety",
				 "n%llu: snapshot %llu does not match the history (%s)", (ull)n->id,
				 (ull)idx, h ? "other state" : "index never applied");
	if (h->term != m->term || !sim_conf_equal(&m->conf, sim_hist_conf_at(s, idx)))
		return !sim_fail(s, "snapshot-meta",
				 "n%llu: snapshot %llu/t%llu with %u members, history has t%llu",
				 (ull)n->id, (ull)idx, (ull)m->term, m->conf.n, (ull)h->term);
	return true;
}
