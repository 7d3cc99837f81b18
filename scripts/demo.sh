#!/usr/bin/env bash
# The `make run` demo: gatehouse on https://127.0.0.1:8443 in front of a small Python origin.
# Runs in the foreground with both logs on the terminal; Ctrl-C stops both. Files go to run/.
set -eu
cd "$(dirname "$0")/.."

GATEHOUSE=${GATEHOUSE:-build/gatehouse}
RUN_DIR=run
origin_pid=
gate_pid=

say() { printf 'demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Stops what this script started, by PID, and waits for it: nothing is left behind.
stop() {
    trap - INT TERM EXIT
    for pid in $gate_pid $origin_pid; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $gate_pid $origin_pid; do wait "$pid" 2>/dev/null || true; done
}
trap 'stop; say "stopped"; exit 0' INT TERM
trap stop EXIT

# Prints $1 if 127.0.0.1:$1 is free, else a free port the kernel picks.
free_port() {
    python3 - "$1" <<'EOF'
import socket, sys

def try_bind(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return None
        return s.getsockname()[1]

print(try_bind(int(sys.argv[1])) or try_bind(0))
EOF
}

# Waits up to 5 s until something listens on port $2, as long as process $1 is alive.
wait_listening() {
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || return 1
        ss -Hltn "sport = :$2" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, made once and
# made again when it is about to expire.
make_certificate() {
    if [ -s "$RUN_DIR/cert.pem" ] && [ -s "$RUN_DIR/key.pem" ] &&
        openssl x509 -checkend 86400 -noout -in "$RUN_DIR/cert.pem" >/dev/null 2>&1; then
        return 0
    fi
    say "creating a self-signed certificate for localhost and 127.0.0.1 in $RUN_DIR/"
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$RUN_DIR/key.pem" -out "$RUN_DIR/cert.pem" 2>/dev/null) ||
        die "openssl could not create the certificate"
}

[ -x "$GATEHOUSE" ] || die "$GATEHOUSE is missing: build it with 'make' (or use 'make run')"
mkdir -p "$RUN_DIR"
make_certificate

origin_port=$(free_port 8080)
gate_port=$(free_port 8443)
[ "$origin_port" = 8080 ] || say "port 8080 is busy: the origin uses $origin_port"
[ "$gate_port" = 8443 ] || say "port 8443 is busy: gatehouse uses $gate_port"

python3 scripts/demo_origin.py --host 127.0.0.1 --port "$origin_port" &
origin_pid=$!
wait_listening "$origin_pid" "$origin_port" || die "the demo origin did not start"

"$GATEHOUSE" --listen "127.0.0.1:$gate_port" --cert "$RUN_DIR/cert.pem" --key "$RUN_DIR/key.pem" \
    --to "127.0.0.1:$origin_port" --access-log - &
gate_pid=$!
wait_listening "$gate_pid" "$gate_port" || die "gatehouse did not start (its reason is above)"

sleep 0.2 # let the workers' start-up lines print before the banner
printf '\n  gatehouse is running: try  curl -k https://127.0.0.1:%s/  (Ctrl-C to stop)\n' "$gate_port"
printf '  or open https://localhost:%s/ in a browser (self-signed certificate: accept the warning)\n\n' "$gate_port"

# Runs until Ctrl-C, or until one of the two exits on its own.
status=0
wait -n "$origin_pid" "$gate_pid" || status=$?
say "a process exited on its own (status $status): stopping the demo"
exit 1
