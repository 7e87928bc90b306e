"""Cluster mode of the rate limiter: gateways sharing one Redis (Debian's redis-server, started
here on 127.0.0.1 with a free port and no persistence, stopped by its pid) enforce one combined
limit; with Redis killed or stopped, on_failure (local, allow, deny) decides as configured, and
the metrics say so; with Redis back on the same port, shared limiting resumes. Every wait is
bounded; every load is bounded in count and time."""
import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import Gateway, Upstream, free_port, make_config, wait_port
from netns import skip_or_fail_in_ci

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
TOKEN = "redis-test-token-0123456789"


class RedisServer:
    """redis-server on 127.0.0.1:port, without persistence; stopped by its pid."""

    def __init__(self, tmpdir, port=None):
        self.port = port or free_port()
        self.tmpdir = tmpdir
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.tmpdir, f"redis-{self.port}.log"), "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmpdir, "--daemonize", "no"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused server cannot end otherwise
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()


@pytest.fixture(scope="module")
def have_redis():
    if not os.access(REDIS_SERVER, os.X_OK):
        skip_or_fail_in_ci("redis-server is not installed (kernel/install-deps.sh test)")


@pytest.fixture(scope="module")
def upstream():
    up = Upstream("u1")
    yield up
    up.stop()


def start_gateway(tmp_path_factory, upstream, redis_port, on_failure, rate="20/s", burst=10,
                  timeout="2s"):
    """A gateway (two workers) whose route /limited has one limit by route, in Redis; its admin
    listener serves /metrics. The store's timeout is long by default, so that a busy machine
    (CI, a neighbour's build) never turns a slow answer into on_failure; the test of timeouts
    sets its own."""
    port, admin_port = free_port(), free_port()
    tmp = tmp_path_factory.mktemp("gw")
    routes = ("      - name: limited\n        match: { path_prefix: /limited }\n"
              "        upstream: users\n"
              f"        rate_limit: [{{by: route, rate: {rate}, burst: {burst}}}]\n")
    extra = (f"admin:\n  listen: 127.0.0.1:{admin_port}\n  token: {TOKEN}\n"
             f"rate_limit_store:\n  redis: \"127.0.0.1:{redis_port}\"\n"
             f"  on_failure: {on_failure}\n  timeout: {timeout}\n")
    cfg = make_config(port, [("users", [upstream.addr], "5s")], routes, extra=extra)
    cfg = cfg.replace("access_log: stderr", f"access_log: {tmp}/access.log")
    gw = Gateway(str(tmp), cfg, port)
    wait_port(admin_port, gw.proc)
    gw.admin_port = admin_port
    return gw


def stop_gateway(gw):
    code = gw.stop()
    assert code == 0, gw.logs()[-3000:]


def metrics(gw):
    """The gateway's counters as {sample line name with labels: value}."""
    c = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=10)
    c.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    assert r.status == 200, body
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def connected_workers(gw):
    return metrics(gw).get("ringway_redis_connected_workers", 0)


