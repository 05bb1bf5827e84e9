"""Training configs: presets, TOML validation and overrides."""

from __future__ import annotations

import pytest

from generator.errors import FileFormatError, InvalidInputError
from generator.training import load_config, preset_names


def test_presets_validate():
    assert set(preset_names()) >= {"tiny", "small", "paper-ch2", "paper-ch3"}
    for name in preset_names():
        config = load_config(name)
        assert config.name == name
        assert config.ddpm.condition_dropout > 0  # classifier-free guidance needs the null condition


@pytest.mark.parametrize("name,n_phases", [("paper-ch2", 2), ("paper-ch3", 3)])
def test_paper_presets_are_paper_sized(name, n_phases):
    config = load_config(name)
    assert config.data.n_phases == n_phases
    assert config.vae.model.latent_shape((128, 128, 64)) == (4, 8, 8, 4)  # MicroGen3D's latent
    assert config.trainer.strategy == "ddp" and config.trainer.accelerator == "gpu"


def test_toml_file_and_overrides(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[data]\nconditions = ["ABS_f_D"]\n[ddpm]\nmax_steps = 7\n[ddpm.model]\nwidth = 12\n')
    config = load_config(path, {"ddpm": {"batch_size": 3}, "trainer": {"devices": 2, "num_nodes": 2}})
    assert config.data.conditions == ["ABS_f_D"]
    assert (config.ddpm.max_steps, config.ddpm.batch_size, config.ddpm.model.width) == (7, 3, 12)
    assert (config.trainer.devices, config.trainer.num_nodes) == (2, 2)


def test_bad_configs(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown preset 'huge'"):
        load_config("huge")
    with pytest.raises(InvalidInputError, match="vae.model.widthz"):
        load_config("tiny", {"vae": {"model": {"widthz": [1]}}})
    with pytest.raises(InvalidInputError, match="ddpm.condition_dropout"):
        load_config("tiny", {"ddpm": {"condition_dropout": 2.0}})
    broken = tmp_path / "broken.toml"
    broken.write_text("[vae\nmax_steps = 1")
    with pytest.raises(FileFormatError, match="malformed TOML"):
        load_config(broken)
    with pytest.raises(FileFormatError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
