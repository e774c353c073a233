"""Where checkpoints live and which one is newest.

A run directory holds `checkpoints/checkpoint_NNNNNN/` (RLlib Algorithm checkpoints, NNNNNN the
training iteration) next to the resolved `config.yaml`.
"""

import os
import shutil
import threading
from pathlib import Path

from utils.errors import UserError

MARKER = "rllib_checkpoint.json"


def is_checkpoint(path):
    return (Path(path) / MARKER).is_file()


def list_checkpoints(directory):
    """Checkpoints under `directory` (a run dir or its checkpoints/ folder), oldest first."""
    directory = Path(directory)
    if (directory / "checkpoints").is_dir():
        directory = directory / "checkpoints"
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("checkpoint_*") if is_checkpoint(p)]
    return sorted(found, key=lambda p: p.name)


def newest_checkpoint(directory):
    found = list_checkpoints(directory)
    return found[-1] if found else None


def checkpoint_path(iteration, run_dir):
    return Path(run_dir) / "checkpoints" / f"checkpoint_{iteration:06d}"


PARTIAL = ".partial-"


def write_atomically(path, write):
    """Have `write(partial_dir)` fill a sibling directory, then rename it to `path`; returns `path`.

    A checkpoint directory therefore either is complete or does not exist, whatever stops the process
    mid-write (a signal, SIGKILL, a full disk). When `path` already holds a complete checkpoint (another
    thread finished the same iteration first), that one is kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}{PARTIAL}{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    if is_checkpoint(path):
        shutil.rmtree(partial, ignore_errors=True)
        return path
    shutil.rmtree(path, ignore_errors=True)  # an incomplete one from before atomic writes
    os.replace(partial, path)
    return path


def write_text_atomically(path, text):
    """Write a small text file so that readers see the old or the new content, never half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{PARTIAL}{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def prune(run_dir, keep):
    """Delete all but the newest `keep` checkpoints (None keeps all), and partial writes of dead processes."""
    folder = Path(run_dir) / "checkpoints"
    for partial in folder.glob(f".checkpoint_*{PARTIAL}*"):
        pid = partial.name.rsplit(PARTIAL, 1)[1].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid():
            shutil.rmtree(partial, ignore_errors=True)
    if keep is None:
        return
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(path):
    """A user-given checkpoint path: a checkpoint dir, or a run dir / checkpoints dir holding some."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Checkpoint {path} does not exist. Pass a checkpoint_NNNNNN directory or a run directory under outputs/.")
    if is_checkpoint(path):
        return path
    newest = newest_checkpoint(path)
    if newest is None:
        raise UserError(
            f"{path} is not a checkpoint (no {MARKER}) and holds none. "
            "Pass a checkpoint_NNNNNN directory or a run directory that train.py wrote."
        )
    return newest


def find_run_config(checkpoint):
    """The config.yaml train.py saved for the run that wrote `checkpoint`, or None."""
    for parent in Path(checkpoint).resolve().parents:
        if (parent / "config.yaml").is_file():
            return parent / "config.yaml"
        if parent.name and parent.parent == parent:
            break
    return None
