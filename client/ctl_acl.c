/* ctl_acl.c: `confmanctl acl list|grant|revoke`, `confmanctl whoami`, `confmanctl token`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "client/ctl.h"
#include "common/tls.h"
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

/* ---- token create|revoke|list ---- */

/* Space-separated names as a JSON array. */
static void print_groups_json(const char *p, size_t n)
{
	putchar('[');
	for (size_t k = 0; p != NULL && k < n;) {
		const char *sp = memchr(p + k, ' ', n - k);
		size_t l = sp ? (size_t)(sp - p - k) : n - k;
		fputs(k ? "," : "", stdout);
		cm_ctl_json_str(stdout, p + k, l);
		k += l + 1;
	}
	putchar(']');
}

/* "90s", "15m", "12h", "30d" or plain seconds: seconds, 0 on a bad text. */
static uint64_t parse_ttl(const char *s)
{
	char *end = NULL;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || v == 0 || v > 3650ull * 86400)
		return 0;
	uint64_t mul = *end == '\0' || strcmp(end, "s") == 0 ? 1
		     : strcmp(end, "m") == 0		  ? 60
		     : strcmp(end, "h") == 0		  ? 3600
		     : strcmp(end, "d") == 0		  ? 86400
							  : 0;
	return mul && v * mul <= 3650ull * 86400 ? v * mul : 0;
}

/* token create USER [--group G]... [--ttl DUR]: the token, printed once. */
static int token_create(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	if (argc < 3 || argv[2][0] == '-')
		return cm_ctl_usage("token create USER [--group G]... [--ttl DUR]");
	char who[1100];
	size_t wl = (size_t)snprintf(who, sizeof(who), "%s", argv[2]);
	uint64_t ttl = 0;
	for (int k = 3; k < argc; k += 2) {
		if (k + 1 >= argc)
			return cm_ctl_usage("token create: %s needs a value", argv[k]);
		if (strcmp(argv[k], "--group") == 0 && wl + strlen(argv[k + 1]) + 2 < sizeof(who))
			wl += (size_t)snprintf(who + wl, sizeof(who) - wl, " %s", argv[k + 1]);
		else if (strcmp(argv[k], "--ttl") == 0 && (ttl = parse_ttl(argv[k + 1])) != 0)
			continue;
		else
			return cm_ctl_usage("token create: bad option %s %s", argv[k], argv[k + 1]);
	}
	char id[17], secret[65], token[17 + 1 + 64], hash[65], line[1300];
	if (cm_tls_random_hex(id, 8) != 0 || cm_tls_random_hex(secret, 32) != 0)
		return cm_ctl_fail("token create: no random bytes", -EIO);
	snprintf(token, sizeof(token), "%s.%s", id, secret);
	if (cm_tls_sha256_hex(token, strlen(token), hash) != 0)
		return cm_ctl_fail("token create: SHA-256", -EIO);
	uint64_t expires = ttl ? (uint64_t)time(NULL) + ttl : 0;
	snprintf(line, sizeof(line), "%s %s %llu %s", id, hash, (unsigned long long)expires, who);
	int rv = open_client(cc);
	if (rv != 0)
		return rv;
	int err = cm_token_create(cc->client, line);
	if (err == -EINVAL)
		return cm_ctl_usage("token create: names are 1-64 of [A-Za-z0-9._@-], at most 16 "
				    "groups");
	if (err != 0)
		return cm_ctl_fail("token create", err);
	if (cc->json)
		printf("{\"id\":\"%s\",\"token\":\"%s\",\"expires\":%llu}\n", id, token,
		       (unsigned long long)expires);
	else
		printf("%s\n", token); /* shown this once: the servers keep its hash only */
	return CM_CTL_OK;
}

/* "ID EXPIRES USER [GROUP...]" lines as JSON objects. */
static void print_tokens_json(const char *text)
{
	printf("{\"tokens\":[");
	bool first = true;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char id[17] = "";
		unsigned long long exp = 0;
		int used = 0;
		if (n > 0 && sscanf(p, "%16s %llu %n", id, &exp, &used) == 2 && (size_t)used <= n) {
			const char *who = p + used, *sp = memchr(who, ' ', n - (size_t)used);
			size_t ul = sp ? (size_t)(sp - who) : n - (size_t)used;
			printf("%s{\"id\":\"%s\",\"expires\":%llu,\"user\":", first ? "" : ",", id, exp);
			cm_ctl_json_str(stdout, who, ul);
			printf(",\"groups\":");
			print_groups_json(sp ? sp + 1 : NULL, sp ? n - (size_t)(sp + 1 - p) : 0);
			putchar('}');
			first = false;
		}
		p += n + (nl != NULL);
	}
	puts("]}");
}

int cm_ctl_token(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	argc = json_flag(cc, argc, argv);
	if (argc < 2)
		return cm_ctl_usage("token: expected create, revoke or list");
	const char *sub = argv[1];
	if (strcmp(sub, "create") == 0)
		return token_create(cc, argc, argv);
	if (strcmp(sub, "revoke") == 0 && argc != 3)
		return cm_ctl_usage("token revoke ID");
	if (strcmp(sub, "list") == 0 && argc != 2)
		return cm_ctl_usage("token list: no arguments");
	if (strcmp(sub, "revoke") != 0 && strcmp(sub, "list") != 0)
		return cm_ctl_usage("token: unknown subcommand '%s'", sub);
	int rv = open_client(cc);
	if (rv != 0)
		return rv;
	char *text = NULL;
	int err = strcmp(sub, "list") == 0 ? cm_token_list(cc->client, &text)
					   : cm_token_revoke(cc->client, argv[2]);
	if (err == -EINVAL)
		return cm_ctl_usage("token revoke: an id is the 16 hex digits before the token's '.'");
	if (err != 0)
		return cm_ctl_fail(argc == 3 ? argv[2] : "token list", err);
	if (text != NULL && cc->json)
		print_tokens_json(text);
	else if (text != NULL)
		fputs(text, stdout);
	free(text);
	return CM_CTL_OK;
}
