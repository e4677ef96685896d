"""Take the user-guide screenshots of each widget in a real napari window (Xvfb when headless).

Usage::

    python scripts/screenshots.py [--out docs/images]

Starts a virtual X display (PyVirtualDisplay, installed with pytest-xvfb) when ``$DISPLAY`` is
unset, opens the sample video, and runs the widgets as a user would: predict with the shipped
``nuclei-fluo`` model, H-EMD, inspect an object, proofread, export.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger("screenshots")


def _wait(worker, timeout: float = 300.0) -> None:
    """Process Qt events until ``worker`` finishes."""
    from qtpy.QtWidgets import QApplication

    done = []
    worker.finished.connect(lambda: done.append(True))
    start = time.monotonic()
    while not done:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout:
            raise TimeoutError("worker did not finish")


def _settle(n: int = 20) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(n):
        QApplication.processEvents()
        time.sleep(0.02)


def _shooter(viewer, out: Path, saved: list[Path]):
    """``shot(name)``: save the whole window as ``out/name.png`` (appended to ``saved``)."""
    from skimage.io import imsave

    def shot(name: str) -> None:
        _settle()
        path = out / f"{name}.png"
        imsave(path, viewer.screenshot(canvas_only=False, flash=False), check_contrast=False)
        saved.append(path)
        log.info("saved %s", path)

    return shot


def take(out: Path) -> list[Path]:
    """Drive the widgets and save one screenshot per step into ``out``."""
    import napari
    import numpy as np

    from napari_hemd._sample_data import nuclei_video_sample
    from napari_hemd._widgets import (
        ExportWidget,
        InspectorWidget,
        PredictWidget,
        ProjectWidget,
        ProofreadWidget,
        SegmentWidget,
        StreamWidget,
    )

    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    for data, meta, kind in nuclei_video_sample():
        getattr(viewer, f"add_{kind}")(data, **meta)
    viewer.layers["nuclei video ground truth"].visible = False
    saved: list[Path] = []
    shot = _shooter(viewer, out, saved)

    def dock(widget, name: str):
        dw = viewer.window.add_dock_widget(widget, name=name, area="right")
        return dw

    pred = PredictWidget(viewer)
    d = dock(pred, "Predict")
    pred.image.value = viewer.layers["nuclei video image"]
    _wait(pred.run())
    shot("predict")
    viewer.window.remove_dock_widget(d)

    seg = SegmentWidget(viewer)
    d = dock(seg, "Segment (H-EMD)")
    seg.prob.value = viewer.layers["nuclei video image probability"]
    seg.variant.value = "paper"
    _wait(seg.run())
    viewer.layers["nuclei video image probability"].visible = False
    shot("segment")
    viewer.window.remove_dock_widget(d)

    labels = viewer.layers["nuclei video image labels"]
    res = labels.metadata["hemd_result"]
    insp = InspectorWidget(viewer)
    d = dock(insp, "Candidate forest inspector")
    insp.labels.value = labels
    site = None
    for want_split in (True, False):  # prefer an object H-EMD could split
        for t, (f, s) in enumerate(zip(res.forests, res.selections, strict=True)):
            for n in s.nodes:
                ok = f.children(int(n)).size >= 2 if want_split else f.parent[n] >= 0
                if ok and site is None:
                    pts = np.argwhere(f.mask(int(n)))
                    site = (t, tuple(int(v) for v in pts[len(pts) // 2]))
    t, pix = site or (0, (96, 96))
    viewer.dims.set_current_step(0, t)
    scene = getattr(viewer, "scene", None)
    (scene.camera if scene is not None else viewer.camera).center = pix
    insp.inspect(t, pix)
    insp.select_row(0)
    shot("inspector")
    insp.level.value = 0.8
    shot("inspector-level")
    viewer.window.remove_dock_widget(d)
    if f"{labels.name} preview" in viewer.layers:
        viewer.layers.remove(f"{labels.name} preview")

    viewer.reset_view()
    pr = ProofreadWidget(viewer)
    d = dock(pr, "Proofread")
    pr.labels.value = labels
    pr.ids.value = "1, 2"
    shot("proofread")
    viewer.window.remove_dock_widget(d)

    exp = ExportWidget(viewer)
    d = dock(exp, "Export")
    exp.labels.value = labels
    exp.path.value = Path("~/hemd-result").expanduser()
    shot("export")
    exp.format.value = "Measurements (CSV)"  # the objects' table, intensities from the raw movie
    exp.intensity.value = [viewer.layers["nuclei video image"]]
    exp.path.value = Path("~/hemd-cells.csv").expanduser()
    shot("export-table")
    viewer.window.remove_dock_widget(d)

    with tempfile.TemporaryDirectory() as tmp:
        st = StreamWidget(viewer)
        d = dock(st, "Large data (stream, Dask)")
        st.input_from.value = "layer"
        st.image.value = viewer.layers["nuclei video image probability"]
        st.output.value = Path(tmp) / "labels.zarr"
        st.chunk.value = 4
        _wait(st.run())
        shot("stream")
        viewer.window.remove_dock_widget(d)
        viewer.layers.remove("labels labels")  # read from the temporary zarr
    proj = ProjectWidget(viewer, restore=False)  # never the user's own last session
    dock(proj, "Project")
    proj.labels.value = labels
    proj.path.value = Path("~/hemd-session.zarr").expanduser()
    shot("project")
    viewer.window.remove_dock_widget("all")

    # the one-click path: a raw movie alone, Segment with a model
    for layer in list(viewer.layers):
        if layer.name != "nuclei video image":
            viewer.layers.remove(layer)
    seg = SegmentWidget(viewer)
    dock(seg, "Segment (H-EMD)")
    seg.prob.value = viewer.layers["nuclei video image"]
    seg.model.value = "nuclei-fluo"
    _wait(seg.run())
    viewer.layers["nuclei video image probability"].visible = False
    viewer.reset_view()
    shot("segment-model")
    viewer.close()
    return saved


def take_loop(out: Path) -> list[Path]:
    """The human-in-the-loop steps: mark corrected frames, fine-tune, re-segment the rest."""
    import napari

    from napari_hemd._sample_data import nuclei_video_sample
    from napari_hemd._widgets import FineTuneWidget, ProofreadWidget, SegmentWidget
    from napari_hemd._widgets._layer_state import apply_edit

    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    layers = {}
    for data, meta, kind in nuclei_video_sample():
        if kind == "image" and "probability" in meta["name"]:
            continue
        layers[meta["name"]] = getattr(viewer, f"add_{kind}")(data, **meta)
    truth = layers["nuclei video ground truth"]
    truth.visible = False
    saved: list[Path] = []
    shot = _shooter(viewer, out, saved)

    seg = SegmentWidget(viewer)
    d = viewer.window.add_dock_widget(seg, name="Segment (H-EMD)", area="right")
    seg.prob.value = viewer.layers["nuclei video image"]
    seg.model.value = "nuclei-fluo"
    _wait(seg.run())
    viewer.layers["nuclei video image probability"].visible = False
    viewer.window.remove_dock_widget(d)
    labels = viewer.layers["nuclei video image labels"]

    pr = ProofreadWidget(viewer)
    d = viewer.window.add_dock_widget(pr, name="Proofread", area="right")
    pr.labels.value = labels
    for t in (0, 4, 8):  # corrected (here: the sample's exact labels) and checked
        apply_edit(labels, f"correct frame {t}", truth.data[t].astype(labels.data.dtype), t)
        viewer.dims.set_current_step(0, t)
        pr.checked.value = True
    shot("loop-checked")
    viewer.window.remove_dock_widget(d)

    ft = FineTuneWidget(viewer)
    d = viewer.window.add_dock_widget(ft, name="Fine-tune", area="right")
    ft.image.value, ft.labels.value = viewer.layers["nuclei video image"], labels
    ft.base.value = "nuclei-fluo"
    ft.name.value = "nuclei-fluo my-lab"
    ft.minutes.value = 0.5
    _wait(ft.run())
    shot("loop-finetune")
    viewer.dims.set_current_step(0, 10)
    _wait(ft.resegment())
    shot("loop-resegment")
    viewer.close()
    return saved


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--loop-only", action="store_true", help="only the fine-tune loop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from napari_hemd._settings import CONFIG_ENV

    # never the user's own settings: no last session restored into the screenshots
    os.environ[CONFIG_ENV] = tempfile.mkdtemp(prefix="hemd-screenshots-")
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000))
        display.start()
    try:
        if not args.loop_only:
            take(args.out)
        take_loop(args.out)
    finally:
        if display is not None:
            display.stop()


if __name__ == "__main__":
    main()
