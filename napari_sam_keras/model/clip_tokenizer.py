"""SAM 3's text tokenizer: CLIP's byte-level BPE in plain Python.

keras-hub 0.32's ``SAM3Tokenizer`` cannot be built without tensorflow-text (``'SAM3Tokenizer'
object has no attribute 'vocabulary'``), which the project does not install (it would pull
the full tensorflow over tensorflow-cpu).  This is OpenAI CLIP's ``simple_tokenizer``
(lower-case, the CLIP split pattern, byte-to-unicode, BPE with ``</w>`` word ends),
reading the vocabulary and merges of a Hugging Face ``tokenizer.json`` or of a keras-hub
preset's ``assets/tokenizer/`` (``vocabulary.json`` + ``merges.txt``).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError

START = "<|startoftext|>"
END = "<|endoftext|>"
#: SAM 3's text length: start token, up to 30 tokens, end token, padded with END.
SEQUENCE_LENGTH = 32


@functools.lru_cache(maxsize=1)
def _byte_encoder() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _split_pattern():
    try:
        import regex

        return regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
            r"""[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
    except ImportError:  # the same classes for ASCII and most Latin text
        return re.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|"""
            r"""[^\s\w]+|_+""",
            re.IGNORECASE,
        )


class CLIPTokenizer:
    """Text -> (token ids, padding mask) of length :data:`SEQUENCE_LENGTH`, as SAM 3 takes them."""

    def __init__(self, vocabulary: dict[str, int], merges: list[str]) -> None:
        for token in (START, END):
            if token not in vocabulary:
                raise ModelLoadError(f"The SAM 3 tokenizer's vocabulary has no {token} token.")
        self.vocabulary = dict(vocabulary)
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
        self.pattern = _split_pattern()
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_folder(cls, folder: str | Path) -> CLIPTokenizer:
        """From ``tokenizer.json`` (Hugging Face) or ``assets/tokenizer/`` (keras-hub preset)."""
        folder = Path(folder)
        try:
            hf = folder / "tokenizer.json"
            if hf.is_file():
                model = json.loads(hf.read_text(encoding="utf-8"))["model"]
                merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
                return cls(model["vocab"], merges)
            assets = folder / "assets" / "tokenizer"
            if (assets / "vocabulary.json").is_file():
                vocab = json.loads((assets / "vocabulary.json").read_text(encoding="utf-8"))
                lines = (assets / "merges.txt").read_text(encoding="utf-8").splitlines()
                merges = [m for m in lines if m and not m.startswith("#version")]
                return cls(vocab, merges)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ModelLoadError(f"Could not read the SAM 3 tokenizer in {folder}: {err}") from err
        raise ModelLoadError(
            f"{folder} has no SAM 3 tokenizer (tokenizer.json, or assets/tokenizer/"
            "vocabulary.json + merges.txt)."
        )

    def _bpe(self, token: str) -> list[str]:
        if token in self._cache:
            return self._cache[token]
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = word
        return word

    def tokenize(self, text: str) -> list[int]:
        """The ids of ``text`` (no start/end tokens); unknown pieces are dropped."""
        text = " ".join(text.split()).lower()
        encoder = _byte_encoder()
        ids = []
        for piece in self.pattern.findall(text):
            chars = "".join(encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocabulary[t] for t in self._bpe(chars) if t in self.vocabulary)
        return ids

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(1, 32) int32 token ids and padding mask: START, the text (cut to fit), END, pad."""
        ids = self.tokenize(text)[: SEQUENCE_LENGTH - 2]
        ids = [self.vocabulary[START], *ids, self.vocabulary[END]]
        mask = np.zeros((1, SEQUENCE_LENGTH), np.int32)
        mask[0, : len(ids)] = 1
        out = np.full((1, SEQUENCE_LENGTH), self.vocabulary[END], np.int32)
        out[0, : len(ids)] = ids
        return out, mask


def keras_hub_tokenizer_needs_tensorflow_text() -> bool:
    """Whether keras-hub's ``SAM3Tokenizer`` still fails to build here (defect 1)."""
    from keras_hub.models import SAM3Tokenizer

    try:
        SAM3Tokenizer(vocabulary={"a</w>": 0, START: 1, END: 2}, merges=[])("a")
    except Exception:  # any failure to build or run it: the defect is still there
        return True
    return False
