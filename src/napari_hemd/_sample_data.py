"""napari sample data: layer-data tuples built by the package itself (no Qt imports)."""

from __future__ import annotations

from napari_hemd.data.synthetic import SAMPLE_ZOOM, nuclei_video, nuclei_volume


def _layers(sample: dict, name: str) -> list[tuple]:
    return [
        (sample["image"], {"name": f"{name} image", "colormap": "gray"}, "image"),
        (
            sample["prob"],
            {
                "name": f"{name} probability",
                "colormap": "magma",
                "opacity": 0.5,
                "contrast_limits": (0.0, 1.0),
                "visible": False,
                # the image it is the probability of: a Project saved from it keeps the image,
                # so a reopened session shows the labels over the nuclei, not over black
                "metadata": {"hemd_source": f"{name} image"},
            },
            "image",
        ),
        (sample["labels"], {"name": f"{name} ground truth", "visible": False}, "labels"),
    ]


def nuclei_video_sample() -> list[tuple]:
    """Sample 2D+time video: image, foreground probability and exact labels.

    Its nuclei (about 27 px across: :data:`~napari_hemd.data.synthetic.SAMPLE_ZOOM`) are the size
    the shipped ``nuclei-fluo`` learned, so Predict and Segment run it at the model's own zoom.
    """
    return _layers(nuclei_video(zoom=SAMPLE_ZOOM), "nuclei video")


def nuclei_volume_sample() -> list[tuple]:
    """Sample 3D stack: image, foreground probability and exact labels."""
    return _layers(nuclei_volume(), "nuclei volume")
