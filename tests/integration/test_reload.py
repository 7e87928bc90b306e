"""Configuration reload (SIGHUP and POST /reload) under sustained keep-alive load: routes, upstreams
and a listener added and removed 20 times while many clients send requests, and not one request
fails and not one connection is reset. Also: an invalid file is refused with its FILE:LINE:COL
errors and the running configuration stays; a listener that stays is never closed; a removed one
stops accepting and its idle connections close."""
import http.client
import json
import os
import signal
import socket
import threading
import time

import pytest

from conftest import Gateway, Upstream, free_port, wait_port

TOKEN = "reload-test-token-0123456789"


def config(port, admin_port, upstreams, extra_listen=None, extra_route=False, targets=1):
    u1, u2 = upstreams
    listen = [f"'127.0.0.1:{port}'"] + ([f"'127.0.0.1:{extra_listen}'"] if extra_listen else [])
    users_targets = ", ".join(repr(u.addr) for u in (u1, u2)[:targets])
    routes = ("      - name: users\n        match: { path_prefix: /api/users }\n"
              "        upstream: users\n        strip_prefix: /api\n"
              "      - name: delay\n        match: { path_prefix: /delay }\n        upstream: users\n")
    if extra_route:
        routes += ("      - name: extra\n        match: { path_prefix: /extra }\n"
                   "        upstream: other\n")
    return (f"workers: 2\naccess_log: off\ndrain_timeout: 5s\n"
            f"upstreams:\n  users:\n    targets: [{users_targets}]\n    keepalive: 16\n"
            f"  other:\n    targets: ['{u2.addr}']\n"
            f"frontends:\n  - name: public\n    listen: [{', '.join(listen)}]\n    routes:\n{routes}"
            f"admin:\n  listen: 127.0.0.1:{admin_port}\n  token: {TOKEN}\n")


def admin(port, method, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, json.loads(body)


@pytest.fixture()
def setup(tmp_path):
    ups = (Upstream("u1", threads=2), Upstream("u2", threads=2))
    port, admin_port = free_port(), free_port()
    gw = Gateway(str(tmp_path), config(port, admin_port, ups), port)
    wait_port(admin_port, gw.proc)
    yield gw, ups, port, admin_port
    code = gw.stop()
    for u in ups:
        u.stop()
    assert code == 0, gw.logs()[-3000:]


def write_config(gw, text):
    tmp = gw.config + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, gw.config)  # a reload never reads half a file


class LoadClient(threading.Thread):
    """One keep-alive connection sending GETs until told to stop (bounded in count and time);
    every failure (error status, reset, early close) is recorded."""

    def __init__(self, port, stop, max_requests=20000, max_seconds=120):
        super().__init__(daemon=True)
        self.port, self.stop, self.max_requests, self.max_seconds = port, stop, max_requests, max_seconds
        self.ok = 0
        self.failures = []

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        end = time.time() + self.max_seconds
        try:
            while not self.stop.is_set() and self.ok < self.max_requests and time.time() < end:
                conn.request("GET", f"/api/users/{self.ok}")
                r = conn.getresponse()
                r.read()
                if r.status != 200 or r.getheader("Connection", "").lower() == "close":
                    self.failures.append(f"status {r.status} {r.getheader('Connection')}")
                    return
                self.ok += 1
        except Exception as e:  # a reset or an early close
            self.failures.append(repr(e))
        finally:
            conn.close()


