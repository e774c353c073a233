"""Grade locally as AIcrowd's grader does: per game, `./run.sh --train` then `./run.sh --rollout`, then score.

Each game runs with AICROWD_IS_GRADING set, its own empty OUTPUTS_DIR, a copy of the experiment whose
env_name is the game (the grader replaces it the same way), the grader's 8 vCPU / 1 GPU caps, the step
budget and a wall-clock limit: when the limit is reached, training gets SIGTERM (train.py saves a
checkpoint) and the last checkpoint is rolled out, as on the grader.

Settings (environment variables, as run.sh's others): EXPERIMENT, ENVS (default: the six public round-2
games; `all`: the 16), TIMESTEPS (env steps per game, default and at most 8000000), TIME_LIMIT (wall clock
per game's training, default 2h), EPISODES (rollout episodes, default 5), OUTPUTS_DIR, NUM_LEVELS (the
generalization track: train on levels [0, N), score on unseen ones; tracks.py), WEIGHTS (per-game weights for a
weighted mean beside the plain one).
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aicrowd_tools import tracks
from aicrowd_tools.grader import (
    GRADER_GPUS,
    MAX_ENV_STEPS,
    MAX_TRAIN_SECONDS,
    frame_skip,
    parse_count,
    parse_duration,
    parse_games,
)
from aicrowd_tools.tracks import level_ranges, parse_num_levels, parse_weights
from utils import conventions
from utils.conventions import DEFAULT_EXPERIMENT, DEFAULT_OUTPUTS_DIR
from utils.errors import UserError

GRACE_SECONDS = 120  # after SIGTERM at the time limit, how long train.py may take to save its checkpoint
LOCK_WAIT_S = 20  # how long a signal waits for a report being written


class Current:
    """What a signal handler needs: the child being run and the rows graded so far."""

    guard = None
    child = None
    step = None
    rows = []
    report = None  # (settings, exp, resources, eval_dir) once the evaluation has started


@dataclass
class Settings:
    experiment: str
    games: tuple
    timesteps: int
    time_limit: float
    episodes: int
    outputs_dir: Path
    num_levels: int = 0  # 0: the default track (unlimited levels); N: generalization, train on [0, N)
    weights: dict | None = None  # game -> weight for the weighted mean (WEIGHTS)


def read_settings(environ):
    """Settings from the environment; UserError naming the variable on bad input."""
    games = parse_games(environ.get("ENVS", ""))
    return Settings(
        experiment=environ.get("EXPERIMENT") or DEFAULT_EXPERIMENT,
        games=games,
        num_levels=parse_num_levels(environ.get("NUM_LEVELS")),
        weights=parse_weights(environ.get("WEIGHTS"), games),
        timesteps=parse_count(environ.get("TIMESTEPS") or MAX_ENV_STEPS, "TIMESTEPS", 2048, maximum=MAX_ENV_STEPS),
        time_limit=parse_duration(environ.get("TIME_LIMIT") or MAX_TRAIN_SECONDS, "TIME_LIMIT"),
        episodes=parse_count(environ.get("EPISODES") or 5, "EPISODES", 5),
        outputs_dir=Path(environ.get("OUTPUTS_DIR") or DEFAULT_OUTPUTS_DIR),
    )


def grader_resources(exp, aicrowd_gpu):
    """This machine's CPUs and GPUs, capped at what the grader gives training beside its evaluation runner
    (utils.resources.grader_machine, the rule --validate checks)."""
    from utils.resources import grader_machine

    cpus = min(grader_machine(exp.demand(), exp.evaluation_worker, aicrowd_gpu)[0], len(os.sched_getaffinity(0)))
    gpus = 0
    if aicrowd_gpu:
        try:
            import torch

            gpus = min(GRADER_GPUS, torch.cuda.device_count())
        except ImportError:
            gpus = 0
    return cpus, gpus


def preflight(root, settings):
    """The experiment checks (load, budget, resources, games); UserError when one fails."""
    from aicrowd_tools.preflight import EXPERIMENT_CHECKS, Context, run_checks

    ctx = Context(root, settings.experiment, ",".join(settings.games))
    results = run_checks(ctx, EXPERIMENT_CHECKS)
    if not all(r.ok for r in results):
        raise UserError("the experiment fails the preflight above; nothing was trained. Fix it (./run.sh --validate shows every check).")
    try:
        gpu = ctx.aicrowd_json().get("gpu") is not False
    except Exception:  # noqa: BLE001  (a broken aicrowd.json is --validate's business; assume the GPU)
        gpu = True
    return ctx.exp(), gpu


def game_experiment(settings, game, path):
    """Write the experiment with env_name replaced by `game`, as the grader does; its path."""
    import yaml

    from utils.loader import load_yaml

    data = load_yaml(settings.experiment)
    (name, spec), = data.items()
    config = spec.setdefault("config", {}) or {}
    spec["config"] = config
    env_config = config.get("env_config") or {}
    env_config["env_name"] = game
    if settings.num_levels:  # the generalization track: the grader set the training levels the same way
        env_config["start_level"], env_config["num_levels"] = level_ranges(settings.num_levels)["train"]
    config["env_config"] = env_config
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def child_env(environ, settings, exp_path, outputs):
    env = {**environ, "AICROWD_IS_GRADING": "1", "EXPERIMENT": str(exp_path), "OUTPUTS_DIR": str(outputs),
           "EPISODES": str(settings.episodes), "PYTHONUNBUFFERED": "1"}
    # Under AICROWD_IS_GRADING run.sh takes python3 from PATH, as in the grader's image: this Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    env.pop("CHECKPOINT", None)
    return env


def run_logged(cmd, root, env, log, limit=None, guard=None, step=None):
    """Run `cmd` with output to `log`; at `limit` seconds send SIGTERM. (returncode, wall seconds, hit limit).

    The child runs in a session of its own, so a Ctrl-C or a SIGTERM to this process group reaches it once,
    passed on by this process's signal handler (two would make train.py exit without its checkpoint).
    """
    start = time.monotonic()
    hit = False
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        Current.child, Current.step = proc, step
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            hit = True
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        finally:
            Current.child = None
    if guard is not None:
        guard.park_if_pending()  # the handler writes the report of the games done and exits
    return proc.returncode, time.monotonic() - start, hit


def on_signal(signum, guard):
    """Runs on the signal guard's thread: pass the signal to the child once, wait for it, write what was graded."""
    from utils.signals import signal_name

    name = signal_name(signum)
    child = Current.child
    if child is not None and child.returncode is None:
        print(f"interrupted: {name} received; passing it to {Current.step} and waiting for it to save", flush=True)
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + GRACE_SECONDS
        while child.returncode is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the main thread's wait() sets returncode
        if child.returncode is None:
            print(f"warning: {Current.step} did not exit within {GRACE_SECONDS} s; killing it", flush=True)
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    guard.acquire_lock(LOCK_WAIT_S)
    if Current.report is None:
        print(f"interrupted: {name} received before grading started", flush=True)
        return 128 + signum
    settings, exp, resources, eval_dir = Current.report
    rows = list(Current.rows)
    if rows:
        report = build_report(settings, exp, resources, rows)
        report["interrupted"] = f"{name} after {len(rows)} of {len(settings.games)} games"
        write_report(report, eval_dir)
    print(f"interrupted: evaluation stopped after {len(rows)} of {len(settings.games)} games"
          f"{'; report of those in ' + str(eval_dir) if rows else ''}; logs in {eval_dir}", flush=True)
    return 128 + signum


