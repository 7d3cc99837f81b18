#!/usr/bin/env python3
"""A small plain-HTTP origin for the gatehouse demo (python3 standard library only).

  GET /          an HTML page listing the request headers as they arrived here,
                 so you can see what gatehouse added (X-Forwarded-For, Forwarded...)
  GET /api/time  the current time as JSON
  POST /api/echo the request headers and the size of the body, as JSON

Usage: demo_origin.py [--host 127.0.0.1] [--port 8080] [--verbose]
"""

import argparse
import html
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Headers a proxy adds or rewrites: highlighted on the page.
PROXY_HEADERS = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "via"}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gatehouse demo origin</title>
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; padding: 0 1rem;
         color: #222; }}
  h1 {{ font-size: 1.5rem; }}
  code, td {{ font-family: ui-monospace, monospace; font-size: 0.9rem; }}
  table {{ border-collapse: collapse; width: 100%; }}
  td {{ border-bottom: 1px solid #ddd; padding: 0.3rem 0.5rem; vertical-align: top; word-break: break-all; }}
  td:first-child {{ white-space: nowrap; color: #555; }}
  tr.proxy td {{ background: #fff6d5; }}
  .note {{ color: #555; }}
</style>
</head>
<body>
<h1>Hello through gatehouse</h1>
<p>This page comes from the demo origin, a plain HTTP server on <code>{origin}</code>.
Your request reached it over TLS through gatehouse, which forwarded it here over plain HTTP/1.1.</p>
<p><code>{method} {path} {version}</code> from <code>{peer}</code> (that is gatehouse's address, not yours:
yours is in <code>X-Forwarded-For</code>).</p>
<h2>Request headers as the origin received them</h2>
<table>
{rows}
</table>
<p class="note">Highlighted: headers the proxy added. Try also <a href="/api/time">/api/time</a>, or
<code>curl -k -d 'hello' https://{host}/api/echo</code>.</p>
</body>
</html>
"""


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 with a Content-Length on every response, so gatehouse can keep connections open.
    protocol_version = "HTTP/1.1"
    server_version = "demo-origin"
    sys_version = ""

    def do_GET(self):
        if self.path == "/" or self.path.startswith("/?"):
            self.send_page()
        elif self.path == "/api/time":
            now = time.time()
            self.send_json({"unix": round(now, 3),
                            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})
        else:
            self.send_json({"error": "not found", "path": self.path}, status=404)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        size = self.read_body()
        if size is None:
            self.send_json({"error": "bad request body"}, status=400)
        elif self.path == "/api/echo":
            self.send_json({"method": self.command, "path": self.path,
                            "headers": [f"{k}: {v}" for k, v in self.headers.items()], "body_bytes": size})
        else:
            self.send_json({"error": "not found", "path": self.path}, status=404)

    def read_body(self):
        """Reads and discards the body; returns its size, or None if its framing is broken."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self.read_chunked()
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                return None
            left -= len(chunk)
        return length

    def read_chunked(self):
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return total
            if len(self.rfile.read(size)) != size:
                return None
            self.rfile.readline(8)
            total += size

    def send_page(self):
        rows = "\n".join(
            '<tr{}><td>{}</td><td>{}</td></tr>'.format(
                ' class="proxy"' if k.lower() in PROXY_HEADERS else "", html.escape(k), html.escape(v))
            for k, v in self.headers.items())
        host, port = self.server.server_address[:2]
        body = PAGE.format(origin=html.escape(f"{host}:{port}"), method=html.escape(self.command),
                           path=html.escape(self.path), version=html.escape(self.request_version),
                           peer=html.escape(self.client_address[0]), rows=rows,
                           host=html.escape(self.headers.get("Host", "127.0.0.1:8443")))
        self.send_body(body.encode(), "text/html; charset=utf-8")

    def send_json(self, obj, status=200):
        self.send_body((json.dumps(obj, indent=2) + "\n").encode(), "application/json", status)

    def send_body(self, data, content_type, status=200):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, fmt, *args):
        # gatehouse's access log already shows every request; --verbose adds the origin's view.
        if self.server.verbose:
            sys.stderr.write("origin: %s\n" % (fmt % args))


def main():
    ap = argparse.ArgumentParser(description="Demo origin for gatehouse (plain HTTP/1.1).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--verbose", action="store_true", help="log every request")
    args = ap.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.verbose = args.verbose
    sys.stderr.write(f"origin: listening on http://{args.host}:{args.port}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
