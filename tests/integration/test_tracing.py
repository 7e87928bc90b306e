"""Request tracing and request ids: the upstream gets a W3C traceparent that continues the client's
trace (or starts one) with the gateway's own span as parent, and an X-Request-Id (the client's when
valid, else one the gateway made); the client gets that id back on every answer, proxied or the
gateway's own; the access log record carries the ids the upstream saw."""
import json
import re
import time
import uuid

import pytest

from conftest import Gateway, ScriptedUpstream, Upstream, free_port, make_config, raw_request

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{PARENT}-01"
TP_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    echo = Upstream("echo")

    def own_id(c, head):  # an upstream that sets its own X-Request-Id
        c.sendall(b"HTTP/1.1 200 OK\r\nX-Request-Id: upstream-made\r\nContent-Length: 2\r\n"
                  b"Connection: close\r\n\r\nok")
    own = ScriptedUpstream(own_id)
    port = free_port()
    routes = ("      - name: echo\n        match: { path_prefix: /echo }\n        upstream: echo\n"
              "      - name: own\n        match: { path_prefix: /own }\n        upstream: own\n"
              "      - name: dead\n        match: { path_prefix: /dead }\n        upstream: dead\n")
    cfg = make_config(port, [("echo", [echo.addr], "10s"), ("own", [own.addr], "10s"),
                             ("dead", [f"127.0.0.1:{free_port()}"], "2s")], routes)
    g = Gateway(str(tmp_path_factory.mktemp("gw")), cfg, port)
    yield g
    code = g.stop()
    echo.stop()
    own.stop()
    assert code == 0, g.logs()[-4000:]


def request(gw, path, headers=()):
    """GET path with the extra header lines; returns (status, [(name lowercased, value)], body)."""
    head = f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    head += "".join(f"{n}: {v}\r\n" for n, v in headers)
    out = raw_request(gw.port, (head + "\r\n").encode())
    top, _, body = out.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    hdrs = [(l.split(":", 1)[0].lower(), l.split(":", 1)[1].strip()) for l in lines[1:]]
    return int(lines[0].split()[1]), hdrs, body


def values(hdrs, name):
    return [v for n, v in hdrs if n == name.lower()]


def echoed(gw, headers=()):
    """A request through the echo upstream: (the client's answer headers, the headers the upstream
    received, the path it was sent on)."""
    path = f"/echo/{uuid.uuid4().hex}"
    status, hdrs, body = request(gw, path, headers)
    assert status == 200, body
    seen = json.loads(body)["headers"]
    return hdrs, [(n.lower(), v) for n, v in seen], path


