/* snap.h: confmanctl's backup commands (snap_save.c, snap_check.c, snap_restore.c). */
#ifndef CONFMAN_CTL_SNAP_H
#define CONFMAN_CTL_SNAP_H

#include <stdbool.h>
#include <stdint.h>

struct cm_client;

/* The record count a group's tree starts with (a msgpack array header, as
 * cm_kv_snapshot writes it). 0 or -EBADMSG. */
int cm_snap_blob_count(const void *p, uint64_t len, uint64_t *count);

/* One record of a group's tree (cm_kv_snapshot's fields, those a restore
 * uses); pointers into the blob. */
struct cm_snap_rec {
	const char *path;
	uint32_t path_len;
	uint32_t mode, uid, gid, flags;
	int64_t mtime_ns, atime_ns;
	uint64_t version, create_index, mod_index;
	const void *value;
	uint32_t value_len;
};
/* Walk a tree's records in order; cb's nonzero value stops it. 0, the
 * callback's value, or -EBADMSG (not a tree: with why). */
int cm_snap_blob_walk(const void *p, uint64_t len, int (*cb)(void *arg, const struct cm_snap_rec *r),
		      void *arg);

/* Exit codes (ctl.h). save: then read back and verify. */
int cm_ctl_snap_save(struct cm_client *c, const char *cluster, const char *path, bool from_leader,
		     bool json);
/* quiet: only errors. */
int cm_ctl_snap_verify(const char *path, bool json, bool quiet);
/* keys: every record as one JSON line (path, attributes, base64 value). */
int cm_ctl_snap_inspect(const char *path, bool json, bool keys);
int cm_ctl_snap_restore(struct cm_client *c, const char *file, const char *from, const char *to,
			bool force);

#endif /* CONFMAN_CTL_SNAP_H */
