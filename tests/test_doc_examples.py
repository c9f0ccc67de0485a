"""Every ```python block of README.md and docs/**/*.md runs as written (issue 70).

* **One test per block**, id ``PAGE:LLINE`` (the line of its opening fence).
* **A page runs as one session.** A page's blocks build on each other (the README's DataLoader
  loop trains on the ``syn`` its first block distilled; the API page saves the set its first
  block chose), so each page runs once, its blocks in order in one namespace, as a reader
  pasting them into one Python session would. A block passes when its own code ran; a block
  after a failing one fails as "not reached". A traceback points at the page's own lines.
* **Isolation.** A page runs in a subprocess with a time limit (a block cannot change this
  process: its RNG, its default dtype, its threads), in a fresh temporary working folder (what
  a block writes lands there, and ddkit's data root and caches are moved there too), in exact
  mode as the rest of the suite, with the network switched off (a block that would download
  fails).
* **Not run, visibly.** A block that cannot run here (a GPU, ``torchrun``, the network, hours of
  compute) carries ``<!-- not run: REASON -->`` on the line right above its fence; it is still
  compiled (a syntax error fails), then skipped with that reason. A marker without a reason,
  or one that no ```python fence follows, fails. An example that would take minutes is made
  small instead (a few iterations, one network, on the built-in ``digits``), never hidden.

The pages together take about a minute on two shared cores; ``PAGE_SECONDS`` bounds each.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the README and every page of the documentation site (the benchmark pages hold tables and
#: commands today; Python they gain runs too)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: the most one page (all its blocks) may take, in seconds
PAGE_SECONDS = 180
FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run\b(?P<reason>.*?)-->\s*$")
PYTHON = ("python", "py", "python3")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # the opening fence's line, 1-based
    code: str
    not_run: str | None  # the marker's reason, "" for a marker without one, None: no marker

    @property
    def id(self) -> str:
        return f"{self.page}:L{self.line}"


def _language(fence_line: str) -> str:
    opened = FENCE.match(fence_line)
    words = opened["info"].split() if opened else []
    return words[0].lower() if words else ""


def python_blocks(text: str, page: str) -> list[Block]:
    """The ```python blocks of a page's ``text``, in order, each with the marker above it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened is None:
            i += 1
            continue
        fence = opened["fence"]
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), len(lines))
        if _language(lines[i]) in PYTHON:
            marker = NOT_RUN.match(lines[i - 1]) if i else None
            reason = marker["reason"].strip().removeprefix(":").strip() if marker else None
            code = textwrap.dedent("\n".join(lines[i + 1 : end]))
            blocks.append(Block(page, i + 1, code, reason))
        i = end + 1
    return blocks


def stray_markers(text: str, page: str) -> list[str]:
    """``PAGE:LLINE`` of each not-run marker that no ```python fence follows."""
    lines = text.splitlines()
    return [
        f"{page}:L{i + 1}"
        for i, line in enumerate(lines)
        if NOT_RUN.match(line) and (i + 1 == len(lines) or _language(lines[i + 1]) not in PYTHON)
    ]


def _page_name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


BLOCKS = [b for path in PAGES for b in python_blocks(path.read_text("utf-8"), _page_name(path))]

#: runs in the subprocess: each block compiled under its page's name at its own lines, executed
#: in one namespace; each outcome is written as soon as it is known, so a page that runs out of
#: time still tells which blocks passed
DRIVER = r"""
import json, socket, sys, time, traceback

def no_network(*args, **kwargs):
    raise OSError("the documentation examples run without the network")

socket.socket.connect = socket.socket.connect_ex = no_network
socket.create_connection = no_network

blocks, out = json.load(open(sys.argv[1])), sys.argv[2]
results, namespace = {}, {"__name__": "__main__"}
for block in blocks:
    print(f"----- {block['id']}", flush=True)
    start = time.perf_counter()
    try:
        exec(compile("\n" * block["line"] + block["code"], block["page"], "exec"), namespace)
    except BaseException:
        results[block["id"]] = traceback.format_exc()
    else:
        results[block["id"]] = None
    print(f"----- {block['id']}: {time.perf_counter() - start:.1f} s", flush=True)
    with open(out, "w") as f:
        json.dump(results, f)
    if results[block["id"]] is not None:
        break
