/* store.c: one node's durable storage, and persisting a raft_ready batch into it. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef unsigned long long ull; /* for printf */

static raft_index log_first(const struct sim_log *l)
{
	return l->n ? l->e[0].index : 0;
}

static raft_index log_last(const struct sim_log *l)
{
	return l->n ? l->e[l->n - 1].index : 0;
}

static void log_free_range(struct sim_log *l, uint32_t from, uint32_t to)
{
	for (uint32_t k = from; k < to; k++)
		free(l->e[k].data);
}

/* Delete entries with index >= i. */
static void log_truncate_from(struct sim_log *l, raft_index i)
{
	if (!l->n || i > log_last(l))
		return;
	uint32_t keep = i <= log_first(l) ? 0 : (uint32_t)(i - log_first(l));
	log_free_range(l, keep, l->n);
	l->n = keep;
}

/* Delete entries with index <= i. */
static void log_compact_to(struct sim_log *l, raft_index i)
{
	if (!l->n || i < log_first(l))
		return;
	uint32_t drop = i >= log_last(l) ? l->n : (uint32_t)(i - log_first(l) + 1);
	log_free_range(l, 0, drop);
	memmove(l->e, l->e + drop, (l->n - drop) * sizeof(*l->e));
	l->n -= drop;
}

static void log_append(struct sim_log *l, const struct raft_entry *e)
{
	assert(!l->n || e->index == log_last(l) + 1);
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->e = sim_xrealloc(l->e, l->cap * sizeof(*l->e));
	}
	struct raft_entry *c = &l->e[l->n++];
	*c = *e;
	c->data = e->len ? sim_xmemdup(e->data, e->len) : NULL;
}

void sim_store_init(struct sim_store *d, const struct raft_conf *conf)
{
	memset(d, 0, sizeof(*d));
	if (conf)
		d->snap.conf = *conf; /* bootstrap member; n = 0 for a joining node */
}

void sim_store_free(struct sim_store *d)
{
	log_free_range(&d->log, 0, d->log.n);
	free(d->log.e);
	free(d->snap_data);
	free(d->stage_data);
	memset(d, 0, sizeof(*d));
}

raft_index sim_store_last(const struct sim_store *d)
{
	raft_index l = log_last(&d->log);
	return l > d->snap.index ? l : d->snap.index;
}

const struct raft_entry *sim_store_entry(const struct sim_store *d, raft_index i)
{
	if (!d->log.n || i < log_first(&d->log) || i > log_last(&d->log))
		return NULL;
	return &d->log.e[i - log_first(&d->log)];
}

/* Recovery reads storage only: the state machine restarts from the snapshot. */
void sim_store_boot(const struct sim_store *d, struct raft_boot *b)
{
	memset(b, 0, sizeof(*b));
	b->hs = d->hs;
	b->snap = d->snap;
	b->applied = d->snap.index;
	uint32_t skip = 0;
	if (d->log.n && log_first(&d->log) <= d->snap.index)
		skip = (uint32_t)(d->snap.index - log_first(&d->log) + 1);
	if (skip < d->log.n) {
		b->entries = d->log.e + skip;
		b->n_entries = d->log.n - skip;
	}
}

/* Offset 0 starts a snapshot afresh, discarding whatever was staged. */
static void stage_reset(struct sim_store *d, const struct raft_snap_meta *m)
{
	free(d->stage_data);
	d->stage = *m;
	d->stage_data = sim_xcalloc(1, m->size);
	d->stage_next = 0;
}

/* Step 1 of struct raft_ready: write a chunk into the staging area. */
static bool stage_chunk(struct sim *s, struct sim_node *n, const struct raft_snap_chunk *c)
{
	struct sim_store *d = &n->disk;
	if (!c->meta.size || c->offset > c->meta.size || c->len > c->meta.size - c->offset ||
	    (c->len && !c->data))
		return !sim_fail(s, "snap-chunk",
				 "n%llu: chunk of snapshot %llu at %llu+%u, size %llu", (ull)n->id,
				 (ull)c->meta.index, (ull)c->offset, c->len, (ull)c->meta.size);
	if (c->offset == 0)
		stage_reset(d, &c->meta);
	if (d->stage.index != c->meta.index || d->stage.size != c->meta.size)
		return !sim_fail(
		    s, "snap-chunk", "n%llu: chunk of snapshot %llu at %llu but %llu is staged",
		    (ull)n->id, (ull)c->meta.index, (ull)c->offset, (ull)d->stage.index);
	if (c->offset > d->stage_next)
		return !sim_fail(s, "snap-chunk", "n%llu: chunk at %llu leaves a gap after %llu",
				 (ull)n->id, (ull)c->offset, (ull)d->stage_next);
	memcpy(d->stage_data + c->offset, c->data, c->len);
	if (c->offset + c->len > d->stage_next)
		d->stage_next = c->offset + c->len;
	return true;
}

