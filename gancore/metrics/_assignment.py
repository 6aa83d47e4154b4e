"""Minimum-cost perfect matching (the linear assignment problem), for exact Wasserstein distances.

`min_cost_assignment` uses scipy.optimize.linear_sum_assignment (compiled) when scipy is importable,
and the pure-numpy `hungarian` below otherwise; both return an optimal matching.

The shortest-augmenting-path form of the Hungarian method (Kuhn 1955, Munkres 1957; the O(n^3)
potentials formulation of Jonker & Volgenant 1987): rows are added one at a time, each by a Dijkstra
search over reduced costs c[i, j] - u[i] - v[j] >= 0, with the inner scan over columns vectorised.
"""

from __future__ import annotations

import numpy as np


def min_cost_assignment(cost: np.ndarray) -> np.ndarray:
    """cols with row i matched to column cols[i], minimising sum cost[i, cols[i]]; cost is (n, n)."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"cost must be a square matrix, got shape {cost.shape}")
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return hungarian(cost)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def hungarian(cost: np.ndarray) -> np.ndarray:
    """min_cost_assignment in numpy alone: O(n^3), the inner column scan vectorised."""
    cost = np.asarray(cost, dtype=np.float64)
    n = cost.shape[0]
    row_potential = np.zeros(n + 1)
    col_potential = np.zeros(n + 1)
    # Column 0 is a virtual start; row_of[j] is the row matched to column j (0 = none), 1-based rows.
    row_of = np.zeros(n + 1, dtype=np.int64)
    padded = np.zeros((n + 1, n + 1))
    padded[1:, 1:] = cost
    for row in range(1, n + 1):
        row_of[0] = row
        col = 0
        dist = np.full(n + 1, np.inf)
        came_from = np.zeros(n + 1, dtype=np.int64)
        done = np.zeros(n + 1, dtype=bool)
        while True:
            done[col] = True
            current = row_of[col]
            reduced = padded[current] - row_potential[current] - col_potential
            better = ~done & (reduced < dist)
            dist[better] = reduced[better]
            came_from[better] = col
            candidates = np.where(done, np.inf, dist)
            nxt = int(np.argmin(candidates))
            step = candidates[nxt]
            row_potential[row_of[done]] += step
            col_potential[done] -= step
            dist[~done] -= step
            col = nxt
            if row_of[col] == 0:
                break
        while col != 0:  # flip the augmenting path
            prev = came_from[col]
            row_of[col] = row_of[prev]
            col = prev
    cols = np.empty(n, dtype=np.int64)
    cols[row_of[1:] - 1] = np.arange(n)
    return cols
