/* snapfile.h: Confman's backup file ("snapshot file"): format, writer, reader.
 *
 * Layout (all integers little-endian):
 *
 *   magic    8 bytes "CMSNAP\0" then the format version byte (1)
 *   section* u32 type, u32 flags (0), u64 len, len bytes of payload,
 *            u64 XXH3-64 of the 16 header bytes and the payload
 *
 *   HEAD  (first, once)  msgpack map: "format" 1, "cluster" str, "created_ns",
 *                        "epoch" (the map's), "tool" str, "shards"
 *                        [[group, prefix, [replicas], parent, born]...],
 *                        "nodes" [[id, addr, http, state]...]
 *   GROUP (one per group) u32 n, n bytes of msgpack [group, prefix, index,
 *                        keys, blob_len], then blob_len bytes: the group's
 *                        tree as cm_kv_snapshot writes it (the meta group's
 *                        too: registry and node table), taken at `index`
 *   END   (last, once)   msgpack map: "groups", "keys", "bytes"
 *
 * XXH3-64 (Debian's libxxhash): fast enough not to slow a save down, and a
 * 64-bit check makes an undetected flipped byte vanishingly unlikely; it is
 * an integrity check against damage, not against an attacker (keep backups
 * where only operators can write). A file is complete only with END after
 * every GROUP its HEAD lists; a section that does not check names itself.
 */
#ifndef CONFMAN_SNAPFILE_H
#define CONFMAN_SNAPFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <msgpack.h>

#define CM_SNAP_MAGIC "CMSNAP\0\1"
#define CM_SNAP_FORMAT 1
#define CM_SNAP_HEAD 1
#define CM_SNAP_GROUP 2
#define CM_SNAP_END 3
#define CM_SNAP_SECTION_MAX (8ull << 30) /* bytes of one section's payload */

/* ---- writing (one section at a time, payload streamed) ---- */

struct cm_snap_wr {
	FILE *f;
	void *hash; /* XXH3_state_t of the open section */
	uint64_t left; /* payload bytes the open section still expects */
	int err;    /* the first write error: every later call returns it */
};

int cm_snap_wr_open(struct cm_snap_wr *w, FILE *f);
int cm_snap_wr_begin(struct cm_snap_wr *w, uint32_t type, uint64_t len);
int cm_snap_wr_data(struct cm_snap_wr *w, const void *p, size_t n);
int cm_snap_wr_end(struct cm_snap_wr *w); /* -EIO unless exactly len bytes came */
void cm_snap_wr_close(struct cm_snap_wr *w);

/* ---- reading (whole sections, checked) ---- */

struct cm_snap_sec {
	uint32_t type;
	uint32_t index; /* its position: 0 is HEAD */
	uint64_t len;
	uint8_t *data;  /* malloc'd payload; freed by the next call or close */
};

struct cm_snap_rd {
	FILE *f;
	struct cm_snap_sec sec;
	char why[256]; /* what was wrong, naming the section */
};

/* 0, or -EBADMSG (not a Confman snapshot file: magic) / -EPROTONOSUPPORT
 * (another format version), with r->why. */
int cm_snap_rd_open(struct cm_snap_rd *r, FILE *f);
/* The next section, its checksum verified: 1, 0 at the end of the file, or
 * -EBADMSG (truncated, too long, checksum mismatch, unknown type) with
 * r->why naming the section. */
int cm_snap_rd_next(struct cm_snap_rd *r);
void cm_snap_rd_close(struct cm_snap_rd *r);

/* The HEAD's field `key` (a msgpack object) into *out, with up owning it
 * (destroy it when done). 0 or -EBADMSG (not a map, or no such field). */
int cm_snap_head_field(const struct cm_snap_sec *s, const char *key, msgpack_unpacked *up,
		       const msgpack_object **out);

/* A GROUP section's fixed part. */
struct cm_snap_group {
	uint64_t group;
	char prefix[4097];
	uint64_t index;
	uint64_t keys;
	const uint8_t *blob; /* into the section's data */
	uint64_t blob_len;
};
int cm_snap_group_parse(const struct cm_snap_sec *s, struct cm_snap_group *g);

#endif /* CONFMAN_SNAPFILE_H */
