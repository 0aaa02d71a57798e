"""The collector policy of one-shot commands: survivors of a full collection are frozen (later
collections skip them), and `release()` still frees a large object that a reference cycle kept
alive past a freeze. Run in a child process: the policy is process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import gc, weakref
    from tasks.core import collector

    class Model:  # stands for a trained model that its trainer's callbacks point back to
        pass

    collector.release()  # nothing installed: does nothing
    assert gc.get_freeze_count() == 0
    collector.keep_survivors()
    model = Model()
    model.me = model  # a cycle: only the cyclic collector frees it
    alive = weakref.ref(model)
    gc.collect()
    frozen = gc.get_freeze_count()
    assert frozen > 0, "survivors of a full collection are frozen"
    del model
    gc.collect()
    assert alive() is not None, "frozen: a later collection does not walk it"
    collector.release()
    assert alive() is None, "release frees what the freeze kept"
    assert gc.get_freeze_count() > 0, "what survives release is frozen again"
    print("ok")
    """
)


def test_survivors_are_frozen_and_release_frees_a_frozen_cycle() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
