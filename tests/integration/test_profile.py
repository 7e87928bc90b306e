"""perf/profile and perf/flamegraph.py: folding canned `perf script` text gives the right stacks and
counts, the SVG flame graph is valid XML whose rectangles match the stack tree in number and
width, and one short real run of perf/profile (when perf and wrk are installed) writes a report
that names ringway's own functions and leaves no process behind."""
import collections
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT
from netns import skip_or_fail_in_ci

sys.path.insert(0, os.path.join(ROOT, "perf"))
import flamegraph  # noqa: E402

PROFILE = os.path.join(ROOT, "perf", "profile")
FLAMEGRAPH = os.path.join(ROOT, "perf", "flamegraph.py")
SVG = "{http://www.w3.org/2000/svg}"

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
URING = "/usr/lib/x86_64-linux-gnu/liburing.so.2.3"
RW = "/work/main/build/ringway"

# What `perf script --inline` prints for a dwarf call-graph recording (leaf first), trimmed:
# two identical kernel samples under liburing's unnamed io_uring_enter stub, one sample with
# inlined ringway frames, one whose libc leaf perf printed as "inlined" with no real frame at its
# address (placed from the --no-inline text below), and a thread whose name holds a space, with
# pid/tid and CPU columns and no call graph (the frame on the header line).
KERNEL_SAMPLE = f"""ringway  1310 14911.741632:    1001001 cpu-clock: 
\tffffffff8225fd19 pvm_irq_enable+0x19 ([kernel.kallsyms])
\tffffffff81b8a2ef __do_sys_io_uring_enter+0x20f ([kernel.kallsyms])
\t            2b95 [unknown] ({URING})
\t           174bc worker_main+0x4fc ({RW})
\t           891f4 start_thread+0x304 ({LIBC})
\t          1098eb clone3+0x2b ({LIBC})

"""
INLINE_SCRIPT = KERNEL_SAMPLE * 2 + f"""ringway  1311 14911.750794:    1001001 cpu-clock: 
\t           14bd0 take_response_head+0x960 (inlined)
\t           14bd0 proxy_on_upstream_data+0x960 ({RW})
\t           17b0e sock_on_recv+0xb4e (inlined)
\t           17b0e dispatch+0xb4e (inlined)
\t           17b0e worker_main+0xb4e ({RW})
\t           891f4 start_thread+0x304 ({LIBC})
\t          1098eb clone3+0x2b ({LIBC})

ringway  1311 14911.837708:    1001001 cpu-clock: 
\t          16d868 __memcpy_avx512_unaligned_erms+0x68 (inlined)
\t           1327e build_request_head+0x37e (inlined)
\t           1327e proxy_start+0x37e ({RW})
\t           17d2d worker_main+0xd6d ({RW})
\t           891f4 start_thread+0x304 ({LIBC})
\t          1098eb clone3+0x2b ({LIBC})

io worker 7  4242/4243 [001] 14912.000001:     250000 cpu-clock:  ffffffff81000130 entry_SYSCALL_64+0x10 ([kernel.kallsyms])
"""
# The same recording without --inline: real frames only.
PLAIN_SCRIPT = KERNEL_SAMPLE * 2 + f"""ringway  1311 14911.750794:    1001001 cpu-clock: 
\t           14bd0 proxy_on_upstream_data+0x960 ({RW})
\t           17b0e worker_main+0xb4e ({RW})
\t           891f4 start_thread+0x304 ({LIBC})
\t          1098eb clone3+0x2b ({LIBC})

ringway  1311 14911.837708:    1001001 cpu-clock: 
\t          16d868 __memcpy_avx512_unaligned_erms+0x68 ({LIBC})
\t           1327e proxy_start+0x37e ({RW})
\t           17d2d worker_main+0xd6d ({RW})
\t           891f4 start_thread+0x304 ({LIBC})
\t          1098eb clone3+0x2b ({LIBC})

io worker 7  4242/4243 [001] 14912.000001:     250000 cpu-clock:  ffffffff81000130 entry_SYSCALL_64+0x10 ([kernel.kallsyms])
"""

BASE = "ringway;clone3_[libc];start_thread_[libc];worker_main"
EXPECTED = {
    f"{BASE};[liburing];__do_sys_io_uring_enter_[k];pvm_irq_enable_[k]": 2,
    f"{BASE};dispatch;sock_on_recv;proxy_on_upstream_data;take_response_head": 1,
    f"{BASE};proxy_start;build_request_head;__memcpy_avx512_unaligned_erms_[libc]": 1,
    "io worker 7;entry_SYSCALL_64_[k]": 1,
}


