/* main.c: confmand, one Confman node.
 *
 * Out of memory: the Raft core and the codec return -ENOMEM and the node
 * answers the request with it; a failed storage write stops the node
 * (fail-stop, exit 3) because the core and the disk would disagree.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/tls.h"
#include "server/log.h"
#include "server/node.h"

/* TLS credentials, loaded before anything else starts: a key file others
 * can read, a missing CA or a bad certificate stop the node here, saying
 * which file and why. Plain TCP only by choice, and said at every start. */
static int load_tls(struct cm_config *cfg)
{
	if (cm_config_security(cfg) != 0)
		return -EINVAL;
	if (cfg->insecure) {
		cm_log_warn("insecure = true: plain TCP, no certificates; anyone who reaches "
			    "this node's port can read and write everything and act as a node");
		return 0;
	}
	char why[512];
	struct cm_tls_paths p = {cfg->ca, cfg->cert, cfg->key};
	int rv = cm_tls_ctx_new(&p, &cfg->tls, why, sizeof(why));
	if (rv != 0) {
		fprintf(stderr, "confmand: refusing to start: %s\n", why);
		cm_log_error("refusing to start: %s", why);
	}
	return rv;
}

int main(int argc, char **argv)
{
	struct cm_config cfg;
	int rv = cm_config_parse(&cfg, argc, argv);
	if (rv == 1)
		return 0;
	if (rv != 0)
		return 2;
	cm_log_setup(cfg.node_id, CM_LOG_WARN + cfg.verbose);
	if (load_tls(&cfg) != 0) {
		cm_config_free(&cfg);
		return 2;
	}
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
		cm_tls_ctx_free(cfg.tls);
		cm_config_free(&cfg);
		return 1;
	}
	cm_log_info("node %llu serving on %s", (unsigned long long)cfg.node_id,
		    cm_config_node(&cfg, cfg.node_id)->addr);
	uv_run(&loop, UV_RUN_DEFAULT);
	cm_node_free(n);
	uv_loop_close(&loop);
	cm_tls_ctx_free(cfg.tls);
	cm_config_free(&cfg);
	cm_log_info("stopped");
	return 0;
}
