"""pix2pixHD (Wang et al., 2018): high-resolution image synthesis from semantic label maps.

G's input is the one-hot label map (label_nc classes; label_nc=0 takes an RGB image instead), with the
instance-boundary edge map when the data has instance maps, and optionally the instance-wise features of
the Encoder E (instance_feat: pooled per instance; label_feat: per class region). The multi-scale
PatchGAN D sees cat(G's input without the features, image). G minimises the GAN loss (LSGAN by default,
or BCE on logits) summed over D's scales, + lambda_feat * the feature-matching loss on every D layer
(weights 4 / (n_layers + 1) and 1 / num_D), + lambda_vgg * the VGG19 perceptual loss (relu1_1..relu5_1,
weights 1/32..1) when model.vgg_weights names a torchvision vgg19 file. D minimises half the GAN loss on
real and fake. Adam(2e-4, 0.5, 0.999) for G (with E) and D; the rate is constant for n_epochs and falls
linearly to 0 over n_epochs_decay, as NVIDIA/pix2pixHD's update_learning_rate.

Phases in the reference order: G first, then D on the fakes G just made (one G forward per step).
Coarse to fine: train netG=global, then netG=local with load_pretrain=<the global run>; for the first
niter_fix_global epochs the global part receives zero gradients (its weights stay bit-identical, and Adam
keeps no momentum for them), then all train jointly. checkpoint_activations recomputes every stage of G
(and E) and every scale of D in the backward pass instead of storing their activations
(torch.utils.checkpoint over the fused stages; gancore.models.pix2pixhd).

At test time, feature models pick each instance's feature from k-means clusters of the encoded training
features of its class (cluster_features / sample_features), as the paper's interactive editing does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gancore.families import register_family
from gancore.families.base import (
    BenchCase,
    ConfigError,
    DataSpec,
    Family,
    Network,
    Phase,
    PhaseContext,
    check_choice,
    check_positive,
)
from gancore.losses_perceptual import VGGLoss, feature_matching_loss
from gancore.models.pix2pixhd import (
    NORMS,
    Encoder,
    GlobalGenerator,
    LocalEnhancer,
    MultiscaleDiscriminator,
)

GAN_MODES = ("lsgan", "vanilla")
NET_G = ("global", "local")


def linear_decay(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """pix2pixHD's schedule by 0-based epoch: 1 for n_epochs epochs, then 1 - k / n_epochs_decay in the k-th
    epoch after them (the reference subtracts lr / niter_decay after each), 0 once the decay is over."""
    k = epoch - n_epochs
    if k < 0:
        return 1.0
    return max(0.0, 1.0 - k / n_epochs_decay) if n_epochs_decay else 0.0


def edge_map(inst: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) instance ids -> float map with 1 where a pixel's 4-neighbour has another id (both sides)."""
    edge = torch.zeros(inst.shape, dtype=torch.bool, device=inst.device)
    horizontal = inst[..., 1:] != inst[..., :-1]
    vertical = inst[..., 1:, :] != inst[..., :-1, :]
    edge[..., 1:] |= horizontal
    edge[..., :-1] |= horizontal
    edge[..., 1:, :] |= vertical
    edge[..., :-1, :] |= vertical
    return edge.float()


def instance_class(instance: int) -> int:
    """Cityscapes' convention: an instance id >= 1000 is class * 1000 + k, a smaller one is the class itself."""
    return instance // 1000 if instance >= 1000 else instance


# -- instance features: the encoder, clusters ---------------------------------------------------------------

class EncodedGenerator(nn.Module):
    """G with its feature encoder, optimised together (the reference adds netE's parameters to G's Adam).
    Keys: netG.* (latest_net_G.pth's) and netE.* (latest_net_E.pth's)."""

    def __init__(self, netG: nn.Module, netE: Encoder) -> None:
        super().__init__()
        self.netG, self.netE = netG, netE

    def forward(self, x: torch.Tensor, image: torch.Tensor, pool_map: torch.Tensor) -> torch.Tensor:
        """G(cat(x, E(image) averaged inside each region of pool_map))."""
        features = self.netE(image, pool_map)
        return self.netG(torch.cat([x, features.to(x.dtype)], 1))


