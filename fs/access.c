/* access.c: the cluster's access rules as the mount meets them (loop thread,
 * but for cm_fs_ident_load, called before any thread exists).
 *
 * The servers decide (server/acl.c): the mount carries its certificate's
 * identity and turns a refusal into EACCES like any errno. What it adds is
 * the log: an application sees only EACCES, so the operator needs the path,
 * the operation and the identity refused, one line per refusal, bounded so
 * that a program retrying in a loop cannot fill the disk (a token bucket:
 * CM_FS_DENY_BURST lines, then one per CM_FS_DENY_EVERY_MS; what it drops is
 * counted and the count said on the next line logged).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/tls.h"
#include "job.h"

void cm_fs_ident_load(struct cm_fs *fs)
{
	struct cm_fs_deny *d = &fs->deny;
	d->tokens = CM_FS_DENY_BURST;
	if (fs->o.ca == NULL) {
		snprintf(d->who, sizeof(d->who), "(plain TCP: no identity)");
		return;
	}
	struct cm_identity id;
	if (fs->o.cert == NULL || cm_tls_cert_identity(fs->o.cert, &id) != 0) {
		/* No certificate (the servers will refuse it), or one they
		 * will refuse for its names (cm_client_tls_check loaded it). */
		snprintf(d->who, sizeof(d->who), "(no usable certificate)");
		return;
	}
	size_t n = (size_t)snprintf(d->who, sizeof(d->who), "user %s", id.user);
	snprintf(d->key, sizeof(d->key), "%s", id.user);
	for (uint32_t k = 0; k < id.n_groups && n < sizeof(d->who); k++) {
		n += (size_t)snprintf(d->who + n, sizeof(d->who) - n, "%s%s", k ? "," : " groups ",
				      id.groups[k]);
		size_t m = strlen(d->key);
		snprintf(d->key + m, sizeof(d->key) - m, "\n%s", id.groups[k]);
	}
}

/* The path a refused job was about: its own, else its inode's (a flush
 * commits an open file whose job carries no path). */
static const char *job_path(const struct cm_fs_job *j)
{
	if (j->path != NULL)
		return j->path;
	struct cm_fs_node *n = cm_fs_itable_find(&j->fs->it, j->ino);
	return n != NULL ? n->path : "(unknown path)";
}

static bool deny_take(struct cm_fs_deny *d, uint64_t now)
{
	if (d->last == 0)
		d->last = now;
	uint64_t earned = (now - d->last) / CM_FS_DENY_EVERY_MS;
	if (earned > 0) {
		d->tokens = d->tokens + earned > CM_FS_DENY_BURST ? CM_FS_DENY_BURST
								  : (uint32_t)(d->tokens + earned);
		d->last += earned * CM_FS_DENY_EVERY_MS;
	}
	if (d->tokens == 0)
		return false;
	d->tokens--;
	return true;
}

void cm_fs__deny_log(const struct cm_fs_job *j)
{
	static const char *const ops[] = {
		"lookup", "forget", "getattr", "setattr", "opendir", "readdir", "releasedir",
		"open", "read", "write", "flush", "fsync", "release", "create", "mkdir",
		"unlink", "rmdir", "rename", "symlink", "readlink", "getxattr", "listxattr",
		"mknod"};
	struct cm_fs_deny *d = &j->fs->deny;
	if (!deny_take(d, uv_now(&j->fs->loop))) {
		d->dropped++;
		return;
	}
	char more[96] = "";
	if (d->dropped > 0)
		snprintf(more, sizeof(more), " (%llu more refusals not logged before this one)",
			 (unsigned long long)d->dropped);
	d->dropped = 0;
	fprintf(stderr, "confman-fs: access denied by the cluster's rules: %s %s%s%s for %s "
			"(EACCES)%s\n",
		(unsigned)j->op < sizeof(ops) / sizeof(ops[0]) ? ops[j->op] : "?", job_path(j),
		j->path2 ? " -> " : "", j->path2 ? j->path2 : "", d->who, more);
}
