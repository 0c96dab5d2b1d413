#!/usr/bin/env bash
# `npm run test:servers`: the wire suites (test/wire-suites.txt) against every tested nats-server
# but the newest (which `npm test` covers with the whole suite), one server after another, with
# NATS_SERVER_BIN set; then a summary per server. Exits non-zero if any server had a failure.
#
#   npm run test:servers                          the versions scripts/nats-binaries.sh pinned
#                                                 (but the newest), and the nats-server on PATH
#   npm run test:servers -- 2.10.27 PATH          only these: a built version, PATH, or a binary's path
#
# NATS_TEST_SERVER_TIMEOUT (seconds, default 1200) bounds each server's run; a run that overstays
# is stopped with its whole process group (its node processes and nats-servers) and counts as failed.
# Ctrl-C stops the running server's tests the same way and prints the summary so far.
set -uo pipefail
cd "$(dirname "$0")/.."

CACHE="${NATS_BACKUP_BIN_CACHE:-$HOME/.cache/nats-backup/bin}"
PINNED="$CACHE/versions.env"
TIMEOUT="${NATS_TEST_SERVER_TIMEOUT:-1200}"

suites=()
while read -r name; do
  case "$name" in "" | "#"*) continue ;; esac
  [ -f "test/$name.test.ts" ] || { echo "test-servers: test/wire-suites.txt names $name, but test/$name.test.ts does not exist" >&2; exit 2; }
  suites+=("test/$name.test.ts")
done <test/wire-suites.txt

on_path() { command -v nats-server || { echo "test-servers: no nats-server on PATH (apt-get install nats-server)" >&2; return 1; }; }

# Each target is a nats-server binary.
targets=()
if [ $# -gt 0 ]; then
  for arg in "$@"; do
    case "$arg" in
      PATH) bin=$(on_path) || exit 2; targets+=("$bin") ;;
      */*) targets+=("$arg") ;;
      *) targets+=("$CACHE/nats-server-$arg/nats-server") ;;
    esac
  done
else
  [ -f "$PINNED" ] || { echo "test-servers: $PINNED does not exist: run scripts/nats-binaries.sh first" >&2; exit 2; }
  # shellcheck source=/dev/null
  . "$PINNED"
  read -r -a versions <<<"$NATS_SERVER_VERSIONS"
  for v in "${versions[@]:1}"; do targets+=("$CACHE/nats-server-$v/nats-server"); done
  bin=$(on_path) || exit 2
  targets+=("$bin")
fi
for bin in "${targets[@]}"; do
  [ -x "$bin" ] || { echo "test-servers: $bin is not an executable: run scripts/nats-binaries.sh" >&2; exit 2; }
done

# The failing tests by name from a TAP log: the "not ok" tests, without the suites and files that
# failed only because a subtest did (a file that failed to load is named by its path). A suite
# whose before or after hook failed is named with the hook's error, since its tests show only
# as cancelled.
failing_tests() {
  awk '
    function flush() {
      if (name != "" && (!suite || hook)) print name (hook ? "  [hook failed: " substr(err, 1, 300) "]" : "")
      name = ""; err = ""; hook = 0; suite = 0; multiline = 0
    }
    /^ *(not )?ok [0-9]+ - / { flush(); if ($0 ~ /^ *not ok/) { name = $0; sub(/^ *not ok [0-9]+ - /, "", name) } ; next }
    name == "" { next }
    /error: .[0-9]+ subtests? failed/ { suite = 1 }
    /failureType: .hookFailed./ { hook = 1 }
    multiline { if ($0 ~ /^ *[a-zA-Z_]+:( |$)/) multiline = 0; else { line = $0; sub(/^ +/, "", line); err = (err == "" ? line : err " " line); next } }
    /^ *error: / { err = $0; sub(/^ *error: /, "", err); if (err ~ /^[|>]-?$/) { err = ""; multiline = 1 } }
    END { flush() }
  ' "$1" | sort -u
}

interrupted=0
child=""
trap 'interrupted=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' INT TERM

logs=$(mktemp -d "${TMPDIR:-/tmp}/nats-backup-test-servers-XXXXXX")
summary=()
failed=0
for bin in "${targets[@]}"; do
  [ "$interrupted" = 0 ] || break
  version=$("$bin" --version | sed -E 's/.*v([0-9][^ ]*).*/\1/')
  tap="$logs/$version.tap"
  echo "=== nats-server $version ($bin): ${#suites[@]} wire suites"
  start=$(date +%s)
  # timeout puts itself and the tests in a process group of their own, and signals all of it.
  NATS_SERVER_BIN="$bin" timeout --kill-after=30 "$TIMEOUT" \
    node --import tsx --test --test-concurrency=1 --test-timeout=300000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "${suites[@]}" &
  child=$!
  # A signal interrupts wait; wait again for the tests to stop.
  while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=""
  secs=$(($(date +%s) - start))
  count() { local n; n=$(grep -E "^# $1 [0-9]+" "$tap" 2>/dev/null | tail -n 1 | awk '{print $3}'); echo "${n:-?}"; }
  line=$(printf '%-8s pass %s, fail %s, skipped %s, cancelled %s; %dm%02ds' \
    "$version" "$(count pass)" "$(count fail)" "$(count skipped)" "$(count cancelled)" $((secs / 60)) $((secs % 60)))
  if [ "$interrupted" = 1 ]; then
    line="$line; INTERRUPTED"
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    line="$line; TIMED OUT after ${TIMEOUT} s"
  fi
  if [ "$rc" != 0 ]; then
    failed=1
    line="$line: FAILED"
    [ "$interrupted" = 1 ] ||
      while IFS= read -r t; do line="$line"$'\n'"           $t"; done < <(failing_tests "$tap" | head -n 40)
  else
    line="$line: ok"
  fi
  summary+=("$line")
done

echo
echo "=== wire suites per server (TAP logs in $logs)"
printf '%s\n' "${summary[@]}"
[ "$interrupted" = 0 ] || exit 130
exit $failed