def kmeans(points: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 50) -> torch.Tensor:
    """(min(k, n), d) centres of Lloyd's k-means on (n, d) points, seeded by k-means++; an emptied cluster
    restarts at the point farthest from its centre."""
    points = points.double()
    n = points.shape[0]
    k = min(k, n)
    centres = points[torch.randint(n, (1,), generator=generator)]
    while centres.shape[0] < k:
        d2 = torch.cdist(points, centres).min(1).values.square()
        pick = torch.multinomial(d2 / d2.sum(), 1, generator=generator) if d2.sum() > 0 else \
            torch.randint(n, (1,), generator=generator)
        centres = torch.cat([centres, points[pick]])
    for _ in range(iterations):
        distances = torch.cdist(points, centres)
        assign = distances.argmin(1)
        counts = torch.bincount(assign, minlength=k)
        updated = torch.zeros_like(centres).index_add_(0, assign, points) / counts.clamp_min(1)[:, None]
        far = distances.min(1).values.argmax()
        updated[counts == 0] = points[far]
        if torch.equal(updated, centres):
            break
        centres = updated
    return centres.float()


def instance_features(features: torch.Tensor, pool_map: torch.Tensor, min_fraction: float = 1 / 64
                      ) -> dict[int, torch.Tensor]:
    """class -> (m, C) features of the instances of one encoded image (features (C, H, W) constant per
    instance, pool_map (1, H, W) ids), keeping instances larger than min_fraction of the image (the
    reference keeps those above half of 1/32)."""
    ids = pool_map.reshape(-1).long()
    flat = features.reshape(features.shape[0], -1)
    out: dict[int, list[torch.Tensor]] = {}
    unique, first, counts = _first_index(ids)
    for instance, index, count in zip(unique.tolist(), first.tolist(), counts.tolist()):
        if count > min_fraction * ids.numel():
            out.setdefault(instance_class(instance), []).append(flat[:, index])
    return {c: torch.stack(v) for c, v in out.items()}


