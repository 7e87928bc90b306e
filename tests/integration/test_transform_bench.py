"""perf/transform-bench, the cost of request/response transforms and CORS against plain proxying:
its paired ratios and verdicts on canned runs, its checks of what the upstream got on canned
echoes, and one short real run in which every route passes its checks and every answer is 2xx."""
import json
import os
import shutil
import socket
import subprocess

import pytest

from conftest import ROOT, load_perf_script
from netns import skip_or_fail_in_ci

TRANSFORM_BENCH = os.path.join(ROOT, "perf", "transform-bench")


xb = load_perf_script(TRANSFORM_BENCH, "perf_transform_bench")


def run(rps, cpu_us, errors=0, statuses=None):
    return {"rps": rps, "cpu_us": cpu_us, "p50_ms": 1.0, "p99_ms": 2.0, "errors": errors,
            "wrk_errors": 0, "non2xx": errors, "wrk_non2xx": 0,
            "statuses": statuses or {"2xx": int(rps)}}


def test_ratios_to_plain_are_medians_of_rounds_paired_in_time():
    # round 2 is slow for both (a noisy neighbour): paired ratios ignore it
    runs = {"plain": [run(100, 10.0), run(50, 20.0), run(100, 10.0)],
            "headers": [run(98, 10.2), run(49, 20.4), run(97, 10.5)],
            "all": [run(90, 11.0), run(45, 22.0), run(91, 11.5)]}
    s = xb.summarize(runs)
    assert s["headers"]["ratios"]["rps/plain"] == pytest.approx(0.98)    # 0.98, 0.98, 0.97
    assert s["headers"]["ratios"]["cpu/plain"] == pytest.approx(1.02)    # 1.02, 1.02, 1.05
    assert s["headers"]["ratios"]["cpu_extra_us"] == pytest.approx(0.4)  # 0.2, 0.4, 0.5
    assert s["all"]["ratios"]["rps/plain"] == pytest.approx(0.90)        # 0.90, 0.90, 0.91
    assert s["all"]["ratios"]["cpu_extra_us"] == pytest.approx(1.5)      # 1.0, 2.0, 1.5
    assert (s["all"]["ratios"]["rps/plain_min"], s["all"]["ratios"]["rps/plain_max"]) == (
        pytest.approx(0.90), pytest.approx(0.91))
    assert "rps/plain" not in s["plain"]["ratios"]
    assert (s["plain"]["rps_min"], s["plain"]["rps_max"]) == (50, 100)


def test_no_bar_but_any_non_2xx_or_failed_check_fails_a_case():
    runs = {"plain": [run(100, 10.0)] * 3, "query": [run(95, 10.5)] * 3,
            "cors": [run(99, 10.1)] * 3}
    ok, lines = xb.verdicts({"pinned": xb.summarize(runs)})
    assert ok and [line[:4] for line in lines] == ["ok  "] * 3
    assert lines[1].startswith("ok   pinned query: req/s 0.950 of plain")
    # a redirect is not an answer served: ringway's status counts show it
    s = xb.summarize(runs)
    s["query"]["errors"] = 3
    s["query"]["statuses"] = {"2xx": 90, "3xx": 3}
    ok, lines = xb.verdicts({"pinned": s})
    assert not ok and lines[1].startswith("FAIL pinned query") and "3xx 3" in lines[1]
    ok, lines = xb.verdicts({"pinned": xb.summarize(runs, {"cors": ["no Vary: Origin"]})})
    assert not ok and lines[2].startswith("FAIL pinned cors") and "Vary" in lines[2]


def echo(method="GET", path="/echo", query="", headers=()):
    return {"method": method, "path": path, "query": query,
            "headers": [["Host", "x"]] + [list(h) for h in headers]}


