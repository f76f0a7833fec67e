/* log.c: the in-memory Raft log, a growable ring of entries after a base point. */
#include "raft_int.h"

#define LOG_MIN_CAP 8

static struct raft_entry *slot(const struct raft_log *l, uint32_t k)
{
	assert(l->cap > 0);
	return &l->ring[(l->head + k) & (l->cap - 1)];
}

void raft__log_init(struct raft_log *l, raft_index base, raft_term base_term)
{
	memset(l, 0, sizeof(*l));
	l->base = base;
	l->base_term = base_term;
}

static void free_range(struct raft_log *l, uint32_t from, uint32_t to)
{
	for (uint32_t k = from; k < to; k++) {
		struct raft_entry *e = slot(l, k);
		free(e->data);
		e->data = NULL;
	}
}

void raft__log_free(struct raft_log *l)
{
	if (l->count > 0)
		free_range(l, 0, l->count);
	free(l->ring);
	memset(l, 0, sizeof(*l));
}

raft_index raft__log_last(const struct raft_log *l)
{
	return l->base + l->count;
}

raft_term raft__log_last_term(const struct raft_log *l)
{
	return l->count == 0 ? l->base_term : slot(l, l->count - 1)->term;
}

raft_term raft__log_term(const struct raft_log *l, raft_index i)
{
	if (i == l->base)
		return l->base_term;
	if (i < l->base || i > raft__log_last(l))
		return 0;
	return slot(l, (uint32_t)(i - l->base - 1))->term;
}

struct raft_entry *raft__log_get(const struct raft_log *l, raft_index i)
{
	assert(i > l->base);
	assert(i <= raft__log_last(l));
	return slot(l, (uint32_t)(i - l->base - 1));
}

/* Grow to twice the size, unrolling the ring so head is 0 again. */
static int grow(struct raft_log *l)
{
	uint32_t cap = l->cap ? l->cap * 2 : LOG_MIN_CAP;
	if (cap < l->cap)
		return -ENOMEM;
	struct raft_entry *ring = malloc(sizeof(*ring) * cap);
	if (ring == NULL)
		return -ENOMEM;
	for (uint32_t k = 0; k < l->count; k++)
		ring[k] = *slot(l, k);
	free(l->ring);
	l->ring = ring;
	l->cap = cap;
	l->head = 0;
	return 0;
}

/* Shrink a mostly empty ring so that idle groups stay small. Called from
 * the tick, not from compaction: a busy group would only grow it back. */
void raft__log_shrink(struct raft_log *l)
{
	if (l->cap <= LOG_MIN_CAP || l->count * 4 > l->cap)
		return;
	uint32_t cap = l->cap / 2;
	while (cap > LOG_MIN_CAP && l->count * 4 <= cap)
		cap /= 2;
	struct raft_entry *ring = malloc(sizeof(*ring) * cap);
	if (ring == NULL)
		return; /* keep the bigger one: harmless */
	for (uint32_t k = 0; k < l->count; k++)
		ring[k] = *slot(l, k);
	free(l->ring);
	l->ring = ring;
	l->cap = cap;
	l->head = 0;
}

int raft__log_append(struct raft_log *l, const struct raft_entry *e)
{
	assert(e->index == raft__log_last(l) + 1);
	assert(e->term >= raft__log_last_term(l));
	assert(e->len == 0 || e->data != NULL);
	if (l->count == l->cap && grow(l) != 0)
		return -ENOMEM;
	void *data = NULL;
	if (e->len > 0) {
		data = malloc(e->len);
		if (data == NULL)
			return -ENOMEM;
		memcpy(data, e->data, e->len);
	}
	struct raft_entry *s = slot(l, l->count);
	*s = *e;
	s->data = data;
	l->count++;
	return 0;
}

void raft__log_truncate(struct raft_log *l, raft_index i)
{
	assert(i > l->base);
	if (i > raft__log_last(l))
		return;
	uint32_t keep = (uint32_t)(i - l->base - 1);
	free_range(l, keep, l->count);
	l->count = keep;
}

void raft__log_compact(struct raft_log *l, raft_index i)
{
	assert(i >= l->base);
	assert(i <= raft__log_last(l));
	if (i == l->base)
		return;
	uint32_t drop = (uint32_t)(i - l->base);
	l->base_term = raft__log_term(l, i);
	free_range(l, 0, drop);
	l->head = (l->head + drop) & (l->cap - 1);
	l->count -= drop;
	l->base = i;
}

void raft__log_reset(struct raft_log *l, raft_index base, raft_term term)
{
	raft__log_free(l);
	raft__log_init(l, base, term);
}
