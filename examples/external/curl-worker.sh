#!/bin/sh
# curl-worker.sh: an external runsd worker with nothing but curl and POSIX sh (docs/workers.md).
#
#   curl-worker.sh BASE_URL RUN_ID        e.g. curl-worker.sh http://127.0.0.1:8080 run_...
#
# RUN_ID is a run of an `executor = external` flow (it waits in `queued` until a worker
# attaches). The worker opens the run's control stream (GET /v1/runs/{id}/control, SSE), which
# starts the run and hands it the start message; it then does the same work as the primes
# workers of examples/workers/ and posts its messages as NDJSON to POST /v1/runs/{id}/events.
# The control stream ends when the run ends, and so does this script. With RUNSD_API_KEY set
# (a write key), every request carries it, from a file curl reads (never in argv).
#
# The start message is read with sed, which is enough for the few integers this worker needs
# (the daemon writes compact JSON; input and metadata are assumed flat objects without keys
# named like the run's fields); a worker with real input would use jq or a JSON library.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 BASE_URL RUN_ID" >&2; exit 2; }
BASE=${1%/}
RUN=$2
MAX_BELOW=1000000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/headers"
if [ -n "${RUNSD_API_KEY:-}" ]; then
  (umask 077 && printf 'Authorization: Bearer %s\n' "$RUNSD_API_KEY" >"$tmp/headers")
fi

# post: sends the NDJSON lines on stdin as one batch. Anything but 200 ends the worker (409:
# the run is no longer active, e.g. cancelled).
post() {
  code=$(curl -sS -o "$tmp/reply" -w '%{http_code}' -H @"$tmp/headers" \
    -H 'Content-Type: application/x-ndjson' --data-binary @- "$BASE/v1/runs/$RUN/events")
  if [ "$code" != 200 ]; then
    echo "curl-worker: POST events: HTTP $code: $(cat "$tmp/reply")" >&2
    exit 1
  fi
}

# field JSON NAME: the integer value of "NAME": in JSON, or nothing.
field() {
  printf '%s\n' "$1" | sed -n "s/.*\"$2\":\(-\{0,1\}[0-9][0-9]*\)[,}].*/\1/p"
}

is_prime() {
  [ "$1" -ge 2 ] || return 1
  d=2
  while [ $((d * d)) -le "$1" ]; do
    [ $(($1 % d)) -ne 0 ] || return 1
    d=$((d + 1))
  done
}

# work START_JSON: one attempt, from the cursor of the start message.
work() {
  input=$(printf '%s\n' "$1" | sed -n 's/.*"input":\({[^}]*}\).*/\1/p')
  cursor=$(printf '%s\n' "$1" | sed -n 's/.*"cursor":\({[^}]*}\).*/\1/p')
  below=$(field "$input" below)
  below=${below:-50}
  limit=$(field "$1" limit)
  attempt=$(field "$1" attempt)
  if [ "$below" -lt 2 ] || [ "$below" -gt $MAX_BELOW ]; then
    printf '{"type":"error","message":"input.below must be an integer from 2 to %d"}\n' \
      $MAX_BELOW | post
    return
  fi
  n=$(field "$cursor" next)
  n=${n:-2}
  found=$(field "$cursor" found)
  found=${found:-0}
  largest=$(field "$cursor" largest)
  largest=${largest:-null}
  total=$((below - 2))
  printf '{"type":"log","level":"info","message":"attempt %d: from %d to %d"}\n{"type":"step","name":"scan","state":"started","total":%d}\n' \
    "$attempt" "$n" $((below - 1)) "$total" | post
  while [ "$n" -lt "$below" ]; do
    if is_prime "$n"; then
      found=$((found + 1))
      largest=$n
      # One batch: the item, then a checkpoint past it, and the progress.
      printf '{"type":"item","data":{"n":%d,"index":%d}}\n{"type":"checkpoint","cursor":{"next":%d,"found":%d,"largest":%d}}\n{"type":"progress","done":%d,"total":%d}\n' \
        "$n" "$found" $((n + 1)) "$found" "$n" $((n - 1)) "$total" | post
      if [ -n "$limit" ] && [ "$found" -ge "$limit" ]; then
        return # the limit ended the run (match_limit_met); an extend resumes it
      fi
    fi
    n=$((n + 1))
  done
  printf '{"type":"step","name":"scan","state":"finished","total":%d}\n{"type":"progress","done":%d,"total":%d}\n{"type":"result","data":{"below":%d,"count":%d,"largest":%s}}\n{"type":"done"}\n' \
    "$total" "$total" "$total" "$below" "$found" "$largest" | post
}

# The control stream: SSE frames of daemon -> worker messages, the event name being the
# message's type. `start` comes first; `approval` and `auth` would answer prompts. It ends
# when the run ends, which ends the loop.
curl -sSN --fail -H @"$tmp/headers" -H 'Accept: text/event-stream' \
  "$BASE/v1/runs/$RUN/control" | while IFS= read -r line; do
  case $line in
    'data: {"type":"start"'*) : >"$tmp/started" && work "${line#data: }" ;;
  esac
done
# POSIX sh has no pipefail: a control stream refused at once (a run already finished, a bad
# key) shows as no start message.
[ -e "$tmp/started" ] || { echo "curl-worker: no start message from $BASE" >&2; exit 1; }
