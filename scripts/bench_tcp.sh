#!/usr/bin/env bash
# TCP stream services (a TLS-terminating `stream` with protocol raw) side by side with hitch and
# HAProxy in mode tcp, in one run, against the same plain origin (nginx, one worker), the way
# ../shared/bench/run starts its peers: one worker/thread each, no access log, the proxy pinned to
# CPU 1 (PROXY_CPU), origin and clients to CPU 0 (LOAD_CPU), every thread re-pinned after start.
#
#   bulk   1 GiB (BULK_MIB) through one TLS connection: curl GET of a sparse file from the origin;
#          MiB/s, and MiB/s per fully used proxy core (the proxy's CPU time from /proc)
#   rate   new TLS connections for RATE_S seconds (openssl s_time -new: full handshake, HTTP/1.0
#          GET /small through the stream, close); conn/s and conn/s per proxy core
#   idle   memory per idle TLS stream: N connections (default 2000) finish the handshake and stay
#          idle (scripts/ws_idle.py --tls-only); proxy process-tree RSS growth / N
#   pg     pgbench -S (PG_S seconds, 8 clients, select-only) through gatehouse (protocol postgres,
#          TLS terminated, plaintext to the server) vs direct TLS to the same PostgreSQL 15
#          (ssl=on); not pinned: server, pgbench and proxy share both cores in both runs
#
#   scripts/bench_tcp.sh [IDLE_N]          (PEERS="gatehouse haproxy" to choose; PG_S=0 skips pg)
# Every process it starts is stopped by PID on exit. Needs nginx, hitch, haproxy, curl, openssl,
# python3, taskset; PostgreSQL 15 for `pg` (as root it runs as the postgres user).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${GATEHOUSE_BIN:-$here/build/gatehouse}
n=${1:-2000}
bulk_mib=${BULK_MIB:-1024}
rate_s=${RATE_S:-5}
pg_s=${PG_S:-10}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
pg_bin=/usr/lib/postgresql/15/bin
# shellcheck source=scripts/script_lib.sh
. "$here/scripts/script_lib.sh"
script_init bench-tcp
nofile=$(ulimit -n)
((nofile > 65536)) && nofile=65536
pin() { for p in $(proc_tree "$1"); do taskset -a -cp "$PROXY_CPU" "$p" >/dev/null 2>&1 || true; done; }
hz=$(getconf CLK_TCK)
load() { taskset -c "$LOAD_CPU" "$@"; }

make_cert "$TMP"
chmod 644 "$TMP/both.pem" "$TMP/key.pem"

# ---- origin: nginx, one worker; /small 1 KiB, /big a sparse file (sendfile: no disk, little CPU)
origin=$(free_port)
mkdir -p "$TMP/www"
head -c 1024 /dev/zero | tr '\0' x >"$TMP/www/small"
truncate -s "${bulk_mib}M" "$TMP/www/big"
cat >"$TMP/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $nofile;
daemon off;
pid $TMP/nginx.pid;
error_log stderr warn;
$(if [[ $(id -u) == 0 ]]; then echo "user root root;"; fi)
events { worker_connections $((nofile - 100)); }
http {
    access_log off;
    client_body_temp_path $TMP/t_body; proxy_temp_path $TMP/t_proxy; fastcgi_temp_path $TMP/t_fcgi;
    uwsgi_temp_path $TMP/t_uwsgi; scgi_temp_path $TMP/t_scgi;
    sendfile on;
    keepalive_requests 1000000;
    client_header_timeout 300s;
    keepalive_timeout 300s;
    server { listen 127.0.0.1:$origin backlog=4096; root $TMP/www; }
}
CONF
taskset -c "$LOAD_CPU" nginx -c "$TMP/nginx.conf" 2>"$TMP/nginx.log" & # taskset execs: $! is nginx
PIDS+=($!)
wait_port "$origin"

# ---- the peers: start_NAME PORT -> PEER_PID
start_gatehouse() {
    cat >"$TMP/gatehouse.conf" <<CONF
workers 1
pool origin { server 127.0.0.1:$origin }
stream bench {
    listen 127.0.0.1:$1
    cert $TMP/cert.pem $TMP/key.pem
    protocol raw
    proxy origin
}
CONF
    taskset -c "$PROXY_CPU" "$bin" -c "$TMP/gatehouse.conf" 2>"$TMP/gatehouse.log" &
    PEER_PID=$!
}
start_haproxy() {
    cat >"$TMP/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn $((nofile / 2 - 100))
defaults
    mode tcp
    maxconn $((nofile / 2 - 100))
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend fe
    bind 127.0.0.1:$1 ssl crt $TMP/both.pem
    default_backend be
backend be
    server origin 127.0.0.1:$origin
CONF
    taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
    PEER_PID=$!
}
start_hitch() {
    mkdir -p "$TMP/ocsp"
    {
        echo "frontend = \"[127.0.0.1]:$1\""
        echo "backend = \"[127.0.0.1]:$origin\""
        echo "pem-file = \"$TMP/both.pem\""
        echo "workers = 1"
        echo "daemon = off"
        echo "syslog = off"
        echo "tls-protos = TLSv1.2 TLSv1.3"
        echo "ocsp-dir = \"$TMP/ocsp\""
        if [[ $(id -u) == 0 ]]; then echo 'user = "nobody"'; fi
    } >"$TMP/hitch.conf"
    taskset -c "$PROXY_CPU" hitch --config="$TMP/hitch.conf" >"$TMP/hitch.log" 2>&1 &
    PEER_PID=$!
}

