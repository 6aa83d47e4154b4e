"""SeqGAN (Yu, Zhang, Wang and Yu, 2017): a sequence generator trained by policy gradient, its reward
the discriminator's verdict on Monte-Carlo completions of every prefix.

The run follows the schedule of the paper's code (LantaoYu/SeqGAN), counted in trainer steps of one
batch each, with `epoch_steps` steps making one pass over the data (157 = 10,000 sequences at batch 64):
1. MLE: `pretrain_epochs` epochs of maximum likelihood on G;
2. D pretraining: `d_pretrain_rounds` rounds, each drawing a fresh pool of epoch_steps batches of G's
   samples as negatives and training D on them, against real batches, for `d_epochs` (k) epochs;
3. adversarial epochs, repeated until train.steps: `g_steps` policy-gradient steps on G, then `d_steps`
   rounds of D training as in 2. A G step samples a batch, rewards each prefix Y_1..t with the mean of D's
   real-probability (dropout off) over `rollouts` completions by the rollout policy (the last token with D's
   verdict on the whole sequence), and maximises the reward-weighted log-likelihood (REINFORCE, without a
   baseline as in the paper; model.pg_baseline subtracts the batch's mean reward at each position). All
   completions run as one batch (gancore.models.seqgan.monte_carlo_rollouts).
   The rollout policy is a delayed copy of G: after each G update its LSTM and output layer move to
   rate * policy + (1 - rate) * G with rate `rollout_update`, and it takes G's embedding as it is.

NLL_oracle (on the built-in oracle data): the oracle's mean negative log-likelihood per token of
`eval_samples` sequences of G, drawn from fixed uniforms (eval_seed). It is logged as MLE/nll_oracle at the
start of every MLE epoch (step 0: the untrained G) and as PG/nll_oracle at the start of every adversarial
epoch, i.e. after the previous epoch's updates (so the mean over a log window is one value when
log.every <= epoch_steps). On text with model.bleu_reference (a held-out file, one sequence a line),
BLEU-2..5 are logged instead. `history` keeps every evaluation.

Where this differs from the paper's code: the policy-gradient loss is a mean over tokens, not a sum (Adam
makes the scale moot, and G's single Adam serves MLE and PG alike); gradients are not clipped (the
trainer has no clipping; Adam bounds the step).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gancore.families import register_family
from gancore.families.base import ConfigError, DataSpec, Family, Network, Phase, PhaseContext, check_positive
from gancore.models.seqgan import (
    PAPER_FILTER_SIZES,
    PAPER_NUM_FILTERS,
    SeqGANDiscriminator,
    SeqGANGenerator,
    monte_carlo_rollouts,
)

_EVAL_CHUNK = 2000


@dataclass
class SeqGANConfig:
    vocab_size: int = 5000  # of the built-in oracle data (text brings its own vocabulary)
    length: int = 20  # of the built-in oracle data (text: the data's max_len - 1, its <bos> dropped)
    embed: int = 32
    hidden: int = 32
    d_embed: int = 64
    d_filter_sizes: tuple[int, ...] = PAPER_FILTER_SIZES
    d_num_filters: tuple[int, ...] = PAPER_NUM_FILTERS
    d_dropout: float = 0.25  # drop probability: the paper's code feeds keep_prob 0.75
    d_l2: float = 0.2  # weight of the L2 term (output layer) in D's loss
    lr_g: float = 0.01
    lr_d: float = 1e-4
    epoch_steps: int = 157  # steps of one pass over the data (and over one pool of negatives)
    pretrain_epochs: int = 120
    d_pretrain_rounds: int = 50
    g_steps: int = 1
    d_steps: int = 5
    d_epochs: int = 3  # k: epochs over each pool of fresh negatives
    rollouts: int = 16  # N
    rollout_update: float = 0.8
    pg_baseline: bool = False  # subtract the batch's mean reward at each position (the paper: none)
    reward_chunk: int = 1024  # sequences per D call when scoring rollouts (bounds memory; cache-sized on the CPU)
    eval_samples: int = 10000
    eval_seed: int = 0
    bleu_reference: str = ""  # text only: held-out file for BLEU-2..5

    def __post_init__(self) -> None:
        for key in ("vocab_size", "length", "embed", "hidden", "d_embed", "epoch_steps", "g_steps",
                    "d_epochs", "rollouts", "reward_chunk", "eval_samples"):
            check_positive(f"model.{key}", getattr(self, key))
        for key in ("pretrain_epochs", "d_pretrain_rounds", "d_steps"):
            check_positive(f"model.{key}", getattr(self, key), 0)
        if self.vocab_size < 2 or self.length < 2:
            raise ConfigError(f"model.vocab_size and model.length: must be >= 2, got {self.vocab_size} and "
                              f"{self.length}")
        if len(self.d_filter_sizes) != len(self.d_num_filters) or not self.d_filter_sizes:
            raise ConfigError(f"model.d_filter_sizes and model.d_num_filters: must be equally long and non-empty, "
                              f"got {list(self.d_filter_sizes)} and {list(self.d_num_filters)}")
        if min(self.d_filter_sizes) < 1 or min(self.d_num_filters) < 1:
            raise ConfigError(f"model.d_filter_sizes / d_num_filters: must be >= 1, got "
                              f"{list(self.d_filter_sizes)} / {list(self.d_num_filters)}")
        if not 0.0 <= self.d_dropout < 1.0:
            raise ConfigError(f"model.d_dropout: must be in [0, 1), got {self.d_dropout}")
        if not 0.0 <= self.rollout_update <= 1.0:
            raise ConfigError(f"model.rollout_update: must be in [0, 1], got {self.rollout_update}")
        if self.d_l2 < 0:
            raise ConfigError(f"model.d_l2: must be >= 0, got {self.d_l2}")

    def steps(self, adversarial_epochs: int) -> int:
        """Trainer steps of the whole schedule with this many adversarial epochs."""
        return (self.pretrain_epochs * self.epoch_steps + self.d_pretrain_rounds * self.d_epochs * self.epoch_steps
                + adversarial_epochs * (self.g_steps + self.d_steps * self.d_epochs * self.epoch_steps))


@dataclass(frozen=True)
class _StagePhase(Phase):
    """A phase due at the steps where the family's schedule is in `stage`."""

    stage: str = ""
    schedule: Callable[[int], str] | None = None

    def due(self, step: int) -> bool:
        return self.schedule(step) == self.stage


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


