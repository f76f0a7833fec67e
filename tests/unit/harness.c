/* harness.c: an in-memory cluster of Raft groups for scripted scenario tests. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bound on th_stabilize(): a cluster that is still chatting after this many
 * delivery rounds is livelocked, which is a bug worth a failing test. */
#define TH_MAX_ROUNDS 10000
#define TH_MAX_SNAP_BYTES (16u << 20)

static void *xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);

	if (!q)
		abort();
	return q;
}

static void *xmemdup(const void *p, size_t len)
{
	void *q;

	if (!len || !p)
		return NULL;
	q = xrealloc(NULL, len);
	memcpy(q, p, len);
	return q;
}

/* grow - make room for one more element in a (*arr, *n, *cap) vector. */
static void grow(void **arr, uint32_t n, uint32_t *cap, size_t elem)
{
	if (n < *cap)
		return;
	*cap = *cap ? *cap * 2 : 16;
	*arr = xrealloc(*arr, (size_t)*cap * elem);
}

static void applied_copy(struct th_applied *dst, raft_index index, raft_term term,
			 uint8_t type, uint32_t len, const void *data)
{
	dst->index = index;
	dst->term = term;
	dst->type = type;
	dst->len = len;
	dst->data = xmemdup(data, len);
}

static bool applied_equal(const struct th_applied *a, const struct th_applied *b)
{
	if (a->index != b->index || a->term != b->term || a->type != b->type)
		return false;
	if (a->len != b->len)
		return false;
	return a->len == 0 || memcmp(a->data, b->data, a->len) == 0;
}

void th_config(struct raft_config *cfg)
{
	raft_config_default(cfg, 0, 0);
}

struct raft_conf th_conf_voters(const raft_id *ids, uint32_t n)
{
	struct raft_conf conf;

	memset(&conf, 0, sizeof(conf));
	assert_true(n <= RAFT_MAX_NODES);
	conf.n = n;
	for (uint32_t i = 0; i < n; i++) {
		conf.ids[i] = ids[i];
		conf.kinds[i] = RAFT_VOTER;
	}
	return conf;
}

struct th_node *th_node(struct th_cluster *c, raft_id id)
{
	assert_true(id >= 1 && id <= c->n);
	return &c->nodes[id - 1];
}

struct raft *th_raft(struct th_cluster *c, raft_id id)
{
	return th_node(c, id)->r;
}

static void node_boot(struct th_cluster *c, raft_id id, const struct raft_config *tmpl,
		      const struct raft_conf *conf)
{
	struct th_node *nd = &c->nodes[id - 1];
	struct raft_boot boot;
	int rc;

	memset(nd, 0, sizeof(*nd));
	if (tmpl)
		nd->cfg = *tmpl;
	else
		th_config(&nd->cfg);
	nd->id = id;
	nd->cfg.id = id;
	nd->cfg.seed = nd->cfg.seed * 1000 + id;
	nd->snap.conf = *conf;
	nd->log_first = 1;

	memset(&boot, 0, sizeof(boot));
	boot.snap = nd->snap;
	rc = raft_new(&nd->cfg, &boot, &nd->r);
	assert_int_equal(rc, 0);
	assert_non_null(nd->r);
}

struct th_cluster *th_new(uint32_t n, const struct raft_config *tmpl)
{
	struct th_cluster *c;
	raft_id ids[TH_MAX_NODES] = {0};

	assert_true(n >= 1 && n <= TH_MAX_NODES);
	c = xrealloc(NULL, sizeof(*c));
	memset(c, 0, sizeof(*c));
	for (uint32_t i = 0; i < n; i++)
		ids[i] = i + 1;
	struct raft_conf conf = th_conf_voters(ids, n);
	c->n = n;
	for (uint32_t i = 0; i < n; i++)
		node_boot(c, i + 1, tmpl, &conf);
	return c;
}

raft_id th_add_node(struct th_cluster *c, const struct raft_config *tmpl)
{
	struct raft_conf empty;

	assert_true(c->n < TH_MAX_NODES);
	memset(&empty, 0, sizeof(empty));
	c->n++;
	node_boot(c, c->n, tmpl, &empty);
	return c->n;
}

static void applied_free(struct th_applied *a, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(a[i].data);
}

static void qmsg_free(struct th_qmsg *qm)
{
	for (uint32_t i = 0; i < qm->n_ents; i++)
		free(qm->ents[i].data);
	free(qm->ents);
	free(qm->data);
}

