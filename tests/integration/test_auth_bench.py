"""perf/auth-bench, the judge of the authentication issue's performance bar: its paired ratios and
its bar on canned runs, and one short real run (plain, api_key, a cached JWT, identity tokens) in
which every route passes its checks and every answer is 2xx."""
import json
import os
import shutil
import socket
import subprocess

import pytest

from conftest import ROOT, load_perf_script
from netns import skip_or_fail_in_ci

AUTH_BENCH = os.path.join(ROOT, "perf", "auth-bench")


ab = load_perf_script(AUTH_BENCH, "perf_auth_bench")


def run(rps, cpu_us, errors=0, statuses=None):
    return {"rps": rps, "cpu_us": cpu_us, "p50_ms": 1.0, "p99_ms": 2.0, "errors": errors,
            "wrk_errors": 0, "non2xx": errors, "wrk_non2xx": 0,
            "statuses": statuses or {"2xx": int(rps)}}


def test_ratios_to_plain_are_medians_of_rounds_paired_in_time():
    # round 2 is slow for both (a noisy neighbour): paired ratios ignore it
    runs = {"plain": [run(100, 10.0), run(50, 20.0), run(100, 10.0)],
            "key": [run(98, 10.2), run(49, 20.4), run(97, 10.5)],
            "key-idtoken": [run(80, 12.0), run(40, 24.0), run(80, 12.0)]}
    s = ab.summarize(runs)
    assert s["key"]["ratios"]["rps/plain"] == pytest.approx(0.98)      # 0.98, 0.98, 0.97
    assert s["key"]["ratios"]["cpu/plain"] == pytest.approx(1.02)      # 1.02, 1.02, 1.05
    assert s["key"]["ratios"]["cpu_extra_us"] == pytest.approx(0.4)    # 0.2, 0.4, 0.5
    assert s["key-idtoken"]["ratios"]["rps/key"] == pytest.approx(80 / 98)
    assert "rps/plain" not in s["plain"]["ratios"]
    assert (s["plain"]["rps_min"], s["plain"]["rps_max"]) == (50, 100)


def test_the_bar_is_five_percent_and_any_non_2xx_fails_a_case():
    def summary(key_rps, nocache_errors=0, key_statuses=None):
        runs = {"plain": [run(100, 10.0)] * 3,
                "key": [run(key_rps, 10.0, statuses=key_statuses)] * 3,
                "jwt-es256-nocache": [run(60, 16.0, errors=nocache_errors)] * 3}
        return {"pinned": ab.summarize(runs)}
    ok, lines = ab.check_bar(summary(96))
    assert ok and lines[0].startswith("met  pinned key") and "(no bar)" in lines[1]
    ok, lines = ab.check_bar(summary(94))
    assert not ok and lines[0].startswith("MISS pinned key")
    # an uncached JWT has no bar, but its errors fail it
    ok, lines = ab.check_bar(summary(96, nocache_errors=5))
    assert not ok and lines[1].startswith("FAIL pinned jwt-es256-nocache")
    # a redirect is not an answer served: ringway's status counts show it
    runs = summary(96)
    runs["pinned"]["key"]["errors"] = 3
    runs["pinned"]["key"]["statuses"] = {"2xx": 90, "3xx": 3}
    ok, lines = ab.check_bar(runs)
    assert not ok and "3xx 3" in lines[0]


def test_ringways_own_counters_must_say_the_case_measured_what_it_says():
    assert ab.auth_problems("jwt-es256", {"jwt ok": 1000, "jwt cache hit": 1000}, 990) == []
    assert ab.auth_problems("jwt-es256-nocache", {"jwt ok": 1000, "jwt cache miss": 1000},
                            990) == []
    # a cached issuer whose tokens are verified every time: not what the case measures
    assert "cache" in ab.auth_problems("jwt-rs256", {"jwt ok": 1000, "jwt cache hit": 10,
                                                     "jwt cache miss": 990}, 990)[0]
    assert ab.auth_problems("jwt-rs256-nocache", {"jwt ok": 1000, "jwt cache hit": 1000}, 990)
    assert ab.auth_problems("key", {"api_key ok": 500, "api_key failed": 500}, 990)
    assert ab.auth_problems("plain", {"api_key ok": 5}, 990)
    assert ab.auth_problems("key", {}, 990) == []  # a ringway without these counters


def test_the_config_has_one_route_per_case_and_the_issuers(tmp_path):
    ports = {"origin": 1, "main": 2, "admin-main": 12, "idtoken": 3, "admin-idtoken": 13}
    cases = ["plain", "key", "jwt-es256", "jwt-es256-nocache", "key-idtoken"]
    main = open(ab.write_config(str(tmp_path), "main", cases, ports, "sha256:" + "0" * 64)).read()
    idt = open(ab.write_config(str(tmp_path), "idtoken", cases, ports, "sha256:" + "0" * 64)).read()
    assert "identity_token" not in main and "per_request: true" in idt
    assert main.count("- issuer:") == 2 and "cache: false" in main
    # the jwt routes are alike: a token's iss picks its issuer
    for route in ("plain", "key", "jwt-es256", "jwt-es256-nocache", "key-idtoken"):
        assert "path_prefix: /%s }" % route in main and "strip_prefix: /%s\n" % route in main
    assert main.split("frontends:")[1] == idt.split("frontends:")[1].replace(":3\"", ":2\"")


def test_a_short_real_run_answers_every_request(tmp_path):
    missing = [t for t in ("wrk", "taskset") if not shutil.which(t)]
    if missing:
        skip_or_fail_in_ci("perf/auth-bench needs %s (kernel/install-deps.sh bench)" % missing)
    if len(os.sched_getaffinity(0)) < 2:
        skip_or_fail_in_ci("perf/auth-bench's pinned mode needs two CPUs")
    out = tmp_path / "auth.json"
    p = subprocess.Popen(
        [AUTH_BENCH, "--rounds", "2", "--duration", "1", "--warmup-rounds", "0", "--modes",
         "pinned", "--cases", "plain,key,jwt-es256,key-idtoken", "--base-port", "19780",
         "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()  # its servers get SIGTERM from the kernel when it dies (PR_SET_PDEATHSIG)
            p.communicate()
    assert p.returncode in (0, 1), stderr  # 1: the bar missed, which is not this test's matter
    for port in (19781, 19782, 19783, 19792, 19793):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
    data = json.loads(out.read_text())
    cases = ("plain", "key", "jwt-es256", "key-idtoken")
    assert data["checks"]["pinned"] == {c: [] for c in cases}
    for case in cases:
        for r in data["runs"]["pinned"][case]:
            assert r["errors"] == 0, (case, r, stderr)
            assert r["statuses"]["2xx"] >= r["requests"] > 0
    assert "| key |" in stdout and "pinned key: req/s" in stdout
