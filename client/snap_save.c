/* snap_save.c: `confmanctl snapshot save FILE`: every group, each read at a
 * linearizable point from one of its replicas, into a backup file
 * (common/snapfile.h). Written to FILE.tmp, fsynced and renamed, then read
 * back and verified: an interrupted or damaged save never looks complete. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/ctl.h"
#include "client/snap.h"
#include "common/snapfile.h"
#include "confman/client.h"
#include "confman/error.h"

struct save {
	struct cm_snap_wr w;
	const char *label;  /* the group's prefix, or "meta" */
	uint64_t group;
	bool tty;
	uint64_t keys, bytes, groups; /* totals */
	uint64_t t_last;              /* ms of the last progress line */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* HEAD: the cluster, the time, the map. */
static int write_head(struct save *sv, const char *cluster, const struct cm_shard_map *m)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 7);
	pack_str(&pk, "format");
	msgpack_pack_uint32(&pk, CM_SNAP_FORMAT);
	pack_str(&pk, "cluster");
	pack_str(&pk, cluster);
	pack_str(&pk, "created_ns");
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	msgpack_pack_int64(&pk, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
	pack_str(&pk, "epoch");
	msgpack_pack_uint64(&pk, m->epoch);
	pack_str(&pk, "tool");
	pack_str(&pk, "confmanctl snapshot save");
	pack_str(&pk, "shards");
	msgpack_pack_array(&pk, m->n_shards);
	for (uint32_t k = 0; k < m->n_shards; k++) {
		const struct cm_shard_info *s = &m->shards[k];
		msgpack_pack_array(&pk, 5);
		msgpack_pack_uint64(&pk, s->group);
		pack_str(&pk, s->prefix);
		msgpack_pack_array(&pk, s->n_replicas);
		for (uint32_t j = 0; j < s->n_replicas; j++)
			msgpack_pack_uint64(&pk, s->replicas[j]);
		msgpack_pack_uint64(&pk, s->parent);
		msgpack_pack_uint64(&pk, s->born);
	}
	pack_str(&pk, "nodes");
	msgpack_pack_array(&pk, m->n_nodes);
	for (uint32_t k = 0; k < m->n_nodes; k++) {
		const struct cm_node_info *n = &m->nodes[k];
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint64(&pk, n->id);
		pack_str(&pk, n->addr);
		pack_str(&pk, n->http ? n->http : "");
		msgpack_pack_uint8(&pk, n->state);
	}
	cm_snap_wr_begin(&sv->w, CM_SNAP_HEAD, sb.size);
	cm_snap_wr_data(&sv->w, sb.data, sb.size);
	int rv = cm_snap_wr_end(&sv->w);
	msgpack_sbuffer_destroy(&sb);
	return rv;
}

/* The first chunk opens the GROUP section: its size is known now. */
static int group_begin(struct save *sv, const struct cm_dump_chunk *ch)
{
	uint64_t keys = 0;
	if (cm_snap_blob_count(ch->p, ch->len, &keys) != 0)
		return -EPROTO;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 5);
	msgpack_pack_uint64(&pk, sv->group);
	pack_str(&pk, sv->group == CM_META_GROUP ? "" : sv->label);
	msgpack_pack_uint64(&pk, ch->index);
	msgpack_pack_uint64(&pk, keys);
	msgpack_pack_uint64(&pk, ch->total);
	uint8_t n[4] = {(uint8_t)sb.size, (uint8_t)(sb.size >> 8), (uint8_t)(sb.size >> 16),
			(uint8_t)(sb.size >> 24)};
	cm_snap_wr_begin(&sv->w, CM_SNAP_GROUP, 4 + sb.size + ch->total);
	cm_snap_wr_data(&sv->w, n, 4);
	int rv = cm_snap_wr_data(&sv->w, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	sv->keys += keys;
	return rv;
}

static int sink(void *arg, const struct cm_dump_chunk *ch)
{
	struct save *sv = arg;
	int rv = ch->offset == 0 ? group_begin(sv, ch) : 0;
	if (rv == 0)
		rv = cm_snap_wr_data(&sv->w, ch->p, ch->len);
	sv->bytes += ch->len;
	if (sv->tty && (now_ms() - sv->t_last > 200 || ch->offset + ch->len == ch->total)) {
		sv->t_last = now_ms();
		fprintf(stderr, "\r  %-32s %6.1f / %.1f MiB", sv->label,
			(double)(ch->offset + ch->len) / 1048576.0, (double)ch->total / 1048576.0);
	}
	if (rv == 0 && ch->offset + ch->len == ch->total)
		rv = cm_snap_wr_end(&sv->w);
	return rv;
}

static const char *addr_of(const struct cm_shard_map *m, uint64_t id)
{
	for (uint32_t k = 0; k < m->n_nodes; k++)
		if (m->nodes[k].id == id && m->nodes[k].state != CM_NODE_REMOVED)
			return m->nodes[k].addr;
	return NULL;
}

/* The replicas to read from, followers first (a backup should not load the
 * leader) unless from_leader. */
static uint32_t order_replicas(struct cm_client *c, const struct cm_shard_map *m, uint64_t group,
			       const uint64_t *reps, uint32_t n, bool from_leader, uint64_t *out)
{
	struct cm_node_status *st = NULL;
	uint64_t leader = 0;
	if (cm_member_status(c, group, &st) == 0 && st != NULL)
		leader = st->node_id;
	cm_status_free(st);
	uint32_t k = 0;
	if (from_leader && leader != 0)
		out[k++] = leader;
	for (uint32_t j = 0; j < n; j++)
		if (reps[j] != leader && addr_of(m, reps[j]) != NULL)
			out[k++] = reps[j];
	if (!from_leader && leader != 0)
		out[k++] = leader;
	return k;
}

