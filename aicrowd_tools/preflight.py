"""Preflight: the checks a submission must pass before AIcrowd's grader sees it, one line each.

Each check returns its detail on success and raises Failed (or UserError) with what is wrong, what is
allowed and the fix. `run_checks` runs them all, so one run shows every problem.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from aicrowd_tools import gitrepo
from aicrowd_tools.dockerfile import check_dockerfile
from aicrowd_tools.grader import (
    GITLAB_HOST,
    GRADER_ID,
    MAX_ENV_STEPS,
    MAX_FILE_BYTES,
    frame_skip,
    parse_games,
)
from utils.errors import UserError


class Failed(Exception):
    """A check did not pass; the message says why and how to fix it."""


@dataclass
class Result:
    name: str
    ok: bool
    detail: str

    def line(self):
        return f"{self.name}: {'ok' if self.ok else 'FAIL'}, {self.detail}"


@dataclass
class Context:
    """What the checks look at; filled lazily and shared between checks."""

    root: Path
    experiment: str
    envs: str = ""
    cache: dict = field(default_factory=dict)

    def aicrowd_json(self):
        if "aicrowd_json" not in self.cache:
            self.cache["aicrowd_json"] = read_aicrowd_json(self.root / "aicrowd.json")
        return self.cache["aicrowd_json"]

    def exp(self):
        """The experiment as written (validated, not fitted to this machine)."""
        if "exp" not in self.cache:
            from utils.config import load_experiment

            try:
                self.cache["exp"] = load_experiment(self.experiment_path())
            except UserError as e:
                self.cache["exp"] = e
        if isinstance(self.cache["exp"], UserError):
            raise Failed(f"{self.experiment} does not load; fix the experiment first.")
        return self.cache["exp"]

    def experiment_path(self):
        """The experiment file; as the user wrote it when run from the repository root, so messages name it so."""
        path = Path(self.experiment)
        if path.is_absolute() or Path.cwd() == self.root.resolve():
            return path
        return self.root / path


# --------------------------------------------------------------------------- aicrowd.json

AICROWD_FIELDS = {
    "challenge_id": (str, f'"{GRADER_ID}"'),
    "grader_id": (str, f'"{GRADER_ID}"'),
    "authors": (list, '["your-aicrowd-username"]'),
    "description": (str, '"PPO + IMPALA CNN"'),
    "gpu": (bool, "true"),
    "debug": (bool, "false"),
    "docker_build": (bool, "true"),
}
JSON_TYPES = {str: "a string", list: "a list", bool: "true or false (no quotes)"}


def read_aicrowd_json(path):
    if not path.is_file():
        raise Failed(f"{path.name} is missing. Create it with the keys {', '.join(AICROWD_FIELDS)} (see README, Submit to AIcrowd).")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise Failed(f"{path.name} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}. Fix the JSON there.") from None
    if not isinstance(data, dict):
        raise Failed(f"{path.name} must hold one JSON object {{...}}, not {type(data).__name__}.")
    return data


def field_problems(data):
    """One message per missing, wrong-typed or wrong-valued aicrowd.json key."""
    problems = []
    for key, (kind, example) in AICROWD_FIELDS.items():
        if key not in data:
            problems.append(f'"{key}" is missing: add "{key}": {example}')
        elif not isinstance(data[key], kind):
            problems.append(f'"{key}" is {json.dumps(data[key])} but must be {JSON_TYPES[kind]}, e.g. "{key}": {example}')
        elif key in ("challenge_id", "grader_id") and data[key] != GRADER_ID:
            problems.append(f'"{key}" is "{data[key]}" but must be "{GRADER_ID}" for the Procgen grader')
        elif key == "authors" and (not data[key] or not all(isinstance(a, str) and a.strip() for a in data[key])):
            problems.append(f'"authors" must list at least one AIcrowd username, e.g. "authors": {example}')
    return problems


def check_aicrowd_json(ctx):
    data = ctx.aicrowd_json()
    problems = field_problems(data)
    if problems:
        raise Failed("aicrowd.json: " + "; ".join(problems) + ".")
    return f"grader_id {data['grader_id']}, gpu {json.dumps(data['gpu'])}, authors {', '.join(data['authors'])}"


# --------------------------------------------------------------------------- repository


def check_run_sh(ctx):
    path = ctx.root / "run.sh"
    if not path.is_file():
        raise Failed("run.sh is missing: the grader runs ./run.sh --train and ./run.sh --rollout. Restore it from the starter kit.")
    if not os.access(path, os.X_OK):
        raise Failed("run.sh is not executable, so the grader cannot run ./run.sh. Fix: chmod +x run.sh")
    mode = gitrepo.index_mode(ctx.root, "run.sh")
    if mode is not None and mode != "100755":
        raise Failed(f"run.sh is committed as mode {mode}, not executable (100755). Fix: git update-index --chmod=+x run.sh, then commit.")
    if not path.read_text(errors="replace").startswith("#!"):
        raise Failed("run.sh has no #! line. Make its first line #!/usr/bin/env bash.")
    return "executable" + (" (git mode 100755)" if mode else "")


def check_requirements(ctx):
    from utils.conventions import read_pins

    path = ctx.root / "requirements.txt"
    if not path.is_file():
        raise Failed("requirements.txt is missing: the grader installs it with pip. Restore it from the repository.")
    pinned, unpinned = read_pins(path)
    pins, loose = len(pinned), [f"line {number}: {line}" for number, line in unpinned]
    if loose:
        shown = "; ".join(loose[:3]) + (f" (and {len(loose) - 3} more)" if len(loose) > 3 else "")
        raise Failed(f"requirements.txt has unpinned requirements ({shown}). Pin each as name==version, e.g. the version pip freeze shows.")
    return f"{pins} packages, all pinned (name==version)"


def _size(nbytes):
    return f"{nbytes / 1024 / 1024:.1f} MB" if nbytes >= 1024 * 1024 else f"{nbytes / 1024:.1f} KB"


def check_file_sizes(ctx):
    files = gitrepo.files_to_push(ctx.root)
    sizes = {p: (ctx.root / p).stat().st_size for p in files}
    big = sorted((p for p, s in sizes.items() if s > MAX_FILE_BYTES), key=lambda p: -sizes[p])
    if big:
        shown = ", ".join(f"{p} ({_size(sizes[p])})" for p in big[:5]) + (f" and {len(big) - 5} more" if len(big) > 5 else "")
        raise Failed(
            f"{len(big)} file(s) over the grader's 30 MB limit would be pushed: {shown}. The grader drops them. "
            "Delete them, or add them to .gitignore (git rm --cached PATH if already committed)."
        )
    largest = max(sizes, key=sizes.get) if sizes else None
    where = f", largest {largest} ({_size(sizes[largest])})" if largest else ""
    return f"{len(files)} files to push{where}, none over 30 MB"


# --------------------------------------------------------------------------- experiment


def check_experiment(ctx):
    try:
        exp = ctx.exp()
    except Failed:
        raise Failed(str(ctx.cache["exp"])) from None  # the loader's own message names the key and the fix
    return f"{ctx.experiment} ({exp.name}: {exp.run}, {exp.spec['env']}, framework {exp.framework})"


def check_step_budget(ctx):
    exp = ctx.exp()
    skip = frame_skip(exp)
    steps = exp.stop.get("timesteps_total")
    limit = f"{MAX_ENV_STEPS:,}"
    if steps is None:
        raise Failed(
            f"{ctx.experiment} has no stop.timesteps_total, so nothing keeps training under the grader's {limit} env steps. "
            f"Add stop: {{timesteps_total: {MAX_ENV_STEPS // skip}}}."
        )
    total = int(steps * skip)
    how = f"stop.timesteps_total {steps:,.0f}" + (f" x frame skip {skip}" if skip > 1 else "")
    if total > MAX_ENV_STEPS:
        raise Failed(
            f"{total:,} env steps ({how}) is over the grader's {limit}. "
            f"Set stop.timesteps_total to at most {MAX_ENV_STEPS // skip} in {ctx.experiment}."
        )
    return f"{total:,} env steps ({how}) <= {limit}"


def check_resources(ctx):
    """The grader's arithmetic (utils.resources.grader_check): runners + its evaluation runner + the learner;
    and the learner's replay memory (PPG's auxiliary buffer) against the grader machine's memory."""
    from utils.config import learner_memory_demand
    from utils.resources import GRADER_MEMORY_GIB, grader_check, memory_check

    exp = ctx.exp()
    d = learner_memory_demand(exp)
    check = grader_check(d, evaluation_worker=exp.evaluation_worker, gpu=_wants_gpu(ctx), where=ctx.experiment)
    memory_problem, memory_note = memory_check(d, GRADER_MEMORY_GIB * 2**30, "the grader's machine", where=ctx.experiment)
    problems = [*check.problems, *([memory_problem] if memory_problem else [])]
    if problems:
        raise Failed(" ".join(problems))
    summary = check.summary()
    if d.learner_buffer_bytes:
        summary += f", auxiliary buffer {d.learner_buffer_bytes / 2**30:.1f} GiB <= {GRADER_MEMORY_GIB} GiB"
    return summary + (f" (note: {memory_note})" if memory_note else "")