void th_free(struct th_cluster *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; i < c->n; i++) {
		struct th_node *nd = &c->nodes[i];

		raft_free(nd->r);
		free(nd->snap_data);
		free(nd->staged);
		applied_free(nd->log, nd->n_log);
		free(nd->log);
		applied_free(nd->applied, nd->n_applied);
		free(nd->applied);
		free(nd->reads);
	}
	for (uint32_t i = 0; i < c->nq; i++)
		qmsg_free(&c->q[i]);
	free(c->q);
	free(c->trace);
	for (raft_index i = 0; i < c->n_chain; i++)
		free(c->chain[i].e.data);
	free(c->chain);
	free(c);
}

int th_teardown(void **state)
{
	th_free(*state);
	*state = NULL;
	return 0;
}

struct raft_status th_status(struct th_cluster *c, raft_id id)
{
	struct raft_status st;

	raft_status(th_raft(c, id), &st);
	return st;
}

enum raft_role th_role(struct th_cluster *c, raft_id id)
{
	return th_status(c, id).role;
}

raft_term th_term(struct th_cluster *c, raft_id id)
{
	return th_status(c, id).term;
}

raft_index th_commit(struct th_cluster *c, raft_id id)
{
	return th_status(c, id).commit;
}

raft_index th_last(struct th_cluster *c, raft_id id)
{
	return th_status(c, id).last_index;
}

/* ---- The disk ---------------------------------------------------------- */

static void stage_chunk(struct th_node *nd, const struct raft_snap_chunk *ch)
{
	/* A chunk of a snapshot no real leader of ours would send (bad-input
	 * tests): a real store would refuse it too; it can never be installed. */
	if (ch->meta.size > TH_MAX_SNAP_BYTES || ch->offset > ch->meta.size ||
	    ch->len > ch->meta.size - ch->offset) {
		nd->n_refused_chunks++;
		return;
	}
	if (ch->offset == 0 && ch->meta.index != nd->staged_index) {
		free(nd->staged);
		nd->staged = xrealloc(NULL, ch->meta.size ? ch->meta.size : 1);
		nd->staged_index = ch->meta.index;
		nd->staged_size = ch->meta.size;
		nd->staged_have = 0;
	}
	if (ch->meta.index != nd->staged_index)
		fail_msg("node %llu: chunk of snapshot %llu at offset %llu, staging %llu",
			 (unsigned long long)nd->id, (unsigned long long)ch->meta.index,
			 (unsigned long long)ch->offset, (unsigned long long)nd->staged_index);
	assert_true(ch->offset <= nd->staged_have);
	assert_true(ch->offset + ch->len <= nd->staged_size);
	if (ch->len) {
		assert_non_null(ch->data);
		memcpy(nd->staged + ch->offset, ch->data, ch->len);
	}
	if (ch->offset + ch->len > nd->staged_have)
		nd->staged_have = ch->offset + ch->len;
}

static void log_truncate_from(struct th_node *nd, raft_index from)
{
	while (nd->n_log && nd->log_first + nd->n_log - 1 >= from) {
		nd->n_log--;
		free(nd->log[nd->n_log].data);
	}
}

static void log_drop_upto(struct th_node *nd, raft_index upto)
{
	uint32_t k = 0;

	while (k < nd->n_log && nd->log[k].index <= upto)
		free(nd->log[k++].data);
	memmove(nd->log, nd->log + k, (size_t)(nd->n_log - k) * sizeof(*nd->log));
	nd->n_log -= k;
	if (upto + 1 > nd->log_first)
		nd->log_first = upto + 1;
}

static void install_snapshot(struct th_node *nd, const struct raft_ready *rd)
{
	if (nd->staged_index != rd->snap.index || nd->staged_have != rd->snap.size)
		fail_msg("node %llu installs snapshot %llu (%llu bytes), staged %llu (%llu/%llu)",
			 (unsigned long long)nd->id, (unsigned long long)rd->snap.index,
			 (unsigned long long)rd->snap.size,
			 (unsigned long long)nd->staged_index,
			 (unsigned long long)nd->staged_have,
			 (unsigned long long)nd->staged_size);
	free(nd->snap_data);
	nd->snap_data = nd->staged;
	nd->snap = rd->snap;
	nd->staged = NULL;
	nd->staged_index = 0;
	nd->staged_size = 0;
	nd->staged_have = 0;
	if (rd->log_reset) {
		log_truncate_from(nd, 0);
		nd->log_first = rd->snap.index + 1;
	} else {
		log_drop_upto(nd, rd->snap.index);
	}
	nd->n_installed++;
	nd->installed = rd->snap;
	nd->installed_log_reset = rd->log_reset;
}

