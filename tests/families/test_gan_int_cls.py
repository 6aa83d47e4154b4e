"""GAN-INT-CLS: the networks, the matching-aware and interpolation terms, both text-training modes,
`gancore sample --text`, and that generated images match their captions."""

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gancore.cli
from gancore.data import Shapes
from gancore.data.builtin import SHAPES
from gancore.data.captions import COLOURS, ShapeCaptions, random_caption
from gancore.families.base import ConfigError, DataSpec, PhaseContext
from gancore.families.gan_int_cls import (
    GanIntCls,
    mode_seeking_term,
    nearest_other_caption,
    structured_loss,
    swap_one_word,
)
from gancore.models.text_to_image import (
    CharCNNRNN,
    JointTextDiscriminator,
    MatchingAwareDiscriminator,
    TextConditionedGenerator,
    WordTextEncoder,
)
from gancore.train import Trainer, build_config

TINY = ["model.resolution=16", "model.g_width=8", "model.d_width=8", "model.text_dim=16", "model.proj_dim=8",
        "model.latent_dim=8", "data.size=64", "train.batch_size=8", "log.progress=false", "log.tensorboard=false",
        "log.sample_n=4"]


def _family(**overrides) -> GanIntCls:
    family = GanIntCls(GanIntCls.Config(resolution=16, g_width=8, d_width=8, text_dim=16, proj_dim=8,
                                        latent_dim=8, **overrides))
    family.dataset = ShapeCaptions(size=16, resolution=16)
    return family


def _context(family, nets, n=6):
    batch = {"image": torch.stack([family.dataset[i]["image"] for i in range(n)]),
             "caption": [family.dataset[i]["caption"] for i in range(n)]}
    return PhaseContext(nets, batch, 0, n, lambda kind, shape: torch.randn(n, *shape))


def test_networks_take_noise_and_text_and_score_pairs():
    g = TextConditionedGenerator(latent_dim=10, text_dim=24, proj_dim=6, resolution=16, width=8)
    d = MatchingAwareDiscriminator(text_dim=24, proj_dim=6, resolution=16, width=8)
    text = torch.randn(5, 24)
    images = g(torch.randn(5, 10), text)
    assert images.shape == (5, 3, 16, 16) and images.abs().max() <= 1
    assert isinstance(g.project[1], nn.LeakyReLU) and g.project[0].out_features == 6  # the paper's compression
    scores = d(images, text, text.flip(0))
    assert scores.shape == (2, 5)
    joint = JointTextDiscriminator(WordTextEncoder(20, 24), d)
    assert joint(images, torch.randint(1, 20, (5, 7)), torch.randint(1, 20, (5, 7))).shape == (2, 5)


@pytest.mark.parametrize("joint_norm", ["none", "batch", "layer"])
def test_a_caption_batch_scores_the_same_whatever_is_scored_with_it(joint_norm):
    """In training mode too: batch statistics never mix right and wrong pairs, else D could tell a batch of
    fake pairs from one of real pairs by its statistics instead of by its images."""
    d = MatchingAwareDiscriminator(text_dim=24, proj_dim=6, resolution=16, width=8, joint_norm=joint_norm)
    assert isinstance(d.joint[1], {"none": nn.Identity, "batch": nn.BatchNorm2d, "layer": nn.GroupNorm}[joint_norm])
    images, right, wrong = torch.randn(5, 3, 16, 16), torch.randn(5, 24), torch.randn(5, 24)
    together = d(images, right, wrong)
    assert torch.allclose(together[0], d(images, right)[0], atol=1e-6)
    assert torch.allclose(together[1], d(images, wrong)[0], atol=1e-6)
    assert not torch.allclose(together[0], together[1])


@pytest.mark.parametrize("encoder", [WordTextEncoder(30, 12), CharCNNRNN(30, 12)])
def test_text_encoders_ignore_padding(encoder):
    tokens = torch.randint(4, 30, (3, 9))
    padded = torch.cat([tokens, torch.zeros(3, 7, dtype=torch.long)], dim=1)
    with torch.no_grad():
        out = encoder(tokens)
        assert out.shape == (3, 12)
        assert torch.allclose(out, encoder(padded), atol=1e-5)
        assert not torch.allclose(out[0], out[1])


