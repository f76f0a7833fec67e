/* ctl_member.c: confmanctl's membership commands: node list|add|remove, shard move. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/ctl.h"
#include "client/plan.h"
#include "confman/client.h"

/*
 * Every change is a loop: read the state (the registry from any node, the
 * group's configuration from its leader), plan one step (client/plan.c),
 * run it, read again. A step whose outcome is unknown (timeout, lost
 * connection) or that the cluster refused for now (no leader, a change
 * pending, a learner behind) is simply planned again after a pause, so an
 * interrupted command re-run converges from wherever the cluster is.
 */

#define MOVE_TIMEOUT_S 300     /* a whole command, by default */
#define PAUSE_MIN_MS 100       /* between retries, doubling to */
#define PAUSE_MAX_MS 2000
#define CATCHUP_POLL_MS 200    /* while a learner catches up */
#define PROGRESS_EVERY_MS 1000 /* catch-up lines at most this often */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* A command's run: its client, output mode, deadline and retry pause. */
struct run {
	struct cm_ctl_cmd *cc;
	struct cm_client *c;
	uint64_t deadline;   /* now_ms() */
	uint32_t timeout_s;
	uint32_t pause;      /* ms, the next retry's */
	uint64_t progress_at; /* now_ms() of the last catch-up line */
	struct cm_plan_step last; /* the step run last (a repeat waits first) */
	uint32_t unlisted;       /* ADD_LEARNER refused EINVAL: retries so far */
};

/* A learner added right after SHARD_SET listed it may be refused (EINVAL:
 * not in the replica set) by a leader whose node has not applied the
 * registry entry yet: retried this often before it counts as a refusal. */
#define UNLISTED_RETRIES 10

/* Errors after which the same step, planned again, may well succeed. */
static bool transient(int err)
{
	switch (err) {
	case CM_ENOTLEADER: case CM_ENOLEADER: case CM_ETRANSFERRING: case CM_ECONFPENDING:
	case CM_ELAGGING: case CM_ESHUTDOWN: case CM_ESTALE: case -ETIMEDOUT: case -EIO:
	case -ECONNREFUSED: case -ECONNRESET: case -EHOSTUNREACH: case -ENETUNREACH:
		return true;
	default:
		return false;
	}
}

/* Pause before the next attempt; false (and a message) once time is up. */
static bool backoff(struct run *r, const char *what, int err)
{
	if (now_ms() + r->pause >= r->deadline) {
		fprintf(stderr, "confmanctl: %s: gave up after %" PRIu32 " s: %s (%s)\n", what,
			r->timeout_s, cm_strerror(err), cm_errname(err));
		return false;
	}
	sleep_ms(r->pause);
	r->pause = r->pause * 2 > PAUSE_MAX_MS ? PAUSE_MAX_MS : r->pause * 2;
	return true;
}

static int open_run(struct cm_ctl_cmd *cc, struct run *r, uint32_t timeout_s)
{
	*r = (struct run){.cc = cc, .timeout_s = timeout_s, .pause = PAUSE_MIN_MS,
			  .deadline = now_ms() + (uint64_t)timeout_s * 1000};
	int rv = cm_client_open(cc->opts, &cc->client);
	if (rv == -EINVAL)
		return cm_ctl_usage("bad --servers or --cluster");
	r->c = cc->client;
	return rv ? cm_ctl_fail("client", rv) : 0;
}

static void print_ids(FILE *f, const uint64_t *ids, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++)
		fprintf(f, k ? ",%" PRIu64 : "%" PRIu64, ids[k]);
}

static bool parse_id(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	if (s == NULL || *s < '1' || *s > '9')
		return false;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*v = x;
	return true;
}

static bool parse_seconds(const char *s, uint32_t *v)
{
	uint64_t x;
	if (!parse_id(s, &x) || x > 86400 * 7)
		return false;
	*v = (uint32_t)x;
	return true;
}

/* Parse a command's options (GNU order: they may follow the arguments);
 * returns the index of the first argument, or -1 with the exit code in *rv. */
static int opts_parse(int argc, char **argv, const char *sopts, const struct option *lopts,
		      int (*on)(void *arg, int opt, const char *val), void *arg, int *rv)
{
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, sopts, lopts, NULL)) != -1) {
		if (c == '?' || c == ':') {
			*rv = cm_ctl_usage("%s: bad option '%s'", argv[0], argv[optind - 1]);
			return -1;
		}
		if ((*rv = on(arg, c, optarg)) != 0)
			return -1;
	}
	return optind;
}

/* ---- the state of the cluster ---- */