static void persist_entries(struct th_node *nd, const struct raft_entry *e, uint32_t n)
{
	raft_index first = e[0].index;
	raft_index last = nd->n_log ? nd->log_first + nd->n_log - 1 : nd->snap.index;

	for (uint32_t i = 1; i < n; i++)
		assert_int_equal(e[i].index, first + i);
	if (first > last + 1 || first <= nd->snap.index)
		fail_msg("node %llu persists entries from %llu: log ends at %llu, snapshot %llu",
			 (unsigned long long)nd->id, (unsigned long long)first,
			 (unsigned long long)last, (unsigned long long)nd->snap.index);
	log_truncate_from(nd, first);
	if (!nd->n_log)
		nd->log_first = first;
	for (uint32_t i = 0; i < n; i++) {
		grow((void **)&nd->log, nd->n_log, &nd->cap_log, sizeof(*nd->log));
		applied_copy(&nd->log[nd->n_log++], e[i].index, e[i].term, e[i].type, e[i].len,
			     e[i].data);
	}
}

static void persist_hs(struct th_node *nd, const struct raft_hard_state *hs)
{
	if (hs->term < nd->hs.term)
		fail_msg("node %llu: term went back from %llu to %llu", (unsigned long long)nd->id,
			 (unsigned long long)nd->hs.term, (unsigned long long)hs->term);
	if (hs->term == nd->hs.term && nd->hs.vote && hs->vote != nd->hs.vote)
		fail_msg("node %llu: voted for %llu then %llu in term %llu",
			 (unsigned long long)nd->id, (unsigned long long)nd->hs.vote,
			 (unsigned long long)hs->vote, (unsigned long long)hs->term);
	if (hs->commit < nd->hs.commit)
		fail_msg("node %llu: commit went back from %llu to %llu",
			 (unsigned long long)nd->id, (unsigned long long)nd->hs.commit,
			 (unsigned long long)hs->commit);
	nd->hs = *hs;
}

/* ---- The state machine ------------------------------------------------- */

static void chain_check(struct th_cluster *c, raft_id id, const struct th_applied *e)
{
	if (e->index >= c->n_chain) {
		raft_index n = c->n_chain ? c->n_chain : 64;

		while (n <= e->index)
			n *= 2;
		c->chain = xrealloc(c->chain, (size_t)n * sizeof(*c->chain));
		memset(c->chain + c->n_chain, 0, (size_t)(n - c->n_chain) * sizeof(*c->chain));
		c->n_chain = n;
	}
	struct th_chain *ch = &c->chain[e->index];

	if (!ch->set) {
		ch->set = true;
		applied_copy(&ch->e, e->index, e->term, e->type, e->len, e->data);
		return;
	}
	if (!applied_equal(&ch->e, e))
		fail_msg("State Machine Safety: node %llu applied index %llu term %llu type %u, "
			 "another node applied term %llu type %u there",
			 (unsigned long long)id, (unsigned long long)e->index,
			 (unsigned long long)e->term, e->type, (unsigned long long)ch->e.term,
			 ch->e.type);
}