def check_rllib_config(ctx):
    """RLlib's own validation of the config training builds on the grader's machine, so that --validate never
    passes what training then refuses (batch arithmetic, algorithm-specific refusals)."""
    from utils.config import build_algorithm_config, load_experiment
    from utils.resources import grader_machine

    exp = ctx.exp()
    cpus, gpus = grader_machine(exp.demand(), exp.evaluation_worker, _wants_gpu(ctx))
    graded = load_experiment(ctx.experiment_path(), cpus=cpus, gpus=gpus)
    fitted = "".join(f"; {note}" for note in graded.notes[len(exp.notes):])
    machine = f"{cpus:g} CPUs and {gpus:g} GPU" + (" beside its evaluation runner" if exp.evaluation_worker else "")
    try:
        build_algorithm_config(graded)
    except UserError as e:
        raise Failed(f"{e} (as trained on the grader: {machine}{fitted}). Fix it in the experiment.") from None
    return (f"RLlib accepts it as trained on the grader ({machine}{fitted}): {graded.runners} env runners x "
            f"{graded.envs_per_runner} envs x {graded.fragment_length} steps, train batch {graded.train_batch}")


def _wants_gpu(ctx):
    try:
        return ctx.aicrowd_json().get("gpu") is not False
    except Failed:
        return True


