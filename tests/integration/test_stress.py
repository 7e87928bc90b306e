"""A randomized stress run: many concurrent client sessions against one gateway (2 workers) in front
of build/upstream and a misbehaving scripted upstream, for a bounded time and count. Each session
draws one behaviour (keep-alive GETs of every size, spliced uploads and downloads, chunked bodies
valid or broken, pipelining, half-close, resets at random points, slow readers, Expect, HTTP/1.0,
upstreams that answer early, close mid-answer, answer garbage, never answer or refuse, 404/405,
the request-smuggling corpus) from its own seed, checks what it can, and counts outcomes. At the
end the gateway still serves, exits 0 on SIGTERM, and its log has no sanitizer report.

RINGWAY_STRESS_SEED overrides the default seed; RINGWAY_STRESS_SESSION=<session seed> replays one
session alone (the failure message names both); RINGWAY_STRESS_SECONDS changes the load time."""
import collections
import hashlib
import json
import os
import random
import socket
import struct
import threading
import time

from conftest import Gateway, ScriptedUpstream, Upstream, drain, free_port, make_config
from desync_corpus import CORPUS

SEED = int(os.environ.get("RINGWAY_STRESS_SEED", "20240611"))
LOAD_SECONDS = float(os.environ.get("RINGWAY_STRESS_SECONDS", "15"))
MAX_SESSIONS = 5000
THREADS = 12
MAX_BODY = 2097152  # make_config's max_body_bytes
PATTERN = (b"abcdefghijklmnopqrstuvwxyz" * (4_200_000 // 26 + 1))


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


# ---- the misbehaving upstream -------------------------------------------------------------------

def misbehave(c, head):
    """The misbehaving upstream's script, by path (after the gateway's strip_prefix): answers
    early, closes mid-answer, answers garbage, never answers. Every connection ends after one
    request (answers say Connection: close, else the gateway would rightly pool the connection);
    every wait is bounded."""
    path = head.split(b" ", 2)[1].split(b"?")[0]
    if path == b"/early-close":  # a complete answer before the body, then close
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nearly")
    elif path == b"/early-drain":  # a complete answer before the body, then read it
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nearly")
        drain(c, 3)
    elif path == b"/early-partial":  # half an answer, then the body is read, then the rest
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nearly")
        drain(c, 0.3)
        c.sendall(b"later")
        drain(c, 2)
    elif path == b"/early-413":
        c.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    elif path == b"/mid-close":  # 100 of 10000 bytes, then FIN
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"m" * 100)
    elif path == b"/mid-reset":  # 100 of 10000 bytes, then RST
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"m" * 100)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif path == b"/garbage":
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello")
        drain(c, 3)
    elif path == b"/garbage-line":
        c.sendall(b"HTTP/1.1 OK\r\n\r\n")
        drain(c, 3)
    elif path == b"/never":  # holds the request until the gateway gives up (at most 4 s)
        drain(c, 4)
    else:  # /no-answer
        pass


# ---- a small HTTP/1 client ----------------------------------------------------------------------

class Conn:
    def __init__(self, port, timeout=6.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.s.sendall(data)

    def fill(self):
        d = self.s.recv(262144)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def until(self, marker, limit=1 << 20):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[: i + len(marker)])
                del self.buf[: i + len(marker)]
                return out
            check(len(self.buf) < limit, f"no {marker!r} in {len(self.buf)} bytes")
            self.fill()

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def rest(self, limit=8 << 20):
        try:
            while len(self.buf) < limit:
                self.fill()
        except EOFError:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def at_eof(self, timeout=5.0):
        """True when the peer closes (FIN or RST) within timeout with nothing more to read."""
        if self.buf:
            return False
        self.s.settimeout(timeout)
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def reset(self):
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()

    def close(self):
        self.s.close()


