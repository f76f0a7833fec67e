/* guard.c: membership safety: removed nodes cannot disrupt, learners never vote. */
#include "sim.h"

typedef unsigned long long ull; /* for printf */

/*
 * Checked on every step of every seed (membership churn is part of the random
 * runs, member.c), and driven on purpose by the scripted scenarios.
 *
 * C* is the newest configuration in the history (committed and applied by
 * someone). A node is REMOVED while it is absent from C* and from the current
 * leader's configuration; it keeps running with its old log and its old view
 * of the membership, so it may still campaign (member.c wipes it only when it
 * is re-added).
 *
 *  removed-disrupts  While the cluster is healthy, a message from a removed
 *                    node never lifts a member of C* inside the leader's
 *                    lease above the leader's term, and never ends that
 *                    leader's leadership. Healthy: a voter L of C* has led the
 *                    same term for at least two election timeouts and is
 *                    connected both ways to a majority of C*'s running voters
 *                    (itself included). Inside the lease: L itself, or a
 *                    member that follows L in L's term and heard from it
 *                    within an election timeout. A member outside the lease
 *                    is not covered: it may adopt any term, the leader's lease
 *                    does not reach it. (Seed 1895 found a removed node,
 *                    paused in mid-PreVote, that woke after its removal
 *                    committed, campaigned on the grants it had and lifted a
 *                    leased follower, then deposed the leader; raft/step.c
 *                    now ignores such messages within the lease.)
 *                    PreVote (the removed node's log lacks its removal, so it
 *                    never wins one) and the leader lease (members that hear
 *                    from L ignore campaigns) are what make this hold.
 *                    Adopting a term up to L's own (a lagging member catching
 *                    up) is no disruption.
 *  removed-leader    A node absent from C* never becomes leader.
 *  vote-quorum       A new leader of term t holds grants, sent in t, from a
 *                    majority of the voters of ITS configuration: a removed
 *                    node or a learner never makes up a majority.
 *  commit-quorum     A leader's commit index moves to c only when entry c of
 *                    its term is durable on a majority of its configuration's
 *                    voters.
 *  learner-votes     A node grants a vote or a pre-vote only while it is a
 *                    voter in its own configuration at the moment it decides
 *                    (when the request is stepped), or (default, not with
 *                    --strict-learners) when the candidate listed it as a
 *                    voter when it campaigned: its promotion is in the
 *                    candidate's log, not yet in its own. The core grants in
 *                    that case, as etcd's raft does: refusing would let one
 *                    crash (a leader that appended the promotion and died
 *                    before the learner got it) stall elections until that
 *                    node returns. --strict-learners counts those grants as
 *                    violations (119 of the 2000 default seeds).
 *  learner-campaigns A node is a (pre)candidate, and sends VOTE or PREVOTE,
 *                    only while it is a voter in its own configuration.
 */

static bool is_voter(const struct raft_conf *c, raft_id id)
{
	return sim_conf_kind(c, id) == RAFT_VOTER;
}

static const struct raft_conf *committed_conf(const struct sim *s)
{
	return &s->hist.confs[s->hist.n_confs - 1].conf;
}

static bool connected(const struct sim *s, const struct sim_node *a, const struct sim_node *b)
{
	return a == b || (b->r && !s->net.cut[a->id][b->id] && !s->net.cut[b->id][a->id]);
}

/* The healthy leader of C*, or NULL: see removed-disrupts above. */
static const struct sim_node *healthy_leader(struct sim *s)
{
	const struct raft_conf *c = committed_conf(s);
	for (uint32_t i = 0; i < c->n; i++) {
		const struct sim_node *l = sim_node_by_id(s, c->ids[i]);
		if (c->kinds[i] != RAFT_VOTER || !l || !l->r || l->st.role != RAFT_LEADER ||
		    s->now < l->lead_since + 2 * SIM_ELECTION_TICKS)
			continue;
		uint32_t voters = 0, linked = 0;
		for (uint32_t k = 0; k < c->n; k++) {
			const struct sim_node *v = sim_node_by_id(s, c->ids[k]);
			if (c->kinds[k] != RAFT_VOTER || !v)
				continue;
			voters++;
			linked += connected(s, l, v);
		}
		if (2 * linked > voters)
			return l;
	}
	return NULL;
}

bool sim_guard_removed(struct sim *s, raft_id id)
{
	const struct sim_node *l = NULL;
	for (uint32_t i = 0; i < s->n_slots && !l; i++)
		if (s->nodes[i].r && s->nodes[i].st.role == RAFT_LEADER)
			l = &s->nodes[i];
	return !sim_conf_kind(committed_conf(s), id) && (!l || !sim_conf_kind(&l->st.conf, id));
}

/* Before n steps m: what the checks after the step need. */
void sim_guard_before(struct sim *s, struct sim_node *n, const struct raft_msg *m,
		      struct sim_guard_ctx *g)
{
	g->leader = NULL;
	g->term = n->st.term;
	g->role = n->st.role;
	if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
		bool self = is_voter(&n->st.conf, n->id);
		n->voter_at_req[m->from][m->type == RAFT_MSG_PREVOTE] =
		    self || (s->guard_lax && n->asked_as_voter[m->from][m->type == RAFT_MSG_PREVOTE]);
		n->strict_at_req[m->from][m->type == RAFT_MSG_PREVOTE] = self;
	}
	if (!sim_conf_kind(committed_conf(s), n->id) || !sim_guard_removed(s, m->from))
		return;
	g->leader = healthy_leader(s);
	const struct sim_node *l = g->leader;
	bool leased = l && (n == l || (n->st.leader == l->id && n->st.term == l->st.term &&
				       n->st.leader_silence < SIM_ELECTION_TICKS));
	if (leased && !sim_conf_kind(&l->st.conf, m->from))
		g->leader_term = g->leader->st.term;
	else
		g->leader = NULL;
}

