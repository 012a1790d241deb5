#!/usr/bin/env bash
# The compose cluster survives the loss of a member (make compose-test):
#   1. start three etcd members and three relais nodes (project relais-test,
#      so that a demo started by make compose-up is left alone);
#   2. run the load generator through relais-1 and, while it runs,
#      `docker kill` relais-3: every call must be answered or abandoned by
#      its caller, none failed, none unresolved (the calls relais-3's queues
#      held are taken over from etcd; its informants log in again through
#      relais-1);
#   3. measure how long etcd keeps relais-3's member key (its lease);
#   4. after the kill, a second load generator run on the two members left
#      must have every call answered or abandoned by its caller: none failed,
#      none unresolved, and most answered; both members serve /metrics;
#   5. start relais-3 again: it must rejoin.
# The images must exist (make compose-test builds them). Results and logs go
# to $OUT (default target/compose-test); KEEP=1 leaves the cluster running.
set -euo pipefail
cd "$(dirname "$0")/../.."

export COMPOSE_PROJECT=${COMPOSE_PROJECT:-relais-test}
compose=deploy/compose/compose.sh
out=${OUT:-target/compose-test}
# Real seconds of offering: the kill comes KILL_AFTER_S seconds into the first run.
run_s=${RUN_S:-30}
kill_after_s=${KILL_AFTER_S:-12}
after_s=${AFTER_S:-15}
time_scale=120

start=$(date +%s.%N)
# Seconds from $1 (default: the start) to $2 (default: now).
elapsed() { awk -v now="${2:-$(date +%s.%N)}" -v since="${1:-$start}" 'BEGIN { printf "%.1f", now - since }'; }
say() { echo "compose-test [$(elapsed) s]: $*"; }
fail() {
  echo "compose-test: FAILED: $*" >&2
  for s in relais-1 relais-2 relais-3; do $compose logs --no-color "$s" >"$out/$s.log" 2>&1 || true; done
  echo "compose-test: node logs in $out/" >&2
  exit 1
}
# Waits until relais-1 lists $1 members; prints the seconds it took, measured
# inside the container (no docker exec per poll).
wait_members() {
  $compose exec -T relais-1 bash -c '
    t0=$(date +%s%N)
    for _ in $(seq 600); do
      n=$(relaisctl --output json members 2>/dev/null | grep -c "\"node_id\"" || true)
      if [ "$n" = "'"$1"'" ]; then ms=$(( ($(date +%s%N) - t0) / 1000000 )); printf "%d.%03d\n" $((ms / 1000)) $((ms % 1000)); exit 0; fi
      sleep 0.05
    done
    exit 1'
}
# One load generator run; its JSON summary goes to $out/$1.json.
loadgen() {
  local name=$1; shift
  $compose run --rm -T -u "$(id -u):$(id -g)" -v "$PWD/$out:/out" loadgen \
    --profile cai --time-scale "$time_scale" --quiet --json "/out/$name.json" "$@" >"$out/$name.txt" 2>&1
}
count() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["all"]["calls"][sys.argv[2]])' "$1" "$2"; }
informant_errors() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["informants"]["errors"])' "$1"; }

cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "compose-test: cluster left running (COMPOSE_PROJECT=$COMPOSE_PROJECT $compose down -v to remove it)"
  else
    $compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

rm -rf "$out" && mkdir -p "$out"
$compose down -v --remove-orphans >/dev/null 2>&1 || true

say "starting 3 etcd members and 3 relais nodes"
$compose up -d relais-1 relais-2 relais-3 >"$out/up.log" 2>&1 || { cat "$out/up.log"; fail "compose up"; }
wait_members 3 >/dev/null || fail "the three members never showed up"
say "3 members (startup $(elapsed) s)"
$compose exec -T relais-1 relaisctl members

say "run 1: ${run_s} s of the CAI-like workload through relais-1; docker kill relais-3 after ${kill_after_s} s"
loadgen during --duration "$((run_s * time_scale))s" &
run1=$!
# The cluster sees a member leave when etcd deletes its key: follow it in
# etcd-1, each event stamped with the (shared) kernel clock.
$compose exec -T etcd-1 sh -c 'etcdctl watch /relais/members/relais-3 | while read -r line; do echo "$(date +%s.%N) $line"; done' \
  >"$out/member-watch.txt" 2>&1 &
