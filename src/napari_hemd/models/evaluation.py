"""Score a model on held-out samples: instances from its maps, F1 / AJI / PQ against the masks."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from napari_hemd.models.data import Sample
from napari_hemd.models.prediction import predict
from napari_hemd.models.weights import HemdModel

__all__ = [
    "GROW_THRESHOLDS",
    "MUTEX_BIASES",
    "TTA_CANDIDATES",
    "TTA_MARGIN",
    "calibrate_growth",
    "calibrate_model",
    "calibrate_mutex_bias",
    "calibrate_tta",
    "evaluate_model",
    "instances_from_maps",
]

logger = logging.getLogger(__name__)


def instances_from_maps(
    maps: dict[str, np.ndarray],
    method: str = "threshold",
    *,
    grow: int | None = None,
    grow_threshold: float = 0.5,
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
    grow_threshold : float
        Pixels with background probability below this may be taken by the growth.
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
        labels = grow_to_cells(labels, maps["background"], grow, threshold=grow_threshold)
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
    tta: int | None = None,
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
    tta : int, optional
        Test-time flips (:func:`napari_hemd.models.predict`); default: the model's own.

    Returns
    -------
    dict
        ``method -> {"F1", "AJI", "PQ", "SEG", "frames", "n_gt", "n_pred"}`` pooled over samples
        (objects and pixels summed over frames, as in :func:`napari_hemd.core.metrics`).
    """
    from napari_hemd.core.metrics import evaluate_sequence

    grow_threshold = float(model.metadata.get("segment_defaults", {}).get("grow_threshold", 0.5))
    outputs = ["foreground"]
    if model.kind == "unet":
        outputs += ["boundary", "background"]
    elif "mutex" in methods:
        outputs.append("instances")
    preds: dict[str, dict[int, np.ndarray]] = {m: {} for m in methods}
    gts = {}
    for i, s in enumerate(samples):
        # samples are frames as the network sees them (zoomed already): no zoom of the model's
        maps = predict(model, s.image, outputs=outputs, tile=tile, halo=halo, min_size=min_size,
                       scale=1.0, tta=tta)  # fmt: skip
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
                    grow_threshold=grow_threshold,
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


#: Background-probability thresholds :func:`calibrate_growth` tries.
GROW_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: Repulsive-edge biases :func:`calibrate_mutex_bias` tries.
MUTEX_BIASES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def _check_calibration(model: HemdModel, kind: str, samples, values, name: str, ok, expected):
    if model.kind != kind:
        names = {"unet": "a U-Net", "affinity": "an affinity"}
        raise ValueError(
            f"this calibration needs {names[kind]} model; got {names[model.kind]} model"
        )
    if not samples:
        raise ValueError("samples must hold at least one frame with masks; got none")
    if not values or not all(ok(float(v)) for v in values):
        raise ValueError(f"{name} must be one or more values in {expected}; got {list(values)}")


def _choose(
    found: list, candidates: Sequence[float], instances
) -> tuple[float, dict[float, dict[str, dict[str, float]]]]:
    """Score ``instances(entry, value)`` for every value; the best mean (F1 + AJI) / 2 wins.

    ``found``: ``(group, reference, ...)`` per frame. Groups (data folders) count equally; ties go
    to the value closest to the start of ``candidates`` (the network's own decision first).
    """
    from napari_hemd.core.metrics import evaluate_sequence

    table: dict[float, dict[str, dict[str, float]]] = {}
    for v in candidates:
        per: dict[str, tuple[dict, dict]] = {}
        for i, entry in enumerate(found):
            refs, preds = per.setdefault(entry[0], ({}, {}))
            refs[i], preds[i] = entry[1], instances(entry, float(v))
        table[float(v)] = {
            g: {k: round(float(r[k]), 4) for k in ("F1", "AJI")}
            for g, r in ((g, evaluate_sequence(*pair)) for g, pair in per.items())
        }

    def score(v: float) -> float:
        return _score(table[v])

    order = {float(v): i for i, v in enumerate(candidates)}
    best = max(table, key=lambda v: (score(v), -order[v]))
    logger.info("calibration: %s (score %.4f; first candidate %.4f)", best, score(best),
                score(float(candidates[0])))  # fmt: skip
    return best, table


