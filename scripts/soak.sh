#!/usr/bin/env bash
# Soak test of the ZeroState node: runs it under its built-in workload for a bounded
# time, samples its resident memory (VmRSS of /proc/<pid>/status) and the series
# count of its /metrics (sample lines) every few seconds into a CSV, and judges
# whether both stayed flat. Exits 0 when flat, 1 when not, 2 on a setup error (the
# node does not start, dies, or /metrics does not answer).
#
#   scripts/soak.sh                       # the documented run: 10 minutes, release binary
#   DURATION=60 NODE=target/debug/zerostate-node scripts/soak.sh   # what CI runs
#
# Environment (all optional):
#   DURATION        seconds of workload (default 600)
#   INTERVAL        seconds between samples (default 5)
#   WARMUP          seconds ignored before judging (default DURATION/6: caches, pools,
#                   the allocator's arenas and the first label values fill up)
#   RSS_TOLERANCE   percent the last third's max RSS may exceed the first third's (default 10)
#   RSS_SLACK_KIB   and this many KiB on top, for small processes (default 2048)
#   SERIES_TOLERANCE  percent the last third's max series count may exceed the first
#                   third's (default 2): rare events (a failed payment, a dispute) may
#                   add a series late; a leak adds them steadily
#   NODE            the node binary (default target/release/zerostate-node; built with
#                   `cargo build --release -p zerostate-node` when missing)
#   NODE_ARGS       extra arguments for the node (e.g. "--peer-loss-rate 0.01")
#   OUT             the CSV to write (default target/soak/soak-<UTC time>.csv)
#   JUDGE           a CSV of an earlier run: judge it, with the settings above, and exit
#
# Judgement, after the warm-up: the samples are split into thirds; memory is flat
# when max(RSS, last third) <= max(RSS, first third) * (1 + RSS_TOLERANCE/100) +
# RSS_SLACK_KIB, and the series count when max(series, last third) <= max(series,
# first third) * (1 + SERIES_TOLERANCE/100). A leak of a steady size per task grows
# the last third past the first; a flat process does not.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-5}
WARMUP=${WARMUP:-$((DURATION / 6))}
RSS_TOLERANCE=${RSS_TOLERANCE:-10}
RSS_SLACK_KIB=${RSS_SLACK_KIB:-2048}
SERIES_TOLERANCE=${SERIES_TOLERANCE:-2}
NODE=${NODE:-target/release/zerostate-node}
NODE_ARGS=${NODE_ARGS:-}
OUT=${OUT:-target/soak/soak-$(date -u +%Y%m%dT%H%M%SZ).csv}

fail_setup() {
  echo "soak: error: $*" >&2
  exit 2
}

for n in DURATION INTERVAL WARMUP RSS_TOLERANCE RSS_SLACK_KIB SERIES_TOLERANCE; do
  [[ ${!n} =~ ^[0-9]+$ ]] || fail_setup "$n must be a whole number, got '${!n}'"
done
[ "$INTERVAL" -ge 1 ] || fail_setup "INTERVAL must be at least 1"
[ "$WARMUP" -lt "$DURATION" ] || fail_setup "WARMUP ($WARMUP s) must be shorter than DURATION ($DURATION s)"
# At least three samples per third after the warm-up.
[ $(((DURATION - WARMUP) / INTERVAL)) -ge 9 ] ||
  fail_setup "DURATION - WARMUP must hold at least 9 samples of INTERVAL=$INTERVAL s"
command -v curl >/dev/null || fail_setup "curl is needed (apt-get install curl)"

