"""`ringway probe`: what the host offers and what ringway will use. The probe runs for real here
(rings, a buffer ring, multishot accept and recv on AF_UNIX sockets, BPF probes), also in a network
namespace without loopback, and is checked against what `ringway run` does; under
`make integration-asan` (RINGWAY_BIN) a leak or undefined behaviour makes its exit code non-zero,
so these tests catch them too."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import RINGWAY, Gateway, free_port, make_config
from netns import skip_or_fail_in_ci

UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
NEEDS_CAPS = "needs CAP_BPF/CAP_SYS_ADMIN"


def probe(*args, prefix=(), env=None):
    return subprocess.run([*prefix, RINGWAY, "probe", *args], capture_output=True, text=True,
                          timeout=30, env=env)


def parse_text(out):
    """The text report as ({(heading, name): rest of the line}, {summary label: value})."""
    findings, summary, heading = {}, {}, None
    for line in out.splitlines():
        if not line.startswith("  "):
            heading = line
            continue
        m = re.match(r"  ([^:]+):\s+(.*)$", line)
        assert m, line
        if heading == "ringway will use:":
            summary[m.group(1)] = m.group(2)
        else:
            assert (heading, m.group(1)) not in findings, line
            findings[(heading, m.group(1))] = m.group(2)
    return findings, summary


def answer(rest):
    return rest.split(" ", 1)[0]


@pytest.fixture(scope="module")
def text_run():
    r = probe()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""
    return parse_text(r.stdout)


@pytest.fixture(scope="module")
def json_run():
    r = probe("--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_ringway_can_run_here(text_run):
    findings, summary = text_run
    ops = {name: rest for (heading, name), rest in findings.items()
           if heading == "io_uring" and name.startswith("op ")}
    needed = {name: rest for name, rest in ops.items() if "(needed" in rest}
    assert {"op accept", "op recv", "op send", "op connect"} <= needed.keys(), ops
    assert all(answer(rest) == "yes" for rest in needed.values()), needed
    for name in ("buffer ring", "multishot accept", "multishot recv"):
        assert answer(findings[("buffers", name)]) == "yes", findings[("buffers", name)]
    assert summary["ring mode"] != "none"
    assert summary["splice"] == ("yes" if answer(ops["op splice"]) == "yes" else "no")


def test_ring_mode_is_the_one_the_gateway_starts_with(text_run, tmp_path):
    findings, summary = text_run
    port = free_port()
    routes = "      - name: all\n        match: { path_prefix: / }\n        upstream: u\n"
    cfg = make_config(port, [("u", [f"127.0.0.1:{free_port()}"], "1s")], routes, workers=1)
    gw = Gateway(str(tmp_path), cfg, port)
    assert gw.stop() == 0, gw.logs()
    m = re.search(r"io_uring: (.+) mode \(features 0x([0-9a-f]+)\)", gw.logs())
    assert m, gw.logs()
    assert summary["ring mode"] == m.group(1)
    used = [name for (heading, name), rest in findings.items()
            if heading == "io_uring" and rest.startswith("yes (used")]
    assert used == [f"mode {m.group(1)}"], used
    # the same kernel features, bit for bit (every bit the probe names or numbers)
    assert len(findings[("io_uring", "features")].split()) == bin(int(m.group(2), 16)).count("1")


def test_every_interface_is_listed_with_lo(text_run):
    findings, summary = text_run
    interfaces = {heading.split(" ", 1)[1] for heading, _ in findings if heading.startswith("xdp ")}
    assert "lo" in interfaces
    assert interfaces == {label[len("xdp on "):] for label in summary if label.startswith("xdp on ")}
    # lo has no driver of its own to attach natively to: generic, where XDP is permitted
    assert answer(findings[("xdp lo", "native")]) in ("no", "unknown")
    assert summary["xdp on lo"] in ("generic", "native if the driver takes it, else generic") \
        or summary["xdp on lo"].startswith("none (")


def test_one_interface(text_run):
    r = probe("--interface", "lo")
    assert r.returncode == 0, r.stderr
    findings, summary = parse_text(r.stdout)
    assert {h for h, _ in findings if h.startswith("xdp ")} == {"xdp lo"}
    assert [label for label in summary if label.startswith("xdp on ")] == ["xdp on lo"]
    assert summary["xdp on lo"] == text_run[1]["xdp on lo"]


def test_json_agrees_with_the_text(text_run, json_run):
    findings, summary = text_run
    assert json_run["ok"] is True and json_run["missing"] == []
    from_json = {}
    for f in json_run["findings"]:
        heading = f["section"] + (" " + f["interface"] if "interface" in f else "")
        if "value" in f:
            rest = f["value"]
        else:
            rest = f["answer"] + (f" ({f['note']})" if f["note"] else "")
        from_json[(heading, f["name"])] = rest
    assert from_json == findings
    use = json_run["use"]
    assert use["ring_mode"] == summary["ring mode"]
    assert use["splice"] == (summary["splice"] == "yes")
    assert use["xdp"] == {label[len("xdp on "):]: value for label, value in summary.items()
                          if label.startswith("xdp on ")}
    needed = [f for f in json_run["findings"] if f["role"] == "needed"]
    assert needed and all(f["answer"] == "yes" for f in needed), needed


def test_usage_errors():
    r = probe("--bogus")
    assert r.returncode == 2 and "usage: ringway probe" in r.stderr and r.stdout == ""
    assert probe("extra").returncode == 2
    r = probe("--interface", "no-such-if0")
    assert r.returncode == 2 and "no-such-if0" in r.stderr and r.stdout == ""
    r = probe("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: ringway probe")
    r = subprocess.run([RINGWAY, "--help"], capture_output=True, text=True, timeout=30)
    assert "ringway probe [--json] [--interface IF]" in r.stdout


def test_runs_in_a_network_namespace_without_loopback():
    """A namespace made by `unshare --net` has lo down, so 127.0.0.1 is unreachable there: the
    multishot accept and recv are tried on AF_UNIX sockets, which need no network, and the probe
    passes (it used to blame the kernel for the missing loopback)."""
    if os.geteuid() != 0:
        skip_or_fail_in_ci("needs root to make a network namespace (unshare --net)")
    r = probe(prefix=["unshare", "--net"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""
    findings, summary = parse_text(r.stdout)
    # it ran in the new namespace: lo is its only interface
    assert {h for h, _ in findings if h.startswith("xdp ")} == {"xdp lo"}, r.stdout
    for name in ("buffer ring", "multishot accept", "multishot recv"):
        assert answer(findings[("buffers", name)]) == "yes", findings[("buffers", name)]
    assert summary["ring mode"] != "none"


def test_without_bpf_permission_bpf_says_so():
    prefix = UNPRIVILEGED if os.geteuid() == 0 else []
    if prefix and subprocess.run([*prefix, "test", "-x", RINGWAY], timeout=30).returncode:
        skip_or_fail_in_ci(f"user 65534 cannot run {RINGWAY} (a checkout in a private home?)")
    r = probe("--json", "--interface", "lo", prefix=prefix)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    bpf = {f["name"]: f for f in report["findings"] if f["section"] == "bpf"}
    assert bpf["permission"]["answer"] == "no"
    for name in ("prog xdp", "map lru_hash", "map lpm_trie", "map percpu_array"):
        assert (bpf[name]["answer"], bpf[name]["note"]) == ("no", NEEDS_CAPS), bpf[name]
    assert report["use"]["xdp"]["lo"].startswith("none (needs CAP_NET_ADMIN")


def test_a_missing_buffer_ring_exits_1(tmp_path):
    """A kernel without buffer rings (before 5.19), imitated by a library that shadows
    io_uring_register_buf_ring: the host itself is not touched."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        skip_or_fail_in_ci("no C compiler to build the shim")
    src, lib = tmp_path / "no_buf_ring.c", tmp_path / "no_buf_ring.so"
    src.write_text("#include <errno.h>\nstruct io_uring;\nstruct io_uring_buf_reg;\n"
                   "int io_uring_register_buf_ring(struct io_uring *ring, "
                   "struct io_uring_buf_reg *reg, unsigned flags) { return -EINVAL; }\n")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, timeout=30)
    # the ASan build wants its runtime first; the shim has no sanitizer of its own
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = dict(os.environ, LD_PRELOAD=str(lib),
               ASAN_OPTIONS=f"{asan}:verify_asan_link_order=0" if asan else
               "verify_asan_link_order=0")
    r = probe("--interface", "lo", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr == "ringway cannot run here: it needs buffer ring, multishot recv\n"
    findings, _ = parse_text(r.stdout)
    assert findings[("buffers", "buffer ring")].startswith(
        "no (needed: io_uring_register_buf_ring: Invalid argument")
    assert answer(findings[("buffers", "multishot recv")]) == "no"
    assert answer(findings[("buffers", "multishot accept")]) == "yes"