static const struct cm_node_info *node_of(const struct cm_shard_map *m, uint64_t id)
{
	for (uint32_t k = 0; k < m->n_nodes; k++)
		if (m->nodes[k].id == id)
			return &m->nodes[k];
	return NULL;
}

static bool node_active(const struct cm_node_info *n)
{
	return n != NULL && n->state != CM_NODE_REMOVED; /* 0: a server before the table */
}

static const struct cm_shard_info *shard_of(const struct cm_shard_map *m, uint64_t group)
{
	for (uint32_t k = 0; k < m->n_shards; k++)
		if (m->shards[k].group == group)
			return &m->shards[k];
	return NULL;
}

/* One reading of a group: the map, the leader's status, the planner's view. */
struct view {
	struct cm_shard_map *map;
	struct cm_node_status *st;
	const struct cm_group_info *g; /* in st */
	uint64_t nodes[CM_PLAN_MAX_NODES];
	struct cm_plan_state ps;
};

static void view_free(struct view *v)
{
	cm_shards_free(v->map);
	cm_status_free(v->st);
	v->map = NULL;
	v->st = NULL;
}

/* Read group's state; `gone` (0: none) is left out of the active nodes. */
static int view_read(struct run *r, uint64_t group, uint64_t gone, struct view *v)
{
	view_free(v);
	int rv = cm_shards(r->c, &v->map);
	if (rv == 0)
		rv = cm_member_status(r->c, group, &v->st);
	if (rv != 0)
		return rv;
	v->g = cm_status_group(v->st, group);
	if (v->g == NULL || v->g->n_members > CM_PLAN_MAX)
		return -EPROTO;
	struct cm_plan_state *ps = &v->ps;
	*ps = (struct cm_plan_state){.meta = group == CM_META_GROUP, .leader = v->st->node_id,
				     .last = v->g->last, .n_members = v->g->n_members,
				     .nodes = v->nodes};
	memcpy(ps->members, v->g->members, sizeof(ps->members));
	memcpy(ps->kinds, v->g->kinds, sizeof(ps->kinds));
	memcpy(ps->match, v->g->match, sizeof(ps->match));
	const struct cm_shard_info *sh = shard_of(v->map, group);
	if (sh != NULL) {
		ps->n_registry = sh->n_replicas;
		memcpy(ps->registry, sh->replicas, sizeof(ps->registry));
	}
	for (uint32_t k = 0; k < v->map->n_nodes && ps->n_nodes < CM_PLAN_MAX_NODES; k++)
		if (node_active(&v->map->nodes[k]) && v->map->nodes[k].id != gone)
			v->nodes[ps->n_nodes++] = v->map->nodes[k].id;
	return 0;
}

/* ---- one group to a target set ---- */

struct move {
	uint64_t group;
	const char *label; /* the prefix, or "meta" */
	const uint64_t *target;
	uint32_t n;
	uint64_t gone;     /* a node being removed: not active for the plan */
};

static void step_json(const struct move *mv, const struct cm_plan_step *s, uint64_t index,
		      const struct view *v)
{
	printf("{\"group\":%" PRIu64 ",\"prefix\":", mv->group);
	cm_ctl_json_str(stdout, mv->label, strlen(mv->label));
	printf(",\"step\":\"%s\"", cm_plan_kind_name(s->kind));
	if (s->kind == CM_PLAN_SHARD_SET || s->kind == CM_PLAN_DONE) {
		fputs(",\"replicas\":[", stdout);
		print_ids(stdout, s->kind == CM_PLAN_DONE ? mv->target : s->set,
			  s->kind == CM_PLAN_DONE ? mv->n : s->n_set);
		fputc(']', stdout);
	} else if (s->kind == CM_PLAN_TRANSFER) {
		printf(",\"from\":%" PRIu64 ",\"to\":%" PRIu64, s->node, s->to);
	} else {
		printf(",\"node\":%" PRIu64, s->node);
	}
	if (index)
		printf(",\"index\":%" PRIu64, index);
	for (uint32_t k = 0; s->kind == CM_PLAN_WAIT_CATCHUP && k < v->g->n_members; k++)
		if (v->g->members[k] == s->node)
			printf(",\"match\":%" PRIu64 ",\"last\":%" PRIu64, v->g->match[k],
			       v->g->last);
	fputs("}\n", stdout);
}

