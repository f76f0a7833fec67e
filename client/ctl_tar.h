/* ctl_tar.h: `confmanctl export` and `import`: a subtree as a tar stream (libarchive). */
#ifndef CONFMAN_CTL_TAR_H
#define CONFMAN_CTL_TAR_H

#include <stdbool.h>
#include <stdint.h>

#include "client/ctl.h"

#define CM_CTL_PROGRESS_MS 250 /* a terminal's progress line, at most this often */
#define CM_CTL_TAR_BLOCK 65536 /* bytes libarchive reads or writes at a time */
/* Directories whose metadata import sets once everything below them is
 * written (each write below a directory moves its mtime); past this many
 * the rest keep the mode, owner and times their mkdir gave them. */
#define CM_CTL_IMPORT_MAX_DIRS (1u << 20)
/* Import's PUTs in flight at once, and bytes of their values. */
#define CM_CTL_IMPORT_WINDOW 64
#define CM_CTL_IMPORT_WINDOW_BYTES (8u << 20)

/* What an export or import has done so far; shown on stderr. */
struct cm_ctl_tally {
	const char *verb; /* "export", "import"; borrowed */
	uint64_t files, dirs, links, bytes;
	uint64_t start_ms, shown_ms;
	bool tty;   /* stderr is a terminal: a progress line is kept up to date */
	bool shown; /* the progress line is on screen (a message first erases it) */
};

void cm_ctl_tally_init(struct cm_ctl_tally *t, const char *verb);
/* cm_ctl_tally_tick - redraw the progress line (a terminal only, at most
 * every CM_CTL_PROGRESS_MS). */
void cm_ctl_tally_tick(struct cm_ctl_tally *t);
/* cm_ctl_tally_note - clear the progress line before a message. */
void cm_ctl_tally_note(struct cm_ctl_tally *t);
/* cm_ctl_tally_done - the summary line: counts, time, rate, extra (may be NULL). */
void cm_ctl_tally_done(struct cm_ctl_tally *t, const char *extra);

/* cm_ctl_tar_locale - names are UTF-8 in a pax archive, and bytes in Confman:
 * make libarchive's "current locale" UTF-8 whatever the user's is, so a
 * UTF-8 name goes through unchanged (and any other as raw bytes, pax's
 * hdrcharset=BINARY). Only LC_CTYPE changes; nothing else confmanctl
 * prints depends on it. */
void cm_ctl_tar_locale(void);

/* ctl_export.c: export PATH [FILE|-]; ctl_import.c: import [--force] FILE|- PATH.
 * Each returns an exit code (confmanctl help). */
int cm_ctl_export(struct cm_ctl_cmd *cc, int argc, char **argv);
int cm_ctl_import(struct cm_ctl_cmd *cc, int argc, char **argv);

#endif /* CONFMAN_CTL_TAR_H */
