"""Quiet start-up: drop the known, harmless start-up noise of TensorFlow, gym and Ray from stderr.

    from utils import quiet
    quiet.install(verbose=args.verbose)   # first thing in main(), before TF/Ray/gym/procgen are imported
    ...
    quiet.flush()                         # before os._exit(); a normal exit flushes by itself
    os._exit(code)

Measured on this project (train.py on 2 CPUs, torch and tf frameworks, and a config typo): every noise line
arrives on fd 2, written by C++ (absl logging, Ray's core worker) or Python (gym's banner, Ray's loggers),
and fd 1 carries only our own `key: value` lines. So only fd 2 is filtered; stdout is left untouched.
Ray env-runner processes need no filter of their own: Ray forwards their output to the driver, which prints
it on its own stderr prefixed `(pid=N)` or `(RolloutWorker pid=N)`; the driver's filter drops those too.

How: fd 2 is pointed at a pipe (a pty when it was a terminal, so isatty() stays true for tqdm and the
progress bar), and a daemon thread copies every line to the real stderr except lines matching NOISE.
Setting PROCGEN_VERBOSE=1 (inherited by child processes) is the same as install(verbose=True).
"""

import atexit
import os
import re
import select
import sys
import threading
import time

VERBOSE_ENV = "PROCGEN_VERBOSE"
FILTERED_FDS = (2,)  # all the noise measured arrives on stderr; see the module docstring
PARTIAL_DELAY_S = 0.05  # a line without newline (a tqdm '\r' update) goes out after this long


def _cc(file, message):
    """A C++ log line, absl style (`I0000 00:00:17.5  123 file.cc:31] message`) or TF's older one."""
    return rf"(?:[IWEF]\d{{4}} |\d{{4}}-\d\d-\d\d ).*?\b{re.escape(file)}:\d+\] {message}"


def _ray(file, message):
    """A Ray Python log line: `2026-11-30 14:56:24,486<TAB>WARNING file.py:85 -- message`."""
    return rf"\d{{4}}-\d\d-\d\d [\d:,.]+\s+\w+ {re.escape(file)}:\d+ -- {message}"


# Each pattern must match from the start of a line (after Ray's `(pid=N)` prefix, which is stripped first);
# none is anchored at the end, because Ray appends ` [repeated 2x across cluster]` to lines it deduplicates.
# Only lines seen in this project's runs and known to be harmless belong here.
NOISE = [re.compile(p) for p in (
    # absl, in TF and Ray's C++: printed before absl is initialised, so TF_CPP_MIN_LOG_LEVEL cannot hide it.
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    # TF's CUDA stub on a machine without an NVIDIA driver (logged before absl is initialised).
    _cc("cudart_stub.cc", r"Could not find cuda drivers on your machine, GPU will not be used\."),
    # TF/XLA probing for a GPU on a machine without one (error 303: no driver). Other cuInit errors pass.
    _cc("cuda_platform.cc", r"failed call to cuInit: .*UNKNOWN ERROR \(303\)"),
    # TF's CPU-feature notice, two lines (shown when TF_CPP_MIN_LOG_LEVEL is 0).
    _cc("cpu_feature_guard.cc", r"This TensorFlow binary is optimized to use available CPU instructions"),
    r"To enable the following instructions: .*, in other operations, rebuild TensorFlow with the appropriate compiler flags\.",
    # The next three were reported on GPU machines and are not reproduced on the CPU test machine:
    # TF's oneDNN notice; TF-TRT when TensorRT is not installed (it is optional);
    # grappler skipping one graph rewrite (the graph still runs, unoptimised).
    _cc("port.cc", r"oneDNN custom operations are on\."),
    _cc("py_utils.cc", r"TF-TRT Warning: Could not find TensorRT"),
    _cc("meta_optimizer.cc", r"remapper failed: INVALID_ARGUMENT"),
    # gym 0.26's banner (gym_notices), printed at `import gym` in the driver and in every env runner.
    r"Gym has been unmaintained since 2022 and does not support NumPy 2\.0 amongst other critical functionality\.",
    r"Please upgrade to Gymnasium, the maintained drop-in replacement of Gym, or contact the authors of your software",
    r"Users of this version of Gym should be able to simply replace 'import gym' with 'import gymnasium as gym'",
    r"See the migration guide at https://gymnasium\.farama\.org/introduction/migration_guide/ for additional information\.",
    # Ray's core worker about RLlib's own env-runner actors (their restart after a crash); nothing to act on.
    r"\[\d{4}-\d\d-\d\d [\d:,]+ E \d+ \d+\] core_worker\.cc:\d+: Actor with class name: '(?:RolloutWorker|\w*EnvRunner)' "
    r"and ID: '\w+' has constructor arguments in the object store and max_restarts > 0\.",
    # Ray's notice that the cluster it starts uses token authentication (Ray's default in this version).
    _ray("authentication_token_setup.py", r"Token authentication is enabled for this Ray cluster\."),
    # Ray's resource monitor asking for an optional package.
    _ray("util.py", r"Install gputil for GPU system monitoring\."),
    # RLlib's old-stack PPO calling its own deprecated function; nothing for the user to change.
    _ray("train_ops.py", r"DeprecationWarning: `ray\.rllib\.execution\.train_ops\.multi_gpu_train_one_step` has been deprecated\."),
    # The same on its simple_optimizer path (ProcgenPPO and PPG take it to reshuffle minibatches every epoch).
    _ray("sgd.py", r"DeprecationWarning: `_get_slice_indices` has been deprecated\."),
    # RLlib at every checkpoint of this project's own policy classes: they are rebuilt from the algorithm's name
    # (algorithms/__init__.py), never from RLlib's policy registry, so its advice does not apply.
    _ray("policy.py", r"Can not figure out a durable policy name for <class 'algorithms\.(?:procgen_ppo|ppg)\."),
)]

