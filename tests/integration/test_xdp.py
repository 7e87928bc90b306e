"""The XDP early limiter end to end: a gateway in one network namespace with the limiter attached
to its veth end, clients (and raw SYN floods) in another namespace, and the pinned maps read the
way operators read them (`ringway limits`, `bpftool`). Needs root (see netns.require_root); the
namespaces, links and the pin directory /sys/fs/bpf/ringway-test-<pid> are this run's own and
are removed even when a test fails.

Rate bounds are derived from measured time, never asserted as timings: a source sending faster
than its rate passes at most burst + rate * (elapsed + 1) packets in `elapsed` seconds."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import RINGWAY, UPSTREAM
from netns import (VethPair, bpftool_sources, connects, http_get, remove_pins, require_root,
                   run, send_frames, skip_or_fail_in_ci, stop_process, syn_frame,
                   wait_listening)

TAG = str(os.getpid())
PIN_ROOT = f"/sys/fs/bpf/ringway-test-{TAG}"
PIN = f"{PIN_ROOT}/v1"
PORT = 8080        # the gateway's guarded port
UPORT = 9101       # the upstream, on 127.0.0.1 inside the gateway's namespace
GW4, GW6 = "198.51.100.1", "2001:db8::1"
FLOOD4, LEGIT4, DENIED4, LIMITED4 = ("198.51.100.2", "198.51.100.3", "198.51.100.4",
                                     "198.51.100.5")
FLOOD6, LEGIT6 = "2001:db8::2", "2001:db8::3"
RATE, BURST = 50, 20  # the default limit of every source without a policy, in these tests
FLOOD_FRAMES = 3000
LEGIT_REQUESTS = 10   # below BURST: a source making them never meets its limit


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def root():
    require_root()


@pytest.fixture(scope="module")
def net(root):
    """The two namespaces, the veth pair between them, the upstream inside the gateway's one."""
    remove_pins(PIN_ROOT)
    pair = VethPair(TAG, [FLOOD4, LEGIT4, DENIED4, LIMITED4], [FLOOD6, LEGIT6])
    up = None
    try:
        up = pair.gw_ns.popen(UPSTREAM, "--listen", f"127.0.0.1:{UPORT}", "--name", "u1",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(pair.gw_ns, [("127.0.0.1", UPORT)], up)
        yield pair
    finally:
        if up:
            stop_process(up)
        pair.delete()
        remove_pins(PIN_ROOT)


def xdp_section(net, **over):
    knobs = dict(interface=net.gw_dev, mode="native", limit="syn", ports=f"[{PORT}]",
                 rate=RATE, burst=BURST, pin_path=PIN)
    knobs.update(over)
    policies = knobs.pop("policies", None)
    text = "xdp:\n" + "".join(f"  {k}: {v}\n" for k, v in knobs.items())
    if policies:
        text += "  policies:\n" + "".join(f"    - {p}\n" for p in policies)
    return text


def gateway_config(xdp, listen=(f"{GW4}:{PORT}", f"[{GW6}]:{PORT}")):
    return ("workers: 2\naccess_log: off\ndrain_timeout: 5s\n"
            f"upstreams:\n  u:\n    targets: ['127.0.0.1:{UPORT}']\n    connect_timeout: 1s\n"
            f"frontends:\n  - name: public\n    listen: [{', '.join(repr(a) for a in listen)}]\n"
            "    routes:\n      - name: all\n        match: { path_prefix: / }\n"
            "        upstream: u\n" + xdp)


class NsGateway:
    """ringway run inside a namespace (nsenter execs it: the pid is the gateway's), its log in
    a file; started, then waited for until every listen address accepts."""

    def __init__(self, ns, directory, config_text, listen, prefix=(), wait=True):
        self.ns = ns
        self.config = os.path.join(directory, "ringway.yaml")
        self.log_path = os.path.join(directory, f"ringway-{time.monotonic_ns()}.log")
        with open(self.config, "w") as f:
            f.write(config_text)
        os.chmod(self.config, 0o644)
        with open(self.log_path, "wb") as log:
            self.proc = ns.popen(*prefix, RINGWAY, "run", "-c", self.config, stdout=log,
                                 stderr=subprocess.STDOUT)
        if wait:
            try:
                wait_listening(ns, listen, self.proc)
            except RuntimeError as e:
                stop_process(self.proc)
                raise RuntimeError(f"{e}\n{self.logs()}") from None

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        return stop_process(self.proc)


@pytest.fixture
def gateways(net, tmp_path):
    """Starts gateways in the gateway namespace (fresh pins for each test); stops them after."""
    remove_pins(PIN_ROOT)
    started = []

    def start(**xdp_knobs):
        text = gateway_config(xdp_section(net, **xdp_knobs))
        gw = NsGateway(net.gw_ns, str(tmp_path), text, [(GW4, PORT), (GW6, PORT)])
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
    remove_pins(PIN_ROOT)


# ---------------------------------------------------------------------------------------------
# Helpers


def limits(*args, pin=PIN):
    return run([RINGWAY, "limits", "--pin-path", pin, *args], check=False)


def limits_ok(*args):
    r = limits(*args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def top():
    """`ringway limits top 1000` as {source: (passed, dropped)}."""
    rows = {}
    lines = limits_ok("top", "1000").splitlines()
    assert lines[0].split() == ["source", "passed", "dropped", "last", "seen"], lines
    assert re.fullmatch(r"\(\d+ sources tracked\)", lines[-1]), lines
    for line in lines[1:-1]:
        addr, passed, dropped, _ago = line.split()
        rows[addr] = (int(passed), int(dropped))
    return rows


def stats():
    """`ringway limits stats` as {counter: value}."""
    out = {}
    for line in limits_ok("stats").splitlines():
        name, value = line.split()
        out[name] = int(value)
    return out


def show():
    return limits_ok("show")


def policies():
    """The policies `ringway limits show` lists: {prefix: "deny" | "allow" | "rate R/s burst B"}."""
    text = show()
    if "policies: none" in text:
        return {}
    lines = text.split("policies:\n", 1)[1].splitlines()
    return {l.split(None, 1)[0]: l.split(None, 1)[1].strip() for l in lines if l.strip()}


def flood_frames(net, src, dst, count):
    return [syn_frame(net.client_mac, net.gw_mac, src, dst, 10000 + i % 50000, PORT, seq=i + 1)
            for i in range(count)]


def flood_while_serving(net, frames, legit_src, dst):
    """Sends the flood from a thread in LEGIT_REQUESTS chunks while the legitimate source makes
    LEGIT_REQUESTS requests (a new connection each) from this one: chunk k+1 goes out only once
    request k has been answered, so every request is made in the middle of the flood. Returns
    (frames sent, frames the veth dropped before XDP, statuses, t0 = the monotonic time just
    before the first frame)."""
    tx_dropped = net.client_tx_dropped()
    answered = threading.Semaphore(0)
    result = {"sent": 0}
    size = -(-len(frames) // LEGIT_REQUESTS)

    def flood():
        for k in range(LEGIT_REQUESTS):
            result["sent"] += send_frames(net.client_ns, net.client_dev,
                                          frames[k * size:(k + 1) * size])
            answered.acquire(timeout=10)  # bounded: a stuck request does not stall the flood

    t0 = time.monotonic()
    flooder = threading.Thread(target=flood)
    flooder.start()
    statuses = []
    try:
        for i in range(LEGIT_REQUESTS):
            statuses.append(http_get(net.client_ns, legit_src, dst, PORT, f"/legit/{i}")[0])
            answered.release()
    finally:
        for _ in range(LEGIT_REQUESTS):
            answered.release()
        flooder.join(60)
    assert not flooder.is_alive()
    return result["sent"], net.client_tx_dropped() - tx_dropped, statuses, t0


def assert_cut_to_limit(flooder, sent, lost, t0, rate, burst):
    """The flooder's entry (passed, dropped), read after t0: at most burst + rate*(elapsed+1)
    passed; everything else that reached the program was dropped."""
    passed, dropped = flooder
    elapsed = time.monotonic() - t0
    bound = burst + rate * (elapsed + 1)
    arrived = sent - lost
    assert arrived <= passed + dropped <= sent, (flooder, sent, lost)
    assert passed <= bound, (flooder, bound, elapsed)
    assert dropped >= arrived - bound and dropped > 0, (flooder, bound, arrived)


def refused(ns, host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = ns.socket(family)
    s.settimeout(2)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# Tests


def test_native_mode_on_veth_serves_ipv4_and_ipv6(net, gateways):
    gw = gateways()
    log = gw.logs()
    assert re.search(rf"xdp: limiter attached to {net.gw_dev} in native mode: new TCP "
                     rf"connections, {RATE}/s burst {BURST} per source, 1 port\(s\), 0 policies; "
                     rf"maps pinned in {PIN} \(new, 0 sources kept\)", log), log
    assert "falling back to generic" not in log

    # bpftool, run inside the gateway's namespace, sees the program on the veth (driver mode)
    nets = json.loads(net.gw_ns.run("bpftool", "-j", "net", "show").stdout)
    xdp = [x for entry in nets for x in entry.get("xdp", []) if x["devname"] == net.gw_dev]
    assert len(xdp) == 1 and xdp[0]["mode"] == "driver", nets
    prog = json.loads(run(["bpftool", "-j", "prog", "show", "id", str(xdp[0]["id"])]).stdout)
    assert prog["type"] == "xdp" and prog["name"] == "ringway_xdp", prog
    assert net.gw_dev in net.gw_ns.run("bpftool", "net", "show").stdout

    for src, dst in ((LEGIT4, GW4), (LEGIT6, GW6)):
        status, body = http_get(net.client_ns, src, dst, PORT, "/hello")
        assert status == 200, body
        echo = json.loads(body)
        assert echo["path"] == "/hello" and ["X-Forwarded-For", src] in echo["headers"], echo
    # the two connections met the limiter and passed
    rows = top()
    assert rows[LEGIT4] == (1, 0) and rows[LEGIT6] == (1, 0), rows
    assert gw.stop() == 0, gw.logs()


def test_ipv4_syn_flood_is_cut_to_the_rate_while_another_source_is_served(net, gateways):
    gateways()
    before = stats()
    frames = flood_frames(net, FLOOD4, GW4, FLOOD_FRAMES)
    sent, lost, statuses, t0 = flood_while_serving(net, frames, LEGIT4, GW4)
    assert statuses == [200] * LEGIT_REQUESTS

    rows = top()
    dumped = bpftool_sources(PIN)
    after = stats()
    assert_cut_to_limit(rows[FLOOD4], sent, lost, t0, RATE, BURST)
    # bpftool and `ringway limits top` read the same entry
    assert (dumped[FLOOD4]["passed"], dumped[FLOOD4]["dropped"]) == rows[FLOOD4]
    legit_passed, legit_dropped = rows[LEGIT4]
    assert legit_dropped == 0 and legit_passed >= LEGIT_REQUESTS, rows
    # the flooder is first in `top` (most drops), and the counters grew by exactly its drops
    assert next(iter(rows)) == FLOOD4
    assert after["rate_dropped_packets"] - before["rate_dropped_packets"] == rows[FLOOD4][1]
    assert after["rate_dropped_bytes"] - before["rate_dropped_bytes"] == rows[FLOOD4][1] * 54
    assert after["deny_dropped_packets"] == before["deny_dropped_packets"]
    assert after["new_sources"] - before["new_sources"] == 2


def test_ipv6_syn_flood_is_cut_to_its_policy_rate(net, gateways):
    # rate 2 burst 3: far below the default (burst 20), so passing the default would show
    p_rate, p_burst = 2, 3
    gateways(policies=[f"{{cidr: '{FLOOD6}/128', rate: {p_rate}, burst: {p_burst}}}"])
    before = stats()
    frames = flood_frames(net, FLOOD6, GW6, FLOOD_FRAMES)
    sent, lost, statuses, t0 = flood_while_serving(net, frames, LEGIT6, GW6)
    assert statuses == [200] * LEGIT_REQUESTS

    rows = top()
    dumped = bpftool_sources(PIN)
    after = stats()
    assert_cut_to_limit(rows[FLOOD6], sent, lost, t0, p_rate, p_burst)
    assert (dumped[FLOOD6]["passed"], dumped[FLOOD6]["dropped"]) == rows[FLOOD6]
    assert rows[LEGIT6][1] == 0 and rows[LEGIT6][0] >= LEGIT_REQUESTS, rows
    assert after["rate_dropped_packets"] - before["rate_dropped_packets"] == rows[FLOOD6][1]
    assert after["rate_dropped_bytes"] - before["rate_dropped_bytes"] == rows[FLOOD6][1] * 74


def test_deny_allow_and_runtime_policies(net, gateways):
    gw = gateways(policies=[f"{{cidr: {DENIED4}/32, action: deny}}",
                            f"{{cidr: '{LIMITED4}/32', rate: 1, burst: 1}}"])
    assert policies() == {f"{DENIED4}/32": "deny", f"{LIMITED4}/32": "rate 1/s burst 1"}
    # -c FILE finds the same maps through xdp.pin_path
    r = run([RINGWAY, "limits", "-c", gw.config, "show"], check=False)
    assert r.returncode == 0 and r.stdout == show(), r.stderr

    # the configured deny: a connection from the denied source is never answered, others are
    before = stats()
    assert not connects(net.client_ns, DENIED4, GW4, PORT, timeout=0.5)
    assert http_get(net.client_ns, LEGIT4, GW4, PORT)[0] == 200
    assert not connects(net.client_ns, DENIED4, GW4, PORT, timeout=0.5)
    after = stats()
    assert after["deny_dropped_packets"] - before["deny_dropped_packets"] == 2
    assert DENIED4 not in top()  # denied before any bucket: no entry

    # set --deny at runtime cuts a served source off, without restarting the gateway
    pid = gw.proc.pid
    assert limits_ok("set", f"{LEGIT4}/32", "--deny") == f"{LEGIT4}/32: deny\n"
    assert limits_ok("set", f"{LEGIT6}/128", "--deny") == f"{LEGIT6}/128: deny\n"
    assert not connects(net.client_ns, LEGIT4, GW4, PORT, timeout=0.5)
    assert not connects(net.client_ns, LEGIT6, GW6, PORT, timeout=0.5)
    assert http_get(net.client_ns, FLOOD4, GW4, PORT)[0] == 200  # another source: still served
    assert policies()[f"{LEGIT4}/32"] == "deny" and policies()[f"{LEGIT6}/128"] == "deny"
    # unset brings it back
    assert limits_ok("unset", f"{LEGIT4}/32") == f"{LEGIT4}/32: removed\n"
    assert limits_ok("unset", f"{LEGIT6}/128") == f"{LEGIT6}/128: removed\n"
    assert http_get(net.client_ns, LEGIT4, GW4, PORT)[0] == 200
    assert http_get(net.client_ns, LEGIT6, GW6, PORT)[0] == 200
    assert gw.proc.pid == pid and gw.proc.poll() is None

    # the configured limit of 1/s burst 1: quick connection attempts beyond it are dropped
    attempts, ok, t0 = 6, 0, time.monotonic()
    for _ in range(attempts):
        ok += connects(net.client_ns, LIMITED4, GW4, PORT, timeout=0.3)
    limited = top()[LIMITED4]
    bound = 1 + 1 * (time.monotonic() - t0 + 1)
    assert limited == (ok, attempts - ok)  # one SYN per attempt, each counted
    assert ok <= bound and attempts - ok >= attempts - bound, (ok, bound)

    # --allow bypasses the limit: every attempt connects, the bucket is not even consulted
    before = stats()
    assert limits_ok("set", f"{LIMITED4}/32", "--allow") == f"{LIMITED4}/32: allow\n"
    for i in range(attempts):
        assert http_get(net.client_ns, LIMITED4, GW4, PORT, f"/allowed/{i}")[0] == 200
    assert top()[LIMITED4] == limited
    assert stats()["policy_allowed"] - before["policy_allowed"] >= attempts

    # show lists what the configuration and `set` wrote
    assert policies() == {f"{DENIED4}/32": "deny", f"{LIMITED4}/32": "allow"}
    out = limits_ok("set", "2001:db8:1::/48", "--rate", "7")  # the burst defaults to 2 x rate
    assert out == "2001:db8:1::/48: rate 7/s burst 14\n"
    assert policies()["2001:db8:1::/48"] == "rate 7/s burst 14"
    assert gw.stop() == 0, gw.logs()


def test_restart_keeps_sources_and_counters_and_rewrites_policies(net, gateways):
    gw = gateways(policies=[f"{{cidr: {DENIED4}/32, action: deny}}"])
    # traffic: a short SYN burst from one source (some dropped), a request from another,
    # a denied attempt, and a runtime policy
    lost = net.client_tx_dropped()
    sent = send_frames(net.client_ns, net.client_dev, flood_frames(net, FLOOD4, GW4, 200))
    lost = net.client_tx_dropped() - lost
    assert http_get(net.client_ns, LEGIT4, GW4, PORT)[0] == 200
    assert not connects(net.client_ns, DENIED4, GW4, PORT, timeout=0.5)
    assert limits_ok("set", f"{LEGIT4}/32", "--rate", "5", "--burst", "5")
    assert f"{LEGIT4}/32" in policies()
    rows_before = top()
    assert sent - lost <= sum(rows_before[FLOOD4]) <= sent, (rows_before, sent, lost)
    assert rows_before[FLOOD4][1] > 0, rows_before

    # SIGTERM: exits 0, detaches, logs its counters; the pins stay
    assert gw.stop() == 0, gw.logs()
    m = re.search(r"xdp: detached from (\S+); counters \(kept in (\S+)\): passed (\d+), dropped "
                  r"by rate (\d+), by deny (\d+), allowed by policy (\d+), parse errors (\d+), new "
                  r"sources (\d+), admission overflows (\d+)", gw.logs())
    assert m and m.group(1) == net.gw_dev and m.group(2) == PIN, gw.logs()
    for name in ("config", "policy", "sources", "metrics"):
        assert os.path.exists(os.path.join(PIN, name)), name

    # without a gateway, limits reads the same numbers (logged after the detach: final)
    kept = stats()
    names = ["passed_packets", "rate_dropped_packets", "deny_dropped_packets", "policy_allowed",
             "parse_errors", "new_sources", "admission_overflows"]
    logged = [int(v) for v in m.groups()[2:]]
    assert [kept[n] for n in names] == logged, (kept, m.groups())
    assert kept["rate_dropped_packets"] == rows_before[FLOOD4][1]
    assert kept["deny_dropped_packets"] == 1
    assert top() == rows_before
    assert stats() == kept
    assert f"{LEGIT4}/32" in policies()  # the maps are untouched until the next start

    # restart: the maps are reused, the sources and counters kept, the policies rewritten
    gw2 = gateways(policies=[f"{{cidr: {DENIED4}/32, action: deny}}"])
    log = gw2.logs()
    assert f"maps pinned in {PIN} (reused, {kept['sources_tracked']} sources kept)" in log, log
    assert policies() == {f"{DENIED4}/32": "deny"}
    assert top() == rows_before
    again = stats()
    for n in names[1:] + ["sources_tracked", "rate_dropped_bytes", "deny_dropped_bytes"]:
        assert again[n] == kept[n], n
    assert again["passed_packets"] >= kept["passed_packets"]
    # the runtime limit is gone: the source is served by the default limit again, and its
    # entry goes on counting from where it was
    assert http_get(net.client_ns, LEGIT4, GW4, PORT)[0] == 200
    passed, dropped = rows_before[LEGIT4]
    assert top()[LEGIT4] == (passed + 1, dropped)
    assert gw2.stop() == 0, gw2.logs()


def test_bpftool_prints_field_names(net, gateways):
    gateways(policies=[f"{{cidr: {DENIED4}/32, action: deny}}"])
    assert http_get(net.client_ns, LEGIT4, GW4, PORT)[0] == 200
    dumps = {name: run(["bpftool", "map", "dump", "pinned", os.path.join(PIN, name)]).stdout
             for name in ("sources", "metrics", "policy", "config")}
    for field in ("tat_ns", "passed", "dropped", "first_seen_ns", "last_seen_ns", "addr"):
        assert f'"{field}":' in dumps["sources"], dumps["sources"]
    for field in ("passed_packets", "passed_bytes", "rate_dropped_packets", "deny_dropped_packets",
                  "policy_allowed", "parse_errors", "new_sources", "admission_overflows"):
        assert f'"{field}":' in dumps["metrics"], dumps["metrics"]
    for field in ("prefixlen", "action", "rate", "burst"):
        assert f'"{field}":' in dumps["policy"], dumps["policy"]
    for field in ("limit", "rate", "burst", "new_sources_per_cpu", "nports", "ports"):
        assert f'"{field}":' in dumps["config"], dumps["config"]
    # and the values are the ones the tools show
    src = bpftool_sources(PIN)[LEGIT4]
    assert (src["passed"], src["dropped"]) == top()[LEGIT4] == (1, 0)


UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def unprivileged_dir(net):
    """A directory user 65534 can read (the config) and an upstream it can reach; skips (fails
    when CI=true) when that user cannot execute the binary (a checkout in a private home, say)."""
    r = run([*UNPRIVILEGED, RINGWAY, "--version"], check=False)
    if r.returncode != 0:
        skip_or_fail_in_ci(f"user 65534 cannot run {RINGWAY}: {r.stderr.strip()}")
    remove_pins(PIN_ROOT)
    d = tempfile.mkdtemp(prefix="ringway-unprivileged-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
    remove_pins(PIN_ROOT)


def test_without_bpf_permission_runs_without_xdp_unless_required(net, unprivileged_dir):
    # inside the test's gateway namespace (its lo), so even a wrongly privileged run could not
    # attach anything to a host interface
    port = 8081
    xdp = f"xdp:\n  interface: lo\n  rate: {RATE}\n  pin_path: {PIN}\n"
    gw = NsGateway(net.gw_ns, unprivileged_dir, gateway_config(xdp, listen=[f"127.0.0.1:{port}"]),
                   [("127.0.0.1", port)], prefix=UNPRIVILEGED)
    try:
        assert http_get(net.gw_ns, "127.0.0.1", "127.0.0.1", port)[0] == 200
    finally:
        assert gw.stop() == 0, gw.logs()
    xdp_lines = [l for l in gw.logs().splitlines() if "xdp" in l.lower()]
    assert len(xdp_lines) == 1, xdp_lines
    assert "running without" in xdp_lines[0] and "xdp.required" in xdp_lines[0], xdp_lines
    assert "no permission" in xdp_lines[0] and "CAP_BPF" in xdp_lines[0], xdp_lines
    assert not os.path.exists(PIN), "an unprivileged run created the pin directory"

    # required: true refuses to start, says why, and never listens
    remove_pins(PIN_ROOT)
    gw = NsGateway(net.gw_ns, unprivileged_dir,
                   gateway_config(xdp + "  required: true\n", listen=[f"127.0.0.1:{port}"]),
                   [], prefix=UNPRIVILEGED, wait=False)
    try:
        code = gw.proc.wait(15)
    finally:
        stop_process(gw.proc)
    log = gw.logs()
    assert code != 0, log
    errors = [l for l in log.splitlines() if re.match(r"\S+ error \[", l)]
    assert errors and "xdp" in errors[0], log
    assert "no permission" in errors[0] and "CAP_BPF" in errors[0], log
    assert "required" in errors[0], log
    assert "listening" not in log, log
    assert refused(net.gw_ns, "127.0.0.1", port)


def test_limits_unknown_command_and_usage():
    r = run([RINGWAY, "limits", "frobnicate"], check=False)
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr, r
    r = run([RINGWAY, "limits"], check=False)
    assert r.returncode == 2 and "usage: ringway limits" in r.stderr, r
    r = run([RINGWAY, "limits", "--help"], check=False)
    assert r.returncode == 0 and "usage: ringway limits" in r.stdout, r


def test_limits_without_maps(root, tmp_path):
    for pin in (str(tmp_path / "nothing-pinned"), str(tmp_path)):
        r = limits("stats", pin=pin)
        assert r.returncode == 1, r
        assert r.stderr.startswith(f"ringway limits: no limiter maps at {pin} "), r.stderr
    # arguments are checked before the maps are looked for
    r = limits("set", "198.51.100.7/24", "--deny", pin=str(tmp_path))
    assert r.returncode == 2 and "host bits set past /24" in r.stderr, r
    r = limits("set", "198.51.100.0/24", "--rate", "0", pin=str(tmp_path))
    assert r.returncode == 2 and "--rate must be at least 1" in r.stderr, r
    r = limits("--bogus", "stats", pin=str(tmp_path))
    assert r.returncode == 2 and "ringway limits: unknown option '--bogus'" in r.stderr, r


def test_limits_rejects_bad_cidrs_and_arguments(net, gateways):
    gateways()
    one_action = "either --rate N [--burst N], --deny or --allow"
    cases = [
        (["set", "198.51.100.7/24", "--deny"],
         "invalid CIDR '198.51.100.7/24': host bits set past /24"),
        (["set", "2001:db8::/129", "--allow"],
         "invalid CIDR '2001:db8::/129': prefix length out of range 0..128"),
        (["set", "198.51.100.0/x", "--rate", "5"],
         "invalid CIDR '198.51.100.0/x': prefix length is not a number"),
        (["unset", "example.com"], "invalid CIDR 'example.com': not an IPv4 or IPv6 address"),
        (["set", "198.51.100.0/24"], one_action),
        (["set", "198.51.100.0/24", "--deny", "--allow"], one_action),
        (["set", "198.51.100.0/24", "--rate", "-1"], "--rate: expected a whole number"),
        (["top", "0"], "N must be above 0"),
        (["top", "abc"], "N: expected a whole number"),
        (["set", "198.51.100.0/24", "--rate", "1000001"], "--rate: expected a whole number 0..1000000"),
        (["set", "::/0", "--deny"], "also covers every IPv4 source"),
        (["stats", "extra"], "takes no arguments"),
    ]
    for args, message in cases:
        r = limits(*args)
        assert r.returncode == 2 and message in r.stderr, (args, r.returncode, r.stderr)
    assert policies() == {}  # nothing was written
    r = limits("unset", "198.51.100.0/24")
    assert r.returncode == 1 and "no policy for 198.51.100.0/24" in r.stderr, r
    # unset takes any prefix, even one set would refuse (so an old ::/0 can still be removed)
    r = limits("unset", "::/0")
    assert r.returncode == 1 and "no policy for ::/0" in r.stderr, r


def test_limits_set_refuses_an_ipv6_limit_inside_a_shared_bucket(net, gateways):
    gateways(ipv6_source_prefix=64)
    r = limits("set", "2001:db8:1:2::bad/128", "--rate", "1")
    assert r.returncode == 2 and "share one bucket per /64" in r.stderr, r
    assert limits_ok("set", "2001:db8:1:2::/64", "--rate", "1")
    assert limits_ok("set", "2001:db8:1:2::bad/128", "--deny")
    assert set(policies()) == {"2001:db8:1:2::/64", "2001:db8:1:2::bad/128"}, policies()


def test_a_second_gateway_that_cannot_attach_leaves_the_running_limiter_alone(net, gateways,
                                                                              tmp_path):
    gw = gateways(policies=[f"{{cidr: {DENIED4}/32, action: deny}}"])
    limits_ok("set", f"{LEGIT4}/32", "--deny")
    shown = show()
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = NsGateway(net.gw_ns, str(second_dir),
                       gateway_config(xdp_section(net, rate=7, burst=7, max_sources=4096)), [],
                       wait=False)
    try:
        code = second.proc.wait(15)
    finally:
        stop_process(second.proc)
    assert code != 0 and "already has an XDP program" in second.logs(), second.logs()
    assert gw.proc.poll() is None
    assert show() == shown  # config and policies untouched, sources map still pinned
    assert not connects(net.client_ns, LEGIT4, GW4, PORT, timeout=0.5)

    # on another interface (the gateway namespace's lo) but with the same pin path: refused
    # before the maps are touched, since both programs would share them
    third_dir = tmp_path / "third"
    third_dir.mkdir()
    third = NsGateway(net.gw_ns, str(third_dir),
                      gateway_config(xdp_section(net, interface="lo", rate=7, max_sources=4096),
                                     listen=["127.0.0.1:8082"]), [], wait=False)
    try:
        code = third.proc.wait(15)
    finally:
        stop_process(third.proc)
    assert code != 0 and "is in use by another gateway" in third.logs(), third.logs()
    assert show() == shown
    assert not connects(net.client_ns, LEGIT4, GW4, PORT, timeout=0.5)


def test_pin_path_outside_bpffs_is_refused_and_left_alone(net, tmp_path):
    pin = tmp_path / "not-bpffs" / "a" / "v1"
    gw = NsGateway(net.gw_ns, str(tmp_path),
                   gateway_config(xdp_section(net, pin_path=str(pin)),
                                  listen=["127.0.0.1:8083"]), [], wait=False)
    try:
        code = gw.proc.wait(15)
    finally:
        stop_process(gw.proc)
    assert code != 0 and "is not on a bpf filesystem" in gw.logs(), gw.logs()
    assert not (tmp_path / "not-bpffs").exists(), "directories made outside bpffs"
