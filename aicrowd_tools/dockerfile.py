"""The preflight's Dockerfile check: the image AIcrowd's grader builds from this repository.

With `"docker_build": true` in aicrowd.json the grader builds the root `Dockerfile` and runs `./run.sh` in it
without network; with false it uses its 2020 default image (Python 3.7), where requirements.txt cannot
install (ray 2.60 needs Python >= 3.10). So: docker_build must be true, the Dockerfile must install the pinned
requirements.txt, and nothing over 30 MB may go into the build context (.dockerignore keeps .venv, .git and
outputs/ out).
"""

import os
import re
from dataclasses import dataclass

from aicrowd_tools.grader import MAX_FILE_BYTES
from utils.errors import UserError

DOCKERFILE = "Dockerfile"
INSTALL_HINT = "COPY requirements.txt /tmp/requirements.txt, then RUN pip install -r /tmp/requirements.txt"
# `pip install ... -r PATH/requirements.txt` (also pip3, python -m pip, --requirement=...).
PIP_INSTALL_REQS = re.compile(r"\bpip[\d.]*\s+install\b[^;&|]*?(?:-r\s*|--requirement[=\s]\s*)(?:\S*/)?requirements\.txt(?=\s|$|[;&|\"'])")


@dataclass
class Instruction:
    line: int  # where it starts in the Dockerfile
    keyword: str  # FROM, RUN, COPY, ...
    args: str


def parse(text):
    """The Dockerfile's instructions, continuation lines joined, comments and blank lines dropped."""
    instructions, parts, start = [], [], None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not parts and (not line or line.startswith("#")):
            continue
        if parts and line.startswith("#"):
            continue  # a comment inside a continued instruction is dropped, as docker does
        start = start or number
        continued = line.endswith("\\")
        parts.append(line[:-1] if continued else line)
        if not continued:
            keyword, _, args = " ".join(parts).strip().partition(" ")
            instructions.append(Instruction(start, keyword.upper(), args.strip()))
            parts, start = [], None
    return instructions


def copies_requirements(instruction):
    """Whether a COPY/ADD brings requirements.txt from the build context (by name, or with the whole of it)."""
    if instruction.keyword not in ("COPY", "ADD"):
        return False
    words = [w for w in instruction.args.replace("[", " ").replace("]", " ").replace(",", " ").split()
             if not w.startswith("--")]
    sources = [w.strip("\"'") for w in words[:-1]]
    return any(s in (".", "./", "*", "requirements.txt", "./requirements.txt", "requirements*.txt") for s in sources)


def requirements_install(instructions):
    """The RUN instruction that pip-installs requirements.txt after copying it in, or None."""
    copied = False
    for instruction in instructions:
        copied = copied or copies_requirements(instruction)
        if copied and instruction.keyword == "RUN" and PIP_INSTALL_REQS.search(instruction.args):
            return instruction
    return None


# --------------------------------------------------------------------------- build context


def _glob_regex(pattern):
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over paths relative to the context."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i])))
            i += 1
    return re.compile("".join(out) + "(?:/.*)?$")  # a matching directory takes its contents with it


def ignore_rules(root):
    """(negated, regex) per .dockerignore line, in order: the last rule that matches a path decides."""
    path = root / ".dockerignore"
    rules = []
    if path.is_file():
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = os.path.normpath(line[1:].strip() if negated else line).lstrip("/")
            rules.append((negated, _glob_regex(pattern)))
    return rules


def ignored(rel, rules):
    verdict = False
    for negated, regex in rules:
        if regex.match(rel):
            verdict = not negated
    return verdict


def build_context(root):
    """{relative path: bytes} of the files docker would send as the build context of `root`."""
    rules = ignore_rules(root)
    can_reinclude = any(negated for negated, _ in rules)
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir + "/"
        if not can_reinclude:
            dirnames[:] = [d for d in dirnames if not ignored(prefix + d, rules)]
        for name in filenames:
            rel = prefix + name
            if not ignored(rel, rules):
                files[rel] = os.lstat(os.path.join(dirpath, name)).st_size
    return files


# --------------------------------------------------------------------------- the check


def check_dockerfile(ctx):
    """The preflight check: docker_build true, a Dockerfile that installs requirements.txt, a context under 30 MB a file."""
    data = ctx.aicrowd_json()
    if data.get("docker_build") is not True:
        raise UserError(
            f'aicrowd.json has "docker_build": {str(data.get("docker_build", "missing")).lower()}, so the grader ignores the '
            "Dockerfile and uses its 2020 default image (Python 3.7), where requirements.txt cannot install (ray 2.60 "
            'needs Python >= 3.10). Set "docker_build": true in aicrowd.json.'
        )
    path = ctx.root / DOCKERFILE
    if not path.is_file():
        raise UserError(f'{DOCKERFILE} is missing, but "docker_build": true makes the grader build its image from it. '
                        "Restore the repository's Dockerfile (README, Submit to AIcrowd).")
    instructions = parse(path.read_text(errors="replace"))
    base = next((i for i in instructions if i.keyword == "FROM"), None)
    if base is None:
        raise UserError(f"{DOCKERFILE} has no FROM line, so no image can be built. Start it with a base image, "
                        "e.g. FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04.")
    install = requirements_install(instructions)
    if install is None:
        raise UserError(f"{DOCKERFILE} does not install the pinned requirements.txt, so the grader's image lacks ray, "
                        f"procgen and the frameworks, and it has no network to fetch them later. Add {INSTALL_HINT}.")
    sizes = build_context(ctx.root)
    big = sorted((p for p, s in sizes.items() if s > MAX_FILE_BYTES), key=lambda p: -sizes[p])
    if big:
        shown = ", ".join(f"{p} ({sizes[p] / 1024 / 1024:.0f} MB)" for p in big[:5])
        raise UserError(f"{len(big)} file(s) over 30 MB would go into the image: {shown}. Add them to .dockerignore "
                        "(and .gitignore), or delete them.")
    image = next((w for w in base.args.split() if not w.startswith("--")), base.args)
    return (f"FROM {image}, installs requirements.txt (line {install.line}), build context "
            f"{len(sizes)} files, none over 30 MB, docker_build true")
