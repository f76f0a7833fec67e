/* main.c: confman-api, a stateless HTTP gateway to Confman (native /v1 and etcd /v3 subset). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/gw.h"
#include "common/tls.h"

/*
 * The process: parse the options, start --threads gateway threads (gw.h
 * explains the design), then wait for SIGINT or SIGTERM in the main thread
 * (blocked everywhere else, so sigwait() gets them) and stop the threads:
 * each finishes by answering what is in flight with 503 and closing.
 * Out of memory: see gw.h.
 */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: confman-api --listen ADDR --servers H:P,... [options]\n"
		"  -l, --listen ADDR     IPv4 address:port to serve HTTP on (port 0: any)\n"
		"  -s, --servers LIST    Confman servers, host:port,... (default $CONFMAN_SERVERS)\n"
		"  -c, --cluster ID      cluster id (default %s)\n"
		"  -t, --timeout MS      per Confman request, retries included (default %d)\n"
		"  --server-ca FILE      TLS to the servers: their CA bundle (default\n"
		"                        $CONFMAN_CA; none: plain TCP, insecure clusters)\n"
		"  --server-cert FILE    the gateway's certificate for the servers\n"
		"                        (default $CONFMAN_CERT)\n"
		"  --server-key FILE     its key, mode 0600 (default $CONFMAN_KEY)\n"
		"  --https-cert FILE     serve HTTPS (TLS 1.3) with this certificate\n"
		"  --https-key FILE      and this key (mode 0600); without them: HTTP\n"
		"  --https-ca FILE       ask callers for client certificates signed by\n"
		"                        this CA (CN = user, OUs = groups)\n"
		"Over a TLS cluster every /v1 and /v3 caller needs a client certificate\n"
		"(--https-ca) or Authorization: Bearer TOKEN (confmanctl token create),\n"
		"and the servers must list the gateway's CN in [cluster] proxies.\n"
		"  -j, --threads N       gateway threads, 1..%d (default: one per CPU)\n"
		"  -b, --max-body BYTES  largest request body; larger gets 413 (default %u)\n"
		"  --lock-wait-ms MS     longest wait of a /v3/lock/lock, 1000..86400000\n"
		"                        (default %u); then 504\n"
		"  -v, --verbose         log start and stop\n"
		"  --test-txn-sleep-ms N FOR TESTS ONLY: block the thread N ms (<= 10000)\n"
		"                        between a txn's read and its write, so a test can\n"
		"                        change the key in between\n"
		"  --test-txn-cas-version FOR TESTS ONLY: txn writes compare the version\n"
		"                        read, not the mod index (the old behaviour, wrong\n"
		"                        once a key is deleted and re-created)\n"
		"  -h, --help            this text\n"
		"Endpoints: /v1/kv/PATH, /v1/watch/PATH, /v3/kv/{put,range,deleterange,txn},\n"
		"/v3/lease/{grant,keepalive,revoke,timetolive,leases}, /v3/lock/{lock,unlock},\n"
		"/healthz, /readyz. Stops on SIGINT or SIGTERM.\n",
		CM_CLIENT_DEFAULT_CLUSTER, CM_CLIENT_DEFAULT_TIMEOUT_MS, CM_API_THREADS_MAX,
		CM_API_BODY_MAX_DEFAULT, CM_API_LOCK_WAIT_MS);
}

/* One per CPU: each thread is a whole gateway (loop, client, HTTP daemon)
 * and on the 2-core bench machine two beat one on every workload. */
static unsigned default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	return n > CM_API_THREADS_MAX ? CM_API_THREADS_MAX : (unsigned)n;
}

static int parse_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	return cm_api_parse_u64(s, strlen(s), out) == 0 && *out >= lo && *out <= hi ? 0 : -EINVAL;
}

static int parse_opts(int argc, char **argv, struct cm_gw_opts *o)
{
	static const struct option longs[] = {
		{"listen", required_argument, NULL, 'l'},  {"servers", required_argument, NULL, 's'},
		{"cluster", required_argument, NULL, 'c'}, {"timeout", required_argument, NULL, 't'},
		{"threads", required_argument, NULL, 'j'}, {"max-body", required_argument, NULL, 'b'},
		{"verbose", no_argument, NULL, 'v'},	   {"help", no_argument, NULL, 'h'},
		{"test-txn-sleep-ms", required_argument, NULL, 'S'},
		{"test-txn-cas-version", no_argument, NULL, 'V'},
		{"server-ca", required_argument, NULL, 'A'},
		{"server-cert", required_argument, NULL, 'E'},
		{"server-key", required_argument, NULL, 'Y'},
		{"https-cert", required_argument, NULL, 'P'},
		{"https-key", required_argument, NULL, 'K'},
		{"https-ca", required_argument, NULL, 'C'},
		{"lock-wait-ms", required_argument, NULL, 'W'},
		{NULL, 0, NULL, 0}};
	memset(o, 0, sizeof(*o));
	o->servers = getenv("CONFMAN_SERVERS");
	o->ca = getenv("CONFMAN_CA");
	o->cert = getenv("CONFMAN_CERT");
	o->key = getenv("CONFMAN_KEY");
	o->timeout_ms = CM_CLIENT_DEFAULT_TIMEOUT_MS;
	o->threads = default_threads();
	o->max_body = CM_API_BODY_MAX_DEFAULT;
	o->lock_wait_ms = CM_API_LOCK_WAIT_MS;
	int c;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "l:s:c:t:j:b:vh", longs, NULL)) != -1) {
		switch (c) {
		case 'l': o->listen = optarg; break;
		case 's': o->servers = optarg; break;
		case 'c': o->cluster = optarg; break;
		case 't':
			if (parse_num(optarg, 1, 3600000, &v) != 0)
				return -EINVAL;
			o->timeout_ms = (uint32_t)v;
			break;
		case 'j':
			if (parse_num(optarg, 1, CM_API_THREADS_MAX, &v) != 0)
				return -EINVAL;
			o->threads = (unsigned)v;
			break;
		case 'b':
			if (parse_num(optarg, 1, 64u << 20, &v) != 0)
				return -EINVAL;
			o->max_body = (size_t)v;
			break;
		case 'v': o->verbose = true; break;
		case 'S':
			if (parse_num(optarg, 0, 10000, &v) != 0)
				return -EINVAL;
			o->test_txn_sleep_ms = (uint32_t)v;
			break;
		case 'V': o->test_txn_cas_version = true; break;
		case 'A': o->ca = optarg; break;
		case 'E': o->cert = optarg; break;
		case 'Y': o->key = optarg; break;
		case 'P': o->https_cert_pem = optarg; break; /* a path until load_https() */
		case 'K': o->https_key_pem = optarg; break;
		case 'C': o->https_ca_pem = optarg; break;
		case 'W':
			if (parse_num(optarg, 1000, 86400000, &v) != 0)
				return -EINVAL;
			o->lock_wait_ms = (uint32_t)v;
			break;
		case 'h': usage(stdout); exit(0);
		default: return -EINVAL;
		}
	}
	if (optind != argc || o->listen == NULL || o->servers == NULL)
		return -EINVAL;
	return 0;
}

