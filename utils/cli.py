"""Command lines of the project's entry points: arguments in any order, and one `error:` line for a mistake.

    train.py -f EXP env_config.env_name=starpilot --progress-bar off vf_clip_param=1000.0

means what `train.py -f EXP --progress-bar off env_config.env_name=starpilot vf_clip_param=1000.0` means:
positionals (KEY=VALUE overrides, a checkpoint, an experiment) may come before, between and after options.
A mistake gets the project's one line (`error: Unknown option "--progres-bar". Did you mean "--progress-bar"? ...`)
instead of argparse's usage dump.
"""

import argparse
import re
import sys

from utils.errors import closest, unknown_name

# What an override looks like (dotted.path=value), as opposed to a file path or a stray word.
OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=")


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with parse_args taking options and positionals intermixed, and one-line errors.

    Intermixed parsing (argparse's parse_intermixed_args) allows no subparsers: a tool with commands picks the
    command with `split_command` first and parses the rest with the command's own parser.
    """

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else [str(a) for a in args]
        namespace, extras = self.parse_known_intermixed_args(args, namespace)
        if extras:
            self.error(self.unexpected(extras[0]))
        return namespace

    def error(self, message):
        self.exit(2, f"error: {message}\n")

    def options(self):
        """The long options a user may type (hidden ones left out)."""
        return [s for a in self._actions if a.help != argparse.SUPPRESS for s in a.option_strings if s.startswith("--")]

    def unexpected(self, arg):
        """The message for an argument the parser has no place for, as the user wrote it."""
        hint = f" Run {self.prog} --help for the arguments."
        if arg.startswith("-"):
            return f'Unknown option "{arg}".{closest(arg.split("=", 1)[0], self.options())}{hint}'
        if OVERRIDE.match(arg) and "--set" in self.options():
            return f'Unexpected argument "{arg}": overrides go with --set. Did you mean "--set {arg}"?'
        return f'Unexpected argument "{arg}".{hint}'


def split_command(parser, argv, commands):
    """(command, the other arguments): the first argument that is not an option names the command.

    `parser` lists the commands in its help and reports the errors; options before the command are left to the
    command's parser, so they must be flags (a value before the command would be taken for it)."""
    argv = [str(a) for a in argv]
    index = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if index is None:
        if "-h" in argv or "--help" in argv:
            parser.print_help()
            parser.exit(0)
        parser.error(f"No command given. Use one of: {', '.join(commands)}.")
    command = argv[index]
    if command not in commands:
        parser.error(str(unknown_name("command", command, commands)))
    return command, argv[:index] + argv[index + 1:]
