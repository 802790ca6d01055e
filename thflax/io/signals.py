"""Signals held back around code that an exception must not cut half-way.

The CLIs turn SIGTERM and Ctrl-C into an exception in the main thread (`thflax.cli.catch_signals`).
Some calls must not see it mid-way: eSpeak's synthesis (`thflax.io.speech`) and starting an
asynchronous checkpoint save (`thflax.training.trainer`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Holds SIGINT/SIGTERM back while the block runs, then delivers them to the handlers in place.

    Why each caller needs it: eSpeak calls back into Python throughout synthesis, and an exception raised
    in that callback is printed as "Exception ignored on calling ctypes callback" and swallowed, synthesis
    going on; an exception inside orbax's asynchronous save leaves its background threads waiting for
    each other, and the process never exits. Blocking the signals with pthread_sigmask would not do:
    another thread (JAX's) would take them. Only the main thread can set handlers; elsewhere signals
    are not handled in Python anyway. Signals without a Python handler (SIGTERM's default ends the
    process at once) are left as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))]
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for signum in dict.fromkeys(caught):  # once each, in arrival order
            signal.raise_signal(signum)
