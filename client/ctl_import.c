/* ctl_import.c: `confmanctl import [--force] FILE|- PATH`: a tar stream written below PATH. */
#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "client/ctl_tar.h"
#include "confman/client.h"
#include "confman/error.h"
#include "confman/path.h"

/*
 * Every entry becomes ordinary writes through the client library (a mount
 * sees them as any other change, inotify events included): MKDIR for a
 * directory, one PUT per file or symlink carrying its mode, owner and
 * times, parents created as needed. Entries are checked at the edge, before
 * anything is written: no absolute path, no "..", only files, directories
 * and symlinks, nothing larger than any server takes, only valid Confman
 * names. A refused entry is named on stderr with the reason and skipped;
 * the others go on, and the exit code says that not everything was
 * imported. Only an unavailable cluster or an unreadable archive stops the
 * import at once.
 *
 * Files and symlinks go through the asynchronous API, up to
 * CM_CTL_IMPORT_WINDOW requests (and CM_CTL_IMPORT_WINDOW_BYTES of values)
 * in flight, so the servers commit many in one fsync; one at a time, each
 * would wait for its own. Directories go one at a time through the
 * synchronous client (an existing one needs a second look), and their
 * metadata once every write has been answered.
 */

struct dir_fix {
	char *path; /* owned */
	uint32_t mode, uid, gid;
	int64_t atime_ns, mtime_ns;
};

struct imp {
	struct cm_client *c;  /* directories, one request at a time */
	uv_loop_t loop;       /* files and symlinks, pipelined (ac) */
	struct cm_ac *ac;     /* owned; closed by import_close() */
	uint32_t in_flight;   /* PUTs submitted, not yet answered */
	size_t bytes_in_flight;
	struct archive *ar; /* owned */
	struct cm_ctl_tally t;
	const char *root;   /* PATH; borrowed */
	bool force;
	char *buf;          /* one value, CM_VALUE_MAX_LIMIT bytes at most; owned */
	struct dir_fix *dirs; /* directories to finish at the end; owned */
	uint32_t n_dirs, cap_dirs;
	uint64_t existed, skipped, failed;
	int exit;           /* a fatal error's exit code; 0 while going */
};

__attribute__((format(printf, 3, 4))) static void say(struct imp *im, const char *name,
						      const char *fmt, ...);

