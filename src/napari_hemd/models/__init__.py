"""Torch models: U-Net, affinity network, training, tiled prediction, model files.

The 3-class U-Net and the pixel-embedded affinity network, and the shipped models.

Importing this package imports torch; :mod:`napari_hemd` itself does not import it.
"""

from __future__ import annotations

from napari_hemd.models.affinity import AffinityNet, make_offsets, self_correlation
from napari_hemd.models.data import Sample, load_samples, split_samples
from napari_hemd.models.evaluation import (
    calibrate_growth,
    calibrate_model,
    calibrate_mutex_bias,
    calibrate_tta,
    evaluate_model,
    instances_from_maps,
)
from napari_hemd.models.mutex import merge_small_instances, mutex_watershed_labels
from napari_hemd.models.prediction import (
    OUTPUTS,
    iter_predict,
    predict,
    predict_volume,
    predict_volume_workflow,
    volume_settings,
)
from napari_hemd.models.registry import SHIPPED_MODELS, list_models, load_model
from napari_hemd.models.streaming import predict_stream
from napari_hemd.models.training import TrainConfig, pick_device, train_model
from napari_hemd.models.unet import CLASS_NAMES, UNet2d
from napari_hemd.models.weights import (
    HemdModel,
    build_network,
    load_model_file,
    normalize_percentile,
    save_model_file,
)

__all__ = [
    "CLASS_NAMES",
    "OUTPUTS",
    "SHIPPED_MODELS",
    "AffinityNet",
    "HemdModel",
    "Sample",
    "TrainConfig",
    "UNet2d",
    "build_network",
    "calibrate_growth",
    "calibrate_model",
    "calibrate_mutex_bias",
    "calibrate_tta",
    "evaluate_model",
    "instances_from_maps",
    "iter_predict",
    "list_models",
    "load_model",
    "load_model_file",
    "load_samples",
    "make_offsets",
    "merge_small_instances",
    "mutex_watershed_labels",
    "normalize_percentile",
    "pick_device",
    "predict",
    "predict_stream",
    "predict_volume",
    "predict_volume_workflow",
    "save_model_file",
    "self_correlation",
    "split_samples",
    "train_model",
    "volume_settings",
]