def test_config_and_data_are_checked():
    with pytest.raises(ConfigError, match="model.text_encoder"):
        GanIntCls.Config(text_encoder="bert")
    with pytest.raises(ConfigError, match="model.text_training"):
        GanIntCls.Config(text_training="frozen")
    with pytest.raises(ConfigError, match="model.vocab: the words must be unique"):
        GanIntCls.Config(vocab=("a", "red", "a"))
    with pytest.raises(ConfigError, match="model.int_beta"):
        GanIntCls.Config(int_beta=1.5)
    family = _family(vocab=("a", "red"))
    with pytest.raises(ConfigError, match="model.vocab: .*char-cnn-rnn"):
        family.build(DataSpec("image", (3, 16, 16)))
    family = _family()
    with pytest.raises(ConfigError, match=r"needs images of shape \(3, 16, 16\)"):
        family.build(DataSpec("image", (3, 32, 32)))
    family.dataset = Shapes(size=2, resolution=16)
    with pytest.raises(ConfigError, match="needs captioned images"):
        family.build(DataSpec("image", (3, 16, 16)))


def test_captions_round_trip_and_latents_carry_them():
    for encoder in ("word", "char-cnn-rnn"):
        family = _family(text_encoder=encoder)
        ids = family.encode(["a red circle at the top left", "a blue cross in the center"])
        assert family.decode(ids) == ["a red circle at the top left", "a blue cross in the center"]
    family = _family()
    latents = family.make_latents(9, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert latents.shape == (9, 8 + family.max_len)
    rows = family.decode(latents[:, 8:].long())
    assert rows[0] == rows[1] == rows[2] and rows[3] == rows[4] == rows[5]  # one caption per grid row
    assert set(rows) <= {family.dataset[i]["caption"] for i in range(len(family.dataset))}
    assert not torch.equal(latents[0, :8], latents[1, :8])  # fresh noise in every column
    family.dataset = None  # `gancore sample` without --text: random built-in captions
    assert family.make_latents(4, torch.Generator().manual_seed(0), torch.device("cpu")).shape == (4, 24)
    with pytest.raises(ConfigError, match=r"unknown word\(s\) 'purple' in 'a purple square'; the model knows: .*"):
        family.make_latents_from_text("a purple square", 2, torch.Generator(), torch.device("cpu"))
    with pytest.raises(ConfigError, match="--text: the caption is empty"):
        family.make_latents_from_text("  ", 2, torch.Generator(), torch.device("cpu"))
    with pytest.raises(ConfigError, match="more than the model's 14"):
        family.make_latents_from_text("a red " * 8, 2, torch.Generator(), torch.device("cpu"))


def test_matching_aware_d_scores_right_wrong_and_fake_pairs():
    """D's loss is -log s_r - (log(1 - s_w) + log(1 - s_f)) / 2 over real+right, real+wrong (another
    sample's caption, where it differs) and fake+right; without CLS the wrong pairs drop out."""
    for cls in (True, False):
        family = _family(cls=cls, norm="none")  # no batch statistics: the scores can be recomputed exactly
        nets = {k: v.module for k, v in family.build(DataSpec("image", (3, 16, 16))).items()}
        seen = []
        critic = nets["D"].critic
        critic.forward = lambda images, *texts, _f=critic.forward, _seen=seen: (_seen.append((images, texts))
                                                                                 or _f(images, *texts))
        ctx = _context(family, nets)
        ctx.batch["caption"][1] = ctx.batch["caption"][0]  # the wrong caption of sample 1 is its right one
        out = family.loss_d(ctx)
        (real, (right, wrong)), (fake, (fake_text,)) = seen
        assert torch.equal(real, ctx.batch["image"]) and torch.equal(right, fake_text)
        tokens = family.encode(ctx.batch["caption"])
        assert torch.equal(right, nets["D"].encoder(tokens))
        assert torch.equal(wrong, nets["D"].encoder(tokens.roll(1, 0)))
        assert fake.shape == real.shape and not torch.equal(fake, real)
        with torch.no_grad():
            s_r, s_w = critic(real, right, wrong)
            s_f = critic(fake, right)[0]
        differs = torch.ones(6)
        differs[1] = 0
        wrong_term = (F.softplus(s_w) * differs).sum() / differs.sum()
        expected = F.softplus(-s_r).mean() + (0.5 * (wrong_term + F.softplus(s_f).mean()) if cls
                                              else F.softplus(s_f).mean())
        assert torch.allclose(out["loss"], expected, rtol=1e-5)
        assert torch.allclose(out["wrong_score"], s_w.mean()) and torch.allclose(out["fake_score"], s_f.mean())


def test_wrong_captions_equal_to_the_right_one_are_left_out():
    family = _family()
    nets = {k: v.module for k, v in family.build(DataSpec("image", (3, 16, 16))).items()}
    ctx = _context(family, nets, n=4)
    ctx.batch["caption"] = ["a red circle in the center"] * 2 + ["a blue cross at the top"] * 2
    _, _, differs = family._captions(ctx)
    assert differs.tolist() == [True, False, True, False]


def test_nearest_wrong_captions_share_the_most_words():
    tokens = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 5], [1, 6, 7, 8], [1, 2, 3, 4], [1, 6, 7, 9]])
    assert nearest_other_caption(tokens).tolist() == [1, 3, 4, 1, 2]  # never an equal one; ties: the next one
    assert nearest_other_caption(tokens[:1].repeat(3, 1)).tolist() == [0, 1, 2]  # nothing differs: itself
    family = _family(wrong_text="nearest")
    nets = {k: v.module for k, v in family.build(DataSpec("image", (3, 16, 16))).items()}
    ctx = _context(family, nets, n=4)
    ctx.batch["caption"] = ["a red circle at the top", "a blue cross in the center", "a red square at the top",
                            "a blue cross in the center"]
    right, wrong, differs = family._captions(ctx)
    # the blue crosses share only "a" and "the" with the red captions: a tie, broken by the next one
    assert family.decode(wrong) == ["a red square at the top", "a red square at the top",
                                    "a red circle at the top", "a red circle at the top"]
    assert differs.all()
    with pytest.raises(ConfigError, match="model.wrong_text"):
        GanIntCls.Config(wrong_text="random")


