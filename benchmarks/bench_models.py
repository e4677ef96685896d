"""Inference seconds per 512x512 frame (wrapper vs a plain torch forward) and training steps/s.

Both sides run in the same process, on the same network, with the same thread count, so the ratio
is what the wrapper (percentile normalisation, reflection context, tiling, stitching, softmax /
affinities) costs on top of the network itself.

    PYTHONPATH=src python benchmarks/bench_models.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_hemd.models import HemdModel, TrainConfig, load_model, predict
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
            with torch.inference_mode():
                net(x)

        plain()  # warm-up
        t_plain = best_of(plain, args.repeat)
        settings = [
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
            ranges=(1, 3, 5, 9, 11),
        )
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            train_model([sample], [], f"{d}/m.pt", cfg, progress=False)
            dt = time.perf_counter() - t0
        print(
            f"train {kind:9s}: {args.train_steps / dt:.2f} steps/s (batch 4, 128x128, {arch or 'default'})"
        )


if __name__ == "__main__":
    main()
