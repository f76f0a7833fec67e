/* acl.c: who may do what, enforced where a request enters the node.
 *
 * The rules (acl_rules.h) live in the meta group's "/acl" file: recorded
 * once from the cluster file's [cluster] admin (create-only, as the node
 * table's seed: "admin user:NAME /"), changed by CM_OP_ACL at the meta
 * leader with a compare-and-set on the file's modify index, so concurrent
 * changes never lose one another. Each node checks requests against the
 * rules its meta replica applied (their revision is the file's modify
 * index); a change is in force on a node once its meta replica applied it.
 *
 * Permissions per operation: GET, LIST, WATCH read (a directory on the way
 * to something readable may be listed, stat'ed and watched: the listing
 * shows only the children on that way, the watch only their events); PUT, MKDIR, DELETE write, RENAME write on both
 * paths; DUMP (a backup holds everything), node, membership, transfer and
 * ACL changes admin on "/"; shard add, split, merge, move admin on the
 * shard's prefix; token create, revoke and list admin on "/", token
 * resolve trusted proxies only (token.c); STATUS, SHARDS and WHOAMI any
 * authenticated caller.
 *
 * A trusted proxy (a CN in [cluster] proxies: the gateway) may forward its
 * caller's identity in a request (REQ's `as`): the request is then checked
 * as that identity's, never the proxy's. From any other connection a
 * forwarded identity is refused (EACCES) and logged.
 * Watch events are filtered per watcher (watch.c): nothing about a path it
 * may not read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "confman/path.h"
#include "server/kv.h"
#include "server/log.h"
#include "server/node.h"

#define ACL_FILE "/acl"

/* ---- the rules in force ---- */

int cm__acl_load(struct cm_node *n, MDB_txn *txn)
{
	struct cm_attr attr;
	struct cm_bytes v;
	int rv = cm_kv_get(n->store, txn, CM_META_GROUP,
			   (struct cm_bytes){ACL_FILE, sizeof(ACL_FILE) - 1}, &attr, &v);
	if (rv == -ENOENT || (rv == 0 && attr.mod_index == n->acl.revision))
		return 0;
	if (rv != 0)
		return rv;
	struct cm_acl a;
	uint32_t line;
	rv = cm_acl_parse(v.p, v.len, &a, &line);
	if (rv != 0) {
		cm_log_error("acl: the recorded rules are unusable (line %u): the previous ones stay",
			     line);
		return rv;
	}
	a.revision = attr.mod_index;
	cm_acl_free(&n->acl);
	n->acl = a;
	cm_log_info("acl: %u rules (revision %llu)", a.n, (unsigned long long)a.revision);
	return 1;
}

/* The first admin, once for the cluster's life (the meta leader, until
 * recorded: EEXIST afterwards). */
void cm__acl_propose_seed(struct cm_node *n, struct cm_group *meta)
{
	static bool warned;
	if (!warned && n->acl.revision == 0 && !n->cfg->admin[0] && !n->cfg->insecure) {
		warned = true;
		cm_log_warn("acl: no access rule is recorded and the cluster file names no "
			    "[cluster] admin: every TLS client will be refused (deny by default)");
	}
	if (n->acl.revision != 0 || !n->cfg->admin[0] || n->cfg->join[0])
		return;
	char text[128];
	int len = snprintf(text, sizeof(text), "admin user:%s /\n", n->cfg->admin);
	struct cm_req req = {
		.op = CM_OP_PUT,
		.flags = CM_PUT_CREATE,
		.path = {ACL_FILE, sizeof(ACL_FILE) - 1},
		.value = {text, (uint32_t)len},
		.mode = S_IFREG | 0600,
	};
	cm__propose_create(n, meta, &req);
}

/* ---- deciding ---- */

/* The rules in force: the recorded ones, or, until the first are recorded
 * (a cluster's first moments), the one the seed will record. */
