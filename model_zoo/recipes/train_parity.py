"""Train a parity model (ParM, Kosaian et al. SOSP 2019) for the zoo's re-ID embedder and export it.

    python model_zoo/recipes/train_parity.py --k 2 --out model_zoo/aicity/reid_w100_parity_k2.onnx

The base model F (default model_zoo/aicity/reid_w100.onnx) is not retrained: its outputs are the
targets. A parity query is what the agents send (jellybean.parity): k crops, each a JPEG as the
detector cuts it, tiled by the concatenation encoder (jellybean.parity.wire) into one 96x96 image
and sent as a JPEG again; a slot is blank (black) where a group has fewer crops. The parity model P
has the re-ID network's shape (train_reid.build_model) without the BN-neck and the normalisation,
and learns, with an MSE loss, P(E(x_1..x_k)) = sum over the non-blank slots of F(x_i), F's
outputs being the unit-norm embeddings the re-ID operator emits. Then a missing output is
F(x_j) ~ P - sum_{i != j} F(x_i), re-normalised, as jellybean.parity.groups decodes it.

Data: crops of every gt box (sides >= 12 px) in every 2nd frame of the re-ID training scenes (seeds
1-5, as train_reid.py), each also mirrored; groups are drawn at random, a slot blank with
probability --blank. Held out: the re-ID evaluation scene (seed 100). Evaluation runs the exported
ONNX file through the agents' own parity worker, encoder and decoder (jellybean.agents.operators.
parity, jellybean.parity.groups): every query crop of the retrieval protocol is grouped with k-1
random other crops of the scene, its output is taken away and rebuilt, and the rebuilt embeddings
are ranked against the gallery exactly as the originals are (cross-camera rank-1 and mAP).

Needs the `train` extra (torch): pip install -e ".[train]".
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from _scenes import reid_crops, set_io_shapes, write_scenes  # noqa: E402
from train_reid import (  # noqa: E402
    DIM,
    EVAL_SCENE,
    SIDE,
    TRAIN_SCENES,
    build_model,
    fuse_conv_bn,
    retrieval_metrics,
    split_query_gallery,
)

from jellybean.parity.wire import wire_encoder  # noqa: E402
from jellybean.zoo.yolo import preprocess  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CROP_QUALITY = 90            # the detector's crops (jellybean.agents.operators.models)
QUERY_QUALITY = 95           # a parity query's crops (jellybean.parity.groups.JPEG_QUALITY)


def jpeg(image_bgr: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def as_sent(crops_rgb: np.ndarray) -> np.ndarray:
    """RGB crops -> BGR crops as the re-ID operator decodes them from the detector's JPEGs."""
    return np.stack([jpeg(np.ascontiguousarray(c[:, :, ::-1]), CROP_QUALITY) for c in crops_rgb])


