/* main.c: raft-sim, the command line of the deterministic Raft simulator. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef unsigned long long ull; /* for printf */

/* Out-of-memory policy: abort (see sim_xmalloc); a test has nothing to recover. */

struct opts {
	uint64_t seeds;
	uint64_t steps;
	uint64_t seed;  /* 0: run seeds 1..seeds */
	uint32_t nodes; /* 0: 3 for odd seeds, 5 for even ones */
	bool trace;
	bool quiet;
	bool expect_violations;
	bool stats;
	bool strict_learners;
	const char *scenario;
	const char *argv0;
};

static void usage(FILE *f, const char *argv0)
{
	fprintf(f, "usage: %s --seeds N --steps M [--seed S] [--nodes 3|5] [--trace] [--quiet]\n",
		argv0);
	fputs("          [--stats] [--expect-violations] [--strict-learners]\n"
	      "          [--scenario figure8|removed|learner]\n"
	      "  --seeds N   run seeds 1..N (3 voters for odd seeds, 5 for even ones)\n"
	      "  --steps M   faulty steps per seed, followed by a calm liveness phase\n"
	      "  --seed S    run only seed S (replay); with --trace print every event\n"
	      "  --nodes K   voters at start, 3 or 5, for every seed\n"
	      "  --quiet     on a violation, no trace dump\n"
	      "  --stats     print what the runs exercised (elections, crashes, ...)\n"
	      "  --expect-violations  exit 0 only if some seed found a violation\n"
	      "  --scenario figure8   the scripted Figure 8 sequence (Raft paper §5.4.2)\n"
	      "  --scenario removed   a removed voter keeps running and campaigning (guard.c)\n"
	      "  --scenario learner   a learner is asked for votes before its promotion\n"
	      "  --strict-learners    learner-votes: a grant by a non-voter of its own\n"
	      "              configuration is a violation even when the candidate's promotes it\n"
	      "Exit: 0 no violation, 1 violations, 2 usage error.\n",
	      f);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	uint64_t v;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--trace")) {
			o->trace = true;
		} else if (!strcmp(a, "--quiet")) {
			o->quiet = true;
		} else if (!strcmp(a, "--stats")) {
			o->stats = true;
		} else if (!strcmp(a, "--strict-learners")) {
			o->strict_learners = true;
		} else if (!strcmp(a, "--expect-violations")) {
			o->expect_violations = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout, argv[0]);
			exit(0);
		} else if (!strcmp(a, "--scenario") && next) {
			o->scenario = next;
			i++;
		} else if (!parse_u64(next, &v) &&
			   (!strcmp(a, "--seeds") || !strcmp(a, "--steps") ||
			    !strcmp(a, "--seed") || !strcmp(a, "--nodes"))) {
			if (!v && strcmp(a, "--steps"))
				return -EINVAL; /* seeds are numbered from 1 */
			if (!strcmp(a, "--seeds"))
				o->seeds = v;
			else if (!strcmp(a, "--steps"))
				o->steps = v;
			else if (!strcmp(a, "--seed"))
				o->seed = v;
			else if (v == 3 || v == 5)
				o->nodes = (uint32_t)v;
			else
				return -EINVAL;
			i++;
		} else {
			return -EINVAL;
		}
	}
	if (o->scenario && strcmp(o->scenario, "figure8") && strcmp(o->scenario, "removed") &&
	    strcmp(o->scenario, "learner"))
		return -EINVAL;
	if (!o->steps && !o->scenario)
		return -EINVAL;
	if (!o->seed && !o->seeds)
		return -EINVAL;
	return 0;
}

static void report(const struct sim *s, const struct opts *o)
{
	printf("seed %llu (%u voters): VIOLATION %s at step %llu: %s\n", (ull)s->seed, s->n_voters,
	       s->what, (ull)s->now, s->detail);
	if (o->scenario)
		printf("  replay: %s --scenario %s --seed %llu --trace\n", o->argv0, o->scenario,
		       (ull)s->seed);
	else
		printf("  replay: %s --seed %llu --steps %llu --nodes %u --trace\n", o->argv0,
		       (ull)s->seed, (ull)o->steps, s->n_voters);
	if (o->quiet || o->trace)
		return;
	printf("  last %u events:\n", SIM_TRACE_DUMP);
	sim_trace_dump(s, SIM_TRACE_DUMP);
}

