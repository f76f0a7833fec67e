/* acl.c: the blocking API for access rules and the caller's identity. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

static int take_text(struct cm_client__call *s, const struct cm_resp *resp)
{
	char *t = malloc((size_t)resp->value.len + 1);
	if (t == NULL)
		return -ENOMEM;
	memcpy(t, resp->value.p, resp->value.len);
	t[resp->value.len] = '\0';
	*(char **)s->out = t;
	return 0;
}

static int acl_call(struct cm_client *c, uint8_t op, uint32_t flags, const char *rule, char **text)
{
	if (c == NULL || (rule == NULL) != (text != NULL))
		return -EINVAL;
	struct cm_req r = {.op = op, .flags = flags, .path = {"/", 1}};
	if (rule != NULL)
		r.value = (struct cm_bytes){rule, (uint32_t)strlen(rule)};
	struct cm_client__call s = {.copy = text ? take_text : NULL, .out = text};
	return cm_client__run(c, NULL, &r, &s);
}

int cm_acl_grant(struct cm_client *c, const char *rule)
{
	return acl_call(c, CM_OP_ACL, CM_ACL_GRANT, rule, NULL);
}

int cm_acl_revoke(struct cm_client *c, const char *rule)
{
	return acl_call(c, CM_OP_ACL, CM_ACL_REVOKE, rule, NULL);
}

int cm_acl_list(struct cm_client *c, char **text)
{
	return acl_call(c, CM_OP_ACL, CM_ACL_LIST, NULL, text);
}

int cm_whoami(struct cm_client *c, char **text)
{
	return acl_call(c, CM_OP_WHOAMI, 0, NULL, text);
}

/* ---- bearer tokens (server/token.c) ---- */

int cm_token_create(struct cm_client *c, const char *line)
{
	return line ? acl_call(c, CM_OP_TOKEN, CM_TOKEN_CREATE, line, NULL) : -EINVAL;
}

int cm_token_revoke(struct cm_client *c, const char *id)
{
	return id ? acl_call(c, CM_OP_TOKEN, CM_TOKEN_REVOKE, id, NULL) : -EINVAL;
}

int cm_token_list(struct cm_client *c, char **text)
{
	if (c == NULL || text == NULL)
		return -EINVAL;
	struct cm_req r = {.op = CM_OP_TOKEN, .flags = CM_TOKEN_LIST, .path = {"/", 1}};
	struct cm_client__call s = {.copy = take_text, .out = text};
	return cm_client__run(c, NULL, &r, &s);
}
