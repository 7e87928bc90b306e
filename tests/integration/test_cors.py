"""CORS at the gateway: a preflight (OPTIONS with Origin and Access-Control-Request-Method) to a
route with cors is answered by the gateway, also when the route's methods lack OPTIONS (204 with
the Access-Control-Allow-* fields and Vary: Origin; 403 cors_origin_denied for an origin not
allowed); a normal request from an allowed origin gets Access-Control-Allow-Origin (echoed, or *),
-Allow-Credentials, -Expose-Headers and Vary: Origin on its answer, proxied or refused; without an
Origin, or with one not allowed, nothing is added. A frontend's cors is the default of its routes.
Configuration mistakes are refused by `ringway check` with FILE:LINE:COL."""
import http.client
import json
import time

import pytest

from conftest import Gateway, Upstream, free_port, make_config, position, ringway_check

APP = "https://app.example.com"

ROUTES = (
    "      - name: api\n        match: { path_prefix: /api, methods: [GET, POST] }\n"
    "        upstream: app\n"
    "        cors:\n"
    f"          origins: [\"{APP}\", \"http://localhost:3000\"]\n"
    "          headers: [Content-Type, Authorization]\n"
    "          expose: [X-Request-Id, X-Upstream]\n"
    "          credentials: true\n"
    "          max_age: 10m\n"
    "      - name: star\n        match: { path_prefix: /star }\n        upstream: app\n"
    "        cors: { origins: [\"*\"], methods: [GET] }\n"
    "      - name: limited\n        match: { path_prefix: /limited }\n        upstream: app\n"
    "        cors: { origins: [\"*\"] }\n"
    "        rate_limit: [{ by: ip, rate: 1/h }]\n"
    "      - name: nocors\n        match: { path_prefix: /nocors, methods: [GET] }\n"
    "        upstream: app\n")


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    up = Upstream("c1")
    port = free_port()
    cfg = make_config(port, [("app", [up.addr], "10s")], ROUTES)
    g = Gateway(str(tmp_path_factory.mktemp("gw")), cfg, port)
    yield g
    code = g.stop()
    up.stop()
    assert code == 0, g.logs()[-4000:]


