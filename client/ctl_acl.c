/* ctl_acl.c: `confmanctl acl list|grant|revoke` and `confmanctl whoami`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/ctl.h"
#include "confman/client.h"
#include "confman/error.h"

static int open_client(struct cm_ctl_cmd *cc)
{
	int rv = cm_client_open(cc->opts, &cc->client);
	return rv ? cm_ctl_fail("cannot start the client", rv) : 0;
}

/* Print text (lines) as is, or as a JSON array of strings. */
static void print_lines(const char *text, bool json, const char *key)
{
	if (!json) {
		fputs(text, stdout);
		return;
	}
	printf("{\"%s\":[", key);
	bool first = true;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (n > 0) {
			fputs(first ? "" : ",", stdout);
			cm_ctl_json_str(stdout, p, n);
			first = false;
		}
		p += n + (nl != NULL);
	}
	puts("]}");
}

static int json_flag(struct cm_ctl_cmd *cc, int argc, char **argv);

int cm_ctl_whoami(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	argc = json_flag(cc, argc, argv);
	if (argc != 1)
		return cm_ctl_usage("whoami: no arguments");
	char *text = NULL;
	int rv = open_client(cc);
	if (rv != 0)
		return rv;
	int err = cm_whoami(cc->client, &text);
	if (err != 0)
		return cm_ctl_fail("whoami", err);
	if (cc->json) {
		printf("{\"identity\":");
		cm_ctl_json_str(stdout, text, strlen(text));
		puts("}");
	} else {
		puts(text);
	}
	free(text);
	return CM_CTL_OK;
}

/* Take a trailing --json off the arguments. */
static int json_flag(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[argc - 1], "--json") == 0) {
		cc->json = true;
		return argc - 1;
	}
	return argc;
}

/* acl list | acl grant RULE | acl revoke RULE (RULE: one argument or three) */
int cm_ctl_acl(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	argc = json_flag(cc, argc, argv);
	if (argc < 2)
		return cm_ctl_usage("acl: expected list, grant or revoke");
	const char *sub = argv[1];
	char rule[4096 + 128] = "";
	if (strcmp(sub, "list") != 0) {
		if (argc != 3 && argc != 5)
			return cm_ctl_usage("acl %s: expected \"PERM PRINCIPAL PREFIX\"", sub);
		if (argc == 3)
			snprintf(rule, sizeof(rule), "%s", argv[2]);
		else
			snprintf(rule, sizeof(rule), "%s %s %s", argv[2], argv[3], argv[4]);
	} else if (argc != 2) {
		return cm_ctl_usage("acl list: no arguments");
	}
	int rv = open_client(cc);
	if (rv != 0)
		return rv;
	char *text = NULL;
	int err = strcmp(sub, "list") == 0   ? cm_acl_list(cc->client, &text)
		  : strcmp(sub, "grant") == 0  ? cm_acl_grant(cc->client, rule)
		  : strcmp(sub, "revoke") == 0 ? cm_acl_revoke(cc->client, rule)
					       : 1;
	if (err == 1)
		return cm_ctl_usage("acl: unknown subcommand '%s'", sub);
	if (err == -EINVAL)
		return cm_ctl_usage("acl %s: a rule is \"read|write|admin user:NAME|group:NAME "
				    "/PREFIX\", not '%s'", sub, rule);
	if (err != 0)
		return cm_ctl_fail(rule[0] ? rule : "acl list", err);
	if (text != NULL)
		print_lines(text, cc->json, "rules");
	free(text);
	return CM_CTL_OK;
}
