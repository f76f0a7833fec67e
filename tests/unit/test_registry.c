/* test_registry.c: the registry's seed (server/reg_seed.c): the text the
 * meta group records at the first start, read back and compared with the
 * cluster file's groups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/registry.h"

static struct cm_group_info groups[3];

/* Nodes 1..3; groups "/" (1), "/apps" (2), "/my apps" (7, a space in it). */
static void cfg_init(struct cm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->n_nodes = 3;
	for (uint32_t k = 0; k < 3; k++)
		c->nodes[k].id = k + 1;
	const char *prefixes[] = {"/", "/apps", "/my apps"};
	const uint64_t ids[] = {1, 2, 7};
	for (uint32_t k = 0; k < 3; k++) {
		memset(&groups[k], 0, sizeof(groups[k]));
		groups[k].id = ids[k];
		strcpy(groups[k].prefix, prefixes[k]);
		groups[k].n_replicas = 3;
		for (uint32_t r = 0; r < 3; r++)
			groups[k].replicas[r] = r + 1;
	}
	groups[2].n_replicas = 2; /* 1,2 */
	c->groups = groups;
	c->n_groups = c->cap_groups = 3;
}

static void parse_text(const struct cm_config *c, const char *text, int want,
		       struct cm_group_info **out, uint32_t *n)
{
	*out = NULL;
	*n = 0;
	assert_int_equal(cm_reg_seed_parse(c, text, (uint32_t)strlen(text), out, n), want);
}

static void test_text_round_trip(void **state)
{
	(void)state;
	struct cm_config c;
	cfg_init(&c);
	char *text;
	uint32_t len;
	assert_int_equal(cm_reg_seed_text(&c, &text, &len), 0);
	assert_int_equal(len, strlen("1 1,2,3 /\n2 1,2,3 /apps\n7 1,2 /my apps\n"));
	assert_memory_equal(text, "1 1,2,3 /\n2 1,2,3 /apps\n7 1,2 /my apps\n", len);
	struct cm_group_info *seed;
	uint32_t n;
	assert_int_equal(cm_reg_seed_parse(&c, text, len, &seed, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(seed[2].prefix, "/my apps");
	assert_int_equal(seed[2].n_replicas, 2);
	assert_int_equal(cm_reg_seed_diff(&c, seed, n, false), 0);
	free(seed);
	free(text);
}

/* Every way a cluster file can drift from what the cluster recorded. */
static void test_diff_sees_every_change(void **state)
{
	(void)state;
	struct cm_config c;
	cfg_init(&c);
	struct cm_group_info *seed;
	uint32_t n;
	parse_text(&c, "1 1,2,3 /\n2 1,2,3 /apps\n7 1,2 /my apps\n", 0, &seed, &n);
	/* The replica set is compared as a set. */
	groups[1].replicas[0] = 3;
	groups[1].replicas[2] = 1;
	assert_int_equal(cm_reg_seed_diff(&c, seed, n, false), 0);
	strcpy(groups[1].prefix, "/app"); /* a renamed prefix */
	assert_int_equal(cm_reg_seed_diff(&c, seed, n, true), 1);
	cfg_init(&c);
	groups[2].replicas[1] = 3; /* 1,3 instead of 1,2 */
	assert_int_equal(cm_reg_seed_diff(&c, seed, n, false), 1);
	cfg_init(&c);
	c.n_groups = 2; /* a group taken out of the file */
	assert_int_equal(cm_reg_seed_diff(&c, seed, n, false), 1);
	free(seed);
	/* A group added to the file after the first start. */
	cfg_init(&c);
	parse_text(&c, "1 1,2,3 /\n2 1,2,3 /apps\n", 0, &seed, &n);
	assert_int_equal(cm_reg_seed_diff(&c, seed, n, false), 1);
	free(seed);
}

static void test_parse_refuses_bad_seeds(void **state)
{
	(void)state;
	struct cm_config c;
	cfg_init(&c);
	struct cm_group_info *seed;
	uint32_t n;
	const char *bad[] = {
		"",                     /* empty */
		"1 1,2,3 /",            /* no final newline */
		"1 1,2,3\n",            /* no prefix */
		"1 1,2,4 /\n",          /* node 4 is not in the cluster file */
		"1 1,1 /\n",            /* a replica twice */
		"0 1,2,3 /\n",          /* group 0 */
		"x 1,2,3 /\n",          /* not a number */
		"4294967295 1 /\n",     /* the meta group's id */
		"1 1,2,3 apps\n",       /* not absolute */
		"1 1,2,3 /a/../b\n",    /* not clean */
		"1  /\n",               /* no replicas */
		"1 1,2,3 /\n\n",        /* an empty line */
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		seed = NULL;
		int rv = cm_reg_seed_parse(&c, bad[k], (uint32_t)strlen(bad[k]), &seed, &n);
		if (rv == 0)
			fail_msg("accepted seed %zu: \"%s\"", k, bad[k]);
		assert_null(seed);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_round_trip),
		cmocka_unit_test(test_diff_sees_every_change),
		cmocka_unit_test(test_parse_refuses_bad_seeds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
