/* readindex.c: linearizable reads without writing the log (Raft thesis §6.4). */
#include "raft_int.h"

/* The leader's commit index is only known to be current once an entry of its
 * own term is committed (§6.4 step 1); reads wait for that. */
static bool commit_current(const struct raft *r)
{
	return raft__log_term(&r->log, r->commit) == r->term;
}

static int enqueue(struct raft *r, uint64_t ctx, raft_id from)
{
	assert(r->role == RAFT_LEADER);
	if (r->n_reads >= r->cfg.max_pending_reads)
		return -EBUSY;
	if (r->n_reads == r->cap_reads) {
		uint32_t cap = r->cap_reads ? r->cap_reads * 2 : 4;
		struct raft_pending_read *p = realloc(r->reads, sizeof(*p) * cap);
		if (p == NULL)
			return -ENOMEM;
		r->reads = p;
		r->cap_reads = cap;
	}
	struct raft_pending_read *p = &r->reads[r->n_reads++];
	p->ctx = ctx;
	p->from = from;
	p->index = 0;
	p->seq = 0;
	if (commit_current(r)) {
		p->index = r->commit;
		p->seq = r->read_seq + 1; /* a heartbeat round that starts after now */
		r->read_round = true;
	}
	return 0;
}

int raft_read_index(struct raft *r, uint64_t ctx)
{
	assert(!r->in_ready);
	if (r->role == RAFT_LEADER) {
		raft__wake(r);
		return enqueue(r, ctx, r->id);
	}
	if (r->leader == 0)
		return CM_ENOLEADER;
	struct raft_msg m = {.type = RAFT_MSG_READ_INDEX, .to = r->leader, .ctx = ctx};
	raft__send(r, &m);
	return 0;
}

int raft__recv_read_index(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg resp = {.type = RAFT_MSG_READ_INDEX_RESP, .to = m->from, .ctx = m->ctx};
	if (r->role == RAFT_LEADER) {
		struct raft_progress *pr = raft__progress_find(r, m->from);
		if (pr != NULL)
			pr->recent_active = true;
		if (pr != NULL && enqueue(r, m->ctx, m->from) == 0)
			return 0;
	}
	resp.reject = true;
	raft__send(r, &resp);
	return 0;
}

int raft__recv_read_index_resp(struct raft *r, const struct raft_msg *m)
{
	/* A refused read is dropped: the caller's timeout retries it. */
	if (m->reject || r->role == RAFT_LEADER || m->from != r->leader)
		return 0;
	return raft__out_read(r, m->ctx, m->index);
}

void raft__reads_on_commit(struct raft *r)
{
	if (!commit_current(r))
		return;
	for (uint32_t k = 0; k < r->n_reads; k++) {
		if (r->reads[k].index != 0)
			continue;
		r->reads[k].index = r->commit;
		r->reads[k].seq = r->read_seq + 1;
		r->read_round = true;
	}
}

/* Complete every read whose heartbeat round a majority has acknowledged. */
void raft__reads_confirm(struct raft *r)
{
	uint64_t q = raft__quorum_read(r);
	uint32_t kept = 0;
	for (uint32_t k = 0; k < r->n_reads; k++) {
		struct raft_pending_read *p = &r->reads[k];
		if (p->index == 0 || p->seq > q) {
			r->reads[kept++] = *p;
			continue;
		}
		if (p->from == r->id) {
			if (raft__out_read(r, p->ctx, p->index) != 0)
				r->reads[kept++] = *p; /* no memory: retry later */
			continue;
		}
		struct raft_msg resp = {
			.type = RAFT_MSG_READ_INDEX_RESP, .to = p->from, .ctx = p->ctx, .index = p->index};
		raft__send(r, &resp);
	}
	r->n_reads = kept;
	if (kept == 0)
		raft__reads_drop(r);
}

void raft__reads_drop(struct raft *r)
{
	free(r->reads);
	r->reads = NULL;
	r->n_reads = 0;
	r->cap_reads = 0;
}
