/* main.c: confmand, one Confman node.
 *
 * Out of memory: the Raft core and the codec return -ENOMEM and the node
 * answers the request with it; a failed storage write stops the node
 * (fail-stop, exit 3) because the core and the disk would disagree.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "server/log.h"
#include "server/node.h"

int main(int argc, char **argv)
{
	struct cm_config cfg;
	int rv = cm_config_parse(&cfg, argc, argv);
	if (rv == 1)
		return 0;
	if (rv != 0)
		return 2;
	cm_log_setup(cfg.node_id, CM_LOG_WARN + cfg.verbose);
	signal(SIGPIPE, SIG_IGN);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct cm_node *n = NULL;
	rv = cm_node_start(&loop, &cfg, &n);
	if (rv != 0) {
		cm_log_error("cannot start: %s", cm_strerror(rv));
		if (n != NULL) {
			cm_node_stop(n);
			uv_run(&loop, UV_RUN_DEFAULT);
			cm_node_free(n); /* a clean exit frees all: leak checks stay meaningful */
		}
		uv_loop_close(&loop);
		cm_config_free(&cfg);
		return 1;
	}
	cm_log_info("node %llu serving on %s", (unsigned long long)cfg.node_id,
		    cm_config_node(&cfg, cfg.node_id)->addr);
	uv_run(&loop, UV_RUN_DEFAULT);
	cm_node_free(n);
	uv_loop_close(&loop);
	cm_config_free(&cfg);
	cm_log_info("stopped");
	return 0;
}