/* Step 2: the staged snapshot becomes the current one. */
static bool install(struct sim *s, struct sim_node *n, const struct raft_ready *rd)
{
	struct sim_store *d = &n->disk;
	const struct raft_snap_meta *m = &rd->snap;
	if (d->stage.index != m->index || d->stage.size != m->size || d->stage_next != m->size)
		return !sim_fail(
		    s, "snap-install",
		    "n%llu: installs %llu (%llu bytes) but staged %llu (%llu of %llu bytes)",
		    (ull)n->id, (ull)m->index, (ull)m->size, (ull)d->stage.index,
		    (ull)d->stage_next, (ull)d->stage.size);
	if (m->index < d->snap.index)
		return !sim_fail(s, "snap-install", "n%llu: installs %llu over newer snapshot %llu",
				 (ull)n->id, (ull)m->index, (ull)d->snap.index);
	if (!sim_check_snapshot(s, n, m, d->stage_data))
		return false;
	/* Raft §7: a log that disagrees at the snapshot's last entry must go. */
	const struct raft_entry *e = sim_store_entry(d, m->index);
	if (!rd->log_reset && e && e->term != m->term)
		return !sim_fail(s, "snap-install",
				 "n%llu: snapshot %llu/t%llu kept a log with term %llu there",
				 (ull)n->id, (ull)m->index, (ull)m->term, (ull)e->term);
	if (rd->log_reset)
		log_truncate_from(&d->log, 0);
	else
		log_compact_to(&d->log, m->index);
	free(d->snap_data);
	d->snap = *m;
	d->snap_data = d->stage_data;
	d->stage_data = NULL;
	memset(&d->stage, 0, sizeof(d->stage));
	d->stage_next = 0;
	n->log_dirty = true;
	sim_trace(s, SIM_EV_SNAP_INSTALL, n->id, 0, rd->log_reset, 0, m->index, m->term, m->size,
		  0);
	return true;
}

static bool check_batch_entries(struct sim *s, struct sim_node *n, const struct raft_entry *es,
				uint32_t cnt)
{
	for (uint32_t k = 0; k < cnt; k++) {
		const struct raft_entry *e = &es[k];
		bool bad = e->index != es[0].index + k || !e->index || !e->term ||
			   e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_CONF ||
			   (e->len && !e->data) || (k && e->term < es[k - 1].term);
		if (bad)
			return !sim_fail(
			    s, "ready-entries",
			    "n%llu: entry %u of %u: index %llu term %llu type %u len %u",
			    (ull)n->id, k, cnt, (ull)e->index, (ull)e->term, e->type, e->len);
	}
	return true;
}

/* Committed entries may never be replaced by different ones (Raft §5.3, §5.4). */
static bool check_truncation(struct sim *s, struct sim_node *n, const struct raft_entry *es,
			     uint32_t cnt)
{
	const struct sim_store *d = &n->disk;
	raft_index end = log_last(&d->log) < d->hs.commit ? log_last(&d->log) : d->hs.commit;
	for (raft_index i = es[0].index; i <= end; i++) {
		const struct raft_entry *old = sim_store_entry(d, i);
		const struct raft_entry *nw = i < es[0].index + cnt ? &es[i - es[0].index] : NULL;
		if (old && (!nw || nw->term != old->term))
			return !sim_fail(
			    s, "truncate-committed",
			    "n%llu: entry %llu/t%llu <= durable commit %llu replaced by %s t%llu",
			    (ull)n->id, (ull)i, (ull)old->term, (ull)d->hs.commit,
			    nw ? "an entry of" : "nothing,", nw ? (ull)nw->term : 0ULL);
	}
	return true;
}

