"""kernel/sysctl-edge.conf and kernel/tune-host.sh: every key of the profile exists on this kernel
and says why it is there; --dry-run and --check change nothing; the net.* keys are applied inside
a network namespace made for the test (`unshare --net`), never in the host's; the minimums (a
higher running value is kept, never lowered) and the IRQ affinity logic run against a fake /proc
and /sys tree (--root), never against a real NIC."""
import os
import re
import subprocess

import pytest

from conftest import ROOT
from netns import skip_or_fail_in_ci

SCRIPT = os.path.join(ROOT, "kernel", "tune-host.sh")
PROFILE = os.path.join(ROOT, "kernel", "sysctl-edge.conf")

# The keys tune-host.sh takes as minimums (its MINIMUM list), one rule per field of the value:
# '>' a higher running value is kept, '=' the profile's value is set.
MINIMUM = {
    "net.core.somaxconn": ">", "net.ipv4.tcp_max_syn_backlog": ">",
    "net.core.netdev_max_backlog": ">", "net.core.rmem_max": ">", "net.core.wmem_max": ">",
    "net.ipv4.tcp_rmem": "= = >", "net.ipv4.tcp_wmem": "= = >",
    "fs.file-max": ">", "fs.nr_open": ">",
}


def profile():
    """[(key, value, the comment line above it or None)] in file order."""
    out, prev = [], None
    with open(PROFILE) as f:
        for line in f:
            s = line.strip()
            if s and not s.startswith(("#", ";")):
                key, _, value = s.partition("=")
                out.append((key.strip().lstrip("-"), " ".join(value.split()),
                            prev if prev and prev.startswith("#") else None))
            prev = s
    return out


def proc_path(key, root="/"):
    return os.path.join(root, "proc/sys", key.replace(".", "/"))


def read_value(key):
    with open(proc_path(key)) as f:
        return " ".join(f.read().split())


def planned(key, current, wanted):
    """The value tune-host.sh sets for a key: the profile's, except that a field that is a minimum
    keeps a higher running value."""
    rules = MINIMUM.get(key, "").split()
    cur, out = current.split(), []
    for i, w in enumerate(wanted.split()):
        keep = (i < len(rules) and rules[i] == ">" and i < len(cur) and cur[i].isdigit()
                and w.isdigit() and int(cur[i]) > int(w))
        out.append(cur[i] if keep else w)
    return " ".join(out)


def asks(key, wanted):
    """The profile's value as tune-host.sh prints it: minimum fields as '>=N'."""
    rules = MINIMUM.get(key, "").split()
    return " ".join(f">={w}" if i < len(rules) and rules[i] == ">" else w
                    for i, w in enumerate(wanted.split()))


def run_script(*args, env=None, **kw):
    e = dict(os.environ)
    e.pop("RINGWAY_SYSROOT", None)
    e.update(env or {})
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60, env=e, **kw)


def require_root():
    if os.geteuid() != 0:
        skip_or_fail_in_ci("needs root: makes a network namespace (unshare --net) and writes its "
                           "sysctls")


# ---------------------------------------------------------------------------------------------
# The profile


def test_every_key_exists_on_this_kernel_and_says_why():
    keys = profile()
    assert len(keys) >= 15
    names = [k for k, _, _ in keys]
    assert len(names) == len(set(names)), "a key is set twice"
    for key, value, comment in keys:
        assert os.path.exists(proc_path(key)), f"{key}: no {proc_path(key)} on this kernel"
        assert value, f"{key} has no value"
        assert comment and len(comment.lstrip("# ")) > 20, f"{key}: no comment line above it"
    assert MINIMUM.keys() <= set(names), "a minimum that the profile does not set"
    for wanted in ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.core.netdev_max_backlog",
                   "net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse", "net.core.rmem_max",
                   "net.core.wmem_max", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
                   "net.ipv4.tcp_migrate_req", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_syncookies",
                   "fs.file-max", "fs.nr_open", "net.core.bpf_jit_enable",
                   "net.ipv4.tcp_slow_start_after_idle"):
        assert wanted in names, wanted
    values = dict((k, v) for k, v, _ in keys)
    assert values["net.ipv4.tcp_migrate_req"] == "1"
    assert values["net.ipv4.tcp_syncookies"] == "1"
    assert values["net.core.bpf_jit_enable"] == "1"
    lo, hi = map(int, values["net.ipv4.ip_local_port_range"].split())
    assert 1024 <= lo < hi <= 65535


