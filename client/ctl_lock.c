/* ctl_lock.c: `confmanctl lock PATH -- CMD` and `confmanctl elect PATH VALUE -- CMD`:
 * run a command while holding a cluster lock. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/ctl.h"
#include "common/duration.h"
#include "confman/client.h"

/*
 * Three threads. The main one grants a lease in PATH's group, acquires the
 * lock (waiting in line), runs CMD and waits for it. CMD runs in a process
 * group of its own (the terminal's foreground group when we had it, as a
 * shell does), so that what it started goes with it when it must stop. The keeper keeps the
 * lease alive with its own client (a cm_client is one thread's) and owns
 * the signals: SIGINT, SIGTERM and SIGHUP are blocked everywhere and taken
 * by the keeper with sigtimedwait(), which is also its clock. While CMD
 * runs they are passed on to it (unless the terminal sent them to the whole
 * process group already); before, they end the wait: the lease is revoked
 * (leaving the queue) and we exit 128 + the signal.
 *
 * The lease is counted lost when a keepalive says it is gone (ENOENT), or
 * when no keepalive succeeded for long enough that it may have expired: a
 * keepalive sent at t0 and answered "L ms left" proves the lease alive until
 * t0 + L at least (the leader started counting after t0). A tenth of the
 * TTL before that, CMD gets SIGTERM (SIGKILL KILL_GRACE_MS later): a holder
 * whose lock may have gone to another must stop writing. The watchdog
 * thread watches that time, so that a keepalive stuck in its request (up
 * to a third of the TTL) does not delay the verdict.
 */

#define DEFAULT_TTL_MS 10000u
#define KILL_GRACE_MS 2000u
#define RETRY_MS 250u /* a failed keepalive is sent again this soon */
#define WATCH_MS 50u  /* the watchdog looks at the time this often, at most */

struct lock_opts {
	const char *path;
	const char *value; /* elect: what PATH holds while we lead */
	uint64_t ttl_ms, timeout_ms;
	bool shared, watch;
	char **cmd;        /* NULL-terminated, from argv */
};

