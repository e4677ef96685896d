from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_hemd.models import HemdModel, load_model, load_model_file, save_model_file  # noqa: E402


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    model = HemdModel.create("affinity", base_channels=4, depth=2, embedding_dim=4)
    model.metadata["training"] = {"data": ["somewhere"], "steps": (1, 2)}
    path = save_model_file(model, tmp_path / "m.pt")
    back = load_model_file(path)
    assert back.kind == "affinity"
    assert back.metadata["training"] == {"data": ["somewhere"], "steps": [1, 2]}
    assert back.metadata["ranges"] == [1, 3, 5, 9, 27]
    for k, v in model.network.state_dict().items():
        assert torch.equal(v, back.network.state_dict()[k])
    # A model file is loadable with plain torch, weights_only=True.
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "napari-hemd-model"


def test_half_precision_file_is_smaller(tmp_path):
    model = HemdModel.create("unet", base_channels=8, depth=2)
    full = save_model_file(model, tmp_path / "f.pt")
    half = save_model_file(model, tmp_path / "h.pt", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    back = load_model_file(half)
    w = next(iter(back.network.parameters()))
    assert w.dtype == torch.float32


def test_round_to_half_is_what_a_half_file_loads(tmp_path):
    """A network rounded with round_to_half computes exactly what its float16 file will."""
    from napari_hemd.models.weights import round_to_half

    model = HemdModel.create("unet", base_channels=8, depth=2)
    bn = next(m for m in model.network.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var[0] = 1.5e5  # stays float32
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    round_to_half(model)
    rounded = model.network.state_dict()
    assert any(not torch.equal(before[k], rounded[k]) for k in before)  # it did round
    back = load_model_file(save_model_file(model, tmp_path / "h.pt", half=True))
    for k, v in back.network.state_dict().items():
        assert v.dtype == rounded[k].dtype and torch.equal(v, rounded[k]), k
    assert float(back.network.state_dict()[f"{_name(model, bn)}.running_var"][0]) == 1.5e5


def _name(model, module) -> str:
    return next(n for n, m in model.network.named_modules() if m is module)


def test_half_precision_keeps_values_float16_cannot_hold(tmp_path):
    """A batch norm's running variance above 65504 stays float32 (it became inf, silencing the
    channel in eval mode, in the files shipped before 2026-12-04, third session)."""
    model = HemdModel.create("unet", base_channels=8, depth=2)
    bn = next(m for m in model.network.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var[0] = 1.5e5
    state = torch.load(save_model_file(model, tmp_path / "h.pt", half=True), weights_only=True)
    stored = {k: v for k, v in state["state_dict"].items() if v.is_floating_point()}
    wide = [k for k, v in stored.items() if v.dtype == torch.float32]
    assert len(wide) == 1 and wide[0].endswith("running_var")
    assert float(stored[wide[0]].max()) == pytest.approx(1.5e5)
    assert sum(v.dtype == torch.float16 for v in stored.values()) == len(stored) - 1
    back = load_model_file(tmp_path / "h.pt")
    assert torch.isfinite(torch.cat([v.ravel() for v in back.network.state_dict().values()])).all()


def test_rewrite_keeps_the_file_precision(tmp_path):
    """A metadata update (scores, calibration) leaves a float16 file float16, a float32 one float32."""
    from napari_hemd.models.weights import rewrite_model_file

    model = HemdModel.create("unet", base_channels=8, depth=2)
    for name, half in (("h.pt", True), ("f.pt", False)):
        path = save_model_file(model, tmp_path / name, half=half)
        size = path.stat().st_size
        back = load_model_file(path)
        back.metadata["calibration"] = {"value": 0.7}
        rewrite_model_file(back, path)
        state = torch.load(path, weights_only=True)["state_dict"]
        dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
        assert dtypes == {torch.float16 if half else torch.float32}
        assert abs(path.stat().st_size - size) < 1024
        assert load_model_file(path).metadata["calibration"] == {"value": 0.7}


class _Exploit:
    def __reduce__(self):
        # Would create a file if unpickled.
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(_Exploit.target),))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    target = tmp_path / "pwned"
    _Exploit.target = str(target)
    path = tmp_path / "evil.pt"
    torch.save({"format": "napari-hemd-model", "state_dict": {}, "metadata": _Exploit()}, path)
    with pytest.raises(ValueError, match="cannot be loaded safely"):
        load_model_file(path)
    with pytest.raises(ValueError, match="cannot be loaded safely"):
        load_model(path)
    assert not target.exists()
    # A bare pickle (not a torch zip file) is refused as well.
    bare = tmp_path / "bare.pt"
    bare.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(ValueError, match="cannot be loaded safely") as info:
        load_model_file(bare)
    assert "weights_only" not in str(info.value) and "arbitrary code" not in str(info.value)
    assert not target.exists()


def test_not_a_model_file(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a napari-hemd model file: it is a PyTorch file"):
        load_model_file(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model_file(tmp_path / "missing.pt")
    buf = io.BytesIO()
    torch.save({"format": "napari-hemd-model", "format_version": 99}, buf)
    buf.seek(0)
    with pytest.raises(ValueError, match="format_version 99"):
        load_model_file(buf)


def _tiff(path):
    import tifffile

    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint16))


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (_tiff, "a TIFF image"),
        (lambda p: p.write_text("hello\n"), "a text file"),  # torch: "KeyError: 101"
        (
            lambda p: (
                np.save(p.with_suffix(".npy"), np.zeros(3)) or p.with_suffix(".npy").rename(p)
            ),
            "a NumPy array",
        ),
        (lambda p: p.write_bytes(b""), "an empty file"),
        (lambda p: p.mkdir(), "a folder"),
        (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "a damaged zip archive"),
    ],
)
def test_a_file_that_is_no_model_is_named_for_what_it_is(tmp_path, make, what):
    """One clear sentence: what the file is and what a model is, never PyTorch's advice to load
    it with weights_only=False (which would run any code the file holds)."""
    path = tmp_path / "some.tif"
    make(path)
    with pytest.raises(ValueError) as info:
        load_model(path, name="--model")
    msg = str(info.value)
    assert msg.startswith(f"--model: {str(path)!r} is not a napari-hemd model file: it is {what}")
    assert "napari-hemd train" in msg and "\n" not in msg
    assert "weights_only" not in msg and "arbitrary code" not in msg
    with pytest.raises(
        ValueError, match=f"^model file .* is not a napari-hemd model file: it is {what}"
    ):
        load_model_file(path)


