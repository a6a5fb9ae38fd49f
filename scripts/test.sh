#!/usr/bin/env bash
# Runs every module's tests with the race detector. Extra arguments go to
# `go test`. The end-to-end tests in tests/ build the real binaries
# themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
modules=(protocol clients/parley libs services/auth services/presence services/messaging services/file services/mediarelay services/rendezvous gateway clients standalone tests)
failed=0
for m in "${modules[@]}"; do
  echo "=== $m"
  if ! (cd "$m" && go test -race -count=1 -timeout 15m "$@" ./...); then
    failed=1
  fi
done
if [ $failed -ne 0 ]; then
  echo "FAIL: some modules failed"
  exit 1
fi
echo "all modules passed"
