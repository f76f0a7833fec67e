/* fdscan.c: does a process still hold a file of this mount open for writing?
 *
 * FUSE tells the daemon about every close (FLUSH) but not whether it was
 * the last descriptor of the open file. The shell's `echo x > f` opens with
 * O_TRUNC, dup2()s the descriptor to 1 and closes the original before the
 * write: that first FLUSH must not commit the empty file (the other mounts'
 * watchers would read an empty configuration), yet `: > f` or
 * open(O_TRUNC)+close must commit the truncation before close(2) returns.
 * The closing process's descriptor table tells the two apart: the dup2'ed
 * copy is still there. /proc/PID/fdinfo/N names each descriptor's mount id,
 * inode and flags without touching the file (no FUSE request: no deadlock).
 * Anything unexpected answers "no other writer", which commits: the safe
 * side (durable before close returns; at worst an empty value in between).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"

/* A process with more descriptors than this is not scanned (commit). */
#define FDSCAN_MAX 4096

/* Undo mountinfo's octal escapes (\040 for a space...) in place. */
static void unescape(char *s)
{
	char *d = s;
	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 4;
		} else {
			*d++ = *s++;
		}
	}
	*d = 0;
}

int cm_fs_fdscan_mnt_id(const char *mountpoint)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (f == NULL)
		return -1;
	char line[4096];
	int id = -1;
	while (fgets(line, sizeof(line), f)) {
		int mid;
		char mp[4096];
		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..." */
		if (sscanf(line, "%d %*d %*s %*s %4095s", &mid, mp) != 2)
			continue;
		unescape(mp);
		if (strcmp(mp, mountpoint) == 0)
			id = mid; /* the last one listed is on top */
	}
	fclose(f);
	return id;
}

/* Does /proc/PID/fdinfo/NAME describe a writable descriptor of (mnt, ino)? */
static bool fd_writes(const char *dir, const char *name, int mnt, uint64_t ino)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false; /* closed meanwhile */
	char line[256];
	long long m = -1;
	unsigned long long i = 0;
	unsigned flags = 0;
	bool has_ino = false;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "mnt_id: %lld", &m) == 1)
			continue;
		if (sscanf(line, "ino: %llu", &i) == 1) {
			has_ino = true;
			continue;
		}
		(void)sscanf(line, "flags: %o", &flags);
	}
	fclose(f);
	return has_ino && m == mnt && i == ino && (flags & O_ACCMODE) != O_RDONLY;
}

bool cm_fs_fdscan_other_writer(int mnt_id, pid_t pid, uint64_t ino)
{
	if (mnt_id < 0 || pid <= 0)
		return false;
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/fdinfo", (int)pid);
	DIR *d = opendir(dir);
	if (d == NULL)
		return false; /* exited, or in a pid namespace we cannot see */
	bool found = false;
	unsigned seen = 0;
	struct dirent *e;
	while (!found && (e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		if (++seen > FDSCAN_MAX)
			break; /* too many to scan on the loop thread: commit */
		found = fd_writes(dir, e->d_name, mnt_id, ino);
	}
	closedir(d);
	return found;
}