def read_response(c, method=b"GET", interim=None):
    """(status, headers, body) of the next response; 1xx answers are skipped (and appended to
    interim). The body is framed as announced: chunked decoded, Content-Length exact, else to EOF."""
    while True:
        head = c.until(b"\r\n\r\n", limit=65536)
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        check(len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit(),
              f"bad status line {lines[0][:100]!r}")
        status = int(parts[1])
        headers = {}
        for l in lines[1:]:
            check(b":" in l, f"bad header line {l[:100]!r}")
            k, v = l.split(b":", 1)
            k = k.strip().lower().decode()
            check(k not in headers or k == "set-cookie", f"duplicate response header {k}")
            headers[k] = v.strip().decode("latin-1")
        if 100 <= status < 200:
            if interim is not None:
                interim.append(status)
            continue
        break
    if method == b"HEAD" or status in (204, 304):
        return status, headers, b""
    if "chunked" in headers.get("transfer-encoding", ""):
        check("content-length" not in headers, "Content-Length with Transfer-Encoding in a response")
        body = bytearray()
        while True:
            line = c.until(b"\r\n", limit=4096)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while c.until(b"\r\n", limit=65536) != b"\r\n":
                    pass
                return status, headers, bytes(body)
            body += c.exact(size)
            check(c.exact(2) == b"\r\n", "chunk not followed by CRLF")
    if "content-length" in headers:
        return status, headers, c.exact(int(headers["content-length"]))
    return status, headers, c.rest()


def check_error(resp, status, reason):
    st, h, body = resp
    check(st == status, f"status {st}, wanted {status} ({reason}): {body[:200]!r}")
    check(h.get("content-type") == "application/json", f"content-type {h.get('content-type')}")
    err = json.loads(body)["error"]
    check(err["status"] == status and err["reason"] == reason, f"error {err}, wanted {reason}")


def check_size(resp, n, what=""):
    st, h, body = resp
    check(st == 200, f"{what} status {st}: {body[:200]!r}")
    check(len(body) == n, f"{what} body {len(body)} bytes, wanted {n}")
    check(body == PATTERN[:n], f"{what} body differs from the pattern")


def check_echo(resp, body_sent):
    st, h, body = resp
    check(st == 200, f"echo status {st}: {body[:200]!r}")
    j = json.loads(body)
    check(j["body_bytes"] == len(body_sent), f"upstream saw {j['body_bytes']} bytes, sent {len(body_sent)}")
    check(j["body_sha256"] == hashlib.sha256(body_sent).hexdigest(), "upstream saw another body")


def req(method, path, headers=(), body=b"", version=b"HTTP/1.1", host=True):
    h = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers)
    return (method + b" " + path + b" " + version + b"\r\n" + (b"Host: t\r\n" if host else b"")
            + h + b"\r\n" + body)


def chunked(rng, body, ext=False):
    out, i = [], 0
    while i < len(body):
        n = min(len(body) - i, rng.choice([1, 7, 100, 4096, 65536, 300_000]))
        out.append(b"%x%s\r\n%s\r\n" % (n, b";x=y" if ext and rng.random() < 0.3 else b"", body[i:i + n]))
        i += n
    return out


SIZES = [0, 1, 100, 4096, 65536, 70_000, 300_000, 1_000_000]
UPLOADS = [0, 10, 5000, 65536, 300_000, 1_000_000]


# ---- behaviours: each takes (rng, port) and returns an outcome name ------------------------------

def b_get_keepalive(rng, port):
    with Conn(port) as c:
        for i in range(rng.randint(1, 4)):
            kind = rng.random()
            if kind < 0.7:
                n = rng.choice(SIZES)
                c.send(req(b"GET", b"/u/size/%d" % n))
                check_size(read_response(c), n, f"GET #{i} /size/{n}")
            elif kind < 0.85:
                n, k = rng.choice(SIZES[1:]), rng.randint(1, 50)
                c.send(req(b"GET", b"/u/chunked/%d?chunks=%d" % (n, k)))
                check_size(read_response(c), n, f"GET #{i} /chunked/{n}")
            else:
                c.send(req(b"GET", b"/u/delay/%d" % rng.randint(1, 100)))
                st, _, body = read_response(c)
                check(st == 200 and json.loads(body)["path"].startswith("/delay/"), f"delay {st}")
        return "get"


def b_post_cl(rng, port):
    body = rng.randbytes(rng.choice(UPLOADS))
    with Conn(port) as c:
        data = req(b"POST", b"/u/echo", [(b"Content-Length", b"%d" % len(body))], body)
        cut = rng.randint(0, len(data))  # two sends, split anywhere
        c.send(data[:cut])
        c.send(data[cut:])
        check_echo(read_response(c), body)
        return "post_cl"


