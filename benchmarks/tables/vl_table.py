"""Image-text retrieval (issue 71): recall@1/5/10 both ways of every set at each size
(``bench_vl_recall.py``'s ``render``, over its two results files); random pairs beside the full
data on the scenes and vl-mtt's published form there (issue 86)."""

from __future__ import annotations

import json
from collections.abc import Callable

from _campaigns import RESULTS, campaign, results

from ddkit.methods.vision_language.mtt import VLMTTConfig


def vl_table() -> str:
    vl = campaign("bench_vl_recall")
    runs = vl.joined_results(results("vl_recall.json", "vl_recall_500_learned.json"), vl.SETTINGS)
    return vl.render([c for r in runs for c in r["cells"]])


def scenes_table() -> str:
    """``scenes-mnist-fashion``: the sizes measured so far."""
    names = ("vl_scenes_random.json", "vl_scenes_random_500.json")
    cells = [
        cell
        for name in names
        if (RESULTS / name).exists()
        for cell in json.loads((RESULTS / name).read_text())["cells"]
    ]
    return campaign("bench_vl_recall").render(cells)


def published_table() -> str:
    """``scenes-mnist5k``, pretrained frozen towers: vl-mtt in its published form (and with
    LoRS's learned similarity) at 100 and 500 pairs, 300 iterations."""
    vl = campaign("bench_vl_recall")
    names = ("vl_scenes5k_100_it300.json", "vl_scenes5k_500_it300.json")
    runs = vl.joined_results(results(*names), vl.SETTINGS)
    return vl.render([c for r in runs for c in r["cells"]])


def iterations_table() -> str:
    """The published form at 100 pairs with 1,000 iterations (its own random and full rows)."""
    vl = campaign("bench_vl_recall")
    run = json.loads((RESULTS / "vl_scenes5k_100_it1000.json").read_text())
    return vl.render(run["cells"])


#: vl-mtt's rates chosen on a validation split of scenes-mnist5k (``--val-fraction 0.2``, 100
#: pairs, 300 iterations, 2 seeds): the files, each one setting
RATES = ("tune_vl_scenes5k_100_v0.json", "tune_vl_scenes5k_100_v1.json",
         "tune_vl_scenes5k_100_v2.json")  # fmt: skip


def _r1(row: dict) -> str:
    """A report row's R@1 both ways as table cells: ``mean ± std`` in %."""
    return " | ".join(
        f"{100 * row[m]['mean']:.1f} ± {100 * row[m]['std']:.1f}" for m in ("i2t_r1", "t2i_r1")
    )


def _per_setting(
    names: tuple[str, ...],
    header: str,
    setting: Callable[[dict], str],
    detail: Callable[[dict], str],
) -> str:
    """A table of one row per report row of each results file in ``names``: the run's
    ``setting`` and the cell's ``detail`` beside the cell's own set, dashes beside the others
    (random pairs, the full data); R@1 both ways."""
    out = [header, "|---|---|---|---|---|"]
    for name in names:
        run = json.loads((RESULTS / name).read_text())
        for cell in run["cells"]:
            for r in cell["report"]["results"]:
                own = r["model"] == cell["cell"]
                what, more = (setting(run), detail(cell)) if own else ("–", "–")
                out.append(f"| {what} | {r['model']} | {_r1(r)} | {more} |")
    return "\n".join(out)


def _rates(run: dict) -> str:
    """A run's image and output-space text rates (a default named so)."""
    given = run["vl_mtt_set"]
    return ", ".join(
        str(given[k]) if k in given else f"{getattr(VLMTTConfig(), k):g} (default)"
        for k in ("lr_img", "lr_feat")
    )


def rates_table() -> str:
    """R@1 both ways on the validation split of each rate setting, random pairs beside."""
    header = "| rates (images, output-space text) | pairs of | i2t R@1 | t2i R@1 | distil s |"
    return _per_setting(RATES, header, _rates, lambda cell: f"{cell['distill_seconds']:.0f}")