static void stats_add(struct sim_stats *t, const struct sim *s)
{
	for (unsigned k = 0; k < 32; k++)
		t->ev[k] += s->stats.ev[k];
	t->elected += s->stats.elected;
	t->accepted += s->stats.accepted;
	t->busy += s->stats.busy;
	t->changes += s->stats.changes;
	t->transfers += s->stats.transfers;
	t->served += s->stats.served;
	t->quiesced += s->stats.quiesced;
	t->woken += s->stats.woken;
	t->snap_behind += s->stats.snap_behind;
	t->learner_grants += s->stats.learner_grants;
	t->committed += s->hist.n;
	if (s->max_term > t->max_term)
		t->max_term = s->max_term;
}

static void stats_print(const struct sim_stats *t, uint64_t seeds)
{
	const uint64_t *e = t->ev;
	printf("per seed: %.1f leaders elected, %.1f committed entries (%.1f accepted, %.1f busy), "
	       "%.1f messages (%.1f dropped)\n",
	       (double)t->elected / (double)seeds, (double)t->committed / (double)seeds,
	       (double)t->accepted / (double)seeds, (double)t->busy / (double)seeds,
	       (double)e[SIM_EV_SEND] / (double)seeds, (double)e[SIM_EV_DROP] / (double)seeds);
	printf("per seed: %.2f crashes, %.2f wipes, %.2f partitions, %.2f slow writes, "
	       "%.2f snapshots taken, %.2f installed\n",
	       (double)e[SIM_EV_CRASH] / (double)seeds, (double)e[SIM_EV_WIPE] / (double)seeds,
	       (double)e[SIM_EV_PARTITION] / (double)seeds,
	       (double)e[SIM_EV_SLOW_DISK] / (double)seeds,
	       (double)e[SIM_EV_SNAP_TAKE] / (double)seeds,
	       (double)e[SIM_EV_SNAP_INSTALL] / (double)seeds);
	printf("per seed: %.2f membership changes, %.2f transfers, %.2f reads served; "
	       "highest term %llu\n",
	       (double)t->changes / (double)seeds, (double)t->transfers / (double)seeds,
	       (double)t->served / (double)seeds, (ull)t->max_term);
	printf("per seed: %.1f nodes went quiet, %.1f woken by node liveness\n",
	       (double)t->quiesced / (double)seeds, (double)t->woken / (double)seeds);
	printf("per seed: %.2f stalls; %.3f own snapshots due below a leader's just installed "
	       "(%llu in all)\n",
	       (double)e[SIM_EV_STALL] / (double)seeds, (double)t->snap_behind / (double)seeds,
	       (ull)t->snap_behind);
	printf("per seed: %.2f (pre)votes granted by a non-voter of its own configuration "
	       "(%llu in all)\n",
	       (double)t->learner_grants / (double)seeds, (ull)t->learner_grants);
}

/* Runs one seed; returns 1 on a violation. */
static int run_seed(uint64_t seed, const struct opts *o, struct sim_stats *total)
{
	uint32_t nodes = o->nodes ? o->nodes : (seed % 2 ? 3 : 5);
	struct sim *s = sim_xcalloc(1, sizeof(*s));
	sim_init(s, seed, o->scenario ? 5 : nodes, o->trace, o->scenario != NULL);
	s->guard_lax = !o->strict_learners;
	bool ok;
	if (!o->scenario)
		ok = sim_run(s, o->steps);
	else if (!strcmp(o->scenario, "removed"))
		ok = sim_scenario_removed(s);
	else if (!strcmp(o->scenario, "learner"))
		ok = sim_scenario_learner(s);
	else
		ok = sim_scenario_figure8(s);
	if (!ok)
		report(s, o);
	stats_add(total, s);
	fflush(stdout);
	sim_destroy(s);
	free(s);
	return !ok;
}

int main(int argc, char **argv)
{
	struct opts o = {.argv0 = argv[0]};
	if (parse_args(argc, argv, &o)) {
		usage(stderr, argv[0]);
		return 2;
	}
	uint64_t first = o.seed ? o.seed : 1, last = o.seed ? o.seed : o.seeds;
	uint64_t violations = 0;
	struct sim_stats total = {0};
	for (uint64_t seed = first; seed <= last; seed++)
		violations += (uint64_t)run_seed(seed, &o, &total);
	if (o.stats)
		stats_print(&total, last - first + 1);
	if (o.expect_violations && !violations)
		printf("expected violations (a deliberately broken core), found none\n");
	printf("seeds: %llu, steps: %llu, violations: %llu\n", (ull)(last - first + 1),
	       (ull)o.steps, (ull)violations);
	if (o.expect_violations)
		return violations ? 0 : 1;
	return violations ? 1 : 0;
}
