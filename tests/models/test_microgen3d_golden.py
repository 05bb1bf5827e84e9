"""Golden outputs: our MicroGen3D replicas against outputs of MicroGen3D's own code.

``tests/fixtures/microgen3d_golden/`` (a copy of ``../shared/microgen3d/golden``,
see its README) holds, for the kinds ``experimental`` and ``CH_2phase``, the
outputs of MicroGen3D's own VAE, feature predictor, UNet and sampling loop
(commit 9152661) on closed-form weights and inputs. Here the weights are
rebuilt from *our* state-dict key list with the same formula (checked against
the stored SHA-256 of every tensor), loaded into our networks at their
published sizes, and every output is compared at the README's suggested
tolerance (``rtol=1e-4, atol=1e-5``). The sampling loops run through our own
diffusers scheduler (:func:`generator.models.microgen3d.noise_schedule`) with
the stored noise, so a regression in the loading, the networks or the index
convention fails here.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.models.microgen3d import FILES, KINDS, SCHEDULE_BUFFERS, build_networks, noise_schedule, schedule_buffers

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "microgen3d_golden"
RTOL, ATOL = 1e-4, 1e-5
P, A, B, C = 65521, 40503, 7919, 500

pytestmark = pytest.mark.slow


def closed_form_tensor(j: int, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The README's closed-form value of the ``j``-th state-dict entry ``key`` of shape ``shape`` (float32)."""
    n = math.prod(shape)
    k = np.arange(n, dtype=np.int64)
    u = ((k * k % P) * A + k * B + j * C) % P
    s = np.sin(u * (2 * math.pi / P))
    if key.endswith("bias"):
        value = 0.01 * s
    elif len(shape) == 1:
        value = 1 + 0.1 * s
    else:
        gain = 1.0 if len(shape) == 2 else 0.3
        value = s * (gain / math.sqrt(n // shape[0]))
    return value.astype(np.float32).reshape(shape)


def rebuild_networks(kind: str, stored: np.lib.npyio.NpzFile, checksums: dict) -> tuple:
    """Our three networks of ``kind`` at published size, holding the closed-form weights.

    The keys come from our own modules; every rebuilt tensor's SHA-256 must
    equal MicroGen3D's. The DDPM's schedule buffers are the stored ones (what
    a published ``ddpm.pt`` holds).
    """
    with torch.device("meta"):
        nets = dict(zip(FILES, build_networks(kind)))
    for net, module in nets.items():
        expected = checksums[kind][net]
        ours = list(module.state_dict().items())
        assert [k for k, _ in ours] == [e["key"] for e in expected], f"{kind} {net}: key list differs from MicroGen3D's"
        state = {}
        for j, (key, tensor) in enumerate(ours):
            if key in SCHEDULE_BUFFERS:
                state[key] = torch.from_numpy(stored[f"sched_{key}"].copy())
                continue
            value = closed_form_tensor(j, key, tuple(tensor.shape))
            assert hashlib.sha256(value.astype("<f4").tobytes()).hexdigest() == expected[j]["sha256_f32le"], f"{kind} {net} {key}"
            state[key] = torch.from_numpy(value)
        module.load_state_dict(state, strict=True, assign=True)
        module.eval()
    return nets["vae"], nets["fp"], nets["ddpm"]


def closed_form_inputs(latent_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The README's closed-form inputs for a batch of 2."""
    n = 2 * math.prod(latent_shape)
    k = np.arange(n, dtype=np.float64)
    shape = (2, *latent_shape)
    d, h, w = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in image_shape[1:]), indexing="ij")
    enc = np.stack([np.sin(0.21 * d + 0.5 * b) + np.sin(0.17 * h + 0.3) + np.sin(0.13 * w + 0.11 * d) for b in (0, 1)])
    return {
        "z": np.sin(0.173 * k).astype(np.float32).reshape(shape),
        "loop_x_start": np.sin(0.113 * k + 0.4).astype(np.float32).reshape(shape),
        "loop_first5_noise": np.stack([np.sin(0.311 * k + 0.9 * (m + 1)).astype(np.float32).reshape(shape) for m in range(5)]),
        "loop_last5_noise": np.stack([np.sin(0.277 * k + 0.7 * (m + 1)).astype(np.float32).reshape(shape) for m in range(4)]),
        "enc_input": (enc > 0).astype(np.uint8)[:, None],
    }


def assert_golden(ours: torch.Tensor | np.ndarray, gold: np.ndarray, what: str) -> None:
    ours = ours.detach().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    assert ours.shape == gold.shape, f"{what}: shape {ours.shape} vs {gold.shape}"
    err = float(np.max(np.abs(ours - gold)))
    assert np.allclose(ours, gold, rtol=RTOL, atol=ATOL), f"{what}: max abs difference {err:.3g}"


@pytest.fixture(scope="module", params=["experimental", "CH_2phase"])
def golden(request) -> tuple:
    """``(kind, stored arrays, (vae, fp, ddpm))`` of one golden kind."""
    kind = request.param
    stored = np.load(GOLDEN / f"{kind}.npz")
    checksums = json.loads((GOLDEN / "weight_checksums.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield kind, stored, rebuild_networks(kind, stored, checksums)
    torch.set_num_threads(threads)


def test_fixture_is_in_the_repository_and_describes_our_kinds() -> None:
    for name in ("experimental.npz", "CH_2phase.npz", "weight_checksums.json", "README.md"):
        assert (GOLDEN / name).is_file(), name
    for kind in ("experimental", "CH_2phase"):
        meta = json.loads(str(np.load(GOLDEN / f"{kind}.npz")["meta_json"]))
        assert meta["kind"] == kind
        assert meta["microgen3d_commit"] == "9152661cccbf2fdb20edb14afabca6fa410d1295"


def test_closed_form_inputs_equal_the_stored_ones(golden) -> None:
    kind, stored, _ = golden
    spec = KINDS[kind]
    for name, value in closed_form_inputs(spec.latent_shape, (1, *spec.volume_shape)).items():
        np.testing.assert_array_equal(value, stored[name], err_msg=name)


def test_our_schedule_buffers_equal_microgen3ds(golden) -> None:
    _, stored, _ = golden
    for name, value in schedule_buffers().items():
        np.testing.assert_allclose(value.numpy(), stored[f"sched_{name}"], rtol=1e-6, atol=0, err_msg=name)


def test_decoder_matches_golden_grey_and_labels(golden) -> None:
    kind, stored, (vae, _, _) = golden
    with torch.inference_mode():
        grey = vae.decode(torch.from_numpy(stored["z"])).numpy()
    gold = stored["dec_grey"]
    assert_golden(grey, gold, f"{kind} dec_grey")
    near = np.abs(gold - 0.5) < 1e-4
    assert np.array_equal((grey > 0.5)[~near], (gold > 0.5)[~near]), f"{kind}: labels at threshold 0.5 differ"


def test_encoder_matches_golden_mu_and_logvar(golden) -> None:
    kind, stored, (vae, _, _) = golden
    with torch.inference_mode():
        mu, logvar = vae.encoder(torch.from_numpy(stored["enc_input"]).float())
    assert_golden(mu, stored["enc_mu"], f"{kind} enc_mu")
    assert_golden(logvar, stored["enc_logvar"], f"{kind} enc_logvar")


def test_feature_predictor_matches_golden(golden) -> None:
    kind, stored, (_, fp, _) = golden
    with torch.inference_mode():
        out = fp(torch.from_numpy(stored["z"]))
    assert_golden(out, stored["fp_out"], f"{kind} fp_out")


def test_unet_matches_golden_at_three_levels(golden) -> None:
    kind, stored, (_, _, ddpm) = golden
    z, context = torch.from_numpy(stored["z"]), torch.from_numpy(stored["context"])
    for m, level in enumerate(stored["unet_steps"]):
        with torch.inference_mode():
            via_level = ddpm(z, torch.full((2,), int(level)), context)  # our wrapper: level / 1000
            via_t = ddpm.nn_model(z, torch.full((2, 1, 1, 1, 1), float(stored["unet_t"][m])), context)
        assert_golden(via_level, stored["unet_eps"][m], f"{kind} unet_eps level {level}")
        assert_golden(via_t, stored["unet_eps"][m], f"{kind} unet_eps t {stored['unet_t'][m]}")


@pytest.mark.parametrize("loop", ["first5", "last5"])
def test_our_ddpm_scheduler_reproduces_the_published_loop(golden, loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our diffusers DDPM (998 steps, level = t + 1) runs MicroGen3D's loop step for step on the stored noise."""
    import diffusers.schedulers.scheduling_ddpm as scheduling_ddpm

    from generator.diffusion import make_scheduler

    kind, stored, (_, _, ddpm) = golden
    noise = iter(torch.from_numpy(stored[f"loop_{loop}_noise"]))
    monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda *args, **kwargs: next(noise))
    scheduler = make_scheduler("ddpm", noise_schedule(dict(ddpm.named_buffers())))
    scheduler.set_timesteps(998)
    timesteps = [int(t) for t in scheduler.timesteps]
    levels = [int(i) for i in stored[f"loop_{loop}_steps"]]
    start = timesteps.index(levels[0] - 1)
    assert timesteps[start:start + len(levels)] == [i - 1 for i in levels]
    context = torch.from_numpy(stored["context"])
    x = torch.from_numpy(stored["loop_x_start"])
    for m, level in enumerate(levels):
        t = level - 1
        with torch.inference_mode():
            eps = ddpm(x, torch.full((2,), t + 1), context)
            assert_golden(eps, stored[f"loop_{loop}_eps"][m], f"{kind} {loop} eps step {m}")
            x = scheduler.step(eps, t, x).prev_sample
        assert_golden(x, stored[f"loop_{loop}_x"][m + 1], f"{kind} {loop} x step {m}")
    assert_golden(x, stored[f"loop_{loop}_out"], f"{kind} {loop} out")
    assert next(noise, None) is None  # one draw per step with i > 1, none at i = 1
