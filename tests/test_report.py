"""`ddkit report`: one self-contained HTML page per run folder."""

from __future__ import annotations

import re

from ddkit.cli import main


def test_report_embeds_images_evaluations_and_settings(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--quiet"]
    assert main([*args, "--iterations", "4", "--set", "batch_real=8", "--out", str(out)]) == 0
    assert main(["evaluate", str(out), "--protocol", "smoke", "--runs", "2", "--quiet"]) == 0
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "dm on digits, IPC 1" in page and "smoke" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2  # grid, learning curve
    assert "http://" not in page and "https://" not in page  # viewable offline
    assert re.search(r"<th>option batch_real</th><td>8</td>", page)
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