struct keeper {
	struct cm_client *client; /* the keeper's own */
	const char *path;
	uint64_t lease;
	uint32_t ttl_ms;
	uint64_t granted_at; /* mono_ms() before the grant was sent */
	sigset_t sigs;
	pthread_t thread, watchdog;
	pthread_mutex_t mu;
	/* under mu */
	pid_t child;  /* CMD while it runs and is not reaped, else 0 */
	bool lost, stop;
	uint64_t alive_until; /* mono_ms(): the lease is proven alive until then */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the keeper ---- */

/* Signal CMD's process group, or CMD alone if it has none (setpgid failed). */
static void signal_cmd(pid_t pid, int sig)
{
	if (kill(-pid, sig) != 0)
		kill(pid, sig);
}

/* Stop CMD: SIGTERM, then SIGKILL if it is still there after the grace. */
static void stop_child(struct keeper *k)
{
	pthread_mutex_lock(&k->mu);
	pid_t child = k->child;
	if (child > 0)
		signal_cmd(child, SIGTERM);
	pthread_mutex_unlock(&k->mu);
	if (child <= 0)
		return;
	uint64_t until = mono_ms() + KILL_GRACE_MS;
	while (mono_ms() < until) {
		pthread_mutex_lock(&k->mu);
		bool gone = k->child != child;
		pthread_mutex_unlock(&k->mu);
		if (gone)
			return;
		struct timespec ts = {0, 20 * 1000000};
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&k->mu);
	if (k->child == child)
		signal_cmd(child, SIGKILL);
	pthread_mutex_unlock(&k->mu);
}

/* Lost while waiting for the lock (nothing runs): leave, from the keeper's
 * thread (its client is that thread's). A lease only counted lost (no
 * keepalive answered in time) may be alive and in the lock's queue:
 * revoked, or the lock would go to nobody for another TTL. */
static void give_up_waiting(struct keeper *k, int err)
{
	if (err != -ENOENT)
		cm_lease_revoke(k->client, k->path, k->lease);
	_exit(CM_CTL_LOCK_LOST);
}

/* The lease is gone or may be: stop CMD, or, before it runs, the process. */
static void on_lost(struct keeper *k, int err)
{
	pthread_mutex_lock(&k->mu);
	bool stopping = k->stop, running = k->child > 0, again = k->lost;
	k->lost = true;
	pthread_mutex_unlock(&k->mu);
	if (stopping || again)
		return; /* CMD is done (the main thread cleans up), or told already */
	fprintf(stderr, "confmanctl: lock %s: lease %" PRIu64 " lost (%s)%s\n", k->path, k->lease,
		err ? cm_errname(err) : "no keepalive answered in time",
		running ? ": stopping the command" : "");
	if (running)
		stop_child(k);
	else if (pthread_equal(pthread_self(), k->thread))
		give_up_waiting(k, err);
	else
		pthread_kill(k->thread, SIGUSR1); /* the watchdog's verdict: the keeper leaves */
}

/* A signal for us: CMD's when it runs, else the end of the wait. */
static void on_signal(struct keeper *k, const siginfo_t *si)
{
	pthread_mutex_lock(&k->mu);
	pid_t child = k->child;
	bool stopping = k->stop;
	pthread_mutex_unlock(&k->mu);
	if (child > 0) {
		/* The terminal signals its foreground group: CMD's already. */
		if (si->si_code != SI_KERNEL)
			signal_cmd(child, si->si_signo);
		return;
	}
	if (stopping)
		return; /* CMD is done; the lease is being released */
	int err = cm_lease_revoke(k->client, k->path, k->lease);
	if (err != 0 && err != -ENOENT)
		fprintf(stderr, "confmanctl: lock %s: could not revoke lease %" PRIu64
			" (%s): it expires within %" PRIu32 " ms\n", k->path, k->lease,
			cm_errname(err), k->ttl_ms);
	_exit(128 + si->si_signo);
}

static void *keeper_run(void *arg)
{
	struct keeper *k = arg;
	uint32_t period = k->ttl_ms / 3;
	uint64_t next = mono_ms() + period;
	bool gone = false;
	for (;;) {
		uint64_t now = mono_ms(), wait = next > now ? next - now : 0;
		struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000};
		siginfo_t si;
		int sig = wait ? sigtimedwait(&k->sigs, &si, &ts) : -1;
		pthread_mutex_lock(&k->mu);
		bool stop = k->stop, lost_waiting = k->lost && k->child == 0;
		pthread_mutex_unlock(&k->mu);
		if (stop)
			return NULL;
		if (lost_waiting && !gone)
			give_up_waiting(k, 0);
		if (sig > 0 && sig != SIGUSR1)
			on_signal(k, &si);
		if (gone || mono_ms() < next)
			continue;
		uint64_t t0 = mono_ms();
		struct cm_lease_info info;
		int err = cm_lease_keepalive(k->client, k->path, k->lease, &info);
		if (err == 0 && info.left_ms > 0) {
			pthread_mutex_lock(&k->mu);
			k->alive_until = t0 + (uint64_t)info.left_ms;
			pthread_mutex_unlock(&k->mu);
		}
		next = mono_ms() + (err == 0 ? period : RETRY_MS);
		if (err == -ENOENT) {
			gone = true; /* from now on only signals and the stop matter */
			on_lost(k, err);
		}
	}
}