def record(gw, pred):
    """The access-log record matching pred (records are written in batches: wait for it)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        recs = [r for r in gw.access_records() if pred(r)]
        if recs:
            return recs[-1]
        time.sleep(0.05)
    raise AssertionError("no access log record")


def upstream_trace(seen):
    tps = values(seen, "traceparent")
    assert len(tps) == 1, tps
    m = TP_RE.match(tps[0])
    assert m, tps[0]
    trace, parent, flags = m.groups()
    assert trace != "0" * 32 and parent != "0" * 16
    return trace, parent, flags


def test_client_trace_continues_with_the_gateways_span(gw):
    hdrs, seen, path = echoed(gw, [("traceparent", TP), ("tracestate", "vendor=a1,other=b2")])
    trace, span, flags = upstream_trace(seen)
    assert (trace, flags) == (TRACE, "01")
    assert span != PARENT  # the gateway's hop is the upstream's parent
    assert values(seen, "tracestate") == ["vendor=a1,other=b2"]
    rid = values(hdrs, "x-request-id")
    assert len(rid) == 1 and HEX32.match(rid[0]) and values(seen, "x-request-id") == rid
    rec = record(gw, lambda r: r["path"] == path)
    assert (rec["trace_id"], rec["span_id"], rec["parent_span_id"]) == (TRACE, span, PARENT)
    assert rec["request_id"] == rid[0]


def test_unsampled_flags_are_kept(gw):
    _, seen, _ = echoed(gw, [("traceparent", f"00-{TRACE}-{PARENT}-00")])
    trace, span, flags = upstream_trace(seen)
    assert (trace, flags) == (TRACE, "00") and span != PARENT


def test_a_higher_version_is_continued_as_version_00(gw):
    _, seen, _ = echoed(gw, [("traceparent", f"cc-{TRACE}-{PARENT}-01-future-fields")])
    assert upstream_trace(seen)[0::2] == (TRACE, "01")


def test_absent_traceparent_starts_a_new_sampled_trace(gw):
    _, seen0, _ = echoed(gw, [("tracestate", "vendor=a1")])
    assert values(seen0, "tracestate") == []  # a tracestate without its traceparent is dropped
    _, seen1, path = echoed(gw)
    trace1, span1, flags = upstream_trace(seen1)
    assert flags == "01"
    _, seen2, _ = echoed(gw)
    assert upstream_trace(seen2)[0] != trace1  # every request its own trace
    rec = record(gw, lambda r: r["path"] == path)
    assert (rec["trace_id"], rec["span_id"], rec["parent_span_id"]) == (trace1, span1, None)


INVALID = [
    ("uppercase", [("traceparent", TP.upper())]),
    ("version ff", [("traceparent", f"ff-{TRACE}-{PARENT}-01")]),
    ("zero trace id", [("traceparent", f"00-{'0' * 32}-{PARENT}-01")]),
    ("zero parent id", [("traceparent", f"00-{TRACE}-{'0' * 16}-01")]),
    ("trailing data on 00", [("traceparent", TP + "-x")]),
    ("short", [("traceparent", TP[:-1])]),
    ("two headers", [("traceparent", TP), ("traceparent", f"00-{'1' * 32}-{PARENT}-01")]),
]


@pytest.mark.parametrize("name,headers", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_traceparent_starts_a_new_trace(gw, name, headers):
    _, seen, path = echoed(gw, headers + [("tracestate", "vendor=a1")])
    trace, span, flags = upstream_trace(seen)
    assert trace not in (TRACE, "1" * 32) and flags == "01"
    assert values(seen, "tracestate") == []  # it belonged to the trace that was not continued
    rec = record(gw, lambda r: r["path"] == path)
    assert (rec["trace_id"], rec["span_id"], rec["parent_span_id"]) == (trace, span, None)


@pytest.mark.parametrize("rid", ["f47ac10b-58cc-4372-a567-0e02b2c3d479", "a", "AZaz09._:+/=-",
                                 "k" * 128])
def test_valid_request_id_is_kept(gw, rid):
    hdrs, seen, path = echoed(gw, [("X-Request-Id", rid)])
    assert values(hdrs, "x-request-id") == [rid]
    assert values(seen, "x-request-id") == [rid]
    assert record(gw, lambda r: r["path"] == path)["request_id"] == rid


@pytest.mark.parametrize("headers", [
    [],
    [("X-Request-Id", "has space")],
    [("X-Request-Id", "quote\"d")],
    [("X-Request-Id", "k" * 129)],
    [("X-Request-Id", "")],
    [("X-Request-Id", "one"), ("X-Request-Id", "two")],
], ids=["absent", "space", "quote", "too long", "empty", "two headers"])
def test_request_id_is_made_when_absent_or_invalid(gw, headers):
    hdrs, seen, path = echoed(gw, headers)
    rid = values(hdrs, "x-request-id")
    assert len(rid) == 1 and HEX32.match(rid[0]), rid
    assert values(seen, "x-request-id") == rid
    assert record(gw, lambda r: r["path"] == path)["request_id"] == rid[0]


def test_made_request_ids_differ(gw):
    ids = {values(echoed(gw)[0], "x-request-id")[0] for _ in range(20)}
    assert len(ids) == 20


def test_upstreams_own_request_id_is_replaced_not_duplicated(gw):
    status, hdrs, body = request(gw, "/own", [("X-Request-Id", "client-1")])
    assert status == 200 and body == b"ok"
    assert values(hdrs, "x-request-id") == ["client-1"]
    status, hdrs, _ = request(gw, "/own")
    made = values(hdrs, "x-request-id")
    assert status == 200 and len(made) == 1 and HEX32.match(made[0])


@pytest.mark.parametrize("path,status,reason", [("/nowhere", 404, "no_route"),
                                                ("/dead", 502, "upstream_connect_failed")])
def test_gateway_errors_carry_the_request_id(gw, path, status, reason):
    st, hdrs, body = request(gw, path, [("X-Request-Id", f"err-{status}")])
    assert st == status and json.loads(body)["error"]["reason"] == reason
    assert values(hdrs, "x-request-id") == [f"err-{status}"]
    st, hdrs, _ = request(gw, path, [("traceparent", TP)])
    made = values(hdrs, "x-request-id")
    assert st == status and len(made) == 1 and HEX32.match(made[0])
    rec = record(gw, lambda r: r["request_id"] == made[0])
    assert rec["status"] == status and rec["reason"] == reason and rec["path"] == path
    assert (rec["trace_id"], rec["parent_span_id"]) == (TRACE, PARENT)


def test_malformed_request_gets_an_id_in_its_answer_and_log(gw):
    out = raw_request(gw.port, b"GET  /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    head = out.partition(b"\r\n\r\n")[0].decode().split("\r\n")
    assert head[0].startswith("HTTP/1.1 400")
    made = [l.split(":", 1)[1].strip() for l in head[1:] if l.lower().startswith("x-request-id:")]
    assert len(made) == 1 and HEX32.match(made[0])
    rec = record(gw, lambda r: r["request_id"] == made[0])
    assert rec["reason"] == "bad_request_line" and rec["trace_id"] is None
