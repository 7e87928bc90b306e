"""Rate limits in local mode (no rate_limit_store): GCRA per key in the table the workers share.
Exactness under many concurrent keep-alive clients spread over both workers; keys (tenant header,
consumer, client address, route) independent of each other; a frontend's limit shared by its
routes while a route's own is per route; the RateLimit fields on every answer of a limited route
(and the upstream's own replaced there, passed through elsewhere); the 429 with Retry-After, its
log line, access-log record and counters; Retry-After honoured; buckets kept across a reload; and
configuration mistakes refused by `ringway check` with FILE:LINE:COL.

Every client runs on 127.0.0.1; the second client address is 127.0.0.2 (the loopback network),
still to 127.0.0.1. Tests use keys (tenant names) of their own so that they never share a bucket,
and limits of N per hour where time must not refill a bucket during the test."""
import hashlib
import http.client
import json
import re
import socket
import threading
import time
import uuid

import pytest

from conftest import (Gateway, ScriptedUpstream, Upstream, free_port, make_config,
                      position, ringway_check, wait_port)

WORKERS = 2
OTHER_IP = "127.0.0.2"  # a second client address on the loopback network


def key_hash(key):
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def tenant():
    """A tenant name no other test uses: a bucket of its own."""
    return "t-" + uuid.uuid4().hex[:12]


def upstream_ratelimit_answer(conn, head):
    """The scripted upstream: an answer with its own RateLimit fields."""
    body = b'{"from":"scripted"}'
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"RateLimit-Limit: 999\r\nRateLimit-Remaining: 998\r\nRateLimit-Reset: 7\r\n"
                 b"RateLimit-Policy: 999;w=60\r\nX-Custom: kept\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def route(name, upstream="app", limits=None, auth=None):
    text = (f"      - name: {name}\n        match: {{ path_prefix: /{name} }}\n"
            f"        upstream: {upstream}\n")
    if auth:
        text += f"        auth: {auth}\n"
    if limits:
        text += "        rate_limit:\n" + "".join(f"          - {lim}\n" for lim in limits)
    return text


TENANT_3H = '{by: "header:X-Tenant", rate: 3/h}'

ROUTES = "".join([
    # exactness: 100/s, burst 10
    route("exact", limits=['{by: "header:X-Tenant", rate: 100/s, burst: 10}']),
    # independence of keys (3 an hour: nothing refills during the test)
    route("tenant", limits=[TENANT_3H]),
    route("consumer", limits=["{by: consumer, rate: 3/h}"], auth="[api_key]"),
    route("consumer-open", limits=["{by: consumer, rate: 3/h}"]),
    route("ip", limits=["{by: ip, rate: 3/h}"]),
    route("byroute", limits=["{by: route, rate: 2/h}"]),
    # the fields: 2 a minute (one every 30 s), 4 at once
    route("count", limits=['{by: "header:X-Tenant", rate: 2/m, burst: 4}']),
    # Retry-After: one every 2 s, one at once
    route("retry", limits=['{by: "header:X-Tenant", rate: 30/m, burst: 1}']),
    route("logged", limits=['{by: "header:X-Tenant", rate: 1/h}']),
    route("reload", limits=['{by: "header:X-Tenant", rate: 2/h}']),
    # the upstream's own RateLimit fields
    route("limited-up", upstream="scripted", limits=["{by: route, rate: 100000/s}"]),
    route("unlimited-up", upstream="scripted"),
    # the gateway's own answer (502) on a limited route
    route("limited-dead", upstream="dead", limits=['{by: "header:X-Tenant", rate: 10/h}']),
    route("plain"),
])

# the frontend "shared": 6 an hour per tenant over all its routes; a and b 2 an hour each on top
SHARED_ROUTES = "".join([
    route("a", limits=['{by: "header:X-Tenant", rate: 2/h}']),
    route("b", limits=['{by: "header:X-Tenant", rate: 2/h}']),
    route("c"),
])


