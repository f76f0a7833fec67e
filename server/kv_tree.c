/* kv_tree.c: walks over a whole subtree: recursive delete, and the checks of a move (lengths, boundaries, tops). */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "server/kv.h"
#include "server/kv_int.h"

/* A growable stack of u64, for walking subtrees without recursion. */
struct stack {
	uint64_t *v;
	size_t n, cap;
};

static int push(struct stack *s, uint64_t x)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 32;
		uint64_t *nv = realloc(s->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		s->v = nv;
		s->cap = ncap;
	}
	s->v[s->n++] = x;
	return 0;
}

int cm_kv__tree_take(const struct cm_kv__ctx *c, uint64_t ino, cm_kv__take_fn take, void *arg)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(c->txn, c->kv, &cur);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	struct stack st = {0};
	rc = push(&st, ino);
	while (rc == 0 && st.n != 0) {
		uint64_t dir = st.v[--st.n];
		MDB_val k, v;
		/* Each record taken shrinks the tree, so even a corrupt tree whose
		 * inos form a cycle cannot keep this loop going. */
		while ((rc = cm_kv__child_first(c, cur, dir, &k, &v)) == 0) {
			struct cm_bytes name;
			struct cm_kv__node n;
			rc = cm_kv__child_dec(&k, &v, &name, &n);
			if (rc == 0 && S_ISDIR(n.attr.mode))
				rc = push(&st, n.ino);
			if (rc == 0)
				rc = take(arg, cur, &k, &v);
			if (rc != 0)
				break;
		}
		if (rc == -ENOENT)
			rc = 0;
	}
	free(st.v);
	mdb_cursor_close(cur);
	return rc;
}

static int take_delete(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
	(void)arg;
	(void)k;
	(void)v;
	return cm_store_mdb_err(mdb_cursor_del(cur, 0));
}

int cm_kv__tree_delete(const struct cm_kv__ctx *c, uint64_t ino)
{
	return cm_kv__tree_take(c, ino, take_delete, NULL);
}

/* Called for each node below the walked directory, with the length of its path relative to it. */
typedef int (*tree_visit_fn)(void *arg, const struct cm_kv__node *n, uint64_t rel);

/*
 * Visit every node below directory ino, depth first; visit's nonzero value
 * stops the walk and is returned. In a valid tree no relative path is longer
 * than CM_PATH_MAX: a longer one means a corrupt tree whose inos form a
 * cycle, and ends the walk with -EIO.
 */
static int tree_each(const struct cm_kv__ctx *c, uint64_t ino, tree_visit_fn visit, void *arg)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(c->txn, c->kv, &cur);
	if (rc != 0)
		return cm_store_mdb_err(rc);
	struct stack st = {0}; /* pairs: ino, length of its path relative to the top */
	rc = push(&st, ino);
	rc = rc ? rc : push(&st, 0);
	while (rc == 0 && st.n != 0) {
		uint64_t rel = st.v[--st.n], dir = st.v[--st.n];
		MDB_val k, v;
		for (rc = cm_kv__child_first(c, cur, dir, &k, &v); rc == 0;
		     rc = cm_kv__child_next(c, cur, dir, &k, &v)) {
			struct cm_bytes name;
			struct cm_kv__node n;
			rc = cm_kv__child_dec(&k, &v, &name, &n);
			if (rc != 0)
				break;
			uint64_t crel = rel + 1 + name.len;
			rc = visit(arg, &n, crel);
			if (rc == 0 && crel > CM_PATH_MAX)
				rc = -EIO;
			if (rc == 0 && S_ISDIR(n.attr.mode)) {
				rc = push(&st, n.ino);
				rc = rc ? rc : push(&st, crel);
			}
			if (rc != 0)
				break;
		}
		if (rc == -ENOENT)
			rc = 0;
	}
	free(st.v);
	mdb_cursor_close(cur);
	return rc;
}

static int fits_visit(void *arg, const struct cm_kv__node *n, uint64_t rel)
{
	const uint32_t *newlen = arg;
	(void)n;
	return *newlen + rel > CM_PATH_MAX ? -ENAMETOOLONG : 0;
}

int cm_kv__tree_fits(const struct cm_kv__ctx *c, uint64_t ino, uint32_t oldlen, uint32_t newlen)
{
	if (newlen <= oldlen)
		return 0;
	return tree_each(c, ino, fits_visit, &newlen);
}

static int busy_visit(void *arg, const struct cm_kv__node *n, uint64_t rel)
{
	(void)arg;
	(void)rel;
	return n->flags & (CM_KV_NODE_BOUNDARY | CM_KV_NODE_TOP) ? -EBUSY : 0;
}

int cm_kv__tree_busy(const struct cm_kv__ctx *c, uint64_t ino)
{
	return tree_each(c, ino, busy_visit, NULL);
}
