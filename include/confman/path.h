/* path.h: what a valid Confman path is. */
#ifndef CONFMAN_PATH_H
#define CONFMAN_PATH_H

#include <stdint.h>

/*
 * cm_path_validate - check an absolute path: starts with '/', no empty
 * component ("//"), no "." or "..", no trailing '/' (except "/" itself), no
 * NUL byte, each component at most CM_NAME_MAX bytes, the whole at most
 * CM_PATH_MAX. Returns 0, -EINVAL, -ENAMETOOLONG.
 */
int cm_path_validate(const char *p, uint32_t len);

/* cm_path_depth - number of components ("/" is 0, "/a/b" is 2) of a valid path. */
uint32_t cm_path_depth(const char *p, uint32_t len);

/* cm_path_parent_len - length of the parent of a valid path other than "/"
 * ("/a/b" -> 2 for "/a"; "/a" -> 1 for "/"). */
uint32_t cm_path_parent_len(const char *p, uint32_t len);

/* cm_path_is_under - whether path equals prefix or lies below it ("/" is above all). */
int cm_path_is_under(const char *path, uint32_t len, const char *prefix, uint32_t plen);

#endif /* CONFMAN_PATH_H */