def calibrate_growth(
    model: HemdModel,
    samples: Sequence[Sample],
    *,
    thresholds: Sequence[float] = GROW_THRESHOLDS,
    group=None,
    tta: int = 1,
) -> tuple[float, dict]:
    """Choose how far whole-cell growth may reach into a U-Net's uncertain border pixels.

    Instances are grown into pixels whose background probability is below a threshold
    (:func:`napari_hemd.core.cells.grow_to_cells`). 0.5 is the network's own decision; a network
    trained on several datasets whose annotators draw outlines differently (BBBC039 tight, the
    CTC fluorescence truths generous) learns a compromise, and its masks come out smaller than
    one dataset's annotation (on Fluo-N2DL-HeLa 81 % of the area at 0.5). Every threshold is
    tried on ``samples`` (take *training* frames, so held-out scores stay honest) with single-frame
    H-EMD and the model's minimum size; the best mean of (F1 + AJI) / 2 over the groups wins.

    Parameters
    ----------
    model : HemdModel
        A U-Net.
    samples : sequence of Sample
        Frames with their masks.
    thresholds : sequence of float
        Candidates in (0, 1]; ties go to the earlier one.
    group : callable, optional
        ``group(sample) -> str``: scores are averaged per group first (default: the data folder,
        :attr:`Sample.dataset`), so each dataset counts equally.
    tta : int
        Test-time flips of the predictions (:func:`napari_hemd.models.predict`); 1: none.

    Returns
    -------
    (threshold, table)
        The chosen threshold and ``{threshold: {group: {"F1", "AJI"}}}``.
    """
    from napari_hemd.core.cells import GROW_BY_TARGETS, grow_to_cells

    _check_calibration(
        model, "unet", samples, thresholds, "thresholds", lambda v: 0 < v <= 1, "(0, 1]"
    )
    group = group or (lambda s: s.dataset)
    grow = GROW_BY_TARGETS[model.metadata.get("targets", "interior")]
    min_size = int(model.metadata.get("segment_defaults", {}).get("min_size", 20))
    found = []  # (group, reference, instances before growth, background)
    for s in samples:
        maps = predict(model, s.image, outputs=["foreground", "background"], scale=1.0, tta=tta)
        labels = instances_from_maps(maps, "hemd", grow=0, min_size=min_size)
        found.append((group(s), s.labels, labels, maps["background"]))
    return _choose(found, thresholds, lambda e, t: grow_to_cells(e[2], e[3], grow, threshold=t))


#: Test-time flips :func:`calibrate_tta` weighs against none.
TTA_CANDIDATES = (1, 4)
#: What flips must add to the calibration score, (F1 + AJI) / 2, to be worth their time.
TTA_MARGIN = 0.005


def _score(per_group: dict[str, dict[str, float]]) -> float:
    """Calibration score of one candidate: mean over groups of (F1 + AJI) / 2."""
    return round(float(np.mean([(x["F1"] + x["AJI"]) / 2 for x in per_group.values()])), 4)


def calibrate_tta(
    model: HemdModel,
    samples: Sequence[Sample],
    *,
    views: Sequence[int] = TTA_CANDIDATES,
    margin: float = TTA_MARGIN,
    thresholds: Sequence[float] = GROW_THRESHOLDS,
    group=None,
) -> tuple[int, float, dict]:
    """Choose a U-Net's test-time flips, with the whole-cell growth threshold that goes with them.

    Averaging mirrored views smooths a U-Net's map where it is unsure (dim rims, contacts,
    textured cell bodies), which H-EMD's thresholds then cut more cleanly; it costs as many
    forward passes as views. For every number of ``views`` the growth threshold is calibrated
    (:func:`calibrate_growth`) and the best score kept; more views win only when they beat
    fewer by at least ``margin`` of the score (mean over groups of (F1 + AJI) / 2), so a model
    is not made slower for a gain within the noise of a few frames.

    Returns
    -------
    (views, threshold, table)
        The chosen number of views, its growth threshold and ``{views: {"score",
        "grow_threshold", "scores": {threshold: {group: {"F1", "AJI"}}}}}``.
    """
    from napari_hemd.models.prediction import TTA_VIEWS

    bad = [v for v in views if isinstance(v, bool) or v not in TTA_VIEWS]
    if not views or bad:
        raise ValueError(f"views must be one or more of {sorted(TTA_VIEWS)}; got {list(views)}")
    if not (isinstance(margin, (int, float)) and margin >= 0):
        raise ValueError(f"margin must be a score difference >= 0; got {margin!r}")
    table = {}
    for v in sorted(set(int(v) for v in views)):
        value, scores = calibrate_growth(model, samples, thresholds=thresholds, group=group, tta=v)
        table[v] = {"score": _score(scores[value]), "grow_threshold": value, "scores": scores}
    chosen = min(table)
    for v in sorted(table):  # more views must beat the chosen fewer by the margin
        if table[v]["score"] >= table[chosen]["score"] + margin:
            chosen = v
    logger.info("calibration: tta %d (%s)", chosen,
                ", ".join(f"{v} views {t['score']:.4f}" for v, t in table.items()))  # fmt: skip
    return chosen, table[chosen]["grow_threshold"], table


