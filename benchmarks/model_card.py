"""Measure a generator bundle on its held-out series and write its model card.

Every number comes from the validation series of the bundle's own training run
(the same ``split_by_series(series, data.val_fraction, seed=data.seed)`` as
training), so nothing the networks were fitted on is scored:

* VAE: voxel accuracy of the reconstructions (posterior mean, decoded), and
  the R² of the conditions measured on the reconstructions;
* feature predictor: R² per attribute on the posterior means;
* conditional generation: ``--n-conditions`` condition vectors drawn from the
  validation samples (or the ``--held-out`` films), generated with each of
  ``--samplers`` (DDPM-1000 on ``--reference-conditions`` only, when given), each with
  guidance 1 (plain conditional) and ``--guidance``; the volumes are measured
  with the GraSPI-exact descriptors and the R² between requested and measured
  is reported per condition, with a PNG of requested against measured;
* spread: std of the measured descriptors of ``--n-spread`` samples at one
  fixed condition (the validation median), and a diversity measure (mean
  pairwise fraction of differing voxels) next to the same measure on the
  validation volumes nearest to that condition;
* seconds per sample (wall and CPU) of each sampler;
* training time per stage, from the run folder's ``stage_times.jsonl`` (written
  by ``microdesign train``) when given.

Generation runs in ``--jobs`` worker processes with one torch thread each (on a
busy 2-core machine, two threads per process spin and waste CPU time).

    python benchmarks/model_card.py --model generator/pretrained/default.pt \\
        --data runs/train-small/data.h5 --run-dir runs/train-small --out generator/pretrained

Writes ``OUT/README.md``, ``OUT/*.png`` and ``benchmarks/results/model_card.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "model_card.json"
#: (sampler, steps) pairs of the card.
SAMPLERS = (("ddpm", 1000), ("dpm++", 25))


def r2_score(requested: np.ndarray, measured: np.ndarray) -> float:
    """Coefficient of determination of ``measured`` against ``requested`` (both ``(n,)``)."""
    requested, measured = np.asarray(requested, float), np.asarray(measured, float)
    ss_tot = float(((requested - requested.mean()) ** 2).sum())
    return float(1.0 - ((measured - requested) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")


def measure(labels: np.ndarray, names: list[str], n_phases: int) -> np.ndarray:
    """GraSPI-exact descriptors ``(n, len(names))`` of label volumes ``(n, X, Y, Z)``."""
    from generator.descriptors import compute_batch

    rows = compute_batch(list(labels), n_phases=n_phases, n_jobs=1)
    return np.array([[row[name] for name in names] for row in rows], dtype=float)


def mean_pairwise_difference(labels: np.ndarray) -> float:
    """Mean over pairs of the fraction of voxels whose phase differs (``labels`` ``(n, X, Y, Z)``)."""
    flat = labels.reshape(labels.shape[0], -1)
    n = flat.shape[0]
    total = sum(float((flat[i] != flat[j]).mean()) for i in range(n) for j in range(i + 1, n))
    return total / (n * (n - 1) / 2)


def r2_interval(requested: np.ndarray, measured: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95 % interval of :func:`r2_score` over the conditions (rows resampled with replacement)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(requested), size=(n_boot, len(requested)))
    scores = np.array([r2_score(requested[i], measured[i]) for i in idx])
    return float(np.nanpercentile(scores, 2.5)), float(np.nanpercentile(scores, 97.5))


def r2_difference(requested: np.ndarray, measured: np.ndarray, reference: np.ndarray, *, n_boot: int = 2000,
                  seed: int = 0) -> tuple[float, float, float]:
    """``R²(measured) - R²(reference)`` on the same conditions, with its paired bootstrap 95 % interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(requested), size=(n_boot, len(requested)))
    diffs = np.array([r2_score(requested[i], measured[i]) - r2_score(requested[i], reference[i]) for i in idx])
    return (r2_score(requested, measured) - r2_score(requested, reference),
            float(np.nanpercentile(diffs, 2.5)), float(np.nanpercentile(diffs, 97.5)))


