#!/bin/sh
# primes (POSIX sh + jq): a complete runsd worker (docs/workers.md).
#
# Emits the primes below input.below (default 50) as items {"n": p, "index": k}, with a step,
# progress, a checkpoint after every item, and a result. It resumes from its checkpoint, so a
# run stopped at its limit and extended, or re-queued after a daemon restart, goes on where it
# stopped. Every number it prints is an integer it computed, so printf builds those lines;
# strings from outside would go through jq (see fail).
set -eu
MAX_BELOW=1000000

# An `error` message (jq escapes the text) and exit 1: the run ends failed/error_occurred.
fail() {
  jq -cn --arg m "$1" '{type: "error", message: $m}'
  exit 1
}

# The first stdin line is always the start message. One jq call turns the fields this worker
# needs into shell assignments for eval. Only integers (checked by jq, or written by the
# daemon and by this worker's own checkpoints) and the words bad and null reach eval.
IFS= read -r start || fail "no start message on stdin"
vars=$(printf '%s\n' "$start" | jq -r --argjson max $MAX_BELOW '
  .run as $r | ($r.input // {}) as $in | ($r.cursor // {next: 2, found: 0, largest: null}) as $c
  | if ($in | type) != "object" then "bad=1"
    else
      ($in.below // 50) as $b
      | "below=\(if ($b | type) == "number" and ($b | floor) == $b and $b >= 2 and $b <= $max
                  then $b else "bad" end)"
        + " limit=\($r.limit // 0) attempt=\($r.attempt)"
        + " n=\($c.next) found=\($c.found) largest=\($c.largest // "null")"
    end') || fail "the first stdin line is not a start message"
below=bad bad='' limit=0 attempt=1 n=2 found=0 largest=null
eval "$vars"
if [ -n "$bad" ] || [ "$below" = bad ]; then
  fail "input.below must be an integer from 2 to $MAX_BELOW"
fi
total=$((below - 2))

is_prime() {
  [ "$1" -ge 2 ] || return 1
  d=2
  while [ $((d * d)) -le "$1" ]; do
    [ $(($1 % d)) -ne 0 ] || return 1
    d=$((d + 1))
  done
}

printf '{"type":"log","level":"info","message":"attempt %d: from %d to %d"}\n' \
  "$attempt" "$n" $((below - 1))
printf '{"type":"step","name":"scan","state":"started","total":%d}\n' "$total"
while [ "$n" -lt "$below" ]; do
  if is_prime "$n"; then
    found=$((found + 1))
    largest=$n
    # The item, then a checkpoint past it: a resumed attempt starts after this item. One
    # printf writes the three lines at once.
    printf '{"type":"item","data":{"n":%d,"index":%d}}\n{"type":"checkpoint","cursor":{"next":%d,"found":%d,"largest":%d}}\n{"type":"progress","done":%d,"total":%d}\n' \
      "$n" "$found" $((n + 1)) "$found" "$n" $((n - 1)) "$total"
    if [ "$limit" -gt 0 ] && [ "$found" -ge "$limit" ]; then
      exit 0 # the limit ended the run (match_limit_met); an extend resumes it
    fi
  fi
  n=$((n + 1))
done
printf '{"type":"step","name":"scan","state":"finished","total":%d}\n{"type":"progress","done":%d,"total":%d}\n{"type":"result","data":{"below":%d,"count":%d,"largest":%s}}\n{"type":"done"}\n' \
  "$total" "$total" "$total" "$below" "$found" "$largest"
