"""``microdesign ARGS`` that stops for good in the middle of its second measured trial; not a test module itself.

Run by ``test_workers.py``::

    python tests/scaleout/paused_worker.py study run SPEC --storage URL

The second call of :func:`inverse.evaluation.measure` (a trial whose conditions
are all suggested and found feasible, with one measured trial complete before
it) writes the file named by ``MICRODESIGN_TEST_PAUSED`` and then waits until
the process is killed, its heartbeat still beating. The test SIGKILLs it there:
the kill lands in the middle of a trial by construction, not by timing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from inverse import evaluation

_measure = evaluation.measure
_calls = 0


def _measure_then_pause(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    global _calls
    _calls += 1
    if _calls == 2:
        Path(os.environ["MICRODESIGN_TEST_PAUSED"]).write_text(str(os.getpid()))
        while True:  # until SIGKILL
            time.sleep(60)
    return _measure(*args, **kwargs)


evaluation.measure = _measure_then_pause

if __name__ == "__main__":
    from inverse.cli import main

    main()
