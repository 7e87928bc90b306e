#!/usr/bin/python3
"""perf/flamegraph.py — folded stacks and an SVG flame graph from `perf script` text.

    perf script -i perf.data | perf/flamegraph.py fold [--main ringway] [--places P] > folded.txt
    perf/flamegraph.py svg [--title T] < folded.txt > flame.svg
    perf/flamegraph.py summary [--main ringway] [--top 15] < script.txt   # self time per symbol

Folded stacks: one line per distinct stack, root first, frames joined by ';', then a space and
the number of samples ("ringway;start_thread_[libc];worker_main;...;tcp_sendmsg_[k] 12"). The root
frame is the thread's name (comm). A frame is annotated with where its code lives: `_[k]` for the
kernel, `_[libc]`-style for a shared library (the file name up to `.so`), nothing for the profiled
program (--main, matched against the file name); a symbol perf could not name becomes the
library's name in brackets (`[liburing]`). Inlined frames (`perf script --inline`) are frames of
the function they were inlined into, so they get its place.

The SVG: one rectangle per frame of the merged stack tree, width proportional to its samples,
callers below callees, a <title> on each (shown as a tooltip: the frame, its samples and share),
coloured by place (kernel, the program, libc, liburing, other). No script: it opens in any
browser. Frames narrower than --min-width pixels are left out (their samples still count in the
caller's width).

Written for this project from the formats' descriptions (perf-script(1); the folded format of
Brendan Gregg's FlameGraph); no code is taken from FlameGraph.
"""
import argparse
import collections
import os
import re
import sys
import zlib
from xml.sax.saxutils import escape, quoteattr

# "ringway  1310 14911.741632:    1001001 cpu-clock: " (the fields vary with perf script -F):
# the thread name (may hold spaces and digits), the pid or pid/tid, maybe [cpu], the time. Without
# a time field, the first number after the name is taken for the tid. The period before the event
# name is not read: every sample counts once (with -F and cpu-clock the periods are all alike).
# Whatever follows the event name ("cpu-clock:") on the same line is a frame (samples recorded
# without a call graph).
HEADER_TIMED = re.compile(r"^(?P<comm>\S.*?)\s+(?P<tid>\d+(?:/\d+)?)\s+(?:\[\d+\]\s+)?"
                          r"\d+\.\d+:\s*(?P<rest>.*)$")
HEADER = re.compile(r"^(?P<comm>\S.*?)\s+(?P<tid>\d+(?:/\d+)?)\s+(?P<rest>.*)$")
EVENT = re.compile(r"(?:^|\s)(?P<event>[A-Za-z][\w.-]*(?::[\w.-]+)*):"
                   r"(?:\s+(?P<tail>.*))?$")
# "	ffffffff8225fd19 pvm_irq_enable+0x19 ([kernel.kallsyms])"
FRAME = re.compile(r"^\s*(?P<addr>[0-9a-fA-F]+)\s+(?P<sym>.*?)\s+\((?P<dso>[^()]*)\)\s*$")
OFFSET = re.compile(r"\+0x[0-9a-fA-F]+$")

CATEGORIES = ("kernel", "program", "libc", "liburing", "other")


class Frame:
    __slots__ = ("addr", "sym", "dso", "inlined")

    def __init__(self, addr, sym, dso, inlined=False):
        self.addr, self.sym, self.dso, self.inlined = addr, sym, dso, inlined

    def __repr__(self):
        return f"Frame({self.addr!r}, {self.sym!r}, {self.dso!r}, inlined={self.inlined})"


class Sample:
    __slots__ = ("comm", "tid", "frames")

    def __init__(self, comm, tid):
        self.comm, self.tid, self.frames = comm, tid, []  # leaf first


def _frame(line):
    m = FRAME.match(line)
    if not m:
        return None
    sym = OFFSET.sub("", m["sym"].strip()) or "[unknown]"
    dso = m["dso"].strip()
    if dso == "inlined":
        return Frame(m["addr"].lower(), sym, None, True)
    return Frame(m["addr"].lower(), sym, dso)


def parse_perf_script(text):
    """perf script's default text (with or without call graphs, with or without --inline) ->
    [Sample], frames leaf first. Inlined frames take the place (dso) of the real frame at the
    same address below them."""
    samples, cur = [], None
    for line in text.splitlines():
        if not line.strip():
            cur = None
            continue
        if line[0] in " \t":
            if cur is not None:
                f = _frame(line)
                if f:
                    cur.frames.append(f)
            continue
        m = HEADER_TIMED.match(line) or HEADER.match(line)
        if not m:
            cur = None
            continue
        ev = EVENT.search(m["rest"])
        cur = Sample(m["comm"], m["tid"])
        samples.append(cur)
        if ev and ev["tail"]:
            f = _frame(ev["tail"])
            if f:
                cur.frames.append(f)
    for s in samples:
        _place_inlined(s.frames)
    return samples


