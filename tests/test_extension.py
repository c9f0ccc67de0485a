"""Extending ddkit touches only the new files: a method family with its sub-command, a codec,
an application and a modality (with a dataset of it) defined under tests/plugins/ are found by
the registries, the command line and the conformance suite, with no edit anywhere in ddkit (run in a fresh interpreter, so the test
registrations do not leak into the other tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).parent / "plugins"

SCRIPT = """
import sys
import ddkit.apps, ddkit.data.codecs, ddkit.data.modalities, ddkit.methods
plugins, out = sys.argv[1], sys.argv[2]
ddkit.methods.__path__.append(plugins + "/methods")
ddkit.data.codecs.__path__.append(plugins + "/codecs")
ddkit.apps.__path__.append(plugins + "/apps")
ddkit.data.modalities.__path__.append(plugins + "/modalities")
ddkit.data.codecs.load_all()
ddkit.data.modalities.load_all()

from ddkit.cli import main
from ddkit.methods import create_method
from ddkit.testing import check_app, check_codec, check_method, check_modality, tiny_digits

check_method("toy")
check_codec("halfres")
check_app("class-count")
check_method("dm", ipc=2, overrides={"codec": "halfres"})
assert main(["toy-info", "--ipc", "3"]) == 0
assert main(["app", "class-count", "--out", out]) == 0
syn = create_method("toy").fit(tiny_digits().train, 2, iterations=3, seed=0)
print("toy set", len(syn))
check_modality("spectrum")
spectra = out + "-spectra"
assert main(["distill", "--dataset", "toy-spectra", "--method", "dm", "--ipc", "2",
             "--iterations", "2", "--out", spectra, "--quiet"]) == 0
assert main(["evaluate", spectra, "--learners", "knn", "--runs", "1"]) == 0
"""


def test_a_family_a_codec_an_application_and_a_modality_need_no_edit_elsewhere(tmp_path):
    out = tmp_path / "counts"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(PLUGINS), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "toy family: ipc 3, seed 0" in done.stdout
    assert "toy set 20" in done.stdout
    assert "wrote 6 rows (2 per class;" in done.stdout  # a spectrum set, distilled by dm
    assert "dm on toy-spectra, 6 rows, learners trained on them" in done.stdout
    counts = json.loads((out / "counts.json").read_text())
    assert len(counts) == 10 and sum(counts.values()) > 0
