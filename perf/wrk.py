"""perf/wrk.py — reading wrk's output (with --latency): requests/s, requests, p50/p99, errors.
Shared by perf/bench and perf/profile."""
import re

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse(text):
    """wrk --latency output → {rps, requests, p50_ms, p99_ms, errors}; ValueError without a rate.
    errors counts socket errors (connect, read, write, timeout) and non-2xx/3xx answers."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not rps:
        raise ValueError("no Requests/sec in wrk output:\n" + text)
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        lat[pct] = float(value) * UNITS[unit]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    count = re.search(r"(\d+) requests in", text)
    return {"rps": float(rps.group(1)), "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "errors": errors, "requests": int(count.group(1)) if count else 0}
