"""Render the CLI reference (docs/cli.md) from the argparse parser, so it cannot drift.

    python -m adaptive_plugin._clidoc > docs/cli.md
"""

from __future__ import annotations

import argparse

from adaptive_plugin.cli import build_parser


def _walk(parser: argparse.ArgumentParser, path: list[str]) -> list[tuple[list[str], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:  # argparse has no public API for subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_walk(sub, [*path, name]))
    return found


def render() -> str:
    lines = ["# CLI reference", "", "Generated from the parser by `python -m adaptive_plugin._clidoc`; a test keeps it current.", ""]
    for path, parser in _walk(build_parser(), ["adaptive-plugin"]):
        parser.prog = " ".join(path)
        lines += [f"## {' '.join(path)}", "", "```", parser.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
