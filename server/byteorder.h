/* byteorder.h: fixed-width integers to and from bytes, for storage keys and records. */
#ifndef CONFMAN_BYTEORDER_H
#define CONFMAN_BYTEORDER_H

#include <stdint.h>

/*
 * Keys are big-endian so that LMDB's memcmp order is numeric order; record
 * bodies are little-endian. Byte by byte, so alignment and host order never
 * matter and the bytes on disk are the same on every replica.
 */

static inline void cm_bo_put_be64(uint8_t *b, uint64_t v)
{
	for (int k = 7; k >= 0; k--, v >>= 8)
		b[k] = (uint8_t)v;
}

static inline uint64_t cm_bo_get_be64(const uint8_t *b)
{
	uint64_t v = 0;
	for (int k = 0; k < 8; k++)
		v = v << 8 | b[k];
	return v;
}

static inline void cm_bo_put_le64(uint8_t *b, uint64_t v)
{
	for (int k = 0; k < 8; k++, v >>= 8)
		b[k] = (uint8_t)v;
}

static inline uint64_t cm_bo_get_le64(const uint8_t *b)
{
	uint64_t v = 0;
	for (int k = 7; k >= 0; k--)
		v = v << 8 | b[k];
	return v;
}

static inline void cm_bo_put_le32(uint8_t *b, uint32_t v)
{
	for (int k = 0; k < 4; k++, v >>= 8)
		b[k] = (uint8_t)v;
}

static inline uint32_t cm_bo_get_le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static inline void cm_bo_put_le16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}

static inline uint16_t cm_bo_get_le16(const uint8_t *b)
{
	return (uint16_t)(b[0] | b[1] << 8);
}

#endif /* CONFMAN_BYTEORDER_H */
