"""A run's learning curve next to the Procgen paper's PPO (mean +- sd over its 3 published runs).

    python scripts/compare_curves.py RUN_DIR [RUN_DIR ...] [--out curves.png] [--setting auto]

RUN_DIR is a run directory written by train.py (its config.yaml and result.json). The game and the
setting come from the run's config: easy mode with num_levels 0 is `easy-all`; easy mode trained on
200 levels is `easy-200-train` (and, when the run evaluated on unseen levels, `easy-200-test` for its
evaluation curve). The reference is reference/ppo-procgen-curves.csv (openai/train-procgen's
`train_procgen/results/`).

Prints one line per run and published step the run reached (with the value function's explained variance
at that step, when the run reports it):
    run: procgen-ppo/starpilot, game: starpilot, setting: easy-all, steps: 1000000, return: 8.10, published: 8.64,
    sd: 0.26, ratio: 0.94, sd_from_published: -2.08, vf_explained_var: 0.52
`ratio` is return / published mean, only where the published mean is above 0 (fruitbot starts below 0,
where a ratio under 1 would mean a better return): `n/a` elsewhere. `sd_from_published` is
(return - published mean) / published sd, the distance in the published runs' standard deviations.
and, when the runs cover more than one game, the mean normalized score of the runs beside the published
one at each step all of them reached (the paper's constants, envs/games.py). Writes a PNG of return vs
env steps per game (default: curves.png in the current directory). Runs of the same game share a panel.
"""

import csv
import json
import sys
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.cli import ArgumentParser  # noqa: E402
from utils.errors import UserError  # noqa: E402

REFERENCE = ROOT / "reference" / "ppo-procgen-curves.csv"
SETTINGS = ("easy-all", "easy-200-train", "easy-200-test")
RETURN_KEY = "charts/episode_reward_mean"
STEP_KEY = "charts/timesteps_total"
EVAL_RETURN_KEY = "evaluation/env_runners/episode_reward_mean"
EXPLAINED_KEY = "info/learner/default_policy/learner_stats/vf_explained_var"


@dataclass
class Curve:
    """One curve: env steps (ascending) and mean episode returns at those steps."""

    label: str
    game: str
    setting: str
    steps: list = field(default_factory=list)
    returns: list = field(default_factory=list)
    explained: dict = field(default_factory=dict)  # step -> the value function's explained variance

    def explained_at(self, step):
        """The explained variance reported at the last iteration at or before `step`; None when not reported."""
        known = [s for s in self.explained if s <= step]
        return self.explained[max(known)] if known else None

    def at(self, step):
        """The return at `step`, linearly interpolated; None outside the curve's range."""
        if not self.steps or step < self.steps[0] or step > self.steps[-1]:
            return None
        for (s0, r0), (s1, r1) in pairwise(zip(self.steps, self.returns, strict=True)):
            if s0 <= step <= s1:
                return r0 if s1 == s0 else r0 + (r1 - r0) * (step - s0) / (s1 - s0)
        return self.returns[-1]


def read_reference(path=REFERENCE):
    """{(setting, game): {step: (mean, sd)}} from the published-curves CSV."""
    table = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            points = {}
            for key, value in row.items():
                if key.startswith("return_at_"):
                    step = int(key.removeprefix("return_at_"))
                    points[step] = (float(value), float(row[f"return_sd_at_{step}"]))
            table[(row["setting"], row["game"])] = dict(sorted(points.items()))
    return table


def run_setting(env_config, where):
    """The published setting matching a run's env_config, or a UserError saying why there is none."""
    mode = env_config.get("distribution_mode", "easy")  # the env wrapper's default
    levels = int(env_config.get("num_levels", 0))
    if mode != "easy" or levels not in (0, 200):
        raise UserError(
            f"{where}: distribution_mode {mode!r} with num_levels {levels} has no published PPO curve. "
            f"Published settings: easy with num_levels 0 (easy-all) or 200 (easy-200-train/test)."
        )
    return "easy-all" if levels == 0 else "easy-200-train"


def read_run(run_dir, setting="auto"):
    """The curves of one run directory: its training curve, and its evaluation curve on 200-level runs."""
    import yaml

    run_dir = Path(run_dir)
    config_path, results_path = run_dir / "config.yaml", run_dir / "result.json"
    for path in (config_path, results_path):
        if not path.is_file():
            raise UserError(f"{run_dir}: no {path.name} there. Give a run directory written by train.py "
                            f"(outputs/EXPERIMENT/GAME).")
    spec = next(iter(yaml.safe_load(config_path.read_text()).values()))
    env_config = spec.get("config", {}).get("env_config", {})
    game = env_config.get("env_name", "coinrun")
    setting = run_setting(env_config, run_dir) if setting == "auto" else setting
    train = Curve(f"{run_dir.parent.name}/{run_dir.name}", game, setting)
    test = Curve(f"{run_dir.parent.name}/{run_dir.name} (unseen levels)", game, "easy-200-test")
    for line in results_path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        step = row.get(STEP_KEY)
        for curve, key in ((train, RETURN_KEY), (test, EVAL_RETURN_KEY)):
            value = row.get(key)
            if step is not None and value is not None and value == value:  # NaN until the first episode ends
                curve.steps.append(step)
                curve.returns.append(value)
        if step is not None and row.get(EXPLAINED_KEY) is not None:
            train.explained[step] = row[EXPLAINED_KEY]
    if not train.steps:
        raise UserError(f"{results_path}: no iteration with a finished episode yet; train longer, then compare.")
    return [train, test] if setting == "easy-200-train" and test.steps else [train]