def test_help_and_usage_errors():
    r = run_script("--help")
    assert r.returncode == 0 and "--dry-run" in r.stdout and "--interface" in r.stdout
    for args in (["--dry-run", "--check"], ["--check", "--print-conf"],
                 ["--print-conf", "--only-net"], ["--bogus"], ["--cpus", "0-1"], ["--interface"],
                 ["--interface", "eth0", "--rps-xps", "sometimes"]):
        r = run_script(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "tune-host:" in r.stderr


def test_dry_run_changes_nothing_and_lists_every_key():
    keys = profile()
    before = {k: read_value(k) for k, _, _ in keys}
    r = run_script("--dry-run")
    assert r.returncode == 0, r.stderr
    assert {k: read_value(k) for k, _, _ in keys} == before
    lines = r.stdout.splitlines()
    for key, value, _ in keys:
        mine = [l for l in lines if l.startswith(f"sysctl {key}:")]
        assert len(mine) == 1, (key, r.stdout)
        line = mine[0]
        target = planned(key, before[key], value)
        kept = f"higher already, kept; the profile asks {asks(key, value)}"
        if before[key] == value:
            assert line == f"sysctl {key}: {value} (already set)"
        elif before[key] == target:  # a minimum that is higher here
            assert line == f"sysctl {key}: {target} ({kept})"
        elif target == value:  # the current and the new value
            assert line == f"sysctl {key}: {before[key]} -> {value} (dry run: not changed)"
        else:  # a field kept, another changed
            assert line == f"sysctl {key}: {before[key]} -> {target} (dry run: not changed; {kept})"
    assert any(l.startswith("bpffs /sys/fs/bpf:") for l in lines)
    assert any(l.startswith("nofile:") and "LimitNOFILE=" in l for l in lines)
    assert lines[-1].endswith("nothing changed")


def test_check_on_this_host_says_whether_anything_differs():
    """--check reads only: its exit status is 1 exactly when a running value differs."""
    keys = profile()
    before = {k: read_value(k) for k, _, _ in keys}
    r = run_script("--check")
    differs = [k for k, v, _ in keys if before[k] != planned(k, before[k], v)]
    mounted = any(l.split()[1:3] == ["/sys/fs/bpf", "bpf"] for l in open("/proc/mounts"))
    assert r.returncode == (1 if differs or not mounted else 0), r.stdout
    for k, v, _ in keys:
        if k in differs:
            assert f"sysctl {k}: {before[k]}, wanted {asks(k, v)} (differs)" in r.stdout
        else:
            assert re.search(rf"^sysctl {re.escape(k)}: .*matches\)$", r.stdout, re.M), k
    assert {k: read_value(k) for k, _, _ in keys} == before


def test_net_keys_applied_inside_a_fresh_network_namespace_only():
    require_root()
    keys = profile()
    net_keys = [k for k, _, _ in keys if k.startswith("net.")]
    host_before = {k: read_value(k) for k in net_keys}
    dump = " ".join(f'echo "V {k} $(cat {proc_path(k)} 2>/dev/null | tr -s "\\t " "  ")";'
                    for k in net_keys)
    script = (f'{SCRIPT} --only-net --check; echo "RC check-before $?"; '
              f'{SCRIPT} --only-net; echo "RC apply $?"; '
              f'{SCRIPT} --only-net --check; echo "RC check-after $?"; '
              f'readlink /proc/self/ns/net; {dump}')
    r = subprocess.run(["unshare", "--net", "bash", "-c", script], capture_output=True, text=True,
                       timeout=60)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    rcs = dict(re.findall(r"^RC (\S+) (\d+)$", out, re.M))
    assert rcs == {"check-before": "1", "apply": "0", "check-after": "0"}, out
    assert os.readlink("/proc/self/ns/net") not in out  # it ran in another namespace
    inside = {m[0]: " ".join(m[1].split()) for m in re.findall(r"^V (\S+) ?(.*)$", out, re.M)}
    applied = dict(re.findall(r"^sysctl (\S+): (.*) -> ", out, re.M))
    assert "net.ipv4.tcp_fin_timeout" in applied and "net.ipv4.tcp_migrate_req" in applied
    values = dict((k, v) for k, v, _ in keys)
    for k, old in applied.items():
        assert inside[k] == planned(k, old, values[k]), (k, old, inside[k])
    # Host-wide keys are reported and skipped in there, fs/kernel keys are not even tried.
    assert "sysctl net.core.rmem_max: skipped, host-wide, read-only" in out
    assert "sysctl fs.file-max: skipped, not a network-namespace key (--only-net)" in out
    assert {k: read_value(k) for k in net_keys} == host_before


# ---------------------------------------------------------------------------------------------
# IRQ affinity on a fake /proc and /sys


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read().strip()


def interrupts(rows):
    """A /proc/interrupts for 4 CPUs with the given (irq, chip, name) rows."""
    head = "           CPU0       CPU1       CPU2       CPU3\n"
    body = "".join(f"{irq:>3}:          0          0          0          0  {chip}  {name}\n"
                   for irq, chip, name in rows)
    return head + body + "NMI:          0          0          0          0   Non-maskable interrupts\n"


def fake_irqs(root, irqs, affinity="0-3"):
    for irq in irqs:
        write(f"{root}/proc/irq/{irq}/smp_affinity_list", affinity + "\n")


@pytest.fixture
def multiqueue(tmp_path):
    """eth9: a PCI NIC with 6 queues (i40e-style names), a misc vector, and another device's IRQ
    that must stay untouched; irqbalance appears to run."""
    root = str(tmp_path)
    dev = f"{root}/sys/devices/pci0000:00/0000:3b:00.0"
    rows = [(60, "PCI-MSIX-0000:3b:00.0 0-edge", "i40e-0000:3b:00.0:misc")]
    rows += [(61 + q, f"PCI-MSIX-0000:3b:00.0 {q + 1}-edge", f"i40e-eth9-TxRx-{q}") for q in range(6)]
    rows += [(80, "PCI-MSIX-0000:04:00.0 1-edge", "nvme0q1")]
    write(f"{root}/proc/interrupts", interrupts(rows))
    fake_irqs(root, [r[0] for r in rows])
    for irq in range(60, 67):
        write(f"{dev}/msi_irqs/{irq}", "msix\n")
    os.makedirs(f"{root}/sys/class/net/eth9")
    os.symlink(dev, f"{root}/sys/class/net/eth9/device")
    for q in range(6):
        write(f"{root}/sys/class/net/eth9/queues/rx-{q}/rps_cpus", "00000000,0000000f\n")
        write(f"{root}/sys/class/net/eth9/queues/tx-{q}/xps_cpus", "00000000,00000000\n")
    write(f"{root}/sys/devices/system/cpu/online", "0-3\n")
    write(f"{root}/proc/4242/comm", "irqbalance\n")
    return root


def test_irq_queue_i_goes_to_the_ith_cpu_of_the_list(multiqueue):
    root = multiqueue
    r = run_script("--root", root, "--irq-only", "--interface", "eth9", "--cpus", "2,5,7",
                   "--rps-xps", "align")
    assert r.returncode == 0, r.stdout + r.stderr
    cpus = [2, 5, 7]
    for q in range(6):
        irq = 61 + q
        assert read(f"{root}/proc/irq/{irq}/smp_affinity_list") == str(cpus[q % 3])
        assert (f"irq {irq} (i40e-eth9-TxRx-{q}, queue {q}): smp_affinity_list: 0-3 -> "
                f"{cpus[q % 3]}") in r.stdout
        assert read(f"{root}/sys/class/net/eth9/queues/rx-{q}/rps_cpus") == "0"
        assert read(f"{root}/sys/class/net/eth9/queues/tx-{q}/xps_cpus") == \
            format(1 << cpus[q % 3], "x")
    assert read(f"{root}/proc/irq/60/smp_affinity_list") == "0-3"  # misc vector
    assert "irq 60 (i40e-0000:3b:00.0:misc): not a queue IRQ, left alone" in r.stdout
    assert read(f"{root}/proc/irq/80/smp_affinity_list") == "0-3"  # another device
    assert "irq 80" not in r.stdout
    assert "irqbalance runs (pid 4242)" in r.stdout
    # Queue lines come in queue order, one per IRQ.
    qs = [int(m) for m in re.findall(r"^irq \d+ \(\S+, queue (\d+)\)", r.stdout, re.M)]
    assert qs == list(range(6))
    # Applied: now --check agrees, and a second run changes nothing.
    assert run_script("--root", root, "--check", "--irq-only", "--interface", "eth9", "--cpus",
                      "2,5,7", "--rps-xps", "align").returncode == 0
    again = run_script("--root", root, "--irq-only", "--interface", "eth9", "--cpus", "2,5,7",
                       "--rps-xps", "align")
    assert " -> " not in again.stdout and "0 changed" in again.stdout


def test_irq_dry_run_and_check_write_nothing(multiqueue):
    root = multiqueue
    args = ["--root", root, "--irq-only", "--interface", "eth9", "--rps-xps", "off"]
    r = run_script("--dry-run", *args)
    assert r.returncode == 0, r.stderr
    assert "irq 61 (i40e-eth9-TxRx-0, queue 0): smp_affinity_list: 0-3 -> 0 (dry run: not changed)" \
        in r.stdout
    assert "irq 65 (i40e-eth9-TxRx-4, queue 4): smp_affinity_list: 0-3 -> 0 (dry run" in r.stdout
    assert "rps eth9 rx-0: rps_cpus: 00000000,0000000f -> 0 (dry run: not changed)" in r.stdout
    assert "xps eth9 tx-0: xps_cpus: 00000000,00000000 (already set)" in r.stdout
    c = run_script("--check", *args)
    assert c.returncode == 1 and "(differs)" in c.stdout
    for irq in range(60, 67):
        assert read(f"{root}/proc/irq/{irq}/smp_affinity_list") == "0-3"
    assert read(f"{root}/sys/class/net/eth9/queues/rx-0/rps_cpus") == "00000000,0000000f"
    # Default CPU list: the online CPUs of the (fake) machine, 0-3.
    assert run_script(*args).returncode == 0
    assert [read(f"{root}/proc/irq/{61 + q}/smp_affinity_list") for q in range(6)] == \
        ["0", "1", "2", "3", "0", "1"]
    assert run_script("--check", *args).returncode == 0


def test_irq_virtio_nic_vectors_live_on_the_pci_parent(tmp_path):
    """virtio-net: the netdev's device is virtioN, its MSI vectors are on the PCI function above
    it, and the IRQ names carry virtioN, not the interface name."""
    root = str(tmp_path)
    pci = f"{root}/sys/devices/pci0000:00/0000:00:03.0"
    rows = [(37, "PCI-MSIX-0000:00:03.0 0-edge", "virtio2-config"),
            (38, "PCI-MSIX-0000:00:03.0 1-edge", "virtio2-input.0"),
            (39, "PCI-MSIX-0000:00:03.0 2-edge", "virtio2-output.0"),
            (40, "PCI-MSIX-0000:00:03.0 3-edge", "virtio2-input.1"),
            (41, "PCI-MSIX-0000:00:03.0 4-edge", "virtio2-output.1"),
            (36, "PCI-MSIX-0000:00:02.0 1-edge", "virtio1-req.0")]
    write(f"{root}/proc/interrupts", interrupts(rows))
    fake_irqs(root, [r[0] for r in rows], affinity="0-1")
    for irq in range(37, 42):
        write(f"{pci}/msi_irqs/{irq}", "msix\n")
    os.makedirs(f"{pci}/virtio2")
    os.makedirs(f"{root}/sys/class/net/eth8")
    os.symlink("../../../devices/pci0000:00/0000:00:03.0/virtio2",
               f"{root}/sys/class/net/eth8/device")
    write(f"{root}/sys/devices/system/cpu/online", "0-1\n")
    r = run_script("--irq-only", "--interface", "eth8", env={"RINGWAY_SYSROOT": root})
    assert r.returncode == 0, r.stdout + r.stderr
    got = {irq: read(f"{root}/proc/irq/{irq}/smp_affinity_list") for irq in range(36, 42)}
    assert got == {36: "0-1", 37: "0-1", 38: "0", 39: "0", 40: "1", 41: "1"}
    assert "irq 37 (virtio2-config): not a queue IRQ, left alone" in r.stdout
    assert "irq 40 (virtio2-input.1, queue 1): smp_affinity_list: 0-1 -> 1" in r.stdout


def test_irq_unknown_or_virtual_interface_is_an_error(tmp_path):
    root = str(tmp_path)
    write(f"{root}/proc/interrupts", interrupts([]))
    os.makedirs(f"{root}/sys/class/net/lo")
    r = run_script("--root", root, "--irq-only", "--interface", "lo", "--cpus", "0")
    assert r.returncode == 1 and "no queue IRQs found for lo" in r.stderr
    r = run_script("--root", root, "--irq-only", "--interface", "nope0", "--cpus", "0")
    assert r.returncode == 1 and "no interface nope0" in r.stderr


def test_whole_run_on_a_fake_tree_skips_missing_keys_and_writes_the_rest(tmp_path):
    """The apply path end to end under --root: keys the (fake) kernel lacks are reported and
    skipped, present ones are written, bpffs is never mounted under --root."""
    root = str(tmp_path)
    keys = profile()
    present = {"net.core.somaxconn": "4096", "net.ipv4.tcp_rmem": "4096\t131072\t6291456",
               "fs.nr_open": "1048576"}
    for k, v in present.items():
        write(proc_path(k, root), v + "\n")
    write(f"{root}/proc/mounts", "proc /proc proc rw 0 0\n")
    r = run_script("--root", root)
    assert r.returncode == 0, r.stdout + r.stderr
    values = dict((k, v) for k, v, _ in keys)
    for k in present:
        assert " ".join(read(proc_path(k, root)).split()) == values[k]
    for k, _, _ in keys:
        if k not in present:
            assert f"sysctl {k}: skipped, not on this kernel" in r.stdout
    assert "sysctl net.ipv4.tcp_rmem: 4096 131072 6291456 -> " + values["net.ipv4.tcp_rmem"] in r.stdout
    assert "bpffs /sys/fs/bpf: skipped" in r.stdout
    assert f"{len(present)} changed" in r.stdout


# ---------------------------------------------------------------------------------------------
# Minimums on a fake /proc: a higher running value is kept, a lower one raised

LONG_MAX = "9223372036854775807"


def fake_sysctls(root, values):
    for k, v in values.items():
        write(proc_path(k, root), v + "\n")
    write(f"{root}/proc/mounts", "bpf /sys/fs/bpf bpf rw,relatime 0 0\n")


def sysctls_of(root, keys):
    return {k: " ".join(read(proc_path(k, root)).split()) for k in keys}


def test_higher_limits_are_kept_not_lowered(tmp_path):
    """systemd's boot values (fs.file-max = LONG_MAX, fs.nr_open = 1073741816) and a larger
    rmem_max stay as they are; the script used to write the profile's smaller values over them."""
    root = str(tmp_path)
    host = {"fs.file-max": LONG_MAX, "fs.nr_open": "1073741816", "net.core.rmem_max": "134217728"}
    fake_sysctls(root, host)
    for mode in ("--dry-run", None):
        r = run_script("--root", root, *([mode] if mode else []))
        assert r.returncode == 0, r.stdout + r.stderr
        assert sysctls_of(root, host) == host
        assert " -> " not in r.stdout, r.stdout
        assert (f"sysctl fs.file-max: {LONG_MAX} (higher already, kept; the profile asks "
                ">=4194304)") in r.stdout
        assert ("sysctl fs.nr_open: 1073741816 (higher already, kept; the profile asks "
                ">=2097152)") in r.stdout
        assert ("sysctl net.core.rmem_max: 134217728 (higher already, kept; the profile asks "
                ">=33554432)") in r.stdout
        assert "4 already set (3 higher, kept)" in r.stdout  # and bpffs
    c = run_script("--root", root, "--check")
    assert c.returncode == 0, c.stdout
    assert (f"sysctl fs.file-max: {LONG_MAX} (higher already, kept; the profile asks >=4194304: "
            "matches)") in c.stdout
    assert "tune-host: 0 differ, 4 match (3 higher, kept)" in c.stdout


def test_minimums_lower_raised_higher_kept_others_set_exactly(tmp_path):
    """Every key present: a minimum below the profile is raised, one above it kept; tcp_rmem's
    and tcp_wmem's min and default are set as written and only their max is a minimum; a key that
    is not a minimum is set exactly, lower or higher."""
    root = str(tmp_path)
    keys = profile()
    values = dict((k, v) for k, v, _ in keys)
    start = dict(values)
    start.update({
        "fs.file-max": LONG_MAX, "fs.nr_open": "1048576",                    # kept, raised
        "net.core.somaxconn": "4096", "net.core.netdev_max_backlog": "100000",  # raised, kept
        "net.core.rmem_max": "4194304", "net.core.wmem_max": "67108864",        # raised, kept
        "net.ipv4.tcp_rmem": "8192 262144 67108864",  # min and default set, max kept
        "net.ipv4.tcp_wmem": "4096 16384 4194304",    # max raised
        "net.ipv4.tcp_fin_timeout": "60",             # not a minimum: lowered to 15
        "net.ipv4.tcp_syncookies": "2",               # not a minimum: set to 1
    })
    fake_sysctls(root, start)
    names = [k for k, _, _ in keys]
    want = {"fs.file-max": LONG_MAX, "fs.nr_open": "2097152", "net.core.somaxconn": "65535",
            "net.core.netdev_max_backlog": "100000", "net.core.rmem_max": "33554432",
            "net.core.wmem_max": "67108864", "net.ipv4.tcp_rmem": "4096 131072 67108864",
            "net.ipv4.tcp_wmem": "4096 16384 16777216", "net.ipv4.tcp_fin_timeout": "15",
            "net.ipv4.tcp_syncookies": "1"}
    assert {k: planned(k, start[k], values[k]) for k in want} == want  # the model agrees

    c = run_script("--root", root, "--check")
    assert c.returncode == 1, c.stdout
    assert "sysctl net.core.somaxconn: 4096, wanted >=65535 (differs)" in c.stdout
    assert ("sysctl net.ipv4.tcp_rmem: 8192 262144 67108864, wanted 4096 131072 >=33554432 "
            "(differs)") in c.stdout
    assert ("sysctl net.core.netdev_max_backlog: 100000 (higher already, kept; the profile asks "
            ">=16384: matches)") in c.stdout
    assert "sysctl net.ipv4.tcp_fin_timeout: 60, wanted 15 (differs)" in c.stdout

    # --print-conf: the profile as it would be applied here, comments kept; changes nothing.
    pc = run_script("--root", root, "--print-conf")
    assert pc.returncode == 0, pc.stderr
    assert sysctls_of(root, names) == start
    printed = [l for l in pc.stdout.splitlines() if l and not l.startswith("#")]
    assert printed == [f"{k} = {planned(k, start[k], values[k])}" for k in names]
    for _, _, comment in keys:
        assert comment in pc.stdout.splitlines()
    conf = tmp_path / "printed.conf"
    conf.write_text(pc.stdout)

    r = run_script("--root", root)
    assert r.returncode == 0, r.stdout + r.stderr
    got = sysctls_of(root, names)
    assert got == {k: planned(k, start[k], values[k]) for k in names}
    assert {k: got[k] for k in want} == want
    assert "sysctl net.core.somaxconn: 4096 -> 65535" in r.stdout
    assert "sysctl fs.nr_open: 1048576 -> 2097152" in r.stdout
    assert ("sysctl net.ipv4.tcp_rmem: 8192 262144 67108864 -> 4096 131072 67108864 (higher "
            "already, kept; the profile asks 4096 131072 >=33554432)") in r.stdout
    assert "sysctl net.ipv4.tcp_wmem: 4096 16384 4194304 -> 4096 16384 16777216" in r.stdout
    assert "sysctl net.ipv4.tcp_fin_timeout: 60 -> 15" in r.stdout
    assert ("sysctl net.core.wmem_max: 67108864 (higher already, kept; the profile asks "
            ">=16777216)") in r.stdout
    # Applied: --check passes, with this profile and with the printed one; nothing more to do.
    assert run_script("--root", root, "--check").returncode == 0
    c = run_script("--root", root, "--check", "--profile", str(conf))
    assert c.returncode == 0 and "higher already" not in c.stdout, c.stdout
    again = run_script("--root", root)
    assert " -> " not in again.stdout and "0 changed" in again.stdout


def test_print_conf_marks_keys_this_kernel_lacks(tmp_path):
    root = str(tmp_path)
    fake_sysctls(root, {"fs.file-max": LONG_MAX})
    r = run_script("--root", root, "--print-conf")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert f"fs.file-max = {LONG_MAX}" in lines
    assert "-net.core.somaxconn = 65535" in lines  # sysctl ignores it where it is missing
    assert "-net.ipv4.tcp_rmem = 4096 131072 33554432" in lines


def test_applying_without_root_is_refused():
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SCRIPT]
    else:
        cmd = [SCRIPT]
    before = read_value("net.ipv4.tcp_fin_timeout")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode == 126 or "Permission denied" in r.stderr:
        skip_or_fail_in_ci(f"user 65534 cannot run {SCRIPT}: {r.stderr.strip()}")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "needs root" in r.stderr and "--dry-run" in r.stderr
    assert r.stdout == ""
    assert read_value("net.ipv4.tcp_fin_timeout") == before
