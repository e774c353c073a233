"""Read experiment YAML files strictly: duplicate keys, syntax errors and empty files are UserErrors."""

import re
from pathlib import Path

import yaml

from utils.errors import UserError, UserErrors


class _Loader(yaml.SafeLoader):
    """SafeLoader reading `5e-4` and `1e6` as numbers, as YAML 1.2 does (PyYAML follows YAML 1.1, where a float
    needs a dot, so `lr: 5e-4` would be the string '5e-4')."""


_Loader.yaml_implicit_resolvers = {first: list(resolvers) for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


class _StrictLoader(_Loader):
    """_Loader that refuses duplicate keys (plain YAML keeps the last one silently)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            first_line, first_node = seen[key]
            same = loader.construct_object(first_node, deep=True) == loader.construct_object(value_node, deep=True)
            fix = ("It repeats the same value: keep one of them (./run.sh --migrate FILE removes the repeat)."
                   if same else "The values differ (2020's YAML reader kept the last one): keep the one you mean.")
            loader.duplicates.append(
                f'{loader.name}: duplicate key "{key}" at line {key_node.start_mark.line + 1} '
                f"(first at line {first_line}). {fix}"
            )
            continue
        seen[key] = (key_node.start_mark.line + 1, value_node)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path, problems=None):
    """Parse a YAML file, turning every parse problem into a one-line UserError.

    Duplicate keys are all reported: raised together, or added to `problems` (utils.errors.Problems) when
    given, the last value kept as YAML would."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Experiment file {path} does not exist. Pass an existing file, e.g. -f experiments/impala-baseline.yaml.")
    text = path.read_text()
    loader = _StrictLoader(text)
    loader.name = str(path)
    loader.duplicates = []  # every duplicate key of the file, reported together
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: YAML syntax error{where}: {e.problem or e.context}. Fix the YAML there.") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: YAML error: {e}") from None
    finally:
        loader.dispose()
    if problems is not None:
        # The caller goes on checking the rest of the file and reports everything together.
        for message in loader.duplicates:
            problems.add(UserError(message))
    elif len(loader.duplicates) == 1:
        raise UserError(loader.duplicates[0])
    elif loader.duplicates:
        raise UserErrors(loader.duplicates, path)
    if data is None:
        raise UserError(f"{path} is empty. An experiment file holds one mapping: NAME: {{run: PPO, env: ..., config: ...}}.")
    return data


def parse_value(text):
    """A command-line override value, typed as the same text would be in YAML."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError:
        return text
