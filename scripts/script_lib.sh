# Shared by the standalone measurement scripts (bench_tcp.sh, bench_pp_accept.sh, bench_ws_idle.sh,
# bench_sandbox.sh): one temp dir and the PIDs started, both cleaned up on exit (processes are
# stopped by PID, never by name), free ports, waiting for a port, a process tree's CPU time, and a
# throw-away certificate. Sourced, after `here` is set:
#   script_init NAME      TMP made; PIDS=() collects what the script starts; cleanup on EXIT
#                         (KEEP_HOOK, when set, is run first: e.g. to copy results out of TMP)

script_init() {
    TMP=$(mktemp -d "/tmp/gatehouse-$1-XXXXXX")
    chmod 711 "$TMP" # servers that drop to other users (hitch, postgres) read their files in it
    PIDS=()
    trap script_cleanup EXIT
    ulimit -n "$(ulimit -Hn)"
}

script_cleanup() {
    local p
    [ -n "${KEEP_HOOK:-}" ] && "$KEEP_HOOK"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # PORT: returns once it accepts (30 s at most: valgrind starts slowly; then the script fails)
    for _ in $(seq 300); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),1).close()" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    exit 1
}

proc_tree() { # PID -> the PID and its descendants
    local out=$1 c
    for c in $(pgrep -P "$1" 2>/dev/null); do out="$out $(proc_tree "$c")"; done
    echo "$out"
}

cpu_ticks() { # PID -> utime+stime of its process tree, in clock ticks (fields 14, 15 of /proc/PID/stat)
    local t=0 p
    for p in $(proc_tree "$1"); do
        t=$((t + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}

make_cert() { # DIR: DIR/cert.pem, DIR/key.pem (P-256, localhost and 127.0.0.1, 2 days) and DIR/both.pem
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/key.pem" \
        -out "$1/cert.pem" -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        2>/dev/null
    cat "$1/cert.pem" "$1/key.pem" >"$1/both.pem"
}