static void step_text(const struct move *mv, const struct cm_plan_step *s, uint64_t index,
		      const struct view *v)
{
	printf("%s (group %" PRIu64 "): ", mv->label, mv->group);
	switch (s->kind) {
	case CM_PLAN_SHARD_SET:
		fputs("replica set ", stdout);
		print_ids(stdout, v->ps.registry, v->ps.n_registry);
		fputs(" -> ", stdout);
		print_ids(stdout, s->set, s->n_set);
		break;
	case CM_PLAN_ADD_LEARNER:
		printf("node %" PRIu64 " added as a learner", s->node);
		break;
	case CM_PLAN_WAIT_CATCHUP:
		for (uint32_t k = 0; k < v->g->n_members; k++)
			if (v->g->members[k] == s->node)
				printf("node %" PRIu64 ": %" PRIu64 "/%" PRIu64 " entries", s->node,
				       v->g->match[k], v->g->last);
		break;
	case CM_PLAN_PROMOTE:
		printf("node %" PRIu64 " promoted to voter", s->node);
		break;
	case CM_PLAN_TRANSFER:
		printf("leadership moving from node %" PRIu64 " to ", s->node);
		if (s->to)
			printf("node %" PRIu64, s->to);
		else
			fputs("the most caught-up voter", stdout);
		break;
	case CM_PLAN_REMOVE:
		printf("node %" PRIu64 " removed", s->node);
		break;
	case CM_PLAN_DONE:
		fputs("done: replicas ", stdout);
		print_ids(stdout, mv->target, mv->n);
		break;
	}
	if (index)
		printf(" (index %" PRIu64 ")", index);
	putchar('\n');
}

static void step_print(struct run *r, const struct move *mv, const struct cm_plan_step *s,
		       uint64_t index, const struct view *v)
{
	if (s->kind == CM_PLAN_WAIT_CATCHUP) {
		uint64_t t = now_ms();
		if (r->progress_at != 0 && t - r->progress_at < PROGRESS_EVERY_MS)
			return;
		r->progress_at = t;
	}
	if (r->cc->json)
		step_json(mv, s, index, v);
	else
		step_text(mv, s, index, v);
	fflush(stdout);
}

/* Run step s; returns the server's answer. */
static int step_run(struct run *r, const struct move *mv, const struct cm_plan_step *s,
		    uint64_t *index)
{
	*index = 0;
	switch (s->kind) {
	case CM_PLAN_SHARD_SET:
		return cm_shard_set(r->c, mv->group, s->set, s->n_set);
	case CM_PLAN_ADD_LEARNER:
		return cm_conf_change(r->c, mv->group, CM_CONF_ADD_LEARNER, s->node, index);
	case CM_PLAN_PROMOTE:
		return cm_conf_change(r->c, mv->group, CM_CONF_PROMOTE, s->node, index);
	case CM_PLAN_REMOVE:
		return cm_conf_change(r->c, mv->group, CM_CONF_REMOVE, s->node, index);
	case CM_PLAN_TRANSFER:
		return cm_transfer(r->c, mv->group, s->to);
	case CM_PLAN_WAIT_CATCHUP:
	case CM_PLAN_DONE:
		return 0;
	}
	return -EINVAL;
}

/* A refusal that no retry mends: say which node and why; the exit code. */
static int step_refused(const struct move *mv, const struct cm_plan_step *s, int err)
{
	fprintf(stderr, "confmanctl: %s (group %" PRIu64 "): %s node %" PRIu64 " refused: %s (%s)\n",
		mv->label, mv->group, cm_plan_kind_name(s->kind),
		s->kind == CM_PLAN_SHARD_SET ? 0 : s->node, cm_strerror(err), cm_errname(err));
	if (err == CM_ENOQUORUM)
		fputs("  the group would be left without a quorum of live, caught-up voters:"
		      " bring its members back (confmanctl status) or name other nodes\n", stderr);
	return cm_ctl_exit_code(err);
}

/* What the planner could not plan: the exit code, or 0 to read again. */
static int plan_refused(struct run *r, const struct move *mv, int err, uint64_t bad)
{
	if (err == CM_ENOLEADER)
		return backoff(r, mv->label, err) ? 0 : CM_CTL_UNAVAILABLE;
	if (err == CM_ENONODE)
		fprintf(stderr, "confmanctl: %s: node %" PRIu64 " is not an active node"
				" (confmanctl node list)\n", mv->label, bad);
	else
		fprintf(stderr, "confmanctl: %s: replicas must be 1 to %d distinct node ids, and"
				" old and new together at most %d\n", mv->label, CM_PLAN_MAX,
			CM_PLAN_MAX);
	return CM_CTL_USAGE;
}