@pytest.fixture(scope="module")
def rl(tmp_path_factory):
    up = Upstream("rl-app")
    scripted = ScriptedUpstream(upstream_ratelimit_answer)
    port, shared_port, admin_port = free_port(), free_port(), free_port()
    extra = ("consumers:\n"
             f"  - name: alice\n    api_keys: [\"{key_hash('key-alice')}\"]\n"
             f"  - name: bob\n    api_keys: [\"{key_hash('key-bob')}\"]\n"
             f"admin:\n  listen: 127.0.0.1:{admin_port}\n")
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    cfg = make_config(port, [("app", [up.addr], "10s"), ("scripted", [scripted.addr], "10s"),
                             ("dead", [dead], "1s")],
                      ROUTES, extra=extra, workers=WORKERS)
    cfg += (f"  - name: shared\n    listen: ['127.0.0.1:{shared_port}']\n"
            "    rate_limit: [{by: \"header:X-Tenant\", rate: 6/h}]\n"
            f"    routes:\n{SHARED_ROUTES}")
    d = str(tmp_path_factory.mktemp("rl"))
    try:
        gw = Gateway(d, cfg, port)
    except Exception:
        up.stop()
        scripted.stop()
        raise
    gw.shared_port, gw.admin_port = shared_port, admin_port
    try:
        wait_port(admin_port, gw.proc)
        wait_port(shared_port, gw.proc)
    except Exception:
        gw.stop()
        up.stop()
        scripted.stop()
        raise
    yield gw
    code = gw.stop()
    up.stop()
    scripted.stop()
    logs = gw.logs()
    assert code == 0, logs[-4000:]
    assert "AddressSanitizer" not in logs and "LeakSanitizer" not in logs, logs[-8000:]


# ---- helpers ---------------------------------------------------------------------------------------

class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name):
        vals = self.all(name)
        assert len(vals) <= 1, (name, self.headers)
        return vals[0] if vals else None

    def int(self, name):
        v = self.get(name)
        assert v is not None and re.fullmatch(r"\d+", v), (name, v, self.headers)
        return int(v)