/* The lease may have expired a tenth of its TTL from now: it is lost. */
static void *watchdog_run(void *arg)
{
	struct keeper *k = arg;
	uint64_t margin = k->ttl_ms / 10;
	for (;;) {
		pthread_mutex_lock(&k->mu);
		bool done = k->stop || k->lost;
		uint64_t until = k->alive_until;
		pthread_mutex_unlock(&k->mu);
		uint64_t now = mono_ms();
		if (done)
			return NULL;
		if (now + margin >= until) {
			on_lost(k, 0);
			return NULL;
		}
		uint64_t wait = until - margin - now < WATCH_MS ? until - margin - now : WATCH_MS;
		struct timespec ts = {0, (long)wait * 1000000};
		nanosleep(&ts, NULL);
	}
}

static int keeper_start(struct keeper *k, const struct cm_client_opts *opts)
{
	struct cm_client_opts o = *opts;
	/* A keepalive is worth trying (and the core retries it, through leader
	 * changes) for up to a TTL: the watchdog decides the loss on its own
	 * clock whatever it does, and an answer that comes late still proves
	 * the lease from its sending. The revokes of a lost lease use this
	 * client too: after a TTL the lease has expired anyway. */
	uint32_t t = k->ttl_ms;
	if (o.timeout_ms == 0 || o.timeout_ms > t)
		o.timeout_ms = t;
	int rv = cm_client_open(&o, &k->client);
	if (rv != 0)
		return rv;
	pthread_mutex_init(&k->mu, NULL);
	sigemptyset(&k->sigs);
	sigaddset(&k->sigs, SIGINT);
	sigaddset(&k->sigs, SIGTERM);
	sigaddset(&k->sigs, SIGHUP);
	sigaddset(&k->sigs, SIGUSR1); /* the main thread's "stop" */
	pthread_sigmask(SIG_BLOCK, &k->sigs, NULL);
	k->alive_until = k->granted_at + k->ttl_ms; /* what the grant proves */
	rv = pthread_create(&k->thread, NULL, keeper_run, k);
	if (rv != 0) {
		cm_client_close(k->client);
		return -rv;
	}
	rv = pthread_create(&k->watchdog, NULL, watchdog_run, k);
	if (rv != 0) {
		pthread_mutex_lock(&k->mu);
		k->stop = true;
		pthread_mutex_unlock(&k->mu);
		pthread_kill(k->thread, SIGUSR1);
		pthread_join(k->thread, NULL);
		cm_client_close(k->client);
		return -rv;
	}
	return 0;
}

/* Stop the keeper's threads (its client stays open: keeper_close());
 * returns whether the lease was lost meanwhile. */
static bool keeper_stop(struct keeper *k)
{
	pthread_mutex_lock(&k->mu);
	k->stop = true;
	pthread_mutex_unlock(&k->mu);
	pthread_kill(k->thread, SIGUSR1);
	pthread_join(k->thread, NULL);
	pthread_join(k->watchdog, NULL);
	return k->lost;
}

static void keeper_close(struct keeper *k)
{
	cm_client_close(k->client);
}

/* ---- running CMD ---- */

/* environ with CONFMAN_FENCE=token in place of any other; malloc'd (the
 * strings but the new one are environ's). */
extern char **environ;

static char **fenced_env(char *fence)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	if (env == NULL)
		return NULL;
	size_t m = 0;
	for (size_t k = 0; k < n; k++)
		if (strncmp(environ[k], "CONFMAN_FENCE=", 14) != 0)
			env[m++] = environ[k];
	env[m] = fence;
	return env;
}

/* Whether we run in the foreground of the terminal on stdin. */
static bool tty_foreground(void)
{
	return isatty(0) && tcgetpgrp(0) == getpgrp();
}

/* Give the terminal's foreground to process group pg (SIGTTOU ignored:
 * tcsetpgrp from a background group would stop us). */
static void tty_give(pid_t pg)
{
	void (*was)(int) = signal(SIGTTOU, SIG_IGN);
	tcsetpgrp(0, pg);
	signal(SIGTTOU, was);
}

/* Start CMD, registered with the keeper under its lock (so no signal or
 * loss slips between fork and registration). Returns the pid or -errno. */
