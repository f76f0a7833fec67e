/* snapshot.c: compaction, and snapshots sent in chunks to lagging followers. */
#include "raft_int.h"

int raft_snapshot_taken(struct raft *r, raft_index index, uint64_t size, uint64_t keep,
			struct raft_snap_meta *meta)
{
	assert(!r->in_ready);
	/* Compaction keeps a tail behind the snapshot, never more than it. */
	assert(r->log.base <= r->snap.index);
	if (index > r->applied)
		return -EINVAL;
	/* A snapshot at or past index is recorded already: most often one from
	 * the leader, installed by raft_step() before the caller took the
	 * batch that tells it so. Nothing to do, and not an error. */
	if (index <= r->snap.index)
		return -EALREADY;
	struct raft_snap_meta s = {
		.index = index,
		.term = raft__log_term(&r->log, index),
		.size = size,
	};
	raft__conf_at(r, index, &s.conf);
	assert(s.term != 0);
	r->snap = s;
	raft_index c = index > keep ? index - keep : 0;
	if (c > r->log.base) {
		/* The configuration as of the new base must survive compaction. */
		raft__conf_at(r, c, &r->base_conf);
		raft__log_compact(&r->log, c);
	}
	if (meta != NULL)
		*meta = s;
	return 0;
}

void raft__send_snap_chunk(struct raft *r, struct raft_progress *pr)
{
	assert(r->snap.index > 0);
	if (pr->snap_index != r->snap.index) {
		pr->snap_index = r->snap.index; /* a newer one replaces it */
		pr->snap_offset = 0;
	}
	uint64_t left = r->snap.size - pr->snap_offset;
	uint32_t len = left < r->cfg.snap_chunk_bytes ? (uint32_t)left : r->cfg.snap_chunk_bytes;
	struct raft_msg m = {
		.type = RAFT_MSG_SNAP,
		.to = pr->id,
		.snap = r->snap,
		.offset = pr->snap_offset,
		.len = len,
		.last = len == left,
	};
	raft__send(r, &m);
	pr->snap_wait = 0;
}

int raft__recv_snap_resp(struct raft *r, const struct raft_msg *m)
{
	struct raft_progress *pr = r->role == RAFT_LEADER ? raft__progress_find(r, m->from) : NULL;
	if (pr == NULL)
		return 0;
	pr->recent_active = true;
	if (m->last) {
		if (m->index > raft__log_last(&r->log))
			return -EBADMSG;
		if (m->index > pr->match)
			pr->match = m->index;
		if (pr->state == PR_SNAPSHOT)
			raft__progress_probe(pr, pr->match + 1);
		raft__maybe_commit(r);
		r->need_flush = true;
		return 0;
	}
	if (pr->state != PR_SNAPSHOT || m->index != pr->snap_index)
		return 0;
	if (m->reject) {
		pr->snap_offset = 0; /* the follower lost its staging: start over */
		raft__send_snap_chunk(r, pr);
	} else if (m->offset > pr->snap_offset && m->offset <= r->snap.size &&
		   pr->snap_index == r->snap.index) {
		pr->snap_offset = m->offset;
		raft__send_snap_chunk(r, pr);
	}
	return 0;
}

void raft__stage_free(struct raft *r)
{
	free(r->stage);
	r->stage = NULL;
}

static bool same_snap(const struct raft_snap_meta *a, const struct raft_snap_meta *b)
{
	return a->index == b->index && a->term == b->term && a->size == b->size;
}

/* The last chunk is in: the snapshot replaces the log up to its index. */
static void install(struct raft *r, const struct raft_snap_meta *s)
{
	assert(s->index > r->commit);
	if (raft__log_term(&r->log, s->index) == s->term && s->index > r->log.base) {
		raft__log_compact(&r->log, s->index); /* keep what follows (§7) */
	} else {
		raft__log_reset(&r->log, s->index, s->term);
		r->log_reset = true;
		r->stable = s->index;
	}
	if (r->stable < s->index)
		r->stable = s->index;
	r->snap = *s;
	r->base_conf = s->conf;
	raft__conf_reload(r);
	r->commit = s->index;
	r->applied = s->index;
	r->snap_installed = true;
}

/* Store the chunk if it is the next one; returns the offset we now expect. */
static int take_chunk(struct raft *r, const struct raft_msg *m, struct raft_msg *resp)
{
	struct raft_stage *st = r->stage;
	if (m->offset == 0 && (st == NULL || !same_snap(&st->meta, &m->snap) || st->offset == 0)) {
		if (st == NULL && (st = r->stage = malloc(sizeof(*st))) == NULL)
			return -ENOMEM;
		st->meta = m->snap;
		st->offset = 0;
	}
	if (st == NULL || !same_snap(&st->meta, &m->snap)) {
		resp->reject = true; /* mid-way into one we do not have */
		return 0;
	}
	if (m->offset == st->offset) {
		int rv = raft__out_chunk(r, m);
		if (rv != 0)
			return rv;
		st->offset += m->len;
	}
	resp->offset = st->offset;
	if (st->offset == st->meta.size) {
		install(r, &st->meta);
		raft__stage_free(r);
		resp->last = true;
	}
	return 0;
}

int raft__recv_snap(struct raft *r, const struct raft_msg *m)
{
	if (r->role == RAFT_LEADER)
		return -EBADMSG;
	if (r->role != RAFT_FOLLOWER)
		raft__become_follower(r, m->term, m->from);
	r->leader = m->from;
	r->election_elapsed = 0;
	r->quiesced = false;
	/* One install per batch, and no chunk after it: the caller writes the
	 * batch's chunks before installing, so a later chunk of another
	 * snapshot would overwrite the staging about to be installed. */
	if (r->snap_installed)
		return 0;
	struct raft_msg resp = {.type = RAFT_MSG_SNAP_RESP, .to = m->from, .index = m->snap.index};
	if (m->snap.index <= r->commit) {
		resp.last = true; /* we already have all of it */
		raft__send(r, &resp);
		return 0;
	}
	int rv = take_chunk(r, m, &resp);
	if (rv == 0)
		raft__send(r, &resp);
	return rv;
}
