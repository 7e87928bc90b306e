"""Backends-for-Frontends: several frontends in one gateway, one per kind of client, each with its
own listeners, hosts, routes and default policies. A route of one frontend is not reachable
through another; a frontend with `hosts` serves only those hosts (421 for others); the demo
configuration shows two frontends."""
import hashlib
import http.client
import json
import os
import subprocess

import pytest

from conftest import RINGWAY, ROOT, Gateway, Upstream, free_port, make_config, position, ringway_check


def key_hash(key):
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def bff(tmp_path_factory):
    up = Upstream("b1")
    web, mobile, partners = free_port(), free_port(), free_port()
    routes = ("      - name: pages\n        match: { path_prefix: /web }\n        upstream: app\n")
    extra = ("consumers:\n  - name: phone\n    groups: [mobile]\n"
             f"    api_keys: [\"{key_hash('k-phone')}\"]\n"
             "  - name: tablet\n    groups: [mobile]\n"
             f"    api_keys: [\"{key_hash('k-tablet')}\"]\n")
    cfg = make_config(web, [("app", [up.addr], "5s")], routes, extra=extra)
    cfg += (f"  - name: mobile\n    listen: ['127.0.0.1:{mobile}']\n"
            "    auth: [api_key]\n"
            "    rate_limit: [{by: consumer, rate: 2/m, burst: 2}]\n"
            "    routes:\n"
            "      - name: feed\n        match: { path_prefix: /m }\n        upstream: app\n"
            f"  - name: partners\n    listen: ['127.0.0.1:{partners}']\n"
            "    hosts: [api.partners.test, \"*.partners.test\"]\n"
            "    routes:\n"
            "      - name: orders\n        match: { path_prefix: /p }\n        upstream: app\n")
    gw = Gateway(str(tmp_path_factory.mktemp("gw")), cfg, web)
    gw.ports = {"web": web, "mobile": mobile, "partners": partners}
    yield gw
    assert gw.stop() == 0, gw.logs()[-3000:]
    up.stop()


def get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def test_a_route_of_one_frontend_is_not_reachable_through_another(bff):
    """Each frontend answers only its own routes: /web on the web frontend, /m on the mobile one;
    asked on the other listener, each is a 404 no_route."""
    assert get(bff.ports["web"], "/web/a")[0].status == 200
    assert get(bff.ports["mobile"], "/m/a", {"X-API-Key": "k-phone"})[0].status == 200
    r, body = get(bff.ports["web"], "/m/a", {"X-API-Key": "k-phone"})
    assert r.status == 404 and json.loads(body)["error"]["reason"] == "no_route"
    r, body = get(bff.ports["mobile"], "/web/a", {"X-API-Key": "k-phone"})
    assert r.status == 404 and json.loads(body)["error"]["reason"] == "no_route"


def test_each_frontend_has_its_own_default_policies(bff):
    """The mobile frontend's defaults (an API key, 2 requests a minute per consumer) apply to its
    routes and not to the web frontend's."""
    r, _ = get(bff.ports["mobile"], "/m/feed")
    assert r.status == 401
    assert r.getheader("WWW-Authenticate") == 'ApiKey realm="ringway"'
    statuses = [get(bff.ports["mobile"], "/m/feed", {"X-API-Key": "k-tablet"})[0].status
                for _ in range(3)]
    assert statuses == [200, 200, 429]
    for _ in range(5):  # the web frontend: no key asked, no limit
        r, _ = get(bff.ports["web"], "/web/feed")
        assert r.status == 200 and r.getheader("RateLimit-Limit") is None


def test_a_frontend_with_hosts_serves_only_those(bff):
    """hosts: [api.partners.test, *.partners.test]: those hosts (any port, any case) reach its
    routes; any other host is 421 misdirected_host with the JSON body."""
    port = bff.ports["partners"]
    for host in ("api.partners.test", "API.Partners.Test:8443", "eu.partners.test"):
        r, body = get(port, "/p/1", {"Host": host})
        assert r.status == 200, (host, body)
    for host in ("partners.test", "api.partners.test.evil", "example.com"):
        r, body = get(port, "/p/1", {"Host": host})
        assert r.status == 421, host
        err = json.loads(body)["error"]
        assert err["status"] == 421 and err["reason"] == "misdirected_host"


def test_hosts_errors(tmp_path):
    """An empty hosts list, or a pattern that is not a host name, is FILE:LINE:COL."""
    text = make_config(free_port(), [("app", ["127.0.0.1:9"], "5s")],
                       "      - {name: r, match: {path_prefix: /}, upstream: app}\n")
    text = text.replace("    routes:\n", "    hosts: [\"bad host\", \"a.test:80\"]\n    routes:\n")
    path, rc, out = ringway_check(tmp_path, text)
    assert rc == 1
    bad, port = position(text, '"bad host"'), position(text, '"a.test:80"')
    assert f"{path}:{bad}: hosts: invalid host pattern 'bad host'" in out
    assert f"{path}:{port}: hosts: invalid host pattern 'a.test:80'" in out
    text = text.replace('[\"bad host\", \"a.test:80\"]', "[]")
    path, rc, out = ringway_check(tmp_path, text, "empty.yaml")
    assert rc == 1 and "hosts: empty list" in out


def test_the_demo_configuration_has_two_frontends():
    """config/ringway.yaml (make run) is valid and shows Backends-for-Frontends: two frontends,
    the second with its own auth and rate-limit defaults."""
    demo = os.path.join(ROOT, "config", "ringway.yaml")
    r = subprocess.run([RINGWAY, "check", "-c", demo], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    with open(demo) as f:
        text = f.read()
    assert text.count("\n  - name: ") >= 2  # frontends (consumers are indented the same: +1)
    assert "  - name: mobile\n" in text and "    auth: [api_key]\n" in text
