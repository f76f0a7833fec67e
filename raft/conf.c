/* conf.c: group membership: encoding, validation, and which one is in effect. */
#include "raft_int.h"

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int k = 0; k < 8; k++)
		p[k] = (uint8_t)(v >> (8 * k));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int k = 7; k >= 0; k--)
		v = (v << 8) | p[k];
	return v;
}

/* Layout: u32 n (little-endian), then n times (u64 id, u8 kind). */
uint32_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf)
{
	assert(c->n <= RAFT_MAX_NODES);
	buf[0] = (uint8_t)c->n;
	buf[1] = buf[2] = buf[3] = 0;
	uint8_t *p = buf + 4;
	for (uint32_t k = 0; k < c->n; k++, p += 9) {
		put_u64(p, c->ids[k]);
		p[8] = c->kinds[k];
	}
	return (uint32_t)(p - buf);
}

int raft_conf_decode(const void *buf, uint32_t len, struct raft_conf *c)
{
	const uint8_t *b = buf;
	if (b == NULL || len < 4)
		return -EBADMSG;
	uint32_t n = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
		     (uint32_t)b[3] << 24;
	if (n > RAFT_MAX_NODES || len != 4 + n * 9)
		return -EBADMSG;
	struct raft_conf tmp = {.n = n};
	for (uint32_t k = 0; k < n; k++) {
		tmp.ids[k] = get_u64(b + 4 + k * 9);
		tmp.kinds[k] = b[4 + k * 9 + 8];
	}
	if (raft__conf_validate(&tmp) != 0)
		return -EBADMSG;
	*c = tmp;
	return 0;
}

int raft__conf_validate(const struct raft_conf *c)
{
	if (c->n > RAFT_MAX_NODES)
		return -EINVAL;
	for (uint32_t k = 0; k < c->n; k++) {
		if (c->ids[k] == 0)
			return -EINVAL;
		if (c->kinds[k] != RAFT_VOTER && c->kinds[k] != RAFT_LEARNER)
			return -EINVAL;
		for (uint32_t j = 0; j < k; j++)
			if (c->ids[j] == c->ids[k])
				return -EINVAL;
	}
	return 0;
}

int raft_conf_kind(const struct raft_conf *c, raft_id id)
{
	for (uint32_t k = 0; k < c->n; k++)
		if (c->ids[k] == id)
			return c->kinds[k];
	return 0;
}

uint32_t raft__conf_voters(const struct raft_conf *c)
{
	uint32_t n = 0;
	for (uint32_t k = 0; k < c->n; k++)
		n += c->kinds[k] == RAFT_VOTER;
	return n;
}

void raft__conf_at(const struct raft *r, raft_index i, struct raft_conf *out)
{
	const struct raft_log *l = &r->log;
	raft_index last = raft__log_last(l);
	for (raft_index k = i < last ? i : last; k > l->base; k--) {
		const struct raft_entry *e = raft__log_get(l, k);
		if (e->type == RAFT_ENTRY_CONF) {
			/* Validated when it entered the log. */
			int rv = raft_conf_decode(e->data, e->len, out);
			assert(rv == 0);
			(void)rv;
			return;
		}
	}
	*out = r->base_conf;
}

void raft__conf_reload(struct raft *r)
{
	const struct raft_log *l = &r->log;
	r->conf = r->base_conf;
	r->conf_index = l->base;
	for (raft_index k = raft__log_last(l); k > l->base; k--) {
		const struct raft_entry *e = raft__log_get(l, k);
		if (e->type == RAFT_ENTRY_CONF) {
			int rv = raft_conf_decode(e->data, e->len, &r->conf);
			assert(rv == 0);
			(void)rv;
			r->conf_index = k;
			break;
		}
	}
	if (r->role == RAFT_LEADER)
		(void)raft__progress_sync(r);
}

void raft__conf_on_append(struct raft *r, const struct raft_entry *e)
{
	if (e->type != RAFT_ENTRY_CONF)
		return;
	int rv = raft_conf_decode(e->data, e->len, &r->conf);
	assert(rv == 0);
	(void)rv;
	r->conf_index = e->index;
	if (r->role == RAFT_LEADER)
		(void)raft__progress_sync(r);
}