def test_unknown_model_name():
    with pytest.raises(FileNotFoundError, match="nuclei-fluo"):
        load_model("no-such-model")


def test_changed_weights_are_refused(tmp_path):
    model = HemdModel.create("unet", base_channels=4, depth=2)
    path = save_model_file(model, tmp_path / "m.pt", half=True)
    payload = torch.load(path, weights_only=True)
    assert len(payload["sha256"]) == 64
    load_model_file(path)  # intact: loads
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    flat = payload["state_dict"][key].view(-1)
    flat[0] = flat[0] + 1  # one changed weight, the stored digest kept
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="is damaged: its weights do not match the SHA-256"):
        load_model_file(tmp_path / "bad.pt")


def _edited(tmp_path, name, edit, rehash=True):
    """A valid model file with its payload edited (and its digest recomputed, unless not)."""
    from napari_hemd.models.weights import weights_sha256

    model = HemdModel.create("unet", base_channels=4, depth=2)
    path = save_model_file(model, tmp_path / "m.pt", half=True)
    payload = torch.load(path, weights_only=True)
    edit(payload)
    if rehash and isinstance(payload.get("state_dict"), dict):
        payload["sha256"] = weights_sha256(payload["state_dict"])
    out = tmp_path / name
    torch.save(payload, out)
    return out


def _wider(payload):
    payload["metadata"]["architecture"]["base_channels"] = 8  # weights of a 4-channel net


@pytest.mark.parametrize(
    ("edit", "rehash", "message"),
    [
        (_wider, True, "is damaged: its weights do not fit the unet network its metadata"),
        (
            lambda p: p["metadata"]["architecture"].update(attention=True),
            True,
            "describes a network this napari-hemd cannot build .*attention.*update napari-hemd",
        ),
        (lambda p: p.update(format_version="2"), True, "its format_version is '2'"),
        (lambda p: p.update(format_version=2), True, "newer napari-hemd.*update napari-hemd"),
        (lambda p: p.pop("metadata"), True, "is incomplete: it has no metadata"),
        (lambda p: p.pop("state_dict"), False, "is incomplete: it has no state_dict"),
        (lambda p: p.pop("sha256"), False, "is incomplete: it has no sha256"),
        (lambda p: p.update(metadata=[1, 2]), True, "is damaged: its metadata"),
    ],
)
def test_a_damaged_or_newer_model_file_is_refused_in_one_line(tmp_path, edit, rehash, message):
    """Weights that do not fit, an argument this version lacks, a string format_version, a key
    missing: a 110-line traceback, "UNet2d.__init__() got an unexpected keyword argument",
    "'>' not supported" or "error: metadata"; a file without its digest loaded unchecked."""
    path = _edited(tmp_path, "x.pt", edit, rehash)
    with pytest.raises(ValueError, match=message) as info:
        load_model(path, name="--model")
    assert str(info.value).startswith("--model: ") and "\n" not in str(info.value)


def test_a_training_checkpoint_is_named_as_one(tmp_path):
    path = tmp_path / "m.pt.ckpt"
    torch.save({"network": {}, "optimizer": {}, "step": 250, "history": []}, path)
    with pytest.raises(
        ValueError, match=r"is a training checkpoint .*give the model file MODEL\.pt"
    ):
        load_model_file(path)