def _place_inlined(frames):
    owner = None
    for f in reversed(frames):  # from the root: a real frame owns the inlined ones above it
        if not f.inlined:
            owner = f
        elif owner is not None and owner.addr == f.addr:
            f.dso = owner.dso
    # An inlined frame with no real frame at its address (perf reports some library leaves so):
    # take the place of any real frame at that address in the sample, else it stays unknown.
    by_addr = {f.addr: f.dso for f in frames if not f.inlined}
    for f in frames:
        if f.inlined and f.dso is None:
            f.dso = by_addr.get(f.addr)


# Bracketed places that are user space; any other bracketed one ([kernel.kallsyms], a module such
# as [tcp_bbr], a BPF program) is the kernel.
USER_PSEUDO = ("[vdso]", "[vsyscall]", "[heap]", "[stack]", "[anon", "[uprobes]", "[JIT]")


def fill_places(samples, plain):
    """Gives inlined frames that are still unplaced (perf printed a library's frame as inlined
    with no real frame at its address) the place perf names for that address in `plain`: the
    same recording's samples from `perf script --no-inline`, in the same order. Samples that do
    not pair up (another recording) are left as they are."""
    if len(samples) != len(plain):
        return
    for s, p in zip(samples, plain):
        if s.tid != p.tid:
            continue
        places = {f.addr: f.dso for f in p.frames}
        for f in s.frames:
            if f.dso is None:
                f.dso = places.get(f.addr)


def is_kernel(dso, addr=""):
    if dso is None:
        return False
    if dso == "[unknown]":  # perf could not place it: a kernel address is still the kernel
        return len(addr) == 16 and addr.startswith("ffff")
    if dso.startswith("[") and not dso.startswith(USER_PSEUDO):
        return True
    return dso.endswith(".ko")


def lib_name(dso):
    """/usr/lib/x86_64-linux-gnu/liburing.so.2.3 -> liburing; [vdso] -> vdso."""
    base = os.path.basename(dso).strip("[]")
    return base.split(".so")[0] if ".so" in base else base


def category(dso, addr, main):
    if is_kernel(dso, addr):
        return "kernel"
    if dso is None:
        return "other"
    if os.path.basename(dso) == main:
        return "program"
    name = lib_name(dso)
    if name in ("libc", "liburing"):
        return name
    return "other"


def frame_label(f, main):
    """The frame as it appears in folded stacks (see the module's text)."""
    sym = f.sym.replace(";", ":")
    if is_kernel(f.dso, f.addr):
        return sym + "_[k]"
    if f.dso is None:
        return sym + "_[?]"
    if os.path.basename(f.dso) == main:
        return f"[{main}]" if sym == "[unknown]" else sym
    lib = lib_name(f.dso)
    return f"[{lib}]" if sym == "[unknown]" else f"{sym}_[{lib}]"


def fold(samples, main):
    """-> Counter {folded stack: samples}."""
    out = collections.Counter()
    for s in samples:
        frames = [frame_label(f, main) for f in reversed(s.frames)]
        out[";".join([s.comm.replace(";", ":")] + frames)] += 1
    return out


def write_folded(counter, fh):
    for stack in sorted(counter):
        fh.write(f"{stack} {counter[stack]}\n")


def read_folded(text):
    out = collections.Counter()
    for n, line in enumerate(text.splitlines(), 1):
        line = line.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            raise ValueError(f"folded line {n}: not 'frame;frame;... count': {line[:80]}")
        out[stack] += int(count)
    return out


def self_time(samples, main):
    """Self samples per (category, dso name, symbol) of the leaf frames, and per category."""
    per_sym, per_cat = collections.Counter(), collections.Counter()
    for s in samples:
        if not s.frames:
            per_sym[("other", "?", "[no frame]")] += 1
            per_cat["other"] += 1
            continue
        leaf = s.frames[0]
        cat = category(leaf.dso, leaf.addr, main)
        dso = "kernel" if cat == "kernel" else lib_name(leaf.dso) if leaf.dso else "?"
        per_sym[(cat, dso, leaf.sym)] += 1
        per_cat[cat] += 1
    return per_sym, per_cat


# ---------------------------------------------------------------------------------------------
# SVG


class Node:
    __slots__ = ("name", "count", "children")

    def __init__(self, name):
        self.name, self.count, self.children = name, 0, {}


def build_tree(folded):
    root = Node("all")
    for stack, count in folded.items():
        root.count += count
        node = root
        for name in stack.split(";"):
            node = node.children.setdefault(name, Node(name))
            node.count += count
    return root


def frame_colour(name, main="ringway"):
    """Kernel orange, the program red, libc green, liburing blue, other grey; shades vary by
    name so that neighbours differ."""
    h = zlib.crc32(name.encode()) / 0xFFFFFFFF
    if name == "all":
        return "rgb(200,200,200)"
    if name.endswith("_[k]"):
        return f"rgb({220 + int(30 * h)},{130 + int(60 * h)},40)"
    lib = re.search(r"\[([^\[\]]+)\]$", name)
    if lib and lib.group(1) != main:
        if lib.group(1) == "libc":
            return f"rgb({80 + int(40 * h)},{180 + int(50 * h)},80)"
        if lib.group(1) == "liburing":
            return f"rgb(80,{150 + int(50 * h)},{210 + int(40 * h)})"
        return f"rgb({150 + int(40 * h)},{150 + int(40 * h)},{160 + int(40 * h)})"
    return f"rgb({215 + int(40 * h)},{70 + int(80 * h)},{60 + int(30 * h)})"


