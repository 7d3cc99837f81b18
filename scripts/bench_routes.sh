#!/usr/bin/env bash
# Runs gatehouse from a generated configuration of 50 sites x 20 routes instead
# of the quick-start flags, so that ../shared/bench/run measures what routing and
# balancing cost:
#   GATEHOUSE=scripts/bench_routes.sh ../shared/bench/run --peers gatehouse
# It takes the quick-start flags the bench passes (--listen, --cert, --key, --to,
# --workers) and serves them from the 50th site's longest-matching route.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${GATEHOUSE_BIN:-$here/build/gatehouse}
listen="" cert="" key="" workers=1 to=()
while [ $# -gt 0 ]; do
    case "$1" in
    --listen) listen=$2; shift 2 ;;
    --cert) cert=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    --to) to+=("$2"); shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    *) shift ;;
    esac
done
conf=$(mktemp /tmp/gatehouse-routes-XXXXXX.conf)
{
    echo "workers $workers"
    echo "listen $listen tls"
    echo "pool app {"
    for s in "${to[@]}"; do echo "    server $s"; done
    echo "}"
    for i in $(seq 0 48); do
        echo "site s$i.example.com *.s$i.example.net {"
        echo "    cert $cert $key"
        for r in $(seq 0 18); do echo "    route /r$r/ { proxy app }"; done
        echo "    route / { proxy app }"
        echo "}"
    done
    echo "site localhost 127.0.0.1 {"
    echo "    cert $cert $key"
    for r in $(seq 0 17); do echo "    route /r$r/ { proxy app }"; done
    echo "    route /small { proxy app }"
    echo "    route / { proxy app }"
    echo "}"
} >"$conf"
exec "$bin" -c "$conf"
