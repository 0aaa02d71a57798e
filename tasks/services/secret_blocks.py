"""Reading a Prefect Secret block a recipe names (`base_model.token_secret`): the one place
tuneline asks Prefect for a secret. Its value is masked by `tasks.core.secrets` from then on; that
module stays free of Prefect so that everything, the errors included, can mask what it writes."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from tasks.core.errors import ModelError, first_line
from tasks.core.secrets import remember


def prefect_secret(block_name: str) -> str:
    """The value of a Prefect Secret block (masked from then on), or a clear error."""
    try:
        from prefect.blocks.system import Secret

        block: Any = Secret.load(block_name)  # synchronous here (no running event loop)
        value = str(block.get())
    except Exception as exc:
        first = first_line(exc)
        raise ModelError(
            f"Prefect Secret block '{block_name}' cannot be read ({first}); create it in the "
            "Prefect UI (Blocks > Secret) or with `prefect block create secret`"
        ) from None
    remember(value)
    return value


class _NamesSecret(Protocol):
    """What `with_token` needs of a base-model spec (`tasks.models.base.BaseModelSpec`, a layer
    above this one)."""

    @property
    def token_secret(self) -> str | None: ...
    @property
    def token(self) -> str | None: ...
    def with_token(self, token: str | None) -> Any: ...


Spec = TypeVar("Spec", bound=_NamesSecret)


def with_token(spec: Spec) -> Spec:
    """`spec` with the value of its `token_secret` block, for the tasks that load it (no secret
    named: `spec` as it is, the hub reading `HF_TOKEN` from the environment)."""
    if not spec.token_secret or spec.token is not None:
        return spec
    resolved: Spec = spec.with_token(prefect_secret(spec.token_secret))
    return resolved
