"""The documentation site builds with ``mkdocs build --strict`` (any warning fails), its
command-line reference lists exactly the parser's sub-commands, and the family and application
pages document what their packages register."""

from __future__ import annotations

import argparse
import html
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (pip install -e '.[docs]'); the documentation is not built",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return out


def page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text()


def headings(text: str) -> set[str]:
    """The text of every h2 / h3 heading of a page (without the permalink sign)."""
    found = re.findall(r"<h[23] id=\"[^\"]*\">(.*?)<a class=\"headerlink\"", text, re.S)
    return {html.unescape(re.sub(r"<[^>]+>", "", h)).strip() for h in found}


def parser_commands() -> set[str]:
    """``ddkit NAME`` for every sub-command, ``ddkit NAME MEMBER`` for members of groups."""
    from ddkit.cli import build_parser

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        out: dict[str, argparse.ArgumentParser] = {}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                out.update(action.choices)
        return out

    names = set()
    for name, sub in subcommands(build_parser()).items():
        names.add(f"ddkit {name}")
        names |= {f"ddkit {name} {member}" for member in subcommands(sub)}
    return names


def test_cli_page_lists_every_subcommand(site: Path) -> None:
    text = page(site, "cli")
    commands = parser_commands()
    assert {"ddkit distill", "ddkit app continual", "ddkit audit privacy"} <= commands
    assert headings(text) == commands  # every sub-command, and nothing stale
    assert "--checkpoint-every" in text and "usage: ddkit distill" in text


def test_family_pages_document_their_methods(site: Path) -> None:
    from ddkit.methods import METHODS, load_all

    load_all()
    src = ROOT / "src" / "ddkit" / "methods"
    for name in METHODS.names():
        cls = METHODS.get(name)
        if not Path(inspect.getfile(cls)).resolve().is_relative_to(src):
            continue  # registered by a test, not by ddkit
        family = cls.__module__.split(".")[2]
        text = page(site, f"methods/{family}")
        assert f'id="{cls.__module__}.{cls.__qualname__}"' in text, (name, family)
        assert f"<code>{name}</code>" in text, f"{name} missing from the table of {family}"
    coreset = page(site, "methods/coreset")
    assert 'id="ddkit.methods.coreset.ccs.ccs_select"' in coreset
    assert "coverage-centric" in coreset.lower()  # the function's docstring is rendered


def test_generated_parts(site: Path) -> None:
    from ddkit.eval.protocol import PROTOCOLS

    protocols = page(site, "protocols")
    assert all(f"<code>{name}</code>" in protocols for name in PROTOCOLS.names())
    fmt = page(site, "file-format")
    assert "images: shape [2, 1, 4, 4]" in fmt  # the example set saved while building
    for name in ("protocols", "file-format", "cli", "methods/matching", "benchmarks"):
        assert "ddkit:" not in page(site, name), f"a marker was left in {name}"
    assert "BENCHMARKS.md" in page(site, "benchmarks")


def test_every_family_and_application_has_a_page() -> None:
    """A new method family or application gets its page (and a place in mkdocs.yml's nav)."""
    nav = (ROOT / "mkdocs.yml").read_text()
    methods = ROOT / "src" / "ddkit" / "methods"
    families = [i.name for i in pkgutil.iter_modules([str(methods)]) if i.ispkg]
    assert families
    for family in families:
        assert (ROOT / "docs" / "methods" / f"{family}.md").is_file(), family
        assert f"methods/{family}.md" in nav, family
    from ddkit.apps.base import APPS, load_all

    load_all()
    for name in APPS.names():
        assert (ROOT / "docs" / "apps" / f"{name}.md").is_file(), name
        assert f"apps/{name}.md" in nav, name


def test_file_format_page_must_describe_every_meta_field() -> None:
    """The file-format page's example is a set saved while building; a meta.json field that the
    page does not describe fails the build."""
    spec = importlib.util.spec_from_file_location("ddkit_docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    text = (ROOT / "docs" / "file-format.md").read_text()
    assert '"format": "ddkit.synthetic"' in hooks.format_example(text)
    with pytest.raises(ValueError, match=r"not described.*'sha256'"):
        hooks.format_example(text.replace("`sha256`", "sha256"))