def call(port, method, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


def test_preflight_answered_without_options_in_methods(gw):
    r, data = call(gw.port, "OPTIONS", "/api/users", {
        "Origin": APP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status == 204, data
    assert data == b""
    assert r.getheader("Access-Control-Allow-Origin") == APP
    assert r.getheader("Access-Control-Allow-Methods") == "GET, POST"
    assert r.getheader("Access-Control-Allow-Headers") == "Content-Type, Authorization"
    assert r.getheader("Access-Control-Max-Age") == "600"
    assert r.getheader("Access-Control-Allow-Credentials") == "true"
    assert r.getheader("Vary") == "Origin"
    assert r.getheader("Content-Length") is None
    assert r.getheader("X-Request-Id")
    assert r.getheader("X-Upstream") is None          # the gateway answered


def test_preflight_origin_denied(gw):
    r, data = call(gw.port, "OPTIONS", "/api/users", {
        "Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"})
    assert r.status == 403
    assert json.loads(data)["error"]["reason"] == "cors_origin_denied"
    assert r.getheader("Access-Control-Allow-Origin") is None
    deadline = time.time() + 10  # the access log is written asynchronously: waited for
    records = []
    while time.time() < deadline and not records:
        records = [rec for rec in gw.access_records() if rec.get("reason") == "cors_origin_denied"]
        time.sleep(0.05)
    assert records and records[-1]["route"] == "api" and records[-1]["status"] == 403


def test_star_origin_and_route_methods(gw):
    r, _ = call(gw.port, "OPTIONS", "/star/x", {
        "Origin": "https://any.example.org", "Access-Control-Request-Method": "GET"})
    assert r.status == 204
    assert r.getheader("Access-Control-Allow-Origin") == "*"
    assert r.getheader("Access-Control-Allow-Methods") == "GET"
    assert r.getheader("Access-Control-Allow-Credentials") is None
    assert r.getheader("Access-Control-Max-Age") is None


def test_options_without_preflight_fields_is_routed(gw):
    # no Access-Control-Request-Method: not a preflight, the route's method check applies
    r, _ = call(gw.port, "OPTIONS", "/api/users", {"Origin": APP})
    assert r.status == 405
    assert r.getheader("Allow") == "GET, POST"
    # a route without cors: the usual 405
    r, _ = call(gw.port, "OPTIONS", "/nocors/x", {
        "Origin": APP, "Access-Control-Request-Method": "GET"})
    assert r.status == 405


def test_normal_request_from_allowed_origin(gw):
    r, data = call(gw.port, "GET", "/api/users", {"Origin": APP})
    assert r.status == 200
    assert r.getheader("Access-Control-Allow-Origin") == APP
    assert r.getheader("Access-Control-Allow-Credentials") == "true"
    assert r.getheader("Access-Control-Expose-Headers") == "X-Request-Id, X-Upstream"
    assert "Origin" in r.msg.get_all("Vary")
    assert r.getheader("X-Upstream") == "c1"
    r, _ = call(gw.port, "GET", "/star/x", {"Origin": "https://any.example.org"})
    assert r.getheader("Access-Control-Allow-Origin") == "*"


def test_no_or_denied_origin_adds_nothing(gw):
    for headers in ({}, {"Origin": "https://evil.example.com"}):
        r, _ = call(gw.port, "GET", "/api/users", headers)
        assert r.status == 200
        assert r.getheader("Access-Control-Allow-Origin") is None
        assert r.getheader("Vary") is None


def test_gateway_refusal_carries_cors(gw):
    h = {"Origin": "https://a.example"}
    r1, _ = call(gw.port, "GET", "/limited/x", h)
    r2, data = call(gw.port, "GET", "/limited/x", h)
    statuses = sorted([r1.status, r2.status])
    assert statuses == [200, 429], data
    r = r1 if r1.status == 429 else r2
    assert r.getheader("Access-Control-Allow-Origin") == "*"
    assert r.getheader("Vary") == "Origin"


def test_frontend_default(tmp_path_factory):
    up = Upstream("c2")
    port = free_port()
    routes = ("      - name: a\n        match: { path_prefix: /a, methods: [PUT] }\n"
              "        upstream: app\n"
              "      - name: b\n        match: { path_prefix: /b }\n        upstream: app\n"
              "        cors: { origins: [\"https://b.example\"] }\n")
    cfg = make_config(port, [("app", [up.addr], "10s")], routes)
    cfg = cfg.replace("    routes:\n", "    cors: { origins: [\"https://f.example\"] }\n"
                      "    routes:\n", 1)
    g = Gateway(str(tmp_path_factory.mktemp("gwf")), cfg, port)
    try:
        pre = {"Access-Control-Request-Method": "PUT"}
        r, _ = call(port, "OPTIONS", "/a/1", {"Origin": "https://f.example", **pre})
        assert r.status == 204
        assert r.getheader("Access-Control-Allow-Methods") == "PUT"
        r, _ = call(port, "OPTIONS", "/b/1", {"Origin": "https://f.example", **pre})
        assert r.status == 403                         # b's own cors replaces the default
        r, _ = call(port, "OPTIONS", "/b/1", {"Origin": "https://b.example", **pre})
        assert r.status == 204
    finally:
        code = g.stop()
        up.stop()
    assert code == 0, g.logs()[-4000:]


BASE = ("upstreams:\n  app:\n    targets: ['127.0.0.1:9']\n"
        "frontends:\n  - name: f\n    listen: ['127.0.0.1:18080']\n    routes:\n"
        "      - name: r\n        match: { path_prefix: /a }\n        upstream: app\n")


@pytest.mark.parametrize("snippet,marker,message", [
    ("        cors: { origins: [\"app.example.com\"] }\n", "\"app.",
     "cors.origins: 'app.example.com' is not an origin (scheme://host[:port], no path, "
     "at most 256 characters)"),
    ("        cors: { origins: [\"https://a.example/\"] }\n", "\"https",
     "cors.origins: 'https://a.example/' is not an origin"),
    ("        cors: { origins: [\"*\", \"https://a.example\"] }\n", "\"*\"",
     "cors.origins: \"*\" must be the only entry"),
    ("        cors: { origins: [] }\n", "[]",
     "cors.origins: at least one origin (or \"*\") is required"),
    ("        cors: { origins: [\"*\"], methods: [GRAB] }\n", "GRAB",
     "cors.methods: unknown method 'GRAB'"),
    ("        cors: { origins: [\"*\"], headers: [\"Bad Name\"] }\n", "\"Bad",
     "cors.headers: 'Bad Name' is not a valid header name"),
    ("        cors: { origins: [\"*\"], max_age: soon }\n", "soon",
     "max_age: invalid duration 'soon'"),
    ("        cors: { methods: [GET] }\n", "{ methods",
     "cors: missing required key 'origins'"),
])
def test_config_errors(tmp_path, snippet, marker, message):
    text = BASE + snippet
    path, code, out = ringway_check(tmp_path, text)
    assert code != 0, out
    assert f"{path}:{position(text, marker)}: {message}" in out, out
