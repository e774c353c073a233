"""User-facing errors: a short message that names the value, what is allowed, and the fix."""

import difflib


class UserError(Exception):
    """A mistake in the user's input. Entry points print it without a traceback and exit 2."""

    def _render_traceback_(self):
        """IPython/Jupyter shows this instead of a traceback: the one `error:` line (notebooks, launch.Job)."""
        return [f"error: {self}"]


def closest(value, allowed):
    """Return ' Did you mean "x"?' for the closest allowed name, or '' when none is close."""
    match = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f' Did you mean "{match[0]}"?' if match else ""


def unknown_name(kind, value, allowed, where=""):
    """UserError for a name that is not one of `allowed`, with the closest match."""
    where = f" in {where}" if where else ""
    names = ", ".join(sorted(str(a) for a in allowed))
    return UserError(f'Unknown {kind} "{value}"{where}.{closest(value, allowed)} Allowed: {names}.')
