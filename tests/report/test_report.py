"""The run report: built during a short training run and by `gancore report`, every file it references
present and every PNG readable, rendered by headless Chromium (when installed) to a page that is not blank;
the fixed sample inputs that a resumed run continues with; image-to-image strips and `gancore sample`."""

import json
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from gancore.cli import main
from gancore.families import get_family
from gancore.report import build_report, load_fixed_inputs, start_run
from gancore.report.plots import _log_decades, panels_of, smooth
from gancore.report.run import Series, read_run
from gancore.report.samples import sample_files
from gancore.train import Trainer, build_config

QUIET = ["log.progress=false", "log.tensorboard=false"]
TINY_DCGAN = ["model.resolution=8", "model.g_width=4", "model.d_width=4", "model.latent_dim=8"] + QUIET
SHOT_SIZE = (1200, 2000)


def _train(out, *overrides, steps=6, resume=False):
    config = build_config("dcgan", overrides=TINY_DCGAN + [f"train.steps={steps}", "train.batch_size=8",
                                                          *overrides])
    trainer = Trainer(config, str(out), resume=resume)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer


class _References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.captions, self._in_caption = [], [], False

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        self._in_caption = tag == "figcaption"

    def handle_data(self, data):
        if self._in_caption:
            self.captions.append(data)
            self._in_caption = False


def _check_page(index):
    """Every file the page references exists beside it (no network), every PNG there opens."""
    parser = _References()
    with open(index, encoding="utf-8") as f:
        text = f.read()
    parser.feed(text)
    folder = os.path.dirname(index)
    assert parser.refs
    for ref in parser.refs:
        assert "://" not in ref and not ref.startswith("/"), ref
        assert os.path.isfile(os.path.join(folder, ref)), ref
    pngs = [os.path.join(root, n) for root, _, names in os.walk(folder) for n in names if n.endswith(".png")]
    assert {os.path.normpath(os.path.join(folder, r)) for r in parser.refs} == set(map(os.path.normpath, pngs))
    for png in pngs:
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            im.load()
            assert im.width > 0 and im.height > 0
    assert "<script" not in text.lower()
    return text, parser.captions