def call(port, path, headers=None, conn=None, source=None):
    """One GET (on conn when given, else on a new connection from source or 127.0.0.1)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                           source_address=(source, 0) if source else None)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return Answer(r.status, r.getheaders(), r.read())
    finally:
        if conn is None:
            c.close()


def assert_rate_limited(a):
    """A 429 as the spec says: JSON error body, Retry-After >= 1, the RateLimit fields with
    nothing remaining."""
    assert a.status == 429, (a.status, a.body)
    err = json.loads(a.body)["error"]
    assert err["status"] == 429 and err["reason"] == "rate_limited", a.body
    assert a.int("Retry-After") >= 1
    assert a.int("RateLimit-Remaining") == 0
    assert a.int("RateLimit-Limit") >= 1
    assert a.int("RateLimit-Reset") >= 1
    assert a.get("RateLimit-Policy")
    return a


def ok(a):
    assert a.status == 200, (a.status, a.body)
    return a


def admitted_then_refused(port, path, n, headers=None, source=None):
    """n requests are admitted, the next one refused."""
    for i in range(n):
        ok(call(port, path, headers, source=source))
    return assert_rate_limited(call(port, path, headers, source=source))


def metrics(gw):
    """{(name, frozenset(labels)): value} of the admin /metrics."""
    a = call(gw.admin_port, "/metrics")
    assert a.status == 200
    out = {}
    for m in re.finditer(r"^(\w+)(?:\{([^}]*)\})?\s+([0-9.e+-]+)$", a.body.decode(), re.M):
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(ms, name, **labels):
    return ms.get((name, frozenset(labels.items())), 0.0)


def post_reload(gw):
    c = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=20)
    try:
        c.request("POST", "/reload")
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


# ---- exactness -------------------------------------------------------------------------------------

class KeepAliveClient:
    """One keep-alive connection sending the same GET again and again (none when request is
    empty: one() then reads the next answer); minimal response reader (Content-Length bodies
    only, which is what the upstream and the gateway send here)."""

    def __init__(self, port, request):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = request
        self.buf = b""

    def one(self):
        if self.request:
            self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the connection mid-body")
            self.buf += chunk
        self.buf = self.buf[length:]
        return status, headers

    def close(self):
        self.sock.close()


def test_exact_under_concurrent_clients_on_both_workers(rl):
    """Rate 100/s, burst 10, one key, 32 keep-alive connections spread over both workers for 2 s:
    admitted <= burst + rate × E (+1), where E is the longest time in which the gateway could
    have made its admissions (from the earliest send of an admitted request to the latest answer
    of one), and not fewer than burst + rate × (the time the load lasted) minus a small
    tolerance."""
    rate, burst, clients, duration = 100, 10, 32, 2.0
    key = tenant()
    request = (f"GET /exact/x HTTP/1.1\r\nHost: rl\r\nX-Tenant: {key}\r\n\r\n").encode()
    conns = [KeepAliveClient(rl.port, request) for _ in range(clients)]
    try:
        # every connection accepted, and both workers have some
        deadline = time.time() + 10
        while True:
            ms = metrics(rl)
            per_worker = [metric(ms, "ringway_worker_client_connections", worker=str(w))
                          for w in range(WORKERS)]
            if sum(per_worker) >= clients or time.time() > deadline:
                break
            time.sleep(0.02)
        assert sum(per_worker) >= clients, per_worker
        assert all(n > 0 for n in per_worker), f"connections per worker: {per_worker}"

        results = [[] for _ in range(clients)]  # (sent, answered, status, headers)
        failures = []
        go = threading.Event()
        stop_at = [0.0]

        def drive(i):
            go.wait()
            c, out = conns[i], results[i]
            try:
                for _ in range(20000):  # bounded in count, and in time below
                    sent = time.monotonic()
                    if sent >= stop_at[0]:
                        return
                    status, headers = c.one()
                    out.append((sent, time.monotonic(), status, headers))
            except Exception as e:  # noqa: BLE001 (reported below)
                failures.append(repr(e))

        threads = [threading.Thread(target=drive, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        stop_at[0] = time.monotonic() + duration
        go.set()
        for t in threads:
            t.join(duration + 30)
        assert not any(t.is_alive() for t in threads), "clients still running"
        assert not failures, failures
    finally:
        for c in conns:
            c.close()

    everything = [r for out in results for r in out]
    statuses = {}
    for r in everything:
        statuses[r[2]] = statuses.get(r[2], 0) + 1
    assert set(statuses) <= {200, 429}, statuses
    admitted = [r for r in everything if r[2] == 200]
    refused = [r for r in everything if r[2] == 429]
    assert refused, "the load never went over the limit"
    # upper bound: the gateway admitted them all between these two instants
    window = max(r[1] for r in admitted) - min(r[0] for r in admitted)
    most = burst + rate * window
    # lower bound: the load lasted from the first send to the last
    lasted = max(r[0] for r in everything) - min(r[0] for r in everything)
    least = burst + rate * lasted - max(5, 0.03 * (burst + rate * lasted))
    summary = (f"{len(admitted)} admitted, {len(refused)} refused; admission window "
               f"{window:.3f} s (at most {most:.1f} + 1), load {lasted:.3f} s (at least "
               f"{least:.1f})")
    print(summary)
    assert len(admitted) <= most + 1, summary
    assert len(admitted) >= least, summary
    # the fields stay sane under load
    for _, _, status, h in everything:
        assert int(h["ratelimit-limit"]) == burst
        assert 0 <= int(h["ratelimit-remaining"]) <= burst - (status == 200)
        assert h["ratelimit-policy"].startswith("100;w=1")
        if status == 429:
            assert int(h["ratelimit-remaining"]) == 0 and int(h["retry-after"]) >= 1


# ---- keys are independent --------------------------------------------------------------------------

def test_tenants_have_separate_buckets(rl):
    """by: header:X-Tenant: one tenant exhausted leaves another untouched."""
    a, b = tenant(), tenant()
    admitted_then_refused(rl.port, "/tenant/x", 3, {"X-Tenant": a})
    admitted_then_refused(rl.port, "/tenant/x", 3, {"X-Tenant": b})
    assert_rate_limited(call(rl.port, "/tenant/x", {"X-Tenant": a}))


def test_missing_header_counts_by_client_address(rl):
    """Without the header, the client address is the key: 127.0.0.1 and 127.0.0.2 apart, and
    neither touches a tenant's bucket."""
    t = tenant()
    ok(call(rl.port, "/tenant/x", {"X-Tenant": t}))
    admitted_then_refused(rl.port, "/tenant/x", 3)
    admitted_then_refused(rl.port, "/tenant/x", 3, source=OTHER_IP)
    ok(call(rl.port, "/tenant/x", {"X-Tenant": t}))  # 2 of its 3 used
    assert_rate_limited(call(rl.port, "/tenant/x"))


