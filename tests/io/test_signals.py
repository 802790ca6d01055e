"""Signals held back around code an exception must not cut half-way (`thflax.io.signals`)."""

import os
import signal

import pytest

from thflax import cli
from thflax.io.signals import signals_deferred


def test_a_sigterm_inside_the_block_is_raised_once_it_ends():
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    finished = []
    try:
        cli.catch_signals()
        with pytest.raises(cli.Interrupted) as err:
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGTERM)  # twice: delivered once
                finished.append(True)  # the block ran to its end
        assert finished and err.value.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is cli._raise_interrupted  # the CLI's handler is back
        with pytest.raises(cli.Interrupted):  # outside the block: at once, as before
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary for the handler to run
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
