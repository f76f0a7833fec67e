/* recover.c: --force-new-cluster: this node becomes the only voter of every
 * group it holds, keeping its data up to each group's commit index.
 *
 * Raft cannot do this safely: a group that lost a majority of its voters
 * for good commits nothing ever again, whatever the survivors hold. The
 * operator accepts the loss of what the survivor had not seen committed
 * (uncommitted entries are discarded, as etcd's --force-new-cluster does;
 * hashicorp/raft's recovery instead commits them implicitly) and the risk
 * that the "dead" nodes come back (they must not: their data is wiped or
 * they are removed from the table before anything else runs).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "confman/proto.h"
#include "server/byteorder.h"
#include "server/log.h"
#include "server/recover.h"

/* The last index and term of group's log; 0, 0 when it has none. */
static int log_last(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t *index,
		    raft_term *term)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, cm_store_dbs(s)->log, &cur);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	uint8_t kb[16];
	cm_bo_put_be64(kb, group + 1);
	cm_bo_put_be64(kb + 8, 0);
	MDB_val k = {sizeof(kb), kb}, v;
	/* The first key of the next group, then one back; past the end: the last. */
	rc = group == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	if (rc == 0)
		rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
	else if (rc == MDB_NOTFOUND)
		rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	*index = 0;
	*term = 0;
	if (rc == 0 && k.mv_size == 16 && cm_bo_get_be64(k.mv_data) == group)
		*index = cm_bo_get_be64((const uint8_t *)k.mv_data + 8);
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return cm_store_mdb_err(rc);
	if (*index == 0)
		return 0;
	struct raft_entry e;
	rc = cm_store_log_get(s, txn, group, *index, &e);
	if (rc == 0)
		*term = e.term;
	return rc;
}

/* The configuration in effect at the commit index: the latest CONF entry
 * at or below it, else the snapshot's. */
static int conf_at(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t commit,
		   const struct raft_snap_meta *snap, struct raft_conf *conf)
{
	*conf = snap->conf;
	for (uint64_t i = commit; i > snap->index; i--) {
		struct raft_entry e;
		int rc = cm_store_log_get(s, txn, group, i, &e);
		if (rc != 0)
			return rc == -ENOENT ? -EIO : rc; /* a hole below the commit index */
		if (e.type == RAFT_ENTRY_CONF)
			return raft_conf_decode(e.data, e.len, conf) == 0 ? 0 : -EIO;
	}
	return 0;
}

static void conf_text(const struct raft_conf *c, char *buf, size_t cap)
{
	size_t len = 0;
	buf[0] = '\0';
	for (uint32_t k = 0; k < c->n && len < cap; k++)
		len += (size_t)snprintf(buf + len, cap - len, "%s%" PRIu64 "%s", k ? "," : "",
					c->ids[k], c->kinds[k] == RAFT_LEARNER ? "(learner)" : "");
	if (c->n == 0)
		snprintf(buf, cap, "none");
}

/* What one group holds, read before anything is written. */
struct rec_state {
	struct raft_hard_state hs;
	uint64_t applied;
	struct raft_snap_meta snap;
	uint64_t last;
	raft_term last_term;
};

/* Read group's state. 1: something to recover; 0: nothing here (a
 * tombstone, or a replica that never got its first snapshot); -errno. */
static int group_read(struct cm_store *s, MDB_txn *txn, uint64_t group, struct rec_state *st)
{
	int rv = cm_store_hs_get(s, txn, group, &st->hs);
	if (rv != 0)
		return rv == -ENOENT ? 0 : rv;
	rv = cm_store_meta_get(s, txn, group, &st->applied, &st->snap);
	if (rv != 0 && rv != -ENOENT)
		return rv;
	rv = log_last(s, txn, group, &st->last, &st->last_term);
	if (rv != 0)
		return rv;
	if (st->snap.index == 0 && st->last == 0)
		return 0;
	uint64_t top = st->last > st->snap.index ? st->last : st->snap.index;
	if (st->hs.commit < st->snap.index || st->hs.commit > top || st->applied > st->hs.commit) {
		cm_log_error("group %" PRIu64 ": inconsistent state (commit %" PRIu64
			     ", snapshot %" PRIu64 ", applied %" PRIu64 ", last entry %" PRIu64
			     "): not recovered",
			     group, st->hs.commit, st->snap.index, st->applied, st->last);
		return -EIO;
	}
	return 1;
}