static pid_t spawn(struct keeper *k, char **cmd, uint64_t token, bool fg)
{
	char fence[48];
	snprintf(fence, sizeof(fence), "CONFMAN_FENCE=%" PRIu64, token);
	char **env = fenced_env(fence);
	if (env == NULL)
		return -ENOMEM;
	sigset_t none;
	sigemptyset(&none);
	pthread_mutex_lock(&k->mu);
	pid_t pid = k->lost ? -ENOLINK : fork();
	int fork_err = errno;
	if (pid == 0) {
		/* Async-signal-safe calls only: another thread exists. */
		setpgid(0, 0);
		if (fg)
			tty_give(getpid());
		signal(SIGPIPE, SIG_DFL); /* confmanctl ignores it; CMD must not inherit that */
		sigprocmask(SIG_SETMASK, &none, NULL);
		environ = env;
		execvp(cmd[0], cmd);
		int e = errno;
		static const char msg[] = "confmanctl: cannot run the command\n";
		ssize_t w = write(2, msg, sizeof(msg) - 1);
		(void)w;
		_exit(e == ENOENT ? CM_CTL_CMD_NOTFOUND : CM_CTL_CMD_NOEXEC);
	}
	if (pid > 0) {
		setpgid(pid, pid); /* the child does too: whoever runs first */
		k->child = pid;
	}
	pthread_mutex_unlock(&k->mu);
	free(env);
	return pid == -1 ? -fork_err : pid;
}

/* Wait for CMD; its exit status as a shell reports it. */
static int reap(struct keeper *k, pid_t pid)
{
	siginfo_t si;
	while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) != 0 && errno == EINTR)
		;
	pthread_mutex_lock(&k->mu); /* no kill() of a reaped (reusable) pid */
	k->child = 0;
	pthread_mutex_unlock(&k->mu);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- lock and elect ---- */

static int hold_and_run(struct cm_ctl_cmd *cc, const struct lock_opts *lo, struct keeper *k)
{
	uint64_t token;
	uint32_t flags = CM_LOCK_WAIT | (lo->shared ? CM_LOCK_SHARED : 0);
	int err = cm_lock_acquire(cc->client, lo->path, k->lease, 0, flags,
				  (uint32_t)lo->timeout_ms, &token);
	if (err == -EWOULDBLOCK) {
		fprintf(stderr, "confmanctl: lock %s: not acquired within %" PRIu64 " ms\n",
			lo->path, lo->timeout_ms);
		return CM_CTL_LOCK_TIMEOUT;
	}
	if (err != 0)
		return cm_ctl_fail(lo->path, err);
	if (lo->value != NULL) {
		/* The leader's value lives as long as its lease: `cat PATH` on a
		 * mount shows who leads, and nothing once nobody does. */
		struct cm_put_args pa = {.flags = CM_PUT_LEASE, .lease = k->lease};
		err = cm_put_ex(cc->client, lo->path, lo->value, (uint32_t)strlen(lo->value), &pa,
				NULL);
		if (err != 0)
			return cm_ctl_fail(lo->path, err);
	}
	bool fg = tty_foreground();
	pid_t pid = spawn(k, lo->cmd, token, fg);
	if (pid == -ENOLINK)
		return CM_CTL_LOCK_LOST;
	if (pid < 0)
		return cm_ctl_fail(lo->cmd[0], pid);
	int status = reap(k, pid);
	if (fg)
		tty_give(getpgrp()); /* the terminal back */
	return status;
}