peers=()
for p in ${PEERS:-gatehouse haproxy hitch}; do
    if [[ $p == gatehouse ]] || command -v "$p" >/dev/null; then peers+=("$p"); else echo "$p: not installed (../shared/bench/setup)"; fi
done

printf '%-10s %-6s %12s %8s %14s\n' peer test value cpu_px% per_core
run_peer() {
    local name=$1 port t0 c0 c1 t1 secs mib rate out conns
    port=$(free_port)
    "start_$name" "$port"
    PIDS+=($PEER_PID)
    wait_port "$port"
    sleep 0.3
    pin "$PEER_PID"
    # bulk: one connection, BULK_MIB MiB from the origin
    curl -sk -o /dev/null "https://127.0.0.1:$port/small" # warm up
    c0=$(cpu_ticks "$PEER_PID")
    t0=$(date +%s.%N)
    out=$(load curl -sk -o /dev/null -w '%{size_download}' --max-time 120 "https://127.0.0.1:$port/big")
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$PEER_PID")
    secs=$(echo "$t1 - $t0" | bc -l)
    mib=$(echo "$out / 1048576 / $secs" | bc -l)
    cpu=$(echo "($c1 - $c0) / $hz / $secs * 100" | bc -l)
    printf '%-10s %-6s %9.0f MiB/s %7.0f%% %9.0f MiB/s\n' "$name" bulk "$mib" "$cpu" \
        "$(echo "$mib / ($cpu / 100)" | bc -l)"
    [[ $out == $((bulk_mib * 1048576)) ]] || echo "  $name bulk: $out bytes, want $((bulk_mib * 1048576))"
    # rate: full handshakes, one small HTTP/1.0 exchange through the stream each
    c0=$(cpu_ticks "$PEER_PID")
    t0=$(date +%s.%N)
    out=$(load openssl s_time -connect "127.0.0.1:$port" -new -time "$rate_s" -www /small 2>&1 | grep -m1 'connections in' || true)
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$PEER_PID")
    conns=${out%% connections in*}
    secs=$(echo "$t1 - $t0" | bc -l)
    rate=$(echo "${conns:-0} / $secs" | bc -l)
    cpu=$(echo "($c1 - $c0) / $hz / $secs * 100" | bc -l)
    printf '%-10s %-6s %8.0f conn/s %7.0f%% %8.0f conn/s\n' "$name" rate "$rate" "$cpu" \
        "$(echo "$rate / ($cpu / 100 + 0.000001)" | bc -l)"
    kill "$PEER_PID"
    wait "$PEER_PID" 2>/dev/null || true
    # idle: a fresh instance
    port=$(free_port)
    "start_$name" "$port"
    PIDS+=($PEER_PID)
    wait_port "$port"
    sleep 0.3
    pin "$PEER_PID"
    out=$(load python3 "$here/scripts/ws_idle.py" --tls-only --port "$port" --pid "$PEER_PID" --count "$n")
    printf '%-10s %-6s %s\n' "$name" idle "${out#RESULT }"
    kill "$PEER_PID"
    wait "$PEER_PID" 2>/dev/null || true
}
for p in "${peers[@]}"; do run_peer "$p"; done

# ---- pgbench -S: through gatehouse (TLS terminated) vs direct TLS to the server
if [[ $pg_s == 0 ]]; then exit 0; fi
if [[ ! -x $pg_bin/postgres ]] || ! command -v pgbench >/dev/null; then
    echo "pg: PostgreSQL 15 / pgbench not installed"
    exit 0
fi
as_pg=()
if [[ $(id -u) == 0 ]]; then as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --); fi
mkdir -p "$TMP/pg"
if [[ $(id -u) == 0 ]]; then chown postgres: "$TMP/pg"; fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$TMP/pg/data" -U postgres --auth=trust --no-sync >"$TMP/initdb.log" 2>&1
cp "$TMP/cert.pem" "$TMP/key.pem" "$TMP/pg/data/"
if [[ $(id -u) == 0 ]]; then chown postgres: "$TMP/pg/data/cert.pem" "$TMP/pg/data/key.pem"; fi
chmod 600 "$TMP/pg/data/key.pem"
pgport=$(free_port)
"${as_pg[@]}" "$pg_bin/postgres" -D "$TMP/pg/data" -p "$pgport" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories= -c ssl=on -c ssl_cert_file=cert.pem -c ssl_key_file=key.pem -c fsync=off \
    -c max_connections=50 >"$TMP/pg.log" 2>&1 &
PIDS+=($!)
wait_port "$pgport"
sleep 1
gport=$(free_port)
cat >"$TMP/gatehouse-pg.conf" <<CONF
workers 1
pool pg { server 127.0.0.1:$pgport }
stream pg {
    listen 127.0.0.1:$gport
    cert $TMP/cert.pem $TMP/key.pem
    protocol postgres
    proxy pg
}
CONF
"$bin" -c "$TMP/gatehouse-pg.conf" 2>"$TMP/gatehouse-pg.log" &
PIDS+=($!)
wait_port "$gport"
export PGUSER=postgres PGSSLMODE=require
pgbench -h 127.0.0.1 -p "$pgport" -i -s 5 -q postgres >"$TMP/pgbench-init.log" 2>&1
tps() { pgbench -h 127.0.0.1 -p "$1" -S -c 8 -j 2 -T "$pg_s" postgres 2>&1 | awk '/^tps/ {print $3; exit}'; }
direct=$(tps "$pgport")
via=$(tps "$gport")
direct2=$(tps "$pgport")
via2=$(tps "$gport")
printf 'pgbench -S -c8 -j2 -T%s (sslmode=require): direct TLS %s, %s tps; through gatehouse %s, %s tps\n' \
    "$pg_s" "$direct" "$direct2" "$via" "$via2"
