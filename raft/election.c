/* election.c: roles, timers, PreVote, votes, CheckQuorum, leadership transfer. */
#include "raft_int.h"

bool raft__promotable(const struct raft *r)
{
#ifdef RAFT_BUG_LEARNER_CAMPAIGNS
	return raft_conf_kind(&r->conf, r->id) != 0; /* deliberately broken: learners too */
#else
	return raft_conf_kind(&r->conf, r->id) == RAFT_VOTER;
#endif
}

void raft__become_follower(struct raft *r, raft_term term, raft_id leader)
{
	assert(term >= r->term);
	if (term > r->term) {
		r->term = term;
		r->vote = 0;
	}
	if (r->role == RAFT_LEADER) {
		raft__progress_free(r);
		raft__reads_drop(r);
		r->read_round = false;
		r->need_flush = false;
	}
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	r->transferee = 0;
	r->uncommitted = 0;
	r->granted = r->refused = 0;
	raft__reset_timers(r);
}

void raft__become_leader(struct raft *r)
{
	assert(r->role == RAFT_CANDIDATE);
	r->role = RAFT_LEADER;
	r->leader = r->id;
	r->transferee = 0;
	r->uncommitted = 0;
	raft__reset_timers(r);
	if (raft__progress_sync(r) != 0)
		return; /* stepped down */
	/* A no-op of our term lets us commit what earlier leaders left (§5.4.2)
	 * and tells us the commit index ReadIndex may use (§6.4). */
	if (raft__append_local(r, RAFT_ENTRY_NOOP, NULL, 0, NULL) != 0) {
		raft__become_follower(r, r->term, 0);
		return;
	}
	r->need_flush = true;
}

/* Record a (pre)vote answer from `from`; returns the number granted, refused. */
static void tally(struct raft *r, raft_id from, bool granted, uint32_t *yes, uint32_t *no)
{
	for (uint32_t k = 0; k < r->conf.n; k++) {
		if (r->conf.ids[k] != from || r->conf.kinds[k] != RAFT_VOTER)
			continue;
		uint16_t bit = (uint16_t)(1u << k);
		if (!((r->granted | r->refused) & bit)) {
			if (granted)
				r->granted |= bit;
			else
				r->refused |= bit;
		}
	}
	*yes = (uint32_t)__builtin_popcount(r->granted);
	*no = (uint32_t)__builtin_popcount(r->refused);
}

/*
 * Start an election. With `pre`, first ask whether we could win without
 * touching anybody's term (thesis §9.6), so a node cut off from the group
 * does not disrupt it when it comes back with an inflated term.
 */
void raft__campaign(struct raft *r, bool pre, bool force)
{
	assert(raft__promotable(r));
	if (r->role == RAFT_LEADER)
		return;
	raft_term term = r->term + 1;
	r->granted = r->refused = 0;
	if (pre) {
		r->role = RAFT_PRECANDIDATE;
		r->leader = 0;
	} else {
		r->role = RAFT_CANDIDATE;
		r->term = term;
		r->vote = r->id;
		r->leader = 0;
	}
	raft__reset_timers(r);
	uint32_t yes, no;
	tally(r, r->id, true, &yes, &no);
	if (yes > raft__conf_voters(&r->conf) / 2) {
		if (pre)
			raft__campaign(r, false, force);
		else
			raft__become_leader(r);
		return;
	}
	for (uint32_t k = 0; k < r->conf.n; k++) {
		if (r->conf.ids[k] == r->id || r->conf.kinds[k] != RAFT_VOTER)
			continue;
		struct raft_msg m = {
			.type = pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE,
			.to = r->conf.ids[k],
			.index = raft__log_last(&r->log),
			.log_term = raft__log_last_term(&r->log),
			.force = force,
		};
		if (pre)
			m.term = term; /* a pre-vote asks about the next term */
		raft__send(r, &m);
	}
}

static bool log_ok(const struct raft *r, const struct raft_msg *m)
{
#ifdef RAFT_BUG_VOTE_NO_LOG_CHECK
	(void)r;
	(void)m;
	return true; /* deliberately broken: the simulator must notice */
#else
	raft_term lt = raft__log_last_term(&r->log);
	return m->log_term > lt || (m->log_term == lt && m->index >= raft__log_last(&r->log));
#endif
}

int raft__recv_vote(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	/* A node that knows no membership at all (new, or wiped and re-added
	 * under its old id) has no log to judge a candidate by: a lagging
	 * candidate whose older configuration still lists it must not win its
	 * vote (found by the simulator). Any other node votes whatever its own
	 * view of the membership (thesis §4.2.3): refusing there stalls
	 * elections when views differ. */
	bool can = r->conf.n > 0 &&
		   (r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
		    (pre && m->term > r->term));
	bool grant = can && log_ok(r, m);
	struct raft_msg resp = {
		.type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP,
		.to = m->from,
		.reject = !grant,
	};
	if (grant && !pre) {
		r->vote = m->from;
		r->election_elapsed = 0; /* §5.2: granting a vote resets the timer */
	}
	if (grant && pre)
		resp.term = m->term; /* answers in the term asked about, as etcd does */
	else if (r->term == 0)
		return 0; /* a node that never saw a term has none to refuse with */
	raft__send(r, &resp);
	return 0;
}