static const struct cm_acl *in_force(struct cm_node *n)
{
	static struct cm_acl_rule seed;
	static struct cm_acl implied = {.v = &seed};
	if (n->acl.revision != 0 || !n->cfg->admin[0])
		return &n->acl;
	seed.perm = CM_ACL_ADMIN;
	snprintf(seed.name, sizeof(seed.name), "%s", n->cfg->admin);
	seed.prefix = (char *)"/";
	seed.plen = 1;
	implied.n = 1;
	return &implied;
}

static uint8_t admin_on_root(const struct cm_req *req, const char **path, uint32_t *len)
{
	*path = "/";
	*len = 1;
	(void)req;
	return CM_ACL_ADMIN;
}

/* The permission a request needs, and on which path (0: none needed). */
static uint8_t needs(const struct cm_req *req, const char **path, uint32_t *len)
{
	*path = req->path.p;
	*len = req->path.len;
	switch (req->op) {
	case CM_OP_GET: case CM_OP_LIST: case CM_OP_WATCH:
		return CM_ACL_READ;
	case CM_OP_PUT: case CM_OP_MKDIR: case CM_OP_DELETE: case CM_OP_RENAME:
		return CM_ACL_WRITE;
	case CM_OP_LEASE: case CM_OP_LOCK: /* a lease or lock on path: a write there */
		return req->op == CM_OP_LOCK && req->flags == CM_LOCK_QUERY ? CM_ACL_READ
									       : CM_ACL_WRITE;
	case CM_OP_SHARD_ADD: case CM_OP_SHARD_SPLIT: case CM_OP_SHARD_MERGE:
		return CM_ACL_ADMIN; /* on the shard's prefix */
	case CM_OP_DUMP: case CM_OP_NODE_ADD: case CM_OP_NODE_REMOVE: case CM_OP_CONF_CHANGE:
	case CM_OP_TRANSFER: case CM_OP_SHARD_SET:
		return admin_on_root(req, path, len);
	case CM_OP_ACL:
		return req->flags == CM_ACL_LIST ? 0 : CM_ACL_ADMIN; /* checked in acl_op */
	case CM_OP_TOKEN: /* resolve: trusted proxies only (token.c) */
		return req->flags == CM_TOKEN_RESOLVE ? 0 : admin_on_root(req, path, len);
	default: /* STATUS, SHARDS, UNWATCH, WHOAMI */
		return 0;
	}
}

int cm__acl_check(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_acl_who who;
	struct cm_acl_names names;
	int rv = cm__acl_who(n, c, req->as, &names, &who);
	if (rv != 0) {
		const struct cm_identity *id = cm_conn_identity(c);
		cm_log_warn("acl: %s sent a forwarded identity (%.*s) but %s: refused",
			    id && id->user[0] ? id->user : "?", (int)req->as.len, req->as.p,
			    rv == -EACCES ? "is not a trusted proxy ([cluster] proxies)"
					  : "the identity is malformed");
		return -EACCES;
	}
	if (who.insecure)
		return 0;
	const char *path;
	uint32_t len;
	uint8_t perm = needs(req, &path, &len);
	if (perm == 0 || req->op == CM_OP_ACL)
		return 0;
	if (cm_path_validate(path, len) != 0)
		return 0; /* the request's own checks refuse it */
	const struct cm_acl *a = in_force(n);
	bool ok = cm_acl_allows(a, &who, perm, path, len);
	/* Something readable below: a listing shows only the way there
	 * (serve_read narrows it), a watch only its events (watch.c). */
	if (!ok && perm == CM_ACL_READ)
		ok = cm_acl_traverses(a, &who, path, len);
	if (ok && req->op == CM_OP_RENAME)
		ok = cm_path_validate(req->path2.p, req->path2.len) != 0 ||
		     cm_acl_allows(a, &who, CM_ACL_WRITE, req->path2.p, req->path2.len);
	if (!ok)
		cm_log_info("acl: %s may not %s %.*s", who.user ? who.user : "?",
			    perm == CM_ACL_READ ? "read" : perm == CM_ACL_WRITE ? "write" : "administer",
			    (int)len, path);
	return ok ? 0 : -EACCES;
}

