"""When a training process dies (an abort inside a collective, say), the error shows what that
process said, not only the launcher's own traceback that follows it."""

from __future__ import annotations

from tasks.training.launch import failure_clues

LAUNCHER = [
    "Traceback (most recent call last):",
    '  File "<frozen runpy>", line 198, in _run_module_as_main',
    '  File "/venv/accelerate/commands/launch.py", line 1423, in <module>',
    "    main()",
    "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
    "  exitcode  : -6 (pid: 4536)  (SIGABRT)",
]


def test_the_dead_process_lines_come_before_the_launcher_traceback() -> None:
    output = [
        "[rank1]: step 3",
        "terminate called after throwing an instance of 'gloo::EnforceNotMet'",
        "  what():  [enforce fail at pair.cc:446] op.preamble.length <= op.nbytes. 8 vs 4",
        *LAUNCHER,
    ]
    assert failure_clues(output) == output[1:3]


def test_a_process_traceback_is_kept_and_the_launcher_one_left_out() -> None:
    output = [
        "Traceback (most recent call last):",
        '  File "train.py", line 3, in <module>',
        "RuntimeError: shapes do not match",
        *LAUNCHER,
    ]
    assert failure_clues(output) == ["RuntimeError: shapes do not match"]


def test_nothing_said_is_said_plainly() -> None:
    assert failure_clues(LAUNCHER) == ["(nothing)"]
