"""Train the zoo's vehicle detector on synthetic traffic scenes and export it in the YOLOv8 ONNX layout.

    python model_zoo/recipes/train_detector.py --width 0.5 --out model_zoo/aicity/detector_w050.onnx
    python model_zoo/recipes/train_detector.py --width 1.0 --out model_zoo/aicity/detector_w100.onnx

The model is a compact anchor-free YOLOv8-style detector: a C2f backbone with SPPF, a PAN neck and
decoupled box / class heads on strides 8, 16 and 32. Boxes are regressed directly (left, top,
right, bottom distances from the anchor point, softplus, in stride units) instead of YOLOv8's
distribution focal loss; the exported graph is laid out exactly like an Ultralytics YOLOv8 export:

    images   float32 [batch, 3, 192, 320]  RGB, 0..1, frames plainly resized (no letterbox)
    output0  float32 [batch, 5, 1260]      rows cx, cy, w, h (input pixels), vehicle score (sigmoid)

with anchors ordered stride 8, 16, 32, each level row-major, anchor points at cell centres.

Training: scenes from the repo's synthetic scene writer (seeds 1-5), every 2nd frame, labels from
gt boxes scaled to the input; task-aligned label assignment (YOLOv8's TAL: top-10 anchors inside
each box by score^0.5 * IoU^6, IoU-normalised soft targets), CIoU box loss + BCE classification,
light augmentation (scale / translation jitter, horizontal flip, HSV jitter), AdamW with a cosine
schedule and a weight EMA. Evaluation: COCO's AP@0.5 and AP@0.5:0.95 (pycocotools' COCOeval,
through jellybean.zoo.evaluators; conf >= 0.001, class-agnostic NMS at IoU 0.6, up to 300 boxes a
frame, of which COCOeval keeps the best 100) of the exported ONNX model in ONNX Runtime on a
held-out scene (seed 100), in source-frame pixels. `--evaluate` re-runs only that evaluation on an
existing ONNX file (no torch needed):

    python model_zoo/recipes/train_detector.py --evaluate --out model_zoo/aicity/detector_w050.onnx

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
from _scenes import SceneSpec, detection_frames, set_io_shapes, write_scenes  # noqa: E402

INPUT_W, INPUT_H = 320, 192
STRIDES = (8, 16, 32)
NAMES = ("vehicle",)
BASE = (8, 16, 32, 48, 64)          # channels at stride 2, 4, 8, 16, 32 for --width 1.0
TRAIN_SCENES = [SceneSpec(seed=s, cameras=5, seconds=30) for s in (1, 2, 3, 4, 5)]
EVAL_SCENE = SceneSpec(seed=100, cameras=4, seconds=20)


# --- numpy: decode, NMS, AP (no torch) ------------------------------------------------------------


def xywh2xyxy(b: np.ndarray) -> np.ndarray:
    out = np.empty_like(b)
    out[..., 0] = b[..., 0] - b[..., 2] / 2
    out[..., 1] = b[..., 1] - b[..., 3] / 2
    out[..., 2] = b[..., 0] + b[..., 2] / 2
    out[..., 3] = b[..., 1] + b[..., 3] / 2
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [n, 4] with every box in b [m, 4], x1 y1 x2 y2."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[box_iou(boxes[i:i + 1], boxes[rest])[0] <= iou]
    return np.array(keep, np.int64)


def decode(output: np.ndarray, conf: float = 0.001, iou: float = 0.6, max_det: int = 300):
    """One image's output0 [4 + nc, A] -> (boxes [k, 4] x1 y1 x2 y2 input pixels, scores [k]),
    YOLOv8-style: best class score per anchor, threshold, class-agnostic NMS."""
    scores = output[4:].max(0)
    keep = scores > conf
    boxes = xywh2xyxy(output[:4, keep].T)
    scores = scores[keep]
    if len(scores) > 30000:
        top = np.argsort(-scores)[:30000]
        boxes, scores = boxes[top], scores[top]
    k = nms(boxes, scores, iou)[:max_det]
    return boxes[k], scores[k]


def detection_metrics(detections, ground_truth) -> dict:
    """COCO's AP@0.5, AP@0.5:0.95, AP@0.75 and AR@100, computed by pycocotools' COCOeval through the
    product's evaluator (jellybean.zoo.evaluators.DetectionAccumulator), with precision and
    recall at the usual deployment threshold, conf 0.25. detections: per image (boxes, scores);
    ground_truth: per image boxes; one class."""
    from jellybean.zoo.evaluators import DetectionAccumulator

    acc = DetectionAccumulator()
    for (boxes, scores), gt in zip(detections, ground_truth):
        acc.add(boxes, scores, np.zeros(len(scores), np.int64), gt)
    m = acc.compute(0.25)
    return {"ap50": round(m["ap50"], 4), "ap50_95": round(m["ap50_95"], 4), "ap75": round(m["ap75"], 4),
            "ar100": round(m["ar100"], 4), "precision@0.25": round(m["precision"], 4),
            "recall@0.25": round(m["recall"], 4), "gt_boxes": sum(len(g) for g in ground_truth),
            "detections": sum(len(d[1]) for d in detections)}


def evaluate_onnx(path: Path, images: np.ndarray, boxes: list, sizes: list, batch: int = 16) -> dict:
    """COCO AP of the exported model in ONNX Runtime; boxes compared in source-frame pixels."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    dets, gts = [], []
    t = time.perf_counter()
    for i in range(0, len(images), batch):
        x = images[i:i + batch].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        out = sess.run(["output0"], {"images": x})[0]
        for j, o in enumerate(out):
            fw, fh = sizes[i + j]
            scale = np.array([fw / INPUT_W, fh / INPUT_H] * 2, np.float32)
            b, s = decode(o)
            dets.append((b * scale, s))
            gts.append(boxes[i + j] * scale)
    elapsed = time.perf_counter() - t
    result = detection_metrics(dets, gts)
    result["frames"] = len(images)
    result["ms_per_frame_ort_1thread_batch16"] = round(1000 * elapsed / len(images), 2)
    return result


