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
import re
import sys
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from gancore.data.attributes import LabelSet
from gancore.data.base import DataError
from gancore.data.imageio import find_images, open_image, require_dir, to_tensor
from gancore.data.paired import Preprocess
from gancore.errors import ConfigError
from gancore.families.base import DataSpec
from gancore.families.pix2pix import DIRECTIONS, build_generator, check_generator_name
from gancore.families.srgan import SR_FAMILIES, load_sr_generator
from gancore.families.stargan import LabelLayout, translation_grid
from gancore.models.srgan import SRResNet
from gancore.models.stargan import StarGANDiscriminator, StarGANGenerator
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
                   help='StarGAN run or yunjey/stargan N-G.ckpt: target labels, e.g. "Black_Hair=1,Male=0" or a '
                        "class such as happy; the labels not named keep the input's own (D's estimate, or "
                        "--source-attrs)")
    p.add_argument("--grid", action="store_true",
                   help="StarGAN run: also write OUT/grid.png, each input and its every single-attribute change")
    p.add_argument("--selected-attrs", default=None, metavar="NAMES",
                   help="yunjey/stargan N-G.ckpt: its binary attributes in training order (default: "
                        + ",".join(CELEBA_DEFAULT_ATTRS) + ")")
    p.add_argument("--classes", default=None, metavar="NAMES",
                   help="yunjey/stargan N-G.ckpt: its classes in order (RaFD: angry,contemptuous,...); with "
                        "--selected-attrs, the joint CelebA + RaFD model")
    p.add_argument("--source-attrs", default=None, metavar="SPEC",
                   help="StarGAN: the inputs' own labels, as --attrs (unnamed ones 0), instead of D's estimate; "
                        "needed by a N-G.ckpt without its N-D.ckpt beside it")
    p.set_defaults(func=run)


def _fail(err: BaseException) -> int:
    print(f"gancore translate: error: {err}", file=sys.stderr)
    return 2


def _reference_generator(state: dict, arch: str, fused: bool, path: str) -> nn.Module:
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
    return _load_strictly(g, state, f"{arch} generator ({norm} norm, ngf {ngf})", path)


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
        state = _load_file(path)
    if isinstance(state, dict) and "config" in state and "nets" in state:
        return _run_generator(state, direction, fused)
    state = _check_state_dict(state, path)
    if direction == "BtoA":
        raise ConfigError("--direction BtoA: a reference checkpoint file holds one generator; pass the file of "
                          "the other direction (latest_net_G_B.pth) instead")
    return _reference_generator(state, arch, fused, path), f"reference {arch} from {os.path.basename(path)}"


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
                                             fused=not args.plain, progress=not args.no_progress,
                                             selected_attrs=_names(args.selected_attrs),
                                             classes=_names(args.classes), source_attrs=args.source_attrs)
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

#: The attributes of yunjey/stargan's CelebA default (its --selected_attrs), for its bare .ckpt files.
CELEBA_DEFAULT_ATTRS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")
#: The reference's default image size (image_size 128), for a bare G checkpoint without its D.
REFERENCE_IMAGE_SIZE = 128


@dataclass
class StarGANModel:
    """What StarGAN translation needs: the label layout, the networks ("G", and "D" to estimate an input's
    own labels when there is one), the resolution (None: any size, multiple of 4) and a description."""

    layout: LabelLayout
    nets: dict[str, nn.Module]
    resolution: int | None
    description: str


def _load_run_stargan(path: str, fused: bool) -> StarGANModel:
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
    return StarGANModel(family.layout, nets, family.config.resolution, f"stargan G of {path}")


