/* ready.c: the outgoing batch: messages, what to persist, what to apply. */
#include "raft_int.h"

/* Grow *arr (of elem-sized items) to hold n + 1; false when out of memory. */
static bool reserve(void **arr, uint32_t *cap, uint32_t n, size_t elem)
{
	if (n < *cap)
		return true;
	uint32_t c = *cap ? *cap * 2 : 8;
	void *p = realloc(*arr, elem * c);
	if (p == NULL)
		return false;
	*arr = p;
	*cap = c;
	return true;
}

void raft__send(struct raft *r, struct raft_msg *m)
{
	struct raft_out *o = &r->out;
	/* Bounded: Raft survives lost messages, it does not survive running
	 * out of memory, so past the bound a message is dropped. */
	if (o->n_msgs >= r->cfg.max_outbox ||
	    !reserve((void **)&o->msgs, &o->cap_msgs, o->n_msgs, sizeof(*o->msgs)))
		return;
	m->from = r->id;
	if (m->term == 0)
		m->term = r->term;
	o->msgs[o->n_msgs++] = *m;
}

int raft__out_read(struct raft *r, uint64_t ctx, raft_index index)
{
	struct raft_out *o = &r->out;
	if (!reserve((void **)&o->reads, &o->cap_reads, o->n_reads, sizeof(*o->reads)))
		return -ENOMEM;
	o->reads[o->n_reads++] = (struct raft_read_state){ctx, index};
	return 0;
}

int raft__out_chunk(struct raft *r, const struct raft_msg *m)
{
	struct raft_out *o = &r->out;
	if (!reserve((void **)&o->chunks, &o->cap_chunks, o->n_chunks, sizeof(*o->chunks)))
		return -ENOMEM;
	void *data = NULL;
	if (m->len > 0 && (data = malloc(m->len)) == NULL)
		return -ENOMEM;
	if (m->len > 0)
		memcpy(data, m->data, m->len);
	o->chunks[o->n_chunks++] = (struct raft_snap_chunk){m->snap, m->offset, m->len, data};
	return 0;
}

void raft__out_clear(struct raft *r)
{
	struct raft_out *o = &r->out;
	for (uint32_t k = 0; k < o->n_chunks; k++)
		free(o->chunks[k].data);
	free(o->persist);
	free(o->apply);
	o->persist = o->apply = NULL;
	o->n_msgs = o->n_ents = o->n_chunks = o->n_reads = 0;
	/* Idle groups keep nothing: thousands of them must stay cheap. */
	free(o->msgs);
	o->msgs = NULL;
	o->cap_msgs = 0;
	free(o->ents);
	o->ents = NULL;
	o->cap_ents = 0;
}

static raft_index apply_upto(const struct raft *r)
{
	raft_index upto = r->commit;
	if (upto - r->applied > r->cfg.max_apply_entries)
		upto = r->applied + r->cfg.max_apply_entries;
	return upto;
}

static bool hs_changed(const struct raft *r)
{
	return r->term != r->saved.term || r->vote != r->saved.vote ||
	       r->commit != r->saved.commit;
}

bool raft_has_ready(const struct raft *r)
{
	const struct raft_out *o = &r->out;
	if (o->n_msgs || o->n_chunks || o->n_reads || r->snap_installed)
		return true;
	if (r->stable < raft__log_last(&r->log) || hs_changed(r) || r->applied < r->commit)
		return true;
	return r->role == RAFT_LEADER && (r->need_flush || r->read_round);
}

/* Copy entries (from, to] out of the ring; NULL on no memory (retry later). */
static struct raft_entry *copy_range(const struct raft *r, raft_index from, raft_index to,
				     uint32_t *n)
{
	*n = 0;
	if (to <= from)
		return NULL;
	struct raft_entry *v = malloc(sizeof(*v) * (size_t)(to - from));
	if (v == NULL)
		return NULL;
	for (raft_index i = from + 1; i <= to; i++)
		v[(*n)++] = *raft__log_get(&r->log, i);
	return v;
}

static void fill_msgs(struct raft *r, struct raft_ready *rd)
{
	struct raft_out *o = &r->out;
	for (uint32_t k = 0; k < o->n_msgs; k++) {
		struct raft_msg *m = &o->msgs[k];
		if (m->type == RAFT_MSG_APPEND && m->n_entries > 0) {
			assert(m->ctx + m->n_entries <= o->n_ents);
			m->entries = &o->ents[m->ctx];
			m->ctx = 0;
		}
	}
	rd->msgs = o->msgs;
	rd->n_msgs = o->n_msgs;
	/* A leader's APPENDs need only its term and vote durable (they were,
	 * before it could win), not the entries they carry. */
	bool early = r->role == RAFT_LEADER && r->saved.term == r->term && r->saved.vote == r->vote;
	for (uint32_t k = 0; k < o->n_msgs; k++)
		o->msgs[k].early = early && o->msgs[k].type == RAFT_MSG_APPEND;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
	assert(!r->in_ready);
	raft__flush(r);
	r->in_ready = true;
	struct raft_out *o = &r->out;
	memset(rd, 0, sizeof(*rd));
	rd->chunks = o->chunks;
	rd->n_chunks = o->n_chunks;
	rd->snap_installed = r->snap_installed;
	rd->log_reset = r->log_reset;
	rd->snap = r->snap;
	raft_index last = raft__log_last(&r->log);
	o->persist = copy_range(r, r->stable, last, &rd->n_entries);
	rd->entries = o->persist;
	/* Out of memory for the copy: persist nothing new, try again next time. */
	r->ready_stable = rd->entries || last <= r->stable ? last : r->stable;
	raft_index durable = r->ready_stable;
	r->ready_hs = (struct raft_hard_state){r->term, r->vote,
					       r->commit < durable ? r->commit : durable};
	rd->hs_changed = hs_changed(r);
	rd->hs = r->ready_hs;
	fill_msgs(r, rd);
	/* Committed entries are durable before they are applied: they are at or
	 * below stable, or in this very batch. */
	raft_index upto = apply_upto(r);
	o->apply = copy_range(r, r->applied, upto < durable ? upto : durable, &rd->n_committed);
	rd->committed = o->apply;
	r->ready_applied = r->applied + rd->n_committed;
	rd->reads = o->reads;
	rd->n_reads = o->n_reads;
	rd->leader = r->leader;
	rd->role = r->role;
}

void raft_advance(struct raft *r)
{
	assert(r->in_ready);
	r->in_ready = false;
	assert(r->ready_stable <= raft__log_last(&r->log));
	r->stable = r->ready_stable;
	r->applied = r->ready_applied;
	r->saved = r->ready_hs;
	r->snap_installed = false;
	r->log_reset = false;
	raft__out_clear(r);
	/* What just became durable may complete a quorum with our own vote. */
	if (r->role == RAFT_LEADER)
		raft__maybe_commit(r);
}