def error_line(log, fallback):
    """The first `error: ` line a script printed, else `fallback`."""
    try:
        for line in Path(log).read_text(errors="replace").splitlines():
            if line.startswith("error: "):
                return line[len("error: "):]
    except OSError:
        pass
    return fallback


def train_game(root, settings, ctx_env, exp, game, game_dir, resources):
    """Train one game under the budget and the time limit; a row of results (status failed on error)."""
    from utils.checkpoints import newest_checkpoint

    skip = frame_skip(exp)
    stop_steps = min(int(exp.stop.get("timesteps_total") or MAX_ENV_STEPS), settings.timesteps // skip)
    cmd = ["./run.sh", "--train", f"stop.timesteps_total={max(stop_steps, 1)}", "--num-cpus", str(resources[0]),
           "--num-gpus", str(resources[1]), "--progress-bar", "off"]
    log = game_dir / "train.log"
    rc, wall, hit = run_logged(cmd, root, ctx_env, log, limit=settings.time_limit, guard=Current.guard,
                               step=f"{game}'s training")
    run_dir = conventions.run_dir(game_dir / "outputs", exp.name, game)
    row = {"game": game, "status": "ok", "train_wall_s": round(wall, 1), "train_log": str(log)}
    summary = _read_json(run_dir / "summary.json") or {}
    steps = summary.get("timesteps_total")
    row["env_steps"] = int(steps * skip) if isinstance(steps, (int, float)) and not math.isnan(steps) else None
    row["train_time_s"] = summary.get("time_total_s")
    row["stopped_by"] = "time_limit" if hit else summary.get("stopped_by")
    if hit and newest_checkpoint(run_dir) is None:
        return _failed(row, f"the time limit ({settings.time_limit:g} s) came before the first checkpoint; see {log}")
    if rc != 0 and not hit:
        return _failed(row, error_line(log, f"./run.sh --train exited {rc}; see {log}"))
    if newest_checkpoint(run_dir) is None:
        return _failed(row, f"training wrote no checkpoint in {run_dir}; set checkpoint_at_end: true")
    time_s = row["train_time_s"]
    row["steps_per_second"] = round(row["env_steps"] / time_s, 1) if row["env_steps"] and time_s else None
    return row


def rollout_game(root, ctx_env, row, game_dir, levels=None, name="rollout"):
    """Roll out the newest checkpoint: on unlimited levels, or on `levels` (start_level, num_levels)."""
    log = game_dir / f"{name}.log"
    out = game_dir / f"{name}.json"
    extra = ["--start-level", str(levels[0]), "--num-levels", str(levels[1])] if levels else []
    rc, wall, _ = run_logged(["./run.sh", "--rollout", "--json", str(out), *extra], root, ctx_env, log, guard=Current.guard,
                             step=f"{row['game']}'s rollout")
    row["rollout_wall_s"] = round(wall, 1)
    row["rollout_log"] = str(log)
    result = _read_json(out)
    if rc != 0 or result is None:
        return _failed(row, error_line(log, f"./run.sh --rollout exited {rc}; see {log}"))
    for key in ("checkpoint", "episodes", "mean_return", "std_return", "normalized_score", "distribution_mode"):
        row[key] = result.get(key)
    return row


def rollout_track(root, settings, ctx_env, row, game_dir):
    """The default track: one rollout on unlimited levels. Generalization: one on the training levels, then the
    scored one on the unseen levels (rollout.json)."""
    if not settings.num_levels:
        return rollout_game(root, ctx_env, row, game_dir)
    ranges = level_ranges(settings.num_levels)
    train = rollout_game(root, ctx_env, {"game": row["game"], "status": "ok"}, game_dir, ranges["train"], "rollout-train-levels")
    if train["status"] != "ok":
        return _failed(row, f"on the training levels: {train['error']}")
    for key in ("episodes", "mean_return", "std_return", "normalized_score"):
        row[f"train_levels_{key}"] = train[key]
    return rollout_game(root, ctx_env, row, game_dir, ranges["test"])


def _failed(row, error):
    row["status"] = "failed"
    row["error"] = error
    return row


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def grade_game(root, settings, environ, exp, game, eval_dir, resources, position):
    game_dir = eval_dir / game
    game_dir.mkdir(parents=True, exist_ok=True)
    exp_path = game_experiment(settings, game, game_dir / "experiment.yaml")
    env = child_env(environ, settings, exp_path, game_dir / "outputs")
    print(f"game: {game} ({position}), training (log: {game_dir / 'train.log'})", flush=True)
    row = train_game(root, settings, env, exp, game, game_dir, resources)
    print(f"game: {game}, train: {row['status']}, stopped_by: {row.get('stopped_by')}, env_steps: {row.get('env_steps')}, "
          f"wall_s: {row['train_wall_s']:.1f}" + (f", error: {row['error']}" if row["status"] != "ok" else ""), flush=True)
    if row["status"] != "ok":
        return row
    row = rollout_track(root, settings, env, row, game_dir)
    if row["status"] == "ok" and settings.num_levels:
        print(f"game: {game}, rollout: ok, episodes: {row['episodes']}, train_levels_mean_return: "
              f"{row['train_levels_mean_return']:.3f}, train_levels_score: {row['train_levels_normalized_score']:.4f}, "
              f"test_levels_mean_return: {row['mean_return']:.3f}, test_levels_score: {row['normalized_score']:.4f}", flush=True)
    elif row["status"] == "ok":
        print(f"game: {game}, rollout: ok, episodes: {row['episodes']}, mean_return: {row['mean_return']:.3f}, "
              f"normalized_score: {row['normalized_score']:.4f}", flush=True)
    else:
        print(f"game: {game}, rollout: failed, error: {row['error']}", flush=True)
    return row


# --------------------------------------------------------------------------- report


def build_report(settings, exp, resources, rows):
    scores = [r["normalized_score"] for r in rows if r["status"] == "ok"]
    failed = [r["game"] for r in rows if r["status"] != "ok"]
    full_budget = min(int(exp.stop.get("timesteps_total") or MAX_ENV_STEPS) * frame_skip(exp), MAX_ENV_STEPS)
    speeds = [r["steps_per_second"] for r in rows if r.get("steps_per_second")]
    return {
        **tracks.summary(settings, rows),
        "experiment": settings.experiment,
        "experiment_name": exp.name,
        "games": list(settings.games),
        "settings": {"timesteps": settings.timesteps, "time_limit_s": settings.time_limit, "episodes": settings.episodes,
                     "cpus": resources[0], "gpus": resources[1], "distribution_mode": "easy"},
        "results": rows,
        "failed_games": failed,
        "mean_normalized_score": sum(scores) / len(scores) if scores else None,
        "full_budget_env_steps": full_budget,
        "steps_per_second": sum(speeds) / len(speeds) if speeds else None,
        "projected_full_budget_train_s": round(full_budget / (sum(speeds) / len(speeds))) if speeds else None,
    }


def _duration(seconds):
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def table(report):
    """The results table: per game, then the plain mean and, with WEIGHTS, the weighted mean of each score column."""
    generalization = bool(report.get("num_levels"))
    weights = report.get("weights")
    # (header, row key, format, score key of the report's means or None)
    scores = [("mean return", "mean_return", ".2f", None), ("normalized score", "normalized_score", ".3f", "")]
    if generalization:
        scores = [("train-level return", "train_levels_mean_return", ".2f", None),
                  ("train-level score", "train_levels_normalized_score", ".3f", "train_levels_"),
                  ("test-level return", "mean_return", ".2f", None), ("test-level score", "normalized_score", ".3f", "")]
    header = ["game", "env steps", "train wall (s)", "stopped by", "steps/s", "episodes"] + [c[0] for c in scores]
    align = ["---", "---:", "---:", "---", "---:", "---:"] + ["---:"] * len(scores)
    if weights:
        header.append("weight")
        align.append("---:")
    lines = [_row(header), "|" + "|".join(align) + "|"]
    for r in report["results"]:
        cells = [r["game"], _fmt(r.get("env_steps"), ","), f"{r['train_wall_s']:.1f}"]
        if r["status"] != "ok":
            cells += [f"failed: {r['error']}"] + [""] * (2 + len(scores))
        else:
            cells += [r["stopped_by"], _fmt(r.get("steps_per_second"), ".0f"), str(r["episodes"])]
            cells += [_fmt(r.get(key), spec) for _, key, spec, _ in scores]
        if weights:
            cells.append(tracks.fraction(weights[r["game"]]))
        lines.append(_row(cells))
    ran = len(report["results"]) - len(report["failed_games"])
    label = "mean" if not report["failed_games"] else f"mean of {ran} games that ran"
    for name, prefix in [(label, "mean_")] + ([(f"weighted {label}", "weighted_mean_")] if weights else []):
        cells = [f"**{name}**"] + [""] * 5
        cells += ["" if part is None else f"**{_fmt(report.get(f'{prefix}{part}normalized_score'), '.3f')}**"
                  for _, _, _, part in scores]
        lines.append(_row(cells + ([""] if weights else [])))
    return lines


def _row(cells):
    """A markdown table row; an empty cell as `| |`."""
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def markdown(report):
    s = report["settings"]
    lines = [
        f"# Local grading: {report['experiment_name']} ({report['experiment']})",
        "",
        f"Per game: at most {s['timesteps']:,} env steps and {s['time_limit_s']:g} s of training wall clock "
        f"(grader: {MAX_ENV_STEPS:,} steps, {MAX_TRAIN_SECONDS} s), {s['episodes']} rollout episodes in easy mode, "
        f"{s['cpus']} CPUs, {s['gpus']} GPUs, AICROWD_IS_GRADING set.",
        "",
        f"Track: {tracks.describe(report.get('num_levels'))}.",
        "",
        *table(report),
    ]
    projected = report["projected_full_budget_train_s"]
    if projected:
        over = " (over the grader's 2 h: it would stop training early)" if projected > MAX_TRAIN_SECONDS else ""
        lines += ["", f"At the speed measured here ({report['steps_per_second']:.0f} env steps/s), the full budget of "
                      f"{report['full_budget_env_steps']:,} env steps would train for about {_duration(projected)} per game{over}."]
    return "\n".join(lines) + "\n"


def chart(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    scores = [r["normalized_score"] if r["status"] == "ok" else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(rows) + 2.5), 4.5))
    colors = ["tab:blue" if s >= 0 else "tab:red" for s in scores]
    bars = ax.bar([r["game"] for r in rows], scores, color=colors)
    for bar, r, s in zip(bars, rows, scores, strict=True):
        ax.annotate("failed" if r["status"] != "ok" else f"{s:.2f}", (bar.get_x() + bar.get_width() / 2, s),
                    ha="center", va="bottom" if s >= 0 else "top", fontsize=9)
    if report["mean_normalized_score"] is not None:
        ax.axhline(report["mean_normalized_score"], color="black", linestyle="--", linewidth=1,
                   label=f"mean {report['mean_normalized_score']:.3f}")
        ax.legend(loc="best")
    ax.axhline(0, color="gray", linewidth=0.5)
    ax.set_ylabel("normalized score")
    s = report["settings"]
    ax.set_title(f"{report['experiment_name']}\n{s['timesteps']:,} env steps per game, {s['episodes']} episodes, easy mode", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report, eval_dir):
    paths = {"json": eval_dir / "evaluation.json", "markdown": eval_dir / "evaluation.md", "chart": eval_dir / "normalized_scores.png"}
    from utils.checkpoints import write_text_atomically

    write_text_atomically(paths["json"], json.dumps(report, indent=2) + "\n")
    write_text_atomically(paths["markdown"], markdown(report))
    chart(report, paths["chart"])
    return paths


