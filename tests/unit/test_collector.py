"""The collector policy of one-shot commands: survivors of a full collection are frozen (later
collections skip them), and a `releasing()` block still frees a large object it made that a
reference cycle keeps alive, by a collection of what is newer than the block only. Run in a child process: the policy is process-wide."""

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

    with collector.releasing():  # nothing installed: does nothing
        pass
    assert gc.get_freeze_count() == 0
    collector.keep_survivors()
    old = Model()
    old.me = old  # a cycle: only the cyclic collector frees it
    was_old = weakref.ref(old)
    gc.collect()
    frozen = gc.get_freeze_count()
    assert frozen > 0, "survivors of a full collection are frozen"
    del old
    gc.collect()
    assert was_old() is not None, "frozen: a later collection does not walk it"

    kept = []
    with collector.releasing():
        model = Model()
        model.me = model
        alive = weakref.ref(model)
        entered = gc.get_freeze_count()
        gc.collect()  # a full collection inside the block freezes nothing more
        assert gc.get_freeze_count() == entered
        survivor = Model()  # made in the block and still alive after it
        survivor.me = survivor
        kept.append(weakref.ref(survivor))
        del model
    assert alive() is None, "the block's cycle is freed when it ends"
    assert was_old() is not None, "what was older than the block is not walked"
    del survivor
    gc.collect()
    assert kept[0]() is not None, "what survived the block is frozen"
    print("ok")
    """
)


def test_survivors_are_frozen_and_a_releasing_block_frees_its_cycles() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
