/* fuzz_acl.c: libFuzzer target: the access rule parser and its decisions
 * (server/acl_rules.c): whatever the rules file holds, parsing ends in a
 * set of valid rules or a refusal, a parsed rule prints back to the same
 * rule, and deciding never reads out of bounds. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "server/acl_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cm_acl a;
	uint32_t line;
	if (cm_acl_parse((const char *)data, size, &a, &line) != 0)
		return 0;
	static const char *const users[] = {"alice", "bob", "ops"};
	for (uint32_t k = 0; k < a.n; k++) {
		char buf[4096 + 128];
		int n = cm_acl_rule_text(&a.v[k], buf, sizeof(buf));
		assert(n > 0);
		struct cm_acl_rule again;
		assert(cm_acl_rule_parse(buf, (size_t)n, &again) == 0);
		assert(again.perm == a.v[k].perm && again.group == a.v[k].group);
		assert(strcmp(again.name, a.v[k].name) == 0 && strcmp(again.prefix, a.v[k].prefix) == 0);
		cm_acl_rule_free(&again);
		struct cm_acl_who who = {.user = users[k % 3], .groups = {"ops"}, .n_groups = 1};
		/* A rule's own prefix is what it grants on: decided consistently. */
		bool r = cm_acl_allows(&a, &who, CM_ACL_READ, a.v[k].prefix, a.v[k].plen);
		bool w = cm_acl_allows(&a, &who, CM_ACL_WRITE, a.v[k].prefix, a.v[k].plen);
		assert(!w || r); /* write implies read */
		(void)cm_acl_traverses(&a, &who, "/", 1);
		(void)cm_acl_shows(&a, &who, "/", 1, "x", 1);
	}
	cm_acl_free(&a);
	return 0;
}
