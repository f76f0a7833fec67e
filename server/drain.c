/* drain.c: a node asked to stop (SIGTERM, SIGINT) first hands the leadership
 * of every group it leads to a live voter, so that a rolling restart costs
 * the cluster no election timeout (issue 13, item 6).
 *
 * For each group it leads, the node picks the voter it heard from most
 * recently (one that is silent beyond an election timeout is not a
 * candidate) and asks the core to transfer (raft_transfer: it catches the
 * target up, then sends TIMEOUT_NOW). Every tick it looks again; it stops
 * when it leads nothing any more, or after CM_DRAIN_TIMEOUTS election
 * timeouts whatever is left. A group with no live voter to take over is
 * not waited for (the last node standing stops at once). A second signal
 * stops at once.
 */
#include <stdlib.h>

#include "server/log.h"
#include "server/node.h"

#define CM_DRAIN_TIMEOUTS 2 /* election timeouts a drain may take */

/* The live voter of g other than us heard from most recently; 0 if none. */
static uint64_t pick_target(const struct cm_node *n, const struct raft_status *st)
{
	uint64_t timeout = (uint64_t)n->cfg->election_ticks * n->cfg->tick_ms;
	uint64_t best = 0, best_silence = UINT64_MAX;
	for (uint32_t k = 0; k < st->conf.n; k++) {
		uint64_t id = st->conf.ids[k];
		if (id == n->cfg->node_id || st->conf.kinds[k] != RAFT_VOTER)
			continue;
		uint64_t silence = cm_net_peer_silence(n->net, id);
		if (silence <= timeout && silence < best_silence) {
			best = id;
			best_silence = silence;
		}
	}
	return best;
}

/* Start or continue the transfers; how many groups this node still leads
 * that some live voter could take over (waiting for the others is useless:
 * the last node standing stops at once). */
static uint32_t drain_step(struct cm_node *n)
{
	uint32_t led = 0;
	for (uint32_t k = 0; k < n->n_groups; k++) {
		struct cm_group *g = &n->groups[k];
		struct raft_status st;
		raft_status(g->raft, &st);
		if (st.role != RAFT_LEADER)
			continue;
		if (st.transferee != 0) {
			led++; /* under way */
			continue;
		}
		uint64_t to = pick_target(n, &st);
		if (to == 0)
			continue;
		led++;
		if (raft_transfer(g->raft, to) == 0)
			cm_log_info("group %llu: handing leadership to node %llu before stopping",
				    (unsigned long long)g->info->id, (unsigned long long)to);
	}
	if (led > 0)
		cm__node_kick(n); /* the transfers' messages go out with the next turn */
	return led;
}

void cm__drain_start(struct cm_node *n)
{
	if (n->draining || n->stopping) {
		cm_node_stop(n); /* asked twice: now */
		return;
	}
	n->draining = true;
	n->drain_until = n->ticks + (uint64_t)CM_DRAIN_TIMEOUTS * n->cfg->election_ticks;
	if (drain_step(n) == 0)
		cm_node_stop(n);
}

void cm__drain_tick(struct cm_node *n)
{
	if (!n->draining || n->stopping)
		return;
	uint32_t led = drain_step(n);
	if (led == 0) {
		cm_log_info("no group left to hand over: stopping");
		cm_node_stop(n);
	} else if (n->ticks >= n->drain_until) {
		cm_log_warn("still leads %u group(s) after %u election timeouts: stopping anyway",
			    led, CM_DRAIN_TIMEOUTS);
		cm_node_stop(n);
	}
}
