"""Models registered before `tasks/` had one folder per stage pickled their pyfunc python_model
class by reference to `tasks.serving.<Class>`: that reference must still unpickle, to the class
that lives in `tasks.models.serving` now."""

from __future__ import annotations

import pickle

import pytest

from tasks.models import serving


@pytest.mark.parametrize("name", ["ClassifierModel", "CausalLMModel", "RewardScorerModel"])
def test_old_class_reference_unpickles(name: str) -> None:
    old_reference = f"ctasks.serving\n{name}\n.".encode()  # protocol 0: a global by module path
    assert pickle.loads(old_reference) is getattr(serving, name)
