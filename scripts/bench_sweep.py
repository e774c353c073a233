"""Which settings train fastest here: full training steps/s of the fitted baseline against variants of it,
all measured in one run (`./run.sh --bench --sweep`).

    python scripts/bench.py --sweep [--frameworks tf torch] [--repeats 1] [--iterations 2] [--variants ID ...] [--quick]

Every variant is the framework's impala-baseline YAML fitted to this machine (the "fitted" row, the
reference) plus a few overrides, measured as bench.py's full_training figure and printed as a ratio to the
reference. Variants that keep PPO's arithmetic the same (runners, games per runner with the fragment that
keeps the train batch, thread counts) are candidates for the experiments' defaults; a variant marked
"changes numerics" (bf16) is an opt-in key, and its speed is reported here, its effect on learning in
the README. Each row also has the seconds per iteration of RLlib's phases (sample, load, learn,
synch_weights) from the run nearest the median: where the time goes. Writes sweep.json and sweep.md next to bench.json.
"""

import json
import os
import statistics
import sys
import time
from typing import NamedTuple

from scripts.bench_common import EXPERIMENTS, ROOT, gpu_count, machine, quick_overrides, run_child, summarize


class Variant(NamedTuple):
    """One sweep row: what --variants names, the row's text, train.py overrides, whether it changes PPO's
    numerics, and what it sets in the environment of its process (train.py's overrides cannot set that)."""
    id: str
    description: str
    overrides: list
    changes_numerics: bool
    env: dict = {}  # read only (run_child copies it into the child's environment)


def variants(framework, exp):
    """The Variants of the fitted experiment of one framework, the "fitted" reference first.

    The id is what --variants names. Overrides apply before the machine fitting, so a variant that
    changes games per runner names the fitted runner count too (the YAML's 4 runners would otherwise be
    fitted again, multiplying the games).
    """
    g = geometry(exp)
    runners, games, fragment = g["runners"], g["games_per_runner"], g["fragment"]
    total_games = max(runners, 1) * games
    runs = f"{runners} runner{'s' * (runners != 1)}"
    out = [Variant("fitted", "fitted", [], False)]
    if runners > 0:
        out.append(Variant("runners-0", f"0 runners x {total_games} games (sample in the learner process)",
                           ["num_env_runners=0", f"num_envs_per_env_runner={total_games}"], False))
    else:
        out.append(Variant("runners-1", f"1 runner x {total_games} games (sample beside the learner)",
                           ["num_env_runners=1", f"num_envs_per_env_runner={total_games}"], False))
    if fragment % 2 == 0:
        out.append(Variant("games-x2", f"{runs} x {games * 2} games x {fragment // 2} steps",
                           [f"num_env_runners={runners}", f"num_envs_per_env_runner={games * 2}",
                            f"rollout_fragment_length={fragment // 2}"], False))
    if games % 2 == 0:
        out.append(Variant("games-half", f"{runs} x {games // 2} games x {fragment * 2} steps",
                           [f"num_env_runners={runners}", f"num_envs_per_env_runner={games // 2}",
                            f"rollout_fragment_length={fragment * 2}"], False))
    if framework == "tf":
        for intra, inter in ((2, 1), (1, 1)):
            out.append(Variant(f"tf-learner-threads-{intra}-{inter}",
                               f"learner TF threads intra {intra} inter {inter} (default 8, 8)",
                               [f"local_tf_session_args.intra_op_parallelism_threads={intra}",
                                f"local_tf_session_args.inter_op_parallelism_threads={inter}"], False))
        if runners > 0:
            out.append(Variant("tf-runner-threads-1-1", "runner TF threads intra 1 inter 1 (default 2, 2)",
                               ["tf_session_args.intra_op_parallelism_threads=1",
                                "tf_session_args.inter_op_parallelism_threads=1"], False))
        # utils turns TF's oneDNN kernels on where TF itself would not (AVX2-only CPUs): this measures what that gives.
        out.append(Variant("tf-onednn-off", "TF's oneDNN kernels off (on by default, utils/__init__.py)", [], False,
                           {"TF_ENABLE_ONEDNN_OPTS": "0"}))
    out.append(Variant("bf16", "bf16 trunk (model.custom_model_config.bf16)", ["model.custom_model_config.bf16=true"], True))
    return out


def selected(args, candidates):
    """The fitted reference, then the variants --variants names (all of them without it)."""
    return [c for c in candidates if not args.variants or c[0] == "fitted" or c[0] in args.variants]


def fitted_experiment(args, framework, overrides=()):
    from utils.config import load_experiment

    base = quick_overrides(framework) if args.quick else []
    return load_experiment(ROOT / EXPERIMENTS[framework], [*base, *overrides], cpus=len(os.sched_getaffinity(0)), gpus=gpu_count())


def geometry(exp):
    """How one train batch is sampled: runners x games per runner x fragment (the resolved experiment's)."""
    return {"runners": exp.runners, "games_per_runner": exp.envs_per_runner, "fragment": exp.fragment_length,
            "train_batch": exp.train_batch}