static int run_locked(struct cm_ctl_cmd *cc, const struct lock_opts *lo)
{
	int rv = cm_client_open(cc->opts, &cc->client);
	if (rv != 0)
		return cm_ctl_fail("cannot start the client", rv);
	struct keeper k = {.path = lo->path, .ttl_ms = (uint32_t)lo->ttl_ms,
			   .granted_at = mono_ms()};
	int err = cm_lease_grant(cc->client, lo->path, k.ttl_ms, &k.lease);
	if (err != 0)
		return cm_ctl_fail("lease grant", err);
	if ((err = keeper_start(&k, cc->opts)) != 0) {
		cm_lease_revoke(cc->client, lo->path, k.lease);
		return cm_ctl_fail("keepalive", err);
	}
	int status = hold_and_run(cc, lo, &k);
	bool lost = keeper_stop(&k);
	if (lost) {
		fprintf(stderr, "confmanctl: lock %s: the lease ended while held\n", lo->path);
		status = CM_CTL_LOCK_LOST;
	}
	/* The revoke releases the lock too (and deletes elect's value). A lease
	 * counted lost may still be alive (keepalives late, not refused): its
	 * revoke frees the lock now rather than a TTL later, asked with the
	 * keeper's client (a TTL at most: then it has expired anyway). */
	err = cm_lease_revoke(lost ? k.client : cc->client, lo->path, k.lease);
	keeper_close(&k);
	if (err != 0 && err != -ENOENT)
		fprintf(stderr, "confmanctl: lock %s: could not revoke lease %" PRIu64
			" (%s): it expires within %" PRIu64 " ms\n", lo->path, k.lease,
			cm_errname(err), lo->ttl_ms);
	return status;
}

/* ---- elect --watch ---- */

struct watcher {
	struct cm_client *reader; /* GETs: the watching client's loop is busy */
	const char *path;
	bool json;
	uint64_t shown;           /* mod_index of the value printed last; 0 none */
};

static int show_leader(struct watcher *w)
{
	void *v = NULL;
	uint32_t len = 0;
	struct cm_attr a;
	int err = cm_get(w->reader, w->path, &v, &len, &a);
	if (err == -ENOENT)
		return 0; /* nobody leads now: the next leader's put tells */
	if (err != 0)
		return err;
	if (a.mod_index != w->shown) {
		w->shown = a.mod_index;
		if (w->json) {
			fputs("{\"leader\":", stdout);
			cm_ctl_json_str(stdout, v, len);
			printf(",\"index\":%" PRIu64 "}\n", a.mod_index);
		} else {
			fwrite(v, 1, len, stdout);
			putchar('\n');
		}
	}
	free(v);
	return fflush(stdout) != 0 ? 1 : 0;
}

static int on_leader_event(void *arg, const struct cm_event *ev)
{
	struct watcher *w = arg;
	size_t n = strlen(w->path);
	if (ev->kind == CM_EV_PUT && (ev->path.len != n || memcmp(ev->path.p, w->path, n) != 0))
		return 0;
	if (ev->kind != CM_EV_PUT && ev->kind != CM_EV_RESYNC && ev->kind != CM_EV_RENAME)
		return 0;
	int rv = show_leader(w);
	return rv > 0 ? rv : 0; /* a failed GET: the next event tries again */
}

static int elect_watch(struct cm_ctl_cmd *cc, const char *path)
{
	struct watcher w = {.path = path, .json = cc->json};
	int rv = cm_client_open(cc->opts, &cc->client);
	if (rv == 0 && (rv = cm_client_open(cc->opts, &w.reader)) != 0)
		w.reader = NULL;
	if (rv != 0)
		return cm_ctl_fail("cannot start the client", rv);
	rv = show_leader(&w);
	if (rv < 0) {
		cm_client_close(w.reader);
		return cm_ctl_fail(path, rv);
	}
	/* From the value's index on, so that no change after the read is missed. */
	rv = cm_watch(cc->client, path, w.shown ? w.shown + 1 : 0, on_leader_event, &w);
	cm_client_close(w.reader);
	return rv > 0 ? CM_CTL_OK : cm_ctl_fail(path, rv);
}

/* ---- arguments ---- */