# --------------------------------------------------------------------------- main


def main(root, environ):
    from utils.signals import SignalGuard

    Current.guard = SignalGuard(lambda signum: on_signal(signum, Current.guard))
    try:
        return grade(root, environ)
    finally:
        Current.guard.park_if_pending()


def grade(root, environ):
    settings = read_settings(environ)
    exp, gpu = preflight(root, settings)
    tracks.check_levels(settings.experiment, settings.games, settings.num_levels)
    resources = grader_resources(exp, gpu)
    # Relative paths stay valid: run.sh, this process and its children all work in the repository root.
    eval_dir = settings.outputs_dir / "evaluation" / f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    eval_dir.mkdir(parents=True, exist_ok=True)
    print(f"evaluate: {settings.experiment}, games: {', '.join(settings.games)}, timesteps: {settings.timesteps}, "
          f"time_limit_s: {settings.time_limit:g}, episodes: {settings.episodes}, cpus: {resources[0]}, gpus: {resources[1]}")
    if settings.time_limit > MAX_TRAIN_SECONDS:
        print(f"note: TIME_LIMIT {settings.time_limit:g} s is over the grader's {MAX_TRAIN_SECONDS} s")
    print(f"track: {tracks.describe(settings.num_levels)}")
    print(f"eval_dir: {eval_dir}", flush=True)
    rows = Current.rows = []
    Current.report = (settings, exp, resources, eval_dir)
    for i, game in enumerate(settings.games, 1):
        row = grade_game(root, settings, environ, exp, game, eval_dir, resources, f"{i}/{len(settings.games)}")
        with Current.guard.lock:
            rows.append(row)
    with Current.guard.lock:
        report = build_report(settings, exp, resources, rows)
        paths = write_report(report, eval_dir)
    print()
    print(markdown(report))
    mean = report["mean_normalized_score"]
    print(f"mean_normalized_score: {_fmt(mean, '.4f')}")
    for line in tracks.score_lines(report):
        print(line)
    if report["failed_games"]:
        print(f"failed_games: {', '.join(report['failed_games'])} (the grader would fail this submission)")
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 1 if report["failed_games"] else 0
