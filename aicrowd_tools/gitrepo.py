"""Git queries (optional locks off, so they never block a commit). The one write is set_config."""

import os
import subprocess
from pathlib import Path

from aicrowd_tools.grader import GITLAB_HOST

# Files never pushed even without a git repo to say so.
NOT_PUSHED = {".git", ".venv", "outputs", "__pycache__", ".pytest_cache", ".ruff_cache"}


def git(root, *args):
    """stdout of `git ARGS` in `root`, or None when git fails or is missing."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        proc = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def is_repo(root):
    return (git(root, "rev-parse", "--show-toplevel") or "").strip() == str(Path(root).resolve())


def files_to_push(root):
    """Paths a git submission would carry: tracked files plus untracked ones that are not ignored.

    `aicrowd submission create` runs `git add --all` on a dirty tree, so untracked files count too.
    Without a git repo: every file outside NOT_PUSHED.
    """
    root = Path(root)
    if is_repo(root):
        out = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard") or ""
        paths = sorted({p for p in out.split("\0") if p})
        return [p for p in paths if (root / p).is_file()]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in NOT_PUSHED and not d.startswith(".venv")]
        found += [str((Path(dirpath) / f).relative_to(root)) for f in filenames]
    return sorted(found)


def index_mode(root, path):
    """The mode git records for `path` (e.g. "100755"), or None when untracked."""
    out = (git(root, "ls-files", "-s", "--", path) or "").split()
    return out[0] if out else None


def remotes(root):
    """{name: url} of the repository's remotes."""
    out = git(root, "remote", "-v") or ""
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            found.setdefault(parts[0], parts[1])
    return found


def aicrowd_remote(root):
    """(name, url) of the remote `aicrowd submission create` pushes to, as the CLI picks it, or None."""
    found = remotes(root)
    if "aicrowd" in found:
        return "aicrowd", found["aicrowd"]
    for name, url in found.items():
        if GITLAB_HOST in url:
            return name, url
    return None


def push_problem(root, remote):
    """Why `git push REMOTE` (what the CLI runs before pushing its tag) would fail here, or None."""
    branch = (git(root, "symbolic-ref", "--quiet", "--short", "HEAD") or "").strip()
    if not branch:
        return "HEAD is detached, so there is no branch to push. Check out your branch (git switch main) first."
    upstream = config_value(root, f"branch.{branch}.remote")
    default = config_value(root, "push.default") or "simple"
    if default in ("current", "matching") or (upstream and (upstream == remote or default != "upstream")):
        return None
    return (f"branch {branch} has no upstream on {remote}, so the `git push {remote}` the CLI runs fails. "
            f"Fix: git push -u {remote} {branch}")


def issues_url(remote_url):
    """Where AIcrowd's GitLab shows the evaluation of a submission pushed to `remote_url`."""
    if GITLAB_HOST not in remote_url:
        return None
    repo = remote_url.split(GITLAB_HOST, 1)[1].lstrip(":/")
    repo = repo[:-4] if repo.endswith(".git") else repo
    return f"https://{GITLAB_HOST}/{repo}/-/issues"


def tags(root):
    return set((git(root, "tag", "--list") or "").split())


def config_value(root, key):
    value = git(root, "config", "--get", key)
    return value.strip() if value else None


def set_config(root, key, value):
    """Write `key = value` to the repository's own .git/config; True on success."""
    return git(root, "config", "--local", key, str(value)) is not None


def changed_files(root):
    """Modified, deleted and untracked (not ignored) paths: what the CLI would commit first."""
    out = git(root, "status", "--porcelain", "--untracked-files=all") or ""
    return [line[3:] for line in out.splitlines() if line.strip()]


def head(root, ref="HEAD"):
    value = git(root, "rev-parse", "--verify", "--quiet", ref)
    return value.strip() if value else None