def _load_file(path: str) -> object:
    """torch.load of a checkpoint or state_dict file, weights only; a file torch cannot read is one clear error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ckpt.CheckpointError(f"cannot load {path!r}: {first_line[:200]}") from None


def _check_state_dict(state: object, path: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ckpt.CheckpointError(f"{path!r} is neither a gancore checkpoint nor a state_dict of tensors")
    return state


def _load_strictly(net: nn.Module, state: dict, what: str, path: str) -> nn.Module:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        details = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip())
        raise ckpt.CheckpointError(f"{path!r} does not fit a {what}: {details[:400]}") from None
    return net


def _reference_stargan_g(state: dict, path: str, fused: bool) -> StarGANGenerator:
    """yunjey/stargan's Generator, shaped by its state_dict: conv_dim and c_dim from the first conv
    (conv_dim, 3 + c_dim, 7, 7), repeat_num from the residual blocks' keys."""
    first = state.get("main.0.weight")
    if first is None or first.dim() != 4 or first.shape[1] <= 3 or first.shape[2:] != (7, 7):
        raise ckpt.CheckpointError(f"{path!r} is not a StarGAN generator checkpoint (yunjey/stargan's "
                                   f"N-G.ckpt: no 7x7 'main.0.weight' taking 3 + c_dim channels; its first keys: "
                                   f"{list(state)[:3]})")
    conv_dim, c_dim = int(first.shape[0]), int(first.shape[1]) - 3
    repeat_num = len({k.split(".")[1] for k in state if k.startswith("main.") and ".main." in k})
    g = StarGANGenerator(conv_dim, c_dim, repeat_num, fused=fused)
    return _load_strictly(g, state, f"StarGAN generator (conv_dim {conv_dim}, c_dim {c_dim}, repeat_num "
                                    f"{repeat_num})", path)


def _reference_stargan_d(state: dict, path: str, fused: bool) -> tuple[StarGANDiscriminator, int]:
    """yunjey/stargan's Discriminator, shaped by its state_dict: conv_dim from the first conv, repeat_num
    from the convs of `main`, c_dim and image_size (= kernel * 2**repeat_num) from the classification head."""
    first, head = state.get("main.0.weight"), state.get("conv2.weight")
    if first is None or head is None or first.dim() != 4 or head.dim() != 4:
        raise ckpt.CheckpointError(f"{path!r} is not a StarGAN discriminator checkpoint (yunjey/stargan's "
                                   f"N-D.ckpt: no 'main.0.weight' and 'conv2.weight'; its first keys: "
                                   f"{list(state)[:3]})")
    repeat_num = sum(1 for k in state if k.startswith("main.") and k.endswith(".weight"))
    image_size = int(head.shape[-1]) * 2 ** repeat_num
    d = StarGANDiscriminator(image_size, int(first.shape[0]), int(head.shape[0]), repeat_num, fused=fused)
    return _load_strictly(d, state, f"StarGAN discriminator (image_size {image_size}, c_dim {head.shape[0]}, "
                                    f"repeat_num {repeat_num})", path), image_size


def reference_layout(selected_attrs: list[str] | None, classes: list[str] | None) -> LabelLayout:
    """The label sets of a yunjey/stargan model: binary CelebA attributes (--selected-attrs, default its five)
    and / or RaFD classes (--classes); both make the joint model, CelebA first, as the reference's."""
    for flag, names in (("--selected-attrs", selected_attrs), ("--classes", classes)):
        if names is not None and (not all(names) or len(set(names)) != len(names)):
            raise ConfigError(f"{flag}: the names must be non-empty and unique, got {', '.join(names)!r}")
    sets = []
    if selected_attrs or not classes:
        sets.append(LabelSet("bce", tuple(selected_attrs or CELEBA_DEFAULT_ATTRS)))
    if classes:
        sets.append(LabelSet("ce", tuple(classes)))
    return LabelLayout(sets)


def _reference_d_path(g_path: str) -> str | None:
    """yunjey/stargan saves `N-D.ckpt` next to `N-G.ckpt`."""
    d_path = re.sub(r"-G(\.[^./\\]+)$", r"-D\1", g_path)
    return d_path if d_path != g_path and os.path.isfile(d_path) else None


def _load_reference_stargan(path: str, fused: bool, selected_attrs: list[str] | None, classes: list[str] | None,
                            size: int | None) -> StarGANModel:
    layout = reference_layout(selected_attrs, classes)
    g = _reference_stargan_g(_check_state_dict(_load_file(path), path), path, fused)
    names = " + ".join(f"{len(s.names)} ({', '.join(s.names)})" for s in layout.sets)
    flags = "--selected-attrs / --classes" if layout.masked else ("--classes" if classes else "--selected-attrs")
    if g.c_dim != layout.g_dim:
        mask = f" + {len(layout.sets)} mask" if layout.masked else ""
        raise ConfigError(f"{flags}: the generator takes c_dim {g.c_dim} labels, the names give {names}{mask}; "
                          f"name the labels the model was trained on, in order (the reference's --selected_attrs)")
    nets: dict[str, nn.Module] = {"G": g}
    what = f"reference StarGAN G from {os.path.basename(path)}"
    d_path = _reference_d_path(path)
    resolution = size
    if d_path is not None:
        d, image_size = _reference_stargan_d(_check_state_dict(_load_file(d_path), d_path), d_path, fused)
        if d.conv2.out_channels != layout.d_dim:
            raise ConfigError(f"{flags}: the discriminator {os.path.basename(d_path)} classifies "
                              f"{d.conv2.out_channels} labels, the names give {names}")
        if size is not None and size != image_size:
            raise ConfigError(f"--size: the discriminator {os.path.basename(d_path)} estimates labels of "
                              f"{image_size}x{image_size} images, got {size}")
        nets["D"], resolution = d, image_size
        what += f" (input labels estimated by {os.path.basename(d_path)})"
    return StarGANModel(layout, nets, resolution or REFERENCE_IMAGE_SIZE, what)


