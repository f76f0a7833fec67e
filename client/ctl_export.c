/* ctl_export.c: `confmanctl export PATH [FILE|-]`: a subtree as a pax tar stream. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/ctl_tar.h"
#include "confman/client.h"
#include "confman/path.h"

/*
 * The tree is walked depth first with cm_list and cm_get, one request at a
 * time, each entry written as soon as it is read: memory holds one value
 * and one listing per level, never the tree. Every read is linearizable
 * (confmanctl's default), but the walk takes many reads: the archive is not
 * a point-in-time copy. A file whose GET answers another mod_index than
 * its directory's listing did (or that went away between the two) changed
 * while it was exported: counted, named on stderr, and the exit code is 1,
 * as GNU tar does for "file changed as we read it".
 */

struct exp {
	struct cm_client *c;
	struct archive *ar;        /* owned */
	struct archive_entry *ent; /* owned, reused for every entry */
	struct cm_ctl_tally t;
	size_t skip;               /* bytes of PATH and its '/' before an entry's name */
	uint64_t changed, skipped;
	int exit;                  /* a fatal error's exit code; 0 while going */
};

static void set_time(struct archive_entry *e, int64_t ns, bool mtime)
{
	int64_t s = ns / 1000000000, n = ns % 1000000000;
	if (n < 0) {
		n += 1000000000;
		s--;
	}
	if (mtime)
		archive_entry_set_mtime(e, (time_t)s, (long)n);
	else
		archive_entry_set_atime(e, (time_t)s, (long)n);
}

static int ar_fail(struct exp *ex, const char *what)
{
	cm_ctl_tally_note(&ex->t);
	fprintf(stderr, "confmanctl: export: %s: %s\n", what, archive_error_string(ex->ar));
	ex->exit = CM_CTL_ERROR;
	return -EIO;
}

/* Write one entry's header, then its data (len bytes, may be 0). */
static int put_entry(struct exp *ex, const char *path, const struct cm_attr *a,
		     const char *data, uint32_t len)
{
	struct archive_entry *e = ex->ent;
	archive_entry_clear(e);
	archive_entry_copy_pathname(e, path + ex->skip);
	archive_entry_set_mode(e, a->mode); /* type and permission bits, both */
	archive_entry_set_uid(e, a->uid);
	archive_entry_set_gid(e, a->gid);
	set_time(e, a->mtime_ns, true);
	set_time(e, a->atime_ns, false);
	if (S_ISLNK(a->mode))
		archive_entry_copy_symlink(e, data);
	archive_entry_set_size(e, S_ISREG(a->mode) ? len : 0);
	int rv = archive_write_header(ex->ar, e);
	if (rv == ARCHIVE_WARN) { /* e.g. a name not in the locale's charset: kept as bytes */
		cm_ctl_tally_note(&ex->t);
		fprintf(stderr, "confmanctl: export: %s: %s\n", path, archive_error_string(ex->ar));
	} else if (rv != ARCHIVE_OK) {
		return ar_fail(ex, path);
	}
	if (S_ISREG(a->mode) && len > 0 && archive_write_data(ex->ar, data, len) != (ssize_t)len)
		return ar_fail(ex, path);
	return 0;
}

static void changed(struct exp *ex, const char *path, const char *how)
{
	cm_ctl_tally_note(&ex->t);
	fprintf(stderr, "confmanctl: export: %s: %s while exported\n", path, how);
	ex->changed++;
}

static int fatal(struct exp *ex, const char *path, int err)
{
	cm_ctl_tally_note(&ex->t);
	ex->exit = cm_ctl_fail(path, err);
	return err;
}

/* A file or a symlink: read it, write it. */
static int export_leaf(struct exp *ex, const char *path, const struct cm_attr *listed)
{
	void *v = NULL;
	uint32_t len = 0;
	struct cm_attr a;
	int rv = cm_get(ex->c, path, &v, &len, &a);
	if (rv == -ENOENT || rv == -EISDIR) {
		changed(ex, path, rv == -ENOENT ? "removed" : "replaced by a directory");
		return 0;
	}
	if (rv != 0)
		return fatal(ex, path, rv);
	if (a.mod_index != listed->mod_index)
		changed(ex, path, "changed");
	if (S_ISLNK(a.mode) && memchr(v, '\0', len) != NULL) {
		cm_ctl_tally_note(&ex->t);
		fprintf(stderr, "confmanctl: export: %s: skipped: a symlink whose target holds a "
				"NUL byte has no tar form\n", path);
		ex->skipped++;
	} else if ((rv = put_entry(ex, path, &a, v, len)) == 0) {
		*(S_ISLNK(a.mode) ? &ex->t.links : &ex->t.files) += 1;
		ex->t.bytes += S_ISREG(a.mode) ? len : 0;
	}
	free(v);
	return rv;
}

static int export_dir(struct exp *ex, const char *dir);

/*
 * A directory's own entry, then what it holds. Its metadata comes from a
 * GET, not from its parent's listing: a shard's top directory is listed
 * from the parent shard's boundary node, whose metadata never changes,
 * while the directory's mode, owner and times live in the shard itself.
 */
