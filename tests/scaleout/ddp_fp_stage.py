"""Train the feature-predictor stage with the project's training code, on one process or under DDP.

Run by ``test_distributed.py``; not a test module itself::

    python tests/scaleout/ddp_fp_stage.py --out DIR --devices 1 --batch-size 16
    torchrun --standalone --nproc-per-node 2 tests/scaleout/ddp_fp_stage.py --out DIR --devices 2 --batch-size 8

Same global batch in both (the whole training set, one batch per step), a
deterministic loss (posterior ``sigma = 0``, no dropout) and the same seed,
so the two runs should follow the same loss trajectory. Rank 0 writes
``DIR/run.json`` (world size, backend, final weights file) and Lightning's
``DIR/logs/fp/metrics.csv``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

N_SAMPLES = 16
LATENT_SHAPE = (2, 4, 4, 2)
N_ATTRIBUTES = 3


def data(seed: int = 0):  # noqa: ANN201
    """``(mu, sigma, targets)``: random latents and smooth non-linear targets of them."""
    import torch

    g = torch.Generator().manual_seed(seed)
    mu = torch.randn((N_SAMPLES, *LATENT_SHAPE), generator=g)
    flat = mu.flatten(1)
    targets = torch.stack([flat[:, :8].mean(1), torch.tanh(flat[:, 8:16].sum(1) / 4), flat[:, 16:].pow(2).mean(1)], dim=1)
    return mu, torch.zeros_like(mu), targets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=N_SAMPLES)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    import lightning as L
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, TensorDataset

    from generator.models import FeaturePredictor, FeaturePredictorConfig
    from generator.training.config import TrainerConfig
    from generator.training.modules import FeaturePredictorModule
    from generator.training.stages import fit_stage

    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    mu, sigma, targets = data()
    fp = FeaturePredictor(FeaturePredictorConfig(hidden=[32], dropout=0.0), LATENT_SHAPE, N_ATTRIBUTES)
    fp.set_normalisation(targets)
    module = FeaturePredictorModule(fp, torch.zeros(LATENT_SHAPE[0]), torch.ones(LATENT_SHAPE[0]), lr=3e-3)
    dataset = TensorDataset(mu, sigma, fp.normalise(targets))
    trainer = TrainerConfig(accelerator="cpu", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto")
    lt = fit_stage(
        module,
        DataLoader(dataset, batch_size=args.batch_size, shuffle=True),
        DataLoader(dataset, batch_size=args.batch_size, shuffle=False),
        stage="fp", out_dir=args.out, max_steps=args.steps, val_every=1, checkpoint_every=args.steps,
        trainer=trainer, progress=False,
    )
    if lt.global_rank == 0:
        weights = args.out / "fp_final.pt"
        torch.save(module.fp.state_dict(), weights)
        record = {
            "world_size": lt.world_size,
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "weights": str(weights),
        }
        (args.out / "run.json").write_text(json.dumps(record))
    if dist.is_initialized():
        # Every rank waits for the others, then tears the process group down before the interpreter exits.
        # Left to static destruction, gloo's threads of a rank that exits first are destroyed while still
        # joinable or while the other rank still talks to the store: "terminate called without an active
        # exception" (SIGABRT), now and then.
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