LEGEND = (("kernel", "_[k]"), ("the program", "main"), ("libc", "x_[libc]"),
          ("liburing", "x_[liburing]"), ("other", "x_[other]"))


def render_svg(folded, title="Flame graph", width=1200, frame_height=16, font_size=11,
               min_width=0.1, main="ringway"):
    """Folded stacks -> SVG text. One <rect class="frame"> per drawn frame (the root 'all'
    included), width = samples / total * (width - 20)."""
    root = build_tree(folded)
    pad, top = 10, 50
    scale = (width - 2 * pad) / root.count if root.count else 0.0

    def depth(node):
        return 1 + max((depth(c) for c in node.children.values()), default=0)

    levels = depth(root) if root.count else 1
    height = top + levels * frame_height + 2 * pad + 10
    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="Verdana, sans-serif" '
        f'font-size="{font_size}">',
        "<style>.frame:hover { stroke: black; stroke-width: 0.5; } "
        "text { pointer-events: none; }</style>",
        f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="{font_size + 5}">'
        f"{escape(title)}</text>",
        f'<text x="{pad}" y="38">{root.count} samples; width = share of samples, '
        f"callers below callees; hover a frame for its numbers</text>",
    ]
    x = width - pad
    for label, sample in reversed(LEGEND):
        x -= 9 * len(label) + 20
        out.append(f'<text x="{x}" y="38" fill={quoteattr(frame_colour(sample, main))}>'
                   f"\u25a0 <tspan fill=\"black\">{escape(label)}</tspan></text>")
    base_y = height - pad - frame_height
    char_w = font_size * 0.6

    def draw(node, x, level):
        w = node.count * scale
        if w < min_width:
            return
        y = base_y - level * frame_height
        share = 100.0 * node.count / root.count
        tip = f"{node.name} ({node.count} sample{'s' if node.count != 1 else ''}, {share:.2f}%)"
        fill = quoteattr(frame_colour(node.name, main))
        out.append(f"<g><title>{escape(tip)}</title>"
                   f'<rect class="frame" x="{x:.2f}" y="{y}" width="{w:.2f}" '
                   f'height="{frame_height - 1}" rx="2" fill={fill}/>')
        chars = int((w - 6) / char_w)
        if chars >= 3:
            text = node.name if len(node.name) <= chars else node.name[:chars - 2] + ".."
            out.append(f'<text x="{x + 3:.2f}" y="{y + frame_height - 5}">{escape(text)}</text>')
        out.append("</g>")
        cx = x
        for name in sorted(node.children):
            child = node.children[name]
            draw(child, cx, level + 1)
            cx += child.count * scale

    if root.count:
        draw(root, float(pad), 0)
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------


def summary_lines(samples, main, top=15):
    per_sym, per_cat = self_time(samples, main)
    total = sum(per_cat.values()) or 1
    lines = [f"top {top} symbols by self time ({total} samples):"]
    for (cat, dso, sym), n in per_sym.most_common(top):
        lines.append(f"  {100.0 * n / total:6.2f}%  {dso:<14.14} {sym}")
    names = {"program": main}
    split = "  ".join(f"{names.get(c, c)} {100.0 * per_cat.get(c, 0) / total:.1f}%"
                      for c in CATEGORIES)
    lines.append(f"split by self time: {split}")
    return lines


def main_cli(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fold", help="perf script text (stdin) -> folded stacks (stdout)")
    f.add_argument("--main", default="ringway", help="file name of the profiled program")
    f.add_argument("--places", metavar="FILE",
                   help="`perf script --no-inline` text of the same recording, to place the "
                        "inlined frames perf leaves unplaced")
    s = sub.add_parser("svg", help="folded stacks (stdin) -> SVG flame graph (stdout)")
    s.add_argument("--title", default="Flame graph")
    s.add_argument("--width", type=int, default=1200)
    s.add_argument("--min-width", type=float, default=0.1)
    s.add_argument("--main", default="ringway")
    m = sub.add_parser("summary", help="perf script text (stdin) -> top symbols and the split")
    m.add_argument("--main", default="ringway")
    m.add_argument("--top", type=int, default=15)
    a = ap.parse_args(argv)
    text = sys.stdin.read()
    if a.cmd == "fold":
        samples = parse_perf_script(text)
        if a.places:
            with open(a.places) as fh:
                fill_places(samples, parse_perf_script(fh.read()))
        write_folded(fold(samples, a.main), sys.stdout)
    elif a.cmd == "svg":
        sys.stdout.write(render_svg(read_folded(text), a.title, a.width,
                                    min_width=a.min_width, main=a.main))
    else:
        print("\n".join(summary_lines(parse_perf_script(text), a.main, a.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
