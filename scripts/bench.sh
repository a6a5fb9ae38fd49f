#!/usr/bin/env bash
# Parley's benchmarks (make bench): idle connections per gateway (memory per
# connection over TCP, TLS and WebSocket, up to 100,000 connections over six
# gateways) and password logins per second. `make bench` builds the Parley
# binaries into bin/ first; this script adds nats-server, connload and
# connbench, then runs bench/cmd/connbench, which starts everything as
# separate processes on 127.0.0.1 and tears it all down at the end.
#
#   BENCH_QUICK=1 scripts/bench.sh      small sizes (~2,000 connections), a smoke test
#   BENCH_ONLY=tcp,logins scripts/bench.sh   only some scenarios (tcp, tls, ws, tcp-multi, logins)
#   BENCH_ARGS='-settle 20s' scripts/bench.sh   more connbench flags
#
# The report is printed and written to bench/results/latest.txt. The full
# run takes 10-20 minutes on 2 cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$root/bin
mkdir -p "$bin" bench/results
GO=${GO:-go}

for b in gateway auth presence; do
	if [[ ! -x $bin/$b ]]; then
		echo "bench: $bin/$b missing: run 'make build' (or 'make bench')" >&2
		exit 1
	fi
done

echo "bench: building nats-server, connload, connbench, gatewayprof" >&2
(cd bench && $GO build -o "$bin/nats-server" github.com/nats-io/nats-server/v2)
(cd bench && $GO build -o "$bin/connload" ./cmd/connload)
(cd bench && $GO build -o "$bin/connbench" ./cmd/connbench)
(cd bench && $GO build -o "$bin/gatewayprof" ./cmd/gatewayprof)

command -v redis-server >/dev/null || {
	echo "bench: redis-server not found (make deps installs it)" >&2
	exit 1
}

# One process may hold at most `ulimit -Hn` open files; connbench keeps every
# process under it (19,000 connections per gateway at most) but needs the
# soft limit raised to the hard one, which the children inherit.
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < 20000)); then
	echo "bench: warning: open-file hard limit is $hard; scenarios above ~$((hard - 1000)) connections per process will fail" >&2
fi
ulimit -n "$hard"
echo "bench: open files: $(ulimit -n) (hard $hard)" >&2

args=(-bin "$bin" -out bench/results/latest.txt)
if [[ ${BENCH_QUICK:-} == 1 ]]; then
	args+=(-quick)
fi
if [[ -n ${BENCH_ONLY:-} ]]; then
	args+=(-only "$BENCH_ONLY")
fi
# shellcheck disable=SC2206 # BENCH_ARGS is split on purpose
args+=(${BENCH_ARGS:-})
exec "$bin/connbench" "${args[@]}"
