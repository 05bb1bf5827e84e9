"""``microdesign ARGS`` that stops for good in the middle of its second trial; not a test module itself.

Run by ``test_workers.py``::

    python tests/scaleout/paused_worker.py study run SPEC --storage URL

The second trial of the process, once all its conditions are suggested (one
trial complete before it), writes the file named by ``MICRODESIGN_TEST_PAUSED``
and then waits until the process is killed, its heartbeat still beating. The
test SIGKILLs it there: the kill lands in the middle of a trial by construction,
not by timing. It pauses before the feasibility check, so it does not depend on
how many proposals the tiny model finds feasible (that number depends on the
machine that simulated the tiny training data: a CI run once measured 1 trial
in 9, where this machine measures 6).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from inverse import search

_suggest = search._suggest_conditions
_calls = 0


def _suggest_then_pause(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    global _calls
    _calls += 1
    conditions = _suggest(*args, **kwargs)
    if _calls == 2:
        Path(os.environ["MICRODESIGN_TEST_PAUSED"]).write_text(str(os.getpid()))
        while True:  # until SIGKILL
            time.sleep(60)
    return conditions


search._suggest_conditions = _suggest_then_pause

if __name__ == "__main__":
    from inverse.cli import main

    main()
