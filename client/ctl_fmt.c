/* ctl_fmt.c: confmanctl's helpers: JSON, base64, modes, times, status, shards, exit codes. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "client/ctl.h"
#include "confman/client.h"

int cm_ctl_fail(const char *what, int err)
{
	/* strerror's "Operation canceled" would puzzle whoever ran a CAS. */
	const char *msg = err == -ECANCELED ? "version mismatch (compare-and-set failed)"
					    : cm_strerror(err);
	fprintf(stderr, "confmanctl: %s: %s (%s)\n", what, msg, cm_errname(err));
	return cm_ctl_exit_code(err);
}

int cm_ctl_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("confmanctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\nTry 'confmanctl help'.\n", stderr);
	va_end(ap);
	return CM_CTL_USAGE;
}

int cm_ctl_exit_code(int err)
{
	switch (err) {
	case 0:
		return CM_CTL_OK;
	case -ENOENT:
		return CM_CTL_NOTFOUND;
	case -ECANCELED: case -EEXIST:
		return CM_CTL_CONFLICT;
	case CM_ENONODE:
		return CM_CTL_NOTFOUND;
	case CM_ENOQUORUM:
		return CM_CTL_USAGE; /* refused: nothing changed */
	case -EACCES: case -EPERM:
		return CM_CTL_DENIED;
	case -ETIMEDOUT: case -ECONNREFUSED: case -ECONNRESET: case -EHOSTUNREACH:
	case -ENETUNREACH: case -EIO: case CM_ENOLEADER: case CM_ENOTLEADER:
	case CM_ETRANSFERRING: case CM_ESTALE: case CM_ESHUTDOWN: case CM_EWRONGSHARD:
	case CM_ECONFPENDING: case CM_ELAGGING:
		return CM_CTL_UNAVAILABLE;
	case -EINVAL: case -ENAMETOOLONG: case -EFBIG: case -ENOTEMPTY: case -EISDIR:
	case -ENOTDIR: case -EMSGSIZE:
		return CM_CTL_INVALID;
	default:
		return CM_CTL_ERROR;
	}
}

/* Length of the UTF-8 sequence starting at p (n bytes left), 0 if malformed. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t cp;
	if (p[0] < 0x80)
		return p[0] != 0;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, cp = p[0] & 0x1fu;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, cp = p[0] & 0x0fu;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, cp = p[0] & 0x07u;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[k] & 0x3fu);
	}
	/* Overlong forms, surrogates and beyond U+10FFFF are not UTF-8. */
	static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

bool cm_ctl_utf8_valid(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	for (size_t k = 0; k < n;) {
		size_t l = utf8_seq(u + k, n - k);
		if (l == 0)
			return false;
		k += l;
	}
	return true;
}

