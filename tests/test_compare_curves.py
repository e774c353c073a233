"""scripts/compare_curves.py on synthetic runs: ratios at the published steps, normalized score, PNG, bad input."""

import json
import re

import pytest
import yaml

from scripts.compare_curves import read_reference
from tests.conftest import ROOT, run_script

REFERENCE = read_reference()


def fake_run(root, game, factor, num_levels=0, mode="easy", steps=(100000, 250000, 500000, 1000000), evaluation=None):
    """A run directory as train.py writes it, whose return is `factor` x the published mean at each published step."""
    run_dir = root / "exp" / game
    run_dir.mkdir(parents=True)
    spec = {"exp": {"run": "ProcgenPPO", "config": {"env_config": {
        "env_name": game, "num_levels": num_levels, "distribution_mode": mode}}}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(spec))
    setting = "easy-all" if num_levels == 0 else "easy-200-train"
    published = REFERENCE[(setting, game)]
    lines = [json.dumps({"charts/timesteps_total": 16384, "charts/episode_reward_mean": float("nan")})]
    for step in steps:
        row = {"charts/timesteps_total": step,
               "charts/episode_reward_mean": factor * published.get(step, published[250000])[0]}
        row["info/learner/default_policy/learner_stats/vf_explained_var"] = 0.5
        if evaluation is not None:
            row["evaluation/env_runners/episode_reward_mean"] = evaluation
        lines.append(json.dumps(row))
    (run_dir / "result.json").write_text("\n".join(lines) + "\n")
    return run_dir


def lines_of(stdout, prefix):
    return [dict(re.findall(r"(\w+): ([^,]+)", line)) for line in stdout.splitlines() if line.startswith(prefix)]


def test_ratio_at_each_published_step_reached_and_a_png(tmp_path):
    run = fake_run(tmp_path, "starpilot", 0.5)
    png = tmp_path / "curves.png"
    proc = run_script("scripts/compare_curves.py", run, "--out", png, check=True)
    rows = lines_of(proc.stdout, "run:")
    assert [int(r["steps"]) for r in rows] == [250000, 500000, 1000000]
    assert all(float(r["ratio"]) == pytest.approx(0.5, abs=0.01) for r in rows)
    at_1m = rows[-1]
    assert float(at_1m["vf_explained_var"]) == 0.5
    assert float(at_1m["published"]) == pytest.approx(REFERENCE[("easy-all", "starpilot")][1000000][0])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "normalized:" not in proc.stdout, "one game: no normalized score across games"


def test_no_ratio_to_a_negative_published_mean_and_the_distance_in_sds(tmp_path):
    # fruitbot's published mean at 250k is -1.08: 0.9 x that is a *better* return, which a ratio of 0.90 would hide.
    run = fake_run(tmp_path, "fruitbot", 0.9)
    rows = {int(r["steps"]): r for r in lines_of(run_script("scripts/compare_curves.py", run, "--out", tmp_path / "c.png",
                                                             check=True).stdout, "run:")}
    mean, sd = REFERENCE[("easy-all", "fruitbot")][250000]
    assert mean < 0 and rows[250000]["ratio"] == "n/a"
    assert float(rows[250000]["sd_from_published"]) == pytest.approx(-0.1 * mean / sd, abs=0.01)
    assert float(rows[250000]["sd_from_published"]) > 0
    mean, sd = REFERENCE[("easy-all", "fruitbot")][1000000]
    assert float(rows[1000000]["ratio"]) == pytest.approx(0.9, abs=0.01)
    assert float(rows[1000000]["sd_from_published"]) == pytest.approx(-0.1 * mean / sd, abs=0.01)
    assert float(rows[1000000]["sd_from_published"]) < 0


def test_several_games_get_the_mean_normalized_score(tmp_path):
    runs = [fake_run(tmp_path / game, game, 1.0) for game in ("starpilot", "fruitbot")]
    proc = run_script("scripts/compare_curves.py", *runs, "--out", tmp_path / "c.png", check=True)
    normalized = lines_of(proc.stdout, "normalized:")
    assert [int(n["steps"]) for n in normalized] == [250000, 500000, 1000000]
    assert all(float(n["ratio"]) == pytest.approx(1.0, abs=0.01) for n in normalized)


def test_a_200_level_run_compares_training_and_unseen_levels(tmp_path):
    run = fake_run(tmp_path, "fruitbot", 1.0, num_levels=200, evaluation=2.0)
    proc = run_script("scripts/compare_curves.py", run, "--out", tmp_path / "c.png", check=True)
    settings = {r["setting"] for r in lines_of(proc.stdout, "run:")}
    assert settings == {"easy-200-train", "easy-200-test"}


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nothing", "no config.yaml there"),
    (lambda p: fake_run(p, "starpilot", 1.0, mode="hard"), "has no published PPO curve"),
    (lambda p: fake_run(p, "starpilot", 1.0, num_levels=50), "has no published PPO curve"),
])
def test_bad_input_is_one_line(tmp_path, make, message):
    proc = run_script("scripts/compare_curves.py", make(tmp_path), "--out", tmp_path / "c.png")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and message in proc.stderr and "Traceback" not in proc.stderr


def test_the_shipped_reference_is_the_published_table():
    shared = ROOT.parent / "shared" / "reference" / "ppo-procgen-curves.csv"
    if shared.is_file():
        assert (ROOT / "reference" / "ppo-procgen-curves.csv").read_text() == shared.read_text()
    assert REFERENCE[("easy-all", "starpilot")][1000000] == (8.64, 0.26)
    assert REFERENCE[("easy-all", "fruitbot")][1000000] == (11.2, 1.2)
    assert {s for s, _ in REFERENCE} == {"easy-all", "easy-200-train", "easy-200-test"}
    assert len({g for _, g in REFERENCE}) == 16