/* Pause before a step seen already; false (*code set) once time is up. */
static bool pause_or_give_up(struct run *r, const struct move *mv, int *code)
{
	if (now_ms() + r->pause < r->deadline) {
		sleep_ms(r->pause);
		r->pause = r->pause * 2 > PAUSE_MAX_MS ? PAUSE_MAX_MS : r->pause * 2;
		return true;
	}
	fprintf(stderr, "confmanctl: %s: not done after %" PRIu32 " s (re-run to go on)\n",
		mv->label, r->timeout_s);
	*code = CM_CTL_UNAVAILABLE;
	return false;
}

static bool same_step(const struct cm_plan_step *a, const struct cm_plan_step *b)
{
	return a->kind == b->kind && a->node == b->node && a->to == b->to &&
	       a->n_set == b->n_set && memcmp(a->set, b->set, a->n_set * sizeof(*a->set)) == 0;
}

/* One round: read, plan, run. Returns whether the move is over, with its
 * exit code in *code (0: done). */
static bool move_round(struct run *r, const struct move *mv, struct view *v, int *code)
{
	if (now_ms() >= r->deadline)
		return !pause_or_give_up(r, mv, code);
	int rv = view_read(r, mv->group, mv->gone, v);
	if (rv != 0) {
		bool go = transient(rv) && backoff(r, mv->label, rv);
		*code = go ? 0 : cm_ctl_fail(mv->label, rv);
		return !go;
	}
	struct cm_plan_step s;
	uint64_t bad = 0, index;
	rv = cm_plan_next(&v->ps, mv->target, mv->n, &s, &bad);
	if (rv != 0) {
		*code = plan_refused(r, mv, rv, bad);
		return *code != 0;
	}
	/* The same step again: it succeeded, but what we read does not show it
	 * yet (a lagging replica's registry): pause, do not hammer. */
	if (!same_step(&s, &r->last))
		r->pause = PAUSE_MIN_MS;
	else if (s.kind != CM_PLAN_WAIT_CATCHUP && !pause_or_give_up(r, mv, code))
		return true;
	r->last = s;
	rv = step_run(r, mv, &s, &index);
	if (rv == 0 || rv == -EEXIST || (rv == CM_EUNKNOWNPEER && s.kind == CM_PLAN_REMOVE)) {
		step_print(r, mv, &s, index, v); /* -EEXIST...: done by an earlier run */
		*code = CM_CTL_OK;
		if (s.kind == CM_PLAN_WAIT_CATCHUP || s.kind == CM_PLAN_TRANSFER)
			sleep_ms(CATCHUP_POLL_MS);
		if (s.kind == CM_PLAN_WAIT_CATCHUP && now_ms() >= r->deadline) {
			fprintf(stderr, "confmanctl: %s: node %" PRIu64 " still catching up after %"
					PRIu32 " s\n", mv->label, s.node, r->timeout_s);
			*code = CM_CTL_UNAVAILABLE;
		}
		return s.kind == CM_PLAN_DONE || *code != 0;
	}
	bool unlisted = rv == -EINVAL && s.kind == CM_PLAN_ADD_LEARNER &&
			r->unlisted++ < UNLISTED_RETRIES;
	/* EBUSY on a shrink of the replica set: the meta leader has not seen
	 * the removal that just committed yet (it checks members): again. */
	bool busy = rv == -EBUSY && (s.kind == CM_PLAN_REMOVE || s.kind == CM_PLAN_SHARD_SET);
	if (transient(rv) || unlisted || busy) {
		bool go = backoff(r, mv->label, rv);
		*code = go ? 0 : cm_ctl_exit_code(rv);
		return !go;
	}
	*code = step_refused(mv, &s, rv);
	return true;
}

/* Converge one group to mv's target; returns the exit code. */
static int move_group(struct run *r, const struct move *mv)
{
	struct view *v = calloc(1, sizeof(*v));
	if (v == NULL)
		return cm_ctl_fail(mv->label, -ENOMEM);
	int code = 0;
	while (!move_round(r, mv, v, &code))
		;
	view_free(v);
	free(v);
	return code;
}

/* ---- shard move ---- */

struct move_opts {
	struct cm_ctl_cmd *cc;
	uint64_t ids[CM_PLAN_MAX];
	int n; /* -1: no --replicas */
	uint32_t timeout_s;
	const char *to; /* node remove: --to */
};

