"""CPU speed of one training step (forward + backward + AdamW) of our 3-D networks, side by side.

The issue's observation: on this machine's torch, a Conv3d forward + backward is
erratic on CPU (0.5 s to 8 s for one 16->16 3x3x3 conv on 16 volumes of
32x32x16 with oneDNN). This script measures, in one run and interleaved round
by round (so that a busy neighbour hits every configuration alike):

* the issue's single conv with oneDNN on and off;
* the ``small`` preset's VAE step: oneDNN on/off, ``channels_last_3d``, 1 vs 2
  threads, batch 8/16/32, ``torch.compile``, and two architecture variants
  (a full-resolution 3x3x3 output conv instead of our transposed k4 s2 output
  layer; a stride-1 full-resolution stem before the first stride-2 layer);
* the ``small`` preset's latent UNet step (its width, 16, at batch 64): oneDNN on/off,
  threads, ``channels_last_3d``, ``torch.compile``.

For each it reports the median wall time per step and per volume, the spread
(max / median over the rounds: "stable" means < 1.5) and the process CPU time,
which a loaded machine inflates less than wall time. Prints a table and writes
``benchmarks/results/train_step.json``.

    python benchmarks/train_step.py [--rounds 5] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from generator.models import VAE, LatentUNet, LatentUNetConfig, VAEConfig
from generator.models.layers import ResBlock3d, group_norm
from generator.training import load_config

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"
VOLUME = (32, 32, 16)


@dataclass
class Case:
    """One configuration: a step function and the settings it runs under."""

    group: str
    name: str
    batch: int
    step: Callable[[], None]
    threads: int = 2
    mkldnn: bool = True
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    error: str | None = None

    def run(self) -> None:
        torch.set_num_threads(self.threads)
        torch.backends.mkldnn.enabled = self.mkldnn
        w, c = time.perf_counter(), time.process_time()
        self.step()
        self.wall.append(time.perf_counter() - w)
        self.cpu.append(time.process_time() - c)


def _trainer(model: nn.Module, loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()

    return step


def _grey(batch: int, channels_last: bool = False) -> torch.Tensor:
    x = (torch.rand(batch, 1, *VOLUME, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    return x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x


class FullResOutputVAE(VAE):
    """Variant: the decoder ends with a full-resolution 3x3x3 conv after a transposed k4 s2 upsampling."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        w = config.widths
        layers = list(self.decoder.children())[:-1]
        layers += [nn.ConvTranspose3d(w[0], w[0], 4, stride=2, padding=1), group_norm(w[0]), nn.SiLU(), nn.Conv3d(w[0], config.channels, 3, padding=1)]
        self.decoder = nn.Sequential(*layers)


