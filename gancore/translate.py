"""`gancore translate`: translate a folder of images with a trained pix2pix / CycleGAN generator (an
SRResNet / SRGAN run upscales instead, in tiles: gancore.sr_cli).

The generator comes from a gancore run (a run folder or one of its checkpoints) or from a reference
checkpoint file of junyanz/pytorch-CycleGAN-and-pix2pix (`latest_net_G_A.pth`, `latest_net_G.pth`),
which loads strictly into the same network (`--arch` names it; widths, channels and the norm are read
from the file). Each image is translated on its own at its own size (sides rounded to a multiple of 4,
or resized to --size), as the reference's test.py does, and written as a PNG under its input name.
Networks run as the reference tests them, in training mode (batch statistics, dropout on, seeded);
--eval switches to eval mode (running statistics, no dropout).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch
from PIL import Image
from torch import nn

from gancore.data.base import DataError
from gancore.data.imageio import find_images, open_image, require_dir, to_tensor
from gancore.data.paired import Preprocess
from gancore.errors import ConfigError
from gancore.families.base import DataSpec
from gancore.families.pix2pix import DIRECTIONS, build_generator, check_generator_name
from gancore.families.srgan import SR_FAMILIES, load_sr_generator
from gancore.models.srgan import SRResNet
from gancore.sr_cli import add_tiling_args, translate_sr
from gancore.train import checkpoint as ckpt
from gancore.utils.visual import save_image_grid

_USER_ERRORS = (ConfigError, DataError, ckpt.CheckpointError)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "translate", help="translate a folder of images with a pix2pix / CycleGAN generator",
        description="Translate every image under --input with a trained run (folder or checkpoint) or a "
                    "reference checkpoint file (latest_net_G_A.pth ...); PNGs under the input names in --out.")
    p.add_argument("model", metavar="RUN_OR_CHECKPOINT",
                   help="a gancore run folder or checkpoint, or a reference checkpoint file (latest_net_G.pth ...)")
    p.add_argument("--input", required=True, metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the translated PNGs")
    p.add_argument("--direction", choices=DIRECTIONS, default=None,
                   help="CycleGAN run: AtoB (G_A, default) or BtoA (G_B); pix2pix run: must be the run's")
    p.add_argument("--arch", default="resnet_9blocks",
                   help="reference checkpoint files: resnet_9blocks (default), resnet_6blocks, unet_256, unet_128")
    p.add_argument("--size", type=int, default=None, metavar="N",
                   help="resize each image to NxN first (default: its own size, sides rounded to a multiple of 4)")
    p.add_argument("--eval", action="store_true", help="eval mode: running statistics, no dropout")
    p.add_argument("--plain", action="store_true", help="plain torch.nn networks instead of the fused ones")
    p.add_argument("--seed", type=int, default=0, help="seed of the dropout noise (training-mode networks)")
    p.add_argument("--inst", default=None, metavar="DIR",
                   help="pix2pixhd runs: instance maps named like the label maps (default: one per class region)")
    p.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_tiling_args(p)
    p.add_argument("--attrs", default=None, metavar="SPEC",
                   help='StarGAN run: target labels, e.g. "Black_Hair=1,Male=0" or a class such as "happy"; the '
                        "labels not named keep the discriminator's estimate of the input's own")
    p.add_argument("--grid", action="store_true",
                   help="StarGAN run: also write OUT/grid.png, each input and its every single-attribute change")
    p.set_defaults(func=run)


def _fail(err: BaseException) -> int:
    print(f"gancore translate: error: {err}", file=sys.stderr)
    return 2


def _reference_generator(state: dict, arch: str, fused: bool) -> nn.Module:
    """The reference network `arch`, shaped by the tensors of its state_dict, with the weights loaded strictly."""
    check_generator_name("--arch", arch)
    unet = arch.startswith("unet_")
    if arch == "auto":
        raise ConfigError("--arch: name the network of a reference checkpoint, e.g. resnet_9blocks or unet_256")
    # The first conv gives ngf and the input channels; the last (a ResNet's last conv, a U-Net's outermost
    # transposed conv, whose weight is (in, out, k, k)) the output channels.
    first = "model.model.0.weight" if unet else "model.1.weight"
    if first not in state:
        raise ConfigError(f"--arch={arch}: the file has no {first!r}, so it is not a {arch} generator "
                          f"(its first keys: {list(state)[:3]})")
    ngf, input_nc = state[first].shape[:2]
    if unet:
        output_nc = state["model.model.3.weight"].shape[1] if "model.model.3.weight" in state else input_nc
    else:
        last = max(int(k.split(".")[1]) for k in state if k.split(".")[1].isdigit())
        output_nc = state[f"model.{last}.weight"].shape[0]
    norm = "batch" if any(k.endswith("running_mean") for k in state) else "instance"
    g = build_generator(arch, int(input_nc), int(output_nc), int(ngf), norm, dropout=unet, fused=fused)
    try:
        g.load_state_dict(state, strict=True)
    except RuntimeError as err:
        details = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip())
        raise ckpt.CheckpointError(f"the file does not fit a {arch} generator ({norm} norm, ngf {ngf}): "
                                   f"{details[:400]}") from None
    return g


def _run_generator(state: dict, direction: str | None, fused: bool) -> tuple[nn.Module, str]:
    """The generator of a gancore checkpoint for `direction`, and a description."""
    from gancore.families import get_family
    from gancore.train.config import build_dataclass

    config = state["config"]
    family_cls = get_family(config["family"])
    if family_cls.name in SR_FAMILIES:
        return load_sr_generator(state, fused), f"{family_cls.name} G"
    if family_cls.name == "stargan":
        raise ConfigError("a stargan run translates to target labels: pass --attrs NAME=1,... or --grid")
    if family_cls.name not in ("pix2pix", "cyclegan"):
        raise ConfigError(f"the run is a {family_cls.name!r} run; translate needs a pix2pix or cyclegan run")
    model = dict(config["model"], fused=fused)
    family = family_cls(build_dataclass(family_cls.Config, model, "model"))
    nets = family.build(DataSpec.from_dict(state["data_spec"]))
    g = nets["G"].module
    g.load_state_dict(state["nets"]["G"])
    if family_cls.name == "pix2pix":
        if direction not in (None, family.config.direction):
            raise ConfigError(f"--direction {direction}: this pix2pix run translates {family.config.direction} only")
        return g, f"pix2pix G ({family.config.direction})"
    member = "G_A" if direction in (None, "AtoB") else "G_B"
    return getattr(g, member), f"cyclegan {member} ({direction or 'AtoB'})"


def load_generator(path: str, *, direction: str | None = None, arch: str = "resnet_9blocks",
                   fused: bool = True) -> tuple[nn.Module, str]:
    """(generator, description) from a run folder, a gancore checkpoint or a reference state_dict file."""
    if os.path.isdir(path):
        path, state = ckpt.load_latest(path)  # a run folder: its newest readable checkpoint
    elif not os.path.isfile(path):
        raise ckpt.CheckpointError(f"no such run folder or checkpoint file: {path!r}")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for corrupt or unsafe files
            raise ckpt.CheckpointError(f"cannot load {path!r}: {err}") from err
    if not isinstance(state, dict):
        raise ckpt.CheckpointError(f"{path!r} holds a {type(state).__name__}, not a checkpoint or a state_dict")
    if "config" in state and "nets" in state:
        return _run_generator(state, direction, fused)
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ckpt.CheckpointError(f"{path!r} is neither a gancore checkpoint nor a state_dict of tensors")
    if direction == "BtoA":
        raise ConfigError("--direction BtoA: a reference checkpoint file holds one generator; pass the file of "
                          "the other direction (latest_net_G_B.pth) instead")
    return _reference_generator(state, arch, fused), f"reference {arch} from {os.path.basename(path)}"


def _run_family(path: str) -> str | None:
    """The family of a gancore run folder (its config.yaml) or checkpoint file (memory-mapped), else None."""
    from gancore.train.config import load_config_file

    try:
        if os.path.isdir(path):
            return str(load_config_file(os.path.join(path, "config.yaml")).get("family"))
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return str(state["config"]["family"]) if isinstance(state, dict) and "config" in state else None
    except Exception:  # noqa: BLE001 - not a readable run: load_generator says why
        return None


def _prepare(path: str, size: int | None, channels: int) -> torch.Tensor:
    img = open_image(path, channels)
    if size is not None:
        img = img.resize((size, size), Image.BICUBIC)
    else:
        img = Preprocess("none", flip=False)(img, (0, 0, False))
    return to_tensor(img).unsqueeze(0)


def _save_png(image: torch.Tensor, path: str) -> None:
    arr = ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(path)


def translate_folder(generator: nn.Module, input_dir: str, out_dir: str, *, size: int | None = None,
                     eval_mode: bool = False, seed: int = 0, device: torch.device | str = "cpu",
                     progress: bool = True) -> list[str]:
    """Translate every image under `input_dir` into `out_dir`/<same relative name>.png; returns the paths."""
    from tqdm import tqdm

    files = find_images(require_dir(input_dir, "--input"))
    if not files:
        raise DataError(f"--input: no image files under {input_dir!r} (looked for .png, .jpg, .webp, ...)")
    channels = _input_channels(generator)
    if channels not in (1, 3):
        raise ConfigError(f"the generator takes {channels} input channels; translate reads 1- or 3-channel images")
    generator = generator.to(device).train(not eval_mode)
    torch.manual_seed(seed)
    written = []
    with torch.no_grad():
        for rel in tqdm(files, desc="translate", unit="img", disable=not progress, file=sys.stderr):
            x = _prepare(os.path.join(input_dir, rel), size, channels).to(device)
            try:
                y = generator(x)[0].float()
            except RuntimeError as err:
                raise ConfigError(f"{rel}: the generator cannot take a {x.shape[2]}x{x.shape[3]} image ({err}); "
                                  f"try --size 256") from None
            out = os.path.join(out_dir, os.path.splitext(rel)[0] + ".png")
            _save_png(y, out)
            written.append(out)
    return written


def _input_channels(generator: nn.Module) -> int:
    first = next(m for m in generator.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


def run(args: argparse.Namespace) -> int:
    from gancore.train.distributed import choose_device

    try:
        if args.size is not None and (args.size < 4 or args.size % 4):
            raise ConfigError(f"--size: must be a multiple of 4 (>= 4), got {args.size}")
        device = choose_device(args.device)
        if _run_family(args.model) == "pix2pixhd":  # label maps in, images out
            from gancore.families.pix2pixhd import translate_label_maps  # it imports this module

            written, what = translate_label_maps(args.model, args.input, args.out, inst_dir=args.inst,
                                                 width=args.size, fused=not args.plain, seed=args.seed,
                                                 device=device, progress=not args.no_progress)
        elif args.attrs is not None or args.grid:
            written, what = translate_labels(args.model, args.input, args.out, attrs=args.attrs, grid=args.grid,
                                             size=args.size, eval_mode=args.eval, seed=args.seed, device=device,
                                             fused=not args.plain, progress=not args.no_progress)
        else:
            generator, what = load_generator(args.model, direction=args.direction, arch=args.arch,
                                             fused=not args.plain)
            if isinstance(generator, SRResNet):
                written = translate_sr(generator, args, device)
            else:
                written = translate_folder(generator, args.input, args.out, size=args.size, eval_mode=args.eval,
                                           seed=args.seed, device=device, progress=not args.no_progress)
    except _USER_ERRORS as err:
        return _fail(err)
    print(f"translated {len(written)} image(s) with {what} into {args.out}")
    return 0



# -- StarGAN: translation to target labels ------------------------------------------------------------------


def load_stargan(path: str, *, fused: bool = True) -> tuple[Any, dict[str, nn.Module], str]:
    """(StarGAN family with its label layout, {"G", "D"} with the run's weights, checkpoint path) of a run."""
    from gancore.families import get_family
    from gancore.train.config import build_dataclass

    path, state = ckpt.load_run_or_checkpoint(path)
    config = state["config"]
    if get_family(config["family"]).name != "stargan":
        raise ConfigError(f"--attrs / --grid translate to labels with a stargan run; {path!r} is a "
                          f"{config['family']!r} run")
    family_cls = get_family("stargan")
    family = family_cls(build_dataclass(family_cls.Config, dict(config["model"], fused=fused), "model"))
    family.load_state_dict(state.get("family", {}))
    nets = {}
    for name, network in family.build(DataSpec.from_dict(state["data_spec"])).items():
        network.module.load_state_dict(state["nets"][name])
        nets[name] = network.module
    return family, nets, path


def translate_labels(path: str, input_dir: str, out_dir: str, *, attrs: str | None = None, grid: bool = False,
                     size: int | None = None, eval_mode: bool = False, seed: int = 0,
                     device: torch.device | str = "cpu", fused: bool = True, progress: bool = True
                     ) -> tuple[list[str], str]:
    """Translate every image under `input_dir` with the StarGAN run `path` to the labels `attrs` (each image's
    own labels, as D estimates them, with the named ones set), into `out_dir`/<same name>.png; with `grid`,
    also `out_dir`/grid.png: a row per image of [input, every single-attribute change]. Images are resized
    and centre-cropped to the model's resolution. Returns the written paths and a description."""
    from tqdm import tqdm

    from gancore.data.imageio import resize_center_crop

    family, nets, path = load_stargan(path, fused=fused)
    layout, resolution = family.layout, family.config.resolution
    if size is not None and size != resolution:
        raise ConfigError(f"--size: a stargan model translates {resolution}x{resolution} images (its "
                          f"discriminator estimates their labels at that size), got {size}")
    picks, target_set = layout.parse_targets(attrs) if attrs is not None else ({}, 0)
    files = find_images(require_dir(input_dir, "--input"))
    if not files:
        raise DataError(f"--input: no image files under {input_dir!r} (looked for .png, .jpg, .webp, ...)")
    for net in nets.values():
        net.to(device).train(not eval_mode)
    torch.manual_seed(seed)
    written, rows = [], []
    with torch.no_grad():
        for rel in tqdm(files, desc="translate", unit="img", disable=not progress, file=sys.stderr):
            image = resize_center_crop(open_image(os.path.join(input_dir, rel), 3), resolution)
            x = to_tensor(image).unsqueeze(0).to(device)
            if grid:
                columns, row = family.translations(nets, x, train_mode=not eval_mode)
                rows.append(row[0])
            if attrs is None:
                continue
            target = layout.estimate(nets["D"](x)[1])
            for column, value in picks.items():
                target[:, column] = value
            which = torch.full((1,), target_set, dtype=torch.long, device=device)
            y = nets["G"](x, layout.generator_input(target, which))[0].float()
            out = os.path.join(out_dir, os.path.splitext(rel)[0] + ".png")
            _save_png(y, out)
            written.append(out)
    if grid:
        os.makedirs(out_dir, exist_ok=True)
        grid_path = os.path.join(out_dir, "grid.png")
        save_image_grid(torch.cat(rows).float(), grid_path, cols=len(columns))
        written.append(grid_path)
    what = f"stargan G of {path}" + (f" (grid columns: {', '.join(columns)})" if grid else "")
    return written, what
