#!/usr/bin/env bash
# Parley's benchmarks (make bench): idle connections per gateway (memory per
# connection over TCP, TLS and WebSocket, up to 100,000 connections over six
# gateways), password logins per second, then messaging (persisted direct
# messages per second and public-room fan-out, with latencies). `make bench`
# builds the Parley binaries into bin/ first; this script adds nats-server,
# connload, connbench and msgbench, then runs bench/cmd/connbench and
# bench/cmd/msgbench, which start everything as separate processes on
# 127.0.0.1 and tear it all down at the end.
#
#   BENCH_QUICK=1 scripts/bench.sh      small sizes (~2,000 connections), a smoke test
#   BENCH_ONLY=tcp,logins scripts/bench.sh   only some scenarios (tcp, tls, ws, tcp-multi,
#                                            logins, msg-direct, msg-room)
#   BENCH_ARGS='-settle 20s' scripts/bench.sh       more connbench flags
#   MSGBENCH_ARGS='-messaging 2' scripts/bench.sh   more msgbench flags
#
# The reports are printed and written to bench/results/latest.txt
# (connections, logins) and bench/results/messaging.txt. The full run takes
# 15-25 minutes on 2 cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$root/bin
mkdir -p "$bin" bench/results
GO=${GO:-go}

for b in gateway auth presence messaging; do
	if [[ ! -x $bin/$b ]]; then
		echo "bench: $bin/$b missing: run 'make build' (or 'make bench')" >&2
		exit 1
	fi
done

echo "bench: building nats-server, connload, connbench, gatewayprof, msgbench" >&2
(cd bench && $GO build -o "$bin/nats-server" github.com/nats-io/nats-server/v2)
(cd bench && $GO build -o "$bin/connload" ./cmd/connload)
(cd bench && $GO build -o "$bin/connbench" ./cmd/connbench)
(cd bench && $GO build -o "$bin/gatewayprof" ./cmd/gatewayprof)
(cd bench && $GO build -o "$bin/msgbench" ./cmd/msgbench)

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

# BENCH_ONLY names scenarios of both tools: split it. Empty runs everything.
conn_only=() msg_only=()
IFS=, read -ra kinds <<<"${BENCH_ONLY:-}"
for k in "${kinds[@]}"; do
	k=${k// /}
	case $k in
	"") ;;
	msg-*) msg_only+=("$k") ;;
	*) conn_only+=("$k") ;;
	esac
done
run_conn=1 run_msg=1
if ((${#conn_only[@]} + ${#msg_only[@]} > 0)); then
	((${#conn_only[@]} > 0)) || run_conn=0
	((${#msg_only[@]} > 0)) || run_msg=0
fi

if ((run_conn)); then
	args=(-bin "$bin" -out bench/results/latest.txt)
	if [[ ${BENCH_QUICK:-} == 1 ]]; then
		args+=(-quick)
	fi
	if ((${#conn_only[@]} > 0)); then
		args+=(-only "$(IFS=,; echo "${conn_only[*]}")")
	fi
	# shellcheck disable=SC2206 # BENCH_ARGS is split on purpose
	args+=(${BENCH_ARGS:-})
	"$bin/connbench" "${args[@]}"
fi

if ((run_msg)); then
	args=(-bin "$bin" -out bench/results/messaging.txt)
	if [[ ${BENCH_QUICK:-} == 1 ]]; then
		args+=(-quick)
	fi
	if ((${#msg_only[@]} > 0)); then
		args+=(-only "$(IFS=,; echo "${msg_only[*]}")")
	fi
	# shellcheck disable=SC2206 # MSGBENCH_ARGS is split on purpose
	args+=(${MSGBENCH_ARGS:-})
	"$bin/msgbench" "${args[@]}"
fi