def test_swapped_wrong_captions_differ_from_the_right_one_in_one_word():
    # ids 0-3 are special (<pad>, <bos>, <eos>, <unk>); words start at 4
    tokens = torch.tensor([[1, 4, 5, 6, 2], [1, 4, 7, 8, 2], [1, 4, 5, 2, 0], [1, 4, 5, 2, 0]])
    donors = tokens.roll(1, 0)
    draw = torch.tensor([[0.9, 0.1, 0.2, 0.3, 0.8], [0.0, 0.5, 0.6, 0.4, 0.9], [0.5] * 5, [0.5] * 5])
    # the donor of row i is row i - 1; of the word places that differ, the one with the largest draw is swapped
    swapped = swap_one_word(tokens, donors, draw)
    assert swapped.tolist() == [[1, 4, 5, 6, 2],  # against [1, 4, 5, 2, 0]: no place where both hold other words
                                [1, 4, 5, 8, 2],  # against row 0: places 2 and 3 differ, 2 drew more
                                [1, 4, 7, 2, 0],  # against row 1: place 2 (5 vs 7); place 3 is <eos>
                                [1, 4, 5, 2, 0]]  # against row 2: equal captions, nothing to swap
    family = _family(wrong_text="swapped")
    nets = {k: v.module for k, v in family.build(DataSpec("image", (3, 16, 16))).items()}
    ctx = _context(family, nets, n=4)
    ctx.batch["caption"] = ["a red circle at the top", "a blue cross in the center", "a red square at the top",
                            "a red square at the top"]
    right, wrong, differs = family._captions(ctx)
    assert differs.tolist() == [True, True, True, False]
    assert ((wrong != right).sum(1) == differs.long()).all()  # one word changed where anything changed
    # the first caption differs from its donor (the last) only in the shape, so its wrong caption is the donor
    assert (wrong[0] == right[3]).all()


