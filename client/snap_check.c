/* snap_check.c: reading backup files: `snapshot verify` and `snapshot
 * inspect`, and the walk over a group's records the restore uses. Reading
 * never writes: a file is never changed by looking at it. */
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/ctl.h"
#include "client/snap.h"
#include "common/snapfile.h"
#include "confman/proto.h"

int cm_snap_blob_count(const void *p, uint64_t len, uint64_t *count)
{
	const uint8_t *b = p;
	if (len >= 5 && b[0] == 0xdd) {
		*count = (uint64_t)b[1] << 24 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 8 | b[4];
		return 0;
	}
	if (len >= 3 && b[0] == 0xdc) {
		*count = (uint64_t)b[1] << 8 | b[2];
		return 0;
	}
	if (len >= 1 && (b[0] & 0xf0) == 0x90) {
		*count = b[0] & 0x0f;
		return 0;
	}
	return -EBADMSG;
}

static bool as_u64(const msgpack_object *o, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return false;
	*v = o->via.u64;
	return true;
}

static bool as_i64(const msgpack_object *o, int64_t *v)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
		*v = (int64_t)o->via.u64;
	else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		*v = o->via.i64;
	else
		return false;
	return true;
}

/* [path, ino, mode, uid, gid, mtime, ctime, create, mod, version, value,
 * flags?, atime?, nlink?] */
static int rec_parse(const msgpack_object *o, struct cm_snap_rec *r)
{
	uint32_t n = o->type == MSGPACK_OBJECT_ARRAY ? o->via.array.size : 0;
	if (n < 11 || n > 14)
		return -EBADMSG;
	const msgpack_object *f = o->via.array.ptr;
	uint64_t mode, uid, gid, flags = 0;
	memset(r, 0, sizeof(*r));
	if (f[0].type != MSGPACK_OBJECT_STR || f[10].type != MSGPACK_OBJECT_BIN ||
	    !as_u64(&f[2], &mode) || !as_u64(&f[3], &uid) || !as_u64(&f[4], &gid) ||
	    !as_i64(&f[5], &r->mtime_ns) || !as_u64(&f[9], &r->version) ||
	    !as_u64(&f[7], &r->create_index) || !as_u64(&f[8], &r->mod_index) ||
	    (n > 11 && !as_u64(&f[11], &flags)) || mode > UINT32_MAX || uid > UINT32_MAX ||
	    gid > UINT32_MAX || flags > UINT32_MAX)
		return -EBADMSG;
	r->atime_ns = r->mtime_ns;
	if (n > 12 && !as_i64(&f[12], &r->atime_ns))
		return -EBADMSG;
	r->path = f[0].via.str.ptr;
	r->path_len = f[0].via.str.size;
	r->mode = (uint32_t)mode;
	r->uid = (uint32_t)uid;
	r->gid = (uint32_t)gid;
	r->flags = (uint32_t)flags;
	r->value = f[10].via.bin.ptr;
	r->value_len = f[10].via.bin.size;
	return 0;
}

int cm_snap_blob_walk(const void *p, uint64_t len, int (*cb)(void *arg, const struct cm_snap_rec *r),
		      void *arg)
{
	uint64_t count;
	if (cm_snap_blob_count(p, len, &count) != 0)
		return -EBADMSG;
	size_t off = ((const uint8_t *)p)[0] == 0xdd ? 5 : ((const uint8_t *)p)[0] == 0xdc ? 3 : 1;
	msgpack_unpacked up;
	msgpack_unpacked_init(&up);
	int rv = 0;
	for (uint64_t k = 0; rv == 0 && k < count; k++) {
		struct cm_snap_rec r;
		if (msgpack_unpack_next(&up, p, (size_t)len, &off) != MSGPACK_UNPACK_SUCCESS ||
		    rec_parse(&up.data, &r) != 0)
			rv = -EBADMSG;
		else if (cb != NULL)
			rv = cb(arg, &r);
	}
	/* A group holding leases or locks has them in a second array
	 * (server/kv.h, cm_kv_snapshot): not records of the tree. */
	if (rv == 0 && off != len &&
	    (msgpack_unpack_next(&up, p, (size_t)len, &off) != MSGPACK_UNPACK_SUCCESS ||
	     up.data.type != MSGPACK_OBJECT_ARRAY))
		rv = -EBADMSG;
	if (rv == 0 && off != len)
		rv = -EBADMSG; /* bytes after the last record */
	msgpack_unpacked_destroy(&up);
	return rv;
}

/* ---- verify and inspect: one pass over every section ---- */

struct scan {
	bool json, quiet, keys_mode;
	uint32_t groups;
	uint64_t keys, bytes;
	uint32_t shards; /* HEAD's shard count */
	bool head, end;
};

static int head_shards(const struct cm_snap_sec *s, uint32_t *n)
{
	msgpack_unpacked up;
	const msgpack_object *o;
	int rv = cm_snap_head_field(s, "shards", &up, &o);
	if (rv == 0 && o->type != MSGPACK_OBJECT_ARRAY)
		rv = -EBADMSG;
	if (rv == 0)
		*n = o->via.array.size;
	msgpack_unpacked_destroy(&up);
	return rv;
}

/* One record as a JSON line: what a backup holds, for people and scripts. */
static int print_rec(void *arg, const struct cm_snap_rec *r)
{
	const struct cm_snap_group *g = arg;
	printf("{\"group\":%" PRIu64 ",\"path\":", g->group);
	cm_ctl_json_str(stdout, r->path, r->path_len);
	printf(",\"mode\":%u,\"uid\":%u,\"gid\":%u,\"version\":%" PRIu64
	       ",\"create_index\":%" PRIu64 ",\"mod_index\":%" PRIu64 ",\"mtime_ns\":%" PRId64
	       ",\"value\":",
	       r->mode, r->uid, r->gid, r->version, r->create_index, r->mod_index, r->mtime_ns);
	cm_ctl_base64(stdout, r->value, r->value_len);
	fputs("}\n", stdout);
	return 0;
}