static int lock_opt(struct lock_opts *lo, int c, const char *cmd, const char *val)
{
	uint64_t *dst = c == 'T' ? &lo->ttl_ms : &lo->timeout_ms;
	switch (c) {
	case 'T': case 'W':
		if (cm_parse_duration(val, dst) != 0)
			return cm_ctl_usage("%s: a duration is like 10s, 500ms or 2m, not '%s'", cmd,
					    val);
		return 0;
	case 's': lo->shared = true; return 0;
	case 'w': lo->watch = true; return 0;
	default: return cm_ctl_usage("%s: bad option '%s'", cmd, val);
	}
}

/* argv: CMD [OPTIONS] ARGS... [-- COMMAND ARGS...]; options before "--"
 * only, anywhere among ARGS. Returns the count of ARGS, or -1. */
static int parse_lock(struct cm_ctl_cmd *cc, struct lock_opts *lo, int argc, char **argv,
		      char ***args)
{
	static const struct option lopts[] = {
		{"ttl", required_argument, NULL, 'T'}, {"timeout", required_argument, NULL, 'W'},
		{"shared", no_argument, NULL, 's'},    {"watch", no_argument, NULL, 'w'},
		{"json", no_argument, NULL, 'j'},      {0},
	};
	int dd = 1;
	while (dd < argc && strcmp(argv[dd], "--") != 0)
		dd++;
	lo->cmd = dd < argc ? argv + dd + 1 : NULL;
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(dd, argv, "j", lopts, NULL)) != -1) {
		if (c == 'j')
			cc->json = true;
		else if (lock_opt(lo, c, argv[0], c == '?' ? argv[optind - 1] : optarg) != 0)
			return -1;
	}
	*args = argv + optind;
	return dd - optind;
}

static int check_lock(const struct lock_opts *lo, const char *cmd)
{
	if (lo->cmd == NULL || lo->cmd[0] == NULL)
		return cm_ctl_usage("%s: the command goes after --", cmd);
	if (lo->ttl_ms < CM_LEASE_TTL_MIN_MS || lo->ttl_ms > CM_LEASE_TTL_MAX_MS) {
		fprintf(stderr, "confmanctl: %s: --ttl must be 1s to 30d\n", cmd);
		return CM_CTL_INVALID;
	}
	if (lo->timeout_ms > UINT32_MAX)
		return cm_ctl_usage("%s: --timeout at most %" PRIu32 " ms", cmd, UINT32_MAX);
	return 0;
}

int cm_ctl_lock(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	struct lock_opts lo = {.ttl_ms = DEFAULT_TTL_MS};
	char **args;
	int n = parse_lock(cc, &lo, argc, argv, &args);
	if (n < 0)
		return CM_CTL_USAGE;
	if (n != 1 || lo.watch)
		return cm_ctl_usage("lock: expected PATH [--ttl D] [--timeout D] [--shared] -- "
				    "COMMAND [ARGS...]");
	lo.path = args[0];
	int rv = check_lock(&lo, "lock");
	return rv ? rv : run_locked(cc, &lo);
}

int cm_ctl_elect(struct cm_ctl_cmd *cc, int argc, char **argv)
{
	struct lock_opts lo = {.ttl_ms = DEFAULT_TTL_MS};
	char **args;
	int n = parse_lock(cc, &lo, argc, argv, &args);
	if (n < 0)
		return CM_CTL_USAGE;
	if (lo.watch) {
		if (n != 1 || lo.cmd != NULL)
			return cm_ctl_usage("elect --watch: expected PATH");
		return elect_watch(cc, args[0]);
	}
	if (n != 2 || lo.shared)
		return cm_ctl_usage("elect: expected PATH VALUE [--ttl D] [--timeout D] -- "
				    "COMMAND [ARGS...]");
	lo.path = args[0];
	lo.value = args[1];
	int rv = check_lock(&lo, "elect");
	return rv ? rv : run_locked(cc, &lo);
}
