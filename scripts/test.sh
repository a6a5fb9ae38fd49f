#!/usr/bin/env bash
# Runs every module's tests (go.work's and deploy/miniosetup) with the race detector. Extra arguments go to
# `go test`. The end-to-end tests in tests/ build the real binaries
# themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
modules=(protocol clients/parley libs services/auth services/presence services/messaging services/file services/mediarelay services/rendezvous gateway clients standalone tests)
failed=0
for m in "${modules[@]}"; do
  echo "=== $m"
  # tests/ holds the end-to-end packages (e2e, natlab, buildinfo), each
  # running real binaries; buildinfo links nine of them. One package at a
  # time there: the call tests judge audio arriving in real time, and a
  # neighbour package's builds on the same two cores make packets late.
  par=()
  [ "$m" = tests ] && par=(-p 1)
  if ! (cd "$m" && go test -race -count=1 -timeout 15m "${par[@]}" "$@" ./...); then
    failed=1
  fi
done
# Modules outside go.work (GOWORK=off): deploy/miniosetup, the MinIO user
# setup shipped in the MinIO image, tested against the real MinIO server.
# (deploy/yamlcheck's tests run in deploy/check.sh.)
for m in deploy/miniosetup; do
  echo "=== $m"
  if ! (cd "$m" && GOWORK=off go test -race -count=1 -timeout 5m "$@" ./...); then
    failed=1
  fi
done
if [ $failed -ne 0 ]; then
  echo "FAIL: some modules failed"
  exit 1
fi
echo "all modules passed"
