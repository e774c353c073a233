"""Per-iteration results next to the checkpoints: result.json (one JSON object a line) and TensorBoard events.

Scalars are namespaced as in cleanrl: `charts/*` for the stable progress figures, and RLlib's own
nested names (`env_runners/...`, `info/learner/...`) for the rest. The x axis is timesteps_total.
"""

import json
import math
from numbers import Number


def flatten(result, prefix=""):
    """Numeric leaves of a nested RLlib result, keyed by slash-joined paths (config excluded)."""
    for key, value in result.items():
        if key == "config":
            continue
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from flatten(value, path + "/")
        elif isinstance(value, Number) and not isinstance(value, bool):
            yield path, float(value)


class ResultLogger:
    def __init__(self, run_dir):
        from tensorboardX import SummaryWriter

        self.json = open(run_dir / "result.json", "a")
        self.tb = SummaryWriter(str(run_dir))

    def log(self, result, progress):
        step = int(progress["timesteps_total"]) if not math.isnan(progress["timesteps_total"]) else 0
        flat = dict(flatten(result))
        self.json.write(json.dumps({**flat, **{f"charts/{k}": v for k, v in progress.items()}}) + "\n")
        self.json.flush()
        for name, value in progress.items():
            if not math.isnan(value):
                self.tb.add_scalar(f"charts/{name}", value, step)
        for name, value in flat.items():
            if not math.isnan(value):
                self.tb.add_scalar(name, value, step)
        self.tb.flush()

    def close(self):
        self.json.close()
        self.tb.close()
