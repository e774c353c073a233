"""The two tracks the 2020 competition graded, and per-game weights, for `./run.sh --evaluate`.

- sample efficiency (NUM_LEVELS unset or 0, the default): train and roll out on unlimited levels;
- generalization (NUM_LEVELS=200 in 2020): train on levels [0, N), roll out on levels the agent never saw,
  [N, 2**31 - 1), and on its training levels, so the table shows both scores and the gap between them.

WEIGHTS gives each game a weight for a weighted mean beside the plain one (round 2: the six public games 1/12
each, the four private ones 1/8; `WEIGHTS=round2` is that rule applied to the games of ENVS).
"""

import re
from fractions import Fraction

from envs.games import GAMES, ROUND2_GAMES
from utils.errors import UserError, closest

LEVEL_SEED_END = 2**31 - 1  # procgen draws level seeds below INT32_MAX; start_level + num_levels may not pass it
GENERALIZATION_LEVELS = 200  # the 2020 competition's generalization track
ROUND2_PUBLIC, ROUND2_PRIVATE = Fraction(1, 12), Fraction(1, 8)
WEIGHTS_FORMAT = ("GAME:WEIGHT pairs separated by commas, each weight a number >= 0 or a fraction such as 1/12, "
                  "or round2 (the six public games 1/12 each, any other game 1/8)")
WEIGHTS_EXAMPLE = "WEIGHTS=coinrun:1/12,bigfish:1/12 (or WEIGHTS=round2)"


def parse_num_levels(text, source="NUM_LEVELS"):
    """Training levels of the generalization track: 0 (unset) for the default track, else N >= 1."""
    raw = "" if text is None else str(text).strip()
    if not raw:
        return 0
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = None
    if value is None or value < 0 or value >= LEVEL_SEED_END:
        raise UserError(
            f"{source}={text} is not a number of levels. Allowed: a whole number from 0 (unlimited levels, the default "
            f"track) to {LEVEL_SEED_END - 1}. For the 2020 generalization track use {source}={GENERALIZATION_LEVELS}; "
            f"unset it for the default track."
        )
    return value


def level_ranges(num_levels):
    """{'train': (start_level, num_levels), 'test': (...)} for procgen: test levels are all the others above."""
    return {"train": (0, num_levels), "test": (num_levels, LEVEL_SEED_END - num_levels)}


def _weight(text, game, source):
    try:
        value = Fraction(text.strip())  # "0.25", "1/12", "2"
    except (ValueError, ZeroDivisionError):
        value = None
    if value is None or value < 0:
        raise UserError(f'{source}: the weight "{text}" of {game} is not a number >= 0. Allowed: {WEIGHTS_FORMAT}. '
                        f"Example: {WEIGHTS_EXAMPLE}.")
    return value


def parse_weights(text, games, source="WEIGHTS"):
    """{game: weight} for every game of `games`, or None when `text` is empty (no weighted mean)."""
    raw = (text or "").strip()
    if not raw:
        return None
    if raw.lower() == "round2":
        return {g: float(ROUND2_PUBLIC if g in ROUND2_GAMES else ROUND2_PRIVATE) for g in games}
    weights = {}
    for item in (i for i in re.split(r"[\s,]+", raw) if i):
        game, sep, value = item.partition(":") if ":" in item else item.partition("=")
        if not sep or not game or not value:
            raise UserError(f'{source}: "{item}" is not GAME:WEIGHT. Allowed: {WEIGHTS_FORMAT}. Example: {WEIGHTS_EXAMPLE}.')
        if game not in GAMES:
            raise UserError(f'Unknown game "{game}" in {source}.{closest(game, GAMES)} Allowed: {", ".join(GAMES)}. '
                            f"Example: {WEIGHTS_EXAMPLE}.")
        if game in weights:
            raise UserError(f"{source} gives {game} twice. Give each game one weight. Example: {WEIGHTS_EXAMPLE}.")
        weights[game] = _weight(value, game, source)
    unused = [g for g in weights if g not in games]
    if unused:
        raise UserError(f"{source} weighs {', '.join(unused)}, which ENVS does not grade (ENVS: {', '.join(games)}). "
                        f"Add them to ENVS or remove them from {source}.")
    missing = [g for g in games if g not in weights]
    if missing:
        raise UserError(f"{source} gives no weight to {', '.join(missing)}, which ENVS grades. Give every game of ENVS "
                        f"a weight (0 leaves one out), e.g. {','.join(f'{g}:1' for g in games)}.")
    if sum(weights.values()) == 0:
        raise UserError(f"{source} weighs every game 0, so there is no weighted mean. Give at least one game a weight > 0.")
    return {g: float(weights[g]) for g in games}