static void sm_push(struct th_cluster *c, struct th_node *nd, raft_index index, raft_term term,
		    uint8_t type, uint32_t len, const void *data)
{
	grow((void **)&nd->applied, nd->n_applied, &nd->cap_applied, sizeof(*nd->applied));
	applied_copy(&nd->applied[nd->n_applied], index, term, type, len, data);
	chain_check(c, nd->id, &nd->applied[nd->n_applied]);
	nd->n_applied++;
	nd->applied_index = index;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

#define TH_REC_HDR 21 /* index 8, term 8, type 1, len 4 */

/* The snapshot format: one record per applied entry, in order. */
static uint8_t *sm_encode(const struct th_node *nd, raft_index upto, uint64_t *size)
{
	uint64_t n = 0;
	uint8_t *buf, *p;

	for (uint32_t i = 0; i < nd->n_applied && nd->applied[i].index <= upto; i++)
		n += TH_REC_HDR + nd->applied[i].len;
	buf = xrealloc(NULL, n ? n : 1);
	p = buf;
	for (uint32_t i = 0; i < nd->n_applied && nd->applied[i].index <= upto; i++) {
		const struct th_applied *a = &nd->applied[i];

		put_u64(p, a->index);
		put_u64(p + 8, a->term);
		p[16] = a->type;
		p[17] = (uint8_t)a->len;
		p[18] = (uint8_t)(a->len >> 8);
		p[19] = (uint8_t)(a->len >> 16);
		p[20] = (uint8_t)(a->len >> 24);
		if (a->len)
			memcpy(p + TH_REC_HDR, a->data, a->len);
		p += TH_REC_HDR + a->len;
	}
	*size = n;
	return buf;
}

static void sm_restore(struct th_cluster *c, struct th_node *nd)
{
	const uint8_t *p = nd->snap_data;
	uint64_t left = nd->snap.size;

	applied_free(nd->applied, nd->n_applied);
	nd->n_applied = 0;
	nd->applied_index = 0;
	while (left) {
		assert_true(left >= TH_REC_HDR);
		uint32_t len = (uint32_t)p[17] | (uint32_t)p[18] << 8 | (uint32_t)p[19] << 16 |
			       (uint32_t)p[20] << 24;
		assert_true(left >= TH_REC_HDR + (uint64_t)len);
		assert_int_equal(get_u64(p), nd->applied_index + 1);
		sm_push(c, nd, get_u64(p), get_u64(p + 8), p[16], len, p + TH_REC_HDR);
		p += TH_REC_HDR + len;
		left -= TH_REC_HDR + len;
	}
	assert_int_equal(nd->applied_index, nd->snap.index);
}

static void sm_apply(struct th_cluster *c, struct th_node *nd, const struct raft_entry *e)
{
	if (e->index != nd->applied_index + 1)
		fail_msg("node %llu applies index %llu after %llu", (unsigned long long)nd->id,
			 (unsigned long long)e->index, (unsigned long long)nd->applied_index);
	/* A node only commits what it holds: the entry must be on its disk. */
	if (e->index >= nd->log_first && e->index < nd->log_first + nd->n_log) {
		const struct th_applied *l = &nd->log[e->index - nd->log_first];

		if (l->term != e->term)
			fail_msg("node %llu applies index %llu term %llu, its log has term %llu",
				 (unsigned long long)nd->id, (unsigned long long)e->index,
				 (unsigned long long)e->term, (unsigned long long)l->term);
	} else if (e->index > nd->snap.index) {
		fail_msg("node %llu applies index %llu which it never persisted",
			 (unsigned long long)nd->id, (unsigned long long)e->index);
	}
	if (e->len)
		assert_non_null(e->data);
	sm_push(c, nd, e->index, e->term, e->type, e->len, e->data);
}

/* ---- Messages ---------------------------------------------------------- */

static void trace_push(struct th_cluster *c, const struct raft_msg *m)
{
	struct th_trace *t;

	grow((void **)&c->trace, c->n_trace, &c->cap_trace, sizeof(*c->trace));
	t = &c->trace[c->n_trace++];
	t->type = m->type;
	t->reject = m->reject;
	t->force = m->force;
	t->from = m->from;
	t->to = m->to;
	t->term = m->term;
	t->index = m->index;
	t->log_term = m->log_term;
	t->commit = m->commit;
	t->hint = m->hint;
	t->ctx = m->ctx;
	t->n_entries = m->n_entries;
	t->entry_bytes = 0;
	for (uint32_t i = 0; m->entries && i < m->n_entries; i++)
		t->entry_bytes += m->entries[i].len;
	t->last_entry_term = m->n_entries && m->entries ? m->entries[m->n_entries - 1].term : 0;
	t->snap_index = m->snap.index;
	t->offset = m->offset;
	t->len = m->len;
	t->last = m->last;
}

static raft_index disk_last(const struct th_node *nd)
{
	return nd->n_log ? nd->log_first + nd->n_log - 1 : nd->snap.index;
}

/* What a message promises must already be on this batch's disk. */
static void check_durable(const struct th_node *nd, const struct raft_msg *m)
{
	if (m->type == RAFT_MSG_APPEND_RESP && !m->reject && m->index > disk_last(nd))
		fail_msg("node %llu acks index %llu but its disk ends at %llu",
			 (unsigned long long)nd->id, (unsigned long long)m->index,
			 (unsigned long long)disk_last(nd));
	if ((m->type == RAFT_MSG_VOTE_RESP && !m->reject) || m->type == RAFT_MSG_VOTE) {
		raft_id voted_for = m->type == RAFT_MSG_VOTE ? nd->id : m->to;

		if (nd->hs.term != m->term || nd->hs.vote != voted_for)
			fail_msg("node %llu sends %s in term %llu before its vote is on disk "
				 "(term %llu, vote %llu)",
				 (unsigned long long)nd->id, raft_msg_type_name(m->type),
				 (unsigned long long)m->term, (unsigned long long)nd->hs.term,
				 (unsigned long long)nd->hs.vote);
	}
}

static void enqueue(struct th_cluster *c, struct th_node *nd, const struct raft_msg *m)
{
	struct th_qmsg qm;

	if (m->from != nd->id || m->to == nd->id || m->to == 0)
		fail_msg("node %llu emitted %s from %llu to %llu", (unsigned long long)nd->id,
			 raft_msg_type_name(m->type), (unsigned long long)m->from,
			 (unsigned long long)m->to);
	check_durable(nd, m);
	trace_push(c, m);
	memset(&qm, 0, sizeof(qm));
	qm.m = *m;
	if (m->n_entries) {
		assert_non_null(m->entries);
		qm.ents = xrealloc(NULL, (size_t)m->n_entries * sizeof(*qm.ents));
		for (uint32_t i = 0; i < m->n_entries; i++) {
			qm.ents[i] = m->entries[i];
			qm.ents[i].data = xmemdup(m->entries[i].data, m->entries[i].len);
		}
		qm.n_ents = m->n_entries;
	}
	qm.m.entries = qm.ents;
	qm.m.data = NULL;
	if (m->type == RAFT_MSG_SNAP) {
		/* The caller attaches the bytes, or drops the message if the
		 * snapshot is gone (raft.h, SNAP). */
		if (m->snap.index != nd->snap.index || m->snap.size != nd->snap.size) {
			c->snap_msgs_dropped++;
			free(qm.ents);
			return;
		}
		assert_true(m->offset + m->len <= nd->snap.size);
		qm.data = xmemdup(nd->snap_data + m->offset, m->len);
		qm.m.data = qm.data;
	}
	grow((void **)&c->q, c->nq, &c->capq, sizeof(*c->q));
	c->q[c->nq++] = qm;
}

/* ---- Batches ----------------------------------------------------------- */

/* Leader Completeness: a new leader holds every entry anyone applied. */
static void leader_completeness(struct th_cluster *c, raft_id id)
{
	struct th_node *nd = th_node(c, id);

	for (raft_index i = nd->snap.index + 1; i < c->n_chain; i++) {
		if (!c->chain[i].set)
			continue;
		if (th_log_term(c, id, i) != c->chain[i].e.term)
			fail_msg("Leader Completeness: node %llu leads without committed entry "
				 "%llu (term %llu)",
				 (unsigned long long)id, (unsigned long long)i,
				 (unsigned long long)c->chain[i].e.term);
	}
}

static void election_safety(struct th_cluster *c, raft_id id)
{
	struct raft_status st = th_status(c, id);
	uint32_t n = c->n_leaders < 256 ? c->n_leaders : 256;

	if (st.role != RAFT_LEADER)
		return;
	for (uint32_t i = 0; i < n; i++) {
		if (c->leaders[i].term != st.term)
			continue;
		if (c->leaders[i].id != id)
			fail_msg("Election Safety: nodes %llu and %llu both lead term %llu",
				 (unsigned long long)c->leaders[i].id, (unsigned long long)id,
				 (unsigned long long)st.term);
		return;
	}
	c->leaders[c->n_leaders % 256].term = st.term;
	c->leaders[c->n_leaders % 256].id = id;
	c->n_leaders++;
	leader_completeness(c, id);
}

/*
 * Log Matching: if two disks hold an entry with the same index and term,
 * they hold the same entries up to it. Walk each pair's overlap downwards.
 */
static void log_matching_pair(const struct th_node *a, const struct th_node *b)
{
	raft_index lo = a->log_first > b->log_first ? a->log_first : b->log_first;
	raft_index hi_a = a->log_first + a->n_log, hi_b = b->log_first + b->n_log;
	raft_index hi = hi_a < hi_b ? hi_a : hi_b;
	bool same = false;

	for (raft_index i = hi; i-- > lo;) {
		const struct th_applied *ea = &a->log[i - a->log_first];
		const struct th_applied *eb = &b->log[i - b->log_first];

		if (ea->term == eb->term && !applied_equal(ea, eb))
			fail_msg("Log Matching: nodes %llu and %llu hold different entries "
				 "at index %llu, term %llu",
				 (unsigned long long)a->id, (unsigned long long)b->id,
				 (unsigned long long)i, (unsigned long long)ea->term);
		if (same && ea->term != eb->term)
			fail_msg("Log Matching: nodes %llu and %llu agree at a later index "
				 "but not at %llu", (unsigned long long)a->id,
				 (unsigned long long)b->id, (unsigned long long)i);
		same = same || ea->term == eb->term;
	}
}

static void log_matching(const struct th_cluster *c)
{
	for (uint32_t i = 0; i < c->n; i++)
		for (uint32_t k = i + 1; k < c->n; k++)
			log_matching_pair(&c->nodes[i], &c->nodes[k]);
}

static void handle_ready(struct th_cluster *c, struct th_node *nd, const struct raft_ready *rd)
{
	for (uint32_t i = 0; i < rd->n_chunks; i++)
		stage_chunk(nd, &rd->chunks[i]);
	if (rd->snap_installed)
		install_snapshot(nd, rd);
	if (rd->n_entries) {
		assert_non_null(rd->entries);
		persist_entries(nd, rd->entries, rd->n_entries);
	}
	if (rd->hs_changed)
		persist_hs(nd, &rd->hs);
	for (uint32_t i = 0; i < rd->n_msgs; i++)
		enqueue(c, nd, &rd->msgs[i]);
	if (rd->snap_installed)
		sm_restore(c, nd);
	for (uint32_t i = 0; i < rd->n_committed; i++)
		sm_apply(c, nd, &rd->committed[i]);
	for (uint32_t i = 0; i < rd->n_reads; i++) {
		grow((void **)&nd->reads, nd->n_reads, &nd->cap_reads, sizeof(*nd->reads));
		nd->reads[nd->n_reads].ctx = rd->reads[i].ctx;
		nd->reads[nd->n_reads].index = rd->reads[i].index;
		nd->reads[nd->n_reads].applied_then = nd->applied_index;
		nd->n_reads++;
	}
	nd->leader = rd->leader;
	nd->role = rd->role;
	nd->n_batches++;
	if (rd->n_msgs > nd->max_batch_msgs)
		nd->max_batch_msgs = rd->n_msgs;
	if (rd->n_committed > nd->max_batch_committed)
		nd->max_batch_committed = rd->n_committed;
}

void th_process(struct th_cluster *c, raft_id id)
{
	struct th_node *nd = th_node(c, id);
	uint32_t guard = 0;

	while (raft_has_ready(nd->r)) {
		struct raft_ready rd;

		if (++guard > 1000)
			fail_msg("node %llu: raft_has_ready() never turns false",
				 (unsigned long long)id);
		memset(&rd, 0, sizeof(rd));
		raft_ready(nd->r, &rd);
		handle_ready(c, nd, &rd);
		raft_advance(nd->r);
		election_safety(c, id);
	}
}

void th_process_all(struct th_cluster *c)
{
	for (raft_id id = 1; id <= c->n; id++)
		th_process(c, id);
}

void th_tick(struct th_cluster *c, raft_id id, uint32_t ticks)
{
	for (uint32_t i = 0; i < ticks; i++) {
		raft_tick(th_raft(c, id));
		th_process(c, id);
	}
}

void th_tick_alone(struct th_cluster *c, raft_id id, uint32_t ticks)
{
	for (uint32_t i = 0; i < ticks; i++) {
		th_tick(c, id, 1);
		th_drop(c, id, TH_ANY, TH_ANY);
	}
}

void th_tick_all(struct th_cluster *c, uint32_t ticks)
{
	for (uint32_t i = 0; i < ticks; i++) {
		for (raft_id id = 1; id <= c->n; id++)
			if (!th_node(c, id)->down)
				th_tick(c, id, 1);
		th_stabilize(c);
	}
}

static bool match(const struct raft_msg *m, raft_id from, raft_id to, int type)
{
	return (from == TH_ANY || m->from == from) && (to == TH_ANY || m->to == to) &&
	       (type == TH_ANY || m->type == type);
}

static bool reachable(struct th_cluster *c, const struct raft_msg *m)
{
	if (m->to < 1 || m->to > c->n || c->nodes[m->to - 1].down)
		return false;
	if (m->from <= TH_MAX_NODES && c->cut[m->from][m->to])
		return false;
	return true;
}

/* take - move the matching queued messages into *out (caller frees). */
static uint32_t take(struct th_cluster *c, raft_id from, raft_id to, int type,
		     struct th_qmsg **out)
{
	uint32_t n = 0, k = 0;
	struct th_qmsg *sel = xrealloc(NULL, (size_t)(c->nq ? c->nq : 1) * sizeof(*sel));

	for (uint32_t i = 0; i < c->nq; i++) {
		if (match(&c->q[i].m, from, to, type))
			sel[n++] = c->q[i];
		else
			c->q[k++] = c->q[i];
	}
	c->nq = k;
	*out = sel;
	return n;
}

int th_step(struct th_cluster *c, raft_id to, const struct raft_msg *m)
{
	int rc = raft_step(th_raft(c, to), m);

	th_process(c, to);
	return rc;
}

/* Step one message a correct core sent: it must never be called malformed. */
static void deliver_one(struct th_cluster *c, const struct raft_msg *m)
{
	int rc;

	if (!reachable(c, m))
		return;
	rc = th_step(c, m->to, m);
	if (rc != 0)
		fail_msg("node %llu rejected %s from %llu (term %llu, index %llu): %d",
			 (unsigned long long)m->to, raft_msg_type_name(m->type),
			 (unsigned long long)m->from, (unsigned long long)m->term,
			 (unsigned long long)m->index, rc);
}

uint32_t th_deliver(struct th_cluster *c, raft_id from, raft_id to, int type)
{
	struct th_qmsg *sel;
	uint32_t n = take(c, from, to, type, &sel);

	for (uint32_t i = 0; i < n; i++) {
		deliver_one(c, &sel[i].m);
		qmsg_free(&sel[i]);
	}
	free(sel);
	return n;
}

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

uint32_t th_deliver_chaos(struct th_cluster *c, uint64_t *rng, uint32_t drop_pct,
			  uint32_t dup_pct)
{
	struct th_qmsg *sel;
	uint32_t n = take(c, TH_ANY, TH_ANY, TH_ANY, &sel);

	assert_int_not_equal(*rng, 0);
	for (uint32_t i = n; i > 1; i--) { /* Fisher-Yates: any order */
		uint32_t k = (uint32_t)(xorshift(rng) % i);
		struct th_qmsg t = sel[i - 1];

		sel[i - 1] = sel[k];
		sel[k] = t;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (xorshift(rng) % 100 >= drop_pct) {
			deliver_one(c, &sel[i].m);
			if (xorshift(rng) % 100 < dup_pct)
				deliver_one(c, &sel[i].m);
		}
		qmsg_free(&sel[i]);
	}
	free(sel);
	return n;
}

uint32_t th_drop(struct th_cluster *c, raft_id from, raft_id to, int type)
{
	struct th_qmsg *sel;
	uint32_t n = take(c, from, to, type, &sel);

	for (uint32_t i = 0; i < n; i++)
		qmsg_free(&sel[i]);
	free(sel);
	return n;
}

uint32_t th_count(const struct th_cluster *c, raft_id from, raft_id to, int type)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < c->nq; i++)
		if (match(&c->q[i].m, from, to, type))
			n++;
	return n;
}

