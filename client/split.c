/* split.c: the blocking API for splitting a shard off a written prefix and
 * merging it back (server/split.c and server/merge.c say what each step
 * does on the servers). Every step is answered as the first time when it
 * is repeated, so a caller that failed halfway calls again. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "client/client_int.h"
#include "confman/path.h"

/* The shard whose prefix is exactly p (exact) or the longest one above it. */
static const struct cm_shard_info *owner(const struct cm_shard_map *m, const char *p, bool exact)
{
	const struct cm_shard_info *best = NULL;
	size_t len = strlen(p);
	for (uint32_t k = 0; k < m->n_shards; k++) {
		const struct cm_shard_info *s = &m->shards[k];
		size_t n = strlen(s->prefix);
		if (exact ? (n == len && memcmp(s->prefix, p, n) == 0)
			  : cm_path_is_under(p, (uint32_t)len, s->prefix, (uint32_t)n) &&
				    (best == NULL || n > strlen(best->prefix)))
			best = s;
	}
	return best;
}

/* One request to completion; attr (may be NULL) gets the answer's. */
static int step(struct cm_client *c, const struct cm_req *r, struct cm_attr *attr)
{
	struct cm_client__call s = {.attr = attr};
	return cm_client__run(c, NULL, r, &s);
}

int cm_shard_split(struct cm_client *c, const char *prefix, uint64_t *group, uint64_t *born)
{
	struct cm_bytes p;
	struct cm_shard_map *m;
	if (c == NULL || cm_client__path(prefix, &p) != 0 || p.len < 2)
		return -EINVAL;
	int rv = cm_shards(c, &m);
	if (rv != 0)
		return rv;
	const struct cm_shard_info *par = owner(m, prefix, false);
	char value[CM_CLIENT_MAX_REPLICAS * 21 + 40];
	size_t len = 0;
	uint64_t parent = par ? par->group : 0;
	for (uint32_t k = 0; par != NULL && k < par->n_replicas; k++)
		len += (size_t)snprintf(value + len, sizeof(value) - len, k ? ",%" PRIu64 : "%" PRIu64,
					par->replicas[k]);
	snprintf(value + len, sizeof(value) - len, " split %" PRIu64, parent);
	rv = par == NULL ? -EPROTO : owner(m, prefix, true) != NULL ? -EEXIST : 0;
	cm_shards_free(m);
	struct cm_attr a = {0};
	struct cm_req alloc = {.op = CM_OP_SHARD_ADD, .group = CM_META_GROUP, .path = p,
			       .value = {value, (uint32_t)strlen(value)}};
	if (rv == 0)
		rv = step(c, &alloc, &a);
	uint64_t gid = CM_SHARD_GID_BASE + a.create_index;
	struct cm_req split = {.op = CM_OP_SHARD_SPLIT, .group = parent, .path = p, .version = gid};
	if (rv == 0 && (rv = step(c, &split, &a)) == 0 && a.mod_index == 0)
		rv = -EPROTO;
	struct cm_req birth = {.op = CM_OP_SHARD_SPLIT, .group = CM_META_GROUP, .path = p,
			       .version = a.mod_index};
	if (rv == 0)
		rv = step(c, &birth, NULL);
	if (rv != 0)
		return rv;
	cm_client__refresh_map(c);
	if (group)
		*group = gid;
	if (born)
		*born = birth.version;
	return 0;
}

/* ---- merge ---- */

struct copy {
	struct cm_client *c;
	uint64_t parent;
	uint64_t copied;
	cm_merge_progress_fn progress;
	void *arg;
};