/* After n stepped m from a removed node into a healthy cluster: removed-disrupts. */
void sim_guard_after(struct sim *s, struct sim_node *n, const struct raft_msg *m,
		     const struct sim_guard_ctx *g)
{
	if (!g->leader)
		return;
	bool lifted = n->st.term > g->leader_term && n->st.term > g->term;
	bool deposed = n == g->leader && n->st.role != RAFT_LEADER;
	if (lifted || deposed)
		sim_fail(s, "removed-disrupts",
			 "%s from removed n%llu (t%llu) %s n%llu: %s t%llu -> %s t%llu, while n%llu "
			 "led t%llu, stable and connected to a majority",
			 raft_msg_type_name(m->type), (ull)m->from, (ull)m->term,
			 deposed ? "deposed leader" : "lifted the term of", (ull)n->id,
			 raft_role_name(g->role), (ull)g->term, raft_role_name(n->st.role),
			 (ull)n->st.term, (ull)g->leader->id, (ull)g->leader_term);
}

/* Every message a node sends: learner-votes and learner-campaigns, and the
 * grants a candidate collects for vote-quorum. */
void sim_guard_sent(struct sim *s, struct sim_node *n, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_PREVOTE_RESP;
	if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
		if (!n->campaign_voter)
			sim_fail(s, "learner-campaigns",
				 "n%llu sends %s t%llu to n%llu while not a voter in its "
				 "configuration",
				 (ull)n->id, raft_msg_type_name(m->type), (ull)m->term, (ull)m->to);
		sim_node_by_id(s, m->to)->asked_as_voter[n->id][pre] =
		    is_voter(&n->campaign_conf, m->to);
	}
	if ((m->type != RAFT_MSG_VOTE_RESP && m->type != RAFT_MSG_PREVOTE_RESP) || m->reject)
		return;
	if (!n->strict_at_req[m->to][pre])
		s->stats.learner_grants++;
	if (!n->voter_at_req[m->to][pre])
		sim_fail(s, "learner-votes",
			 "n%llu grants %s t%llu to n%llu while %s its own configuration",
			 (ull)n->id, raft_msg_type_name(m->type), (ull)m->term, (ull)m->to,
			 sim_conf_kind(&n->st.conf, n->id) ? "a learner in" : "absent from");
	struct sim_node *c = sim_node_by_id(s, m->to);
	if (pre || !c)
		return;
	if (m->term < c->grant_term)
		return; /* a stalled voter answering an old campaign */
	if (m->term > c->grant_term) {
		c->grant_term = m->term;
		c->grants = 0;
	}
	c->grants |= 1u << n->id;
}

/* n became leader of its term: removed-leader and vote-quorum. */
static void check_elected(struct sim *s, struct sim_node *n, const struct raft_status *st)
{
	const struct raft_conf *c = &st->conf;
	if (!sim_conf_kind(committed_conf(s), n->id)) {
		sim_fail(s, "removed-leader", "n%llu leads t%llu but was removed (committed)",
			 (ull)n->id, (ull)st->term);
		return;
	}
	uint32_t voters = 0, yes = 0;
	for (uint32_t k = 0; k < c->n; k++) {
		if (c->kinds[k] != RAFT_VOTER)
			continue;
		voters++;
		yes += c->ids[k] == n->id ||
		       (n->grant_term == st->term && c->ids[k] <= SIM_MAX_NODES &&
			(n->grants >> c->ids[k]) & 1);
	}
	if (2 * yes <= voters)
		sim_fail(s, "vote-quorum",
			 "n%llu leads t%llu with grants from %u of the %u voters of its "
			 "configuration",
			 (ull)n->id, (ull)st->term, yes, voters);
}

/* A leader's commit moved to st->commit: commit-quorum. */
static void check_commit(struct sim *s, struct sim_node *n, const struct raft_status *st)
{
	const struct raft_conf *c = &st->conf;
	raft_index i = st->commit;
	uint32_t voters = 0, have = 0;
	for (uint32_t k = 0; k < c->n; k++) {
		const struct sim_node *v = sim_node_by_id(s, c->ids[k]);
		if (c->kinds[k] != RAFT_VOTER || !v)
			continue;
		voters++;
		const struct raft_entry *e = sim_store_entry(&v->disk, i);
		have += v->disk.snap.index >= i || (e && e->term == st->term);
	}
	if (2 * have <= voters)
		sim_fail(s, "commit-quorum",
			 "n%llu (leader t%llu) commits %llu, durable in its term on %u of the %u "
			 "voters of its configuration",
			 (ull)n->id, (ull)st->term, (ull)i, have, voters);
}

/* From sim_node_observe: o is the previous status, st the new one. */
void sim_guard_observe(struct sim *s, struct sim_node *n, const struct raft_status *o,
		       const struct raft_status *st)
{
	if (st->role == RAFT_PRECANDIDATE || st->role == RAFT_CANDIDATE) {
		n->campaign_voter = is_voter(&st->conf, n->id);
		n->campaign_conf = st->conf;
		if (!n->campaign_voter)
			sim_fail(s, "learner-campaigns", "n%llu is a %s in t%llu but %s",
				 (ull)n->id, raft_role_name(st->role), (ull)st->term,
				 sim_conf_kind(&st->conf, n->id) ? "a learner" : "no member");
	}
	if (st->role != RAFT_LEADER)
		return;
	if (o->role != RAFT_LEADER || o->term != st->term) {
		n->lead_since = s->now;
		check_elected(s, n, st);
	} else if (st->commit > o->commit) {
		check_commit(s, n, st);
	}
}