def test_report_of_a_short_run_and_its_screenshot(tmp_path):
    run = tmp_path / "run"
    _train(run, "log.every=1", "log.sample_every=2", "log.checkpoint_every=2", "log.keep=2", "log.sample_n=4")
    # Refreshed during training (log.report is on by default), last after the final picture.
    assert (run / "report" / "index.html").is_file()
    assert [s.label for s in sample_files(str(run))] == ["final, step 6", "step 4", "step 2"]
    text, captions = _check_page(str(run / "report" / "index.html"))
    assert captions == ["final, step 6", "step 4", "step 2"]  # newest first
    assert "dcgan" in text and "6 / 6 (100%)" in text and "ckpt-00000006.pt" in text and "ckpt-00000004.pt" in text
    assert "<details><summary>config" in text
    curves = sorted(n for n in os.listdir(run / "report") if n.startswith("curve-"))
    assert {"curve-d-loss.png", "curve-g-loss.png", "curve-gradient-norms.png", "curve-images-s.png"} <= set(curves)

    out = tmp_path / "elsewhere"
    assert main(["report", str(run), "--out", str(out)]) == 0
    text, _ = _check_page(str(out / "index.html"))
    assert "non-finite steps</th><td>0<" in text

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it): the page was checked, not rendered")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={SHOT_SIZE[0]},{SHOT_SIZE[1]}", f"--screenshot={shot}",
                    (out / "index.html").as_uri()], check=True, capture_output=True, timeout=180)
    with Image.open(shot) as im:
        assert im.size == SHOT_SIZE
        pixels = np.asarray(im.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, curves and sample grids; a blank or failed page is one colour
    assert (pixels.reshape(-1, 3) != pixels[0, 0]).any(axis=1).mean() > 0.05


def test_a_resumed_run_continues_the_same_sample_sequence(tmp_path):
    straight = _train(tmp_path / "straight", "log.sample_every=2", "log.sample_n=4", "log.report=false", steps=4)
    _train(tmp_path / "resumed", "log.sample_every=2", "log.sample_n=4", "log.report=false", steps=2)
    assert not (tmp_path / "resumed" / "report").exists()  # log.report=false writes none
    # log.sample_n may change on resume (a log setting), but the grids keep the saved inputs.
    resumed = _train(tmp_path / "resumed", "log.sample_every=2", "log.sample_n=3", steps=4, resume=True)
    assert torch.equal(resumed.sample_latents, straight.sample_latents)
    assert torch.equal(load_fixed_inputs(str(tmp_path / "resumed"))["latents"], straight.sample_latents)
    for name in ("00000002.png", "00000004.png"):
        assert (tmp_path / "resumed" / "samples" / name).read_bytes() == \
            (tmp_path / "straight" / "samples" / name).read_bytes()
    sessions = [json.loads(line) for line in (tmp_path / "resumed" / "sessions.jsonl").read_text().splitlines()]
    assert len(sessions) == 1 and sessions[0]["resumed_from"] == "ckpt-00000002.pt"  # the first had no report

    # Overlaid: one panel per scalar with a line per run, and the setting that differs.
    out = tmp_path / "compare"
    assert main(["report", str(tmp_path / "straight"), str(tmp_path / "resumed"), "--out", str(out)]) == 0
    text, _ = _check_page(str(out / "index.html"))
    assert "log.sample_n" in text and "straight" in text and "resumed" in text
    panels = panels_of([read_run(str(tmp_path / "straight")), read_run(str(tmp_path / "resumed"))])
    assert all(len(p.lines) == 2 for p in panels if p.title in ("D loss", "G loss"))


def _strips(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_image_to_image_strips_and_gancore_sample(tmp_path, capsys):
    run = tmp_path / "p2p"
    config = build_config("pix2pix", overrides=["model.ngf=8", "model.ndf=8", "data.resolution=32",
                                                "log.sample_n=2", "train.steps=1", "log.report=false", *QUIET])
    trainer = Trainer(config, str(run))
    trainer.fit()
    trainer.close()
    inputs = load_fixed_inputs(str(run))
    assert set(inputs) == {"latents", "inputs", "targets"} and inputs["inputs"].shape == (2, 3, 32, 32)
    data = trainer.dataset
    assert any(torch.equal(inputs["targets"][0], data[i]["B"]) for i in range(len(data)) if
               torch.equal(inputs["inputs"][0], data[i]["A"]))  # each target is its input's pair
    grid = _strips(run / "samples" / "final.png")
    # Two strips of input | output | target, 32x32 each, 1 px apart, one per row with 6 px gaps.
    assert grid.shape == (2 * (32 + 6) + 6, 3 * 32 + 2 + 12, 3)
    expected_input = ((inputs["inputs"][1].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
    assert np.array_equal(grid[6 + 38:6 + 38 + 32, 6:6 + 32], expected_input.numpy())
    expected_target = ((inputs["targets"][0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
    assert np.array_equal(grid[6:6 + 32, 6 + 66:6 + 98], expected_target.numpy())

    # `gancore sample` translates the inputs the run saved (a checkpoint holds no training data).
    out = tmp_path / "sampled.png"
    assert main(["sample", str(run), "--out", str(out), "--n", "5"]) == 0
    assert "2 samples" in capsys.readouterr().out
    sampled = _strips(out)
    assert sampled.shape == grid.shape
    for x in (6, 6 + 66):  # the input and target columns (the outputs depend on the memory layout's rounding)
        assert np.array_equal(sampled[:, x:x + 32], grid[:, x:x + 32])
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run / "ckpt-00000001.pt", alone / "ckpt.pt")
    assert main(["sample", str(alone / "ckpt.pt"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sample_inputs.pt" in err and "gancore translate" in err

    index = build_report([str(run)])
    text, _ = _check_page(index)
    assert "input | output | target" in text


def test_text_samples_are_shown_and_bad_folders_refused(tmp_path, capsys):
    family_cls = get_family("dcgan")

    class Words(family_cls):
        def sample_text(self, samples):
            return [f"<{int(v)}> tokens" for v in samples[:, 0]]

    family = Words(family_cls.Config())
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    family.save_samples(torch.tensor([[1.0], [2.0]]), str(run / "samples" / "00000003.png"))
    assert (run / "samples" / "00000003.txt").read_text() == "<1> tokens\n<2> tokens\n"
    (run / "samples" / "final.png").write_text("text under a picture's name\n")
    records = [{"step": s, "D/loss": 1.0 / s, "D/wdist": 0.5 * s, "D/gp": 0.1, "D/grad_norm": 2.0,
                "G/loss": -s, "G/grad_norm": 1.0, "nonfinite_steps": float(s > 2), "lr_factor": 1.0}
               for s in (1, 2, 3)] + [{"step": 3, "metrics/fid": 120.0}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text, _ = _check_page(build_report([str(run)]))
    assert "&lt;1&gt; tokens" in text and "text under a picture" in text and "non-finite steps</th><td>1<" in text
    # A panel per phase loss, per family scalar and metric; the norms together; a constant lr factor left out.
    assert [p.title for p in panels_of([read_run(str(run))])] == [
        "D loss", "G loss", "D/gp", "D/wdist", "metrics/fid", "gradient norms", "steps with non-finite values"]

    # A fresh start (not a resumption) in this folder drops the earlier run's pictures and sessions.
    (run / "samples" / "notes.png").write_bytes(b"")
    (run / "sessions.jsonl").write_text("{}\n")
    start_run(str(run), {"latents": torch.zeros(2, 3)}, fresh=True)
    assert sorted(os.listdir(run / "samples")) == ["notes.png"] and not (run / "sessions.jsonl").exists()
    assert torch.equal(load_fixed_inputs(str(run))["latents"], torch.zeros(2, 3))

    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(run), "--out", str(run)]) == 2
    assert main(["report", str(tmp_path)]) == 2  # no run in it
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all(e.startswith("gancore report: error: ") for e in errors)


def test_smoothing_and_log_axis():
    values = np.array([1.0, 1.0, math.nan, 1.0] * 10)
    smoothed = smooth(values)
    assert np.allclose(smoothed, 1.0)  # debiased: no ramp from zero; a non-finite value carries the last
    noisy = np.random.default_rng(0).normal(size=200)
    assert smooth(noisy).std() < 0.5 * noisy.std()
    assert _log_decades([("a", Series([1, 2], [1e-3, 1.0]))]) == pytest.approx(3.0)
    assert _log_decades([("a", Series([1, 2], [-1.0, 100.0]))]) is None
    assert _log_decades([("a", Series([1, 2], [1.0, 2.0]))]) is None
