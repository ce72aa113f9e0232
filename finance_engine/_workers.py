"""Worker-process hygiene: a pool worker exits when the process that started it is gone.

A ``ProcessPoolExecutor`` worker whose parent is killed (``kill -9``, a crash) is re-parented to
init and would otherwise live on, holding its memory. Pool initialisers call
:func:`exit_with_parent`, which starts a daemon thread that polls the parent's pid and ends the
worker as soon as it changes.
"""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """Exit this process (at once, without cleanup) when its parent process disappears."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
