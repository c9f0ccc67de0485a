"""The evaluation recipe a set carries: the protocol it was made for, and the network it was
distilled with.

A distilled set is only as good as the recipe that judges it: a KIP set with learned regression
labels is meant for an MSE protocol, an SRe2L set for a teacher's soft labels, a set distilled
through a ConvNet-2 for a ConvNet-2 (the field's most common "it does not work with ResNet"
report is a set judged by a network it was never distilled for). Every :class:`Distiller` run
records its recipe in the set's provenance (``meta['recipe']``, covered by meta.json's
checksum); ``ddkit evaluate DIR`` uses it unless told otherwise and says so. A set saved without
one (earlier versions, coresets, sets built by hand) gets the protocol its labels call for
(:func:`intended_protocol`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ddkit.data.synthetic import SETTINGS_KEY, UNCHECKED_KEY, SyntheticSet
from ddkit.errors import ConfigError, FileFormatError
from ddkit.eval.protocol import PROTOCOLS, EvalProtocol

#: the key of a set's provenance that holds its recipe
RECIPE_KEY = "recipe"


@dataclass(frozen=True)
class SetRecipe:
    """How a set is meant to be judged.

    ``protocol``: the evaluation protocol (its ``models`` are the network the set was distilled
    with where that is a model ddkit can build); ``distilled_with``: that network's name
    (``None`` for sets no network made, e.g. coresets or kernel methods); ``source``:
    ``"recorded"`` (written by the method that made the set), ``"labels"`` (chosen now from
    the set's labels and rows, for a set saved without a recipe) or ``"unchecked"`` (chosen so
    too: the set records a recipe, but its meta.json has no settings checksum to vouch for it).
    """

    protocol: EvalProtocol
    distilled_with: str | None
    source: str

    def describe(self) -> str:
        """One line for the user: which protocol, with what, and why."""
        p = self.protocol
        why = {
            "recorded": "recorded in the set by the method that made it",
            "unchecked": "chosen from the set's labels: the recipe it records is not used, as "
            f"its meta.json has no {SETTINGS_KEY} (edited after saving, or saved by an older "
            "ddkit)",
        }.get(self.source, "chosen from the set's labels: it records no recipe")
        return (
            f"protocol {p.name} ({p.epochs} epochs, {', '.join(p.models)}), {why}; "
            "--protocol NAME to choose another"
        )


def intended_protocol(syn: SyntheticSet) -> str:
    """The registered protocol a set's rows and labels call for: ``mse`` for learned regression
    targets (KIP, FRePo), the modality's own where it names one
    (:attr:`~ddkit.data.modalities.base.Modality.protocol`: ``tabular`` / ``series`` /
    ``graph`` for rows other than images),
    ``teacher-kd`` for a set made with a teacher (SRe2L, RDED and their kin record
    ``meta['teacher_dir']``), ``soft`` for stored soft labels, and ``dsa`` for hard labels."""
    if syn.regression:
        return "mse"
    if syn.spec.kind.protocol is not None:
        return syn.spec.kind.protocol
    if syn.meta.get("teacher_dir"):
        return "teacher-kd"
    return "soft" if syn.soft else "dsa"


def make_recipe(
    syn: SyntheticSet, distilled_with: str | None, protocol: str | None = None
) -> dict[str, Any]:
    """The JSON recipe of ``syn`` as its method records it in ``meta['recipe']``: the registered
    ``protocol`` its method names, with that protocol's own networks (FRePo's evaluation), else
    the protocol :func:`intended_protocol` names, its networks replaced by ``distilled_with``
    when that is a model ddkit builds for the set's rows."""
    if protocol is not None:
        return {"protocol": _registered(protocol).to_dict(), "distilled_with": distilled_with}
    judged = _registered(intended_protocol(syn))
    if distilled_with is not None and _buildable(distilled_with, syn):
        judged = judged.with_(models=(distilled_with,))
    return {"protocol": judged.to_dict(), "distilled_with": distilled_with}