def check_registries(ctx):
    from registry import plugin_kinds, register_all

    tables = plugin_kinds()
    for kind, table, load in tables:
        for name in table:
            try:
                load(name)
            except Exception as e:  # noqa: BLE001  (any import error of a user's plugin)
                raise Failed(f"{kind} {name} does not load: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Fix that module.") from None
    register_all()
    return "all load and register (" + ", ".join(f"{k}s: {len(t)}" for k, t, _ in tables) + ")"


def check_games(ctx):
    from utils.config import load_experiment

    games = parse_games(ctx.envs)
    exp = ctx.exp()
    for game in games:
        try:
            load_experiment(ctx.experiment_path(), [f"env_config.env_name={game}"])
        except UserError as e:
            raise Failed(f"{exp.name} refuses game {game}, which the grader will give it: {e}") from None
    names = ", ".join(games) if len(games) <= 8 else "all of them"
    return f"{len(games)} games known and accepted by the experiment: {names}"


# --------------------------------------------------------------------------- submission


def check_git_remote(ctx):
    if not gitrepo.is_repo(ctx.root):
        raise Failed(f"{ctx.root} is not a git repository. Clone the starter kit with git, or run git init and commit.")
    found = gitrepo.aicrowd_remote(ctx.root)
    if found is None:
        raise Failed(
            f"no git remote for AIcrowd (one named aicrowd or with {GITLAB_HOST} in its URL). "
            f"Add it: git remote add aicrowd git@{GITLAB_HOST}:YOUR_USERNAME/neurips-2020-procgen-starter-kit.git"
        )
    problem = gitrepo.push_problem(ctx.root, found[0])
    if problem:
        raise Failed(problem)
    return f"{found[0]} {found[1]}"


def cli_config_path():
    """Where aicrowd-cli keeps its config (and the API key `aicrowd login` saves)."""
    import click

    return Path(click.get_app_dir("aicrowd-cli")) / "config.toml"


def check_login(ctx):
    import tomllib

    path = cli_config_path()
    try:
        key = tomllib.loads(path.read_text()).get("aicrowd_api_key") if path.is_file() else None
    except tomllib.TOMLDecodeError:
        key = None
    if not key:
        raise Failed(f"not logged in to AIcrowd (no API key in {path}). Run: aicrowd login (your key: https://www.aicrowd.com/participants/me).")
    return f"API key found in {path}"


def check_cli(ctx):
    from importlib import metadata

    try:
        version = metadata.version("aicrowd-cli")
    except metadata.PackageNotFoundError:
        raise Failed("aicrowd-cli is not installed. Install it: pip install -r requirements-dev.txt (./run.sh --submit does).") from None
    return f"aicrowd-cli {version}"


VALIDATE_CHECKS = {
    "aicrowd.json": check_aicrowd_json,
    "run.sh": check_run_sh,
    "requirements": check_requirements,
    "Dockerfile": check_dockerfile,
    "file sizes": check_file_sizes,
    "experiment": check_experiment,
    "step budget": check_step_budget,
    "resources": check_resources,
    "rllib config": check_rllib_config,
    "registries": check_registries,
    "games": check_games,
}
SUBMIT_CHECKS = {**VALIDATE_CHECKS, "git remote": check_git_remote, "aicrowd cli": check_cli, "login": check_login}
EXPERIMENT_CHECKS = {name: VALIDATE_CHECKS[name] for name in ("experiment", "step budget", "resources", "rllib config", "games")}


def run_check(name, check, ctx):
    try:
        return Result(name, True, check(ctx))
    except (Failed, UserError) as e:
        return Result(name, False, str(e))
    except Exception as e:  # noqa: BLE001  (a check must report, never crash the checklist)
        return Result(name, False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def run_checks(ctx, checks=VALIDATE_CHECKS, echo=print):
    """Run every check, echoing a line each; the list of Results."""
    results = []
    for name, check in checks.items():
        result = run_check(name, check, ctx)
        if echo:
            echo(result.line())
        results.append(result)
    return results


def summary_line(results):
    failed = [r.name for r in results if not r.ok]
    if failed:
        return f"preflight: failed, {len(failed)} of {len(results)} checks ({', '.join(failed)})"
    return f"preflight: passed, {len(results)} checks"
