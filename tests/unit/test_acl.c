/* test_acl.c: access rules by path prefix (server/acl_rules.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server/acl_rules.h"

#define S(x) x, (uint32_t)strlen(x)


static const char rules[] = "read user:alice /apps/web\n"
			    "write user:bob /apps\n"
			    "admin group:ops /apps/pay\n"
			    "\n"
			    "read group:dev /etc/shared\n";

/* A forwarded identity's text: "USER[ GROUP...]", names as in rules. */
static void test_who_parse(void **state)
{
	(void)state;
	struct cm_acl_names nm;
	struct cm_acl_who who;
	assert_int_equal(cm_acl_who_parse(S("alice ops dev"), &nm, &who), 0);
	assert_string_equal(who.user, "alice");
	assert_int_equal(who.n_groups, 2);
	assert_string_equal(who.groups[1], "dev");
	assert_false(who.insecure);
	assert_int_equal(cm_acl_who_parse(S("bob"), &nm, &who), 0);
	assert_int_equal(who.n_groups, 0);
	const char *bad[] = {"", " alice", "alice ", "alice  ops", "al/ice", "alice o\nps"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		assert_int_equal(cm_acl_who_parse(bad[k], strlen(bad[k]), &nm, &who), -EINVAL);
		assert_null(who.user);
	}
	char many[40 * 3] = "u";
	for (int k = 0; k < CM_ACL_MAX_GROUPS; k++)
		strcat(many, " g");
	assert_int_equal(cm_acl_who_parse(S(many), &nm, &who), 0);
	assert_int_equal(who.n_groups, CM_ACL_MAX_GROUPS);
	strcat(many, " g");
	assert_int_equal(cm_acl_who_parse(S(many), &nm, &who), -EINVAL);
}

static void test_parse_and_text(void **state)
{
	(void)state;
	struct cm_acl a;
	uint32_t line;
	assert_int_equal(cm_acl_parse(rules, strlen(rules), &a, &line), 0);
	assert_int_equal(a.n, 4);
	char buf[256];
	assert_int_equal(cm_acl_rule_text(&a.v[2], buf, sizeof(buf)),
			 (int)strlen("admin group:ops /apps/pay"));
	assert_string_equal(buf, "admin group:ops /apps/pay");
	cm_acl_free(&a);
	static const char *const bad[] = {
		"read alice /x",		/* no user: or group: */
		"root user:alice /x",		/* no such permission */
		"read user:al ice /x",		/* four fields */
		"read user: /x",		/* empty name */
		"read user:alice x",		/* not an absolute path */
		"read user:alice /x/",		/* not a valid path */
		"read user:al/ice /x",		/* a bad name byte */
		"read  user:alice /x",		/* two spaces */
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct cm_acl_rule r;
		assert_int_equal(cm_acl_rule_parse(bad[k], strlen(bad[k]), &r), -EINVAL);
	}
	const char two[] = "read user:a /x\nread user:a x\n";
	assert_int_equal(cm_acl_parse(two, strlen(two), &a, &line), -EINVAL);
	assert_int_equal(line, 2);
}

static void test_decisions(void **state)
{
	(void)state;
	struct cm_acl a;
	uint32_t line;
	assert_int_equal(cm_acl_parse(rules, strlen(rules), &a, &line), 0);
	struct cm_acl_who alice = {.user = "alice"}, bob = {.user = "bob"};
	struct cm_acl_who carol = {.user = "carol", .groups = {"ops", "dev"}, .n_groups = 2};
	struct cm_acl_who nobody = {.user = "mallory"}, plain = {.insecure = true};
	/* Prefixes cover their subtree and no sibling with a longer name. */
	assert_true(cm_acl_allows(&a, &alice, CM_ACL_READ, S("/apps/web")));
	assert_true(cm_acl_allows(&a, &alice, CM_ACL_READ, S("/apps/web/port")));
	assert_false(cm_acl_allows(&a, &alice, CM_ACL_READ, S("/apps/webx")));
	assert_false(cm_acl_allows(&a, &alice, CM_ACL_WRITE, S("/apps/web/port")));
	/* write implies read; admin implies write. */
	assert_true(cm_acl_allows(&a, &bob, CM_ACL_READ, S("/apps/pay/key")));
	assert_false(cm_acl_allows(&a, &bob, CM_ACL_ADMIN, S("/apps/pay")));
	assert_true(cm_acl_allows(&a, &carol, CM_ACL_WRITE, S("/apps/pay/key")));
	assert_true(cm_acl_allows(&a, &carol, CM_ACL_ADMIN, S("/apps/pay")));
	assert_true(cm_acl_allows(&a, &carol, CM_ACL_READ, S("/etc/shared/x")));
	/* Deny by default; insecure connections are not checked. */
	assert_false(cm_acl_allows(&a, &nobody, CM_ACL_READ, S("/")));
	assert_false(cm_acl_allows(&a, &alice, CM_ACL_READ, S("/")));
	assert_true(cm_acl_allows(&a, &plain, CM_ACL_ADMIN, S("/")));
	cm_acl_free(&a);
}

static void test_listing_shows_the_way_only(void **state)
{
	(void)state;
	struct cm_acl a;
	uint32_t line;
	assert_int_equal(cm_acl_parse(rules, strlen(rules), &a, &line), 0);
	struct cm_acl_who alice = {.user = "alice"}, nobody = {.user = "mallory"};
	assert_true(cm_acl_traverses(&a, &alice, S("/")));
	assert_true(cm_acl_traverses(&a, &alice, S("/apps")));
	assert_false(cm_acl_traverses(&a, &alice, S("/etc")));
	assert_false(cm_acl_traverses(&a, &nobody, S("/")));
	assert_true(cm_acl_shows(&a, &alice, S("/"), S("apps")));
	assert_false(cm_acl_shows(&a, &alice, S("/"), S("etc")));
	assert_true(cm_acl_shows(&a, &alice, S("/apps"), S("web")));
	assert_false(cm_acl_shows(&a, &alice, S("/apps"), S("pay")));
	assert_true(cm_acl_shows(&a, &alice, S("/apps/web"), S("anything")));
	cm_acl_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_and_text),
		cmocka_unit_test(test_who_parse),
		cmocka_unit_test(test_decisions),
		cmocka_unit_test(test_listing_shows_the_way_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
