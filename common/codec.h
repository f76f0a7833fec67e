/* codec.h: protocol frames to and from bytes, with msgpack-c. */
#ifndef CONFMAN_CODEC_H
#define CONFMAN_CODEC_H

#include <msgpack.h>
#include <stdbool.h>

#include "confman/proto.h"
#include "raft/raft.h"

/*
 * Encoders append ONE whole frame (4-byte length included) to sb and return 0,
 * -ENOMEM, or -EMSGSIZE when the frame would exceed CM_FRAME_MAX (then sb is
 * left as it was).
 */
int cm_codec_hello(msgpack_sbuffer *sb, uint8_t type, const struct cm_hello *h);
int cm_codec_req(msgpack_sbuffer *sb, const struct cm_req *r);
int cm_codec_resp(msgpack_sbuffer *sb, const struct cm_resp *r);
int cm_codec_event(msgpack_sbuffer *sb, const struct cm_event *e);
int cm_codec_error(msgpack_sbuffer *sb, int err, const char *message);
int cm_codec_raft(msgpack_sbuffer *sb, uint64_t group, const struct raft_msg *m);
int cm_codec_ping(msgpack_sbuffer *sb, uint64_t node_id, uint8_t space);

/* One heartbeat (or its answer) of one group, as BEATS carries it. */
struct cm_beat {
	uint64_t group;
	uint8_t type; /* RAFT_MSG_HEARTBEAT or RAFT_MSG_HEARTBEAT_RESP */
	uint8_t flags; /* bit1: force (quiesce) */
	uint64_t term, commit, ctx;
};
#define CM_BEATS_MAX 65536 /* beats in one frame */
int cm_codec_beats(msgpack_sbuffer *sb, uint64_t from, uint64_t to, const struct cm_beat *v,
		   uint32_t n);
/* The raft_msg a beat stands for. */
void cm_codec_beat_msg(const struct cm_beat *b, uint64_t from, uint64_t to, struct raft_msg *m);

/* Attribute arrays, shared with kv.c's records and watch events. */
void cm_codec_pack_attr(msgpack_packer *pk, const struct cm_attr *a);
int cm_codec_unpack_attr(const msgpack_object *o, struct cm_attr *a);

/* One decoded frame. Strings and byte strings point into the body it was
 * decoded from AND into up: both must outlive the use of the message. */
struct cm_msg {
	uint8_t type; /* enum cm_frame_type */
	struct cm_hello hello;
	struct cm_req req;
	struct cm_resp resp;
	struct cm_event event;
	struct cm_errframe error;
	uint64_t group;      /* RAFT */
	uint64_t ping_node;  /* PING */
	uint8_t ping_space;  /* PING: the sender's space level, CM_SPACE_* */
	uint64_t beats_from, beats_to; /* BEATS */
	struct cm_beat *beats;         /* BEATS; owned by this message */
	uint32_t n_beats;
	struct raft_msg raft; /* RAFT; entries owned by this message */
	msgpack_unpacked up;
};

/*
 * cm_codec_decode - decode one frame body (the bytes after the length).
 * Every field is type-checked and every count bounded by the bytes present
 * before anything is allocated. Returns 0, -EBADMSG, -ENOMEM; on error out
 * needs no cm_codec_free.
 */
int cm_codec_decode(const void *body, size_t len, struct cm_msg *out);
void cm_codec_free(struct cm_msg *m);

/* Reassembling frames from a byte stream, with a bound on the buffer. */
struct cm_framer {
	char *buf; /* owned */
	size_t off, len, cap; /* unread bytes are buf[off, len) */
	size_t max; /* largest frame body accepted */
};

void cm_framer_init(struct cm_framer *f, size_t max);
void cm_framer_free(struct cm_framer *f);
/* Append received bytes. 0 or -ENOMEM. */
int cm_framer_feed(struct cm_framer *f, const void *data, size_t n);
/*
 * cm_framer_next - the next complete frame body, if any: returns 1 and sets
 * body/len (valid until the next feed or consume), 0 if more bytes are
 * needed, -EMSGSIZE if the declared length exceeds max (the stream is then
 * unusable: close it).
 */
int cm_framer_next(struct cm_framer *f, const char **body, size_t *len);
/* Drop the frame cm_framer_next() returned. */
void cm_framer_consume(struct cm_framer *f, size_t len);

#endif /* CONFMAN_CODEC_H */
