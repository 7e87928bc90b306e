"""Aggregation: a route answered by several upstream calls, sent concurrently on the worker's ring
(one leg each), chained with `after`, merged with jansson; partial answers, failures naming the
call, identity passed to every call, config errors. The upstreams are small JSON servers in this
file, on 127.0.0.1."""
import base64
import hashlib
import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest

from conftest import Gateway, free_port, make_config, position, ringway_check

DELAY = 0.2


class JsonUpstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 answering by path (see answer), recording every
    request's path and headers."""

    def __init__(self, name):
        self.name = name
        self.seen = []
        owner = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_GET(self):
                owner.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, ctype, body = owner.answer(self.path, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET
            do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.t = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.t.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def answer(self, path, headers):
        base, _, query = path.partition("?")
        parts = base.strip("/").split("/")
        j = lambda o, st=200: (st, "application/json", json.dumps(o).encode())
        if parts[0] == "slow":
            time.sleep(DELAY)
            return j({self.name: parts[1] if len(parts) > 1 else ""})
        if parts[0] == "users":
            return j({"id": parts[1], "name": "Ada", "address_id": 7, "tags": ["a", "b c"],
                      "shared": "users"})
        if parts[0] == "orders":
            return j({"orders": [1, 2], "query": query, "shared": "orders"})
        if parts[0] == "addresses":
            return j({"city": "Paris", "id": parts[1]})
        if parts[0] == "status":
            return j({"no": True}, int(parts[1]))
        if parts[0] == "text":
            return 200, "text/plain", b"not json at all"
        if parts[0] == "big":
            return j({"pad": "x" * 5000})
        if parts[0] == "list":
            return j([1, 2, 3])
        if parts[0] == "echo":
            return j({"path": path, "method": self.command_of(path)})
        return j({"path": path})

    def command_of(self, path):
        for m, p, _ in reversed(self.seen):
            if p == path:
                return m
        return None

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def key_hash(key):
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def ups():
    u = {n: JsonUpstream(n) for n in ("users", "orders", "geo")}
    yield u
    for s in u.values():
        s.stop()


def call_block(calls, extra=""):
    out = "        aggregate:\n" + extra + "          calls:\n"
    for c in calls:
        out += "            - { " + ", ".join(f"{k}: {json.dumps(v) if isinstance(v, str) else str(v).lower()}"
                                             for k, v in c.items()) + " }\n"
    return out


ROUTES = [
    ("profile", "/api/profile/{id}", [
        {"key": "user", "upstream": "users", "path": "/users/{id}"},
        {"key": "orders", "upstream": "orders", "path": "/orders?user={id}&q={query.q}", "required": False},
        {"key": "address", "upstream": "geo", "path": "/addresses/{user.body.address_id}", "after": "user"},
    ], "          timeout: 2s\n"),
    ("three", "/agg/three", [
        {"key": "a", "upstream": "users", "path": "/slow/a"},
        {"key": "b", "upstream": "orders", "path": "/slow/b"},
        {"key": "c", "upstream": "geo", "path": "/slow/c"},
    ], ""),
    ("partial", "/agg/partial", [
        {"key": "user", "upstream": "users", "path": "/users/1"},
        {"key": "bad", "upstream": "orders", "path": "/status/500", "required": False},
        {"key": "dead", "upstream": "dead", "path": "/x", "required": False},
    ], ""),
    ("required", "/agg/required", [
        {"key": "user", "upstream": "users", "path": "/users/1"},
        {"key": "bad", "upstream": "orders", "path": "/status/503"},
    ], ""),
    ("chainfail", "/agg/chainfail", [
        {"key": "first", "upstream": "orders", "path": "/status/404", "required": False},
        {"key": "second", "upstream": "geo", "path": "/addresses/{first.body.x}", "after": "first",
         "required": False},
        {"key": "user", "upstream": "users", "path": "/users/2"},
    ], ""),
    ("shallow_error", "/agg/shallow/error", [
        {"key": "user", "upstream": "users", "path": "/users/1"},
        {"key": "orders", "upstream": "orders", "path": "/orders"},
    ], "          merge: shallow\n"),
    ("shallow_first", "/agg/shallow/first", [
        {"key": "user", "upstream": "users", "path": "/users/1"},
        {"key": "orders", "upstream": "orders", "path": "/orders"},
    ], "          merge: shallow\n          collision: first\n"),
    ("shallow_last", "/agg/shallow/last", [
        {"key": "user", "upstream": "users", "path": "/users/1"},
        {"key": "orders", "upstream": "orders", "path": "/orders"},
    ], "          merge: shallow\n          collision: last\n"),
    ("shallow_list", "/agg/shallow/list", [
        {"key": "user", "upstream": "users", "path": "/users/1"},
        {"key": "list", "upstream": "orders", "path": "/list"},
    ], "          merge: shallow\n"),
    ("text", "/agg/text", [{"key": "t", "upstream": "orders", "path": "/text"}], ""),
    ("big", "/agg/big", [{"key": "b", "upstream": "orders", "path": "/big"}],
     "          max_body: 1000\n"),
    ("late", "/agg/late", [
        {"key": "user", "upstream": "users", "path": "/users/1"},
        {"key": "slow", "upstream": "orders", "path": "/slow/s", "required": False},
    ], "          timeout: 100ms\n"),
    ("limited", "/agg/limited", [
        {"key": "user", "upstream": "users", "path": "/users/1"},
        {"key": "bad", "upstream": "orders", "path": "/status/500", "required": False},
    ], ""),
    ("decorated", "/agg/decorated", [
        {"key": "e", "upstream": "users", "path": "/echo/decorated"},
    ], ""),
    ("who", "/agg/who/{x}", [
        {"key": "one", "upstream": "users", "path": "/echo/{consumer}/{x}?h={header.X-Thing}"},
        {"key": "two", "upstream": "orders", "path": "/echo/two", "method": "POST"},
    ], ""),
]


@pytest.fixture(scope="module")
def gw(ups, tmp_path_factory):
    port = free_port()
    routes = ""
    for name, path, calls, extra in ROUTES:
        routes += f"      - name: {name}\n        match: {{ path_exact: \"{path}\" }}\n"
        if name == "who":
            routes += "        auth: [api_key]\n"
        if name == "decorated":
            routes += ("        request: { headers: { set: { X-Env: prod } } }\n"
                       "        cors: { origins: [\"https://app.example\"] }\n")
        if name == "limited":
            routes += "        rate_limit: [{by: ip, rate: 1000/s}]\n"
        routes += call_block(calls, extra)
    dead = free_port()
    admin_port = free_port()
    extra = ("consumers:\n  - name: mobile-app\n    groups: [mobile]\n"
             f"    api_keys: [\"{key_hash('key-mobile')}\"]\n"
             "identity_token:\n  ttl: 60s\n  jwks_path: /.well-known/jwks.json\n"
             f"admin:\n  listen: 127.0.0.1:{admin_port}\n")
    cfg = make_config(port, [("users", [ups["users"].addr], "5s"),
                             ("orders", [ups["orders"].addr], "5s"),
                             ("geo", [ups["geo"].addr], "5s"),
                             ("dead", [f"127.0.0.1:{dead}"], "1s")], routes, extra=extra)
    g = Gateway(str(tmp_path_factory.mktemp("agg")), cfg, port)
    g.admin_port = admin_port
    yield g
    assert g.stop() == 0, g.logs()[-4000:]


def records(gw, route):
    """The access records of route, waiting a little for the log to be written."""
    deadline = time.time() + 3
    while True:
        recs = [r for r in gw.access_records() if r.get("route") == route]
        if recs or time.time() > deadline:
            return recs
        time.sleep(0.05)


def get(port, path, headers=None, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def test_profile_with_path_parameter_query_and_chained_call(gw, ups):
    r, body = get(gw.port, "/api/profile/42?q=a%20b")
    assert r.status == 200, body
    assert r.getheader("Content-Type") == "application/json"
    assert r.getheader("X-Request-Id")
    assert r.getheader("X-Ringway-Partial") is None
    doc = json.loads(body)
    assert list(doc) == ["user", "orders", "address"]
    assert doc["user"]["id"] == "42"
    assert doc["orders"]["query"] == "user=42&q=a%20b"
    assert doc["address"] == {"city": "Paris", "id": "7"}  # from the user's answer
    rec = records(gw, "profile")
    assert rec and rec[-1]["status"] == 200 and rec[-1]["upstream"] == ups["users"].addr, rec


def test_three_calls_run_concurrently(gw, ups):
    # the three direct calls, one after the other
    t0 = time.monotonic()
    for u in ("users", "orders", "geo"):
        r, _ = get(ups[u].port, "/slow/x")
        assert r.status == 200
    sequential = time.monotonic() - t0
    best = None
    for _ in range(3):
        t0 = time.monotonic()
        r, body = get(gw.port, "/agg/three")
        took = time.monotonic() - t0
        assert r.status == 200, body
        assert json.loads(body) == {"a": {"users": "a"}, "b": {"orders": "b"}, "c": {"geo": "c"}}
        best = took if best is None else min(best, took)
    # concurrent: below the sequential sum of the three delays (ratio, not a fixed threshold)
    assert best < sequential * 2 / 3, (best, sequential)


def test_optional_failures_are_null_and_named_in_the_header(gw):
    r, body = get(gw.port, "/agg/partial")
    assert r.status == 200, body
    assert r.getheader("X-Ringway-Partial") == "bad,dead"
    doc = json.loads(body)
    assert doc["user"]["name"] == "Ada" and doc["bad"] is None and doc["dead"] is None


def test_rate_limit_fields_and_the_partial_header_together(gw):
    r, body = get(gw.port, "/agg/limited")
    assert r.status == 200, body
    assert r.getheader("X-Ringway-Partial") == "bad"
    assert r.getheader("RateLimit-Policy") and r.getheader("RateLimit-Remaining"), r.getheaders()
    assert json.loads(body)["bad"] is None


def test_required_failure_is_502_naming_the_call(gw):
    r, body = get(gw.port, "/agg/required")
    assert r.status == 502
    err = json.loads(body)["error"]
    assert err["reason"] == "aggregate_call_failed"
    assert err["call"] == "bad" and err["why"] == "status 503", err
    rec = records(gw, "required")
    assert rec and rec[-1]["reason"] == "aggregate_call_failed", rec


def test_a_call_after_a_failed_one_fails_too(gw):
    r, body = get(gw.port, "/agg/chainfail")
    assert r.status == 200, body
    assert r.getheader("X-Ringway-Partial") == "first,second"
    doc = json.loads(body)
    assert doc["first"] is None and doc["second"] is None and doc["user"]["id"] == "2"


def test_shallow_merge_and_collisions(gw):
    r, body = get(gw.port, "/agg/shallow/error")
    assert r.status == 502
    err = json.loads(body)["error"]
    assert err["reason"] == "aggregate_merge_conflict" and err["key"] == "shared", err
    r, body = get(gw.port, "/agg/shallow/first")
    doc = json.loads(body)
    assert r.status == 200 and doc["shared"] == "users" and doc["orders"] == [1, 2], doc
    assert list(doc)[:2] == ["id", "name"]
    r, body = get(gw.port, "/agg/shallow/last")
    doc = json.loads(body)
    assert r.status == 200 and doc["shared"] == "orders" and doc["name"] == "Ada", doc
    r, body = get(gw.port, "/agg/shallow/list")  # a required non-object body
    err = json.loads(body)["error"]
    assert r.status == 502 and err["call"] == "list" and "object" in err["why"], err


def test_non_json_and_too_large_bodies_fail_the_call(gw):
    r, body = get(gw.port, "/agg/text")
    err = json.loads(body)["error"]
    assert r.status == 502 and err["call"] == "t" and err["why"] == "body is not JSON", err
    r, body = get(gw.port, "/agg/big")
    err = json.loads(body)["error"]
    assert r.status == 502 and err["call"] == "b" and "max_body" in err["why"], err


def test_the_whole_aggregate_has_one_deadline(gw):
    r, body = get(gw.port, "/agg/late")
    assert r.status == 200, body
    assert r.getheader("X-Ringway-Partial") == "slow"
    assert json.loads(body)["slow"] is None


def test_identity_reaches_every_call(gw, ups):
    r, body = get(gw.port, "/agg/who/p%2Fq", {"X-API-Key": "key-mobile", "X-Thing": "t 1",
                                             "X-Consumer-Id": "forged", "X-Request-Id": "rid-agg-1"})
    assert r.status == 200, body
    doc = json.loads(body)
    assert doc["one"]["path"] == "/echo/mobile-app/p%2Fq?h=t%201", doc
    assert doc["two"]["method"] == "POST"
    r2, jwks = get(gw.port, "/.well-known/jwks.json")
    keys = json.loads(jwks)["keys"]
    for name, path in (("users", "/echo/mobile-app/p%2Fq?h=t%201"), ("orders", "/echo/two")):
        seen = [h for m, p, h in ups[name].seen if p == path]
        assert seen, ups[name].seen
        h = seen[-1]
        assert h["x-consumer-id"] == "mobile-app" and h["x-consumer-groups"] == "mobile", h
        assert h["x-request-id"] == "rid-agg-1" and h["traceparent"].startswith("00-"), h
        tok = h["x-access-token"]
        kid = jwt.get_unverified_header(tok)["kid"]
        key = jwt.PyJWK([k for k in keys if k["kid"] == kid][0]).key
        claims = jwt.decode(tok, key, algorithms=["ES256"], audience=name, issuer="ringway")
        assert claims["sub"] == "mobile-app"
    r, body = get(gw.port, "/agg/who/x")  # stages run first: no key, no calls
    assert r.status == 401


BASE = ("upstreams:\n  a:\n    targets: ['127.0.0.1:1']\n"
        "frontends:\n  - name: f\n    listen: ['127.0.0.1:1']\n    routes:\n")


@pytest.mark.parametrize("route,marker,message", [
    ("      - name: r\n        match: { path_exact: /x }\n        upstream: a\n"
     "        aggregate: { calls: [ { key: k, upstream: a, path: /y } ] }\n",
     "aggregate:", "aggregate and upstream exclude each other"),
    ("      - name: r\n        match: { path_exact: /x }\n"
     "        aggregate: { calls: [ { key: k, upstream: a, path: \"/y/{nope}\" } ] }\n",
     "\"/y/{nope}\"", "unknown template {nope}"),
    ("      - name: r\n        match: { path_exact: \"/x/{id}\" }\n"
     "        aggregate: { calls: [ { key: k, upstream: a, path: \"/y/{id}\" },"
     " { key: l, upstream: a, path: \"/z/{k.body.a}\" } ] }\n",
     "\"/z/{k.body.a}\"", "{k.body.a} needs 'after: k'"),
    ("      - name: r\n        match: { path_exact: /x }\n"
     "        aggregate: { calls: [ { key: k, upstream: b, path: /y } ] }\n",
     "b, path", "unknown upstream 'b'"),
    ("      - name: r\n        match: { path_exact: /x }\n"
     "        aggregate: { calls: [ { key: k, upstream: a, path: /y, after: m } ] }\n",
     "m }", "after: 'm' is not the key of an earlier call"),
    ("      - name: r\n        match: { path_exact: /x }\n"
     "        aggregate: { collision: first, calls: [ { key: k, upstream: a, path: /y } ] }\n",
     "first,", "collision: only applies to merge: shallow"),
    ("      - name: r\n        match: { path_exact: \"/x/{1d}\" }\n        upstream: a\n",
     "\"/x/{1d}\"", "a parameter is a whole segment"),
])
def test_config_errors(tmp_path, route, marker, message):
    text = BASE + route
    path, rc, out = ringway_check(tmp_path, text)
    assert rc != 0, out
    assert f"{path}:{position(text, marker)}: " in out and message in out, out


def test_client_leaving_mid_aggregate_and_a_request_body(gw):
    """The client goes before the calls answer: the calls go with the exchange, the gateway
    serves the next request. A request body is not read: the answer closes the connection."""
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"GET /agg/three HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"POST /agg/partial HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    assert b"Connection: close" in head and json.loads(body)["user"]["id"] == "1"
    time.sleep(DELAY * 2)  # the abandoned calls' answers arrive at closed legs
    r, body = get(gw.port, "/agg/three")
    assert r.status == 200, body


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_counted_on_the_route(gw):
    def metrics():
        return get(gw.admin_port, "/metrics")[1].decode()
    before = metrics()
    for _ in range(3):
        assert get(gw.port, "/agg/partial")[0].status == 200
    assert get(gw.port, "/agg/required")[0].status == 502
    ok = dict(frontend="public", route="partial", status_class="2xx")
    bad = dict(frontend="public", route="required", status_class="5xx")
    deadline = time.time() + 3
    while True:
        after = metrics()
        d_ok = metric(after, "ringway_requests_total", **ok) - metric(before, "ringway_requests_total", **ok)
        d_bad = metric(after, "ringway_requests_total", **bad) - metric(before, "ringway_requests_total", **bad)
        if (d_ok, d_bad) == (3, 1) or time.time() > deadline:
            break
        time.sleep(0.05)
    assert (d_ok, d_bad) == (3, 1), [l for l in after.splitlines() if "ringway_requests_total" in l]
    assert metric(after, "ringway_refusals_total", reason="aggregate_call_failed") >= 1


def test_header_transform_reaches_the_calls_and_cors_lines_the_answer(gw, ups):
    r, body = get(gw.port, "/agg/decorated", {"Origin": "https://app.example"})
    assert r.status == 200, body
    assert r.getheader("Access-Control-Allow-Origin") == "https://app.example", r.getheaders()
    seen = [h for m, p, h in ups["users"].seen if p == "/echo/decorated"]
    assert seen and seen[-1]["x-env"] == "prod", seen
