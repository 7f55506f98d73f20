"""vision.ensemble: the combined graph computes the mean of its members over the
frame and its mirror image, and the detector runs it like a single network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from vision.detector import Detector
from vision.ensemble import check, combine, reference_cells


def tiny_member(path: Path, seed: int) -> Path:
    """A FireNet-shaped stand-in: one 16x16 stride-16 convolution and a sigmoid,
    random weights (so a mirrored frame scores differently), opset 17, with .json."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.01, (2, 3, 16, 16)).astype(np.float32)
    b = rng.normal(0, 0.5, 2).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w", "b"], ["logits"], strides=[16, 16]),
            helper.make_node("Sigmoid", ["logits"], ["cells"]),
            helper.make_node("ReduceMax", ["cells"], ["scores"], axes=[2, 3], keepdims=0),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [
            helper.make_tensor_value_info("cells", TensorProto.FLOAT, [1, 2, "gh", "gw"]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2]),
        ],
        [
            helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel()),
            helper.make_tensor("b", TensorProto.FLOAT, b.shape, b),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    path.with_suffix(".json").write_text(
        json.dumps({"input": {"name": "image", "size_px": [64, 48]}, "seed": seed})
    )
    return path


@pytest.fixture
def members(tmp_path: Path) -> list[Path]:
    return [tiny_member(tmp_path / f"m{s}.onnx", s) for s in (1, 2, 3)]


@pytest.mark.parametrize("mirror", [True, False])
def test_combined_graph_is_the_mean_of_its_members(
    members: list[Path], tmp_path: Path, mirror: bool
) -> None:
    out = tmp_path / "ens.onnx"
    combine(members, out, mirror=mirror)
    x = np.random.default_rng(7).uniform(0, 255, (1, 3, 48, 64)).astype(np.float32)
    cells, scores = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        ["cells", "scores"], {"image": x}
    )
    assert cells.shape == (1, 2, 3, 4)
    # by hand, member by member, in numpy's own words
    by_hand = []
    for m in members:
        s = ort.InferenceSession(str(m), providers=["CPUExecutionProvider"])
        c = s.run(["cells"], {"image": x})[0]
        if mirror:
            c = (
                c + s.run(["cells"], {"image": np.ascontiguousarray(x[..., ::-1])})[0][..., ::-1]
            ) / 2
        by_hand.append(c)
    want = np.mean(by_hand, axis=0)
    np.testing.assert_allclose(cells, want, atol=1e-6)
    np.testing.assert_allclose(scores, want.max(axis=(2, 3)), atol=1e-6)
    # the members really differ, and so does the mirror: the mean is not one of them
    assert np.abs(by_hand[0] - by_hand[1]).max() > 1e-3
    one = reference_cells(members[:1], x, mirror=False)
    assert np.abs(cells - one).max() > 1e-3
    if mirror:
        assert np.abs(reference_cells(members, x, mirror=False) - cells).max() > 1e-4
    assert check(members, out, mirror=mirror, size=(64, 48)) < 1e-5


def test_detector_loads_an_ensemble(members: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "ens.onnx"
    combine(members, out, mirror=True)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "input": {"name": "image", "size_px": [64, 48]},
                "thresholds_val": {"fire": 0.5, "smoke": 0.5},
            }
        )
    )
    det = Detector.load(out)
    frame = np.random.default_rng(3).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    r = det.detect(frame)
    assert r.cells.shape == (2, 3, 4)
    want = reference_cells(members, det.preprocess(frame), mirror=True)[0]
    np.testing.assert_allclose(r.cells, want, atol=1e-6)


def test_an_ensemble_is_not_taken_as_a_member(members: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "ens.onnx"
    combine(members, out, mirror=True)
    with pytest.raises(ValueError, match="already an ensemble"):
        combine([out, members[0]], tmp_path / "again.onnx", mirror=True)
