"""Train a parity model (ParM, Kosaian et al. SOSP 2019) for the zoo's re-ID embedder and export it.

    python model_zoo/recipes/train_parity.py --k 2 --encoder concat --steps 4000 --out model_zoo/aicity/reid_w100_parity_k2.onnx
    python model_zoo/recipes/train_parity.py --evaluate --out model_zoo/aicity/reid_w100_parity_k2.onnx   # no torch

The base model F (default model_zoo/aicity/reid_w100.onnx) is not retrained: its outputs are the
targets. A parity query is what the agents send (jellybean.parity): k crops, each a JPEG as the
detector cuts it, coded by the agents' encoder (jellybean.parity.wire, with the tile geometry of
jellybean.parity.coders) into one 96x96 image and sent as a JPEG again; a slot is blank (black)
where a group has fewer crops. --encoder concat (ParM's default) tiles the k crops side by side
(k = 2: two 48x96 halves; k = 4: a 2 x 2 grid of 48x48); --encoder add takes their mean. The
parity model P has the re-ID network's shape (train_reid.build_model) without the BN-neck and the
normalisation, and learns, with an MSE loss, P(E(x_1..x_k)) = sum over the non-blank slots of
F(x_i), F's outputs being the unit-norm embeddings the re-ID operator emits. Then a missing output
is F(x_j) ~ P - sum_{i != j} F(x_i), re-normalised (jellybean.parity.coders.decode; the agents'
jellybean.parity.groups does the same).

Data: crops of every gt box (sides >= 12 px) in every 2nd frame of the re-ID training scenes (seeds
1-5, as train_reid.py), each also mirrored; groups are drawn at random, a slot blank with
probability --blank. Held out: the re-ID evaluation scene (seed 100). Evaluation runs the exported
ONNX file through the agents' own parity worker, encoder and decoder (jellybean.agents.operators.
parity, jellybean.parity.groups) and through jellybean.parity.coders.decode (the two must agree):
every query crop of the retrieval protocol is grouped with k-1 random other crops of the scene, its
output is taken away and rebuilt, and the rebuilt embeddings are ranked against the gallery
exactly as the originals are (cross-camera rank-1 and mAP), beside a random and a zero embedding
in its place.

Needs the `train` extra (torch): pip install -e ".[train]" (not for --evaluate).
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
CHECKPOINT_EVERY = 100       # steps, with --data: a run started again resumes (a shared machine's jobs get killed)


def jpeg(image_bgr: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def as_sent(crops_rgb: np.ndarray, mirrored: bool = False) -> np.ndarray:
    """RGB crops -> BGR crops as the re-ID operator decodes them from the detector's JPEGs; with
    mirrored=True, followed by the same crops mirrored (then sent)."""
    n = len(crops_rgb)
    out = np.empty((2 * n if mirrored else n, *crops_rgb.shape[1:]), np.uint8)
    for i, c in enumerate(crops_rgb):
        out[i] = jpeg(np.ascontiguousarray(c[:, :, ::-1]), CROP_QUALITY)
        if mirrored:
            out[n + i] = jpeg(np.ascontiguousarray(c[:, ::-1, ::-1]), CROP_QUALITY)
    return out


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


def training_data(root: Path, base: Path, every: int, log=print) -> tuple[np.ndarray, np.ndarray]:
    """The training crops (every `every`-th frame of the training scenes, each also mirrored, as
    sent) and their targets F(x). Kept in `root` as .npy files (keyed by the base model's bytes), so
    another run with the same --data reuses them, memory-mapped."""
    import hashlib

    digest = hashlib.sha256(base.read_bytes()).hexdigest()[:12]
    crops_file = root / f"parity-crops-every{every}.npy"
    targets_file = root / f"parity-targets-every{every}-{digest}.npy"
    if not crops_file.is_file():
        train_dirs = write_scenes(root / "train", TRAIN_SCENES, log=log)
        crops_rgb, _, _, _ = reid_crops(train_dirs, SIDE, every=every)
        crops = as_sent(crops_rgb, mirrored=True)
        del crops_rgb
        np.save(crops_file.with_suffix(".tmp.npy"), crops)
        crops_file.with_suffix(".tmp.npy").rename(crops_file)
    crops = np.load(crops_file, mmap_mode="r")
    if not targets_file.is_file():
        np.save(targets_file.with_suffix(".tmp.npy"), base_outputs(base, crops))
        targets_file.with_suffix(".tmp.npy").rename(targets_file)
    else:
        log(f"  reusing {crops_file.name} and {targets_file.name} in {root}")
    return crops, np.load(targets_file)


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


def train(model, crops_bgr, targets, k, encoder, blank, steps, batch, lr, seed, log=print, checkpoint=None):
    """MSE training on random groups. With `checkpoint` (a path), the state (weights, optimiser,
    the group sampler's RNG, the step) is saved there every CHECKPOINT_EVERY steps, and a run started
    again with the same settings resumes from it: the same batches, so the same weights."""
    import torch

    rng = np.random.default_rng(seed)
    encode = wire_encoder(encoder, k)
    params = [p for n, p in model.named_parameters() if "classifier" not in n and "neck" not in n]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    settings = {"k": k, "encoder": encoder, "blank": blank, "steps": steps, "batch": batch, "lr": lr, "seed": seed,
                "crops": len(crops_bgr)}
    start, spent = 0, 0.0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        if state["settings"] == settings:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            rng.bit_generator.state = state["rng"]
            start, spent = state["step"], state["seconds"]
            log(f"  resuming at step {start} from {checkpoint}")
    t0 = time.perf_counter() - spent
    model.train()
    running = []
    for step in range(start, steps):
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
        if checkpoint is not None and (step + 1) % CHECKPOINT_EVERY == 0 and step + 1 < steps:
            torch.save({"settings": settings, "model": model.state_dict(), "opt": opt.state_dict(),
                        "rng": rng.bit_generator.state, "step": step + 1, "seconds": time.perf_counter() - t0},
                       checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").rename(checkpoint)
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


def evaluate(base: Path, parity: Path, k: int, encoder: str, crops_rgb, ids, cams, frames, seed: int) -> dict:
    """Originals against outputs rebuilt by the agents' own parity worker and decoder.

    Every query crop of the retrieval protocol is, in turn, the missing member of a group: with
    k-1 random other crops of the scene ("full") or with the other slots blank ("alone"), in a
    random slot. The group is coded (GroupEncoder), run by the parity worker, and its member
    rebuilt by GroupDecoder; the same parity output is also decoded by jellybean.parity.coders.decode
    with and without re-normalisation (the two must agree with the agents' decoder). Baselines: a
    random unit vector and a zero vector in place of the missing embedding (nothing useful)."""
    from jellybean.agents.items import Item
    from jellybean.agents.operators.base import OperatorConfig, create
    from jellybean.parity.coders import CoderSpec, Rebuilt, decode, unit_rows
    from jellybean.parity.groups import GroupDecoder, GroupEncoder

    rng = np.random.default_rng(seed)
    spec = CoderSpec(encoder, k)
    crops = as_sent(crops_rgb)
    blobs = [cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes() for c in crops]
    emb = base_outputs(base, crops)
    worker = create("parity-embedder", OperatorConfig("reid.parity", "eval", model=parity, threads=1))
    q, g = split_query_gallery(ids, cams, frames, (0.5,))
    t0 = time.perf_counter()
    rebuilt = {name: np.zeros((len(q), DIM), np.float32) for name in ("full", "blank")}
    raw = {name: np.zeros((len(q), DIM), np.float32) for name in rebuilt}
    disagreement = 0.0
    for name in rebuilt:
        for n, j in enumerate(q):
            partners = [] if name == "blank" else rng.choice(np.setdiff1d(np.arange(len(crops)), [j]), k - 1).tolist()
            slot = int(rng.integers(0, k))
            members = partners[:slot] + [int(j)] + partners[slot:]
            enc = GroupEncoder(k, wire_encoder(encoder, k), source="eval")
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
            # The same parity output through the coders' decoder: blank slots are zeros.
            slot = members.index(int(j))       # alone in its group, the member is in slot 0
            outputs = [None if i == slot else emb[m] for i, m in enumerate(members)]
            outputs += [np.zeros(DIM, np.float32)] * (k - len(outputs))
            got = decode(spec, out.arrays["parity"][0], outputs, normalize=False)
            if not isinstance(got, Rebuilt) or got.index != slot:
                raise SystemExit(f"jellybean.parity.coders.decode did not rebuild slot {slot}: {got}")
            raw[name][n] = got.output
            disagreement = max(disagreement, float(np.abs(unit_rows(got.output) - rebuilt[name][n]).max()))
    seconds = time.perf_counter() - t0
    if disagreement > 2e-3:      # the agents' output is float16
        raise SystemExit(f"the agents' decoder and jellybean.parity.coders.decode differ by {disagreement}")
    noise = unit_rows(rng.standard_normal((len(q), DIM)))
    metrics = lambda e: retrieval_metrics(e, ids[q], cams[q], emb[g], ids[g], cams[g])  # noqa: E731
    result = {"original": metrics(emb[q])}
    for name, r in rebuilt.items():
        norms = np.linalg.norm(raw[name], axis=1)
        result[f"rebuilt ({'k-1 others + parity' if name == 'full' else 'alone in its group'})"] = {
            **metrics(r),
            "mean_cosine_to_original": round(float(np.mean(np.sum(r * emb[q], axis=1))), 4),
            # Not re-normalised: the same ranking (a query's scale does not change it), but a
            # different distance to the original and to every gallery embedding.
            "not_renormalised": {
                "mean_norm": round(float(norms.mean()), 4), "norm_p10_p90": [round(float(x), 4) for x in
                                                                             np.percentile(norms, [10, 90])],
                "mean_l2_to_original": round(float(np.linalg.norm(raw[name] - emb[q], axis=1).mean()), 4),
                "renormalised_mean_l2_to_original": round(float(np.linalg.norm(r - emb[q], axis=1).mean()), 4),
                **{key: v for key, v in metrics(raw[name]).items() if key in ("rank1", "mAP")}}}
    result["a random embedding instead"] = metrics(noise)
    result["a zero embedding instead"] = metrics(np.zeros_like(noise))
    result["agents_vs_coders_decoder_max_abs_diff"] = round(disagreement, 5)
    result["decode_ms_per_query"] = round(1000 * seconds / (2 * len(q)), 2)
    return result


def onnx_meta(path: Path) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=REPO / "model_zoo" / "aicity" / "reid_w100.onnx")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--encoder", choices=("concat", "add"), default="concat",
                    help="concat: k tiles side by side (ParM's default); add: the mean of the k crops")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--evaluate", action="store_true",
                    help="only evaluate --out (an existing parity model; k and encoder from its metadata), no torch")
    ap.add_argument("--width", type=float, default=1.0, help="the parity network's width (the base's: 1.0)")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--blank", type=float, default=0.2, help="share of blank slots in training groups")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=2, help="use every N-th training frame")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=None, help="scene directory to reuse (default: a temp dir)")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    from jellybean.parity.coders import CoderSpec

    t_all = time.perf_counter()
    if args.evaluate:
        meta = onnx_meta(args.out)
        args.k, args.encoder = int(json.loads(meta["k"])), meta["encoder"]
        CoderSpec(args.encoder, args.k)
        with tempfile.TemporaryDirectory(prefix="jb-parity-") as tmp:
            eval_dirs = write_scenes((args.data or Path(tmp)) / "eval-reid", [EVAL_SCENE])
            result = evaluate(args.base, args.out, args.k, args.encoder, *reid_crops(eval_dirs, SIDE, every=1),
                              seed=args.seed)
        result.update({"k": args.k, "encoder": args.encoder, "total_seconds": round(time.perf_counter() - t_all)})
        print(json.dumps(result, indent=2))
        return 0
    CoderSpec(args.encoder, args.k)      # a bad k fails here, before the data and the training

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="jb-parity-") as tmp:
        root = args.data or Path(tmp)
        t = time.perf_counter()
        crops, targets = training_data(root, args.base, args.every)
        eval_dirs = write_scenes(root / "eval-reid", [EVAL_SCENE])
        ev = reid_crops(eval_dirs, SIDE, every=1)
        t_data = time.perf_counter() - t
        print(f"data: {len(crops)} training crops (mirrored included), targets from {args.base.name}, "
              f"{len(ev[0])} held-out crops, {t_data:.0f} s")
        model = build_parity(args.width)
        checkpoint = (args.data / f"parity-checkpoint-k{args.k}-{args.encoder}-w{args.width:g}-{args.steps}steps"
                      f"-seed{args.seed}.pt") if args.data else None
        model, t_train = train(model, crops, targets, args.k, args.encoder, args.blank, args.steps, args.batch,
                               args.lr, args.seed, checkpoint=checkpoint)
        what = (f"backup model of {args.base.name} (k = 1): a width-{args.width:g} network trained to reproduce "
                "its embeddings" if args.k == 1 else
                f"parity model of {args.base.name}, k = {args.k}, "
                f"{'concatenation' if args.encoder == 'concat' else 'addition (mean)'} encoder")
        meta = {"description": f"jellybean {what}", "width": args.width,
                "task": "parity", "k": args.k, "encoder": args.encoder, "base": args.base.name, "imgsz": [SIDE, SIDE],
                "output": "sum of the base's unit-norm embeddings over the group's non-blank slots"}
        export_onnx(model, args.out, meta)
        result = evaluate(args.base, args.out, args.k, args.encoder, *ev, seed=args.seed)
    result.update({"k": args.k, "encoder": args.encoder, "steps": args.steps, "batch": args.batch, "blank": args.blank,
                   "train_seconds": round(t_train), "data_seconds": round(t_data),
                   "total_seconds": round(time.perf_counter() - t_all), "onnx_bytes": args.out.stat().st_size})
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