#: the published form's ingredients on the validation split of scenes-mnist5k (100 pairs, 300
#: iterations, 2 seeds): the experts' optimizer, the student's, and the evaluation's recipe
INGREDIENTS = ("tune_vl_scenes5k_100_v0.json", "tune_vl_scenes5k_100_eval_learned.json",
               "tune_vl_scenes5k_100_eval_plain.json", "tune_vl_scenes5k_100_papers_experts.json",
               "tune_vl_scenes5k_100_papers_experts_eval_learned.json",
               "tune_vl_scenes5k_100_papers_student.json",
               "tune_vl_scenes5k_100_papers_student_eval_learned.json",
               "tune_vl_scenes5k_100_std_lr002.json",
               "tune_vl_scenes5k_100_std_lr002_eval_plain.json",
               "tune_vl_scenes5k_100_std_lr002_rates10.json",
               "tune_vl_scenes5k_100_std_lr002_rates10_eval_plain.json")  # fmt: skip
#: the evaluation recipes as the table names them (``--eval-optimizer``; None: ddkit's)
EVALUATIONS = {None: "Adam 1e-3", "learned": "learned rates, momentum 0.9",
               "learned-plain": "learned rates, plain SGD"}  # fmt: skip


#: the experts' rate of the files here that do not set one: they ran before the default came
#: to depend on the towers, at 0.5
FILES_EXPERT_LR = 0.5


def _experts(given: dict) -> str:
    """The experts' optimizer of a run's ``--set`` options."""
    d = VLMTTConfig()
    lr = given.get("expert_lr") or FILES_EXPERT_LR
    momentum = given.get("expert_momentum", d.expert_momentum)
    decay = given.get("expert_weight_decay", d.expert_weight_decay)
    return f"SGD {lr:g}" + (f", momentum {momentum:g}, decay {decay:g}" if momentum else "")


def _outputs(standardized: bool | None) -> str:
    """The towers' outputs of a run (``None``: a file from before the option, raw)."""
    return "standardized" if standardized else "raw"


def _given(run: dict, *keys: str) -> list[str]:
    """``key value`` of each of ``keys`` a run set for vl-mtt (``--set``)."""
    given = run["vl_mtt_set"]
    return [f"{k} {given[k]:g}" for k in keys if k in given]


def _student(run: dict) -> str:
    """The student's settings of a run that differ from vl-mtt's defaults."""
    rates, parts = _given(run, "lr_img", "lr_feat"), _given(run, "lr_lr", "syn_steps")
    steps = [f"batch {run['batch_syn']}", *parts] if parts else []
    return ", ".join(steps + rates) or "defaults"


