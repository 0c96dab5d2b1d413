#!/usr/bin/env bash
# Builds the nats-server releases the tests run against, and the nats CLI, with `go install`, into
# a cache folder outside the clone (a fresh clone in CI reuses what an earlier run built):
#   $NATS_BACKUP_BIN_CACHE (default ~/.cache/nats-backup/bin)/nats-server-<version>/nats-server
#   $NATS_BACKUP_BIN_CACHE/natscli-<version>/nats
# The versions are asked of the Go module proxy each run (the newest release of each minor in
# SERVER_MINORS, and the newest nats CLI but those in CLI_SKIP), and written to
# $NATS_BACKUP_BIN_CACHE/versions.env, which `npm run test:servers` reads. When the proxy cannot
# be reached, the versions pinned by the last run are built (or reused) instead.
#
# Usage: scripts/nats-binaries.sh            build what is missing, print the versions
#        scripts/nats-binaries.sh --offline  use versions.env as it is, do not ask the proxy
set -euo pipefail

export PATH="$PATH:/usr/local/go/bin"
SERVER_MINORS="2.15 2.14 2.12 2.10"
# v0.5.1 is listed by the proxy but is not a usable release for these tests (issue 11).
CLI_SKIP="v0.5.1"
CACHE="${NATS_BACKUP_BIN_CACHE:-$HOME/.cache/nats-backup/bin}"
PINNED="$CACHE/versions.env"

offline=0
case "${1:-}" in
  --offline) offline=1 ;;
  "") ;;
  *) echo "usage: $0 [--offline]" >&2; exit 2 ;;
esac

command -v go >/dev/null 2>&1 || { echo "nats-binaries: go not found (looked in PATH and /usr/local/go/bin)" >&2; exit 1; }
mkdir -p "$CACHE"

# Release tags only: v2.14.10, not v2.14.0-RC.1, -preview.1, -binary or -fips.
releases() { tr ' ' '\n' | grep -E '^v[0-9]+\.[0-9]+\.[0-9]+$' | sed 's/^v//' | sort -V; }

resolve_versions() {
  local all cli_all
  all=$(go list -m -versions github.com/nats-io/nats-server/v2 | releases) || return 1
  cli_all=$(go list -m -versions github.com/nats-io/natscli | releases) || return 1
  server_versions=""
  local minor newest
  for minor in $SERVER_MINORS; do
    newest=$(printf '%s\n' "$all" | grep -E "^${minor//./\\.}\.[0-9]+$" | tail -n 1 || true)
    [ -n "$newest" ] || { echo "nats-binaries: the proxy lists no nats-server $minor release" >&2; return 1; }
    server_versions="$server_versions $newest"
  done
  server_versions="${server_versions# }"
  cli_version=$(printf '%s\n' "$cli_all" | grep -vxF -f <(printf '%s\n' $CLI_SKIP | sed 's/^v//') | tail -n 1 || true)
  [ -n "$cli_version" ] || { echo "nats-binaries: the proxy lists no usable natscli release" >&2; return 1; }
}

if [ "$offline" = 0 ] && resolve_versions; then
  {
    echo "# Written by scripts/nats-binaries.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) from the Go module proxy."
    echo "# Newest release first; npm test runs on the first, npm run test:servers on the others and the nats-server on PATH."
    echo "NATS_SERVER_VERSIONS=\"$server_versions\""
    echo "NATS_CLI_VERSION=\"$cli_version\""
  } >"$PINNED.tmp"
  mv "$PINNED.tmp" "$PINNED"
elif [ -f "$PINNED" ]; then
  [ "$offline" = 1 ] || echo "nats-binaries: could not ask the Go module proxy; using the versions pinned in $PINNED" >&2
  # shellcheck source=/dev/null
  . "$PINNED"
  server_versions="$NATS_SERVER_VERSIONS"
  cli_version="$NATS_CLI_VERSION"
else
  echo "nats-binaries: no versions: the Go module proxy did not answer and $PINNED does not exist" >&2
  exit 1
fi

# go install into a temporary GOBIN beside the target, then a rename: an interrupted build never
# leaves a half-written binary where the tests look.
build() { # <label> <module path>@<version> <target folder> <binary name>
  local label=$1 module=$2 dir=$3 name=$4
  if [ -x "$dir/$name" ]; then
    echo "nats-binaries: $label: cached, $dir/$name"
    return 0
  fi
  local tmp start
  tmp=$(mktemp -d "$CACHE/.build-XXXXXX")
  start=$(date +%s)
  echo "nats-binaries: $label: go install $module"
  if ! GOBIN="$tmp" go install "$module"; then
    rm -rf "$tmp"
    echo "nats-binaries: $label: go install $module failed" >&2
    return 1
  fi
  mkdir -p "$dir"
  mv -f "$tmp/$name" "$dir/$name"
  rm -rf "$tmp"
  echo "nats-binaries: $label: built in $(($(date +%s) - start)) s, $dir/$name"
}

for v in $server_versions; do
  build "nats-server $v" "github.com/nats-io/nats-server/v2@v$v" "$CACHE/nats-server-$v" nats-server
done
build "nats CLI $cli_version" "github.com/nats-io/natscli/nats@v$cli_version" "$CACHE/natscli-$cli_version" nats

for v in $server_versions; do
  "$CACHE/nats-server-$v/nats-server" --version
done
"$CACHE/natscli-$cli_version/nats" --version
echo "nats-binaries: versions pinned in $PINNED"