class StrideOneStemVAE(VAE):
    """Variant: a stride-1 3x3x3 conv and a residual block at full resolution before the first stride-2 layer."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        w0 = config.widths[0]
        first = list(self.encoder.children())
        first[0] = nn.Conv3d(w0, w0, 4, stride=2, padding=1)
        self.encoder = nn.Sequential(nn.Conv3d(config.channels, w0, 3, padding=1), ResBlock3d(w0), *first)


def vae_case(name: str, cls=VAE, batch: int = 16, channels_last: bool = False, compile: bool = False, **kw) -> Case:
    config = load_config("small").vae.model
    torch.manual_seed(0)
    model = cls(config)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    grey = _grey(batch, channels_last)
    run = torch.compile(model.loss) if compile else model.loss
    return Case("vae", name, batch, _trainer(model, lambda: run(grey)["loss"]), **kw)


def unet_case(name: str, batch: int = 64, channels_last: bool = False, compile: bool = False, **kw) -> Case:
    cfg = load_config("small")
    torch.manual_seed(0)
    model = LatentUNet(cfg.ddpm.model, cfg.vae.model.latent_channels, len(cfg.data.conditions))
    latent = cfg.vae.model.latent_shape(VOLUME)
    x = torch.randn(batch, *latent)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    t = torch.randint(0, 1000, (batch,))
    c = torch.randn(batch, len(cfg.data.conditions))
    fwd = torch.compile(model) if compile else model
    return Case("unet", name, batch, _trainer(model, lambda: (fwd(x, t, c) - x).pow(2).mean()), **kw)


def conv_case(name: str, **kw) -> Case:
    torch.manual_seed(0)
    conv = nn.Conv3d(16, 16, 3, padding=1)
    x = torch.randn(16, 16, *VOLUME, requires_grad=True)
    return Case("conv16", name, 16, _trainer(conv, lambda: conv(x).pow(2).mean()), **kw)


def build_cases(with_compile: bool) -> list[Case]:
    """The baseline of each group is the configuration training uses (oneDNN on, 1 thread); each other case changes one thing."""
    cases = [
        conv_case("oneDNN on, 1 thread", threads=1),
        conv_case("oneDNN on, 2 threads"),
        conv_case("oneDNN off, 1 thread", mkldnn=False, threads=1),
        vae_case("baseline (oneDNN, 1 thread, b16)", threads=1),
        vae_case("2 threads"),
        vae_case("oneDNN off", mkldnn=False, threads=1),
        vae_case("channels_last_3d", channels_last=True, threads=1),
        vae_case("channels_last_3d, 2 threads", channels_last=True),
        vae_case("batch 8", batch=8, threads=1),
        vae_case("batch 32", batch=32, threads=1),
        vae_case("arch: full-res output conv", cls=FullResOutputVAE, threads=1),
        vae_case("arch: stride-1 stem", cls=StrideOneStemVAE, threads=1),
        unet_case("baseline (oneDNN, 1 thread, b64)", threads=1),
        unet_case("2 threads"),
        unet_case("oneDNN off", mkldnn=False, threads=1),
        unet_case("channels_last_3d", channels_last=True, threads=1),
        unet_case("batch 32", batch=32, threads=1),
        unet_case("batch 128", batch=128, threads=1),
    ]
    if with_compile:
        cases += [vae_case("torch.compile", compile=True, threads=1), unet_case("torch.compile", compile=True, threads=1)]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up round)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile cases")
    args = parser.parse_args()
    default_threads, default_mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    cases = build_cases(not args.no_compile)
    for round_ in range(args.rounds + 1):
        for case in cases:
            if case.error:
                continue
            try:
                case.run()
            except Exception as exc:  # torch.compile may be unavailable (no compiler)
                case.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        if round_ == 0:
            for case in cases:
                case.wall.clear(), case.cpu.clear()
        print(f"round {round_}/{args.rounds} done: " + ", ".join(f"{c.group}/{c.name} {c.wall[-1]:.2f}s" for c in cases if c.wall and not c.error), flush=True)
    torch.set_num_threads(default_threads)
    torch.backends.mkldnn.enabled = default_mkldnn

    rows = []
    baseline = {}
    for case in cases:
        if case.error:
            rows.append({"group": case.group, "name": case.name, "batch": case.batch, "error": case.error})
            continue
        med = statistics.median(case.wall)
        row = {
            "group": case.group,
            "name": case.name,
            "batch": case.batch,
            "threads": case.threads,
            "mkldnn": case.mkldnn,
            "median_s": med,
            "min_s": min(case.wall),
            "max_s": max(case.wall),
            "spread": max(case.wall) / med,
            "ms_per_volume": 1000 * med / case.batch,
            "cpu_s_median": statistics.median(case.cpu),
        }
        baseline.setdefault(case.group, row["ms_per_volume"])
        row["speedup_vs_baseline"] = baseline[case.group] / row["ms_per_volume"]
        rows.append(row)

    header = f"{'group':7} {'configuration':36} {'batch':>5} {'median s':>9} {'min-max s':>13} {'spread':>6} {'ms/vol':>7} {'cpu s':>6} {'x base':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['group']:7} {r['name']:36} {r['batch']:>5} failed: {r['error']}")
            continue
        print(
            f"{r['group']:7} {r['name']:36} {r['batch']:>5} {r['median_s']:>9.3f} {r['min_s']:>6.2f}-{r['max_s']:<6.2f} "
            f"{r['spread']:>6.2f} {r['ms_per_volume']:>7.2f} {r['cpu_s_median']:>6.2f} {r['speedup_vs_baseline']:>6.2f}"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"load average during the run: {load}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(), "load_average": load, "rounds": args.rounds}
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
