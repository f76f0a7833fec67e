/* dump.c: a group's whole tree, fetched for a backup (CM_OP_DUMP). */
#include <errno.h>
#include <string.h>

#include "client/client_int.h"

struct chunk {
	cm_dump_sink sink;
	void *arg;
	uint64_t offset, total, id, index;
	int err; /* the sink's */
};

static int take(struct cm_client__call *s, const struct cm_resp *resp)
{
	struct chunk *ch = s->out;
	if (!resp->has_attr)
		return -EPROTO;
	ch->total = resp->attr.version;
	ch->id = resp->attr.mod_index;
	ch->index = resp->token;
	if (ch->offset + resp->value.len > ch->total)
		return -EPROTO;
	struct cm_dump_chunk c = {resp->value.p, resp->value.len, ch->offset, ch->total, ch->index};
	ch->err = ch->sink(ch->arg, &c);
	return 0;
}

int cm_dump(struct cm_client *c, const char *server, uint64_t group, const char *prefix,
	    cm_dump_sink sink, void *arg, uint64_t *index)
{
	if (c == NULL || server == NULL || sink == NULL || group == 0)
		return -EINVAL;
	struct chunk ch = {.sink = sink, .arg = arg};
	struct cm_req r = {.op = CM_OP_DUMP, .group = group,
			   .consistency = CM_READ_LINEARIZABLE};
	int rv = cm_client__path(prefix, &r.path);
	for (uint64_t off = 0; rv == 0;) {
		struct cm_client__call s = {.copy = take, .out = &ch};
		r.version = ch.id;
		r.from_index = ch.offset = off;
		rv = cm_client__run(c, server, &r, &s);
		if (rv == 0 && ch.err != 0)
			rv = ch.err;
		if (rv != 0)
			break;
		uint64_t got = s.answered ? ch.total : 0;
		off += CM_DUMP_CHUNK;
		if (off >= got)
			break;
	}
	if (rv == 0 && index)
		*index = ch.index;
	return rv;
}
