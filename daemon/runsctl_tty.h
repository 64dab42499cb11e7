/*
 * runsctl_tty.h: the live view's terminal (runsctl_tty.c): frames redrawn in place, the
 * cursor hidden meanwhile, keys read raw; rc_tty_close undoes both.
 */
#ifndef RUNSCTL_TTY_H
#define RUNSCTL_TTY_H

#include <stdbool.h>
#include <termios.h>

#define RC_TTY_MAX_LINES 64

typedef struct rc_tty {
    int cols, rows;
    bool utf8, color, keys, raw, open;
    struct termios saved;
    int nlines;                   /* lines of the frame on screen */
    int widths[RC_TTY_MAX_LINES]; /* their visible widths, for a resize */
} rc_tty;

/* Hides the cursor and, when keys and stdin is a terminal, reads it raw. */
void rc_tty_open(rc_tty *t, bool keys);
/* Shows the cursor and restores the terminal's mode; safe to call twice. */
void rc_tty_close(rc_tty *t);
/* Raw mode on or off (off before a stop, on again after SIGCONT); 0 or -1. */
int rc_tty_raw(rc_tty *t, bool on);
/* Reads the window size (after SIGWINCH). */
void rc_tty_size(rc_tty *t);
/* Draws lines (cut to the width) over the last frame. */
void rc_tty_frame(rc_tty *t, char *const *lines, int n);
/* Erases the frame, so that a message can be printed where it was. */
void rc_tty_clear(rc_tty *t);

#endif
