/* trace.c: a ring of compact event records, formatted only when someone reads them. */
#include <stdio.h>

#include "sim.h"

typedef unsigned long long ull; /* for printf */

enum { F_REJECT = 1, F_FORCE = 2, F_LAST = 4 };

static void print_ev(const struct sim_trace_ev *ev);

/* Recording is a few stores: formatting every event would cost more than simulating it. */
void sim_trace(struct sim *s, uint8_t kind, raft_id node, raft_id peer, uint8_t sub, uint32_t n,
	       uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
	struct sim_trace_ev *ev = &s->trace.ring[s->trace.count++ % SIM_TRACE_RING];
	s->stats.ev[kind & 31]++;
	*ev = (struct sim_trace_ev){s->now, kind, (uint8_t)node, (uint8_t)peer, sub, n, a, b, c, d};
	if (s->trace.live)
		print_ev(ev);
}

/* Messages: sub = type, n = entries or chunk length, node/peer = from/to, a = term. */
void sim_trace_msg(struct sim *s, uint8_t kind, uint8_t reason, const struct raft_msg *m)
{
	uint32_t flags = (m->reject ? F_REJECT : 0) | (m->force ? F_FORCE : 0) |
			 (m->last ? F_LAST : 0) | (uint32_t)reason << 8;
	uint64_t b = m->index, c = m->log_term, d = m->commit;
	uint32_t n = m->n_entries;
	switch (m->type) {
	case RAFT_MSG_APPEND_RESP:
		c = m->hint;
		d = m->log_term;
		break;
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_HEARTBEAT_RESP:
	case RAFT_MSG_READ_INDEX:
	case RAFT_MSG_READ_INDEX_RESP:
		c = m->ctx;
		break;
	case RAFT_MSG_SNAP:
		b = m->snap.index;
		c = m->offset;
		d = m->snap.term;
		n = m->len;
		break;
	case RAFT_MSG_SNAP_RESP:
		c = m->offset;
		break;
	default:
		break;
	}
	sim_trace(s, kind, m->from, m->to, m->type, n | flags << 20, m->term, b, c, d);
}

