"""MicroGen3D compatibility: exact state-dict layout, loading published-format files, and the sampling schedule.

The published weights cannot be downloaded here, so the tests write random
tensors with exactly the keys and shapes of ``tests/fixtures/microgen3d/checkpoint_shapes.json`` (a copy of ``../shared/microgen3d/checkpoint_shapes.json``)
(the schedule buffers hold the published schedule) and load them as users would.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.diffusion import sample_latents
from generator.errors import CheckpointError, FileFormatError, InvalidInputError
from generator.loading import load_generator, microgen3d_generator
from generator.models.microgen3d import (
    FILES,
    KINDS,
    MicroGen3DFeaturePredictor,
    build_networks,
    noise_schedule,
    schedule_buffers,
)

#: A copy of ``../shared/microgen3d/checkpoint_shapes.json``, shipped with the tests so they run on a fresh clone.
SHAPES = Path(__file__).resolve().parents[1] / "fixtures" / "microgen3d" / "checkpoint_shapes.json"


@pytest.fixture(scope="module")
def published() -> dict:
    """The published key/shape table per kind (a repository fixture: a missing file is a failure, not a skip)."""
    return json.loads(SHAPES.read_text())


def write_weights(folder: Path, table: dict, *, fill: str = "random", seed: int = 0) -> Path:
    """Write ``vae.pt``, ``fp.pt``, ``ddpm.pt`` with the keys and shapes of ``table`` (one kind).

    ``fill="random"``: small Gaussian weights (norm scales near 1), real tensors.
    ``fill="view"``: one stored value expanded to each shape (a few bytes on disk;
    enough for checking keys and shapes, not for running the networks).
    The DDPM's schedule buffers always hold the published schedule.
    """
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randn(1 << 20, generator=gen)  # tiled: drawing ~200M fresh values would dominate the test
    buffers = schedule_buffers()
    for net, filename in FILES.items():
        state = {}
        for key, shape in table["state_dict_shapes"][net].items():
            if key in buffers:
                state[key] = buffers[key]
            elif fill == "view":
                state[key] = torch.zeros(1).expand(shape)
            else:
                fan_in = math.prod(shape[1:]) if len(shape) > 1 else 0
                scale = 1.0 / math.sqrt(fan_in) if fan_in else 0.1
                n = math.prod(shape)
                start = int(torch.randint(pool.numel(), (1,), generator=gen))
                value = pool.roll(start).repeat(-(-n // pool.numel()))[:n].view(shape) * scale
                if len(shape) == 1 and key.endswith("weight"):  # norm scales
                    value += 1.0
                state[key] = value
        torch.save(state, folder / filename)
    return folder


# ----------------------------------------------------------------------------- layout

@pytest.mark.parametrize("kind", list(KINDS))
def test_replicas_have_the_published_keys_shapes_and_parameter_counts(published: dict, kind: str) -> None:
    table = published[kind]
    with torch.device("meta"):
        nets = dict(zip(FILES, build_networks(kind)))
    for net, module in nets.items():
        ours = [(k, list(v.shape)) for k, v in module.state_dict().items()]
        assert ours == list(table["state_dict_shapes"][net].items()), f"{kind} {net}"
        assert sum(p.numel() for p in module.parameters()) == table["params"][net], f"{kind} {net}"
    spec = KINDS[kind]
    assert list(spec.latent_shape) == table["latent_shape"]
    assert [1, *spec.volume_shape] == table["image_shape"]
    assert list(spec.attributes) == table["attributes"]
    assert list(spec.context_attributes) == table["context_attributes"]
    assert (spec.first_stage_stride == 1) == table["first_layer_downsample"]


def test_feature_predictor_normalises_rows_like_published_instance_norm() -> None:
    torch.manual_seed(0)
    fp = MicroGen3DFeaturePredictor(32, 3).eval()
    z = torch.randn(5, 2, 2, 2, 4)
    h = torch.relu(fp.fc1(z.flatten(1)))
    published = torch.nn.InstanceNorm1d(h.shape[0])(h)  # a 2-D input is one unbatched (C, L) sample
    torch.testing.assert_close(fp._norm(h), published)
    assert not torch.allclose(fp(z[:1]), fp(z[1:2]))


@pytest.mark.parametrize("kind", list(KINDS))
def test_vae_round_trip_shapes_at_narrow_width(kind: str, one_thread) -> None:
    spec = KINDS[kind]
    vae, fp, _ = build_networks(kind, vae_widths=(2, 2, 4, 4), n_feat=8)
    x = torch.rand(1, 1, *spec.volume_shape)
    with torch.inference_mode():
        z = vae.encode(x)
        assert tuple(z.shape[1:]) == spec.latent_shape
        grey = vae.decode(z)
        assert grey.shape == x.shape and float(grey.min()) >= 0 and float(grey.max()) <= 1
        assert fp(z).shape == (1, len(spec.attributes))


# ----------------------------------------------------------------------------- loading

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["CH_2phase", "CH_3phase"])  # experimental: tests/cli/test_generate.py
def test_load_full_size_weights_and_generate(published: dict, kind: str, tmp_path: Path) -> None:
    folder = write_weights(tmp_path / kind, published[kind])
    gen = load_generator(folder, kind=kind)
    spec = KINDS[kind]
    assert gen.volume_shape == spec.volume_shape and gen.latent_shape == spec.latent_shape
    assert gen.condition_names == list(spec.context_attributes)
    assert gen.n_phases == spec.n_phases and gen.descriptor_table is None
    assert gen.recipe_names == (["phi", "chi", "log_time"] if kind == "CH_3phase" else [])
    # the loaded weights are the file's
    state = torch.load(folder / "fp.pt", weights_only=True)
    torch.testing.assert_close(gen.feature_predictor.fc3.weight, state["fc3.weight"])
    condition = {name: (0.2 if name == "vol_frac_M" else 0.5) for name in gen.condition_names}
    result = gen.generate(condition, 1, sampler="ddim", steps=1, seed=0)
    assert result.labels.shape == (1, *spec.volume_shape) and result.labels.dtype == np.uint8
    assert set(np.unique(result.labels)) <= set(range(spec.n_phases))
    assert result.latents.shape == (1, *spec.latent_shape)
    assert set(result.predicted) == set(spec.attributes)
    assert np.all(np.isfinite(np.stack(list(result.predicted.values()))))


@pytest.fixture(scope="module")
def view_folders(published: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Published-shape files of every kind, stored as expanded views (bytes, not hundreds of MB)."""
    root = tmp_path_factory.mktemp("microgen3d_views")
    return {kind: write_weights(root / kind, published[kind], fill="view") for kind in KINDS}


