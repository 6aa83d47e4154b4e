"""Token sequences: a vocabulary with the usual special tokens, and a one-sequence-per-line dataset."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

import torch

from gancore.data.base import DataError, GanDataset

LEVELS = ("word", "char")


def tokenize(line: str, level: str) -> list[str]:
    """Whitespace-separated words, or characters (spaces kept, the line's ends stripped)."""
    if level == "word":
        return line.split()
    if level == "char":
        return list(line.strip())
    raise DataError(f"level must be one of {LEVELS}, got {level!r}")


class Vocabulary:
    """Token <-> id. Ids 0-3 are <pad>, <bos>, <eos> and <unk>; the rest follow in the given order."""

    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
    PAD, BOS, EOS, UNK = range(4)

    def __init__(self, tokens: Iterable[str]) -> None:
        self.itos = list(self.SPECIALS) + [t for t in tokens if t not in self.SPECIALS]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise DataError("vocabulary tokens must be unique")

    @classmethod
    def build(cls, sequences: Iterable[list[str]], min_freq: int = 1) -> Vocabulary:
        """Tokens seen at least `min_freq` times, most frequent first (ties in first-seen order)."""
        counts = Counter(t for seq in sequences for t in seq)
        return cls(t for t, c in counts.most_common() if c >= min_freq)

    @classmethod
    def load(cls, path: str) -> Vocabulary:
        """One token a line (a file written by `save`)."""
        if not os.path.isfile(path):
            raise DataError(f"data.vocab: no such file: {path!r}")
        with open(path, encoding="utf-8") as f:
            return cls(line.rstrip("\n") for line in f if line.rstrip("\n"))

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(t + "\n" for t in self.itos[len(self.SPECIALS):])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str], max_len: int) -> torch.Tensor:
        """<bos> tokens <eos>, cut or padded with <pad> to `max_len` ids."""
        ids = [self.BOS] + [self.stoi.get(t, self.UNK) for t in tokens] + [self.EOS]
        ids = ids[:max_len] + [self.PAD] * max(0, max_len - len(ids))
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first <eos>, without <bos> and <pad>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i not in (self.PAD, self.BOS):
                out.append(self.itos[i] if 0 <= i < len(self.itos) else self.SPECIALS[self.UNK])
        return out


class TextLines(GanDataset):
    """{"tokens", "length"}: one sequence per non-blank line of a text file.

    The vocabulary is read from `vocab` (one token a line) or built from the file; `max_len`
    defaults to the longest line plus <bos> and <eos>. Undecodable bytes become U+FFFD."""

    sample_key = "tokens"

    def __init__(self, path: str, level: str = "word", max_len: int | None = None, vocab: str | None = None,
                 min_freq: int = 1) -> None:
        if not os.path.exists(path):
            raise DataError(f"data.path: no such file: {path!r}")
        if not os.path.isfile(path):
            raise DataError(f"data.path: {path!r} is not a file (the text dataset reads one sequence a line)")
        with open(path, encoding="utf-8", errors="replace") as f:
            self.sequences = [tokenize(line, level) for line in f if line.strip()]
        self.level = level
        if not self.sequences:
            raise DataError(f"data.path: {path!r} holds no non-blank line")
        self.vocab = Vocabulary.load(vocab) if vocab else Vocabulary.build(self.sequences, min_freq)
        self.max_len = max_len or max(len(s) for s in self.sequences) + 2
        if self.max_len < 3:
            raise DataError(f"max_len must be >= 3 (room for <bos>, a token and <eos>), got {self.max_len}")

    def __len__(self) -> int:
        return len(self.sequences)

    def sample(self, index: int, seed: int) -> dict:
        seq = self.sequences[index]
        return {"tokens": self.vocab.encode(seq, self.max_len), "length": min(len(seq) + 2, self.max_len)}

    def describe(self) -> str:
        return f"text: {len(self)} sequences, vocabulary {len(self.vocab)}, max_len {self.max_len}"
