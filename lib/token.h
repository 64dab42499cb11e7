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

#endif
