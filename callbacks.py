"""Per-episode custom metrics for training results (RLlib old API stack callbacks)."""

from ray.rllib.callbacks.callbacks import RLlibCallback

from envs.games import GAMES, normalized_score


class ProcgenCallbacks(RLlibCallback):
    """Adds `normalized_return` (easy or hard constants, as configured) to every finished episode.

    RLlib reports it as env_runners/custom_metrics/normalized_return_mean (and _min, _max).
    """

    def on_episode_end(self, *, episode, worker=None, env_runner=None, **kwargs):
        runner = worker or env_runner
        env_config = getattr(runner, "env_context", None) or {}
        game = env_config.get("env_name", "coinrun")
        if game not in GAMES:
            return
        mode = env_config.get("distribution_mode", "easy")
        ret = episode.total_reward
        episode.custom_metrics["normalized_return"] = normalized_score(game, ret, mode)
