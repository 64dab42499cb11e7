/*
 * webhook_sign.h: Standard Webhooks signatures (https://www.standardwebhooks.com): the
 * `webhook-signature` header is "v1,<base64 HMAC-SHA256(key, id "." timestamp "." body)>",
 * one such entry per secret, separated by spaces, where the key is the base64-decoded part
 * of a "whsec_<base64>" secret. Stands alone (OpenSSL and libc only), so a receiver or a test
 * can reuse it without the daemon.
 */
#ifndef RUNSD_WEBHOOK_SIGN_H
#define RUNSD_WEBHOOK_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Bytes of one "v1,<base64>" entry plus its NUL: 3 + 44 + 1. */
#define RD_WHSIG_ENTRY 48
/** Bounds on a secret's decoded key, as Standard Webhooks libraries generate them. */
#define RD_WHSIG_KEY_MIN 24
#define RD_WHSIG_KEY_MAX 64

/** Decodes the key of secret ("whsec_<base64>"; a bare base64 string is accepted too, as the
 * reference libraries do). Returns the key length, or -1 when it is not base64 or decodes to
 * more than cap bytes. */
int rd_whsig_key(const char *secret, unsigned char *key, size_t cap);

/** True when secret is "whsec_" followed by base64 of RD_WHSIG_KEY_MIN..MAX bytes. */
bool rd_whsig_secret_valid(const char *secret);

/** Writes one "v1,<base64>" entry for (msg_id, ts, body) signed with secret into out
 * (at least RD_WHSIG_ENTRY bytes). ts is Unix seconds. 0, or -1 on a bad secret. */
int rd_whsig_sign(const char *secret, const char *msg_id, int64_t ts, const void *body, size_t len,
                  char *out, size_t outlen);

/** The whole header value for n secrets: their entries separated by one space, in order.
 * out needs n * RD_WHSIG_ENTRY bytes. Returns the length written, or -1 when a secret is bad
 * or out is too small (out is then ""). */
int rd_whsig_header(const char *const *secrets, int n, const char *msg_id, int64_t ts,
                    const void *body, size_t len, char *out, size_t outlen);

/** Receiver side: true when some "v1,..." entry of header matches secret (constant-time
 * comparison per entry). Timestamp tolerance is the caller's business. */
bool rd_whsig_verify(const char *secret, const char *header, const char *msg_id, int64_t ts,
                     const void *body, size_t len);

#endif