static int scan_group(struct scan *sc, const struct cm_snap_sec *s, char *why, size_t cap)
{
	struct cm_snap_group g;
	uint64_t count;
	if (cm_snap_group_parse(s, &g) != 0) {
		snprintf(why, cap, "section %u (GROUP): malformed header", s->index);
		return -EBADMSG;
	}
	if (cm_snap_blob_count(g.blob, g.blob_len, &count) != 0 || count != g.keys ||
	    cm_snap_blob_walk(g.blob, g.blob_len, NULL, NULL) != 0) {
		snprintf(why, cap, "section %u (group %" PRIu64 " %.200s): its records do not parse "
			 "or are not the %" PRIu64 " it says", s->index, g.group, g.prefix, g.keys);
		return -EBADMSG;
	}
	sc->groups++;
	sc->keys += g.keys;
	sc->bytes += g.blob_len;
	if (sc->keys_mode && g.group != CM_META_GROUP)
		return cm_snap_blob_walk(g.blob, g.blob_len, print_rec, &g);
	if (sc->quiet)
		return 0;
	if (sc->json)
		printf("%s{\"group\":%" PRIu64 ",\"prefix\":\"%s\",\"index\":%" PRIu64
		       ",\"keys\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
		       sc->groups > 1 ? "," : "", g.group, g.group == CM_META_GROUP ? "meta" : g.prefix,
		       g.index, g.keys, g.blob_len);
	else
		printf("  %-12" PRIu64 " %-32s index %-10" PRIu64 " %8" PRIu64 " keys %10.1f KiB\n",
		       g.group, g.group == CM_META_GROUP ? "(meta)" : g.prefix, g.index, g.keys,
		       (double)g.blob_len / 1024.0);
	return 0;
}

static int scan_section(struct scan *sc, const struct cm_snap_sec *s, char *why, size_t cap)
{
	bool first = s->index == 0;
	if (first != (s->type == CM_SNAP_HEAD) || sc->end) {
		snprintf(why, cap, "section %u: out of place (HEAD first, END last)", s->index);
		return -EBADMSG;
	}
	if (s->type == CM_SNAP_HEAD) {
		if (head_shards(s, &sc->shards) != 0) {
			snprintf(why, cap, "section 0 (HEAD): malformed");
			return -EBADMSG;
		}
		return 0;
	}
	if (s->type == CM_SNAP_GROUP)
		return scan_group(sc, s, why, cap);
	sc->end = true;
	if (sc->groups != sc->shards + 1) { /* the shards and the meta group */
		snprintf(why, cap, "section %u (END): %u groups, the HEAD lists %u shards and meta",
			 s->index, sc->groups, sc->shards);
		return -EBADMSG;
	}
	return 0;
}

static int scan_file(const char *path, struct scan *sc)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (f == NULL)
		return cm_ctl_fail(path, -errno);
	struct cm_snap_rd r;
	char why[320] = "";
	int rv = cm_snap_rd_open(&r, f);
	while (rv == 0 && (rv = cm_snap_rd_next(&r)) == 1)
		rv = scan_section(sc, &r.sec, why, sizeof(why));
	if (rv == 0 && !sc->end) {
		snprintf(why, sizeof(why), "truncated: no END section after %u groups", sc->groups);
		rv = -EBADMSG;
	}
	if (rv != 0 && why[0] == '\0')
		snprintf(why, sizeof(why), "%s", r.why[0] ? r.why : "unreadable");
	cm_snap_rd_close(&r);
	if (f != stdin)
		fclose(f);
	if (rv != 0) {
		fprintf(stderr, "confmanctl: %s: %s\n", path, why);
		return rv == -ENOMEM ? CM_CTL_ERROR : CM_CTL_INVALID;
	}
	return CM_CTL_OK;
}

int cm_ctl_snap_verify(const char *path, bool json, bool quiet)
{
	struct scan sc = {.json = json, .quiet = true};
	int rv = scan_file(path, &sc);
	if (rv == 0 && !quiet)
		printf(json ? "{\"file\":\"%s\",\"ok\":true,\"groups\":%u,\"keys\":%" PRIu64 "}\n"
			    : "%s: ok, %u groups, %" PRIu64 " keys, every checksum matches\n",
		       path, sc.groups, sc.keys);
	return rv;
}

int cm_ctl_snap_inspect(const char *path, bool json, bool keys)
{
	if (keys) {
		struct scan ks = {.quiet = true, .keys_mode = true};
		return scan_file(path, &ks);
	}
	struct scan sc = {.json = json};
	if (json)
		printf("{\"file\":\"%s\",\"groups\":[", path);
	else
		printf("%s:\n  %-12s %-32s %-16s %13s %14s\n", path, "GROUP", "PREFIX", "INDEX",
		       "KEYS", "SIZE");
	int rv = scan_file(path, &sc);
	if (json)
		printf("],\"keys\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"ok\":%s}\n", sc.keys, sc.bytes,
		       rv == 0 ? "true" : "false");
	else if (rv == 0)
		printf("  %u groups, %" PRIu64 " keys, %.1f MiB\n", sc.groups, sc.keys,
		       (double)sc.bytes / 1048576.0);
	return rv;
}