def test_wrong_kind_names_the_file_the_key_and_the_matching_kind(view_folders: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError, match=r"vae\.pt does not match MicroGen3D kind CH_2phase: encoder\.conv_layers\.12\.weight has shape \(1, 512, 1, 1, 1\), expected \(4, 512, 1, 1, 1\).*the files match kind experimental"):
        load_generator(view_folders["experimental"], kind="CH_2phase")
    # CH 2- and 3-phase share VAE and FP shapes; the DDPM's context width tells them apart
    with pytest.raises(CheckpointError, match=r"ddpm\.pt does not match MicroGen3D kind CH_2phase: nn_model\.contextembed1\.model\.0\.weight has shape \(1024, 4\), expected \(1024, 3\).*CH_3phase"):
        load_generator(view_folders["CH_3phase"], kind="CH_2phase")


def test_missing_and_renamed_keys_are_named(view_folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "renamed"
    folder.mkdir()
    for filename in FILES.values():
        (folder / filename).write_bytes((view_folders["experimental"] / filename).read_bytes())
    state = torch.load(folder / "fp.pt", weights_only=True)
    state["fc4.weight"] = state.pop("fc3.weight")
    torch.save(state, folder / "fp.pt")
    with pytest.raises(CheckpointError, match=r"fp\.pt does not match MicroGen3D kind experimental: missing key fc3\.weight; unexpected key fc4\.weight"):
        load_generator(folder, kind="experimental")


def test_missing_file_unknown_kind_and_non_state_dict(view_folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "vae.pt").write_bytes((view_folders["CH_2phase"] / "vae.pt").read_bytes())
    with pytest.raises(FileFormatError, match=r"lacks fp\.pt, ddpm\.pt"):
        load_generator(folder, kind="CH_2phase")
    with pytest.raises(InvalidInputError, match="kind"):
        load_generator(view_folders["CH_2phase"], kind="CH_4phase")
    with pytest.raises(InvalidInputError, match="needs --kind"):
        load_generator(view_folders["CH_2phase"])
    for filename in ("fp.pt", "ddpm.pt"):
        (folder / filename).write_bytes((view_folders["CH_2phase"] / filename).read_bytes())
    torch.save({"state_dict": {"a": 1}}, folder / "fp.pt")
    with pytest.raises(FileFormatError, match=r"fp\.pt is not a plain state dict"):
        load_generator(folder, kind="CH_2phase")
    (folder / "fp.pt").write_bytes(b"not a torch file")
    with pytest.raises(FileFormatError, match=r"fp\.pt is not a readable PyTorch state dict"):
        load_generator(folder, kind="CH_2phase")


def test_inconsistent_schedule_buffers_are_rejected(view_folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "schedule"
    folder.mkdir()
    for filename in FILES.values():
        (folder / filename).write_bytes((view_folders["CH_2phase"] / filename).read_bytes())
    state = torch.load(folder / "ddpm.pt", weights_only=True)
    state["alphabar_t"] = state["alphabar_t"].flip(0)
    torch.save(state, folder / "ddpm.pt")
    with pytest.raises(CheckpointError, match="alphabar_t is inconsistent"):
        load_generator(folder, kind="CH_2phase")


# ----------------------------------------------------------------------------- schedule equivalence

def published_ancestral_loop(ddpm, x: torch.Tensor, context: torch.Tensor, generator: torch.Generator, record: list[torch.Tensor]) -> torch.Tensor:
    """MicroGen3D's published sampler, written from its description (reference for the test only)."""
    n_t = ddpm.alpha_t.numel()
    for i in range(n_t - 2, 0, -1):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) if i > 1 else 0.0
        record.append(x)
        eps = ddpm.nn_model(x, torch.full((x.shape[0], 1), i / n_t, dtype=x.dtype), context)
        x = ddpm.oneover_sqrta[i] * (x - eps * ddpm.mab_over_sqrtmab[i]) + ddpm.sqrt_beta_t[i] * noise
    record.append(x)
    return x


@pytest.mark.slow
def test_diffusers_ddpm_reproduces_the_published_ancestral_loop_step_by_step(one_thread) -> None:
    torch.manual_seed(0)
    kind = KINDS["CH_3phase"]
    _, _, ddpm = build_networks(kind, n_feat=8)
    ddpm = ddpm.double().eval()
    for name, value in schedule_buffers().items():  # the published float32 buffers, as in the files
        getattr(ddpm, name).copy_(value.double())
    gen = microgen3d_generator(kind, *build_networks(kind, vae_widths=(2, 2, 2, 2), n_feat=8)[:2], ddpm)
    context = torch.tensor([[0.45, 0.2, 0.8, 0.7]], dtype=torch.float64)
    shape = (1, *kind.latent_shape)

    published: list[torch.Tensor] = []
    g = torch.Generator().manual_seed(7)
    x_t = torch.randn(shape, generator=g, dtype=torch.float64)
    with torch.inference_mode():
        published_ancestral_loop(ddpm, x_t, context, g, published)

    ours: list[torch.Tensor] = []

    def recording(x, t, c):
        ours.append(x)
        return gen.denoiser(x, t, c)

    g = torch.Generator().manual_seed(7)
    x_t = torch.randn(shape, generator=g, dtype=torch.float64)
    final = sample_latents(recording, shape, context, sampler="ddpm", steps=998, generator=g, schedule=gen.schedule, noise=x_t)
    ours.append(final)

    assert len(ours) == len(published) == 999  # 998 denoising steps, i = 998 .. 1
    for step, (a, b) in enumerate(zip(published, ours)):
        scale = max(1.0, float(a.abs().max()))
        assert float((a - b).abs().max()) <= 1e-4 * scale, f"step {step} differs"  # float32 schedule arithmetic
    assert float((published[-1] - published[-2]).abs().max()) > 1e-3  # the last step does something

    # the comparison can fail: diffusers' default last step (to alpha-bar 1) weighs eps differently
    from generator.diffusion import make_scheduler

    published_eps_coeff = -float(ddpm.oneover_sqrta[1] * ddpm.mab_over_sqrtmab[1])
    for final_alpha, agrees in ((gen.schedule.final_alpha_cumprod, True), (None, False)):
        scheduler = make_scheduler("ddpm", gen.schedule.model_copy(update={"final_alpha_cumprod": final_alpha}))
        scheduler.set_timesteps(998)
        coeff = float(scheduler.step(torch.ones(1, 1), scheduler.timesteps[-1], torch.zeros(1, 1)).prev_sample)
        assert (coeff == pytest.approx(published_eps_coeff, rel=1e-3)) == agrees


def test_schedule_index_convention() -> None:
    buffers = schedule_buffers()
    schedule = noise_schedule(buffers)
    assert schedule.num_train_timesteps == 999
    abar = torch.cumprod(1 - torch.tensor(schedule.trained_betas, dtype=torch.float64), 0)
    torch.testing.assert_close(abar, buffers["alphabar_t"][1:].double(), rtol=1e-6, atol=0)
    assert schedule.final_alpha_cumprod == pytest.approx(float(buffers["alphabar_t"][0]))


def test_guidance_other_than_one_is_refused_for_published_weights(one_thread) -> None:
    kind = KINDS["experimental"]
    gen = microgen3d_generator(kind, *build_networks(kind, vae_widths=(2, 2, 2, 2), n_feat=8))
    condition = {"ABS_f_D": 0.5, "CT_f_D_tort1": 0.5, "CT_f_A_tort1": 0.5}
    with pytest.raises(InvalidInputError, match="guidance"):
        gen.generate(condition, 1, sampler="ddim", steps=2, guidance=2.0)
    with pytest.raises(InvalidInputError, match="outside the training range"):
        gen.generate({**condition, "ABS_f_D": 1.5}, 1, sampler="ddim", steps=2)
    a = gen.generate(condition, 2, sampler="dpm++", steps=3, seed=3)
    b = gen.generate(condition, 2, sampler="dpm++", steps=3, seed=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = gen.generate(condition, 2, sampler="dpm++", steps=3, seed=3, batch_size=1)
    torch.testing.assert_close(a.latents, c.latents, rtol=1e-3, atol=1e-3)  # batched convolutions round differently
    assert np.mean(a.labels == c.labels) > 0.999
