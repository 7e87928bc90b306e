"""Request and response transforms: the upstream's echo shows each request edit (headers added,
set, removed, renamed; query parameters added and removed; the method overridden), the client sees
the response edits (added, set, removed) on proxied answers but not on the gateway's own errors;
a frontend's transforms are the default of routes without their own; configuration mistakes
(bad names and values, the gateway's own headers) are refused by `ringway check` with
FILE:LINE:COL."""
import http.client
import json

import pytest

from conftest import Gateway, Upstream, free_port, make_config, position, ringway_check


ROUTES = (
    "      - name: hdrs\n        match: { path_prefix: /hdrs }\n        upstream: app\n"
    "        request:\n"
    "          headers:\n"
    "            add: { X-Added: \"one\", X-Multi: \"added\" }\n"
    "            set: { X-Set: \"fixed\" }\n"
    "            remove: [X-Secret]\n"
    "            rename: { X-Old: X-New }\n"
    "      - name: query\n        match: { path_prefix: /query }\n        upstream: app\n"
    "        request:\n"
    "          query: { add: { src: \"gw 1/2\", v: \"2\" }, remove: [debug] }\n"
    "      - name: method\n        match: { path_prefix: /method, methods: [GET] }\n"
    "        upstream: app\n"
    "        request: { method: POST }\n"
    "      - name: resp\n        match: { path_prefix: /resp }\n        upstream: app\n"
    "        response:\n"
    "          headers: { add: { X-Served-By: ringway }, set: { Content-Type: text/x-set },"
    " remove: [X-Upstream] }\n"
    "      - name: plain\n        match: { path_prefix: /plain }\n        upstream: app\n"
    "        request: {}\n"
    "      - name: inherit\n        match: { path_prefix: /inherit }\n        upstream: app\n")

FRONTEND_DEFAULTS = (
    "    request: { headers: { add: { X-Frontend: \"yes\" } } }\n"
    "    response: { headers: { add: { X-Frontend-Resp: \"yes\" } } }\n")


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    up = Upstream("t1")
    port = free_port()
    cfg = make_config(port, [("app", [up.addr], "10s")], ROUTES)
    cfg = cfg.replace("    routes:\n", FRONTEND_DEFAULTS + "    routes:\n", 1)
    g = Gateway(str(tmp_path_factory.mktemp("gw")), cfg, port)
    yield g
    code = g.stop()
    up.stop()
    assert code == 0, g.logs()[-4000:]