def test_consumers_have_separate_buckets(rl):
    """by: consumer: two API-key consumers, one bucket each, whatever the client address."""
    admitted_then_refused(rl.port, "/consumer/x", 3, {"X-API-Key": "key-alice"})
    a = call(rl.port, "/consumer/x", {"X-API-Key": "key-alice"}, source=OTHER_IP)
    assert_rate_limited(a)
    admitted_then_refused(rl.port, "/consumer/x", 3, {"X-API-Key": "key-bob"}, source=OTHER_IP)


def test_consumer_limit_without_a_consumer_counts_by_address(rl):
    """by: consumer on a route without auth: the client address is the key."""
    admitted_then_refused(rl.port, "/consumer-open/x", 3)
    admitted_then_refused(rl.port, "/consumer-open/x", 3, source=OTHER_IP)


def test_ip_limit_is_per_client_address(rl):
    """by: ip: whatever the headers say, the address decides."""
    admitted_then_refused(rl.port, "/ip/x", 3, {"X-Tenant": tenant()})
    assert_rate_limited(call(rl.port, "/ip/x", {"X-Tenant": tenant()}))
    admitted_then_refused(rl.port, "/ip/x", 3, source=OTHER_IP)


def test_route_limit_is_one_bucket_for_everyone(rl):
    """by: route: every client and key share the route's bucket."""
    ok(call(rl.port, "/byroute/x", {"X-Tenant": tenant()}))
    ok(call(rl.port, "/byroute/x", source=OTHER_IP))
    assert_rate_limited(call(rl.port, "/byroute/x"))
    assert_rate_limited(call(rl.port, "/byroute/x", {"X-Tenant": tenant()}, source=OTHER_IP))


def test_frontend_limit_is_shared_by_its_routes_and_a_route_limit_is_its_own(rl):
    """Frontend "shared": 6 an hour per tenant over all its routes; routes a and b 2 an hour each
    on top. A refused request gives back what the frontend's limit counted for it."""
    t = tenant()
    h = {"X-Tenant": t}
    first = ok(call(rl.shared_port, "/a/x", h))
    # the tightest limit speaks: a's own (1 of 2 left), not the frontend's (5 of 6)
    assert first.int("RateLimit-Limit") == 2 and first.int("RateLimit-Remaining") == 1
    policy = first.get("RateLimit-Policy")
    assert "6;w=3600" in policy and "2;w=3600" in policy, policy
    ok(call(rl.shared_port, "/a/x", h))
    assert_rate_limited(call(rl.shared_port, "/a/x", h))           # a's own: 2 used
    admitted_then_refused(rl.shared_port, "/b/x", 2, h)             # b's own is not a's
    c = ok(call(rl.shared_port, "/c/x", h))                         # the frontend's: 5 of 6
    assert c.int("RateLimit-Limit") == 6 and c.int("RateLimit-Remaining") == 1, c.headers
    assert c.get("RateLimit-Policy") == "6;w=3600;burst=6", c.headers
    ok(call(rl.shared_port, "/c/x", h))
    r = assert_rate_limited(call(rl.shared_port, "/c/x", h))        # 6 of 6
    assert r.int("RateLimit-Limit") == 6
    # b's own bucket still has nothing, a new tenant has everything
    assert_rate_limited(call(rl.shared_port, "/b/x", h))
    ok(call(rl.shared_port, "/a/x", {"X-Tenant": tenant()}))
    # the other frontend's routes know nothing of this one's limit
    ok(call(rl.port, "/plain/x", h))


# ---- the fields --------------------------------------------------------------------------------------

