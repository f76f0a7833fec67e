/* config_reload.c: an application that reloads its configuration on inotify.
 *
 *     config-reload PATH
 *
 * Reads PATH (lines "key=value"; blank lines and lines starting with '#' are
 * skipped), prints "loaded N keys: k1=v1 k2=v2 ..." and prints it again each
 * time the file changes: on IN_CLOSE_WRITE, IN_MODIFY, IN_MOVED_TO or
 * IN_CREATE for its name. The directory is watched, not the file, so a save
 * by write-temp-then-rename (a new inode under the same name) is seen too.
 * Exits 0 on SIGTERM or SIGINT. Only libc: works on any filesystem that
 * produces inotify events, a confman-fs mount included (changes made through
 * other mounts or confmanctl are replayed there as local events).
 *
 * A file that is missing or unreadable at a reload prints
 * "load failed: ..." and the application keeps running.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MAX_LINE 4096

/* Reads the file and prints one line describing it. */
static void load(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		printf("load failed: %s: %s\n", path, strerror(errno));
		fflush(stdout);
		return;
	}
	char line[MAX_LINE];
	char *out = NULL;
	size_t outlen = 0;
	FILE *o = open_memstream(&out, &outlen);
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\r\n")] = '\0';
		char *s = line;
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (!eq || eq == s)
			continue; /* not a key=value line */
		if (o)
			fprintf(o, " %s", s);
		n++;
	}
	int rerr = ferror(f);
	fclose(f);
	if (o)
		fclose(o);
	if (rerr)
		printf("load failed: %s: read error\n", path);
	else
		printf("loaded %d keys:%s\n", n, out ? out : "");
	fflush(stdout);
	free(out);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CONFIG-FILE\n", argv[0]);
		return 2;
	}
	const char *path = argv[1];

	/* The directory and the name within it. */
	char dir[PATH_MAX];
	const char *name;
	const char *slash = strrchr(path, '/');
	if (!slash) {
		strcpy(dir, ".");
		name = path;
	} else {
		size_t len = slash == path ? 1 : (size_t)(slash - path);
		if (len >= sizeof dir) {
			fprintf(stderr, "config-reload: path too long\n");
			return 2;
		}
		memcpy(dir, path, len);
		dir[len] = '\0';
		name = slash + 1;
	}
	if (*name == '\0') {
		fprintf(stderr, "config-reload: %s names a directory\n", path);
		return 2;
	}

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
		perror("sigprocmask");
		return 1;
	}
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		perror("signalfd");
		return 1;
	}
	int ifd = inotify_init1(IN_CLOEXEC);
	if (ifd < 0) {
		perror("inotify_init1");
		return 1;
	}
	if (inotify_add_watch(ifd, dir, IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_CREATE) < 0) {
		fprintf(stderr, "config-reload: watch %s: %s\n", dir, strerror(errno));
		return 1;
	}

	/* Watch first, then load: a change in between is not missed. */
	load(path);

	char buf[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		struct pollfd p[2] = { { .fd = sfd, .events = POLLIN }, { .fd = ifd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
				printf("exiting on signal %u\n", si.ssi_signo);
				fflush(stdout);
				return 0;
			}
		}
		if (!(p[1].revents & POLLIN))
			continue;
		ssize_t len = read(ifd, buf, sizeof buf);
		if (len < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			perror("read inotify");
			return 1;
		}
		/* One reload per batch of events that concern the file. */
		int changed = 0;
		for (char *q = buf; q < buf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)q;
			if (ev->mask & IN_Q_OVERFLOW)
				changed = 1;
			else if (ev->len > 0 && strcmp(ev->name, name) == 0)
				changed = 1;
			q += sizeof *ev + ev->len;
		}
		if (changed)
			load(path);
	}
}
