/* trivial.c: the smallest worker (SPEC section 2), for benchmarks: reads the start line,
 * writes one item and done, exits 0. */
#include <stdio.h>

int main(void)
{
    int c;
    while ((c = getchar()) != EOF && c != '\n')
        ; /* the start line; its content does not matter */
    fputs("{\"type\":\"item\",\"data\":{\"n\":1}}\n{\"type\":\"done\"}\n", stdout);
    return fflush(stdout) == 0 ? 0 : 1;
}