static int move_opt(void *arg, int opt, const char *val)
{
	struct move_opts *o = arg;
	switch (opt) {
	case 'r':
		o->n = cm_ctl_parse_ids(val, o->ids, CM_PLAN_MAX);
		if (o->n < 0)
			return cm_ctl_usage("--replicas wants 1 to %d node ids like 1,2,4, not '%s'",
					    CM_PLAN_MAX, val);
		return 0;
	case 'T':
		if (!parse_seconds(val, &o->timeout_s))
			return cm_ctl_usage("--timeout wants seconds, not '%s'", val);
		return 0;
	case 'o':
		o->to = val;
		return 0;
	case 'j':
		o->cc->json = true;
		return 0;
	default:
		return cm_ctl_usage("unknown option");
	}
}

static const struct option move_lopts[] = {{"replicas", required_argument, NULL, 'r'},
					   {"timeout", required_argument, NULL, 'T'},
					   {"to", required_argument, NULL, 'o'},
					   {"json", no_argument, NULL, 'j'}, {0}};

/* PREFIX (or "meta") to its group, by the registry. */
static int group_of(struct run *r, const char *prefix, uint64_t *group)
{
	if (strcmp(prefix, "meta") == 0) {
		*group = CM_META_GROUP;
		return 0;
	}
	struct cm_shard_map *m;
	int rv = cm_shards(r->c, &m);
	if (rv != 0)
		return cm_ctl_fail("shards", rv);
	*group = 0;
	for (uint32_t k = 0; k < m->n_shards; k++)
		if (strcmp(m->shards[k].prefix, prefix) == 0 && m->shards[k].group != CM_META_GROUP)
			*group = m->shards[k].group;
	cm_shards_free(m);
	if (*group == 0) {
		fprintf(stderr, "confmanctl: %s: not a shard (confmanctl shards lists them)\n",
			prefix);
		return CM_CTL_USAGE;
	}
	return 0;
}

int cm_ctl_shard_move(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	struct move_opts o = {.cc = cc, .n = -1, .timeout_s = MOVE_TIMEOUT_S};
	int rv = 0;
	int first = opts_parse(argc, argv, "r:T:j", move_lopts, move_opt, &o, &rv);
	if (first < 0)
		return rv;
	if (o.to != NULL)
		return cm_ctl_usage("shard move: no --to (it is node remove's)");
	if (argc - first != 1)
		return cm_ctl_usage("shard move: expected PREFIX (or meta)");
	if (o.n < 0)
		return cm_ctl_usage("shard move: --replicas is required");
	struct run r;
	uint64_t group = 0;
	if ((rv = open_run(cc, &r, o.timeout_s)) != 0 || (rv = group_of(&r, argv[first], &group)))
		return rv;
	struct move mv = {.group = group, .label = argv[first], .target = o.ids,
			  .n = (uint32_t)o.n};
	return move_group(&r, &mv);
}

/* ---- node list ---- */

static const char *state_name(uint8_t state)
{
	return state == CM_NODE_REMOVED ? "removed" : "active";
}

static const char *meta_kind(const struct cm_group_info *g, uint64_t id)
{
	if (g == NULL)
		return "?";
	for (uint32_t k = 0; k < g->n_members; k++)
		if (g->members[k] == id)
			return g->kinds[k] == 2 ? "learner" : "voter";
	return "-";
}

static void node_list_print(const struct cm_shard_map *m, const struct cm_group_info *g,
			    bool json)
{
	if (!json)
		printf("%-6s %-24s %-24s %-8s %s\n", "NODE", "ADDR", "HTTP", "STATE", "META");
	else
		fputs("{\"nodes\":[", stdout);
	for (uint32_t k = 0; k < m->n_nodes; k++) {
		const struct cm_node_info *n = &m->nodes[k];
		if (!json) {
			printf("%-6" PRIu64 " %-24s %-24s %-8s %s\n", n->id, n->addr,
			       *n->http ? n->http : "-", state_name(n->state), meta_kind(g, n->id));
			continue;
		}
		printf("%s{\"id\":%" PRIu64 ",\"addr\":", k ? "," : "", n->id);
		cm_ctl_json_str(stdout, n->addr, strlen(n->addr));
		fputs(",\"http\":", stdout);
		cm_ctl_json_str(stdout, n->http, strlen(n->http));
		printf(",\"state\":\"%s\",\"meta\":\"%s\"}", state_name(n->state),
		       meta_kind(g, n->id));
	}
	if (json)
		fputs("]}\n", stdout);
}

static int json_only(void *arg, int opt, const char *val)
{
	(void)val;
	if (opt != 'j')
		return cm_ctl_usage("unknown option");
	((struct cm_ctl_cmd *)arg)->json = true;
	return 0;
}

