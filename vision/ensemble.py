"""Combine trained members into one ONNX model: ``python -m vision.ensemble``.

An average of several small networks (any of vision.train's architectures),
optionally each also run on the mirrored frame. One network's scores move by
several points of recall between seeds (see the model card); an average is
steadier, but costs one network pass per member (two with the mirror) per
analysed frame. The shipped model is a single network: the three-member,
mirrored run D took about 6 times as long per frame, and run E (two
different networks, no mirror) called exactly flat frames smoke; neither
was shipped (model card).

The combined graph keeps the members' interface, so the agent loads it like
any other model: input ``image`` (1, 3, H, W) BGR float 0..255; outputs
``cells`` (1, 2, H/16, W/16), the mean of the members' cell probabilities over
the frame and its mirror image (mirrored back), and ``scores`` (1, 2), their
maximum over cells. Needs the ``onnx`` package (the ``train`` extra), never at
run time. After writing, it checks the graph against the members run one by
one in onnxruntime, then sets the operating points on the validation split
as training does (vision.evaluate.calibrate).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("vision.ensemble")

OPSET = 17
INT64_MIN = -(2**63)
PRODUCER = "firegate vision.ensemble"


def combine(members: list[Path], out: Path, *, mirror: bool = True) -> None:
    """Write one ONNX graph averaging ``members`` (ONNX FireNets with the same input
    size and the same ``image``/``cells`` interface); ``mirror`` also averages over
    the horizontally mirrored frame."""
    import onnx
    from onnx import TensorProto, helper

    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, values: list[int]) -> str:
        inits.append(helper.make_tensor(name, TensorProto.INT64, [len(values)], values))
        return name

    if mirror:
        # (1,3,H,W) -> (2,3,H,W): the frame and its mirror image in one batch
        const("mirror_starts", [-1])
        const("mirror_ends", [INT64_MIN])
        const("axis_w", [3])
        const("step_back", [-1])
        const("b0", [0])
        const("b1", [1])
        const("b2", [2])
        const("axis_n", [0])
        nodes.append(
            helper.make_node(
                "Slice",
                ["image", "mirror_starts", "mirror_ends", "axis_w", "step_back"],
                ["image_mirrored"],
            )
        )
        nodes.append(helper.make_node("Concat", ["image", "image_mirrored"], ["pair"], axis=0))
    member_cells = []
    for k, path in enumerate(members):
        m = onnx.load(str(path))
        if m.producer_name == PRODUCER:
            raise ValueError(f"{path}: already an ensemble; combine its members instead")
        if m.opset_import[0].version != OPSET:
            raise ValueError(f"{path}: opset {m.opset_import[0].version}, expected {OPSET}")
        p = f"m{k}/"
        g = m.graph
        rename = {i.name: p + i.name for i in g.initializer}
        for n in g.node:
            for o in n.output:
                rename[o] = p + o
        rename["image"] = "pair" if mirror else "image"
        for init in g.initializer:
            t = onnx.TensorProto()
            t.CopyFrom(init)
            t.name = rename[init.name]
            inits.append(t)
        for n in g.node:
            if list(n.output) == ["scores"]:
                continue  # the member's own max over cells: recomputed on the mean
            c = onnx.NodeProto()
            c.CopyFrom(n)
            c.name = p + (n.name or n.output[0])
            del c.input[:]
            c.input.extend(rename.get(i, i) if i else i for i in n.input)
            del c.output[:]
            c.output.extend(rename[o] for o in n.output)
            nodes.append(c)
        cells = rename["cells"]
        if mirror:
            nodes += [
                helper.make_node("Slice", [cells, "b0", "b1", "axis_n"], [p + "cells_a"]),
                helper.make_node("Slice", [cells, "b1", "b2", "axis_n"], [p + "cells_m"]),
                helper.make_node(
                    "Slice",
                    [p + "cells_m", "mirror_starts", "mirror_ends", "axis_w", "step_back"],
                    [p + "cells_b"],
                ),
                helper.make_node("Mean", [p + "cells_a", p + "cells_b"], [p + "cells_avg"]),
            ]
            cells = p + "cells_avg"
        member_cells.append(cells)
    nodes.append(helper.make_node("Mean", member_cells, ["cells"]))
    nodes.append(helper.make_node("ReduceMax", ["cells"], ["scores"], axes=[2, 3], keepdims=0))
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "firenet_ensemble",
        [helper.make_tensor_value_info("image", f32, [1, 3, "height", "width"])],
        [
            helper.make_tensor_value_info("cells", f32, [1, 2, "grid_h", "grid_w"]),
            helper.make_tensor_value_info("scores", f32, [1, 2]),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER
    )
    model.ir_version = 8  # onnxruntime 1.15+ reads it
    onnx.checker.check_model(model, full_check=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))


def reference_cells(members: list[Path], x: np.ndarray, *, mirror: bool) -> np.ndarray:
    """What the combined graph must compute, member by member in onnxruntime."""
    import onnxruntime as ort

    outs = []
    for path in members:
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        c = s.run(["cells"], {"image": x})[0]
        if mirror:
            cm = s.run(["cells"], {"image": np.ascontiguousarray(x[..., ::-1])})[0][..., ::-1]
            c = (c + cm) / 2
        outs.append(c)
    out: np.ndarray = np.mean(outs, axis=0)
    return out


def check(members: list[Path], out: Path, *, mirror: bool, size: tuple[int, int]) -> float:
    """Largest difference between the combined graph and the members run one by one."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    worst = 0.0
    for h, w in (size[::-1], (size[1] + 32, size[0] - 48)):
        x = rng.uniform(0, 255, (1, 3, h, w)).astype(np.float32)
        cells, scores = s.run(["cells", "scores"], {"image": x})
        ref = reference_cells(members, x, mirror=mirror)
        worst = max(worst, float(np.abs(cells - ref).max()))
        worst = max(worst, float(np.abs(scores - ref.max(axis=(2, 3))).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    from vision.data import DEFAULT_ROOT

    p = argparse.ArgumentParser(
        prog="python -m vision.ensemble", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("members", nargs="+", type=Path, help="member .onnx files (each with its .json)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / ".cache" / "members" / "ensemble.onnx",
        help="where to write it (default: vision/.cache/members/ensemble.onnx; the shipped "
        "model is vision/models/firenet.onnx: replace it only on purpose)",
    )
    p.add_argument("--no-mirror", action="store_true", help="do not average over the mirror image")
    p.add_argument("--data", type=Path, default=DEFAULT_ROOT, help="datasets folder (calibration)")
    p.add_argument(
        "--val-fpr",
        type=float,
        default=0.04,
        help="operating point: share of validation negatives the thresholds may flag",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    metas = []
    for m in args.members:
        meta_path = m.with_suffix(".json")
        if not m.is_file() or not meta_path.is_file():
            p.error(f"{m}: member model or its .json not found")
        metas.append(json.loads(meta_path.read_text()))
    sizes = {tuple(meta["input"]["size_px"]) for meta in metas}
    if len(sizes) != 1:
        p.error(f"members were trained at different input sizes: {sorted(sizes)}")
    size = sizes.pop()
    mirror = not args.no_mirror
    combine(args.members, args.out, mirror=mirror)
    worst = check(args.members, args.out, mirror=mirror, size=(int(size[0]), int(size[1])))
    log.info("combined graph vs members one by one: largest difference %.2e", worst)
    if worst > 1e-4:
        log.error("the combined graph differs from its members by %.2e", worst)
        return 1
    first = metas[0]
    meta = {
        "format": "firenet-v1",
        "input": first["input"],
        "outputs": {
            "cells": "(1, 2, H/16, W/16) probabilities [fire, smoke], mean of the members"
            + (" over the frame and its mirror image" if mirror else ""),
            "scores": "(1, 2) max over cells",
        },
        "stride_px": first.get("stride_px", 16),
        "classes": first.get("classes", ["fire", "smoke"]),
        "ensemble": {
            "mirror": mirror,
            "members": [
                {"arch": meta.get("arch", "firenet")}
                | {
                    k: meta.get(k)
                    for k in (
                        "seed",
                        "epochs",
                        "best_epoch",
                        "hard_neg_weight",
                        "fire_weight",
                        "ema",
                        "params",
                        "train_minutes",
                        "torch",
                    )
                }
                | {"sha256": hashlib.sha256(m.read_bytes()).hexdigest()}
                for m, meta in zip(args.members, metas, strict=True)
            ],
        },
        "params": sum(int(meta.get("params", 0)) for meta in metas),
        "onnx_max_abs_diff_vs_members": worst,
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    from vision.evaluate import calibrate, write_thresholds

    thresholds = calibrate(args.out, args.data, args.val_fpr)
    write_thresholds(args.out, thresholds, args.val_fpr)
    log.info("operating points (validation, runtime path): %s", thresholds)
    log.info("wrote %s (%d bytes)", args.out, args.out.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