static int export_subdir(struct exp *ex, const char *path)
{
	struct cm_attr a;
	int rv = cm_get(ex->c, path, NULL, NULL, &a);
	if (rv == -ENOENT || (rv == 0 && !S_ISDIR(a.mode))) {
		changed(ex, path, rv ? "removed" : "replaced by a file");
		return 0;
	}
	if (rv != 0)
		return fatal(ex, path, rv);
	rv = put_entry(ex, path, &a, NULL, 0);
	ex->t.dirs += rv == 0;
	return rv ? rv : export_dir(ex, path);
}

/* Every entry below dir, depth first, each directory before what it holds. */
static int export_dir(struct exp *ex, const char *dir)
{
	struct cm_list_entry *ents;
	uint32_t n;
	int rv = cm_list(ex->c, dir, &ents, &n);
	if (rv != 0)
		return fatal(ex, dir, rv);
	size_t dl = strlen(dir);
	for (uint32_t k = 0; rv == 0 && k < n; k++) {
		char path[CM_PATH_MAX + 1];
		int l = snprintf(path, sizeof(path), "%s/%s", dl == 1 ? "" : dir, ents[k].name);
		if (l < 0 || (size_t)l >= sizeof(path)) {
			rv = fatal(ex, dir, -ENAMETOOLONG);
			break;
		}
		const struct cm_attr *a = &ents[k].attr;
		rv = S_ISDIR(a->mode) ? export_subdir(ex, path) : export_leaf(ex, path, a);
		cm_ctl_tally_tick(&ex->t);
	}
	cm_list_free(ents, n);
	return rv;
}

/* Where the archive goes: fd 1, or FILE.tmp (renamed to FILE on success). */
static int open_out(const char *file, char *tmp, size_t cap, int *fd)
{
	if (file == NULL || strcmp(file, "-") == 0) {
		if (isatty(STDOUT_FILENO)) {
			fprintf(stderr, "confmanctl: export: refusing to write a tar to a terminal "
					"(redirect stdout or give FILE)\n");
			return CM_CTL_USAGE;
		}
		*fd = STDOUT_FILENO;
		return 0;
	}
	if ((size_t)snprintf(tmp, cap, "%s.tmp", file) >= cap)
		return cm_ctl_fail(file, -ENAMETOOLONG);
	*fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600); /* values: ours alone */
	return *fd < 0 ? cm_ctl_fail(tmp, -errno) : 0;
}

/* The walk went well: flush the archive, make FILE appear whole or not at all. */
static int close_out(struct exp *ex, const char *file, const char *tmp, int fd)
{
	/* A failed walk must not end with the end-of-archive blocks: on a pipe,
	 * a truncated archive would then read as a complete one. */
	if (ex->exit != 0)
		archive_write_fail(ex->ar);
	else if (archive_write_close(ex->ar) != ARCHIVE_OK)
		ar_fail(ex, "closing the archive");
	if (fd == STDOUT_FILENO)
		return ex->exit;
	if (ex->exit == 0 && (fsync(fd) != 0 || rename(tmp, file) != 0))
		ex->exit = cm_ctl_fail(file, -errno);
	close(fd);
	if (ex->exit != 0)
		unlink(tmp);
	return ex->exit;
}

static int run_export(struct exp *ex, const char *root, const char *file)
{
	char tmp[CM_PATH_MAX + 8];
	int fd = -1, rv = open_out(file, tmp, sizeof(tmp), &fd);
	if (rv != 0)
		return rv;
	/* Unpadded after the end-of-archive blocks, to a pipe as to a file (the
	 * default pads a pipe's last block): one tree, one byte stream. */
	if (archive_write_set_format_pax(ex->ar) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(ex->ar, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(ex->ar, fd) != ARCHIVE_OK)
		ar_fail(ex, "opening the archive");
	else
		export_dir(ex, root);
	return close_out(ex, file, tmp, fd);
}

int cm_ctl_export(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	int first = argc > 1 && strcmp(argv[1], "--") == 0 ? 2 : 1;
	if (argc - first < 1 || argc - first > 2)
		return cm_ctl_usage("export: expected PATH [FILE|-]");
	const char *root = argv[first], *file = argc - first == 2 ? argv[first + 1] : NULL;
	int rv = cm_path_validate(root, (uint32_t)strnlen(root, CM_PATH_MAX + 1));
	if (rv != 0)
		return cm_ctl_fail(root, rv);
	if ((rv = cm_client_open(cc->opts, &cc->client)) != 0)
		return cm_ctl_fail("cannot start the client", rv);
	cm_ctl_tar_locale();
	struct exp ex = {.c = cc->client, .ar = archive_write_new(), .ent = archive_entry_new(),
			 .skip = strlen(root) == 1 ? 1 : strlen(root) + 1};
	cm_ctl_tally_init(&ex.t, "export");
	if (ex.ar == NULL || ex.ent == NULL)
		ex.exit = cm_ctl_fail("export", -ENOMEM);
	else
		ex.exit = run_export(&ex, root, file);
	char extra[96] = "";
	if (ex.changed || ex.skipped)
		snprintf(extra, sizeof(extra), "%llu changed while exported, %llu skipped",
			 (unsigned long long)ex.changed, (unsigned long long)ex.skipped);
	cm_ctl_tally_done(&ex.t, ex.exit ? "FAILED: the archive is incomplete"
					 : extra[0] ? extra : NULL);
	archive_entry_free(ex.ent);
	if (ex.ar)
		archive_write_free(ex.ar);
	return ex.exit ? ex.exit : (ex.changed || ex.skipped) ? CM_CTL_ERROR : CM_CTL_OK;
}
