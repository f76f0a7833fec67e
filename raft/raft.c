/* raft.c: a group's life cycle, the public entry points and message dispatch. */
#include "raft_int.h"

void raft_config_default(struct raft_config *cfg, raft_id id, uint64_t seed)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->id = id;
	cfg->seed = seed;
	cfg->election_ticks = 10;
	cfg->heartbeat_ticks = 1;
	cfg->pre_vote = true;
	cfg->check_quorum = true;
	cfg->max_msg_entries = 256;
	cfg->max_msg_bytes = 1u << 20;
	cfg->max_inflight = 64;
	cfg->max_apply_entries = 4096;
	cfg->max_entry_bytes = 2u << 20;
	cfg->max_uncommitted_bytes = 64u << 20;
	cfg->max_pending_reads = 4096;
	cfg->max_outbox = 4096;
	cfg->snap_chunk_bytes = 256u << 10;
	cfg->learner_catchup = 64;
}

static int check_config(const struct raft_config *c)
{
	if (c->id == 0 || c->election_ticks < 2 || c->heartbeat_ticks == 0 ||
	    c->heartbeat_ticks >= c->election_ticks)
		return -EINVAL;
	if (c->max_msg_entries == 0 || c->max_msg_bytes == 0 || c->max_inflight == 0 ||
	    c->max_apply_entries == 0 || c->max_entry_bytes == 0 || c->max_outbox < 16 ||
	    c->snap_chunk_bytes == 0 || c->max_entry_bytes > RAFT_WIRE_MAX_ENTRY ||
	    c->snap_chunk_bytes > RAFT_WIRE_MAX_CHUNK || c->election_ticks > (1u << 20))
		return -EINVAL;
	return 0;
}

static int check_boot(const struct raft_boot *b)
{
	const struct raft_snap_meta *s = &b->snap;
	if (raft__conf_validate(&s->conf) != 0 || (s->index > 0 && s->term == 0))
		return -EINVAL;
	raft_index prev = s->index;
	raft_term prev_term = s->term;
	for (uint32_t k = 0; k < b->n_entries; k++) {
		const struct raft_entry *e = &b->entries[k];
		if (e->index != prev + 1 || e->term < prev_term || e->term == 0 ||
		    (e->len > 0 && e->data == NULL))
			return -EINVAL;
		if (e->type == RAFT_ENTRY_CONF) {
			struct raft_conf c;
			if (raft_conf_decode(e->data, e->len, &c) != 0)
				return -EINVAL;
		} else if (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_NOOP) {
			return -EINVAL;
		}
		prev = e->index;
		prev_term = e->term;
	}
	if (b->hs.commit > prev || b->applied < s->index || b->applied > b->hs.commit ||
	    prev_term > b->hs.term)
		return -EINVAL;
	return 0;
}

/*
 * A brand-new cluster (nothing persisted, initial members in snap.conf):
 * every member writes the same CONF entry at index 1, term 1, as etcd does.
 * The membership is then in the log itself, so a node added later learns it
 * from the entries it receives and its own snapshots carry it.
 */
static int bootstrap(struct raft *r, const struct raft_boot *b)
{
	if (b->snap.index != 0 || b->snap.conf.n == 0 || b->n_entries != 0 || b->hs.term != 0)
		return 0;
	uint8_t buf[RAFT_CONF_MAX_BYTES];
	struct raft_entry e = {
		.term = 1,
		.index = 1,
		.type = RAFT_ENTRY_CONF,
		.len = raft_conf_encode(&b->snap.conf, buf),
		.data = buf,
	};
	int rv = raft__log_append(&r->log, &e);
	if (rv != 0)
		return rv;
	r->term = 1;
	r->stable = 0; /* the first batch persists it, with the term */
	return 0;
}

int raft_new(const struct raft_config *cfg, const struct raft_boot *boot, struct raft **out)
{
	int rv = check_config(cfg);
	if (rv == 0)
		rv = check_boot(boot);
	if (rv != 0)
		return rv;
	struct raft *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->cfg = *cfg;
	r->id = cfg->id;
	r->rng = cfg->seed ^ (cfg->id * 0x9e3779b97f4a7c15ull);
	r->role = RAFT_FOLLOWER;
	r->term = boot->hs.term;
	r->vote = boot->hs.vote;
	r->snap = boot->snap;
	r->base_conf = boot->snap.conf;
	raft__log_init(&r->log, boot->snap.index, boot->snap.term);
	for (uint32_t k = 0; k < boot->n_entries; k++) {
		rv = raft__log_append(&r->log, &boot->entries[k]);
		if (rv != 0) {
			raft_free(r);
			return rv;
		}
	}
	r->stable = raft__log_last(&r->log);
	r->applied = boot->applied;
	rv = bootstrap(r, boot);
	if (rv != 0) {
		raft_free(r);
		return rv;
	}
	r->commit = boot->hs.commit;
	r->saved = boot->hs; /* what is durable; bootstrap may differ */
	raft__conf_reload(r);
	raft__reset_timers(r);
	*out = r;
	return 0;
}

