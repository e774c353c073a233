"""AIcrowd submission tools: `./run.sh --validate`, `--evaluate`, `--submit`.

Real parts run for real: the preflight on the repository and on temporary git copies of it, real procgen
and RLlib training and rollouts under `--evaluate`, and the real `aicrowd` CLI (aicrowd-cli 0.1.18) pushing
a submission tag to a local bare git remote whose path contains gitlab.aicrowd.com.

Mocked, because AIcrowd's servers cannot be reached from here: the web API. A stub HTTPS server on
127.0.0.1 (self-signed certificate made with openssl; RAILS_HOST, AICROWD_API_ENDPOINT and GITLAB_HOST point
the CLI at it) answers the CLI's API-key, challenge and registration requests. HOME is a temporary
directory, so the CLI's config (~/.config/aicrowd-cli) never touches a real one.
"""

import http.server
import json
import math
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from aicrowd_tools import evaluate, gitrepo, preflight, submit
from aicrowd_tools.grader import CHALLENGE_SLUG, GRADER_ID, parse_games
from envs.games import GAMES, ROUND2_GAMES, normalized_score
from tests.conftest import ROOT
from utils.errors import UserError

STARTER = ROOT / "experiments" / "procgen-starter-example.yaml"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv*", "outputs", "__pycache__", ".pytest_cache", ".ruff_cache")
GIT_ID = ["-c", "user.name=Test Participant", "-c", "user.email=participant@example.com"]


def sh(*args, cwd, env=None, timeout=None):
    """Run a command (run.sh, git, aicrowd) as a user would; the CompletedProcess."""
    return subprocess.run([str(a) for a in args], cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def git(repo, *args):
    proc = sh("git", *GIT_ID, *args, cwd=repo)
    assert proc.returncode == 0, f"git {args}: {proc.stderr}"
    return proc.stdout


# --------------------------------------------------------------------------- temporary copies of the repository


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A clean clone's worth of this repository in a fresh git repo with one commit (the .venv is linked)."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    shutil.copytree(ROOT, repo, ignore=COPY_IGNORE, symlinks=True)
    if (ROOT / ".venv").is_dir():
        (repo / ".venv").symlink_to(ROOT / ".venv")  # run.sh in the copy uses the same venv instead of building one
    git(repo, "init", "-q", "-b", "main")
    (repo / ".git" / "info" / "exclude").write_text(".venv\n")
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "-m", "starter kit")
    return repo


@pytest.fixture
def repo(template, tmp_path):
    """A throwaway copy of the template repository for one test to break."""
    copy = tmp_path / "repo"
    shutil.copytree(template, copy, symlinks=True)
    return copy


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(json.dumps(data, indent=2))


def edit_experiment(path, stop=None, **config):
    data = yaml.safe_load(path.read_text())
    (spec,) = data.values()
    spec["stop"].update(stop or {})
    spec["config"].update(config)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def check(repo, name, envs="", experiment="experiments/impala-baseline.yaml"):
    """Run one preflight check on `repo`; its Result."""
    ctx = preflight.Context(repo, experiment, envs)
    return preflight.run_check(name, preflight.SUBMIT_CHECKS[name], ctx)


# --------------------------------------------------------------------------- --validate


