"""napari sample data: layer-data tuples built by the package itself (no Qt imports)."""

from __future__ import annotations

from napari_hemd.data.synthetic import SAMPLE_ZOOM, nuclei_video, nuclei_volume

#: How Segment takes the 3D sample's probability: as a 3D model's maps of one stack (its
#: slices' objects linked into 3D objects, small fragments dropped), with ``nuclei-3d``'s
#: settings (the sample's nuclei are its size). Sliced as a movie, its objects had one id per
#: slice (3D F1 0); so, 3D F1 0.71 against its exact labels.
VOLUME_DEFAULTS = {"planes": 3, "link": True, "delta": 2.0, "min_size": 20, "min_volume": 300}


def _layers(sample: dict, name: str, *, volume: bool = False) -> list[tuple]:
    # a stack's axes named z, y, x: Export and Proofread take it as one stack of 3D objects
    axes = {"axis_labels": ("z", "y", "x")} if volume else {}
    meta = {"hemd_source": f"{name} image"}  # the image it is the probability of: a Project
    # saved from it keeps the image, so a reopened session shows the labels over the nuclei
    if volume:
        meta["hemd_segment_defaults"] = dict(VOLUME_DEFAULTS)  # (_widgets' DEFAULTS_KEY)
    return [
        (sample["image"], {"name": f"{name} image", "colormap": "gray", **axes}, "image"),
        (
            sample["prob"],
            {
                "name": f"{name} probability",
                "colormap": "magma",
                "opacity": 0.5,
                "contrast_limits": (0.0, 1.0),
                "visible": False,
                "metadata": meta,
                **axes,
            },
            "image",
        ),
        (sample["labels"], {"name": f"{name} ground truth", "visible": False, **axes}, "labels"),
    ]


def nuclei_video_sample() -> list[tuple]:
    """Sample 2D+time video: image, foreground probability and exact labels.

    Its nuclei (about 27 px across: :data:`~napari_hemd.data.synthetic.SAMPLE_ZOOM`) are the size
    the shipped ``nuclei-fluo`` learned, so Predict and Segment run it at the model's own zoom.
    """
    return _layers(nuclei_video(zoom=SAMPLE_ZOOM), "nuclei video")


def nuclei_volume_sample() -> list[tuple]:
    """Sample 3D stack: image, foreground probability and exact labels."""
    return _layers(nuclei_volume(), "nuclei volume", volume=True)