def wait_connected(gws, workers=2, seconds=12.0):
    """Waits (bounded) until every worker of every gateway is connected to Redis."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if all(connected_workers(g) >= workers for g in gws):
            return True
        time.sleep(0.05)
    return False


class Client:
    """One keep-alive connection to a gateway, reopened when the gateway closes it."""

    def __init__(self, port):
        self.port = port
        self.c = None

    def get(self, path="/limited/x"):
        for _ in range(2):
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.c.request("GET", path)
                r = self.c.getresponse()
                body = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.c.close()
                    self.c = None
                return r.status, dict(r.getheaders()), body
            except (OSError, http.client.HTTPException):
                if self.c:
                    self.c.close()
                self.c = None
        raise AssertionError(f"no answer from 127.0.0.1:{self.port}")

    def close(self):
        if self.c:
            self.c.close()


def burst_of(ports, count, threads_per_port=2, seconds=10.0):
    """count requests in all, spread over threads_per_port keep-alive clients per port, as fast as
    they answer (stopping after `seconds` whatever happens). Returns (statuses, elapsed seconds,
    a sample answer per status)."""
    lock = threading.Lock()
    statuses, samples = [], {}
    left = [count]
    deadline = time.time() + seconds

    def run(port):
        cl = Client(port)
        try:
            while time.time() < deadline:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                status, headers, body = cl.get()
                with lock:
                    statuses.append(status)
                    samples.setdefault(status, (headers, body))
        finally:
            cl.close()

    ts = [threading.Thread(target=run, args=(p,)) for p in ports for _ in range(threads_per_port)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 15)
    return statuses, time.time() - t0, samples


def paced(ports, seconds, per_second=120):
    """Requests spread over the ports from 2 clients per port for `seconds`, at most per_second of
    them in all (bounded in count and time). Returns (statuses, elapsed)."""
    lock = threading.Lock()
    statuses = []
    n_clients = 2 * len(ports)
    gap = n_clients / per_second
    t0 = time.time()
    end = t0 + seconds

    def run(port):
        cl = Client(port)
        try:
            nxt = time.time()
            while nxt < end:
                status, _, _ = cl.get()
                with lock:
                    statuses.append(status)
                nxt += gap
                pause = nxt - time.time()
                if pause > 0:
                    time.sleep(pause)
        finally:
            cl.close()

    ts = [threading.Thread(target=run, args=(p,)) for p in ports for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 15)
    return statuses, time.time() - t0


def test_two_gateways_share_one_limit(have_redis, upstream, tmp_path_factory):
    """Two gateway processes (two workers each) using one Redis admit, together, what one bucket
    of 20/s with a burst of 10 allows over the run: at most burst + rate x elapsed + 1, and not
    much fewer; a refusal is the local path's 429 with Retry-After and the RateLimit fields."""
    redis = RedisServer(str(tmp_path_factory.mktemp("redis")))
    a = b = None
    try:
        a = start_gateway(tmp_path_factory, upstream, redis.port, "deny")
        b = start_gateway(tmp_path_factory, upstream, redis.port, "deny")
        assert wait_connected([a, b]), a.logs()[-2000:] + b.logs()[-2000:]
        statuses, elapsed = paced([a.port, b.port], 2.0)
        admitted = statuses.count(200)
        assert set(statuses) <= {200, 429}, statuses
        allowed = 10 + 20 * elapsed
        assert admitted <= allowed + 1, (admitted, elapsed)
        # two separate limits would let through about twice as many
        assert admitted >= allowed - 3 - 0.1 * 20 * elapsed, (admitted, elapsed)
        # the refusal, as the local path gives it (a token may have come back since: at most
        # burst requests pass before it)
        cl = Client(a.port)
        for _ in range(12):
            status, headers, body = cl.get()
            if status == 429:
                break
        cl.close()
        assert status == 429, status
        assert int(headers["Retry-After"]) >= 1
        assert headers["RateLimit-Limit"] == "10"
        assert headers["RateLimit-Remaining"] == "0"
        assert headers["RateLimit-Policy"] == "20;w=1;burst=10"
        assert b'"rate_limited"' in body
        ma, mb = metrics(a), metrics(b)
        for m in (ma, mb):
            assert m['ringway_redis_calls_total{result="ok"}'] > 0
            assert m['ringway_rate_limit_total{decision="admitted"}'] > 0
            assert m['ringway_rate_limit_total{decision="store_failed_denied"}'] == 0
    finally:
        for g in (a, b):
            if g:
                stop_gateway(g)
        redis.stop()


def test_redis_killed_each_on_failure_then_back(have_redis, upstream, tmp_path_factory):
    """Three gateways share one bucket (5/s, burst 5) in Redis. Redis killed: on_failure deny
    answers 503 rate_limit_unavailable with Retry-After: 1, allow lets every request through,
    local applies the process's own limit; the metrics count the failures. Redis started again on
    the same port: every worker reconnects (within the backoff) and the three share one bucket
    again."""
    redis = RedisServer(str(tmp_path_factory.mktemp("redis")))
    gws = {}
    try:
        for mode in ("deny", "allow", "local"):
            gws[mode] = start_gateway(tmp_path_factory, upstream, redis.port, mode, rate="5/s",
                                      burst=5)
        assert wait_connected(gws.values())
        redis.kill()
        # every worker notices (the connection closes): bounded wait
        deadline = time.time() + 10
        while time.time() < deadline and any(connected_workers(g) for g in gws.values()):
            time.sleep(0.05)
        assert not any(connected_workers(g) for g in gws.values())

        statuses, _, samples = burst_of([gws["deny"].port], 20)
        assert statuses == [503] * 20, statuses
        headers, body = samples[503]
        assert headers["Retry-After"] == "1"
        assert b'"rate_limit_unavailable"' in body

        statuses, _, _ = burst_of([gws["allow"].port], 40)
        assert statuses == [200] * 40, statuses

        statuses, elapsed, _ = burst_of([gws["local"].port], 40)
        assert set(statuses) <= {200, 429}, statuses
        assert 5 <= statuses.count(200) <= 5 + 5 * elapsed + 1, (statuses.count(200), elapsed)

        m = {mode: metrics(g) for mode, g in gws.items()}
        assert m["deny"]['ringway_rate_limit_total{decision="store_failed_denied"}'] >= 20
        assert m["allow"]['ringway_rate_limit_total{decision="store_failed_allowed"}'] >= 40
        assert m["local"]['ringway_rate_limit_total{decision="store_failed_local"}'] >= 40
        for g in gws.values():
            assert 'redis 127.0.0.1:%d: connection lost' % redis.port in g.logs()
        assert m["deny"]['ringway_redis_calls_total{result="disconnected"}'] >= 20
        assert "rate limit: redis 127.0.0.1:%d failed" % redis.port in gws["deny"].logs()

        redis.start()  # the same port
        assert wait_connected(gws.values()), [g.logs()[-1500:] for g in gws.values()]
        for g in gws.values():
            assert metrics(g)["ringway_redis_connects_total"] >= 4  # 2 workers, twice
        time.sleep(1.2)  # the bucket is full again: the burst is all that can pass at once
        statuses, elapsed, _ = burst_of([g.port for g in gws.values()], 60, threads_per_port=1)
        assert set(statuses) <= {200, 429}, statuses
        # one shared bucket: three separate ones would admit at least 15
        assert 5 <= statuses.count(200) <= 5 + 5 * elapsed + 1, (statuses.count(200), elapsed)
    finally:
        for g in gws.values():
            stop_gateway(g)
        redis.stop()


