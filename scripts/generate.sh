#!/usr/bin/env bash
# Regenerates the protobuf Go code from libs/proto/**/*.proto, then the
# message reference of docs/protocol.md (§13) from it (libs/cmd/protodoc).
# With --check it generates into a temporary tree and fails when the
# committed code or the reference differs (stale or hand-edited), printing
# the diff.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
protos=$(cd libs/proto && find . -name '*.proto' | sed 's|^\./||' | sort)
out=libs
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
(cd libs/proto && protoc -I . --go_out="$( [ "$out" = libs ] && echo ../ || echo "$out")" \
  --go_opt=module=github.com/parleychat/parley/libs $protos)
if [ "${1:-}" != "--check" ]; then
  (cd libs && go run ./cmd/protodoc -doc ../docs/protocol.md)
fi
if [ "${1:-}" = "--check" ]; then
  status=0
  (cd libs && go run ./cmd/protodoc -doc ../docs/protocol.md -check) || status=1
  while IFS= read -r f; do
    rel=${f#"$out"/}
    if ! diff -u "libs/$rel" "$f" >/dev/null; then
      echo "stale generated code: libs/$rel (run: make generate)"
      diff -u "libs/$rel" "$f" | head -40 || true
      status=1
    fi
  done < <(find "$out" -name '*.pb.go')
  committed=$(cd libs && find . -name '*.pb.go' -path './proto/*' | sort)
  fresh=$(cd "$out" && find . -name '*.pb.go' | sort)
  if [ "$committed" != "$fresh" ]; then
    echo "generated file set differs:"; diff <(echo "$committed") <(echo "$fresh") || true
    status=1
  fi
  [ $status -eq 0 ] && echo "generated code is up to date"
  exit $status
fi
