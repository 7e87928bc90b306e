"""The admin API on its own loopback listener: the bearer token, /status, /config with secrets
redacted, /metrics in Prometheus text (checked by promtool) counting what the gateway did,
/upstreams with passive health, errors as JSON, keep-alive, and the access log reopened on
SIGUSR1 for log rotation."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import Gateway, Upstream, free_port, make_config, raw_request, wait_port

TOKEN = "admin-test-token-0123456789"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    up = Upstream("u1")
    port, admin_port, dead = free_port(), free_port(), free_port()
    tmp = tmp_path_factory.mktemp("admin")
    routes = ("      - name: users\n        match: { path_prefix: /api/users }\n"
              "        upstream: users\n        strip_prefix: /api\n"
              "      - name: dead\n        match: { path_prefix: /dead }\n        upstream: dead\n")
    cfg = make_config(port, [("users", [up.addr], "5s"), ("dead", [f"127.0.0.1:{dead}"], "1s")],
                      routes, extra=f"admin:\n  listen: 127.0.0.1:{admin_port}\n  token: {TOKEN}\n")
    cfg = cfg.replace("access_log: stderr", f"access_log: {tmp}/access.log")
    g = Gateway(str(tmp), cfg, port)
    wait_port(admin_port, g.proc)
    g.admin_port = admin_port
    g.access_log = f"{tmp}/access.log"
    g.up = up
    yield g
    code = g.stop()
    up.stop()
    assert code == 0, g.logs()[-3000:]


def ask(gw, method, path, token=TOKEN, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=10)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    c.request(method, path, headers=h)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def get_json(gw, path):
    r, body = ask(gw, "GET", path)
    assert r.status == 200, body
    assert r.getheader("Content-Type") == "application/json"
    return json.loads(body)


def test_token_is_required(gw):
    for token in (None, "wrong-token-0123456789", TOKEN + "x", TOKEN[:-1]):
        r, body = ask(gw, "GET", "/status", token=token)
        assert r.status == 401
        assert r.getheader("WWW-Authenticate") == 'Bearer realm="ringway-admin"'
        assert json.loads(body)["error"]["reason"] == "unauthorized"
    r, _ = ask(gw, "GET", "/status", token=None, headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status == 401
    assert "admin: GET /status refused: missing or wrong bearer token" in gw.logs()


def test_status(gw):
    s = get_json(gw, "/status")
    assert s["version"] == "0.1.0"
    assert s["pid"] == gw.proc.pid
    assert s["workers"] == 2
    assert s["config"]["file"] == gw.config
    assert s["config"]["generation"] >= 1
    assert s["uptime_seconds"] >= 0
    assert s["frontends"] == [{"name": "public", "listen": [f"127.0.0.1:{gw.port}"], "routes": 2}]
    with socket.create_connection(("127.0.0.1", gw.port)) as held:
        held.sendall(b"GET /api/users/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held.recv(65536).startswith(b"HTTP/1.1 200")
        assert get_json(gw, "/status")["open_connections"] >= 1


def test_config_is_the_running_one_with_secrets_redacted(gw):
    r, body = ask(gw, "GET", "/config")
    assert r.status == 200
    assert TOKEN.encode() not in body
    c = json.loads(body)
    assert c["file"] == gw.config
    assert c["config"]["admin"]["token"] == "<redacted>"
    assert c["config"]["workers"] == 2
    assert c["config"]["upstreams"]["users"]["targets"] == [gw.up.addr]
    assert c["config"]["frontends"][0]["routes"][0]["name"] == "users"
    assert "token" in c["redacted_keys"]


def test_errors_are_json_and_keep_alive_works(gw):
    c = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=10)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    c.request("GET", "/nope", headers=auth)
    r = c.getresponse()
    assert r.status == 404 and json.loads(r.read())["error"]["reason"] == "no_route"
    c.request("GET", "/reload", headers=auth)  # same connection
    r = c.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "POST"
    r.read()
    c.request("POST", "/status", headers=auth)
    r = c.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
    r.read()
    c.request("HEAD", "/status", headers=auth)
    r = c.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length")) > 0 and r.read() == b""
    c.close()
    out = raw_request(gw.admin_port, f"POST /reload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer "
                      f"{TOKEN}\r\nContent-Length: 3\r\n\r\nabc".encode())
    assert out.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in out
    out = raw_request(gw.admin_port, b"GET /status HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b'"reason":"bad_header"' in out


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_what_happened_and_pass_promtool(gw):
    r, body = ask(gw, "GET", "/metrics")
    assert r.status == 200
    assert r.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    before = body.decode()
    for i in range(7):
        assert raw_request(gw.port, f"GET /api/users/{i} HTTP/1.1\r\nHost: x\r\nConnection: close"
                           "\r\n\r\n".encode()).startswith(b"HTTP/1.1 200")
    assert raw_request(gw.port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       ).startswith(b"HTTP/1.1 404")
    assert raw_request(gw.port, b"GET /dead/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       ).startswith(b"HTTP/1.1 502")
    time.sleep(0.2)
    after = ask(gw, "GET", "/metrics")[1].decode()
    ok = dict(frontend="public", route="users", **{"status_class": "2xx"})
    assert metric(after, "ringway_requests_total", **ok) - metric(before, "ringway_requests_total", **ok) == 7
    assert metric(after, "ringway_refusals_total", reason="no_route") >= 1
    assert metric(after, "ringway_refusals_total", reason="upstream_connect_failed") >= 1
    assert metric(after, "ringway_build_info", version="0.1.0") == 1
    promtool = shutil.which("promtool")
    if not promtool:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (Debian package prometheus)")
        pytest.skip("promtool is missing (Debian package prometheus)")
    check = subprocess.run([promtool, "check", "metrics"], input=after.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_upstreams_report_targets_and_health(gw):
    raw_request(gw.port, b"GET /api/users/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw_request(gw.port, b"GET /dead/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    ups = {u["name"]: u for u in get_json(gw, "/upstreams")}
    assert set(ups) == {"users", "dead"}
    [users] = ups["users"]["targets"]
    assert users["address"] == gw.up.addr and users["health"] == "up"
    [dead] = ups["dead"]["targets"]
    assert dead["health"] == "down" and dead["failures"] >= 1


def test_sigusr1_reopens_the_access_log(gw):
    raw_request(gw.port, b"GET /api/users/before HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.2)
    os.rename(gw.access_log, gw.access_log + ".1")
    gw.proc.send_signal(signal.SIGUSR1)
    deadline = time.time() + 10
    while "access log" not in gw.logs().split("SIGUSR1")[-1] and time.time() < deadline:
        time.sleep(0.05)
    raw_request(gw.port, b"GET /api/users/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    deadline = time.time() + 10
    def written():
        return os.path.exists(gw.access_log) and open(gw.access_log, "rb").read()
    while not written() or b"/after" not in written() or not written().endswith(b"\n"):
        assert time.time() < deadline, "the request after SIGUSR1 never reached the new file"
        time.sleep(0.05)
    old = open(gw.access_log + ".1", "rb").read()
    assert b"/users/before" in old and b"/after" not in old
    new = [json.loads(line) for line in open(gw.access_log, "rb").read().splitlines()]
    assert [r["path"] for r in new] == ["/api/users/after"]


def test_check_refuses_an_admin_off_loopback_without_token(tmp_path):
    from conftest import RINGWAY
    port = free_port()
    cfg = make_config(port, [("u", ["127.0.0.1:9"], "1s")],
                      "      - name: r\n        match: { path_prefix: / }\n        upstream: u\n",
                      extra="admin:\n  listen: 0.0.0.0:9901\n")
    path = tmp_path / "c.yaml"
    path.write_text(cfg)
    out = subprocess.run([RINGWAY, "check", "-c", str(path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{path}:5:11: admin.listen: 0.0.0.0:9901 is off loopback: set admin.token too" in out.stderr