def test_redis_hanging_times_out_then_late_replies_dropped(have_redis, upstream, tmp_path_factory):
    """Redis paused (SIGSTOP): calls get no answer within the timeout and on_failure deny answers
    503; the metrics count timeouts. Resumed: the late replies are dropped in order (the
    connection may also have been dropped as hung and made again) and requests are decided in
    Redis again."""
    redis = RedisServer(str(tmp_path_factory.mktemp("redis")))
    gw = None
    try:
        gw = start_gateway(tmp_path_factory, upstream, redis.port, "deny", rate="1000/s",
                           burst=1000, timeout="100ms")
        assert wait_connected([gw])
        cl = Client(gw.port)
        assert cl.get()[0] == 200
        redis.pause()
        try:
            statuses = [cl.get()[0] for _ in range(5)]
        finally:
            redis.resume()
        assert statuses == [503] * 5, statuses
        m = metrics(gw)
        assert m['ringway_redis_calls_total{result="timeout"}'] >= 1
        assert m['ringway_rate_limit_total{decision="store_failed_denied"}'] >= 5
        # decided in Redis again (bounded wait: a dropped connection is made again)
        deadline = time.time() + 10
        status = None
        while time.time() < deadline:
            status = cl.get()[0]
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200, gw.logs()[-2000:]
        ok_before = metrics(gw)['ringway_redis_calls_total{result="ok"}']
        assert [cl.get()[0] for _ in range(10)] == [200] * 10
        assert metrics(gw)['ringway_redis_calls_total{result="ok"}'] >= ok_before + 10
        cl.close()
    finally:
        if gw:
            stop_gateway(gw)
        redis.stop()


def dbsize(port):
    """The number of keys in the Redis on port (one RESP command on a socket of its own)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*1\r\n$6\r\nDBSIZE\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(64)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b":"), data
    return int(data[1:].strip())


def test_reload_moves_to_another_redis(have_redis, upstream, tmp_path_factory):
    """A reload that changes rate_limit_store.redis makes every worker connect to the new address
    (the old connections close); the buckets are then in the new Redis."""
    one = RedisServer(str(tmp_path_factory.mktemp("redis")))
    two = RedisServer(str(tmp_path_factory.mktemp("redis")))
    gw = None
    try:
        gw = start_gateway(tmp_path_factory, upstream, one.port, "deny")
        assert wait_connected([gw])
        cl = Client(gw.port)
        assert cl.get()[0] == 200
        assert dbsize(one.port) == 1 and dbsize(two.port) == 0
        connects = metrics(gw)["ringway_redis_connects_total"]
        with open(gw.config) as f:
            text = f.read()
        with open(gw.config, "w") as f:
            f.write(text.replace(f"127.0.0.1:{one.port}", f"127.0.0.1:{two.port}"))
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline:
            m = metrics(gw)
            if (m["ringway_redis_connects_total"] >= connects + 2 and
                    m["ringway_redis_connected_workers"] == 2):
                break
            time.sleep(0.05)
        assert f"redis 127.0.0.1:{two.port}: connected" in gw.logs(), gw.logs()[-2000:]
        statuses = [cl.get()[0] for _ in range(3)]
        assert set(statuses) <= {200, 429} and 200 in statuses, statuses
        assert dbsize(two.port) == 1
        cl.close()
    finally:
        if gw:
            stop_gateway(gw)
        one.stop()
        two.stop()
