"""Network namespaces for the XDP end-to-end tests (test_xdp.py): two namespaces joined by a veth
pair, both ends inside them (nothing is added to the root namespace), processes started in them
with `nsenter --net=` (which keeps /sys/fs/bpf visible, unlike `ip netns exec`), sockets opened
in them from the test process, and raw Ethernet frames (TCP SYN floods) built here.

Addresses are from the documentation ranges only: 198.51.100.0/24 and 2001:db8::/32."""
import ctypes
import ipaddress
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
_libc = ctypes.CDLL(None, use_errno=True)


def skip_or_fail_in_ci(why):
    """The one place that decides what happens when a test cannot run here: skip saying why, or
    fail when CI=true (a CI run that silently skips the XDP tests would pass without testing
    anything)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, cannot run: {why}", pytrace=False)
    pytest.skip(why)


def require_root():
    if os.geteuid() != 0:
        skip_or_fail_in_ci("needs root: creates network namespaces and veth links, loads and "
                           "attaches an XDP program and pins its maps in /sys/fs/bpf")


def run(cmd, check=True, timeout=30, **kw):
    """subprocess.run with text output and a bound on time; raises with the output on failure."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r


class Namespace:
    """A network namespace made by `ip netns add` (a unique name per run); delete() removes it,
    and with it the veth end inside."""

    def __init__(self, name):
        self.name = name
        self.path = os.path.join(NETNS_DIR, name)
        run(["ip", "netns", "add", name])

    def cmd(self, *args):
        return ["nsenter", f"--net={self.path}", *args]

    def run(self, *args, check=True, timeout=30):
        return run(self.cmd(*args), check=check, timeout=timeout)

    def popen(self, *args, **kw):
        """A process inside the namespace; nsenter execs it, so the pid is the program's own."""
        return subprocess.Popen(self.cmd(*args), **kw)

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0):
        """A socket that lives in this namespace: made by a short-lived thread that setns()es
        (a network namespace is per thread), so the test process itself stays where it is."""
        out = {}

        def make():
            try:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        e = ctypes.get_errno()
                        raise OSError(e, f"setns {self.path}: {os.strerror(e)}")
                finally:
                    os.close(fd)
                out["sock"] = socket.socket(family, type, proto)
            except BaseException as e:  # handed to the caller
                out["error"] = e

        t = threading.Thread(target=make)
        t.start()
        t.join(10)
        if "error" in out:
            raise out["error"]
        return out["sock"]

    def link(self, dev):
        return json.loads(self.run("ip", "-j", "-s", "link", "show", "dev", dev).stdout)[0]

    def delete(self):
        run(["ip", "netns", "del", self.name], check=False)


class VethPair:
    """gw (198.51.100.1, 2001:db8::1) in one namespace, the client end in the other with the
    given source addresses. Both ends are created directly in their namespaces."""

    def __init__(self, tag, client_v4, client_v6):
        self.gw_ns = self.client_ns = None
        try:
            self.gw_ns = Namespace(f"rwt-{tag}-gw")
            self.client_ns = Namespace(f"rwt-{tag}-cl")
            self.gw_dev, self.client_dev = f"rwg{tag}", f"rwc{tag}"
            run(["ip", "link", "add", self.gw_dev, "netns", self.gw_ns.name, "type", "veth",
                 "peer", "name", self.client_dev, "netns", self.client_ns.name])
            g, c = self.gw_ns, self.client_ns
            g.run("ip", "link", "set", "lo", "up")
            g.run("ip", "addr", "add", "198.51.100.1/24", "dev", self.gw_dev)
            g.run("ip", "addr", "add", "2001:db8::1/64", "dev", self.gw_dev, "nodad")
            g.run("ip", "link", "set", self.gw_dev, "up")
            for a in client_v4:
                c.run("ip", "addr", "add", f"{a}/24", "dev", self.client_dev)
            for a in client_v6:
                c.run("ip", "addr", "add", f"{a}/64", "dev", self.client_dev, "nodad")
            c.run("ip", "link", "set", self.client_dev, "up")
            self.gw_mac = g.link(self.gw_dev)["address"]
            self.client_mac = c.link(self.client_dev)["address"]
        except BaseException:
            self.delete()
            raise

    def client_tx_dropped(self):
        """Frames the client end could not hand to the gateway end (its receive ring full):
        they never reached the XDP program."""
        return self.client_ns.link(self.client_dev)["stats64"]["tx"]["dropped"]

    def delete(self):
        for ns in (self.gw_ns, self.client_ns):
            if ns:
                ns.delete()


