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


class UserErrors(UserError):
    """Several problems found in one pass over the input: printed one `error:` line each, then a count."""

    def __init__(self, messages, where):
        self.messages = list(messages)
        self.where = where
        super().__init__(self.messages[0])

    def __str__(self):
        count = f"{len(self.messages)} problems in {self.where}; fix them all, then run again."
        return "\nerror: ".join([*self.messages, count])

    def _render_traceback_(self):
        return [f"error: {line}" for line in str(self).split("\nerror: ")]


class Problems:
    """Collects UserErrors so that one run reports every problem of a file, not only the first.

        problems = Problems(path)
        for key in keys:
            with problems.check():
                check(key)          # may raise UserError
        problems.raise_if_any()     # one UserError, or UserErrors with all of them
    """

    def __init__(self, where):
        self.where = where
        self.messages = []

    def add(self, error):
        messages = error.messages if isinstance(error, UserErrors) else [str(error)]
        self.messages.extend(m for m in messages if m not in self.messages)

    def check(self):
        return _Catch(self)

    def raise_if_any(self):
        if len(self.messages) == 1:
            raise UserError(self.messages[0])
        if self.messages:
            raise UserErrors(self.messages, self.where)


class _Catch:
    def __init__(self, problems):
        self.problems = problems

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if kind is not None and issubclass(kind, UserError):
            self.problems.add(error)
            return True
        return False
