"""The one place that registers this project's plugins with Ray: `register_all()`.

Each kind keeps its own name -> lazy-loader table (envs.ENVS, models.MODELS,
algorithms.ALGORITHMS, preprocessors.PREPROCESSORS); this module resolves names
and registers them, explicitly, so importing a module never registers anything as a side effect.
"""

import importlib

import utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF/Ray load)
from algorithms import ALGORITHMS as CUSTOM_ALGORITHMS
from envs import ENVS
from models import MODELS
from preprocessors import PREPROCESSORS
from utils.errors import unknown_name


def load_object(path):
    """Import "package.module:Attr" and return Attr."""
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


def env_module(name, where=""):
    if name not in ENVS:
        raise unknown_name("env", name, ENVS, where)
    return importlib.import_module(ENVS[name])


def model_names():
    return tuple(MODELS)


def model_path(name):
    """"module:Class" of a registered model (where its file is)."""
    return MODELS[name][0]


def model_framework(name):
    """"tf" or "torch": the framework the model is written for (known without importing it)."""
    return MODELS[name][1]


def preprocessor_names():
    return tuple(PREPROCESSORS)


def custom_algorithm_names():
    return tuple(CUSTOM_ALGORITHMS)


def model_class(name, where=""):
    if name not in MODELS:
        raise unknown_name("model", name, MODELS, where)
    return load_object(MODELS[name][0])


def preprocessor_class(name, where=""):
    if name not in PREPROCESSORS:
        raise unknown_name("preprocessor", name, PREPROCESSORS, where)
    return load_object(PREPROCESSORS[name])


def rllib_algorithm_names():
    from ray.rllib.algorithms.registry import ALGORITHMS

    return set(ALGORITHMS)


def algorithm_names():
    return set(CUSTOM_ALGORITHMS) | rllib_algorithm_names()


def algorithm_class(name, where=""):
    """The Algorithm class for `run: name` (custom first, then RLlib's registry)."""
    if name in CUSTOM_ALGORITHMS:
        return load_object(CUSTOM_ALGORITHMS[name])
    if name in rllib_algorithm_names():
        from ray.rllib.algorithms.registry import ALGORITHMS

        return ALGORITHMS[name]()[0]
    raise unknown_name("algorithm (run:)", name, algorithm_names(), where)


def plugin_kinds():
    """(kind, names, loader) for each kind of plugin: what `--validate` loads one by one."""
    return [("env", tuple(ENVS), env_module), ("model", model_names(), model_class),
            ("preprocessor", preprocessor_names(), preprocessor_class),
            ("custom algorithm", custom_algorithm_names(), algorithm_class)]


def register_all(models=None, algorithms=None):
    """Register every env, the given models and custom algorithms (default: all) with Ray/RLlib and Tune.

    Custom algorithms go into Tune's registry too, so `tune.run("RandomPolicy", ...)` and RLlib's own tools
    that look a name up there find them, as they find PPO."""
    from ray.rllib.models import ModelCatalog
    from ray.tune.registry import register_env, register_trainable

    for name in ENVS:
        register_env(name, _env_creator(name))
    for name in MODELS if models is None else models:
        ModelCatalog.register_custom_model(name, model_class(name))
    for name in CUSTOM_ALGORITHMS if algorithms is None else algorithms:
        register_trainable(name, algorithm_class(name))


def register_experiment(exp):
    """Register what one experiment uses: every env, its custom model and its algorithm when custom."""
    model = (exp.config.get("model") or {}).get("custom_model")
    register_all(models=[model] if model else [], algorithms=[exp.run] if exp.run in CUSTOM_ALGORITHMS else [])


def _env_creator(name):
    def create(env_context):
        return env_module(name).create(env_context)

    return create
