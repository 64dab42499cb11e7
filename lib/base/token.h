/*
 * token.h: stateless, expiring, read-only stream tokens. A token names one run and an expiry
 * and is an HMAC-SHA256 under a server key, so nothing per token is stored and a token for
 * one run can never open another run's stream.
 */
#ifndef RUNSD_TOKEN_H
#define RUNSD_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RD_TOKEN_KEY_LEN 32

/** Writes "<exp_seconds>.<base64url(HMAC(key, run_id "." exp_seconds))>" into out (>= 80 bytes).
 * Returns 0 or -1. */
int rd_stream_token_make(const unsigned char *key, const char *run_id, int64_t exp_ms, char *out,
                         size_t outlen);
/** True when token is a valid, unexpired token for run_id under key (constant-time compare). */
bool rd_stream_token_check(const unsigned char *key, const char *run_id, const char *token,
                           int64_t now_ms);

/*
 * Link tokens for people (approve / deny links and OAuth state). A token is
 * "<run_id>.<kind><nonce>.<mac>" where mac = base64url(HMAC-SHA256(key, run_id|kind|nonce))
 * cut to 22 chars (132 bits). The store keeps only the nonce of a pending request, so a
 * copy of the database alone cannot mint or recover a token; the key lives outside it.
 * kind is 'a' (approve), 'd' (deny) or 's' (OAuth state).
 */
#define RD_LINK_TOKEN_MAX 160
int rd_link_token_make(const unsigned char *key, const char *run_id, char kind, const char *nonce,
                       char *out, size_t outlen);
/** Splits and verifies a link token. On success fills run_id, *kind and nonce and returns 0;
 * -1 for malformed or forged tokens (constant-time MAC comparison). */
int rd_link_token_parse(const unsigned char *key, const char *token, char *run_id,
                        size_t run_id_len, char *kind, char *nonce, size_t nonce_len);
#endif
