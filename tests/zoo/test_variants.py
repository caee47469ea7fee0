"""`build_variants`: every variant listed exists, runs and stays close to fp32; bad input changes nothing."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from jellybean.agents.backends import OrtBackend, TensorSpec, tensorrt_available
from jellybean.errors import JellyBeanError, NotSupportedError
from jellybean.spec.base import load_model
from jellybean.spec.zoo import Zoo
from jellybean.zoo import variants as zv
from conftest import tiny_cnn

TRT_MISSING = not tensorrt_available()
# Tolerances, as max |variant - fp32| / max |fp32| over the logits on seeded uniform [0, 1) input:
FP16_TOL = 0.01  # fp16 keeps ~3 significant digits (observed ~0.05 %)
INT8_TOL = 0.05  # 8-bit weights/activations (observed ~1.5 %: dynamic, ~1.1 %: static)


def write_images(directory: Path, count: int, size=(32, 32), seed: int = 0) -> Path:
    import cv2

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        cv2.imwrite(str(directory / f"{i:03d}.png"), (rng.random((*size, 3)) * 255).astype(np.uint8))
    return directory


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(path: Path, x: np.ndarray) -> np.ndarray:
    with OrtBackend(intra_op_threads=1).load(path) as backend:
        return backend.infer({"input": x})["logits"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    model = tiny_cnn(root / "tiny.onnx")
    calib = write_images(root / "calib", 12)
    zoo_dir = root / "zoo"
    steps: list[tuple[str, int, int]] = []
    result = zv.build_variants(model, "classify", zoo_dir, calib, task="classification", tensorrt=False,
                               intra_op_threads=1, progress=lambda d, c, t: steps.append((d, c, t)))
    return root, model, zoo_dir, result, steps


def test_every_variant_is_listed_exists_and_runs(built):
    root, model, zoo_dir, result, steps = built
    names = [v.name for v in result.operator.variants]
    assert names == ["fp32", "fp16", "int8-dynamic", "int8-static", "pruned-30", "pruned-60", "channel-pruned-30"]
    assert result.skipped == ()
    zoo = load_model(Zoo, zoo_dir / "manifest.yaml")  # the spec accepts the manifest
    assert zoo.name == "zoo" and zoo.operator("classify").task == "classification"
    assert [v.name for v in zoo.operator("classify").variants] == names
    x = np.random.default_rng(7).random((3, 3, 32, 32), dtype=np.float32)
    for v in zoo.operator("classify").variants:
        path = zoo_dir / v.model
        assert path.is_file() and v.sha256 and v.output_kb == pytest.approx(10 * 4 / 1024, rel=1e-2)
        assert run(path, x).shape == (3, 10)
    assert sorted(os.listdir(root)) == ["calib", "tiny.onnx", "zoo"]  # no staging directory left behind
    assert steps[-1][1] == steps[-1][2] and any("int8-static" in d for d, _, _ in steps)


def test_quantized_variants_stay_close_to_fp32(built):
    _, model, zoo_dir, result, _ = built
    x = np.random.default_rng(3).random((4, 3, 32, 32), dtype=np.float32)
    ref = run(model, x)
    scale = np.abs(ref).max()
    for name, tol in (("fp16", FP16_TOL), ("int8-dynamic", INT8_TOL), ("int8-static", INT8_TOL)):
        dev = np.abs(run(zoo_dir / "classify" / f"{name}.onnx", x) - ref).max() / scale
        assert dev <= tol, f"{name}: {dev:.3%} > {tol:.0%}"
        assert result.deviation[name] <= tol
    assert result.deviation["fp32"] == 0.0


def test_magnitude_pruned_variants_have_the_stated_zeros(built):
    import onnx
    from onnx import numpy_helper

    _, _, zoo_dir, _, _ = built
    for sparsity in (0.3, 0.6):
        model = onnx.load(str(zoo_dir / "classify" / f"pruned-{round(sparsity * 100)}.onnx"))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for name in ("w1", "w2", "w3"):
            w = inits[name]
            zeros = np.count_nonzero(w == 0) / w.size
            assert sparsity - 1 / w.size <= zeros <= sparsity + 1e-9, (name, zeros)
        for name in ("b1", "b2", "b3"):  # biases untouched
            assert np.count_nonzero(inits[name] == 0) == 0


def test_channel_pruned_model_has_fewer_channels_and_runs(built):
    import onnx
    from onnx import numpy_helper

    _, _, zoo_dir, result, _ = built
    model = onnx.load(str(zoo_dir / "classify" / "channel-pruned-30.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    # conv1 feeds conv2 through Relu: 8 -> 6 channels, conv2's input sliced to match.
    assert inits["w1"].shape == (6, 3, 3, 3) and inits["b1"].shape == (6,)
    assert inits["w2"].shape == (16, 6, 3, 3)
    # conv2 feeds GlobalAveragePool/Flatten: left alone.
    assert inits["w3"].shape == (10, 16)
    onnx.checker.check_model(model)
    desc = result.operator.variant("channel-pruned-30").description
    assert "8->6" in desc and "1 of 2 Conv layers" in desc


def _graph(nodes, inits, out="y", out_channels=4):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 8, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["n", out_channels, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _w(name, shape, seed=0):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.random.default_rng(seed).normal(size=shape).astype(np.float32), name)


def test_channel_pruning_follows_silu_and_batchnorm_but_not_residual_add():
    from onnx import helper

    silu = _graph([
        helper.make_node("Conv", ["x", "wa"], ["a"], name="a", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["a", "s", "bb", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Sigmoid", ["bn"], ["sig"]),
        helper.make_node("Mul", ["bn", "sig"], ["act"], name="silu"),
        helper.make_node("Conv", ["act", "wb"], ["y"], name="b", pads=[1, 1, 1, 1]),
    ], [_w("wa", (10, 4, 3, 3)), _w("s", (10,)), _w("bb", (10,)), _w("m", (10,)),
        numpy_helper_abs(_w("v", (10,))), _w("wb", (4, 10, 3, 3))])
    pruned, layers, skipped = zv.channel_prune(silu, 0.3)
    assert [(p.conv, p.channels_before, p.channels_after, p.consumers) for p in layers] == [("a", 10, 7, ("b",))]
    assert skipped == [("b", "its output reaches a graph output")]
    x = np.random.default_rng(0).random((2, 4, 8, 8), dtype=np.float32)
    import onnxruntime as ort

    out = ort.InferenceSession(pruned.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert out.shape == (2, 4, 8, 8)

    residual = _graph([
        helper.make_node("Conv", ["x", "wa"], ["a"], name="a", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "x"], ["r"], name="skip"),
        helper.make_node("Conv", ["r", "wb"], ["y"], name="b", pads=[1, 1, 1, 1]),
    ], [_w("wa", (4, 4, 3, 3)), _w("wb", (4, 4, 3, 3))])
    _, layers, skipped = zv.channel_prune(residual, 0.5)
    assert layers == []
    assert ("a", "feeds Add skip together with a tensor from outside (residual/skip connection)") in skipped


def numpy_helper_abs(tensor):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.abs(numpy_helper.to_array(tensor)) + 0.1, tensor.name)


def test_no_qualifying_layer_skips_the_variant_with_a_reason(tmp_path):
    from onnx import helper, save

    residual = _graph([
        helper.make_node("Conv", ["x", "wa"], ["a"], name="a", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "x"], ["y"], name="skip"),
    ], [_w("wa", (4, 4, 3, 3))])
    save(residual, str(tmp_path / "res.onnx"))
    result = zv.build_variants(tmp_path / "res.onnx", "res", tmp_path / "zoo", include=["channel-pruned"],
                               tensorrt=False, intra_op_threads=1)
    assert [v.name for v in result.operator.variants] == ["fp32"]
    (skip,) = result.skipped
    assert skip.variant == "channel-pruned-30" and "no Conv layer qualifies" in skip.reason and "Add" in skip.reason
    assert listing(tmp_path / "zoo") == ["manifest.yaml", "res", "res/fp32.onnx"]


def test_calibration_from_images_videos_and_tensors(tmp_path):
    import cv2

    spec = TensorSpec("input", (None, 3, 32, 32), np.dtype(np.float32), ("batch", None, None, None))
    data = zv.load_calibration(write_images(tmp_path / "imgs", 9, size=(40, 50)), spec)
    batches = list(data.batches(4))
    assert len(data) == 9 and [b.shape for b in batches] == [(4, 3, 32, 32), (4, 3, 32, 32), (1, 3, 32, 32)]
    assert all(b.dtype == np.float32 and 0 <= b.min() and b.max() <= 1 for b in batches)

    video_dir = tmp_path / "cams" / "c001"
    video_dir.mkdir(parents=True)
    writer = cv2.VideoWriter(str(video_dir / "vdo.avi"), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (64, 48))
    for i in range(30):
        writer.write(np.full((48, 64, 3), i * 8, np.uint8))
    writer.release()
    frames = zv.load_calibration(tmp_path / "cams", spec, max_samples=10)
    assert len(frames) == 10 and "1 video(s)" in frames.origin
    assert next(frames.batches(10)).shape == (10, 3, 32, 32)

    np.save(tmp_path / "t.npy", np.zeros((8, 3, 32, 32), np.float32))
    tensors = zv.load_calibration(tmp_path, spec, max_samples=200)
    assert len(tensors) >= 8 + 9 + 1


def test_bad_calibration_data_is_a_clear_error(tmp_path):
    spec = TensorSpec("input", (None, 3, 32, 32), np.dtype(np.float32), ("batch", None, None, None))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(JellyBeanError, match=r"empty: no calibration data found \(no images"):
        zv.load_calibration(tmp_path / "empty", spec)
    with pytest.raises(JellyBeanError, match=r"few: only 3 calibration sample\(s\) \(3 image\(s\).*at least 8"):
        zv.load_calibration(write_images(tmp_path / "few", 3), spec)
    (tmp_path / "shape").mkdir()
    np.save(tmp_path / "shape" / "bad.npy", np.zeros((8, 3, 64, 64), np.float32))
    with pytest.raises(JellyBeanError, match=r"bad.npy: calibration tensor has shape \(8, 3, 64, 64\) but input "
                                             r"'input' needs \(3, 32, 32\)"):
        zv.load_calibration(tmp_path / "shape", spec)
    broken = write_images(tmp_path / "broken", 8)
    (broken / "zz.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(JellyBeanError, match=r"zz.jpg: cannot be decoded as an image"):
        zv.load_calibration(broken, spec)
    with pytest.raises(JellyBeanError, match="calibration directory not found"):
        zv.load_calibration(tmp_path / "missing", spec)
    seq = TensorSpec("tokens", (None, 128), np.dtype(np.int64))
    with pytest.raises(JellyBeanError, match=r"needs an NCHW image input .* give .npy tensors of shape \(128,\)"):
        zv.load_calibration(broken, seq)


@pytest.fixture
def existing_zoo(tmp_path):
    zoo_dir = tmp_path / "zoo"
    zv.build_variants(tiny_cnn(tmp_path / "tiny.onnx"), "classify", zoo_dir, include=["pruned"], tensorrt=False,
                      intra_op_threads=1)
    return tmp_path, zoo_dir


def test_input_errors_leave_the_zoo_unchanged(existing_zoo, tmp_path):
    root, zoo_dir = existing_zoo
    before, parent_before = snapshot(zoo_dir), sorted(os.listdir(root))
    garbage = tmp_path / "not-a-model.onnx"
    garbage.write_text("definitely not protobuf \x00\x01")
    with pytest.raises(JellyBeanError, match=r"not-a-model.onnx: not an ONNX model"):
        zv.build_variants(garbage, "classify", zoo_dir, tensorrt=False)
    fixed = tiny_cnn(tmp_path / "fixed.onnx", batch=1)
    with pytest.raises(JellyBeanError, match=r"fixed.onnx: input 'input' has a fixed batch dimension \[1, 3, 32, 32\];"
                                             r".*export with a dynamic batch axis"):
        zv.build_variants(fixed, "classify", zoo_dir, tensorrt=False)
    few = write_images(tmp_path / "few", 2)
    with pytest.raises(JellyBeanError, match=r"only 2 calibration sample"):
        zv.build_variants(tmp_path / "tiny.onnx", "classify", zoo_dir, few, tensorrt=False)
    with pytest.raises(JellyBeanError, match="--operator: 'a b' is not a usable name"):
        zv.build_variants(tmp_path / "tiny.onnx", "a b", zoo_dir, tensorrt=False)
    assert snapshot(zoo_dir) == before
    assert sorted(os.listdir(root)) == sorted(parent_before + ["few", "fixed.onnx", "not-a-model.onnx"])
    # A new zoo directory is not even created.
    with pytest.raises(JellyBeanError):
        zv.build_variants(fixed, "classify", tmp_path / "new-zoo", tensorrt=False)
    assert not (tmp_path / "new-zoo").exists()


def test_a_failure_mid_build_leaves_the_zoo_unchanged(existing_zoo, monkeypatch):
    root, zoo_dir = existing_zoo
    before, parent_before = snapshot(zoo_dir), sorted(os.listdir(root))

    def broken(ctx):
        (ctx.out / "int8-dynamic.onnx").write_bytes(b"half")
        raise JellyBeanError("disk full while quantizing")

    monkeypatch.setattr(zv, "_make_int8_dynamic", broken)
    with pytest.raises(JellyBeanError, match="disk full"):
        zv.build_variants(root / "tiny.onnx", "classify", zoo_dir, include=["fp16", "int8-dynamic"], tensorrt=False)
    assert snapshot(zoo_dir) == before and sorted(os.listdir(root)) == parent_before


def test_rebuilding_replaces_an_operator_and_another_operator_is_added(existing_zoo):
    root, zoo_dir = existing_zoo
    assert listing(zoo_dir / "classify") == ["fp32.onnx", "pruned-30.onnx", "pruned-60.onnx"]
    zv.build_variants(root / "tiny.onnx", "detect", zoo_dir, include=[], tensorrt=False, intra_op_threads=1)
    zv.build_variants(root / "tiny.onnx", "classify", zoo_dir, include=["fp16"], tensorrt=False, intra_op_threads=1)
    zoo = load_model(Zoo, zoo_dir / "manifest.yaml")
    assert [(o.name, [v.name for v in o.variants]) for o in zoo.operators] == [
        ("classify", ["fp32", "fp16"]), ("detect", ["fp32"])]
    assert listing(zoo_dir) == ["classify", "classify/fp16.onnx", "classify/fp32.onnx", "detect", "detect/fp32.onnx",
                                "manifest.yaml"]


def test_tensorrt_requested_without_tensorrt_is_not_supported(tmp_path, monkeypatch):
    from jellybean.zoo import tensorrt as zt

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without TensorRT
    model = tiny_cnn(tmp_path / "tiny.onnx")
    with pytest.raises(NotSupportedError, match="^TensorRT not installed: "):
        zv.build_variants(model, "classify", tmp_path / "zoo", tensorrt=True)
    assert not (tmp_path / "zoo").exists()
    with pytest.raises(NotSupportedError, match="^TensorRT not installed: "):
        zt.build_engine(model, tmp_path / "x.engine", "fp16", input_shapes={"input": (None, 3, 32, 32)},
                        model_sha256="0" * 64)
    # Auto mode quietly leaves the engines out.
    result = zv.build_variants(model, "classify", tmp_path / "zoo", include=["trt-fp16"], intra_op_threads=1)
    assert [v.name for v in result.operator.variants] == ["fp32"]


def test_engine_cache_key_covers_device_version_model_and_precision():
    from jellybean.zoo.tensorrt import DeviceInfo, engine_cache_key

    t4 = DeviceInfo("Tesla T4", (7, 5), "10.3.0")
    base = engine_cache_key(t4, "a" * 64, "fp16")
    assert len(base) == 64 and base == engine_cache_key(t4, "a" * 64, "fp16")
    assert len({
        base,
        engine_cache_key(DeviceInfo("Orin", (8, 7), "10.3.0"), "a" * 64, "fp16"),
        engine_cache_key(DeviceInfo("Tesla T4", (7, 5), "10.4.0"), "a" * 64, "fp16"),
        engine_cache_key(t4, "b" * 64, "fp16"),
        engine_cache_key(t4, "a" * 64, "int8"),
    }) == 5


@pytest.mark.skipif(TRT_MISSING, reason="TensorRT not installed")
def test_tensorrt_engines_are_built_and_listed(tmp_path):  # pragma: no cover - needs a GPU with TensorRT
    model = tiny_cnn(tmp_path / "tiny.onnx")
    calib = write_images(tmp_path / "calib", 16)
    result = zv.build_variants(model, "classify", tmp_path / "zoo", calib, include=["trt-fp16", "trt-int8"],
                               tensorrt=True, engine_cache=tmp_path / "cache")
    names = [v.name for v in result.operator.variants]
    assert "trt-fp16" in names and (tmp_path / "zoo" / "classify" / "trt-fp16.engine").is_file()
    assert list((tmp_path / "cache").glob("*.engine"))


def test_families_of_one_operator_sit_side_by_side(tmp_path):
    zoo = tmp_path / "zoo"
    zv.build_variants(tiny_cnn(tmp_path / "a.onnx", seed=1), "classify", zoo, include=["fp16"], tensorrt=False, family="wide")
    zv.build_variants(tiny_cnn(tmp_path / "b.onnx", seed=2), "classify", zoo, include=["fp16"], tensorrt=False, family="slim")
    names = [v.name for v in load_model(Zoo, zoo / "manifest.yaml").operator("classify").variants]
    assert names == ["wide-fp32", "wide-fp16", "slim-fp32", "slim-fp16"]
    assert (zoo / "classify" / "slim-fp16.onnx").exists() and (zoo / "classify" / "wide-fp32.onnx").exists()
    # Rebuilding one family replaces only its own variants.
    zv.build_variants(tiny_cnn(tmp_path / "a.onnx", seed=3), "classify", zoo, include=[], tensorrt=False, family="wide")
    names = [v.name for v in load_model(Zoo, zoo / "manifest.yaml").operator("classify").variants]
    assert names == ["slim-fp32", "slim-fp16", "wide-fp32"]
    assert not (zoo / "classify" / "wide-fp16.onnx").exists()


def test_int8_static_leaves_nothing_in_the_working_directory(tmp_path, monkeypatch):
    # ORT's symbolic shape inference gives up on the shipped detector and saves a debug model
    # into the current directory; the build must keep that in its own work directory.
    detector = Path(__file__).resolve().parents[2] / "model_zoo/aicity/detector_w050.onnx"
    images = write_images(tmp_path / "calib", 8, size=(192, 320))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = zv.build_variants(detector, "detect", tmp_path / "zoo", images, include=["int8-static"], tensorrt=False)
    assert [v.name for v in result.operator.variants] == ["fp32", "int8-static"]
    assert list(cwd.iterdir()) == []
