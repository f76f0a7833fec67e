/* acl_rules.h: access rules by path prefix: parsing and deciding (pure). */
#ifndef CONFMAN_ACL_RULES_H
#define CONFMAN_ACL_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A rule grants one permission on a path prefix (the prefix and everything
 * below it) to a user or a group. Permissions nest: admin implies write,
 * write implies read. Nothing is allowed that no rule grants (deny by
 * default); the one exception is a connection without authentication
 * (insecure clusters), which may do anything: there is no identity to check.
 *
 * Text form, one rule per line (the meta group's "/acl" file, and what
 * `confmanctl acl grant|revoke` send): "PERM PRINCIPAL PREFIX" with PERM
 * read|write|admin, PRINCIPAL user:NAME or group:NAME (NAME: 1-64 bytes of
 * [A-Za-z0-9._@-]), PREFIX a valid absolute path.
 */
enum cm_acl_perm { CM_ACL_READ = 1, CM_ACL_WRITE = 2, CM_ACL_ADMIN = 3 };

#define CM_ACL_NAME_MAX 64
#define CM_ACL_MAX_RULES 4096
#define CM_ACL_MAX_GROUPS 16

struct cm_acl_rule {
	uint8_t perm;  /* enum cm_acl_perm */
	bool group;    /* the principal is a group (else a user) */
	char name[CM_ACL_NAME_MAX + 1];
	char *prefix;  /* owned */
	uint32_t plen;
};

struct cm_acl {
	struct cm_acl_rule *v; /* owned */
	uint32_t n;
	uint64_t revision; /* the "/acl" file's mod index (0: none yet) */
};

/* Who is asking: a certificate's CN and OUs, or nobody checked (insecure). */
struct cm_acl_who {
	const char *user;
	const char *groups[CM_ACL_MAX_GROUPS];
	uint32_t n_groups;
	bool insecure; /* plain TCP, or a node's own certificate: not checked */
};

/* A forwarded identity's names (a trusted proxy's caller), NUL-terminated:
 * a cm_acl_who filled by cm_acl_who_parse points into it. */
struct cm_acl_names {
	char user[CM_ACL_NAME_MAX + 1];
	char groups[CM_ACL_MAX_GROUPS][CM_ACL_NAME_MAX + 1];
};

/*
 * cm_acl_who_parse - "USER[ GROUP...]" (single spaces; names as in rules;
 * at most CM_ACL_MAX_GROUPS groups) into names, with who pointing into it.
 * Returns 0 or -EINVAL (then who names nobody).
 */
int cm_acl_who_parse(const char *p, size_t len, struct cm_acl_names *names,
		     struct cm_acl_who *who);

/* Parse one rule ("PERM PRINCIPAL PREFIX", no newline). 0 or -EINVAL. */
int cm_acl_rule_parse(const char *p, size_t len, struct cm_acl_rule *out);
/* The rule back as text into buf (returns its length, or -ENOSPC). */
int cm_acl_rule_text(const struct cm_acl_rule *r, char *buf, size_t cap);
void cm_acl_rule_free(struct cm_acl_rule *r);

/* Parse the whole file; a bad line is -EINVAL with its number in *line. */
int cm_acl_parse(const char *text, size_t len, struct cm_acl *out, uint32_t *line);
void cm_acl_free(struct cm_acl *a);

/* May who do perm at path (a valid absolute path)? */
bool cm_acl_allows(const struct cm_acl *a, const struct cm_acl_who *who, uint8_t perm,
		   const char *path, uint32_t len);
/*
 * May who see directory path in a listing or stat it on the way to what it
 * may read? True when it may read path, or may read something below it
 * (then it sees only the children on the way there: cm_acl_shows).
 */
bool cm_acl_traverses(const struct cm_acl *a, const struct cm_acl_who *who, const char *path,
		      uint32_t len);
/* Whether child `name` of directory dir shows in who's listing of dir. */
bool cm_acl_shows(const struct cm_acl *a, const struct cm_acl_who *who, const char *dir,
		  uint32_t dlen, const char *name, uint32_t nlen);

#endif /* CONFMAN_ACL_RULES_H */
