"""Fixtures for ringway's integration tests: real upstream servers (build/upstream) and a real
gateway (build/ringway, or RINGWAY_BIN for the ASan build) on 127.0.0.1, each started per test
module on free ports and stopped by pid."""
import json
import os
import socket
import subprocess
import threading
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RINGWAY = os.path.join(ROOT, os.environ.get("RINGWAY_BIN", "build/ringway"))
UPSTREAM = os.path.join(ROOT, "build/upstream")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} not listening after {timeout}s")


class Upstream:
    def __init__(self, name, threads=1, extra=()):
        self.port = free_port()
        self.name = name
        self.proc = subprocess.Popen(
            [UPSTREAM, "--listen", f"127.0.0.1:{self.port}", "--name", name, "--threads", str(threads),
             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def stats(self, reset=False):
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            q = "?reset=1" if reset else ""
            s.sendall(f"GET /__stats{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data.split(b"\r\n\r\n", 1)[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ScriptedUpstream:
    """A misbehaving upstream on 127.0.0.1 that the test scripts: for each connection it reads one
    request head and runs script(conn, head), then closes the connection. It stops accepting after
    `lifetime` seconds at the latest."""

    def __init__(self, script, lifetime=300):
        self.script = script
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.deadline = time.time() + lifetime
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def _run(self):
        while not self.stop_ev.is_set() and time.time() < self.deadline:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(5)
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                d = c.recv(65536)
                if not d:
                    return
                head += d
            self.script(c, head)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        self.stop_ev.set()
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def drain(c, seconds):
    """Reads and drops what the peer sends on c for at most `seconds`, or until it closes."""
    end = time.time() + seconds
    c.settimeout(0.2)
    while time.time() < end:
        try:
            if not c.recv(65536):
                return
        except socket.timeout:
            continue


class Gateway:
    """build/ringway run -c <tmp>/ringway.yaml, stderr captured to a file for log assertions."""

    def __init__(self, tmpdir, config_text, port):
        self.port = port
        self.config = os.path.join(tmpdir, "ringway.yaml")
        self.log_path = os.path.join(tmpdir, "ringway.log")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([RINGWAY, "run", "-c", self.config], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_port(port, self.proc)

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def access_records(self):
        """The access-log records written so far (a line still being written is not one yet)."""
        text = self.logs()
        whole = text[:text.rfind("\n") + 1]
        return [json.loads(line) for line in whole.splitlines() if line.startswith("{")]

    def stop(self, sig_timeout=15):
        """SIGTERM, wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(sig_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def make_config(port, upstreams, routes, limits="", extra="", workers=2):
    ups = "\n".join(
        f"  {name}:\n    targets: [{', '.join(repr(t) for t in targets)}]\n"
        f"    keepalive: 16\n    connect_timeout: 1s\n    response_timeout: {rt}\n"
        for name, targets, rt in upstreams)
    return (f"workers: {workers}\naccess_log: stderr\ndrain_timeout: 5s\n{extra}"
            f"limits:\n  max_header_bytes: 8192\n  max_body_bytes: 2097152\n{limits}"
            f"upstreams:\n{ups}"
            f"frontends:\n  - name: public\n    listen: ['127.0.0.1:{port}']\n    routes:\n{routes}")


@pytest.fixture(scope="module")
def upstreams():
    ups = [Upstream("u1"), Upstream("u2"), Upstream("u3")]
    yield ups
    for u in ups:
        u.stop()


@pytest.fixture(scope="module")
def gateway(upstreams, tmp_path_factory):
    u1, u2, u3 = upstreams
    port = free_port()
    routes = (
        "      - name: users\n"
        "        match: { path_prefix: /api/users, methods: [GET, POST, PUT, DELETE, HEAD] }\n"
        "        upstream: users\n        strip_prefix: /api\n"
        "      - name: exact\n        match: { path_exact: /api/users/me }\n        upstream: orders\n"
        "      - name: orders\n        match: { path_prefix: /api/orders }\n        upstream: orders\n"
        "        strip_prefix: /api\n"
        "      - name: raw\n        match: { path_prefix: /raw }\n        upstream: orders\n"
        "        strip_prefix: /raw\n"
        "      - name: slow\n        match: { path_prefix: /slow }\n        upstream: slow\n"
        "        strip_prefix: /slow\n"
        "      - name: dead\n        match: { path_prefix: /dead }\n        upstream: dead\n"
        "      - name: hosted\n        match: { host: api.example.com, path_prefix: /api/users }\n"
        "        upstream: orders\n")
    dead_port = free_port()  # nothing listens there
    cfg = make_config(port, [("users", [u1.addr, u2.addr], "10s"), ("orders", [u3.addr], "10s"),
                             ("slow", [u3.addr], "1s"), ("dead", [f"127.0.0.1:{dead_port}"], "1s")],
                      routes, limits="  header_timeout: 2s\n  client_timeout: 2s\n")
    gw = Gateway(str(tmp_path_factory.mktemp("gw")), cfg, port)
    yield gw
    assert gw.stop() == 0, gw.logs()[-4000:]


def raw_request(port, data, read_timeout=5.0, shutdown=False):
    """Sends raw bytes, returns everything the gateway answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            pass
    return out


class Pki:
    """A throw-away test PKI made with the openssl CLI in `directory`: a CA ("ca"), certificates
    for servers and clients signed by it (or by another CA made with ca()). Every method returns
    paths; `path(name + ".pem")` / `path(name + ".key")` name what it wrote."""

    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def _openssl(self, *args):
        r = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"
        return r.stdout

    def _key(self, name, kind):
        key = self.path(name + ".key")
        if kind == "rsa":
            self._openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                          "-out", key)
        else:
            self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-out", key)
        return key

    def ca(self, name="ca", cn="ringway test CA"):
        """A self-signed CA: NAME.pem, NAME.key."""
        key = self._key(name, "ec")
        pem = self.path(name + ".pem")
        self._openssl("req", "-x509", "-new", "-key", key, "-out", pem, "-days", "30",
                      "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return pem, key

    def issue(self, name, subject, dns=(), kind="ec", ca="ca", client=False, key=None):
        """A leaf certificate NAME.pem (with key NAME.key, new unless `key` is given) for
        `subject` ("/CN=.../O=..."), DNS subject alternative names `dns`, signed by CA `ca`."""
        if key is None:
            key = self._key(name, kind)
        csr, pem, ext = (self.path(name + s) for s in (".csr", ".pem", ".ext"))
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n"
                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
            if dns:
                f.write("subjectAltName=" + ",".join(f"DNS:{d}" for d in dns) + "\n")
        self._openssl("req", "-new", "-key", key, "-out", csr, "-subj", subject)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.path(ca + ".pem"),
                      "-CAkey", self.path(ca + ".key"), "-CAcreateserial", "-out", pem,
                      "-days", "30", "-sha256", "-extfile", ext)
        return pem, key

    def der(self, name):
        """The DER bytes of NAME.pem (what a TLS peer presents)."""
        import ssl
        with open(self.path(name + ".pem")) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The standard test PKI: CA "ca" and "other-ca"; servers "a" (ECDSA P-256, a.test and
    *.a.test), "b" (RSA-2048, b.test), "up" (ECDSA, up.test); clients "client" (CN=client-1,
    O=ringway-tests, by ca) and "stranger" (same subject, by other-ca)."""
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.ca("ca", "ringway test CA")
    p.ca("other-ca", "ringway other CA")
    p.issue("a", "/CN=a.test", dns=("a.test", "*.a.test"), kind="ec")
    p.issue("b", "/CN=b.test", dns=("b.test",), kind="rsa")
    p.issue("up", "/CN=up.test", dns=("up.test",), kind="ec")
    p.issue("client", "/CN=client-1/O=ringway-tests", client=True)
    p.issue("stranger", "/CN=client-1/O=ringway-tests", client=True, ca="other-ca")
    return p


def ringway_check(tmp_path, text, name="c.yaml"):
    """`ringway check` on text written to tmp_path/name: (its path, the exit code, stdout+stderr)."""
    path = tmp_path / name
    path.write_text(text)
    r = subprocess.run([RINGWAY, "check", "-c", str(path)], capture_output=True, text=True,
                       timeout=30)
    return str(path), r.returncode, r.stdout + r.stderr


def position(text, marker):
    """LINE:COL (1-based) where marker starts in text (the first time)."""
    i = text.index(marker)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return f"{line}:{col}"


def load_perf_script(path, name):
    """A perf/ script (a Python file without .py) loaded as module name, for tests of its logic."""
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
