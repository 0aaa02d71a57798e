"""Training across processes: the training task writes a job file and runs this module under
`accelerate launch` (torchrun underneath); every process trains its shard, and rank 0 alone
writes the artifact and the result the task reads back. MLflow logging and registration stay in
the task's process, so they happen once.

    python -m accelerate.commands.launch --multi_gpu --num_processes 2 -m tasks.training.launch JOB
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tasks.core import ahead, collector, environment
from tasks.core.errors import TunelineError
from tasks.models.base import BaseModelSpec
from tasks.tokenization.encoding import TokenizedRef
from tasks.training.base import TrainResult, TrainSpec, is_main_process

RESULT = "train_result.json"
LAUNCH_LOG = "launch.log"
# The value of `base_model.token_secret` for the training processes: their environment, not the
# job file, carries it.
TOKEN_ENV = "TUNELINE_BASE_MODEL_TOKEN"
log = logging.getLogger(__name__)


def job(
    tokenized: TokenizedRef,
    base: BaseModelSpec,
    method: Any,
    spec: TrainSpec,
    out_dir: Path,
    checkpoint_dir: Path | None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "tokenized": asdict(tokenized),
        "base": base.model_dump(),
        "method": method.model_dump(),
        "spec": spec.model_dump(),
        "out_dir": str(out_dir),
        "checkpoint_dir": str(checkpoint_dir) if checkpoint_dir else None,
        **extra,
    }


# A process that dies of a signal (an abort in a collective, say) says why only in its own lines,
# above the launcher's summary: these are the lines worth showing.
_CLUE = re.compile(r"terminate called|what\(\)|Error|error:|Exception|Timed out|enforce fail")


def failure_clues(output: list[str], limit: int = 20) -> list[str]:
    """The processes' own lines that say what failed: those above the launcher's traceback."""
    end = next(
        (i for i, line in enumerate(output) if "accelerate/commands/launch" in line), len(output)
    )
    if end < len(output):  # back to the "Traceback" line that opens the launcher's traceback
        end = max((i for i in range(end) if output[i].startswith("Traceback")), default=end)
    clues = [line for line in output[:end] if _CLUE.search(line)]
    return clues[-limit:] or ["(nothing)"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_distributed(
    payload: dict[str, Any], processes: int, token: str | None = None
) -> TrainResult:
    """Run the job on `processes` processes and return rank 0's result."""
    out_dir = Path(payload["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    job_file = out_dir / "train_job.json"
    job_file.write_text(json.dumps(payload, default=str))
    (out_dir / RESULT).unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",  # torchrun-style launch; on CPU the processes talk over gloo
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--main_process_port",
        str(_free_port()),
        "--dynamo_backend",
        "no",
        "--mixed_precision",
        "no",  # the recipe's train.mixed_precision decides, through TrainingArguments
        "-m",
        "tasks.training.launch",
        str(job_file),
    ]
    env = {**environment.snapshot(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if token is not None:
        env[TOKEN_ENV] = token
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    result = out_dir / RESULT
    if proc.returncode != 0 or not result.is_file():
        output = (proc.stdout + proc.stderr).strip().splitlines()
        user_error = [line for line in output if line.startswith("tuneline-error: ")]
        if user_error:
            raise TunelineError(user_error[-1].removeprefix("tuneline-error: "))
        log_file = out_dir / LAUNCH_LOG
        log_file.write_text(proc.stdout + proc.stderr)
        raise RuntimeError(
            f"distributed training ({processes} processes) failed with exit code "
            f"{proc.returncode}; what the processes said before failing:\n"
            + "\n".join(failure_clues(output))
            + "\n...\n"
            + "\n".join(output[-25:])
            + f"\nwhole output: {log_file}"
        )
    return TrainResult(**json.loads(result.read_text()))


def train_here(
    tokenized: TokenizedRef,
    base: BaseModelSpec,
    method: Any,
    spec: TrainSpec,
    out_dir: Path,
    checkpoint_dir: Path | None,
    **extra: Any,
) -> TrainResult:
    """Train in this process: `train_causal` or `train_classifier`, by the method's family."""
    from tasks.training import is_causal

    if is_causal(method.name):
        from tasks.training.causal.runner import train_causal

        return train_causal(
            tokenized,
            base,
            method,
            spec,
            extra["data_format"],
            extra["max_length"],
            out_dir,
            checkpoint_dir,
            extra.get("init"),
        )
    from tasks.training.encoder.runner import train_classifier

    return train_classifier(
        tokenized,
        base,
        method,
        spec,
        extra["labels"],
        extra["max_length"],
        out_dir,
        checkpoint_dir,
        extra.get("init"),
    )


def train(
    tokenized: TokenizedRef,
    base: BaseModelSpec,
    method: Any,
    spec: TrainSpec,
    out_dir: Path,
    checkpoint_dir: Path | None,
    **extra: Any,
) -> TrainResult:
    """Train in this process, or across `train.distributed.processes` under accelerate."""
    if ahead.end_work_ahead():  # training wants every core; the stages finish what it had not
        log.info("work ahead still running when training began: stopped")
    if spec.distributed.processes <= 1:
        # the trained model, optimiser and trainer go before evaluation's models come
        with collector.releasing():
            return train_here(tokenized, base, method, spec, out_dir, checkpoint_dir, **extra)
    payload = job(tokenized, base, method, spec, out_dir, checkpoint_dir, **extra)
    return run_distributed(payload, spec.distributed.processes, base.token)


def main(job_file: str) -> None:
    from tasks.training import METHODS

    payload = json.loads(Path(job_file).read_text())
    extra = {k: payload[k] for k in ("labels", "data_format", "max_length", "init") if k in payload}
    result = train_here(
        TokenizedRef(**payload["tokenized"]),
        BaseModelSpec(**payload["base"]).with_token(os.environ.get(TOKEN_ENV)),
        METHODS[payload["method"]["name"]].config(**payload["method"]),
        TrainSpec(**payload["spec"]),
        Path(payload["out_dir"]),
        Path(payload["checkpoint_dir"]) if payload["checkpoint_dir"] else None,
        **extra,
    )
    out_dir = Path(payload["out_dir"])
    if is_main_process():
        tmp = out_dir / f".{RESULT}.tmp"
        tmp.write_text(json.dumps(asdict(result)))
        tmp.replace(out_dir / RESULT)
    _leave_together()


def _leave_together() -> None:
    """Every process waits until rank 0 has written the result, then they close the process group
    before exiting. A process that exits with its group still open tears gloo's threads and
    sockets down in the interpreter's exit, where an error aborts the process (SIGABRT) and the
    launcher stops the others, rank 0 included, before it has written the result."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except TunelineError as exc:
        print(f"tuneline-error: {exc.message}", file=sys.stderr)
        sys.exit(1)