/* Step 3: delete entries >= entries[0].index, append the batch. */
static bool append(struct sim *s, struct sim_node *n, const struct raft_entry *es, uint32_t cnt)
{
	struct sim_store *d = &n->disk;
	if (!check_batch_entries(s, n, es, cnt) || !check_truncation(s, n, es, cnt))
		return false;
	raft_index first = es[0].index;
	if (first > sim_store_last(d) + 1)
		return !sim_fail(s, "append-gap",
				 "n%llu: appends at %llu, durable log ends at %llu", (ull)n->id,
				 (ull)first, (ull)sim_store_last(d));
	const struct raft_entry *prev = sim_store_entry(d, first - 1);
	raft_term prev_term = prev ? prev->term : (first - 1 == d->snap.index ? d->snap.term : 0);
	if (es[0].term < prev_term)
		return !sim_fail(s, "log-term-order", "n%llu: entry %llu/t%llu after term %llu",
				 (ull)n->id, (ull)first, (ull)es[0].term, (ull)prev_term);
	log_truncate_from(&d->log, first);
	if (d->log.n && log_last(&d->log) + 1 != first)
		log_truncate_from(&d->log, 0); /* first is below the kept tail */
	for (uint32_t k = 0; k < cnt; k++)
		log_append(&d->log, &es[k]);
	n->log_dirty = true;
	return true;
}

/* Step 4: the hard state. A vote is never changed within a term (Raft §5.2). */
static bool store_hs(struct sim *s, struct sim_node *n, const struct raft_hard_state *hs)
{
	struct sim_store *d = &n->disk;
	const struct raft_hard_state *o = &d->hs;
	const char *bad = NULL;
	if (hs->term < o->term)
		bad = "term went back";
	else if (hs->term == o->term && o->vote && hs->vote != o->vote)
		bad = "vote changed within a term";
	else if (hs->commit < o->commit)
		bad = "commit went back";
	else if (hs->commit > sim_store_last(d))
		bad = "commit beyond the durable log";
	if (bad)
		return !sim_fail(s, "hard-state",
				 "n%llu: %s: t%llu v%llu c%llu -> t%llu v%llu c%llu (last %llu)",
				 (ull)n->id, bad, (ull)o->term, (ull)o->vote, (ull)o->commit,
				 (ull)hs->term, (ull)hs->vote, (ull)hs->commit,
				 (ull)sim_store_last(d));
	d->hs = *hs;
	return true;
}

/* Items 1-4 of struct raft_ready, in its order, as one atomic write. */
bool sim_store_persist(struct sim *s, struct sim_node *n, const struct raft_ready *rd)
{
	for (uint32_t i = 0; i < rd->n_chunks; i++)
		if (!stage_chunk(s, n, &rd->chunks[i]))
			return false;
	if (rd->snap_installed && !install(s, n, rd))
		return false;
	if (rd->n_entries && !append(s, n, rd->entries, rd->n_entries))
		return false;
	if (rd->hs_changed && !store_hs(s, n, &rd->hs))
		return false;
	struct sim_store *d = &n->disk;
	if (d->log.n && log_first(&d->log) > d->snap.index + 1)
		return !sim_fail(s, "log-gap",
				 "n%llu: durable log starts at %llu after snapshot %llu",
				 (ull)n->id, (ull)log_first(&d->log), (ull)d->snap.index);
	if (rd->n_entries || rd->hs_changed || rd->n_chunks)
		sim_trace(s, SIM_EV_PERSIST, n->id, 0, (uint8_t)rd->n_chunks, rd->n_entries,
			  rd->n_entries ? rd->entries[0].index : 0, d->hs.term, d->hs.vote,
			  d->hs.commit);
	return true;
}

/* The caller's own snapshot (raft_snapshot_taken): store it, compact the log. */
void sim_store_snapshot(struct sim_store *d, const struct raft_snap_meta *meta, uint8_t *data,
			uint64_t keep)
{
	assert(meta->index >= d->snap.index);
	free(d->snap_data);
	d->snap = *meta;
	d->snap_data = data;
	if (meta->index > keep)
		log_compact_to(&d->log, meta->index - keep);
}
