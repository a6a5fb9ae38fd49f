#!/usr/bin/env bash
# Parley's benchmarks (make bench): idle connections per gateway (memory per
# connection over TCP, TLS and WebSocket, up to 100,000 connections over six
# gateways), password logins per second, then messaging (persisted direct
# messages per second and public-room fan-out, with latencies), then file
# transfer (upload and download throughput through the gateway against
# MinIO directly, the gateway's and file service's memory during a 5 GiB
# upload, chat latency during transfers). `make bench` builds the Parley
# binaries into bin/ first; this script adds nats-server, connload,
# connbench, msgbench and filebench, then runs bench/cmd/connbench,
# bench/cmd/msgbench and bench/cmd/filebench, which start everything as
# separate processes on 127.0.0.1 and tear it all down at the end.
#
#   BENCH_QUICK=1 scripts/bench.sh      small sizes (~2,000 connections, 256 MiB files), a smoke test
#   BENCH_ONLY=tcp,logins scripts/bench.sh   only some scenarios (tcp, tls, ws, tcp-multi,
#                                            reconnect-storm,
#                                            logins, msg-direct, msg-room, msg-parleyd,
#                                            msg-floor, msg-overload, msg-tls,
#                                            file-up, file-down, file-mem, file-chat,
#                                            voice-micro, calls, nat)
#   CALLBENCH_ARGS='-calls 100,300' scripts/bench.sh  more callbench flags
#   BENCH_ARGS='-settle 20s' scripts/bench.sh       more connbench flags
#   MSGBENCH_ARGS='-messaging 2' scripts/bench.sh   more msgbench flags
#   FILEBENCH_ARGS='-size 2GiB' scripts/bench.sh    more filebench flags
#
# The reports are printed and written to bench/results/latest.txt
# (connections, logins), bench/results/messaging.txt (separate processes),
# bench/results/messaging-parleyd.txt (one process), bench/results/overload.txt
# (the room against a gateway held to 0.05 cores, as root), bench/results/messaging-tls.txt
# (the room over TCP and TLS side by side), bench/results/floor.txt
# (the machine's floor for the same traffic, no Parley) and
# bench/results/files.txt; the voice packet's, the jitter buffer's and the Opus codec's
# micro-benchmarks (go test -bench) go to bench/results/voice.txt; the voice
# calls (bench/cmd/callbench: N one-to-one calls' packets through the
# gateways' UDP ports and, as the peer, through coturn; mouth-to-ear through
# the SDK; group-call bandwidth) to bench/results/calls.txt (about 4
# minutes; coturn's turnserver is installed with apt-get when missing); the
# NAT lab's (tests/natlab, as root: network namespaces and nftables NATs,
# real parleyd and parley processes): time to a direct pair per NAT pair
# with first-attempt success, the birthday technique's success rate, direct
# file throughput against plain TCP over the same link and direct message
# round trips, to bench/results/nat.txt. The full run takes 35-45 minutes on 2 cores;
# filebench needs ~12 GiB free in $TMPDIR (it checks first).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$root/bin
mkdir -p "$bin" bench/results
GO=${GO:-go}

for b in gateway auth presence messaging file media-relay; do
	if [[ ! -x $bin/$b ]]; then
		echo "bench: $bin/$b missing: run 'make build' (or 'make bench')" >&2
		exit 1
	fi
done

echo "bench: building nats-server, connload, connbench, gatewayprof, msgbench, filebench, relayfloor, callbench" >&2
(cd bench && $GO build -o "$bin/nats-server" github.com/nats-io/nats-server/v2)
(cd bench && $GO build -o "$bin/connload" ./cmd/connload)
(cd bench && $GO build -o "$bin/connbench" ./cmd/connbench)
(cd bench && $GO build -o "$bin/gatewayprof" ./cmd/gatewayprof)
(cd bench && $GO build -o "$bin/msgbench" ./cmd/msgbench)
(cd bench && $GO build -o "$bin/filebench" ./cmd/filebench)
(cd bench && $GO build -o "$bin/relayfloor" ./cmd/relayfloor)
(cd bench && $GO build -o "$bin/callbench" ./cmd/callbench)

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
conn_only=() msg_only=() file_only=() voice_only=() run_calls=0 calls_named=0 nat_named=0
IFS=, read -ra kinds <<<"${BENCH_ONLY:-}"
for k in "${kinds[@]}"; do
	k=${k// /}
	case $k in
	"") ;;
	msg-*) msg_only+=("$k") ;;
	file-*) file_only+=("$k") ;;
	voice-*) voice_only+=("$k") ;;
	calls) calls_named=1 ;;
	nat) nat_named=1 ;;
	*) conn_only+=("$k") ;;
	esac
