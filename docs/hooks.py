"""MkDocs hooks of ddkit's documentation: the parts of the pages that ddkit itself knows.

A page holds a marker where a generated part goes; :func:`on_page_markdown` replaces it when the
site is built, so nothing there is hand-copied and nothing can drift:

* ``<!-- ddkit:cli -->`` -- every sub-command of ``ddkit.cli.build_parser()``, with its usage and
  options (members of command groups such as ``ddkit app NAME`` included);
* ``<!-- ddkit:protocols -->`` -- the registered evaluation protocols and their settings;
* ``<!-- ddkit:methods FAMILY -->`` -- the registered methods of ``ddkit.methods.FAMILY``;
* ``<!-- ddkit:codecs -->`` -- the registered codecs;
* ``<!-- ddkit:suites -->`` -- the registered benchmark suites;
* ``<!-- ddkit:format-example -->`` -- a small set saved by this ddkit, its meta.json and tensors;
* ``<!-- ddkit:api PACKAGE -->`` -- an API block for every public module of ``PACKAGE``;
* links written ``[text](repo:PATH)`` point at ``PATH`` in the repository (``repo_url`` in
  mkdocs.yml), or name the path when no repository address is configured.

:class:`RstRoles` is a Griffe extension (mkdocstrings loads it from this file): ddkit's
docstrings use reStructuredText roles (``:func:`x```) and doctest lines, which it rewrites into
Markdown and cross-references before mkdocstrings renders them.
"""

from __future__ import annotations

import argparse
import html
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--\s*ddkit:(?P<what>[\w-]+)(?:\s+(?P<arg>[\w./-]+))?\s*-->")
REPO_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\(repo:(?P<path>[^)\s]+)\)")
USAGE_WIDTH = 88


# ------------------------------------------------------------------ mkdocs events
def on_config(config: Any) -> Any:
    """Make ``src/`` importable for the generated parts (also without an installed ddkit)."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the page's markers and resolve its ``repo:`` links."""

    def fill(match: re.Match[str]) -> str:
        what, arg = match["what"], match["arg"]
        if what not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown marker ddkit:{what}")
        if what in NEEDS_ARGUMENT and not arg:
            raise ValueError(f"{page.file.src_path}: marker ddkit:{what} needs an argument")
        return GENERATORS[what](arg, markdown)

    markdown = MARKER.sub(fill, markdown)
    repo = (config.get("repo_url") or "").rstrip("/")

    def link(match: re.Match[str]) -> str:
        if repo:
            return f"[{match['text']}]({repo}/blob/main/{match['path']})"
        return f"`{match['path']}`"

    return REPO_LINK.sub(link, markdown)


# ------------------------------------------------------------------ Markdown helpers
def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell: code spans kept, HTML and the characters
    Markdown or the table would read escaped elsewhere."""
    parts = re.split(r"(`[^`]*`)", " ".join(str(text).split()))
    out = []
    for part in parts:
        if part.startswith("`"):
            out.append(part)  # a pipe inside a code span does not split the cell
        else:
            part = html.escape(part, quote=False)
            for char in "|*_[]\\":
                part = part.replace(char, f"&#{ord(char)};")
            out.append(part)
    return "".join(out)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _first_paragraph(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


# ------------------------------------------------------------------ the command line
def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, Any]]:
    """``(name, help, parser)`` of each sub-command of ``parser``, in the parser's order."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if not action.option_strings or action.nargs == 0:
        return ""
    if action.default in (None, argparse.SUPPRESS, [], ()):
        return ""
    return f"`{action.default}`"


