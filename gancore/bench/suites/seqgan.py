"""SeqGAN: one adversarial generator step, batched rollouts against a loop over prefixes; MLE throughput.

An adversarial G step is what SeqGAN spends its time on: sample a batch, complete every prefix of every
sequence `rollouts` times with the rollout policy, score all completions with D, and take one
policy-gradient step. Contenders, on the same networks, batch and Adam settings:
- "prefix loop" (the baseline): the structure of the paper's code, in PyTorch: for each of the N rollouts
  and each prefix length t, run the policy over the prefix from the start token, sample the rest token by
  token, and score that batch with D;
- "batched": gancore.models.seqgan.monte_carlo_rollouts: all (length - 1) x N x batch completions at once,
  each starting from the LSTM state its prefix left, the batch shrinking as completions finish, then D
  over all of them (in chunks of model.reward_chunk sequences).
The two are timed in alternating order (slow load changes of a shared machine fall on both alike); the
target is a 10x shorter batched step. A second case times MLE pretraining steps (teacher-forced
log-likelihood, backward, Adam) and reports tokens/s.

Full: the paper's synthetic setting (vocabulary 5,000, length 20, batch 64, N = 16, the paper's D).
--quick: vocabulary 500, length 10, batch 16, N = 4, a small D.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable

import torch

from gancore.bench.report import time_target
from gancore.bench.timing import BenchContext, measure
from gancore.families.seqgan import SeqGAN, SeqGANConfig
from gancore.models.seqgan import SeqGANDiscriminator, SeqGANGenerator, draw_tokens

BASELINE = "prefix loop"
ALLOC_SENSITIVE = False
TARGET = 0.1  # batched time / loop time

FULL = {"vocab": 5000, "length": 20, "batch": 64, "rollouts": 16, "sizes": None, "counts": None}
QUICK = {"vocab": 500, "length": 10, "batch": 16, "rollouts": 4, "sizes": (1, 2, 3, 5), "counts": (16, 16, 16, 16)}


@torch.no_grad()
def prefix_loop_rollouts(policy: SeqGANGenerator, tokens: torch.Tensor, n: int,
                         uniforms: torch.Tensor | None = None,
                         score: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The loop the batched rollouts replace: for each rollout k and prefix length t, the policy reads the
    prefix from the start token and draws the rest. Returns the completions (length-1, n, N, length), or,
    with `score`, score(completion batch) per (t, k): (length-1, n, N)."""
    batch, length = tokens.shape
    if uniforms is None:
        uniforms = torch.rand(length - 1, n, batch, length, device=tokens.device)
    start = torch.full((batch,), policy.vocab_size, dtype=torch.long, device=tokens.device)
    out = []
    for t in range(1, length):
        per_rollout = []
        for k in range(n):
            logits, state = policy.step(start, None)
            for p in range(t):
                logits, state = policy.step(tokens[:, p], state)
            seq = [tokens[:, p] for p in range(t)]
            for p in range(t, length):
                token = draw_tokens(logits, uniforms[t - 1, k, :, p])
                seq.append(token)
                if p + 1 < length:
                    logits, state = policy.step(token, state)
            completed = torch.stack(seq, dim=1)
            per_rollout.append(completed if score is None else score(completed))
        out.append(torch.stack(per_rollout))
    return torch.stack(out)


def _networks(setting: dict, device: torch.device) -> tuple[SeqGAN, SeqGANGenerator, SeqGANDiscriminator]:
    overrides = {"vocab_size": setting["vocab"], "length": setting["length"], "rollouts": setting["rollouts"]}
    if setting["sizes"] is not None:
        overrides.update(d_filter_sizes=setting["sizes"], d_num_filters=setting["counts"])
    config = SeqGANConfig(**overrides)
    family = SeqGAN(config)
    family.vocab_size, family.length = setting["vocab"], setting["length"]
    torch.manual_seed(0)
    g = SeqGANGenerator(config.vocab_size, config.length, config.embed, config.hidden).to(device)
    d = SeqGANDiscriminator(config.vocab_size, config.length, config.d_embed, tuple(config.d_filter_sizes),
                            tuple(config.d_num_filters), config.d_dropout).to(device)
    return family, g, d


def _adversarial_step(family: SeqGAN, g: SeqGANGenerator, d: SeqGANDiscriminator, batch: int,
                      batched: bool) -> Callable[[], None]:
    optimizer = torch.optim.Adam(g.parameters(), lr=family.config.lr_g)
    device = next(g.parameters()).device
    d.requires_grad_(False)
    policy = family.policy(g)

    def loop_rewards(tokens: torch.Tensor) -> torch.Tensor:
        d.eval()
        partial = prefix_loop_rollouts(policy, tokens, family.config.rollouts, score=d.real_probability)
        return torch.cat([partial.mean(dim=1), d.real_probability(tokens).unsqueeze(0)]).t()

    def step() -> None:
        tokens = g.sample(torch.rand(batch, family.length, device=device))
        with torch.no_grad():
            rewards = family.rewards(tokens, policy, d) if batched else loop_rewards(tokens)
        loss = -(g(tokens) * rewards).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        family.update_rollout(g)

    return step


def _mle_step(g: SeqGANGenerator, batch: int, setting: dict, device: torch.device) -> Callable[[], None]:
    optimizer = torch.optim.Adam(g.parameters(), lr=0.01)
    data = torch.randint(setting["vocab"], (batch, setting["length"]), device=device,
                         generator=torch.Generator(device).manual_seed(1))

    def step() -> None:
        loss = -g(data).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def count(ctx: BenchContext) -> int:
    return 3


def run(ctx: BenchContext) -> Iterable[dict]:
    setting = QUICK if ctx.quick else FULL
    device = ctx.device
    v, length, batch, n = setting["vocab"], setting["length"], setting["batch"], setting["rollouts"]
    family, g, d = _networks(setting, device)
    steps = {"batched": _adversarial_step(family, g, d, batch, batched=True),
             "prefix loop": _adversarial_step(family, g, d, batch, batched=False)}
    for step in steps.values():
        step()  # warm-up
    pairs = max(3, ctx.repeats // 5) if not ctx.quick else max(2, ctx.repeats // 5)
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for k in range(pairs):
        for name in (("prefix loop", "batched") if k % 2 == 0 else ("batched", "prefix loop")):
            samples[name].append(measure(steps[name], device=device, repeats=1, warmup=0)["ms"])
    medians = {name: statistics.median(times) for name, times in samples.items()}
    ratio = medians["batched"] / medians["prefix loop"]
    case = f"adversarial G step V{v} L{length} B{batch} N{n}"
    rows = (length - 1) * n * batch
    for name, times in samples.items():
        times.sort()
        row = {"case": case, "contender": name, "ms": medians[name], "ms_p10": times[0], "ms_p90": times[-1],
               "note": f"{rows} completions + {batch} sequences scored by D; medians of {pairs} interleaved steps"}
        if name == "batched":
            row.update(time_target(ratio, TARGET, BASELINE))
        yield row
    mle = ctx.time(_mle_step(g, batch, setting, device))
    tokens_per_s = batch * length / (mle["ms"] / 1e3)
    yield {"case": f"MLE step V{v} L{length} B{batch}", "contender": "batched", **mle,
           "tokens_per_s": tokens_per_s, "note": f"{tokens_per_s:,.0f} tokens/s (forward, backward, Adam)"}
