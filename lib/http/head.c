/*
 * head.c: the check of a request head (see head.h). Strict where RFC 9112 lets a server
 * choose (one space between the parts of the request line, no whitespace before a header's
 * colon, no obs-fold), because each leniency is a way for two parsers on the path to read
 * one request differently.
 */
#include "http/head.h"

#include <string.h>
#include <strings.h>

static int refuse(rd_head *h, int status, const char *code, const char *message)
{
    h->status = status;
    h->code = code;
    h->message = message;
    return status;
}

/* RFC 9110 5.6.2 tchar */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return n > 0;
}

/* The methods the route table serves; any other token is 501 (RFC 9110 9.1). */
static bool served_method(const char *m, size_t n)
{
    static const char *const served[] = {"GET",   "HEAD",   "POST",   "PUT",
                                         "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof served / sizeof served[0]; i++)
        if (strlen(served[i]) == n && memcmp(served[i], m, n) == 0)
            return true;
    return false;
}

/* The request line: method SP request-target SP HTTP-version. */
static int check_request_line(const char *p, size_t n, rd_head *h, bool *v11)
{
    const char *sp1 = memchr(p, ' ', n);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - p)) : NULL;
    if (!sp1 || !sp2 || memchr(sp2 + 1, ' ', n - (size_t)(sp2 + 1 - p)))
        return refuse(h, 400, "bad_request", "the request line is malformed");
    const char *target = sp1 + 1, *ver = sp2 + 1;
    size_t mlen = (size_t)(sp1 - p), tlen = (size_t)(sp2 - target), vlen = n - (size_t)(ver - p);
    if (!is_token(p, mlen))
        return refuse(h, 400, "bad_request", "the request method is malformed");
    if (vlen != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[5] < '0' || ver[5] > '9' ||
        ver[6] != '.' || ver[7] < '0' || ver[7] > '9')
        return refuse(h, 400, "bad_request", "the HTTP version is malformed");
    if (ver[5] != '1' || (ver[7] != '0' && ver[7] != '1'))
        return refuse(h, 505, "http_version_not_supported",
                      "only HTTP/1.0 and HTTP/1.1 are served");
    *v11 = ver[7] == '1';
    if (!served_method(p, mlen))
        return refuse(h, 501, "not_implemented", "the request method is not implemented");
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)target[i] <= 0x20 || (unsigned char)target[i] >= 0x7f)
            return refuse(h, 400, "invalid_path", "the request target has invalid characters");
    bool star = tlen == 1 && target[0] == '*' && mlen == 7;
    if (tlen == 0 || (target[0] != '/' && !star && strncasecmp(target, "http://", 7) != 0 &&
                      strncasecmp(target, "https://", 8) != 0))
        return refuse(h, 400, "invalid_path", "the request target is malformed");
    return 0;
}

/* A header value without its surrounding whitespace. */
static void trim(const char **v, size_t *n)
{
    while (*n && (**v == ' ' || **v == '\t'))
        (*v)++, (*n)--;
    while (*n && ((*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t'))
        (*n)--;
}

static int content_length(const char *v, size_t n, rd_head *h)
{
    int64_t cl = 0;
    if (n == 0 || n > 18)
        return refuse(h, 400, "invalid_content_length", "Content-Length must be a decimal size");
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return refuse(h, 400, "invalid_content_length",
                          "Content-Length must be a decimal size");
        cl = cl * 10 + (v[i] - '0');
    }
    if (h->content_length >= 0 && h->content_length != cl)
        return refuse(h, 400, "invalid_content_length", "conflicting Content-Length headers");
    h->content_length = cl;
    return 0;
}

/* One header line (without its CRLF) at offset off of the head. */
static int check_field(const char *line, size_t n, size_t off, rd_head *h, int *hosts)
{
    if (n > RD_HEAD_LINE_MAX)
        return refuse(h, 431, "headers_too_large", "a request header line is too long");
    const char *colon = memchr(line, ':', n);
    if (!colon || !is_token(line, (size_t)(colon - line)))
        return refuse(h, 400, "bad_request", "a request header is malformed");
    size_t klen = (size_t)(colon - line), vlen = n - klen - 1;
    const char *v = colon + 1;
    for (size_t i = 0; i < vlen; i++)
        if (((unsigned char)v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return refuse(h, 400, "bad_request", "a request header value has control characters");
    trim(&v, &vlen);
    if (klen == 4 && strncasecmp(line, "host", 4) == 0 && ++*hosts > 1)
        return refuse(h, 400, "invalid_host", "more than one Host header");
    if (klen == 14 && strncasecmp(line, "content-length", 14) == 0)
        return content_length(v, vlen, h);
    if (klen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
        if (h->chunked || vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
            return refuse(h, 501, "unsupported_transfer_encoding",
                          "only Transfer-Encoding: chunked is supported");
        h->chunked = true;
        h->te_off = off;
        h->te_len = n + 2;
    }
    return 0;
}

int rd_head_parse(const char *head, size_t len, size_t max_line, size_t max_headers, rd_head *out)
{
    memset(out, 0, sizeof *out);
    out->content_length = -1;
    const char *end = head + len, *p = head, *crlf;
    int hosts = 0;
    bool v11 = false;
    size_t total = 0;
    crlf = memmem(p, len, "\r\n", 2);
    if (!crlf || (size_t)(crlf - p) > max_line)
        return refuse(out, 414, "uri_too_long", "the request line is too long");
    if (check_request_line(p, (size_t)(crlf - p), out, &v11) != 0)
        return out->status;
    for (p = crlf + 2; p < end && !(p[0] == '\r' && p + 1 < end && p[1] == '\n'); p = crlf + 2) {
        crlf = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!crlf)
            return refuse(out, 400, "bad_request", "the request head is malformed");
        total += (size_t)(crlf - p) + 2;
        if (total > max_headers)
            return refuse(out, 431, "headers_too_large", "the request headers are too large");
        if (check_field(p, (size_t)(crlf - p), (size_t)(p - head), out, &hosts) != 0)
            return out->status;
    }
    if (v11 && hosts == 0)
        return refuse(out, 400, "missing_host", "HTTP/1.1 requests need a Host header");
    if (out->chunked && (out->content_length >= 0 || !v11))
        return refuse(out, 400, "bad_request",
                      "Transfer-Encoding with Content-Length, or in HTTP/1.0");
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int rd_head_chunk_size(const char *line, size_t len, uint64_t *size)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && hexval(line[i]) >= 0; i++) {
        if (i >= 15)
            return -1; /* over 2^60: no body is that large */
        v = v * 16 + (uint64_t)hexval(line[i]);
    }
    if (i == 0)
        return -1;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i < len && line[i] != ';')
        return -1;
    for (; i < len; i++) /* the extensions are ignored, but must be printable */
        if (((unsigned char)line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f)
            return -1;
    *size = v;
    return 0;
}

const char *rd_head_reason(int status)
{
    /* RFC 9110 section 15: every status the daemon sends, and their neighbours. */
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {300, "Multiple Choices"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {406, "Not Acceptable"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {422, "Unprocessable Content"},
        {426, "Upgrade Required"},
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "Error";
}