void raft_free(struct raft *r)
{
	if (r == NULL)
		return;
	r->in_ready = false;
	raft__out_clear(r);
	free(r->out.msgs);
	free(r->out.ents);
	free(r->out.chunks);
	free(r->out.reads);
	raft__progress_free(r);
	raft__stage_free(r);
	free(r->reads);
	raft__log_free(&r->log);
	free(r);
}

/* splitmix64: small, good enough, and deterministic per seed. */
static uint64_t next_rand(struct raft *r)
{
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

raft_term raft__rand_timeout(struct raft *r)
{
	uint32_t e = r->cfg.election_ticks;
	return e + (uint32_t)(next_rand(r) % e);
}

void raft__reset_timers(struct raft *r)
{
	r->quiesced = false;
	r->quiet_ticks = 0;
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	r->timeout = (uint32_t)raft__rand_timeout(r);
}

void raft_tick(struct raft *r)
{
	assert(!r->in_ready);
	if (++r->idle_ticks >= r->cfg.election_ticks) {
		r->idle_ticks = 0;
		raft__log_shrink(&r->log);
	}
	if (r->role == RAFT_LEADER)
		raft__tick_leader(r);
	else
		raft__tick_election(r);
}

void raft_status(const struct raft *r, struct raft_status *st)
{
	memset(st, 0, sizeof(*st));
	st->id = r->id;
	st->leader = r->leader;
	st->role = r->role;
	st->term = r->term;
	st->vote = r->vote;
	st->commit = r->commit;
	st->applied = r->applied;
	st->first_index = r->log.base + 1;
	st->last_index = raft__log_last(&r->log);
	st->snap_index = r->snap.index;
	st->snap_term = r->snap.term;
	st->transferee = r->transferee;
	/* election_elapsed restarts on every message from the leader (and on a
	 * granted vote, which also means no other leader is known to be live). */
	st->leader_silence = r->role == RAFT_LEADER ? 0 : r->election_elapsed;
	st->quiesced = r->quiesced;
	st->conf = r->conf;
	st->conf_index = r->conf_index;
}

int raft_member_progress(const struct raft *r, raft_id id, raft_index *match, bool *active)
{
	if (r->role != RAFT_LEADER)
		return CM_ENOTLEADER;
	if (raft_conf_kind(&r->conf, id) == 0)
		return CM_EUNKNOWNPEER;
	if (id == r->id) {
		*match = raft__log_last(&r->log);
		*active = true;
		return 0;
	}
	const struct raft_progress *pr = raft__progress_find((struct raft *)r, id);
	if (pr == NULL)
		return CM_EUNKNOWNPEER;
	*match = pr->match;
	*active = pr->recent_active;
	return 0;
}

raft_id raft_leader(const struct raft *r)
{
	return r->leader;
}

bool raft_quiesced(const struct raft *r)
{
	return r->quiesced;
}

raft_index raft_snapshot_index(const struct raft *r)
{
	return r->snap.index;
}

const char *raft_msg_type_name(int type)
{
	static const char *const names[RAFT_MSG_TYPE_COUNT] = {
		[RAFT_MSG_APPEND] = "APPEND",
		[RAFT_MSG_APPEND_RESP] = "APPEND_RESP",
		[RAFT_MSG_VOTE] = "VOTE",
		[RAFT_MSG_VOTE_RESP] = "VOTE_RESP",
		[RAFT_MSG_PREVOTE] = "PREVOTE",
		[RAFT_MSG_PREVOTE_RESP] = "PREVOTE_RESP",
		[RAFT_MSG_HEARTBEAT] = "HEARTBEAT",
		[RAFT_MSG_HEARTBEAT_RESP] = "HEARTBEAT_RESP",
		[RAFT_MSG_SNAP] = "SNAP",
		[RAFT_MSG_SNAP_RESP] = "SNAP_RESP",
		[RAFT_MSG_TIMEOUT_NOW] = "TIMEOUT_NOW",
		[RAFT_MSG_READ_INDEX] = "READ_INDEX",
		[RAFT_MSG_READ_INDEX_RESP] = "READ_INDEX_RESP",
	};
	if (type <= 0 || type >= RAFT_MSG_TYPE_COUNT)
		return "?";
	return names[type];
}

const char *raft_role_name(enum raft_role role)
{
	switch (role) {
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_PRECANDIDATE:
		return "precandidate";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_LEADER:
		return "leader";
	default:
		return "?";
	}
}

void raft__wake(struct raft *r)
{
	if (r->quiesced && r->role == RAFT_LEADER) {
		/* A full CheckQuorum period from now, in which the heartbeats
		 * that resume at once must be answered: no grace, or a leader
		 * woken because its followers died would quiesce again before
		 * it noticed. */
		r->election_elapsed = 0;
		for (uint32_t k = 0; k < r->n_prs; k++)
			r->prs[k].recent_active = false;
	}
	r->quiesced = false;
	r->quiet_ticks = 0;
}

void raft_wake(struct raft *r)
{
	assert(!r->in_ready);
	raft__wake(r);
}