done
run_conn=1 run_msg=1 run_file=1 run_voice=1 run_calls=1 run_nat=1
if ((${#conn_only[@]} + ${#msg_only[@]} + ${#file_only[@]} + ${#voice_only[@]} + calls_named + nat_named > 0)); then
	run_calls=$calls_named
	run_nat=$nat_named
	((${#conn_only[@]} > 0)) || run_conn=0
	((${#msg_only[@]} > 0)) || run_msg=0
	((${#file_only[@]} > 0)) || run_file=0
	((${#voice_only[@]} > 0)) || run_voice=0
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
	# msg-direct and msg-room run against the separate processes (and again
	# against parleyd, one process, unless BENCH_ONLY leaves msg-parleyd
	# out); msg-floor measures what the machine does for the same traffic
	# with no Parley at all (bench/cmd/relayfloor).
	msgbench_only=() run_parleyd=1 run_floor=1 run_overload=1 run_tls=1
	for k in "${msg_only[@]}"; do
		case $k in
		msg-direct | msg-room) msgbench_only+=("$k") ;;
		esac
	done
	if ((${#msg_only[@]} > 0)); then
		[[ " ${msg_only[*]} " == *" msg-parleyd "* ]] || run_parleyd=0
		[[ " ${msg_only[*]} " == *" msg-floor "* ]] || run_floor=0
		[[ " ${msg_only[*]} " == *" msg-overload "* ]] || run_overload=0
		[[ " ${msg_only[*]} " == *" msg-tls "* ]] || run_tls=0
	fi
	args=(-bin "$bin")
	if [[ ${BENCH_QUICK:-} == 1 ]]; then
		args+=(-quick)
	fi
	if ((${#msgbench_only[@]} > 0)); then
		args+=(-only "$(IFS=,; echo "${msgbench_only[*]}")")
	fi
	# shellcheck disable=SC2206 # MSGBENCH_ARGS is split on purpose
	args+=(${MSGBENCH_ARGS:-})
	if ((${#msg_only[@]} == 0 || ${#msgbench_only[@]} > 0)); then
		# The room over TCP and WebSocket at once (half the members each,
		# each transport on its own gateway: CPU per delivery side by side,
		# with the ratio), members repairing what they missed from history
		# after each level (the overload check: all connected, none lost);
		# msg-direct runs relayfloor -jetstream right after itself at the
		# same rates (-floor) and prints the ratios to it.
		room=(-room-transports tcp,ws -room-repair)
		if [[ ${BENCH_QUICK:-} != 1 ]]; then
			room+=(-room-rates 100,200,300,400)
		fi
		"$bin/msgbench" "${room[@]}" "${args[@]}" -out bench/results/messaging.txt
	fi
	if ((run_parleyd)); then
		# (the floor was measured beside the separate processes' msg-direct)
		"$bin/msgbench" "${args[@]}" -parleyd -floor=false -out bench/results/messaging-parleyd.txt
	fi
	if ((run_overload)); then
		# The overload check (issue 14 §2): the room members' gateway held to
		# 0.05 cores (a CPU cgroup, root only) so it, not the store, falls
		# behind; WebSocket members (the transport that used to be cut all
		# at once), senders on a gateway of their own; on a quiet machine it
		# sustains 240/s (all live), and 480/s is twice that (most shed and
		# read back from history: ~3 minutes of repair). Every member must
		# stay connected and every stored message come live or from history.
		if [[ $(id -u) == 0 ]]; then
			"$bin/msgbench" -bin "$bin" -only msg-room -members "$([[ ${BENCH_QUICK:-} == 1 ]] && echo 100 || echo 1000)" \
				-gateways 2 -senders-apart -room-transports ws -room-repair -member-gateway-cpu 0.05 \
				-room-rates 240,480 -room-duration 10s -drain 10s -out bench/results/overload.txt
		else
			echo "bench: msg-overload skipped: limiting the gateway's CPU needs root (a cgroup)" >&2
		fi
	fi
	if ((run_tls)); then
		# The room over TCP and TLS 1.3 at once (half the members each, each
		# transport on a gateway of its own, the senders on a third): the
		# TLS gateway protects the records itself and writes them without
		# waiting, as TCP does (TryWrite), so the CPU per delivery compares.
		tls=(-only msg-room -gateways 3 -senders-apart -room-transports tcp,tls -room-repair)
		if [[ ${BENCH_QUICK:-} == 1 ]]; then
			tls+=(-quick -members 100)
		else
			tls+=(-room-rates 100,200,300,400)
		fi
		"$bin/msgbench" -bin "$bin" "${tls[@]}" -out bench/results/messaging-tls.txt
	fi
	if ((run_floor)); then
		floor=(-duration 10s)
		if [[ ${BENCH_QUICK:-} == 1 ]]; then
			floor=(-duration 3s -pairs 20)
		fi
		{
			"$bin/relayfloor" "${floor[@]}" -rates 5000,10000,20000,40000
			echo
			"$bin/relayfloor" "${floor[@]}" -jetstream -bin "$bin" -rates 5000,10000,15000,20000
			echo
			"$bin/relayfloor" -duration "${floor[1]}" -room 1000 -rates 20,50,100,200,400
		} | tee bench/results/floor.txt
	fi
fi

if ((run_file)); then
	# MinIO runs as a separate server (.tools/bin/minio, built by
	# scripts/deps.sh; `make bench` runs deps first).
	args=(-bin "$bin" -out bench/results/files.txt)
	if [[ ${BENCH_QUICK:-} == 1 ]]; then
		args+=(-quick)
	fi
	if ((${#file_only[@]} > 0)); then
		args+=(-only "$(IFS=,; echo "${file_only[*]}")")
	fi
	# shellcheck disable=SC2206 # FILEBENCH_ARGS is split on purpose
	args+=(${FILEBENCH_ARGS:-})
	"$bin/filebench" "${args[@]}"
fi

if ((run_voice)); then
	# Voice, per packet: sealing, opening and the replay check
	# (protocol/media), the SDK's jitter buffer (a push and a pop) and its Opus
	# encoder and decoder (a 20 ms frame).
	{
		(cd protocol && go test -run '^$' -bench . -benchmem -count 3 ./media)
		(cd clients/parley && go test -run '^$' -bench . -benchmem -count 3 ./internal/jitter ./voice)
	} | tee bench/results/voice.txt
fi

if ((run_calls)); then
	# coturn's turnserver is the peer TURN relay (scripts/deps.sh installs
	# it for make test, where the TURN client is tested; this covers a
	# bench run without it). The package's own service stays disabled
	# (/etc/default/coturn).
	if ! command -v turnserver >/dev/null; then
		echo "bench: installing coturn (turnserver) with apt-get" >&2
		SUDO=""
		[ "$(id -u)" -eq 0 ] || SUDO="sudo"
		$SUDO apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends coturn >/dev/null
	fi
	# Voice calls through the real processes (bench/cmd/callbench): load
	# (N one-to-one calls of sealed 50 packet/s legs through the gateway's
	# UDP port), turn (the same packets through coturn, the peer), m2e
	# (mouth-to-ear through the SDK), group (bandwidth per listener).
	args=(-bin "$bin" -out bench/results/calls.txt)
	if [[ ${BENCH_QUICK:-} == 1 ]]; then
		args+=(-quick)
	fi
	# shellcheck disable=SC2206 # CALLBENCH_ARGS is split on purpose
	args+=(${CALLBENCH_ARGS:-})
	"$bin/callbench" "${args[@]}"
fi

if ((run_nat)); then
	# The NAT lab (tests/natlab) needs root for its network namespaces and
	# nftables; scripts/deps.sh installs iproute2, nftables and conntrack.
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench: nat: skipped, the NAT lab needs root" >&2
	else
		n=5
		[[ ${BENCH_QUICK:-} == 1 ]] && n=2
		{
			echo "# NAT lab, $(date -u +%Y-%m-%d), $(nproc) cores; tests/natlab benchmarks, -count $n"
			(cd tests && go test -run '^$' -bench . -benchtime 1x -count "$n" -timeout 30m ./natlab)
		} | tee bench/results/nat.txt
	fi
fi
