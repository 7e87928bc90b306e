"""The command line (check, --help, --version) and the process life: graceful drain on SIGTERM."""
import os
import socket
import subprocess
import threading
import time

from conftest import RINGWAY, ROOT, Gateway, Upstream, free_port, make_config


def run(*args):
    return subprocess.run([RINGWAY, *args], capture_output=True, text=True, timeout=30)


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "ringway run -c FILE" in r.stdout
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("ringway ")
    r = run("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_check_accepts_the_shipped_configs():
    for name in ("config/ringway.yaml",):
        r = run("check", "-c", os.path.join(ROOT, name))
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_check_reports_file_line_column(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "workers: 2\n"
        "limits:\n  header_timeout: 10parsecs\n"
        "upstreams:\n  users:\n    targets: ['127.0.0.1:9101']\n"
        "frontends:\n  - name: public\n    listen: ['127.0.0.1:8080']\n    routes:\n"
        "      - name: r1\n        match: { path_prefix: /a }\n        upstream: nobody\n"
        "      - name: r1\n        match: { path_prefix: /b }\n        upstream: users\n        colour: blue\n")
    r = run("check", "-c", str(cfg))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert any(l.startswith(f"{cfg}:3:19: ") and "duration" in l for l in lines), lines
    assert any(l.startswith(f"{cfg}:13:19: ") and "unknown upstream 'nobody'" in l for l in lines), lines
    assert any(l.startswith(f"{cfg}:14:15: ") and "duplicate route name" in l for l in lines), lines
    assert any(l.startswith(f"{cfg}:17:9: ") and "colour" in l for l in lines), lines


def test_check_missing_file():
    r = run("check", "-c", "/nonexistent/ringway.yaml")
    assert r.returncode == 1 and "/nonexistent/ringway.yaml" in r.stderr


def test_sigterm_drains_in_flight_requests(tmp_path):
    up = Upstream("drain")
    try:
        port = free_port()
        routes = "      - name: all\n        match: { path_prefix: / }\n        upstream: u\n"
        gw = Gateway(str(tmp_path), make_config(port, [("u", [up.addr], "10s")], routes), port)
        result = {}

        def slow_request():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET /delay/1500 HTTP/1.1\r\nHost: t\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                result["data"] = data

        t = threading.Thread(target=slow_request)
        t.start()
        time.sleep(0.5)  # the request is at the upstream now
        gw.proc.terminate()
        time.sleep(0.3)
        # no new connections once draining
        refused = False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            refused = True
        t.join(10)
        code = gw.stop()
        assert code == 0, gw.logs()
        assert result["data"].startswith(b"HTTP/1.1 200"), result
        assert b"connection: close" in result["data"].lower()
        assert refused
    finally:
        up.stop()


def test_sigterm_does_not_wait_for_idle_connections(tmp_path):
    """Connections with no request in progress are closed at once; the drain_timeout (30 s here)
    is only for requests in flight."""
    up = Upstream("idle-drain")
    try:
        port = free_port()
        routes = "      - name: all\n        match: { path_prefix: / }\n        upstream: u\n"
        cfg = make_config(port, [("u", [up.addr], "10s")], routes).replace("drain_timeout: 5s",
                                                                          "drain_timeout: 30s")
        gw = Gateway(str(tmp_path), cfg, port)
        fresh = socket.create_connection(("127.0.0.1", port))  # connected, never sent a byte
        used = socket.create_connection(("127.0.0.1", port))  # one request, then idle keep-alive
        used.sendall(b"GET /size/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert used.recv(4096).startswith(b"HTTP/1.1 200")
        start = time.time()
        gw.proc.terminate()
        gw.proc.wait(20)
        assert time.time() - start < 10
        assert gw.stop() == 0, gw.logs()
        fresh.close()
        used.close()
    finally:
        up.stop()
