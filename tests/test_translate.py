"""`gancore translate` with reference checkpoint files (written here, random weights) and gancore runs."""

import numpy as np
import pytest
import torch
from PIL import Image

from gancore.cli import main
from gancore.nn import InstanceNormAct2d
from gancore.train import Trainer, build_config
from gancore.translate import load_generator, translate_folder


def reference_resnet_state(ngf=8, n_blocks=9, input_nc=3, output_nc=3, seed=0):
    """A state_dict of junyanz's ResnetGenerator (instance norm, so every conv has a bias), keyed and shaped
    from its published layer list: ReflectionPad, c7s1-ngf, d2ngf, d4ngf, n_blocks x ResnetBlock
    (pad, conv, IN, ReLU, pad, conv, IN), u2ngf, ungf, ReflectionPad, c7s1-output_nc, Tanh."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"model.1": (ngf, input_nc, 7, 7), "model.4": (2 * ngf, ngf, 3, 3), "model.7": (4 * ngf, 2 * ngf, 3, 3)}
    for b in range(n_blocks):
        for conv in (1, 5):
            shapes[f"model.{10 + b}.conv_block.{conv}"] = (4 * ngf, 4 * ngf, 3, 3)
    first_up = 10 + n_blocks
    shapes[f"model.{first_up}"] = (4 * ngf, 2 * ngf, 3, 3)  # ConvTranspose2d weights are (in, out, k, k)
    shapes[f"model.{first_up + 3}"] = (2 * ngf, ngf, 3, 3)
    shapes[f"model.{first_up + 7}"] = (output_nc, ngf, 7, 7)
    state = {}
    for name, shape in shapes.items():
        state[f"{name}.weight"] = 0.1 * torch.randn(shape, generator=g)
        out_channels = shape[1] if name in (f"model.{first_up}", f"model.{first_up + 3}") else shape[0]
        state[f"{name}.bias"] = 0.1 * torch.randn(out_channels, generator=g)
    return state


def _write_inputs(folder, n=2, size=(20, 16)):
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    names = [folder / "a.png"] + [folder / "sub" / f"{i}.jpg" for i in range(n - 1)]
    for path in names:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).save(path)
    return names


def test_a_reference_resnet_checkpoint_loads_strictly_and_fused_matches_plain(tmp_path):
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(reference_resnet_state(), path)
    fused, what = load_generator(str(path), arch="resnet_9blocks")
    plain, _ = load_generator(str(path), arch="resnet_9blocks", fused=False)
    assert "reference resnet_9blocks" in what
    assert any(isinstance(m, InstanceNormAct2d) for m in fused.modules())
    assert not any(isinstance(m, InstanceNormAct2d) for m in plain.modules())
    assert set(fused.state_dict()) == set(plain.state_dict()) == set(torch.load(path))
    x = torch.rand(1, 3, 16, 12) * 2 - 1
    with torch.no_grad():
        a, b = fused(x), plain(x)
        exact = plain.double()(x.double())
    assert a.shape == (1, 3, 16, 12)
    # float32 fused is no further from the float64 reference than float32 plain is (norm-wise)
    err_fused = float((a.double() - exact).norm() / exact.norm())
    err_plain = float((b.double() - exact).norm() / exact.norm())
    assert err_fused <= 2 * err_plain + 1e-6, (err_fused, err_plain)
    assert float((a - b).norm() / b.norm()) < 1e-5


def test_translate_command_writes_pngs_under_the_input_names(tmp_path, capsys):
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(reference_resnet_state(n_blocks=6, seed=1), path)
    _write_inputs(tmp_path / "in", n=3)
    code = main(["translate", str(path), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--arch", "resnet_6blocks", "--no-progress"])
    assert code == 0 and "translated 3 image(s)" in capsys.readouterr().out
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["a.png", "sub/0.png", "sub/1.png"]
    assert Image.open(tmp_path / "out" / "a.png").size == (20, 16)
    main(["translate", str(path), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "plain"),
          "--arch", "resnet_6blocks", "--plain", "--no-progress"])
    fused_png = np.asarray(Image.open(tmp_path / "out" / "a.png"), dtype=np.int16)
    plain_png = np.asarray(Image.open(tmp_path / "plain" / "a.png"), dtype=np.int16)
    assert np.abs(fused_png - plain_png).max() <= 1  # equal up to 8-bit rounding


@pytest.mark.parametrize("args, message", [
    (["--arch", "resnet_6blocks"], "does not fit a resnet_6blocks"),
    (["--arch", "vgg"], "--arch"),
    (["--direction", "BtoA"], "latest_net_G_B.pth"),
    (["--size", "30"], "--size"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, args, message):
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(reference_resnet_state(), path)
    _write_inputs(tmp_path / "in", n=1)
    code = main(["translate", str(path), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o"),
                 "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_input_and_non_checkpoint_files(tmp_path, capsys):
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    assert main(["translate", str(tmp_path / "notes.pth"), "--input", str(tmp_path), "--out", "o"]) == 2
    assert "cannot load" in capsys.readouterr().err
    torch.save(reference_resnet_state(), tmp_path / "g.pth")
    assert main(["translate", str(tmp_path / "g.pth"), "--input", str(tmp_path / "nope"), "--out", "o"]) == 2
    assert "--input" in capsys.readouterr().err


def test_translate_a_cyclegan_run_both_ways(tmp_path):
    config = build_config("cyclegan", overrides=[
        "model.ngf=4", "model.ndf=4", "model.netG=resnet_1blocks", "data.resolution=24", "data.size=8",
        "train.steps=1", "log.progress=false", "log.tensorboard=false", "log.sample_n=2"])
    Trainer(config, str(tmp_path / "run")).fit()
    _write_inputs(tmp_path / "in", n=1, size=(24, 24))
    g_a, what_a = load_generator(str(tmp_path / "run"))
    g_b, what_b = load_generator(str(tmp_path / "run"), direction="BtoA")
    assert "G_A" in what_a and "G_B" in what_b
    out = translate_folder(g_b, str(tmp_path / "in"), str(tmp_path / "out"), progress=False)
    assert len(out) == 1 and Image.open(out[0]).size == (24, 24)


def test_a_unet_256_checkpoint_with_batch_norm_is_recognised(tmp_path):
    """latest_net_G.pth of a pix2pix unet_256 (batch norm: running statistics in the file); the network's
    keys are checked against the published layer list in tests/nn."""
    from gancore.models.pix2pix import UnetGenerator
    from gancore.nn import BatchNormAct2d

    torch.manual_seed(0)
    reference = UnetGenerator(3, 3, num_downs=8, ngf=4, norm="batch", fused=False)
    torch.save(reference.state_dict(), tmp_path / "latest_net_G.pth")
    g, what = load_generator(str(tmp_path / "latest_net_G.pth"), arch="unet_256")
    assert isinstance(g, UnetGenerator) and "unet_256" in what
    # batch norm recognised from the file's running statistics; fused, it runs as BatchNormAct2d
    assert any(isinstance(m, BatchNormAct2d) for m in g.modules())
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(g.eval()(x), reference.eval()(x), atol=1e-5)