static void say(struct imp *im, const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cm_ctl_tally_note(&im->t);
	fprintf(stderr, "confmanctl: import: %s: ", name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/*
 * name (as the archive has it) below root, into out: "./" and empty
 * components dropped, "." components too. Returns 0, 1 (root itself:
 * nothing to write), or -1 after saying why it is refused.
 */
static int dest_path(struct imp *im, const char *name, char *out, size_t cap)
{
	if (name[0] == '/') {
		say(im, name, "refused: an absolute path");
		return -1;
	}
	size_t n = strlen(im->root) == 1 ? 0 : strlen(im->root);
	memcpy(out, im->root, n);
	for (const char *p = name; *p;) {
		size_t l = strcspn(p, "/");
		if (l == 2 && p[0] == '.' && p[1] == '.') {
			say(im, name, "refused: a '..' component");
			return -1;
		}
		bool keep = l > 0 && !(l == 1 && p[0] == '.');
		if (keep && n + 1 + l < cap) {
			out[n] = '/';
			memcpy(out + n + 1, p, l);
		}
		n += keep ? 1 + l : 0;
		p += l + (p[l] == '/');
	}
	if (n == 0 || n == strlen(im->root))
		return 1;
	int rv = n < cap ? cm_path_validate(out, (uint32_t)n) : -ENAMETOOLONG;
	out[n < cap ? n : 0] = '\0';
	if (rv != 0) {
		say(im, name, "refused: not a valid Confman path (%s)", cm_errname(rv));
		return -1;
	}
	return 0;
}

/* Whether the entry's type is one Confman stores; says why not. */
static bool type_ok(struct imp *im, const char *name, struct archive_entry *e)
{
	const char *what = NULL;
	if (archive_entry_hardlink(e) != NULL) {
		say(im, name, "skipped: a hard link (to %s); Confman has none",
		    archive_entry_hardlink(e));
		return false;
	}
	switch (archive_entry_filetype(e)) {
	case AE_IFREG: case AE_IFDIR: case AE_IFLNK:
		return true;
	case AE_IFCHR: what = "a character device"; break;
	case AE_IFBLK: what = "a block device"; break;
	case AE_IFIFO: what = "a FIFO"; break;
	case AE_IFSOCK: what = "a socket"; break;
	default: what = "an entry of unknown type"; break;
	}
	say(im, name, "skipped: %s; Confman stores files, directories and symlinks", what);
	return false;
}

static int64_t time_ns(bool set, time_t s, long ns)
{
	return set ? (int64_t)s * 1000000000 + ns : CM_TIME_OMIT;
}

/* The entry's metadata as a PUT sets it (type bits left to the caller). */
static bool entry_args(struct imp *im, const char *name, struct archive_entry *e,
		       struct cm_put_args *pa)
{
	la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
	if (uid < 0 || uid > UINT32_MAX || gid < 0 || gid > UINT32_MAX) {
		say(im, name, "refused: uid or gid out of range");
		return false;
	}
	pa->flags = CM_SET_MODE | CM_SET_TIMES;
	pa->mode = archive_entry_perm(e) & 07777;
	pa->uid = (uint32_t)uid;
	pa->gid = (uint32_t)gid;
	pa->mtime_ns = time_ns(archive_entry_mtime_is_set(e), archive_entry_mtime(e),
			       archive_entry_mtime_nsec(e));
	pa->atime_ns = archive_entry_atime_is_set(e)
			       ? time_ns(true, archive_entry_atime(e), archive_entry_atime_nsec(e))
			       : pa->mtime_ns;
	return true;
}

/* An error of the cluster stops the import; any other is this entry's. */
static int entry_err(struct imp *im, const char *path, int err)
{
	if (cm_ctl_exit_code(err) == CM_CTL_UNAVAILABLE) {
		cm_ctl_tally_note(&im->t);
		im->exit = cm_ctl_fail(path, err);
		return err;
	}
	switch (err) {
	case -EEXIST:
		say(im, path, "exists; not replaced (--force replaces files)");
		im->existed++;
		break;
	case -EISDIR:
		say(im, path, "a directory is in the way; not replaced");
		im->existed++;
		break;
	case -ENOTDIR:
		say(im, path, "a file is in the way of its parent directory");
		im->existed++;
		break;
	case -EFBIG:
		say(im, path, "skipped: larger than the cluster's limit for a value "
			      "(the server answered EFBIG)");
		im->skipped++;
		break;
	default:
		say(im, path, "failed: %s (%s)", cm_strerror(err), cm_errname(err));
		im->failed++;
	}
	return 0;
}

static int dir_defer(struct imp *im, const char *path, const struct cm_put_args *pa)
{
	if (im->n_dirs == im->cap_dirs) {
		uint32_t cap = im->cap_dirs ? im->cap_dirs * 2 : 64;
		struct dir_fix *d = cap <= CM_CTL_IMPORT_MAX_DIRS
					    ? realloc(im->dirs, cap * sizeof(*d))
					    : NULL;
		if (d == NULL) /* past the bound: set it now; entries below move its mtime */
			return cm_put_ex(im->c, path, NULL, 0, pa, NULL);
		im->dirs = d;
		im->cap_dirs = cap;
	}
	char *p = strdup(path);
	if (p == NULL)
		return -ENOMEM;
	im->dirs[im->n_dirs++] = (struct dir_fix){p, pa->mode, pa->uid, pa->gid, pa->atime_ns,
						  pa->mtime_ns};
	return 0;
}

static int import_dir(struct imp *im, const char *path, struct cm_put_args *pa)
{
	int rv = cm_mkdir(im->c, path, pa->mode, NULL);
	if (rv == -EEXIST) {
		/* A directory there already is merged into; a file is in the way. */
		struct cm_attr at;
		int got = cm_get(im->c, path, NULL, NULL, &at);
		if (got != 0)
			return entry_err(im, path, got);
		if (!S_ISDIR(at.mode)) {
			say(im, path, "a file is in the way of this directory; not replaced");
			im->existed++;
			return 0;
		}
		rv = 0; /* merged into; its metadata is the archive's, as GNU tar does */
	}
	if (rv == 0) {
		pa->flags |= CM_PUT_KEEP_VALUE;
		rv = dir_defer(im, path, pa);
	}
	if (rv == 0)
		im->t.dirs++;
	return rv ? entry_err(im, path, rv) : 0;
}

/* The entry's data, whole, into im->buf; -1 after saying why not. */
static int read_data(struct imp *im, const char *name, uint32_t *len)
{
	size_t n = 0;
	for (;;) {
		la_ssize_t r = archive_read_data(im->ar, im->buf + n, CM_VALUE_MAX_LIMIT + 1 - n);
		if (r < 0) {
			cm_ctl_tally_note(&im->t);
			fprintf(stderr, "confmanctl: import: %s: %s\n", name,
				archive_error_string(im->ar));
			im->exit = CM_CTL_ERROR;
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > CM_VALUE_MAX_LIMIT) {
			say(im, name, "skipped: larger than any server takes (%u bytes)",
			    CM_VALUE_MAX_LIMIT);
			im->skipped++;
			return -1;
		}
	}
	*len = (uint32_t)n;
	return 0;
}

/* A PUT in flight: what its answer needs. */
struct pending {
	struct imp *im;
	bool link;
	uint32_t len;
	char path[]; /* NUL-terminated */
};

static void put_done(void *arg, int err, const struct cm_resp *resp)
{
	(void)resp;
	struct pending *p = arg;
	struct imp *im = p->im;
	assert(im->in_flight > 0 && im->bytes_in_flight >= p->len);
	im->in_flight--;
	im->bytes_in_flight -= p->len;
	if (err == 0) {
		*(p->link ? &im->t.links : &im->t.files) += 1;
		im->t.bytes += p->link ? 0 : p->len;
	} else if (im->exit == 0) {
		entry_err(im, p->path, err);
	}
	free(p);
}

/* Run the loop until at most `most` PUTs (and the byte bound) are in flight. */
static void wait_window(struct imp *im, uint32_t most)
{
	while (im->in_flight > most ||
	       (im->in_flight > 0 && im->bytes_in_flight > CM_CTL_IMPORT_WINDOW_BYTES))
		uv_run(&im->loop, UV_RUN_ONCE);
}

/* cm_put_ex(), pipelined: the answer is put_done's. */
static int put_async(struct imp *im, const char *path, const char *value, uint32_t len,
		     const struct cm_put_args *pa, bool link)
{
	wait_window(im, CM_CTL_IMPORT_WINDOW - 1);
	if (im->exit != 0)
		return -EIO;
	size_t pl = strlen(path);
	struct pending *p = malloc(sizeof(*p) + pl + 1);
	if (p == NULL)
		return entry_err(im, path, -ENOMEM);
	*p = (struct pending){.im = im, .link = link, .len = len};
	memcpy(p->path, path, pl + 1);
	struct cm_req r = {.op = CM_OP_PUT, .flags = pa->flags, .mode = pa->mode, .uid = pa->uid,
			   .gid = pa->gid, .atime_ns = pa->atime_ns, .mtime_ns = pa->mtime_ns,
			   .path = {p->path, (uint32_t)pl}, .value = {value, len},
			   .consistency = CM_READ_DEFAULT};
	int rv = cm_ac_submit(im->ac, &r, put_done, p); /* copies path and value */
	if (rv != 0) {
		free(p);
		return entry_err(im, path, rv);
	}
	im->in_flight++;
	im->bytes_in_flight += len;
	return 0;
}

static int import_leaf(struct imp *im, struct archive_entry *e, const char *name,
		       const char *path, struct cm_put_args *pa)
{
	bool link = archive_entry_filetype(e) == AE_IFLNK;
	if (!link && archive_entry_size_is_set(e) && archive_entry_size(e) > CM_VALUE_MAX_LIMIT) {
		say(im, name, "skipped: %lld bytes, larger than any server takes (%u bytes)",
		    (long long)archive_entry_size(e), CM_VALUE_MAX_LIMIT);
		im->skipped++;
		return 0;
	}
	uint32_t len = 0;
	const char *value = im->buf;
	if (link) {
		value = archive_entry_symlink(e);
		len = value ? (uint32_t)strnlen(value, CM_PATH_MAX + 1) : 0;
	} else if (read_data(im, name, &len) != 0) {
		return im->exit ? -EIO : 0;
	}
	pa->mode |= link ? S_IFLNK : S_IFREG;
	pa->flags |= im->force ? 0 : CM_PUT_CREATE;
	return put_async(im, path, value ? value : "", len, pa, link);
}

/* One entry of the archive; nonzero only for an error that stops the import. */
static int import_entry(struct imp *im, struct archive_entry *e)
{
	const char *name = archive_entry_pathname(e);
	char path[CM_PATH_MAX + 1];
	struct cm_put_args pa = {0};
	if (name == NULL) {
		say(im, "?", "skipped: an entry without a name");
		im->skipped++;
		return 0;
	}
	int d = dest_path(im, name, path, sizeof(path));
	if (d != 0) {
		im->skipped += d < 0;
		return 0;
	}
	if (!type_ok(im, name, e) || !entry_args(im, name, e, &pa)) {
		im->skipped++;
		return 0;
	}
	if (archive_entry_filetype(e) == AE_IFDIR)
		return import_dir(im, path, &pa);
	return import_leaf(im, e, name, path, &pa);
}

/* Directories last, once nothing more is written below them. */
static void finish_dirs(struct imp *im)
{
	wait_window(im, 0);
	for (uint32_t k = 0; k < im->n_dirs; k++) {
		struct dir_fix *d = &im->dirs[k];
		struct cm_put_args pa = {.flags = CM_PUT_KEEP_VALUE | CM_SET_MODE | CM_SET_TIMES,
					 .mode = d->mode, .uid = d->uid, .gid = d->gid,
					 .atime_ns = d->atime_ns, .mtime_ns = d->mtime_ns};
		int rv = im->exit ? 0 : cm_put_ex(im->c, d->path, NULL, 0, &pa, NULL);
		if (rv != 0)
			entry_err(im, d->path, rv);
		free(d->path);
	}
	free(im->dirs);
}

static void read_all(struct imp *im)
{
	struct archive_entry *e;
	int rv;
	while ((rv = archive_read_next_header(im->ar, &e)) == ARCHIVE_OK || rv == ARCHIVE_WARN) {
		if (rv == ARCHIVE_WARN)
			say(im, archive_entry_pathname(e) ? archive_entry_pathname(e) : "?", "%s",
			    archive_error_string(im->ar));
		if (import_entry(im, e) != 0)
			return;
		cm_ctl_tally_tick(&im->t);
	}
	if (rv != ARCHIVE_EOF) {
		say(im, "archive", "%s", archive_error_string(im->ar));
		im->exit = archive_errno(im->ar) == EILSEQ ? CM_CTL_INVALID : CM_CTL_ERROR;
	}
}

static int import_open(struct imp *im, const char *file)
{
	bool in = strcmp(file, "-") == 0;
	if (in && isatty(STDIN_FILENO))
		return cm_ctl_usage("import: refusing to read a tar from a terminal");
	im->ar = archive_read_new();
	im->buf = malloc((size_t)CM_VALUE_MAX_LIMIT + 1);
	if (im->ar == NULL || im->buf == NULL)
		return cm_ctl_fail("import", -ENOMEM);
	/* Any tar (ustar, pax, GNU), compressed or not (gzip, xz, zstd, ...). */
	if (archive_read_support_format_tar(im->ar) != ARCHIVE_OK ||
	    archive_read_support_filter_all(im->ar) < ARCHIVE_WARN ||
	    archive_read_open_filename(im->ar, in ? NULL : file, CM_CTL_TAR_BLOCK) != ARCHIVE_OK) {
		fprintf(stderr, "confmanctl: import: %s: %s\n", file, archive_error_string(im->ar));
		/* libarchive reports "not an archive it knows" as EILSEQ on Linux
		 * (its private ARCHIVE_ERRNO_FILE_FORMAT). */
		int e = archive_errno(im->ar);
		return e == EILSEQ ? CM_CTL_INVALID
		       : e == ENOENT		      ? CM_CTL_NOTFOUND
						      : CM_CTL_ERROR;
	}
	return 0;
}

static void ac_closed(void *arg)
{
	*(bool *)arg = true;
}

static int import_client(struct imp *im, const struct cm_client_opts *opts)
{
	int rv = uv_loop_init(&im->loop);
	if (rv != 0)
		return cm_ctl_fail("cannot start the client", rv);
	if ((rv = cm_ac_new(&im->loop, opts, &im->ac)) != 0) {
		uv_loop_close(&im->loop);
		return cm_ctl_fail("cannot start the client", rv);
	}
	return 0;
}

static void import_close(struct imp *im)
{
	bool closed = false;
	cm_ac_close(im->ac, ac_closed, &closed);
	while (!closed)
		uv_run(&im->loop, UV_RUN_ONCE);
	uv_run(&im->loop, UV_RUN_DEFAULT); /* close callbacks still queued */
	int rv = uv_loop_close(&im->loop);
	assert(rv == 0); /* every handle is closed by now */
	(void)rv;
}

static const struct option import_lopts[] = {{"force", no_argument, NULL, 'f'}, {0}};

int cm_ctl_import(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	struct imp im = {.force = false};
	int opt;
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "f", import_lopts, NULL)) != -1) {
		if (opt != 'f')
			return cm_ctl_usage("import: bad option '%s'", argv[optind - 1]);
		im.force = true;
	}
	if (argc - optind != 2)
		return cm_ctl_usage("import: expected [--force] FILE|- PATH");
	const char *file = argv[optind];
	im.root = argv[optind + 1];
	int rv = cm_path_validate(im.root, (uint32_t)strnlen(im.root, CM_PATH_MAX + 1));
	if (rv != 0)
		return cm_ctl_fail(im.root, rv);
	if ((rv = cm_client_open(cc->opts, &cc->client)) != 0)
		return cm_ctl_fail("cannot start the client", rv);
	if ((rv = import_client(&im, cc->opts)) != 0)
		return rv;
	im.c = cc->client;
	cm_ctl_tar_locale();
	cm_ctl_tally_init(&im.t, "import");
	im.exit = import_open(&im, file);
	if (im.exit == 0)
		read_all(&im);
	finish_dirs(&im);
	import_close(&im);
	char extra[160];
	snprintf(extra, sizeof(extra), "%s%llu existed, %llu skipped, %llu failed",
		 im.exit ? "STOPPED, incomplete; " : "", (unsigned long long)im.existed,
		 (unsigned long long)im.skipped, (unsigned long long)im.failed);
	cm_ctl_tally_done(&im.t, extra);
	if (im.ar)
		archive_read_free(im.ar);
	free(im.buf);
	return im.exit		 ? im.exit
	       : im.existed	 ? CM_CTL_CONFLICT
	       : im.failed	 ? CM_CTL_ERROR
	       : im.skipped ? CM_CTL_INVALID
				 : CM_CTL_OK;
}
