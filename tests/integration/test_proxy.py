"""Proxying through ringway: routing, rewriting, headers, bodies both ways, keep-alive and
pooling, balancing, concurrency."""
import hashlib
import http.client
import json
import socket
import threading

from conftest import raw_request


def get(gw, path, method="GET", body=None, headers=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r, data


def test_route_strips_prefix_and_forwards_path_and_query(gateway):
    r, body = get(gateway, "/api/users/42?x=1&y=2")
    assert r.status == 200
    echo = json.loads(body)
    assert echo["path"] == "/users/42"
    assert echo["query"] == "x=1&y=2"
    assert echo["method"] == "GET"
    assert echo["server"] in ("u1", "u2")


def test_exact_route_beats_prefix(gateway):
    r, body = get(gateway, "/api/users/me")
    assert r.status == 200
    assert json.loads(body)["server"] == "u3"
    assert json.loads(body)["path"] == "/api/users/me"


def test_host_route_beats_hostless_one(gateway):
    r, body = get(gateway, "/api/users/1", headers={"Host": "api.example.com"})
    assert json.loads(body)["server"] == "u3"
    r, body = get(gateway, "/api/users/1", headers={"Host": "other.example.com"})
    assert json.loads(body)["server"] in ("u1", "u2")


def test_forwarded_headers_and_hop_by_hop_removed(gateway):
    r, body = get(gateway, "/api/users/1", headers={
        "Host": "shop.test", "X-Forwarded-For": "203.0.113.9", "Connection": "X-Secret, keep-alive",
        "X-Secret": "must-not-pass", "Keep-Alive": "timeout=5", "X-Keep": "yes", "Via": "1.0 edge"})
    echo = json.loads(body)
    headers = {k.lower(): v for k, v in echo["headers"]}
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "shop.test"
    assert headers["host"] == "shop.test"
    assert headers["via"] == "1.0 edge, 1.1 ringway"
    assert headers["x-keep"] == "yes"
    for hop in ("x-secret", "keep-alive", "connection", "te", "upgrade"):
        assert hop not in headers, hop


def test_round_robin_across_targets(gateway):
    c = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    servers = [json.loads(get(gateway, "/api/users/rr", conn=c)[1])["server"] for _ in range(20)]
    c.close()
    assert servers.count("u1") == 10 and servers.count("u2") == 10, servers


def test_upstream_connections_are_reused(gateway, upstreams):
    u3 = upstreams[2]
    get(gateway, "/api/orders/warm")  # may open the connection(s)
    before = u3.stats()
    c = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    for i in range(50):
        r, _ = get(gateway, f"/api/orders/{i}", conn=c)
        assert r.status == 200
    c.close()
    after = u3.stats()
    assert after["requests"] - before["requests"] >= 50
    # two workers, each keeps its own pool: at most one new connection per worker
    assert after["accepts"] - before["accepts"] <= 2


def test_post_1mib_body_arrives_byte_identical(gateway):
    body = bytes((i * 7 + 3) % 256 for i in range(1 << 20))
    r, data = get(gateway, "/api/users/upload", method="POST", body=body,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200
    echo = json.loads(data)
    assert echo["body_bytes"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_chunked_post_arrives_byte_identical(gateway):
    payload = b"".join(bytes([65 + i % 26]) * 1000 for i in range(300))
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 4096]), payload[i:i + 4096])
                      for i in range(0, len(payload), 4096))
    req = (b"POST /api/users/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
    out = raw_request(gateway.port, req)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    echo = json.loads(body)
    assert echo["body_bytes"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_large_response_streams_intact(gateway):
    r, data = get(gateway, "/raw/size/3000000")
    assert r.status == 200
    assert len(data) == 3000000
    assert data == bytes(97 + i % 26 for i in range(3000000))


def test_chunked_response_relayed(gateway):
    r, data = get(gateway, "/raw/chunked/100000?chunks=7")
    assert r.status == 200
    assert r.getheader("Transfer-Encoding") == "chunked"
    assert data == bytes(97 + i % 26 for i in range(100000))


def test_head_204_304_have_no_body_and_connection_stays_usable(gateway):
    c = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    r, data = get(gateway, "/raw/size/500", method="HEAD", conn=c)
    assert r.status == 200 and data == b"" and r.getheader("Content-Length") == "500"
    r, data = get(gateway, "/raw/status/204", conn=c)
    assert r.status == 204 and data == b""
    r, data = get(gateway, "/raw/status/304", conn=c)
    assert r.status == 304 and data == b""
    r, data = get(gateway, "/raw/size/10", conn=c)
    assert r.status == 200 and data == b"abcdefghij"
    c.close()


def test_pipelined_requests_answered_in_order(gateway):
    reqs = b"".join(b"GET /raw/size/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n for n in (5, 1, 3))
    reqs += b"GET /raw/size/2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    out = raw_request(gateway.port, reqs)
    bodies = []
    rest = out
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
        bodies.append(rest[:n])
        rest = rest[n:]
    assert bodies == [b"abcde", b"a", b"abc", b"ab"]


def test_expect_100_continue(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as s:
        s.sendall(b"POST /api/users/e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        data = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        while b"body_sha256" not in data:
            data += s.recv(65536)
        assert b"HTTP/1.1 200" in data
        assert b'"body_bytes":5' in data


def test_http10_client(gateway):
    out = raw_request(gateway.port, b"GET /api/users/old HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in out.lower() or b"keep-alive" not in out.lower()


def test_fifty_concurrent_clients(gateway):
    errors = []

    def client(i):
        try:
            c = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
            for j in range(20):
                body = b"x" * (i * 10 + j)
                r, data = get(gateway, f"/api/users/c{i}/{j}", method="POST", body=body, conn=c)
                echo = json.loads(data)
                if r.status != 200 or echo["body_bytes"] != len(body) or echo["path"] != f"/users/c{i}/{j}":
                    errors.append((i, j, r.status))
            c.close()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]


def test_access_log_records_requests(gateway):
    get(gateway, "/api/users/logged?q=1")
    import time
    deadline = time.time() + 3
    while time.time() < deadline:
        recs = [r for r in gateway.access_records() if r["path"] == "/api/users/logged"]
        if recs:
            break
        time.sleep(0.05)
    assert recs, "no access log record"
    rec = recs[-1]
    assert rec["status"] == 200 and rec["route"] == "users" and rec["method"] == "GET"
    assert rec["reason"] == "ok" and rec["upstream"].startswith("127.0.0.1:")


def test_half_closed_upload_is_forwarded_whole(gateway):
    """Like `nc -N`: the whole chunked body, then the client shuts its sending side."""
    payload = bytes(range(256)) * 4096  # 1 MiB, more than the gateway buffers towards the upstream
    chunks = b"".join(b"%x\r\n%s\r\n" % (65536, payload[i:i + 65536]) for i in range(0, len(payload), 65536))
    req = (b"POST /api/users/hc HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    out = raw_request(gateway.port, req, shutdown=True)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), out[:200]
    echo = json.loads(body)
    assert echo["body_bytes"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_ipv6_listener_and_upstream(tmp_path):
    from conftest import Gateway, UPSTREAM, free_port, wait_port
    import subprocess
    up_port, port = free_port(), free_port()
    up = subprocess.Popen([UPSTREAM, "--listen", f"[::1]:{up_port}", "--name", "v6"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cfg = (f"workers: 1\nupstreams:\n  u: {{ targets: ['[::1]:{up_port}'] }}\n"
               f"frontends:\n  - name: f\n    listen: ['[::1]:{port}', '127.0.0.1:{port}']\n"
               f"    routes:\n      - name: all\n        match: {{ path_prefix: / }}\n        upstream: u\n")
        gw = Gateway(str(tmp_path), cfg, port)
        with socket.create_connection(("::1", port), timeout=5) as s:
            s.sendall(b"GET /six HTTP/1.1\r\nHost: v6\r\nConnection: close\r\n\r\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        echo = json.loads(out.partition(b"\r\n\r\n")[2])
        assert echo["server"] == "v6" and echo["path"] == "/six"
        headers = dict((k.lower(), v) for k, v in echo["headers"])
        assert headers["x-forwarded-for"] == "::1"
        assert gw.stop() == 0
        assert any(r["client"].startswith("[::1]:") for r in gw.access_records())
    finally:
        up.terminate()
        up.wait(5)