def test_generator_loss_adds_the_interpolated_captions():
    family = _family(int_beta=0.5)
    nets = {k: v.module for k, v in family.build(DataSpec("image", (3, 16, 16))).items()}
    seen = []
    g = nets["G"]
    g.forward = lambda z, text, _f=g.forward: seen.append(text) or _f(z, text)
    out = family.loss_g(_context(family, nets))
    (texts,) = seen
    right = nets["D"].encoder(family.encode(_context(family, nets).batch["caption"]))
    assert texts.shape == (12, 16) and torch.allclose(texts[:6], right)
    assert torch.allclose(texts[6:], 0.5 * right + 0.5 * right.roll(1, 0))
    assert 0 < out["int_loss"] < out["loss"]
    family = _family(interpolate=False)
    nets = {k: v.module for k, v in family.build(DataSpec("image", (3, 16, 16))).items()}
    assert "int_loss" not in family.loss_g(_context(family, nets))


def test_mode_seeking_term_is_the_inverse_ratio_of_image_to_noise_distance():
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    b[1] = 3.0
    z_a, z_b = torch.zeros(2, 5), torch.full((2, 5), 2.0)
    expected = (1 / (1 / 2 + 1e-5) + 1 / (3 / 2 + 1e-5)) / 2
    assert torch.allclose(mode_seeking_term(a, b, z_a, z_b), torch.tensor(expected))
    assert mode_seeking_term(a, a + 10, z_a, z_b) < mode_seeking_term(a, a + 1, z_a, z_b)  # more apart: smaller


def test_generator_loss_adds_the_mode_seeking_term_with_its_weight():
    """With model.mode_seeking, G also draws the right captions with a second noise, and its loss adds the
    weighted term; the adversarial part is the same whatever the weight."""
    family = _family(mode_seeking=1.0)
    nets = {k: v.module for k, v in family.build(DataSpec("image", (3, 16, 16))).items()}
    seen = []
    g = nets["G"]
    g.forward = lambda z, text, _f=g.forward: seen.append((z, text)) or _f(z, text)
    outs = []
    for weight in (1.0, 2.5):
        family.config.mode_seeking = weight
        torch.manual_seed(0)
        outs.append(family.loss_g(_context(family, nets)))
    z, texts = seen[0]
    assert texts.shape == (18, 16) and torch.equal(texts[:6], texts[6:12]) and not torch.equal(z[:6], z[6:12])
    (one, two) = outs
    assert torch.equal(one["mode_seeking"], two["mode_seeking"]) and one["mode_seeking"] > 0
    assert torch.allclose(one["loss"] - one["mode_seeking"], two["loss"] - 2.5 * two["mode_seeking"], atol=1e-6)
    with pytest.raises(ConfigError, match="model.mode_seeking"):
        GanIntCls.Config(mode_seeking=-1.0)


def test_structured_loss_is_zero_only_with_a_margin():
    same = torch.eye(3, dtype=torch.bool)
    aligned = torch.eye(3) * 2
    loss, accuracy = structured_loss(aligned, aligned, same)
    assert loss == 0 and accuracy == 1
    loss, accuracy = structured_loss(aligned * 0.2, aligned, same)  # right pairs score 0.8: inside the margin
    assert loss > 0 and accuracy == 1
    loss, _ = structured_loss(aligned, aligned, torch.ones(3, 3, dtype=torch.bool))  # one class: nothing to rank
    assert loss == 0