# --- augmentation ----------------------------------------------------------------------------------


def augment(img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator):
    """Scale/translation jitter, horizontal flip, HSV jitter; boxes x1 y1 x2 y2 follow."""
    H, W = img.shape[:2]
    s = rng.uniform(0.75, 1.35)
    sx, sy = s * rng.uniform(0.92, 1.08), s * rng.uniform(0.92, 1.08)
    tx = (1 - sx) * W / 2 + rng.uniform(-0.12, 0.12) * W
    ty = (1 - sy) * H / 2 + rng.uniform(-0.12, 0.12) * H
    m = np.array([[sx, 0, tx], [0, sy, ty]], np.float32)
    img = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(114, 114, 114))
    if len(boxes):
        b = boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([tx, ty, tx, ty], np.float32)
        full = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, W)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, H)
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        boxes = b[(w >= 3) & (h >= 3) & (w * h >= 0.3 * full)]
    if rng.random() < 0.5:
        img = img[:, ::-1]
        if len(boxes):
            boxes = np.stack([W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0], boxes[:, 3]], 1)
    # HSV gains as in YOLOv8's defaults (h 0.015, s 0.7, v 0.4), through lookup tables.
    gh, gs, gv = rng.uniform(-1, 1, 3) * (0.015, 0.7, 0.4) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gh) % 180).astype(np.uint8)
    lut_s = np.clip(x * gs, 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gv, 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), boxes.astype(np.float32)


# --- the model (torch) -----------------------------------------------------------------------------


