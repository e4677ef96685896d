"""Score a model on held-out samples: instances from its maps, F1 / AJI / PQ against the masks."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from napari_hemd.models.data import Sample
from napari_hemd.models.prediction import predict
from napari_hemd.models.weights import HemdModel

__all__ = ["evaluate_model", "instances_from_maps"]

logger = logging.getLogger(__name__)


def instances_from_maps(
    maps: dict[str, np.ndarray],
    method: str = "threshold",
    *,
    grow: int | None = None,
    targets: str = "interior",
    min_size: int = 0,
    **kwargs,
) -> np.ndarray:
    """Whole-cell instance labels of one frame from predicted maps.

    Parameters
    ----------
    maps : dict
        ``foreground`` ``(Y, X)`` and, for U-Nets, ``background`` ``(Y, X)`` probabilities.
    method : str
        ``"threshold"`` (foreground > 0.5, connected components) or any method of
        :func:`napari_hemd.core.segment.segment` (``"hemd"`` ...).
    grow : int, optional
        Instances are grown by up to ``grow`` pixels into pixels with background probability below
        0.5 (the boundary class; :func:`napari_hemd.core.cells.grow_to_cells`); default by the
        model's ``targets`` (:data:`~napari_hemd.core.cells.GROW_BY_TARGETS`); 0 disables it.
    targets : {"interior", "cell"}
        What the U-Net's foreground class is (``model.metadata["targets"]``).
    min_size : int
        Instances smaller than this (pixels, before growing) are removed.
    **kwargs
        Passed to :func:`~napari_hemd.core.segment.segment`.

    Returns
    -------
    (Y, X) int32 ndarray
    """
    from napari_hemd.core.baselines import threshold_labels
    from napari_hemd.core.cells import GROW_BY_TARGETS, grow_to_cells

    fg = np.asarray(maps["foreground"], dtype=np.float32)
    if method == "threshold":
        labels = threshold_labels(fg, 0.5, connectivity=1, min_size=min_size)
    else:
        from napari_hemd.core.segment import segment

        labels = segment(fg[None], method=method, min_size=min_size, **kwargs)[0]
    if grow is None:
        grow = GROW_BY_TARGETS.get(targets, 3)
    if grow and "background" in maps and "boundary" in maps:
        labels = grow_to_cells(labels, maps["background"], grow)
    return labels.astype(np.int32)


def evaluate_model(
    model: HemdModel,
    samples: Sequence[Sample],
    *,
    methods: Sequence[str] = ("threshold", "hemd"),
    grow: int | None = None,
    tile: int | None = None,
    halo: int | None = None,
    min_size: int = 30,
) -> dict[str, dict]:
    """F1, AJI, PQ, SEG of a model's instances on samples it did not see.

    Parameters
    ----------
    model : HemdModel
    samples : sequence of Sample
        Held-out images with their masks.
    methods : sequence of str
        ``"threshold"``, ``"hemd"`` (H-EMD on the foreground probability), other
        :func:`~napari_hemd.core.segment.segment` methods, and ``"mutex"`` (affinity models:
        Mutex-watershed instances).
    grow : int
        See :func:`instances_from_maps`.

    Returns
    -------
    dict
        ``method -> {"F1", "AJI", "PQ", "SEG", "frames", "n_gt", "n_pred"}`` pooled over samples
        (objects and pixels summed over frames, as in :func:`napari_hemd.core.metrics`).
    """
    from napari_hemd.core.metrics import evaluate_sequence

    outputs = ["foreground"]
    if model.kind == "unet":
        outputs += ["boundary", "background"]
    elif "mutex" in methods:
        outputs.append("instances")
    preds: dict[str, dict[int, np.ndarray]] = {m: {} for m in methods}
    gts = {}
    for i, s in enumerate(samples):
        maps = predict(model, s.image, outputs=outputs, tile=tile, halo=halo, min_size=min_size)
        gts[i] = s.labels
        for m in methods:
            if m == "mutex":
                if model.kind != "affinity":
                    raise ValueError("method 'mutex' needs an affinity model; got a U-Net")
                preds[m][i] = maps["instances"]
            else:
                preds[m][i] = instances_from_maps(
                    maps,
                    m,
                    grow=grow,
                    targets=model.metadata.get("targets", "interior"),
                    min_size=min_size,
                )
    results = {}
    for m in methods:
        r = evaluate_sequence(gts, preds[m])
        results[m] = {
            **{k: round(float(r[k]), 4) for k in ("F1", "AJI", "PQ", "SEG") if k in r},
            "frames": len(samples),
            "n_gt": int(r["counts"]["n_gt"]),
            "n_pred": int(r["counts"]["n_pred"]),
        }
        logger.info("%s: %s", m, results[m])
    return results
