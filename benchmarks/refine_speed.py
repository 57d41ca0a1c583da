"""Latent DOT speed: the batched refiner against the seeds' reference (one sample at a time).

    python -m benchmarks.refine_speed --n 10000 --steps 20 --out refine_speed.json

Both run the same math on the course's MLP pair (latent_dim 100, normal prior, exact projection,
Adam(0, 0.9), lr 0.01, l2 cost, K_eff estimated once): the batched run is ``refinement.refine``
(batches of --batch-size); the reference loops over samples, each a mini-batch of 1 with its own
``torch.optim.Adam`` on one latent, as the course reports and Tanaka's code are written. The
reference is timed on the first --reference-n samples and extrapolated linearly to --n (it is
per-sample work); its results are checked against the batched ones on those samples.

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode on one refinement step of one full
batch (matmuls forward and backward; element-wise work is not counted) and scaled to n x steps.
The achieved rate is divided by the float32 matmul rate of this machine, measured in the same run
with a loop of 2048x2048 matmuls.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import count_flops, machine, matmul_rate, write_json
from gan_models import NetworkConfig, build_discriminator, build_generator, sample_latent
from refinement import RefineConfig, make_refiner, refine
from refinement.projection import exact_projection, retract_to_sphere


def reference_latent_dot(g, d, config: RefineConfig, z_y: torch.Tensor, k_eff: float) -> torch.Tensor:
    """The seeds' formulation: for each sample alone, Adam on z of shape [1, d]."""
    out = []
    for i in range(z_y.shape[0]):
        anchor = z_y[i : i + 1]
        z = anchor.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=config.lr, betas=(0.0, 0.9))
        for _ in range(config.steps):
            opt.zero_grad()
            loss = (z - anchor + config.delta).norm() - d(g(z)).sum() / k_eff
            loss.backward()
            with torch.no_grad():
                z.grad.copy_(exact_projection(z.grad, z))
            opt.step()
            with torch.no_grad():  # "exact": back onto the starting sphere, z <- ||z0|| z / ||z||
                z.copy_(retract_to_sphere(z, anchor.norm(dim=1, keepdim=True)))
        with torch.no_grad():
            out.append(g(z))
    return torch.cat(out)


def step_flops(g, d, config: RefineConfig, k_eff: float, batch: int, latent_dim: int) -> int:
    """Matmul FLOPs of one refinement step on one batch of ``batch`` samples."""
    refiner = make_refiner(config, g, d, latent_prior="normal", k_eff=k_eff)
    state = refiner.start(torch.randn(batch, latent_dim))
    return count_flops(lambda: refiner.step(state, 1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--reference-n", type=int, default=100, help="samples the reference loop is timed on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    for name in ("n", "steps", "batch_size", "reference_n"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be a positive integer")
    ref_n = min(args.reference_n, args.n)

    torch.manual_seed(args.seed)
    net = NetworkConfig(latent_dim=100)
    g, d = build_generator(net).eval(), build_discriminator(net).eval()
    for p_ in [*g.parameters(), *d.parameters()]:
        p_.requires_grad_(False)
    config = RefineConfig(method="latent", steps=args.steps, lr=0.01, optimizer="adam", k_eff="estimate")

    peak = matmul_rate()

    began = time.perf_counter()
    result = refine(g, d, config, latent_dim=100, latent_prior="normal", n=args.n, seed=args.seed,
                    score_steps=(args.steps,), batch_size=args.batch_size)
    batched_total = time.perf_counter() - began
    batched_steps = float(result.trajectory["seconds"].iloc[-1])  # the step loop alone

    z_y = sample_latent(args.n, 100, "normal", generator=torch.Generator().manual_seed(args.seed))[:ref_n]
    began = time.perf_counter()
    reference = reference_latent_dot(g, d, config, z_y, result.k_eff)
    reference_seconds = time.perf_counter() - began
    max_diff = float((reference - result.samples[:ref_n]).abs().max())

    flops_per_sample_step = step_flops(g, d, config, result.k_eff, args.batch_size, 100) / args.batch_size
    total_flops = flops_per_sample_step * args.n * args.steps
    achieved = total_flops / batched_steps
    reference_extrapolated = reference_seconds * args.n / ref_n
    report = {
        "benchmark": "latent DOT (MLP G/D, latent_dim 100, Adam(0, 0.9), exact projection, l2 cost)",
        "n": args.n,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "machine": machine(),
        "batched": {
            "seconds_total": batched_total,
            "seconds_steps": batched_steps,
            "samples_per_second": args.n / batched_total,
            "samples_per_second_steps_only": args.n / batched_steps,
        },
        "reference": {
            "description": "loop over samples, mini-batch of 1, torch.optim.Adam per sample",
            "timed_on_samples": ref_n,
            "seconds_measured": reference_seconds,
            "seconds_extrapolated_to_n": reference_extrapolated,
            "extrapolated": ref_n < args.n,
            "samples_per_second": ref_n / reference_seconds,
            "max_abs_diff_vs_batched": max_diff,
        },
        "speedup": (args.n / batched_total) / (ref_n / reference_seconds),
        "flops": {
            "counted_with": "torch.utils.flop_counter.FlopCounterMode, one step of one batch, scaled to n x steps",
            "per_sample_step": flops_per_sample_step,
            "total": total_flops,
            "achieved_flop_per_s": achieved,
            "matmul_flop_per_s": peak,
            "matmul_reference": "best of repeated float32 2048x2048 matmuls (benchmarks.common.matmul_rate), "
                                "same process",
            "share_of_matmul_rate": achieved / peak,
            "goal_share": 0.5,
        },
    }
    write_json(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
