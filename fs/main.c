/* main.c: confman-fs: mount Confman's namespace with FUSE.
 *
 * Threads. The asynchronous client (cm_ac_*) is not thread-safe: it belongs
 * to one libuv loop, which runs in its own thread and owns everything else
 * too (inode table, open handles). The FUSE session runs fuse_session_loop()
 * in the main thread; each callback only copies its arguments into a job,
 * appends it to a bounded, mutex-protected queue and wakes the loop with
 * uv_async_send(). The loop thread starts the job's requests and replies
 * (fuse_reply_* is thread-safe) when the server answers, so the FUSE thread
 * never waits on the network and the loop never blocks on /dev/fuse. One
 * state owner means no locks beyond the queues'. Kernel notifications (cache
 * invalidation from the watch stream) and the inotify replay run on a third
 * thread, the notifier (notify.c): libfuse documents deadlocks when they are
 * sent from a request's path.
 *
 * Out of memory: requests fail with ENOMEM; start-up fails with a message.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/duration.h"
#include "fs.h"

enum { KEY_CACHE_SIZE, KEY_LOCK_TTL, KEY_FG, KEY_RO, KEY_FSNAME, KEY_HELP, KEY_VERSION, KEY_ALLOW_OTHER, KEY_DEFAULT_PERMS };

#define OPT(t, f, v) {t, offsetof(struct cm_fs_opts, f), v}
/* FUSE_OPT_KEY spelled with an explicit widening: libfuse compares the
 * offset with -1U, and clang warns about the implicit one. */
#define KEY(t, k) {t, (unsigned long)-1U, k}
static const struct fuse_opt opt_spec[] = {
	OPT("timeout=%u", timeout_ms, 0),
	OPT("attr_timeout=%lf", attr_timeout, 0),
	OPT("entry_timeout=%lf", entry_timeout, 0),
	OPT("consistency=%s", consistency, 0),
	OPT("prefix=%s", prefix, 0),
	OPT("ca=%s", ca, 0),
	OPT("cert=%s", cert, 0),
	OPT("key=%s", key, 0),
	OPT("cache=%s", cache_dir, 0),
	OPT("offline_after=%u", offline_after_ms, 0),
	OPT("prefetch=%u", prefetch_max, 0),
	KEY("cache_size=", KEY_CACHE_SIZE),
	KEY("lock_ttl=", KEY_LOCK_TTL),
	KEY("-f", KEY_FG),
	KEY("ro", KEY_RO),
	KEY("fsname=", KEY_FSNAME),
	KEY("allow_other", KEY_ALLOW_OTHER),
	KEY("default_permissions", KEY_DEFAULT_PERMS),
	KEY("-h", KEY_HELP),
	KEY("--help", KEY_HELP),
	KEY("-V", KEY_VERSION),
	KEY("--version", KEY_VERSION),
	FUSE_OPT_END,
};

static void usage(FILE *f, const char *prog)
{
	fprintf(f, "usage: %s [-f] [-o OPTS] SERVERS MOUNTPOINT\n\n"
	       "SERVERS: host:port[,host:port...]\n"
	       "Options (-o):\n"
	       "  ro                        read-only mount\n"
	       "  timeout=MS                per request, retries included (5000)\n"
	       "  attr_timeout=S            kernel attribute cache (1)\n"
	       "  entry_timeout=S           kernel name cache (1)\n"
	       "  consistency=follower|linearizable   reads (follower)\n"
	       "  prefix=/PATH              mount this sub-tree (/)\n"
	       "  ca=FILE                   TLS: the cluster's CA bundle (none: plain\n"
	       "                            TCP, for insecure clusters only)\n"
	       "  cert=FILE,key=FILE        TLS: this host's certificate and key (mode\n"
	       "                            0600): the identity the servers check\n"
	       "  cache=DIR|none            persistent cache, offline mode (" CM_FS_CACHE_DIR ")\n"
	       "  cache_size=N[KMG]         bound of the cache (64M)\n"
	       "  offline_after=MS          offline when no server answers this long (300)\n"
	       "  prefetch=N                cache the whole prefix if <= N nodes; 0 off (10000)\n"
	       "  lock_ttl=DUR              TTL of the session lease behind flock/fcntl\n"
	       "                            locks and ephemeral files: 500ms, 10s, 2m (10s)\n"
	       "  allow_other               other users may use the mount (brings\n"
	       "                            default_permissions: modes are checked)\n"
	       "  default_permissions, fsname=NAME, ...: as for any FUSE mount\n"
	       "  -f                        stay in the foreground\n", prog);
}