def weighted_mean(rows, weights, key="normalized_score"):
    """sum(w * score) / sum(w) over the games that ran; None without weights or scores."""
    if not weights:
        return None
    pairs = [(weights[r["game"]], r[key]) for r in rows if r["status"] == "ok" and r.get(key) is not None]
    total = sum(w for w, _ in pairs)
    return sum(w * s for w, s in pairs) / total if total else None


def describe(num_levels):
    """One line naming the track and its levels."""
    if not num_levels:
        return "default (sample efficiency): unlimited levels for training and rollouts"
    ranges = level_ranges(num_levels)
    (train_start, train_n), (test_start, test_n) = ranges["train"], ranges["test"]
    return (f"generalization: trains on levels [{train_start}, {train_start + train_n}), scored on unseen levels "
            f"[{test_start}, {test_start + test_n}) and on its training levels")


def summary(settings, rows):
    """The report's track and weight entries."""
    track = {"track": "generalization" if settings.num_levels else "default", "num_levels": settings.num_levels}
    if settings.num_levels:
        ranges = level_ranges(settings.num_levels)
        track["train_levels"] = [ranges["train"][0], sum(ranges["train"])]
        track["test_levels"] = [ranges["test"][0], sum(ranges["test"])]
        scores = [r["train_levels_normalized_score"] for r in rows if r["status"] == "ok"]
        track["mean_train_levels_normalized_score"] = sum(scores) / len(scores) if scores else None
    if settings.weights:
        track["weights"] = settings.weights
        track["weighted_mean_normalized_score"] = weighted_mean(rows, settings.weights)
        if settings.num_levels:
            track["weighted_mean_train_levels_normalized_score"] = weighted_mean(
                rows, settings.weights, "train_levels_normalized_score")
    return track


def fraction(weight):
    """A weight as the user likely wrote it: 1/12 rather than 0.0833."""
    f = Fraction(weight).limit_denominator(1000)
    return str(f) if abs(float(f) - weight) < 1e-9 else f"{weight:g}"


SCORE_KEYS = ("mean_normalized_score", "mean_train_levels_normalized_score", "weighted_mean_normalized_score",
              "weighted_mean_train_levels_normalized_score")


def check_levels(experiment, games, num_levels):
    """Before any training: UserError when the experiment refuses the generalization track's levels for a game."""
    if not num_levels:
        return
    from utils.config import load_experiment

    start, count = level_ranges(num_levels)["train"]
    for game in games:
        try:
            load_experiment(experiment, [f"env_config.env_name={game}", f"env_config.start_level={start}",
                                         f"env_config.num_levels={count}"])
        except UserError as e:
            raise UserError(f"NUM_LEVELS={num_levels}: {experiment} refuses training levels [{start}, {start + count}) "
                            f"for {game}: {e} Unset NUM_LEVELS for the default track, or fix the experiment.") from None


def score_lines(report):
    """`key: value` lines of the means the report holds (plain, training levels, weighted)."""
    return [f"{key}: {report[key]:.4f}" for key in SCORE_KEYS[1:] if report.get(key) is not None]