# What Ray puts before a line forwarded from a worker: colour, `(Name pid=N, ip=A)`, reset.
_RAY_PREFIX = re.compile(r"(?:\x1b\[[\d;]*m)?\((?:[^()]*? )?pid=\d+(?:, ip=[\d.]+)?\)(?:\x1b\[[\d;]*m)? ")
_MARK = re.compile(rb"\0quiet-flush-(\d+)\0")
_MARK_START = b"\0quiet-flush-"

_lock = threading.Lock()
_state = None  # {"pid": ..., "filters": [...]} once installed; {"pid": ..., "filters": []} when verbose


def is_noise(line):
    """True when `line` (str, without its newline) is one of the NOISE lines, forwarded by Ray or not."""
    line = line.lstrip("\r")
    prefix = _RAY_PREFIX.match(line)
    if prefix:
        line = line[prefix.end():]
    return any(p.match(line) for p in NOISE)


def install(verbose=False):
    """Filter NOISE lines out of this process's fd 2 (stderr) from now on; fd 1 is not touched.

    Call it at the start of main(), before TensorFlow, Ray, gym or procgen are imported, so that their
    start-up lines are caught. fd 2 is replaced by the write end of a pipe (a pty when fd 2 was a terminal,
    so isatty() keeps its answer) and is inherited as such by child processes; a daemon thread copies what
    it reads to the original stderr: whole lines at once, a line without newline after PARTIAL_DELAY_S.
    sys.stderr keeps writing to fd 2. At normal interpreter exit the pipe is drained and fd 2 restored.
    faulthandler is enabled, on the original stderr, so that a crash's traceback is not lost in the pipe.

    verbose=True (or PROCGEN_VERBOSE=1 in the environment) changes nothing and shows everything; it also
    sets PROCGEN_VERBOSE=1 so that child processes that install() show everything too.
    A second call, in the same process, does nothing. Raises OSError only when the pipe or the thread
    cannot be created (out of file descriptors).
    """
    global _state
    with _lock:
        if _state is not None and _state["pid"] == os.getpid():
            return
        if verbose or os.environ.get(VERBOSE_ENV) == "1":
            os.environ[VERBOSE_ENV] = "1"
            _state = {"pid": os.getpid(), "filters": []}
            return
        filters = [_Filter(fd) for fd in FILTERED_FDS]
        _state = {"pid": os.getpid(), "filters": filters}
        _repoint_faulthandler(filters)
        atexit.register(_at_exit)


