"""Trainer throughput against a plain PyTorch loop, in one process.

    python -m benchmarks.train_throughput --out benchmarks/results/train_throughput.json

Baseline: torchvision's MNIST dataset with ToTensor + Normalize transforms, a shuffling
DataLoader, the same networks and batch size, and the textbook BCE loop (D on real and fake
separately, G step through an unfrozen D). Both count real images consumed per second.
At batch 256 it also reports the trainer's achieved FLOP rate (FlopCounterMode FLOPs per step
/ seconds per step) as a share of the machine's float32 matmul rate measured in the same run.
Goals: >= 1.3x the plain loop at batch 64; >= 0.7 of the matmul rate at batch 256.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from benchmarks.common import count_flops, machine, matmul_rate, time_calls, write_json
from gan_models import TrainConfig, Trainer, build_discriminator, build_generator, load_images, resolve_data_root


def trainer_rate(images, batch_size: int, steps: int) -> tuple[float, Trainer]:
    trainer = Trainer(TrainConfig(batch_size=batch_size, steps=steps + 5, seed=0), images)
    sec = time_calls(trainer.train_step, repeats=steps, warmup=5)
    return batch_size / sec, trainer


def plain_loop_rate(data_root, batch_size: int, steps: int) -> float:
    """The plain loop of the course notebooks, same networks and optimiser settings."""
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    ds = datasets.MNIST(str(data_root), train=True, transform=tf, download=False)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0)
    cfg = TrainConfig(batch_size=batch_size)
    torch.manual_seed(0)
    G, D = build_generator(cfg.network), build_discriminator(cfg.network)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    ones, zeros = torch.ones(batch_size), torch.zeros(batch_size)

    def step(x):
        z = torch.randn(batch_size, cfg.latent_dim)
        fake = G(z)
        loss_d = (F.binary_cross_entropy_with_logits(D(x), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    batches = itertools.cycle(loader)  # cycle keeps re-iterating the DataLoader (transforms run every epoch)
    for _ in range(5):
        step(next(batches)[0])
    t0 = time.perf_counter()
    for _ in range(steps):
        step(next(batches)[0])
    return batch_size * steps / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--steps", type=int, default=200, help="timed steps per measurement")
    p.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = p.parse_args(argv)
    root = resolve_data_root(args.data_root)
    images = load_images("mnist", split="train", data_root=root).images

    result: dict = {"benchmark": "train_throughput", "machine": machine(), "steps": args.steps}
    plain64 = plain_loop_rate(root, 64, args.steps)
    ours64, _ = trainer_rate(images, 64, args.steps)
    result["batch_64"] = {"trainer_images_per_s": ours64, "plain_loop_images_per_s": plain64,
                          "speedup": ours64 / plain64, "goal_speedup": 1.3}

    ours256, trainer = trainer_rate(images, 256, args.steps)
    flops_per_step = count_flops(trainer.train_step)
    achieved = flops_per_step * ours256 / 256
    peak = matmul_rate()
    result["batch_256"] = {"trainer_images_per_s": ours256, "flops_per_step": flops_per_step,
                           "achieved_flop_per_s": achieved, "matmul_flop_per_s": peak,
                           "share_of_matmul_rate": achieved / peak, "goal_share": 0.7}
    result["goals_met"] = {"speedup_batch_64": ours64 / plain64 >= 1.3, "share_batch_256": achieved / peak >= 0.7}
    write_json(result, args.out)


if __name__ == "__main__":
    main()
