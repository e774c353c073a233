"""The bench's pieces run at toy sizes and produce well-formed output. Speeds are never asserted."""

import json
import shutil
import tempfile

from tests.conftest import run_script


def test_quick_bench_writes_table_and_json(tmp_path):
    proc = run_script("scripts/bench.py", "--quick", "--repeats", "1", "--iterations", "1", "--games", "coinrun",
                      "--out", tmp_path, check=True)
    data = json.loads((tmp_path / "bench.json").read_text())
    figures = [(r["figure"], r.get("game") or r.get("framework")) for r in data["rows"]]
    assert figures == [("procgen_raw", "coinrun"), ("vector_env", "coinrun"),
                       ("rllib_sampling", "tf"), ("compute_ceiling", "tf"), ("full_training", "tf"),
                       ("rllib_sampling", "torch"), ("compute_ceiling", "torch"), ("full_training", "torch"),
                       ("full_training", "torch")]
    # The last row is PPG (experiments/ppg.yaml, n_pi 1: every timed iteration pays an auxiliary phase), against
    # the torch baseline.
    ppg = data["rows"][-1]
    assert ppg["experiment"] == "ppg" and ppg["reference"] == "full_training torch"
    assert ppg["ratio"] == ppg["median"] / data["rows"][-2]["median"] and ppg["phases_s"]["aux_phase"] > 0
    assert "full_training_torch_ppg_steps_per_second: " in proc.stdout
    for row in data["rows"]:
        assert row["min"] <= row["median"] <= row["max"] and row["median"] > 0
    ratios = {(r["figure"], r.get("game") or r.get("framework")): r["ratio"] for r in data["rows"] if "ratio" in r}
    rows = {(r["figure"], r.get("game") or r.get("framework")): r["median"] for r in data["rows"]}
    assert ratios[("full_training", "tf")] == rows[("full_training", "tf")] / rows[("compute_ceiling", "tf")]
    assert data["machine"]["cores"] >= 1 and data["machine"]["packages"]["ray"] == "2.60.0"
    table = (tmp_path / "bench.md").read_text()
    assert "| full_training | torch |" in table and "QUICK MODE" in table
    assert "full_training_tf_steps_per_second: " in proc.stdout
    phases = {r["framework"]: r["phases_s"] for r in data["rows"] if r["figure"] == "full_training" and "experiment" not in r}
    assert set(phases) == {"tf", "torch"} and all(p["sample"] > 0 and p["learn"] > 0 for p in phases.values())
    assert "full_training tf, seconds per iteration by RLlib phase: " in table
    # TF's oneDNN kernels ran in every TF figure (utils turns them on where TF would not), and bench.md says so.
    assert {r["tf_onednn"] for r in data["rows"] if r.get("framework") == "tf"} == {True}
    assert not [r for r in data["rows"] if r.get("framework") == "torch" and "tf_onednn" in r]
    assert "TF oneDNN kernels: on" in table
    assert "| full_training | torch, experiments/ppg.yaml |" in table and "full_training torch ppg, seconds per" in table


def test_bench_refuses_unknown_game(tmp_path):
    proc = run_script("scripts/bench.py", "--games", "coinrn", "--out", tmp_path)
    assert proc.returncode == 2 and 'unknown game "coinrn"' in proc.stderr and "Traceback" not in proc.stderr


def test_quick_sweep_measures_variants_against_the_fitted_reference(tmp_path):
    proc = run_script("scripts/bench.py", "--sweep", "--quick", "--repeats", "1", "--iterations", "1", "--frameworks", "torch",
                      "--out", tmp_path, check=True)
    data = json.loads((tmp_path / "sweep.json").read_text())
    rows = data["rows"]
    assert not [r for r in rows if "error" in r]
    assert rows[0]["variant"] == "fitted" and rows[0]["overrides"] == [] and rows[0]["ratio"] == 1.0
    assert {r["framework"] for r in rows} == {"torch"} and len(rows) >= 3
    for row in rows:
        assert row["min"] <= row["median"] <= row["max"] and row["median"] > 0
        assert row["ratio"] == row["median"] / rows[0]["median"]
        assert len(row["paired_ratios"]) == 1 and row["paired_ratios"][0] == row["median"] / rows[0]["median"]
        assert row["phases_s"]["sample"] > 0 and row["phases_s"]["learn"] > 0  # where the time goes
    # Only the bf16 variant changes what PPO computes; the others are candidates for the defaults.
    assert [r["changes_numerics"] for r in rows if "model.custom_model_config.bf16=true" in r["overrides"]] == [True]
    assert not any(r["changes_numerics"] for r in rows if not any("bf16" in o for o in r["overrides"]))
    # Every variant keeps the train batch: it only changes how the same batch is sampled.
    for row in rows:
        assert max(row["runners"], 1) * row["games_per_runner"] * row["fragment"] == row["train_batch"] == 256
    assert [r["id"] for r in rows] == ["fitted", "runners-1", "games-x2", "games-half", "bf16"]
    assert "| torch | fitted | fitted | `(none)` |" in (tmp_path / "sweep.md").read_text()
    assert "sweep_torch: fitted: " in proc.stdout
    # Repeats run the variants in turn, each one's runs spread over the sweep (here: one repeat, in order).
    order = [line.split(": ")[1].split()[0] for line in proc.stdout.splitlines() if line.startswith("sweep_torch_run: ")]
    assert order == ["fitted", "runners-1", "games-x2", "games-half", "bf16"]


