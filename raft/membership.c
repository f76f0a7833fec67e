/* membership.c: one-server-at-a-time membership changes (Raft thesis §4.1). */
#include "raft_int.h"

static int conf_add(struct raft_conf *c, raft_id id, uint8_t kind)
{
	if (c->n == RAFT_MAX_NODES)
		return -ENOSPC;
	c->ids[c->n] = id;
	c->kinds[c->n] = kind;
	c->n++;
	return 0;
}

static void conf_del(struct raft_conf *c, raft_id id)
{
	for (uint32_t k = 0; k < c->n; k++) {
		if (c->ids[k] != id)
			continue;
		c->n--;
		c->ids[k] = c->ids[c->n];
		c->kinds[k] = c->kinds[c->n];
		return;
	}
}

static void conf_set(struct raft_conf *c, raft_id id, uint8_t kind)
{
	for (uint32_t k = 0; k < c->n; k++)
		if (c->ids[k] == id)
			c->kinds[k] = kind;
}

/* The next configuration, or an error saying why op cannot apply. */
static int next_conf(struct raft *r, enum raft_change_op op, raft_id id, struct raft_conf *c)
{
	*c = r->conf;
	int kind = raft_conf_kind(c, id);
	switch (op) {
	case RAFT_ADD_LEARNER:
		if (kind != 0)
			return -EEXIST;
		return conf_add(c, id, RAFT_LEARNER);
	case RAFT_PROMOTE: {
		if (kind == RAFT_VOTER)
			return -EEXIST;
		if (kind == 0)
			return CM_EUNKNOWNPEER;
		/* A learner votes only once it can keep up: otherwise adding it
		 * would stall commits until it caught up (thesis §4.2.1). */
		const struct raft_progress *pr = raft__progress_find(r, id);
		if (pr == NULL || pr->match + r->cfg.learner_catchup < raft__log_last(&r->log))
			return CM_ELAGGING;
		conf_set(c, id, RAFT_VOTER);
		return 0;
	}
	case RAFT_REMOVE:
		if (kind == 0)
			return CM_EUNKNOWNPEER;
		if (kind == RAFT_VOTER && raft__conf_voters(c) == 1)
			return -EINVAL;
		conf_del(c, id);
		return 0;
	default:
		return -EINVAL;
	}
}

int raft_change(struct raft *r, enum raft_change_op op, raft_id id, raft_index *index)
{
	assert(!r->in_ready);
	if (r->role != RAFT_LEADER)
		return CM_ENOTLEADER;
	if (r->transferee != 0)
		return CM_ETRANSFERRING;
	if (id == 0)
		return -EINVAL;
	/* One change at a time, and only once an entry of this term is committed:
	 * otherwise a change left by an earlier leader could overlap (the bug in
	 * single-server changes found in 2015, fixed this way). */
	if (r->conf_index > r->commit || raft__log_term(&r->log, r->commit) != r->term)
		return CM_ECONFPENDING;
	struct raft_conf c;
	int rv = next_conf(r, op, id, &c);
	if (rv != 0)
		return rv;
	raft__wake(r);
	uint8_t buf[RAFT_CONF_MAX_BYTES];
	uint32_t len = raft_conf_encode(&c, buf);
	return raft__append_local(r, RAFT_ENTRY_CONF, buf, len, index);
}