struct raft_msg *th_msg(struct th_cluster *c, raft_id from, raft_id to, int type, uint32_t nth)
{
	for (uint32_t i = 0; i < c->nq; i++)
		if (match(&c->q[i].m, from, to, type) && nth-- == 0)
			return &c->q[i].m;
	return NULL;
}

void th_stabilize(struct th_cluster *c)
{
	for (uint32_t round = 0;; round++) {
		if (round > TH_MAX_ROUNDS)
			fail_msg("th_stabilize: still %u messages after %u rounds", c->nq, round);
		for (raft_id id = 1; id <= c->n; id++)
			if (!th_node(c, id)->down)
				th_process(c, id);
		if (!c->nq) {
			log_matching(c);
			return;
		}
		th_deliver(c, TH_ANY, TH_ANY, TH_ANY);
	}
}

uint32_t th_trace_count(const struct th_cluster *c, raft_id from, raft_id to, int type,
			int reject)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < c->n_trace; i++) {
		const struct th_trace *t = &c->trace[i];

		if ((from == TH_ANY || t->from == from) && (to == TH_ANY || t->to == to) &&
		    (type == TH_ANY || t->type == type) &&
		    (reject < 0 || t->reject == (reject != 0)))
			n++;
	}
	return n;
}

void th_trace_clear(struct th_cluster *c)
{
	c->n_trace = 0;
}

