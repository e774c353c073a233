"""Custom model files as the 2020 kit had them: found in models/ by reading them, and checked for Ray 0.8 code.

The 2020 kit imported every file in models/ and each registered itself with
`ModelCatalog.register_custom_model("name", Class)` at its bottom. Here files are read, not imported: a file
dropped into models/ is usable by the name it registers (or, with no such call, by its file name when it holds
one ModelV2 class), with its framework taken from the base class. The registration itself still happens in
registry.register_all, once. `ray08_problems(name)` lists the Ray 0.8 idioms that would otherwise fail deep
inside an env runner, each with file, line and the change to make.
"""

import ast
from pathlib import Path

from utils.errors import UserError

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
_TORCH_BASES = ("TorchModelV2", "nn.Module", "torch.nn.Module")
_TF_BASES = ("TFModelV2", "RecurrentNetwork", "tf.keras.Model", "keras.Model")


def _base_names(cls):
    return [ast.unparse(base) for base in cls.bases]


def _framework(cls):
    bases = _base_names(cls)
    if any(b.endswith(t) for b in bases for t in _TORCH_BASES):
        return "torch"
    if any(b.endswith(t) for b in bases for t in _TF_BASES):
        return "tf"
    return None


def _parse(path):
    try:
        return ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return None  # reported when the model is used (importing it raises with the line)


def discover(known=None, models_dir=MODELS_DIR):
    """{name: ("models.FILE:Class", framework)} for model files in models/ that `known` does not list."""
    known = known or {}
    listed = {spec.partition(":")[0] for spec, _ in known.values()}
    found = {}
    for path in sorted(models_dir.glob("*.py")):
        module = f"models.{path.stem}"
        if path.name.startswith("_") or module in listed:
            continue
        tree = _parse(path)
        if tree is None:
            continue
        classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef) and _framework(node)}
        registered = _registrations(tree)
        for name, cls in registered.items():
            if cls in classes and name not in known:
                found[name] = (f"{module}:{cls}", _framework(classes[cls]))
        if not registered and len(classes) == 1:
            (cls, node), = classes.items()
            if path.stem not in known:
                found[path.stem] = (f"{module}:{cls}", _framework(node))
    return found


def _registrations(tree):
    """{"name": "Class"} for each ModelCatalog.register_custom_model("name", Class) call in the file."""
    out = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "register_custom_model" and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[1], ast.Name)):
            out[str(node.args[0].value)] = node.args[1].id
    return out


def _ray08_findings(tree):
    """(line, what was written, the change to make) for each Ray 0.8 idiom in a model file."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = ast.unparse(node.value.func)
            if func.endswith("try_import_tf") and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                yield (node.lineno, ast.unparse(node),
                       "try_import_tf() now returns a tuple (tf1, tf, tfv); write tf1, tf, tfv = try_import_tf()")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if module and module.startswith("ray.rllib.agents"):
                yield (node.lineno, ast.unparse(node), "ray.rllib.agents is now ray.rllib.algorithms "
                       "(e.g. from ray.rllib.algorithms.callbacks import DefaultCallbacks)")
        elif isinstance(node, ast.Constant) and node.value == "custom_options":
            yield (node.lineno, '"custom_options"', 'the model options are in model_config["custom_model_config"]')
        elif isinstance(node, ast.Attribute) and ast.unparse(node).startswith(("tf.contrib", "tf.layers")):
            yield (node.lineno, ast.unparse(node), "TensorFlow 2 has no tf.contrib or tf.layers; use tf.keras.layers")


def ray08_problems(name, spec, models_dir=MODELS_DIR):
    """UserErrors (one per Ray 0.8 idiom) for the model `name` at "models.FILE:Class"; [] when none."""
    module = spec.partition(":")[0]
    if not module.startswith("models."):
        return []
    path = Path(models_dir) / (module.removeprefix("models.").replace(".", "/") + ".py")
    tree = _parse(path) if path.is_file() else None
    if tree is None:
        return []
    rel = f"models/{path.name}"
    seen, out = set(), []
    for line, written, change in _ray08_findings(tree):
        if (line, change) in seen:
            continue
        seen.add((line, change))
        out.append(UserError(f"{rel}:{line}: model {name} is written for Ray 0.8: `{written}`. Change: {change}."))
    return out