/* A PEM file into memory (libmicrohttpd takes the text): at most 1 MiB. */
static char *read_pem(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "confman-api: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	size_t cap = 1u << 20;
	char *buf = malloc(cap + 1);
	size_t n = buf ? fread(buf, 1, cap + 1, f) : 0;
	fclose(f);
	if (buf == NULL || n == 0 || n > cap) {
		fprintf(stderr, "confman-api: %s: empty, unreadable or over 1 MiB\n", path);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* --https-cert and --https-key: both or neither; the key private (0600);
 * --https-ca only with them (client certificates need HTTPS). */
static int load_https(struct cm_gw_opts *o, char **cert, char **key, char **ca)
{
	*cert = *key = *ca = NULL;
	if (o->https_ca_pem != NULL && o->https_cert_pem == NULL) {
		fprintf(stderr, "confman-api: --https-ca needs --https-cert and --https-key\n");
		return -EINVAL;
	}
	if (o->https_ca_pem != NULL && (*ca = read_pem(o->https_ca_pem)) == NULL)
		return -EINVAL;
	o->https_ca_pem = *ca;
	if (o->https_cert_pem == NULL && o->https_key_pem == NULL)
		return 0;
	char why[512];
	if (o->https_cert_pem == NULL || o->https_key_pem == NULL) {
		fprintf(stderr, "confman-api: --https-cert and --https-key go together\n");
		return -EINVAL;
	}
	if (cm_tls_key_check(o->https_key_pem, why, sizeof(why)) != 0) {
		fprintf(stderr, "confman-api: %s\n", why);
		return -EPERM;
	}
	*cert = read_pem(o->https_cert_pem);
	*key = *cert ? read_pem(o->https_key_pem) : NULL;
	o->https_cert_pem = *cert;
	o->https_key_pem = *key;
	return *key ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
	static struct cm_gw_shared sh;
	static struct cm_gw gws[CM_API_THREADS_MAX];
	struct cm_gw_opts o;
	if (parse_opts(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	struct cm_client_opts co;
	cm_client_opts_init(&co);
	co.ca = o.ca;
	co.cert = o.cert;
	co.key = o.key;
	char why[512];
	if (cm_client_tls_check(&co, why, sizeof(why)) != 0) {
		fprintf(stderr, "confman-api: %s\n", why);
		return 2;
	}
	char *https_cert = NULL, *https_key = NULL, *https_ca = NULL;
	if (load_https(&o, &https_cert, &https_key, &https_ca) != 0) {
		free(https_cert);
		free(https_ca);
		return 2;
	}
	if (cm_gw_init_shared(&sh, &o) != 0) {
		fprintf(stderr, "confman-api: bad --listen address %s (want IPv4:port)\n", o.listen);
		free(https_cert);
		free(https_key);
		free(https_ca);
		return 2;
	}
	if (o.ca != NULL && https_cert == NULL)
		fprintf(stderr, "confman-api: warning: plain HTTP in front of a TLS cluster: "
				"callers' bearer tokens and values cross the network in clear\n");
	signal(SIGPIPE, SIG_IGN); /* client.h: libuv writes do not mask it */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread */
	unsigned started = 0;
	int rv = 0;
	for (unsigned i = 0; i < o.threads; i++) {
		rv = cm_gw_start(&gws[i], &sh, i, i == 0 ? 0 : gws[0].port);
		if (rv != 0) {
			fprintf(stderr, "confman-api: cannot serve %s: %s\n", o.listen,
				rv == -EINVAL ? "bad server list or address" : strerror(-rv));
			break;
		}
		started++;
	}
	if (rv == 0) {
		/* Tests and scripts read the port from here (--listen with port 0). */
		printf("confman-api listening on port %u, %u thread(s)\n", gws[0].port, o.threads);
		fflush(stdout);
		int sig = 0;
		sigwait(&set, &sig);
		if (o.verbose)
			fprintf(stderr, "confman-api: signal %d, stopping\n", sig);
	}
	for (unsigned i = 0; i < started; i++)
		cm_gw_stop(&gws[i]);
	pthread_mutex_destroy(&sh.mu);
	free(https_cert);
	free(https_key);
	free(https_ca);
	return rv == 0 ? 0 : 1;
}
