"""Read experiment YAML files strictly: duplicate keys, syntax errors and empty files are UserErrors."""

from pathlib import Path

import yaml

from utils.errors import UserError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML keeps the last one silently)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise UserError(
                f'{loader.name}: duplicate key "{key}" at line {key_node.start_mark.line + 1} '
                f"(first at line {seen[key]}). Keep one of them."
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path):
    """Parse a YAML file, turning every parse problem into a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Experiment file {path} does not exist. Pass an existing file, e.g. -f experiments/impala-baseline.yaml.")
    text = path.read_text()
    loader = _StrictLoader(text)
    loader.name = str(path)
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
    if data is None:
        raise UserError(f"{path} is empty. An experiment file holds one mapping: NAME: {{run: PPO, env: ..., config: ...}}.")
    return data


def parse_value(text):
    """A command-line override value, typed as the same text would be in YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
