"""Training progress: one stable `key: value` line per iteration, and a bar when a person watches.

Log scrapers (SageMaker metric definitions, CI) read these names; keep them stable.
"""

import math
import sys

# name -> (path in RLlib's result dict, format)
PROGRESS_KEYS = {
    "training_iteration": (("training_iteration",), "d"),
    "timesteps_total": (("num_env_steps_sampled_lifetime",), "d"),
    "episode_reward_mean": (("env_runners", "episode_reward_mean"), ".3f"),
    "episode_len_mean": (("env_runners", "episode_len_mean"), ".1f"),
    "normalized_return_mean": (("env_runners", "custom_metrics", "normalized_return_mean"), ".4f"),
    "episodes_this_iter": (("env_runners", "episodes_this_iter"), "d"),
    "steps_per_second": ((), ".1f"),
    "time_total_s": (("time_total_s",), ".1f"),
}


def _dig(result, path):
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return math.nan
        result = result[key]
    return result


def metrics(result):
    """The progress figures of one RLlib result, by their stable names."""
    out = {name: _dig(result, path) for name, (path, _) in PROGRESS_KEYS.items() if path}
    if isinstance(out["timesteps_total"], float):
        out["timesteps_total"] = result.get("timesteps_total", math.nan)
    steps = result.get("num_env_steps_sampled_this_iter", 0)
    seconds = result.get("time_this_iter_s") or math.nan
    out["steps_per_second"] = steps / seconds
    return out


def format_line(values):
    parts = []
    for name, (_, fmt) in PROGRESS_KEYS.items():
        value = values.get(name, math.nan)
        if isinstance(value, float) and math.isnan(value):
            text = "nan"
        elif fmt == "d":
            text = str(int(value))
        else:
            text = format(float(value), fmt)
        parts.append(f"{name}: {text}")
    return ", ".join(parts)


class Progress:
    """Prints the key: value lines on stdout; draws a tqdm bar on stderr only when it is a terminal."""

    def __init__(self, stop, start_values=None, enabled=None):
        self.stop = stop
        enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        unit, total = self._budget()
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, unit_scale=True, dynamic_ncols=True, file=sys.stderr)
            if start_values:
                self.bar.update(self._position(start_values))

    def _budget(self):
        if "timesteps_total" in self.stop:
            return "step", int(self.stop["timesteps_total"])
        if "training_iteration" in self.stop:
            return "iter", int(self.stop["training_iteration"])
        if "time_total_s" in self.stop:
            return "s", int(self.stop["time_total_s"])
        return "iter", None

    def _position(self, values):
        key = {"step": "timesteps_total", "iter": "training_iteration", "s": "time_total_s"}[self._budget()[0]]
        value = values.get(key, 0)
        return 0 if isinstance(value, float) and math.isnan(value) else int(value)

    def update(self, values):
        line = format_line(values)
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
            self.bar.update(max(0, self._position(values) - self.bar.n))
            self.bar.set_postfix(reward=f"{values['episode_reward_mean']:.2f}", sps=f"{values['steps_per_second']:.0f}")
        else:
            print(line, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def stop_reason(stop, values):
    """The first stop condition that `values` meets, or None."""
    for key, limit in stop.items():
        value = values.get(key, math.nan)
        if not (isinstance(value, float) and math.isnan(value)) and value >= limit:
            return key
    return None