static int node_list(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	static const struct option lo[] = {{"json", no_argument, NULL, 'j'}, {0}};
	int rv = 0;
	int first = opts_parse(argc, argv, "j", lo, json_only, cc, &rv);
	if (first < 0)
		return rv;
	if (argc != first)
		return cm_ctl_usage("node list: no arguments");
	struct run r;
	struct cm_shard_map *m;
	struct cm_node_status *st = NULL;
	if ((rv = open_run(cc, &r, MOVE_TIMEOUT_S)) != 0)
		return rv;
	if ((rv = cm_shards(r.c, &m)) != 0)
		return cm_ctl_fail("node list", rv);
	int err = cm_member_status(r.c, CM_META_GROUP, &st);
	if (err != 0) /* the table still says something: kinds "?" */
		fprintf(stderr, "confmanctl: meta group: %s (%s)\n", cm_strerror(err),
			cm_errname(err));
	node_list_print(m, cm_status_group(st, CM_META_GROUP), cc->json);
	cm_status_free(st);
	cm_shards_free(m);
	return CM_CTL_OK;
}

/* ---- node add ---- */

struct add_opts {
	struct cm_ctl_cmd *cc;
	const char *addr, *http;
	uint32_t timeout_s;
};

static int add_opt(void *arg, int opt, const char *val)
{
	struct add_opts *o = arg;
	if (opt == 'a')
		o->addr = val;
	else if (opt == 'H')
		o->http = val;
	else if (opt == 'T' && !parse_seconds(val, &o->timeout_s))
		return cm_ctl_usage("--timeout wants seconds, not '%s'", val);
	else if (opt == 'j')
		o->cc->json = true;
	return 0;
}

/* -EEXIST on a re-run is success when the table holds what we asked for. */
static int node_add_check(struct run *r, uint64_t id, const struct add_opts *o)
{
	struct cm_shard_map *m;
	int rv = cm_shards(r->c, &m);
	if (rv != 0)
		return cm_ctl_fail("node add", rv);
	const struct cm_node_info *n = node_of(m, id);
	int code = CM_CTL_OK;
	if (n == NULL || !node_active(n)) {
		fprintf(stderr, "confmanctl: node %" PRIu64 ": the id was used and removed;"
				" ids are never reused\n", id);
		code = CM_CTL_CONFLICT;
	} else if (strcmp(n->addr, o->addr) != 0 ||
		   (o->http && *n->http && strcmp(n->http, o->http) != 0)) {
		fprintf(stderr, "confmanctl: node %" PRIu64 " exists with address %s%s%s\n", id,
			n->addr, *n->http ? ", http " : "", n->http);
		code = CM_CTL_CONFLICT;
	}
	cm_shards_free(m);
	return code;
}

/* Run fn until it succeeds, fails for good or time is up; -EEXIST passes. */
static int retried(struct run *r, const char *what, int (*fn)(struct run *r, void *arg),
		   void *arg)
{
	for (;;) {
		int rv = fn(r, arg);
		if (rv == 0 || rv == -EEXIST || !transient(rv))
			return rv;
		if (!backoff(r, what, rv))
			return rv;
	}
}

struct add_call {
	uint64_t id;
	const struct add_opts *o;
	uint64_t index;
};

static int add_record(struct run *r, void *arg)
{
	struct add_call *a = arg;
	return cm_node_add(r->c, a->id, a->o->addr, a->o->http);
}

static int add_learner(struct run *r, void *arg)
{
	struct add_call *a = arg;
	return cm_conf_change(r->c, CM_META_GROUP, CM_CONF_ADD_LEARNER, a->id, &a->index);
}

static int node_add(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	static const struct option lo[] = {{"address", required_argument, NULL, 'a'},
					   {"http", required_argument, NULL, 'H'},
					   {"timeout", required_argument, NULL, 'T'},
					   {"json", no_argument, NULL, 'j'}, {0}};
	struct add_opts o = {.cc = cc, .timeout_s = MOVE_TIMEOUT_S};
	int rv = 0;
	int first = opts_parse(argc, argv, "a:H:T:j", lo, add_opt, &o, &rv);
	if (first < 0)
		return rv;
	struct add_call a = {.o = &o};
	if (argc - first != 1 || !parse_id(argv[first], &a.id))
		return cm_ctl_usage("node add: expected a node id (1 or more)");
	if (o.addr == NULL)
		return cm_ctl_usage("node add: --address is required");
	struct run r;
	if ((rv = open_run(cc, &r, o.timeout_s)) != 0)
		return rv;
	rv = retried(&r, "node add", add_record, &a);
	if (rv == -EEXIST && (rv = node_add_check(&r, a.id, &o)) != 0)
		return rv;
	if (rv != 0)
		return cm_ctl_fail("node add", rv);
	rv = retried(&r, "node add: meta group", add_learner, &a);
	if (rv != 0 && rv != -EEXIST)
		return cm_ctl_fail("node add: meta group", rv);
	if (cc->json) {
		printf("{\"id\":%" PRIu64 ",\"addr\":", a.id);
		cm_ctl_json_str(stdout, o.addr, strlen(o.addr));
		fputs(",\"meta\":\"learner\"}\n", stdout);
	} else
		printf("node %" PRIu64 " (%s): recorded; a meta learner\n", a.id, o.addr);
	return CM_CTL_OK;
}

