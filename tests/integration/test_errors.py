"""Bad input and failing upstreams: each gets its status, a JSON body with the reason, a log line,
and the gateway keeps serving."""
import json
import os
import socket
import time

import pytest

from conftest import raw_request


def parse(out):
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {l.split(b":", 1)[0].strip().lower().decode(): l.split(b":", 1)[1].strip().decode()
               for l in lines[1:] if b":" in l}
    return status, headers, body


def assert_error(out, status, reason):
    st, headers, body = parse(out)
    assert st == status, out[:300]
    assert headers["content-type"] == "application/json"
    err = json.loads(body[: int(headers["content-length"])])["error"]
    assert err["status"] == status and err["reason"] == reason, err
    return headers


def still_serving(gw):
    out = raw_request(gw.port, b"GET /raw/size/3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"abc")


SMUGGLING = [
    # (name, raw request, reason)
    ("cl and te", b"POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "content_length_with_transfer_encoding"),
    ("differing duplicate cl", b"POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
     "duplicate_content_length"),
    ("cl list", b"POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Length: 4, 4\r\n\r\nabcd", "bad_content_length"),
    ("cl sign", b"POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Length: +4\r\n\r\nabcd", "bad_content_length"),
    ("obs-fold", b"GET /api/users HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  folded\r\n\r\n", "obs_fold"),
    ("space before colon", b"GET /api/users HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n", "bad_header"),
    ("bare lf", b"GET /api/users HTTP/1.1\nHost: t\r\n\r\n", "bare_cr_lf"),
    ("bare cr", b"GET /api/users HTTP/1.1\r\nHost: t\rX: y\r\n\r\n", "bare_cr_lf"),
    ("bad token char", b"GET /api/users HTTP/1.1\r\nHost: t\r\nX(A): 1\r\n\r\n", "bad_header"),
    ("te not chunked", b"POST /api/users HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", "bad_transfer_encoding"),
    ("te chunked twice", b"POST /api/users HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "bad_transfer_encoding"),
    ("missing host", b"GET /api/users HTTP/1.1\r\n\r\n", "bad_host"),
    ("two hosts", b"GET /api/users HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "bad_host"),
    ("nul in value", b"GET /api/users HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", "bad_header"),
    ("bad chunk size", b"POST /api/users HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "bad_chunked_body"),
    ("bad request line", b"GET  /api/users HTTP/1.1\r\nHost: t\r\n\r\n", "bad_request_line"),
]


@pytest.mark.parametrize("name,req,reason", SMUGGLING, ids=[s[0] for s in SMUGGLING])
def test_malformed_requests_get_400_and_close(gateway, name, req, reason):
    out = raw_request(gateway.port, req)
    headers = assert_error(out, 400, reason)
    assert headers.get("connection") == "close"
    still_serving(gateway)


def test_http2_version_gets_505(gateway):
    out = raw_request(gateway.port, b"GET /api/users HTTP/2.0\r\nHost: t\r\n\r\n")
    assert_error(out, 505, "bad_version")


def test_malformed_version_gets_400(gateway):
    # HTTP-version = HTTP-name "/" DIGIT "." DIGIT (RFC 9112 §2.3): "HTTP/9" is no version at all.
    out = raw_request(gateway.port, b"GET / HTTP/9\r\nHost: t\r\n\r\n")
    assert_error(out, 400, "bad_request_line")


def test_no_route_404_keeps_connection(gateway):
    out = raw_request(gateway.port, b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"
                                    b"GET /raw/size/2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert_error(out, 404, "no_route")
    assert out.endswith(b"ab"), "the next request on the same connection was not answered"


def test_wrong_method_405_with_allow(gateway):
    out = raw_request(gateway.port, b"PATCH /api/users/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    headers = assert_error(out, 405, "method_not_allowed")
    assert headers["allow"] == "GET, HEAD, POST, PUT, DELETE"


def test_body_too_large_413(gateway):
    out = raw_request(gateway.port, b"POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n")
    assert_error(out, 413, "body_too_large")


def test_chunked_body_too_large_413(gateway):
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"a" * (1 << 20))
    req = b"POST /api/users HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n"
    out = raw_request(gateway.port, req)
    assert_error(out, 413, "body_too_large")


def test_uri_too_long_414(gateway):
    out = raw_request(gateway.port, b"GET /api/users/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert_error(out, 414, "uri_too_long")


def test_headers_too_large_431(gateway):
    req = b"GET /api/users HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(90)) + b"\r\n"
    out = raw_request(gateway.port, req)
    assert_error(out, 431, "headers_too_large")


def test_slowloris_gets_408(gateway):
    start = time.time()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(b"GET /api/users HTTP/1.1\r\nHost: t\r\n")
        out = b""
        for _ in range(40):  # trickle a header every 0.1 s; header_timeout is 2 s
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            time.sleep(0.1)
        s.settimeout(5)
        try:
            while chunk := s.recv(4096):
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    assert_error(out, 408, "header_timeout")
    assert time.time() - start < 8
    still_serving(gateway)


def test_upstream_refused_502(gateway):
    out = raw_request(gateway.port, b"GET /dead/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert_error(out, 502, "upstream_connect_failed")


def test_upstream_invalid_response_502(gateway):
    out = raw_request(gateway.port, b"GET /raw/bad-response HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert_error(out, 502, "upstream_bad_response")


def test_upstream_closes_without_answer_502(gateway):
    out = raw_request(gateway.port, b"POST /raw/close-no-response HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx")
    assert_error(out, 502, "upstream_reset")


def test_upstream_timeout_504(gateway):
    start = time.time()
    out = raw_request(gateway.port, b"GET /slow/delay/3000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert_error(out, 504, "upstream_timeout")
    assert time.time() - start < 2.9
    still_serving(gateway)


def test_upstream_killed_mid_response_closes_client(gateway):
    out = raw_request(gateway.port, b"GET /raw/close-mid-body HTTP/1.1\r\nHost: t\r\n\r\n")
    st, headers, body = parse(out)
    assert st == 200
    assert int(headers["content-length"]) == 100000
    assert len(body) < 100000  # truncated, and the connection was closed (raw_request returned)
    still_serving(gateway)


def test_errors_are_logged_with_reason(gateway):
    out = raw_request(gateway.port,
                      b"GET /nowhere-logged HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    deadline = time.time() + 3
    recs = []
    while time.time() < deadline and not recs:
        recs = [r for r in gateway.access_records() if r["path"] == "/nowhere-logged"]
        time.sleep(0.05)
    assert recs and recs[-1]["status"] == 404 and recs[-1]["reason"] == "no_route"
    assert recs[-1]["bytes_out"] == len(out)  # the error answer counts as bytes out
    assert "404 no_route /nowhere-logged" in gateway.logs()


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_no_connection_left_behind_after_bad_clients(gateway):
    """Malformed requests, clients vanishing mid-head and mid-body: every socket is closed again."""
    still_serving(gateway)
    time.sleep(0.2)
    baseline = open_fds(gateway.proc.pid)
    for i in range(100):
        raw_request(gateway.port, SMUGGLING[i % len(SMUGGLING)][1])
    for i in range(50):
        with socket.create_connection(("127.0.0.1", gateway.port)) as s:
            s.sendall(b"POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc"
                      if i % 2 else b"GET /api/us")
    deadline = time.time() + 5
    while time.time() < deadline and open_fds(gateway.proc.pid) > baseline:
        time.sleep(0.05)
    assert open_fds(gateway.proc.pid) <= baseline
    still_serving(gateway)


def test_dot_segments_refused(gateway):
    out = raw_request(gateway.port, b"GET /api/users/../../admin HTTP/1.1\r\nHost: t\r\n\r\n")
    assert_error(out, 400, "bad_uri")
    out = raw_request(gateway.port, b"GET /api/users/%2e%2e/x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert_error(out, 400, "bad_uri")


def test_pipelined_request_after_upstream_failure_is_answered(gateway):
    out = raw_request(gateway.port, b"GET /dead/x HTTP/1.1\r\nHost: t\r\n\r\n"
                                    b"GET /raw/size/4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert_error(out, 502, "upstream_connect_failed")
    assert out.endswith(b"abcd")


def test_half_closed_client_gets_every_pipelined_answer(gateway):
    out = raw_request(gateway.port, b"GET /raw/size/3 HTTP/1.1\r\nHost: t\r\n\r\n"
                                    b"GET /raw/size/5 HTTP/1.1\r\nHost: t\r\n\r\n", shutdown=True)
    assert out.count(b"HTTP/1.1 200 OK") == 2
    assert out.endswith(b"abcde")


def test_slow_large_upload_is_not_an_upstream_timeout(gateway):
    """The route's response_timeout is 1 s; the body takes longer to arrive, but keeps coming."""
    body = bytes(range(256)) * 4096  # 1 MiB: spliced
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(b"POST /slow/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        for off in range(0, len(body), 128 * 1024):
            s.sendall(body[off:off + 128 * 1024])
            time.sleep(0.2)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    st, _, data = parse(out)
    assert st == 200, out[:300]
    assert json.loads(data)["body_bytes"] == len(body)


def test_gateway_survives_running_out_of_descriptors(upstreams, tmp_path):
    """With a low fd limit, connections beyond it wait in the backlog; the gateway neither spins nor
    floods its log, and serves again once clients go away."""
    import resource
    import subprocess
    from conftest import RINGWAY, free_port, make_config, wait_port
    port = free_port()
    routes = "      - name: all\n        match: { path_prefix: / }\n        upstream: u\n"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(make_config(port, [("u", [upstreams[0].addr], "5s")], routes, workers=1))
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen([RINGWAY, "run", "-c", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48)))
    try:
        wait_port(port, proc)
        held = []
        for _ in range(60):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        time.sleep(1.5)
        for s in held:
            s.close()
        time.sleep(0.5)
        out = raw_request(port, b"GET /size/2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"ab")
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    text = (tmp_path / "log").read_text()
    warnings = text.count("accept: Too many open files")
    assert 1 <= warnings <= 4, warnings
