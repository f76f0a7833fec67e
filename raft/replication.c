/* replication.c: log replication: APPEND, heartbeats, commit, proposals. */
#include "raft_int.h"

int raft__append_local(struct raft *r, uint8_t type, const void *data, uint32_t len,
		       raft_index *index)
{
	assert(r->role == RAFT_LEADER);
	struct raft_entry e = {
		.term = r->term,
		.index = raft__log_last(&r->log) + 1,
		.type = type,
		.len = len,
		.data = (void *)data,
	};
	int rv = raft__log_append(&r->log, &e);
	if (rv != 0)
		return rv;
	if (index != NULL)
		*index = e.index;
	raft__conf_on_append(r, raft__log_get(&r->log, e.index));
	if (r->role != RAFT_LEADER)
		return 0; /* stepped down: out of memory for the new progress */
	raft__maybe_commit(r); /* a group of one commits at once */
	r->need_flush = true;
	return 0;
}

int raft_propose(struct raft *r, const void *data, uint32_t len, raft_index *index)
{
	assert(!r->in_ready);
	if (r->role != RAFT_LEADER)
		return CM_ENOTLEADER;
	if (r->transferee != 0)
		return CM_ETRANSFERRING;
	if (len > r->cfg.max_entry_bytes)
		return -EMSGSIZE;
	if (len > 0 && data == NULL)
		return -EINVAL;
	/* Always admit one entry, so a big value cannot wedge an idle group. */
	if (r->uncommitted > 0 && r->uncommitted + len > r->cfg.max_uncommitted_bytes)
		return -EBUSY;
	raft__wake(r);
	int rv = raft__append_local(r, RAFT_ENTRY_NORMAL, data, len, index);
	if (rv == 0 && r->role == RAFT_LEADER && raft__log_last(&r->log) > r->commit)
		r->uncommitted += len;
	return rv;
}

/* Copy entries [from, from+n) into the batch and describe them in m. */
static void attach_entries(struct raft *r, struct raft_msg *m, raft_index from, uint32_t n)
{
	m->n_entries = 0;
	if (n == 0)
		return;
	struct raft_out *o = &r->out;
	if (o->n_ents + n > o->cap_ents) {
		uint32_t cap = o->cap_ents ? o->cap_ents : 64;
		while (cap < o->n_ents + n)
			cap *= 2;
		struct raft_entry *ents = realloc(o->ents, sizeof(*ents) * cap);
		if (ents == NULL)
			return; /* send it empty: a harmless probe */
		o->ents = ents;
		o->cap_ents = cap;
	}
	for (uint32_t k = 0; k < n; k++)
		o->ents[o->n_ents + k] = *raft__log_get(&r->log, from + k);
	/* The array may still move: ready.c turns this offset into a pointer. */
	m->ctx = o->n_ents;
	m->n_entries = n;
	o->n_ents += n;
}

/* How many entries from `from` fit one APPEND. */
static uint32_t batch_size(const struct raft *r, raft_index from)
{
	raft_index last = raft__log_last(&r->log);
	uint32_t n = 0;
	uint64_t bytes = 0;
	for (raft_index i = from; i <= last && n < r->cfg.max_msg_entries; i++) {
		bytes += raft__log_get(&r->log, i)->len;
		if (n > 0 && bytes > r->cfg.max_msg_bytes)
			break;
		n++;
	}
	return n;
}

/* Send what the follower's window allows: pipelined in REPLICATE, one in PROBE. */
static void send_appends(struct raft *r, struct raft_progress *pr)
{
	raft_index last = raft__log_last(&r->log);
	while (!raft__progress_full(r, pr)) {
		raft_index prev = pr->next - 1;
		if (prev < r->log.base) {
			pr->state = PR_SNAPSHOT;
			pr->snap_index = 0; /* start from the current snapshot */
			raft__send_snap_chunk(r, pr);
			return;
		}
		uint32_t n = batch_size(r, pr->next);
		if (n == 0 && pr->sent_commit >= r->commit &&
		    !(pr->state == PR_PROBE && pr->match < last))
			return;
		struct raft_msg m = {
			.type = RAFT_MSG_APPEND,
			.to = pr->id,
			.index = prev,
			.log_term = raft__log_term(&r->log, prev),
			.commit = r->commit,
		};
		attach_entries(r, &m, pr->next, n);
		raft__send(r, &m);
		pr->sent_commit = r->commit;
		raft__progress_sent(r, pr, prev + m.n_entries);
		if (m.n_entries == 0)
			return;
	}
}