def test_the_checks_see_what_the_upstream_got():
    sent = [("X-Debug", "1"), ("X-Old-Name", "renamed"), ("X-Env", "dev")]
    done = [("X-New-Name", "renamed"), ("X-Env", "bench"), ("X-Gateway", "ringway"),
            ("X-Bench", "transform")]
    assert xb.echo_problems("plain", echo()) == []
    assert xb.echo_problems("headers", echo(headers=done)) == []
    # the headers forwarded untouched: every transform is missing
    assert len(xb.echo_problems("headers", echo(headers=sent))) == 6
    assert xb.echo_problems("query", echo(query="source=bench")) == []
    assert xb.echo_problems("query", echo(query="debug=1&source=bench"))
    assert xb.echo_problems("path-regex", echo()) == []
    assert xb.echo_problems("path-regex", echo(path="/v1/echo"))
    assert xb.echo_problems("all", echo("POST", query="source=bench",
                                        headers=done + [("Origin", xb.ORIGIN)])) == []
    assert xb.echo_problems("all", echo("GET", query="source=bench", headers=done))
    # a transform on a route that has none is a problem too
    assert xb.echo_problems("plain", echo(headers=[("X-Gateway", "ringway")]))


def test_the_checks_see_the_answers_head():
    upstream = [("Content-Length", "100"), ("X-Upstream", "upstream")]
    assert xb.answer_problems("plain", upstream) == []
    assert len(xb.answer_problems("headers", upstream)) == 3
    assert xb.answer_problems("headers", [("X-Served-By", "ringway"),
                                          ("Cache-Control", "no-store")]) == []
    cors = [("Access-Control-Allow-Origin", xb.ORIGIN),
            ("Access-Control-Expose-Headers", "X-Served-By"), ("Vary", "Origin")]
    assert xb.answer_problems("cors", upstream + cors) == []
    assert xb.answer_problems("cors", upstream + cors[:2])[0].endswith("no Vary: Origin")
    assert xb.answer_problems("plain", upstream + cors[:1])


def test_the_config_has_one_route_per_case(tmp_path):
    ports = {"origin": 1, "ringway": 2, "admin": 12}
    text = open(xb.write_config(str(tmp_path), list(xb.CASES), ports)).read()
    for case in xb.CASES:
        assert "path_prefix: /%s }" % case in text and "strip_prefix: /%s\n" % case in text
    route = {c: text.split("- name: %s\n" % c)[1].split("- name:")[0] for c in xb.CASES}
    assert "request" not in route["plain"] and "cors" not in route["plain"]
    assert "rename:" in route["headers"] and "response:" in route["headers"]
    assert "regex:" in route["path-regex"] and "query:" not in route["path-regex"]
    for key in ("rename:", "query:", "regex:", "method: POST", "response:", "cors:"):
        assert key in route["all"]


def test_a_short_real_run_answers_every_request(tmp_path):
    missing = [t for t in ("wrk", "taskset") if not shutil.which(t)]
    if missing:
        skip_or_fail_in_ci("perf/transform-bench needs %s (kernel/install-deps.sh bench)"
                           % missing)
    if len(os.sched_getaffinity(0)) < 2:
        skip_or_fail_in_ci("perf/transform-bench's pinned mode needs two CPUs")
    out = tmp_path / "xf.json"
    p = subprocess.Popen(
        [TRANSFORM_BENCH, "--rounds", "2", "--duration", "1", "--warmup-rounds", "0", "--modes",
         "pinned", "--base-port", "19980", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()  # its servers get SIGTERM from the kernel when it dies (PR_SET_PDEATHSIG)
            p.communicate()
    assert p.returncode == 0, stdout + stderr
    for port in (19981, 19982, 19992):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
    data = json.loads(out.read_text())
    assert data["ok"] and data["checks"]["pinned"] == {c: [] for c in xb.CASES}
    for case in xb.CASES:
        for r in data["runs"]["pinned"][case]:
            assert r["errors"] == 0, (case, r, stderr)
            assert r["statuses"]["2xx"] >= r["requests"] > 0
    assert "| all |" in stdout and "ok   pinned all: req/s" in stdout
