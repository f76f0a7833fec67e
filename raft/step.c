/* step.c: checking a received message, the term rules, and dispatch. */
#include "raft_int.h"

static int check_entries(const struct raft_msg *m)
{
	if (m->n_entries > RAFT_WIRE_MAX_ENTRIES)
		return -EBADMSG;
	if (m->n_entries > 0 && m->entries == NULL)
		return -EBADMSG;
	raft_term prev_term = m->log_term;
	for (uint32_t k = 0; k < m->n_entries; k++) {
		const struct raft_entry *e = &m->entries[k];
		if (e->index != m->index + 1 + k || e->term < prev_term || e->term > m->term)
			return -EBADMSG;
		if (e->len > RAFT_WIRE_MAX_ENTRY || (e->len > 0 && e->data == NULL))
			return -EBADMSG;
		if (e->type == RAFT_ENTRY_CONF) {
			struct raft_conf c;
			if (raft_conf_decode(e->data, e->len, &c) != 0)
				return -EBADMSG;
		} else if (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_NOOP) {
			return -EBADMSG;
		}
		prev_term = e->term;
	}
	return 0;
}

static int check_snap(const struct raft_msg *m)
{
	const struct raft_snap_meta *s = &m->snap;
	if (s->index == 0 || s->term == 0 || s->term > m->term ||
	    raft__conf_validate(&s->conf) != 0 || s->conf.n == 0)
		return -EBADMSG;
	if (m->len > RAFT_WIRE_MAX_CHUNK || (m->len > 0 && m->data == NULL))
		return -EBADMSG;
	if (m->offset > s->size || m->len > s->size - m->offset)
		return -EBADMSG;
	if (m->last != (m->offset + m->len == s->size))
		return -EBADMSG;
	return 0;
}

/* Reject what no correct peer sends, before it touches any state. */
static int check_msg(const struct raft *r, const struct raft_msg *m)
{
	if (m == NULL || m->type < RAFT_MSG_APPEND || m->type >= RAFT_MSG_TYPE_COUNT)
		return -EBADMSG;
	if (m->from == 0 || m->from == r->id || m->to != r->id || m->term == 0)
		return -EBADMSG;
	if (m->type == RAFT_MSG_APPEND)
		return check_entries(m);
	if (m->n_entries != 0)
		return -EBADMSG;
	if (m->type == RAFT_MSG_SNAP)
		return check_snap(m);
	return 0;
}

/* A (pre)vote while we have heard from a live leader: the leader lease. A
 * quiet follower holds none: its leader may have stepped down in silence,
 * and a lease that never expires would block every election. */
static bool in_lease(const struct raft *r, const struct raft_msg *m)
{
#ifdef RAFT_BUG_REMOVED_NO_GUARD
	/* Deliberately broken: the lease does not hold against non-members
	 * (and election.c skips PreVote): the simulator must notice. */
	if (raft_conf_kind(&r->conf, m->from) == 0)
		return false;
#endif
	return r->cfg.check_quorum && !m->force && r->leader != 0 && r->leader != m->from &&
	       !r->quiesced && r->election_elapsed < r->cfg.election_ticks;
}

static bool from_leader(uint8_t type)
{
	return type == RAFT_MSG_APPEND || type == RAFT_MSG_HEARTBEAT || type == RAFT_MSG_SNAP;
}

/*
 * A message of an older term. Answer a stale leader so it learns the new
 * term (with PreVote and CheckQuorum a node can sit at a higher term that
 * nobody else adopts), and refuse pre-votes; ignore everything else.
 */
static int step_lower(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg resp = {.to = m->from};
	if (from_leader(m->type)) {
		resp.type = RAFT_MSG_APPEND_RESP;
		resp.reject = true;
		resp.index = 0; /* carries nothing: only the term matters */
		raft__send(r, &resp);
	} else if (m->type == RAFT_MSG_PREVOTE) {
		resp.type = RAFT_MSG_PREVOTE_RESP;
		resp.reject = true;
		raft__send(r, &resp);
	}
	return 0;
}

/* Returns 1 if the message is to be ignored, 0 to go on. */
static int step_higher(struct raft *r, const struct raft_msg *m)
{
	if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
		if (in_lease(r, m))
			return 1;
		if (m->type == RAFT_MSG_PREVOTE)
			return 0; /* a pre-vote never changes our term */
	}
	if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)
		return 0; /* granted pre-votes carry the future term */
	/* Within the lease, an answer to a campaign we no longer run, or a
	 * higher term that a non-member puts in anything but a leader's message,
	 * would depose a live leader: a removed node, paused in mid-PreVote,
	 * woke after its removal committed, campaigned on the grants it had, and
	 * lifted a leased follower with its answer and the leader with its reply
	 * to a stale heartbeat (found by the simulator). Ignoring is safe; the
	 * lease ends with the leader. A new leader's own messages still count:
	 * a member that does not know it (re-added, its log empty) follows it. */
	bool answer = m->type == RAFT_MSG_PREVOTE_RESP || m->type == RAFT_MSG_VOTE_RESP;
	if (in_lease(r, m) &&
	    (answer || (!from_leader(m->type) && raft_conf_kind(&r->conf, m->from) == 0)))
		return 1;
	raft__become_follower(r, m->term, from_leader(m->type) ? m->from : 0);
	return 0;
}

static int dispatch(struct raft *r, const struct raft_msg *m)
{
	switch (m->type) {
	case RAFT_MSG_APPEND:
		return raft__recv_append(r, m);
	case RAFT_MSG_APPEND_RESP:
		return raft__recv_append_resp(r, m);
	case RAFT_MSG_VOTE:
	case RAFT_MSG_PREVOTE:
		return raft__recv_vote(r, m);
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PREVOTE_RESP:
		return raft__recv_vote_resp(r, m);
	case RAFT_MSG_HEARTBEAT:
		return raft__recv_heartbeat(r, m);
	case RAFT_MSG_HEARTBEAT_RESP:
		return raft__recv_heartbeat_resp(r, m);
	case RAFT_MSG_SNAP:
		return raft__recv_snap(r, m);
	case RAFT_MSG_SNAP_RESP:
		return raft__recv_snap_resp(r, m);
	case RAFT_MSG_TIMEOUT_NOW:
		return raft__recv_timeout_now(r, m);
	case RAFT_MSG_READ_INDEX:
		return raft__recv_read_index(r, m);
	case RAFT_MSG_READ_INDEX_RESP:
		return raft__recv_read_index_resp(r, m);
	default:
		return -EBADMSG; /* unreachable: check_msg() */
	}
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
	assert(!r->in_ready);
	int rv = check_msg(r, m);
	if (rv != 0)
		return rv;
	/* A quiet leader hears a member campaign or ask for a read: it wakes so
	 * heartbeats tell that member it is alive. */
	if (r->role == RAFT_LEADER && r->quiesced && m->type != RAFT_MSG_HEARTBEAT_RESP)
		raft__wake(r);
	/* Someone campaigns: a quiet follower runs its election timer again. */
	if (r->quiesced && (m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE))
		r->quiesced = false;
	if (m->term < r->term)
		return step_lower(r, m);
	if (m->term > r->term && step_higher(r, m) != 0)
		return 0;
	return dispatch(r, m);
}
