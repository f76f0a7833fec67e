/* ctl.h: confmanctl's helpers: JSON, base64, modes, times, status, shards, exit codes. */
#ifndef CONFMAN_CTL_H
#define CONFMAN_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, as documented by `confmanctl help`. */
enum cm_ctl_exit {
	CM_CTL_OK = 0,
	CM_CTL_ERROR = 1,
	CM_CTL_USAGE = 2,
	CM_CTL_NOTFOUND = 3,
	CM_CTL_CONFLICT = 4,
	CM_CTL_UNAVAILABLE = 5,
	CM_CTL_INVALID = 6,
	CM_CTL_DENIED = 7, /* EACCES: the access rules do not allow it */
	/* lock and elect exit with CMD's status; these, as timeout(1)'s and
	 * the shell's, are theirs (README "Leases and locks"). */
	CM_CTL_LOCK_TIMEOUT = 124, /* not acquired within --timeout */
	CM_CTL_LOCK_LOST = 125,    /* the lease ended while held: CMD was stopped */
	CM_CTL_CMD_NOEXEC = 126,   /* CMD is there but could not be run */
	CM_CTL_CMD_NOTFOUND = 127, /* no such CMD */
};

/* cm_ctl_fail - print "confmanctl: WHAT: message (NAME)" to stderr; returns
 * the exit code for err. */
int cm_ctl_fail(const char *what, int err);

/* cm_ctl_usage - print a usage error and the hint to stderr; returns
 * CM_CTL_USAGE. */
__attribute__((format(printf, 1, 2))) int cm_ctl_usage(const char *fmt, ...);

/* cm_ctl_exit_code - the exit code for an error code (0 for 0). */
int cm_ctl_exit_code(int err);

/* Durations: cm_parse_duration() (common/duration.h, shared with confman-fs). */

/* cm_ctl_utf8_valid - whether p[0, n) is well-formed UTF-8 without NUL. */
bool cm_ctl_utf8_valid(const char *p, size_t n);

/* cm_ctl_json_str - print p[0, n) (UTF-8) as a quoted JSON string. */
void cm_ctl_json_str(FILE *f, const char *p, size_t n);

/* cm_ctl_base64 - print p[0, n) as a quoted base64 (RFC 4648) JSON string. */
void cm_ctl_base64(FILE *f, const void *p, size_t n);

/* cm_ctl_mode_str - "drwxr-xr-x" for mode; out holds 11 bytes. */
void cm_ctl_mode_str(uint32_t mode, char out[11]);

/* cm_ctl_time_str - "2026-11-24T12:00:00Z" (UTC) for nanoseconds since the epoch. */
void cm_ctl_time_str(int64_t ns, char *out, size_t n);

/* cm_ctl_kind_name - "put", "delete", "mkdir", "rename", "resync" or "?". */
const char *cm_ctl_kind_name(uint8_t kind);

/* cm_ctl_role_name - "follower", "pre-candidate", "candidate", "leader" or "?". */
const char *cm_ctl_role_name(uint8_t role);

struct cm_node_status;

/* cm_ctl_print_status - one server's status (st), or why it is unreachable
 * (err != 0), as a text table or one JSON object (no newline). */
void cm_ctl_print_status(FILE *f, const char *addr, const struct cm_node_status *st, int err,
			 bool json);

struct cm_node_health;

/* ctl_health.c: a node's health as STATUS reports it: indented text lines
 * (readiness, store, fsync, requests, then one per peer), or one JSON object. */
void cm_ctl_print_health_text(FILE *f, const struct cm_node_health *h);
void cm_ctl_print_health_json(FILE *f, const struct cm_node_health *h);

struct cm_shard_map;

/* cm_ctl_print_shards - the shard map as a text table (epoch, then GROUP
 * PREFIX REPLICAS, then NODE ADDR) or one JSON object, newline-terminated. */
void cm_ctl_print_shards(FILE *f, const struct cm_shard_map *m, bool json);

/* cm_ctl_parse_ids - "1,2,3" into ids (at most max); returns the count, -1
 * for malformed text (not decimal numbers separated by single commas), or
 * -2 for more than max. */
int cm_ctl_parse_ids(const char *s, uint64_t *ids, int max);

struct cm_client;
struct cm_client_opts;

/* What a command of ctl_member.c gets from confmanctl.c. */
struct cm_ctl_cmd {
	const struct cm_client_opts *opts;
	bool json;
	struct cm_client *client; /* opened by the command; confmanctl.c closes it */
};

/* ctl_member.c: `node list|add|remove` (argv[0] "node") and `shard move`
 * (argv[0] "move"); each returns an exit code. */
int cm_ctl_node(struct cm_ctl_cmd *cc, int argc, char **argv);
int cm_ctl_shard_move(struct cm_ctl_cmd *cc, int argc, char **argv);
/* ctl_split.c: `shard split PREFIX [--replicas IDS]` and `shard merge
 * PREFIX` (argv[0] "split" / "merge"). */
int cm_ctl_shard_split(struct cm_ctl_cmd *cc, int argc, char **argv);
int cm_ctl_shard_merge(struct cm_ctl_cmd *cc, int argc, char **argv);
/* ctl_acl.c: `acl list|grant|revoke` and `whoami` (argv[0] the command). */
int cm_ctl_acl(struct cm_ctl_cmd *cc, int argc, char **argv);
int cm_ctl_whoami(struct cm_ctl_cmd *cc, int argc, char **argv);
/* ctl_lease.c: `lease grant|keepalive|revoke|ttl|list` (argv[0] "lease"). */
int cm_ctl_lease(struct cm_ctl_cmd *cc, int argc, char **argv);
/* ctl_lock.c: `lock PATH ... -- CMD` and `elect PATH VALUE -- CMD`, `elect
 * --watch PATH` (argv[0] the command). */
int cm_ctl_lock(struct cm_ctl_cmd *cc, int argc, char **argv);
int cm_ctl_elect(struct cm_ctl_cmd *cc, int argc, char **argv);
int cm_ctl_token(struct cm_ctl_cmd *cc, int argc, char **argv);
/* ctl_snapshot.c: `snapshot save|verify|inspect|restore` (argv[0] "snapshot"). */
int cm_ctl_snapshot(struct cm_ctl_cmd *cc, int argc, char **argv);

#endif /* CONFMAN_CTL_H */
