"""Great Expectations' Data Docs pages with their Jinja templates compiled once per machine.

GX gives every page view a Jinja environment of its own, which compiles the same templates again:
about 0.25 s of a contract's two Data Docs sites (train and eval), on the run's one busy thread.
These views are GX's own, with a bytecode cache in a folder the caller names (tuneline's user
cache): the pages are the same, their templates are compiled once. Jinja keys the cache by the
template's file and source and the Python version, and writes it atomically."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView


@cache
def _cache(folder: str) -> jinja2.FileSystemBytecodeCache:
    return jinja2.FileSystemBytecodeCache(folder)


class _CompiledOnce:
    """A GX Jinja view whose environment reads and writes compiled templates in a folder."""

    env: jinja2.Environment

    def __init__(
        self,
        template_cache: str,
        custom_styles_directory: str | None = None,
        custom_views_directory: str | None = None,
    ) -> None:  # named, not **kwargs: GX passes a view only the arguments its signature names
        super().__init__(custom_styles_directory, custom_views_directory)  # type: ignore[call-arg]
        self.env.bytecode_cache = _cache(template_cache)


class CachedPageView(_CompiledOnce, DefaultJinjaPageView):
    """GX's page view (suites and validation results), its templates compiled once."""


class CachedIndexPageView(_CompiledOnce, DefaultJinjaIndexPageView):
    """GX's index page view, its templates compiled once."""


def use_cached_views(context: Any, template_cache: str) -> None:
    """Point every Data Docs site of the GX `context` at these views."""
    from pathlib import Path

    Path(template_cache).mkdir(parents=True, exist_ok=True)

    def view(name: str) -> dict[str, str]:
        return {"module_name": __name__, "class_name": name, "template_cache": template_cache}

    for name, site in (context.variables.data_docs_sites or {}).items():
        sections = site.setdefault("site_section_builders", {})
        for section in ("expectations", "validations", "profiling"):
            sections.setdefault(section, {})["view"] = view("CachedPageView")
        index = site.setdefault("site_index_builder", {"class_name": "DefaultSiteIndexBuilder"})
        index["view"] = view("CachedIndexPageView")
        context.update_data_docs_site(name, site)
