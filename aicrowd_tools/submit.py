"""`./run.sh --submit "description"`: the preflight, then AIcrowd's own CLI makes the git submission.

`aicrowd submission create -d DESCRIPTION` (aicrowd-cli 0.1.18, no -f) checks the API key, commits a
dirty tree (git add --all), tags it `submission-<description>` and pushes branch and tag to the remote
named `aicrowd` (or one on gitlab.aicrowd.com). A failed preflight runs none of that.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from aicrowd_tools import gitrepo
from aicrowd_tools.grader import CHALLENGE_SLUG, CHALLENGE_URL
from aicrowd_tools.preflight import SUBMIT_CHECKS, Context, run_checks, summary_line
from utils.errors import UserError

CLI_VERSION = "0.1.18"


def find_cli():
    """The `aicrowd` executable next to this Python, else on PATH."""
    here = Path(sys.executable).parent / "aicrowd"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("aicrowd")
    if found:
        return found
    raise UserError(f"the aicrowd CLI is not installed. Install it: pip install -r requirements-dev.txt (aicrowd-cli=={CLI_VERSION}).")


def link_challenge(root):
    """Record the challenge in .git/config as `aicrowd challenge init` does, when the clone lacks it.

    A clone linked to AIcrowd by `git remote add` has no aicrowd-cli.challenge-id, and the CLI refuses a
    git submission without one. The id is looked up with the CLI's own functions (and its API key check).
    """
    if gitrepo.config_value(root, "aicrowd-cli.challenge-id"):
        return None
    import click
    import requests
    from aicrowd.challenge.helpers import get_id_from_slug, must_get_api_key
    from aicrowd.contexts import ConfigContext
    from aicrowd.exceptions import CLIException

    slug = os.environ.get("AICROWD_CHALLENGE") or CHALLENGE_SLUG
    try:
        challenge_id = get_id_from_slug(slug, must_get_api_key(ConfigContext()))
    except CLIException as e:
        raise UserError(f"could not look up the challenge {slug} on AIcrowd: {click.unstyle(str(e)).replace(chr(10), ' ')}") from None
    except requests.RequestException as e:
        raise UserError(f"could not reach AIcrowd to look up the challenge {slug} ({type(e).__name__}). Check the network and run again.") from None
    if challenge_id is None:
        raise UserError(f"AIcrowd knows no challenge {slug}. Set AICROWD_CHALLENGE to the challenge's slug from its URL.")
    gitrepo.set_config(root, "aicrowd-cli.challenge-id", challenge_id)
    gitrepo.set_config(root, "aicrowd-cli.challenge-slug", slug)
    print(f"linked: this clone to challenge {slug} (id {challenge_id}) in .git/config, as aicrowd challenge init does")
    return challenge_id


def cli_message(proc):
    """The CLI's own lines, minus the `None` it prints for a git submission."""
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line.rstrip() for line in lines if line.strip() and line.strip() != "None"]


def push(root, description, cli=None, env=None):
    """Run `aicrowd submission create`; the new submission tag. UserError with the CLI's message on failure."""
    cli = cli or find_cli()
    before = gitrepo.tags(root)
    cmd = [cli, "submission", "create", "-d", description]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    message = cli_message(proc)
    for line in message:
        print(f"aicrowd: {line}")
    new = sorted(t for t in gitrepo.tags(root) - before if t.startswith("submission-"))
    if proc.returncode != 0:
        why = " / ".join(message[-3:]) or "no message"
        left = f" A local tag {new[-1]} was made but did not reach the remote; delete it with git tag -d {new[-1]}." if new else ""
        raise UserError(f"aicrowd submission create failed (exit {proc.returncode}): {why}.{left}")
    if not new:
        raise UserError("aicrowd submission create exited 0 but made no submission- tag. Check `git tag` and the remote.")
    return new[-1]


def report(root, tag):
    name, url = gitrepo.aicrowd_remote(root)
    print(f"tag: {tag}")
    print(f"commit: {gitrepo.head(root, tag + '^{commit}')}")
    print(f"remote: {name} {url}")
    issues = gitrepo.issues_url(url)
    if issues:
        print(f"watch: {issues} (the grader reports progress in an issue there)")
    print(f"submissions: {CHALLENGE_URL}/submissions?my_submissions=true")


def main(root, experiment, envs, description):
    if not description:
        raise UserError('a description is required: ./run.sh --submit "what this submission tries"')
    ctx = Context(Path(root), experiment, envs)
    print(f"submit: preflight of {experiment} before anything is pushed")
    results = run_checks(ctx, SUBMIT_CHECKS)
    print(summary_line(results))
    if not all(r.ok for r in results):
        print("submit: nothing was submitted. Fix the failures above, then run ./run.sh --submit again.")
        return 1
    changed = gitrepo.changed_files(root)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        print(f"note: the CLI first commits {len(changed)} changed file(s) (git add --all): {shown}")
    link_challenge(root)
    tag = push(root, description)
    report(root, tag)
    return 0