bool cm__acl_reads(struct cm_node *n, struct cm_conn *c, struct cm_bytes as, const char *path,
		   uint32_t len)
{
	struct cm_acl_who who;
	struct cm_acl_names names;
	if (cm__acl_who(n, c, as, &names, &who) != 0)
		return false;
	return cm_acl_allows(in_force(n), &who, CM_ACL_READ, path, len);
}

bool cm__acl_shows(struct cm_node *n, struct cm_conn *c, struct cm_bytes as, const char *dir,
		   uint32_t dlen, const char *name, uint32_t nlen)
{
	struct cm_acl_who who;
	struct cm_acl_names names;
	if (cm__acl_who(n, c, as, &names, &who) != 0)
		return false;
	const struct cm_acl *a = in_force(n);
	return cm_acl_allows(a, &who, CM_ACL_READ, dir, dlen) ||
	       cm_acl_shows(a, &who, dir, dlen, name, nlen);
}

/* ---- who is asking ---- */

bool cm__acl_proxy(const struct cm_node *n, const struct cm_identity *id)
{
	if (id == NULL || id->insecure || id->node_id != 0 || id->user[0] == '\0')
		return false;
	for (uint32_t k = 0; k < n->cfg->n_proxies; k++)
		if (strcmp(n->cfg->proxies[k], id->user) == 0)
			return true;
	return false;
}

int cm__acl_who(struct cm_node *n, struct cm_conn *c, struct cm_bytes as,
		struct cm_acl_names *names, struct cm_acl_who *who)
{
	/* Plain TCP (an insecure cluster) carries no identity: nothing to
	 * check, a forwarded one included. A forwarded identity counts only
	 * from a trusted proxy's certificate: anyone else could claim to be
	 * an admin. A node's own certificate (its internal requests, a join)
	 * is the cluster itself. Otherwise the certificate's CN and OUs (net.c). */
	const struct cm_identity *id = cm_conn_identity(c);
	memset(who, 0, sizeof(*who));
	if (id == NULL || id->insecure) {
		who->insecure = true;
		return 0;
	}
	if (as.len > 0) {
		if (!cm__acl_proxy(n, id))
			return -EACCES;
		return cm_acl_who_parse(as.p, as.len, names, who);
	}
	if (id->node_id != 0) {
		who->insecure = true;
		return 0;
	}
	who->user = id->user;
	for (uint32_t k = 0; k < id->n_groups && k < CM_ACL_MAX_GROUPS; k++)
		who->groups[who->n_groups++] = id->groups[k];
	return 0;
}

/* ---- CM_OP_ACL and CM_OP_WHOAMI ---- */

static void reply_value(struct cm_node *n, struct cm_conn *c, const struct cm_req *req,
			const char *p, size_t len)
{
	struct cm_resp r;
	cm__resp_init(n, NULL, req, &r);
	r.has_attr = true;
	r.value = (struct cm_bytes){p, (uint32_t)len};
	cm_net_reply(c, &r);
}

/* The rules who administers, one per line, into a malloc'd buffer. */
static char *rules_text(const struct cm_acl *a, const struct cm_acl_who *who, uint32_t skip,
			const struct cm_acl_rule *add, size_t *len)
{
	size_t cap = 256 + (size_t)(a->n + 1) * (CM_PATH_MAX + 96), n = 0;
	char *buf = malloc(cap);
	for (uint32_t k = 0; buf != NULL && k <= a->n; k++) {
		const struct cm_acl_rule *r = k < a->n ? &a->v[k] : add;
		if (r == NULL || k == skip ||
		    (who && !cm_acl_allows(a, who, CM_ACL_ADMIN, r->prefix, r->plen)))
			continue;
		int l = cm_acl_rule_text(r, buf + n, cap - n - 1);
		if (l < 0)
			break;
		n += (size_t)l;
		buf[n++] = '\n';
	}
	*len = n;
	return buf;
}

