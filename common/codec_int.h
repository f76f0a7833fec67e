/* codec_int.h: what the codec's decoding files share (not for callers). */
#ifndef CONFMAN_CODEC_INT_H
#define CONFMAN_CODEC_INT_H

#include "common/codec.h"

/* A positive msgpack integer, or -EBADMSG. */
int cm__codec_u64(const msgpack_object *o, uint64_t *v);
/* The RAFT frame's fields f[0..n). */
int cm__codec_dec_raft(const msgpack_object *f, uint32_t n, struct cm_msg *m);

#endif /* CONFMAN_CODEC_INT_H */
