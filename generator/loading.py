"""Loading a generator: the one place where files become a :class:`~generator.pipeline.Generator`.

The parts return plain objects and know nothing of the pipeline:
:mod:`generator.checkpoint` reads and checks a bundle dictionary and builds its
networks (:func:`~generator.checkpoint.read_bundle`,
:func:`~generator.checkpoint.build_networks`), and
:mod:`generator.models.microgen3d` builds and loads the published networks
(:func:`~generator.models.microgen3d.load_folder`). This module wraps them as
a :class:`~generator.pipeline.Generator`, built from plain callables:

* :func:`load_generator`: any model (``"default"``, a bundle file, a MicroGen3D folder);
* :func:`load_bundle`: a bundle file of ours;
* :func:`load_microgen3d`: a folder of MicroGen3D weights (published or fine-tuned);
* :func:`microgen3d_generator`: three MicroGen3D networks already in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from generator.checkpoint import (
    NonFiniteOutputError,
    build_networks,
    bundle_calibration_table,
    in_plane_multiple_of_configs,
    read_bundle,
    tensor_to_table,
)
from generator.diffusion import NoiseSchedule
from generator.errors import FileFormatError, InvalidInputError, MicrodesignError
from generator.models import microgen3d
from generator.physics.labels import grey_to_labels
from generator.pipeline import Generator
from generator.validation import check_device

#: Where the shipped default bundle lives.
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "pretrained" / "default.pt"

__all__ = ["DEFAULT_BUNDLE", "load_bundle", "load_generator", "load_microgen3d", "microgen3d_generator"]


def load_generator(path: str | os.PathLike[str] = "default", *, kind: str | None = None, device: str | torch.device = "cpu") -> Generator:
    """Load a :class:`Generator`.

    Parameters
    ----------
    path
        A bundle file of ours (written by ``microdesign train``), ``"default"``
        (the shipped model), or a folder holding MicroGen3D's ``vae.pt``,
        ``fp.pt`` and ``ddpm.pt``.
    kind
        For a MicroGen3D folder: ``CH_2phase``, ``CH_3phase`` or ``experimental``.
    device
        Torch device.

    Returns
    -------
    Generator
        Ready to sample (:meth:`~generator.pipeline.Generator.generate`).

    Raises
    ------
    MicrodesignError
        When the path does not exist, the default model is not shipped, or the files do not match.
    """
    device = check_device(device, "device")
    if str(path) == "default":
        if not DEFAULT_BUNDLE.is_file():
            raise MicrodesignError(
                f"model: no default model is shipped yet ({DEFAULT_BUNDLE} is missing); "
                "train one with `microdesign train` and pass its bundle file"
            )
        return load_bundle(DEFAULT_BUNDLE, device=device)
    target = Path(path)
    if target.is_dir():
        return load_microgen3d(target, kind=kind, device=device)
    if not target.exists():
        raise FileFormatError(f"model: {target} does not exist")
    if kind is not None:
        raise InvalidInputError("kind: only applies to a folder of MicroGen3D weights, not to a bundle file")
    return load_bundle(target, device=device)


def load_bundle(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Generator:
    """Load one of our bundle files as a :class:`generator.pipeline.Generator`.

    Raises
    ------
    FileFormatError, CheckpointError
        When the file is not a bundle or its keys or shapes do not match.
    """
    bundle = read_bundle(path)
    vae, fp, unet = build_networks(bundle)
    device = torch.device(device)
    vae.to(device), fp.to(device), unet.to(device)
    norm = bundle["normalisation"]
    latent_mean = norm["latent_mean"].to(device).view(1, -1, 1, 1, 1)
    latent_std = norm["latent_std"].to(device).view(1, -1, 1, 1, 1)

    def decoder(z: torch.Tensor) -> torch.Tensor:
        logits = vae.decode(z * latent_std + latent_mean)
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteOutputError(f"model: the VAE decoder of {path} returned non-finite (NaN/inf) logits")
        return vae.logits_to_labels(logits)

    def encoder(grey: torch.Tensor) -> torch.Tensor:
        mu, _ = vae.encode(grey)
        return (mu - latent_mean) / latent_std

    grey_levels = torch.tensor([0.0, 1.0, 0.5], device=device).view(1, 3, 1, 1, 1)  # by label: donor, acceptor, mixed

    def grey_decoder(z: torch.Tensor) -> torch.Tensor:
        logits = vae.decode(z * latent_std + latent_mean)
        if vae.config.n_phases == 2:
            return torch.sigmoid(logits[:, 0])
        return (torch.softmax(logits, dim=1) * grey_levels).sum(dim=1)  # expected grey level

    return Generator(
        decoder=decoder,
        feature_predictor=fp.predict,
        denoiser=unet,
        latent_shape=bundle["latent_shape"],
        volume_shape=bundle["volume_shape"],
        schedule=NoiseSchedule(**bundle["configs"]["schedule"]),
        condition_names=bundle["condition_names"],
        attribute_names=bundle["attribute_names"],
        n_phases=bundle["n_phases"],
        context_mean=norm["context_mean"].numpy(),
        context_std=norm["context_std"].numpy(),
        descriptor_table=tensor_to_table(bundle["descriptor_table"]),
        calibration_table=bundle_calibration_table(bundle),
        device=device,
        in_plane_multiple=in_plane_multiple_of_configs(bundle["configs"]),
        training_shape=bundle.get("training_shape"),
        sampling_defaults=bundle.get("sampling_defaults"),
        encoder=encoder,
        grey_decoder=grey_decoder,
        grey_labels=int(bundle["n_phases"]) == 2,
    )


def load_microgen3d(folder: str | os.PathLike[str], *, kind: str | None, device: str | torch.device = "cpu") -> Generator:
    """Load MicroGen3D's published ``vae.pt``, ``fp.pt``, ``ddpm.pt`` as a :class:`~generator.pipeline.Generator`.

    A folder written by ``microdesign train --init-from`` (fine-tuned) also
    holds ``microgen3d.json`` (kind and network sizes, so ``kind`` may be
    omitted) and usually ``descriptors.csv`` (the training data's attributes:
    :attr:`~generator.pipeline.Generator.descriptor_table` and the condition ranges).

    Parameters
    ----------
    folder
        Folder holding the three plain state dicts.
    kind
        ``CH_2phase``, ``CH_3phase`` or ``experimental``; optional for a fine-tuned folder.
    device
        Torch device.

    Raises
    ------
    MicrodesignError
        Missing files, unknown kind, or keys / shapes that do not match the kind (named in the message).
    """
    kind, vae, fp, ddpm = microgen3d.load_folder(folder, kind=kind)
    return microgen3d_generator(kind, vae, fp, ddpm, device=device, descriptor_table=microgen3d.read_descriptors(folder))


def microgen3d_generator(
    kind: str | microgen3d.MicroGen3DKind,
    vae: microgen3d.MicroGen3DVAE,
    fp: microgen3d.MicroGen3DFeaturePredictor,
    ddpm: microgen3d.MicroGen3DDDPM,
    *,
    device: str | torch.device = "cpu",
    descriptor_table: pd.DataFrame | None = None,
) -> Generator:
    """Wrap the three published networks as a :class:`generator.pipeline.Generator`.

    The denoiser feeds level ``t + 1`` (see :func:`noise_schedule`) and the raw
    context; the published model has no unconditional branch, so classifier-free
    guidance other than 1.0 raises :class:`InvalidInputError`. The decoder's grey
    levels become labels with :func:`generator.physics.labels.grey_to_labels`
    (2-phase: threshold 0.5; CH 3-phase: nearest of 0 / 0.5 / 1).

    ``descriptor_table`` (one row per training sample, e.g. of a fine-tuned
    folder's ``descriptors.csv``) gives each condition it holds its training
    range; the others keep their valid domain (:data:`generator.models.microgen3d.DOMAINS`).
    """
    spec = microgen3d.KINDS[kind] if isinstance(kind, str) else kind
    device = torch.device(device)
    vae, fp, ddpm = (net.to(device).eval() for net in (vae, fp, ddpm))

    def denoiser(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if context is None:
            raise InvalidInputError("guidance: MicroGen3D weights were trained without condition dropout, use guidance 1.0")
        return ddpm(x, t + 1, context)

    def decoder(z: torch.Tensor) -> np.ndarray:
        grey = vae.decode(z)[:, 0].float().cpu().numpy()
        return grey_to_labels(grey, spec.n_phases)

    def grey_decoder(z: torch.Tensor) -> torch.Tensor:
        return vae.decode(z)[:, 0]

    def encoder(grey: torch.Tensor) -> torch.Tensor:
        return vae.encode(grey)

    return Generator(
        decoder=decoder,
        feature_predictor=fp,
        denoiser=denoiser,
        latent_shape=spec.latent_shape,
        volume_shape=spec.volume_shape,
        schedule=microgen3d.noise_schedule(dict(ddpm.named_buffers())),
        condition_names=spec.context_attributes,
        attribute_names=spec.attributes,
        n_phases=spec.n_phases,
        descriptor_table=descriptor_table,
        condition_ranges=microgen3d.condition_ranges(spec, descriptor_table),
        device=device,
        encoder=encoder,
        grey_decoder=grey_decoder,
    )