/* ---- Faults ------------------------------------------------------------ */

void th_cut(struct th_cluster *c, raft_id a, raft_id b)
{
	assert_true(a <= TH_MAX_NODES && b <= TH_MAX_NODES);
	c->cut[a][b] = true;
	c->cut[b][a] = true;
}

void th_isolate(struct th_cluster *c, raft_id id)
{
	for (raft_id o = 1; o <= TH_MAX_NODES; o++)
		if (o != id)
			th_cut(c, id, o);
}

void th_heal(struct th_cluster *c)
{
	memset(c->cut, 0, sizeof(c->cut));
}

void th_down(struct th_cluster *c, raft_id id)
{
	th_node(c, id)->down = true;
}

void th_up(struct th_cluster *c, raft_id id)
{
	th_node(c, id)->down = false;
}

void th_restart(struct th_cluster *c, raft_id id)
{
	struct th_node *nd = th_node(c, id);
	struct raft_entry *ents;
	struct raft_boot boot;
	uint32_t n = 0;
	int rc;

	raft_free(nd->r);
	nd->r = NULL;
	ents = xrealloc(NULL, (size_t)(nd->n_log ? nd->n_log : 1) * sizeof(*ents));
	for (uint32_t i = 0; i < nd->n_log; i++) {
		const struct th_applied *l = &nd->log[i];

		if (l->index <= nd->snap.index)
			continue;
		ents[n].index = l->index;
		ents[n].term = l->term;
		ents[n].type = l->type;
		ents[n].len = l->len;
		ents[n].data = l->data;
		n++;
	}
	memset(&boot, 0, sizeof(boot));
	boot.hs = nd->hs;
	boot.snap = nd->snap;
	boot.entries = ents;
	boot.n_entries = n;
	boot.applied = nd->applied_index;
	rc = raft_new(&nd->cfg, &boot, &nd->r);
	free(ents);
	if (rc != 0)
		fail_msg("node %llu does not restart from its disk: %d",
			 (unsigned long long)id, rc);
	nd->leader = 0;
	nd->role = RAFT_FOLLOWER;
	th_process(c, id);
}