def calibrate_mutex_bias(
    model: HemdModel,
    samples: Sequence[Sample],
    *,
    biases: Sequence[float] = MUTEX_BIASES,
    group=None,
) -> tuple[float, dict]:
    """Choose the Mutex watershed's repulsive-edge bias of an affinity model on ``samples``.

    Where the embeddings of two touching nuclei are not pulled apart far enough, long-range
    affinities across the contact stay high (0.6-0.9) and the Mutex watershed merges them.
    Weighing every repulsive edge ``1 - affinity + bias``
    (:func:`napari_hemd.models.mutex_watershed_labels`) restores the separations; too large a
    bias splits nuclei. Scored like :func:`calibrate_growth` (take training images).

    Returns
    -------
    (bias, table)
        The chosen bias and ``{bias: {group: {"F1", "AJI"}}}``.
    """
    from napari_hemd.models.affinity import make_offsets
    from napari_hemd.models.mutex import mutex_watershed_labels

    _check_calibration(model, "affinity", samples, biases, "biases", lambda v: 0 <= v < 1, "[0, 1)")
    group = group or (lambda s: s.dataset)
    offsets = make_offsets(model.metadata["ranges"], model.metadata.get("neighbourhood", 4))
    found = []  # (group, reference, affinities, foreground)
    for s in samples:
        maps = predict(model, s.image, outputs=["foreground", "affinities"], scale=1.0)
        found.append((group(s), s.labels, maps["affinities"], maps["foreground"]))
    return _choose(
        found,
        biases,
        lambda e, b: mutex_watershed_labels(e[2], offsets, foreground=e[3], bias=b),
    )


def calibrate_model(model: HemdModel, samples: Sequence[Sample], *, group=None) -> dict:
    """Calibrate a model on ``samples`` (training frames) and store the choice in its metadata.

    U-Nets: the test-time flips and the whole-cell growth threshold that goes with them
    (:func:`calibrate_tta`) into ``metadata["tta"]`` (the views' scores into
    ``metadata["tta_calibration"]``) and ``metadata["segment_defaults"]["grow_threshold"]``
    (its thresholds' scores into ``metadata["calibration"]``); affinity networks: the Mutex watershed's
    bias (:func:`calibrate_mutex_bias`) into ``metadata["mutex_bias"]``. The scores of every
    candidate go to ``metadata["calibration"]``, which is returned.
    """
    if model.kind == "unet":
        views, value, by_views = calibrate_tta(model, samples, group=group)
        table = by_views[views]["scores"]
        defaults = dict(model.metadata.get("segment_defaults", {}))
        defaults["grow_threshold"] = value
        model.metadata["segment_defaults"] = defaults
        model.metadata["tta"] = views
        model.metadata["tta_calibration"] = {
            "value": views,
            "margin": TTA_MARGIN,
            "frames": [s.name for s in samples],
            "scores": {
                str(v): {"score": t["score"], "grow_threshold": t["grow_threshold"]}
                for v, t in by_views.items()
            },
        }
        key = "grow_threshold"
    else:
        value, table = calibrate_mutex_bias(model, samples, group=group)
        model.metadata["mutex_bias"] = value
        key = "mutex_bias"
    record = {
        "parameter": key,
        "value": value,
        "frames": [s.name for s in samples],
        "scores": {str(v): per for v, per in table.items()},
    }
    model.metadata["calibration"] = record
    return record
