/* acl_rules.c: access rules by path prefix: parsing and deciding. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confman/path.h"
#include "server/acl_rules.h"

static const char *const perm_names[] = {[CM_ACL_READ] = "read", [CM_ACL_WRITE] = "write",
					 [CM_ACL_ADMIN] = "admin"};

static bool name_ok(const char *p, size_t len)
{
	if (len == 0 || len > CM_ACL_NAME_MAX)
		return false;
	for (size_t k = 0; k < len; k++) {
		char ch = p[k];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '_' || ch == '@' || ch == '-'))
			return false;
	}
	return true;
}

/* The next space-separated field of p[0, len) from *off. */
static bool field(const char *p, size_t len, size_t *off, const char **f, size_t *flen)
{
	size_t k = *off;
	if (k >= len)
		return false;
	size_t end = k;
	while (end < len && p[end] != ' ')
		end++;
	*f = p + k;
	*flen = end - k;
	*off = end < len ? end + 1 : end;
	return *flen > 0;
}

int cm_acl_rule_parse(const char *p, size_t len, struct cm_acl_rule *out)
{
	memset(out, 0, sizeof(*out));
	const char *perm, *who, *prefix;
	size_t pl, wl, xl, off = 0;
	if (!field(p, len, &off, &perm, &pl) || !field(p, len, &off, &who, &wl) ||
	    !field(p, len, &off, &prefix, &xl) || off != len)
		return -EINVAL;
	for (uint8_t k = CM_ACL_READ; k <= CM_ACL_ADMIN; k++)
		if (strlen(perm_names[k]) == pl && memcmp(perm, perm_names[k], pl) == 0)
			out->perm = k;
	if (wl > 5 && memcmp(who, "user:", 5) == 0) {
		who += 5;
		wl -= 5;
	} else if (wl > 6 && memcmp(who, "group:", 6) == 0) {
		out->group = true;
		who += 6;
		wl -= 6;
	} else {
		return -EINVAL;
	}
	if (out->perm == 0 || !name_ok(who, wl) || cm_path_validate(prefix, (uint32_t)xl) != 0)
		return -EINVAL;
	memcpy(out->name, who, wl);
	out->name[wl] = '\0';
	out->prefix = malloc(xl + 1);
	if (out->prefix == NULL)
		return -ENOMEM;
	memcpy(out->prefix, prefix, xl);
	out->prefix[xl] = '\0';
	out->plen = (uint32_t)xl;
	return 0;
}

int cm_acl_rule_text(const struct cm_acl_rule *r, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s %s:%s %s", perm_names[r->perm], r->group ? "group" : "user",
			 r->name, r->prefix);
	return n >= 0 && (size_t)n < cap ? n : -ENOSPC;
}

void cm_acl_rule_free(struct cm_acl_rule *r)
{
	free(r->prefix);
	r->prefix = NULL;
}

void cm_acl_free(struct cm_acl *a)
{
	for (uint32_t k = 0; k < a->n; k++)
		cm_acl_rule_free(&a->v[k]);
	free(a->v);
	memset(a, 0, sizeof(*a));
}

int cm_acl_parse(const char *text, size_t len, struct cm_acl *out, uint32_t *line)
{
	memset(out, 0, sizeof(*out));
	*line = 0;
	for (size_t off = 0; off < len;) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t end = nl ? (size_t)(nl - text) : len;
		(*line)++;
		if (end > off) {
			if (out->n == CM_ACL_MAX_RULES) {
				cm_acl_free(out);
				return -ENOSPC;
			}
			struct cm_acl_rule *v = realloc(out->v, sizeof(*v) * (out->n + 1));
			if (v == NULL) {
				cm_acl_free(out);
				return -ENOMEM;
			}
			out->v = v;
			int rv = cm_acl_rule_parse(text + off, end - off, &out->v[out->n]);
			if (rv != 0) {
				cm_acl_free(out);
				return rv;
			}
			out->n++;
		}
		off = end + 1;
	}
	return 0;
}

int cm_acl_who_parse(const char *p, size_t len, struct cm_acl_names *nm, struct cm_acl_who *who)
{
	memset(who, 0, sizeof(*who));
	size_t off = 0, flen;
	const char *f;
	uint32_t n = 0;
	while (off < len) {
		if (!field(p, len, &off, &f, &flen) || !name_ok(f, flen) || n > CM_ACL_MAX_GROUPS)
			goto bad;
		char *dst = n == 0 ? nm->user : nm->groups[n - 1];
		memcpy(dst, f, flen);
		dst[flen] = '\0';
		n++;
	}
	if (n == 0 || p[len - 1] == ' ')
		goto bad;
	who->user = nm->user;
	for (uint32_t k = 1; k < n; k++)
		who->groups[who->n_groups++] = nm->groups[k - 1];
	return 0;
bad:
	memset(who, 0, sizeof(*who));
	return -EINVAL;
}

/* Does rule r name who? */
static bool names(const struct cm_acl_rule *r, const struct cm_acl_who *who)
{
	if (!r->group)
		return who->user != NULL && strcmp(r->name, who->user) == 0;
	for (uint32_t k = 0; k < who->n_groups; k++)
		if (strcmp(r->name, who->groups[k]) == 0)
			return true;
	return false;
}

bool cm_acl_allows(const struct cm_acl *a, const struct cm_acl_who *who, uint8_t perm,
		   const char *path, uint32_t len)
{
	if (who->insecure)
		return true;
	for (uint32_t k = 0; k < a->n; k++) {
		const struct cm_acl_rule *r = &a->v[k];
		if (r->perm >= perm && names(r, who) && cm_path_is_under(path, len, r->prefix, r->plen))
			return true;
	}
	return false;
}

bool cm_acl_traverses(const struct cm_acl *a, const struct cm_acl_who *who, const char *path,
		      uint32_t len)
{
	if (cm_acl_allows(a, who, CM_ACL_READ, path, len))
		return true;
	for (uint32_t k = 0; k < a->n; k++) {
		const struct cm_acl_rule *r = &a->v[k];
		if (names(r, who) && cm_path_is_under(r->prefix, r->plen, path, len))
			return true; /* a readable prefix lies below it */
	}
	return false;
}

bool cm_acl_shows(const struct cm_acl *a, const struct cm_acl_who *who, const char *dir,
		  uint32_t dlen, const char *name, uint32_t nlen)
{
	char child[4096 + 256 + 2];
	if ((size_t)dlen + nlen + 2 > sizeof(child))
		return false;
	uint32_t cl = dlen == 1 ? 0 : dlen;
	memcpy(child, dir, cl);
	child[cl] = '/';
	memcpy(child + cl + 1, name, nlen);
	return cm_acl_traverses(a, who, child, cl + 1 + nlen);
}