def test_fields_count_down_and_reset_in_debt(rl):
    """2 a minute, burst 4 (one request every 30 s): Remaining 3, 2, 1, 0 and Reset 30, 60, 90,
    120 (seconds until the bucket is full again, rounded up; less the time the requests took),
    then a 429 whose Retry-After is 30 and whose Reset still says when the bucket is full again
    (120: a refused request takes nothing)."""
    h = {"X-Tenant": tenant()}
    c = http.client.HTTPConnection("127.0.0.1", rl.port, timeout=10)
    try:
        started = time.monotonic()
        for k in range(1, 5):
            a = ok(call(rl.port, "/count/x", h, conn=c))
            took = time.monotonic() - started
            assert a.int("RateLimit-Limit") == 4
            assert a.int("RateLimit-Remaining") == 4 - k
            assert 30 * k - took - 1 <= a.int("RateLimit-Reset") <= 30 * k, a.headers
            assert a.get("RateLimit-Policy") == "2;w=60;burst=4"
            assert json.loads(a.body)["server"] == "rl-app"
        r = assert_rate_limited(call(rl.port, "/count/x", h, conn=c))
        took = time.monotonic() - started
        assert 30 - took - 1 <= r.int("Retry-After") <= 30, r.headers
        assert r.int("RateLimit-Limit") == 4
        assert r.get("RateLimit-Policy") == "2;w=60;burst=4"
        assert 120 - took - 1 <= r.int("RateLimit-Reset") <= 120, r.headers
        # an unlimited route on the same connection gets none of these fields
        p = ok(call(rl.port, "/plain/x", h, conn=c))
        assert not [k for k, _ in p.headers if k.lower().startswith("ratelimit")], p.headers
    finally:
        c.close()


def wait_for_a_new_second():
    """Until the next whole second of CLOCK_MONOTONIC (the clock of the gateway's once-a-second
    log lines: a refusal then is the first of its second on any worker)."""
    now = time.monotonic()
    time.sleep(int(now) + 1 - now + 0.01)


def test_refusal_is_logged_and_counted(rl):
    """A 429 is in the access log with reason rate_limited, counted in
    ringway_rate_limit_total{decision="refused"} and ringway_refusals_total{reason=
    "rate_limited"}, and said in the log (the route, the limit)."""
    h = {"X-Tenant": tenant()}
    ok(call(rl.port, "/logged/first", h))
    before = metrics(rl)
    wait_for_a_new_second()
    refusals = 20
    for i in range(refusals):
        assert_rate_limited(call(rl.port, f"/logged/refused{i}", h))

    def delta(ms, name, **labels):
        return metric(ms, name, **labels) - metric(before, name, **labels)

    deadline = time.time() + 10  # counted when the exchange ends: wait for the last one
    while True:
        after = metrics(rl)
        if delta(after, "ringway_refusals_total", reason="rate_limited") >= refusals or \
                time.time() > deadline:
            break
        time.sleep(0.05)
    assert delta(after, "ringway_rate_limit_total", decision="refused") == refusals
    assert delta(after, "ringway_rate_limit_total", decision="admitted") == 0
    assert delta(after, "ringway_refusals_total", reason="rate_limited") == refusals
    deadline = time.time() + 10
    while True:
        recs = [r for r in rl.access_records() if r.get("path", "").startswith("/logged/refused")]
        if len(recs) >= refusals or time.time() > deadline:
            break
        time.sleep(0.05)
    assert len(recs) == refusals, recs
    assert all(r["status"] == 429 and r["reason"] == "rate_limited" and r["route"] == "logged"
               for r in recs), recs
    lines = [ln for ln in rl.logs().splitlines()
             if not ln.startswith("{") and "rate limit" in ln and "'logged'" in ln]
    assert lines, rl.logs()[-3000:]
    assert "/logged#0" in lines[0] and "1 per 3600s" in lines[0], lines[0]


def test_a_flood_of_refusals_logs_at_most_a_line_a_second_per_worker(rl):
    """The spec: a refusal is logged at most one line a second per worker, so a client hammering
    a limited route does not flood the log (the access log has every request)."""
    h = {"X-Tenant": tenant()}
    ok(call(rl.port, "/logged/flood-first", h))
    size_before = len(rl.logs().splitlines())
    started = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", rl.port, timeout=10)
    try:
        for i in range(200):
            assert_rate_limited(call(rl.port, f"/logged/flood{i}", h, conn=c))
    finally:
        c.close()
    took = time.monotonic() - started
    time.sleep(0.3)  # the log is written by the workers: let them finish
    new = rl.logs().splitlines()[size_before:]
    said = [ln for ln in new if not ln.startswith("{") and
            ("rate_limited" in ln or "rate limit" in ln or "/logged/flood" in ln)]
    most = WORKERS * (int(took) + 2)
    assert len(said) <= most, (f"{len(said)} log lines (besides the access log) for 200 "
                               f"refusals in {took:.2f} s, at most {most} expected; the first: "
                               + "\n".join(said[:4]))


