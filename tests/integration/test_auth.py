"""Authentication at the gateway: identity headers (X-Consumer-*, X-Access-Token) are the
gateway's alone, so a client's own never reach an upstream; API keys name a consumer (401
without a known one), the route's groups let it in or not (403), and the upstream is told who
called."""
import hashlib
import http.client
import json
import time

import pytest

from conftest import Gateway, Upstream, free_port, make_config


def key_hash(key):
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def auth_gateway(tmp_path_factory):
    up = Upstream("a1")
    port = free_port()
    routes = (
        "      - name: open\n        match: { path_prefix: /open }\n        upstream: app\n"
        "      - name: keyed\n        match: { path_prefix: /keyed }\n        upstream: app\n"
        "        auth: [api_key]\n"
        "      - name: query\n        match: { path_prefix: /query }\n        upstream: app\n"
        "        auth: [api_key]\n        api_key: { header: X-Key, query: api_key }\n"
        "      - name: partners\n        match: { path_prefix: /partners }\n        upstream: app\n"
        "        auth: [api_key]\n        allow_groups: [partners]\n"
        "      - name: nobanned\n        match: { path_prefix: /nobanned }\n        upstream: app\n"
        "        auth: [api_key]\n        deny_groups: [banned]\n"
        "      - name: shown\n        match: { path_prefix: /shown }\n        upstream: app\n"
        "        auth: [api_key]\n        hide_credentials: false\n")
    consumers = (
        "consumers:\n"
        "  - name: mobile-app\n    groups: [mobile]\n"
        f"    api_keys: [\"{key_hash('key-mobile')}\"]\n"
        "  - name: partner\n    groups: [partners, banned]\n"
        f"    api_keys: [\"{key_hash('key-partner')}\"]\n")
    cfg = make_config(port, [("app", [up.addr], "10s")], routes, extra=consumers)
    internal_port = free_port()  # a frontend whose auth keys are its routes' defaults
    cfg += (f"  - name: internal\n    listen: ['127.0.0.1:{internal_port}']\n"
            "    auth: [api_key]\n    allow_groups: [mobile]\n    routes:\n"
            "      - name: all\n        match: { path_prefix: / }\n        upstream: app\n")
    gw = Gateway(str(tmp_path_factory.mktemp("gw")), cfg, port)
    gw.internal_port = internal_port
    yield gw
    assert gw.stop() == 0, gw.logs()[-4000:]
    up.stop()


