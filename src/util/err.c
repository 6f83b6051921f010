#include "ilion/util/err.h"

#include <string.h>

const char *ilion_strerror(int err) {
    static const char *const msgs[] = {
#define ILION_ERR_MSG(name, msg) msg,
        ILION_ERRORS(ILION_ERR_MSG)
#undef ILION_ERR_MSG
    };
    if (err == 0) return "success";
    if (err > ILION_E_BASE && err < ILION_E_LAST) return msgs[err - ILION_E_BASE - 1];
    if (err < 0 && err > -4096) return strerror(-err);
    return "unknown error";
}
