/*
 * prompt.c: the pending action of a question to a person (SPEC sections 1-3, the
 * ToolRegistry half of the seeds). approval_required gets approve/deny links, auth_required
 * the provider's URL whose {state} becomes a one-time state token. The stored action holds
 * only placeholders ("rdlink:<kind>:<nonce>") and a nonce: links are derived from the link
 * key when shown (run/links.c), so the database never holds a usable token.
 */
#include "exec/exec_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static int new_nonce(char *out, size_t outlen)
{
    unsigned char raw[9];
    if (outlen < 13 || rd_random_bytes(raw, sizeof raw) != 0)
        return -1;
    rd_b64url_encode(raw, sizeof raw, out);
    return 0;
}

static json_t *approval_action(const rd_msg *m, const char *nonce, int64_t exp)
{
    char a[64], d[64], when[40];
    snprintf(a, sizeof a, "rdlink:a:%s", nonce);
    snprintf(d, sizeof d, "rdlink:d:%s", nonce);
    rd_rfc3339(exp, when, sizeof when);
    return json_pack("{s:s, s:s, s:O, s:s, s:s, s:s, s:s, s:I}", "type", "approval", "prompt",
                     m->message, "details", m->details ? m->details : json_null(), "approve_url", a,
                     "deny_url", d, "expires_at", when, "_nonce", nonce, "_expires_ms",
                     (json_int_t)exp);
}

/* {state} in the provider URL becomes the state placeholder. malloc'd or NULL. */
static char *with_state(const char *u, const char *ph)
{
    size_t n_state = 0;
    for (const char *p = strstr(u, "{state}"); p; p = strstr(p + 7, "{state}"))
        n_state++;
    char *url = malloc(strlen(u) + n_state * strlen(ph) + 1);
    if (!url)
        return NULL;
    char *o = url;
    for (const char *p = u; *p;) {
        if (strncmp(p, "{state}", 7) == 0) {
            o = stpcpy(o, ph);
            p += 7;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return url;
}

static json_t *auth_action(const rd_msg *m, const char *nonce, int64_t exp)
{
    char ph[64], when[40];
    snprintf(ph, sizeof ph, "rdlink:s:%s", nonce);
    char *url = with_state(m->url, ph);
    if (!url)
        return NULL;
    rd_rfc3339(exp, when, sizeof when);
    json_t *pa = json_pack("{s:s, s:o, s:s, s:s, s:s, s:I}", "type", "auth", "provider",
                           m->provider ? json_string(m->provider) : json_null(), "auth_url", url,
                           "expires_at", when, "_nonce", nonce, "_expires_ms", (json_int_t)exp);
    free(url);
    return pa;
}

json_t *rd_prompt_action(const rd_msg *m, int64_t expires_ms)
{
    char nonce[16];
    if (new_nonce(nonce, sizeof nonce) != 0)
        return NULL;
    return m->type == RD_MSG_APPROVAL_REQUIRED ? approval_action(m, nonce, expires_ms)
                                               : auth_action(m, nonce, expires_ms);
}

int64_t rd_prompt_ttl(const rd_flow_config *flow, bool approval)
{
    if (approval)
        return flow ? flow->approval_timeout_ms : 86400000;
    return flow ? flow->auth_timeout_ms : 3600000;
}