def _registered(name: str) -> EvalProtocol:
    """The registered protocol a record names (a method's ``recipe_protocol``, a modality's
    ``protocol``, the labels' choice): a registry lookup of a name the code holds, never a
    user's value, which the entry points resolve (:func:`~ddkit.eval.protocol.get_protocol`)."""
    return PROTOCOLS.get(name)


def set_recipe(syn: SyntheticSet) -> SetRecipe:
    """The recipe ``syn`` records, else the one its labels call for. A recorded recipe that is
    not a valid protocol (a hand-edited file whose checksum was recomputed) is refused in one
    line; one that no settings checksum covers (a loaded set marked :data:`UNCHECKED_KEY`:
    ``settings_sha256`` deleted after an edit) is not used."""
    recorded = syn.meta.get(RECIPE_KEY)
    if recorded is None or syn.meta.get(UNCHECKED_KEY):  # none, or one nothing vouches for
        source = "labels" if recorded is None else "unchecked"
        return SetRecipe(_registered(intended_protocol(syn)), None, source)
    try:
        if not isinstance(recorded, dict) or not isinstance(recorded.get("protocol"), dict):
            raise ConfigError("it is not an object with a 'protocol' object")
        protocol = EvalProtocol.from_dict(recorded["protocol"])
        distilled_with = recorded.get("distilled_with")
        if distilled_with is not None and not isinstance(distilled_with, str):
            raise ConfigError(f"distilled_with must be a model name, got {distilled_with!r}")
        _check_bounds(protocol, syn)
    except (ConfigError, TypeError, ValueError) as e:
        raise FileFormatError(
            f"the set's recorded recipe is damaged ({e}); pass --protocol NAME to evaluate it "
            "with a protocol of your choice"
        ) from None
    return SetRecipe(protocol, distilled_with, "recorded")


#: What a recorded recipe may ask for: far beyond any published protocol, far below what would
#: run for years or allocate terabytes (a file from someone else is read with these bounds).
RECORDED_LIMITS = {"epochs": 100_000, "runs": 1_000, "models": 32, "batch_size": 1_000_000}
#: The most parameters a recorded recipe's network may have (ViT-L has about 3e8).
RECORDED_MAX_PARAMETERS = 2_000_000_000


def _check_bounds(protocol: EvalProtocol, syn: SyntheticSet) -> None:
    """Refuse (:class:`ConfigError`) a recorded protocol past :data:`RECORDED_LIMITS`, or
    whose networks, built on the meta device (no memory), exceed
    :data:`RECORDED_MAX_PARAMETERS`."""
    values = {**vars(protocol), "models": len(protocol.models)}
    for field, limit in RECORDED_LIMITS.items():
        if values[field] > limit:
            raise ConfigError(f"{field} {values[field]:,} is past the limit of {limit:,}")
    from ddkit.models import create_model

    spec = syn.spec
    for model in protocol.models:
        with torch.device("meta"):
            net = create_model(model, num_classes=spec.num_classes, in_channels=spec.channels,
                               image_size=tuple(spec.image_size))  # fmt: skip
        count = sum(p.numel() for p in net.parameters())
        if count > RECORDED_MAX_PARAMETERS:
            raise ConfigError(f"network {model!r} has {count:,} parameters, past the limit")


def network_mismatch(recipe: SetRecipe, models: tuple[str, ...] | list[str]) -> str | None:
    """A one-line note when ``models`` are not the network the set was distilled with (``None``
    when they are, or when no network made the set)."""
    made = recipe.distilled_with
    others = [m for m in models if m != made]
    if made is None or not others:
        return None
    return (
        f"note: the set was distilled with {made}; evaluating with {', '.join(others)} measures "
        "transfer to another network, usually lower than on its own (--models "
        f"{made} for the set's own)"
    )


def _buildable(model: str, syn: SyntheticSet) -> bool:
    """Whether ``model`` is a registered model name for the set's rows (a method's network
    option may also name a kernel or a feature extractor that evaluation cannot train)."""
    from ddkit.models import MODELS
    from ddkit.models.registry import split_name

    return isinstance(model, str) and split_name(model)[0] in MODELS
