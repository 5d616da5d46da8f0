"""The one check, and the one wording, for data that lacks columns: inputs, targets, landed tables."""

from __future__ import annotations

from collections.abc import Iterable


def require_columns(subject: str, needed: Iterable[str], columns: Iterable[object], error: type[Exception],
                    advice: str = "") -> None:
    """Raise ``error`` naming every needed column ``subject`` lacks, and the columns it has."""
    have = [str(c) for c in columns]
    missing = [c for c in needed if c not in have]
    if missing:
        raise error(f"{subject} has no column {', '.join(map(repr, missing))}; its columns are "
                    f"{', '.join(have)}{'. ' + advice if advice else ''}")