def in_plane_variants(films: np.ndarray) -> list[np.ndarray]:
    """Films ``(n, X, Y, Z)`` under each in-plane symmetry of training (:func:`generator.training.data.apply_in_plane_symmetry`)."""
    from generator.training.data import apply_in_plane_symmetry, in_plane_symmetries

    volumes = torch.from_numpy(films)[:, None]
    return [np.ascontiguousarray(apply_in_plane_symmetry(volumes, k)[:, 0].numpy()) for k in range(in_plane_symmetries(films.shape[1:]))]


def nearest_training_distance(crops: np.ndarray, training: np.ndarray) -> np.ndarray:
    """For each crop ``(n, X, Y, Z)``, the fraction of voxels differing from the nearest training film ``(m, X, Y, Z)``,
    over every training film, its in-plane symmetries and every in-plane (circular) translation.

    Two-phase labels. The agreement of ±1 fields under all translations is a cross-correlation over
    x and y, summed over z, computed with FFTs: a copy of a training film anywhere in a crop is found.
    """
    a = np.where(crops > 0, 1.0, -1.0).astype(np.float32)
    fa = np.fft.rfft2(a, axes=(1, 2))
    best = np.full(len(crops), -np.inf)
    nvox = a[0].size
    for variant in in_plane_variants(np.where(training > 0, 1.0, -1.0).astype(np.float32)):
        fb = np.fft.rfft2(variant, axes=(1, 2))  # (m, X, Y//2+1, Z)
        for i in range(len(crops)):
            spectrum = np.einsum("xyz,mxyz->mxy", np.conj(fa[i]), fb, optimize=True)
            corr = np.fft.irfft2(spectrum, s=a.shape[1:3], axes=(1, 2))
            best[i] = max(best[i], float(corr.max()) / nvox)
    return (1.0 - best) / 2.0


