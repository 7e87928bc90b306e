"""Upstreams that answer before the request body is complete (an early 200 or 4xx, a streaming
service): what the client then sends wrong ends its own connection, and the gateway keeps serving.
Each test drives the gateway against a small scripted upstream on 127.0.0.1."""
import socket
import time

import pytest

from conftest import Gateway, ScriptedUpstream, free_port, make_config


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


def test_bad_chunk_after_the_answer_began_closes_that_connection_only(tmp_path):
    """The upstream starts its answer while a chunked upload is still coming; the client then sends
    a malformed chunk. Part of the answer is out, so only closing can tell the client: its
    connection closes, the refusal is logged, and the gateway goes on (a worker once crashed here,
    reading the exchange the refusal had just ended)."""
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
            rest = got.split(b"\r\n\r\n", 1)[1]
            s.settimeout(5)
            while d := s.recv(65536):  # the connection ends before the 100 bytes announced
                rest += d
            assert rest == b"hello"
        assert gw.proc.poll() is None, "gateway died: " + gw.logs()[-3000:]
        deadline = time.time() + 5
        while "bad_chunked_body" not in gw.logs() and time.time() < deadline:
            time.sleep(0.05)
        assert "bad_chunked_body" in gw.logs()
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(b"GET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert recv_until(s, b"no_route").startswith(b"HTTP/1.1 404")
    finally:
        code = gw.stop()
        up.stop()
    assert code == 0, gw.logs()[-3000:]
