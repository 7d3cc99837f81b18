"""A WebSocket origin for the tests (python3-websockets): echoes every message, answers pings
(the library does), and logs one line per event to EVENTS (open PATH, msg BYTES, close CODE REASON).

    ws_backend.py PORT EVENTS

Paths: /echo echoes; /close/CODE closes with CODE after the first message; /flood/BYTES sends
BYTES in 64 KiB binary messages, then closes 1000; /sha replies to each message with its
sha256 hex; /reject answers 403 (not 101) to the opening handshake; /idle sends nothing.
"""
import asyncio
import hashlib
import http
import sys
import time

try:
    import websockets
except ImportError:  # Debian's python3-websockets, when we run on another CPython 3 than Debian's
    sys.path.append("/usr/lib/python3/dist-packages")
    import websockets

PORT, EVENTS = int(sys.argv[1]), sys.argv[2]
log = open(EVENTS, "a", buffering=1)


def event(*words):
    log.write("%.3f %s\n" % (time.time(), " ".join(str(w) for w in words)))


async def reject(path, headers):
    if path == "/reject":
        return http.HTTPStatus.FORBIDDEN, [("Content-Length", "7")], b"denied\n"
    return None


async def handler(ws, path):
    event("open", path, ws.request_headers.get("X-Test", "-"))
    try:
        if path.startswith("/flood/"):
            left = int(path.split("/")[2])
            while left > 0:
                n = min(left, 65536)
                await ws.send(b"\x5a" * n)
                left -= n
            await ws.close(1000, "flooded")
        elif path == "/idle":
            await ws.wait_closed()
        else:
            async for m in ws:
                event("msg", len(m))
                if path == "/sha":
                    await ws.send(hashlib.sha256(m if isinstance(m, bytes) else m.encode()).hexdigest())
                elif path.startswith("/close/"):
                    await ws.close(int(path.split("/")[2]), "bye")
                    break
                else:
                    await ws.send(m)
    except websockets.ConnectionClosed:
        pass
    finally:
        event("close", ws.close_code, ws.close_reason or "-")


async def main():
    async with websockets.serve(handler, "127.0.0.1", PORT, max_size=None, max_queue=4,
                                process_request=reject, ping_interval=None, compression=None):
        event("listening", PORT)
        await asyncio.Future()

asyncio.run(main())
