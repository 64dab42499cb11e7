/*
 * apierr.c: filling an rd_apierr.
 */
#include "base/apierr.h"

#include <stdarg.h>
#include <stdio.h>

int rd_fail(rd_apierr *e, int http, const char *code, const char *fmt, ...)
{
    va_list ap;
    e->http = http;
    e->code = code;
    e->retry_after = 0;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

int rd_fail_store(rd_apierr *e)
{
    rd_fail(e, 503, "store_unavailable", "the store could not commit; try again");
    e->retry_after = 1;
    return -1;
}