def _command_section(parser: argparse.ArgumentParser, help: str, level: int) -> list[str]:
    formatter = argparse.HelpFormatter(prog=parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    lines = [f"{'#' * level} {parser.prog}", ""]
    for text in dict.fromkeys([help, parser.description or ""]):  # each once, in this order
        if text:
            lines += [_cell(text), ""]
    lines += ["```text", formatter.format_help().strip(), "```", ""]
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        text = formatter._expand_help(action) if action.help else ""
        invocation = formatter._format_action_invocation(action)
        rows.append([f"`{invocation}`", _default(action), _cell(text)])
    if rows:
        lines += [_table(["argument", "default", "meaning"], rows), ""]
    return lines


def cli_reference() -> str:
    """Every sub-command of the ``ddkit`` parser: usage, then a table of its arguments; the
    members of a command group follow their group, one level down."""
    from ddkit.cli import build_parser

    lines: list[str] = []
    for _name, help, sub in _subcommands(build_parser()):
        lines += _command_section(sub, help, level=2)
        for _inner, inner_help, member in _subcommands(sub):
            lines += _command_section(member, inner_help, level=3)
    return "\n".join(lines)


# ------------------------------------------------------------------ registries
def protocol_table() -> str:
    """The registered evaluation protocols (methods may register their own: all are loaded)."""
    from ddkit.eval.protocol import PROTOCOLS
    from ddkit.methods import load_all

    load_all()
    rows = []
    for name in PROTOCOLS.names():
        p = PROTOCOLS.get(name)
        training = (
            f"{p.optimizer} lr {p.lr:g}, weight decay {p.weight_decay:g}, {p.schedule}, "
            f"batch {p.batch_size}, {p.precision}"
        )
        extras = ", ".join(x for x in (p.augment and f"augment {p.augment}", p.mix) if x)
        rows.append(
            [
                f"`{name}`",
                _cell(PROTOCOLS.help(name)),
                str(p.epochs),
                str(p.runs),
                _cell(training),
                _cell(extras or "none"),
                f"`{p.targets}`",
                f"`{p.loss}`",
            ]
        )
    header = ["protocol", "what it is for", "epochs", "runs", "training", "augment / mix"]
    return _table([*header, "targets", "loss"], rows)


def method_table(family: str) -> str:
    """The registered methods and selectors whose module lives in ``ddkit.methods.<family>``."""
    from ddkit.methods import METHODS, load_all

    load_all()
    package = f"ddkit.methods.{family}"
    rows = []
    for name in METHODS.names():
        cls = METHODS.get(name)
        if cls.__module__ == package or cls.__module__.startswith(package + "."):
            summary = re.sub(rf"^{re.escape(name)}:\s*", "", _first_paragraph(cls), flags=re.I)
            rows.append([f"`{name}`", cls.kind, _cell(summary), f"`{cls.__module__}`"])
    if not rows:
        raise ValueError(f"no registered method lives in {package}")
    return _table(["name", "kind", "what it does", "module"], rows)


def codec_table() -> str:
    """The registered codecs with their ``--set codec=SPEC`` spelling."""
    from ddkit.data.codecs import CODECS

    rows = []
    for name in CODECS.names():
        cls = CODECS.get(name)
        rows.append([f"`{cls.usage}`", _cell(CODECS.help(name)), f"`{cls.__module__}`"])
    return _table(["spec", "what a set stores", "module"], rows)


def suite_table() -> str:
    """The registered benchmark suites: what each measures, on what, judged how."""
    from ddkit.bench import SUITES

    rows = []
    for name in SUITES.names():
        suite = SUITES.get(name)
        grid = ", ".join(map(str, suite.ipcs))
        if suite.keeps:
            grid = "kept " + ", ".join(f"{k} %" for k in suite.keeps)
        rows.append(
            [
                f"`{name}`",
                _cell(SUITES.help(name).replace("%%", "%")),
                _cell(", ".join(suite.datasets)),
                _cell(grid),
                f"`{suite.protocol}`",
            ]
        )
    return _table(["suite", "what it measures", "datasets", "IPC or kept share", "protocol"], rows)


def format_example(page: str) -> str:
    """A two-image set saved by this ddkit: its meta.json and the tensors of its file. Every
    field of that meta.json must be described on the ``page`` (written ```field``` there):
    a field added to the format fails the build until the page says what it is."""
    import json
    import tempfile

    import torch
    from safetensors import safe_open

    from ddkit.data.spec import DatasetSpec
    from ddkit.data.synthetic import META_FILE, TENSOR_FILE, SyntheticSet

    spec = DatasetSpec("example", 2, 1, (4, 4), (0.5,), (0.25,), ("zero", "one"))
    syn = SyntheticSet(
        torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), spec, meta={"method": "example"}
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = syn.save(Path(tmp) / "example")
        meta = json.loads((folder / META_FILE).read_text())
        with safe_open(str(folder / TENSOR_FILE), "pt") as f:
            shapes = {
                k: (list(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()
            }
    missing = sorted(k for k in meta if f"`{k}`" not in page)
    if missing:
        raise ValueError(f"meta.json fields not described in the file-format page: {missing}")
    tensors = "\n".join(f"{k}: shape {s}, {d}" for k, (s, d) in sorted(shapes.items()))
    return "\n".join(
        [
            "`SyntheticSet(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), spec, "
            'meta={"method": "example"}).save("example")` writes this `meta.json`:',
            "",
            "```json",
            json.dumps(meta, indent=2, sort_keys=True),
            "```",
            "",
            f"and these tensors in `{TENSOR_FILE}`:",
            "",
            "```text",
            tensors,
            "```",
        ]
    )


def api_blocks(package: str) -> str:
    """One mkdocstrings block per public module of ``package``, found by walking its folder
    (``cli`` modules are documented by the command-line reference)."""
    import pkgutil

    folder = ROOT / "src" / Path(*package.split("."))
    names = sorted(
        info.name
        for info in pkgutil.iter_modules([str(folder)])
        if not info.name.startswith("_") and info.name != "cli"
    )
    if not names:
        raise ValueError(f"no public module in {package}")
    return "\n\n".join(f"::: {package}.{name}" for name in names)


#: marker name -> function of (the marker's argument, the page's Markdown) -> the generated part
GENERATORS: dict[str, Callable[[str | None, str], str]] = {
    "api": lambda package, _page: api_blocks(package),
    "cli": lambda _arg, _page: cli_reference(),
    "protocols": lambda _arg, _page: protocol_table(),
    "methods": lambda family, _page: method_table(family),
    "codecs": lambda _arg, _page: codec_table(),
    "suites": lambda _arg, _page: suite_table(),
    "format-example": lambda _arg, page: format_example(page),
}
NEEDS_ARGUMENT = {"api", "methods"}


# ------------------------------------------------------------------ docstrings
ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<tilde>~?)\.?(?P<target>[^`]+)`")


def _resolve(target: str, obj: griffe.Object) -> str | None:
    """The canonical path of ``target`` as written in ``obj``'s docstring: a full path, or a
    name seen from ``obj``, its class or its module; re-exported names are followed to the
    module that defines them, where mkdocstrings documents them."""
    path = target if target.startswith("ddkit.") else None
    first, _, rest = target.partition(".")
    scope: Any = obj if (obj.is_class or obj.is_module) else obj.parent
    while path is None and scope is not None:
        member = scope.members.get(first)
        if member is not None:
            path = member.target_path if member.is_alias else member.path
            path = f"{path}.{rest}" if rest else path
        scope = scope.parent
    if path is None or not path.startswith("ddkit."):
        return path
    try:
        return obj.modules_collection[path].canonical_path
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return path


def _roles(text: str, obj: griffe.Object) -> str:
    def ref(match: re.Match[str]) -> str:
        target = match["target"].strip()
        title = target.rsplit(".", 1)[-1] if match["tilde"] else target
        code = f"<code>{html.escape(title)}</code>"
        path = _resolve(target, obj)
        if path is None or not path.startswith("ddkit"):
            return code
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'

    return ROLE.sub(ref, text)


def _fence_doctests(text: str) -> str:
    """Doctest lines (``>>>``, ``...`` and their output) as fenced ``pycon`` blocks, and the
    reStructuredText ``::`` that opens a literal block as a plain colon."""
    out: list[str] = []
    indent: str | None = None
    for line in text.splitlines():
        stripped = line.lstrip()
        if indent is None and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            if out and out[-1].strip():
                out.append("")
            out.append(f"{indent}```pycon")
        elif indent is not None and not stripped:
            out.append(f"{indent}```")
            indent = None
        if indent is None and line.endswith("::") and not line.endswith(" ::"):
            line = line[:-1]
        out.append(line)
    if indent is not None:
        out.append(f"{indent}```")
    return "\n".join(out)


class RstRoles(griffe.Extension):
    """Rewrite ddkit's docstrings for Markdown once the package is loaded: reStructuredText
    roles become cross-references (optional ones: a target that is not documented stays
    code, without a warning), doctests become code blocks."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        stack: list[Any] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = _fence_doctests(_roles(obj.docstring.value, obj))
            if obj.is_module or obj.is_class:
                stack += [m for m in obj.members.values() if not m.is_alias]
