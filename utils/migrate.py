"""Rewrite a 2020 experiment file in RLlib 2.60's names: `./run.sh --migrate OLD.yaml [NEW.yaml]`.

The file is edited line by line, so its comments and layout stay: each changed line gets a comment saying
what it was and why, removed keys are commented out, and the list printed is the one `train.py` prints as
notes for the old file. Harmless 2020 quirks are fixed with a note (a duplicate key repeating the same value,
`explore: True,` which Ray 0.8 read as true); ambiguous ones are left for the user with the question spelled
out. Running it again on its own output changes nothing. The translation itself is utils/legacy.py's.
"""

import argparse
import re
import shutil
import sys
from pathlib import Path

import yaml

from utils.cli import ArgumentParser
from utils.errors import Problems, UserError
from utils.legacy import Change

_BOOL_TEXT = re.compile(r"^\s*['\"]?(true|false)['\"]?\s*,\s*$|^\s*(true|false)\s*['\"]\s*$", re.IGNORECASE)


class _Edits:
    """Edits keyed by the original line numbers, applied in one pass so that none shifts another."""

    def __init__(self, lines):
        self.lines = lines
        self.replace = {}  # line -> [(start col, end col, text)]
        self.comment_out = {}  # line -> column of the key
        self.comments = {}  # line -> [comment]
        self.before = {}  # line -> [new lines]
        self.after = {}  # line -> [new lines]

    def render(self):
        out = []
        for i, line in enumerate(self.lines):
            out.extend(self.before.get(i, []))
            for start, end, text in sorted(self.replace.get(i, []), reverse=True):
                line = line[:start] + text + line[end:]
            if i in self.comment_out:
                col = self.comment_out[i]
                line = line[:col] + "# " + line[col:]
            if self.comments.get(i):
                line = line.rstrip() + "  # " + "; ".join(self.comments[i])
            out.append(line)
            out.extend(self.after.get(i, []))
        return "".join(item if item.endswith("\n") else item + "\n" for item in out)


def _entries(node):
    return node.value if isinstance(node, yaml.MappingNode) else []


def _find(root, path):
    """(key node, value node, parent mapping node) of the first occurrence of `path`, or None."""
    node, found = root, None
    for part in path:
        found = next(((k, v, node) for k, v in _entries(node) if isinstance(k, yaml.ScalarNode) and k.value == str(part)),
                     None)
        if found is None:
            return None
        node = found[1]
    return found


def _last_line(value):
    end = value.end_mark
    return end.line - 1 if end.column == 0 and end.line > value.start_mark.line else end.line


def _emit(value):
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").removesuffix("...").strip()


def _insert_into(edits, parent, key, value, comment, anchor_line=None):
    """Add `key: value` to the mapping `parent` (after anchor_line when given, else as its first entry)."""
    text = f"{key}: {_emit(value)}"
    if parent.flow_style:
        end = parent.end_mark
        sep = ", " if parent.value else ""
        edits.replace.setdefault(end.line, []).append((end.column - 1, end.column - 1, sep + text))
        edits.comments.setdefault(end.line, []).append(comment)
        return
    indent = " " * parent.value[0][0].start_mark.column if parent.value else "  "
    line = f"{indent}{text}  # {comment}"
    if anchor_line is not None:
        edits.after.setdefault(anchor_line, []).append(line)
    else:
        edits.before.setdefault(parent.value[0][0].start_mark.line, []).append(line)


def _drop_text(edits, key, value, parent, comment):
    if not parent.flow_style:
        for line in range(key.start_mark.line, _last_line(value) + 1):
            edits.comment_out.setdefault(line, key.start_mark.column)
        edits.comments.setdefault(key.start_mark.line, []).append(comment)
        return True
    if key.start_mark.line != value.end_mark.line:
        return False
    line = edits.lines[key.start_mark.line]
    start, end = key.start_mark.column, value.end_mark.column
    tail = re.match(r"\s*,\s*", line[end:])
    if tail:
        end += tail.end()
    else:
        head = re.search(r",\s*$", line[:start])
        if head:
            start = head.start()
    edits.replace.setdefault(key.start_mark.line, []).append((start, end, ""))
    edits.comments.setdefault(key.start_mark.line, []).append(comment)
    return True


def apply_change(edits, root, change, comment):
    """Write one Change (its paths from the file's root) into the text; False when it must be done by hand."""
    found = _find(root, change.path)
    if change.action == "keep":
        return True
    if change.action == "add":
        parent = _find(root, change.new_path[:-1])
        if parent is None or not isinstance(parent[1], yaml.MappingNode):
            return False
        anchor = _last_line(found[1]) if found else None
        _insert_into(edits, parent[1], change.new_path[-1], change.new_value, comment, anchor)
        return True
    if found is None:
        return False
    key, value, parent = found
    if change.action == "rename":
        edits.replace.setdefault(key.start_mark.line, []).append(
            (key.start_mark.column, key.end_mark.column, change.new_path[-1]))
        edits.comments.setdefault(key.start_mark.line, []).append(comment)
        return True
    if change.action == "replace":
        if key.start_mark.line != value.end_mark.line:
            return False
        text = f"{change.new_path[-1]}: {_emit(change.new_value)}"
        edits.replace.setdefault(key.start_mark.line, []).append((key.start_mark.column, value.end_mark.column, text))
        edits.comments.setdefault(key.start_mark.line, []).append(comment)
        return True
    if change.action == "drop":
        return _drop_text(edits, key, value, parent, comment)
    if change.action == "move":
        target = _find(root, change.new_path[:-1])
        if target is not None and isinstance(target[1], yaml.MappingNode):
            if not _drop_text(edits, key, value, parent, f"moved to {'.'.join(change.new_path[1:])}"):
                return False
            _insert_into(edits, target[1], change.new_path[-1], change.new_value, comment)
            return True
        if key.start_mark.line != value.end_mark.line:
            return False
        text = f"{change.new_path[-2]}: {{{change.new_path[-1]}: {_emit(change.new_value)}}}"
        edits.replace.setdefault(key.start_mark.line, []).append((key.start_mark.column, value.end_mark.column, text))
        edits.comments.setdefault(key.start_mark.line, []).append(comment)
        return True
    return False


