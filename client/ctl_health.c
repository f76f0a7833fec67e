/* ctl_health.c: confmanctl status's node health: readiness, store, fsync, requests, peers. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "client/ctl.h"
#include "confman/proto.h"

static const char *space_name(uint8_t space)
{
	static const char *const names[] = {"ok", "low", "full"};
	return space < sizeof(names) / sizeof(names[0]) ? names[space] : "?";
}

/* A bucket bound in microseconds: "-" (no sample yet), ">10 s" (past them). */
static void fmt_us(char *buf, size_t cap, uint64_t us)
{
	if (us == 0)
		snprintf(buf, cap, "-");
	else if (us == UINT64_MAX)
		snprintf(buf, cap, ">10 s");
	else if (us < 1000000)
		snprintf(buf, cap, "%.1f ms", (double)us / 1000);
	else
		snprintf(buf, cap, "%.1f s", (double)us / 1000000);
}

static void fmt_bytes(char *buf, size_t cap, uint64_t b)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)b;
	unsigned u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void print_peer_text(FILE *f, const struct cm_peer_health *p)
{
	char heard[32], out[32], in[32];
	if (p->silence_ms == UINT64_MAX)
		snprintf(heard, sizeof(heard), "never");
	else
		snprintf(heard, sizeof(heard), "%" PRIu64 " ms ago", p->silence_ms);
	fmt_bytes(out, sizeof(out), p->bytes_out);
	fmt_bytes(in, sizeof(in), p->bytes_in);
	fprintf(f, "  peer %-4" PRIu64 " %-5s heard %-12s sent %" PRIu64 " frames, %s; received %" PRIu64
		   " frames, %s\n",
		p->id, p->up ? "up" : "DOWN", heard, p->frames_out, out, p->frames_in, in);
}

void cm_ctl_print_health_text(FILE *f, const struct cm_node_health *h)
{
	char p50[32], p99[32];
	fmt_us(p50, sizeof(p50), h->fsync_p50_us);
	fmt_us(p99, sizeof(p99), h->fsync_p99_us);
	if (h->ready)
		fprintf(f, "  ready");
	else
		fprintf(f, "  NOT READY: %s", h->reason);
	fprintf(f, "; store %.1f%% used (%s); fsync p50 %s, p99 %s (%" PRIu64 " commits);"
		   " requests %" PRIu64 ", %" PRIu64 " failed\n",
		(double)h->store_permille / 10, space_name(h->space), p50, p99, h->fsyncs,
		h->requests, h->failed);
	for (uint32_t k = 0; k < h->n_peers; k++)
		print_peer_text(f, &h->peers[k]);
}

/* A bucket bound as JSON: null when unknown (no sample, or past the last). */
static void json_us(FILE *f, const char *key, uint64_t us)
{
	if (us == 0 || us == UINT64_MAX)
		fprintf(f, ",\"%s\":null", key);
	else
		fprintf(f, ",\"%s\":%" PRIu64, key, us);
}

static void print_peer_json(FILE *f, const struct cm_peer_health *p)
{
	fprintf(f, "{\"id\":%" PRIu64 ",\"up\":%s", p->id, p->up ? "true" : "false");
	if (p->silence_ms == UINT64_MAX)
		fputs(",\"heard_ms_ago\":null", f);
	else
		fprintf(f, ",\"heard_ms_ago\":%" PRIu64, p->silence_ms);
	fprintf(f, ",\"frames_sent\":%" PRIu64 ",\"bytes_sent\":%" PRIu64
		   ",\"frames_received\":%" PRIu64 ",\"bytes_received\":%" PRIu64 "}",
		p->frames_out, p->bytes_out, p->frames_in, p->bytes_in);
}

void cm_ctl_print_health_json(FILE *f, const struct cm_node_health *h)
{
	fprintf(f, "{\"ready\":%s,\"reason\":", h->ready ? "true" : "false");
	cm_ctl_json_str(f, h->reason, strlen(h->reason));
	fprintf(f, ",\"space\":\"%s\",\"store_used\":%.3f,\"fsyncs\":%" PRIu64, space_name(h->space),
		(double)h->store_permille / 1000, h->fsyncs);
	json_us(f, "fsync_p50_us", h->fsync_p50_us);
	json_us(f, "fsync_p99_us", h->fsync_p99_us);
	fprintf(f, ",\"requests\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"peers\":[", h->requests,
		h->failed);
	for (uint32_t k = 0; k < h->n_peers; k++) {
		if (k)
			fputc(',', f);
		print_peer_json(f, &h->peers[k]);
	}
	fputs("]}", f);
}
