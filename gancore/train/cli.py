"""`gancore train` and `gancore sample`."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

from gancore.data.base import DataError
from gancore.errors import ConfigError
from gancore.families import get_family, list_families
from gancore.families.base import DataSpec, Family
from gancore.report.samples import FIXED_INPUTS, load_fixed_inputs, save_sample_picture
from gancore.train import checkpoint as ckpt
from gancore.train.config import build_config, build_dataclass
from gancore.train.distributed import PeerError, choose_device
from gancore.train.trainer import NonFiniteLossError, Trainer

_USER_ERRORS = (ConfigError, DataError, ckpt.CheckpointError, ckpt.RunFolderError)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a GAN family (built-in data by default)",
        description="Train a GAN family. Settings come from the family's defaults, then --config files, "
                    "then --data, then --set overrides, then the flags below. Under torchrun "
                    "(torchrun --nproc_per_node=N -m gancore train ...) it trains with DDP.")
    p.add_argument("family", nargs="?", help="family name (see --list); with --resume, the run's own by default")
    p.add_argument("--list", action="store_true", help="list the families and exit")
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="YAML/JSON config (repeatable)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="override one setting, e.g. --set train.precision=bf16 (repeatable; values are YAML)")
    p.add_argument("--out", metavar="DIR", help="run folder (config, logs, samples, checkpoints)")
    p.add_argument("--steps", type=int, metavar="N", help="total steps (on --resume: defaults to the run's)")
    p.add_argument("--batch-size", type=int, metavar="B", help="global batch size (train.batch_size)")
    p.add_argument("--seed", type=int, metavar="S", help="train.seed")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
    p.add_argument("--force", action="store_true",
                   help="with --resume: accept a config that differs from the checkpoint's; without: start "
                        "afresh in a folder that holds a run, deleting its checkpoints and log")
    p.add_argument("--data", metavar="PATH",
                   help="training data: a folder (or file) for the family's dataset type, or a built-in "
                        "dataset name (ring, shapes, shapes-edges, color-domains, oracle-sequences)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit without training")
    p.add_argument("--tuned-alloc", action="store_true",
                   help="tune the CPU allocator first (gancore.tune_cpu_allocator; train.tuned_alloc)")
    p.set_defaults(func=run_train)

    s = subparsers.add_parser("sample", help="draw samples from a trained run as a PNG",
                              description="Draw samples from a run folder (its latest checkpoint) or a "
                                          "checkpoint file, with the EMA generator when the run kept one.")
    s.add_argument("run", metavar="RUN_OR_CHECKPOINT", help="a run folder (its latest checkpoint) or a checkpoint file")
    s.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("--out", default="grid.png", help="PNG to write (default grid.png); families of token "
                   "sequences (seqgan) print their samples instead, and also write them to a --out ending in .txt")
    s.add_argument("--seed", type=int, default=0,
                   help="seed of the latent inputs (image-to-image runs translate the inputs the run saved)")
    s.add_argument("--no-ema", action="store_true", help="use the trained weights, not their EMA")
    s.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    s.add_argument("--text", metavar="CAPTION",
                   help="draw every sample from this caption (text-to-image families, e.g. gan-int-cls: "
                        "their make_latents_from_text)")
    s.set_defaults(func=run_sample)


def _fail(command: str, err: BaseException) -> int:
    print(f"gancore {command}: error: {err}", file=sys.stderr)
    return 2


def _print_families() -> None:
    families = list_families()
    width = max(map(len, families))
    for name, summary in families.items():
        data = get_family(name).default_data.get("name")
        print(f"{name.ljust(width)}  {summary} [default data: {data}]")


def run_train(args: argparse.Namespace) -> int:
    if args.list:
        _print_families()
        return 0
    # The checkpoint records the family of a resumed run; a dry run writes nothing, so needs no folder.
    needed = (("FAMILY", args.family or args.resume), ("--out", args.out or (args.dry_run and not args.resume)),
              ("--steps", args.steps is not None or args.resume or args.dry_run))
    missing = [flag for flag, present in needed if not present]
    if missing:
        return _fail("train", f"{', '.join(missing)} required (gancore train FAMILY --out DIR --steps N; "
                              "gancore train --resume --out DIR; families: gancore train --list)")
    try:
        base = None
        if args.resume:
            if not os.path.isdir(args.out):
                raise ckpt.CheckpointError(f"--resume: {args.out!r} holds no checkpoint to resume from "
                                           "(no such folder)")
            with warnings.catch_warnings():  # the Trainer loads it again and gives any warning once
                warnings.simplefilter("ignore")
                base = ckpt.load_latest(args.out)[1]["config"]
        given = (("train.steps", args.steps), ("train.batch_size", args.batch_size),
                 ("train.seed", args.seed))
        flags = {key: value for key, value in given if value is not None}
        if args.tuned_alloc:
            flags["train.tuned_alloc"] = True
        config = build_config(args.family or base["family"], base=base, files=args.config, data=args.data,
                              overrides=args.overrides, flags=flags)
        trainer = Trainer(config, args.out, resume=args.resume, force=args.force)
    except _USER_ERRORS as err:
        return _fail("train", err)
    try:
        if args.dry_run:
            if trainer.dist.is_main:
                print(trainer.plan())
            return 0
        if args.resume and trainer.step >= trainer.train_config.steps:
            return _nothing_to_train(trainer, args.out)
        summary = trainer.fit()
    except (NonFiniteLossError, *_USER_ERRORS) as err:
        return _fail("train", err)
    except PeerError as err:  # not the user's mistake: exit code 1, but one line instead of a traceback
        print(f"gancore train: error: {err}", file=sys.stderr)
        return 1
    finally:
        trainer.close()
    if trainer.dist.is_main:
        print(f"trained {trainer.family.name} to step {summary['step']} in {summary['seconds']:.1f} s "
              f"({summary['nonfinite_steps']} steps with non-finite values); run folder {args.out}")
    return 0


def _nothing_to_train(trainer: Trainer, out: str) -> int:
    """A resumed run already at (0) or past (2: the request cannot be met) its train.steps."""
    step, steps = trainer.step, trainer.train_config.steps
    if step == steps:
        if trainer.dist.is_main:
            print(f"gancore train: the run in {out} is already at step {step} = train.steps: nothing to train "
                  "(pass a larger --steps to continue it)", file=sys.stderr)
        return 0
    return _fail("train", f"the run in {out} is already at step {step}, past --steps {steps}: nothing to "
                          f"train (pass --steps larger than {step} to continue it)")


def _check_sample_path(path: str) -> None:
    """Refuse an output PIL cannot write before any work (a folder, an unknown extension, no parent)."""
    from PIL import Image

    if os.path.isdir(path):
        raise ConfigError(f"--out {path!r} is a directory; give the file to write, e.g. {path}/grid.png")
    Image.init()
    extension = os.path.splitext(path)[1].lower()
    if Image.registered_extensions().get(extension) not in Image.SAVE:
        raise ConfigError(f"--out {path!r}: unknown image extension {extension or '(none)'!r}; use .png")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {path!r}: cannot create its folder: {err.strerror or err}") from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--out {path!r}: its folder {folder!r} is not writable")


def _check_finite_weights(weights: dict, name: str, path: str) -> None:
    bad = [key for key, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise ckpt.CheckpointError(f"{path}: the weights of {name!r} hold NaN or inf (first: {bad[0]!r}; "
                                   f"{len(bad)} tensor(s)); their samples would be meaningless. Sample an "
                                   "earlier checkpoint, or use --no-ema if only the EMA is broken")


def _sample_inputs(family: Family, checkpoint: str, n: int, seed: int, device: torch.device) -> dict:
    """Fresh latents from `seed`, or, for a family whose inputs come from its training data (image-to-image:
    make_latents refuses without it), the first n of the sample inputs its run folder saved."""
    try:
        return {"latents": family.make_latents(n, torch.Generator(device).manual_seed(seed), device)}
    except ConfigError as err:
        saved = load_fixed_inputs(os.path.dirname(os.path.abspath(checkpoint)), device)
        if saved is None:
            raise ConfigError(f"{err} (no saved sample inputs {FIXED_INPUTS} beside {checkpoint})") from None
        return {k: v[:n] if isinstance(v, torch.Tensor) else v for k, v in saved.items()}


def run_sample(args: argparse.Namespace) -> int:
    try:
        if args.n < 1:
            raise ConfigError(f"--n: must be >= 1, got {args.n}")
        text_out = args.out.lower().endswith(".txt")  # token-sequence families (SeqGAN) write text
        if not text_out:
            _check_sample_path(args.out)
        path, state = ckpt.load_run_or_checkpoint(args.run)
        device = choose_device(args.device)
        try:
            config = state["config"]
            family_cls = get_family(config["family"])
            family = family_cls(build_dataclass(family_cls.Config, config["model"], "model"))
            family.load_state_dict(state.get("family", {}))  # e.g. SeqGAN's vocabulary, to decode samples
            nets = {}
            for name, network in family.build(DataSpec.from_dict(state["data_spec"])).items():
                use_ema = name in state["ema"] and not args.no_ema
                weights = state["ema"][name]["module"] if use_ema else state["nets"][name]
                _check_finite_weights(weights, name, path)
                try:
                    network.module.load_state_dict(weights)
                except RuntimeError as err:
                    raise ckpt.CheckpointError(f"{path}: the weights of {name!r} do not fit its config: "
                                               f"{' '.join(str(err).split())[:400]}") from None
                nets[name] = network.module.to(device).eval()
        except KeyError as err:
            raise ckpt.CheckpointError(f"{path} is incomplete: it has no {err}") from None
        if args.text is not None:
            from_text = getattr(family, "make_latents_from_text", None)
            if from_text is None:
                raise ConfigError(f"--text: family {family.name!r} takes no text (text-to-image families do, "
                                  "e.g. gan-int-cls)")
            inputs = {"latents": from_text(args.text, args.n, torch.Generator(device).manual_seed(args.seed),
                                           device)}
        else:
            inputs = _sample_inputs(family, path, args.n, args.seed, device)
        with torch.no_grad():
            samples = family.generate(nets, inputs["latents"]).float()
        if not torch.isfinite(samples).all():
            raise ckpt.CheckpointError(f"{path}: the generator's samples hold NaN or inf; nothing written")
        decode = getattr(family, "decode_samples", None)
        if decode is None and text_out:
            raise ConfigError(f"--out {args.out!r}: {family.name} draws images; give a .png")
        if decode is None:
            save_sample_picture(family, inputs, samples, args.out)
        elif text_out:
            family.save_samples(samples, args.out)
    except _USER_ERRORS as err:
        return _fail("sample", err)
    which = "EMA" if state["ema"] and not args.no_ema else "trained"
    summary = f"{len(samples)} samples from {path} (step {state['step']}, {which} weights)"
    if decode is not None:  # sequences go to stdout, one a line, the summary to stderr
        print("\n".join(decode(samples)))
        print(f"sampled {summary}" + (f"; wrote {args.out}" if text_out else ""), file=sys.stderr)
        return 0
    saved = f" (translating the run's saved sample inputs, {FIXED_INPUTS})" if "inputs" in inputs else ""
    print(f"wrote {args.out}: {summary}{saved}")
    return 0
