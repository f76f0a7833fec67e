/* backup_load.c: data for the backup tests, through the asynchronous client.
 *
 *   backup-load load SERVERS N PREFIX,...   N files spread over the prefixes:
 *       binary values (NUL bytes included, 1-300 bytes), every 7th a symlink
 *       (mode S_IFLNK, the target as value), every 5th mode 0600, owners
 *       1000-1002; 64 requests in flight. Exit 1 if any write failed.
 *   backup-load write SERVERS SECONDS N PREFIX,...  sequential rewrites of
 *       random files of that set, one line per write on stdout:
 *       "PATH MOD_INDEX HEXVALUE" once acknowledged, "PATH ?" when the
 *       outcome is unknown (the comparison then skips that file).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "confman/client.h"
#include "confman/error.h"

#define IN_FLIGHT 64

struct run {
	uv_loop_t loop;
	struct cm_ac *ac;
	char **prefixes;
	int n_prefixes;
	uint64_t n, next, done, failed, inflight;
	uint64_t until_ms; /* write: stop submitting at this loop time */
	unsigned seed;
};

struct op {
	struct run *r;
	char path[256];
	uint8_t value[320];
	uint32_t len;
};

static void path_of(const struct run *r, uint64_t k, char *out, size_t cap)
{
	snprintf(out, cap, "%s/d%02" PRIu64 "/f%06" PRIu64, r->prefixes[k % (uint64_t)r->n_prefixes],
		 (k / 7) % 50, k);
}

/* The file k's request: its kind decides mode and value. */
static void fill(struct run *r, struct op *o, uint64_t k, struct cm_req *q)
{
	path_of(r, k, o->path, sizeof(o->path));
	memset(q, 0, sizeof(*q));
	q->op = CM_OP_PUT;
	q->flags = CM_SET_MODE;
	q->path = (struct cm_bytes){o->path, (uint32_t)strlen(o->path)};
	q->uid = 1000 + (uint32_t)(k % 3);
	q->gid = 1000 + (uint32_t)(k % 2);
	if (k % 7 == 0) {
		q->mode = S_IFLNK | 0777;
		o->len = (uint32_t)snprintf((char *)o->value, sizeof(o->value), "../target-%" PRIu64, k);
	} else {
		q->mode = S_IFREG | (k % 5 == 0 ? 0600 : 0644);
		o->len = 1 + (uint32_t)(rand_r(&r->seed) % 300);
		for (uint32_t j = 0; j < o->len; j++)
			o->value[j] = (uint8_t)rand_r(&r->seed); /* NULs included */
	}
	q->value = (struct cm_bytes){(const char *)o->value, o->len};
}

static void submit_next(struct run *r);

static void on_load(void *arg, int err, const struct cm_resp *resp)
{
	(void)resp;
	struct op *o = arg;
	struct run *r = o->r;
	r->inflight--;
	r->done++;
	if (err != 0) {
		fprintf(stderr, "backup-load: %s: %s\n", o->path, cm_strerror(err));
		r->failed++;
	}
	free(o);
	submit_next(r);
}

static void on_write(void *arg, int err, const struct cm_resp *resp)
{
	struct op *o = arg;
	struct run *r = o->r;
	r->inflight--;
	if (err == 0 && resp != NULL && resp->has_attr) {
		printf("%s %" PRIu64 " ", o->path, resp->attr.mod_index);
		for (uint32_t j = 0; j < o->len; j++)
			printf("%02x", o->value[j]);
		putchar('\n');
	} else {
		printf("%s ?\n", o->path); /* refused, or unknown: skipped by the check */
	}
	free(o);
	submit_next(r);
}

static void submit_next(struct run *r)
{
	bool writer = r->until_ms != 0;
	while (r->inflight < (writer ? 1u : IN_FLIGHT)) {
		if (writer ? uv_now(&r->loop) >= r->until_ms : r->next >= r->n)
			break;
		struct op *o = calloc(1, sizeof(*o));
		if (o == NULL)
			exit(1);
		o->r = r;
		uint64_t k = writer ? (uint64_t)rand_r(&r->seed) % r->n : r->next++;
		struct cm_req q;
		fill(r, o, k, &q);
		if (cm_ac_submit(r->ac, &q, writer ? on_write : on_load, o) != 0) {
			free(o);
			r->failed++;
			break;
		}
		r->inflight++;
	}
	if (r->inflight == 0)
		cm_ac_close(r->ac, NULL, NULL);
}

int main(int argc, char **argv)
{
	bool write = argc == 6 && strcmp(argv[1], "write") == 0;
	if (!write && !(argc == 5 && strcmp(argv[1], "load") == 0)) {
		fprintf(stderr, "usage: backup-load load SERVERS N PREFIXES | "
				"write SERVERS SECONDS N PREFIXES\n");
		return 2;
	}
	struct run r = {.seed = write ? (unsigned)time(NULL) : 42};
	r.n = strtoull(argv[write ? 4 : 3], NULL, 10);
	char *save = NULL;
	r.prefixes = calloc(16, sizeof(char *));
	for (char *t = strtok_r(argv[write ? 5 : 4], ",", &save); t && r.n_prefixes < 16;
	     t = strtok_r(NULL, ",", &save))
		r.prefixes[r.n_prefixes++] = t;
	struct cm_client_opts opts;
	cm_client_opts_init(&opts);
	opts.servers = argv[2];
	uv_loop_init(&r.loop);
	if (r.n == 0 || r.n_prefixes == 0 || cm_ac_new(&r.loop, &opts, &r.ac) != 0)
		return 2;
	if (write)
		r.until_ms = uv_now(&r.loop) + 1000 * strtoull(argv[3], NULL, 10);
	submit_next(&r);
	uv_run(&r.loop, UV_RUN_DEFAULT);
	uv_loop_close(&r.loop);
	free(r.prefixes);
	if (!write)
		fprintf(stderr, "backup-load: %" PRIu64 " files, %" PRIu64 " failed\n", r.done,
			r.failed);
	return r.failed ? 1 : 0;
}
