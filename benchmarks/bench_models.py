"""Inference seconds per 512x512 frame (wrapper vs a plain torch forward) and training steps/s.

Both sides run in the same process, on the same network, with the same thread count and the
same allocator (``models._allocator.heap_allocation``, which prediction runs in), so the ratio is
what the wrapper (percentile normalisation, reflection context, tiling, stitching, softmax /
affinities) costs on top of the network itself. Training: ``train_model``'s steps against bare
steps of the same network (forward, backward and an Adam step on a batch of the same size), in
the same process (the run's own set-up and save taken out: ``--train-steps`` and twice as many,
the difference): the ratio is what sampling, augmentation and the loss cost on top (the
affinity network's loss runs it twice, on the view and on a transformed one).

    PYTHONPATH=src python benchmarks/bench_models.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_hemd.models import HemdModel, TrainConfig, load_model, predict
from napari_hemd.models._allocator import heap_allocation
from napari_hemd.models.data import Sample
from napari_hemd.models.registry import list_models
from napari_hemd.models.training import train_model


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    frame = rng.normal(100, 20, (512, 512)).astype(np.float32)
    shipped = {m.name: load_model(m.name) for m in list_models()}
    if not shipped:
        shipped = {
            "unet (untrained)": HemdModel.create("unet"),
            "affinity (untrained)": HemdModel.create("affinity"),
        }
    print(
        f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, frame 512x512, best of {args.repeat}"
    )
    print(f"{'model':16s} {'plain fwd s':>11s} {'predict s':>10s} {'ratio':>6s}  settings")
    for name, model in shipped.items():
        net = model.network.eval()
        x = torch.from_numpy(frame)[None, None]

        def plain(net=net, x=x):
            with heap_allocation(), torch.inference_mode():
                net(x)

        plain()  # warm-up
        t_plain = best_of(plain, args.repeat)
        settings = [
            ("tiles sized to the frame (the default)", {}),
            ("tile=512 halo=64", {"tile": 512, "halo": 64}),
            ("tile=256 halo=32", {"tile": 256, "halo": 32}),
            ("untiled halo=0", {"tile": 0, "halo": 0}),
        ]
        for label, kw in settings:
            t = best_of(lambda kw=kw, model=model: predict(model, frame, tta=1, **kw), args.repeat)
            print(f"{name:16s} {t_plain:11.3f} {t:10.3f} {t / t_plain:6.2f}  {label}")
        if model.kind == "affinity":
            t = best_of(
                lambda model=model: predict(
                    model, frame, outputs=["foreground", "instances"], tta=1
                ),
                args.repeat,
            )
            print(
                f"{name:16s} {t_plain:11.3f} {t:10.3f} {t / t_plain:6.2f}  + Mutex watershed instances"
            )
    # Training throughput: steps per second at the shipped recipe (batch 4, 128x128 patches).
    labels = np.zeros((256, 256), np.int32)
    labels[40:90, 40:90], labels[120:200, 100:180] = 1, 2
    sample = Sample(
        (labels > 0).astype(np.float32) + rng.normal(0, 0.1, labels.shape).astype(np.float32),
        labels,
        "s/0",
        "labels",
    )
    for kind, arch in (("unet", {"base_channels": 16, "depth": 4}), ("affinity", {})):
        cfg = TrainConfig(
            model=kind,
            architecture=arch,
            steps=args.train_steps,
            batch_size=4,
            patch_size=128,
            val_every=10**6,
            checkpoint_every=0,
            calibrate=False,
            ranges=(1, 3, 5, 9, 11),
        )
        import tempfile

        took = []
        for steps in (2, args.train_steps, 2 * args.train_steps):  # the first: a warm-up;
            with tempfile.TemporaryDirectory() as d:  # the difference: the steps alone
                t0 = time.perf_counter()
                cfg.steps = steps
                train_model([sample], [], f"{d}/m.pt", cfg, progress=False)
                took.append(time.perf_counter() - t0)
        dt = took[2] - took[1]  # (not the run's set-up and save)
        bare = bare_steps(HemdModel.create(kind, **arch).network, args.train_steps)
        print(
            f"train {kind:9s}: {args.train_steps / dt:.2f} steps/s, bare network "
            f"{args.train_steps / bare:.2f} steps/s: a step takes {dt / bare:.2f}x the bare "
            f"network's (batch 4, 128x128, "
            f"{arch or 'default'})"
        )


def _tensors(outs):
    """The tensors among a network's outputs (an affinity network's: embeddings, pyramids)."""
    for o in outs:
        if isinstance(o, torch.Tensor):
            yield o
        elif isinstance(o, (list, tuple)):
            yield from _tensors(o)
        elif isinstance(o, dict):
            yield from _tensors(o.values())


def bare_steps(net, steps: int) -> float:
    """Seconds for ``steps`` forward + backward + Adam steps of ``net`` on a 4 x 128 x 128 batch."""
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(4, 1, 128, 128)

    def step():
        opt.zero_grad()
        out = net(x)
        outs = out.values() if isinstance(out, dict) else out if isinstance(out, tuple) else [out]
        loss = sum(o.float().square().mean() for o in _tensors(outs))
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