watcher=$!
sleep "$kill_after_s"
victim=$($compose ps -q relais-3)
killed_at=$(date +%s.%N)
docker kill "$victim" >/dev/null
say "relais-3 killed"
for _ in $(seq 300); do grep -q DELETE "$out/member-watch.txt" && break; sleep 0.1; done
deleted_at=$(awk '/DELETE/ { print $1; exit }' "$out/member-watch.txt")
kill "$watcher" 2>/dev/null || true
[ -n "$deleted_at" ] || fail "relais-3's member key was never deleted"
say "relais-3's member key deleted by etcd $(awk -v a="$killed_at" -v b="$deleted_at" 'BEGIN { printf "%.2f", b - a }') s after the kill"
wait_members 2 >/dev/null || fail "relais-1 still lists relais-3"
say "relais-1 lists 2 members"
wait "$run1" || { cat "$out/during.txt"; fail "run 1 failed"; }
say "run 1 done: offered $(count "$out/during.json" offered), answered $(count "$out/during.json" answered), abandoned $(count "$out/during.json" abandoned), failed $(count "$out/during.json" failed), unresolved $(count "$out/during.json" unresolved); informants stopped $(informant_errors "$out/during.json")"
[ "$(count "$out/during.json" answered)" -gt 0 ] || fail "run 1 answered no call"
[ "$(count "$out/during.json" failed)" = 0 ] || fail "run 1: calls failed across the kill"
[ "$(count "$out/during.json" unresolved)" = 0 ] || fail "run 1: calls unresolved across the kill"

say "run 2: ${after_s} s through relais-1 on the two members left"
loadgen after --duration "$((after_s * time_scale))s" || { cat "$out/after.txt"; fail "run 2 failed"; }
offered=$(count "$out/after.json" offered)
answered=$(count "$out/after.json" answered)
failed=$(count "$out/after.json" failed)
unresolved=$(count "$out/after.json" unresolved)
say "run 2 done: offered $offered, answered $answered, abandoned $(count "$out/after.json" abandoned), failed $failed, unresolved $unresolved"
$compose exec -T relais-1 relaisctl stats >"$out/stats.txt" 2>&1 || true
[ "$offered" -gt 0 ] || fail "run 2 offered no call"
[ "$failed" = 0 ] || fail "run 2: $failed calls failed after the kill"
[ "$unresolved" = 0 ] || fail "run 2: $unresolved calls unresolved after the kill"
[ "$((answered * 10))" -ge "$((offered * 8))" ] || fail "run 2: only $answered of $offered calls answered"

# The image serves Prometheus metrics on 9464: the members left must count
# their actors, and the queues they host the calls they answered.
answered_metric=0
for s in relais-1 relais-2; do
  $compose exec -T "$s" bash -c '
    exec 3<>/dev/tcp/127.0.0.1/9464
    printf "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
    cat <&3' >"$out/metrics-$s.txt" 2>&1 || fail "$s: GET /metrics on 9464 failed"
  grep -q '^relais_node_actors{' "$out/metrics-$s.txt" || fail "$s: /metrics has no relais_node_actors"
  n=$(awk '/^relais_queue_calls_answered_total\{/ { sum += $NF } END { print sum + 0 }' "$out/metrics-$s.txt")
  answered_metric=$((answered_metric + ${n%.*}))
done
say "metrics: relais-1 and relais-2 serve /metrics; their queues count $answered_metric answered calls"
[ "$answered_metric" -gt 0 ] || fail "no member's metrics count an answered call"

say "starting relais-3 again"
restarted_at=$(date +%s.%N)
$compose start relais-3 >/dev/null 2>&1 || fail "compose start relais-3"
wait_members 3 >/dev/null || fail "relais-3 did not rejoin"
say "relais-3 rejoined $(elapsed "$restarted_at") s after its start"
$compose exec -T relais-1 relaisctl members

say "PASSED: routing went on after the kill (summaries and logs in $out/)"
