"""Parsing the error tree drawn with ├── / └── in errors.py and docs/errors.md."""

from __future__ import annotations

import re


def drawn_tree(text: str) -> dict[str, str | None]:
    """name -> parent, parsed from an ASCII tree drawn with ├── / └──."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        m = re.match(r"^(?P<indent>[\s│├└─]*?)(?P<name>[A-Z][A-Za-z]+Error)\b", line.strip("\n"))
        if not m:
            continue
        depth = len(m.group("indent"))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[m.group("name")] = stack[-1][1] if stack else None
        stack.append((depth, m.group("name")))
    return parents