def folded_inline():
    samples = flamegraph.parse_perf_script(INLINE_SCRIPT)
    flamegraph.fill_places(samples, flamegraph.parse_perf_script(PLAIN_SCRIPT))
    return flamegraph.fold(samples, "ringway")


def test_perf_script_text_folds_into_stacks_with_counts():
    assert dict(folded_inline()) == EXPECTED


def test_without_the_plain_pass_an_unplaced_inlined_frame_says_so():
    got = flamegraph.fold(flamegraph.parse_perf_script(INLINE_SCRIPT), "ringway")
    assert got[f"{BASE};proxy_start;build_request_head;__memcpy_avx512_unaligned_erms_[?]"] == 1


def test_plain_script_folds_without_inlined_frames():
    got = flamegraph.fold(flamegraph.parse_perf_script(PLAIN_SCRIPT), "ringway")
    assert got[f"{BASE};proxy_on_upstream_data"] == 1
    assert got[f"{BASE};proxy_start;__memcpy_avx512_unaligned_erms_[libc]"] == 1
    assert sum(got.values()) == 5


def test_self_time_split_and_top_symbols():
    samples = flamegraph.parse_perf_script(PLAIN_SCRIPT)
    per_sym, per_cat = flamegraph.self_time(samples, "ringway")
    assert per_cat == {"kernel": 3, "program": 1, "libc": 1}
    assert per_sym[("kernel", "kernel", "pvm_irq_enable")] == 2
    lines = flamegraph.summary_lines(samples, "ringway", top=3)
    assert lines[0] == "top 3 symbols by self time (5 samples):"
    assert re.match(r"^\s+40\.00%\s+kernel\s+pvm_irq_enable$", lines[1])
    assert lines[-1] == ("split by self time: kernel 60.0%  ringway 20.0%  libc 20.0%  "
                         "liburing 0.0%  other 0.0%")


def test_folded_text_round_trips_and_rejects_garbage():
    text = "".join(f"{k} {v}\n" for k, v in sorted(EXPECTED.items()))
    assert dict(flamegraph.read_folded(text)) == EXPECTED
    with pytest.raises(ValueError):
        flamegraph.read_folded("no count here\n")


def tree_nodes(folded):
    """{path tuple: samples} of every node of the merged stack tree (the root 'all' is ())."""
    nodes = collections.Counter()
    for stack, n in folded.items():
        frames = stack.split(";")
        nodes[()] += n
        for i in range(1, len(frames) + 1):
            nodes[tuple(frames[:i])] += n
    return nodes


def frames_of(svg_text):
    root = ET.fromstring(svg_text)
    assert root.tag == SVG + "svg"
    out = []
    for g in root.iter(SVG + "g"):
        rect = g.find(SVG + "rect")
        if rect is None or rect.get("class") != "frame":
            continue
        m = re.fullmatch(r"(.*) \((\d+) samples?, [\d.]+%\)", g.find(SVG + "title").text)
        out.append((m.group(1), int(m.group(2)), float(rect.get("x")), float(rect.get("y")),
                    float(rect.get("width"))))
    return root, out


def test_svg_is_valid_and_its_rectangles_match_the_stacks():
    folded = folded_inline()
    folded["ringway;worker_main;std::vector<int>::push_back & co"] = 3  # needs escaping
    svg = flamegraph.render_svg(folded, title="test <graph>", width=1200)
    root, frames = frames_of(svg)
    nodes = tree_nodes(folded)
    assert len(root.findall(f".//{SVG}rect")) == len(frames) == len(nodes)
    total = sum(folded.values())
    scale = (1200 - 20) / total
    by_level = collections.defaultdict(list)
    for name, count, x, y, w in frames:
        assert w == pytest.approx(count * scale, abs=0.01)
        assert 10 - 0.01 <= x and x + w <= 1190 + 0.01
        by_level[y].append((x, w))
    # Every frame's count is the count of one tree node of that name.
    counts = collections.Counter((name, count) for name, count, *_ in frames)
    want = collections.Counter(((p[-1] if p else "all"), n) for p, n in nodes.items())
    assert counts == want
    # The root spans everything; frames of one level never overlap.
    assert ("all", total) in counts and max(w for *_, w in frames) == pytest.approx(1180)
    for row in by_level.values():
        row.sort()
        for (x1, w1), (x2, _) in zip(row, row[1:]):
            assert x1 + w1 <= x2 + 0.01
    assert "std::vector&lt;int&gt;::push_back &amp; co" in svg


