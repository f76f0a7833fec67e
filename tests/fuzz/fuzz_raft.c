/* fuzz_raft.c: libFuzzer target: decoded RAFT and BEATS frames stepped into a live
 * in-memory 3-node group, between ticks, proposals, snapshots and its own traffic. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NODES 3
#define QMAX 256        /* messages in flight between the nodes; more are lost */
#define SNAP_BYTES 200  /* the size every snapshot claims */
#define CHUNK_BYTES 64  /* small chunks: transfers take several messages */
#define MAX_OPS 512     /* bounds one input's work */

/* A queued message owns copies of what the core lent it. */
struct qmsg {
	struct raft_msg m;
	struct raft_entry *ents; /* owned */
};

struct group {
	struct raft *r[NODES];
	struct qmsg q[QMAX];
	uint32_t nq;
};

static const uint8_t zeros[SNAP_BYTES];

static void queue_copy(struct group *g, const struct raft_msg *m)
{
	if (g->nq == QMAX)
		return; /* lost: Raft resends */
	struct qmsg *q = &g->q[g->nq];
	q->m = *m;
	q->ents = NULL;
	if (m->n_entries > 0) {
		q->ents = calloc(m->n_entries, sizeof(*q->ents));
		assert(q->ents != NULL);
		for (uint32_t k = 0; k < m->n_entries; k++) {
			q->ents[k] = m->entries[k];
			q->ents[k].data = m->entries[k].len ? malloc(m->entries[k].len) : NULL;
			if (m->entries[k].len)
				memcpy(q->ents[k].data, m->entries[k].data, m->entries[k].len);
		}
	}
	q->m.entries = q->ents;
	if (m->type == RAFT_MSG_SNAP) {
		/* The caller attaches the bytes; ours are zeros, the meta is the core's. */
		if (m->offset > SNAP_BYTES || m->len > SNAP_BYTES - m->offset)
			return;
		q->m.data = zeros + m->offset;
	}
	g->nq++;
}

static void qmsg_free(struct qmsg *q)
{
	for (uint32_t k = 0; q->ents && k < q->m.n_entries; k++)
		free(q->ents[k].data);
	free(q->ents);
}

/* What holds whatever a peer sends (Raft's own invariants, not safety:
 * a forged message may lie about anything). */
static void check_node(struct raft *r)
{
	struct raft_status st;
	raft_status(r, &st);
	assert(st.applied <= st.commit);
	assert(st.commit <= st.last_index);
	assert(st.snap_index <= st.applied);
	assert(st.first_index <= st.last_index + 1);
}

/* Nothing is persisted (no crash here), so the batch is done at once. */
static void process(struct group *g, int k)
{
	struct raft *r = g->r[k];
	while (raft_has_ready(r)) {
		struct raft_ready rd;
		raft_ready(r, &rd);
		for (uint32_t j = 0; j < rd.n_msgs; j++)
			queue_copy(g, &rd.msgs[j]);
		raft_advance(r);
	}
	check_node(r);
}

static void deliver(struct group *g)
{
	uint32_t n = g->nq;
	struct qmsg *batch = malloc(sizeof(*batch) * (n ? n : 1));
	assert(batch != NULL);
	memcpy(batch, g->q, sizeof(*batch) * n);
	g->nq = 0;
	for (uint32_t j = 0; j < n; j++) {
		raft_id to = batch[j].m.to;
		if (to >= 1 && to <= NODES) {
			(void)raft_step(g->r[to - 1], &batch[j].m);
			process(g, (int)to - 1);
		}
		qmsg_free(&batch[j]);
	}
	free(batch);
}

static void group_init(struct group *g)
{
	memset(g, 0, sizeof(*g));
	struct raft_boot boot = {0};
	boot.snap.conf.n = NODES;
	for (int k = 0; k < NODES; k++) {
		boot.snap.conf.ids[k] = (raft_id)k + 1;
		boot.snap.conf.kinds[k] = RAFT_VOTER;
	}
	for (int k = 0; k < NODES; k++) {
		struct raft_config cfg;
		raft_config_default(&cfg, (raft_id)k + 1, 7);
		cfg.snap_chunk_bytes = CHUNK_BYTES;
		cfg.max_msg_entries = 8;
		int rv = raft_new(&cfg, &boot, &g->r[k]);
		assert(rv == 0);
		process(g, k);
	}
	/* Start from a working group: node 1 leads and has committed. */
	(void)raft_campaign(g->r[0]);
	process(g, 0);
	for (int round = 0; round < 4; round++)
		deliver(g);
}

static void group_free(struct group *g)
{
	for (uint32_t j = 0; j < g->nq; j++)
		qmsg_free(&g->q[j]);
	for (int k = 0; k < NODES; k++)
		raft_free(g->r[k]);
}

/* One frame off the wire, as net.c hands it to the node. */
static void step_frame(struct group *g, int dflt, const uint8_t *body, size_t len)
{
	struct cm_msg m;
	if (cm_codec_decode(body, len, &m) != 0)
		return;
	if (m.type == CM_FR_RAFT) {
		raft_id to = m.raft.to;
		int k = to >= 1 && to <= NODES ? (int)to - 1 : dflt;
		(void)raft_step(g->r[k], &m.raft);
		process(g, k);
	} else if (m.type == CM_FR_BEATS) {
		for (uint32_t j = 0; j < m.n_beats; j++) {
			struct raft_msg rm;
			cm_codec_beat_msg(&m.beats[j], m.beats_from, m.beats_to, &rm);
			int k = rm.to >= 1 && rm.to <= NODES ? (int)rm.to - 1 : dflt;
			(void)raft_step(g->r[k], &rm);
			process(g, k);
		}
	}
	cm_codec_free(&m);
}

static void snapshot(struct group *g, int k)
{
	struct raft_status st;
	raft_status(g->r[k], &st);
	if (st.applied > st.snap_index)
		(void)raft_snapshot_taken(g->r[k], st.applied, SNAP_BYTES, 2, NULL);
	process(g, k);
}

/*
 * The input is a script of ops, one byte each: low 3 bits the op, the rest
 * an argument. Ops 4-7 are followed by a 2-byte big-endian length and that
 * many bytes of frame body (the wire's frames, without their 4-byte length).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct group g;
	group_init(&g);
	size_t off = 0;
	for (int ops = 0; off < size && ops < MAX_OPS; ops++) {
		uint8_t op = data[off++];
		int k = (op >> 3) % NODES;
		switch (op & 7) {
		case 0:
			for (int t = 0; t <= (op >> 3) % 4; t++)
				for (int j = 0; j < NODES; j++) {
					raft_tick(g.r[j]);
					process(&g, j);
				}
			break;
		case 1:
			deliver(&g);
			break;
		case 2:
			(void)raft_propose(g.r[k], &op, 1, NULL);
			process(&g, k);
			break;
		case 3:
			snapshot(&g, k);
			break;
		default: {
			if (size - off < 2)
				goto out;
			size_t len = (size_t)data[off] << 8 | data[off + 1];
			off += 2;
			if (len > size - off)
				len = size - off;
			step_frame(&g, k, data + off, len);
			off += len;
			break;
		}
		}
	}
out:
	group_free(&g);
	return 0;
}
