"""Command lines (issue 17): every entry point takes options and positionals (KEY=VALUE overrides, a checkpoint, an
experiment, a command) in any order with the same meaning, and answers a mistyped argument with one `error:` line."""

import argparse
import os
import subprocess

import pytest

from sagemaker_tools import launch
from tests.conftest import ROOT, run_script
from utils.cli import ArgumentParser, split_command
from utils.config import load_experiment

BASELINE = str(ROOT / "experiments" / "impala-baseline.yaml")


def run_sh(*args, env):
    """./run.sh as a user runs it; the CompletedProcess."""
    return subprocess.run(["./run.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


def orderings(options, positionals):
    """The same arguments with the positionals before, between and after the options (each a list of strings)."""
    flat = [arg for option in options for arg in option]
    between = []
    for i, option in enumerate(options):
        between += option + positionals[i:i + 1]
    between += positionals[len(options):]
    return [positionals + flat, between, flat + positionals]


def parsed_alike(parse, options, positionals):
    """parse() of every ordering; asserts they all give the same namespace and returns the first."""
    parsed = [vars(parse(argv)) for argv in orderings(options, positionals)]
    assert all(p == parsed[0] for p in parsed), parsed
    return parsed[0]


def test_orderings_put_positionals_everywhere():
    assert orderings([["--a", "1"], ["--b"]], ["x=1", "y=2", "z=3"]) == [
        ["x=1", "y=2", "z=3", "--a", "1", "--b"],
        ["--a", "1", "x=1", "--b", "y=2", "z=3"],
        ["--a", "1", "--b", "x=1", "y=2", "z=3"],
    ]


def test_train_takes_overrides_before_between_and_after_options():
    import train

    args = parsed_alike(train.parse_args, [["-f", BASELINE], ["--progress-bar", "off"], ["--fresh"], ["--num-cpus", "2"]],
                        ["env_config.env_name=starpilot", "vf_clip_param=1000.0", "stop.timesteps_total=5000"])
    assert args["progress_bar"] == "off" and args["fresh"] and args["num_cpus"] == 2
    exp = load_experiment(args["experiment_file"], args["overrides"], cpus=2, gpus=0)
    assert exp.env_name == "starpilot" and exp.config["vf_clip_param"] == 1000.0 and exp.stop["timesteps_total"] == 5000


def test_run_sh_train_passes_overrides_after_an_option_to_the_config(tmp_path):
    """The issue's command, with the last override misspelt: it reaches the config check instead of argparse."""
    proc = run_sh("--train", "env_config.env_name=starpilot", "--progress-bar", "off", "vf_clip_parm=1000.0",
                  env={"OUTPUTS_DIR": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        'error: experiments/impala-baseline.yaml: unknown key "config.vf_clip_parm". Did you mean "vf_clip_param"?']


def test_rollout_takes_the_checkpoint_before_between_and_after_options():
    import rollout

    args = parsed_alike(rollout.parse_args, [["--episodes", "3"], ["--env-name", "bigfish"], ["--deterministic"]],
                        ["outputs/x/coinrun"])
    assert args["checkpoint"] == "outputs/x/coinrun" and args["episodes"] == 3 and args["deterministic"]


def test_launch_takes_the_experiment_before_between_and_after_options():
    args = parsed_alike(launch.parse_args, [["--dry-run"], ["--set", "lr=0.001"], ["--env-name", "bigfish"],
                                            ["--set", "vf_clip_param=1000.0"]], [BASELINE])
    exp, _ = launch.load_experiment(argparse.Namespace(**args))
    assert exp.env_name == "bigfish" and exp.config["lr"] == 0.001 and exp.config["vf_clip_param"] == 1000.0


@pytest.mark.parametrize("positionals", [["validate"], ["evaluate"], ["submit", "try", "a", "wider", "net"]])
def test_aicrowd_tools_takes_options_before_between_and_after_the_command(positionals):
    from aicrowd_tools.__main__ import parse_args

    args = parsed_alike(parse_args, [["--verbose"]], positionals)
    assert args["command"] == positionals[0] and args["verbose"]
    assert args.get("description") == (positionals[1:] or None)


def test_scripts_take_overrides_in_any_order():
    from scripts import bench, bench_processes, stress_signals

    args = parsed_alike(bench.parse_args, [["--quick"], ["--set", "lr=0.001"], ["--games", "coinrun", "bigfish"],
                                           ["--set", "gamma=0.9"], ["--frameworks", "torch"]], [])
    assert args["set"] == ["lr=0.001", "gamma=0.9"] and args["games"] == ["coinrun", "bigfish"]
    args = parsed_alike(bench_processes.parse_args, [["--set", "lr=0.001"], ["--quick"], ["--set", "gamma=0.9"]], [])
    assert args["set"] == ["lr=0.001", "gamma=0.9"]
    assert parsed_alike(stress_signals.parse_args, [["--trials", "1"], ["--phases", "start-up", "logging"]], [])["trials"] == 1


def test_unknown_option_names_it_and_the_closest_option(capsys):
    p = ArgumentParser(prog="tool.py")
    p.add_argument("--progress-bar")
    for argv, named in ((["--progres-bar", "off"], '"--progres-bar"'), (["--progres-bar=off"], '"--progres-bar=off"')):
        with pytest.raises(SystemExit) as info:
            p.parse_args(argv)
        assert info.value.code == 2
        assert capsys.readouterr().err == (f'error: Unknown option {named}. Did you mean "--progress-bar"? '
                                           "Run tool.py --help for the arguments.\n")


def test_stray_positional_is_named_and_an_override_pointed_to_set(capsys):
    p = ArgumentParser(prog="tool.py")
    p.add_argument("--set", action="append")
    for arg, expected in (("lr=0.1", 'error: Unexpected argument "lr=0.1": overrides go with --set. Did you mean "--set lr=0.1"?'),
                          ("stray", 'error: Unexpected argument "stray". Run tool.py --help for the arguments.')):
        with pytest.raises(SystemExit):
            p.parse_args([arg])
        assert capsys.readouterr().err == expected + "\n"


def test_split_command_takes_the_first_word_and_names_an_unknown_one(capsys):
    top = ArgumentParser(prog="tool")
    assert split_command(top, ["--verbose", "submit", "a", "--x"], ["validate", "submit"]) == ("submit", ["--verbose", "a", "--x"])
    for argv, expected in ((["--verbose"], "error: No command given. Use one of: validate, submit."),
                           (["validat"], 'error: Unknown command "validat". Did you mean "validate"? Allowed: submit, validate.')):
        with pytest.raises(SystemExit):
            split_command(top, argv, ["validate", "submit"])
        assert capsys.readouterr().err == expected + "\n"


# One subprocess per entry point, as a user runs it: (command, the mistyped option, the option it should suggest).
MISTYPED = {
    "train.py": (["train.py", "-f", BASELINE, "lr=0.001", "--progres-bar", "off", "gamma=0.9"], "--progres-bar", "--progress-bar"),
    "rollout.py": (["rollout.py", "outputs/x", "--episods", "3"], "--episods", "--episodes"),
    "launch.py": (["sagemaker/launch.py", BASELINE, "--dry-rn"], "--dry-rn", "--dry-run"),
    "aicrowd_tools": (["-m", "aicrowd_tools", "validate", "--verbse"], "--verbse", "--verbose"),
    "bench.py": (["scripts/bench.py", "--repeets", "1"], "--repeets", "--repeats"),
    "bench_processes.py": (["scripts/bench_processes.py", "--intervl", "1"], "--intervl", "--interval"),
    "stress_signals.py": (["scripts/stress_signals.py", "--trails", "1"], "--trails", "--trials"),
    "bench_env.py": (["scripts/bench_env.py", "--stesp", "10"], "--stesp", "--steps"),
    "bench_models.py": (["scripts/bench_models.py", "--bacth", "8"], "--bacth", "--batch"),
    "run.sh --train": (["./run.sh", "--train", "lr=0.001", "--progres-bar", "off"], "--progres-bar", "--progress-bar"),
    "run.sh --rollout": (["./run.sh", "--rollout", "--episods", "3"], "--episods", "--episodes"),
    "run.sh --validate": (["./run.sh", "--validate", "--verbse"], "--verbse", "--verbose"),
    "run.sh --evaluate": (["./run.sh", "--evaluate", "--verbse"], "--verbse", "--verbose"),
}


@pytest.mark.parametrize("entry", MISTYPED)
def test_mistyped_option_gets_one_error_line(entry, tmp_path):
    argv, wrong, right = MISTYPED[entry]
    env = {"OUTPUTS_DIR": str(tmp_path)}
    proc = run_sh(*argv[1:], env=env) if argv[0] == "./run.sh" else run_script(*argv, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: "), proc.stderr
    assert f'"{wrong}"' in proc.stderr and f'Did you mean "{right}"?' in proc.stderr and "usage:" not in proc.stderr
    assert proc.stdout == ""
