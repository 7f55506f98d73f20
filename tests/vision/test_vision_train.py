"""The training script's networks (needs the ``train`` extra: skipped without torch).

The pretrained trunk is tested with a generated checkpoint in the same format as
the real one, so that the test needs no download and checks the loading itself:
names, the RGB to BGR reversal of the stem, frozen layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vision.data import Sample  # noqa: E402
from vision.train import LITE0_FROZEN_BLOCKS, FireLite, build_model, cell_targets  # noqa: E402


def _fake_checkpoint(path: Path) -> dict[str, Any]:
    """A Lite0-style checkpoint: the trunk's keys with random values, plus keys the
    truncated trunk does not use (later blocks, the classifier)."""
    gen = torch.Generator().manual_seed(0)
    sd = {
        k: torch.rand(v.shape, generator=gen) + 0.5 if v.is_floating_point() else v
        for k, v in FireLite().state_dict().items()
        if k.startswith(("_conv_stem", "_bn0", "_blocks"))
    }
    sd["_blocks.15._project_conv.weight"] = torch.zeros(320, 1152, 1, 1)
    sd["_fc.weight"] = torch.zeros(1000, 1280)
    torch.save(sd, path)
    return sd


def test_trunk_loads_with_the_stem_reversed_for_bgr(tmp_path: Path) -> None:
    ck = tmp_path / "lite0.pth"
    sd = _fake_checkpoint(ck)
    m = FireLite()
    m.load_pretrained(ck)
    own = m.state_dict()
    assert torch.equal(own["_blocks.7._project_conv.weight"], sd["_blocks.7._project_conv.weight"])
    assert torch.equal(own["_bn0.running_var"], sd["_bn0.running_var"])
    # a BGR picture through the loaded stem == the same picture in RGB through the checkpoint's
    rgb = torch.rand(1, 3, 8, 8)
    bgr = rgb.flip(1)
    ref = torch.nn.functional.conv2d(rgb, sd["_conv_stem.weight"], padding=1, stride=2)
    assert torch.allclose(m._conv_stem(bgr), ref, atol=1e-6)


def test_a_checkpoint_of_another_network_is_refused(tmp_path: Path) -> None:
    ck = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, ck)
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 checkpoint"):
        FireLite().load_pretrained(ck)


def test_frozen_layers_stay_frozen_in_training_mode() -> None:
    m = build_model("lite0", pretrained=False)
    m.train()
    frozen = [m._conv_stem, m._bn0, *m._blocks[:LITE0_FROZEN_BLOCKS]]
    assert all(not p.requires_grad for layer in frozen for p in layer.parameters())
    assert not m._bn0.training and not m._blocks[0]._bn1.training
    assert m._blocks[LITE0_FROZEN_BLOCKS]._bn1.training  # the rest trains
    assert all(p.requires_grad for p in m.neck.parameters())
    stats = m._bn0.running_mean.clone()
    m(torch.rand(2, 3, 64, 64) * 255)
    assert torch.equal(m._bn0.running_mean, stats)  # frozen batch norm keeps its statistics


@pytest.mark.parametrize("arch", ["firenet", "lite0"])
def test_both_networks_give_a_grid_of_probabilities(arch: str) -> None:
    m = build_model(arch, pretrained=False).eval()
    with torch.no_grad():
        cells, scores = m(torch.from_numpy(np.full((1, 3, 224, 160), 128.0, np.float32)))
    assert cells.shape == (1, 2, 14, 10)
    assert torch.equal(scores, cells.amax(dim=(2, 3)))
    assert float(cells.min()) >= 0.0 and float(cells.max()) <= 1.0


def test_unknown_architecture_is_named() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        build_model("resnet")


def test_unknown_boxes_are_ignored_cells_not_negatives() -> None:
    """A composite's pasted flame: fire cells under its box, smoke unknown there
    (the patch may hold smoke) and absent elsewhere."""
    box = (0.25, 0.25, 0.5, 0.5)  # cx, cy, w, h: the top-left quarter
    s = Sample(
        Path("x.jpg"),
        "composite",
        "g",
        "train",
        1,
        0,
        ((0, *box),),
        has_boxes=True,
        unknown=((1, *box),),
    )
    t = cell_targets(s, (0, 0, 256, 256), 256, 14, flip=False)
    assert (t[0, :7, :7] == 1).all() and (t[0, 8:, 8:] == 0).all()
    assert (t[1, :7, :7] == -1).all() and (t[1, 8:, :] == 0).all() and (t[1, :, 8:] == 0).all()
    plain = Sample(Path("x.jpg"), "cctv", "g", "train", 1, 0, ((0, *box),), has_boxes=True)
    assert (cell_targets(plain, (0, 0, 256, 256), 256, 14, flip=False)[1] == 0).all()
