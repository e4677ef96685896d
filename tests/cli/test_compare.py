from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import tifffile

from napari_hemd.cli import main
from napari_hemd.core.metrics import METRIC_NAMES


@pytest.fixture
def maps(tmp_path):
    """Two well-separated blobs per frame: every method should find them."""
    yy, xx = np.mgrid[:40, :40]
    gt = np.zeros((3, 40, 40), np.uint16)
    for t in range(3):
        gt[t][(yy - 12) ** 2 + (xx - 12 - t) ** 2 < 36] = 1
        gt[t][(yy - 28) ** 2 + (xx - 26) ** 2 < 49] = 2
    from scipy import ndimage as ndi

    prob = ndi.gaussian_filter((gt > 0).astype(np.float32), 1.0)
    boundary = np.clip(ndi.gaussian_gradient_magnitude((gt > 0).astype(np.float32), 1.0), 0, 1)
    tifffile.imwrite(tmp_path / "prob.tif", prob, photometric="minisblack")
    tifffile.imwrite(
        tmp_path / "boundary.tif", boundary.astype(np.float32), photometric="minisblack"
    )
    tifffile.imwrite(tmp_path / "gt.tif", gt, photometric="minisblack")
    return tmp_path


def test_compare_csv_every_method(maps, capsys):
    rc = main(
        [
            "compare",
            str(maps / "prob.tif"),
            "--gt",
            str(maps / "gt.tif"),
            "--boundary",
            str(maps / "boundary.tif"),
            "--format",
            "csv",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["method"] for r in rows] == [
        "hemd",
        "threshold",
        "otsu",
        "watershed",
        "maxvalue",
        "nms",
    ]
    assert list(rows[0]) == ["method", *METRIC_NAMES, "s_per_frame"]
    for r in rows:
        assert float(r["s_per_frame"]) >= 0
    by = {r["method"]: r for r in rows}
    for m in ("hemd", "threshold", "watershed"):
        assert float(by[m]["F1"]) == 1.0, m


def test_compare_markdown_default_drops_maxvalue_without_boundary(maps, capsys):
    rc = main(["compare", str(maps / "prob.tif"), "--gt", str(maps / "gt.tif")])
    cap = capsys.readouterr()
    assert rc == 0
    assert cap.out.startswith("| method | F1 | AJI |")
    assert "maxvalue" not in cap.out
    assert "| hemd |" in cap.out


def test_compare_errors(maps, capsys):
    rc = main(["compare", str(maps / "prob.tif"), "--gt", str(maps / "gt.tif"), "--methods", "x"])
    assert rc == 2 and "--methods" in capsys.readouterr().err
    rc = main(
        ["compare", str(maps / "prob.tif"), "--gt", str(maps / "gt.tif"), "--methods", "maxvalue"]
    )
    assert rc == 2 and "--boundary" in capsys.readouterr().err
    tifffile.imwrite(maps / "small.tif", np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    rc = main(["compare", str(maps / "prob.tif"), "--gt", str(maps / "small.tif")])
    assert rc == 2 and "do not match PROB" in capsys.readouterr().err
