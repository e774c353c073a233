"""The 16 Procgen games with their normalization constants and episode limits.

Constants are the Procgen paper's (Cobbe et al. 2019, appendix C; openai/train-procgen
constants.py): R_min is the score of an agent trained with its observations masked (the
"blind" agent), R_max the maximum. Normalized score = (R - R_min) / (R_max - R_min).
"""

from dataclasses import dataclass

from utils.errors import unknown_name


@dataclass(frozen=True)
class Game:
    name: str
    easy_min: float
    easy_max: float
    hard_min: float
    hard_max: float
    timeout: int  # episode step limit
    random_easy: float  # mean return of uniform random actions, easy mode


GAMES = {
    g.name: g
    for g in [
        Game("coinrun", 5, 10, 5, 10, 1000, 2.71),
        Game("starpilot", 2.5, 64, 1.5, 35, 1000, 1.53),
        Game("caveflyer", 3.5, 12, 2, 13.4, 1000, 2.60),
        Game("dodgeball", 1.5, 19, 1.5, 19, 1000, 0.61),
        Game("fruitbot", -1.5, 32.4, -0.5, 27.2, 1000, -2.53),
        Game("chaser", 0.5, 13, 0.5, 14.2, 1000, 0.66),
        Game("miner", 1.5, 13, 1.5, 20, 1000, 1.25),
        Game("jumper", 1, 10, 1, 10, 1000, 3.41),
        Game("leaper", 1.5, 10, 1.5, 10, 500, 2.51),
        Game("maze", 5, 10, 4, 10, 500, 4.27),
        Game("bigfish", 1, 40, 0, 40, 6000, 0.87),
        Game("heist", 3.5, 10, 2, 10, 1000, 3.08),
        Game("climber", 2, 12.6, 1, 12.6, 1000, 2.22),
        Game("plunder", 4.5, 30, 3, 30, 4000, 4.32),
        Game("ninja", 3.5, 10, 2, 10, 1000, 2.56),
        Game("bossfight", 0.5, 13, 0.5, 13, 4000, 0.05),
    ]
}

# The six public games of the 2020 competition's round 2.
ROUND2_GAMES = ("coinrun", "bigfish", "miner", "chaser", "starpilot", "plunder")

DISTRIBUTION_MODES = ("easy", "hard", "extreme", "memory", "exploration")


def get_game(name, where=""):
    """The Game called `name`, or a UserError naming the closest game."""
    if name not in GAMES:
        raise unknown_name("game", name, GAMES, where)
    return GAMES[name]


def normalized_score(name, episode_return, distribution_mode="easy"):
    """(R - R_min) / (R_max - R_min) with the paper's constants for that mode."""
    game = get_game(name)
    lo, hi = (game.hard_min, game.hard_max) if distribution_mode == "hard" else (game.easy_min, game.easy_max)
    return (episode_return - lo) / (hi - lo)
