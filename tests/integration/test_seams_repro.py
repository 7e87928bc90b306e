"""Reproducers found reviewing the seams refactor (exchange/leg/sink split). Each test drives the
gateway against a small scripted upstream on 127.0.0.1 and fails on the code it was written
against."""
import socket
import threading
import time

import pytest

from conftest import Gateway, free_port, make_config


class ScriptedUpstream:
    """Accepts connections on 127.0.0.1; for each, reads a request head and runs `script(conn)`."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop_ev = threading.Event()
        self.conns = []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def _run(self):
        deadline = time.time() + 60
        while not self.stop_ev.is_set() and time.time() < deadline:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(5)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                d = c.recv(65536)
                if not d:
                    return
                head += d
            self.script(c, head)
        except OSError:
            pass

    def stop(self):
        self.stop_ev.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def gateway_for(tmp_path, up, routes_extra="", limits=""):
    port = free_port()
    routes = ("      - name: s\n        match: { path_prefix: /s }\n        upstream: s\n")
    cfg = make_config(port, [("s", [up.addr], "5s")], routes,
                      limits="  header_timeout: 2s\n  client_timeout: 2s\n" + limits, workers=1)
    return Gateway(str(tmp_path), cfg, port)


def recv_until(s, marker, timeout=5.0):
    s.settimeout(timeout)
    out = b""
    deadline = time.time() + timeout
    while marker not in out and time.time() < deadline:
        d = s.recv(65536)
        if not d:
            break
        out += d
    return out


def test_bad_chunk_after_response_head_does_not_crash(tmp_path):
    """The upstream starts its answer while a chunked upload is still coming; the client then sends
    a malformed chunk. The pump refuses it, the refusal closes the connection (a response already
    started), and client_on_data then asked exchange_reads_body(c->x) of the NULL exchange."""
    def script(c, head):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
        time.sleep(3)

    up = ScriptedUpstream(script)
    gw = gateway_for(tmp_path, up)
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(b"POST /s/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nabcde\r\n")
            got = recv_until(s, b"hello")
            assert b"200 OK" in got
            s.sendall(b"zz-not-a-chunk-size\r\n")
            time.sleep(0.5)
        time.sleep(0.3)
        assert gw.proc.poll() is None, "gateway died: " + gw.logs()[-3000:]
    finally:
        code = gw.stop()
        up.stop()
    assert code == 0, gw.logs()[-3000:]
