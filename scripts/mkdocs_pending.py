"""An MkDocs hook (mkdocs.yml ``hooks``): nav entries for pages that other branches are still
writing are dropped while their files do not exist, so the site builds with --strict before
and after they land. Any other page missing from docs/ still fails the build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Remove a name once its page is merged (or leave it: an existing page is kept as usual).
PENDING = frozenset(
    {
        "email.md",
        "webhooks.md",
        "exports.md",
        "housekeeping.md",
        "coming-from-procrastinate.md",
        "coming-from-bullmq.md",
    }
)


def on_config(config: Any) -> Any:
    docs = Path(config["docs_dir"])
    config["nav"] = _present(config["nav"], docs)
    return config


def _present(nav: list[Any], docs: Path) -> list[Any]:
    kept: list[Any] = []
    for entry in nav:
        if isinstance(entry, dict):
            [(title, value)] = entry.items()
            if isinstance(value, list):
                kept.append({title: _present(value, docs)})
                continue
            if value in PENDING and not (docs / value).exists():
                continue
        elif isinstance(entry, str) and entry in PENDING and not (docs / entry).exists():
            continue
        kept.append(entry)
    return kept
