"""TLS termination with wolfSSL, end to end on 127.0.0.1 with a test PKI made by openssl: the
certificate chosen by SNI (exact, one-label wildcard, default), curl over https with
X-Forwarded-Proto and HSTS, only TLS 1.2/1.3 with forward-secret AEAD suites, min_version 1.3,
resumption (TLS 1.2 session cache and tickets, TLS 1.3 tickets, across workers), mTLS, TLS to an
upstream with verification and SNI, garbage/truncated/silent clients, plaintext HTTP on a TLS port,
100 concurrent keep-alive clients, certificates reloaded without dropping connections, certificate
errors from `ringway check`, and the handshake counters in /metrics."""
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import RINGWAY, Gateway, Upstream, free_port, wait_port

TOKEN = "tls-test-token-0123456789"


# ---- helpers --------------------------------------------------------------------------------------

def wait_for(pred, timeout=10.0, what="condition"):
    """Polls pred() until it is true, at most `timeout` seconds; returns its value."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.02)


def wait_log_count(gw, text, more_than, timeout=10.0):
    """Waits until `text` appears in the gateway's log more than `more_than` times."""
    return wait_for(lambda: gw.logs().count(text) > more_than, timeout,
                    f"log line {text!r} (seen {gw.logs().count(text)}x, wanted >{more_than}x)")


def client_ctx(pki, sni_checked=True, cert=None, min_v=None, max_v=None, ciphers=None, alpn=None,
               no_ticket=False):
    """A client context trusting the test CA; cert: "client" / "stranger" for mTLS."""
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.check_hostname = sni_checked
    if cert:
        ctx.load_cert_chain(pki.path(cert + ".pem"), pki.path(cert + ".key"))
    if min_v:
        ctx.minimum_version = min_v
    if max_v:
        ctx.maximum_version = max_v
    if ciphers:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if no_ticket:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


class HTTPSTo(http.client.HTTPConnection):
    """HTTPS to 127.0.0.1:port with the server name `sni` (None: no SNI), optionally resuming
    `session`."""

    def __init__(self, port, sni, ctx, session=None, timeout=20):
        super().__init__("127.0.0.1", port, timeout=timeout)
        self.sni, self.ctx, self.session = sni, ctx, session

    def connect(self):
        super().connect()
        self.sock = self.ctx.wrap_socket(self.sock, server_hostname=self.sni, session=self.session)

    def get(self, path, headers=None):
        self.request("GET", path, headers=dict(headers or {}))
        r = self.getresponse()
        return r, r.read()


def https_get(port, path, pki, sni="a.test", ctx=None, headers=None):
    c = HTTPSTo(port, sni, ctx or client_ctx(pki))
    try:
        r, body = c.get(path, headers)
        return r, body, c.sock
    finally:
        c.close()


def assert_serves(gw, pki):
    """The gateway still serves https on its main TLS port (and plain HTTP)."""
    r, body, _ = https_get(gw.tls, "/api/still-serving", pki)
    assert r.status == 200, body
    assert json.loads(body)["server"] == "u1"
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    c.request("GET", "/api/still-serving-plain")
    assert c.getresponse().status == 200
    c.close()


def peer_der(port, sni, pki, ctx=None):
    """The DER certificate the gateway presents on port for server name sni."""
    ctx = ctx or client_ctx(pki, sni_checked=sni is not None)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=sni) as t:
            return t.getpeercert(binary_form=True), t.version(), t.cipher()[0]


