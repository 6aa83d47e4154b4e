"""What every gancore dataset shares: dict samples, a seed per draw, and one error type."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class DataError(ValueError):
    """A dataset cannot be built or read: missing path, empty folder, unreadable file, bad option."""


class GanDataset(Dataset):
    """A map-style dataset whose samples are dicts of tensors (and strings).

    `sample(index, seed)` takes the seed of the draw, so random augmentation (crops, flips, the
    unpaired partner) is a function of (index, seed) and not of a worker's RNG: the trainer passes
    one seed per position in its data stream, which keeps a resumed run identical to a straight one
    whatever the number of loader workers. Plain indexing uses the index as the seed.
    """

    #: The key of the tensor an unconditional generator learns to produce.
    sample_key: str = "image"
    #: Number of classes when samples carry a "label", else None.
    num_classes: int | None = None

    def sample(self, index: int, seed: int) -> dict:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)}")
        return self.sample(index, seed=index)

    def describe(self) -> str:
        """One line for `--dry-run` and logs."""
        return f"{type(self).__name__}: {len(self)} samples"


def draw_generator(seed: int) -> torch.Generator:
    """A CPU generator for one draw's random augmentation."""
    return torch.Generator().manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)