static int copy_one(struct copy *cp, const char *path, const struct cm_attr *at)
{
	struct cm_req r = {.group = cp->parent, .flags = CM_MERGE_COPY, .mode = at->mode,
			   .uid = at->uid, .gid = at->gid};
	cm_client__path(path, &r.path);
	void *value = NULL;
	int rv = 0;
	if (S_ISDIR(at->mode)) {
		r.op = CM_OP_MKDIR;
		rv = step(cp->c, &r, NULL);
		rv = rv == -EEXIST ? 0 : rv; /* a merge run again */
	} else {
		uint32_t len = 0;
		struct cm_attr now;
		rv = cm_get(cp->c, path, &value, &len, &now);
		r.op = CM_OP_PUT;
		r.flags |= CM_SET_MODE | CM_SET_TIMES;
		r.value = (struct cm_bytes){value, len};
		r.atime_ns = now.atime_ns;
		r.mtime_ns = now.mtime_ns;
		r.version = now.version; /* kept: a key's version never goes back */
		if (rv == 0)
			rv = step(cp->c, &r, NULL);
		free(value);
	}
	if (rv == 0 && ++cp->copied % 1000 == 0 && cp->progress)
		cp->progress(cp->arg, cp->copied);
	return rv;
}

/* Depth first: a directory before what it holds. */
static int copy_tree(struct copy *cp, const char *dir)
{
	struct cm_list_entry *ents;
	uint32_t n;
	int rv = cm_list(cp->c, dir, &ents, &n);
	for (uint32_t k = 0; rv == 0 && k < n; k++) {
		char path[CM_PATH_MAX + 1];
		int l = snprintf(path, sizeof(path), "%s/%s", dir, ents[k].name);
		if (l < 0 || (size_t)l >= sizeof(path)) {
			rv = -ENAMETOOLONG;
			break;
		}
		rv = copy_one(cp, path, &ents[k].attr);
		if (rv == 0 && S_ISDIR(ents[k].attr.mode))
			rv = copy_tree(cp, path);
	}
	cm_list_free(ents, n);
	return rv;
}

/* One phase at group; attr and token (may be NULL) of its answer. */
static int phase(struct cm_client *c, uint64_t group, const struct cm_bytes *p, uint32_t which,
		 uint64_t version, struct cm_attr *attr, uint64_t *token)
{
	struct cm_req r = {.op = CM_OP_SHARD_MERGE, .group = group, .flags = which, .path = *p,
			   .version = version};
	struct cm_client__call s = {.attr = attr};
	int rv = cm_client__run(c, NULL, &r, &s);
	if (token)
		*token = s.token;
	return rv;
}

int cm_shard_merge(struct cm_client *c, const char *prefix, cm_merge_progress_fn progress,
		   void *arg)
{
	struct cm_bytes p;
	struct cm_shard_map *m;
	if (c == NULL || cm_client__path(prefix, &p) != 0 || p.len < 2)
		return -EINVAL;
	int rv = cm_shards(c, &m);
	if (rv != 0)
		return rv;
	const struct cm_shard_info *child = owner(m, prefix, true);
	char up[CM_PATH_MAX + 1];
	const char *slash = strrchr(prefix, '/');
	size_t ul = slash == prefix ? 1 : (size_t)(slash - prefix);
	memcpy(up, prefix, ul);
	up[ul] = '\0';
	const struct cm_shard_info *par = owner(m, up, false);
	uint64_t cg = child ? child->group : 0, pg = par ? par->group : 0;
	cm_shards_free(m);
	if (cg == 0)
		return -ENOENT; /* no such shard; or merged already */
	struct copy cp = {.c = c, .parent = pg, .progress = progress, .arg = arg};
	struct cm_attr frozen = {0};
	rv = phase(c, cg, &p, CM_MERGE_FREEZE, 0, &frozen, NULL);
	/* Until the parent's index is past every index the child gave (its
	 * freeze's): merge.c pads the parent's log with BEGIN. */
	for (uint64_t at = 0; rv == 0 && at <= frozen.mod_index;)
		rv = phase(c, pg, &p, CM_MERGE_BEGIN, frozen.mod_index, NULL, &at);
	if (rv == 0)
		rv = copy_tree(&cp, prefix);
	if (rv == 0)
		rv = phase(c, pg, &p, CM_MERGE_COMMIT, 0, NULL, NULL);
	if (rv == 0)
		rv = phase(c, CM_META_GROUP, &p, CM_MERGE_RETIRE, 0, NULL, NULL);
	if (rv == 0)
		cm_client__refresh_map(c);
	return rv;
}
