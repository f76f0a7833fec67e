/* error.c: messages and names for Confman's error codes and errno. */
#include <errno.h>
#include <string.h>

#include "confman/error.h"

const char *cm_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
#define CM__ERR_MSG(name, value, msg)                                          \
	case value:                                                            \
		return msg;
		CM_ERROR_MAP(CM__ERR_MSG)
#undef CM__ERR_MSG
	default:
		break;
	}
	if (code < 0 && code > -4096)
		return strerror(-code);
	return "unknown error";
}

const char *cm_errname(int code)
{
	switch (code) {
	case 0:
		return "OK";
#define CM__ERR_NAME(name, value, msg)                                         \
	case value:                                                            \
		return #name;
		CM_ERROR_MAP(CM__ERR_NAME)
#undef CM__ERR_NAME
	default:
		break;
	}
	if (code < 0 && code > -4096) {
		const char *n = strerrorname_np(-code);
		return n ? n : "EUNKNOWN";
	}
	return "EUNKNOWN";
}