def test_svg_leaves_out_frames_narrower_than_the_minimum():
    folded = collections.Counter({"a;b": 100000, "a;c": 1})
    _, frames = frames_of(flamegraph.render_svg(folded, min_width=0.1))
    assert sorted(name for name, *_ in frames) == ["a", "all", "b"]
    _, frames = frames_of(flamegraph.render_svg(folded, min_width=0))
    assert sorted(name for name, *_ in frames) == ["a", "all", "b", "c"]


def test_command_line_fold_and_svg(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text(PLAIN_SCRIPT)
    r = subprocess.run([FLAMEGRAPH, "fold", "--places", str(plain)], input=INLINE_SCRIPT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert dict(flamegraph.read_folded(r.stdout)) == EXPECTED
    s = subprocess.run([FLAMEGRAPH, "svg", "--title", "t"], input=r.stdout, capture_output=True,
                       text=True, timeout=30)
    assert s.returncode == 0, s.stderr
    _, frames = frames_of(s.stdout)
    assert len(frames) == len(tree_nodes(EXPECTED))


# ---------------------------------------------------------------------------------------------
# One real, short run


def test_real_profile_run_names_ringway_functions(tmp_path):
    missing = [t for t in ("perf", "wrk") if not shutil.which(t)]
    if missing:
        skip_or_fail_in_ci(f"perf/profile needs {' and '.join(missing)} (`make test` installs "
                           "them: kernel/install-deps.sh test bench)")
    if os.geteuid() != 0:
        with open("/proc/sys/kernel/perf_event_paranoid") as f:
            if int(f.read()) > 1:
                skip_or_fail_in_ci("perf record of kernel samples needs root or "
                                   "kernel.perf_event_paranoid <= 1")
    for b in ("build/ringway", "build/upstream"):
        assert os.access(os.path.join(ROOT, b), os.X_OK), f"{b} missing: make"
    env = dict(os.environ)
    env.pop("RINGWAY_BIN", None)  # the release build, whatever the suite runs against
    out = tmp_path / "profile"
    r = subprocess.run([PROFILE, "-d", "2", "--no-build", "--out", str(out)], capture_output=True,
                       text=True, timeout=240, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("perf.data", "report.txt", "folded.txt", "flame.svg"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.txt").read_text()
    assert report.startswith("# ringway profile")
    assert re.search(r"^# date: \d{4}-\d\d-\d\d ", report, re.M)
    assert "# command: perf/profile -d 2" in report
    assert "worker_main" in report
    assert re.search(r"^\s+[\d.]+%\s+ringway\s+\[\.\] \w+", report, re.M)  # a ringway symbol
    folded = flamegraph.read_folded((out / "folded.txt").read_text())
    assert any("worker_main" in s for s in folded)
    _, frames = frames_of((out / "flame.svg").read_text())
    assert frames and frames[0][0] == "all" and frames[0][1] == sum(folded.values())
    # wrk's result, read by perf/wrk.py, in the summary and the report's header
    m = re.search(r"^profile: wrk: ([\d,]+) req/s over 2 s, (\d+) errors$", r.stdout, re.M)
    assert m and int(m.group(1).replace(",", "")) > 0, r.stdout
    assert f"req/s, {m.group(2)} errors" in report
    assert "top 15 symbols by self time" in r.stdout
    split = re.search(r"^split by self time: kernel ([\d.]+)%  ringway ([\d.]+)%  libc ([\d.]+)%"
                      r"  liburing ([\d.]+)%  other ([\d.]+)%$", r.stdout, re.M)
    assert split and sum(map(float, split.groups())) == pytest.approx(100, abs=0.5)
    assert re.search(r"^stacks: \d+% of samples reach a ringway frame", r.stdout, re.M)
    # Everything it started is gone.
    pids = [int(p) for p in re.findall(r"(?:ringway|upstream) pid (\d+)", r.stdout)]
    assert len(pids) == 2
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split()[2] == "Z"
