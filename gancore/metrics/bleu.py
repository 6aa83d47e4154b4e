"""BLEU of generated sequences against a held-out set, as SeqGAN reports it for real text.

Each hypothesis is scored against the whole reference set (every held-out sequence is a reference of
every hypothesis), and the corpus score is the mean of these sentence scores: the protocol of SeqGAN's
real-data experiments. A sentence score BLEU-n (Papineni et al. 2002) is

    BP * exp(mean over k = 1..n of log p_k),   BP = 1 if c > r else exp(1 - r / c),

where p_k is the modified k-gram precision (a hypothesis k-gram counts at most as often as it occurs in
the reference where it is most frequent), c the hypothesis length and r the reference length closest to
c (the shorter one on a tie). A p_k with no match becomes 0.1 / (number of hypothesis k-grams) (smoothing
"method 1" of Chen and Cherry 2014), except that a hypothesis without a single matching token scores 0.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence

SMOOTHING_EPSILON = 0.1


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams (as tuples) of `tokens`."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


class BLEUReferences:
    """A reference set, indexed once: the largest count of every k-gram (k <= max_n) in any reference, and
    the sorted reference lengths. Scoring a hypothesis then costs a lookup per k-gram."""

    def __init__(self, references: Iterable[Sequence[str]], max_n: int = 5) -> None:
        if max_n < 1:
            raise ValueError(f"max_n must be >= 1, got {max_n}")
        self.max_n = max_n
        self.max_counts: list[dict[tuple, int]] = [{} for _ in range(max_n)]
        lengths = []
        for ref in references:
            lengths.append(len(ref))
            for k in range(1, max_n + 1):
                best = self.max_counts[k - 1]
                for gram, count in ngrams(ref, k).items():
                    if count > best.get(gram, 0):
                        best[gram] = count
        if not lengths:
            raise ValueError("references: BLEU needs at least one reference sequence")
        self.lengths = sorted(lengths)

    def closest_length(self, c: int) -> int:
        i = bisect.bisect_left(self.lengths, c)
        candidates = self.lengths[max(0, i - 1):i + 1]
        return min(candidates, key=lambda r: (abs(r - c), r))

    def sentence_bleu(self, hypothesis: Sequence[str], n: int) -> float:
        """BLEU-n of one hypothesis against the whole set."""
        if not 1 <= n <= self.max_n:
            raise ValueError(f"n must be in 1..{self.max_n} (the max_n of these references), got {n}")
        c = len(hypothesis)
        if c == 0:
            return 0.0
        log_sum = 0.0
        for k in range(1, n + 1):
            grams = ngrams(hypothesis, k)
            total = max(1, sum(grams.values()))
            best = self.max_counts[k - 1]
            matched = sum(min(count, best.get(gram, 0)) for gram, count in grams.items())
            if matched == 0:
                if k == 1:
                    return 0.0
                log_sum += math.log(SMOOTHING_EPSILON / total)
            else:
                log_sum += math.log(matched / total)
        r = self.closest_length(c)
        brevity = 1.0 if c > r else math.exp(1.0 - r / c)
        return brevity * math.exp(log_sum / n)


def corpus_bleu(hypotheses: Iterable[Sequence[str]], references: BLEUReferences | Iterable[Sequence[str]],
                orders: Sequence[int] = (2, 3, 4, 5)) -> dict[str, float]:
    """{"bleu2": ..., "bleu5": ...}: the mean sentence BLEU-n of the hypotheses, for each n in `orders`."""
    if not isinstance(references, BLEUReferences):
        references = BLEUReferences(references, max(orders))
    hypotheses = list(hypotheses)
    if not hypotheses:
        raise ValueError("hypotheses: BLEU needs at least one generated sequence")
    return {f"bleu{n}": sum(references.sentence_bleu(h, n) for h in hypotheses) / len(hypotheses)
            for n in orders}
