"""What AIcrowd's NeurIPS 2020 Procgen grader gives a submission, and the settings that select games.

The 2020 grader ran `./run.sh --train` then `./run.sh --rollout` for each game on an ml.p3.2xlarge
(8 vCPU, 1 V100) with AICROWD_IS_GRADING set and `env_name` replaced by the game: at most 8,000,000
environment steps (frame-skipped steps count) and 2 hours of training, rollouts in easy mode, each game
scored by its mean normalized return. Files over 30 MB were dropped; there was no network.
"""

import re

from envs.games import GAMES, ROUND2_GAMES
from utils.errors import UserError, closest
from utils.resources import GRADER_CPUS, GRADER_GPUS  # noqa: F401  (the grader's machine: one home, the resources model)

GRADER_ID = "evaluations-api-neurips-2020-procgen"
CHALLENGE_SLUG = "neurips-2020-procgen-competition"
CHALLENGE_URL = f"https://www.aicrowd.com/challenges/{CHALLENGE_SLUG}"
GITLAB_HOST = "gitlab.aicrowd.com"

MAX_ENV_STEPS = 8_000_000
MAX_TRAIN_SECONDS = 2 * 60 * 60
MAX_FILE_BYTES = 30 * 1024 * 1024

# env_config keys under which an env may repeat each action k times: the grader counts every frame.
FRAME_SKIP_KEYS = ("frame_skip", "frameskip", "action_repeat")


def parse_games(text, source="ENVS"):
    """The games named by `text`: empty for the six public round-2 games, `all` for the 16, else names."""
    names = [n for n in re.split(r"[\s,]+", (text or "").strip()) if n]
    if not names:
        return tuple(ROUND2_GAMES)
    if [n.lower() for n in names] == ["all"]:
        return tuple(GAMES)
    for name in names:
        if name not in GAMES:
            raise UserError(
                f'Unknown game "{name}" in {source}.{closest(name, GAMES)} Allowed: {", ".join(GAMES)}, or all. '
                f"Example: {source}=coinrun,bigfish"
            )
    return tuple(dict.fromkeys(names))


def frame_skip(exp):
    """How many frames one env step plays (1 unless the env config repeats actions)."""
    env_config = exp.config.get("env_config") or {}
    for key in FRAME_SKIP_KEYS:
        value = env_config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value
    return 1


def parse_duration(text, source):
    """Seconds from `7200`, `90s`, `30m` or `2h`."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"{source}={text} is not a duration. Use seconds or a unit, e.g. {source}=7200, {source}=30m or {source}=2h.")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_count(text, source, example, maximum=None):
    """A whole number >= 1 (underscores allowed: 8_000_000), at most `maximum`."""
    try:
        value = int(str(text).replace("_", "").strip())
    except ValueError:
        value = None
    if value is None or value < 1:
        raise UserError(f"{source}={text} is not a whole number >= 1. Example: {source}={example}.")
    if maximum is not None and value > maximum:
        raise UserError(f"{source}={text} is over the grader's limit of {maximum}. Use at most {source}={maximum}.")
    return value