"""


def run_page(page: str, work: Path) -> tuple[dict[str, str | None], str]:
    """Run a page's runnable blocks in ``work``: ``(traceback or None per block id, output)``."""
    blocks = [b for b in BLOCKS if b.page == page and b.not_run is None]
    (work / "blocks.json").write_text(
        json.dumps([{"id": b.id, "page": b.page, "line": b.line, "code": b.code} for b in blocks])
    )
    (work / "driver.py").write_text(DRIVER)
    cwd, results = work / "cwd", work / "results.json"
    cwd.mkdir()
    env = {
        **os.environ,
        "DDKIT_EXACT": "1",
        "OMP_NUM_THREADS": "1",
        "DDKIT_DATA": str(work / "data"),
        "DDKIT_DATA_CACHE": str(work / "data-cache"),
        "DDKIT_FOLDER_CACHE": str(work / "folder-cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    command = [sys.executable, str(work / "driver.py"), str(work / "blocks.json"), str(results)]
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=PAGE_SECONDS
        )
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as timeout:
        shown = timeout.stdout.decode() if isinstance(timeout.stdout, bytes) else timeout.stdout
        output = f"{shown or ''}\n{page} ran past {PAGE_SECONDS} s"
    return (json.loads(results.read_text()) if results.exists() else {}), output


@pytest.fixture(scope="module")
def page_results(tmp_path_factory: pytest.TempPathFactory):
    """``page -> run_page(page)``, each page run once for all its blocks' tests."""
    cache: dict[str, tuple[dict[str, str | None], str]] = {}

    def results(page: str) -> tuple[dict[str, str | None], str]:
        if page not in cache:
            cache[page] = run_page(page, tmp_path_factory.mktemp(re.sub(r"\W", "-", page)))
        return cache[page]

    return results


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_example_runs_as_written(block: Block, page_results) -> None:
    if block.not_run is not None:
        assert block.not_run, f"{block.id}: a not-run marker needs a reason: <!-- not run: WHY -->"
        compile(block.code, block.id, "exec")
        pytest.skip(f"not run: {block.not_run}")
    results, output = page_results(block.page)
    if block.id not in results:
        pytest.fail(
            f"{block.id} was not reached (an earlier block failed, or the page ran out of "
            f"time):\n{output[-4000:]}",
            pytrace=False,
        )
    if results[block.id] is not None:
        pytest.fail(
            f"{block.id} fails as written:\n{results[block.id]}\n--- output ---\n{output[-4000:]}",
            pytrace=False,
        )


@pytest.mark.parametrize("path", PAGES, ids=_page_name)
def test_not_run_markers_sit_above_a_python_block(path: Path) -> None:
    assert stray_markers(path.read_text("utf-8"), _page_name(path)) == [], (
        "a <!-- not run: REASON --> marker goes on the line right above a ```python fence"
    )


def test_the_pages_examples_are_found() -> None:
    """A broken pattern would pass every page by finding nothing."""
    assert {"README.md", "docs/getting-started.md", "docs/api.md"} <= {b.page for b in BLOCKS}


def test_blocks_and_markers_are_read_as_a_reader_sees_them() -> None:
    page = textwrap.dedent(
        """\
        ```python
        a = 1
        ```
        <!-- not run: needs a GPU -->
        ```python
        b = a.cuda()
        ```
        ````markdown
        ```python
        inside = "an example of markdown, not a block"
        ```
        ````
        <!-- not run -->
        ```py
        c = 3
        ```
        <!-- not run: nothing below -->

        ```bash
        ddkit demo
        ```
        """
    )
    blocks = python_blocks(page, "p.md")
    assert [(b.id, b.code, b.not_run) for b in blocks] == [
        ("p.md:L1", "a = 1", None),
        ("p.md:L5", "b = a.cuda()", "needs a GPU"),
        ("p.md:L14", "c = 3", ""),
    ]
    assert stray_markers(page, "p.md") == ["p.md:L17"]
