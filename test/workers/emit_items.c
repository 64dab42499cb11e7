/* emit_items.c: a throughput worker for benchmarks (SPEC section 2). Reads the start line,
 * takes input.count crudely (the first "count" key after "input", else the first anywhere;
 * default 1000000), writes that many item lines through a 1 MiB stdio buffer, then done. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char outbuf[1 << 20];

static long long parse_count(const char *line)
{
    const char *p = strstr(line, "\"input\"");
    const char *k = strstr(p ? p : line, "\"count\"");
    if (!k && p)
        k = strstr(line, "\"count\"");
    if (!k)
        return -1;
    k += strlen("\"count\"");
    while (isspace((unsigned char)*k))
        k++;
    if (*k != ':')
        return -1;
    k++;
    while (isspace((unsigned char)*k))
        k++;
    char *end;
    long long n = strtoll(k, &end, 10);
    if (end == k || n < 0)
        return -1;
    return n;
}

int main(void)
{
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

    size_t cap = 0;
    char *line = NULL;
    long long n = -1;
    if (getline(&line, &cap, stdin) > 0)
        n = parse_count(line);
    free(line);
    if (n < 0)
        n = 1000000;

    for (long long i = 0; i < n; i++) {
        if (printf("{\"type\":\"item\",\"data\":{\"name\":\"pkg-%lld\",\"version\":\"1.%lld\","
                   "\"size\":%lld}}\n",
                   i, i, i) < 0)
            return 1;
    }
    fputs("{\"type\":\"done\"}\n", stdout);
    return fflush(stdout) == 0 ? 0 : 1;
}