def request(gw, path, headers=None, port=None):
    c = http.client.HTTPConnection("127.0.0.1", port or gw.port, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def upstream_echo(gw, path, headers, port=None):
    r, body = request(gw, path, headers, port)
    assert r.status == 200, body
    echo = json.loads(body)
    echo["headers"] = [(k.lower(), v) for k, v in echo["headers"]]
    return echo


def access_record(gw, path):
    """The access-log record of path (written asynchronously: waited for)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        recs = [r for r in gw.access_records() if r["path"] == path]
        if recs:
            return recs[-1]
        time.sleep(0.05)
    raise AssertionError(f"no access log record of {path}")


def upstream_headers(gw, path, headers):
    return upstream_echo(gw, path, headers)["headers"]


def test_forged_identity_headers_are_dropped(auth_gateway):
    seen = upstream_headers(auth_gateway, "/open/x", {
        "X-Consumer-Id": "admin", "x-consumer-groups": "root", "X-CONSUMER-NAME": "admin",
        "X-Access-Token": "forged", "X-Consumer": "kept", "X-Access-Tokens": "kept",
        "X-Other": "kept"})
    names = [k for k, _ in seen]
    for forged in ("x-consumer-id", "x-consumer-groups", "x-consumer-name", "x-access-token"):
        assert forged not in names, forged
    assert ("x-consumer", "kept") in seen
    assert ("x-access-tokens", "kept") in seen
    assert ("x-other", "kept") in seen


def test_forged_identity_headers_are_dropped_on_an_auth_route(auth_gateway):
    seen = upstream_headers(auth_gateway, "/keyed/x", {
        "X-API-Key": "key-mobile", "X-Consumer-Id": "admin", "X-Consumer-Groups": "root",
        "X-Access-Token": "forged"})
    assert ("x-consumer-id", "mobile-app") in seen
    assert ("x-consumer-groups", "mobile") in seen
    assert ("x-consumer-id", "admin") not in seen
    assert ("x-consumer-groups", "root") not in seen
    assert "x-access-token" not in [k for k, _ in seen]


def test_key_in_header_names_the_consumer_and_is_hidden(auth_gateway):
    seen = upstream_headers(auth_gateway, "/keyed/logged", {"x-api-key": "key-partner"})
    assert ("x-consumer-id", "partner") in seen
    assert ("x-consumer-name", "partner") in seen
    assert ("x-consumer-groups", "partners,banned") in seen
    assert "x-api-key" not in [k for k, _ in seen]
    assert access_record(auth_gateway, "/keyed/logged")["consumer"] == "partner"


def test_key_in_query_parameter_when_configured(auth_gateway):
    echo = upstream_echo(auth_gateway, "/query/x?a=1&api_key=key-mobile&b=2", {})
    assert echo["query"] == "a=1&b=2"
    assert ("x-consumer-id", "mobile-app") in echo["headers"]
    echo = upstream_echo(auth_gateway, "/query/x?api_key=key-mobile", {})
    assert echo["query"] == ""
    seen = upstream_headers(auth_gateway, "/query/x", {"X-Key": "key-mobile"})
    assert ("x-consumer-id", "mobile-app") in seen
    assert "x-key" not in [k for k, _ in seen]
    r, _ = request(auth_gateway, "/keyed/x?api_key=key-mobile")  # no query on that route
    assert r.status == 401


def assert_refused(r, body, status, reason):
    assert r.status == status, body
    err = json.loads(body)["error"]
    assert err["status"] == status and err["reason"] == reason
    if status == 401:
        assert r.getheader("WWW-Authenticate") == 'ApiKey realm="ringway"'
    else:
        assert r.getheader("WWW-Authenticate") is None


def test_missing_key_is_401_with_a_challenge(auth_gateway):
    r, body = request(auth_gateway, "/keyed/refused")
    assert_refused(r, body, 401, "auth_missing")
    assert json.loads(body)["error"]["message"] == "credentials required"
    rec = access_record(auth_gateway, "/keyed/refused")
    assert rec["status"] == 401 and rec["reason"] == "auth_missing" and rec["consumer"] is None


def test_wrong_key_is_401(auth_gateway):
    r, body = request(auth_gateway, "/keyed/x", {"X-API-Key": "key-unknown"})
    assert_refused(r, body, 401, "auth_failed")


def test_acl_allow_and_deny_groups(auth_gateway):
    assert upstream_headers(auth_gateway, "/partners/x", {"X-API-Key": "key-partner"})
    r, body = request(auth_gateway, "/partners/x", {"X-API-Key": "key-mobile"})
    assert_refused(r, body, 403, "acl_denied")
    assert upstream_headers(auth_gateway, "/nobanned/x", {"X-API-Key": "key-mobile"})
    r, body = request(auth_gateway, "/nobanned/x", {"X-API-Key": "key-partner"})
    assert_refused(r, body, 403, "acl_denied")


def test_hide_credentials_false_keeps_the_key(auth_gateway):
    seen = upstream_headers(auth_gateway, "/shown/x", {"X-API-Key": "key-mobile"})
    assert ("x-api-key", "key-mobile") in seen
    assert ("x-consumer-id", "mobile-app") in seen


def test_frontend_defaults_apply_to_its_routes(auth_gateway):
    port = auth_gateway.internal_port
    r, body = request(auth_gateway, "/x", port=port)
    assert_refused(r, body, 401, "auth_missing")
    r, body = request(auth_gateway, "/x", {"X-API-Key": "key-partner"}, port=port)
    assert_refused(r, body, 403, "acl_denied")
    seen = upstream_echo(auth_gateway, "/x", {"X-API-Key": "key-mobile"}, port=port)["headers"]
    assert ("x-consumer-id", "mobile-app") in seen


def test_route_without_auth_needs_nothing(auth_gateway):
    seen = upstream_headers(auth_gateway, "/open/x", {"X-API-Key": "anything"})
    assert ("x-api-key", "anything") in seen
    assert "x-consumer-id" not in [k for k, _ in seen]