int raft__recv_vote_resp(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE_RESP;
	if (pre && (r->role != RAFT_PRECANDIDATE || m->term != r->term + 1 - m->reject))
		return 0;
	if (!pre && (r->role != RAFT_CANDIDATE || m->term != r->term))
		return 0;
	uint32_t yes, no;
	tally(r, m->from, !m->reject, &yes, &no);
	uint32_t quorum = raft__conf_voters(&r->conf) / 2 + 1;
	if (yes >= quorum) {
		if (pre)
			raft__campaign(r, false, false);
		else
			raft__become_leader(r);
	} else if (no >= quorum) {
		raft__become_follower(r, r->term, 0);
	}
	return 0;
}

int raft__recv_timeout_now(struct raft *r, const struct raft_msg *m)
{
	(void)m;
	if (r->role == RAFT_LEADER || !raft__promotable(r))
		return 0;
	raft__campaign(r, false, true);
	return 0;
}

void raft__tick_election(struct raft *r)
{
	if (r->quiesced)
		return; /* the leader said all is quiet; node liveness wakes us */
	r->election_elapsed++;
	if (r->election_elapsed < r->timeout || !raft__promotable(r))
		return;
#ifdef RAFT_BUG_REMOVED_NO_GUARD
	raft__campaign(r, false, false); /* deliberately broken: no PreVote */
#else
	raft__campaign(r, r->cfg.pre_vote, false);
#endif
}

/* Nothing in flight, nothing pending, every member caught up. */
static bool group_idle(const struct raft *r)
{
	raft_index last = raft__log_last(&r->log);
	if (r->commit != last || r->transferee != 0 || r->n_reads != 0 || r->read_round ||
	    r->need_flush)
		return false;
	/* Every member caught up and heard from in this CheckQuorum period:
	 * a leader goes quiet only while its group is whole. */
	for (uint32_t k = 0; k < r->n_prs; k++)
		if (r->prs[k].match != last || !r->prs[k].recent_active)
			return false;
	return true;
}

/* Idle long enough: a last heartbeat marked quiesce, then silence. */
static bool maybe_quiesce(struct raft *r)
{
	if (r->cfg.quiesce_ticks == 0)
		return false;
	if (!group_idle(r)) {
		r->quiet_ticks = 0;
		return false;
	}
	if (++r->quiet_ticks < r->cfg.quiesce_ticks)
		return false;
	raft__bcast_heartbeat(r, true);
	r->quiesced = true;
	return true;
}

void raft__tick_leader(struct raft *r)
{
	if (r->quiesced || maybe_quiesce(r))
		return;
	if (++r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
		r->heartbeat_elapsed = 0;
		raft__bcast_heartbeat(r, false);
	}
	if (r->transferee != 0 && ++r->transfer_elapsed >= r->cfg.election_ticks)
		r->transferee = 0; /* the target did not take over: lead on */
	if (++r->election_elapsed < r->cfg.election_ticks)
		return;
	r->election_elapsed = 0;
	if (r->cfg.check_quorum && !raft__quorum_active(r)) {
		/* Cannot reach a majority: stop claiming leadership so clients
		 * go elsewhere and a partitioned old leader serves nothing. */
		raft__become_follower(r, r->term, 0);
		return;
	}
	for (uint32_t k = 0; k < r->n_prs; k++)
		r->prs[k].recent_active = false;
}

int raft_campaign(struct raft *r)
{
	assert(!r->in_ready);
	if (!raft__promotable(r))
		return CM_EUNKNOWNPEER;
	if (r->role == RAFT_LEADER)
		return 0;
	raft__campaign(r, false, false);
	return 0;
}

int raft_transfer(struct raft *r, raft_id to)
{
	assert(!r->in_ready);
	if (r->role != RAFT_LEADER)
		return CM_ENOTLEADER;
	if (to == r->id)
		return -EINVAL;
	if (raft_conf_kind(&r->conf, to) != RAFT_VOTER)
		return CM_EUNKNOWNPEER;
	if (r->transferee != 0)
		return r->transferee == to ? 0 : CM_ETRANSFERRING;
	raft__wake(r);
	struct raft_progress *pr = raft__progress_find(r, to);
	assert(pr != NULL);
	r->transferee = to;
	r->transfer_elapsed = 0;
	if (pr->match == raft__log_last(&r->log)) {
		struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = to};
		raft__send(r, &m);
	} else {
		r->need_flush = true; /* catch it up first */
	}
	return 0;
}