def b_post_chunked(rng, port):
    body = rng.randbytes(rng.choice(UPLOADS))
    with Conn(port) as c:
        c.send(req(b"POST", b"/u/echo", [(b"Transfer-Encoding", b"chunked")]))
        for ch in chunked(rng, body, ext=True):
            c.send(ch)
        c.send(b"0\r\nX-Trailer: 1\r\n\r\n" if rng.random() < 0.3 else b"0\r\n\r\n")
        check_echo(read_response(c), body)
        return "post_chunked"


def b_post_chunked_bad(rng, port):
    body = rng.randbytes(rng.choice([10, 5000, 300_000]))
    with Conn(port) as c:
        c.send(req(b"POST", b"/u/echo", [(b"Transfer-Encoding", b"chunked")]))
        for ch in chunked(rng, body):
            c.send(ch)
        c.send(rng.choice([b"zz\r\nabc\r\n", b"5\r\nabcdefgh\r\n", b"5 5\r\nabcde\r\n", b"-1\r\n",
                           b"ffffffffffffffffffff\r\n"]))
        try:
            resp = read_response(c)
        except ConnectionResetError:
            return "chunked_bad_reset"
        check_error(resp, 400, "bad_chunked_body")
        check(c.at_eof(), "connection open after a bad chunk")
        return "chunked_bad_400"


