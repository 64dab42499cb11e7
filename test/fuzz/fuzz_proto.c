/*
 * fuzz_proto.c: libFuzzer target for the worker protocol (lib/exec/proto.c), the first code
 * that sees a worker's stdout. Two halves, both on every input:
 *
 *  - the whole input as one line through rd_proto_parse, with and without an error buffer,
 *    checking the contract of proto.h (a refusal leaves the message zeroed and says why in one
 *    printable line; an accepted message has the fields its type requires);
 *  - the input as a byte stream through rd_linereader_next, fed in chunks with a small line
 *    bound taken from the first byte, every line it returns parsed in turn, checking that a
 *    line is never longer than the bound and never holds a newline, and that the buffer stays
 *    bounded.
 *
 * A broken contract aborts, so libFuzzer reports it like a crash.
 */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_msg(const rd_msg *m)
{
    CHECK(m->root && json_is_object(m->root));
    CHECK(strcmp(rd_msg_type_name(m->type), "(invalid)") != 0);
    switch (m->type) {
    case RD_MSG_STEP:
        CHECK(m->name && m->name[0] && m->state);
        CHECK(!m->has_total || m->total >= 0);
        break;
    case RD_MSG_PROGRESS:
        CHECK(m->done >= 0 && (!m->has_total || m->total >= 0));
        break;
    case RD_MSG_LOG:
        CHECK(m->level && m->message);
        break;
    case RD_MSG_ITEM:
    case RD_MSG_ENRICHMENT:
        CHECK(m->data && json_is_object(m->data));
        CHECK(m->type != RD_MSG_ENRICHMENT || m->seq >= 1);
        break;
    case RD_MSG_ITEM_ERROR:
    case RD_MSG_APPROVAL_REQUIRED:
    case RD_MSG_ERROR:
        CHECK(m->message);
        break;
    case RD_MSG_AUTH_REQUIRED:
        CHECK(m->url && strlen(m->url) <= 4096);
        for (const char *p = m->url; *p; p++)
            CHECK((unsigned char)*p > 0x20 && *p != 0x7f);
        break;
    case RD_MSG_CHECKPOINT:
        CHECK(m->cursor);
        break;
    case RD_MSG_RESULT:
        CHECK(m->data);
        break;
    default:
        break;
    }
}

static void parse_one(const char *line, size_t len)
{
    char err[256];
    rd_msg m;
    memset(&m, 0xab, sizeof m);
    int rc = rd_proto_parse(line, len, &m, err, sizeof err);
    if (rc == 0) {
        CHECK(err[0] == '\0');
        check_msg(&m);
    } else {
        static const rd_msg zero;
        CHECK(rc < 0 && memcmp(&m, &zero, sizeof m) == 0);
        CHECK(err[0] != '\0' && strlen(err) < sizeof err);
        for (const char *p = err; *p; p++)
            CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    }
    rd_msg_clear(&m);
    rd_msg_clear(&m); /* documented as safe on a cleared message */

    /* No error buffer at all, and a one-byte one: the parser must not write past them. */
    char tiny[1];
    if (rd_proto_parse(line, len, &m, NULL, 0) == 0)
        rd_msg_clear(&m);
    if (rd_proto_parse(line, len, &m, tiny, sizeof tiny) == 0)
        rd_msg_clear(&m);
}

/* Feeds data in chunks of `chunk` bytes, as reads from a pipe would, and drains every line. */
static void split_lines(const uint8_t *data, size_t size, size_t max, size_t chunk)
{
    struct evbuffer *in = evbuffer_new();
    rd_linereader lr = {.max = max};
    size_t off = 0;
    CHECK(in);
    for (;;) {
        bool eof = off == size;
        if (!eof) {
            size_t n = size - off < chunk ? size - off : chunk;
            evbuffer_add(in, data + off, n);
            off += n;
        }
        for (;;) {
            char *line;
            size_t len;
            int rc = rd_linereader_next(&lr, in, eof, &line, &len);
            if (rc == RD_LINE_NONE)
                break;
            if (rc == RD_LINE_OK) {
                CHECK(line && len <= max && line[len] == '\0' && !memchr(line, '\n', len));
                parse_one(line, len);
                free(line);
            } else {
                CHECK(rc == RD_LINE_OVERLONG && !line);
            }
            /* Bounded: never more than a line's worth plus one chunk waits in the buffer. */
            CHECK(evbuffer_get_length(in) <= max + 1 + chunk);
        }
        if (eof)
            break;
    }
    CHECK(evbuffer_get_length(in) == 0);
    evbuffer_free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_one((const char *)data, size);
    if (size > 0) {
        /* Bound and chunk size from the first byte, so both small and large lines occur. */
        size_t max = 1 + (data[0] & 0x7f) * 4;
        size_t chunk = 1 + (data[0] >> 7) * 63;
        split_lines(data + 1, size - 1, max, chunk);
    }
    return 0;
}
