"""The bench's pieces run at toy sizes and produce well-formed output. Speeds are never asserted."""

import json

from tests.conftest import run_script


def test_quick_bench_writes_table_and_json(tmp_path):
    proc = run_script("scripts/bench.py", "--quick", "--repeats", "1", "--iterations", "1", "--games", "coinrun",
                      "--out", tmp_path, timeout=900, check=True)
    data = json.loads((tmp_path / "bench.json").read_text())
    figures = [(r["figure"], r.get("game") or r.get("framework")) for r in data["rows"]]
    assert figures == [("procgen_raw", "coinrun"), ("vector_env", "coinrun"),
                       ("rllib_sampling", "tf"), ("compute_ceiling", "tf"), ("full_training", "tf"),
                       ("rllib_sampling", "torch"), ("compute_ceiling", "torch"), ("full_training", "torch")]
    for row in data["rows"]:
        assert row["min"] <= row["median"] <= row["max"] and row["median"] > 0
    ratios = {(r["figure"], r.get("game") or r.get("framework")): r["ratio"] for r in data["rows"] if "ratio" in r}
    rows = {(r["figure"], r.get("game") or r.get("framework")): r["median"] for r in data["rows"]}
    assert ratios[("full_training", "tf")] == rows[("full_training", "tf")] / rows[("compute_ceiling", "tf")]
    assert data["machine"]["cores"] >= 1 and data["machine"]["packages"]["ray"] == "2.60.0"
    table = (tmp_path / "bench.md").read_text()
    assert "| full_training | torch |" in table and "QUICK MODE" in table
    assert "full_training_tf_steps_per_second: " in proc.stdout


def test_bench_refuses_unknown_game(tmp_path):
    proc = run_script("scripts/bench.py", "--games", "coinrn", "--out", tmp_path, timeout=120)
    assert proc.returncode == 2 and 'unknown game "coinrn"' in proc.stderr and "Traceback" not in proc.stderr