void raft__flush(struct raft *r)
{
	if (r->role != RAFT_LEADER)
		return;
	if (r->need_flush) {
		r->need_flush = false;
		for (uint32_t k = 0; k < r->n_prs; k++)
			send_appends(r, &r->prs[k]);
	}
	if (r->read_round) {
		r->read_round = false;
		r->read_seq++;
		raft__bcast_heartbeat(r, false);
		raft__reads_confirm(r); /* a group of one confirms at once */
	}
}

void raft__bcast_heartbeat(struct raft *r, bool quiesce)
{
	for (uint32_t k = 0; k < r->n_prs; k++) {
		struct raft_progress *pr = &r->prs[k];
		struct raft_msg m = {
			.type = RAFT_MSG_HEARTBEAT,
			.to = pr->id,
			.commit = pr->match < r->commit ? pr->match : r->commit,
			.ctx = r->read_seq,
			.force = quiesce,
		};
		raft__send(r, &m);
		/* An idle follower needs no in-flight ring: idle groups stay small. */
		if (pr->in_count == 0 && pr->inflight != NULL) {
			free(pr->inflight);
			pr->inflight = NULL;
			pr->in_head = 0;
		}
		/* A lost snapshot chunk is sent again after two silent beats. */
		if (pr->state == PR_SNAPSHOT && ++pr->snap_wait >= 2)
			raft__send_snap_chunk(r, pr);
	}
}

/* Commit what a majority holds, but only by counting entries of our own
 * term (§5.4.2): older entries are committed indirectly (Figure 8). */
void raft__maybe_commit(struct raft *r)
{
	assert(r->role == RAFT_LEADER);
	raft_index q = raft__quorum_match(r);
	if (q <= r->commit)
		return;
#ifndef RAFT_BUG_COMMIT_OLD_TERM
	if (raft__log_term(&r->log, q) != r->term)
		return;
#endif
	for (raft_index i = r->commit + 1; i <= q; i++) {
		uint32_t len = raft__log_get(&r->log, i)->len;
		r->uncommitted = r->uncommitted > len ? r->uncommitted - len : 0;
	}
	r->commit = q;
	r->need_flush = true;
	raft__reads_on_commit(r);
	/* A leader that removed itself steps down once that is committed (§4.2.2). */
	if (r->conf_index <= r->commit && raft_conf_kind(&r->conf, r->id) != RAFT_VOTER)
		raft__become_follower(r, r->term, 0);
}

/* Follower: the largest index <= i whose term is <= t (for fast back-tracking). */
static raft_index find_conflict(const struct raft *r, raft_index i, raft_term t)
{
	raft_index last = raft__log_last(&r->log);
	if (i > last)
		i = last;
	while (i > r->commit && i > r->log.base && raft__log_term(&r->log, i) > t)
		i--;
	return i;
}

static int append_entries(struct raft *r, const struct raft_msg *m)
{
	for (uint32_t k = 0; k < m->n_entries; k++) {
		const struct raft_entry *e = &m->entries[k];
		raft_index last = raft__log_last(&r->log);
		if (e->index <= last) {
			if (raft__log_term(&r->log, e->index) == e->term)
				continue;
			/* m->index >= commit, so this never truncates a committed entry. */
			assert(e->index > r->commit);
			raft__log_truncate(&r->log, e->index);
			if (r->stable >= e->index)
				r->stable = e->index - 1;
			if (r->conf_index >= e->index)
				raft__conf_reload(r);
		}
		int rv = raft__log_append(&r->log, e);
		if (rv != 0)
			return rv;
		raft__conf_on_append(r, raft__log_get(&r->log, e->index));
	}
	return 0;
}

int raft__recv_append(struct raft *r, const struct raft_msg *m)
{
	if (r->role == RAFT_LEADER)
		return -EBADMSG; /* a second leader in our term: impossible */
	if (r->role != RAFT_FOLLOWER)
		raft__become_follower(r, m->term, m->from);
	r->leader = m->from;
	r->election_elapsed = 0;
	r->quiesced = false;
	struct raft_msg resp = {.type = RAFT_MSG_APPEND_RESP, .to = m->from};
	if (m->index < r->commit) {
		resp.index = r->commit; /* all of that matches: committed */
		raft__send(r, &resp);
		return 0;
	}
	raft_term t = raft__log_term(&r->log, m->index);
	if (t == 0 ? m->index != 0 : t != m->log_term) {
		resp.reject = true;
		resp.index = m->index;
		resp.hint = find_conflict(r, m->index, m->log_term);
		resp.log_term = raft__log_term(&r->log, resp.hint);
		raft__send(r, &resp);
		return 0;
	}
	int rv = append_entries(r, m);
	if (rv != 0)
		return rv;
	raft_index last_new = m->index + m->n_entries;
	raft_index c = m->commit < last_new ? m->commit : last_new;
	if (c > r->commit)
		r->commit = c;
	resp.index = last_new;
	raft__send(r, &resp);
	return 0;
}
