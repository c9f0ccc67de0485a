"""The one writer of the benchmark pages' tables (issue 84): every block between
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in BENCHMARKS.md and docs/benchmarks/*.md is
replaced by what the table registered under NAME writes from the committed results files.

The registry is this folder: every module here (this one and ``_``-prefixed helpers aside)
defines ``TABLES``, a dict from marker name to a function that returns the block's Markdown; a
new table is one more module, found without a list. Writers only read ``benchmarks/results/``:
nothing is trained or timed. ``ddkit bench`` writes the ``bench:<suite>`` blocks itself as a
suite runs, through the same function (``suite_tables.py``).

A Markdown table outside every marked block must be listed in ``_unwritten.UNWRITTEN`` with the
reason it has no writer yet, so a hand-pasted table cannot join a page unnoticed
(``tests/test_tables.py`` runs :func:`problems`).

Usage: python benchmarks/tables/write.py                # rewrite every marked block
       python benchmarks/tables/write.py --check        # list what differs; exit 1 if anything
       python benchmarks/tables/write.py --print NAME   # one table, as its writer writes it
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FRONT = "BENCHMARKS.md"
TOPIC_PAGES = "docs/benchmarks"
BLOCK = re.compile(
    r"<!-- (?P<name>[\w:.-]+):start -->\n(?P<body>.*?)\n?<!-- (?P=name):end -->", re.S
)
RULE = re.compile(r"^\|(?: *:?-+:? *\|)+$")


def pages(root: Path = ROOT) -> list[Path]:
    """BENCHMARKS.md and every topic page under docs/benchmarks/."""
    return [root / FRONT, *sorted((root / TOPIC_PAGES).glob("*.md"))]


def _module(stem: str) -> ModuleType:
    """A module of this folder (which goes on the path: table modules import their helpers)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module(stem)


def registry() -> dict[str, Callable[[], str]]:
    """Marker name -> writer, from every table module in this folder."""
    tables: dict[str, Callable[[], str]] = {}
    for path in sorted(HERE.glob("*.py")):
        if path.name.startswith("_") or path.stem == "write":
            continue
        module = _module(path.stem)
        own = getattr(module, "TABLES", None)
        if not isinstance(own, dict) or not own:
            raise SystemExit(f"{path.name} registers no table (a dict TABLES: marker -> writer)")
        for name, writer in own.items():
            if name in tables:
                raise SystemExit(f"table {name!r} is registered twice ({path.name})")
            tables[name] = writer
    return tables


class Writers:
    """The registry's writers, each run at most once (a table may stand on two pages)."""

    def __init__(self, tables: dict[str, Callable[[], str]]) -> None:
        self.tables, self.done = tables, {}

    def __call__(self, name: str) -> str:
        if name not in self.done:
            if name not in self.tables:
                raise KeyError(name)
            self.done[name] = self.tables[name]().strip("\n")
        return self.done[name]


def rewritten(text: str, write: Callable[[str], str]) -> str:
    """``text`` with every marked block's body replaced by its writer's output."""

    def one(m: re.Match) -> str:
        name = m["name"]
        return f"<!-- {name}:start -->\n{write(name)}\n<!-- {name}:end -->"

    return BLOCK.sub(one, text)


def unmarked_tables(text: str) -> list[str]:
    """The header row of every Markdown table outside the marked blocks."""
    lines = BLOCK.sub("", text).splitlines()
    return [lines[i - 1] for i, line in enumerate(lines) if i and RULE.match(line)]


def problems(
    root: Path = ROOT,
    tables: dict[str, Callable[[], str]] | None = None,
    unwritten: dict[tuple[str, str], tuple[int, str]] | None = None,
) -> list[str]:
    """Every way the pages under ``root`` differ from what the writers produce: a block unlike
    its writer's output, a marker no writer owns, a table outside the blocks not listed in
    ``unwritten`` (``_unwritten.UNWRITTEN`` by default; or listed more often than it stands), a
    registered table on no page."""
    write = Writers(registry() if tables is None else tables)
    if unwritten is None:
        unwritten = _module("_unwritten").UNWRITTEN
    out, used, found = [], set(), Counter()
    for page in pages(root):
        rel = page.relative_to(root).as_posix()
        text = page.read_text()
        for m in BLOCK.finditer(text):
            used.add(m["name"])
            try:
                if m["body"].strip("\n") != write(m["name"]):
                    out.append(f"{rel}: table {m['name']!r} differs from what its writer writes")
            except KeyError:
                out.append(f"{rel}: no writer for the marked table {m['name']!r}")
        for header in unmarked_tables(text):
            found[(rel, header)] += 1
    for key in sorted(set(found) | set(unwritten)):
        listed = unwritten.get(key, (0, ""))[0]
        if found[key] != listed:
            out.append(
                f"{key[0]}: {found[key]} table(s) with no writer under the header {key[1]!r}, "
                f"{listed} listed in UNWRITTEN"
            )
    out += [f"table {name!r} is registered but marked on no page" for name in sorted(
        set(write.tables) - used)]  # fmt: skip
    return out


def write_pages(root: Path = ROOT) -> list[Path]:
    """Rewrite every marked block on the pages; the pages that changed."""
    write, changed = Writers(registry()), []
    for page in pages(root):
        text = page.read_text()
        new = rewritten(text, write)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="list differences, write nothing")
    what.add_argument("--print", metavar="NAME", help="print one table")
    args = ap.parse_args(argv)
    if args.print:
        tables = registry()
        if args.print not in tables:
            raise SystemExit(f"no table {args.print!r}; registered: {', '.join(sorted(tables))}")
        print(tables[args.print]().strip("\n"))
        return 0
    if args.check:
        found = problems()
        print("\n".join(found) or "every marked table is what its writer writes")
        return 1 if found else 0
    changed = write_pages()
    names = ", ".join(p.relative_to(ROOT).as_posix() for p in changed) or "nothing changed"
    print(f"write: {names}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
