/*
 * runsctl_tty.c: the terminal under `runsctl watch`: ANSI escapes only (no terminfo). A frame
 * is a list of lines drawn below the cursor; the next frame moves the cursor back up over the
 * rows the last one took and clears to the end of the screen, so the view is redrawn in place
 * and whatever was printed above it stays. Lines are cut to the width, so each takes one row;
 * after a resize (SIGWINCH) the old frame's rows are counted at the new width. The cursor is
 * hidden while drawing and keys are read raw (termios); rc_tty_close puts both back and is
 * called on every way out (also from atexit, for an exit() deep in a helper).
 */
#include <langinfo.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "runsctl_tty.h"

static rc_tty *open_tty; /* the one terminal atexit restores */

static void tty_on_exit(void)
{
    if (open_tty)
        rc_tty_close(open_tty);
}

static void tty_write(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, s, n);
        if (w <= 0)
            return; /* the terminal is gone; nothing sensible is left to do */
        s += w;
        n -= (size_t)w;
    }
}

void rc_tty_size(rc_tty *t)
{
    struct winsize ws;
    t->cols = 80;
    t->rows = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        t->cols = ws.ws_col;
        t->rows = ws.ws_row > 2 ? ws.ws_row : 24;
    }
}

int rc_tty_raw(rc_tty *t, bool on)
{
    if (!t->keys)
        return 0;
    if (!on) {
        if (t->raw)
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &t->saved);
        t->raw = false;
        return 0;
    }
    struct termios r;
    if (tcgetattr(STDIN_FILENO, &t->saved) != 0)
        return -1;
    r = t->saved;
    /* Keys without Enter and without echo; ISIG stays, so ^C is still SIGINT. */
    r.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    r.c_cc[VMIN] = 1;
    r.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &r) != 0)
        return -1;
    t->raw = true;
    return 0;
}

void rc_tty_open(rc_tty *t, bool keys)
{
    memset(t, 0, sizeof *t);
    setlocale(LC_CTYPE, "");
    t->utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
    t->color = !getenv("NO_COLOR");
    t->keys = keys && isatty(STDIN_FILENO);
    rc_tty_size(t);
    if (rc_tty_raw(t, true) != 0)
        t->keys = false;
    open_tty = t;
    static bool registered;
    if (!registered)
        atexit(tty_on_exit);
    registered = true;
    tty_write("\x1b[?25l", 6); /* hide the cursor while the view is live */
    t->open = true;
}

void rc_tty_close(rc_tty *t)
{
    if (!t->open)
        return;
    rc_tty_raw(t, false);
    tty_write("\x1b[0m\x1b[?25h", 10);
    t->open = false;
    if (open_tty == t)
        open_tty = NULL;
}

/* Length of the escape sequence at s (ESC [ params final, or ESC and one byte). */
static size_t esc_len(const char *s)
{
    size_t n = 1;
    if (s[n] == '[') {
        n++;
        while (s[n] && !(s[n] >= 0x40 && s[n] <= 0x7e))
            n++;
    }
    return s[n] ? n + 1 : n;
}

/* Visible columns of s: code points outside escape sequences. */
static int vis_width(const char *s)
{
    int w = 0;
    for (size_t i = 0; s[i];) {
        if (s[i] == 0x1b) {
            i += esc_len(s + i);
            continue;
        }
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            w++;
        i++;
    }
    return w;
}

/* Appends s to out cut to max visible columns (escape sequences kept whole). */
static size_t fit(char *out, size_t cap, const char *s, int max)
{
    size_t o = 0;
    int w = 0;
    for (size_t i = 0; s[i];) {
        size_t n = s[i] == 0x1b ? esc_len(s + i) : 1;
        if (s[i] != 0x1b && ((unsigned char)s[i] & 0xC0) != 0x80 && ++w > max)
            break;
        if (o + n + 8 >= cap)
            break;
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
    }
    return o;
}

/* Rows the last frame takes now (lines wider than the terminal wrapped after a resize). */
static int frame_rows(const rc_tty *t)
{
    int rows = 0;
    for (int i = 0; i < t->nlines; i++)
        rows += t->widths[i] <= t->cols ? 1 : (t->widths[i] + t->cols - 1) / t->cols;
    return rows;
}

void rc_tty_clear(rc_tty *t)
{
    char buf[32];
    int rows = frame_rows(t);
    int n = rows > 0 ? snprintf(buf, sizeof buf, "\r\x1b[%dA\x1b[J", rows)
                     : snprintf(buf, sizeof buf, "\r\x1b[J");
    tty_write(buf, (size_t)n);
    t->nlines = 0;
}

void rc_tty_frame(rc_tty *t, char *const *lines, int n)
{
    if (n > t->rows - 1)
        n = t->rows - 1;
    if (n > RC_TTY_MAX_LINES)
        n = RC_TTY_MAX_LINES;
    size_t cap = 64 + (size_t)n * ((size_t)t->cols * 4 + 64), o = 0;
    char *out = malloc(cap);
    if (!out)
        return;
    int rows = frame_rows(t);
    o += (size_t)(rows > 0 ? snprintf(out, cap, "\r\x1b[%dA\x1b[J", rows)
                           : snprintf(out, cap, "\r\x1b[J"));
    for (int i = 0; i < n; i++) {
        size_t start = o;
        o += fit(out + o, cap - o - 8, lines[i], t->cols - 1);
        out[o] = 0;
        t->widths[i] = vis_width(out + start);
        o += (size_t)snprintf(out + o, cap - o, "\x1b[0m\n");
    }
    t->nlines = n;
    tty_write(out, o);
    free(out);
}