static uint32_t find_rule(const struct cm_acl *a, const struct cm_acl_rule *r)
{
	for (uint32_t k = 0; k < a->n; k++)
		if (a->v[k].perm == r->perm && a->v[k].group == r->group &&
		    strcmp(a->v[k].name, r->name) == 0 && strcmp(a->v[k].prefix, r->prefix) == 0)
			return k;
	return UINT32_MAX;
}

/* grant or revoke: the whole file again, if nobody changed it meanwhile. */
static void acl_change(struct cm_node *n, struct cm_conn *c, const struct cm_req *req,
		       const struct cm_acl_who *who)
{
	struct cm_acl_rule r;
	int err = cm_acl_rule_parse(req->value.p, req->value.len, &r);
	uint32_t at = err ? UINT32_MAX : find_rule(&n->acl, &r);
	if (err == 0 && !cm_acl_allows(in_force(n), who, CM_ACL_ADMIN, r.prefix, r.plen))
		err = -EACCES;
	else if (err == 0 && ((req->flags == CM_ACL_GRANT) == (at != UINT32_MAX)))
		err = 1; /* granted already, or nothing to revoke: done */
	size_t len = 0;
	char *text = err ? NULL : rules_text(&n->acl, NULL, at, req->flags == CM_ACL_GRANT ? &r : NULL,
					     &len);
	if (err == 0 && text == NULL)
		err = -ENOMEM;
	if (err == 0) {
		struct cm_req put = {
			.id = req->id, .op = CM_OP_PUT, .flags = CM_PUT_IF_MOD,
			.mod_index = n->acl.revision, .mode = S_IFREG | 0600,
			.path = {ACL_FILE, sizeof(ACL_FILE) - 1}, .value = {text, (uint32_t)len},
		};
		cm_log_info("acl: %s %.*s", req->flags == CM_ACL_GRANT ? "grant" : "revoke",
			    (int)req->value.len, req->value.p);
		cm__req_write(n, &n->groups[0], c, &put);
	} else {
		cm__reply_err(n, &n->groups[0], c, req, err == 1 ? 0 : err);
	}
	free(text);
	cm_acl_rule_free(&r);
}

void cm__acl_handle(struct cm_node *n, struct cm_conn *c, const struct cm_req *req)
{
	struct cm_acl_who who;
	struct cm_acl_names names;
	if (cm__acl_who(n, c, req->as, &names, &who) != 0) { /* cm__acl_check refused it */
		cm__reply_err(n, NULL, c, req, -EACCES);
		return;
	}
	if (req->op == CM_OP_WHOAMI) {
		char text[CM_ACL_NAME_MAX * (CM_ACL_MAX_GROUPS + 1) + 64];
		size_t len = 0;
		if (who.insecure)
			len = (size_t)snprintf(text, sizeof(text), "(insecure: no identity)");
		else
			len = (size_t)snprintf(text, sizeof(text), "%s", who.user ? who.user : "?");
		for (uint32_t k = 0; !who.insecure && k < who.n_groups && len < sizeof(text); k++)
			len += (size_t)snprintf(text + len, sizeof(text) - len, " %s", who.groups[k]);
		reply_value(n, c, req, text, len < sizeof(text) ? len : sizeof(text) - 1);
		return;
	}
	if (req->flags == CM_ACL_LIST) {
		size_t len = 0;
		char *text = rules_text(&n->acl, who.insecure ? NULL : &who, UINT32_MAX, NULL, &len);
		if (text == NULL)
			cm__reply_err(n, NULL, c, req, -ENOMEM);
		else
			reply_value(n, c, req, text, len);
		free(text);
		return;
	}
	if (req->flags != CM_ACL_GRANT && req->flags != CM_ACL_REVOKE) {
		cm__reply_err(n, NULL, c, req, -EINVAL);
		return;
	}
	acl_change(n, c, req, &who);
}
