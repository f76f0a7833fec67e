/* member.c: membership churn: remove a voter, re-add a wiped node as a learner, promote it. */
#include "sim.h"

typedef unsigned long long ull; /* for printf */

/*
 * The cluster alternates between n_slots - 1 and n_slots voters (3 <-> 4 for
 * a 3-node seed, 4 <-> 5 for a 5-node seed), one server at a time as the
 * core requires (Raft thesis §4.1).
 */

raft_id sim_member_random_voter(struct sim *s, const struct raft_conf *c, raft_id except)
{
	raft_id ids[RAFT_MAX_NODES];
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->n && i < RAFT_MAX_NODES; i++)
		if (c->kinds[i] == RAFT_VOTER && c->ids[i] != except)
			ids[n++] = c->ids[i];
	return n ? ids[sim_rng_below(&s->rng, n)] : 0;
}

static const char *op_name(enum raft_change_op op)
{
	return op == RAFT_ADD_LEARNER ? "add-learner" : op == RAFT_PROMOTE ? "promote" : "remove";
}

/* We only ask for changes that make sense for the leader's configuration,
 * so of the documented errors only the "not now" ones are acceptable. */
static bool change_rc_ok(enum raft_change_op op, int rc)
{
	switch (rc) {
	case 0:
	case CM_ECONFPENDING:
	case CM_ETRANSFERRING:
		return true;
	case CM_ELAGGING:
		return op == RAFT_PROMOTE;
	default:
		return false;
	}
}

static void do_change(struct sim *s, struct sim_node *l, enum raft_change_op op, raft_id id)
{
	raft_index idx = 0;
	raft_term term = l->st.term;
	int rc = raft_change(l->r, op, id, &idx);
	sim_trace(s, SIM_EV_CHANGE, l->id, id, (uint8_t)op, (uint32_t)rc, idx, 0, 0, 0);
	if (!change_rc_ok(op, rc))
		sim_fail(s, "api", "n%llu (t%llu, %u members): raft_change(%s, n%llu): %s",
			 (ull)l->id, (ull)term, l->st.conf.n, op_name(op), (ull)id, cm_errname(rc));
	if (rc == 0) {
		s->stats.changes++;
		s->change = (struct sim_pending){true, idx, term, s->now, 0};
		if (op == RAFT_ADD_LEARNER)
			sim_node_by_id(s, id)->was_member = true;
	}
	sim_node_observe(s, l);
}

/* Index of the newest configuration entry in the leader's log (0: none there). */
static raft_index last_conf_index(const struct sim_node *l)
{
	raft_index last = sim_store_last(&l->disk);
	for (raft_index i = last; i > l->disk.snap.index; i--) {
		const struct raft_entry *e = sim_store_entry(&l->disk, i);
		if (!e)
			break;
		if (e->type == RAFT_ENTRY_CONF)
			return i;
	}
	return 0;
}

/* Whether n's newest durable configuration leaves id out. */
static bool forgot(const struct sim_node *n, raft_id id)
{
	raft_index i = last_conf_index(n);
	struct raft_conf c;
	if (!i)
		return !sim_conf_kind(&n->disk.snap.conf, id);
	const struct raft_entry *e = sim_store_entry(&n->disk, i);
	return raft_conf_decode(e->data, e->len, &c) == 0 && !sim_conf_kind(&c, id);
}

/*
 * Re-adding a node that was removed: wipe it first (a fresh id-holder must not
 * carry the old one's log), but only once its removal is committed AND every
 * other node durably knows it. Wiping destroys the node's copy of the
 * configurations it helped commit: a node still on an older configuration
 * that counts the id as a voter would win the wiped node's vote with a stale
 * log and overwrite committed entries (seed 1571 found exactly that).
 */
static void add_spare(struct sim *s, struct sim_node *l, raft_id spare)
{
	const struct sim_conf_at *committed = &s->hist.confs[s->hist.n_confs - 1];
	if (spare == l->id) /* a leader that removed itself, not yet stepped down */
		return;
	if (sim_conf_kind(&committed->conf, spare) || last_conf_index(l) > committed->index)
		return;
	for (uint32_t i = 0; i < s->n_slots; i++)
		if (s->nodes[i].id != spare && !forgot(&s->nodes[i], spare))
			return;
	struct sim_node *n = sim_node_by_id(s, spare);
	if (n->was_member)
		sim_node_wipe(s, n);
	else if (!n->r && !n->restart_at)
		sim_node_start(s, n);
	if (!s->failed)
		do_change(s, l, RAFT_ADD_LEARNER, spare);
}

void sim_member_step(struct sim *s, struct sim_node *l)
{
	struct sim_pending *p = &s->change;
	if (!l)
		return;
	if (p->active) {
		if (s->hist.n < p->index && s->now - p->since < 300)
			return; /* neither committed nor overwritten yet */
		p->active = false;
	}
	const struct raft_conf *c = &l->st.conf;
	for (uint32_t i = 0; i < c->n; i++) {
		if (c->kinds[i] == RAFT_LEARNER) {
			do_change(s, l, RAFT_PROMOTE, c->ids[i]);
			return;
		}
	}
	if (sim_conf_voters(c) >= s->n_slots) {
		do_change(s, l, RAFT_REMOVE, sim_member_random_voter(s, c, 0));
		return;
	}
	for (raft_id id = 1; id <= s->n_slots; id++) {
		if (!sim_conf_kind(c, id)) {
			add_spare(s, l, id);
			return;
		}
	}
}
