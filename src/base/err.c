/* err.c - see err.h: one-line error messages carried out of library code. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ms_errf(ms_err *err, int code, const char *fmt, ...)
{
    if (code < 0) code = -code;
    if (code == 0) code = EINVAL;
    if (err && err->code == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return -code;
}

void ms_err_prefix(ms_err *err, const char *fmt, ...)
{
    if (!err) return;
    char pre[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t pl = strlen(pre);
    if (pl >= sizeof err->msg) pl = sizeof err->msg - 1;
    memcpy(err->msg, pre, pl);
    size_t ol = strnlen(old, sizeof old - 1);
    if (pl + ol >= sizeof err->msg) ol = sizeof err->msg - 1 - pl;
    memcpy(err->msg + pl, old, ol);
    err->msg[pl + ol] = 0;
}

void ms_err_clear(ms_err *err)
{
    if (!err) return;
    err->code = 0;
    err->msg[0] = 0;
}