judge() {
  awk -F, -v warmup="$WARMUP" -v rtol="$RSS_TOLERANCE" -v slack="$RSS_SLACK_KIB" \
    -v stol="$SERIES_TOLERANCE" '
    NR == 1 { next }
    {
      n_all++
      if (n_all == 1) { rss0 = $2; series0 = $3 }
      rss_last = $2; series_last = $3; tasks = $4; t_last = $1
      if ($2 > rss_max) rss_max = $2
      if ($1 >= warmup) { n++; t[n] = $1; r[n] = $2; s[n] = $3 }
    }
    END {
      third = int(n / 3)
      if (third < 1) { printf "soak: FAILED: %d samples after the warm-up, too few to judge\n", n; exit 1 }
      for (i = 1; i <= third; i++) {
        if (r[i] > r1) r1 = r[i]
        if (s[i] > s1) s1 = s[i]
      }
      for (i = n - third + 1; i <= n; i++) {
        if (r[i] > r3) r3 = r[i]
        if (s[i] > s3) s3 = s[i]
      }
      rss_limit = r1 * (1 + rtol / 100) + slack
      series_limit = s1 * (1 + stol / 100)
      printf "soak: %d samples over %d s, %d tasks executed\n", n_all, t_last, tasks
      printf "soak: RSS start %d KiB, end %d KiB, max %d KiB; series start %d, end %d\n", \
        rss0, rss_last, rss_max, series0, series_last
      printf "soak: after the %d s warm-up (%d samples, thirds of %d): RSS max %d KiB (first third) -> %d KiB (last third), limit %d KiB; series max %d -> %d, limit %d\n", \
        warmup, n, third, r1, r3, rss_limit, s1, s3, series_limit
      flat = 1
      if (r3 > rss_limit) { print "soak: NOT FLAT: resident memory grew"; flat = 0 }
      if (s3 > series_limit) { print "soak: NOT FLAT: the series count grew"; flat = 0 }
      if (tasks == 0) { print "soak: FAILED: no task was executed"; flat = 0 }
      if (flat) print "soak: flat"
      exit flat ? 0 : 1
    }' "$1"
}

if [ -n "${JUDGE:-}" ]; then
  [ -f "$JUDGE" ] || fail_setup "no CSV at $JUDGE"
  judge "$JUDGE"
  exit $?
fi

if [ ! -x "$NODE" ]; then
  if [ "$NODE" = target/release/zerostate-node ]; then
    echo "soak: building $NODE"
    cargo build --quiet --release -p zerostate-node
  else
    fail_setup "no node binary at $NODE"
  fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/zs-soak.XXXXXX")
node_pid=
cleanup() {
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    # The node drains for 2 s after SIGTERM; then it is killed.
    for _ in $(seq 50); do
      kill -0 "$node_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck disable=SC2086 # NODE_ARGS is a list of words
"$NODE" --listen 127.0.0.1:0 --data-dir "$work/data" $NODE_ARGS \
  >/dev/null 2>"$work/stderr" &
node_pid=$!

addr=
for _ in $(seq 300); do # 30 s
  addr=$(sed -n 's/^LISTENING //p' "$work/stderr" | head -1)
  [ -n "$addr" ] && break
  kill -0 "$node_pid" 2>/dev/null || fail_setup "the node exited at start: $(tail -5 "$work/stderr")"
  sleep 0.1
done
[ -n "$addr" ] || fail_setup "the node did not print LISTENING within 30 s"

mkdir -p "$(dirname "$OUT")"
echo "elapsed_s,rss_kib,series,tasks_executed" >"$OUT"
echo "soak: node pid $node_pid on $addr, $DURATION s (warm-up $WARMUP s), a sample every $INTERVAL s into $OUT"

started=$(date +%s)
deadline=$((started + DURATION))
while :; do
  now=$(date +%s)
  kill -0 "$node_pid" 2>/dev/null || fail_setup "the node died after $((now - started)) s: $(tail -5 "$work/stderr")"
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$node_pid/status")
  body=$(curl -sf --max-time 10 "http://$addr/metrics") ||
    fail_setup "GET http://$addr/metrics failed after $((now - started)) s"
  series=$(grep -cv '^#\|^$' <<<"$body" || true)
  tasks=$(awk '/^zerostate_tasks_executed_total[{ ]/ {s += $NF} END {printf "%d", s}' <<<"$body")
  echo "$((now - started)),$rss,$series,$tasks" >>"$OUT"
  [ "$now" -ge "$deadline" ] && break
  sleep "$(((deadline - now) < INTERVAL ? (deadline - now) : INTERVAL))"
done

judge "$OUT"