def ratio(value, mean):
    """value / mean, or NaN where the mean is not above 0 (a ratio to a negative return reads backwards)."""
    return value / mean if mean > 0 else float("nan")


def compare(curves, reference):
    """Rows (curve, step, run return, published mean, published sd, ratio) at each published step reached."""
    rows = []
    for curve in curves:
        points = reference.get((curve.setting, curve.game))
        if points is None:
            raise UserError(f"No published curve for game {curve.game!r} in setting {curve.setting!r}.")
        for step, (mean, sd) in points.items():
            value = curve.at(step)
            if value is not None:
                rows.append((curve, step, value, mean, sd, ratio(value, mean)))
    return rows


def normalized_rows(curves, reference):
    """(step, setting, run normalized mean, published normalized mean) at steps every curve of a setting reached.

    Only for settings with curves of at least two different games (one game's normalized score is its return)."""
    from envs.games import normalized_score

    out = []
    for setting in SETTINGS:
        group = [c for c in curves if c.setting == setting]
        if len({c.game for c in group}) < 2:
            continue
        steps = sorted(set.intersection(*(set(reference[(setting, c.game)]) for c in group)))
        for step in steps:
            values = [c.at(step) for c in group]
            if any(v is None for v in values):
                continue
            ours = sum(normalized_score(c.game, v) for c, v in zip(group, values, strict=True)) / len(group)
            theirs = sum(normalized_score(c.game, reference[(setting, c.game)][step][0]) for c in group) / len(group)
            out.append((step, setting, ours, theirs))
    return out


def plot(curves, reference, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(c.game, c.setting) for c in curves})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (game, setting) in zip(axes[0], panels, strict=True):
        points = reference[(setting, game)]
        last = max(max(c.steps) for c in curves if (c.game, c.setting) == (game, setting))
        shown = [s for s in points if s <= max(last, min(points)) * 2]
        means = [points[s][0] for s in shown]
        sds = [points[s][1] for s in shown]
        ax.plot(shown, means, "k--", marker="o", label="published PPO (3 runs)")
        ax.fill_between(shown, [m - d for m, d in zip(means, sds, strict=True)], [m + d for m, d in zip(means, sds, strict=True)],
                        color="grey", alpha=0.3)
        for curve in curves:
            if (curve.game, curve.setting) == (game, setting):
                ax.plot(curve.steps, curve.returns, label=curve.label)
        ax.set_title(f"{game} ({setting})")
        ax.set_xlabel("env steps")
        ax.set_ylabel("mean episode return")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def number(value):
    """A ratio as printed: two decimals, or n/a where it is not defined."""
    return "n/a" if value != value else f"{value:.2f}"


def parse_args(argv):
    parser = ArgumentParser(prog="compare_curves.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by train.py")
    parser.add_argument("--out", default="curves.png", help="PNG to write (default: curves.png)")
    parser.add_argument("--setting", default="auto", choices=("auto", *SETTINGS),
                        help="published setting to compare with (default: from each run's env_config)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        reference = read_reference()
        curves = [curve for run_dir in args.run_dirs for curve in read_run(run_dir, args.setting)]
        rows = compare(curves, reference)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for curve, step, value, mean, sd, fraction in rows:
        explained = curve.explained_at(step)
        explained = f", vf_explained_var: {explained:.2f}" if explained is not None else ""
        distance = f"{(value - mean) / sd:+.2f}" if sd > 0 else "n/a"
        print(f"run: {curve.label}, game: {curve.game}, setting: {curve.setting}, steps: {step}, "
              f"return: {value:.2f}, published: {mean:.2f}, sd: {sd:.2f}, ratio: {number(fraction)}, "
              f"sd_from_published: {distance}{explained}")
    if not rows:
        first = min(min(reference[(c.setting, c.game)]) for c in curves)
        print(f"note: no run reached the first published step ({first} env steps) yet; the PNG shows the curves so far")
    for step, setting, ours, theirs in normalized_rows(curves, reference):
        print(f"normalized: {ours:.3f}, published: {theirs:.3f}, ratio: {number(ratio(ours, theirs))}, "
              f"setting: {setting}, steps: {step}")
    plot(curves, reference, args.out)
    print(f"png: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