/* ---- Conveniences ------------------------------------------------------ */

raft_id th_leader(struct th_cluster *c)
{
	raft_id best = 0;
	raft_term best_term = 0;

	for (raft_id id = 1; id <= c->n; id++) {
		struct raft_status st;

		if (th_node(c, id)->down)
			continue;
		st = th_status(c, id);
		if (st.role == RAFT_LEADER && (best == 0 || st.term > best_term)) {
			best = id;
			best_term = st.term;
		}
	}
	return best;
}

uint32_t th_count_role(struct th_cluster *c, enum raft_role role)
{
	uint32_t n = 0;

	for (raft_id id = 1; id <= c->n; id++)
		if (!th_node(c, id)->down && th_role(c, id) == role)
			n++;
	return n;
}

raft_id th_elect(struct th_cluster *c, raft_id id)
{
	struct raft_status st;

	assert_int_equal(raft_campaign(th_raft(c, id)), 0);
	th_process(c, id);
	th_stabilize(c);
	st = th_status(c, id);
	assert_int_equal(st.role, RAFT_LEADER);
	assert_int_equal(st.leader, id);
	/* The NOOP of the new term is committed once a quorum has it. */
	assert_true(st.commit >= 1);
	assert_int_equal(th_node(c, id)->applied_index, st.commit);
	return id;
}

