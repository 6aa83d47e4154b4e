"""The data stream of a run: which sample each process reads at each step, resumable at any step.

Samples are read along an endless stream made of one seeded permutation of the dataset per epoch.
Global batch k is stream positions [k*B, (k+1)*B); process r of N reads the r-th contiguous slice
of it. So a run on N processes reads exactly the batches a one-process run with the same global
batch reads, and a run resumed at step k starts at position k*B with nothing to replay. Each
sample's random augmentation is seeded by its stream position (GanDataset.sample), not by worker
RNGs, so the number of loader workers never changes what is read.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gancore.data.base import GanDataset


def _position_seed(seed: int, position: int) -> int:
    return seed * 1_000_003 + position


class StreamSampler(Sampler):
    """Yields (dataset index, stream position) for one process, forever, from global batch `start_batch`."""

    def __init__(self, dataset_len: int, global_batch: int, rank: int, world_size: int, seed: int,
                 start_batch: int = 0) -> None:
        if dataset_len < 1:
            raise ValueError("the dataset is empty")
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size} processes")
        self.n, self.batch, self.rank, self.world = dataset_len, global_batch, rank, world_size
        self.seed, self.start_batch = seed, start_batch

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(_position_seed(self.seed, epoch))
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_rank = self.batch // self.world
        epoch, perm = -1, None
        k = self.start_batch
        while True:
            first = k * self.batch + self.rank * per_rank
            for position in range(first, first + per_rank):
                e, offset = divmod(position, self.n)
                if e != epoch:
                    epoch, perm = e, self.permutation(e)
                yield int(perm[offset]), position
            k += 1


class _Draws(Dataset):
    """Reads (index, position) items: a GanDataset sample seeded by the position."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, position = item
        if isinstance(self.dataset, GanDataset):
            return self.dataset.sample(index, seed=_position_seed(self.seed, position))
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)


def batch_stream(dataset: Dataset, *, global_batch: int, rank: int, world_size: int, seed: int,
                 start_batch: int, num_workers: int, pin_memory: bool) -> Iterator[dict]:
    """Endless iterator over this process's slices of global batches `start_batch`, `start_batch + 1`, ..."""
    sampler = StreamSampler(len(dataset), global_batch, rank, world_size, seed, start_batch)
    loader = DataLoader(_Draws(dataset, seed), batch_size=global_batch // world_size, sampler=sampler,
                        num_workers=num_workers, pin_memory=pin_memory,
                        # its own generator: creating the iterator must not consume the global RNG
                        generator=torch.Generator().manual_seed(seed),
                        persistent_workers=False)
    return iter(loader)
