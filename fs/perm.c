/* perm.c: setuid/setgid cleared by writes and O_TRUNC opens of other users,
 * as Linux filesystems do (loop thread).
 *
 * The kernel clears the bits itself on chown and truncate: the mount turns
 * FUSE_CAP_HANDLE_KILLPRIV off (ops.c), so those arrive as a SETATTR with the
 * new mode. It does not for what the daemon sees only as a WRITE (every
 * handle is direct_io: the kernel only sets FUSE_WRITE_KILL_SUIDGID in the
 * request, which libfuse 3.14 does not pass on) nor for an OPEN with O_TRUNC
 * (FUSE_CAP_ATOMIC_O_TRUNC: the truncation is the daemon's; the kernel says
 * whom to clear for only with FUSE_HANDLE_KILLPRIV_V2, unknown to libfuse
 * 3.14). So the daemon decides as the kernel would (setattr_should_drop_suidgid):
 * setuid always, setgid when group-executable or when the caller is not in
 * the file's group, neither when the caller holds CAP_FSETID; the caller's
 * capabilities and groups are read from /proc/PID/status. The new mode is a
 * CAS on the mod index it was computed from, as every SETATTR (exec.c).
 *
 * A setgid directory gives its group to what is created in it, and its
 * setgid bit to subdirectories (as inode_init_owner for local filesystems;
 * FUSE leaves it to the daemon).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

#define CAP_FSETID_BIT 4 /* linux/capability.h: CAP_FSETID */
#define KILL_TRIES 8     /* CAS attempts, as SETATTR_TRIES in exec.c */

struct creds {
	bool known;    /* /proc/PID/status was read */
	bool fsetid;   /* CAP_FSETID in the effective set */
	uint32_t fsgid;
	uint32_t groups[64];
	uint32_t n_groups;
};

/* The caller's credentials; known is false if they cannot be read (pid 0:
 * another pid namespace, or gone), and then nothing is assumed granted. */
static struct creds creds_read(pid_t pid)
{
	struct creds c = {0};
	char path[64], line[1024];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = pid > 0 ? fopen(path, "re") : NULL;
	if (f == NULL)
		return c;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long cap;
		unsigned r, e, s, fs;
		if (sscanf(line, "CapEff: %llx", &cap) == 1) {
			c.fsetid = (cap >> CAP_FSETID_BIT) & 1;
			c.known = true;
		} else if (sscanf(line, "Gid: %u %u %u %u", &r, &e, &s, &fs) == 4) {
			c.fsgid = fs;
		} else if (strncmp(line, "Groups:", 7) == 0) {
			char *p = line + 7, *end;
			while (c.n_groups < sizeof(c.groups) / sizeof(c.groups[0])) {
				unsigned long g = strtoul(p, &end, 10);
				if (end == p)
					break;
				c.groups[c.n_groups++] = (uint32_t)g;
				p = end;
			}
		}
	}
	fclose(f);
	return c;
}

static bool in_group(const struct creds *c, uint32_t gid)
{
	if (c->fsgid == gid)
		return true;
	for (uint32_t i = 0; i < c->n_groups; i++)
		if (c->groups[i] == gid)
			return true;
	return false;
}

uint32_t cm_fs_perm_kill_bits(pid_t pid, const struct cm_attr *a)
{
	uint32_t mode = a->mode;
	if (!S_ISREG(mode) || !(mode & (S_ISUID | S_ISGID)))
		return 0;
	struct creds c = creds_read(pid);
	if (c.known && c.fsetid)
		return 0;
	uint32_t kill = mode & S_ISUID;
	/* setgid without group execute marks mandatory locking, not a
	 * privilege: kept for the file's group only. */
	if ((mode & S_ISGID) && ((mode & S_IXGRP) || !c.known || !in_group(&c, a->gid)))
		kill |= S_ISGID;
	return kill;
}

static void kill_put(struct cm_fs_job *j, struct cm_fs_node *n);

static void kill_refetch_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	if (err != 0 || n == NULL || !resp->has_attr) {
		j->then(j, err ? err : -ENOENT);
		return;
	}
	n->attr = resp->attr;
	n->has_attr = true;
	kill_put(j, n);
}

static void kill_cb(void *arg, int err, const struct cm_resp *resp)
{
	struct cm_fs_job *j = arg;
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	if (err == -ECANCELED && j->tries < KILL_TRIES) {
		j->tries++; /* changed meanwhile: compute again from what it is now */
		cm_fs__submit_get(j, kill_refetch_cb);
		return;
	}
	if (err == 0 && n != NULL && resp->has_attr) {
		n->attr = resp->attr;
		n->has_attr = true;
	}
	j->then(j, err);
}

/* The mode without the bits the caller must clear, if the node is still
 * what n->attr says; nothing to clear: j->then at once. */
static void kill_put(struct cm_fs_job *j, struct cm_fs_node *n)
{
	uint32_t kill = cm_fs_perm_kill_bits(fuse_req_ctx(j->req)->pid, &n->attr);
	if (kill == 0) {
		j->then(j, 0);
		return;
	}
	struct cm_req r = {.op = CM_OP_PUT,
			   .flags = CM_NO_PARENTS | CM_PUT_KEEP_VALUE | CM_SET_MODE | CM_PUT_IF_MOD,
			   .mod_index = n->attr.mod_index,
			   .mode = n->attr.mode & 07777 & ~kill,
			   .uid = n->attr.uid, .gid = n->attr.gid};
	cm_fs__submit(j, &r, kill_cb);
}

bool cm_fs__kill_suid(struct cm_fs_job *j, struct cm_fs_node *n,
		      void (*then)(struct cm_fs_job *j, int err))
{
	if (j->replay || n == NULL || !n->has_attr || !n->linked || !S_ISREG(n->attr.mode) ||
	    !(n->attr.mode & (S_ISUID | S_ISGID)))
		return false; /* the common case: no /proc read */
	if (j->path == NULL && (j->path = strdup(n->path)) == NULL) {
		cm_fs__done_err(j, -ENOMEM);
		return true;
	}
	j->ino = n->ino;
	j->then = then;
	kill_put(j, n);
	return true;
}

void cm_fs__inherit_group(struct cm_fs_job *j, fuse_ino_t parent, bool dir)
{
	struct cm_fs_node *p = cm_fs_itable_find(&j->fs->it, parent);
	if (p == NULL || !p->has_attr || !S_ISDIR(p->attr.mode) || !(p->attr.mode & S_ISGID))
		return;
	j->gid = p->attr.gid;
	if (dir)
		j->mode |= S_ISGID;
}