static int save_group(struct cm_client *c, struct save *sv, const struct cm_shard_map *m,
		      const uint64_t *reps, uint32_t n, bool from_leader)
{
	uint64_t order[CM_CLIENT_MAX_REPLICAS + 2];
	uint32_t no = order_replicas(c, m, sv->group, reps, n, from_leader, order);
	int rv = -EHOSTUNREACH;
	for (uint32_t k = 0; k < no; k++) {
		uint64_t before = sv->bytes;
		rv = cm_dump(c, addr_of(m, order[k]), sv->group,
			     sv->group == CM_META_GROUP ? "/" : sv->label, sink, sv, NULL);
		if (rv == 0 || sv->bytes != before)
			break; /* done, or a section is half written: no other replica now */
		fprintf(stderr, "confmanctl: %s: node %" PRIu64 ": %s; trying another replica\n",
			sv->label, order[k], cm_strerror(rv));
	}
	if (sv->tty)
		fputc('\n', stderr);
	sv->groups++;
	return rv;
}

static int write_end(struct save *sv)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	pack_str(&pk, "groups");
	msgpack_pack_uint64(&pk, sv->groups);
	pack_str(&pk, "keys");
	msgpack_pack_uint64(&pk, sv->keys);
	pack_str(&pk, "bytes");
	msgpack_pack_uint64(&pk, sv->bytes);
	cm_snap_wr_begin(&sv->w, CM_SNAP_END, sb.size);
	cm_snap_wr_data(&sv->w, sb.data, sb.size);
	int rv = cm_snap_wr_end(&sv->w);
	msgpack_sbuffer_destroy(&sb);
	return rv;
}

/* Every group: the meta group (registry, node table), then each shard. */
static int save_all(struct cm_client *c, struct save *sv, const char *cluster, bool from_leader)
{
	struct cm_shard_map *m;
	int rv = cm_shards(c, &m);
	if (rv != 0)
		return rv;
	rv = write_head(sv, cluster, m);
	uint64_t all[CM_CLIENT_MAX_REPLICAS];
	uint32_t na = 0;
	for (uint32_t k = 0; k < m->n_nodes && na < CM_CLIENT_MAX_REPLICAS; k++)
		if (m->nodes[k].state != CM_NODE_REMOVED)
			all[na++] = m->nodes[k].id;
	sv->group = CM_META_GROUP;
	sv->label = "meta";
	if (rv == 0)
		rv = save_group(c, sv, m, all, na, from_leader);
	for (uint32_t k = 0; rv == 0 && k < m->n_shards; k++) {
		sv->group = m->shards[k].group;
		sv->label = m->shards[k].prefix;
		rv = save_group(c, sv, m, m->shards[k].replicas, m->shards[k].n_replicas,
				from_leader);
		if (rv != 0)
			fprintf(stderr, "confmanctl: snapshot save: %s: %s\n", sv->label,
				cm_strerror(rv));
	}
	if (rv == 0)
		rv = write_end(sv);
	cm_shards_free(m);
	return rv;
}

/* FILE.tmp, fsynced, renamed, the directory fsynced. */
static int finish_file(FILE *f, const char *tmp, const char *path)
{
	int rv = fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -errno;
	if (fclose(f) != 0 && rv == 0)
		rv = -errno;
	if (rv == 0 && rename(tmp, path) != 0)
		rv = -errno;
	if (rv != 0) {
		unlink(tmp);
		return rv;
	}
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

int cm_ctl_snap_save(struct cm_client *c, const char *cluster, const char *path, bool from_leader,
		     bool json)
{
	bool to_stdout = strcmp(path, "-") == 0;
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	/* Every value of the cluster: readable by its user alone, whatever the umask. */
	int fd = to_stdout ? -1 : open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	FILE *f = to_stdout ? stdout : fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (f == NULL && fd >= 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
	}
	if (f == NULL)
		return cm_ctl_fail(tmp, -errno);
	struct save sv = {.tty = isatty(2)};
	int rv = cm_snap_wr_open(&sv.w, f);
	uint64_t t0 = now_ms();
	if (rv == 0)
		rv = save_all(c, &sv, cluster, from_leader);
	if (rv == 0 && sv.w.err != 0)
		rv = sv.w.err;
	cm_snap_wr_close(&sv.w);
	if (!to_stdout) {
		if (rv == 0)
			rv = finish_file(f, tmp, path);
		else {
			fclose(f);
			unlink(tmp);
		}
	} else if (fflush(stdout) != 0 && rv == 0) {
		rv = -EIO;
	}
	if (rv != 0)
		return cm_ctl_fail("snapshot save", rv);
	if (!to_stdout && (rv = cm_ctl_snap_verify(path, false, true)) != 0)
		return rv; /* read back at once: a bad file is found now, not at restore */
	double s = (double)(now_ms() - t0) / 1000.0;
	FILE *out = to_stdout ? stderr : stdout;
	if (json)
		fprintf(out, "{\"file\":\"%s\",\"groups\":%" PRIu64 ",\"keys\":%" PRIu64
			     ",\"bytes\":%" PRIu64 ",\"seconds\":%.3f}\n",
			path, sv.groups, sv.keys, sv.bytes, s);
	else
		fprintf(out, "saved %s: %" PRIu64 " groups, %" PRIu64 " keys, %.1f MiB in %.1f s\n",
			path, sv.groups, sv.keys, (double)sv.bytes / 1048576.0, s);
	return CM_CTL_OK;
}
