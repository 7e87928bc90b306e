"""perf/aggregate-bench: its config and percentile helper, and one short real run in which every
answer is 200 and the aggregate waits less than the three calls made in turn."""
import json
import os
import subprocess
import sys

from conftest import ROOT, RINGWAY, load_perf_script

AGG_BENCH = os.path.join(ROOT, "perf", "aggregate-bench")
ab = load_perf_script(AGG_BENCH, "perf_aggregate_bench")


def test_config_has_the_aggregate_and_one_proxied_route_per_upstream():
    text = ab.config(8080, {"a": "127.0.0.1:1", "b": "127.0.0.1:2"}, 2)
    assert "path_exact: /agg" in text and "aggregate:" in text
    assert "{ key: a, upstream: a, path: /x }" in text and "{ key: b, upstream: b, path: /x }" in text
    assert "path_prefix: /d/a" in text and "strip_prefix: /d/b" in text


def test_percentile():
    assert ab.pct([3, 1, 2, 4], 0.5) == 3
    assert ab.pct([1], 0.9) == 1


def test_a_short_real_run(tmp_path):
    out = tmp_path / "agg.json"
    r = subprocess.run([sys.executable, AGG_BENCH, "--samples", "5", "--clients", "2",
                        "--duration", "0.5", "--json", str(out)],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "RINGWAY_BIN": os.path.relpath(RINGWAY, ROOT)})
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["failures"] == 0 and res["agg_rps"] > 0 and res["seq_units_per_s"] > 0, res
    assert res["latency_ms"]["agg"] < res["latency_ms"]["sum"], res
