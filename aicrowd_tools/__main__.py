"""python -m aicrowd_tools validate | evaluate | submit "description"  (run.sh's --validate, --evaluate, --submit)."""

import argparse
import os
import sys
from pathlib import Path

import utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF/Ray load)
from utils.cli import ArgumentParser, split_command
from utils.conventions import DEFAULT_EXPERIMENT
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m aicrowd_tools"
COMMANDS = {
    "validate": "preflight: check the repo against the grader's rules (no training)",
    "evaluate": "grade locally: train and roll out each game of $ENVS, then score",
    "submit": "preflight, then aicrowd submission create -d DESCRIPTION",
}


def parse_args(argv):
    """The command, then its own parser: options may come before or after the command and its words."""
    common = ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="show everything TensorFlow, Ray and gym print (by default their known start-up noise is hidden)")
    commands = "\n".join(f"  {name:10}{text}" for name, text in COMMANDS.items())
    top = ArgumentParser(prog=PROG, usage=f"{PROG} {{{','.join(COMMANDS)}}} [--verbose] ...", parents=[common],
                         description=f"{__doc__}\n\ncommands:\n{commands}",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    command, rest = split_command(top, argv, COMMANDS)
    p = ArgumentParser(prog=f"{PROG} {command}", description=COMMANDS[command], parents=[common])
    if command == "submit":
        p.add_argument("description", nargs="*", help="what this submission tries")
    args = p.parse_args(rest)
    args.command = command
    return args


def grader_games():
    """$ENVS, else all 16 games: the grader's private games can be any of them."""
    return os.environ.get("ENVS") or "all"


def validate():
    from aicrowd_tools.grader import GRADER_CPUS, GRADER_GPUS, MAX_ENV_STEPS, MAX_TRAIN_SECONDS
    from aicrowd_tools.preflight import Context, run_checks, summary_line

    ctx = Context(ROOT, os.environ.get("EXPERIMENT") or DEFAULT_EXPERIMENT, grader_games())
    print(f"validate: {ctx.experiment} against AIcrowd's Procgen grader ({GRADER_CPUS} vCPU, {GRADER_GPUS} GPU, "
          f"{MAX_ENV_STEPS:,} env steps, {MAX_TRAIN_SECONDS // 3600} h of training, files <= 30 MB)")
    results = run_checks(ctx)
    print(summary_line(results))
    return 0 if all(r.ok for r in results) else 1


def evaluate():
    from aicrowd_tools.evaluate import main

    return main(ROOT, os.environ)


def submit(description):
    from aicrowd_tools.submit import main

    return main(ROOT, os.environ.get("EXPERIMENT") or DEFAULT_EXPERIMENT, grader_games(), description)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from utils import quiet

    if args.command == "evaluate":
        from utils.signals import block_signals

        block_signals()  # before quiet's thread starts; evaluate's SignalGuard takes the signals with sigwait
    quiet.install(verbose=args.verbose)  # also reaches train.py and rollout.py, which inherit PROCGEN_VERBOSE
    os.chdir(ROOT)
    try:
        if args.command == "validate":
            return validate()
        if args.command == "evaluate":
            return evaluate()
        return submit(" ".join(args.description).strip())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