def load_stargan(path: str, *, fused: bool = True, selected_attrs: list[str] | None = None,
                 classes: list[str] | None = None, size: int | None = None) -> StarGANModel:
    """A StarGAN run (folder or checkpoint), or yunjey/stargan's `N-G.ckpt` (a bare state_dict; shaped by its
    tensors, labels named by `selected_attrs` / `classes`, with `N-D.ckpt` beside it as D when it is there)."""
    if os.path.isfile(path) and _run_family(path) is None:
        return _load_reference_stargan(path, fused, selected_attrs, classes, size)
    if selected_attrs or classes:
        raise ConfigError("--selected-attrs / --classes: a stargan run knows its labels; name them for "
                          "yunjey/stargan .ckpt files only")
    model = _load_run_stargan(path, fused)
    if size is not None and size != model.resolution:
        raise ConfigError(f"--size: a stargan model translates {model.resolution}x{model.resolution} images (its "
                          f"discriminator estimates their labels at that size), got {size}")
    return model


def _names(spec: str | None) -> list[str] | None:
    return None if spec is None else [n.strip() for n in spec.split(",")]


def translate_labels(path: str, input_dir: str, out_dir: str, *, attrs: str | None = None, grid: bool = False,
                     size: int | None = None, eval_mode: bool = False, seed: int = 0,
                     device: torch.device | str = "cpu", fused: bool = True, progress: bool = True,
                     selected_attrs: list[str] | None = None, classes: list[str] | None = None,
                     source_attrs: str | None = None) -> tuple[list[str], str]:
    """Translate every image under `input_dir` with the StarGAN model `path` (see load_stargan) to the labels
    `attrs`: each image's own labels with the named ones set, into `out_dir`/<same name>.png; with `grid`,
    also `out_dir`/grid.png: a row per image of [input, every single-attribute change]. The own labels are
    `source_attrs` (the same for every image, unnamed ones 0) when given, else D's estimate; a bare G
    checkpoint without its D needs `source_attrs` unless `attrs` names every label of its set. Images are
    resized and centre-cropped to the model's resolution. Returns the written paths and a description."""
    from tqdm import tqdm

    from gancore.data.imageio import resize_center_crop

    model = load_stargan(path, fused=fused, selected_attrs=selected_attrs, classes=classes, size=size)
    layout, nets, resolution = model.layout, model.nets, model.resolution
    picks, target_set = layout.parse_targets(attrs) if attrs is not None else ({}, 0)
    source = None  # the own labels of every input, when D does not estimate them
    if source_attrs is not None:
        source = torch.zeros(1, layout.d_dim)
        for column, value in layout.parse_targets(source_attrs, flag="--source-attrs")[0].items():
            source[:, column] = value
    elif "D" not in nets:
        source = torch.zeros(1, layout.d_dim)  # only right when --attrs overwrites the whole set
        named_all = set(range(layout.slices[target_set].start, layout.slices[target_set].stop)) <= set(picks)
        if grid or not named_all:
            raise ConfigError("--source-attrs: a StarGAN G without its D (no -D.ckpt beside it) cannot estimate "
                              "the input's own labels; give them, e.g. --source-attrs \"Black_Hair=1,Young=1\" "
                              "(unnamed ones 0), or name every label in --attrs")
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
            own = source.to(device) if source is not None else layout.estimate(nets["D"](x)[1])
            if grid:
                columns, row = translation_grid(layout, nets["G"], x, own, train_mode=not eval_mode)
                rows.append(row[0])
            if attrs is None:
                continue
            target = own.clone()
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
    what = model.description + (f" (grid columns: {', '.join(columns)})" if grid else "")
    return written, what