def s_client(*args, stdin=b"", timeout=30):
    """openssl s_client (stdin sent, then EOF), returns (exit code, stdout + stderr)."""
    r = subprocess.run(["openssl", "s_client", *args], input=stdin, capture_output=True,
                       timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def recv_until_closed(sock, timeout=10.0):
    """Reads until the peer closes (b"" or a reset), at most `timeout` s; returns what was read,
    or raises if it is still open after that."""
    deadline = time.time() + timeout
    out = b""
    sock.settimeout(0.2)
    while time.time() < deadline:
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return out
        if not d:
            return out
        out += d
    raise AssertionError(f"the gateway did not close the connection within {timeout}s "
                         f"(read {out[:200]!r})")


def client_hello(sni="a.test"):
    """The bytes of a real ClientHello for `sni` (from Python's ssl, over memory BIOs)."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert hello[0] == 0x16 and len(hello) > 100
    return hello


def handshake_counts(gw):
    """{result: sum over workers} of ringway_tls_handshakes_total from the admin /metrics."""
    c = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=10)
    c.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    assert r.status == 200, text
    counts = {}
    for m in re.finditer(r'^ringway_tls_handshakes_total\{worker="(\d+)",result="(\w+)"\} (\d+)$',
                         text, re.M):
        counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(3))
    assert set(counts) == {"full", "resumed", "failed"}, text
    return counts


class TlsUpstream:
    """An HTTPS upstream on 127.0.0.1 (Python ssl, a thread per connection) with the "up" test
    certificate (up.test, signed by the test CA). It answers every request 200 with a JSON body
    naming itself and the request; it records the SNI names it was offered and failed handshakes.
    Stops accepting after `lifetime` s at the latest."""

    def __init__(self, pki, lifetime=300):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.path("up.pem"), pki.path("up.key"))
        self.snis, self.failures, self.handshakes = [], [], 0
        self.lock = threading.Lock()
        self.ctx.sni_callback = self._sni
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop_ev = threading.Event()
        self.deadline = time.time() + lifetime
        threading.Thread(target=self._run, daemon=True).start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def _sni(self, sslobj, name, ctx):
        with self.lock:
            self.snis.append(name)

    def _run(self):
        while not self.stop_ev.is_set() and time.time() < self.deadline:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(60)  # longer than the module runs: no idle close racing a pooled reuse
        try:
            t = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.failures.append(repr(e))
            c.close()
            return
        with self.lock:
            self.handshakes += 1
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = t.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode(errors="replace").split("\r\n")
                hdrs = [line.split(":", 1) for line in lines[1:]]
                length = sum(int(v) for k, v in hdrs if k.strip().lower() == "content-length")
                while len(buf) < length:
                    d = t.recv(65536)
                    if not d:
                        return
                    buf += d
                got, buf = buf[:length], buf[length:]
                target = lines[0].split()[1]
                if target.startswith("/big/"):  # /big/N: N bytes, byte i = 'a' + i % 26
                    n = int(target[5:])
                    body = (b"abcdefghijklmnopqrstuvwxyz" * (n // 26 + 1))[:n]
                else:
                    body = json.dumps({"server": "tls-up", "request": lines[0],
                                       "headers": [[k, v.strip()] for k, v in hdrs],
                                       "body_bytes": len(got),
                                       "body_sha256": hashlib.sha256(got).hexdigest()}).encode()
                t.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        except (ssl.SSLError, OSError):
            pass
        finally:
            t.close()

    def stop(self):
        self.stop_ev.set()
        self.sock.close()


def certs_yaml(pki, names):
    return "[" + ", ".join(f"{{cert: '{pki.path(n + '.pem')}', key: '{pki.path(n + '.key')}'}}"
                           for n in names) + "]"


def gateway_config(pki, g, up, tls_ups):
    """The module's gateway: a plain port, the main TLS port (a then b, HSTS), a TLS 1.3-only
    port, an mTLS port and a port with a 1 s handshake_timeout; upstreams plain, TLS verified,
    TLS with the wrong CA, TLS with the wrong SNI (each its own HTTPS upstream: one address is
    one connection pool, so one set of tls settings); an admin listener."""
    ca, other = pki.path("ca.pem"), pki.path("other-ca.pem")
    routes = "".join(
        f"      - name: {n}\n        match: {{ path_prefix: /{n} }}\n        upstream: {n}\n"
        f"        strip_prefix: /{n}\n" for n in ("secure", "wrongca", "wrongsni"))
    routes += ("      - name: api\n        match: { path_prefix: /api }\n        upstream: plain\n"
               "      - name: size\n        match: { path_prefix: /size }\n        upstream: plain\n")
    return (
        f"workers: 2\naccess_log: stderr\ndrain_timeout: 5s\n"
        f"upstreams:\n"
        f"  plain:\n    targets: ['{up.addr}']\n    keepalive: 16\n"
        f"  secure:\n    targets: ['{tls_ups['secure'].addr}']\n    response_timeout: 10s\n"
        f"    tls: {{verify: true, ca: '{ca}', sni: up.test}}\n"
        f"  wrongca:\n    targets: ['{tls_ups['wrongca'].addr}']\n"
        f"    tls: {{verify: true, ca: '{other}', sni: up.test}}\n"
        f"  wrongsni:\n    targets: ['{tls_ups['wrongsni'].addr}']\n"
        f"    tls: {{verify: true, ca: '{ca}', sni: wrong.test}}\n"
        f"frontends:\n  - name: public\n    listen:\n"
        f"      - '127.0.0.1:{g.port}'\n"
        f"      - address: '127.0.0.1:{g.tls}'\n        tls:\n"
        f"          certs: {certs_yaml(pki, ['a', 'b'])}\n"
        f"          min_version: \"1.2\"\n          alpn: [http/1.1]\n"
        f"          hsts: {{max_age: 600, include_subdomains: true}}\n"
        f"      - address: '127.0.0.1:{g.tls13}'\n        tls:\n"
        f"          certs: {certs_yaml(pki, ['a'])}\n          min_version: \"1.3\"\n"
        f"      - address: '127.0.0.1:{g.mtls}'\n        tls:\n"
        f"          certs: {certs_yaml(pki, ['a'])}\n          client_ca: '{ca}'\n"
        f"      - address: '127.0.0.1:{g.quick}'\n        tls:\n"
        f"          certs: {certs_yaml(pki, ['a'])}\n          handshake_timeout: 1s\n"
        f"    routes:\n{routes}"
        f"admin:\n  listen: 127.0.0.1:{g.admin_port}\n  token: {TOKEN}\n")


class Ports:
    pass


@pytest.fixture(scope="module")
def gw(pki, tmp_path_factory):
    up = Upstream("u1", threads=2)
    tls_ups = {n: TlsUpstream(pki) for n in ("secure", "wrongca", "wrongsni")}
    g = Ports()
    g.port, g.tls, g.tls13, g.mtls, g.quick, g.admin_port = (free_port() for _ in range(6))
    try:
        gateway = Gateway(str(tmp_path_factory.mktemp("tlsgw")),
                          gateway_config(pki, g, up, tls_ups), g.port)
        for p in (g.tls, g.tls13, g.mtls, g.quick, g.admin_port):
            wait_port(p, gateway.proc)
    except Exception:
        up.stop()
        for u in tls_ups.values():
            u.stop()
        raise
    gateway.__dict__.update(g.__dict__)
    gateway.up, gateway.tls_ups = up, tls_ups
    yield gateway
    code = gateway.stop()
    up.stop()
    for u in tls_ups.values():
        u.stop()
    logs = gateway.logs()
    assert code == 0, logs[-4000:]
    assert "AddressSanitizer" not in logs and "LeakSanitizer" not in logs, logs[-8000:]


# ---- certificates by SNI -------------------------------------------------------------------------

@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls12", "tls13"])
def test_sni_picks_the_certificate(gw, pki, version):
    cases = [("a.test", "a"), ("b.test", "b"), ("x.a.test", "a"), ("A.TEST", "a"),
             (None, "a"), ("unknown.test", "a")]
    for sni, want in cases:
        ctx = client_ctx(pki, sni_checked=sni in ("a.test", "b.test", "x.a.test"),
                         min_v=version, max_v=version)
        der, got_version, cipher = peer_der(gw.tls, sni, pki, ctx)
        assert der == pki.der(want), f"SNI {sni!r} over {version}: not the {want} certificate"
        assert got_version == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
        # forward-secret AEAD suites only
        assert re.search(r"GCM|CHACHA20", cipher), cipher
        if version == ssl.TLSVersion.TLSv1_2:
            assert cipher.startswith("ECDHE-" if want == "a" else ("ECDHE-RSA-", "DHE-RSA-")), \
                cipher
    # the RSA certificate is served with an ECDHE-RSA suite when the client asks only for those
    ctx = client_ctx(pki, max_v=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    der, _, cipher = peer_der(gw.tls, "b.test", pki, ctx)
    assert der == pki.der("b") and cipher == "ECDHE-RSA-AES128-GCM-SHA256"


def test_sni_with_openssl_s_client(gw, pki):
    for sni, key in (("a.test", "id-ecPublicKey"), ("b.test", "rsaEncryption")):
        rc, out = s_client("-connect", f"127.0.0.1:{gw.tls}", "-servername", sni,
                           "-CAfile", pki.path("ca.pem"), "-verify_return_error", "-showcerts")
        assert rc == 0, out
        assert "Verify return code: 0 (ok)" in out, out
        assert f"subject=CN = {sni}" in out, out
        pem = out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----") + 25]
        text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem.encode(),
                              capture_output=True, timeout=10).stdout.decode()
        assert key in text, text


def test_alpn_agrees_on_http11_only(gw, pki):
    ctx = client_ctx(pki, alpn=["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", gw.tls), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="a.test") as t:
            assert t.selected_alpn_protocol() == "http/1.1"
    # a client offering only h2 gets no protocol agreed, and the handshake still completes
    ctx = client_ctx(pki, alpn=["h2"])
    with socket.create_connection(("127.0.0.1", gw.tls), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="a.test") as t:
            assert t.selected_alpn_protocol() is None


# ---- https end to end ----------------------------------------------------------------------------

def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "-D", "-", *args], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    head, body = r.stdout.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_curl_https_end_to_end(gw, pki):
    status, headers, body = curl("--cacert", pki.path("ca.pem"), "--resolve",
                                 f"a.test:{gw.tls}:127.0.0.1", f"https://a.test:{gw.tls}/api/users/7")
    assert status == 200, body
    echo = json.loads(body)
    assert echo["server"] == "u1" and echo["path"] == "/api/users/7"
    seen = {k.lower(): v for k, v in echo["headers"]}
    assert seen["x-forwarded-proto"] == "https"
    assert headers["strict-transport-security"] == "max-age=600; includeSubDomains"
    assert headers["x-upstream"] == "u1"

    # the plain listener of the same frontend: http, and no HSTS
    status, headers, body = curl(f"http://127.0.0.1:{gw.port}/api/users/7")
    assert status == 200
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert seen["x-forwarded-proto"] == "http"
    assert "strict-transport-security" not in headers
    # a TLS listener without an hsts section: https, and no HSTS
    status, headers, body = curl("--cacert", pki.path("ca.pem"), "--resolve",
                                 f"a.test:{gw.tls13}:127.0.0.1", f"https://a.test:{gw.tls13}/api/x")
    assert status == 200
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert seen["x-forwarded-proto"] == "https"
    assert "strict-transport-security" not in headers


def test_client_cannot_spoof_forwarded_proto(gw, pki):
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    c.request("GET", "/api/spoof", headers={"X-Forwarded-Proto": "https"})
    r = c.getresponse()
    protos = [v for k, v in json.loads(r.read())["headers"] if k.lower() == "x-forwarded-proto"]
    c.close()
    assert protos == ["http"]


def test_post_body_over_tls(gw, pki):
    body = bytes(range(256)) * 2048  # 512 KiB: many TLS records both ways
    c = HTTPSTo(gw.tls, "a.test", client_ctx(pki))
    c.request("POST", "/api/upload", body=body)
    r = c.getresponse()
    echo = json.loads(r.read())
    assert r.status == 200
    assert echo["body_bytes"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    r, data = c.get("/size/300000")  # same connection, a large answer
    assert r.status == 200 and len(data) == 300000
    assert data[:26] == b"abcdefghijklmnopqrstuvwxyz" and data[-1:] == bytes([97 + 299999 % 26])
    c.close()


def test_pipelined_requests_over_tls(gw, pki):
    ctx = client_ctx(pki)
    with socket.create_connection(("127.0.0.1", gw.tls), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="a.test") as t:
            t.sendall(b"".join(b"GET /api/pipe/%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % i
                               for i in range(3)) +
                      b"GET /api/pipe/3 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            out = b""
            while True:
                try:
                    d = t.recv(65536)
                except (ssl.SSLEOFError, ConnectionResetError):
                    break
                if not d:
                    break
                out += d
    paths = re.findall(rb'"path":"(/api/pipe/\d)"', out)
    assert paths == [b"/api/pipe/%d" % i for i in range(4)], out[:2000]
    assert out.count(b"HTTP/1.1 200 OK") == 4


# ---- versions --------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls10_and_tls11_refused(gw, pki):
    for flag in ("-tls1", "-tls1_1"):
        before = gw.logs().count("tls: handshake with client failed")
        # SECLEVEL=0: the client itself would refuse these versions otherwise
        rc, out = s_client("-connect", f"127.0.0.1:{gw.tls}", "-servername", "a.test", flag,
                           "-cipher", "DEFAULT:@SECLEVEL=0")
        assert rc != 0, out
        assert not re.search(r"^New, TLSv1", out, re.M), out
        wait_log_count(gw, "tls: handshake with client failed", before)
        assert_serves(gw, pki)
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        ctx = client_ctx(pki, min_v=version, max_v=version, ciphers="DEFAULT:@SECLEVEL=0")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            peer_der(gw.tls, "a.test", pki, ctx)
    assert_serves(gw, pki)


def test_min_version_13_refuses_12(gw, pki):
    before = gw.logs().count("tls: handshake with client failed")
    rc, out = s_client("-connect", f"127.0.0.1:{gw.tls13}", "-servername", "a.test", "-tls1_2")
    assert rc != 0, out
    wait_log_count(gw, "tls: handshake with client failed", before)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        peer_der(gw.tls13, "a.test", pki, client_ctx(pki, max_v=ssl.TLSVersion.TLSv1_2))
    _, version, _ = peer_der(gw.tls13, "a.test", pki)
    assert version == "TLSv1.3"
    r, body, _ = https_get(gw.tls13, "/api/v13", pki)
    assert r.status == 200, body
    # the main port takes both
    _, version, _ = peer_der(gw.tls, "a.test", pki, client_ctx(pki, max_v=ssl.TLSVersion.TLSv1_2))
    assert version == "TLSv1.2"


def test_non_forward_secret_and_cbc_suites_refused(gw, pki):
    for suite in ("AES128-GCM-SHA256", "AES256-SHA", "ECDHE-ECDSA-AES128-SHA"):
        ctx = client_ctx(pki, max_v=ssl.TLSVersion.TLSv1_2, ciphers=suite + ":@SECLEVEL=0")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            peer_der(gw.tls, "a.test", pki, ctx)
    assert_serves(gw, pki)


def test_key_exchange_groups_are_x25519_p256_p384(gw, pki):
    # TLS 1.2 also needs the certificate's own curve (P-256) among the client's groups
    for version, group in (("-tls1_3", "X25519"), ("-tls1_3", "P-256"), ("-tls1_3", "P-384"),
                           ("-tls1_2", "X25519:P-256"), ("-tls1_2", "P-256"),
                           ("-tls1_2", "P-384:P-256")):
        rc, out = s_client("-connect", f"127.0.0.1:{gw.tls}", "-servername", "a.test", version,
                           "-groups", group, "-CAfile", pki.path("ca.pem"))
        assert rc == 0 and re.search(r"^New, TLSv1\.[23]", out, re.M), f"{group} {version}: {out}"
        assert re.search(r"^Server Temp Key: (X25519|ECDH, (prime256v1|secp384r1|P-256|P-384))",
                         out, re.M), out
    for group in ("P-521", "brainpoolP256r1", "ffdhe2048"):
        rc, out = s_client("-connect", f"127.0.0.1:{gw.tls}", "-servername", "a.test", "-tls1_3",
                           "-groups", group)
        assert not re.search(r"^New, TLSv1", out, re.M), f"{group}: {out}"
    assert_serves(gw, pki)


# ---- resumption -----------------------------------------------------------------------------------

def test_tls12_resumption_with_s_client(gw, pki):
    common = ("-connect", f"127.0.0.1:{gw.tls}", "-servername", "a.test", "-CAfile",
              pki.path("ca.pem"), "-tls1_2", "-reconnect")
    for extra in ((), ("-no_ticket",)):  # a session ticket, then the server's session cache
        rc, out = s_client(*common, *extra)
        assert rc == 0, out
        assert out.count("New, TLSv1.2") == 1, out
        assert out.count("Reused, TLSv1.2") == 5, f"{extra}: {out}"


REQUEST = b"GET /api/resume HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


def test_tls13_resumption_with_s_client(gw, pki, tmp_path):
    sess = str(tmp_path / "sess.pem")
    common = ("-connect", f"127.0.0.1:{gw.tls}", "-servername", "a.test", "-CAfile",
              pki.path("ca.pem"), "-tls1_3", "-ign_eof")
    # -ign_eof: s_client reads until the gateway closes (Connection: close), so it has read the
    # NewSessionTicket that comes with the answer
    rc, out = s_client(*common, "-sess_out", sess, stdin=REQUEST)
    assert rc == 0, out
    assert "New, TLSv1.3" in out and "HTTP/1.1 200 OK" in out, out
    assert os.path.getsize(sess) > 0
    for _ in range(3):
        rc, out = s_client(*common, "-sess_in", sess, stdin=REQUEST)
        assert rc == 0, out
        assert "Reused, TLSv1.3" in out, out
        assert "HTTP/1.1 200 OK" in out, out


def worker_of(gw, path):
    """The worker that served `path` (from the access log)."""
    def find():
        for rec in gw.access_records():
            if rec.get("path") == path:
                return rec
        return None
    return wait_for(find, 10, f"access record of {path}")["worker"]


@pytest.mark.parametrize("version,no_ticket", [(ssl.TLSVersion.TLSv1_2, False),
                                               (ssl.TLSVersion.TLSv1_2, True),
                                               (ssl.TLSVersion.TLSv1_3, False)],
                         ids=["tls12-ticket", "tls12-session-id", "tls13-ticket"])
def test_resumption_across_workers(gw, pki, version, no_ticket):
    ctx = client_ctx(pki, min_v=version, max_v=version, no_ticket=no_ticket)
    tag = f"{version.name}-{no_ticket}-{time.time_ns()}"
    first = HTTPSTo(gw.tls, "a.test", ctx)
    r, _ = first.get(f"/api/first-{tag}")
    assert r.status == 200
    session = first.sock.session
    assert not first.sock.session_reused
    first.close()
    workers, reused = {worker_of(gw, f"/api/first-{tag}")}, []
    for i in range(40):  # until both workers have resumed at least one (bounded)
        c = HTTPSTo(gw.tls, "a.test", ctx, session=session)
        path = f"/api/resumed-{tag}-{i}"
        r, _ = c.get(path)
        assert r.status == 200
        reused.append(c.sock.session_reused)
        c.close()
        w = worker_of(gw, path)
        workers.add(w)
        if len(workers) == 2 and i >= 5:
            break
    assert all(reused), f"resumed: {reused}"
    assert workers == {0, 1}


# ---- mTLS ------------------------------------------------------------------------------------------

def mtls_attempt(gw, pki, cert, version):
    """("ok", status, body) or ("refused", error) for a request to the mTLS port."""
    ctx = client_ctx(pki, cert=cert, min_v=version, max_v=version)
    c = HTTPSTo(gw.mtls, "a.test", ctx)
    try:
        r, body = c.get("/api/mtls")
        return "ok", r.status, body
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as e:
        # TLS 1.3: the client's handshake is done before the server checks its certificate, so
        # the refusal arrives as an alert (or a close) on the first read
        return "refused", repr(e)
    finally:
        c.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls12", "tls13"])
def test_mtls(gw, pki, version):
    res = mtls_attempt(gw, pki, "client", version)
    assert res[:2] == ("ok", 200), res
    for cert in (None, "stranger"):
        before = gw.logs().count("tls: handshake with client failed")
        res = mtls_attempt(gw, pki, cert, version)
        assert res[0] == "refused", f"client cert {cert}: {res}"
        wait_log_count(gw, "tls: handshake with client failed", before)
    res = mtls_attempt(gw, pki, "client", version)
    assert res[:2] == ("ok", 200), res
    assert_serves(gw, pki)


def test_mtls_with_s_client(gw, pki):
    common = ("-connect", f"127.0.0.1:{gw.mtls}", "-servername", "a.test", "-tls1_2")
    rc, out = s_client(*common, "-cert", pki.path("client.pem"), "-key", pki.path("client.key"),
                       "-ign_eof", stdin=REQUEST)
    assert rc == 0 and "HTTP/1.1 200 OK" in out, out
    rc, out = s_client(*common)
    assert rc != 0, out


# ---- TLS to the upstream -------------------------------------------------------------------------

def get_plain(gw, path):
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=20)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r, r.read()
    finally:
        c.close()


def test_upstream_tls_verified(gw, pki):
    for i in range(3):
        r, body = get_plain(gw, f"/secure/hello-{i}")
        assert r.status == 200, body
        echo = json.loads(body)
        assert echo["server"] == "tls-up"
        assert echo["request"] == f"GET /hello-{i} HTTP/1.1"
    handshakes = gw.tls_ups["secure"].handshakes
    c = HTTPSTo(gw.tls, "a.test", client_ctx(pki))  # one keep-alive client: one worker
    for i in range(5):
        r, body = c.get(f"/secure/kept-{i}")
        assert r.status == 200, body
    c.close()
    # the upstream's TLS connections are kept alive and reused, not one handshake per request
    assert gw.tls_ups["secure"].handshakes - handshakes <= 1
    r, body, _ = https_get(gw.tls, "/secure/through-tls", pki)  # TLS on both legs
    assert r.status == 200 and json.loads(body)["server"] == "tls-up", body
    assert set(gw.tls_ups["secure"].snis) == {"up.test"}  # the configured name is sent
    assert gw.tls_ups["secure"].failures == []


def test_large_bodies_through_a_tls_upstream(gw, pki):
    body = os.urandom(700 * 1024)
    c = HTTPSTo(gw.tls, "a.test", client_ctx(pki))  # TLS on both legs
    c.request("POST", "/secure/upload", body=body)
    r = c.getresponse()
    echo = json.loads(r.read())
    assert r.status == 200, echo
    assert echo["body_bytes"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    r, data = c.get("/secure/big/1000000")  # the same connection
    assert r.status == 200 and len(data) == 1000000
    assert data == (b"abcdefghijklmnopqrstuvwxyz" * 38462)[:1000000]
    c.close()


def test_stop_with_pooled_tls_upstream_connections_is_clean(pki, tmp_path):
    """SIGTERM while a kept-alive TLS connection to an upstream is in the pool: exit 0, and
    nothing leaked (the ASan build reports leaks in the log)."""
    tls_up = TlsUpstream(pki)
    port = free_port()
    cfg = (f"workers: 2\naccess_log: off\ndrain_timeout: 5s\n"
           f"upstreams:\n  secure:\n    targets: ['{tls_up.addr}']\n    keepalive: 4\n"
           f"    tls: {{verify: true, ca: '{pki.path('ca.pem')}', sni: up.test}}\n"
           f"frontends:\n  - name: public\n    listen: ['127.0.0.1:{port}']\n    routes:\n"
           f"      - name: secure\n        match: {{ path_prefix: /secure }}\n"
           f"        upstream: secure\n")
    gw = Gateway(str(tmp_path), cfg, port)
    try:
        for i in range(3):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            c.request("GET", f"/secure/{i}")
            r = c.getresponse()
            assert r.status == 200, r.read()
            r.read()
            c.close()
        assert tls_up.handshakes >= 1
    finally:
        code = gw.stop()
        tls_up.stop()
    logs = gw.logs()
    assert code == 0, logs[-3000:]
    assert "LeakSanitizer" not in logs and "AddressSanitizer" not in logs, logs[-6000:]


@pytest.mark.parametrize("route", ["wrongca", "wrongsni"])
def test_upstream_tls_verify_failure_is_502(gw, pki, route):
    before = gw.logs().count("tls: handshake with upstream failed")
    r, body = get_plain(gw, f"/{route}/x")
    assert r.status == 502, body
    assert json.loads(body)["error"]["reason"] == "upstream_tls_failed"
    wait_log_count(gw, "tls: handshake with upstream failed", before)
    recs = wait_for(lambda: [x for x in gw.access_records() if x.get("path") == f"/{route}/x"], 10,
                    "access record")
    assert recs[-1]["status"] == 502 and recs[-1]["reason"] == "upstream_tls_failed"
    if route == "wrongsni":
        assert set(gw.tls_ups[route].snis) == {"wrong.test"}
    r, body = get_plain(gw, "/secure/after")  # the good upstream is unaffected
    assert r.status == 200, body


# ---- broken clients ------------------------------------------------------------------------------

def test_garbage_is_closed_and_logged(gw, pki):
    before = gw.logs().count("tls: ")
    with socket.create_connection(("127.0.0.1", gw.tls), timeout=10) as s:
        s.sendall(b"\x00\x01\x02garbage that is not TLS\xff" * 8)
        recv_until_closed(s)
    wait_log_count(gw, "tls: ", before)
    assert "tls: not a TLS handshake from the client (first byte 0x00): closing" in gw.logs()
    assert_serves(gw, pki)


def test_malformed_client_hellos_are_closed_and_logged(gw, pki):
    hello = client_hello()
    cases = {
        # a handshake record of plausible length whose content is not a ClientHello
        "bad body": b"\x16\x03\x01\x00\x40" + b"\x01\x00\x00\x3c" + b"\xee" * 60,
        # a record longer than a ClientHello may be
        "huge record": b"\x16\x03\x01\xff\xff" + b"\x00" * 64,
        # an SSLv2-style hello
        "sslv2 hello": b"\x80\x2e\x01\x03\x01" + b"\x00" * 41,
        # a real ClientHello in a record that claims to be application data
        "not a handshake record": b"\x17" + hello[1:],
    }
    for name, data in cases.items():
        before = gw.logs().count("tls: ")
        with socket.create_connection(("127.0.0.1", gw.tls), timeout=10) as s:
            s.sendall(data)
            recv_until_closed(s)
        wait_log_count(gw, "tls: ", before)
        assert_serves(gw, pki)


def test_truncated_client_hello_then_close(gw, pki):
    hello = client_hello()
    before = gw.logs().count("tls: ")
    with socket.create_connection(("127.0.0.1", gw.tls), timeout=10) as s:
        s.sendall(hello[:20])
        s.shutdown(socket.SHUT_WR)
        recv_until_closed(s)
    assert_serves(gw, pki)
    wait_log_count(gw, "tls: ", before)


def test_silent_client_closed_after_handshake_timeout(gw, pki):
    for data in (b"", client_hello()[:20]):  # nothing at all; a ClientHello that stops midway
        before = gw.logs().count("tls: handshake not done within handshake_timeout")
        with socket.create_connection(("127.0.0.1", gw.quick), timeout=10) as s:
            s.sendall(data)
            assert recv_until_closed(s, timeout=10) == b""
        wait_log_count(gw, "tls: handshake not done within handshake_timeout", before)
        r, body, _ = https_get(gw.quick, "/api/quick", pki)
        assert r.status == 200, body
        assert_serves(gw, pki)


def test_plaintext_http_on_tls_port(gw, pki):
    with socket.create_connection(("127.0.0.1", gw.tls), timeout=10) as s:
        s.sendall(b"GET /api/users/1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        out = recv_until_closed(s)
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 "), out
    assert b"\r\nConnection: close" in head, out
    assert b"Strict-Transport-Security" not in head
    assert json.loads(body)["error"]["reason"] == "http_on_tls_port"
    assert "tls: plaintext HTTP on a TLS port" in gw.logs()
    assert_serves(gw, pki)


# ---- load ----------------------------------------------------------------------------------------

def test_100_concurrent_keepalive_clients(gw, pki):
    ctx = client_ctx(pki)
    results, lock = [], threading.Lock()
    start = threading.Barrier(100, timeout=30)

    def client(n):
        got = []
        c = HTTPSTo(gw.tls, "a.test" if n % 2 else "b.test", ctx, timeout=30)
        try:
            start.wait()
            for i in range(5):
                r, body = c.get(f"/api/c{n}/{i}")
                ok = r.status == 200 and json.loads(body)["path"] == f"/api/c{n}/{i}"
                got.append("ok" if ok else f"client {n} request {i}: {r.status} {body[:200]!r}")
        except Exception as e:  # a reset, an early close, a timeout
            got.append(repr(e))
        finally:
            c.close()
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    failures = [r for r in results if r != "ok"]
    assert not failures and len(results) == 500, failures[:10]


# ---- metrics -------------------------------------------------------------------------------------

def test_handshake_metrics(gw, pki):
    before = handshake_counts(gw)
    ctx = client_ctx(pki, max_v=ssl.TLSVersion.TLSv1_2)
    c = HTTPSTo(gw.tls, "a.test", ctx)
    assert c.get("/api/m1")[0].status == 200
    session = c.sock.session
    c.close()
    c = HTTPSTo(gw.tls, "a.test", ctx, session=session)
    assert c.get("/api/m2")[0].status == 200
    assert c.sock.session_reused
    c.close()
    with socket.create_connection(("127.0.0.1", gw.tls), timeout=10) as s:
        s.sendall(b"\x00garbage\x00" * 4)
        recv_until_closed(s)

    def grew():
        now = handshake_counts(gw)
        return all(now[k] > before[k] for k in ("full", "resumed", "failed")) and now
    now = wait_for(grew, 10, f"handshake counters to grow from {before}")
    assert now["full"] > 0 and now["resumed"] > 0 and now["failed"] > 0


# ---- reload --------------------------------------------------------------------------------------

def reload_config(pki, port, cert):
    return (f"workers: 2\naccess_log: off\ndrain_timeout: 5s\n"
            f"admin:\n  listen: 127.0.0.1:{reload_config.admin}\n  token: {TOKEN}\n"
            f"upstreams:\n  plain:\n    targets: ['{reload_config.up}']\n"
            f"frontends:\n  - name: public\n    listen:\n"
            f"      - address: '127.0.0.1:{port}'\n        tls:\n"
            f"          certs: {certs_yaml(pki, [cert])}\n"
            f"    routes:\n      - name: api\n        match: {{ path_prefix: /api }}\n"
            f"        upstream: plain\n")


def write_atomically(path, data, mode="w"):
    tmp = path + ".new"
    with open(tmp, mode) as f:
        f.write(data)
    os.replace(tmp, path)


@pytest.fixture()
def reload_gw(pki, tmp_path):
    up = Upstream("u1")
    reload_config.up = up.addr
    reload_config.admin = free_port()
    pki.issue("a1", "/CN=a.test", dns=("a.test",))
    port = free_port()
    try:
        gw = Gateway(str(tmp_path), reload_config(pki, port, "a1"), port)
        wait_port(reload_config.admin, gw.proc)
    except Exception:
        up.stop()
        raise
    gw.admin_port = reload_config.admin
    yield gw
    code = gw.stop()
    up.stop()
    logs = gw.logs()
    assert code == 0, logs[-3000:]
    assert "AddressSanitizer" not in logs and "LeakSanitizer" not in logs, logs[-8000:]


def trigger_reload(gw, how):
    if how == "sighup":
        gw.proc.send_signal(signal.SIGHUP)
        return
    c = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=30)
    c.request("POST", "/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200, body


@pytest.mark.parametrize("how", ["sighup", "admin"])
def test_reload_serves_new_certificate_and_keeps_connections(reload_gw, pki, how):
    gw = reload_gw
    old = HTTPSTo(gw.port, "a.test", client_ctx(pki))
    r, _ = old.get("/api/before")
    assert r.status == 200
    assert old.sock.getpeercert(binary_form=True) == pki.der("a1")

    pki.issue("a2", "/CN=a.test", dns=("a.test",))  # a new key, the same CA
    write_atomically(gw.config, reload_config(pki, gw.port, "a2"))
    trigger_reload(gw, how)
    wait_log_count(gw, "reload: configuration generation 2", 0)

    r, _ = old.get("/api/after")  # the connection from before still answers
    assert r.status == 200
    old.close()
    der, _, _ = peer_der(gw.port, "a.test", pki)
    assert der == pki.der("a2"), "a new connection does not get the new certificate"
    c = HTTPSTo(gw.port, "a.test", client_ctx(pki))
    assert c.get("/api/new")[0].status == 200
    c.close()


def test_reload_rereads_certificate_files_renewed_in_place(reload_gw, pki):
    """The operator's renewal: the same paths, new contents, SIGHUP."""
    gw = reload_gw
    old = HTTPSTo(gw.port, "a.test", client_ctx(pki))
    assert old.get("/api/before")[0].status == 200
    pki.issue("a1-renewed", "/CN=a.test", dns=("a.test",))
    for ext in (".key", ".pem"):
        with open(pki.path("a1-renewed" + ext)) as f:
            write_atomically(pki.path("a1" + ext), f.read())
    gw.proc.send_signal(signal.SIGHUP)
    wait_log_count(gw, "reload: configuration generation 2", 0)
    assert old.get("/api/after")[0].status == 200
    old.close()
    der, _, _ = peer_der(gw.port, "a.test", pki)
    assert der == pki.der("a1-renewed"), "renewed files at the same path were not reloaded"


# ---- certificate errors in the configuration -----------------------------------------------------

def check(path):
    r = subprocess.run([RINGWAY, "check", "-c", path], capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def check_config(pki, cert, key):
    return (f"workers: 1\nupstreams:\n  plain:\n    targets: ['127.0.0.1:9']\n"
            f"frontends:\n  - name: public\n    listen:\n"
            f"      - address: '127.0.0.1:{free_port()}'\n        tls:\n"
            f"          certs:\n"
            f"            - {{cert: '{pki.path('a.pem')}', key: '{pki.path('a.key')}'}}\n"
            f"            - cert: '{cert}'\n"
            f"              key: '{key}'\n"
            f"    routes:\n      - name: api\n        match: {{ path_prefix: /api }}\n"
            f"        upstream: plain\n")


def test_reload_with_a_bad_certificate_keeps_the_running_one(reload_gw, pki, tmp_path):
    gw = reload_gw
    missing = str(tmp_path / "gone.pem")
    text = reload_config(pki, gw.port, "a1").replace(pki.path("a1.pem"), missing)
    write_atomically(gw.config, text)
    gw.proc.send_signal(signal.SIGHUP)
    wait_log_count(gw, "reload refused: ", 1)
    assert missing in gw.logs()
    assert "configuration generation 2" not in gw.logs()
    der, _, _ = peer_der(gw.port, "a.test", pki)
    assert der == pki.der("a1")
    r, body, _ = https_get(gw.port, "/api/still", pki)
    assert r.status == 200, body


def test_tickets_still_resume_after_a_reload(reload_gw, pki):
    """A reload does not make every client do a full handshake again: the ticket keys stay."""
    gw = reload_gw
    sessions = {}
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_ctx(pki, min_v=v, max_v=v)
        c = HTTPSTo(gw.port, "a.test", ctx)
        assert c.get("/api/first")[0].status == 200
        sessions[v] = (ctx, c.sock.session)
        c.close()
    write_atomically(gw.config, reload_config(pki, gw.port, "a1") + "# touched\n")
    gw.proc.send_signal(signal.SIGHUP)
    wait_log_count(gw, "reload: configuration generation 2", 0)
    for v, (ctx, sess) in sessions.items():
        c = HTTPSTo(gw.port, "a.test", ctx, session=sess)
        assert c.get("/api/again")[0].status == 200
        assert c.sock.session_reused, f"{v.name}: not resumed after the reload"
        c.close()


def test_check_reports_certificate_errors(pki, tmp_path):
    garbage = str(tmp_path / "garbage.pem")
    with open(garbage, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all !!!\n-----END CERTIFICATE-----\n")
    missing = str(tmp_path / "missing.pem")
    good_cfg = str(tmp_path / "good.yaml")
    with open(good_cfg, "w") as f:
        f.write(check_config(pki, pki.path("b.pem"), pki.path("b.key")))
    rc, out = check(good_cfg)
    assert rc == 0, out

    cases = [  # (cert, key, the file named, its line: 12 = the entry and its cert, 13 = its key)
        (missing, pki.path("b.key"), missing, (12,)),
        (pki.path("b.pem"), missing, missing, (13,)),
        (garbage, pki.path("b.key"), garbage, (12,)),
        (pki.path("b.pem"), garbage, garbage, (12, 13)),
        (pki.path("b.pem"), pki.path("a.key"), pki.path("a.key"), (12, 13)),  # not b's key
    ]
    for cert, key, named, lines in cases:
        cfg = str(tmp_path / "bad.yaml")
        with open(cfg, "w") as f:
            f.write(check_config(pki, cert, key))
        rc, out = check(cfg)
        assert rc == 1, f"{cert} {key}: {out}"
        m = re.search(rf"^{re.escape(cfg)}:(\d+):(\d+): (.*)$", out, re.M)
        assert m, out
        assert named in m.group(3), out
        assert int(m.group(1)) in lines, out
        assert "tls" in m.group(3) or "cannot read" in m.group(3), out


def test_check_refuses_tls_settings_it_cannot_honour(pki, tmp_path):
    missing = str(tmp_path / "no-ca.pem")
    base = (f"workers: 1\nupstreams:\n  plain:\n    targets: ['127.0.0.1:9']\n"
            f"    tls: {{verify: true, ca: '{pki.path('ca.pem')}'}}\n"
            f"frontends:\n  - name: public\n    listen:\n"
            f"      - address: '127.0.0.1:{free_port()}'\n        tls:\n"
            f"          certs: {certs_yaml(pki, ['a'])}\n"
            f"          min_version: \"1.2\"\n"
            f"          alpn: [http/1.1]\n"
            f"    routes:\n      - name: api\n        match: {{ path_prefix: /api }}\n"
            f"        upstream: plain\n")
    cfg = str(tmp_path / "c.yaml")
    with open(cfg, "w") as f:
        f.write(base)
    rc, out = check(cfg)
    assert rc == 0, out
    cases = [  # (replace, by, a word of the message)
        ('min_version: "1.2"', 'min_version: "1.1"', "1.1"),
        ("alpn: [http/1.1]", "alpn: [h2, http/1.1]", "h2"),
        ("alpn: [http/1.1]", f"client_ca: '{missing}'", missing),
        (f"ca: '{pki.path('ca.pem')}'", f"ca: '{missing}'", missing),
    ]
    for old, new, word in cases:
        assert old in base
        text = base.replace(old, new)
        line = 1 + next(i for i, x in enumerate(text.splitlines()) if new in x)
        with open(cfg, "w") as f:
            f.write(text)
        rc, out = check(cfg)
        assert rc == 1, f"{new}: {out}"
        m = re.search(rf"^{re.escape(cfg)}:(\d+):(\d+): (.*)$", out, re.M)
        assert m and int(m.group(1)) == line and word in m.group(3), f"{new}: {out}"
