"""systemd integration without systemd: a fake $NOTIFY_SOCKET (a unix datagram socket this test
binds, by path and by abstract name) receives READY=1 once the workers accept, RELOADING=1 with
MONOTONIC_USEC and READY=1 around a SIGHUP (good and bad file), STATUS= lines, STOPPING=1, and,
across a binary upgrade, MAINPID= of the new master from the old one. Log lines carry journald's
<N> priority prefix when $JOURNAL_STREAM names stderr. contrib/gatehouse.service passes
`systemd-analyze verify` where that tool runs.
"""
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import harness
from harness import ROOT, T, Fail, check, eq, get, test, wait_until
from t_upgrade import conf_text, replace_binary, start_copy, stop_pid


class FakeNotify:
    """The service manager's end of NOTIFY_SOCKET: every datagram with its sender's pid (SO_PASSCRED)."""

    def __init__(self, ctx, abstract=False):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = "gatehouse-test-%d-%d" % (os.getpid(), id(self))
            self.s.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = os.path.join(ctx.dir, "notify.sock")
            self.s.bind(path)
            self.env_value = path
        self.s.settimeout(0.2)
        self.msgs = []  # (pid, {VAR: value}, raw text, time.monotonic())
        self.lock = threading.Lock()
        self.running = True
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()
        ctx.others.append(self)  # the harness's kill_tree calls poll(): that closes it with the test

    def env(self):
        return {"NOTIFY_SOCKET": self.env_value}

    def run(self):
        while self.running:
            try:
                data, anc, _, _ = self.s.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, typ, d in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", d[:12])[0]
            text = data.decode(errors="replace")
            fields = dict(l.split("=", 1) for l in text.split("\n") if "=" in l)
            with self.lock:
                self.msgs.append((pid, fields, text, time.monotonic()))

    def all(self):
        with self.lock:
            return list(self.msgs)

    def wait_for(self, pred, timeout, what, start=0):
        """The first message from index `start` on that satisfies pred; returns its index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, m in enumerate(self.all()[start:], start):
                if pred(m):
                    return i
            time.sleep(0.02)
        raise Fail("no %s notification within %.0fs; got %r" % (what, timeout, [m[2] for m in self.all()]))

    def close(self):
        self.running = False
        self.s.close()

    def poll(self):
        self.close()
        return 0


def start(ctx, notify, extra_env=None):
    b = ctx.backend()
    certs = ctx.session.certs()
    env = dict(notify.env(), **(extra_env or {}))
    gh = ctx.gatehouse_config(lambda ports: conf_text(ports[0], ports[1], b.port, 2) % dict(
        cert=certs["ec_cert"], key=certs["ec_key"]), nports=2, env=env)
    return gh, b


def check_ready(notify, gh, start_at=0):
    i = notify.wait_for(lambda m: m[1].get("READY") == "1", 10 * T, "READY=1", start_at)
    pid, f, text, _ = notify.all()[i]
    eq(pid, gh.pid, "sender of READY=1 (the master)")
    st = f.get("STATUS", "")
    check("2 workers" in st and "127.0.0.1:%d (tls)" % gh.ports[0] in st and "127.0.0.1:%d" % gh.ports[1] in st,
          "STATUS= names the workers and the listeners: %r" % st)
    return i, st


@test("systemd_notify_ready_reload_stop")
def _(ctx):
    notify = FakeNotify(ctx)
    gh, b = start(ctx, notify)
    i, _ = check_ready(notify, gh)
    # READY=1 means serving: a request right after it is answered.
    eq(get(gh.ports[0], "/small").status, 200, "a request after READY=1")
    eq(len([m for m in notify.all() if m[1].get("READY")]), 1, "READY=1 messages at start")

    # A good reload: RELOADING=1 with a CLOCK_MONOTONIC timestamp (python's time.monotonic is the same clock).
    before = time.monotonic()
    os.kill(gh.pid, signal.SIGHUP)
    r = notify.wait_for(lambda m: m[1].get("RELOADING") == "1", 10 * T, "RELOADING=1", i + 1)
    usec = int(notify.all()[r][1].get("MONOTONIC_USEC", "0"))
    check(before * 1e6 - 1e6 <= usec <= time.monotonic() * 1e6 + 1e6,
          "MONOTONIC_USEC=%d is not CLOCK_MONOTONIC now (%.0f)" % (usec, before * 1e6))
    j, st = check_ready(notify, gh, r + 1)
    check("1 reload, the last ok" in st, "STATUS after a good reload: %r" % st)

    # A bad file: the reload fails, the old configuration runs, and systemd still gets READY=1 (not left reloading).
    with open(gh.conf_path, "a") as f:
        f.write("\nbogus_directive 1\n")
    os.kill(gh.pid, signal.SIGHUP)
    r = notify.wait_for(lambda m: m[1].get("RELOADING") == "1", 10 * T, "RELOADING=1 (bad file)", j + 1)
    k, st = check_ready(notify, gh, r + 1)
    check("2 reloads, the last failed" in st, "STATUS after a failed reload: %r" % st)
    eq(get(gh.ports[0], "/small").status, 200, "served after the failed reload")

    gh.signal(signal.SIGTERM)
    notify.wait_for(lambda m: m[1].get("STOPPING") == "1" and m[0] == gh.pid, 10 * T, "STOPPING=1", k + 1)
    eq(gh.proc.wait(15 * T), 0, "exit status")
    for pid, f, text, _ in notify.all():
        check(pid == gh.pid, "only the master notifies: %r from pid %s" % (text, pid))


@test("systemd_notify_abstract_socket")
def _(ctx):
    notify = FakeNotify(ctx, abstract=True)
    gh, b = start(ctx, notify)
    check_ready(notify, gh)


@test("systemd_notify_mainpid_after_upgrade")
def _(ctx):
    notify = FakeNotify(ctx)
    b = ctx.backend()
    gh = start_copy(ctx, b, env=notify.env())
    i, _ = check_ready(notify, gh)
    replace_binary(gh.exe, harness.GATEHOUSE)
    os.kill(gh.pid, signal.SIGUSR2)
    m = notify.wait_for(lambda m: "MAINPID" in m[1], 20 * T, "MAINPID=", i + 1)
    pid, f, text, _ = notify.all()[m]
    eq(pid, gh.pid, "MAINPID= comes from the old master (the main process systemd listens to)")
    new = int(f["MAINPID"])
    check(new != gh.pid, "MAINPID is a new process")
    check("binary upgrade: master pid %d (was %d)" % (new, gh.pid) in f.get("STATUS", "")
          and "127.0.0.1:%d (tls)" % gh.ports[0] in f.get("STATUS", ""), "STATUS with MAINPID: %r" % text)
    gh.stopped = True
    try:
        check(wait_until(lambda: gh.proc.poll() is not None, 20 * T), "the old master did not exit after the drain")
        eq(gh.proc.returncode, 0, "old master's exit status")
        # The new master sent its own READY=1 (ignored by systemd before MAINPID moved, harmless after).
        check(any(p == new and f.get("READY") == "1" for p, f, _, _ in notify.all()), "READY=1 from the new master")
        check(not any(f.get("STOPPING") for p, f, _, _ in notify.all()),
              "the old master must not say STOPPING=1 once it handed over: %r" % [x[2] for x in notify.all()])
        eq(get(gh.ports[0], "/small").status, 200, "the new master serves")
        os.kill(new, signal.SIGHUP)
        notify.wait_for(lambda m: m[0] == new and m[1].get("RELOADING") == "1", 10 * T, "RELOADING=1 from the new master")
    finally:
        stop_pid(new, 15 * T)


@test("systemd_journal_priority_prefixes")
def _(ctx):
    # The harness appends stderr to gatehouse<N>.stderr: create it first to know its inode.
    path = os.path.join(ctx.dir, "gatehouse%d.stderr" % len(ctx.gatehouses))
    open(path, "ab").close()
    st = os.stat(path)
    notify = FakeNotify(ctx)
    gh, b = start(ctx, notify, {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
    eq(gh.log_path, path, "stderr file")
    lines = [l for l in gh.stderr().splitlines() if l]
    check(lines, "no log lines")
    for l in lines:
        check(re.match(r"^<[3467]>\[(error|warn|info|debug)\] \d+ ", l), "not a journald line: %r" % l)
    check(any(l.startswith("<6>[info]") for l in lines), "info lines carry <6>")
    # A startup error (here: -t of a bad file) is an error to journald too.
    bad = os.path.join(ctx.dir, "bad.conf")
    with open(bad, "w") as f:
        f.write("listen 127.0.0.1:1 tls\nnot_a_directive\n")
    with open(path, "ab") as errf:
        r = subprocess.run([harness.GATEHOUSE, "-t", "-c", bad], stderr=errf, stdout=subprocess.DEVNULL,
                           env=dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino)), timeout=30 * T)
    eq(r.returncode, 1, "gatehouse -t of a bad file")
    last = open(path).read().splitlines()[-1]
    check(last.startswith("<3>gatehouse: ") and "bad.conf:2:" in last, "startup error to journald: %r" % last)
    # Another stream's id (stderr redirected elsewhere by a child, say): timestamps as usual.
    path2 = os.path.join(ctx.dir, "gatehouse%d.stderr" % len(ctx.gatehouses))
    gh2, _ = start(ctx, FakeNotify(ctx, abstract=True), {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
    eq(gh2.log_path, path2, "second stderr file")
    for l in [l for l in gh2.stderr().splitlines() if l]:
        check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[\w+\] \d+ ", l), "JOURNAL_STREAM of another file: %r" % l)


@test("systemd_unit_verifies")
def _(ctx):
    if shutil.which("systemd-analyze") is None:
        ctx.info = "skipped: no systemd-analyze"
        return
    unit = (ROOT / "contrib" / "gatehouse.service").read_text()
    # verify wants the binaries it names to exist: point ExecStart at the build's.
    text = unit.replace("/usr/sbin/gatehouse", harness.GATEHOUSE)
    d = os.path.join(ctx.dir, "units")
    os.mkdir(d)
    path = os.path.join(d, "gatehouse.service")
    with open(path, "w") as f:
        f.write(text)
    # Documentation=man:... must resolve: the man pages of the tree, laid out as man(1) looks for them.
    for sec, name in (("8", "gatehouse.8"), ("5", "gatehouse.conf.5")):
        os.makedirs(os.path.join(ctx.dir, "man", "man" + sec), exist_ok=True)
        shutil.copy(ROOT / "man" / name, os.path.join(ctx.dir, "man", "man" + sec, name))
    r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, timeout=60 * T,
                       env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice", MANPATH=os.path.join(ctx.dir, "man")))
    out = (r.stdout + r.stderr).decode(errors="replace")
    # Lines about other units of this machine are not ours to judge; about ours, nothing may be said.
    ours = [l for l in out.splitlines() if "gatehouse" in l]
    check(r.returncode == 0 and not ours, "systemd-analyze verify: exit %d: %s" % (r.returncode, out[-1500:]))
