"""Counted warnings: what a conversion skipped or changed, with where, never silently."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from training.errors import ConvertError

log = logging.getLogger("trackcast.convert")

#: how many examples of each kind the summary keeps (all of them are logged)
EXAMPLES = 5


class Report:
    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.warnings: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.counts: Counter[str] = Counter()

    def warn(self, kind: str, where: str, message: str) -> None:
        """Record a skipped or changed item; with ``strict`` it is an error instead."""
        text = f"{where}: {message}"
        if self.strict:
            raise ConvertError(f"{text} (--strict)")
        self.warnings[kind] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < EXAMPLES:
            ex.append(text)
        log.warning("%s [%s]", text, kind)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def summary(self, **extra: Any) -> dict[str, Any]:
        return {
            **extra,
            **dict(sorted(self.counts.items())),
            "warnings": dict(sorted(self.warnings.items())),
            "warning_examples": self.examples,
        }
