# Shared by the scripts that measure what ../shared/bench/run has no scenario for (bench_h2.sh,
# bench_forward.sh): the bench's own lib (peers, pinning, process bookkeeping), one temp dir cleaned
# up on exit, the plain nginx origin; the proxy's CPU time comes from script_lib.sh. Sourced, after `here` is set:
#   bench_init NAME      BENCH=path/to/shared/bench (default: ../shared/bench beside the repo)
BENCH=${BENCH:-$here/../shared/bench}
GATEHOUSE_BIN=${GATEHOUSE_BIN:-$here/build/gatehouse}
# shellcheck source=/dev/null
. "$BENCH/lib/common.sh"
# shellcheck source=/dev/null
. "$BENCH/lib/peers.sh"
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
NOFILE=$(ulimit -Hn)
ulimit -n "$NOFILE"
PYTHON=python3
# shellcheck source=scripts/script_lib.sh
. "$here/scripts/script_lib.sh" # cpu_ticks, make_cert (its script_init is not used: the bench lib cleans up)

bench_init() { # NAME: TMP made (removed on exit) and the origin started on BACKEND_PORT
    TMP=$(mktemp -d "/tmp/bench-$1-XXXXXX")
    trap cleanup EXIT
    mkdir -p "$TMP/backend"
    alloc_port
    BACKEND_PORT=$REPLY
    backend_start "$TMP/backend" "$BACKEND_PORT"
    STARTED_PIDS+=("$PEER_PID")
    sleep 0.5
}