def base_outputs(model: Path, crops_bgr: np.ndarray) -> np.ndarray:
    """F: the base model's unit-norm embeddings, as the re-ID operator computes them (fp16 on the wire)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = np.concatenate([sess.run(None, {name: preprocess(crops_bgr[i:i + 128], SIDE).images})[0]
                          for i in range(0, len(crops_bgr), 128)]).astype(np.float32)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float16).astype(np.float32)


def query_images(crops_bgr: np.ndarray, groups: np.ndarray, encode) -> np.ndarray:
    """[n, k] crop indices (-1: a blank slot) -> the parity queries, preprocessed as the parity worker does."""
    images = [jpeg(encode([crops_bgr[i] if i >= 0 else None for i in g]), QUERY_QUALITY) for g in groups]
    return preprocess(images, SIDE).images


def sample_groups(n: int, count: int, k: int, blank: float, rng: np.random.Generator) -> np.ndarray:
    groups = rng.integers(0, n, (count, k))
    holes = rng.random((count, k)) < blank
    holes[holes.all(1), rng.integers(0, k)] = False   # at least one crop per group
    groups[holes] = -1
    return groups


def build_parity(width: float):
    """The re-ID network without its BN-neck and normalisation: a linear head onto the sum."""
    import torch

    net = build_model(width, num_ids=1)

    class Parity(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.features(x)

    return Parity()


def train(model, crops_bgr, targets, k, blank, steps, batch, lr, seed, log=print):
    import torch

    rng = np.random.default_rng(seed)
    encode = wire_encoder("concat", k)
    params = [p for n, p in model.named_parameters() if "classifier" not in n and "neck" not in n]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    t0 = time.perf_counter()
    model.train()
    running = []
    for step in range(steps):
        scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr * max(scale, 0.01)
        groups = sample_groups(len(crops_bgr), batch, k, blank, rng)
        x = torch.from_numpy(query_images(crops_bgr, groups, encode))
        y = torch.from_numpy(np.where(groups[..., None] >= 0, targets[np.maximum(groups, 0)], 0.0).sum(1)
                             .astype(np.float32))
        loss = torch.nn.functional.mse_loss(model(x), y) * DIM   # per-vector squared error
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(loss.item())
        if (step + 1) % max(1, steps // 20) == 0:
            log(f"  step {step + 1}/{steps}: squared error per sum {np.mean(running):.4f} "
                f"({time.perf_counter() - t0:.0f} s)")
            running = []
    return model.eval(), time.perf_counter() - t0


def export_onnx(model, path: Path, meta: dict) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    fuse_conv_bn(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(2, 3, SIDE, SIDE),), str(path), input_names=["images"],
                          output_names=["parity"], dynamic_axes={"images": {0: "batch"}, "parity": {0: "batch"}},
                          opset_version=17, do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(path))
    set_io_shapes(proto, {"images": ["batch", 3, SIDE, SIDE], "parity": ["batch", DIM]})
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value) if not isinstance(value, str) else value
    proto.producer_name = "jellybean model_zoo/recipes/train_parity.py"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    x = np.random.default_rng(0).random((2, 3, SIDE, SIDE), dtype=np.float32)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["parity"], {"images": x})[0]
    with torch.no_grad():
        diff = float(np.abs(model(torch.from_numpy(x)).numpy() - out).max())
    if out.shape != (2, DIM) or diff > 1e-3:
        raise SystemExit(f"{path}: output {out.shape}, ONNX Runtime and torch differ by {diff}")


def evaluate(base: Path, parity: Path, k: int, crops_rgb, ids, cams, frames, seed: int) -> dict:
    """Originals against outputs rebuilt by the agents' own parity worker and decoder."""
    from jellybean.agents.items import Item
    from jellybean.agents.operators.base import OperatorConfig, create
    from jellybean.parity.groups import GroupDecoder, GroupEncoder

    rng = np.random.default_rng(seed)
    crops = as_sent(crops_rgb)
    blobs = [cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes() for c in crops]
    emb = base_outputs(base, crops)
    worker = create("parity-embedder", OperatorConfig("reid.parity", "eval", model=parity, threads=1))
    q, g = split_query_gallery(ids, cams, frames, (0.5,))
    t0 = time.perf_counter()
    rebuilt = {name: np.zeros((len(q), DIM), np.float32) for name in ("full", "blank")}
    for name in rebuilt:
        for n, j in enumerate(q):
            partners = [] if name == "blank" else rng.choice(np.setdiff1d(np.arange(len(crops)), [j]), k - 1).tolist()
            slot = int(rng.integers(0, k))
            members = partners[:slot] + [int(j)] + partners[slot:]
            enc = GroupEncoder(k, wire_encoder("concat", k), source="eval")
            items = [Item(f"c{m}", m + 1, 1.0, kind="detections", meta={"boxes": [[0, 0, 1, 1, 1]]}, blobs=[blobs[m]])
                     for m in members]
            query = None
            for it in items:
                query = enc.add(it, now=0.0)
            if query is None:
                query = enc.flush(now=0.0, force=True)
            dec = GroupDecoder("reid", wait_s=0.0)
            for it, m in zip(items, members):
                if m != j:
                    dec.data(it.derive("features", arrays={"embeddings": emb[m:m + 1].astype(np.float16)}), now=0.0)
            (out,) = worker.process([query])
            dec.parity(out, now=0.0)
            (back,) = dec.due(now=1.0)
            rebuilt[name][n] = back.arrays["embeddings"][0].astype(np.float32)
    seconds = time.perf_counter() - t0
    cos = {name: float(np.mean(np.sum(r * emb[q], axis=1))) for name, r in rebuilt.items()}
    noise = rng.standard_normal((len(q), DIM)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    result = {"original": retrieval_metrics(emb[q], ids[q], cams[q], emb[g], ids[g], cams[g])}
    for name, r in rebuilt.items():
        result[f"rebuilt ({'k-1 others + parity' if name == 'full' else 'alone in its group'})"] = {
            **retrieval_metrics(r, ids[q], cams[q], emb[g], ids[g], cams[g]), "mean_cosine_to_original": round(cos[name], 4)}
    result["a random embedding instead"] = retrieval_metrics(noise, ids[q], cams[q], emb[g], ids[g], cams[g])
    result["decode_ms_per_query"] = round(1000 * seconds / (2 * len(q)), 2)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=REPO / "model_zoo" / "aicity" / "reid_w100.onnx")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--width", type=float, default=1.0, help="the parity network's width (the base's: 1.0)")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--blank", type=float, default=0.2, help="share of blank slots in training groups")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=2, help="use every N-th training frame")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=None, help="scene directory to reuse (default: a temp dir)")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jb-parity-") as tmp:
        root = args.data or Path(tmp)
        t = time.perf_counter()
        train_dirs = write_scenes(root / "train", TRAIN_SCENES)
        eval_dirs = write_scenes(root / "eval-reid", [EVAL_SCENE])
        crops_rgb, _, _, _ = reid_crops(train_dirs, SIDE, every=args.every)
        crops_rgb = np.concatenate([crops_rgb, crops_rgb[:, :, ::-1]])        # and mirrored
        crops = as_sent(crops_rgb)
        targets = base_outputs(args.base, crops)
        ev = reid_crops(eval_dirs, SIDE, every=1)
        t_data = time.perf_counter() - t
        print(f"data: {len(crops)} training crops (mirrored included), targets from {args.base.name}, "
              f"{len(ev[0])} held-out crops, {t_data:.0f} s")
        model = build_parity(args.width)
        model, t_train = train(model, crops, targets, args.k, args.blank, args.steps, args.batch, args.lr, args.seed)
        meta = {"description": f"jellybean parity model of {args.base.name}, k = {args.k}, concatenation encoder",
                "task": "parity", "k": args.k, "encoder": "concat", "base": args.base.name, "imgsz": [SIDE, SIDE],
                "output": "sum of the base's unit-norm embeddings over the group's non-blank slots"}
        export_onnx(model, args.out, meta)
        result = evaluate(args.base, args.out, args.k, *ev, seed=args.seed)
    result.update({"k": args.k, "encoder": "concat", "steps": args.steps, "batch": args.batch, "blank": args.blank,
                   "train_seconds": round(t_train), "data_seconds": round(t_data),
                   "total_seconds": round(time.perf_counter() - t_all), "onnx_bytes": args.out.stat().st_size})
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