def check_variants(args):
    """Each --variants ID must name a variant of some framework swept: a typo would otherwise measure only the reference."""
    ids = [vid for framework in args.frameworks for vid, *_ in variants(framework, fitted_experiment(args, framework))]
    for vid in args.variants or []:
        if vid not in ids:
            print(f'error: --variants "{vid}" is no variant of {"/".join(args.frameworks)} here. '
                  f'Allowed: {", ".join(dict.fromkeys(ids))} (each one id; see the "id" column of sweep.md)', file=sys.stderr)
            sys.exit(2)


def sweep(args):
    check_variants(args)
    rows = []
    for framework in args.frameworks:
        rows += sweep_framework(args, framework)
    return rows


def sweep_framework(args, framework):
    """Every repeat runs each variant once, in turn (fitted, a, b, fitted, a, b, ...): a slow spell of the
    machine then hits all variants alike instead of one variant's repeats, as bench_env.py alternates raw
    and wrapped. Each repeat's variant/fitted ratio is kept too (paired_ratios)."""
    candidates = selected(args, variants(framework, fitted_experiment(args, framework)))
    runs, errors = {vid: [] for vid, *_ in candidates}, {}
    for repeat in range(1, args.repeats + 1):
        for vid, name, overrides, _, env in candidates:
            if vid in errors:
                continue
            try:
                run = run_child(args, "full_training", env=env, framework=framework, set=overrides)
            except RuntimeError as e:
                # One variant RLlib refuses (or that crashes) must not cost the rest of a long sweep.
                errors[vid] = str(e).strip().splitlines()[-1]
                print(f"sweep_{framework}: {name}: failed: {errors[vid]}", flush=True)
                continue
            runs[vid].append(run)
            print(f"sweep_{framework}_run: {vid} repeat {repeat}/{args.repeats}: {run['steps_per_second']:.1f} steps/s", flush=True)
    reference = runs["fitted"]
    rows = []
    for vid, name, overrides, numerics, env in candidates:
        fields = {"framework": framework, "id": vid, "variant": name, "overrides": [*(f"{k}={v}" for k, v in env.items()), *overrides],
                  "changes_numerics": numerics,
                  **geometry(fitted_experiment(args, framework, overrides))}
        if vid in errors:
            rows.append({**fields, "error": errors[vid]})
            continue
        row = summarize(runs[vid], **fields)
        row["ratio"] = row["median"] / statistics.median(r["steps_per_second"] for r in reference) if reference else None
        row["paired_ratios"] = [v["steps_per_second"] / f["steps_per_second"] for v, f in zip(runs[vid], reference, strict=False)]  # a failed run ends its list
        ratio = f"{row['ratio']:.2f} (by repeat: {', '.join(f'{r:.2f}' for r in row['paired_ratios'])})" if reference \
            else "none (the fitted row failed)"
        print(f"sweep_{framework}: {name}: {row['median']:.1f} steps/s (min {row['min']:.1f}, max {row['max']:.1f}), "
              f"ratio {ratio}", flush=True)
        rows.append(row)
    return rows


def markdown(rows, info, args):
    out = [f"# Settings sweep on {info['cpu']} ({info['cores']} cores, GPU: {info['gpu']})", "",
           f"{info['date']}; full training steps/s of the fitted baseline and its variants, median of {args.repeats} "
           f"({args.iterations} timed iterations each); ratio to the fitted row of the same framework."
           + (" QUICK MODE: toy sizes, figures mean nothing." if args.quick else ""), "",
           "| framework | id | variant | overrides | steps/s median | min | max | ratio | by repeat | sample s | learn s | changes numerics |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        overrides = " ".join(r["overrides"]) or "(none)"
        if "error" in r:
            out.append(f"| {r['framework']} | {r['id']} | {r['variant']} | `{overrides}` | failed: {r['error']} | | | | | | | |")
            continue
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else ""
        paired = ", ".join(f"{x:.2f}" for x in r["paired_ratios"])
        phases = r.get("phases_s", {})
        sample, learn = (f"{phases[k]:.1f}" if k in phases else "" for k in ("sample", "learn"))
        out.append(f"| {r['framework']} | {r['id']} | {r['variant']} | `{overrides}` | {r['median']:.0f} | {r['min']:.0f} | {r['max']:.0f} "
                   f"| {ratio} | {paired} | {sample} | {learn} | {'yes' if r['changes_numerics'] else 'no'} |")
    out.append("")
    return "\n".join(out)


def main(args, out):
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, GPU: {info['gpu']}", flush=True)
    start = time.time()
    rows = sweep(args)
    info["seconds"] = round(time.time() - start)
    (out / "sweep.json").write_text(json.dumps({"machine": info, "quick": args.quick, "repeats": args.repeats,
                                                "iterations": args.iterations, "rows": rows}, indent=2) + "\n")
    text = markdown(rows, info, args)
    (out / "sweep.md").write_text(text)
    print(text)
    print(f"written: {out / 'sweep.json'}, {out / 'sweep.md'}")
    return 0
