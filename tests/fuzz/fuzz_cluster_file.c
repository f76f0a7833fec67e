/* fuzz_cluster_file.c: libFuzzer target: the cluster file (INI) through cm_config_parse(). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "server/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* The parser names the file; a memfd gives it one without touching disk. */
	fd = memfd_create("cluster.ini", 0);
	assert(fd >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	/* Every bad file gets a clear message on stderr: not 10^5 of them
	 * here. Sanitizer reports write to fd 2 directly and still show. */
	FILE *null = fopen("/dev/null", "w");
	assert(null != NULL);
	stderr = null;
	return 0;
}

static void check(const struct cm_config *c)
{
	assert(c->n_nodes <= CM_MAX_PEERS && c->n_groups <= CM_MAX_GROUPS);
	assert(strlen(c->cluster_id) <= CM_CLUSTER_MAX);
	assert(cm_config_node(c, 1) != NULL);
	for (uint32_t k = 0; k < c->n_nodes; k++)
		assert(strlen(c->nodes[k].addr) <= CM_ADDR_MAX);
	for (uint32_t k = 0; k < c->n_groups; k++) {
		assert(c->groups[k].n_replicas >= 1 && c->groups[k].n_replicas <= RAFT_MAX_NODES);
		assert(strlen(c->groups[k].prefix) <= CM_PATH_MAX);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	char *argv[] = {"confmand", "--id", "1", "--cluster-file", path, "--data", "/nonexistent", NULL};
	struct cm_config cfg;
	int rv = cm_config_parse(&cfg, 7, argv);
	assert(rv == 0 || rv == -EINVAL);
	if (rv == 0) {
		check(&cfg);
		cm_config_free(&cfg);
	}
	return 0;
}