def stop_process(proc, timeout=15):
    """SIGTERM to this process (by its pid), then SIGKILL if it does not exit; returns the code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def wait_listening(ns, addrs, proc, timeout=15.0):
    """Waits until every (host, port) accepts a connection made inside ns (over its own lo, so
    the XDP program on the veth never sees these probes)."""
    deadline = time.monotonic() + timeout
    for host, port in addrs:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode}")
            s = ns.socket(family)
            s.settimeout(0.5)
            try:
                s.connect((host, port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{host}:{port} not listening after {timeout}s")
                time.sleep(0.02)
            finally:
                s.close()


def _connect(ns, src, dst, port, timeout):
    """A TCP socket in ns, bound to src, connected to dst:port (timeout for each operation)."""
    s = ns.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET)
    try:
        s.settimeout(timeout)
        s.bind((src, 0))
        s.connect((dst, port))
        return s
    except BaseException:
        s.close()
        raise


def http_get(ns, src, dst, port, path="/", timeout=5.0):
    """One request on a new connection from src (bound) to dst:port inside ns. Returns
    (status, body); raises OSError (socket.timeout) when the connection cannot be made."""
    s = _connect(ns, src, dst, port, timeout)
    try:
        host = f"[{dst}]" if ":" in dst else dst
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def connects(ns, src, dst, port, timeout):
    """Whether a TCP connection from src to dst:port is accepted within timeout (shorter than
    the 1 s SYN retransmission timeout, so an attempt is exactly one SYN)."""
    try:
        _connect(ns, src, dst, port, timeout).close()
        return True
    except socket.timeout:
        return False


# ---------------------------------------------------------------------------------------------
# Raw frames


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _mac(text):
    return bytes.fromhex(text.replace(":", ""))


def syn_frame(src_mac, dst_mac, src, dst, sport, dport, seq=1):
    """An Ethernet frame carrying a TCP SYN from src:sport to dst:dport (IPv4 or IPv6), with
    correct IP and TCP checksums."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), sport, 0, 64,
                         socket.IPPROTO_TCP, 0, s.packed, d.packed)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        ethertype = 0x0800
    else:
        pseudo = s.packed + d.packed + struct.pack("!I3xB", len(tcp), socket.IPPROTO_TCP)
        tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), socket.IPPROTO_TCP, 64, s.packed,
                         d.packed)
        ethertype = 0x86DD
    return _mac(dst_mac) + _mac(src_mac) + struct.pack("!H", ethertype) + ip + tcp


def send_frames(ns, dev, frames, max_seconds=10.0):
    """Sends the frames out of dev (inside ns) through an AF_PACKET socket, as fast as it goes,
    each at most once, stopping at max_seconds. Returns how many the kernel took."""
    s = ns.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: send only, never receive
    sent = 0
    try:
        s.bind((dev, 0))
        deadline = time.monotonic() + max_seconds
        for f in frames:
            if time.monotonic() > deadline:
                break
            try:
                s.send(f)
                sent += 1
            except OSError:  # e.g. ENOBUFS: not sent, not counted
                pass
    finally:
        s.close()
    return sent


# ---------------------------------------------------------------------------------------------
# The limiter's pinned maps, as operators read them


def addr_text(addr_bytes):
    """The 16-byte source key as text: IPv4 for ::ffff:a.b.c.d, else IPv6."""
    a = ipaddress.IPv6Address(bytes(addr_bytes))
    return str(a.ipv4_mapped) if a.ipv4_mapped else str(a)


def bpftool_sources(pin_dir):
    """`bpftool -j map dump pinned DIR/sources` as {address text: value dict (BTF names)}."""
    out = run(["bpftool", "-j", "map", "dump", "pinned", os.path.join(pin_dir, "sources")]).stdout
    rows = {}
    for e in json.loads(out):
        f = e.get("formatted", e)
        rows[addr_text(f["key"]["addr"])] = f["value"]
    return rows


def remove_pins(pin_root):
    """Removes the test's own pin directory (never anything else under /sys/fs/bpf)."""
    assert os.path.basename(pin_root).startswith("ringway-test-"), pin_root
    if os.path.lexists(pin_root):
        shutil.rmtree(pin_root)