def call(gw, method, path, headers=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


def echo_of(gw, method, path, headers=None, body=None):
    r, data = call(gw, method, path, headers, body)
    assert r.status == 200, data
    e = json.loads(data)
    e["h"] = [(k.lower(), v) for k, v in e["headers"]]
    return r, e


def values(e, name):
    return [v for k, v in e["h"] if k == name.lower()]


def test_request_headers_add_set_remove_rename(gw):
    _, e = echo_of(gw, "GET", "/hdrs/x", {"X-Multi": "client", "X-Set": "a", "X-Secret": "s",
                                          "X-Old": "kept-value", "X-Other": "o"})
    assert values(e, "X-Added") == ["one"]
    assert values(e, "X-Multi") == ["client", "added"]       # add appends a line
    assert values(e, "X-Set") == ["fixed"]                    # set replaces the client's
    assert values(e, "X-Secret") == []                        # removed
    assert values(e, "X-Old") == [] and values(e, "X-New") == ["kept-value"]  # renamed
    assert values(e, "X-Other") == ["o"]
    assert values(e, "X-Frontend") == []                      # the route's own replaces the default
    # set applies without the client's header too
    _, e = echo_of(gw, "GET", "/hdrs/y")
    assert values(e, "X-Set") == ["fixed"]


def test_request_set_replaces_every_line(gw):
    req = (b"GET /hdrs/z HTTP/1.1\r\nHost: h\r\nX-Set: 1\r\nX-Set: 2\r\nX-Secret: a\r\n"
           b"X-Secret: b\r\nConnection: close\r\n\r\n")
    import socket
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(req)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    e = json.loads(out.split(b"\r\n\r\n", 1)[1])
    h = [(k.lower(), v) for k, v in e["headers"]]
    assert [v for k, v in h if k == "x-set"] == ["fixed"]
    assert [v for k, v in h if k == "x-secret"] == []


def test_query_add_remove(gw):
    _, e = echo_of(gw, "GET", "/query/a?debug=1&keep=yes&debug&x=2")
    assert e["query"] == "keep=yes&x=2&src=gw%201%2F2&v=2"
    _, e = echo_of(gw, "GET", "/query/b")
    assert e["query"] == "src=gw%201%2F2&v=2"
    _, e = echo_of(gw, "GET", "/query/c?debug=1")
    assert e["query"] == "src=gw%201%2F2&v=2"


def test_method_override(gw):
    """The upstream gets the configured method; a GET without a body made a POST says its body is
    empty (Content-Length: 0), since some servers refuse a POST without length (411)."""
    _, e = echo_of(gw, "GET", "/method/x")
    assert e["method"] == "POST"
    headers = {k.lower(): v for k, v in e["headers"]}
    assert headers.get("content-length") == "0" and "transfer-encoding" not in headers
    # the route's method check is on the client's method
    r, _ = call(gw, "DELETE", "/method/x")
    assert r.status == 405


def test_response_headers(gw):
    r, data = call(gw, "GET", "/resp/x")
    assert r.status == 200
    assert r.getheader("X-Served-By") == "ringway"
    assert r.getheader("Content-Type") == "text/x-set"
    assert len(r.msg.get_all("Content-Type")) == 1
    assert r.getheader("X-Upstream") is None
    assert r.getheader("X-Frontend-Resp") is None           # its own replaces the default
    json.loads(data)


def test_response_transform_not_on_gateway_errors(gw):
    r, _ = call(gw, "GET", "/resp/x", {"Content-Length": "abc"})
    assert r.status == 400
    assert r.getheader("X-Served-By") is None


def test_frontend_defaults(gw):
    r, e = echo_of(gw, "GET", "/inherit/x")
    assert values(e, "X-Frontend") == ["yes"]
    assert r.getheader("X-Frontend-Resp") == "yes"
    assert r.getheader("X-Upstream") == "t1"
    # an empty request mapping of its own replaces the frontend's request default
    r, e = echo_of(gw, "GET", "/plain/x")
    assert values(e, "X-Frontend") == []
    assert r.getheader("X-Frontend-Resp") == "yes"


BASE = ("upstreams:\n  app:\n    targets: ['127.0.0.1:9']\n"
        "frontends:\n  - name: f\n    listen: ['127.0.0.1:18080']\n    routes:\n"
        "      - name: r\n        match: { path_prefix: /a }\n        upstream: app\n")


@pytest.mark.parametrize("snippet,marker,message", [
    ("        request: { headers: { add: { \"X Bad\": v } } }\n", "\"X Bad\"",
     "request.headers.add: 'X Bad' is not a valid header name"),
    ("        request: { headers: { set: { X-A: \"a\\r\\nX-B: b\" } } }\n", "\"a\\r",
     "request.headers.set: a header value cannot hold CR, LF, NUL or other control characters"),
    ("        request: { headers: { add: { X-A: \"a\\0b\" } } }\n", "\"a\\0",
     "request.headers.add: a header value cannot hold CR, LF, NUL or other control characters"),
    ("        request: { headers: { remove: [X-Request-Id] } }\n", "X-Request-Id]",
     "request.headers.remove: 'X-Request-Id' is written by the gateway and cannot be transformed"),
    ("        request: { headers: { set: { X-Consumer-Id: me } } }\n", "X-Consumer-Id",
     "request.headers.set: 'X-Consumer-Id' is written by the gateway and cannot be transformed"),
    ("        request: { headers: { rename: { X-A: X-Forwarded-For } } }\n", "X-Forwarded-For",
     "request.headers.rename: 'X-Forwarded-For' is written by the gateway and cannot be "
     "transformed"),
    ("        request: { headers: { add: { Host: h } } }\n", "Host",
     "request.headers.add: 'Host' is written by the gateway and cannot be transformed"),
    ("        response: { headers: { remove: [Content-Length] } }\n", "Content-Length",
     "response.headers.remove: 'Content-Length' is written by the gateway and cannot be "
     "transformed"),
    ("        response: { headers: { rename: { A: B } } }\n", "rename",
     "response.headers: unknown key 'rename' (valid keys: add, set, remove)"),
    ("        request: { method: FETCH }\n", "FETCH",
     "request.method: 'FETCH' is not a method"),
    ("        request: { query: { remove: [\"a=b\"] } }\n", "\"a=b\"",
     "request.query.remove: 'a=b' is not a valid parameter name"),
])
def test_config_errors(tmp_path, snippet, marker, message):
    text = BASE + snippet
    path, code, out = ringway_check(tmp_path, text)
    assert code != 0, out
    assert f"{path}:{position(text, marker)}: {message}" in out, out


def test_identity_token_header_refused(tmp_path):
    text = ("identity_token: { header: X-Id-Token }\n" + BASE +
            "        request: { headers: { remove: [x-id-token] } }\n")
    path, code, out = ringway_check(tmp_path, text)
    assert code != 0, out
    assert "'x-id-token' is the identity token header and cannot be transformed" in out, out


def test_valid_transform_config_checks(tmp_path):
    text = BASE + ("        request:\n          headers: { add: { X-A: \"a b\" }, rename: { X-B: X-C } }\n"
                   "          query: { add: { k: v } }\n          method: PUT\n"
                   "        response: { headers: { set: { Cache-Control: no-store } } }\n")
    path, code, out = ringway_check(tmp_path, text)
    assert code == 0, out


PATH_ROUTES = (
    "      - name: v1\n        match: { path_prefix: /v1 }\n        upstream: app\n"
    "        request: { path: { regex: \"^/v1/(.*)$\", replace: \"/api/$1\" } }\n"
    "      - name: swap\n        match: { path_prefix: /svc }\n        upstream: app\n"
    "        strip_prefix: /svc\n"
    "        request: { path: { regex: \"^/old/(\\\\w+)/(\\\\d+)$\", replace: \"/new/$2/${1}0\" } }\n"
    "      - name: noslash\n        match: { path_prefix: /ns }\n        upstream: app\n"
    "        request: { path: { regex: \"^/ns/(.*)$\", replace: \"$1\" }, method: PUT }\n")


@pytest.fixture(scope="module")
def pgw(tmp_path_factory):
    up = Upstream("t2")
    port = free_port()
    g = Gateway(str(tmp_path_factory.mktemp("pgw")),
                make_config(port, [("app", [up.addr], "10s")], PATH_ROUTES), port)
    yield g
    code = g.stop()
    up.stop()
    assert code == 0, g.logs()[-4000:]


def test_path_regex_with_captures(pgw):
    _, e = echo_of(pgw, "GET", "/v1/users/7?x=1")
    assert e["path"] == "/api/users/7" and e["query"] == "x=1"
    # after strip_prefix; two captures swapped, ${1} before a digit
    _, e = echo_of(pgw, "GET", "/svc/old/books/42")
    assert e["path"] == "/new/42/books0"


def test_path_regex_no_match_leaves_the_path(pgw):
    _, e = echo_of(pgw, "GET", "/svc/old/books/not-a-number")
    assert e["path"] == "/old/books/not-a-number"
    _, e = echo_of(pgw, "GET", "/v1")
    assert e["path"] == "/v1"


def test_path_regex_result_gets_a_slash(pgw):
    _, e = echo_of(pgw, "GET", "/ns/a/b")
    assert e["path"] == "/a/b" and e["method"] == "PUT"
    _, e = echo_of(pgw, "GET", "/ns/")
    assert e["path"] == "/"


@pytest.mark.parametrize("snippet,marker,message", [
    ("        request: { path: { regex: \"^/(a\", replace: \"/b\" } }\n", "\"^/(a\"",
     "request.path.regex: missing closing parenthesis at offset 4 of '^/(a'"),
    ("        request: { path: { regex: \"^/(a)$\", replace: \"/b/$2\" } }\n", "\"/b/$2\"",
     "request.path.replace: $2 names no capture of the regex (it has 1)"),
    ("        request: { path: { regex: \"^/(a)$\", replace: \"/b/$x\" } }\n", "\"/b/$x\"",
     "request.path.replace: '/b/$x': '$' must be followed by a capture number 1..9"),
    ("        request: { path: { regex: \"^/(a)$\", replace: \"/b/$10\" } }\n", "\"/b/$10\"",
     "request.path.replace: '/b/$10': '$' must be followed by a capture number 1..9"),
    ("        request: { path: { regex: \"^/(a)$\", replace: \"/b c\" } }\n", "\"/b c\"",
     "request.path.replace: '/b c' holds a character a path cannot"),
    ("        request: { path: { regex: \"^/(a)$\" } }\n", "{ regex",
     "request.path: missing required key 'replace'"),
])
def test_path_config_errors(tmp_path, snippet, marker, message):
    text = BASE + snippet
    path, code, out = ringway_check(tmp_path, text)
    assert code != 0, out
    assert f"{path}:{position(text, marker)}: {message}" in out, out