def build_model(width: float):
    import torch
    from torch import nn
    import torch.nn.functional as F

    def ch(c: int) -> int:
        return max(8, int(round(c * width / 8)) * 8)

    class Conv(nn.Module):
        def __init__(self, c1, c2, k=1, s=1):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
            self.act = nn.SiLU()

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

    class Bottleneck(nn.Module):
        def __init__(self, c, shortcut=True):
            super().__init__()
            self.cv1, self.cv2 = Conv(c, c, 3), Conv(c, c, 3)
            self.add = shortcut

        def forward(self, x):
            y = self.cv2(self.cv1(x))
            return x + y if self.add else y

    class C2f(nn.Module):
        def __init__(self, c1, c2, n=1, shortcut=False):
            super().__init__()
            self.c = c2 // 2
            self.cv1 = Conv(c1, 2 * self.c, 1)
            self.cv2 = Conv((2 + n) * self.c, c2, 1)
            self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

        def forward(self, x):
            y = list(self.cv1(x).chunk(2, 1))
            for m in self.m:
                y.append(m(y[-1]))
            return self.cv2(torch.cat(y, 1))

    class SPPF(nn.Module):
        def __init__(self, c1, c2, k=5):
            super().__init__()
            c_ = c1 // 2
            self.cv1 = Conv(c1, c_, 1)
            self.cv2 = Conv(c_ * 4, c2, 1)
            self.m = nn.MaxPool2d(k, 1, k // 2)

        def forward(self, x):
            y = [self.cv1(x)]
            for _ in range(3):
                y.append(self.m(y[-1]))
            return self.cv2(torch.cat(y, 1))

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            c0, c1, c2, c3, c4 = (ch(c) for c in BASE)
            nc = len(NAMES)
            self.nc = nc
            # backbone
            self.b0 = Conv(3, c0, 3, 2)
            self.b1 = nn.Sequential(Conv(c0, c1, 3, 2), C2f(c1, c1, 1, True))
            self.b2 = nn.Sequential(Conv(c1, c2, 3, 2), C2f(c2, c2, 2, True))      # P3 /8
            self.b3 = nn.Sequential(Conv(c2, c3, 3, 2), C2f(c3, c3, 2, True))      # P4 /16
            self.b4 = nn.Sequential(Conv(c3, c4, 3, 2), C2f(c4, c4, 1, True), SPPF(c4, c4))  # P5 /32
            # PAN neck
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.n4 = C2f(c4 + c3, c3)
            self.n3 = C2f(c3 + c2, c2)
            self.d3 = Conv(c2, c2, 3, 2)
            self.o4 = C2f(c2 + c3, c3)
            self.d4 = Conv(c3, c3, 3, 2)
            self.o5 = C2f(c3 + c4, c4)
            # decoupled heads
            hb = max(16, c2)
            hc = max(16, c2)
            self.box = nn.ModuleList(nn.Sequential(Conv(c, hb, 3), Conv(hb, hb, 3), nn.Conv2d(hb, 4, 1))
                                     for c in (c2, c3, c4))
            self.cls = nn.ModuleList(nn.Sequential(Conv(c, hc, 3), Conv(hc, hc, 3), nn.Conv2d(hc, nc, 1))
                                     for c in (c2, c3, c4))
            for s, b, c in zip(STRIDES, self.box, self.cls):
                nn.init.constant_(b[-1].bias, math.log(math.e ** 2.0 - 1))  # softplus -> 2 strides a side
                cells = (INPUT_W / s) * (INPUT_H / s)
                nn.init.constant_(c[-1].bias, math.log(5 / nc / cells))     # YOLOv8's prior
            anchors, strides = [], []
            for s in STRIDES:
                h, w = INPUT_H // s, INPUT_W // s
                yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
                anchors.append(torch.stack([xx, yy], -1).reshape(-1, 2) * s)
                strides.append(torch.full((h * w, 1), float(s)))
            self.register_buffer("anchors", torch.cat(anchors).T.contiguous())   # [2, A], pixels
            self.register_buffer("strides", torch.cat(strides).T.contiguous())   # [1, A]

        def raw(self, x):
            """(ltrb distances in input pixels [N, 4, A], class logits [N, nc, A])."""
            p2 = self.b2(self.b1(self.b0(x)))
            p3 = self.b3(p2)
            p4 = self.b4(p3)
            n4 = self.n4(torch.cat([self.up(p4), p3], 1))
            o3 = self.n3(torch.cat([self.up(n4), p2], 1))
            o4 = self.o4(torch.cat([self.d3(o3), n4], 1))
            o5 = self.o5(torch.cat([self.d4(o4), p4], 1))
            feats = (o3, o4, o5)
            dist = torch.cat([self.box[i](f).flatten(2) for i, f in enumerate(feats)], 2)
            logits = torch.cat([self.cls[i](f).flatten(2) for i, f in enumerate(feats)], 2)
            return F.softplus(dist) * self.strides, logits

        def forward(self, x):
            """The YOLOv8 export layout: [N, 4 + nc, A], cx cy w h in input pixels, sigmoid scores."""
            dist, logits = self.raw(x)
            lt, rb = dist[:, :2], dist[:, 2:]
            xy = self.anchors + (rb - lt) / 2
            wh = lt + rb
            return torch.cat([xy, wh, logits.sigmoid()], 1)

    return Detector()


def count_macs(model, shape) -> int:
    """Multiply-accumulates of the convolutions for one input of `shape` (C, H, W)."""
    import torch
    from torch import nn

    total = 0

    def hook(m, inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    model.train(was)
    for h in handles:
        h.remove()
    return total


def fuse_conv_bn(model) -> None:
    """Fold every BatchNorm into the convolution before it (for export)."""
    import torch
    from torch import nn

    for m in model.modules():
        if hasattr(m, "conv") and isinstance(getattr(m, "bn", None), nn.BatchNorm2d):
            conv, bn = m.conv, m.bn
            std = torch.sqrt(bn.running_var + bn.eps)
            w = conv.weight * (bn.weight / std).reshape(-1, 1, 1, 1)
            b = bn.bias - bn.weight * bn.running_mean / std
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              bias=True)
            with torch.no_grad():
                fused.weight.copy_(w)
                fused.bias.copy_(b)
            m.conv, m.bn = fused, nn.Identity()


# --- loss: task-aligned assignment, CIoU + BCE ----------------------------------------------------


def ciou(a, b, eps=1e-7):
    """Complete IoU of matching boxes a, b [..., 4] x1 y1 x2 y2."""
    import torch

    w1, h1 = a[..., 2] - a[..., 0], (a[..., 3] - a[..., 1]).clamp(min=eps)
    w2, h2 = b[..., 2] - b[..., 0], (b[..., 3] - b[..., 1]).clamp(min=eps)
    inter = ((torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(0)
             * (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(0))
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    chh = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    c2 = cw ** 2 + chh ** 2 + eps
    rho2 = ((a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) ** 2
            + (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def pairwise_iou(gt, pred, eps=1e-9):
    """gt [B, M, 4], pred [B, A, 4] -> [B, M, A]."""
    import torch

    g, p = gt[:, :, None], pred[:, None]
    inter = ((torch.minimum(g[..., 2], p[..., 2]) - torch.maximum(g[..., 0], p[..., 0])).clamp(0)
             * (torch.minimum(g[..., 3], p[..., 3]) - torch.maximum(g[..., 1], p[..., 1])).clamp(0))
    area_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    area_p = (p[..., 2] - p[..., 0]).clamp(0) * (p[..., 3] - p[..., 1]).clamp(0)
    return inter / (area_g + area_p - inter + eps)


def assign(scores, pred_boxes, anchors, gt, gt_mask, topk=10, alpha=0.5, beta=6.0):
    """YOLOv8's task-aligned assigner, single class. scores [B, A] (sigmoid), pred_boxes [B, A, 4],
    anchors [A, 2], gt [B, M, 4], gt_mask [B, M]. Returns (fg [B, A], target boxes [B, A, 4],
    target scores [B, A])."""
    import torch

    B, M = gt.shape[:2]
    A = anchors.shape[0]
    a = anchors[None, None]
    in_gt = torch.cat([a - gt[:, :, None, :2], gt[:, :, None, 2:] - a], -1).amin(-1) > 1e-6
    in_gt &= gt_mask[:, :, None]
    iou = pairwise_iou(gt, pred_boxes).clamp(0) * in_gt
    align = scores[:, None, :].pow(alpha) * iou.pow(beta) * in_gt
    idx = align.topk(min(topk, A), dim=-1).indices
    pos = torch.zeros_like(in_gt).scatter_(-1, idx, True) & in_gt
    multi = pos.sum(1) > 1
    if multi.any():
        best = torch.nn.functional.one_hot((iou * pos).argmax(1), M).permute(0, 2, 1).bool()
        pos = torch.where(multi[:, None, :], best & pos, pos)
    fg = pos.any(1)
    gt_idx = pos.float().argmax(1)
    target_boxes = torch.gather(gt, 1, gt_idx[..., None].expand(B, A, 4))
    align = align * pos
    iou_pos = iou * pos
    norm = align * iou_pos.amax(-1, keepdim=True) / (align.amax(-1, keepdim=True) + 1e-9)
    target_scores = norm.amax(1) * fg
    return fg, target_boxes, target_scores


def detection_loss(model, images, gt, gt_mask):
    import torch
    import torch.nn.functional as F

    dist, logits = model.raw(images)
    dist = dist.permute(0, 2, 1)                  # [B, A, 4]
    logits = logits[:, 0]                         # [B, A] (one class)
    anchors = model.anchors.T                     # [A, 2]
    pred = torch.cat([anchors - dist[..., :2], anchors + dist[..., 2:]], -1)
    with torch.no_grad():
        fg, tboxes, tscores = assign(logits.sigmoid(), pred.detach(), anchors, gt, gt_mask)
    norm = tscores.sum().clamp(min=1.0)
    loss_cls = F.binary_cross_entropy_with_logits(logits, tscores, reduction="sum") / norm
    if fg.any():
        loss_box = ((1 - ciou(pred[fg], tboxes[fg])) * tscores[fg]).sum() / norm
    else:
        loss_box = pred.sum() * 0
    return 7.5 * loss_box + 0.5 * loss_cls, loss_box.detach(), loss_cls.detach()


# --- training --------------------------------------------------------------------------------------


class EMA:
    """Exponential moving average of the weights (and buffers), decay ramped up as in YOLOv8."""

    def __init__(self, model, decay=0.999, tau=300):
        import copy

        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0

    def update(self, model):
        import torch

        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        with torch.no_grad():
            msd = model.state_dict()
            for k, v in self.model.state_dict().items():
                if v.dtype.is_floating_point:
                    v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
                else:
                    v.copy_(msd[k])


def make_batch(images, boxes, idx, rng, augmenting=True):
    import torch

    imgs, gts = [], []
    for i in idx:
        im, b = (augment(images[i], boxes[i], rng) if augmenting else (images[i], boxes[i]))
        imgs.append(im)
        gts.append(b)
    m = max(1, max(len(g) for g in gts))
    gt = np.zeros((len(idx), m, 4), np.float32)
    mask = np.zeros((len(idx), m), bool)
    for j, g in enumerate(gts):
        gt[j, :len(g)] = g
        mask[j, :len(g)] = True
    x = torch.from_numpy(np.ascontiguousarray(np.stack(imgs).transpose(0, 3, 1, 2))).float().div_(255.0)
    return x, torch.from_numpy(gt), torch.from_numpy(mask)


def train(model, images, boxes, epochs: int, batch: int, lr: float, seed: int, log=print):
    import torch

    rng = np.random.default_rng(seed)
    n = len(images)
    steps_per_epoch = n // batch
    total = epochs * steps_per_epoch
    warmup = min(200, total // 10)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim == 4 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.937, 0.999))
    ema = EMA(model, tau=max(50, total // 8))
    step = 0
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = rng.permutation(n)
        sums = np.zeros(3)
        for b in range(steps_per_epoch):
            f = step / max(1, total - 1)
            scale = (step + 1) / warmup if step < warmup else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * f))
            for g in opt.param_groups:
                g["lr"] = lr * scale
            x, gt, mask = make_batch(images, boxes, order[b * batch:(b + 1) * batch], rng)
            loss, lb, lc = detection_loss(model, x, gt, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            ema.update(model)
            sums += (loss.item(), lb.item(), lc.item())
            step += 1
        sums /= max(1, steps_per_epoch)
        log(f"  epoch {epoch + 1}/{epochs}: loss {sums[0]:.3f} (box {sums[1]:.3f}, cls {sums[2]:.3f}) "
            f"{time.perf_counter() - t0:.0f} s")
    return ema.model, time.perf_counter() - t0


# --- export ----------------------------------------------------------------------------------------


def export_onnx(model, path: Path, meta: dict) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    model = model.eval()
    fuse_conv_bn(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, INPUT_H, INPUT_W)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)      # the TorchScript exporter, on purpose
        torch.onnx.export(model, (dummy,), str(path), input_names=["images"], output_names=["output0"],
                          dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}}, opset_version=17,
                          do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(path))
    anchors = sum((INPUT_H // s) * (INPUT_W // s) for s in STRIDES)
    set_io_shapes(proto, {"images": ["batch", 3, INPUT_H, INPUT_W], "output0": ["batch", 4 + len(NAMES), anchors]})
    # Ultralytics writes the same kind of metadata; our decoder may read names / imgsz from it.
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    proto.producer_name = "jellybean model_zoo/recipes/train_detector.py"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, INPUT_H, INPUT_W), dtype=np.float32)
    out = sess.run(["output0"], {"images": x})[0]
    expected = (2, 4 + len(NAMES), anchors)
    if out.shape != expected:
        raise SystemExit(f"{path}: output0 has shape {out.shape}, expected {expected}")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(ref - out).max())
    if diff > 1e-2:
        raise SystemExit(f"{path}: ONNX Runtime and torch disagree by {diff}")


def evaluate_only(path: Path, data: Path | None) -> int:
    """The recipe's held-out evaluation of an existing ONNX file, without training (no torch)."""
    if not path.is_file():
        print(f"{path}: no such ONNX file to evaluate", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="jb-detector-") as tmp:
        root = data or Path(tmp)
        eval_dirs = write_scenes(root / "eval", [EVAL_SCENE])
        ev_images, ev_boxes, ev_sizes, _ = detection_frames(eval_dirs, (INPUT_W, INPUT_H), every=2)
        result = evaluate_onnx(path, ev_images, ev_boxes, ev_sizes)
    result.update({"model": str(path), "eval_scene": EVAL_SCENE.command()})
    print(json.dumps(result, indent=2))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier on the base channels")
    ap.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    ap.add_argument("--epochs", type=int, default=None, help="default: 8 for --width <= 0.5, else 6")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=2, help="use every N-th training frame")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is ~5x faster than 2 on a busy 2-core machine for these small convs)")
    ap.add_argument("--data", type=Path, default=None, help="scene directory to reuse (default: a temp dir)")
    ap.add_argument("--evaluate", action="store_true",
                    help="do not train: evaluate the existing ONNX file --out on the held-out scene")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.evaluate:
        return evaluate_only(args.out, args.data)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    epochs = args.epochs or (8 if args.width <= 0.5 else 6)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jb-detector-") as tmp:
        root = args.data or Path(tmp)
        print(f"writing scenes into {root}")
        t = time.perf_counter()
        train_dirs = write_scenes(root / "train", TRAIN_SCENES)
        eval_dirs = write_scenes(root / "eval", [EVAL_SCENE])
        images, boxes, _, _ = detection_frames(train_dirs, (INPUT_W, INPUT_H), every=args.every)
        ev_images, ev_boxes, ev_sizes, _ = detection_frames(eval_dirs, (INPUT_W, INPUT_H), every=2)
        t_data = time.perf_counter() - t
        print(f"data: {len(images)} training frames ({sum(len(b) for b in boxes)} boxes), "
              f"{len(ev_images)} held-out frames, {t_data:.0f} s")

        model = build_model(args.width)
        params = sum(p.numel() for p in model.parameters())
        macs = count_macs(model, (3, INPUT_H, INPUT_W))
        print(f"model: width {args.width}, {params} parameters, {macs / 1e6:.0f} M MACs a frame; "
              f"training {epochs} epochs")
        model, t_train = train(model, images, boxes, epochs, args.batch, args.lr, args.seed)
        meta = {"description": f"jellybean vehicle detector, width {args.width}", "task": "detect",
                "stride": max(STRIDES), "imgsz": [INPUT_H, INPUT_W], "names": {i: n for i, n in enumerate(NAMES)},
                "layout": "yolov8", "batch": "dynamic"}
        export_onnx(model, args.out, meta)
        result = evaluate_onnx(args.out, ev_images, ev_boxes, ev_sizes)
    result.update({"width": args.width, "parameters": params, "mmacs_per_frame": round(macs / 1e6, 1),
                   "epochs": epochs, "train_seconds": round(t_train),
                   "data_seconds": round(t_data), "total_seconds": round(time.perf_counter() - t_all),
                   "onnx_bytes": args.out.stat().st_size, "eval_scene": EVAL_SCENE.command(),
                   "train_scenes": [s.command() for s in TRAIN_SCENES]})
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
