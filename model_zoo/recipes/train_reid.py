"""Train the zoo's vehicle re-ID embedder on crops of synthetic traffic scenes and export it to ONNX.

    python model_zoo/recipes/train_reid.py --width 1.0 --out model_zoo/aicity/reid_w100.onnx

The model is a small residual CNN (a stride-2 stem and three stages of basic blocks, stride 16
overall, global average pooling, a linear layer to 128) with a BN-neck as in "Bag of Tricks for
re-ID" (Luo et al. 2019): a batch-hard triplet loss on the pooled feature and an identity
cross-entropy (label smoothing 0.1) on the batch-normalised feature. The
export ends with the BN-neck and an L2 normalisation inside the graph:

    images      float32 [batch, 3, 96, 96]  RGB, 0..1, a gt/detected box's pixels, bilinear resize
    embeddings  float32 [batch, 128]        unit L2 norm; cosine similarity is a dot product

Training: crops of every gt box (sides >= 12 px) in every 5th frame of the scenes seeds 1-5 (the
same scenes as the detector), identity = (scene, global id), PK batches (16 identities x 4 crops
drawn at random from all of the identity's crops, in any camera), augmentation: random resized
crop, horizontal flip, per-channel gain / contrast jitter, random erasing. Evaluation: cross-camera
rank-1 and mAP on a held-out scene (seed 100, 5 cameras x 30 s): one query per (vehicle, camera)
(the crop in the middle of that track; a second, harder set adds the first and last crops, which
are mostly cut by the frame's side), the gallery is every other crop of the scene; a query is
ranked only against gallery crops from other cameras (as the AI City / VeRi protocol excludes
same-camera matches).

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
from _scenes import SceneSpec, reid_crops, set_io_shapes, write_scenes  # noqa: E402

SIDE = 96
DIM = 128
BASE = (24, 48, 64, 96)             # stage channels for --width 1.0 (strides 2, 4, 8, 16)
TRAIN_SCENES = [SceneSpec(seed=s, cameras=5, seconds=30) for s in (1, 2, 3, 4, 5)]
EVAL_SCENE = SceneSpec(seed=100, cameras=5, seconds=30)


# --- numpy: retrieval metrics ------------------------------------------------------------------------


def retrieval_metrics(q_emb, q_ids, q_cams, g_emb, g_ids, g_cams) -> dict:
    """Cross-camera rank-1 / rank-5 and mAP: each query is ranked against gallery items from other
    cameras only; queries whose identity no other camera saw are skipped."""
    sims = q_emb @ g_emb.T
    rank1, rank5, aps = [], [], []
    for i in range(len(q_emb)):
        valid = g_cams != q_cams[i]
        match = (g_ids == q_ids[i]) & valid
        if not match.any():
            continue
        order = np.argsort(-np.where(valid, sims[i], -np.inf), kind="stable")[: int(valid.sum())]
        hits = match[order]
        rank1.append(bool(hits[0]))
        rank5.append(bool(hits[:5].any()))
        positions = np.flatnonzero(hits) + 1
        aps.append(float(np.mean(np.arange(1, len(positions) + 1) / positions)))
    return {"rank1": round(float(np.mean(rank1)), 4), "rank5": round(float(np.mean(rank5)), 4),
            "mAP": round(float(np.mean(aps)), 4), "queries": len(aps), "gallery": int(len(g_emb))}


def split_query_gallery(ids, cams, frames, positions=(0.5,)):
    """Queries: from each (id, camera) track (its crops in frame order), the crops at the given
    relative positions (0.5: the middle one, where the vehicle is in full view; 0 and 1: the first
    and last, usually cut by the frame's side as it enters or leaves); gallery: every other crop."""
    query = []
    for key in sorted(set(zip(ids.tolist(), cams.tolist()))):
        idx = np.flatnonzero((ids == key[0]) & (cams == key[1]))
        idx = idx[np.argsort(frames[idx], kind="stable")]
        query.extend(sorted({int(idx[min(len(idx) - 1, int(p * len(idx)))]) for p in positions}))
    mask = np.ones(len(ids), bool)
    mask[query] = False
    return np.array(query), np.flatnonzero(mask)


def evaluate_onnx(path: Path, crops, ids, cams, frames) -> dict:
    """Two query sets against the same kind of gallery: `middle` (one full view per track) and
    `ends` (the first, middle and last crop of each track, so partial views at the frame's sides
    count too)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    t = time.perf_counter()
    emb = np.concatenate([sess.run(["embeddings"], {"images": crops[i:i + 64].astype(np.float32)
                                                     .transpose(0, 3, 1, 2) / 255.0})[0]
                          for i in range(0, len(crops), 64)])
    ms = 1000 * (time.perf_counter() - t) / len(crops)
    result = {}
    for name, positions in (("middle", (0.5,)), ("ends", (0.0, 0.5, 1.0))):
        q, g = split_query_gallery(ids, cams, frames, positions)
        result[name] = retrieval_metrics(emb[q], ids[q], cams[q], emb[g], ids[g], cams[g])
    result["rank1"], result["mAP"] = result["middle"]["rank1"], result["middle"]["mAP"]
    result["identities"] = int(len(set(ids.tolist())))
    result["ms_per_crop_ort_1thread_batch64"] = round(ms, 3)
    return result


# --- augmentation --------------------------------------------------------------------------------------


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    H, W = img.shape[:2]
    # random resized crop: 80-100 % of the area, aspect jitter, then back to SIDE x SIDE
    area = rng.uniform(0.8, 1.0)
    aspect = math.exp(rng.uniform(-0.15, 0.15))
    w = int(round(min(W, W * math.sqrt(area * aspect))))
    h = int(round(min(H, H * math.sqrt(area / aspect))))
    x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
    img = cv2.resize(img[y0:y0 + h, x0:x0 + w], (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    out = img.astype(np.float32)
    gain = rng.uniform(0.8, 1.2) * rng.uniform(0.93, 1.07, 3)         # exposure and tint, as cameras differ
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.8, 1.2) + mean                 # contrast
    out = out * gain
    if rng.random() < 0.5:                                            # random erasing
        ea = rng.uniform(0.02, 0.25) * SIDE * SIDE
        er = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        eh, ew = int(min(SIDE - 1, math.sqrt(ea * er))), int(min(SIDE - 1, math.sqrt(ea / er)))
        ey, ex = int(rng.integers(0, SIDE - eh)), int(rng.integers(0, SIDE - ew))
        out[ey:ey + eh, ex:ex + ew] = rng.uniform(0, 255, 3)
    return np.clip(out, 0, 255).astype(np.float32)


# --- the model (torch) ---------------------------------------------------------------------------------


def build_model(width: float, num_ids: int):
    import torch
    from torch import nn
    import torch.nn.functional as F

    def ch(c: int) -> int:
        return max(8, int(round(c * width / 8)) * 8)

    def conv_bn(c1, c2, k=3, s=1, act=True):
        layers = [nn.Conv2d(c1, c2, k, s, k // 2, bias=False), nn.BatchNorm2d(c2)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    class Block(nn.Module):
        """ResNet basic block."""

        def __init__(self, c1, c2, s):
            super().__init__()
            self.a = conv_bn(c1, c2, 3, s)
            self.b = conv_bn(c2, c2, 3, 1, act=False)
            self.skip = conv_bn(c1, c2, 1, s, act=False) if (s != 1 or c1 != c2) else nn.Identity()

        def forward(self, x):
            return F.relu(self.b(self.a(x)) + self.skip(x))

    class ReID(nn.Module):
        def __init__(self):
            super().__init__()
            c1, c2, c3, c4 = (ch(c) for c in BASE)
            self.stem = conv_bn(3, c1, 3, 2)                                         # 48x48
            self.stages = nn.Sequential(Block(c1, c2, 2), Block(c2, c2, 1),                   # 24x24
                                        Block(c2, c3, 2), Block(c3, c3, 1),                   # 12x12
                                        Block(c3, c4, 2), Block(c4, c4, 1))                   # 6x6
            self.fc = nn.Linear(c4, DIM)
            self.neck = nn.BatchNorm1d(DIM)
            self.neck.bias.requires_grad_(False)                                     # BNNeck: no shift
            self.classifier = nn.Linear(DIM, num_ids, bias=False)
            nn.init.normal_(self.classifier.weight, std=0.001)

        def features(self, x):
            f = self.stages(self.stem(x))
            return self.fc(f.mean((2, 3)))

        def forward(self, x):
            """Export/inference: the BN-neck feature, L2-normalised."""
            return F.normalize(self.neck(self.features(x)), dim=1)

        def train_outputs(self, x):
            f = self.features(x)
            return f, self.classifier(self.neck(f))

    return ReID()


def batch_hard_triplet(feats, labels, margin: float = 0.3):
    import torch

    d = torch.cdist(feats, feats).clamp(min=1e-12)
    same = labels[:, None] == labels[None, :]
    hardest_pos = (d * same).amax(1)
    hardest_neg = torch.where(same, torch.full_like(d, float("inf")), d).amin(1)
    return torch.relu(hardest_pos - hardest_neg + margin).mean()


def pk_batches(ids: np.ndarray, p: int, k: int, rng: np.random.Generator):
    """One epoch of PK batches: identities shuffled, p per batch, k crops each (with replacement
    when an identity has fewer)."""
    by_id: dict[int, np.ndarray] = {}
    for i, v in enumerate(ids.tolist()):
        by_id.setdefault(v, []).append(i)
    keys = [v for v, idx in by_id.items() if len(idx) >= 2]
    order = rng.permutation(len(keys))
    for b in range(len(order) // p):
        out = []
        for j in order[b * p:(b + 1) * p]:
            idx = by_id[keys[j]]
            out.extend(rng.choice(idx, k, replace=len(idx) < k).tolist())
        yield np.array(out)


def train(model, crops, labels, epochs: int, p: int, k: int, lr: float, seed: int, log=print):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    labels_t = torch.from_numpy(labels)
    steps_per_epoch = len(set(labels.tolist())) // p
    # an "epoch" visits every identity once with k crops; repeat so each epoch sees ~ all crops once
    repeats = max(1, len(crops) // (steps_per_epoch * p * k))
    total = epochs * repeats * steps_per_epoch
    warmup = max(1, total // 10)
    decay, no_decay = [], []
    for p_ in model.parameters():
        if p_.requires_grad:
            (decay if p_.ndim > 1 else no_decay).append(p_)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr)
    step = 0
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        sums = np.zeros(3)
        n = 0
        for _ in range(repeats):
            for idx in pk_batches(labels, p, k, rng):
                scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * step / total))
                for g in opt.param_groups:
                    g["lr"] = lr * max(scale, 0.01)
                x = np.stack([augment(crops[i], rng) for i in idx]).transpose(0, 3, 1, 2)
                x = torch.from_numpy(np.ascontiguousarray(x)).div_(255.0)
                y = labels_t[idx]
                feats, logits = model.train_outputs(x)
                l_tri = batch_hard_triplet(feats, y)
                l_id = F.cross_entropy(logits, y, label_smoothing=0.1)
                loss = l_tri + l_id
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums += (loss.item(), l_tri.item(), l_id.item())
                n += 1
                step += 1
        sums /= max(1, n)
        log(f"  epoch {epoch + 1}/{epochs}: loss {sums[0]:.3f} (triplet {sums[1]:.3f}, id {sums[2]:.3f}) "
            f"{time.perf_counter() - t0:.0f} s")
    return model.eval(), time.perf_counter() - t0


def fuse_conv_bn(model) -> None:
    """Fold BatchNorm2d into the Conv2d before it (Sequential(conv, bn, ...) pairs)."""
    import torch
    from torch import nn

    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                std = torch.sqrt(bn.running_var + bn.eps)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                  bias=True)
                with torch.no_grad():
                    fused.weight.copy_(conv.weight * (bn.weight / std).reshape(-1, 1, 1, 1))
                    fused.bias.copy_(bn.bias - bn.weight * bn.running_mean / std)
                seq[i], seq[i + 1] = fused, nn.Identity()


def export_onnx(model, path: Path, meta: dict) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    model = model.eval()
    model.classifier = torch.nn.Identity()        # training-only head; not in the graph anyway
    fuse_conv_bn(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, SIDE, SIDE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)      # the TorchScript exporter, on purpose
        torch.onnx.export(model, (dummy,), str(path), input_names=["images"], output_names=["embeddings"],
                          dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}}, opset_version=17,
                          do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(path))
    set_io_shapes(proto, {"images": ["batch", 3, SIDE, SIDE], "embeddings": ["batch", DIM]})
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    proto.producer_name = "jellybean model_zoo/recipes/train_reid.py"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, SIDE, SIDE), dtype=np.float32)
    out = sess.run(["embeddings"], {"images": x})[0]
    if out.shape != (2, DIM):
        raise SystemExit(f"{path}: embeddings has shape {out.shape}, expected {(2, DIM)}")
    with torch.no_grad():
        diff = float(np.abs(model(torch.from_numpy(x)).numpy() - out).max())
    if diff > 1e-3:
        raise SystemExit(f"{path}: ONNX Runtime and torch disagree by {diff}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier on the base channels")
    ap.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--p", type=int, default=16, help="identities per batch")
    ap.add_argument("--k", type=int, default=4, help="crops per identity in a batch")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=5, help="use every N-th training frame")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is much faster than 2 on a busy 2-core machine for these small convs)")
    ap.add_argument("--data", type=Path, default=None, help="scene directory to reuse (default: a temp dir)")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jb-reid-") as tmp:
        root = args.data or Path(tmp)
        print(f"writing scenes into {root}")
        t = time.perf_counter()
        train_dirs = write_scenes(root / "train", TRAIN_SCENES)
        eval_dirs = write_scenes(root / "eval-reid", [EVAL_SCENE])
        crops, ids, cams, _ = reid_crops(train_dirs, SIDE, every=args.every)
        ev = reid_crops(eval_dirs, SIDE, every=1)
        t_data = time.perf_counter() - t
        uniq, labels = np.unique(ids, return_inverse=True)
        print(f"data: {len(crops)} training crops of {len(uniq)} vehicles, {len(ev[0])} held-out crops of "
              f"{len(set(ev[1].tolist()))} vehicles, {t_data:.0f} s")
        model = build_model(args.width, len(uniq))
        params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier"))
        print(f"model: width {args.width}, {params} parameters (without the ID classifier); {args.epochs} epochs")
        model, t_train = train(model, crops, labels.astype(np.int64), args.epochs, args.p, args.k, args.lr, args.seed)
        meta = {"description": f"jellybean vehicle re-ID embedder, width {args.width}", "task": "reid",
                "imgsz": [SIDE, SIDE], "embedding_dim": DIM, "normalized": "l2", "crop": "box pixels, no context",
                "batch": "dynamic"}
        export_onnx(model, args.out, meta)
        result = evaluate_onnx(args.out, *ev)
    result.update({"width": args.width, "parameters": params, "epochs": args.epochs,
                   "train_seconds": round(t_train), "data_seconds": round(t_data),
                   "total_seconds": round(time.perf_counter() - t_all), "onnx_bytes": args.out.stat().st_size,
                   "eval_scene": EVAL_SCENE.command(), "train_scenes": [s.command() for s in TRAIN_SCENES]})
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