def _first_index(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    unique, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    positions = torch.arange(ids.numel(), device=ids.device)
    first = torch.full((unique.numel(),), ids.numel(), dtype=torch.long, device=ids.device)
    first.scatter_reduce_(0, inverse, positions, reduce="amin")
    return unique, first, counts


def cluster_features(features_per_image: list[dict[int, torch.Tensor]], n_clusters: int,
                     generator: torch.Generator) -> dict[int, torch.Tensor]:
    """class -> (<= n_clusters, C) k-means centres of that class's instance features over all images."""
    by_class: dict[int, list[torch.Tensor]] = {}
    for image in features_per_image:
        for c, f in image.items():
            by_class.setdefault(c, []).append(f.detach().cpu())
    return {c: kmeans(torch.cat(v), n_clusters, generator) for c, v in sorted(by_class.items())}


def sample_features(clusters: Mapping[int, torch.Tensor], pool_map: torch.Tensor, feat_num: int,
                    generator: torch.Generator) -> torch.Tensor:
    """(N, feat_num, H, W): each instance of pool_map (N, 1, H, W) filled with a random cluster centre of its
    class (the reference's sample_features); instances of classes without clusters get zeros."""
    n, _, h, w = pool_map.shape
    out = torch.zeros(n, feat_num, h, w)
    ids = pool_map.cpu().long()
    for b in range(n):
        for instance in torch.unique(ids[b]).tolist():
            centres = clusters.get(instance_class(instance))
            if centres is None:
                continue
            pick = centres[int(torch.randint(centres.shape[0], (1,), generator=generator))]
            mask = ids[b, 0] == instance
            out[b][:, mask] = pick[:, None]
    return out.to(pool_map.device)


# -- the family ---------------------------------------------------------------------------------------------

@dataclass
class Pix2PixHDConfig:
    netG: str = "global"  # global (G1; the paper's 1024x512) or local (G1 + local enhancer; 2048x1024)
    label_nc: int = 35  # classes of the label maps (Cityscapes: 35); 0: the input is an RGB image
    output_nc: int = 3
    ngf: int = 64  # the reference trains global at 64 and local at 32 (its global part then has 64)
    n_downsample_global: int = 4
    n_blocks_global: int = 9
    n_local_enhancers: int = 1
    n_blocks_local: int = 3
    norm: str = "instance"
    no_instance: bool = False  # ignore the data's instance maps (no edge map)
    instance_feat: bool = False  # concatenate E's features pooled per instance
    label_feat: bool = False  # ... pooled per class region
    feat_num: int = 3
    nef: int = 16
    n_downsample_E: int = 4
    n_clusters: int = 10  # k-means centres per class for test-time feature picking
    ndf: int = 64
    n_layers_D: int = 3
    num_D: int = 2
    gan_mode: str = "lsgan"  # lsgan (the reference's default) or vanilla (BCE with logits)
    feat_loss: bool = True  # D's feature-matching loss (the reference's not no_ganFeat_loss)
    lambda_feat: float = 10.0
    vgg_weights: str = ""  # torchvision vgg19 state_dict file for the VGG loss; empty: no VGG loss
    lambda_vgg: float = 10.0
    lr: float = 2e-4
    beta1: float = 0.5
    n_epochs: int = 100  # niter: epochs at the initial rate
    n_epochs_decay: int = 100  # niter_decay: epochs of linear decay to 0
    niter_fix_global: int = 0  # netG=local: epochs with the global part frozen
    load_pretrain: str = ""  # a run folder or checkpoint (or a reference latest_net_G.pth) to start G from
    checkpoint_activations: bool = False  # recompute G's stages and D's scales in backward (less memory)
    fused: bool = True  # gancore's fused ops; false builds the same networks from plain torch.nn

    def __post_init__(self) -> None:
        check_choice("model.netG", self.netG, NET_G)
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.gan_mode", self.gan_mode, GAN_MODES)
        check_positive("model.label_nc", self.label_nc, 0)
        for key in ("output_nc", "ngf", "n_downsample_global", "n_local_enhancers", "feat_num", "nef",
                    "n_downsample_E", "n_clusters", "ndf", "n_layers_D", "num_D"):
            check_positive(f"model.{key}", getattr(self, key))
        for key in ("n_blocks_global", "n_blocks_local", "lambda_feat", "lambda_vgg", "n_epochs", "n_epochs_decay",
                    "niter_fix_global"):
            check_positive(f"model.{key}", getattr(self, key), 0)
        check_positive("model.lr", self.lr, 1e-12)
        if not 0.0 <= self.beta1 < 1.0:
            raise ConfigError(f"model.beta1: must be in [0, 1), got {self.beta1}")
        if self.niter_fix_global and self.netG != "local":
            raise ConfigError("model.niter_fix_global: freezes the global part of netG=local; set model.netG=local "
                              "or leave it 0")

    @property
    def use_features(self) -> bool:
        return self.instance_feat or self.label_feat

    @property
    def downsampling(self) -> int:
        """The factor every image side must be a multiple of."""
        return 2 ** (self.n_downsample_global + (self.n_local_enhancers if self.netG == "local" else 0))


def build_generator(c: Pix2PixHDConfig, input_nc: int) -> nn.Module:
    if c.netG == "global":
        return GlobalGenerator(input_nc, c.output_nc, c.ngf, c.n_downsample_global, c.n_blocks_global, c.norm,
                               fused=c.fused, checkpoint_activations=c.checkpoint_activations)
    return LocalEnhancer(input_nc, c.output_nc, c.ngf, c.n_downsample_global, c.n_blocks_global,
                         c.n_local_enhancers, c.n_blocks_local, c.norm, fused=c.fused,
                         checkpoint_activations=c.checkpoint_activations)


def _plain_generator(g: nn.Module) -> nn.Module:
    return g.netG if isinstance(g, EncodedGenerator) else g


@register_family
class Pix2PixHD(Family):
    name = "pix2pixhd"
    summary = ("pix2pixHD (Wang et al. 2018): label maps -> photos, global/local G, multi-scale D, LSGAN + "
               "feature matching + VGG, instance maps and features")
    Config = Pix2PixHDConfig
    default_data = {"name": "label-scenes", "width": 256, "height": 128}
    path_data = "label-folders"
    default_train = {"batch_size": 1}
    bench_cases = {"full": BenchCase("512x256", ("data.width=512", "data.height=256"), (1,)),
                   "quick": BenchCase("64x32", ("data.width=64", "data.height=32", "model.label_nc=8",
                                                "model.ngf=8", "model.ndf=8", "model.n_downsample_global=2",
                                                "model.n_blocks_global=2"), (1, 2))}

    def __init__(self, config: Pix2PixHDConfig) -> None:
        super().__init__(config)
        self.epoch = 0
        #: Whether G's input has the instance edge map: the config's choice, and the data must have them.
        self.use_instance = not config.no_instance
        self.vgg: VGGLoss | None = None
        self.clusters: dict[int, torch.Tensor] = {}
        self._fakes: list[tuple[torch.Tensor, torch.Tensor]] = []  # (D's input label, fake) per G round

    def data_hints(self) -> dict:
        return {"label_nc": self.config.label_nc, "instances": not self.config.no_instance,
                "multiple": self.config.downsampling}

    def lr_factor(self, epoch: int) -> float:
        # The trainer asks for the factor of the current epoch before every step's phases: the family
        # keeps it to know whether the global generator is frozen.
        self.epoch = epoch
        return linear_decay(epoch, self.config.n_epochs, self.config.n_epochs_decay)

    @property
    def global_frozen(self) -> bool:
        return self.config.netG == "local" and self.epoch < self.config.niter_fix_global

    # -- networks ---------------------------------------------------------------------------------------------

    def _check_data(self, spec: DataSpec) -> None:
        c = self.config
        if spec.key != "image" or len(spec.shape) != 3 or spec.shape[0] != c.output_nc:
            raise ConfigError(f"pix2pixhd learns {c.output_nc}-channel images under 'image', the data gives "
                              f"{tuple(spec.shape)} under {spec.key!r}: use label-scenes or label-folders data")
        h, w = spec.shape[1:]
        if h % c.downsampling or w % c.downsampling:
            raise ConfigError(f"pix2pixhd: image sides must be multiples of {c.downsampling} for netG={c.netG} "
                              f"with these downsamplings, the data gives {w}x{h}")
        if self.dataset is not None:
            first = self.dataset[0]
            if "label" not in first:
                raise ConfigError(f"pix2pixhd needs label maps under 'label'; the samples have {sorted(first)}")
            want = (1, h, w) if c.label_nc else (3, h, w)
            if tuple(first["label"].shape) != want:
                raise ConfigError(f"pix2pixhd with model.label_nc={c.label_nc} needs label maps of shape {want}, "
                                  f"the data gives {tuple(first['label'].shape)}")
            self.use_instance = not c.no_instance and "inst" in first
            if c.instance_feat and "inst" not in first:
                raise ConfigError("model.instance_feat needs instance maps ('inst') in the data")

    def input_channels(self) -> tuple[int, int]:
        """(G's input channels, D's input channels)."""
        c = self.config
        label = (c.label_nc or 3) + (1 if self.use_instance else 0)
        return label + (c.feat_num if c.use_features else 0), label + c.output_nc

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        self.spec = spec
        self._check_data(spec)
        g_in, d_in = self.input_channels()
        g = build_generator(c, g_in)
        if c.load_pretrain:
            load_pretrained_generator(g, c.load_pretrain)
        if c.niter_fix_global:
            for p in g.model.parameters():
                p.register_hook(self._mask_global_gradient)
        if c.use_features:
            g = EncodedGenerator(g, Encoder(c.output_nc, c.feat_num, c.nef, c.n_downsample_E, c.norm, fused=c.fused,
                                            checkpoint_activations=c.checkpoint_activations))
        d = MultiscaleDiscriminator(d_in, c.ndf, c.n_layers_D, c.num_D, c.feat_loss, c.norm, fused=c.fused,
                                    checkpoint_activations=c.checkpoint_activations)
        if c.vgg_weights:
            self.vgg = VGGLoss(c.vgg_weights)
        betas = (c.beta1, 0.999)
        return {"G": Network(g, lr=c.lr, betas=betas), "D": Network(d, lr=c.lr, betas=betas)}

    def _mask_global_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        # A zero gradient with no Adam history is a zero update: the frozen weights stay bit-identical,
        # and the hook (unlike requires_grad) works under DDP, whose reducer expects every gradient.
        return torch.zeros_like(grad) if self.global_frozen else grad

    def phases(self) -> list[Phase]:
        return [Phase("G", "G", self.loss_g), Phase("D", "D", self.loss_d)]

    # -- inputs -----------------------------------------------------------------------------------------------

    def encode_label(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """D's label input: the one-hot label map (or the RGB input), with the edge map of the instances."""
        c = self.config
        label = batch["label"]
        if c.label_nc:
            ids = label.long()
            if int(ids.max()) >= c.label_nc or int(ids.min()) < 0:
                raise ConfigError(f"model.label_nc={c.label_nc}: the label maps hold class ids in "
                                  f"[{int(ids.min())}, {int(ids.max())}]")
            x = torch.zeros(ids.shape[0], c.label_nc, *ids.shape[2:], device=ids.device)
            x.scatter_(1, ids, 1.0)
        else:
            x = label.float()
        if self.use_instance:
            x = torch.cat([x, edge_map(batch["inst"])], 1)
        if batch["image"].is_contiguous(memory_format=torch.channels_last):  # the trainer's layout
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _pool_map(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return batch["label"] if self.config.label_feat else batch["inst"]

    def _generate_fake(self, g: nn.Module, label: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.config.use_features:
            return g(label, batch["image"], self._pool_map(batch))
        return g(label)

    # -- losses -----------------------------------------------------------------------------------------------

    def _gan_loss(self, outputs: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
        """The reference GANLoss over scales: the sum of each scale's mean loss of its logits."""
        total = 0.0
        for scale in outputs:
            logits = scale[-1].to(torch.promote_types(scale[-1].dtype, torch.float32))  # bf16 -> fp32
            target = torch.full_like(logits, float(real))
            total = total + (F.mse_loss(logits, target) if self.config.gan_mode == "lsgan"
                             else F.binary_cross_entropy_with_logits(logits, target))
        return total

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        c = self.config
        real = ctx.batch["image"]
        label = self.encode_label(ctx.batch)
        fake = self._generate_fake(ctx.nets["G"], label, ctx.batch)
        d = ctx.nets["D"]
        pred_fake = d([label, fake.to(label.dtype)])  # D concatenates (inside its checkpoint segments)
        out = {"gan": self._gan_loss(pred_fake, True)}
        if c.feat_loss and c.lambda_feat:
            with torch.no_grad():
                pred_real = d([label, real])
            out["feat"] = feature_matching_loss(pred_fake, pred_real, c.n_layers_D) * c.lambda_feat
            del pred_real  # the losses keep what their backward needs; the lists need not outlive the VGG pass
        del pred_fake
        if self.vgg is not None and c.lambda_vgg:
            self.vgg.to(real.device)
            out["vgg"] = self.vgg(fake, real) * c.lambda_vgg
        out["L1"] = F.l1_loss(fake.detach().float(), real.float())  # logged only: how close G gets
        self._fakes.append((label, fake.detach()))
        loss = sum(v for k, v in out.items() if k != "L1")
        return {"loss": loss, **{k: v.detach() for k, v in out.items()}}

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        if not self._fakes:
            raise RuntimeError("pix2pixhd: the D phase runs on the fakes of the G phase, which has not run")
        label, fake = self._fakes.pop(0)
        d = ctx.nets["D"]
        loss_fake = self._gan_loss(d([label, fake.to(label.dtype)]), False)
        loss_real = self._gan_loss(d([label, ctx.batch["image"]]), True)
        return {"loss": 0.5 * (loss_fake + loss_real), "real": loss_real.detach(), "fake": loss_fake.detach()}

    # -- samples ----------------------------------------------------------------------------------------------

    def make_latents(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """n inputs drawn from the training data: G's label input, and for feature models also the pooling
        map and the real image (generate encodes the features of the real image, as the reference's training
        visuals do)."""
        if self.dataset is None:
            raise ConfigError("pix2pixhd translates label maps, so its samples need inputs: use "
                              "`gancore translate RUN --input LABEL_DIR --out DIR`")
        picks = torch.randint(len(self.dataset), (n,), generator=generator, device=generator.device).tolist()
        samples = [self.dataset[i] for i in picks]
        batch = {k: torch.stack([s[k] for s in samples]).to(device) for k in samples[0]}
        label = self.encode_label(batch)
        if not self.config.use_features:
            return label
        return torch.cat([label, self._pool_map(batch).float(), batch["image"]], 1)

    def generate(self, nets: Mapping[str, nn.Module], latents: torch.Tensor) -> torch.Tensor:
        g = nets["G"]
        if not self.config.use_features:
            return g(latents)
        k = latents.shape[1] - self.config.output_nc - 1
        return g(latents[:, :k], latents[:, k + 1:], latents[:, k:k + 1].round().long())

    def state_dict(self) -> dict:
        return {"clusters": dict(self.clusters)}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        self.clusters = dict(state.get("clusters", {}))

    @torch.no_grad()
    def fit_clusters(self, encoder: Encoder, dataset: object, max_images: int = 200, seed: int = 0
                     ) -> dict[int, torch.Tensor]:
        """k-means centres per class of E's instance features over (up to max_images of) `dataset`."""
        device = next(encoder.parameters()).device
        encoder = encoder.eval()
        per_image = []
        for i in range(min(len(dataset), max_images)):
            sample = dataset[i]
            pool = (sample["label"] if self.config.label_feat else sample["inst"])[None].to(device)
            features = encoder(sample["image"][None].to(device), pool)[0]
            per_image.append(instance_features(features, pool[0]))
        self.clusters = cluster_features(per_image, self.config.n_clusters, torch.Generator().manual_seed(seed))
        return self.clusters


def _generator_state(path: str) -> dict[str, torch.Tensor]:
    """G's state_dict from a gancore run (folder or checkpoint) or a reference latest_net_G.pth."""
    from gancore.train import checkpoint as ckpt

    if os.path.isdir(path):
        _, state = ckpt.load_latest(path)
    elif os.path.isfile(path):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for corrupt files
            raise ConfigError(f"model.load_pretrain: cannot load {path!r}: {err}") from err
    else:
        raise ConfigError(f"model.load_pretrain: no such run folder or checkpoint file: {path!r}")
    if isinstance(state, dict) and "nets" in state and "config" in state:
        if state["config"].get("family") != "pix2pixhd":
            raise ConfigError(f"model.load_pretrain: {path!r} is a {state['config'].get('family')!r} run, "
                              f"not a pix2pixhd one")
        state = state["nets"]["G"]
        if any(k.startswith("netG.") for k in state):
            state = {k[5:]: v for k, v in state.items() if k.startswith("netG.")}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.load_pretrain: {path!r} is neither a run nor a generator state_dict")
    return state


def load_pretrained_generator(g: nn.Module, path: str) -> None:
    """Load a generator run into `g`: the same kind of network strictly, or a global generator into a local
    enhancer's global part (`model`, without the global generator's last three layers: pad, conv, tanh)."""
    state = _generator_state(path)
    target = g
    if isinstance(g, LocalEnhancer) and not any(k.startswith("model1_") for k in state):
        last = max(int(k.split(".")[1]) for k in state if k.startswith("model."))
        state = {k[len("model."):]: v for k, v in state.items() if int(k.split(".")[1]) < last - 1}
        target = g.model
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as err:
        details = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip())
        raise ConfigError(f"model.load_pretrain: {path!r} does not fit this generator (a global run of twice "
                          f"this ngf, the same label_nc, downsamplings and blocks loads into netG=local): "
                          f"{details[:400]}") from None


# -- gancore translate: label maps in, images out ---------------------------------------------------------

def _load_run(path: str) -> dict:
    from gancore.train import checkpoint as ckpt

    if os.path.isdir(path):
        return ckpt.load_latest(path)[1]
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise ckpt.CheckpointError(f"cannot load {path!r}: {err}") from err


def _fit_to(ids: torch.Tensor, multiple: int, width: int | None) -> torch.Tensor:
    """(1, C, H, W) maps resized (nearest) to `width` (aspect kept) or to sides rounded to `multiple`."""
    h, w = ids.shape[2:]
    if width is not None:
        h, w = round(width * h / w), width
    size = tuple(max(multiple, round(s / multiple) * multiple) for s in (h, w))
    if size == (ids.shape[2], ids.shape[3]):
        return ids
    return F.interpolate(ids.double(), size=size, mode="nearest").to(ids.dtype)


def translate_label_maps(run: str, input_dir: str, out_dir: str, *, inst_dir: str | None = None,
                         width: int | None = None, fused: bool = True, seed: int = 0,
                         device: torch.device | str = "cpu", progress: bool = True) -> tuple[list[str], str]:
    """Translate every label map under `input_dir` with a pix2pixhd run into PNGs under `out_dir` (same
    relative names); returns (written paths, description). Instance maps are read from `inst_dir` (files
    with the label maps' names, any image extension); without it, each class region is one instance.
    Sides are rounded (nearest) to the generator's multiple, or the width resized to `width`. Feature
    models draw each instance's feature from the run's k-means clusters (fitted on its training data
    when the checkpoint has none)."""
    from tqdm import tqdm

    from gancore.data import build_dataset
    from gancore.data.base import DataError
    from gancore.data.imageio import find_images, open_image, require_dir, to_tensor
    from gancore.data.labelmaps import read_id_map
    from gancore.train.config import build_dataclass
    from gancore.translate import _save_png

    state = _load_run(run)
    config = state["config"]
    # Weights come from the checkpoint: no pretrained generator to load, no VGG file needed.
    model = dict(config["model"], fused=fused, load_pretrain="", vgg_weights="")
    family = Pix2PixHD(build_dataclass(Pix2PixHDConfig, model, "model"))
    g_state = state["nets"]["G"]
    first = g_state["netG.model.1.weight" if family.config.use_features else "model.1.weight"]
    family.use_instance = first.shape[1] > (family.config.label_nc or 3) + (
        family.config.feat_num if family.config.use_features else 0)
    g = family.build(DataSpec.from_dict(state["data_spec"]))["G"].module
    g.load_state_dict(g_state)
    g = g.to(device).eval()
    family.load_state_dict(state.get("family", {}))
    c = family.config
    if c.use_features and not family.clusters:
        data = build_dataset(config["data"], family.data_hints())
        family.fit_clusters(g.netE, data, seed=seed)
    files = find_images(require_dir(input_dir, "--input"))
    if not files:
        raise DataError(f"--input: no label maps under {input_dir!r}")
    inst_files = {}
    if inst_dir is not None:
        inst_files = {os.path.splitext(f)[0]: f for f in find_images(require_dir(inst_dir, "--inst"))}
    generator = torch.Generator().manual_seed(seed)
    written = []
    with torch.no_grad():
        for rel in tqdm(files, desc="translate", unit="map", disable=not progress):
            path = os.path.join(input_dir, rel)
            if c.label_nc:
                label = torch.from_numpy(read_id_map(path))[None, None]
            else:
                label = to_tensor(open_image(path, 3))[None]
            stem = os.path.splitext(rel)[0]
            if inst_dir is not None and stem not in inst_files:
                raise DataError(f"--inst: no instance map named like {rel!r} under {inst_dir!r}")
            inst = torch.from_numpy(read_id_map(os.path.join(inst_dir, inst_files[stem])))[None, None] \
                if inst_dir is not None else (label if c.label_nc else torch.zeros_like(label[:, :1]).long())
            label, inst = _fit_to(label, c.downsampling, width), _fit_to(inst, c.downsampling, width)
            batch = {"label": label.to(device), "inst": inst.to(device),
                     "image": torch.zeros(1, c.output_nc, *label.shape[2:], device=device)}
            x = family.encode_label(batch)
            if c.use_features:
                features = sample_features(family.clusters, family._pool_map(batch), c.feat_num, generator)
                y = g.netG(torch.cat([x, features.to(x.dtype)], 1))
            else:
                y = g(x)
            out = os.path.join(out_dir, stem + ".png")
            _save_png(y[0].float(), out)
            written.append(out)
    return written, f"pix2pixhd {c.netG} G"
