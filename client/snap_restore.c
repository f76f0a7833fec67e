/* snap_restore.c: `confmanctl snapshot restore FILE --path P [--to Q]`: a
 * subtree of a backup written back into a running cluster as ordinary
 * writes (mounts see inotify events, watchers see events), values, modes,
 * owners and times as saved. Existing files are left alone, and nothing is
 * written at all, unless --force. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "client/client_int.h"
#include "client/ctl.h"
#include "client/snap.h"
#include "common/snapfile.h"
#include "confman/path.h"

enum pass { PASS_CHECK, PASS_DIRS, PASS_FILES };

struct restore {
	struct cm_client *c;
	const char *from, *to;
	size_t from_len;
	enum pass pass;
	bool force;
	uint64_t conflicts, dirs, files, failed;
};

/* The destination of a saved path under `from`, or -ENOENT if not under it. */
static int dest(const struct restore *rs, const struct cm_snap_rec *r, char *out, size_t cap)
{
	if (!cm_path_is_under(r->path, r->path_len, rs->from, (uint32_t)rs->from_len))
		return -ENOENT;
	const char *rest = r->path + (rs->from_len == 1 ? 0 : rs->from_len);
	size_t rl = r->path_len - (size_t)(rest - r->path);
	int n = snprintf(out, cap, "%s%.*s", strcmp(rs->to, "/") == 0 && rl ? "" : rs->to, (int)rl,
			 rest);
	return n > 0 && (size_t)n < cap && cm_path_validate(out, (uint32_t)n) == 0 ? 0 : -EINVAL;
}

static int write_rec(struct restore *rs, const struct cm_snap_rec *r, const char *path)
{
	bool dir = S_ISDIR(r->mode);
	struct cm_req q = {.mode = r->mode, .uid = r->uid, .gid = r->gid};
	cm_client__path(path, &q.path);
	if (dir) {
		q.op = CM_OP_MKDIR;
	} else {
		q.op = CM_OP_PUT;
		q.flags = CM_SET_MODE | CM_SET_TIMES | (rs->force ? 0 : CM_PUT_CREATE);
		q.value = (struct cm_bytes){r->value, r->value_len};
		q.atime_ns = r->atime_ns;
		q.mtime_ns = r->mtime_ns;
	}
	struct cm_client__call s = {0};
	int rv = cm_client__run(rs->c, NULL, &q, &s);
	if (dir && rv == -EEXIST)
		rv = 0; /* a directory that is there is fine */
	if (rv != 0) {
		fprintf(stderr, "confmanctl: restore %s: %s\n", path, cm_strerror(rv));
		rs->failed++;
	}
	return 0;
}

static int on_rec(void *arg, const struct cm_snap_rec *r)
{
	struct restore *rs = arg;
	char path[CM_PATH_MAX + 1];
	if (dest(rs, r, path, sizeof(path)) != 0 || (r->path_len == 1 && !S_ISDIR(r->mode)))
		return 0;
	bool dir = S_ISDIR(r->mode);
	if (rs->pass == PASS_CHECK) {
		struct cm_attr a;
		if (!dir && !rs->force && cm_get(rs->c, path, NULL, NULL, &a) == 0 &&
		    rs->conflicts++ < 10)
			fprintf(stderr, "confmanctl: restore: %s exists (--force overwrites)\n", path);
		return 0;
	}
	if (dir != (rs->pass == PASS_DIRS) || strcmp(path, "/") == 0)
		return 0;
	rs->dirs += dir;
	rs->files += !dir;
	return write_rec(rs, r, path);
}

/* One pass over every group's records. */
static int pass(struct restore *rs, const char *file)
{
	FILE *f = fopen(file, "rb");
	if (f == NULL)
		return cm_ctl_fail(file, -errno);
	struct cm_snap_rd r;
	int rv = cm_snap_rd_open(&r, f);
	while (rv == 0 && (rv = cm_snap_rd_next(&r)) == 1) {
		struct cm_snap_group g;
		rv = 0;
		if (r.sec.type != CM_SNAP_GROUP)
			continue;
		rv = cm_snap_group_parse(&r.sec, &g);
		if (rv == 0 && g.group != CM_META_GROUP)
			rv = cm_snap_blob_walk(g.blob, g.blob_len, on_rec, rs);
	}
	if (rv != 0)
		fprintf(stderr, "confmanctl: %s: %s\n", file, r.why[0] ? r.why : cm_strerror(rv));
	cm_snap_rd_close(&r);
	fclose(f);
	return rv == 0 ? 0 : CM_CTL_INVALID;
}

int cm_ctl_snap_restore(struct cm_client *c, const char *file, const char *from, const char *to,
			bool force)
{
	struct restore rs = {.c = c, .from = from, .to = to ? to : from, .force = force,
			     .from_len = strlen(from)};
	if (cm_path_validate(rs.from, (uint32_t)rs.from_len) != 0 ||
	    cm_path_validate(rs.to, (uint32_t)strlen(rs.to)) != 0)
		return cm_ctl_usage("snapshot restore: --path and --to take absolute paths");
	int rv = cm_ctl_snap_verify(file, false, true); /* a damaged file restores nothing */
	for (int p = PASS_CHECK; rv == 0 && p <= PASS_FILES; p++) {
		rs.pass = (enum pass)p;
		rv = pass(&rs, file);
		if (rv == 0 && p == PASS_CHECK && rs.conflicts > 0) {
			fprintf(stderr, "confmanctl: restore: %" PRIu64 " files exist; nothing written\n",
				rs.conflicts);
			return CM_CTL_CONFLICT;
		}
	}
	if (rv != 0)
		return rv;
	printf("restored %" PRIu64 " directories and %" PRIu64 " files from %s%s%s into %s%s\n",
	       rs.dirs, rs.files, file, ":", from, rs.to, rs.failed ? " (some failed)" : "");
	return rs.failed ? CM_CTL_ERROR : CM_CTL_OK;
}
