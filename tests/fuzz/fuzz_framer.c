/* fuzz_framer.c: libFuzzer target: a byte stream cut at arbitrary points through cm_framer_*,
 * every frame it yields through cm_codec_decode(). */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small enough that the fuzzer reaches "declared length over the bound". */
#define FRAMER_MAX (64u << 10)

/* Drain every complete frame; returns false once the stream is unusable. */
static bool drain(struct cm_framer *f)
{
	for (;;) {
		const char *body = NULL;
		size_t len = 0;
		int rv = cm_framer_next(f, &body, &len);
		assert(rv == 0 || rv == 1 || rv == -EMSGSIZE);
		if (rv == -EMSGSIZE)
			return false;
		if (rv == 0)
			return true;
		assert(len > 0 && len <= FRAMER_MAX);
		assert(body >= f->buf && body + len <= f->buf + f->len);
		struct cm_msg m;
		if (cm_codec_decode(body, len, &m) == 0)
			cm_codec_free(&m);
		cm_framer_consume(f, len);
		assert(f->off <= f->len && f->len <= f->cap);
	}
}

/* The first byte seeds the cut points, so one input replays exactly. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint32_t x = data[0] | 1u;
	data++;
	size--;
	struct cm_framer f;
	cm_framer_init(&f, FRAMER_MAX);
	size_t off = 0;
	while (off < size) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		size_t n = 1 + x % 97;
		if (n > size - off)
			n = size - off;
		int rv = cm_framer_feed(&f, data + off, n);
		assert(rv == 0);
		off += n;
		if (!drain(&f))
			break;
	}
	cm_framer_free(&f);
	return 0;
}