def _duplicates(node, path=()):
    """(path, first key node, later key node, same value?) for every repeated key, depth first."""
    found = []
    seen = {}
    for key, value in _entries(node):
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name in seen:
            first_value = seen[name][1]
            same = yaml.safe_load(yaml.serialize(first_value)) == yaml.safe_load(yaml.serialize(value))
            found.append(((*path, name), seen[name][0], key, value, same))
        else:
            seen[name] = (key, value)
        found.extend(_duplicates(value, (*path, name)))
    return found


def _quirks(root, exp, edits, notes, questions):
    """2020 quirks fixed in the text: same-value duplicate keys, `explore: True,`."""
    for path, first, later, value, same in _duplicates(root):
        where = ".".join(path[1:])
        if same:
            parent = _find(root, path[:-1])[1]
            _drop_text(edits, later, value, parent, f"removed: repeats line {first.start_mark.line + 1}")
            notes.append(f"{where} at line {later.start_mark.line + 1} removed: it repeats line {first.start_mark.line + 1}")
        # Different values: left for the user; validating the result asks which one (utils/loader.py).
    config = _find(root, (exp.name, "config"))
    for key, value, _ in [(k, v, None) for k, v in _entries(config[1] if config else None)]:
        if not isinstance(value, yaml.ScalarNode) or value.tag != "tag:yaml.org,2002:str":
            continue
        match = _BOOL_TEXT.match(value.value) or (value.style in ("'", '"') and value.value.lower() in ("true", "false")
                                                   and re.match(r"(?i)^(true|false)$", value.value))
        if not match:
            continue
        word = value.value.strip(" ,'\"").lower()
        if word == "true":
            edits.replace.setdefault(value.start_mark.line, []).append((value.start_mark.column, value.end_mark.column, "true"))
            edits.comments.setdefault(value.start_mark.line, []).append(
                f"was {value.value!r}: a string, which Ray 0.8 read as true")
            notes.append(f"config.{key.value}: {value.value!r} is now true (a stray comma or quote made it a string; "
                         "Ray 0.8 read any non-empty string as true)")
        # "False," was a non-empty string, which Ray 0.8 read as true: ambiguous, left to validation's question.


def migrate_text(path):
    """(new text, notes, questions, changed?) for the experiment file at `path`."""
    from utils.config import read_experiment
    from utils.legacy import translate

    text = Path(path).read_text()
    problems = Problems(str(path))
    exp = read_experiment(path, problems)  # duplicates are handled below, from the text itself
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines = text.splitlines(keepends=True)
    edits = _Edits(lines)
    notes, questions = [], []
    _quirks(root, exp, edits, notes, questions)
    # A key given twice with different values is the user's question (asked by validation): left as written.
    ambiguous = {path[1:] for path, _, _, _, same in _duplicates(root) if not same}
    translation = Problems(str(path))
    changes = translate(exp, translation)
    for change in changes:
        if change.path in ambiguous:
            continue
        path_ = (exp.name, *change.path)
        moved = Change(path_, change.action, change.value, (exp.name, *(change.new_path or ())) if change.new_path else None,
                       change.new_value, change.why)
        if not apply_change(edits, root, moved, change.comment()):
            questions.append(f"{exp.path}: {'.'.join(change.path)}: could not be rewritten in place ({change.note()}). "
                             "Make that change by hand.")
        else:
            notes.append(change.note())
    # Refusals (translation.messages) stay in the text; validating the result reports them again.
    new_text = edits.render()
    return new_text, notes, questions, new_text != text


def main(argv=None):
    parser = ArgumentParser(prog="./run.sh --migrate", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", metavar="OLD.yaml", help="the 2020 experiment file")
    parser.add_argument("new", metavar="NEW.yaml", nargs="?",
                        help="where to write the result (default: OLD.yaml itself, the original kept as OLD.yaml.orig)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's, Ray's and gym's start-up noise")
    args = parser.parse_args(argv)
    from utils import quiet

    quiet.install(verbose=args.verbose)
    try:
        return _run(Path(args.old), Path(args.new) if args.new else None)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(old, new):
    from utils.config import load_experiment
    from utils.loader import load_yaml

    load_yaml(old, Problems(str(old)))  # a missing file or a YAML syntax error stops here, in one line
    text, notes, questions, changed = migrate_text(old)
    target = new or old
    print(f"migrate: {old} -> {target}")
    for note in notes:
        print(f"note: {note}")
    if changed:
        if new is None:
            backup = old.with_name(old.name + ".orig")
            shutil.copyfile(old, backup)
            print(f"original: {backup}")
        target.write_text(text)
    elif new is not None:
        shutil.copyfile(old, new)
    print(f"written: {target}" if changed or new is not None else f"unchanged: {old} already uses RLlib 2.60's names")
    problems = Problems(str(target))
    for question in questions:
        problems.add(UserError(question))
    try:
        load_experiment(target)
    except UserError as e:
        problems.add(e)
    if problems.messages:
        print(f"left for you: {len(problems.messages)} (the file does not train until they are fixed)")
        problems.raise_if_any()
    print(f"check: {target} validates; train it with python train.py -f {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
