/* error.h: Confman's error codes beyond errno, and their messages. */
#ifndef CONFMAN_ERROR_H
#define CONFMAN_ERROR_H

/*
 * Every Confman function returns 0 or a negative code: either a negative errno
 * value (-EINVAL, -ENOMEM, -EMSGSIZE ...) or one of the project codes below,
 * which live in a reserved range (-10001 and down) that no errno reaches.
 * The list is the single source of names and messages (libuv's UV_ERRNO_MAP).
 */
#define CM_ERROR_MAP(X)                                                        \
	X(NOTLEADER, -10001, "not the leader of this group")                   \
	X(NOLEADER, -10002, "no leader is known for this group")               \
	X(TRANSFERRING, -10003, "a leadership transfer is in progress")        \
	X(CONFPENDING, -10004, "a membership change is already pending")       \
	X(LAGGING, -10005, "the learner has not caught up with the leader")    \
	X(UNKNOWNPEER, -10006, "the node is not a member of this group")       \
	X(WRONGSHARD, -10007, "the path belongs to another shard")             \
	X(STALE, -10008, "the replica is too far behind to serve the read")    \
	X(COMPACTED, -10009, "the requested index has been compacted away")    \
	X(SHUTDOWN, -10010, "the node is shutting down")                        \
	X(NOQUORUM, -10011, "the change would leave the group without a quorum of live, caught-up voters") \
	X(NONODE, -10012, "no such node in the node table, or it was removed") \
	X(TLS, -10013, "the TLS handshake failed (is the other end using TLS with the same CA?)") \
	X(CERTREFUSED, -10014, "the server refused our certificate (none given, another CA's, expired or not yet valid: its log says which)") \
	X(BADCERT, -10015, "the server's certificate is not trusted (another CA's, expired, not yet valid, or not a node's)") \
	X(NOTPEER, -10016, "the certificate does not name this node id (confman-node-<id>): it cannot act as a peer")

enum cm_error {
#define CM__ERR_ENUM(name, code, msg) CM_E##name = (code),
	CM_ERROR_MAP(CM__ERR_ENUM)
#undef CM__ERR_ENUM
};

/*
 * cm_strerror - a human-readable message for a code returned by any Confman
 * function: a project code, a negative errno, or 0.
 * Returns a static string; never NULL.
 */
const char *cm_strerror(int code);

/*
 * cm_errname - the symbolic name of a code ("NOTLEADER", "ENOENT", ...), for
 * logs and JSON output. Returns a static string; never NULL.
 */
const char *cm_errname(int code);

#endif /* CONFMAN_ERROR_H */
