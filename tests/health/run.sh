#!/bin/bash
# Real-socket test of the active prober, run by hand (until the lead wires the
# prober into the master and an integration test replaces this):
#
#   tests/health/run.sh [http|tcp]          (from the repository root)
#   SAN="-fsanitize=address,undefined" tests/health/run.sh http
#
# Starts python3 -m http.server on a free loopback port, runs the real prober on
# it (interval 200 ms, timeout 300 ms, rise 2, fall 2) through
# tests/health/watch.c, kills the server, starts it again, and checks that the
# verdict went up, down, up, each change within its bound counted from the
# moment the server died / listened again:
#   down <= fall*interval + interval + timeout,   up <= rise*interval + interval
# (plus 100 ms of slack for a busy machine). The prober's own lines
# ("server ... of pool watch is down: connect refused") go to stderr.
# Exits 0 when all is well.
set -eu
TYPE=${1:-http}
INTERVAL=200 TIMEOUT=300 RISE=2 FALL=2 SLACK=100
OUT=${BUILD:-build}/health
mkdir -p "$OUT"
# shellcheck disable=SC2086
cc -std=c11 -D_GNU_SOURCE -O1 -g ${SAN:-} -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Isrc \
    -o "$OUT/health-watch" tests/health/watch.c src/health/state.c src/health/check.c src/health/probe.c src/health/addrs.c \
    src/core/loop.c src/core/log.c src/net/sock.c src/net/addr.c src/http/h1.c

now() { date +%s%3N; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DOCROOT=$(mktemp -d)
echo ok >"$DOCROOT/healthz"
SERVER=
# Starts the server and returns once it accepts connections (python takes a while to start).
serve() {
    python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$DOCROOT" >/dev/null 2>&1 &
    SERVER=$!
    for _ in $(seq 1000); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.01
    done
    echo "the server did not start" >&2
    return 1
}
stop() { if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || :; wait "$SERVER" 2>/dev/null || :; fi; SERVER=; }
trap 'stop; rm -rf "$DOCROOT"' EXIT

serve
UP1=$(now)
"$OUT/health-watch" "127.0.0.1:$PORT" "$TYPE" /healthz $INTERVAL $TIMEOUT $RISE $FALL 60 >"$OUT/watch.out" &
WATCH=$!
sleep 1
stop
KILLED=$(now)
sleep 1.5
serve
UP2=$(now)
sleep 1
kill -USR1 $WATCH
wait $WATCH
echo "server listening at $UP1, killed at $KILLED, listening again at $UP2; verdicts:"
cat "$OUT/watch.out"

python3 - "$OUT/watch.out" $INTERVAL $TIMEOUT $RISE $FALL $SLACK "$UP1" "$KILLED" "$UP2" <<'PY'
import sys
lines = [l.split() for l in open(sys.argv[1])]
interval, timeout, rise, fall, slack, up1, killed, up2 = map(int, sys.argv[2:10])
changes = [(int(t), s) for t, s in lines if t != "exit"]
want = [("up", "started", up1, interval),  # the first probe, at a random point of the first interval
        ("down", "died", killed, fall * interval + interval + timeout),
        ("up", "listened again", up2, rise * interval + interval)]
ok = len(changes) == 3 and ["exit", "0"] in lines
for (t, s), (ws, what, since, bound) in zip(changes, want):
    print("%-4s %5d ms after the server %s (bound %d ms)" % (s, t - since, what, bound))
    # the script notes a time a little after the event: the verdict may come a little before it
    ok = ok and s == ws and -slack <= t - since <= bound + slack
print("PASS" if ok else "FAIL: want up, down, up within the bounds, then exit 0")
sys.exit(0 if ok else 1)
PY
