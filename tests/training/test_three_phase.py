"""Three-phase end to end: simulate, label, train (one-hot VAE) and generate valid labels."""

from __future__ import annotations

import numpy as np

from generator.loading import load_generator
from generator.training import train_pipeline

CONDITIONS = ["vol_frac_D", "vol_frac_M", "tortuosity_A", "tortuosity_D"]  # MicroGen3D's CH 3-phase context
FAST = {
    "data": {"conditions": CONDITIONS},
    "vae": {"max_steps": 10, "model": {"widths": [4, 8]}},
    "fp": {"max_steps": 10, "model": {"conv_channels": [4]}},
    "ddpm": {"max_steps": 10, "model": {"width": 4, "channel_mults": [1]}},
}


def test_three_phase_train_and_generate(tmp_path):
    from generator.data.build import simulate_dataset
    from generator.descriptors import describe_dataset

    data = simulate_dataset("tiny", tmp_path / "tiny3.h5", n_phases=3, progress=False)
    describe_dataset(data, n_jobs=1, progress=False)
    bundle = train_pipeline("tiny", data=data, out_dir=tmp_path / "model", overrides=FAST, progress=False)
    gen = load_generator(bundle)
    assert gen.n_phases == 3 and gen.condition_names == CONDITIONS
    mid = {name: float(np.mean(gen.condition_ranges[name])) for name in CONDITIONS}
    result = gen.generate(mid, n=2, sampler="ddim", steps=3)
    assert result.labels.shape == (2, 32, 32, 16)
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    assert gen.recipe_names == ["phi", "chi", "log_time"]