def test_pretrain_mode_learns_the_text_encoder_first_then_freezes_it():
    trainer = Trainer(build_config("gan-int-cls", overrides=TINY + [
        "model.text_training=pretrain", "model.pretrain_steps=25", "model.lr_t=3e-3", "train.batch_size=16"]))
    assert sorted(trainer.nets) == ["D", "G", "T"] and [p.name for p in trainer.phases] == ["T", "D", "G"]
    assert [p.name for p in trainer.phases if p.due(24)] == ["T"] and [p.name for p in trainer.phases
                                                                       if p.due(25)] == ["D", "G"]
    first, last = [], []
    for step in range(25):
        trainer.train_step()
        values = trainer._flush_running()
        (first if step < 5 else last if step >= 20 else []).append(values["T/loss"])
    assert sum(last) / len(last) < 0.6 * sum(first) / len(first)
    before = {k: v.clone() for k, v in trainer.nets["T"].state_dict().items()}
    trainer.train_step()
    assert sorted(k.split("/")[0] for k in trainer._flush_running() if k.endswith("/loss")) == ["D", "G"]
    assert all(torch.equal(before[k], v) for k, v in trainer.nets["T"].state_dict().items())


def test_char_encoder_trains_end_to_end():
    trainer = Trainer(build_config("gan-int-cls", overrides=TINY + ["model.text_encoder=char-cnn-rnn"]))
    assert isinstance(trainer.nets["D"].encoder, CharCNNRNN)
    before = trainer.nets["D"].encoder.convs[0].weight.clone()
    trainer.train_step()
    assert not torch.equal(before, trainer.nets["D"].encoder.convs[0].weight)  # D's loss trains the encoder