/* ---- node remove ---- */

/* Where the replicas of a node being removed go: per shard, its set with
 * the node replaced by the least loaded --to node not already there. */
struct evac {
	uint64_t id;
	const uint64_t *to;
	uint32_t n_to;
	uint32_t *load;       /* per --to node: shards listing it */
	struct move *moves;   /* one per shard listing id */
	uint64_t (*sets)[CM_PLAN_MAX];
	uint32_t n_moves;
	uint64_t meta_in;     /* meta: the --to node that takes id's vote, 0 none */
};

static bool listed(const uint64_t *ids, uint32_t n, uint64_t id)
{
	for (uint32_t k = 0; k < n; k++)
		if (ids[k] == id)
			return true;
	return false;
}

/* The least loaded --to node not in set, or -1. */
static int pick_to(const struct evac *e, const uint64_t *set, uint32_t n)
{
	int best = -1;
	for (uint32_t k = 0; k < e->n_to; k++)
		if (!listed(set, n, e->to[k]) && (best < 0 || e->load[k] < e->load[best]))
			best = (int)k;
	return best;
}

/* Plan every shard's new set; false (and a line per shard) if some shard
 * has nowhere to go. */
static bool evac_plan(struct evac *e, const struct cm_shard_map *m)
{
	for (uint32_t j = 0; j < e->n_to; j++)
		for (uint32_t k = 0; k < m->n_shards; k++)
			e->load[j] += listed(m->shards[k].replicas, m->shards[k].n_replicas, e->to[j]);
	bool ok = true;
	for (uint32_t k = 0; k < m->n_shards; k++) {
		const struct cm_shard_info *sh = &m->shards[k];
		if (!listed(sh->replicas, sh->n_replicas, e->id))
			continue;
		int p = pick_to(e, sh->replicas, sh->n_replicas);
		if (p < 0) {
			fprintf(stderr, "confmanctl: %s (group %" PRIu64 "): nowhere to move node %"
					PRIu64 "'s replica: name a --to node that is not a replica\n",
				sh->prefix, sh->group, e->id);
			ok = false;
			continue;
		}
		e->load[p]++;
		uint64_t *set = e->sets[e->n_moves];
		uint32_t n = 0;
		for (uint32_t j = 0; j < sh->n_replicas; j++)
			set[n++] = sh->replicas[j] == e->id ? e->to[p] : sh->replicas[j];
		e->moves[e->n_moves++] = (struct move){.group = sh->group, .label = sh->prefix,
						       .target = set, .n = n, .gone = e->id};
	}
	return ok;
}

/* The meta group without id: its voters, one --to node in id's place. */
static int evac_meta(struct evac *e, const struct cm_group_info *g, uint64_t *set, uint32_t *n)
{
	bool voter = false;
	*n = 0;
	for (uint32_t k = 0; k < g->n_members; k++) {
		bool v = g->kinds[k] != 2;
		if (g->members[k] == e->id)
			voter = v;
		else if (v)
			set[(*n)++] = g->members[k];
	}
	if (!voter)
		return 0;
	int p = pick_to(e, set, *n);
	if (p < 0) {
		fprintf(stderr, "confmanctl: meta: node %" PRIu64 " is a meta voter: name a --to"
				" node that is not one, to keep the voter count\n", e->id);
		return CM_CTL_USAGE;
	}
	set[(*n)++] = e->meta_in = e->to[p];
	return 0;
}

static int remove_record(struct run *r, void *arg)
{
	int rv = cm_node_remove(r->c, *(uint64_t *)arg);
	return rv == -EBUSY ? CM_ECONFPENDING : rv; /* the registry catching up: again */
}