static const char *drop_reason(unsigned r)
{
	static const char *names[] = {"?", "lost", "queue full", "cut", "node down", "no snapshot"};
	return r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

static void print_msg(const struct sim_trace_ev *ev)
{
	unsigned flags = ev->n >> 20, n = ev->n & 0xfffff;
	const char *rej = flags & F_REJECT ? " REJECT" : "";
	printf("%s %u->%u t%llu", raft_msg_type_name(ev->sub), ev->node, ev->peer, (ull)ev->a);
	switch (ev->sub) {
	case RAFT_MSG_APPEND:
		printf(" prev %llu/t%llu commit %llu n%u", (ull)ev->b, (ull)ev->c, (ull)ev->d, n);
		break;
	case RAFT_MSG_APPEND_RESP:
		printf(" index %llu%s hint %llu/t%llu", (ull)ev->b, rej, (ull)ev->c, (ull)ev->d);
		break;
	case RAFT_MSG_VOTE:
	case RAFT_MSG_PREVOTE:
		printf(" last %llu/t%llu%s", (ull)ev->b, (ull)ev->c,
		       flags & F_FORCE ? " force" : "");
		break;
	case RAFT_MSG_HEARTBEAT:
		printf(" commit %llu ctx %llu", (ull)ev->d, (ull)ev->c);
		break;
	case RAFT_MSG_SNAP:
		printf(" snap %llu/t%llu off %llu len %u%s", (ull)ev->b, (ull)ev->d, (ull)ev->c, n,
		       flags & F_LAST ? " last" : "");
		break;
	case RAFT_MSG_SNAP_RESP:
		printf(" snap %llu next %llu%s", (ull)ev->b, (ull)ev->c,
		       flags & F_LAST ? " done" : "");
		break;
	case RAFT_MSG_READ_INDEX_RESP:
		printf(" ctx %llu index %llu%s", (ull)ev->c, (ull)ev->b, rej);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
	case RAFT_MSG_READ_INDEX:
		printf(" ctx %llu", (ull)ev->c);
		break;
	default:
		printf("%s", rej);
		break;
	}
	if (ev->kind == SIM_EV_DROP)
		printf(" (%s)", drop_reason(flags >> 8));
}

static void print_cuts(uint64_t mask)
{
	for (unsigned i = 0; i < SIM_MAX_NODES; i++)
		for (unsigned j = 0; j < SIM_MAX_NODES; j++)
			if (mask & (1ULL << (i * 8 + j)))
				printf(" %u-x->%u", i + 1, j + 1);
}

static const char *change_name(unsigned op)
{
	return op == RAFT_ADD_LEARNER ? "add-learner" : op == RAFT_PROMOTE ? "promote" : "remove";
}

static void print_node_ev(const struct sim_trace_ev *ev)
{
	ull a = ev->a, b = ev->b, c = ev->c, d = ev->d;
	int rc = (int)ev->n;
	switch (ev->kind) {
	case SIM_EV_ROLE:
		printf("n%u %s t%llu leader %llu commit %llu last %llu", ev->node,
		       raft_role_name((enum raft_role)ev->sub), a, b, c, d);
		break;
	case SIM_EV_PERSIST:
		printf("n%u persist %u entries from %llu, %u chunks, hs t%llu v%llu c%llu",
		       ev->node, ev->n, a, ev->sub, b, c, d);
		break;
	case SIM_EV_APPLY:
		printf("n%u apply %llu..%llu, %u reads", ev->node, a, b, ev->n);
		break;
	case SIM_EV_SNAP_TAKE:
		printf("n%u snapshot taken at %llu/t%llu keep %llu", ev->node, a, b, c);
		break;
	case SIM_EV_SNAP_INSTALL:
		printf("n%u snapshot installed %llu/t%llu (%llu bytes)%s", ev->node, a, b, c,
		       ev->sub ? " log reset" : "");
		break;
	case SIM_EV_CRASH:
		printf("n%u CRASH%s, restart at %llu", ev->node, ev->sub ? " (losing a batch)" : "",
		       a);
		break;
	case SIM_EV_RESTART:
		printf("n%u start: t%llu commit %llu snap %llu last %llu, %u entries", ev->node, a,
		       b, c, d, ev->n);
		break;
	case SIM_EV_WIPE:
		printf("n%u WIPED (fresh storage)", ev->node);
		break;
	case SIM_EV_PROPOSE:
		printf("n%u propose #%llu in t%llu -> %s index %llu", ev->node, a, c,
		       cm_errname(rc), b);
		break;
	case SIM_EV_CHANGE:
		printf("n%u change %s n%u -> %s index %llu", ev->node, change_name(ev->sub),
		       ev->peer, cm_errname(rc), a);
		break;
	case SIM_EV_TRANSFER:
		printf("n%u transfer to n%u -> %s", ev->node, ev->peer, cm_errname(rc));
		break;
	case SIM_EV_READ:
		printf("n%u read ctx %llu (committed %llu) -> %s", ev->node, a, b, cm_errname(rc));
		break;
	case SIM_EV_READ_STATE:
		printf("n%u read state ctx %llu index %llu", ev->node, a, b);
		break;
	case SIM_EV_SLOW_DISK:
		printf("n%u slow disk: batch durable in %llu steps", ev->node, a);
		break;
	case SIM_EV_STALL:
		printf("n%u STOPPED for %llu steps", ev->node, a);
		break;
	case SIM_EV_SNAP_BEHIND:
		printf("n%u own snapshot due at %llu, the core holds %llu: nothing to do", ev->node,
		       a, b);
		break;
	default:
		printf("event %u", ev->kind);
		break;
	}
}

static void print_ev(const struct sim_trace_ev *ev)
{
	printf("[%6llu] ", (ull)ev->step);
	switch (ev->kind) {
	case SIM_EV_SEND:
	case SIM_EV_RECV:
	case SIM_EV_DROP:
		printf("%s ", ev->kind == SIM_EV_SEND   ? "send"
			      : ev->kind == SIM_EV_RECV ? "recv"
							: "drop");
		print_msg(ev);
		break;
	case SIM_EV_PARTITION:
		if (ev->sub == 3) { /* scripted: a = the one group that can talk */
			printf("CONNECT ONLY {");
			for (unsigned i = 1; i <= SIM_MAX_NODES; i++)
				if ((ev->a >> i) & 1)
					printf(" %u", i);
			printf(" }");
			break;
		}
		printf("PARTITION (%s):", ev->sub == 0   ? "split"
					  : ev->sub == 1 ? "one-way"
							 : "leader");
		print_cuts(ev->a);
		break;
	case SIM_EV_HEAL:
		printf("HEAL");
		break;
	case SIM_EV_CALM:
		printf("CALM: faults stop, crashed nodes restart; liveness must follow");
		break;
	default:
		print_node_ev(ev);
		break;
	}
	printf("\n");
}

void sim_trace_dump(const struct sim *s, unsigned lines)
{
	uint64_t n = s->trace.count < lines ? s->trace.count : lines;
	if (n > SIM_TRACE_RING)
		n = SIM_TRACE_RING;
	for (uint64_t k = s->trace.count - n; k < s->trace.count; k++)
		print_ev(&s->trace.ring[k % SIM_TRACE_RING]);
}
