#!/usr/bin/env bash
# Regenerates the protobuf Go code, then the message reference of
# docs/protocol.md (§13) from it (libs/cmd/protodoc). Two schemas, two
# modules: the client protocol protocol/proto/parley/v1/parley.proto becomes
# protocol/parleyv1 (module github.com/parleychat/parley/protocol, which the
# SDK and third parties depend on); the services' internal schema
# libs/proto/parley/internal/v1/internal.proto, which imports the client
# one, becomes libs/proto/internalv1. With --check it generates into a
# temporary tree and fails when the committed code or the reference differs
# (stale or hand-edited), printing the diff. It also writes NATS's
# permission file k8s/base/nats-auth.conf from libs/subject's table
# (libs/cmd/natsauth), and the same file into the Helm chart
# (deploy/helm/parley/files/nats-auth.conf: Helm reads only files inside
# the chart, and a copy, unlike a symlink, survives the chart being copied
# or packaged anywhere), or with --check fails when either is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
check=false
[ "${1:-}" = "--check" ] && check=true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# gen MODULE_DIR PROTO_ROOT: generates every .proto under PROTO_ROOT into
# $tmp/MODULE_DIR, with both schema roots on the include path.
gen() {
  local dir=$1 root=$2 protos
  protos=$(cd "$root" && find . -name '*.proto' | sed 's|^\./||' | sort)
  mkdir -p "$tmp/$dir"
  protoc -I protocol/proto -I libs/proto --go_out="$tmp/$dir" \
    --go_opt=module="github.com/parleychat/parley/$dir" $protos
}
gen protocol protocol/proto
gen libs libs/proto

status=0
for dir in protocol libs; do
  committed=$(cd "$dir" && find . -name '*.pb.go' | sort)
  fresh=$(cd "$tmp/$dir" && find . -name '*.pb.go' | sort)
  if ! $check; then
    while IFS= read -r f; do
      [ -n "$f" ] && rm -f "$dir/$f"
    done <<<"$committed"
    (cd "$tmp/$dir" && find . -name '*.pb.go' -exec cp --parents {} "$OLDPWD/$dir/" \;)
    continue
  fi
  while IFS= read -r f; do
    [ -z "$f" ] && continue
    if ! diff -u "$dir/$f" "$tmp/$dir/$f" >/dev/null 2>&1; then
      echo "stale generated code: $dir/${f#./} (run: make generate)"
      diff -u "$dir/$f" "$tmp/$dir/$f" | head -40 || true
      status=1
    fi
  done <<<"$fresh"
  if [ "$committed" != "$fresh" ]; then
    echo "generated file set differs in $dir:"; diff <(echo "$committed") <(echo "$fresh") || true
    status=1
  fi
done

if $check; then
  (cd libs && go run ./cmd/protodoc -doc ../docs/protocol.md -check) || status=1
  for out in k8s/base/nats-auth.conf deploy/helm/parley/files/nats-auth.conf; do
    (cd libs && go run ./cmd/natsauth -o "../$out" -check) || status=1
  done
  [ $status -eq 0 ] && echo "generated code is up to date"
  exit $status
fi
(cd libs && go run ./cmd/protodoc -doc ../docs/protocol.md)
for out in k8s/base/nats-auth.conf deploy/helm/parley/files/nats-auth.conf; do
  (cd libs && go run ./cmd/natsauth -o "../$out")
done