/* Check --to and the node; 0 to go on, else the exit code (-1: done). */
static int evac_check(struct evac *e, const struct cm_shard_map *m)
{
	const struct cm_node_info *n = node_of(m, e->id);
	if (n == NULL) {
		fprintf(stderr, "confmanctl: node %" PRIu64 ": no such node\n", e->id);
		return CM_CTL_NOTFOUND;
	}
	if (!node_active(n)) {
		printf("node %" PRIu64 ": removed already\n", e->id);
		return -1;
	}
	for (uint32_t k = 0; k < e->n_to; k++) {
		if (e->to[k] == e->id || !node_active(node_of(m, e->to[k]))) {
			fprintf(stderr, "confmanctl: --to %" PRIu64 ": not an active node other"
					" than %" PRIu64 "\n", e->to[k], e->id);
			return CM_CTL_USAGE;
		}
	}
	return 0;
}

/* Everything planned before anything changes; then shards, meta, the table. */
static int evac_run(struct run *r, struct evac *e, const struct cm_shard_map *m)
{
	int rv = evac_check(e, m);
	if (rv != 0)
		return rv < 0 ? CM_CTL_OK : rv;
	struct cm_node_status *st = NULL;
	while ((rv = cm_member_status(r->c, CM_META_GROUP, &st)) != 0)
		if (!transient(rv) || !backoff(r, "meta", rv))
			return cm_ctl_fail("meta", rv);
	uint64_t meta_set[CM_PLAN_MAX];
	uint32_t n_meta = 0;
	const struct cm_group_info *g = cm_status_group(st, CM_META_GROUP);
	bool member = g != NULL && listed(g->members, g->n_members, e->id);
	rv = g == NULL ? cm_ctl_fail("meta", -EPROTO) : 0;
	if (rv == 0 && (!evac_plan(e, m) || (member && evac_meta(e, g, meta_set, &n_meta))))
		rv = CM_CTL_USAGE; /* refused: nothing changed */
	cm_status_free(st);
	for (uint32_t k = 0; rv == 0 && k < e->n_moves; k++)
		rv = move_group(r, &e->moves[k]);
	struct move mv = {.group = CM_META_GROUP, .label = "meta", .target = meta_set,
			  .n = n_meta, .gone = e->id};
	if (rv == 0 && member)
		rv = move_group(r, &mv);
	if (rv != 0)
		return rv;
	rv = retried(r, "node remove", remove_record, &e->id);
	if (rv != 0 && rv != CM_ENONODE)
		return cm_ctl_fail("node remove", rv);
	if (r->cc->json)
		printf("{\"id\":%" PRIu64 ",\"state\":\"removed\"}\n", e->id);
	else
		printf("node %" PRIu64 ": removed\n", e->id);
	return CM_CTL_OK;
}

static int node_remove(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	struct move_opts o = {.cc = cc, .n = -1, .timeout_s = MOVE_TIMEOUT_S};
	int rv = 0;
	int first = opts_parse(argc, argv, "o:T:j", move_lopts, move_opt, &o, &rv);
	if (first < 0)
		return rv;
	struct evac e = {0};
	uint64_t to[CM_PLAN_MAX];
	int n_to = o.to ? cm_ctl_parse_ids(o.to, to, CM_PLAN_MAX) : 0;
	if (argc - first != 1 || !parse_id(argv[first], &e.id))
		return cm_ctl_usage("node remove: expected a node id (1 or more)");
	if (o.n >= 0 || n_to < 0)
		return cm_ctl_usage("node remove: --to wants node ids like 4,5");
	struct run r;
	struct cm_shard_map *m;
	if ((rv = open_run(cc, &r, o.timeout_s)) != 0)
		return rv;
	if ((rv = cm_shards(r.c, &m)) != 0)
		return cm_ctl_fail("node remove", rv);
	e.to = to;
	e.n_to = (uint32_t)n_to;
	e.load = calloc(CM_PLAN_MAX, sizeof(*e.load));
	e.moves = calloc(m->n_shards + 1, sizeof(*e.moves));
	e.sets = calloc(m->n_shards + 1, sizeof(*e.sets));
	rv = e.load && e.moves && e.sets ? evac_run(&r, &e, m) : cm_ctl_fail("node remove", -ENOMEM);
	free(e.load);
	free(e.moves);
	free(e.sets);
	cm_shards_free(m);
	return rv;
}

int cm_ctl_node(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	if (argc < 2)
		return cm_ctl_usage("node: expected a subcommand (list, add, remove)");
	if (strcmp(argv[1], "list") == 0)
		return node_list(cc, argc - 1, argv + 1);
	if (strcmp(argv[1], "add") == 0)
		return node_add(cc, argc - 1, argv + 1);
	if (strcmp(argv[1], "remove") == 0)
		return node_remove(cc, argc - 1, argv + 1);
	return cm_ctl_usage("node: unknown subcommand '%s'", argv[1]);
}