def test_waiting_retry_after_lets_a_request_through(rl):
    """One every 2 s, burst 1: the second request is refused with Retry-After 2 (1 if a second
    went by in between); after waiting that long the next is admitted (and the one right after
    refused again)."""
    h = {"X-Tenant": tenant()}
    ok(call(rl.port, "/retry/x", h))
    r = assert_rate_limited(call(rl.port, "/retry/x", h))
    wait = r.int("Retry-After")
    assert 1 <= wait <= 2, r.headers
    time.sleep(wait)
    ok(call(rl.port, "/retry/x", h))
    assert_rate_limited(call(rl.port, "/retry/x", h))


def test_upstream_ratelimit_fields_replaced_on_a_limited_route(rl):
    """The upstream's own RateLimit-* never reach the client of a limited route: the gateway's
    do; its other headers do."""
    a = ok(call(rl.port, "/limited-up/x"))
    assert a.body == b'{"from":"scripted"}'
    assert a.get("X-Custom") == "kept"
    assert a.all("RateLimit-Limit") == ["100000"], a.headers
    assert a.int("RateLimit-Remaining") < 100000
    assert a.all("RateLimit-Reset") == ["1"], a.headers
    assert a.all("RateLimit-Policy") == ["100000;w=1;burst=100000"], a.headers


def test_upstream_ratelimit_fields_pass_on_an_unlimited_route(rl):
    """Without a limit, the gateway adds no fields and passes the upstream's unchanged."""
    a = ok(call(rl.port, "/unlimited-up/x"))
    assert a.all("RateLimit-Limit") == ["999"], a.headers
    assert a.all("RateLimit-Remaining") == ["998"]
    assert a.all("RateLimit-Reset") == ["7"]
    assert a.all("RateLimit-Policy") == ["999;w=60"]
    p = ok(call(rl.port, "/plain/x"))
    assert not [k for k, _ in p.headers if k.lower().startswith("ratelimit")], p.headers


def test_pipelined_requests_are_decided_in_order(rl):
    """Five pipelined requests over a limit of 3: 200, 200, 200, 429, 429 in that order on a
    connection that stays open (a sixth, to an unlimited route, is answered on it)."""
    t = tenant()
    one = f"GET /tenant/p HTTP/1.1\r\nHost: rl\r\nX-Tenant: {t}\r\n\r\n".encode()
    c = KeepAliveClient(rl.port, b"")  # no request of its own: one() only reads
    try:
        c.sock.sendall(one * 5)
        statuses = [c.one() for _ in range(5)]
        c.request = b"GET /plain/p HTTP/1.1\r\nHost: rl\r\n\r\n"
        last = c.one()
    finally:
        c.close()
    assert [s for s, _ in statuses] == [200, 200, 200, 429, 429], statuses
    assert [int(h["ratelimit-remaining"]) for _, h in statuses] == [2, 1, 0, 0, 0]
    assert last[0] == 200 and "ratelimit-limit" not in last[1], last


def test_gateway_own_answers_on_a_limited_route_carry_the_fields(rl):
    """A 502 the gateway makes itself (the upstream is down) on a limited route carries the
    RateLimit fields of the request's admission too."""
    h = {"X-Tenant": tenant()}
    for k in range(1, 3):
        a = call(rl.port, "/limited-dead/x", h)
        assert a.status == 502, (a.status, a.body)
        assert json.loads(a.body)["error"]["status"] == 502
        assert a.int("RateLimit-Limit") == 10
        assert a.int("RateLimit-Remaining") == 10 - k
        assert a.int("RateLimit-Reset") >= 1
        assert a.get("RateLimit-Policy") == "10;w=3600;burst=10"


def test_reload_keeps_the_buckets(rl):
    """A key exhausted before POST /reload is still exhausted after it; another is not."""
    t = tenant()
    admitted_then_refused(rl.port, "/reload/x", 2, {"X-Tenant": t})
    status, body = post_reload(rl)
    assert status == 200, body
    for _ in range(4):  # new connections: both workers
        assert_rate_limited(call(rl.port, "/reload/x", {"X-Tenant": t}))
    admitted_then_refused(rl.port, "/reload/x", 2, {"X-Tenant": tenant()})


# ---- configuration errors --------------------------------------------------------------------------

