"""People's actions on the registry: promote a version, roll the champion back, list versions
and their aliases."""

from __future__ import annotations

from typing import Any

from tasks.core.errors import RegistryError, first_line
from tasks.registry.register import (
    CHAMPION,
    PREVIOUS,
    current_champion,
    note_moved_by_hand,
    version_metrics,
)
from tasks.services import concurrency, tracking


def get_version(name: str, version: str) -> Any:
    mlc = tracking.client()
    try:
        return mlc.get_model_version(name, version)
    except Exception as exc:
        raise RegistryError(
            f"model '{name}' has no version {version} ({first_line(exc)})"
        ) from None


def promote(name: str, version: str, who: str = "manual") -> str:
    """Make `version` the champion; the one it replaces keeps `previous-champion`."""
    with concurrency.exclusive(f"register-{name}"):
        target = get_version(name, version)
        mlc = tracking.client()
        champion = current_champion(name)
        if champion is not None and str(champion.version) == str(target.version):
            return f"{name} version {version} is already champion"
        if champion is not None:
            mlc.set_registered_model_alias(name, PREVIOUS, champion.version)
        mlc.set_registered_model_alias(name, CHAMPION, target.version)
        mlc.set_model_version_tag(name, target.version, "promotion", f"promoted ({who})")
        note_moved_by_hand(name)
        before = f" (was version {champion.version})" if champion is not None else ""
        return f"{name} version {version} is now champion{before}"


def rollback(name: str) -> str:
    """Give `champion` back to `previous-champion`; the demoted version is tagged."""
    with concurrency.exclusive(f"register-{name}"):
        mlc = tracking.client()
        try:
            previous = mlc.get_model_version_by_alias(name, PREVIOUS)
        except Exception:
            raise RegistryError(
                f"model '{name}' has no '{PREVIOUS}' alias to roll back to; "
                f"use `tuneline promote {name} VERSION`"
            ) from None
        champion = current_champion(name)
        mlc.set_registered_model_alias(name, CHAMPION, previous.version)
        mlc.delete_registered_model_alias(name, PREVIOUS)
        note_moved_by_hand(name)
        if champion is not None:
            mlc.set_model_version_tag(name, champion.version, "promotion", "rolled back")
        was = f" (version {champion.version} rolled back)" if champion is not None else ""
        return f"{name} version {previous.version} is champion again{was}"


def list_versions(name: str | None = None) -> list[dict[str, Any]]:
    """Versions with aliases, key metrics and data fingerprints (newest first)."""
    mlc = tracking.client()
    names = [name] if name else [m.name for m in mlc.search_registered_models()]
    rows: list[dict[str, Any]] = []
    for model_name in names:
        try:
            model = mlc.get_registered_model(model_name)
        except Exception:
            raise RegistryError(f"no registered model named '{model_name}'") from None
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for v in mlc.search_model_versions(f"name = '{model_name}'"):
            tags = v.tags or {}
            rows.append(
                {
                    "name": model_name,
                    "version": str(v.version),
                    "aliases": sorted(aliases.get(str(v.version), [])),
                    "method": tags.get("method", ""),
                    "metrics": version_metrics(v),
                    "data_fingerprint": tags.get("data_fingerprint", ""),
                    "promotion": tags.get("promotion", ""),
                    "created": int(v.creation_timestamp or 0),
                }
            )
    rows.sort(key=lambda r: (r["name"], -int(r["version"])))
    return rows
