"""SeqGAN's networks (Yu et al. 2017, the synthetic-data setting of LantaoYu/SeqGAN), and its batched rollouts.

- SeqGANGenerator: an LSTM language model (embedding 32, hidden 32) whose embedding has one extra row,
  the start token (index vocab_size), so that every real token id stays a token of the data.
- SeqGANDiscriminator: a CNN over token embeddings (embedding 64): one 'valid' convolution per filter
  size over the whole embedding width, ReLU, max over time, concatenated; one highway layer; dropout;
  a two-way linear output (class 1 = real). The paper's code feeds dropout_keep_prob = 0.75, so the
  drop probability here is 0.25; its L2 term covers the output layer only.
- monte_carlo_rollouts: every prefix of every sequence completed N times by a policy, all at once.

Tokens are drawn by inverse-CDF sampling from uniforms: one uniform per token, so that a sample is a
pure function of its uniforms (the family's "latents") and a batched rollout equals a loop over prefixes
drawn from the same uniforms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The discriminator of the paper's code: filter sizes and counts (1720 filters in all).
PAPER_FILTER_SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)
PAPER_NUM_FILTERS = (100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160)

LSTMState = tuple[torch.Tensor, torch.Tensor]


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Softmax inputs in at least float32 (autocast's bf16/fp16 logits would round the probabilities)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def draw_tokens(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Token ids (rows of `logits`) by inverse CDF at `uniforms` in [0, 1), one per row."""
    cdf = F.softmax(_wide(logits), dim=-1).cumsum_(dim=-1)
    u = uniforms.to(cdf.dtype).unsqueeze(1) * cdf[:, -1:]
    return torch.searchsorted(cdf, u)[:, 0].clamp_(max=logits.shape[-1] - 1)