check = ringway_check  # (tmp_path, text): path, exit code, output


def check_config(limit="{by: ip, rate: 10/s}", store=""):
    return ("workers: 1\nupstreams:\n  u:\n    targets: ['127.0.0.1:9']\n" + store +
            f"frontends:\n  - name: public\n    listen: ['127.0.0.1:{free_port()}']\n"
            "    routes:\n      - name: r\n        match: { path_prefix: / }\n        upstream: u\n"
            f"        rate_limit: [{limit}]\n")


def test_check_accepts_the_rate_limit_keys(tmp_path):
    """Every form of by and rate, burst, and a full rate_limit_store pass `ringway check`."""
    limits = ", ".join(["{by: consumer, rate: 100/s, burst: 200}", "{by: ip, rate: 1000/min}",
                        "{by: route, rate: 5/m}", "{by: \"header:X-Tenant\", rate: 50/h}"])
    store = 'rate_limit_store: {redis: "127.0.0.1:6379", on_failure: deny, timeout: 20ms}\n'
    path, rc, out = check(tmp_path, check_config(limits, store))
    assert rc == 0, out
    path, rc, out = check(tmp_path, check_config(
        "{by: ip, rate: 1/s}", 'rate_limit_store: {redis: "[::1]:6379"}\n'))
    assert rc == 0, out


@pytest.mark.parametrize("limit,marker,words", [
    ("{by: tenant, rate: 10/s}", "tenant", ["by", "tenant"]),
    ('{by: "header:", rate: 10/s}', '"header:"', ["by"]),
    ('{by: "header:X Tenant", rate: 10/s}', '"header:X Tenant"', ["by"]),
    ("{by: ip, rate: 10/d}", "10/d", ["rate", "10/d"]),
    ("{by: ip, rate: 0/s}", "0/s", ["rate"]),
    ("{by: ip, rate: many}", "many", ["rate"]),
    ("{by: ip, rate: 10}", "10}]", ["rate"]),
    ("{by: ip, rate: 10/s, burst: 0}", "0}]", ["burst"]),
    ("{by: ip}", "{by: ip}", ["rate"]),
    ("{rate: 10/s}", "{rate: 10/s}", ["by"]),
    ("{by: ip, rate: 10/s, brust: 5}", "brust", ["brust"]),
], ids=["bad_by", "empty_header", "header_not_a_token", "bad_period", "zero_rate", "not_a_rate",
        "no_period", "burst_0", "no_rate", "no_by", "unknown_key"])
def test_check_bad_limit(tmp_path, limit, marker, words):
    """A bad limit is an error at its place (FILE:LINE:COL) that names the key."""
    text = check_config(limit)
    path, rc, out = check(tmp_path, text)
    assert rc == 1, out
    where = f"{path}:{position(text, marker)}:"
    lines = [ln for ln in out.splitlines() if ln.startswith(where)]
    assert lines, f"no error at {where}\n{out}"
    assert any(all(w.lower() in ln.lower() for w in words) for ln in lines), (words, out)


@pytest.mark.parametrize("store,marker,words", [
    ('{redis: "localhost:6379"}', '"localhost:6379"', ["redis"]),
    ('{redis: "127.0.0.1"}', '"127.0.0.1"', ["redis"]),
    ('{redis: "127.0.0.1:0"}', '"127.0.0.1:0"', ["redis"]),
    ('{redis: "127.0.0.1:6379", on_failure: retry}', "retry", ["on_failure", "retry"]),
    ('{redis: "127.0.0.1:6379", timeout: soon}', "soon", ["timeout"]),
    ("{on_failure: local}", "{on_failure: local}", ["redis"]),
], ids=["redis_host_name", "redis_no_port", "redis_port_0", "bad_on_failure", "bad_timeout",
        "no_redis"])
def test_check_bad_store(tmp_path, store, marker, words):
    """A bad rate_limit_store is an error at its place that names the key."""
    text = check_config(store=f"rate_limit_store: {store}\n")
    path, rc, out = check(tmp_path, text)
    assert rc == 1, out
    where = f"{path}:{position(text, marker)}:"
    lines = [ln for ln in out.splitlines() if ln.startswith(where)]
    assert lines, f"no error at {where}\n{out}"
    assert any(all(w.lower() in ln.lower() for w in words) for ln in lines), (words, out)
