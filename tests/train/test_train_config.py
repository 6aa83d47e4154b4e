import json

import pytest
import yaml

from gancore.families.base import ConfigError
from gancore.train.config import (
    build_config,
    config_diff,
    default_config,
    dump,
    parse_overrides,
    resolve,
)


def test_overrides_are_typed_yaml():
    assert parse_overrides(["train.precision=bf16", "train.steps=5", "model.betas_g=[0.5, 0.9]",
                            "train.channels_last=true"]) == {
        "train": {"precision": "bf16", "steps": 5, "channels_last": True}, "model": {"betas_g": [0.5, 0.9]}}


@pytest.mark.parametrize("item, message", [
    ("train.steps", "expected key=value"),
    ("steps=5", "section.field"),
    ("optim.lr=1", "section.field"),
    ("train.a.b=1", "section.field"),
])
def test_bad_override_syntax(item, message):
    with pytest.raises(ConfigError, match=message):
        parse_overrides([item])


def test_defaults_resolve_to_the_family_and_its_data():
    config = build_config("dcgan")
    assert config == default_config("dcgan") == resolve(config)
    assert config["model"]["resolution"] == 32 and config["data"] == {"name": "shapes", "style": "simple"}
    assert config["model"]["betas_g"] == [0.5, 0.99]


def test_precedence_file_then_data_then_set_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"family": "dcgan", "train": {"steps": 10, "seed": 3, "batch_size": 16},
                                    "model": {"g_width": 32}}))
    config = build_config("dcgan", files=[str(path)], data=str(tmp_path), overrides=["train.steps=20"],
                          flags={"train.batch_size": 4})
    assert config["train"]["seed"] == 3 and config["model"]["g_width"] == 32  # from the file
    assert config["train"]["steps"] == 20 and config["train"]["batch_size"] == 4
    assert config["data"] == {"name": "image-folder", "path": str(tmp_path)}


def test_data_flag_names_builtins_or_paths(tmp_path):
    assert build_config("wgan-gp", data="ring")["data"] == {"name": "ring"}
    paired = build_config("dcgan", overrides=["data.name=paired"])
    config = build_config("dcgan", base=paired, data=str(tmp_path))
    assert config["data"] == {"name": "paired", "path": str(tmp_path)}  # a file-based type is kept


def test_a_new_dataset_type_starts_its_options_afresh():
    shapes = build_config("dcgan", overrides=["data.size=100"])
    assert build_config("dcgan", base=shapes, overrides=["data.name=ring"])["data"] == {"name": "ring"}
    # within one layer, the options given with the new name stay
    config = build_config("dcgan", overrides=["data.name=ring", "data.modes=4"])
    assert config["data"] == {"name": "ring", "modes": 4}


@pytest.mark.parametrize("override, message", [
    ("train.precison=bf16", r"train.precison: unknown key; valid keys: .*precision"),
    ("train.steps=many", "train.steps: expected int"),
    ("train.precision=fp8", r"train.precision: must be one of \['fp32', 'bf16', 'fp16'\]"),
    ("model.loss=wgan", "model.loss: must be one of"),
    ("model.resolution=48", "model.resolution: must be a power of two"),
    ("model.betas_g=[0.5]", r"model.betas_g: expected 2 values"),
    ("train.ema_beta=1.5", r"train.ema_beta: must be in \[0, 1\)"),
    ("log.keep=0", "log.keep: must be >= 1"),
    ("train.batch_size=true", "train.batch_size: expected int"),
])
def test_bad_values_name_their_key(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config("dcgan", overrides=[override])


def test_numbers_in_exponent_form_and_unions():
    config = build_config("dcgan", overrides=["model.lr_g=1e-4", "train.compile=eager"])
    assert config["model"]["lr_g"] == 1e-4 and config["train"]["compile"] == "eager"
    assert build_config("dcgan", overrides=["train.compile=true"])["train"]["compile"] is True


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        build_config("dcgan", files=[str(tmp_path / "missing.yaml")])
    (tmp_path / "other.yaml").write_text("family: wgan-gp\n")
    with pytest.raises(ConfigError, match="for family 'wgan-gp'"):
        build_config("dcgan", files=[str(tmp_path / "other.yaml")])
    (tmp_path / "bad.yaml").write_text("optim: {lr: 1}\n")
    with pytest.raises(ConfigError, match="optim: unknown config section"):
        build_config("dcgan", files=[str(tmp_path / "bad.yaml")])


def test_diff_lists_changes_but_not_resume_safe_keys():
    old = build_config("dcgan")
    new = build_config("dcgan", overrides=["model.g_width=16", "train.steps=5", "log.every=1",
                                           "train.precision=bf16"])
    assert config_diff(old, new) == ["model.g_width: 32 -> 16", "train.precision: 'fp32' -> 'bf16'"]
    assert config_diff(old, old) == []


@pytest.mark.parametrize("name", ["config.yaml", "config.json"])
def test_dump_round_trips(tmp_path, name):
    config = build_config("wgan-gp", data="ring")
    dump(config, str(tmp_path / name))
    text = (tmp_path / name).read_text()
    loaded = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    assert loaded == config and resolve(loaded) == config