def get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def test_twenty_reloads_under_load_lose_nothing(setup):
    gw, ups, port, admin_port = setup
    stop = threading.Event()
    clients = [LoadClient(port, stop) for _ in range(24)]
    for c in clients:
        c.start()
    extra_port = free_port()
    time.sleep(0.3)
    generations = []
    for i in range(20):
        odd = i % 2 == 0  # reloads 1, 3, ... add; 2, 4, ... remove
        write_config(gw, config(port, admin_port, ups, extra_listen=extra_port if odd else None,
                                extra_route=odd, targets=2 if odd else 1))
        if i % 4 == 3:
            gw.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 20
            while time.time() < deadline:
                status, body = admin(admin_port, "GET", "/status")
                if body["config"]["generation"] == i + 2:
                    break
                time.sleep(0.02)
            generations.append(body["config"]["generation"])
        else:
            status, body = admin(admin_port, "POST", "/reload")
            assert status == 200, body
            generations.append(body["generation"])
        # what the new configuration says holds at once for new requests
        if odd:
            assert get(extra_port, "/api/users/x") == 200
            assert get(port, "/extra/x") == 200
        else:
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", extra_port), timeout=2).close()
            assert get(port, "/extra/x") == 404
        time.sleep(0.05)
    stop.set()
    for c in clients:
        c.join(30)
    assert generations == list(range(2, 22))
    failures = [f for c in clients for f in c.failures]
    assert failures == [], failures[:5]
    total = sum(c.ok for c in clients)
    assert total > 24 * 20, total  # every client kept going across the reloads
    # both targets took traffic while the upstream had two
    assert ups[1].stats()["requests"] > 0


def test_invalid_file_is_refused_and_running_config_stays(setup):
    gw, ups, port, admin_port = setup
    good = open(gw.config).read()
    write_config(gw, good.replace("strip_prefix: /api", "strip_prefix: /nope"))
    status, body = admin(admin_port, "POST", "/reload")
    assert status == 400
    assert body["error"]["reason"] == "reload_refused"
    errors = body["error"]["errors"]
    assert len(errors) == 1
    assert errors[0].startswith(gw.config + ":"), errors
    line, col = errors[0][len(gw.config) + 1:].split(":")[:2]
    assert int(line) > 0 and int(col) > 0
    assert "not a prefix of the route's path" in errors[0]
    assert get(port, "/api/users/1") == 200  # still served by generation 1
    status, body = admin(admin_port, "GET", "/status")
    assert body["config"]["generation"] == 1
    assert body["config"]["reloads"] == {"ok": 0, "failed": 1}
    # SIGHUP with a broken file: the same errors in the log, nothing changes
    write_config(gw, good + "workers: [\n")
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while gw.logs().count("reload refused: 1 error") < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert "YAML syntax error" in gw.logs()
    assert f"reload refused: {gw.config}:" in gw.logs()
    assert get(port, "/api/users/1") == 200
    write_config(gw, good)
    status, body = admin(admin_port, "POST", "/reload")
    assert status == 200 and body["generation"] == 2


def test_address_in_use_refuses_the_reload(setup):
    gw, ups, port, admin_port = setup
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        write_config(gw, config(port, admin_port, ups, extra_listen=busy, extra_route=True))
        status, body = admin(admin_port, "POST", "/reload")
    assert status == 400
    assert f"listen 127.0.0.1:{busy}: Address already in use" in body["error"]["errors"][0]
    assert get(port, "/extra/x") == 404  # nothing of the refused configuration applies
    assert get(port, "/api/users/1") == 200


def test_removed_listener_closes_idle_connections_and_keeps_others(setup):
    gw, ups, port, admin_port = setup
    extra = free_port()
    write_config(gw, config(port, admin_port, ups, extra_listen=extra))
    assert admin(admin_port, "POST", "/reload")[0] == 200
    stay = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    stay.request("GET", "/api/users/1")
    assert stay.getresponse().read() is not None
    gone = socket.create_connection(("127.0.0.1", extra), timeout=5)
    gone.sendall(b"GET /api/users/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert gone.recv(65536).startswith(b"HTTP/1.1 200")
    busy = socket.create_connection(("127.0.0.1", extra), timeout=5)
    busy.sendall(b"GET /delay/700 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)  # in flight when its listener goes
    write_config(gw, config(port, admin_port, ups))
    assert admin(admin_port, "POST", "/reload")[0] == 200
    gone.settimeout(5)
    assert gone.recv(65536) == b""  # the idle connection of the removed listener closed (FIN)
    gone.close()
    busy.settimeout(5)
    answer = b""
    while chunk := busy.recv(65536):  # the request in flight is answered, then the close
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer, answer
    busy.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", extra), timeout=2).close()
    stay.request("GET", "/api/users/2")  # the kept listener's connection goes on
    r = stay.getresponse()
    r.read()
    assert r.status == 200
    stay.close()
