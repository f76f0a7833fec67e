/* cache.h: confman-fs's persistent cache (fs/cache.c: the LMDB store;
 * fs/offline.c: write-through, offline mode, prefetch). Loop thread only. */
#ifndef CONFMAN_FS_CACHE_H
#define CONFMAN_FS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confman/proto.h"

#define CM_FS_CACHE_DIR "/var/cache/confman-fs"
#define CM_FS_CACHE_SIZE (64ull << 20)      /* cache_size= default: the LMDB map */
#define CM_FS_CACHE_SIZE_MIN (1ull << 20)
#define CM_FS_OFFLINE_AFTER_MS 300          /* offline_after= default */
#define CM_FS_PREFETCH_MAX 10000            /* prefetch= default: nodes walked at most */
#define CM_FS_PREFETCH_INFLIGHT 4           /* prefetch requests out at once */
#define CM_FS_CACHE_LIST_MAX 65536          /* children served from one cached listing */

struct cm_fs_cache;

/* One cached node, as served offline (malloc'd by get; free with free()). */
struct cm_fs_cache_ent {
	struct cm_attr attr;
	bool has_attr, has_value, listed; /* listed: the children are all known */
	uint32_t vlen;
	char value[]; /* vlen bytes */
};

/* Open (creating) the environment of the mount identity servers+prefix+who
 * under dir, mapping at most max_bytes. who is the certificate's identity
 * (user and groups, "" for none): a mount may serve offline only what its
 * own identity was allowed to read, so mounts of other identities never
 * share an environment. Never fails the mount: any error is logged and
 * returned, and the caller runs without a cache. */
int cm_fs_cache_open(const char *dir, const char *servers, const char *prefix,
		     const char *who, uint64_t max_bytes, struct cm_fs_cache **out);
void cm_fs_cache_close(struct cm_fs_cache *c);
/* Open and not turned off by a failed write (full disk, I/O error). */
bool cm_fs_cache_usable(const struct cm_fs_cache *c);
/* Flush to disk (the environment is written MDB_NOSYNC; a timer calls it). */
void cm_fs_cache_sync(struct cm_fs_cache *c);

/* Write-through. value NULL: not known (a cached value of another mod
 * index is dropped). listed: path is a directory known to be empty. */
void cm_fs_cache_note(struct cm_fs_cache *c, const char *path, const struct cm_attr *attr,
		      const struct cm_bytes *value, bool listed);
/* The complete listing of dir: children not in it are forgotten. */
void cm_fs_cache_note_list(struct cm_fs_cache *c, const char *dir, const struct cm_dirent *ents,
			   uint32_t n);
/* path and everything below it are gone / moved to to. */
void cm_fs_cache_note_gone(struct cm_fs_cache *c, const char *path);
void cm_fs_cache_note_move(struct cm_fs_cache *c, const char *from, const char *to);
/* Does path's cached record lack the value of attr (prefetch)? */
bool cm_fs_cache_wants_value(struct cm_fs_cache *c, const char *path, const struct cm_attr *attr);

/* Reads: 0 and *out (caller frees), -ENOENT when the cache proves absence
 * (the parent's listing is known and lacks it), -EIO when it does not know. */
int cm_fs_cache_get(struct cm_fs_cache *c, const char *path, struct cm_fs_cache_ent **out);
/* The children of a directory whose listing is known: *ents (names point
 * into *names; free both). -EIO when the listing is not known. */
int cm_fs_cache_list(struct cm_fs_cache *c, const char *dir, struct cm_dirent **ents,
		     uint32_t *n, char **names);

/* Wall-clock ms of the last moment the cache was known current. */
int64_t cm_fs_cache_synced(struct cm_fs_cache *c);
void cm_fs_cache_set_synced(struct cm_fs_cache *c, int64_t wall_ms);
/* A small record of the mount's own (name without '/'): 0 and *len bytes
 * copied into buf (at most cap), or -ENOENT. */
int cm_fs_cache_meta_get(struct cm_fs_cache *c, const char *name, void *buf, size_t cap,
			 size_t *len);
void cm_fs_cache_meta_set(struct cm_fs_cache *c, const char *name, const void *buf, size_t len);
/* Bytes in use, entries, the environment's directory. */
void cm_fs_cache_stats(struct cm_fs_cache *c, uint64_t *bytes, uint64_t *entries,
		       const char **dir);

#endif /* CONFMAN_FS_CACHE_H */