/* Rewrite one group in txn (see recover.h) and say so, loudly. */
static int group_force(struct cm_store *s, MDB_txn *txn, uint64_t group, uint64_t self,
		       const struct rec_state *st)
{
	struct raft_conf old, alone = {.n = 1, .ids = {self}, .kinds = {RAFT_VOTER}};
	int rv = conf_at(s, txn, group, st->hs.commit, &st->snap, &old);
	if (rv != 0)
		return rv;
	uint8_t buf[RAFT_CONF_MAX_BYTES];
	struct raft_entry e = {
		.term = st->hs.term > st->last_term ? st->hs.term : st->last_term,
		.index = st->hs.commit + 1,
		.type = RAFT_ENTRY_CONF,
		.len = raft_conf_encode(&alone, buf),
		.data = buf,
	};
	struct raft_hard_state hs = {.term = e.term, .vote = 0, .commit = st->hs.commit};
	if (e.term == 0)
		e.term = hs.term = 1; /* a founder that never ran: its boot entry is term 1 */
	/* cm_store_log_append deletes every entry >= e.index first. */
	rv = cm_store_log_append(s, txn, group, &e, 1);
	if (rv == 0)
		rv = cm_store_hs_put(s, txn, group, &hs);
	if (rv != 0)
		return rv;
	char was[RAFT_MAX_NODES * 32];
	conf_text(&old, was, sizeof(was));
	uint64_t dropped = st->last > st->hs.commit ? st->last - st->hs.commit : 0;
	cm_log_warn("group %" PRIu64 ": FORCED NEW CLUSTER: node %" PRIu64 " is now its only "
		    "voter (its voters were %s); it resumes from index %" PRIu64 " (term %" PRIu64
		    "), the configuration entry is %" PRIu64 "; %" PRIu64 " uncommitted entr%s "
		    "discarded%s",
		    group, self, was, st->hs.commit, e.term, e.index, dropped,
		    dropped == 1 ? "y" : "ies", dropped ? "" : " (none)");
	int kind = raft_conf_kind(&old, self);
	if (kind != RAFT_VOTER)
		cm_log_warn("group %" PRIu64 ": this node was %s of it: its data may be behind "
			    "what the group had committed", group,
			    kind == RAFT_LEARNER ? "only a learner" : "not a member");
	return 0;
}

/* Every group of the store, in txn. *forced counts those rewritten. */
static int force_all(struct cm_store *s, MDB_txn *txn, uint64_t self, uint32_t *forced,
		     bool *meta)
{
	uint64_t *ids = NULL;
	uint32_t n = 0;
	int rv = cm_store_groups(s, txn, &ids, &n);
	for (uint32_t k = 0; rv == 0 && k < n; k++) {
		struct rec_state st = {0};
		rv = group_read(s, txn, ids[k], &st);
		if (rv == 0) {
			cm_log_info("group %" PRIu64 ": no data here (a dropped replica, or one that "
				    "never received its snapshot): left as it is", ids[k]);
			continue;
		}
		if (rv == 1)
			rv = group_force(s, txn, ids[k], self, &st);
		if (rv == 0) {
			++*forced;
			*meta |= ids[k] == CM_META_GROUP;
		}
	}
	free(ids);
	return rv;
}

int cm__recover_force(struct cm_store *s, uint64_t self)
{
	MDB_txn *txn;
	uint32_t forced = 0;
	bool meta = false;
	int rv = cm_store_txn_begin(s, true, &txn);
	if (rv != 0)
		return rv;
	rv = force_all(s, txn, self, &forced, &meta);
	if (rv == 0 && !meta) {
		cm_log_error("--force-new-cluster: this node's store holds no data of the cluster "
			     "(an empty or wiped data directory): nothing to recover from; "
			     "refusing to start (run it on a node that kept its data, or restore "
			     "a backup)");
		rv = -ENOENT;
	}
	if (rv != 0) {
		cm_store_txn_abort(txn);
		return rv;
	}
	rv = cm_store_txn_commit(txn);
	if (rv == 0)
		cm_log_warn("--force-new-cluster: node %" PRIu64 " is the only voter of %u "
			    "group%s now. The registry still lists the lost nodes: add new ones "
			    "(confmanctl node add, confmand --join), move the replicas to them "
			    "(confmanctl shard move meta --replicas ..., shard move PREFIX "
			    "--replicas ...), then remove the lost ones (confmanctl node remove). "
			    "Never start a lost node on its old data again.",
			    self, forced, forced == 1 ? "" : "s");
	return rv;
}
