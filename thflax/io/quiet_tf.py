"""TensorFlow imported without the C++ start-up lines that no log level hides.

TensorFlow 2.21 logs through absl, and what its libraries print while they load comes before absl's
log is initialised: `TF_CPP_MIN_LOG_LEVEL` does not reach it. On CPUs where TensorFlow turns oneDNN on
(Intel with AVX-512/AMX; anywhere with `TF_ENABLE_ONEDNN_OPTS=1`) that is an INFO banner per loaded
library plus absl's "before InitializeLog" warning. C++ writes it to file descriptor 2, so it can only be
held back there: stderr is held while TensorFlow loads, then written back without those lines — but
only when the log level asks to hide INFO, so `--verbose` (level 0) shows them. oneDNN stays as
TensorFlow chose (turning it off would change numerics).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from types import ModuleType

#: The lines TensorFlow prints at load time that its own log level would hide if it applied.
_LOAD_BANNER = re.compile("|".join((
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"^I\d{4} .*\] oneDNN custom operations are on",
    r"^I\d{4} .*cpu_feature_guard\.cc:\d+\]",
    r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags",
)))


def _hides_info() -> bool:
    """Whether TF_CPP_MIN_LOG_LEVEL asks to hide INFO lines (1 and above); unset means TensorFlow's 0."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") or 0) >= 1
    except ValueError:
        return False


def import_tensorflow() -> ModuleType:
    """`import tensorflow`, with its load-time banner dropped when TF_CPP_MIN_LOG_LEVEL >= 1.

    Every other line written to stderr while it loads (errors, warnings) is written back, in order.
    Call it before anything imports TensorFlow (a later call is a plain import).
    """
    if "tensorflow" in sys.modules or not _hides_info():
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:  # unlinked at once: nothing is left behind, even on SIGKILL
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _LOAD_BANNER.search(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
    return tensorflow
