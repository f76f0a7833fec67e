/*
 * raft_counter.c: the smallest complete use of the Raft core.
 *
 * Three replicas of a counter live in one process and talk through an
 * in-memory mailbox. The loop is the one every Confman server runs:
 * tick, step messages, take a batch, persist it, send, apply, advance.
 * "Persisting" here is a no-op because nothing outlives the process.
 *
 *   build/examples/raft-counter [increments]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft.h"

#define NODES 3
#define MAILBOX 4096

struct replica {
	struct raft *raft;
	long counter; /* the state machine */
};

/* A message in the mailbox owns copies of what its batch lent it. */
struct letter {
	struct raft_msg msg;
	struct raft_entry *entries; /* owned */
};

static struct replica replicas[NODES + 1];
static struct letter mailbox[MAILBOX];
static size_t n_letters;

static void post(const struct raft_msg *m)
{
	if (n_letters == MAILBOX || m->type == RAFT_MSG_SNAP)
		return; /* a lost message: Raft copes (no snapshots here) */
	struct letter *l = &mailbox[n_letters++];
	l->msg = *m;
	l->entries = NULL;
	if (m->n_entries > 0) {
		l->entries = calloc(m->n_entries, sizeof(*l->entries));
		for (uint32_t k = 0; l->entries && k < m->n_entries; k++) {
			l->entries[k] = m->entries[k];
			l->entries[k].data = malloc(m->entries[k].len + 1);
			if (m->entries[k].len > 0)
				memcpy(l->entries[k].data, m->entries[k].data, m->entries[k].len);
		}
		l->msg.entries = l->entries;
	}
}

static void apply(struct replica *rp, const struct raft_entry *e)
{
	long delta;
	if (e->type == RAFT_ENTRY_NORMAL && e->len == sizeof(delta)) {
		memcpy(&delta, e->data, sizeof(delta));
		rp->counter += delta;
	}
}

/* Drain one replica's batches: persist (nothing to do), send, apply, advance. */
static void drain(struct replica *rp)
{
	while (raft_has_ready(rp->raft)) {
		struct raft_ready rd;
		raft_ready(rp->raft, &rd);
		for (uint32_t k = 0; k < rd.n_msgs; k++)
			post(&rd.msgs[k]);
		for (uint32_t k = 0; k < rd.n_committed; k++)
			apply(rp, &rd.committed[k]);
		raft_advance(rp->raft);
	}
}

static void deliver_all(void)
{
	size_t n = n_letters;
	struct letter *batch = malloc(sizeof(*batch) * (n ? n : 1));
	memcpy(batch, mailbox, sizeof(*batch) * n);
	n_letters = 0;
	for (size_t k = 0; k < n; k++) {
		(void)raft_step(replicas[batch[k].msg.to].raft, &batch[k].msg);
		for (uint32_t j = 0; j < batch[k].msg.n_entries; j++)
			free(batch[k].entries[j].data);
		free(batch[k].entries);
	}
	free(batch);
}

static void turn(void)
{
	for (int i = 1; i <= NODES; i++)
		drain(&replicas[i]);
	deliver_all();
}

static int find_leader(void)
{
	for (int i = 1; i <= NODES; i++) {
		struct raft_status st;
		raft_status(replicas[i].raft, &st);
		if (st.role == RAFT_LEADER)
			return i;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long increments = argc > 1 ? atol(argv[1]) : 1000;
	struct raft_boot boot = {0};
	boot.snap.conf.n = NODES;
	for (int i = 0; i < NODES; i++) {
		boot.snap.conf.ids[i] = (raft_id)(i + 1);
		boot.snap.conf.kinds[i] = RAFT_VOTER;
	}
	for (int i = 1; i <= NODES; i++) {
		struct raft_config cfg;
		raft_config_default(&cfg, (raft_id)i, 2024);
		if (raft_new(&cfg, &boot, &replicas[i].raft) != 0)
			return 1;
	}
	int leader = 0;
	for (int t = 0; t < 1000 && leader == 0; t++) {
		for (int i = 1; i <= NODES; i++)
			raft_tick(replicas[i].raft);
		turn();
		leader = find_leader();
	}
	printf("leader elected: node %d\n", leader);
	for (long k = 0; k < increments; k++) {
		long one = 1;
		int rv = raft_propose(replicas[leader].raft, &one, sizeof(one), NULL);
		if (rv != 0) {
			fprintf(stderr, "propose: %s\n", cm_strerror(rv));
			return 1;
		}
		if (k % 64 == 63)
			turn();
	}
	for (int t = 0; t < 10; t++)
		turn();
	int ok = 1;
	for (int i = 1; i <= NODES; i++) {
		printf("node %d: counter = %ld\n", i, replicas[i].counter);
		ok &= replicas[i].counter == increments;
		raft_free(replicas[i].raft);
	}
	return ok ? 0 : 1;
}
