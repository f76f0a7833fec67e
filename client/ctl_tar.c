/* ctl_tar.c: what `confmanctl export` and `import` share: counts, progress and summary. */
#include <inttypes.h>
#include <locale.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "client/ctl_tar.h"

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void cm_ctl_tally_init(struct cm_ctl_tally *t, const char *verb)
{
	*t = (struct cm_ctl_tally){.verb = verb, .tty = isatty(STDERR_FILENO) == 1};
	t->start_ms = t->shown_ms = now_ms();
}

static void line(const struct cm_ctl_tally *t, FILE *f)
{
	fprintf(f, "%s: %" PRIu64 " files, %" PRIu64 " directories, %" PRIu64 " symlinks, %" PRIu64
		   " bytes",
		t->verb, t->files, t->dirs, t->links, t->bytes);
}

void cm_ctl_tally_tick(struct cm_ctl_tally *t)
{
	if (!t->tty)
		return;
	uint64_t now = now_ms();
	if (now - t->shown_ms < CM_CTL_PROGRESS_MS)
		return;
	t->shown_ms = now;
	fputc('\r', stderr);
	line(t, stderr);
	fputs("\033[K", stderr); /* erase what a longer line left */
	t->shown = true;
}

void cm_ctl_tally_note(struct cm_ctl_tally *t)
{
	if (t->shown)
		fputs("\r\033[K", stderr); /* a message starts on a clean line */
	t->shown = false;
}

void cm_ctl_tally_done(struct cm_ctl_tally *t, const char *extra)
{
	cm_ctl_tally_note(t);
	uint64_t ms = now_ms() - t->start_ms;
	line(t, stderr);
	uint64_t entries = t->files + t->dirs + t->links;
	fprintf(stderr, " in %" PRIu64 ".%03" PRIu64 " s (%" PRIu64 " entries/s)%s%s\n", ms / 1000,
		ms % 1000, ms ? entries * 1000 / ms : entries, extra ? "; " : "", extra ? extra : "");
}

void cm_ctl_tar_locale(void)
{
	if (setlocale(LC_CTYPE, "C.UTF-8") == NULL)
		setlocale(LC_CTYPE, ""); /* no C.UTF-8: the user's, which may well be UTF-8 */
}
