"""Prefect tasks of tuneline, each a thin shell over plain functions in the same module."""

import os

# PyTorch's OpenMP threads spin while they wait for work. When other jobs share the cores, a
# spinning thread takes the time its busy partner needs, and training crawls: measured on 2 cores
# with other jobs running, a LoRA step took 1.2-3.1 s with 2 spinning threads against 0.11 s with
# waiting threads (bench/RESULTS.md). Set before torch is first imported; a user's value stands.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
