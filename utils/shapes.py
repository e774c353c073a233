"""The shape RLlib expects for keys whose default is None (or a class), where the default's type says nothing.

A value of the wrong shape is otherwise accepted and fails deep inside RLlib (a schedule written as text ends
in "IndexError: list index out of range"). Each entry: what RLlib wants and an example to copy.
"""

import importlib
import numbers

from utils.errors import UserError


def _number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _schedule(value):
    pairs = isinstance(value, list) and value and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(_number(x) for x in p) for p in value)
    if not pairs:
        return False
    steps = [p[0] for p in value]
    return steps[0] >= 0 and steps == sorted(steps)


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _conv_filters(value):
    def kernel(k):
        return _positive_int(k) or isinstance(k, list) and len(k) == 2 and all(_positive_int(x) for x in k)

    return isinstance(value, list) and value and all(
        isinstance(f, list) and len(f) == 3 and _positive_int(f[0]) and kernel(f[1]) and _positive_int(f[2]) for f in value)


def _exploration(value):
    return isinstance(value, dict) and (not value or isinstance(value.get("type"), str))


def _import_path(value, want_class):
    """None when `value` ("module:Name") imports to a class (or a callable); else what is wrong."""
    if not isinstance(value, str):
        return "it is not a string"
    module, sep, attr = value.partition(":")
    if not sep:
        module, _, attr = value.rpartition(".")
        return f'write it as "{module}:{attr}": module, a colon, then the name' if module else "it names no module"
    try:
        obj = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        return f"module {module} cannot be imported ({e})"
    except AttributeError:
        return f"module {module} has no {attr}"
    if want_class and not isinstance(obj, type):
        return f"{attr} is not a class"
    if not callable(obj):
        return f"{attr} is not callable"
    return None


# key path -> (check, what RLlib wants, example). check returns True/False, or for import paths a reason string.
SHAPES = {
    "config.lr_schedule": (_schedule, "a list of [timestep, value] pairs, timesteps rising from 0",
                           "lr_schedule: [[0, 5.0e-4], [8000000, 1.0e-5]]"),
    "config.entropy_coeff_schedule": (_schedule, "a list of [timestep, value] pairs, timesteps rising from 0",
                                      "entropy_coeff_schedule: [[0, 0.01], [8000000, 0.001]]"),
    "config.evaluation_config": (lambda v: isinstance(v, dict), "a mapping of config keys used for evaluation",
                                 "evaluation_config: {explore: false}"),
    "config.exploration_config": (_exploration, "a mapping with the Exploration class under `type`",
                                  "exploration_config: {type: StochasticSampling}"),
    "config.evaluation_interval": (_positive_int, "an integer >= 1 (evaluate every N iterations)",
                                   "evaluation_interval: 10"),
    "config.evaluation_duration": (lambda v: _positive_int(v) or v == "auto", "an integer >= 1 or auto",
                                   "evaluation_duration: 10"),
    "config.seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", "seed: 0"),
    "config.grad_clip": (lambda v: _number(v) and v > 0, "a number > 0", "grad_clip: 0.5"),
    "config.min_time_s_per_iteration": (lambda v: _number(v) and v >= 0, "a number of seconds >= 0",
                                        "min_time_s_per_iteration: 0"),
    "config.clip_rewards": (lambda v: isinstance(v, bool) or _number(v) and v > 0, "true, false or a number > 0",
                            "clip_rewards: false"),
    "config.training_intensity": (lambda v: _number(v) and v > 0, "a number > 0", "training_intensity: 1.0"),
    "config.policies_to_train": (lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v),
                                 "a list of policy ids", "policies_to_train: [default_policy]"),
    "config.output": (lambda v: isinstance(v, str), "a directory name", "output: outputs/samples"),
    "config.callbacks": (lambda v: _import_path(v, want_class=True), "a callbacks class as module:Class",
                         "callbacks: callbacks:ProcgenCallbacks"),
    "config.custom_eval_function": (lambda v: _import_path(v, want_class=False), "a function as module:function",
                                    "custom_eval_function: my_eval:evaluate"),
    "config.model.conv_filters": (_conv_filters, "a list of [out_channels, [kernel, kernel], stride]",
                                  "conv_filters: [[16, [8, 8], 4], [32, [4, 4], 2], [256, [8, 8], 1]]"),
    "config.model.custom_action_dist": (lambda v: isinstance(v, str), "a registered action distribution name",
                                        "custom_action_dist: my_dist"),
}


def check_shape(where, path, value):
    """Raise UserError when `value` does not have the shape RLlib wants for `path`; null always passes."""
    if value is None or path not in SHAPES:
        return
    check, want, example = SHAPES[path]
    result = check(value)
    # Import paths answer None (fine) or why not; the other checks answer True or False.
    if result is None or result is True:
        return
    detail = f" ({result})" if isinstance(result, str) else ""
    raise UserError(f"{where} must be {want}, not {value!r}{detail}. Example: {example}")