def flush(timeout=2.0):
    """Write out everything already written to stdout/stderr, waiting at most `timeout` seconds.

    Flushes sys.stdout and sys.stderr, then waits until the filter thread has passed on every byte written
    to fd 2 before this call (a line without newline included). Call it before os._exit(). Safe from any
    thread, in a forked child, and when install() was never called (then it only flushes sys.stdout/stderr).
    Never raises.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    state = _state
    if state is None or state["pid"] != os.getpid():
        return
    deadline = time.monotonic() + timeout
    for f in state["filters"]:
        f.sync(deadline)


def _at_exit():
    if _state["pid"] != os.getpid():  # a forked child that exits normally: the parent owns the filter
        return
    flush()
    for f in _state["filters"]:
        f.restore()  # late writes (finalizers, C++ destructors) then go straight to the real stderr


def _repoint_faulthandler(filters):
    # A crash dump written into the pipe dies with the filter thread, so send it to the real stderr.
    # Enabling it here also stops ray.init from enabling it on sys.stderr (it does so when it is off).
    import faulthandler

    for f in filters:
        if f.fd == 2:
            f.real_file = os.fdopen(f.real, "w", closefd=False)
            faulthandler.enable(file=f.real_file)


class _Filter:
    """Owns one redirected fd: the pipe (or pty), the saved original, and the reader thread."""

    def __init__(self, fd):
        self.fd = fd
        self.real = os.dup(fd)  # the original destination; not inherited by children
        if os.isatty(fd):
            self.read_fd, self.write_fd = os.openpty()
            _make_raw_like(self.write_fd, self.real)
        else:
            self.read_fd, self.write_fd = os.pipe()
        os.dup2(self.write_fd, fd)
        self.buf = b""
        self.partial_since = None
        self.cond = threading.Condition()
        self.asked = 0  # flush marks written
        self.done = 0  # flush marks passed by the reader
        self.thread = threading.Thread(target=self._run, name=f"quiet-fd{fd}", daemon=True)
        self.thread.start()

    def sync(self, deadline):
        if not self.thread.is_alive() or threading.current_thread() is self.thread or self.write_fd is None:
            return
        with self.cond:
            self.asked += 1
            n = self.asked
        mark = b"\0quiet-flush-%d\0" % n
        try:  # bounded: a reader stuck on a paused terminal must not hang the exit
            if not select.select([], [self.write_fd], [], max(0.0, deadline - time.monotonic()))[1]:
                return
            os.write(self.write_fd, mark)
        except OSError:
            return
        with self.cond:
            self.cond.wait_for(lambda: self.done >= n, max(0.0, deadline - time.monotonic()))

    def restore(self):
        os.dup2(self.real, self.fd)
        write_fd, self.write_fd = self.write_fd, None
        os.close(write_fd)

    def _run(self):
        while True:
            timeout = None if self.partial_since is None else max(0.0, self.partial_since + PARTIAL_DELAY_S - time.monotonic())
            try:
                ready = select.select([self.read_fd], [], [], timeout)[0]
                data = os.read(self.read_fd, 65536) if ready else None
            except OSError:  # EIO: the pty's last writer closed
                data = b""
            if data == b"":
                self._write(self.buf)
                return
            if data is None or len(self.buf) > 65536:
                self._pass_partial()
            if data:
                self._feed(data)

    def _feed(self, data):
        self.buf += data
        while (mark := _MARK.search(self.buf)) is not None:
            lines, partial = self._filter_lines(self.buf[:mark.start()])
            self._write(lines + partial)  # a partial line written before the flush goes out now
            self.buf = self.buf[mark.end():]
            with self.cond:
                self.done = max(self.done, int(mark.group(1)))
                self.cond.notify_all()
        lines, self.buf = self._filter_lines(self.buf)
        self._write(lines)
        if not self.buf:
            self.partial_since = None
        elif self.partial_since is None or b"\n" in data:  # the partial line started in this chunk
            self.partial_since = time.monotonic()

    def _filter_lines(self, buf):
        """(the complete lines of `buf` that are not noise, the partial line after them)."""
        end = buf.rfind(b"\n") + 1
        out = []
        for line in buf[:end].split(b"\n")[:-1]:  # not splitlines(): a '\r' does not end a line here
            # After a partial line (a tqdm bar), the rest of it is judged alone: noise written while the bar
            # is shown goes with its newline, and the bar's next '\r' update redraws the same line.
            if not is_noise(line.decode("utf-8", "replace").rstrip("\r")):
                out.append(line + b"\n")
        return b"".join(out), buf[end:]

    def _pass_partial(self):
        # Keep back what may be the start of a flush mark split across two reads.
        keep = self.buf.rfind(b"\0")
        if keep == -1 or not _MARK_START.startswith(self.buf[keep:keep + len(_MARK_START)]):
            keep = len(self.buf)
        self._write(self.buf[:keep])
        self.buf = self.buf[keep:]
        self.partial_since = time.monotonic() if self.buf else None

    def _write(self, data):
        while data:
            try:
                data = data[os.write(self.real, data):]
            except BlockingIOError:
                select.select([], [self.real], [])
            except OSError:  # the reader of our stderr went away: keep draining, drop the bytes
                return


def _make_raw_like(pty_fd, terminal_fd):
    """Bytes written to the pty come out unchanged; its size follows the terminal's at install time."""
    import fcntl
    import termios
    import tty

    tty.setraw(pty_fd)
    try:
        fcntl.ioctl(pty_fd, termios.TIOCSWINSZ, fcntl.ioctl(terminal_fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass
