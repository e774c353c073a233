"""SIGINT/SIGTERM handling that never lands in the middle of someone else's code.

The signals are blocked in every thread (`block_signals()` first thing in an entry point's main, so
every thread started later inherits the mask) and a watchdog thread takes them with `signal.sigwait`.
No handler runs at all: neither Python's, which would raise into whatever the main thread is doing, nor
one a library installs at C level. (Ray's core installs absl's failure handler for SIGTERM while an
algorithm is built: a SIGTERM it caught was printed as a crash and ended in SIGABRT, with nothing saved;
scripts/stress_signals.py, start-up phase.) On the first signal the watchdog runs the entry point's
`on_signal(signum)` on a thread of its own; that function saves what there is to save and returns the
exit code, and the process then exits with it. A second signal exits at once with 128 + signal.

As a fallback for a thread that unblocks the signals itself, the Python-level handler records the
signal and `signal.set_wakeup_fd` wakes the watchdog too.

The main thread marks what must not be cut (writing a checkpoint, a log line) with `with guard.lock:`;
`on_signal` takes the same lock, with a bounded wait, before it writes. Nothing raises into the main
thread, so no library is left half-way through a call (the tensorboardX hang of issue 10).

Processes started while the signals are blocked inherit the mask (Ray's GCS, raylet and workers: a
SIGTERM sent to the whole process group then reaches only the entry point, which saves before Ray goes).
Start any other child with `preexec_fn=unblock_signals`.
"""

import os
import signal
import sys
import threading
import time
import traceback

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def block_signals():
    """Block SIGINT and SIGTERM in the calling thread and in every thread and process it starts later.

    Call it first thing in an entry point's main, before anything starts a thread (quiet output, TF, Ray)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def unblock_signals():
    """Undo block_signals() in this thread (for subprocess.Popen(preexec_fn=...) of a child with its own handling)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


def signal_name(signum):
    return signal.Signals(signum).name


def flush_and_exit(code, timeout=3.0):
    """Flush Python's and the quiet filter's buffered output (bounded by `timeout` s), then os._exit(code)."""

    def flush():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        quiet = sys.modules.get("utils.quiet")
        if quiet is not None:
            quiet.flush(timeout)

    flusher = threading.Thread(target=flush, daemon=True)
    flusher.start()
    flusher.join(timeout)
    os._exit(code)


def run_bounded(fn, timeout):
    """Call fn() on a daemon thread; True when it returned within `timeout` s (its errors are swallowed)."""
    done = threading.Event()

    def call():
        try:
            fn()
        except Exception:  # noqa: BLE001  (best effort on the way out)
            pass
        finally:
            done.set()

    threading.Thread(target=call, daemon=True).start()
    return done.wait(timeout)


def kill_descendants():
    """SIGKILL every process this one started, directly or not (Ray's GCS, raylet, agents, workers).

    After a bounded ray.shutdown, Ray's DashboardAgent and RuntimeEnvAgent were seen to outlive train.py
    by minutes on a loaded machine (scripts/stress_signals.py); they belong to this run, so they go with it.
    """
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass


class SignalGuard:
    """Records SIGINT/SIGTERM; a watchdog thread runs `on_signal(signum) -> exit code` and exits the process.

    Args:
        on_signal: called once, on a background thread, with the first signal's number; returns the exit
            code (conventionally 128 + signum). If it raises, the traceback is printed and the process exits
            with 128 + signum all the same.

    Attributes:
        pending: the first signal's number, or None.
        lock: held by the main thread around writes that must finish (checkpoints, logs); `on_signal` takes
            it with `acquire_lock(timeout)` before it writes.
    """

    def __init__(self, on_signal):
        self.on_signal = on_signal
        self.pending = None
        self.lock = threading.RLock()
        self._handling = False
        self._start_lock = threading.Lock()
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)  # set_wakeup_fd requires it
        block_signals()  # the watchdogs inherit the mask: sigwait takes blocked signals
        for target, name in ((self._wait, "signal-watchdog"), (self._watch, "signal-wakeup-fd")):
            threading.Thread(target=target, name=name, daemon=True).start()
        self.install()

    def install(self):
        """(Re)block SIGINT/SIGTERM in this thread and (re)take the fallback handlers and wakeup fd.

        Call it again after code that may have changed them (ray.init, building an RLlib algorithm)."""
        block_signals()
        for signum in SIGNALS:
            signal.signal(signum, self._record)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def _record(self, signum, frame):
        if self.pending is None:
            self.pending = signum

    def _wait(self):
        while True:
            self._arrived(signal.sigwait(SIGNALS))

    def _watch(self):
        while True:
            try:
                data = os.read(self._read, 64)
            except InterruptedError:
                continue
            for signum in data:
                if signum in SIGNALS:
                    self._arrived(signum)

    def _arrived(self, signum):
        if not self._start(signum):
            print(f"interrupted: second {signal_name(signum)} received, exiting now", file=sys.stderr, flush=True)
            flush_and_exit(128 + signum, timeout=1.0)

    def _start(self, signum):
        """Start handling `signum` unless a signal is handled already; True if this call started it."""
        with self._start_lock:
            if self._handling:
                return False
            self._handling = True
        self.pending = self.pending or signum
        threading.Thread(target=self._handle, args=(signum,), name="signal-handler", daemon=True).start()
        return True

    def _handle(self, signum):
        code = 128 + signum
        try:
            code = self.on_signal(signum)
        except BaseException:  # noqa: BLE001  (whatever happens, the process must exit)
            traceback.print_exc()
        flush_and_exit(code)

    def acquire_lock(self, timeout):
        """Wait up to `timeout` s for the main thread to leave its critical section; True if the lock was taken."""
        return self.lock.acquire(timeout=timeout)

    def park_if_pending(self):
        """In the main thread: once a signal is being handled, wait here for the handler to exit the process."""
        if self.pending is None:
            return
        # The watchdog normally started the handler already; if something replaced the wakeup fd it never
        # heard the signal, and the handler is started from here instead.
        time.sleep(2)
        self._start(self.pending)
        while True:
            time.sleep(1)