def test_sample_text_from_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert gancore.cli.main(["train", "gan-int-cls", "--out", str(run), "--steps", "2", *sum(
        (["--set", o] for o in TINY), [])]) == 0
    assert (run / "samples" / "final.png").is_file()
    out = tmp_path / "red.png"
    assert gancore.cli.main(["sample", str(run), "--text", "a red circle", "--n", "4", "--out", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    assert gancore.cli.main(["sample", str(run), "--text", "a purple circle", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown word(s) 'purple'" in err
    dcgan = tmp_path / "dcgan"
    assert gancore.cli.main(["train", "dcgan", "--out", str(dcgan), "--steps", "1", "--batch-size", "2", "--set",
                             "model.resolution=8", "--set", "model.g_width=4", "--set", "model.d_width=4",
                             "--set", "log.progress=false", "--set", "log.tensorboard=false"]) == 0
    capsys.readouterr()
    assert gancore.cli.main(["sample", str(dcgan), "--text", "a red circle", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--text: family 'dcgan' takes no text" in err


def test_bench_cases_build():
    for case in GanIntCls.bench_cases.values():
        trainer = Trainer(build_config("gan-int-cls", overrides=list(case.overrides) + ["log.progress=false"]))
        assert trainer.phases


R = 32  # the family's default size: at 16x16 the shapes are a few pixels and shape binds erratically


def _judge() -> nn.Module:
    """A small CNN with two heads: colour (6 classes) and shape (4)."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * (R // 4) ** 2, len(COLOURS) + 4))


def _accuracy(judge: nn.Module, images: torch.Tensor, colour: torch.Tensor, shape: torch.Tensor) -> tuple:
    """Fractions of images whose colour, shape, and both, the judge reads as given."""
    with torch.no_grad():
        out = judge(images)
    colour_ok = out[:, :len(COLOURS)].argmax(1) == colour
    shape_ok = out[:, len(COLOURS):].argmax(1) == shape
    return tuple(ok.float().mean().item() for ok in (colour_ok, shape_ok, colour_ok & shape_ok))


def _binding(steps: int, data: dict) -> tuple[tuple, tuple, tuple]:
    """Colour, shape and both as a judge reads them: of held-out real images, and of images generated from
    600 random captions before and after `steps` steps of GAN-INT-CLS (32x32, widths 32, batch 32, on the
    built-in captioned shapes with the options `data`). The judge is trained here on 2000 held-out images."""
    held_out = ShapeCaptions(size=2200, resolution=R, seed=1, **data)
    items = [held_out[i] for i in range(len(held_out))]
    images = torch.stack([s["image"] for s in items])
    colour = torch.tensor([s["colour"] for s in items])
    shape = torch.tensor([s["shape"] for s in items])
    torch.manual_seed(0)
    judge = _judge()
    optimizer = torch.optim.Adam(judge.parameters(), 2e-3)
    for _ in range(300):
        idx = torch.randint(2000, (64,))
        out = judge(images[idx])
        loss = F.cross_entropy(out[:, :len(COLOURS)], colour[idx]) + F.cross_entropy(out[:, len(COLOURS):], shape[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    judge.eval()
    judge_real = _accuracy(judge, images[2000:], colour[2000:], shape[2000:])

    trainer = Trainer(build_config("gan-int-cls", overrides=[
        f"model.resolution={R}", "data.size=2000", "train.batch_size=32", "log.progress=false",
        "log.tensorboard=false", *(f"data.{k}={v}" for k, v in data.items())]))
    rng = random.Random(5)
    captions = [random_caption(rng) for _ in range(600)]
    want_colour = torch.tensor([list(COLOURS).index(c.split()[1]) for c in captions])
    want_shape = torch.tensor([SHAPES.index(c.split()[2]) for c in captions])
    generator = torch.Generator().manual_seed(5)
    latents = torch.cat([trainer.family.make_latents_from_text(c, 1, generator, torch.device("cpu"))
                         for c in captions])
    untrained = _accuracy(judge, trainer.generate(latents), want_colour, want_shape)
    for _ in range(steps):
        trainer.train_step()
    trained = _accuracy(judge, trainer.generate(latents), want_colour, want_shape)
    for what, acc in (("judge on real images", judge_real), ("generated, untrained", untrained),
                      (f"generated, {steps} steps", trained)):
        print(f"{what}: colour {acc[0]:.2f}, shape {acc[1]:.2f}, both {acc[2]:.2f} (chance 0.17, 0.25, 0.04)")
    return judge_real, untrained, trained


def test_generated_images_match_their_captions_on_shapes_anywhere():
    """After 600 steps on shapes anywhere in the image, rotated, on grey (data.style=varied, data.spread=1),
    colour, shape, and both together match the caption above chance; shape only weakly (docs/text-to-image.md)."""
    judge_real, _, trained = _binding(600, {"style": "varied", "spread": 1.0})
    assert judge_real[0] > 0.9 and judge_real[1] > 0.7, judge_real  # the judge itself can read the data
    # Measured (seeds 0-2, 600-900 steps): colour 0.87-1.00, shape 0.38-0.45 (the judge reads 0.77 of real
    # shapes), both 0.31-0.43. Circles and triangles bind, crosses are drawn as blobs (docs/text-to-image.md).
    assert trained[0] > 0.75 and trained[1] > 0.32 and trained[2] > 0.25, trained


def test_shapes_bind_where_the_generator_can_draw_them():
    """On the family's default data, upright shapes in the image's center (data.style=simple, data.spread=0.25),
    which a 32x32 DCGAN learns to draw within a CPU run, GAN-INT-CLS draws each caption's colour and shape: both
    match for most captions after 1200 steps."""
    assert GanIntCls.default_data == {"name": "shape-captions", "style": "simple", "spread": 0.25}
    judge_real, _, trained = _binding(1200, {"style": "simple", "spread": 0.25})
    assert judge_real[0] > 0.95 and judge_real[1] > 0.95, judge_real
    # Measured with a larger judge (2026-12-04): shape 0.37 at 600 steps, 0.99 at 900 and 1200 (train.seed=1:
    # 0.48, then 0.92 at 900); every shape is recalled 0.93-1.00. This test read colour 1.00, shape 0.97, both
    # 0.97, with one thread and with two.
    assert trained[0] > 0.9 and trained[1] > 0.8 and trained[2] > 0.75, trained
