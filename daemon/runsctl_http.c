/*
 * runsctl_http.c: runsctl's plain HTTP calls over one libcurl easy handle (so consecutive
 * calls reuse the connection), and how an error answer becomes a message and an exit code.
 * Error bodies are the contract's {"error":{"code","message","request_id"}}; anything else is
 * shown as the status line alone.
 */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "runsctl.h"

typedef struct rc_buf {
    char *p;
    size_t n, cap;
} rc_buf;

/* Bounded: a reply bigger than this is not one the API sends (pages are at most 100 runs). */
#define RC_MAX_REPLY (256u << 20)

static size_t http_on_write(char *d, size_t sz, size_t nm, void *arg)
{
    rc_buf *b = arg;
    size_t n = sz * nm;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = cap <= RC_MAX_REPLY ? realloc(b->p, cap) : NULL;
        if (!p)
            return 0; /* libcurl aborts the transfer: CURLE_WRITE_ERROR */
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

int rc_http_init(rc_http *h, const char *url, const char *key)
{
    memset(h, 0, sizeof *h);
    h->url = url;
    if (strncmp(url, "unix:", 5) == 0 && url[5] == '/') {
        h->unix_path = strdup(url + 5);
        h->base = strdup("http://localhost");
    } else if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
        const char *host = strstr(url, "://") + 3;
        if (!*host || *host == '/' || strpbrk(url, " \t\r\n?#")) {
            fprintf(stderr, "runsctl: bad server URL '%s'\n", url);
            return RC_USAGE;
        }
        h->base = strdup(url);
        size_t n = strlen(h->base);
        while (n > 0 && h->base[n - 1] == '/')
            h->base[--n] = 0;
    } else {
        fprintf(stderr,
                "runsctl: bad server URL '%s': use http://HOST:PORT, https://HOST:PORT "
                "or unix:/PATH\n",
                url);
        return RC_USAGE;
    }
    if (key && strpbrk(key, "\r\n")) {
        fprintf(stderr, "runsctl: the API key holds a line break\n");
        rc_http_dispose(h);
        return RC_USAGE;
    }
    if (key && asprintf(&h->auth, "Authorization: Bearer %s", key) < 0)
        h->auth = NULL;
    h->curl = curl_easy_init();
    if (!h->base || !h->curl || (key && !h->auth)) {
        fprintf(stderr, "runsctl: out of memory\n");
        rc_http_dispose(h);
        return RC_ERR;
    }
    return 0;
}

void rc_http_dispose(rc_http *h)
{
    if (h->curl)
        curl_easy_cleanup(h->curl);
    free(h->base);
    free(h->unix_path);
    if (h->auth) /* the key should not linger in memory longer than needed */
        explicit_bzero(h->auth, strlen(h->auth));
    free(h->auth);
    memset(h, 0, sizeof *h);
}

char *rc_esc(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *out = e ? strdup(e) : NULL;
    curl_free(e);
    if (!out) {
        fprintf(stderr, "runsctl: out of memory\n");
        exit(RC_ERR);
    }
    return out;
}

int rc_exit_for_http(long status)
{
    if (status == 401 || status == 403)
        return RC_AUTH;
    if (status == 404)
        return RC_NOTFOUND;
    if (status == 409 || status == 410)
        return RC_CONFLICT;
    return RC_HTTP;
}

void rc_print_http_error(const char *what, long status, const char *body, size_t n)
{
    json_t *j = body && n ? json_loadb(body, n, 0, NULL) : NULL;
    json_t *e = json_object_get(j, "error");
    const char *code = rc_str(e, "code"), *msg = rc_str(e, "message");
    const char *rid = rc_str(e, "request_id");
    if (*code)
        fprintf(stderr, "runsctl: %s: %ld %s: %s%s%s%s\n", what, status, code, msg,
                *rid ? " (request " : "", rid, *rid ? ")" : "");
    else
        fprintf(stderr, "runsctl: %s: HTTP %ld\n", what, status);
    if (status == 401)
        fprintf(stderr, "runsctl: give an API key with -k KEY or RUNSD_KEY\n");
    json_decref(j);
}

/* The request's options on the (reset) easy handle; hdrs is freed by the caller. */
static void http_setup(rc_http *h, const char *method, const char *url, const char *body,
                       struct curl_slist *hdrs, long wait_s, rc_buf *b)
{
    CURL *c = h->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (h->unix_path)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, h->unix_path);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, wait_s + 60L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "runsctl/" RUNSD_VERSION);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
}

/* The answer of a finished transfer: 0 with *out, or the exit code after a message. */
static int http_answer(rc_http *h, const char *what, rc_buf *b, json_t **out)
{
    long status = 0;
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        rc_print_http_error(what, status, b->p, b->n);
        return rc_exit_for_http(status);
    }
    if (!out)
        return 0;
    *out = NULL;
    if (b->n == 0)
        return 0;
    json_error_t err;
    *out = json_loadb(b->p, b->n, 0, &err);
    if (!*out) {
        fprintf(stderr, "runsctl: %s: the answer is not JSON: %s\n", what, err.text);
        return RC_ERR;
    }
    return 0;
}

int rc_call(rc_http *h, const char *method, const char *path, json_t *body, const char *header,
            long wait_s, json_t **out)
{
    char *url = NULL, *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    char what[300];
    snprintf(what, sizeof what, "%s %s", method, path);
    if (asprintf(&url, "%s%s", h->base, path) < 0 || (body && !text)) {
        free(text);
        fprintf(stderr, "runsctl: out of memory\n");
        return RC_ERR;
    }
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (h->auth)
        hdrs = curl_slist_append(hdrs, h->auth);
    if (header)
        hdrs = curl_slist_append(hdrs, header);
    char errbuf[CURL_ERROR_SIZE] = "";
    rc_buf b = {0};
    http_setup(h, method, url, body ? text : NULL, hdrs, wait_s, &b);
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cc = curl_easy_perform(h->curl);
    int rc;
    if (cc != CURLE_OK) {
        fprintf(stderr, "runsctl: cannot reach %s: %s\n", h->url,
                *errbuf ? errbuf : curl_easy_strerror(cc));
        rc = cc == CURLE_WRITE_ERROR ? RC_ERR : RC_CONNECT;
    } else {
        rc = http_answer(h, what, &b, out);
    }
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    free(b.p);
    free(text);
    free(url);
    return rc;
}
