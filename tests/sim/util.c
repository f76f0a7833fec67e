/* util.c: the simulator's PRNG, hashes, allocation and data encodings. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* splitmix64: expands one 64-bit seed into well-mixed words (also our hash finaliser). */
uint64_t sim_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

void sim_rng_seed(struct sim_rng *g, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++) {
		x = sim_mix64(x);
		g->s[i] = x;
	}
	/* xoshiro's only bad state is all zeros, which splitmix never yields four times. */
	assert(g->s[0] | g->s[1] | g->s[2] | g->s[3]);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t sim_rng_next(struct sim_rng *g)
{
	uint64_t *s = g->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

uint64_t sim_rng_below(struct sim_rng *g, uint64_t n)
{
	assert(n > 0);
	/* The modulo bias is < n / 2^64: irrelevant for a test's choices. */
	return sim_rng_next(g) % n;
}

bool sim_rng_ppm(struct sim_rng *g, uint32_t ppm)
{
	return sim_rng_below(g, 1000000) < ppm;
}

uint64_t sim_hash_bytes(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return sim_mix64(h ^ len);
}

void *sim_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "raft-sim: out of memory\n");
		abort();
	}
	return p;
}

void *sim_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p) {
		fprintf(stderr, "raft-sim: out of memory\n");
		abort();
	}
	return p;
}

void *sim_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		fprintf(stderr, "raft-sim: out of memory\n");
		abort();
	}
	return q;
}

void *sim_xmemdup(const void *p, size_t n)
{
	void *q = sim_xmalloc(n);
	if (n)
		memcpy(q, p, n);
	return q;
}

static void put64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *b)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

/* Payloads are 8..64 bytes: the id, then filler derived from it, so that any
 * corruption or mix-up of bytes is detected on apply. */
uint32_t sim_payload_len(uint64_t id)
{
	return 8 + (uint32_t)(id % 57);
}

static uint8_t payload_filler(uint64_t id, uint32_t k)
{
	return (uint8_t)(id * 131u + k * 7u + 1u);
}

void sim_payload_encode(uint64_t id, uint8_t *buf)
{
	uint32_t len = sim_payload_len(id);
	put64(buf, id);
	for (uint32_t k = 8; k < len; k++)
		buf[k] = payload_filler(id, k);
}

int sim_payload_decode(const void *buf, uint32_t len, uint64_t *id)
{
	const uint8_t *b = buf;
	if (len < 8 || !b)
		return -1;
	*id = get64(b);
	if (len != sim_payload_len(*id))
		return -1;
	for (uint32_t k = 8; k < len; k++)
		if (b[k] != payload_filler(*id, k))
			return -1;
	return 0;
}

/* Snapshots: magic, index, hash, filler, sized to need several chunks. */
static const char snap_magic[8] = {'C', 'M', 'S', 'I', 'M', 'S', 'N', 'P'};

uint64_t sim_snap_size(raft_index index)
{
	return 2048 + (index * 37) % 3072;
}

static uint8_t snap_filler(raft_index index, uint64_t hash, uint64_t k)
{
	return (uint8_t)(hash ^ (index * 29u) ^ (k * 13u));
}

void sim_snap_encode(raft_index index, uint64_t hash, uint8_t *buf, uint64_t size)
{
	assert(size == sim_snap_size(index));
	memcpy(buf, snap_magic, 8);
	put64(buf + 8, index);
	put64(buf + 16, hash);
	for (uint64_t k = 24; k < size; k++)
		buf[k] = snap_filler(index, hash, k);
}

int sim_snap_decode(const uint8_t *buf, uint64_t size, raft_index *index, uint64_t *hash)
{
	if (size < 24 || !buf || memcmp(buf, snap_magic, 8) != 0)
		return -1;
	*index = get64(buf + 8);
	*hash = get64(buf + 16);
	if (size != sim_snap_size(*index))
		return -1;
	for (uint64_t k = 24; k < size; k++)
		if (buf[k] != snap_filler(*index, *hash, k))
			return -1;
	return 0;
}

uint64_t sim_sm_step(uint64_t hash, uint64_t payload_id)
{
	return sim_mix64(hash ^ sim_mix64(payload_id));
}

/* Our own lookup, so that checks do not depend on the code under test. */
int sim_conf_kind(const struct raft_conf *c, raft_id id)
{
	for (uint32_t i = 0; i < c->n && i < RAFT_MAX_NODES; i++)
		if (c->ids[i] == id)
			return c->kinds[i];
	return 0;
}

/* Membership is a set: compare regardless of order. */
bool sim_conf_equal(const struct raft_conf *a, const struct raft_conf *b)
{
	if (a->n != b->n)
		return false;
	for (uint32_t i = 0; i < a->n; i++)
		if (sim_conf_kind(b, a->ids[i]) != a->kinds[i])
			return false;
	return true;
}

uint32_t sim_conf_voters(const struct raft_conf *c)
{
	uint32_t v = 0;
	for (uint32_t i = 0; i < c->n; i++)
		v += c->kinds[i] == RAFT_VOTER;
	return v;
}