void cm_ctl_json_str(FILE *f, const char *p, size_t n)
{
	fputc('"', f);
	for (size_t k = 0; k < n; k++) {
		unsigned char c = (unsigned char)p[k];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void cm_ctl_base64(FILE *f, const void *data, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = data;
	fputc('"', f);
	for (size_t k = 0; k < n; k += 3) {
		uint32_t v = (uint32_t)p[k] << 16;
		if (k + 1 < n)
			v |= (uint32_t)p[k + 1] << 8;
		if (k + 2 < n)
			v |= p[k + 2];
		fputc(tab[v >> 18 & 63], f);
		fputc(tab[v >> 12 & 63], f);
		fputc(k + 1 < n ? tab[v >> 6 & 63] : '=', f);
		fputc(k + 2 < n ? tab[v & 63] : '=', f);
	}
	fputc('"', f);
}

void cm_ctl_mode_str(uint32_t mode, char out[11])
{
	static const char rwx[] = "rwxrwxrwx";
	out[0] = S_ISDIR(mode) ? 'd' : S_ISLNK(mode) ? 'l' : '-';
	for (int k = 0; k < 9; k++)
		out[k + 1] = mode & (1u << (8 - k)) ? rwx[k] : '-';
	out[10] = '\0';
}

void cm_ctl_time_str(int64_t ns, char *out, size_t n)
{
	time_t s = (time_t)(ns / 1000000000);
	struct tm tm;
	if (gmtime_r(&s, &tm) == NULL || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, n, "-");
}

const char *cm_ctl_kind_name(uint8_t kind)
{
	static const char *const names[] = {"?", "put", "delete", "mkdir", "rename", "resync"};
	return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

const char *cm_ctl_role_name(uint8_t role)
{
	static const char *const names[] = {"?", "follower", "pre-candidate", "candidate",
					    "leader"};
	return role < sizeof(names) / sizeof(names[0]) ? names[role] : "?";
}

/* ---- status ---- */

static bool is_learner(const struct cm_group_info *g, uint32_t k)
{
	return g->kinds[k] == 2;
}

/* The leader's view of its members: match and lag each, and a pending change. */
static void print_members_text(FILE *f, const struct cm_group_info *g)
{
	bool has_match = false;
	for (uint32_t k = 0; k < g->n_members; k++)
		has_match |= g->match[k] != 0;
	if (!has_match && !g->conf_pending)
		return;
	fputs("         ", f);
	for (uint32_t k = 0; has_match && k < g->n_members; k++) {
		uint64_t lag = g->last > g->match[k] ? g->last - g->match[k] : 0;
		fprintf(f, "%snode %" PRIu64 " %s match %" PRIu64 " lag %" PRIu64, k ? "; " : "",
			g->members[k], is_learner(g, k) ? "learner" : "voter", g->match[k], lag);
	}
	fprintf(f, "%s\n", g->conf_pending ? (has_match ? "; change pending" : "change pending")
					   : "");
}

static void print_group_text(FILE *f, const struct cm_group_info *g)
{
	fprintf(f, "  %-6" PRIu64 " %-16s %-13s %6" PRIu64 " %6" PRIu64 " %8" PRIu64 " %8" PRIu64
		   " %8" PRIu64 " %8" PRIu64 "  ",
		   g->group, g->prefix, cm_ctl_role_name(g->role), g->term, g->leader, g->commit,
		   g->applied, g->last, g->snap_index);
	for (uint32_t k = 0; k < g->n_members; k++)
		fprintf(f, "%s%" PRIu64 "%s", k ? "," : "", g->members[k],
			is_learner(g, k) ? "(learner)" : "");
	fputc('\n', f);
	print_members_text(f, g);
}

static void print_status_text(FILE *f, const char *addr, const struct cm_node_status *st,
			      int err)
{
	if (err) {
		fprintf(f, "%s  unreachable: %s (%s)\n", addr, cm_strerror(err), cm_errname(err));
		return;
	}
	fprintf(f, "%s  node %" PRIu64 "\n", addr, st->node_id);
	if (st->has_health)
		cm_ctl_print_health_text(f, &st->health);
	fprintf(f, "  %-6s %-16s %-13s %6s %6s %8s %8s %8s %8s  %s\n", "GROUP", "PREFIX", "ROLE",
		   "TERM", "LEADER", "COMMIT", "APPLIED", "LAST", "SNAP", "MEMBERS");
	for (uint32_t k = 0; k < st->n_groups; k++)
		print_group_text(f, &st->groups[k]);
}

static void print_group_json(FILE *f, const struct cm_group_info *g)
{
	fprintf(f, "{\"group\":%" PRIu64 ",\"prefix\":", g->group);
	cm_ctl_json_str(f, g->prefix, strlen(g->prefix));
	fprintf(f, ",\"role\":\"%s\",\"term\":%" PRIu64 ",\"leader\":%" PRIu64
		   ",\"commit\":%" PRIu64 ",\"applied\":%" PRIu64 ",\"last\":%" PRIu64
		   ",\"snap_index\":%" PRIu64 ",\"members\":[",
		   cm_ctl_role_name(g->role), g->term, g->leader, g->commit, g->applied, g->last,
		   g->snap_index);
	bool has_match = false;
	for (uint32_t k = 0; k < g->n_members; k++) {
		fprintf(f, k ? ",%" PRIu64 : "%" PRIu64, g->members[k]);
		has_match |= g->match[k] != 0;
	}
	fputs("],\"kinds\":[", f);
	for (uint32_t k = 0; k < g->n_members; k++)
		fprintf(f, "%s\"%s\"", k ? "," : "", is_learner(g, k) ? "learner" : "voter");
	/* match and lag: the leader's view, null elsewhere. */
	fputs("],\"match\":", f);
	for (uint32_t k = 0; has_match && k < g->n_members; k++)
		fprintf(f, "%s%" PRIu64, k ? "," : "[", g->match[k]);
	fputs(has_match ? "],\"lag\":" : "null,\"lag\":", f);
	for (uint32_t k = 0; has_match && k < g->n_members; k++)
		fprintf(f, "%s%" PRIu64, k ? "," : "[",
			g->last > g->match[k] ? g->last - g->match[k] : 0);
	fprintf(f, "%s,\"conf_pending\":%s}", has_match ? "]" : "null",
		g->conf_pending ? "true" : "false");
}

static void print_status_json(FILE *f, const char *addr, const struct cm_node_status *st,
			      int err)
{
	fputs("{\"addr\":", f);
	cm_ctl_json_str(f, addr, strlen(addr));
	if (err) {
		fprintf(f, ",\"reachable\":false,\"error\":\"%s\",\"message\":", cm_errname(err));
		const char *m = cm_strerror(err);
		cm_ctl_json_str(f, m, strlen(m));
		fputc('}', f);
		return;
	}
	fprintf(f, ",\"reachable\":true,\"node_id\":%" PRIu64 ",\"groups\":[", st->node_id);
	for (uint32_t k = 0; k < st->n_groups; k++) {
		if (k)
			fputc(',', f);
		print_group_json(f, &st->groups[k]);
	}
	fputc(']', f);
	if (st->has_health) {
		fputs(",\"health\":", f);
		cm_ctl_print_health_json(f, &st->health);
	}
	fputc('}', f);
}

void cm_ctl_print_status(FILE *f, const char *addr, const struct cm_node_status *st, int err,
			 bool json)
{
	if (json)
		print_status_json(f, addr, st, err);
	else
		print_status_text(f, addr, st, err);
}

/* ---- shards ---- */

static void print_ids(FILE *f, const uint64_t *ids, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++)
		fprintf(f, k ? ",%" PRIu64 : "%" PRIu64, ids[k]);
}

static void print_shards_text(FILE *f, const struct cm_shard_map *m)
{
	fprintf(f, "epoch %" PRIu64 "\n", m->epoch);
	fprintf(f, "%-10s %-24s %s\n", "GROUP", "PREFIX", "REPLICAS");
	for (uint32_t k = 0; k < m->n_shards; k++) {
		const struct cm_shard_info *s = &m->shards[k];
		fprintf(f, "%-10" PRIu64 " %-24s ", s->group, s->prefix);
		print_ids(f, s->replicas, s->n_replicas);
		fputc('\n', f);
	}
	fprintf(f, "\n%-10s %s\n", "NODE", "ADDR");
	for (uint32_t k = 0; k < m->n_nodes; k++)
		fprintf(f, "%-10" PRIu64 " %s\n", m->nodes[k].id, m->nodes[k].addr);
}

static void print_shards_json(FILE *f, const struct cm_shard_map *m)
{
	fprintf(f, "{\"epoch\":%" PRIu64 ",\"shards\":[", m->epoch);
	for (uint32_t k = 0; k < m->n_shards; k++) {
		const struct cm_shard_info *s = &m->shards[k];
		fprintf(f, "%s{\"group\":%" PRIu64 ",\"prefix\":", k ? "," : "", s->group);
		cm_ctl_json_str(f, s->prefix, strlen(s->prefix));
		fputs(",\"replicas\":[", f);
		print_ids(f, s->replicas, s->n_replicas);
		fputs("]}", f);
	}
	fputs("],\"nodes\":[", f);
	for (uint32_t k = 0; k < m->n_nodes; k++) {
		fprintf(f, "%s{\"id\":%" PRIu64 ",\"addr\":", k ? "," : "", m->nodes[k].id);
		cm_ctl_json_str(f, m->nodes[k].addr, strlen(m->nodes[k].addr));
		fputc('}', f);
	}
	fputs("]}\n", f);
}

void cm_ctl_print_shards(FILE *f, const struct cm_shard_map *m, bool json)
{
	if (json)
		print_shards_json(f, m);
	else
		print_shards_text(f, m);
}

int cm_ctl_parse_ids(const char *s, uint64_t *ids, int max)
{
	int n = 0;
	for (;;) {
		if (*s < '0' || *s > '9')
			return -1; /* empty, a sign, a space, a doubled comma */
		char *end;
		errno = 0;
		unsigned long long v = strtoull(s, &end, 10);
		if (errno != 0 || (*end != ',' && *end != '\0'))
			return -1;
		if (n == max)
			return -2;
		ids[n++] = v;
		if (*end == '\0')
			return n;
		s = end + 1;
	}
}
