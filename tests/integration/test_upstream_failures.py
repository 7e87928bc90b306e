"""Upstream connection trouble that the gateway absorbs: a pooled connection closed under a request
(idempotent requests retried once on a fresh connection), a dead target among live ones, a pool
connection closed while idle."""
import http.client
import json
import time

import pytest

from conftest import Gateway, Upstream, free_port, make_config


@pytest.fixture(scope="module")
def racy(tmp_path_factory):
    """A gateway in front of an upstream that drops every kept-alive connection at its second
    request, and of a pool with one dead and one live target."""
    racy_up = Upstream("racy", extra=("--close-reused",))
    live = Upstream("live")
    idle = Upstream("idle", extra=("--idle-timeout", "200"))
    port = free_port()
    routes = ("      - name: racy\n        match: { path_prefix: /racy }\n        upstream: racy\n"
              "      - name: half\n        match: { path_prefix: /half }\n        upstream: half\n"
              "      - name: idle\n        match: { path_prefix: /idle }\n        upstream: idle\n")
    dead = f"127.0.0.1:{free_port()}"
    cfg = make_config(port, [("racy", [racy_up.addr], "5s"), ("half", [dead, live.addr], "5s"),
                             ("idle", [idle.addr], "5s")], routes, workers=1)
    gw = Gateway(str(tmp_path_factory.mktemp("racy")), cfg, port)
    yield gw, racy_up, live, idle
    code = gw.stop()
    for u in (racy_up, live, idle):
        u.stop()
    assert code == 0, gw.logs()[-3000:]


def request(gw, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def test_idempotent_request_retried_on_fresh_connection(racy):
    gw, racy_up, _, _ = racy
    racy_up.stats(reset=True)
    for i in range(5):  # each one after the first meets a pooled connection the upstream drops
        status, data = request(gw, "GET", f"/racy/{i}")
        assert status == 200, data
        assert json.loads(data)["path"] == f"/racy/{i}"
    assert "retrying GET" in gw.logs()


def test_non_idempotent_request_not_retried(racy):
    gw, racy_up, _, _ = racy
    request(gw, "GET", "/racy/warm")  # leaves a pooled connection the upstream will drop
    status, data = request(gw, "POST", "/racy/order", body=b"pay once")
    assert status == 502
    assert json.loads(data)["error"]["reason"] == "upstream_reset"


def test_dead_target_skipped_for_live_one(racy):
    gw, _, live, _ = racy
    for i in range(6):
        status, data = request(gw, "GET", f"/half/{i}")
        assert status == 200, data
        assert json.loads(data)["server"] == "live"
    assert "upstream_connect_failed" not in [r["reason"] for r in gw.access_records() if r["path"].startswith("/half")]


def test_pooled_connection_closed_while_idle_is_not_used(racy):
    gw, _, _, idle = racy
    idle.stats(reset=True)
    assert request(gw, "GET", "/idle/1")[0] == 200
    time.sleep(0.5)  # the upstream closes the idle pooled connection after 200 ms
    assert request(gw, "GET", "/idle/2")[0] == 200
    assert idle.stats()["accepts"] == 3  # two upstream connections, and the one asking for stats
    assert "retrying" not in "".join(l for l in gw.logs().splitlines() if "/idle/" in l)
