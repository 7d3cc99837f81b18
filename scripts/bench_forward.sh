#!/usr/bin/env bash
# Forward proxy figures (issue 9), measured the bench's way (its lib: peers, pinning, the nginx backend):
#   1. bulk through CONNECT tunnels: 4 curl clients, each `curl -p -x PROXY` (CONNECT, then HTTP inside
#      the tunnel) downloading 1 MiB N times on one tunnel: MiB/s, and MiB per CPU-second of the proxy's
#      process tree (the figure that stays comparable when the load generator saturates)
#   2. small requests in absolute-form (`GET http://backend/small`, keep-alive on both sides): wrk -c 32
#      with a script that writes absolute-form targets: requests/s, and requests per proxy CPU-second
#   3. with --h2, for gatehouse only: 1. over HTTP/2 (prior knowledge), each of the 4 clients one CONNECT
#      stream on a connection of its own (scripts/bench_h2_connect.py: curl 7.88 cannot speak HTTP/2 to a
#      proxy); the Python client saturates first, so compare MiB per proxy CPU-second with line 1
# for gatehouse, squid and tinyproxy (the Debian packages), one after the other, each pinned to one core:
#   scripts/bench_forward.sh [--h2] [N]   BENCH=path/to/shared/bench (default: ../shared/bench beside the repo)
set -u  # not -e: the bench lib is written for scripts without it
here=$(cd "$(dirname "$0")/.." && pwd)
h2=0
if [[ ${1:-} == --h2 ]]; then
    h2=1
    shift
fi
n=${1:-200}
# shellcheck source=scripts/bench_lib.sh
. "$here/scripts/bench_lib.sh"
bench_init fwd
chmod 755 "$TMP" # squid and tinyproxy drop to their own users when started as root

bulk_line() { # PEER LABEL BYTES T0 T1 TICKS: one result line (wall MiB/s and MiB per proxy CPU-second)
    awk -v p="$1" -v l="$2" -v b="$3" -v t0="$4" -v t1="$5" -v c="$6" -v hz="$hz" 'BEGIN {
        mib = b / 1048576; secs = t1 - t0; cpu = c / hz
        printf "%-10s %-13s %.0f MiB in %.1f s  %.0f MiB/s wall  %.0f MiB per proxy CPU-second (cpu %.2f s)\n",
            p, l, mib, secs, mib / secs, (cpu > 0 ? mib / cpu : 0), cpu }'
}

start_gatehouse() { # DIR PORT
    cat >"$1/gatehouse.conf" <<EOF
workers 1
log_level warn
max_connections 20000
listen 127.0.0.1:$2$( ((h2)) && echo ' protocols=http/1.1,h2')
site proxy {
    listen 127.0.0.1:$2
    forward {
        rule allow host=127.0.0.1 port=$BACKEND_PORT to=127.0.0.1/32
        max_tunnels_per_ip 0
    }
}
EOF
    taskset -c "$PROXY_CPU" "$GATEHOUSE_BIN" -c "$1/gatehouse.conf" >"$1/log" 2>&1 &
    PEER_PID=$!
}

start_squid() { # DIR PORT
    chmod 777 "$1"
    cat >"$1/squid.conf" <<EOF
http_port 127.0.0.1:$2
pid_filename $1/squid.pid
cache_log $1/cache.log
access_log none
cache deny all
cache_mem 8 MB
http_access allow all
shutdown_lifetime 0 seconds
coredump_dir $1
logfile_rotate 0
pinger_enable off
max_filedescriptors 16384
$( ((IS_ROOT)) && echo "cache_effective_user proxy")
EOF
    taskset -c "$PROXY_CPU" squid -N -f "$1/squid.conf" >"$1/log" 2>&1 &
    PEER_PID=$!
}