def test_quick_sweep_turns_tf_onednn_off_in_its_variant_only(tmp_path):
    proc = run_script("scripts/bench.py", "--sweep", "--quick", "--repeats", "1", "--iterations", "1", "--frameworks", "tf",
                      "--variants", "tf-onednn-off", "--out", tmp_path, check=True)
    rows = {r["id"]: r for r in json.loads((tmp_path / "sweep.json").read_text())["rows"]}
    assert set(rows) == {"fitted", "tf-onednn-off"} and not [r for r in rows.values() if "error" in r]
    assert rows["fitted"]["tf_onednn"] is True and rows["tf-onednn-off"]["tf_onednn"] is False
    assert rows["tf-onednn-off"]["overrides"] == ["TF_ENABLE_ONEDNN_OPTS=0"] and not rows["tf-onednn-off"]["changes_numerics"]
    assert "| tf | tf-onednn-off | TF's oneDNN kernels off" in (tmp_path / "sweep.md").read_text()
    assert "sweep_tf: TF's oneDNN kernels off (on by default, utils/__init__.py): " in proc.stdout


def test_sweep_refuses_an_unknown_variant(tmp_path):
    # tf-learner-threads-2-1 is a TF variant: with --frameworks torch it would measure nothing but the reference.
    for bad in ("bf61", "tf-learner-threads-2-1"):
        proc = run_script("scripts/bench.py", "--sweep", "--quick", "--frameworks", "torch", "--variants", "bf16", bad, "--out", tmp_path)
        assert proc.returncode == 2 and f'--variants "{bad}" is no variant of torch here' in proc.stderr
        assert "Allowed: fitted, runners-1, games-x2, games-half, bf16" in proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "sweep.json").exists()
    assert "Traceback" not in proc.stderr and not (tmp_path / "sweep.json").exists()


def test_processes_probe_splits_each_phase_by_process():
    ray_tmp = tempfile.mkdtemp(prefix="rb", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    proc = run_script("scripts/bench_processes.py", "--quick", "--framework", "torch", "--set", "num_env_runners=1",
                      "--interval", "0.02", env={"RAY_TMPDIR": ray_tmp}, check=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line and not line.startswith(" "))
    assert lines["env_runners"] == "1"
    for phase in ("sample", "learn"):
        assert float(lines[f"phase_{phase}_s"]) > 0
        for group in ("learner", "env_runners", "ray", "other", "steal"):
            assert float(lines[f"cores_{phase}_{group}"]) >= 0
    # The env runner samples and the learner learns: each phase's work shows in its own process. Only that it
    # shows: how the cores split between the phases depends on what else the machine runs (issue 10).
    assert float(lines["cores_sample_env_runners"]) > 0
    assert float(lines["cores_learn_learner"]) > 0


def test_processes_probe_refuses_bad_input():
    proc = run_script("scripts/bench_processes.py", "--interval", "0")
    assert proc.returncode == 2 and "--interval must be > 0 seconds, got 0.0" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_script("scripts/bench_processes.py", "--set", "num_env_runer=1")
    assert proc.returncode == 2 and 'unknown key "config.num_env_runer". Did you mean "num_env_runners"?' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cpu_description_tells_hosts_with_the_same_model_name_apart():
    # Two 2-core "AMD EPYC" VMs differed 5x in TF's compute ceiling: the vector extensions say why.
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_common import cpu_description

    zen4 = "model name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
    zen3 = "model name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 1\nflags\t\t: fpu sse4_2 avx2\n"
    assert cpu_description(zen4) == "AMD EPYC (family 25 model 17; avx2 avx512f avx512_vnni avx512_bf16)"
    assert cpu_description(zen3) == "AMD EPYC (family 25 model 1; avx2)"
    assert cpu_description("model name\t: Old\nflags\t\t: sse2\n") == "Old (family ? model ?; no avx2)"