/* N, NK, NM, NG (powers of 1024), at least CM_FS_CACHE_SIZE_MIN. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	int shift = *end == 'K' || *end == 'k' ? 10 : *end == 'M' || *end == 'm' ? 20
		  : *end == 'G' || *end == 'g' ? 30 : 0;
	if (end == s || (shift && end[1] != 0) || (!shift && *end != 0) || v > (1ull << 40)) {
		fprintf(stderr, "confman-fs: cache_size must be a number of bytes (K, M, G)\n");
		return -1;
	}
	v <<= shift;
	*out = v < CM_FS_CACHE_SIZE_MIN ? CM_FS_CACHE_SIZE_MIN : v;
	return 0;
}

/* A duration as confmanctl takes it, within what a lease may have. */
static int parse_lock_ttl(const char *s, uint64_t *ms)
{
	if (cm_parse_duration(s, ms) != 0 || *ms < CM_LEASE_TTL_MIN_MS ||
	    *ms > CM_LEASE_TTL_MAX_MS) {
		fprintf(stderr, "confman-fs: lock_ttl must be a duration (500ms, 10s, 2m) from "
				"%us to %u days\n", CM_LEASE_TTL_MIN_MS / 1000,
			CM_LEASE_TTL_MAX_MS / 86400000u);
		return -1;
	}
	return 0;
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)outargs;
	struct cm_fs_opts *o = data;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (o->servers == NULL)
			return (o->servers = strdup(arg)) ? 0 : -1;
		if (o->mountpoint == NULL)
			return (o->mountpoint = realpath(arg, NULL)) ? 0 : (perror(arg), -1);
		fprintf(stderr, "confman-fs: unexpected argument '%s'\n", arg);
		return -1;
	case KEY_CACHE_SIZE: return parse_size(arg + strlen("cache_size="), &o->cache_size);
	case KEY_LOCK_TTL: return parse_lock_ttl(arg + strlen("lock_ttl="), &o->lock_ttl_ms);
	case KEY_FG: o->foreground = 1; return 0;
	case KEY_RO: o->ro = 1; return 1; /* also for the kernel: MS_RDONLY */
	case KEY_FSNAME: o->has_fsname = 1; return 1;
	case KEY_ALLOW_OTHER: o->allow_other = 1; return 1;      /* for libfuse too */
	case KEY_DEFAULT_PERMS: o->default_perms = 1; return 1;
	case KEY_HELP: o->show_help = 1; return 0;
	case KEY_VERSION: o->show_version = 1; return 0;
	default: return 1;
	}
}

/* A clean absolute prefix, "/" for the whole namespace. */
static int check_prefix(const char *p)
{
	size_t n = strlen(p);
	if (p[0] != '/' || n > CM_PATH_MAX || strstr(p, "//") || (n > 1 && p[n - 1] == '/') ||
	    strstr(p, "/./") || strstr(p, "/../"))
		return -EINVAL;
	return 0;
}

