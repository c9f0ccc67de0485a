"""Caption tokenizers: texts to padded token ids, for paired (image-caption) datasets.

Two kinds behind one :class:`Tokenizer` protocol:

* ``"word"`` (:class:`WordTokenizer`): built into ddkit, offline. Texts are lower-cased and
  split into words and punctuation marks (``"A red 3, on black."`` is ``a red 3 , on black
  .``); the vocabulary is built from the *train* split's captions only, most frequent words
  first, ties in alphabetical order, so the same captions always give the same ids. Id 0 pads,
  id 1 stands for a word outside the vocabulary.
* ``"hf:PATH"`` (:class:`HFTokenizer`): a Hugging Face tokenizer saved in a local folder
  (``tokenizer.save_pretrained(PATH)``), loaded offline (``local_files_only=True``); needs
  ``pip install 'ddkit[transformers]'``.

Every tokenizer pads or truncates each caption to ``max_len`` ids, so all splits of a dataset
share one width. :meth:`Tokenizer.to_dict` / :func:`tokenizer_from_dict` save and restore a
tokenizer as JSON (a word vocabulary whole; a Hugging Face tokenizer by its folder, which must
still be there), so a distilled set keeps the tokenizer its text embeddings came from.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ddkit.data.hf_folders import LOAD_OPTIONS, refuse_remote_code
from ddkit.errors import ConfigError, DataError, FileFormatError, require_extra

__all__ = [
    "DEFAULT_MAX_LEN",
    "MAX_VOCAB",
    "HFTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "make_tokenizer",
    "split_words",
    "tokenizer_from_dict",
]

#: Token ids per caption unless a reader is told otherwise.
DEFAULT_MAX_LEN = 32
#: The most ids a caption may take, and the largest word vocabulary ddkit builds or restores.
MAX_LEN_LIMIT = 1024
MAX_VOCAB = 200_000
PAD, UNK = "<pad>", "<unk>"
_WORDS = re.compile(r"\w+|[^\w\s]")


@runtime_checkable
class Tokenizer(Protocol):
    """Texts to token ids ``(n, max_len)`` int64, padded with ``pad_id``.

    ``name``: ``"word"`` or ``"hf:PATH"``; ``vocab_size``: ids are in ``[0, vocab_size)``;
    ``to_dict()``: JSON that :func:`tokenizer_from_dict` restores."""

    name: str
    vocab_size: int
    pad_id: int
    max_len: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...

    def decode(self, ids: torch.Tensor) -> list[str]: ...

    def to_dict(self) -> dict[str, Any]: ...


def check_max_len(max_len: object) -> int:
    """``max_len`` as a positive int of at most :data:`MAX_LEN_LIMIT`, else a ConfigError."""
    ok = isinstance(max_len, int) and not isinstance(max_len, bool)
    if not ok or not 1 <= max_len <= MAX_LEN_LIMIT:
        raise ConfigError(
            f"max_len (token ids per caption) must be an integer in [1, {MAX_LEN_LIMIT}], "
            f"got {max_len!r}"
        )
    return int(max_len)


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise DataError("encode takes a list of captions, got one string; wrap it in a list")
    out = list(texts)
    bad = next((t for t in out if not isinstance(t, str)), None)
    if bad is not None:
        raise DataError(f"captions must be strings, got {type(bad).__name__} {bad!r}")
    return out


def split_words(text: str) -> list[str]:
    """``text`` lower-cased and split into words and single punctuation marks."""
    return _WORDS.findall(text.lower())


class WordTokenizer:
    """A word-level tokenizer with a fixed vocabulary (see the module): ``vocab[0]`` pads,
    ``vocab[1]`` is the unknown word. Build one from captions with :meth:`build`."""

    name = "word"
    pad_id = 0
    unk_id = 1

    def __init__(self, vocab: Sequence[str], max_len: int = DEFAULT_MAX_LEN) -> None:
        vocab = tuple(vocab)
        if vocab[:2] != (PAD, UNK):
            raise DataError(f"a word vocabulary starts with {PAD!r}, {UNK!r}; got {vocab[:2]}")
        if not 2 <= len(vocab) <= MAX_VOCAB or len(set(vocab)) != len(vocab):
            raise DataError(
                f"a word vocabulary holds 2 to {MAX_VOCAB:,} distinct entries, got "
                f"{len(vocab):,} ({len(vocab) - len(set(vocab))} repeated)"
            )
        if not all(isinstance(w, str) for w in vocab):
            raise DataError("a word vocabulary holds strings only")
        self.vocab = vocab
        self.max_len = check_max_len(max_len)
        self._ids = {w: i for i, w in enumerate(vocab)}

    @classmethod
    def build(
        cls,
        captions: Iterable[str],
        *,
        max_len: int = DEFAULT_MAX_LEN,
        min_count: int = 1,
        max_vocab: int | None = None,
    ) -> WordTokenizer:
        """The vocabulary of ``captions`` (the train split's): words seen at least
        ``min_count`` times, most frequent first, ties alphabetical, at most ``max_vocab``
        entries with the two special ones (default :data:`MAX_VOCAB`)."""
        limit = MAX_VOCAB if max_vocab is None else max_vocab
        if not isinstance(limit, int) or not 3 <= limit <= MAX_VOCAB:
            raise ConfigError(f"max_vocab must be an integer in [3, {MAX_VOCAB:,}], got {limit!r}")
        if not isinstance(min_count, int) or min_count < 1:
            raise ConfigError(f"min_count must be a positive integer, got {min_count!r}")
        counts = Counter(w for text in _texts(list(captions)) for w in split_words(text))
        words = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        if not words:
            raise DataError("no words in the captions to build a vocabulary from; give captions")
        return cls((PAD, UNK, *words[: limit - 2]), max_len)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(len(texts), max_len)`` int64: truncated, padded with ``pad_id``."""
        get, unk, width = self._ids.get, self.unk_id, self.max_len
        rows = []
        for text in _texts(texts):
            ids = [get(w, unk) for w in split_words(text)[:width]]
            rows.append(ids + [self.pad_id] * (width - len(ids)))
        return torch.from_numpy(np.array(rows, dtype=np.int64).reshape(len(rows), width))

    def decode(self, ids: torch.Tensor) -> list[str]:
        """The words of each row of ``ids`` joined by spaces (padding dropped)."""
        ids = torch.as_tensor(ids)
        rows = (ids[None] if ids.ndim == 1 else ids).tolist()
        n = len(self.vocab)
        return [
            " ".join(self.vocab[i] for i in row if i != self.pad_id and 0 <= i < n) for row in rows
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "word", "max_len": self.max_len, "vocab": list(self.vocab)}

    def __repr__(self) -> str:
        return f"WordTokenizer({self.vocab_size} words, max_len={self.max_len})"


class HFTokenizer:
    """A Hugging Face tokenizer from the local folder ``path`` (``save_pretrained``), loaded
    offline; every caption padded or truncated to ``max_len`` ids."""

    def __init__(self, path: str | Path, max_len: int = DEFAULT_MAX_LEN) -> None:
        self.path = Path(path).expanduser()
        self.max_len = check_max_len(max_len)
        self.name = f"hf:{self.path}"
        if not self.path.is_dir():
            raise ConfigError(
                f"tokenizer {self.name!r}: {str(self.path)!r} is not a folder; "
                "save one with tokenizer.save_pretrained(PATH)"
            )
        transformers = require_extra("transformers", "transformers", f"tokenizer {self.name!r}")
        refuse_remote_code(transformers, self.path, f"tokenizer {self.name!r}")
        try:
            self._tok = transformers.AutoTokenizer.from_pretrained(
                str(self.path), trust_remote_code=False, **LOAD_OPTIONS
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FileFormatError(
                f"tokenizer {self.name!r}: cannot load a tokenizer from {str(self.path)!r} "
                f"({first})"
            ) from None
        if self._tok.pad_token_id is None:
            raise ConfigError(
                f"tokenizer {self.name!r} has no padding token; set one (tokenizer.pad_token = "
                "...) and save it again"
            )
        self.pad_id = int(self._tok.pad_token_id)
        self.vocab_size = len(self._tok)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(len(texts), max_len)`` int64, as the tokenizer encodes them."""
        texts = _texts(texts)
        if not texts:
            return torch.full((0, self.max_len), self.pad_id, dtype=torch.long)
        out = self._tok(
            texts, padding="max_length", truncation=True, max_length=self.max_len,
            return_tensors="pt",
        )  # fmt: skip
        return out["input_ids"].to(torch.long)

    def decode(self, ids: torch.Tensor) -> list[str]:
        return list(self._tok.batch_decode(torch.as_tensor(ids).tolist(), skip_special_tokens=True))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "hf", "max_len": self.max_len, "path": str(self.path)}

    def __repr__(self) -> str:
        return f"HFTokenizer({str(self.path)!r}, max_len={self.max_len})"


def make_tokenizer(
    setting: str | Tokenizer | None,
    train_captions: Iterable[str] = (),
    *,
    max_len: int = DEFAULT_MAX_LEN,
) -> Tokenizer:
    """The tokenizer ``setting`` names: ``None`` or ``"word"`` builds a
    :class:`WordTokenizer` from ``train_captions``; ``"hf:PATH"`` loads an
    :class:`HFTokenizer`; a :class:`Tokenizer` is returned as it is."""
    if setting is None or setting == "word":
        return WordTokenizer.build(train_captions, max_len=max_len)
    if isinstance(setting, str) and setting.startswith("hf:") and len(setting) > 3:
        return HFTokenizer(setting[3:], max_len=max_len)
    if isinstance(setting, Tokenizer) and not isinstance(setting, str):
        return setting
    raise ConfigError(
        f"unknown tokenizer {setting!r}; valid: 'word' (built in, offline) or 'hf:PATH' "
        "(a Hugging Face tokenizer saved in the folder PATH)"
    )


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """The tokenizer :meth:`Tokenizer.to_dict` wrote (one-line FileFormatError when corrupt)."""
    try:
        kind = d["kind"]
        if kind == "word":
            return WordTokenizer(list(d["vocab"]), int(d["max_len"]))
        if kind == "hf":
            return HFTokenizer(str(d["path"]), int(d["max_len"]))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ConfigError | DataError):
            raise
        raise FileFormatError(f"invalid tokenizer record: {type(err).__name__}: {err}") from None
    raise FileFormatError(f"invalid tokenizer record: unknown kind {kind!r} (valid: word, hf)")
