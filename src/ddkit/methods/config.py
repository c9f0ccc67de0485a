"""Method configs: one vocabulary, declarative rules, aliases for old names, presets as data.

Every method's hyper-parameters are a frozen dataclass derived from :class:`MethodConfig`.
Values are checked when the config is built -- by :func:`ddkit.methods.create_method`, before
any expert, teacher or image is computed -- in two declarative layers:

* the field's *type annotation* (``int``, ``float``, ``bool``, ``str``, ``None`` and
  ``Literal`` values, unions of these, tuples); an ``int`` is accepted for a ``float`` field;
* ``rules``: a class attribute mapping field names to :class:`Rule` objects
  (:func:`interval`, :func:`one_of`, ...), merged along the class hierarchy, in the spirit of
  scikit-learn's ``_parameter_constraints``. Checks between fields go in ``check()``.

The vocabulary (the same name for the same concept in every family):

==========================  ==================================================================
``iterations``              outer iterations of the method
``model``                   the network the method distils with
``init``                    initial synthetic images: ``real`` | ``noise`` (| method-specific)
``lr_img``, ``momentum_img``  optimiser of the synthetic images
``batch_real``              real images per class per step
``batch_syn``               synthetic images per student step (0: all)
``lr_net``, ``momentum_net``, ``weight_decay_net``, ``batch_net``, ``epochs_net``
                            a network trained inside the method (DC's inner loop, IDM's queue,
                            the coreset feature networks)
``augment``                 ``"auto"`` (the dataset's DSA strategy) | ``"none"`` | a strategy
``expert_*``, ``teacher_*``  settings of an artifact trained before distillation
``label_*``                 how labels are made or stored
==========================  ==================================================================

"Let ddkit choose" is spelled :data:`AUTO` (``"auto"``) everywhere; for sizes and chunks ``0``
means "no limit". Old option names keep working through ``aliases`` (with a
``FutureWarning``), and saved configs (checkpoints, run folders) are read through the same
table, so runs started before a rename still resume.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ddkit.distributed import check_device
from ddkit.errors import ConfigError, warn_at_caller

__all__ = [
    "AT_LEAST_ONE",
    "AUGMENT",
    "AUTO",
    "DEVICE",
    "MOMENTUM",
    "NON_NEGATIVE",
    "POSITIVE",
    "Alias",
    "MethodConfig",
    "check_device",
    "resolve_device",
    "Preset",
    "Rule",
    "interval",
    "none_to_auto",
    "one_of",
    "Precision",
    "parse_options",
    "presets_from",
    "zero_to_auto",
]

AUTO = "auto"
Auto = Literal["auto"]
#: The ``precision`` speed lever of methods (issue 14): ``fp32`` (the default, unchanged bits),
#: ``bf16`` autocast around the network's forward passes, or ``auto`` (bf16 where the CPU or
#: GPU computes it natively); resolved by :func:`ddkit.methods.common.method_precision`.
Precision = Literal["fp32", "bf16", "auto"]


def none_to_auto(value: Any, options: Mapping[str, Any]) -> Any:
    """An :class:`Alias` converter: ``None``, the old spelling of "let ddkit choose"."""
    return AUTO if value is None else value


def zero_to_auto(value: Any, options: Mapping[str, Any]) -> Any:
    """An :class:`Alias` converter: ``0``, the old spelling of "auto" for some counts."""
    return AUTO if value == 0 else value


# ------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """A declarative constraint on one config value: ``test(value)`` must hold; ``text`` says
    what is required (``"must be > 0"``). :data:`AUTO` and ``None`` pass every rule (the type
    annotation decides whether they are allowed)."""

    test: Callable[[Any], bool]
    text: str

    def check(self, name: str, value: Any) -> None:
        if value is None or value == AUTO:
            return
        if not self.test(value):
            raise ConfigError(f"{name} {self.text}, got {value!r}")


def interval(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Rule:
    """Values in an interval (bounds inclusive unless ``*_open``)."""
    lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
    hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
    if low is not None and high is None:
        text = f"must be {'>' if low_open else '>='} {low:g}"
    elif low is None and high is not None:
        text = f"must be {'<' if high_open else '<='} {high:g}"
    else:
        text = f"must be in {lo}, {hi}"

    def test(v: Any) -> bool:
        ok_lo = low is None or (v > low if low_open else v >= low)
        ok_hi = high is None or (v < high if high_open else v <= high)
        return ok_lo and ok_hi

    return Rule(test, text)


def one_of(*values: Any) -> Rule:
    """One of the listed values."""
    valid = ", ".join(sorted(str(v) for v in values))
    return Rule(lambda v: v in values, f"must be one of: {valid}")


def _valid_strategy(value: Any) -> bool:
    from ddkit.augment.dsa import FAMILIES, parse_strategy
    from ddkit.augment.series import SERIES_FAMILIES, parse_series_strategy
    from ddkit.errors import UnknownNameError

    parts = value.strip().lower().split("_")
    # a strategy naming some series operation and no DSA family is read as series operations
    series = any(p in (*SERIES_FAMILIES, "series") for p in parts) and not any(
        p in FAMILIES for p in parts
    )
    try:
        (parse_series_strategy if series else parse_strategy)(value)
    except UnknownNameError as e:  # names the bad operation and the valid ones
        raise ConfigError(f"augment: {e}; or use 'auto' / 'none'") from None
    return True


#: a ``device`` option: a torch device that exists on this machine, or ``"auto"`` (the device
#: of the training data: :func:`resolve_device`)
DEVICE = Rule(check_device, "must be 'auto' or an available torch device")


def resolve_device(setting: str, data: Any) -> Any:
    """The device a method computes on: ``setting``, or for ``"auto"`` the device of ``data``
    (the training images: a method runs where its data lives)."""
    import torch

    return data.device if setting == "auto" else torch.device(setting)


POSITIVE = interval(0, low_open=True)
NON_NEGATIVE = interval(0)
AT_LEAST_ONE = interval(1)
MOMENTUM = interval(0, 1, high_open=True)
#: an ``augment`` option: "auto", "none", a DSA strategy such as ``color_crop_cutout`` or series
#: operations (``series``, ``jitter_slice``: :mod:`ddkit.augment.series`)
AUGMENT = Rule(
    lambda v: isinstance(v, str) and (v == "none" or _valid_strategy(v)),
    "must be 'auto', 'none', DSA families joined by '_' "
    "(color, crop, cutout, flip, scale, rotate) or series operations (series, jitter, scaling, "
    "slice, warp)",
)


# ------------------------------------------------------------------------------- aliases
@dataclass(frozen=True)
class Alias:
    """An old option name (or an old spelling of a value): ``new`` is the field's name now;
    ``convert(value, options)`` maps an old value to today's (``options`` is the whole old
    mapping, for aliases that fold several old options into one). An alias keyed by a current
    field name upgrades old values of that field (e.g. ``None`` -> ``"auto"``)."""

    new: str
    convert: Callable[[Any, Mapping[str, Any]], Any] | None = None


# ------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    """Config values for a ``(dataset, ipc)`` cell (``"*"`` matches any) and where they come
    from: a paper table, or the results file of the measurement that chose them."""

    dataset: str
    ipc: int | str
    values: Mapping[str, Any]
    source: str

    @property
    def key(self) -> tuple[str, int | str]:
        return (self.dataset, self.ipc)


def also_for(presets: tuple[Preset, ...], source: str, dataset: str) -> tuple[Preset, ...]:
    """``presets`` plus a copy of each ``source`` preset for ``dataset`` (a superset of
    ``source``'s data, such as full MNIST for mnist5k), its provenance saying so."""
    copies = tuple(
        Preset(dataset, p.ipc, p.values, f"as on {source}, a subset of {dataset}: {p.source}")
        for p in presets
        if p.dataset == source
    )
    return presets + copies


def presets_from(
    table: Mapping[tuple[str, int | str], Mapping[str, Any]],
    source: Mapping[str, str],
) -> tuple[Preset, ...]:
    """Presets from a ``{(dataset, ipc): values}`` table; ``source[dataset]`` says where each
    dataset's values come from."""
    return tuple(Preset(d, ipc, dict(v), source[d]) for (d, ipc), v in table.items())


def parse_options(items: Iterable[str]) -> dict[str, Any]:
    """Options given as text, ``["key=value", ...]`` (the CLI's ``--set``): values are read as
    JSON where they parse (numbers, ``true``, ``null``, lists), else kept as strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"option {item!r} must look like key=value")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


# ------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MethodConfig:
    """Hyper-parameters shared by all methods; subclasses add their own fields, ``rules`` and
    ``aliases`` (both merged along the class hierarchy) and may override :meth:`check`."""

    iterations: int = 0  # outer iterations (0: the method needs none)

    rules: ClassVar[dict[str, Rule]] = {"iterations": NON_NEGATIVE}
    aliases: ClassVar[dict[str, Alias]] = {}

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _conform(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
        for name, rule in self.all_rules().items():
            rule.check(name, getattr(self, name))
        self.check()

    def check(self) -> None:
        """Checks between fields (raise :class:`ConfigError`); the default has none."""

    @classmethod
    def all_rules(cls) -> dict[str, Rule]:
        return _merged(cls, "rules")

    @classmethod
    def all_aliases(cls) -> dict[str, Alias]:
        return _merged(cls, "aliases")

    @classmethod
    def upgrade(cls, options: Mapping[str, Any], *, warn: bool = True) -> dict[str, Any]:
        """``options`` with old names replaced by today's (a ``FutureWarning`` per old name
        when ``warn``). Unknown names are kept, for the caller to refuse."""
        aliases = cls.all_aliases()
        out: dict[str, Any] = {}

        def put(name: str, value: Any, given_as: str) -> None:
            if name in out and out[name] != value:
                raise ConfigError(f"options {given_as!r} and {name!r} disagree; give only {name!r}")
            out[name] = value

        for key, value in options.items():
            alias = aliases.get(key)
            if alias is None:
                put(key, value, key)
                continue
            new = alias.convert(value, options) if alias.convert else value
            if warn and (alias.new != key or new != value):
                warn_at_caller(
                    f"option {key}={value!r} is deprecated; use {alias.new}={new!r}", FutureWarning
                )
            put(alias.new, new, key)
        return out


def _merged(cls: type, attr: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        out.update(klass.__dict__.get(attr, {}))
    return out


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations; ``Auto`` and ``Literal`` resolve even where a module that defines a
    config did not import them, and an inherited field's names resolve in its own module."""
    names = dict(globals())
    for base in reversed(cls.__mro__):
        names.update(vars(sys.modules[base.__module__]))
    return typing.get_type_hints(cls, globalns=names)


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if typing.get_origin(tp) is tuple and typing.get_args(tp)[-1:] == (Ellipsis,):
        return f"a list of {_describe(typing.get_args(tp)[0])}s"
    if typing.get_origin(tp) is tuple:
        return "a list of " + ", ".join(_describe(a) for a in typing.get_args(tp))
    return names.get(tp, getattr(tp, "__name__", str(tp)))


_NO = object()


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or :data:`_NO`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            got = _coerce(value, arm)
            if got is not _NO:
                return got
        return _NO
    if origin is Literal:
        return value if value in typing.get_args(tp) else _NO
    if tp is type(None):
        return value if value is None else _NO
    if tp is bool:
        return value if isinstance(value, bool) else _NO
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _NO
    if tp is str:
        return value if isinstance(value, str) else _NO
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[T, ...]: any length
            args = (args[0],) * len(value)
        if len(args) != len(value):
            return _NO
        items = tuple(_coerce(v, a) for v, a in zip(value, args))
        return _NO if any(i is _NO for i in items) else items
    return _NO


def _conform(name: str, value: Any, tp: Any) -> Any:
    got = _coerce(value, tp)
    if got is _NO:
        raise ConfigError(f"{name} must be {_describe(tp)}, got {value!r}")
    return got