static void *loop_main(void *arg)
{
	struct cm_fs *fs = arg;
	uv_run(&fs->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void on_wake(uv_async_t *h)
{
	struct cm_fs *fs = h->data;
	cm_fs_drain(h);
	pthread_mutex_lock(&fs->mu);
	bool stop = fs->stopping;
	pthread_mutex_unlock(&fs->mu);
	if (stop && fs->ac != NULL) {
		struct cm_ac *ac = fs->ac;
		fs->ac = NULL; /* the watch's final -ECANCELED must not re-subscribe */
		cm_ac_close(ac, NULL, NULL); /* pending requests: -ECANCELED -> EIO */
		cm_fs_watch_close(fs);
		cm_fs_cache_stop(fs);
		cm_fs_session_stop(fs);
		cm_fs_locks_stop(fs);
		uv_close((uv_handle_t *)&fs->wake, NULL);
	}
}

static int loop_start(struct cm_fs *fs)
{
	struct cm_client_opts co;
	cm_client_opts_init(&co);
	co.servers = fs->o.servers;
	co.timeout_ms = fs->o.timeout_ms;
	co.consistency = strcmp(fs->o.consistency, "linearizable") == 0 ? CM_READ_LINEARIZABLE
									  : CM_READ_FOLLOWER;
	co.ca = fs->o.ca;
	co.cert = fs->o.cert;
	co.key = fs->o.key;
	int rc = uv_loop_init(&fs->loop);
	if (rc != 0)
		return rc;
	rc = cm_ac_new(&fs->loop, &co, &fs->ac);
	if (rc != 0)
		goto err_loop;
	fs->wake.data = fs;
	rc = uv_async_init(&fs->loop, &fs->wake, on_wake);
	if (rc != 0)
		goto err_ac;
	/* Before the loop thread exists: nothing else touches the client yet. */
	(void)cm_fs_cache_start(fs); /* never fails the mount: at worst no cache */
	rc = cm_fs_session_start(fs);
	if (rc == 0)
		rc = cm_fs_locks_start(fs);
	if (rc == 0)
		rc = cm_fs_watch_start(fs);
	if (rc != 0)
		goto err_wake;
	/* Signals go to the FUSE thread, whose read() they must interrupt. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = -pthread_create(&fs->thread, NULL, loop_main, fs);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		goto err_watch;
	return 0;
err_watch:
	cm_fs_watch_close(fs);
err_wake:
	cm_fs_cache_stop(fs);
	cm_fs_session_stop(fs);
	cm_fs_locks_stop(fs);
	uv_close((uv_handle_t *)&fs->wake, NULL);
err_ac:
	cm_ac_close(fs->ac, NULL, NULL);
	uv_run(&fs->loop, UV_RUN_DEFAULT);
err_loop:
	cm_fs_cache_free(fs);
	uv_loop_close(&fs->loop);
	return rc;
}

static void loop_stop(struct cm_fs *fs)
{
	pthread_mutex_lock(&fs->mu);
	fs->stopping = true;
	pthread_mutex_unlock(&fs->mu);
	uv_async_send(&fs->wake);
	pthread_join(fs->thread, NULL);
	cm_fs_locks_free(fs);
	cm_fs_handles_free(fs);
	cm_fs_cache_free(fs);
	(void)uv_loop_close(&fs->loop);
}

/* The TLS files as absolute paths (the daemon changes directory), loaded
 * once now so that a key others can read stops the mount with the reason. */
static int check_tls(struct cm_fs_opts *o)
{
	char **f[3] = {&o->ca, &o->cert, &o->key};
	for (int k = 0; k < 3; k++) {
		if (*f[k] == NULL)
			continue;
		char *abs = realpath(*f[k], NULL);
		if (abs == NULL) {
			fprintf(stderr, "confman-fs: %s: %s\n", *f[k], strerror(errno));
			return -1;
		}
		free(*f[k]);
		*f[k] = abs;
	}
	struct cm_client_opts co;
	cm_client_opts_init(&co);
	co.ca = o->ca;
	co.cert = o->cert;
	co.key = o->key;
	char why[512];
	if (cm_client_tls_check(&co, why, sizeof(why)) != 0) {
		fprintf(stderr, "confman-fs: %s\n", why);
		return -1;
	}
	return 0;
}

/* Validate SERVERS now, before daemonizing, with a throw-away client. */
static int check_servers(const struct cm_fs_opts *o)
{
	struct cm_client_opts co;
	cm_client_opts_init(&co);
	co.servers = o->servers;
	struct cm_client *c;
	int rc = cm_client_open(&co, &c);
	if (rc == 0)
		cm_client_close(c);
	return rc;
}

/* allow_other without default_permissions would let every local user read,
 * write, chmod and chown every file: the daemon checks nothing itself, and
 * the kernel checks modes only with default_permissions. So allow_other
 * brings default_permissions (fs/README.md, "Permissions"). */
static int add_default_permissions(struct cm_fs_opts *o, struct fuse_args *args)
{
	if (!o->allow_other || o->default_perms)
		return 0;
	fprintf(stderr, "confman-fs: allow_other given without default_permissions: turning "
			"default_permissions on (the kernel checks modes, owners and groups)\n");
	o->default_perms = 1;
	return fuse_opt_add_arg(args, "-odefault_permissions");
}

static int parse(struct cm_fs *fs, struct fuse_args *args)
{
	struct cm_fs_opts *o = &fs->o;
	o->attr_timeout = o->entry_timeout = 1.0;
	o->timeout_ms = CM_CLIENT_DEFAULT_TIMEOUT_MS;
	o->cache_size = CM_FS_CACHE_SIZE;
	o->offline_after_ms = CM_FS_OFFLINE_AFTER_MS;
	o->prefetch_max = CM_FS_PREFETCH_MAX;
	o->lock_ttl_ms = CM_FS_LOCK_TTL_MS;
	if (fuse_opt_parse(args, o, opt_spec, opt_proc) != 0)
		return 2;
	if (o->show_help || o->show_version) {
		if (o->show_help)
			usage(stdout, args->argv[0]);
		else
			printf("confman-fs 0.1.0, FUSE %s\n", fuse_pkgversion());
		return 1;
	}
	if (o->servers == NULL || o->mountpoint == NULL) {
		usage(stderr, args->argv[0]);
		return 2;
	}
	if (o->prefix == NULL && (o->prefix = strdup("/")) == NULL)
		return 2;
	if (o->consistency == NULL && (o->consistency = strdup("follower")) == NULL)
		return 2;
	if (o->cache_dir == NULL && (o->cache_dir = strdup(CM_FS_CACHE_DIR)) == NULL)
		return 2;
	if (o->offline_after_ms == 0) {
		fprintf(stderr, "confman-fs: offline_after must be positive\n");
		return 2;
	}
	if (strcmp(o->consistency, "follower") != 0 && strcmp(o->consistency, "linearizable") != 0) {
		fprintf(stderr, "confman-fs: consistency must be follower or linearizable\n");
		return 2;
	}
	if (check_prefix(o->prefix) != 0) {
		fprintf(stderr, "confman-fs: prefix must be a clean absolute path\n");
		return 2;
	}
	if (o->attr_timeout < 0 || o->entry_timeout < 0 || o->timeout_ms == 0) {
		fprintf(stderr, "confman-fs: timeouts must be positive\n");
		return 2;
	}
	if (check_tls(o) != 0)
		return 2;
	int rc = check_servers(o);
	if (rc != 0) {
		fprintf(stderr, "confman-fs: bad server list '%s': %s\n", o->servers,
			cm_strerror(rc));
		return 2;
	}
	if (add_default_permissions(o, args) != 0)
		return 2;
	/* Not the server list as fsname: its commas would split the option. */
	const char *name = o->has_fsname ? "-osubtype=confman-fs"
					 : "-osubtype=confman-fs,fsname=confman";
	return fuse_opt_add_arg(args, name) != 0 ? 2 : 0;
}

static void opts_free(struct cm_fs_opts *o)
{
	free(o->servers);
	free(o->mountpoint);
	free(o->prefix);
	free(o->consistency);
	free(o->ca);
	free(o->cert);
	free(o->key);
	free(o->cache_dir);
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	static struct cm_fs fs;
	int ret = parse(&fs, &args);
	if (ret != 0) {
		opts_free(&fs.o);
		fuse_opt_free_args(&args);
		return ret == 1 ? 0 : ret;
	}
	ret = 1;
	cm_fs_ident_load(&fs);
	fprintf(stderr, "confman-fs: identity %s\n", fs.deny.who);
	const char *trace = getenv("CONFMAN_FS_TRACE");
	fs.trace = trace != NULL && strcmp(trace, "1") == 0;
	pthread_mutex_init(&fs.mu, NULL);
	pthread_cond_init(&fs.not_full, NULL);
	pthread_mutex_init(&fs.nmu, NULL);
	pthread_cond_init(&fs.ncond, NULL);
	pthread_mutex_init(&fs.smu, NULL);
	if (cm_fs_itable_init(&fs.it, fs.o.prefix) != 0)
		goto out_opts;
	fs.se = fuse_session_new(&args, &cm_fs_ops, sizeof(cm_fs_ops), &fs);
	if (fs.se == NULL)
		goto out_itable;
	if (fuse_set_signal_handlers(fs.se) != 0)
		goto out_session;
	if (fuse_session_mount(fs.se, fs.o.mountpoint) != 0)
		goto out_signals;
	fs.mnt_id = cm_fs_fdscan_mnt_id(fs.o.mountpoint);
	if (fs.mnt_id < 0)
		fprintf(stderr, "confman-fs: %s not in /proc/self/mountinfo: every close after "
				"O_TRUNC commits the truncation\n", fs.o.mountpoint);
	/* Fork (unless -f) before any thread exists. */
	if (fuse_daemonize(fs.o.foreground) != 0)
		goto out_unmount;
	int rc = loop_start(&fs);
	if (rc != 0) {
		fprintf(stderr, "confman-fs: cannot start the client: %s\n", cm_strerror(rc));
		goto out_unmount;
	}
	/* libfuse returns the signal number after SIGTERM/SIGINT/SIGHUP: a
	 * requested, clean stop. */
	rc = cm_fs_notifier_start(&fs);
	if (rc != 0) {
		fprintf(stderr, "confman-fs: cannot start the notifier: %s\n", cm_strerror(rc));
		loop_stop(&fs);
		cm_fs_notifier_join(&fs); /* frees what the loop queued */
		goto out_unmount;
	}
	rc = fuse_session_loop(fs.se);
	ret = rc == 0 || rc == SIGTERM || rc == SIGINT || rc == SIGHUP ? 0 : 1;
	/* The notifier may be inside a syscall on the mount that only the
	 * stopped session could answer: unmounting aborts the connection and
	 * fails it (ENOTCONN), then it can be joined. */
	cm_fs_notifier_stop(&fs);
	fuse_session_unmount(fs.se);
	cm_fs_notifier_join(&fs);
	loop_stop(&fs);
out_unmount:
	fuse_session_unmount(fs.se);
out_signals:
	fuse_remove_signal_handlers(fs.se);
out_session:
	fuse_session_destroy(fs.se);
out_itable:
	cm_fs_itable_free(&fs.it);
out_opts:
	pthread_cond_destroy(&fs.not_full);
	pthread_mutex_destroy(&fs.mu);
	pthread_mutex_destroy(&fs.smu);
	pthread_cond_destroy(&fs.ncond);
	pthread_mutex_destroy(&fs.nmu);
	opts_free(&fs.o);
	fuse_opt_free_args(&args);
	return ret;
}
