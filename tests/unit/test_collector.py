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


def run_alone(script: str) -> None:
    """Run `script` in a child process (the collector is process-wide); it prints ok."""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"


def test_survivors_are_frozen_and_a_releasing_block_frees_its_cycles() -> None:
    run_alone(SCRIPT)


PAUSE = textwrap.dedent(
    """
    import gc, os, tempfile
    from tasks.core import collector
    from tasks.core.ahead import ahead

    collector.resume()  # nothing paused: nothing happens
    assert gc.isenabled() and gc.get_freeze_count() == 0

    collector.pause()
    assert not gc.isenabled()
    before = [s["collections"] for s in gc.get_stats()]
    for _ in range(50_000):  # cycles enough for dozens of collections
        node = []
        node.append(node)
    assert [s["collections"] for s in gc.get_stats()] == before, "collected while paused"

    # work ahead forked while paused collects as usual
    out = os.path.join(tempfile.mkdtemp(), "enabled")
    def work():
        with open(out, "w") as f:
            f.write(str(gc.isenabled()))
    with ahead(work) as pid:
        if pid is not None:
            os.waitpid(pid, 0)
    if pid is not None:
        assert open(out).read() == "True"

    collector.resume()
    assert gc.isenabled(), "collections start again"
    assert gc.get_freeze_count() > 0, "what lived is frozen"
    collector.resume()  # once only
    assert gc.isenabled()

    with collector.paused():  # a block that did not resume: resumed when it ends
        assert not gc.isenabled()
    assert gc.isenabled()
    try:
        with collector.paused():
            raise KeyError
    except KeyError:
        pass
    assert gc.isenabled()

    gc.disable()  # a caller that turned collection off itself keeps it off
    collector.pause()
    collector.resume()
    assert not gc.isenabled()
    print("ok")
    """
)


def test_pause_collects_nothing_and_resume_freezes_then_collects() -> None:
    """`tuneline run` pauses collections for its imports and resumes them as its flow starts."""
    run_alone(PAUSE)
