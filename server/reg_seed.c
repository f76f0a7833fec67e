/* reg_seed.c: the registry's seed, the cluster file's groups as the meta
 * group recorded them at the cluster's first start. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confman/path.h"
#include "server/kv.h"
#include "server/log.h"
#include "server/registry.h"

/* One line per group: "ID R1,R2,R3 PREFIX\n". The prefix goes last since it
 * may hold spaces; INI values never hold a newline. */
static int line_put(char *buf, size_t cap, size_t *at, const struct cm_group_info *gi)
{
	int w = snprintf(buf + *at, cap - *at, "%" PRIu64 " ", gi->id);
	for (uint32_t k = 0; w >= 0 && (size_t)w < cap - *at && k < gi->n_replicas; k++)
		w += snprintf(buf + *at + w, cap - *at - (size_t)w, "%s%" PRIu64, k ? "," : "",
			      gi->replicas[k]);
	if (w >= 0 && (size_t)w < cap - *at)
		w += snprintf(buf + *at + w, cap - *at - (size_t)w, " %s\n", gi->prefix);
	if (w < 0 || (size_t)w >= cap - *at)
		return -ENOSPC;
	*at += (size_t)w;
	return 0;
}

int cm_reg_seed_text(const struct cm_config *cfg, char **out, uint32_t *len)
{
	/* id, space, replicas (20 digits and a comma each), space, prefix, newline */
	size_t cap = 1;
	for (uint32_t k = 0; k < cfg->n_groups; k++)
		cap += 22 + 21 * (size_t)cfg->groups[k].n_replicas + strlen(cfg->groups[k].prefix) + 2;
	char *buf = malloc(cap);
	if (buf == NULL)
		return -ENOMEM;
	size_t at = 0;
	for (uint32_t k = 0; k < cfg->n_groups; k++) {
		int rv = line_put(buf, cap, &at, &cfg->groups[k]);
		if (rv != 0) {
			free(buf);
			return rv;
		}
	}
	*out = buf;
	*len = (uint32_t)at;
	return 0;
}

/* One line (without its newline) into gi; every replica must be a node of cfg. */
static int line_parse(const struct cm_config *cfg, const char *p, size_t len,
		      struct cm_group_info *gi)
{
	const char *sp1 = memchr(p, ' ', len);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - p)) : NULL;
	if (sp2 == NULL)
		return -EINVAL;
	char idbuf[24];
	size_t idlen = (size_t)(sp1 - p), plen = len - (size_t)(sp2 + 1 - p);
	if (idlen == 0 || idlen >= sizeof(idbuf) || plen > CM_PATH_MAX)
		return -EINVAL;
	memcpy(idbuf, p, idlen);
	idbuf[idlen] = '\0';
	char *end;
	unsigned long long id = strtoull(idbuf, &end, 10);
	if (*end != '\0' || id == 0 || id >= CM_SHARD_GID_BASE - 1)
		return -EINVAL;
	memset(gi, 0, sizeof(*gi));
	gi->id = id;
	memcpy(gi->prefix, sp2 + 1, plen);
	gi->prefix[plen] = '\0';
	if (cm_path_validate(gi->prefix, (uint32_t)plen) != 0)
		return -EINVAL;
	return cm_reg_parse_replicas(cfg, sp1 + 1, (uint32_t)(sp2 - sp1 - 1), gi->replicas,
				     &gi->n_replicas);
}

int cm_reg_seed_parse(const struct cm_config *cfg, const char *p, uint32_t len,
		      struct cm_group_info **out, uint32_t *n)
{
	uint32_t lines = 0;
	for (uint32_t k = 0; k < len; k++)
		lines += p[k] == '\n';
	if (len == 0 || p[len - 1] != '\n' || lines > CM_MAX_SHARDS)
		return -EINVAL;
	struct cm_group_info *v = calloc(lines, sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	uint32_t at = 0;
	for (uint32_t k = 0; k < lines; k++) {
		const char *nl = memchr(p + at, '\n', len - at);
		int rv = line_parse(cfg, p + at, (size_t)(nl - (p + at)), &v[k]);
		if (rv != 0) {
			free(v);
			return rv;
		}
		at = (uint32_t)(nl + 1 - p);
	}
	*out = v;
	*n = lines;
	return 0;
}

static bool same_replicas(const struct cm_group_info *a, const struct cm_group_info *b)
{
	if (a->n_replicas != b->n_replicas)
		return false;
	for (uint32_t k = 0; k < a->n_replicas; k++)
		if (!cm_reg_hosts(b, a->replicas[k]))
			return false;
	return true;
}

static const struct cm_group_info *by_id(const struct cm_group_info *v, uint32_t n, uint64_t id)
{
	for (uint32_t k = 0; k < n; k++)
		if (v[k].id == id)
			return &v[k];
	return NULL;
}

uint32_t cm_reg_seed_diff(const struct cm_config *cfg, const struct cm_group_info *seed,
			  uint32_t n, bool log)
{
	uint32_t diffs = 0;
	for (uint32_t k = 0; k < cfg->n_groups; k++) {
		const struct cm_group_info *c = &cfg->groups[k], *s = by_id(seed, n, c->id);
		if (s != NULL && strcmp(s->prefix, c->prefix) == 0 && same_replicas(s, c))
			continue;
		diffs++;
		if (log && s == NULL)
			cm_log_warn("cluster file: [group.%" PRIu64 "] (%s) is not in the registry",
				    c->id, c->prefix);
		else if (log)
			cm_log_warn("cluster file: [group.%" PRIu64 "] is %s, the registry's %s "
				    "(or its replicas differ)", c->id, c->prefix, s->prefix);
	}
	for (uint32_t k = 0; k < n; k++) {
		if (by_id(cfg->groups, cfg->n_groups, seed[k].id) != NULL)
			continue;
		diffs++;
		if (log)
			cm_log_warn("registry: group %" PRIu64 " (%s) is not in the cluster file",
				    seed[k].id, seed[k].prefix);
	}
	return diffs;
}