raft_id th_wait_leader(struct th_cluster *c, uint32_t max_ticks)
{
	for (uint32_t t = 0; t < max_ticks; t++) {
		raft_id l;

		th_tick_all(c, 1);
		l = th_leader(c);
		if (l)
			return l;
	}
	return 0;
}

int th_propose(struct th_cluster *c, raft_id id, const char *s)
{
	int rc = raft_propose(th_raft(c, id), s, (uint32_t)strlen(s), NULL);

	th_process(c, id);
	return rc;
}

raft_index th_applied_index_of(const struct th_cluster *c, raft_id id, const char *s)
{
	const struct th_node *nd = &c->nodes[id - 1];
	size_t len = strlen(s);

	assert_true(id >= 1 && id <= c->n);
	for (uint32_t i = 0; i < nd->n_applied; i++) {
		const struct th_applied *a = &nd->applied[i];

		if (a->type == RAFT_ENTRY_NORMAL && a->len == len && memcmp(a->data, s, len) == 0)
			return a->index;
	}
	return 0;
}

bool th_applied_has(const struct th_cluster *c, raft_id id, const char *s)
{
	return th_applied_index_of(c, id, s) != 0;
}

raft_index th_applied(const struct th_cluster *c, raft_id id)
{
	assert_true(id >= 1 && id <= c->n);
	return c->nodes[id - 1].applied_index;
}

uint32_t th_applied_normal(const struct th_cluster *c, raft_id id)
{
	const struct th_node *nd = &c->nodes[id - 1];
	uint32_t n = 0;

	assert_true(id >= 1 && id <= c->n);
	for (uint32_t i = 0; i < nd->n_applied; i++)
		if (nd->applied[i].type == RAFT_ENTRY_NORMAL)
			n++;
	return n;
}

int th_snapshot(struct th_cluster *c, raft_id id, raft_index index, uint64_t keep)
{
	struct th_node *nd = th_node(c, id);
	struct raft_snap_meta meta;
	uint64_t size;
	uint8_t *data = sm_encode(nd, index, &size);
	int rc;

	memset(&meta, 0, sizeof(meta));
	rc = raft_snapshot_taken(nd->r, index, size, keep, &meta);
	if (rc != 0) {
		free(data);
		return rc;
	}
	assert_int_equal(meta.index, index);
	assert_int_equal(meta.size, size);
	free(nd->snap_data);
	nd->snap_data = data;
	nd->snap = meta;
	if (index > keep)
		log_drop_upto(nd, index - keep);
	th_process(c, id);
	return 0;
}

raft_term th_log_term(struct th_cluster *c, raft_id id, raft_index index)
{
	struct th_node *nd = th_node(c, id);

	if (index >= nd->log_first && index < nd->log_first + nd->n_log)
		return nd->log[index - nd->log_first].term;
	if (index != 0 && index == nd->snap.index)
		return nd->snap.term;
	return 0;
}