class SeqGANGenerator(nn.Module):
    """LSTM language model over `vocab_size` tokens, sequences of `length`.

    forward(tokens) is the log-likelihood of each token given its prefix, (N, length): MLE maximises its
    mean, the policy gradient weighs it by the rewards. Weights start N(0, 0.1), as in the paper's code."""

    def __init__(self, vocab_size: int, length: int, embed: int = 32, hidden: int = 32) -> None:
        super().__init__()
        self.vocab_size, self.length = vocab_size, length
        self.embed = nn.Embedding(vocab_size + 1, embed)  # row vocab_size: the start token
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0.0, 0.1)

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        start = torch.full_like(tokens[:, :1], self.vocab_size)
        return torch.cat([start, tokens[:, :-1]], dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embed(self._inputs(tokens)))
        logp = F.log_softmax(_wide(self.head(hidden)), dim=-1)
        return logp.gather(2, tokens.unsqueeze(2))[..., 0]

    def read(self, token: torch.Tensor, state: LSTMState | None) -> LSTMState:
        """Feed one token per row: the new state, (N, hidden) tensors (h, c)."""
        h0 = None if state is None else (state[0].unsqueeze(0), state[1].unsqueeze(0))
        _, (h, c) = self.lstm(self.embed(token).unsqueeze(1), h0)
        return h[0], c[0]

    def step(self, token: torch.Tensor, state: LSTMState | None) -> tuple[torch.Tensor, LSTMState]:
        """Feed one token per row: (logits of the next token, new state)."""
        state = self.read(token, state)
        return self.head(state[0]), state

    @torch.no_grad()
    def sample(self, uniforms: torch.Tensor) -> torch.Tensor:
        """(N, length) tokens drawn at `uniforms` (N, length), in [0, 1)."""
        token = torch.full((uniforms.shape[0],), self.vocab_size, dtype=torch.long, device=uniforms.device)
        state, out = None, []
        for t in range(self.length):
            logits, state = self.step(token, state)
            token = draw_tokens(logits, uniforms[:, t])
            out.append(token)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def prefix_states(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced over `tokens` (N, length): for every t = 1..length-1 the state (h, c) after reading
        the start token and tokens 1..t, as (length - 1, N, hidden) stacks."""
        inputs = self._inputs(tokens)
        state = self.read(inputs[:, 0], None)
        hs, cs = [], []
        for t in range(1, self.length):
            state = self.read(inputs[:, t], state)
            hs.append(state[0])
            cs.append(state[1])
        return torch.stack(hs), torch.stack(cs)


@torch.no_grad()
def monte_carlo_rollouts(policy: SeqGANGenerator, tokens: torch.Tensor, n: int,
                         uniforms: torch.Tensor | None = None, chunk: int | None = None) -> torch.Tensor:
    """For each prefix tokens[:, :t] (t = 1..length-1), `n` completions drawn by `policy`: (length-1, n, N,
    length), where [t-1, k, i] is sequence i's first t tokens followed by completion k.

    All prefixes and all n rollouts run as one batch of (length-1) * n * N rows, each starting from the LSTM
    state its prefix left (read once, teacher-forced). Rows are ordered by prefix length, so the rows that
    still need tokens at rollout step j are a leading slice of the batch: the batch shrinks as short
    completions finish and no row computes a token it does not need. `uniforms` (length-1, n, N, length)
    fixes the draws: entry [t-1, k, i, p] draws position p of that completion. The output layer and the
    draws run `chunk` rows at a time (default: 512 on the CPU, where (rows, vocabulary) logits that leave the
    caches cost more than the calls; all rows at once elsewhere); the LSTM steps always take all rows."""
    batch, length = tokens.shape
    groups = length - 1
    if uniforms is None:
        uniforms = torch.rand(groups, n, batch, length, device=tokens.device)
    h, c = policy.prefix_states(tokens)
    if chunk is None:
        chunk = 512 if tokens.device.type == "cpu" else groups * n * batch

    def rows(x: torch.Tensor) -> torch.Tensor:  # (groups, N, ...) -> (groups * n * N, ...)
        return x.unsqueeze(1).expand(groups, n, *x.shape[1:]).reshape(groups * n * batch, *x.shape[2:])

    out = rows(tokens.unsqueeze(0).expand(groups, batch, length)).clone()
    u = uniforms.reshape(groups * n * batch, length)
    prefix = torch.arange(1, length, device=tokens.device).repeat_interleave(n * batch)
    h, c = rows(h), rows(c)
    for j in range(groups):
        active = (groups - j) * n * batch  # rows whose prefix is shorter than length - j
        position = prefix[:active] + j
        drawn = u[:active].gather(1, position.unsqueeze(1))[:, 0]
        token = torch.cat([draw_tokens(policy.head(h[i:i + chunk]), drawn[i:i + chunk])
                           for i in range(0, active, chunk)])
        out[:active].scatter_(1, position.unsqueeze(1), token.unsqueeze(1))
        follow = (groups - j - 1) * n * batch
        if follow:
            h, c = policy.read(token[:follow], (h[:follow], c[:follow]))
    return out.reshape(groups, n, batch, length)


class Highway(nn.Module):
    """y = t * relu(W_h x) + (1 - t) * x with t = sigmoid(W_t x): the paper's one highway layer (gate bias 0)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.transform = nn.Linear(size, size)
        self.gate = nn.Linear(size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return t * F.relu(self.transform(x)) + (1.0 - t) * x


class SeqGANDiscriminator(nn.Module):
    """(N, length) tokens -> (N, 2) logits, class 1 = real."""

    def __init__(self, vocab_size: int, length: int, embed: int = 64,
                 filter_sizes: tuple[int, ...] = PAPER_FILTER_SIZES,
                 num_filters: tuple[int, ...] = PAPER_NUM_FILTERS, dropout: float = 0.25) -> None:
        super().__init__()
        if len(filter_sizes) != len(num_filters) or not filter_sizes:
            raise ValueError(f"filter_sizes and num_filters must be equally long and non-empty, got "
                             f"{list(filter_sizes)} and {list(num_filters)}")
        if max(filter_sizes) > length or min(filter_sizes) < 1:
            raise ValueError(f"filter sizes must be in 1..length={length}, got {list(filter_sizes)}")
        self.embed = nn.Embedding(vocab_size, embed)
        self.convs = nn.ModuleList(nn.Conv1d(embed, count, size) for size, count in zip(filter_sizes, num_filters))
        total = sum(num_filters)
        self.highway = Highway(total)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(total, 2)
        # The paper's code: embeddings U(-1, 1); convolutions and output N(0, 0.1) (truncated), biases 0.1.
        with torch.no_grad():
            self.embed.weight.uniform_(-1.0, 1.0)
            for layer in [*self.convs, self.out]:
                nn.init.trunc_normal_(layer.weight, std=0.1, a=-0.2, b=0.2)
                layer.bias.fill_(0.1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # (N, embed, length), made contiguous once: each convolution would otherwise copy the transposed
        # view itself (1.3x faster for the four small convolutions of the quick bench, 1.05x at the paper's D)
        x = self.embed(tokens).transpose(1, 2).contiguous()
        pooled = torch.cat([F.relu(conv(x)).amax(dim=2) for conv in self.convs], dim=1)
        return self.out(self.dropout(self.highway(pooled)))

    def real_probability(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N,) probability of class 'real'."""
        return F.softmax(_wide(self(tokens)), dim=1)[:, 1]

    def l2_penalty(self) -> torch.Tensor:
        """tf.nn.l2_loss of the output layer's weight and bias (half the sum of squares), as in the paper."""
        return 0.5 * (self.out.weight.square().sum() + self.out.bias.square().sum())
