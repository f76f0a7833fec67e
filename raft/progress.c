/* progress.c: the leader's view of each follower: match, next, flow control. */
#include "raft_int.h"

struct raft_progress *raft__progress_find(struct raft *r, raft_id id)
{
	for (uint32_t k = 0; k < r->n_prs; k++)
		if (r->prs[k].id == id)
			return &r->prs[k];
	return NULL;
}

void raft__progress_free(struct raft *r)
{
	for (uint32_t k = 0; k < r->n_prs; k++)
		free(r->prs[k].inflight);
	free(r->prs);
	r->prs = NULL;
	r->n_prs = 0;
}

/*
 * Make prs match the members of r->conf other than this node, keeping what
 * is known of members that stay. New members start probing at last + 1.
 * On allocation failure the leader steps down: it cannot lead blind.
 */
int raft__progress_sync(struct raft *r)
{
	assert(r->role == RAFT_LEADER);
	uint32_t n = 0;
	uint32_t others = r->conf.n - (raft_conf_kind(&r->conf, r->id) != 0);
	struct raft_progress *prs = calloc(others ? others : 1, sizeof(*prs));
	if (prs == NULL) {
		raft__become_follower(r, r->term, 0);
		return -ENOMEM;
	}
	raft_index last = raft__log_last(&r->log);
	for (uint32_t k = 0; k < r->conf.n; k++) {
		raft_id id = r->conf.ids[k];
		if (id == r->id)
			continue;
		struct raft_progress *old = raft__progress_find(r, id);
		if (old != NULL) {
			prs[n] = *old;
			old->inflight = NULL; /* moved */
		} else {
			prs[n].id = id;
			prs[n].next = last + 1;
			prs[n].state = PR_PROBE;
			prs[n].recent_active = true; /* a grace period */
		}
		n++;
	}
	assert(n == others);
	raft__progress_free(r);
	r->prs = prs;
	r->n_prs = n;
	return 0;
}

void raft__progress_probe(struct raft_progress *pr, raft_index next)
{
	pr->state = PR_PROBE;
	pr->next = next > pr->match + 1 ? next : pr->match + 1;
	pr->probe_sent = false;
	pr->stalls = 0;
	pr->in_head = pr->in_count = 0;
}

void raft__progress_replicate(struct raft_progress *pr)
{
	pr->state = PR_REPLICATE;
	pr->next = pr->match + 1;
	pr->probe_sent = false;
	pr->stalls = 0;
	pr->in_head = pr->in_count = 0;
}

bool raft__progress_full(const struct raft *r, const struct raft_progress *pr)
{
	switch (pr->state) {
	case PR_PROBE:
		return pr->probe_sent;
	case PR_REPLICATE:
		return pr->in_count >= r->cfg.max_inflight;
	default:
		return true; /* PR_SNAPSHOT: appends wait for the snapshot */
	}
}

/* An APPEND ending at `last` went out. */
void raft__progress_sent(const struct raft *r, struct raft_progress *pr, raft_index last)
{
	if (pr->state == PR_PROBE) {
		pr->probe_sent = true;
		return;
	}
	assert(pr->state == PR_REPLICATE);
	uint32_t cap = r->cfg.max_inflight;
	if (pr->inflight == NULL) {
		pr->inflight = malloc(sizeof(*pr->inflight) * cap);
		if (pr->inflight == NULL) {
			/* Cannot track: fall back to one message at a time. */
			raft__progress_probe(pr, pr->next);
			pr->probe_sent = true;
			return;
		}
	}
	assert(pr->in_count < cap);
	pr->inflight[(pr->in_head + pr->in_count) % cap] = last;
	pr->in_count++;
	if (last >= pr->next)
		pr->next = last + 1;
}

/* Free the in-flight slots of every APPEND that `match` acknowledges. */
void raft__progress_acked(const struct raft *r, struct raft_progress *pr, raft_index match)
{
	uint32_t cap = r->cfg.max_inflight;
	while (pr->in_count > 0 && pr->inflight[pr->in_head] <= match) {
		pr->in_head = (pr->in_head + 1) % cap;
		pr->in_count--;
	}
}

static uint64_t quorum_of(uint64_t *v, uint32_t n)
{
	assert(n > 0);
	/* Insertion sort, descending: n <= RAFT_MAX_NODES. */
	for (uint32_t i = 1; i < n; i++)
		for (uint32_t j = i; j > 0 && v[j] > v[j - 1]; j--) {
			uint64_t t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[n / 2];
}

static bool self_votes(const struct raft *r)
{
	return raft_conf_kind(&r->conf, r->id) == RAFT_VOTER;
}

raft_index raft__quorum_match(const struct raft *r)
{
	uint64_t v[RAFT_MAX_NODES];
	uint32_t n = 0;
	/* Our own entries count once durable: a leader's APPENDs may leave
	 * before its own write (struct raft_ready, item 5). Between raft_ready()
	 * and raft_advance() nothing is stepped, so today this is also what
	 * the last index would give; it stays right if writes become async. */
	if (self_votes(r))
		v[n++] = r->stable;
	for (uint32_t k = 0; k < r->n_prs; k++)
		if (raft_conf_kind(&r->conf, r->prs[k].id) == RAFT_VOTER)
			v[n++] = r->prs[k].match;
	return n ? quorum_of(v, n) : 0;
}

uint64_t raft__quorum_read(const struct raft *r)
{
	uint64_t v[RAFT_MAX_NODES];
	uint32_t n = 0;
	if (self_votes(r))
		v[n++] = r->read_seq;
	for (uint32_t k = 0; k < r->n_prs; k++)
		if (raft_conf_kind(&r->conf, r->prs[k].id) == RAFT_VOTER)
			v[n++] = r->prs[k].read_ack;
	return n ? quorum_of(v, n) : 0;
}

bool raft__quorum_active(const struct raft *r)
{
	uint32_t voters = raft__conf_voters(&r->conf);
	uint32_t active = self_votes(r) ? 1 : 0;
	for (uint32_t k = 0; k < r->n_prs; k++)
		if (raft_conf_kind(&r->conf, r->prs[k].id) == RAFT_VOTER &&
		    r->prs[k].recent_active)
			active++;
	return active > voters / 2;
}