def _unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)  # DDP


@register_family
class SeqGAN(Family):
    name = "seqgan"
    summary = "SeqGAN (Yu et al. 2017): LSTM G by MLE then policy gradient on a CNN D's rewards; oracle NLL"
    Config = SeqGANConfig
    default_data = {"name": "oracle-sequences"}
    path_data = "text"
    default_train = {"batch_size": 64, "steps": SeqGANConfig().steps(200)}  # the paper: 200 adversarial epochs

    def __init__(self, config: SeqGANConfig) -> None:
        super().__init__(config)
        self.vocab_size: int | None = None
        self.length: int | None = None
        self.itos: list[str] | None = None  # text: the vocabulary, kept for decoding samples
        self.level = "word"
        self.history: list[dict] = []
        self.rollout: SeqGANGenerator | None = None
        self._rollout_state: dict | None = None
        self._pool: torch.Tensor | None = None  # (epoch_steps, rows, length) negatives
        self._pool_order: torch.Tensor | None = None
        self._pool_pos = 0
        self._oracle: nn.Module | None = None
        self._bleu_refs: Any = None

    # -- data and networks --------------------------------------------------------------------------

    def data_hints(self) -> dict:
        return {"vocab_size": self.config.vocab_size, "length": self.config.length}

    @property
    def text(self) -> bool:
        return self.itos is not None

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        if len(spec.shape) != 1:
            raise ConfigError(f"seqgan needs token sequences (data.name=oracle-sequences or text), but the data "
                              f"gives samples of shape {tuple(spec.shape)} under '{spec.key}'")
        data = self.dataset
        if data is not None:
            if hasattr(data, "vocab"):
                self.itos, self.level = list(data.vocab.itos), getattr(data, "level", "word")
                self.vocab_size = len(self.itos)
            elif hasattr(data, "oracle"):
                self.itos, self.vocab_size = None, data.oracle.vocab_size
            else:
                raise ConfigError(f"seqgan needs token sequences: data.name=oracle-sequences or text, not "
                                  f"{type(data).__name__}")
        elif self.vocab_size is None:  # no data (gancore sample) and no saved state: the config says
            self.vocab_size = c.vocab_size
        self.length = spec.shape[0] - 1 if self.text else spec.shape[0]
        if self.length < 2:
            raise ConfigError(f"seqgan needs sequences of at least 2 tokens, the data gives {self.length}")
        if max(c.d_filter_sizes) > self.length:
            raise ConfigError(f"model.d_filter_sizes: filters longer than the sequences ({self.length} tokens): "
                              f"{[s for s in c.d_filter_sizes if s > self.length]}")
        self.spec = spec
        return {
            "G": Network(SeqGANGenerator(self.vocab_size, self.length, c.embed, c.hidden), lr=c.lr_g),
            "D": Network(SeqGANDiscriminator(self.vocab_size, self.length, c.d_embed, tuple(c.d_filter_sizes),
                                             tuple(c.d_num_filters), c.d_dropout), lr=c.lr_d),
        }

    def _real(self, batch: Mapping[str, Any]) -> torch.Tensor:
        tokens = batch[self.spec.key]
        return tokens[:, 1:] if self.text else tokens  # text: <bos> is the start token's job

    # -- schedule -----------------------------------------------------------------------------------

    @property
    def mle_steps(self) -> int:
        return self.config.pretrain_epochs * self.config.epoch_steps

    @property
    def adversarial_start(self) -> int:
        c = self.config
        return self.mle_steps + c.d_pretrain_rounds * c.d_epochs * c.epoch_steps

    @property
    def adversarial_epoch_steps(self) -> int:
        c = self.config
        return c.g_steps + c.d_steps * c.d_epochs * c.epoch_steps

    def stage(self, step: int) -> str:
        """What step `step` trains: "mle", "d" (D pretraining or an adversarial d-step) or "pg"."""
        if step < self.mle_steps:
            return "mle"
        if step < self.adversarial_start:
            return "d"
        return "pg" if (step - self.adversarial_start) % self.adversarial_epoch_steps < self.config.g_steps else "d"

    def phases(self) -> list[Phase]:
        return [_StagePhase("MLE", "G", self.loss_mle, stage="mle", schedule=self.stage),
                _StagePhase("PG", "G", self.loss_pg, stage="pg", schedule=self.stage,
                            after_step=self.update_rollout),
                _StagePhase("D", "D", self.loss_d, stage="d", schedule=self.stage)]

    # -- losses -------------------------------------------------------------------------------------

    def loss_mle(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        metrics = {}
        if ctx.step % self.config.epoch_steps == 0:
            metrics = self.evaluate(_unwrap(ctx.nets["G"]), ctx.step, "mle")
        nll = -ctx.nets["G"](self._real(ctx.batch)).mean()
        return {"loss": nll, **metrics}

    def loss_pg(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        g = _unwrap(ctx.nets["G"])
        metrics = {}
        if (ctx.step - self.adversarial_start) % self.adversarial_epoch_steps == 0:
            metrics = self.evaluate(g, ctx.step, "adversarial")
        tokens = g.sample(torch.rand(ctx.batch_size, self.length, device=self._real(ctx.batch).device))
        rewards = self.rewards(tokens, self.policy(g), ctx.nets["D"])
        advantages = rewards - rewards.mean(dim=0) if self.config.pg_baseline else rewards
        loss = -(ctx.nets["G"](tokens) * advantages).mean()
        return {"loss": loss, "reward": rewards.mean(), **metrics}

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        real = self._real(ctx.batch)
        fake = self.negatives(_unwrap(ctx.nets["G"]), real.shape[0], real.device)
        logits = ctx.nets["D"](torch.cat([real, fake]))
        labels = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))]).long().to(real.device)
        loss = F.cross_entropy(logits.float(), labels) + self.config.d_l2 * _unwrap(ctx.nets["D"]).l2_penalty()
        return {"loss": loss, "accuracy": (logits.argmax(1) == labels).float().mean()}

    # -- rollouts, rewards, negatives ---------------------------------------------------------------

    def policy(self, generator: SeqGANGenerator) -> SeqGANGenerator:
        """The rollout policy: made from G when the adversarial stage starts (or restored)."""
        if self.rollout is None:
            self.rollout = copy.deepcopy(generator).requires_grad_(False)
            if self._rollout_state is not None:
                self.rollout.load_state_dict(self._rollout_state)
                self._rollout_state = None
        return self.rollout

    @torch.no_grad()
    def update_rollout(self, generator: nn.Module) -> None:
        """After a G step: the policy's LSTM and head move towards G's by (1 - rollout_update); the
        embedding is G's (the paper's code)."""
        policy = self.policy(generator)
        policy.embed.weight.copy_(generator.embed.weight)
        for mine, theirs in zip([*policy.lstm.parameters(), *policy.head.parameters()],
                                [*generator.lstm.parameters(), *generator.head.parameters()]):
            mine.lerp_(theirs, 1.0 - self.config.rollout_update)

    @torch.no_grad()
    def rewards(self, tokens: torch.Tensor, policy: SeqGANGenerator, discriminator: nn.Module) -> torch.Tensor:
        """(N, length) action values: for t < length the mean real-probability of `rollouts` completions of
        Y_1..t, for t = length D's verdict on Y itself."""
        batch, length = tokens.shape
        n = self.config.rollouts
        completions = monte_carlo_rollouts(policy, tokens, n).reshape(-1, length)
        d = _unwrap(discriminator)
        with _eval_mode(d):
            probs = torch.cat([d.real_probability(chunk) for chunk in
                               torch.cat([completions, tokens]).split(self.config.reward_chunk)])
        partial = probs[:-batch].reshape(length - 1, n, batch).mean(dim=1)
        return torch.cat([partial, probs[-batch:].unsqueeze(0)]).t()

    @torch.no_grad()
    def _sample(self, generator: SeqGANGenerator, n: int, device: torch.device,
                rng: torch.Generator | None = None) -> torch.Tensor:
        was = generator.training
        generator.eval()
        try:
            return torch.cat([generator.sample(torch.rand(min(_EVAL_CHUNK, n - i), self.length, device=device,
                                                          generator=rng))
                              for i in range(0, n, _EVAL_CHUNK)])
        finally:
            generator.train(was)

    def negatives(self, generator: SeqGANGenerator, rows: int, device: torch.device) -> torch.Tensor:
        """The next batch of D's negatives: a pool of epoch_steps batches of G's samples, drawn fresh when the
        previous pool has served d_epochs epochs (each epoch in its own random order)."""
        c = self.config
        if self._pool is None or self._pool_pos >= len(self._pool_order) or self._pool.shape[1] != rows:
            self._pool = self._sample(generator, c.epoch_steps * rows, device).reshape(c.epoch_steps, rows, -1)
            self._pool_order = torch.cat([torch.randperm(c.epoch_steps) for _ in range(c.d_epochs)])
            self._pool_pos = 0
        batch = self._pool[int(self._pool_order[self._pool_pos])]
        self._pool_pos += 1
        return batch

    # -- evaluation ---------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, generator: SeqGANGenerator, step: int | None = None, stage: str = "",
                 samples: int | None = None) -> dict[str, float]:
        """NLL_oracle (oracle data) or BLEU-2..5 (text with model.bleu_reference) of `samples` (default
        model.eval_samples) sequences drawn at fixed uniforms; {} when neither applies. Recorded in `history`
        when `step` is given. It draws from its own generator: evaluating never changes a run's course."""
        c = self.config
        device = next(generator.parameters()).device
        metrics: dict[str, float] = {}
        oracle = getattr(self.dataset, "oracle", None)
        if oracle is None and not (self.text and c.bleu_reference):
            return metrics
        rng = torch.Generator(device).manual_seed(c.eval_seed)
        samples = self._sample(generator, samples or c.eval_samples, device, rng)
        if oracle is not None:
            if self._oracle is None:
                self._oracle = copy.deepcopy(oracle).to(device)
            metrics["nll_oracle"] = float(torch.cat([self._oracle.nll(chunk) for chunk in
                                                     samples.split(_EVAL_CHUNK)]).mean())
        else:
            from gancore.metrics.bleu import corpus_bleu

            metrics.update(corpus_bleu([self.decode(s) for s in samples], self._references()))
        if step is not None:
            self.history.append({"step": step, "stage": stage, **metrics})
        return metrics

    def _references(self) -> Any:
        if self._bleu_refs is None:
            from gancore.data.text import tokenize
            from gancore.metrics.bleu import BLEUReferences

            path = self.config.bleu_reference
            if not os.path.isfile(path):
                raise ConfigError(f"model.bleu_reference: no such file: {path!r}")
            with open(path, encoding="utf-8", errors="replace") as f:
                refs = [tokenize(line, self.level) for line in f if line.strip()]
            if not refs:
                raise ConfigError(f"model.bleu_reference: {path!r} holds no non-blank line")
            self._bleu_refs = BLEUReferences(refs, 5)
        return self._bleu_refs

    # -- samples ------------------------------------------------------------------------------------

    def make_latents(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """One uniform per token: a sample is a pure function of them (inverse-CDF draws)."""
        return torch.rand(n, self.length, generator=generator, device=device)

    def generate(self, nets: Mapping[str, nn.Module], latents: torch.Tensor) -> torch.Tensor:
        return _unwrap(nets["G"]).sample(latents)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """One sequence's tokens: the vocabulary's (text, up to <eos>) or the ids (oracle data)."""
        ids = [int(t) for t in tokens]
        if not self.text:
            return [str(i) for i in ids]
        from gancore.data.text import Vocabulary

        vocab = Vocabulary(self.itos[len(Vocabulary.SPECIALS):])
        return vocab.decode(ids)

    def decode_samples(self, samples: torch.Tensor) -> list[str]:
        """Each sequence as one line of text."""
        sep = "" if self.text and self.level == "char" else " "
        return [sep.join(self.decode(row)) for row in samples.long()]

    def save_samples(self, samples: torch.Tensor, path: str) -> None:
        """Decoded sequences, one a line, next to `path` with the extension .txt."""
        with open(os.path.splitext(path)[0] + ".txt", "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in self.decode_samples(samples))

    # -- state --------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        rollout = self.rollout.state_dict() if self.rollout is not None else self._rollout_state
        return {"vocab_size": self.vocab_size, "itos": self.itos, "level": self.level, "history": self.history,
                "rollout": rollout, "pool": self._pool, "pool_order": self._pool_order, "pool_pos": self._pool_pos}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        self.vocab_size, self.itos, self.level = state["vocab_size"], state["itos"], state["level"]
        self.history = list(state["history"])
        self._pool, self._pool_order, self._pool_pos = state["pool"], state["pool_order"], state["pool_pos"]
        if state["rollout"] is not None:
            if self.rollout is not None:
                self.rollout.load_state_dict(state["rollout"])
            else:
                self._rollout_state = state["rollout"]