def ingredients_table() -> str:
    """R@1 both ways on the validation split of vl-mtt published, random pairs and the full
    data, per experts' optimizer, student and evaluation recipe."""
    out = ["| towers' outputs | experts | student | evaluation | pairs of | i2t R@1 | t2i R@1 |",
           "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in INGREDIENTS:
        if not (RESULTS / name).exists():
            continue
        run = json.loads((RESULTS / name).read_text())
        head = (f"{_outputs(run.get('standardize_towers'))} | {_experts(run['vl_mtt_set'])} | "
                f"{_student(run)} | {EVALUATIONS[run.get('eval_optimizer')]}")  # fmt: skip
        for cell in run["cells"]:
            for r in cell["report"]["results"]:
                out.append(f"| {head} | {r['model']} | {_r1(r)} |")
    return "\n".join(out)


#: each experts' optimizer's trajectories, their recall at every epoch (``vl_expert_recall.py``)
EXPERT_RECALL = (
    "vl_expert_recall_plain.json",
    "vl_expert_recall_raw_lr5.json",
    "vl_expert_recall_raw_lr50.json",
    "vl_expert_recall_papers.json",
    "vl_expert_recall_std_plain.json",
    "vl_expert_recall_std_lr0.02.json",
)


def expert_recall_table() -> str:
    """Image-to-text and text-to-image R@1 on the validation split of the experts at every
    epoch, the mean over the experts (epoch 0: their initialisation)."""
    rows = []
    for name in EXPERT_RECALL:
        if not (RESULTS / name).exists():
            continue
        run = json.loads((RESULTS / name).read_text())
        experts = run["experts"]
        epochs = len(experts[0])
        cells = [
            "{:.1f} / {:.1f}".format(*(
                100 * sum(e[k][m] for e in experts) / len(experts) for m in ("i2t_r1", "t2i_r1")
            ))
            for k in range(epochs)
        ]  # fmt: skip
        what = f"{_outputs(run['options'].get('standardize_towers'))} | {_experts(run['options'])}"
        rows.append((what, cells))
    width = max(len(c) for _, c in rows)
    out = ["| towers' outputs | experts | " + " | ".join(f"epoch {k}" for k in range(width)) + " |",
           "|---|---|" + "---|" * width]  # fmt: skip
    out += [f"| {what} | " + " | ".join(cells) + " |" for what, cells in rows]
    return "\n".join(out)


#: the student's step sizes and iterations on a validation split of scenes-mnist-fashion
#: (``--val-fraction 0.2``, 100 pairs, the standardised form with the rates of scenes-mnist5k):
#: the files, each one setting
FASHION_STUDENT = ("tune_vl_fashion_100_base.json", "tune_vl_fashion_100_student_lr0.5.json",
                   "tune_vl_fashion_100_lr_lr0.01.json", "tune_vl_fashion_100_lr_lr0.003.json",
                   "tune_vl_fashion_100_lr_lr0.001.json",
                   "tune_vl_fashion_100_it1000.json")  # fmt: skip


def fashion_student_table() -> str:
    """R@1 both ways on the validation split of scenes-mnist-fashion per student setting, the
    learned step sizes it ended with, random pairs beside."""
    header = "| student | pairs of | i2t R@1 | t2i R@1 | learned step sizes (image, text) |"
    return _per_setting(FASHION_STUDENT, header, _student_and_iterations, _learned_rates)


def _student_and_iterations(run: dict) -> str:
    """A run's student step-size settings (``student_lr``, ``lr_lr``; else the defaults) and
    its iterations."""
    parts = _given(run, "student_lr", "lr_lr")
    return f"{', '.join(parts) or 'defaults'}; {run['iterations']} iterations"


def _learned_rates(cell: dict) -> str:
    """The step sizes a vl-mtt cell's student ended with: image, text."""
    return ", ".join(f"{cell['student_lr'][k]:.3g}" for k in ("image", "text"))


#: the settings chosen on scenes-mnist-fashion's validation split (FASHION_STUDENT), each on its
#: test split (100 pairs, and 500 at 1,000 iterations; 3 seeds): the files
FASHION_TEST = ("vl_scenes_fashion_100_it1000.json", "vl_scenes_fashion_500_it1000.json",
                "vl_scenes_fashion_100_lr_lr0.003.json")  # fmt: skip


def fashion_test_table() -> str:
    """The test split of scenes-mnist-fashion under each setting of :data:`FASHION_TEST`, its
    random pairs beside: one table per file, headed by its setting."""
    vl = campaign("bench_vl_recall")
    out = []
    for name in FASHION_TEST:
        run = json.loads((RESULTS / name).read_text())
        out.append(f"**{_student_and_iterations(run)}**\n\n" + vl.render(run["cells"]))
    return "\n\n".join(out)


def standardized_table() -> str:
    """The test split with the towers standardised and the experts at SGD 0.02, vl-mtt's rates
    x10 (chosen on the validation split): scenes-mnist5k at 100 and 500 pairs, and
    scenes-mnist-fashion at 100 pairs where measured."""
    vl = campaign("bench_vl_recall")
    out = []
    for names in (("vl_scenes5k_100_std_rates10.json", "vl_scenes5k_100_std_rates10_ablations.json",
                   "vl_scenes5k_500_std_rates10.json"),
                  ("vl_scenes_fashion_100_std_rates10.json",)):  # fmt: skip
        present = [n for n in names if (RESULTS / n).exists()]
        if present:
            runs = vl.joined_results(results(*present), vl.SETTINGS)
            out.append(
                f"**{runs[0]['dataset']}**\n\n" + vl.render([c for r in runs for c in r["cells"]])
            )
    return "\n\n".join(out)


TABLES = {
    "vl-table:standardized": standardized_table,
    "vl-table:ingredients": ingredients_table,
    "vl-table:experts": expert_recall_table,
    "vl-table": vl_table,
    "vl-table:scenes": scenes_table,
    "vl-table:published": published_table,
    "vl-table:rates": rates_table,
    "vl-table:iterations": iterations_table,
    "vl-table:fashion-student": fashion_student_table,
    "vl-table:fashion-test": fashion_test_table,
}