def b_post_too_large(rng, port):
    with Conn(port) as c:
        if rng.random() < 0.5:
            c.send(req(b"POST", b"/u/echo", [(b"Content-Length", b"%d" % (MAX_BODY + 1))]))
            check_error(read_response(c), 413, "body_too_large")
            return "cl_413"
        c.send(req(b"POST", b"/u/echo", [(b"Transfer-Encoding", b"chunked")]))
        piece = b"%x\r\n%s\r\n" % (262144, b"q" * 262144)
        try:
            for _ in range(MAX_BODY // 262144 + 2):
                c.send(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            resp = read_response(c)
        except (ConnectionResetError, EOFError):
            return "chunked_413_reset"
        check_error(resp, 413, "body_too_large")
        return "chunked_413"


def b_pipelined(rng, port):
    items, data = [], b""
    for _ in range(rng.randint(2, 5)):
        k = rng.randrange(4)
        if k == 0:
            n = rng.choice(SIZES[:6])
            data += req(b"GET", b"/u/size/%d" % n)
            items.append((b"GET", "size", n))
        elif k == 1:
            data += req(b"GET", b"/nope")
            items.append((b"GET", "404", None))
        elif k == 2:
            n = rng.choice(SIZES[:6])
            data += req(b"HEAD", b"/u/size/%d" % n)
            items.append((b"HEAD", "head", n))
        else:
            body = rng.randbytes(rng.choice([0, 10, 5000]))
            data += req(b"POST", b"/u/echo", [(b"Content-Length", b"%d" % len(body))], body)
            items.append((b"POST", "echo", body))
    with Conn(port) as c:
        c.send(data)
        for i, (m, kind, arg) in enumerate(items):
            resp = read_response(c, m)
            if kind == "size":
                check_size(resp, arg, f"pipelined #{i}")
            elif kind == "404":
                check_error(resp, 404, "no_route")
            elif kind == "head":
                check(resp[0] == 200 and resp[1].get("content-length") == str(arg), f"HEAD #{i} {resp[:2]}")
            else:
                check_echo(resp, arg)
        return "pipelined"


def b_half_close(rng, port):
    with Conn(port) as c:
        n = rng.choice(SIZES)
        nreq = rng.randint(1, 3)
        c.send(req(b"GET", b"/u/size/%d" % n) * nreq)
        c.s.shutdown(socket.SHUT_WR)
        for i in range(nreq):
            check_size(read_response(c), n, f"half-closed #{i}")
        check(c.at_eof(), "connection open after a half-closed client's answers")
        return "half_close"


def b_reset(rng, port):
    c = Conn(port)
    where = rng.choice(["head", "body", "response", "splice_up", "early"])
    if where == "head":
        data = req(b"GET", b"/u/size/10")
        c.send(data[: rng.randint(1, len(data) - 1)])
    elif where in ("body", "splice_up"):
        n = 100_000 if where == "body" else 1_000_000
        c.send(req(b"POST", rng.choice([b"/u/echo", b"/m/early-drain", b"/m/never"]),
                   [(b"Content-Length", b"%d" % n)]))
        c.send(b"x" * rng.randint(0, n - 1))
    elif where == "response":
        c.send(req(b"GET", b"/u/size/%d" % rng.choice([70_000, 1_000_000, 4_000_000])))
        try:
            c.exact(rng.randint(1, 60_000))
        except (EOFError, OSError):
            pass
    else:  # the answer began, the upload goes on, then a reset
        c.send(req(b"POST", rng.choice([b"/m/early-drain", b"/m/early-partial"]),
                   [(b"Content-Length", b"1000000")]) + b"x" * 1000)
        try:
            c.until(b"early")
            c.send(b"x" * rng.randint(0, 500_000))
        except (EOFError, OSError):
            pass
    time.sleep(rng.random() * 0.05)
    c.reset()
    return "reset_" + where


def b_slow_reader(rng, port):
    c = Conn(port)
    try:
        c.send(req(b"GET", b"/u/size/%d" % rng.choice([1_000_000, 4_000_000])))
        try:
            c.exact(rng.randint(0, 100_000))
        except (EOFError, OSError):
            pass
        time.sleep(rng.uniform(0.2, 3.0))  # client_timeout is 2 s
        return "slow_reader"
    finally:
        if rng.random() < 0.5:
            c.reset()
        else:
            c.close()


def b_expect(rng, port):
    with Conn(port) as c:
        if rng.random() < 0.2:  # refused before any body: no 100, the refusal
            c.send(req(b"POST", b"/u/echo", [(b"Content-Length", b"%d" % (MAX_BODY + 10)),
                                              (b"Expect", b"100-continue")]))
            check_error(read_response(c), 413, "body_too_large")
            return "expect_413"
        body = rng.randbytes(rng.choice(UPLOADS[1:]))
        c.send(req(b"POST", b"/u/echo", [(b"Content-Length", b"%d" % len(body)),
                                          (b"Expect", b"100-continue")]))
        if rng.random() < 0.7:
            line = c.until(b"\r\n\r\n")
            check(line.startswith(b"HTTP/1.1 100"), f"wanted 100 Continue, got {line[:100]!r}")
        c.send(body)
        check_echo(read_response(c), body)
        return "expect_100"


def b_http10(rng, port):
    with Conn(port) as c:
        n = rng.choice(SIZES)
        c.send(req(b"GET", b"/u/size/%d" % n, version=b"HTTP/1.0", host=rng.random() < 0.5))
        check_size(read_response(c), n, "HTTP/1.0")
        check(c.at_eof(), "HTTP/1.0 connection left open")
        return "http10"


def b_early(rng, port):
    path = rng.choice([b"/m/early-close", b"/m/early-drain", b"/m/early-partial", b"/m/early-413"])
    n = rng.choice([10, 5000, 300_000, 1_000_000])
    use_chunked = rng.random() < 0.4
    with Conn(port) as c:
        if use_chunked:
            c.send(req(b"POST", path, [(b"Transfer-Encoding", b"chunked")]) + b"a\r\n0123456789\r\n")
        else:
            c.send(req(b"POST", path, [(b"Content-Length", b"%d" % n)]) + b"x" * min(n, 1000))
        resp = read_response(c)
        if path == b"/m/early-413":
            check(resp[0] == 413, f"early 413 came as {resp[0]}")
        else:
            check(resp[0] == 200 and resp[2] == (b"earlylater" if path.endswith(b"partial") else b"early"),
                  f"early answer {resp[0]} {resp[2][:100]!r}")
        try:  # the rest of the body, possibly broken; the connection may close meanwhile
            if use_chunked:
                c.send(rng.choice([b"0\r\n\r\n", b"zz\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (n, b"y" * n)]))
            else:
                c.send(b"x" * max(0, n - 1000))
            c.send(req(b"GET", b"/u/size/3"))
            resp = read_response(c)
            check_size(resp, 3, "after an early answer")
            return "early_reused"
        except (EOFError, OSError):
            return "early_closed"


def b_upstream_fails(rng, port):
    kind = rng.choice(["mid-close", "mid-reset", "u-mid", "garbage", "garbage-line", "u-bad",
                       "never", "no-answer", "u-no-answer", "dead"])
    with Conn(port) as c:
        if kind in ("mid-close", "mid-reset", "u-mid"):
            c.send(req(b"GET", b"/u/close-mid-body" if kind == "u-mid" else b"/m/" + kind.encode()))
            head = c.until(b"\r\n\r\n")
            check(head.startswith(b"HTTP/1.1 200"), f"{kind}: {head[:100]!r}")
            total = 100_000 if kind == "u-mid" else 10_000
            try:
                got = len(c.rest())
            except ConnectionResetError:
                got = -1
            check(got < total, f"{kind}: a truncated answer arrived whole")
            return "mid_close"
        if kind in ("garbage", "garbage-line", "u-bad"):
            c.send(req(b"GET", b"/u/bad-response" if kind == "u-bad" else b"/m/" + kind.encode()))
            check_error(read_response(c), 502, "upstream_bad_response")
            return "bad_response"
        if kind == "never":
            t0 = time.time()
            c.send(req(b"GET", b"/m/never"))
            check_error(read_response(c), 504, "upstream_timeout")
            check(time.time() - t0 < 4, "504 came late")
            return "timeout"
        if kind in ("no-answer", "u-no-answer"):
            p = b"/u/close-no-response" if kind == "u-no-answer" else b"/m/no-answer"
            c.send(req(b"POST", p, [(b"Content-Length", b"1")], b"x"))
            check_error(read_response(c), 502, "upstream_reset")
            return "no_answer"
        c.send(req(b"GET", b"/dead/x"))
        check_error(read_response(c), 502, "upstream_connect_failed")
        return "refused"


def b_404_405(rng, port):
    with Conn(port) as c:
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                c.send(req(b"GET", b"/nope/%d" % rng.randrange(1000)))
                check_error(read_response(c), 404, "no_route")
            else:
                m = rng.choice([b"POST", b"DELETE", b"PATCH"])
                body = b"abc" if m != b"DELETE" else b""
                c.send(req(m, b"/g/x", [(b"Content-Length", b"%d" % len(body))], body))
                resp = read_response(c)
                check_error(resp, 405, "method_not_allowed")
                if resp[1].get("connection") == "close":  # refused with a body unread: it closes
                    check(c.at_eof(), "open after Connection: close")
                    return "405_close"
        c.send(req(b"GET", b"/g/size/5"))
        check_size(read_response(c), 5, "after 404/405")
        return "404_405"


def b_corpus(rng, port):
    tier, name, raw, reason = rng.choice(CORPUS)
    c = Conn(port)
    try:
        if rng.random() < 0.3:  # after a good request on the same connection
            c.send(req(b"GET", b"/u/size/7"))
            check_size(read_response(c), 7, "before a corpus case")
        c.send(raw)
        try:
            resp = read_response(c)
        except ConnectionResetError:
            raise Failure(f"corpus {name!r}: reset instead of an answer")
        check_error(resp, 505 if reason == "bad_version" else 400, reason)
        check(resp[1].get("connection") == "close", f"corpus {name!r}: no Connection: close")
        check(c.at_eof(), f"corpus {name!r}: connection left open")
        return "corpus"
    except Failure as e:
        raise Failure(f"corpus {tier} {name!r}: {e}")
    finally:
        c.close()


def b_body_then_pipelined(rng, port):
    """A body (large ones are spliced) with the next requests in the same send behind it."""
    body = rng.randbytes(rng.choice([300_000, 1_000_000, 5000]))
    if rng.random() < 0.5:
        first = req(b"POST", b"/u/echo", [(b"Content-Length", b"%d" % len(body))], body)
    else:
        first = req(b"POST", b"/u/echo", [(b"Transfer-Encoding", b"chunked")]) + b"".join(chunked(rng, body)) + b"0\r\n\r\n"
    n = rng.choice(SIZES)
    more = rng.randint(1, 3)
    with Conn(port) as c:
        c.send(first + req(b"GET", b"/u/size/%d" % n) * more)
        check_echo(read_response(c), body)
        for i in range(more):
            check_size(read_response(c), n, f"behind a body #{i}")
        return "body_pipelined"


def b_client_stops_mid_body(rng, port):
    """Part of a body, then a half-close or a stall past client_timeout (2 s)."""
    n = rng.choice([1000, 300_000, 1_000_000])
    use_chunked = rng.random() < 0.4
    with Conn(port) as c:
        path = rng.choice([b"/u/echo", b"/u/echo", b"/m/early-drain", b"/m/early-partial", b"/m/never"])
        if use_chunked:
            c.send(req(b"POST", path, [(b"Transfer-Encoding", b"chunked")]) + b"%x\r\n%s" % (n, b"x" * (n // 2)))
        else:
            c.send(req(b"POST", path, [(b"Content-Length", b"%d" % n)]) + b"x" * (n // 2))
        how = rng.choice(["half_close", "stall"])
        if how == "half_close":
            c.s.shutdown(socket.SHUT_WR)
        try:
            c.s.settimeout(8)
            resp = read_response(c)
        except (EOFError, ConnectionResetError):
            return "mid_body_" + how + "_closed"
        if path == b"/m/early-drain":
            check(resp[0] == 200 and resp[2] == b"early", f"early answer {resp[0]} {resp[2][:100]!r}")
        elif path == b"/m/early-partial":
            check(resp[0] == 200 and resp[2] == b"earlylater", f"early answer {resp[0]} {resp[2][:100]!r}")
        elif how == "stall" and path == b"/u/echo":
            check_error(resp, 408, "client_timeout")
        else:
            check(resp[0] in (400, 408, 499, 502, 504), f"{how} mid-body on {path!r}: {resp[0]} {resp[2][:200]!r}")
        check(c.at_eof(8), f"{how} mid-body on {path!r}: connection left open")
        return "mid_body_" + how


def b_expect_early(rng, port):
    """Expect: 100-continue to an upstream that answers before the body."""
    path = rng.choice([b"/m/early-close", b"/m/early-drain", b"/m/early-413", b"/m/never", b"/dead/x"])
    n = rng.choice([10, 300_000])
    with Conn(port) as c:
        c.send(req(b"POST", path, [(b"Content-Length", b"%d" % n), (b"Expect", b"100-continue")]))
        interim = []
        resp = read_response(c, interim=interim)
        want = {b"/m/early-413": 413, b"/m/never": 504, b"/dead/x": 502}.get(path, 200)
        check(resp[0] == want, f"Expect to {path!r}: {resp[0]} {resp[2][:200]!r} (interim {interim})")
        try:
            c.send(b"x" * n + req(b"GET", b"/u/size/3"))
            check_size(read_response(c), 3, "after Expect and an early answer")
            return "expect_early_reused"
        except (EOFError, OSError):
            return "expect_early_closed"


BEHAVIOURS = [  # (weight, function)
    (10, b_get_keepalive), (6, b_post_cl), (5, b_post_chunked), (3, b_post_chunked_bad),
    (2, b_post_too_large), (5, b_pipelined), (3, b_half_close), (5, b_reset), (2, b_slow_reader),
    (3, b_expect), (2, b_http10), (5, b_early), (6, b_upstream_fails), (3, b_404_405), (5, b_corpus),
    (4, b_body_then_pipelined), (3, b_client_stops_mid_body), (2, b_expect_early),
]


def run_session(seed, port):
    rng = random.Random(seed)
    fn = rng.choices([b for _, b in BEHAVIOURS], [w for w, _ in BEHAVIOURS])[0]
    try:
        return fn.__name__, fn(rng, port), None
    except Failure as e:
        return fn.__name__, "FAIL", str(e)
    except (OSError, EOFError, ValueError, KeyError) as e:
        return fn.__name__, "FAIL", f"{type(e).__name__}: {e}"


# ---- the test -----------------------------------------------------------------------------------

def start(tmp_path):
    good = Upstream("good", threads=2)
    bad = ScriptedUpstream(misbehave)
    port = free_port()
    dead = free_port()  # nothing listens there
    routes = (
        "      - name: u\n        match: { path_prefix: /u }\n        upstream: good\n        strip_prefix: /u\n"
        "      - name: g\n        match: { path_prefix: /g, methods: [GET, HEAD] }\n        upstream: good\n"
        "        strip_prefix: /g\n"
        "      - name: m\n        match: { path_prefix: /m }\n        upstream: bad\n        strip_prefix: /m\n"
        "      - name: dead\n        match: { path_prefix: /dead }\n        upstream: dead\n")
    cfg = make_config(port, [("good", [good.addr], "5s"), ("bad", [bad.addr], "1s"),
                             ("dead", [f"127.0.0.1:{dead}"], "1s")], routes,
                      limits="  header_timeout: 2s\n  client_timeout: 2s\n  keepalive_timeout: 5s\n",
                      workers=2)
    return good, bad, Gateway(str(tmp_path), cfg, port)


def final_checks(gw, label):
    assert gw.proc.poll() is None, f"{label}: the gateway died: " + gw.logs()[-6000:]
    for i in range(8):  # fresh connections: each worker gets some (SO_REUSEPORT)
        c = Conn(gw.port)
        try:
            c.send(req(b"GET", b"/u/size/1000", [(b"Connection", b"close")]))
            check_size(read_response(c), 1000, f"{label}: final GET #{i}")
        finally:
            c.close()


def sanitizer_reports(log):
    return [m for m in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer") if m in log]


def run_load(port, seeds, seconds, nthreads, ignore_after=None):
    """Runs sessions from `seeds` on nthreads threads until `seconds` pass or the seeds run out;
    returns (sessions started, outcome counts, failures, threads still running). A session that
    ends after the time `ignore_after()` returns is not judged."""
    outcomes, failures = collections.Counter(), []
    lock = threading.Lock()
    next_i = [0]
    deadline = time.time() + seconds

    def worker():
        while time.time() < deadline:
            with lock:
                if next_i[0] >= len(seeds) or len(failures) >= 20:
                    return
                if ignore_after and ignore_after() is not None:
                    return  # the gateway is stopping: no new sessions
                seed = seeds[next_i[0]]
                next_i[0] += 1
            name, outcome, err = run_session(seed, port)
            with lock:
                cut = ignore_after() if ignore_after else None
                if cut is not None and time.time() >= cut:
                    outcomes["after_sigterm"] += 1
                    continue
                outcomes[outcome] += 1
                if err:
                    failures.append(f"session {seed} ({name}): {err}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(nthreads)]
    for t in threads:
        t.start()
    return threads, next_i, outcomes, failures


def test_stress_random_sessions(tmp_path):
    only = os.environ.get("RINGWAY_STRESS_SESSION")
    label = f"RINGWAY_STRESS_SEED={SEED}"
    master = random.Random(SEED)
    seeds = [int(only)] if only else [master.getrandbits(32) for _ in range(MAX_SESSIONS)]
    good, bad, gw = start(tmp_path)
    try:
        threads, count, outcomes, failures = run_load(gw.port, seeds, LOAD_SECONDS, 1 if only else THREADS)
        for t in threads:
            t.join(LOAD_SECONDS + 30)
        hung = sum(t.is_alive() for t in threads)
        summary = f"{label}: {count[0]} sessions, outcomes {dict(sorted(outcomes.items()))}"
        print(summary)
        assert not hung, f"{summary}: {hung} sessions still running"
        final_checks(gw, label)
    finally:
        code = gw.stop()
        good.stop()
        bad.stop()
    log = gw.logs()
    assert not failures, summary + "\n" + "\n".join(failures) + "\n" + log[-4000:]
    assert code == 0 and not sanitizer_reports(log), f"{label}: exit {code}\n" + log[-8000:]


def test_stress_sigterm_under_load(tmp_path):
    """SIGTERM while sessions of every kind are in flight (spliced bodies, slow readers, upstreams
    that never answer): the gateway drains within drain_timeout (5 s) and exits 0, cleanly."""
    label = f"RINGWAY_STRESS_SEED={SEED} (sigterm)"
    master = random.Random(SEED ^ 0x5157)
    seeds = [master.getrandbits(32) for _ in range(MAX_SESSIONS)]
    good, bad, gw = start(tmp_path)
    sigterm_at = [None]
    try:
        threads, count, outcomes, failures = run_load(gw.port, seeds, 7, THREADS, lambda: sigterm_at[0])
        time.sleep(3)
        sigterm_at[0] = time.time()
        gw.proc.terminate()
        try:
            code = gw.proc.wait(12)
        except Exception:
            code = None
        took = time.time() - sigterm_at[0]
        for t in threads:
            t.join(30)
        summary = f"{label}: {count[0]} sessions, outcomes {dict(sorted(outcomes.items()))}"
        print(summary, f"exit {code} after {took:.1f} s")
    finally:
        gw.stop()
        good.stop()
        bad.stop()
    log = gw.logs()
    assert not failures, summary + "\n" + "\n".join(failures) + "\n" + log[-4000:]
    assert code == 0 and not sanitizer_reports(log), f"{label}: exit {code}\n" + log[-8000:]
    assert took < 9, f"{label}: drained in {took:.1f} s with drain_timeout 5 s"