def crops_of(films: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Non-overlapping in-plane crops ``(n * k, sx, sy, Z)`` of films ``(n, X, Y, Z)``."""
    sx, sy = size
    return np.concatenate([films[:, i:i + sx, j:j + sy] for i in range(0, films.shape[1] - sx + 1, sx)
                           for j in range(0, films.shape[2] - sy + 1, sy)])


def _feature_guidance(report: dict) -> float:
    """The model's default feature-predictor guidance step (the project default, 0, when the bundle has none)."""
    from generator.diffusion.settings import resolve_feature_guidance

    return resolve_feature_guidance(None, report.get("sampling_defaults"))


def _generate_job(model: str, conditions: np.ndarray, sampler: str, steps: int, guidance: float, seed: int, batch_size: int) -> dict:
    """Worker: generate and measure; returns labels-free results plus timings."""
    torch.set_num_threads(1)
    from generator.loading import load_generator

    gen = load_generator(model)
    t0, c0 = time.time(), time.process_time()
    result = gen.generate(conditions, sampler=sampler, steps=steps, guidance=guidance, seed=seed, batch_size=batch_size,
                          allow_extrapolation=True)
    wall, cpu = time.time() - t0, time.process_time() - c0
    measured = measure(result.labels, list(gen.condition_names), gen.n_phases)
    return {"sampler": sampler, "steps": steps, "guidance": guidance, "measured": measured,
            "predicted": np.stack([result.predicted[n] for n in gen.condition_names], axis=1),
            "labels": result.labels if len(conditions) <= 64 else None,
            "wall_s_per_sample": wall / len(conditions), "cpu_s_per_sample": cpu / len(conditions)}


def _merge_chunks(parts: list[dict]) -> dict:
    """One result from the results of consecutive chunks of conditions (timings averaged per sample)."""
    sizes = np.array([len(p["measured"]) for p in parts], dtype=float)
    merged = dict(parts[0])
    merged["measured"] = np.concatenate([p["measured"] for p in parts])
    merged["predicted"] = np.concatenate([p["predicted"] for p in parts])
    merged["labels"] = None
    for key in ("wall_s_per_sample", "cpu_s_per_sample"):
        merged[key] = float((np.array([p[key] for p in parts]) * sizes).sum() / sizes.sum())
    return merged


def held_out(bundle: dict) -> tuple[np.ndarray, "object"]:
    """Indices of the validation samples of the bundle's training run and its sample table."""
    from generator.checkpoint import tensor_to_table
    from generator.data.dataset import split_by_series

    table = tensor_to_table(bundle["descriptor_table"])
    data_cfg = bundle["configs"]["training"]["data"]
    _, val_idx = split_by_series(table["series"].to_numpy(), data_cfg["val_fraction"], seed=data_cfg["seed"])
    return val_idx, table


@torch.inference_mode()
def autoencoder_metrics(bundle: dict, dataset, val_idx: np.ndarray, batch_size: int = 32) -> tuple[dict, torch.Tensor]:
    """VAE voxel accuracy and condition R² of reconstructions; returns them and the normalised val latents."""
    from generator.checkpoint import build_networks
    from generator.physics.labels import grey_to_labels

    vae, _, _ = build_networks(bundle)
    vae.eval()
    names = list(bundle["condition_names"])
    norm = bundle["normalisation"]
    accs, latents, truth, recon = [], [], [], []
    for start in range(0, len(val_idx), batch_size):
        grey = torch.stack([dataset[int(i)][0] for i in val_idx[start:start + batch_size]])
        mu, _ = vae.encode(grey)
        labels = vae.logits_to_labels(vae.decode(mu)).numpy().astype(np.uint8)
        target = grey_to_labels(grey[:, 0].numpy(), bundle["n_phases"])
        accs.append((labels == target).reshape(len(labels), -1).mean(axis=1))
        latents.append((mu - norm["latent_mean"].view(1, -1, 1, 1, 1)) / norm["latent_std"].view(1, -1, 1, 1, 1))
        truth.append(measure(target, names, bundle["n_phases"]))
        recon.append(measure(labels, names, bundle["n_phases"]))
    acc = np.concatenate(accs)
    truth, recon = np.concatenate(truth), np.concatenate(recon)
    return {
        "voxel_accuracy_mean": float(acc.mean()),
        "voxel_accuracy_min": float(acc.min()),
        "reconstruction_r2": {n: r2_score(truth[:, k], recon[:, k]) for k, n in enumerate(names)},
        "n_volumes": int(len(val_idx)),
    }, torch.cat(latents)


def plot(requested: np.ndarray, measured: np.ndarray, names: list[str], title: str, path: Path) -> None:
    """Requested against measured, one panel per descriptor (like MicroGen3D's Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4))
    for k, (ax, name) in enumerate(zip(np.atleast_1d(axes), names)):
        lo = min(requested[:, k].min(), measured[:, k].min())
        hi = max(requested[:, k].max(), measured[:, k].max())
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.scatter(requested[:, k], measured[:, k], s=8, alpha=0.6)
        ax.set_xlabel(f"requested {name}")
        ax.set_ylabel(f"measured {name}")
        ax.set_title(f"{name}: R² = {r2_score(requested[:, k], measured[:, k]):.3f}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def stage_times(run_dir: Path | None) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds (and steps) per stage of a training run folder, resumed runs summed (``{}`` without one)."""
    from generator.training.stages import training_record

    return {} if run_dir is None else training_record(run_dir)["stages"]


def run(args: argparse.Namespace) -> dict:
    from generator.checkpoint import read_bundle
    from generator.loading import load_generator

    from generator.data.dataset import MicrostructureDataset
    from generator.physics.labels import grey_to_labels
    from generator.training.data import sample_table

    torch.set_num_threads(1)
    bundle = read_bundle(args.model)
    names = list(bundle["condition_names"])
    n_phases = int(bundle["n_phases"])
    val_idx, table = held_out(bundle)
    train_idx = np.setdiff1d(np.arange(len(table)), val_idx)
    if args.held_out is not None:  # fresh physics films (other seeds), never trained on: every one is held out
        eval_set = MicrostructureDataset(args.held_out)
        table_eval = sample_table(eval_set)
        val_idx = np.arange(len(table_eval))
        train_idx = np.arange(len(table))
    else:
        eval_set, table_eval = MicrostructureDataset(args.data), table
    val = table_eval.iloc[val_idx]
    report: dict = {
        "model": str(args.model), "model_mb": os.path.getsize(args.model) / 2**20,
        "preset": bundle["configs"]["training"].get("name", "?"), "held_out_command": args.held_out_command,
        "sampling_defaults": {"sampler": "dpm++", "steps": 25, "guidance": 1.0, **dict(bundle.get("sampling_defaults") or {})},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "load_average_at_start": list(os.getloadavg())},
        "n_train_samples": int(len(train_idx)), "n_val_samples": int(len(val_idx)),
        "held_out": None if args.held_out is None else {"file": str(args.held_out), "volume_shape": list(eval_set.volume_shape)},
        "training_shape": list(bundle.get("training_shape") or bundle["volume_shape"]), "volume_shape": list(bundle["volume_shape"]),
        "n_val_series": int(val["series"].nunique()), "conditions": names,
        "training_times": stage_times(args.run_dir) or {
            stage: dict(times) for stage, times in (bundle.get("training_record") or {}).get("stages", {}).items()},
    }

    vae_metrics, latents = autoencoder_metrics(bundle, eval_set, val_idx, batch_size=args.batch_size)
    report["vae"] = vae_metrics
    gen = load_generator(args.model)
    predicted = gen.predict(latents)
    report["feature_predictor_r2"] = {a: r2_score(val[a].to_numpy(), predicted[a]) for a in gen.attribute_names}

    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(val), size=args.n_conditions, replace=args.n_conditions > len(val))
    requested = val[names].to_numpy(dtype=float)[pick]
    fixed = np.median(val[names].to_numpy(dtype=float), axis=0)
    samplers = [(s, int(n)) for s, n in (item.split(":") for item in args.samplers.split(","))]
    jobs = [(s, n, g) for s, n in samplers for g in ((1.0, args.guidance) if args.guidance != 1.0 else (1.0,))]
    # each configuration in chunks of --batch-size conditions, so that --jobs workers share the long DDPM-1000 runs
    chunks = [slice(a, a + args.batch_size) for a in range(0, len(requested), args.batch_size)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {(s, n, g): [pool.submit(_generate_job, str(args.model), requested[c], s, n, g, args.seed + k, args.batch_size)
                               for k, c in enumerate(chunks[:_chunks_for(n, args)])]
                   for s, n, g in sorted(jobs, key=lambda j: -j[1] * (1 + (j[2] != 1.0)))}
        spread_future = pool.submit(_generate_job, str(args.model), np.repeat(fixed[None], args.n_spread, axis=0), "dpm++", 25,
                                    float(report["sampling_defaults"]["guidance"]),
                                    args.seed + 1000, args.batch_size)
        results = {key: _merge_chunks([f.result() for f in parts]) for key, parts in futures.items()}
        spread = spread_future.result()

    report["generation"] = []
    for s, n, g in jobs:
        res = results[(s, n, g)]
        req = requested[: len(res["measured"])]
        tag = f"{s.replace('+', 'p')}{n}_g{g:g}"
        plot(req, res["measured"], names, f"{s}-{n}, guidance {g:g}: requested vs measured ({len(req)} held-out conditions)",
             args.out / f"generation_{tag}.png")
        report["generation"].append({
            "sampler": s, "steps": n, "guidance": g, "n_conditions": len(req), "plot": f"generation_{tag}.png",
            "r2": {name: r2_score(req[:, k], res["measured"][:, k]) for k, name in enumerate(names)},
            "r2_ci95": {name: r2_interval(req[:, k], res["measured"][:, k]) for k, name in enumerate(names)},
            "mae": {name: float(np.abs(req[:, k] - res["measured"][:, k]).mean()) for k, name in enumerate(names)},
            "fp_r2_on_samples": {name: r2_score(res["measured"][:, k], res["predicted"][:, k]) for k, name in enumerate(names)},
            "wall_s_per_sample": res["wall_s_per_sample"], "cpu_s_per_sample": res["cpu_s_per_sample"],
        })

    # each sampler against the first one (DDPM-1000) at the same guidance, paired on the same conditions
    baseline = {g: results[(s, n, g)]["measured"] for s, n, g in jobs if (s, n) == samplers[0]}
    for entry in report["generation"]:
        ref = baseline.get(entry["guidance"])
        if ref is None or (entry["sampler"], entry["steps"]) == samplers[0]:
            continue
        res = results[(entry["sampler"], entry["steps"], entry["guidance"])]
        m = min(len(ref), len(res["measured"]))  # the reference may run on the first chunks only
        entry["r2_minus_reference"] = {"reference": f"{samplers[0][0]}-{samplers[0][1]}", "n_conditions": m, **{
            name: r2_difference(requested[:m, k], res["measured"][:m, k], ref[:m, k]) for k, name in enumerate(names)}}

    # spread and diversity at one fixed condition, next to the held-out volumes nearest to it (one per series)
    scaled = (val[names].to_numpy(dtype=float) - fixed) / val[names].to_numpy(dtype=float).std(axis=0)
    order = np.argsort((scaled ** 2).sum(axis=1))
    _, first = np.unique(val["series"].to_numpy()[order], return_index=True)  # the nearest film of each series
    distinct = order[np.sort(first)]
    nearest = val_idx[distinct[: args.n_spread]] if args.held_out is not None else val_idx[order[: args.n_spread]]
    reference = grey_to_labels(np.stack([eval_set[int(i)][0][0].numpy() for i in nearest]), n_phases)
    report["fixed_condition"] = {
        "condition": dict(zip(names, fixed.tolist())), "n_samples": args.n_spread,
        "sampler": f"dpm++-25, guidance {report['sampling_defaults']['guidance']:g}, feature guidance {_feature_guidance(report):g}",
        "measured_mean": dict(zip(names, spread["measured"].mean(axis=0).tolist())),
        "measured_std": dict(zip(names, spread["measured"].std(axis=0).tolist())),
        "diversity_generated": mean_pairwise_difference(spread["labels"]),
        "diversity_nearest_validation": mean_pairwise_difference(reference),
        "nearest_validation_std": dict(zip(names, table_eval.iloc[nearest][names].to_numpy(dtype=float).std(axis=0).tolist())),
        "n_reference_volumes": int(len(nearest)), "reference_series": int(table_eval.iloc[nearest]["series"].nunique()),
    }
    if n_phases == 2:  # memorisation: how close generated volumes lie to a training film, next to unseen held-out volumes
        train_set = MicrostructureDataset(args.data)
        training = grey_to_labels(np.stack([train_set[int(i)][0][0].numpy() for i in train_idx]), n_phases)
        crop = training.shape[1:3]
        gen_crops = crops_of(spread["labels"], crop)
        ref_crops = crops_of(reference, crop)
        d_gen = nearest_training_distance(gen_crops, training)
        d_ref = nearest_training_distance(ref_crops, training)
        report["fixed_condition"].update({
            "memorisation_method": f"{crop[0]}x{crop[1]} in-plane crops against every training film under its in-plane symmetries "
                                   "and every in-plane translation (FFT cross-correlation)",
            "nearest_training_difference_generated": float(np.median(d_gen)),
            "nearest_training_difference_validation": float(np.median(d_ref)),
            "near_copies_generated": float((d_gen < 0.1).mean()),
        })
    return report


def _chunks_for(steps: int, args: argparse.Namespace) -> int:
    """How many chunks of conditions a sampler runs: all, or ``--reference-conditions`` worth for the slow reference."""
    if steps >= 100 and args.reference_conditions:
        return max(1, -(-args.reference_conditions // args.batch_size))
    return 10**9


def _fmt(x: float) -> str:
    return f"{x:.3f}" if np.isfinite(x) else "n/a"


#: The accuracy targets of the film-scale default model (issue #12): R² floors per condition, with <= 25 solver steps.
R2_TARGETS = {"ABS_f_D": 0.93, "CT_f_D_tort1": 0.93, "CT_f_A_tort1": 0.93}
#: How far the 25-step sampler's R² may lie below DDPM-1000's, and the largest spread at a fixed condition.
SAMPLER_GAP, SPREAD = 0.02, 0.02
#: Diversity and memorisation floors, as fractions of the held-out films' values; seconds per film of the fast sampler.
DIVERSITY_RATIO, MEMORISATION_RATIO, SECONDS_PER_FILM = 0.8, 0.9, 2.0


def target_lines(report: dict) -> list[str]:
    """The card's "Targets" section: each target, the measured value and whether it is met."""
    rows = []
    default = report.get("sampling_defaults", {}).get("guidance", 1.0)
    for g in report["generation"]:
        if g["steps"] > 25 or g["guidance"] != default:
            continue  # the targets are for the model's default sampling (a fast sampler); other rows are for comparison
        for name, floor in R2_TARGETS.items():
            if name in g["r2"]:
                lo = g["r2_ci95"][name][0]
                rows.append((f"R² {name} ≥ {floor} ({g['sampler']}-{g['steps']}, guidance {g['guidance']:g})",
                             f"{g['r2'][name]:.3f} (95 % interval from {lo:.3f})", "yes" if g["r2"][name] >= floor else "no"))
        for name, (d, lo, hi) in ((n, v) for n, v in g.get("r2_minus_reference", {}).items() if n != "reference"):
            verdict = "yes" if d >= -SAMPLER_GAP else ("within noise" if hi >= -SAMPLER_GAP else "no")
            rows.append((f"{g['sampler']}-{g['steps']} within {SAMPLER_GAP} R² of {g['r2_minus_reference']['reference']}: {name}"
                         f" (guidance {g['guidance']:g})", f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]", verdict))
        rows.append((f"seconds per film ≤ {SECONDS_PER_FILM:g} ({g['sampler']}-{g['steps']}, one thread, wall)",
                     f"{g['wall_s_per_sample']:.2f} (CPU {g['cpu_s_per_sample']:.2f})",
                     "yes" if g["wall_s_per_sample"] <= SECONDS_PER_FILM else "no"))
    fc = report["fixed_condition"]
    for name, std in fc["measured_std"].items():
        rows.append((f"spread (std) of {name} at a fixed condition ≤ {SPREAD}", f"{std:.4f}", "yes" if std <= SPREAD else "no"))
    ratio = fc["diversity_generated"] / fc["diversity_nearest_validation"]
    rows.append((f"diversity at a fixed condition ≥ {DIVERSITY_RATIO} × held-out films'", f"{ratio:.2f} ×",
                 "yes" if ratio >= DIVERSITY_RATIO else "no"))
    if "nearest_training_difference_generated" in fc:
        ratio = fc["nearest_training_difference_generated"] / fc["nearest_training_difference_validation"]
        rows.append((f"distance to the nearest training film ≥ {MEMORISATION_RATIO} × held-out films' (median)", f"{ratio:.2f} ×",
                     "yes" if ratio >= MEMORISATION_RATIO else "no"))
    return [
        "## Targets",
        "",
        "\"within noise\": the point estimate misses the target but its paired 95 % interval reaches it, so this",
        f"run of {report['generation'][0]['n_conditions']} conditions cannot tell.",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *[f"| {t} | {m} | {v} |" for t, m, v in rows],
        "",
    ]


def write_card(report: dict, path: Path) -> None:
    """The model card (Markdown) from a report of :func:`run`."""
    names = report["conditions"]
    times = report["training_times"]
    preset = report.get("preset", "small")
    shape = "×".join(map(str, report.get("volume_shape", [])))
    if report.get("held_out"):
        source = [
            f"measured on {report['n_val_samples']} held-out physics films of {'×'.join(map(str, report['held_out']['volume_shape']))} voxels",
            f"from {report['n_val_series']} fresh Cahn–Hilliard series (seeds that no training run used: {report.get('held_out_command', '')}),",
            f"which the networks never saw. The networks were trained on {report['n_train_samples']} films of"
            f" {'×'.join(map(str, report['training_shape']))}; they generate {shape} films by default.",
        ]
    else:
        source = [
            f"measured on the {report['n_val_series']} held-out validation series ({report['n_val_samples']} volumes) of its",
            f"training run, which the networks never saw ({report['n_train_samples']} training volumes).",
        ]
    lines = [
        f"# Default generator (`{preset}` preset): model card",
        "",
        "Shipped as `generator/pretrained/default.pt`; `load_generator(\"default\")`, `microdesign generate` and",
        "design studies use it when no model is given. Written by `benchmarks/model_card.py`: every number below is",
        *source,
        "",
        f"Reproduce (data generation included, fixed seeds): `microdesign train --preset {preset}`, then copy",
        f"`runs/train-{preset}/generator.pt` to `generator/pretrained/default.pt` (docs/default-model.md).",
        "",
        f"Bundle size: {report['model_mb']:.2f} MiB. Machine: {report['machine']['cpus']} CPUs, torch {report['machine']['torch']},",
        f"load average at the start of the measurement {report['machine']['load_average_at_start'][0]:.1f} (a shared machine).",
        "",
        "## VAE",
        "",
        f"Voxel accuracy of reconstructions (posterior mean): mean {report['vae']['voxel_accuracy_mean']:.4f},"
        f" worst volume {report['vae']['voxel_accuracy_min']:.4f} ({report['vae']['n_volumes']} volumes).",
        "R² of the conditions measured on reconstructions against the originals: "
        + ", ".join(f"{n} {_fmt(v)}" for n, v in report["vae"]["reconstruction_r2"].items()) + ".",
        "",
        "## Feature predictor (R² on held-out latents)",
        "",
        "| attribute | R² |",
        "|---|---|",
        *[f"| {a} | {_fmt(v)} |" for a, v in report["feature_predictor_r2"].items()],
        "",
        "## Conditional generation",
        "",
        f"{report['generation'][0]['n_conditions']} condition vectors: the measured descriptors of"
        + (" held-out physics films" if report.get("held_out") else " validation samples") + f" (of {report['n_val_samples']})"
        + (" (with replacement: a condition drawn twice is generated with other noise)" if report["generation"][0]["n_conditions"] > report["n_val_samples"] else "")
        + f"; each generated film ({'×'.join(map(str, report.get('volume_shape', [])))}) is measured",
        "with the GraSPI-exact descriptors. R² of measured against requested, its bootstrap 95 % interval over the",
        "conditions in square brackets and the MAE in round ones; seconds per film on one thread of this CPU (wall / CPU),"
        " the whole `generate` call (sampling, decoding, feature predictor).",
        f"Every row with the model's feature-predictor guidance (step {_feature_guidance(report):g}; 0: off).",
        "",
        "| sampler | guidance | " + " | ".join(names) + " | s/film wall | s/film CPU | plot |",
        "|---|---|" + "---|" * len(names) + "---|---|---|",
    ]
    for g in report["generation"]:
        cells = " | ".join(f"{_fmt(g['r2'][n])} [{_fmt(g['r2_ci95'][n][0])}, {_fmt(g['r2_ci95'][n][1])}] ({g['mae'][n]:.3f})" for n in names)
        lines.append(f"| {g['sampler']}-{g['steps']} | {g['guidance']:g} | {cells} | {g['wall_s_per_sample']:.2f} | {g['cpu_s_per_sample']:.2f} | [png]({g['plot']}) |")
    paired = [g for g in report["generation"] if "r2_minus_reference" in g]
    if paired:
        lines += [
            "",
            f"Paired on the same conditions, R² of each fast sampler minus that of {paired[0]['r2_minus_reference']['reference']}"
            " at the same guidance (paired bootstrap 95 % interval):",
            "",
            "| sampler | guidance | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
            *[f"| {g['sampler']}-{g['steps']} | {g['guidance']:g} | "
              + " | ".join(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in (g["r2_minus_reference"][n] for n in names)) + " |"
              for g in paired],
        ]
    fc = report["fixed_condition"]
    lines += [
        "",
        "## Spread and diversity at a fixed condition",
        "",
        f"{fc['n_samples']} samples ({fc['sampler']}) at the {'held-out' if report.get('held_out') else 'validation'} median "
        + ", ".join(f"{n} = {v:.3f}" for n, v in fc["condition"].items()) + ".",
        "",
        "| descriptor | mean measured | std measured | std of the nearest "
        + ("held-out films (one per series)" if report.get("held_out") else "validation volumes") + " |",
        "|---|---|---|---|",
        *[f"| {n} | {fc['measured_mean'][n]:.3f} | {fc['measured_std'][n]:.4f} | {fc['nearest_validation_std'][n]:.4f} |" for n in names],
        "",
        f"Diversity (mean pairwise fraction of voxels of differing phase): generated {fc['diversity_generated']:.3f};"
        f" the {fc['n_reference_volumes']} reference films nearest to the condition (from {fc['reference_series']} series)"
        f" {fc['diversity_nearest_validation']:.3f}.",
        "MicroGen3D reports a spread of at most 0.02 at a fixed condition.",
        "",
    ]
    if "nearest_training_difference_generated" in fc:
        lines += [
            "Memorisation check (" + fc.get("memorisation_method", "whole volumes") + "): the median fraction of voxels in which"
            f" a film differs from its nearest training film is {fc['nearest_training_difference_generated']:.3f} for these generated"
            f" films and {fc['nearest_training_difference_validation']:.3f} for the held-out films nearest to the condition"
            + (f"; {100 * fc['near_copies_generated']:.0f} % of the generated crops lie within 0.1 of a training film (near copies)."
               if "near_copies_generated" in fc else "."),
            "",
        ]
    lines += [
        *target_lines(report),
        "## Training time per stage",
        "",
        "| stage | wall (s) | CPU (s) | steps |",
        "|---|---|---|---|",
        *[f"| {s} | {t['wall_s']:.0f} | {t['cpu_s']:.0f} | {t.get('steps', '')} |" for s, t in times.items()],
        f"| total | {sum(t['wall_s'] for t in times.values()):.0f} | {sum(t['cpu_s'] for t in times.values()):.0f} | |",
        "",
        "Wall time was taken on a machine shared with other jobs; CPU time is the process's own.",
        "",
        "What limits these numbers, and how to do better: [docs/default-model.md](../../docs/default-model.md#limits).",
        "",
    ]
    path.write_text("\n".join(lines))


def headline(report: dict) -> dict:
    """The card's headline numbers (``microdesign info`` prints them): the fast sampler's R², speed, spread, diversity, copies."""
    default = report.get("sampling_defaults", {}).get("guidance", 1.0)
    fast = next((g for g in report["generation"] if g["steps"] <= 25 and g["guidance"] == default), report["generation"][0])
    fc = report["fixed_condition"]
    head = {
        "measured on": (f"{report['n_val_samples']} held-out physics films ({report['n_val_series']} fresh series)"
                        if report.get("held_out") else f"{report['n_val_samples']} validation volumes ({report['n_val_series']} series)"),
        "sampler": f"{fast['sampler']}-{fast['steps']}, guidance {fast['guidance']:g}, feature guidance {_feature_guidance(report):g}",
        **{f"R² {name}": round(v, 3) for name, v in fast["r2"].items()},
        "seconds per film (one thread)": round(fast["wall_s_per_sample"], 2),
        "max std at a fixed condition": round(max(fc["measured_std"].values()), 4),
        "diversity vs held-out films": round(fc["diversity_generated"] / fc["diversity_nearest_validation"], 2),
        "VAE voxel accuracy": round(report["vae"]["voxel_accuracy_mean"], 4),
    }
    if "nearest_training_difference_generated" in fc:
        head["distance to nearest training film vs held-out films"] = round(
            fc["nearest_training_difference_generated"] / fc["nearest_training_difference_validation"], 2)
    return {"headline": head}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("generator/pretrained/default.pt"))
    parser.add_argument("--data", required=True, help="the labelled training dataset (HDF5) of the bundle")
    parser.add_argument("--run-dir", type=Path, default=None, help="training run folder (stage timings)")
    parser.add_argument("--out", type=Path, default=Path("generator/pretrained"), help="folder of README.md and the PNGs")
    parser.add_argument("--n-conditions", type=int, default=600, help="condition vectors per sampler setting (drawn with replacement beyond the validation set)")
    parser.add_argument("--n-spread", type=int, default=32)
    parser.add_argument("--guidance", type=float, default=1.5, help="the guided rows' classifier-free guidance scale")
    parser.add_argument("--batch-size", type=int, default=50, help="conditions per worker task and network batch")
    parser.add_argument("--jobs", type=int, default=4, help="worker processes (one torch thread each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", type=Path, default=None,
                        help="labelled HDF5 of fresh physics films (other seeds) to measure on instead of the training run's validation series")
    parser.add_argument("--held-out-command", default="", help="how the held-out films were simulated (quoted in the card)")
    parser.add_argument("--reference-conditions", type=int, default=0,
                        help="run samplers of >= 100 steps (DDPM-1000) on only this many conditions (0: all)")
    parser.add_argument("--samplers", default=",".join(f"{s}:{n}" for s, n in SAMPLERS), help="sampler:steps pairs, comma-separated")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    write_card(report, args.out / "README.md")
    from generator.model_info import card_path

    card_path(args.model).write_text(json.dumps(headline(report), indent=2))  # read by `microdesign info`
    for g in report["generation"]:
        print(f"{g['sampler']}-{g['steps']} g={g['guidance']:g}: " + "  ".join(f"{n} R2={v:.3f}" for n, v in g["r2"].items())
              + f"  {g['wall_s_per_sample']:.2f} s/sample")
    print(f"VAE voxel accuracy {report['vae']['voxel_accuracy_mean']:.4f}; wrote {args.out / 'README.md'} and {RESULTS}")


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