start_tinyproxy() { # DIR PORT
    chmod 777 "$1"
    cat >"$1/tinyproxy.conf" <<EOF
Port $2
Listen 127.0.0.1
Timeout 600
MaxClients 1000
Allow 127.0.0.1
LogLevel Error
LogFile "$1/tinyproxy.log"
PidFile "$1/tinyproxy.pid"
DisableViaHeader Yes
$( ((IS_ROOT)) && printf 'User nobody\nGroup nogroup\n')
EOF
    taskset -c "$PROXY_CPU" tinyproxy -d -c "$1/tinyproxy.conf" >"$1/log" 2>&1 &
    PEER_PID=$!
}

cat >"$TMP/abs.lua" <<EOF
-- absolute-form requests: the target names the origin, the proxy forwards in origin-form
request = function() return wrk.format("GET", "http://127.0.0.1:$BACKEND_PORT/small") end
EOF

for peer in gatehouse squid tinyproxy; do
    case $peer in
        gatehouse) [[ -x $GATEHOUSE_BIN ]] || continue ;;
        *) command -v "$peer" >/dev/null || [[ -x /usr/sbin/$peer ]] || continue ;;
    esac
    PATH=$PATH:/usr/sbin
    d="$TMP/$peer"
    mkdir -p "$d"
    alloc_port
    port=$REPLY
    "start_$peer" "$d" "$port"
    pid=$PEER_PID
    STARTED_PIDS+=("$pid")
    for _ in $(seq 100); do
        curl -s -o /dev/null -x "http://127.0.0.1:$port" "http://127.0.0.1:$BACKEND_PORT/small" && break
        sleep 0.1
    done
    pin_tree "$pid" "$PROXY_CPU"
    hz=$(getconf CLK_TCK)

    # 1. bulk through CONNECT tunnels
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    clients=()
    for i in 1 2 3 4; do
        taskset -c "$LOAD_CPU" timeout 300 curl -s -p -x "http://127.0.0.1:$port" -o /dev/null \
            -w '%{size_download}\n' "http://127.0.0.1:$BACKEND_PORT/large?[1-$n]" >"$d/bulk.$i" 2>&1 &
        clients+=($!)
    done
    wait "${clients[@]}"
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$pid")
    bulk_line "$peer" connect-bulk "$(cat "$d"/bulk.* | awk '{ s += $1 } END { print s + 0 }')" "$t0" "$t1" $((c1 - c0))

    # 3. (--h2) bulk through CONNECT streams over HTTP/2: the same downloads, gatehouse only
    if ((h2)) && [[ $peer == gatehouse ]]; then
        c0=$(cpu_ticks "$pid")
        t0=$(date +%s.%N)
        clients=()
        for i in 1 2 3 4; do
            taskset -c "$LOAD_CPU" timeout 300 "$PYTHON" "$here/scripts/bench_h2_connect.py" "$port" \
                "127.0.0.1:$BACKEND_PORT" "$n" /large >"$d/h2bulk.$i" 2>&1 &
            clients+=($!)
        done
        wait "${clients[@]}"
        t1=$(date +%s.%N)
        c1=$(cpu_ticks "$pid")
        bulk_line "$peer" connect-h2 "$(cat "$d"/h2bulk.* | awk '/^[0-9]+$/ { s += $1 } END { print s + 0 }')" "$t0" \
            "$t1" $((c1 - c0))
    fi

    # 2. small requests in absolute-form
    taskset -c "$LOAD_CPU" wrk -t1 -c32 -d2s -s "$TMP/abs.lua" "http://127.0.0.1:$port/" >/dev/null 2>&1
    c0=$(cpu_ticks "$pid")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c32 -d10s -s "$TMP/abs.lua" "http://127.0.0.1:$port/" 2>&1)
    c1=$(cpu_ticks "$pid")
    reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/ { $1 = $1; print }' <<<"$out" | tr '\n' ' ')
    awk -v p="$peer" -v r="$reqs" -v rps="$rps" -v c="$((c1 - c0))" -v hz="$hz" -v e="$errs" 'BEGIN {
        cpu = c / hz
        printf "%-10s abs-small     %d requests  %.0f req/s wall  %.0f req per proxy CPU-second (cpu %.2f s) %s\n",
            p, r, rps, (cpu > 0 ? r / cpu : 0), cpu, e }'
    stop_trees "$pid"
    forget_pid "$pid"
done