def test_validate_passes_on_the_repository_as_shipped():
    proc = sh("./run.sh", "--validate", cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for name in preflight.VALIDATE_CHECKS:
        assert any(line.startswith(f"{name}: ok, ") for line in lines), f"no passing line for {name}:\n{proc.stdout}"
    assert lines[-1] == f"preflight: passed, {len(preflight.VALIDATE_CHECKS)} checks"
    assert "8,000,000 env steps" in proc.stdout and "games: ok, 16 games" in proc.stdout, "all 16: private games can be any"


def test_validate_fails_with_a_message_and_nonzero_exit(repo):
    edit_json(repo / "aicrowd.json", gpu="true")
    proc = sh("./run.sh", "--validate", cwd=repo, env={"ENVS": "coinrun,bigfsh"})
    assert proc.returncode == 1
    assert 'aicrowd.json: FAIL, aicrowd.json: "gpu" is "true" but must be true or false (no quotes)' in proc.stdout
    assert 'games: FAIL, Unknown game "bigfsh" in ENVS. Did you mean "bigfish"?' in proc.stdout
    assert f"preflight: failed, 2 of {len(preflight.VALIDATE_CHECKS)} checks (aicrowd.json, games)" in proc.stdout
    assert "experiment: ok" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("changes, message", [
    ({"gpu": ...}, '"gpu" is missing: add "gpu": true'),
    ({"authors": "me"}, '"authors" is "me" but must be a list'),
    ({"challenge_id": 12}, '"challenge_id" is 12 but must be a string'),
    ({"grader_id": "procgen"}, f'"grader_id" is "procgen" but must be "{GRADER_ID}"'),
    ({"debug": None, "docker_build": ...}, '"debug" is null but must be true or false (no quotes), e.g. "debug": false; '
                                           '"docker_build" is missing'),
])
def test_aicrowd_json_fields_and_types(repo, changes, message):
    edit_json(repo / "aicrowd.json", **changes)
    result = check(repo, "aicrowd.json")
    assert not result.ok and message in result.detail


def test_aicrowd_json_syntax_error_names_the_line(repo):
    (repo / "aicrowd.json").write_text('{\n  "gpu": true,\n}\n')
    result = check(repo, "aicrowd.json")
    assert not result.ok and "aicrowd.json is not valid JSON" in result.detail and "line 3" in result.detail


def test_step_budget_over_8m_fails(repo):
    edit_experiment(repo / "experiments" / "impala-baseline.yaml", stop={"timesteps_total": 9_000_000})
    result = check(repo, "step budget")
    assert not result.ok
    assert "9,000,000 env steps (stop.timesteps_total 9,000,000) is over the grader's 8,000,000" in result.detail
    assert "Set stop.timesteps_total to at most 8000000 in experiments/impala-baseline.yaml" in result.detail


def test_step_budget_counts_skipped_frames(repo):
    """No env here repeats actions yet, so the experiment is a stand-in with env_config.frame_skip (a mock)."""
    ctx = preflight.Context(repo, "experiments/x.yaml")
    ctx.cache["exp"] = SimpleNamespace(stop={"timesteps_total": 3_000_000}, config={"env_config": {"frame_skip": 4}})
    result = preflight.run_check("step budget", preflight.check_step_budget, ctx)
    assert not result.ok and "12,000,000 env steps (stop.timesteps_total 3,000,000 x frame skip 4)" in result.detail
    assert "at most 2000000" in result.detail


def test_step_budget_must_exist(repo):
    path = repo / "experiments" / "impala-baseline.yaml"
    data = yaml.safe_load(path.read_text())
    data["procgen-ppo"]["stop"] = {"training_iteration": 100}
    path.write_text(yaml.safe_dump(data))
    result = check(repo, "step budget")
    assert not result.ok and "has no stop.timesteps_total" in result.detail


def test_more_workers_than_the_grader_has_fails(repo):
    edit_experiment(repo / "experiments" / "impala-baseline.yaml", num_env_runners=12)
    result = check(repo, "resources")
    assert not result.ok
    assert "14 vCPUs (12 env runners + the grader's evaluation runner, x 1 each, + 1 for the learner)" in result.detail
    assert "but the grader has 8" in result.detail and "Lower config.num_env_runners to at most 6" in result.detail


def test_ppgs_auxiliary_buffer_must_fit_the_graders_memory(repo):
    """Issue 16: PPG keeps n_pi train batches of frames for its auxiliary phase; --validate checks them against
    the grader machine's 61 GiB before a submission is killed for memory n_pi iterations into grading."""
    shipped = check(repo, "resources", experiment="experiments/ppg.yaml")
    assert shipped.ok and "auxiliary buffer 6.0 GiB <= 61 GiB" in shipped.detail, shipped.detail
    edit_experiment(repo / "experiments" / "ppg.yaml", n_pi=200)  # 37.5 GiB: fits, with a note
    tight = check(repo, "resources", experiment="experiments/ppg.yaml")
    assert tight.ok and "note: PPG's auxiliary buffer needs 37.5 GiB" in tight.detail, tight.detail
    edit_experiment(repo / "experiments" / "ppg.yaml", n_pi=300)
    result = check(repo, "resources", experiment="experiments/ppg.yaml")
    assert not result.ok
    assert result.detail.endswith(
        "PPG's auxiliary buffer needs 56.3 GiB (300 train batches (n_pi) x 16,384 frames x 12,292 bytes), over 80% of "
        "the 61.0 GiB of memory the grader's machine has (Ray, the env runners and the learner need the rest). Lower "
        "n_pi (each auxiliary phase then replays fewer batches) in experiments/ppg.yaml."), result.detail
    assert "auxiliary buffer" not in check(repo, "resources").detail, "PPO keeps no replay"


def test_the_graders_evaluation_runner_counts_unless_disabled(repo):
    """The 2020 kit's rule: runners + 1 evaluation runner + the learner <= 8, unless disable_evaluation_worker: true."""
    path = repo / "experiments" / "impala-baseline.yaml"
    edit_experiment(path, num_env_runners=7, num_envs_per_env_runner=8, rollout_fragment_length=256,
                    train_batch_size=7 * 8 * 256)
    result = check(repo, "resources")
    assert not result.ok and result.detail.startswith("9 vCPUs (7 env runners + the grader's evaluation runner"), result.detail
    data = yaml.safe_load(path.read_text())
    (spec,) = data.values()
    spec["disable_evaluation_worker"] = True
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = check(repo, "resources")
    assert result.ok and result.detail.startswith(
        "8 vCPUs (7 env runners x 1 + 1 for the learner; no evaluation runner: disable_evaluation_worker) <= 8"), result.detail
    assert check(repo, "rllib config").ok


def test_gpu_shares_over_one_fail(repo):
    edit_experiment(repo / "experiments" / "impala-baseline.yaml", num_gpus=0.5, num_gpus_per_env_runner=0.25)
    result = check(repo, "resources")  # 0.5 + 5 runners (4 + the grader's evaluation runner) x 0.25
    assert not result.ok and "GPU shares sum to 1.75" in result.detail and "the grader has 1 GPU" in result.detail


def test_validate_runs_rllibs_own_checks_on_the_kits_batch(repo):
    """The 2020 kit's 6 runners x 12 envs x 256 steps with its train_batch_size 16384: RLlib refuses that batch
    (not within 10% of a multiple of 18,432), so --validate must too; 18,432 passes both."""
    path = repo / "experiments" / "impala-baseline.yaml"
    edit_experiment(path, num_env_runners=6, num_envs_per_env_runner=12, rollout_fragment_length=256,
                    train_batch_size=16384)
    assert check(repo, "resources").ok, "the CPU arithmetic alone fits: 6 + 1 + 1 = 8"
    result = check(repo, "rllib config")
    assert not result.ok and "RLlib refused the config" in result.detail and "num_env_runners=6" in result.detail
    assert "as trained on the grader: 7 CPUs and 1 GPU beside its evaluation runner" in result.detail
    from utils.config import build_algorithm_config, load_experiment

    with pytest.raises(UserError, match="cannot be achieved"):  # what training itself says on the grader
        build_algorithm_config(load_experiment(path, cpus=7, gpus=1))
    edit_experiment(path, train_batch_size=6 * 12 * 256)
    result = check(repo, "rllib config")
    assert result.ok and "6 env runners x 12 envs x 256 steps, train batch 18432" in result.detail, result.detail
    build_algorithm_config(load_experiment(path, cpus=7, gpus=1))


def test_gpu_asked_but_aicrowd_json_says_no_gpu(repo):
    edit_json(repo / "aicrowd.json", gpu=False)
    result = check(repo, "resources")
    assert not result.ok and '"gpu": false, so the grader gives no GPU' in result.detail


def test_unknown_game_in_envs_fails(repo):
    result = check(repo, "games", envs="coinrun miner ninjaa")
    assert not result.ok and 'Unknown game "ninjaa" in ENVS. Did you mean "ninja"?' in result.detail
    assert check(repo, "games", envs="all").detail.startswith("16 games known")


def test_game_the_experiment_refuses_fails(repo):
    """memory mode exists for six games only: the grader's other games would crash the run."""
    edit_experiment(repo / "experiments" / "impala-baseline.yaml", env_config={"env_name": "miner", "distribution_mode": "memory"})
    result = check(repo, "games", envs="miner,bigfish")
    assert not result.ok and "refuses game bigfish" in result.detail


def test_file_over_30mb_in_a_dirty_tree_fails(repo):
    with open(repo / "weights.bin", "wb") as f:
        f.truncate(31 * 1024 * 1024)  # sparse: 31 MB on paper, no disk used
    result = check(repo, "file sizes")
    assert not result.ok and "weights.bin (31.0 MB)" in result.detail and ".gitignore" in result.detail
    (repo / ".gitignore").write_text((repo / ".gitignore").read_text() + "weights.bin\n")
    assert check(repo, "file sizes").ok, "an ignored file is not pushed"


def test_run_sh_must_be_executable(repo):
    (repo / "run.sh").chmod(0o644)
    result = check(repo, "run.sh")
    assert not result.ok and "chmod +x run.sh" in result.detail


def test_requirements_must_be_pinned(repo):
    with open(repo / "requirements.txt", "a") as f:
        f.write("scipy>=1.10\n")
    result = check(repo, "requirements")
    assert not result.ok and "scipy>=1.10" in result.detail and "name==version" in result.detail


def test_dockerfile_must_exist_install_the_requirements_and_be_used(repo):
    """The grader builds the root Dockerfile only with docker_build true; its 2020 default image cannot install ray 2.60."""
    shipped = check(repo, "Dockerfile")
    assert shipped.ok and "FROM nvidia/cuda:12" in shipped.detail and "installs requirements.txt" in shipped.detail

    dockerfile = repo / "Dockerfile"
    text = dockerfile.read_text()
    dockerfile.write_text(text.replace("-r /tmp/requirements.txt", "ray[rllib]==2.60.0"))
    result = check(repo, "Dockerfile")
    assert not result.ok and "does not install the pinned requirements.txt" in result.detail
    assert "RUN pip install -r /tmp/requirements.txt" in result.detail, "the fix is named"

    dockerfile.write_text(text.replace("COPY requirements.txt /tmp/requirements.txt\n", ""))
    result = check(repo, "Dockerfile")
    assert not result.ok and "does not install" in result.detail, "installing a file never copied in does not count"

    dockerfile.unlink()
    result = check(repo, "Dockerfile")
    assert not result.ok and result.detail.startswith("Dockerfile is missing")

    dockerfile.write_text(text)
    edit_json(repo / "aicrowd.json", docker_build=False)
    result = check(repo, "Dockerfile")
    assert not result.ok and '"docker_build": false' in result.detail and 'Set "docker_build": true' in result.detail


def test_dockerfile_context_over_30mb_fails_unless_dockerignored(repo):
    (repo / "outputs").mkdir()
    with open(repo / "outputs" / "big.bin", "wb") as f:
        f.truncate(31 * 1024 * 1024)  # sparse
    assert check(repo, "Dockerfile").ok, ".dockerignore keeps outputs/ out of the image"
    with open(repo / "models" / "weights.bin", "wb") as f:
        f.truncate(31 * 1024 * 1024)
    result = check(repo, "Dockerfile")
    assert not result.ok and "models/weights.bin (31 MB)" in result.detail and ".dockerignore" in result.detail
    (repo / ".dockerignore").write_text((repo / ".dockerignore").read_text() + "**/*.bin\n!keep.bin\n")
    assert check(repo, "Dockerfile").ok


def test_no_aicrowd_remote_and_not_logged_in(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    remote = check(repo, "git remote")
    assert not remote.ok and "no git remote for AIcrowd" in remote.detail and "git remote add aicrowd" in remote.detail
    login = check(repo, "login")
    assert not login.ok and "not logged in to AIcrowd" in login.detail and "aicrowd login" in login.detail
    git(repo, "remote", "add", "origin", "git@gitlab.aicrowd.com:participant/procgen.git")
    no_upstream = check(repo, "git remote")
    assert not no_upstream.ok and "Fix: git push -u origin main" in no_upstream.detail, "the CLI's bare `git push` would fail"
    git(repo, "config", "branch.main.remote", "origin")
    assert check(repo, "git remote").ok, "a remote on gitlab.aicrowd.com counts, as for the CLI"


# --------------------------------------------------------------------------- --evaluate


TINY = """\
tiny-eval:
  run: PPO
  env: procgen_env_wrapper
  stop: {timesteps_total: 8000000}
  checkpoint_freq: 0
  checkpoint_at_end: true
  config:
    env_config: {env_name: coinrun, distribution_mode: easy}
    framework: torch
    num_epochs: 1
    train_batch_size: 1024
    minibatch_size: 256
    model:
      custom_model: impala_cnn_torch
      custom_model_config: {depths: [8, 16, 16], dense_size: 128}
    num_env_runners: 0
    num_envs_per_env_runner: 8
    rollout_fragment_length: 128
"""


def check_default_track_report(proc, eval_dir, key, games, timesteps):
    """What `--evaluate` on the default track (NUM_LEVELS unset) must leave for `games`, trained with experiment
    `key` for `timesteps` steps each: real rollouts scored by the normalization constants, the grader's outputs
    layout, evaluation.json / .md / .png and the summary lines."""
    report = json.loads((eval_dir / "evaluation.json").read_text())
    assert [r["game"] for r in report["results"]] == games and not report.get("num_levels")
    for row in report["results"]:
        game_dir = eval_dir / row["game"]
        rollout = json.loads((game_dir / "rollout.json").read_text())
        returns = [e["return"] for e in rollout["per_episode"]]
        assert row["status"] == "ok" and row["stopped_by"] == "timesteps_total" and row["env_steps"] == timesteps
        assert row["episodes"] == len(returns) and rollout["env_name"] == row["game"]
        assert row["mean_return"] == pytest.approx(sum(returns) / len(returns))
        game = GAMES[row["game"]]
        assert row["normalized_score"] == pytest.approx((row["mean_return"] - game.easy_min) / (game.easy_max - game.easy_min))
        # As on the grader: the game's own OUTPUTS_DIR and env_name; --rollout found the checkpoint --train wrote.
        run_dir = game_dir / "outputs" / key / row["game"]
        assert Path(row["checkpoint"]).parent == run_dir / "checkpoints"
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())[key]
        assert saved["config"]["env_config"]["env_name"] == row["game"] and saved["stop"]["timesteps_total"] == timesteps
    scores = [r["normalized_score"] for r in report["results"]]
    assert report["mean_normalized_score"] == pytest.approx(sum(scores) / len(scores))
    assert report["settings"]["timesteps"] == timesteps and report["settings"]["cpus"] <= 8

    table = (eval_dir / "evaluation.md").read_text()
    assert "| game | env steps | train wall (s) | stopped by | steps/s | episodes | mean return | normalized score |" in table
    for row in report["results"]:
        assert f"| {row['game']} | {timesteps:,} | " in table and f"| {row['normalized_score']:.3f} |" in table
    assert f"**{report['mean_normalized_score']:.3f}**" in table
    assert table in proc.stdout and f"mean_normalized_score: {report['mean_normalized_score']:.4f}" in proc.stdout

    png = (eval_dir / "normalized_scores.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


def shrunk(name, tmp_path, **config):
    """experiments/NAME.yaml as shipped, with the sizes of TINY (and `config`) so one game trains in seconds."""
    (key, spec), = yaml.safe_load((ROOT / "experiments" / name).read_text()).items()
    spec["config"].update({"train_batch_size": 1024, "minibatch_size": 256, "num_env_runners": 0,
                           "num_envs_per_env_runner": 8, "rollout_fragment_length": 128, **config})
    spec["config"]["model"]["custom_model_config"] = {"depths": [8, 16, 16], "dense_size": 128}
    path = tmp_path / name
    path.write_text(yaml.safe_dump({key: spec}))
    return key, path


@pytest.mark.parametrize("name, config, env", [
    ("ppg.yaml", {"n_pi": 2, "aux_minibatch_size": 256, "train_batch_size": 512, "rollout_fragment_length": 64}, {}),
    ("drac.yaml", {}, {"NUM_LEVELS": "200"}),
])
def test_evaluate_grades_ppg_and_drac_as_shipped_at_a_tiny_budget(tmp_path, name, config, env):
    """Issue 16: the winners' methods go through the grader's path; PPG with n_pi 2 runs its auxiliary phase after
    the second of its two iterations. PPG runs the default track (its report checked in full), DrAC the
    generalization track (test_evaluate_generalization_track_scores_training_and_unseen_levels checks that one's
    report on two games)."""
    key, experiment = shrunk(name, tmp_path, **config)
    proc = sh("./run.sh", "--evaluate", cwd=ROOT, env={"EXPERIMENT": str(experiment), "ENVS": "bigfish", "TIMESTEPS": "1024",
                                                        "EPISODES": "2", "OUTPUTS_DIR": str(tmp_path / "out"), **env})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (eval_dir,) = (tmp_path / "out" / "evaluation").iterdir()
    (row,) = json.loads((eval_dir / "evaluation.json").read_text())["results"]
    assert row["status"] == "ok" and row["env_steps"] == 1024 and row["episodes"] == 2
    run_dir = eval_dir / "bigfish" / "outputs" / key / "bigfish"
    results = [json.loads(line) for line in (run_dir / "result.json").read_text().splitlines()]
    stats = "info/learner/default_policy/learner_stats/"  # result.json's keys are flattened
    if name == "ppg.yaml":
        check_default_track_report(proc, eval_dir, key, ["bigfish"], 1024)
        assert [r[stats + "aux_phases"] for r in results] == [0, 1] and results[-1][stats + "aux_samples"] >= 1024
        assert "aux_vf_true" not in str(results[0]) and math.isfinite(results[1][stats + "aux_vf_true"])
    else:
        assert results[-1][stats + "drac_regularizer"] > 0


def test_evaluate_generalization_track_scores_training_and_unseen_levels(tmp_path):
    """NUM_LEVELS=200: train on levels [0, 200), score on unseen levels [200, 2**31 - 1) and on the training ones."""
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(TINY)
    env = {"EXPERIMENT": str(experiment), "ENVS": "bigfish,starpilot", "TIMESTEPS": "1024", "EPISODES": "2",
           "NUM_LEVELS": "200", "WEIGHTS": "bigfish:1/12,starpilot:1/8", "OUTPUTS_DIR": str(tmp_path / "out")}
    proc = sh("./run.sh", "--evaluate", cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (eval_dir,) = (tmp_path / "out" / "evaluation").iterdir()
    report = json.loads((eval_dir / "evaluation.json").read_text())
    assert report["track"] == "generalization" and report["num_levels"] == 200
    assert report["train_levels"] == [0, 200] and report["test_levels"] == [200, 2**31 - 1]
    assert [r["game"] for r in report["results"]] == ["bigfish", "starpilot"], "in ENVS order"
    for row in report["results"]:
        game_dir = eval_dir / row["game"]
        run_dir = game_dir / "outputs" / "tiny-eval" / row["game"]
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())["tiny-eval"]
        assert saved["config"]["env_config"]["num_levels"] == 200 and saved["config"]["env_config"]["start_level"] == 0
        # Each game trained and rolled out as itself, from the checkpoint its own training wrote.
        assert saved["config"]["env_config"]["env_name"] == row["game"] and saved["stop"]["timesteps_total"] == 1024
        assert Path(row["checkpoint"]).parent == run_dir / "checkpoints"
        on_train = json.loads((game_dir / "rollout-train-levels.json").read_text())
        on_test = json.loads((game_dir / "rollout.json").read_text())
        assert on_train["env_name"] == on_test["env_name"] == row["game"]
        assert on_train["levels"] == {"start_level": 0, "num_levels": 200}
        assert on_test["levels"] == {"start_level": 200, "num_levels": 2**31 - 1 - 200}, "no training level can come up"
        assert row["status"] == "ok" and row["train_levels_episodes"] == row["episodes"] == 2
        assert row["stopped_by"] == "timesteps_total" and row["env_steps"] == 1024
        assert row["train_levels_normalized_score"] == pytest.approx(normalized_score(row["game"], on_train["mean_return"]))
        assert row["normalized_score"] == pytest.approx(normalized_score(row["game"], on_test["mean_return"]))
    scores = {r["game"]: r["normalized_score"] for r in report["results"]}
    train_scores = [r["train_levels_normalized_score"] for r in report["results"]]
    assert report["mean_normalized_score"] == pytest.approx(sum(scores.values()) / 2), "the grade is the unseen levels'"
    assert report["mean_train_levels_normalized_score"] == pytest.approx(sum(train_scores) / 2)
    weighted = (scores["bigfish"] / 12 + scores["starpilot"] / 8) / (1 / 12 + 1 / 8)
    assert report["weighted_mean_normalized_score"] == pytest.approx(weighted)

    table = (eval_dir / "evaluation.md").read_text()
    assert ("| game | env steps | train wall (s) | stopped by | steps/s | episodes | train-level return | train-level score | "
            "test-level return | test-level score | weight |") in table
    assert "| bigfish | 1,024 | " in table and " | 1/12 |" in table and " | 1/8 |" in table
    assert f"| **mean** | | | | | | | **{report['mean_train_levels_normalized_score']:.3f}** | | **{report['mean_normalized_score']:.3f}** | |" in table
    assert "| **weighted mean** | | | | | | | " in table and f"**{weighted:.3f}** | |" in table
    assert table in proc.stdout
    assert f"weighted_mean_normalized_score: {weighted:.4f}" in proc.stdout
    assert "track: generalization: trains on levels [0, 200), scored on unseen levels [200, 2147483647)" in proc.stdout
    png = (eval_dir / "normalized_scores.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


def test_evaluate_refuses_bad_levels_and_weights_before_training(tmp_path):
    out = tmp_path / "out"
    proc = sh("./run.sh", "--evaluate", cwd=ROOT, env={"NUM_LEVELS": "lots", "OUTPUTS_DIR": str(out)})
    assert proc.returncode == 2 and not out.exists() and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: NUM_LEVELS=lots is not a number of levels. Allowed: a whole number from 0 (unlimited levels, the default "
        "track) to 2147483646. For the 2020 generalization track use NUM_LEVELS=200; unset it for the default track.")
    games = {"ENVS": "coinrun,bigfish"}
    for env, message in [
        ({"NUM_LEVELS": "-1"}, "NUM_LEVELS=-1 is not a number of levels"),
        ({"NUM_LEVELS": "1.5"}, "NUM_LEVELS=1.5 is not a number of levels"),
        ({**games, "WEIGHTS": "coinrun:1/12,bigfsh:1/12"}, 'Unknown game "bigfsh" in WEIGHTS. Did you mean "bigfish"?'),
        ({**games, "WEIGHTS": "coinrun:1/12,bigfish:lots"}, 'WEIGHTS: the weight "lots" of bigfish is not a number >= 0'),
        ({**games, "WEIGHTS": "coinrun:1/12,bigfish"}, 'WEIGHTS: "bigfish" is not GAME:WEIGHT'),
        ({**games, "WEIGHTS": "coinrun:1"}, "WEIGHTS gives no weight to bigfish, which ENVS grades"),
        ({**games, "WEIGHTS": "coinrun:1,bigfish:1,miner:1"}, "WEIGHTS weighs miner, which ENVS does not grade"),
        ({**games, "WEIGHTS": "coinrun:0,bigfish:0"}, "WEIGHTS weighs every game 0"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            evaluate.read_settings(env)
    settings = evaluate.read_settings({"ENVS": "coinrun,bigfish,caveflyer", "WEIGHTS": "round2", "NUM_LEVELS": "200"})
    assert settings.weights == {"coinrun": 1 / 12, "bigfish": 1 / 12, "caveflyer": 1 / 8} and settings.num_levels == 200
    assert evaluate.read_settings({}).num_levels == 0 and evaluate.read_settings({}).weights is None


def test_evaluate_time_limit_stops_training_and_rolls_out_the_last_checkpoint(tmp_path):
    """The grader stops training at its wall-clock limit; the checkpoint train.py saves on SIGTERM is used.

    The limit counts train.py's start-up too, and on a loaded machine (the suite runs two tests at a time)
    start-up alone can outlast it: evaluate then reports, rightly, that the limit came before the first
    checkpoint. The test then doubles the limit and runs again, so a slow machine makes it slower, never red."""
    experiment = tmp_path / "random.yaml"
    experiment.write_text((ROOT / "experiments" / "random-policy.yaml").read_text().replace("20000", "8000000"))
    limit = 40
    while True:
        out = tmp_path / f"out-{limit}s"
        env = {"EXPERIMENT": str(experiment), "ENVS": "bigfish", "TIME_LIMIT": f"{limit}s", "EPISODES": "1",
               "OUTPUTS_DIR": str(out)}
        proc = sh("./run.sh", "--evaluate", cwd=ROOT, env=env)
        assert (out / "evaluation").is_dir(), proc.stdout[-4000:] + proc.stderr[-4000:]
        (eval_dir,) = (out / "evaluation").iterdir()
        (row,) = json.loads((eval_dir / "evaluation.json").read_text())["results"]
        if row["status"] == "failed" and f"the time limit ({limit} s) came before the first checkpoint" in row["error"]:
            assert proc.returncode == 1, "a failed game fails the evaluation"
            limit *= 2
            continue
        break
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert row["status"] == "ok" and row["stopped_by"] == "time_limit"
    assert 0 < row["env_steps"] < 8_000_000
    assert "interrupted: SIGTERM received, saving a checkpoint" in (eval_dir / "bigfish" / "train.log").read_text()
    summary = json.loads((eval_dir / "bigfish" / "outputs" / "random-policy" / "bigfish" / "summary.json").read_text())
    assert row["checkpoint"] == summary["checkpoint"], "the rollout used the checkpoint saved at the limit"
    assert row["normalized_score"] == pytest.approx(normalized_score("bigfish", row["mean_return"]))


def test_evaluate_ctrl_c_passes_one_signal_and_keeps_the_finished_games(tmp_path):
    """Ctrl-C (SIGINT to the whole group) while the second game trains: its train.py gets it once and saves.

    Each game stops by its step budget (20 iterations of the random policy), never by a wall-clock limit: on a
    loaded machine start-up alone took longer than the 30 s TIME_LIMIT this test once used, evaluate stopped
    starpilot before its first iteration, and the test waited for a line that could not come."""
    experiment = tmp_path / "random.yaml"
    experiment.write_text((ROOT / "experiments" / "random-policy.yaml").read_text().replace("20000", "8000000"))
    env = {**os.environ, "EXPERIMENT": str(experiment), "ENVS": "bigfish,starpilot", "EPISODES": "1",
           "OUTPUTS_DIR": str(tmp_path / "out"), "PYTHONUNBUFFERED": "1", "TIMESTEPS": "40000"}
    proc = subprocess.Popen(["./run.sh", "--evaluate"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("game: starpilot (2/2), training"):
            break
    (eval_dir,) = (tmp_path / "out" / "evaluation").iterdir()
    train_log = eval_dir / "starpilot" / "train.log"
    while "training_iteration: " not in (train_log.read_text() if train_log.exists() else ""):
        assert proc.poll() is None, "".join(seen) + proc.stdout.read()
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out = "".join(seen) + proc.communicate()[0]
    assert proc.returncode == 128 + signal.SIGINT, out[-4000:]
    assert "interrupted: SIGINT received; passing it to starpilot's training" in out
    assert "interrupted: evaluation stopped after 1 of 2 games" in out
    log = train_log.read_text()
    assert "interrupted: SIGINT received, saving a checkpoint" in log and "second SIGINT" not in log
    report = json.loads((eval_dir / "evaluation.json").read_text())
    assert [r["game"] for r in report["results"]] == ["bigfish"] and report["interrupted"].startswith("SIGINT after 1 of 2")


def test_evaluate_refuses_bad_settings_before_training(tmp_path):
    out = tmp_path / "out"
    proc = sh("./run.sh", "--evaluate", cwd=ROOT, env={"ENVS": "coinrun,bigfsh", "OUTPUTS_DIR": str(out)})
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.strip().splitlines()[-1].startswith('error: Unknown game "bigfsh" in ENVS. Did you mean "bigfish"?')
    assert "Traceback" not in proc.stderr
    for env, message in [
        ({"TIMESTEPS": "9000000"}, "TIMESTEPS=9000000 is over the grader's limit of 8000000"),
        ({"TIMESTEPS": "lots"}, "TIMESTEPS=lots is not a whole number >= 1"),
        ({"TIME_LIMIT": "0"}, "TIME_LIMIT=0 is not a duration"),
        ({"EPISODES": "-1"}, "EPISODES=-1 is not a whole number >= 1"),
    ]:
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            evaluate.read_settings(env)


def test_evaluate_settings_defaults_and_units():
    settings = evaluate.read_settings({"TIME_LIMIT": "30m", "TIMESTEPS": "2_000_000"})
    assert settings.games == ROUND2_GAMES and settings.time_limit == 1800 and settings.timesteps == 2_000_000
    defaults = evaluate.read_settings({})
    assert defaults.timesteps == 8_000_000 and defaults.time_limit == 7200 and defaults.episodes == 5
    assert parse_games("all") == tuple(GAMES) and parse_games("bigfish, coinrun") == ("bigfish", "coinrun")


# --------------------------------------------------------------------------- --submit


class StubAIcrowd(http.server.BaseHTTPRequestHandler):
    """AIcrowd's web API as aicrowd-cli 0.1.18 uses it: API-key check, challenge lookup, registration."""

    good_key = "test-api-key"
    seen = []

    def do_GET(self):  # noqa: N802  (http.server's name)
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        self.seen.append(url.path)
        authorized = self.headers.get("Authorization") == f"Token {self.good_key}"
        if url.path == "/api/v1/api_user":
            return self.reply(200, {"id": 42, "username": "participant"}) if authorized else self.reply(401, {"error": "bad key"})
        if url.path == "/challenges/" and query.get("slug") == [CHALLENGE_SLUG] and authorized:
            return self.reply(200, [{"id": 7, "slug": CHALLENGE_SLUG}])
        if url.path == "/challenges/7/participant" and authorized:
            return self.reply(200, {"registered": True})
        return self.reply(404, {"error": "not here"})

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def aicrowd_api(tmp_path_factory):
    """The stub API over HTTPS on 127.0.0.1 with a self-signed certificate; the env that points the CLI at it."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the stub server's certificate: apt-get install openssl")
    tmp = tmp_path_factory.mktemp("api")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    made = sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
              "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert, cwd=tmp)
    assert made.returncode == 0, made.stderr
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubAIcrowd)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    yield {"RAILS_HOST": host, "AICROWD_API_ENDPOINT": f"https://{host}", "GITLAB_HOST": host,
           "REQUESTS_CA_BUNDLE": str(cert), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    server.shutdown()


@pytest.fixture
def participant(repo, tmp_path, aicrowd_api, monkeypatch):
    """The repo copy with an `aicrowd` remote (a bare repo under .../gitlab.aicrowd.com/...) and a temp HOME."""
    remote = tmp_path / "gitlab.aicrowd.com" / "participant" / "procgen.git"
    remote.parent.mkdir(parents=True)
    git(tmp_path, "init", "-q", "--bare", remote)
    git(repo, "remote", "add", "aicrowd", remote)
    git(repo, "push", "-q", "-u", "aicrowd", "main")  # as the README says: the CLI's `git push aicrowd` needs it
    home = tmp_path / "home"
    config = home / ".config" / "aicrowd-cli" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("disable_update_check = true\n")  # no call to pypi.org from the CLI
    env = {**aicrowd_api, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return SimpleNamespace(repo=repo, remote=remote, env=env, config=config)


def aicrowd_login(participant, key=StubAIcrowd.good_key):
    proc = sh(submit.find_cli(), "login", "--api-key", key, cwd=participant.repo, env=participant.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def remote_tags(remote):
    return (sh("git", "tag", "--list", cwd=remote).stdout or "").split()


def test_submit_pushes_a_submission_tag_with_the_committed_tree(participant):
    aicrowd_login(participant)
    assert 'aicrowd_api_key = "test-api-key"' in participant.config.read_text()
    (participant.repo / "NOTES.md").write_text("tried a smaller learning rate\n")  # a dirty tree: the CLI commits it
    StubAIcrowd.seen.clear()
    proc = sh("./run.sh", "--submit", "PPO baseline v1", cwd=participant.repo, env=participant.env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"preflight: passed, {len(preflight.SUBMIT_CHECKS)} checks" in proc.stdout
    assert "note: the CLI first commits 1 changed file(s) (git add --all): NOTES.md" in proc.stdout
    assert "tag: submission-ppo-baseline-v1" in proc.stdout
    assert "watch: https://gitlab.aicrowd.com/" in proc.stdout and "/participant/procgen/-/issues" in proc.stdout
    assert {"/api/v1/api_user", "/challenges/", "/challenges/7/participant"} <= set(StubAIcrowd.seen)

    assert remote_tags(participant.remote) == ["submission-ppo-baseline-v1"]
    local_tree = git(participant.repo, "rev-parse", "HEAD^{tree}").strip()
    remote_tree = sh("git", "rev-parse", "submission-ppo-baseline-v1^{tree}", cwd=participant.remote).stdout.strip()
    assert remote_tree == local_tree
    files = sh("git", "ls-tree", "-r", "--name-only", "submission-ppo-baseline-v1", cwd=participant.remote).stdout.split()
    assert {"aicrowd.json", "run.sh", "NOTES.md", "train.py", "rollout.py"} <= set(files)
    assert git(participant.repo, "status", "--porcelain") == ""


def test_submit_after_a_failed_preflight_pushes_nothing(participant):
    aicrowd_login(participant)
    edit_json(participant.repo / "aicrowd.json", authors="me")
    proc = sh("./run.sh", "--submit", "broken", cwd=participant.repo, env=participant.env)
    assert proc.returncode == 1
    assert '"authors" is "me" but must be a list' in proc.stdout
    assert "submit: nothing was submitted." in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    assert remote_tags(participant.remote) == [] and gitrepo.tags(participant.repo) == set()


def test_submit_with_an_invalid_api_key_pushes_nothing(participant):
    """The key was valid at login and revoked since: the real CLI refuses it, and the wrapper says so."""
    aicrowd_login(participant)
    participant.config.write_text(participant.config.read_text().replace(StubAIcrowd.good_key, "revoked-key"))
    with pytest.raises(UserError, match=r"aicrowd submission create failed \(exit \d+\): Credential Error: Your API Key is invalid"):
        submit.push(participant.repo, "try")
    assert remote_tags(participant.remote) == [] and gitrepo.tags(participant.repo) == set()


def test_submit_needs_a_description():
    proc = sh(sys.executable, "-m", "aicrowd_tools", "submit", cwd=ROOT)
    assert proc.returncode == 2 and 'error: a description is required: ./run.sh --submit "what this submission tries"' in proc.stderr


def test_sourcing_run_sh_sets_the_experiment_as_aicrowds_tools_read_it(tmp_path):
    """AIcrowd's tools run `source ./run.sh > /dev/null; echo $EXPERIMENT`: the variables are set, nothing is run,
    and the caller's shell goes on with its own options and directory."""
    read = subprocess.run(["bash", "-c", "source ./run.sh > /dev/null; echo \"$EXPERIMENT\""], cwd=ROOT,
                          capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "EXPERIMENT"})
    assert read.returncode == 0 and read.stdout == "experiments/impala-baseline.yaml\n" and read.stderr == ""
    chosen = subprocess.run(["bash", "-c", f"cd {tmp_path} && EXPERIMENT=experiments/procgen-starter-example.yaml && "
                             f"source {ROOT / 'run.sh'} && echo \"$EXPERIMENT $PWD $-\""],
                            capture_output=True, text=True)
    experiment, cwd, flags = chosen.stdout.split()
    assert chosen.returncode == 0 and experiment == "experiments/procgen-starter-example.yaml"
    assert cwd == str(tmp_path) and "e" not in flags and "u" not in flags, "no cd, no set -eu leaked into the caller"
    usage = subprocess.run(["./run.sh"], cwd=ROOT, capture_output=True, text=True)
    assert "./run.sh --train" in usage.stdout, "run as a command with no arguments it still prints its usage"
