/* leader.c: what a leader does with its followers' answers; heartbeats. */
#include "raft_int.h"

/* Where to probe next after a rejection: the largest index <= hint whose term
 * is <= the follower's hint term, so one round trip skips a whole term. */
static raft_index next_after_reject(const struct raft *r, const struct raft_msg *m)
{
	raft_index j = m->hint < m->index ? m->hint : m->index;
	raft_index last = raft__log_last(&r->log);
	if (j > last)
		j = last;
	/* Below the base the term is unknown (0): next <= base means a snapshot. */
	while (j > 0 && j >= r->log.base && raft__log_term(&r->log, j) > m->log_term)
		j--;
	return j + 1;
}

static void on_reject(struct raft *r, struct raft_progress *pr, const struct raft_msg *m)
{
	if (pr->state == PR_REPLICATE && m->index <= pr->match)
		return; /* stale */
	if (pr->state == PR_PROBE && m->index != pr->next - 1)
		return; /* answers an older probe */
	if (pr->state == PR_SNAPSHOT)
		return;
	raft__progress_probe(pr, next_after_reject(r, m));
	r->need_flush = true;
}

static void maybe_finish_transfer(struct raft *r, const struct raft_progress *pr)
{
	if (r->transferee != pr->id || pr->match != raft__log_last(&r->log))
		return;
	struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = pr->id};
	raft__send(r, &m);
}

int raft__recv_append_resp(struct raft *r, const struct raft_msg *m)
{
	struct raft_progress *pr = r->role == RAFT_LEADER ? raft__progress_find(r, m->from) : NULL;
	if (pr == NULL)
		return 0;
	pr->recent_active = true;
	if (m->reject) {
		if (m->index != 0)
			on_reject(r, pr, m);
		return 0;
	}
	if (m->index > raft__log_last(&r->log))
		return -EBADMSG; /* acknowledges what we never had */
	/* Every ack frees the slots it covers, also a commit-only APPEND's. */
	raft__progress_acked(r, pr, m->index);
	if (m->index > pr->match) {
		pr->match = m->index;
		if (pr->next <= pr->match)
			pr->next = pr->match + 1;
		raft__maybe_commit(r);
		if (r->role != RAFT_LEADER)
			return 0;
	}
	if (pr->state == PR_PROBE && m->index + 1 >= pr->next)
		raft__progress_replicate(pr);
	else if (pr->state == PR_SNAPSHOT && pr->match >= pr->snap_index)
		raft__progress_probe(pr, pr->match + 1);
	maybe_finish_transfer(r, pr);
	r->need_flush = true;
	return 0;
}

int raft__recv_heartbeat(struct raft *r, const struct raft_msg *m)
{
	if (r->role == RAFT_LEADER)
		return -EBADMSG;
	if (r->role != RAFT_FOLLOWER)
		raft__become_follower(r, m->term, m->from);
	r->leader = m->from;
	r->election_elapsed = 0;
	r->quiesced = m->force; /* the leader goes quiet: so do we */
	raft_index last = raft__log_last(&r->log);
	raft_index c = m->commit < last ? m->commit : last;
	if (c > r->commit)
		r->commit = c;
	struct raft_msg resp = {.type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .ctx = m->ctx};
	raft__send(r, &resp);
	return 0;
}

/* Heartbeat replies drive retries: a probe that got no answer is sent again,
 * and a pipeline that made no progress for a few beats falls back to probing
 * (the tail of it was lost). */
#define STALL_BEATS 3

int raft__recv_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
	struct raft_progress *pr = r->role == RAFT_LEADER ? raft__progress_find(r, m->from) : NULL;
	if (pr == NULL)
		return 0;
	pr->recent_active = true;
	if (m->ctx > r->read_seq)
		return -EBADMSG; /* acknowledges a round we never started */
	if (m->ctx > pr->read_ack) {
		pr->read_ack = m->ctx;
		raft__reads_confirm(r);
	}
	if (pr->state == PR_PROBE)
		pr->probe_sent = false;
	if (pr->match < raft__log_last(&r->log)) {
		if (pr->match != pr->hb_match)
			pr->stalls = 0;
		else if (pr->state == PR_REPLICATE && ++pr->stalls >= STALL_BEATS)
			raft__progress_probe(pr, pr->match + 1);
		pr->hb_match = pr->match;
		r->need_flush = true;
	}
	return 0;
}
