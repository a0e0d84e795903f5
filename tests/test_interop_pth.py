"""load_pth against torch itself: checkpoints torch.save writes in both layouts, read
without torch, must give torch's own tensors (tensor.numpy()) at the same places."""

import argparse
import collections
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tfssl.errors import UserError
from tfssl.interop.pth import load_pth

LAYOUTS = {"zip": True, "legacy": False}  # -> torch.save's _use_new_zipfile_serialization

# Run apart from this process: importing torch after TensorFlow crashes Python. Writes
# each object in both layouts, its skeleton (containers and plain values, the n-th tensor
# as {"tensor": n}) as JSON and its tensors as torch's numpy arrays "<object>.<n>".
_TORCH_WRITER = """
import argparse, collections, json, os, pickle, sys
import numpy as np
import torch

out = sys.argv[1]
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4),
                            torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 5))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
model(torch.randn(2, 3, 4, 4)).square().mean().backward()
optimizer.step()
training = {"epoch": 3, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
            "args": argparse.Namespace(arch="resnet50", lr=0.1, warmup=np.float64(0.5),
                                       crops=[2, 6], output_dir="/runs/a")}

base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
integers = lambda dtype, low, high: torch.randint(low, high, (2, 3), dtype=dtype)
tensors = {
    "dtypes": {
        "float32": torch.randn(2, 3), "float64": torch.randn(2, 3, dtype=torch.float64),
        "float16": torch.randn(2, 3).half(), "bfloat16": torch.randn(2, 3).bfloat16(),
        "int64": integers(torch.int64, -2**62, 2**62),
        "int32": integers(torch.int32, -2**31, 2**31),
        "int16": integers(torch.int16, -2**15, 2**15), "int8": integers(torch.int8, -128, 128),
        "uint8": integers(torch.uint8, 0, 256), "bool": torch.randn(2, 3) > 0,
        "uint16": torch.tensor([[0, 1, 65535]], dtype=torch.uint16),
        "complex64": torch.randn(2, 3, dtype=torch.complex64),
    },
    "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3), "empty_int": torch.ones(2, 0).long(),
    # Views of one storage: saved once, each read at its offset and strides.
    "transposed": base.t(), "offset_slice": base[1:3, 2:5], "row": base[2], "column": base[:, 1],
    "expanded": torch.arange(3.0).expand(4, 3),
    "channels_last": torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last),
    "parameter": torch.nn.Parameter(torch.randn(3)),
    "conj_bit": torch.randn(3, dtype=torch.complex64).conj(),
    "neg_bit": torch.randn(3, dtype=torch.complex64).conj().imag,
    "size": torch.Size([2, 3]), "device": torch.device("cuda", 1), "dtype": torch.bfloat16,
}
single_dtype = {"weight": torch.randn(3, 4), "transposed": torch.randn(4, 3).t()}
assert tensors["conj_bit"].is_conj() and tensors["neg_bit"].is_neg()

def skeleton(value, arrays):
  if isinstance(value, torch.Tensor):
    value = value.detach().resolve_conj().resolve_neg()
    arrays.append(value.float() if value.dtype == torch.bfloat16 else value)
    return {"tensor": len(arrays) - 1}
  if isinstance(value, argparse.Namespace):
    return {"namespace": skeleton(vars(value), arrays)}
  if isinstance(value, dict):
    return {"dict": [[skeleton(k, arrays), skeleton(v, arrays)] for k, v in value.items()]}
  if isinstance(value, (list, tuple)):
    return {"list" if isinstance(value, list) else "tuple": [skeleton(v, arrays) for v in value]}
  if isinstance(value, np.generic):
    return {"numpy": value.item()}
  if isinstance(value, (torch.device, torch.dtype)):
    return str(value)
  return value

objects = {"training": training, "tensors": tensors, "single_dtype": single_dtype}
for name, obj in dict(objects, module=model).items():
  for layout, zip_layout in json.loads(sys.argv[2]).items():
    path = os.path.join(out, f"{name}.{layout}.pt")
    torch.save(obj, path, _use_new_zipfile_serialization=zip_layout)

# Torch writes no storage views any more (the view in a legacy storage id); old files have
# them. Write one by hand: root storage [0..5], view [2, 3, 4], tensor [3, 4] in the view.
class StorageOfView:
  pass
class TensorInView:
  def __reduce__(self):
    return torch._utils._rebuild_tensor_v2, (StorageOfView(), 1, (2,), (1,), False,
                                             collections.OrderedDict())
class ViewPickler(pickle.Pickler):
  def persistent_id(self, obj):
    if isinstance(obj, StorageOfView):
      return ("storage", torch.FloatStorage, "0", "cpu", 6, ("1", 2, 3))
    return None
path = os.path.join(out, "storage_view.legacy.pt")
with open(path, "wb") as f:
  for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                                "type_sizes": {"short": 2, "int": 4, "long": 4}}):
    pickle.dump(header, f, protocol=2)
  ViewPickler(f, protocol=2).dump({"tensor": TensorInView()})
  pickle.dump(["0"], f, protocol=2)
  f.write((6).to_bytes(8, "little") + torch.arange(6.0).numpy().tobytes())
objects["storage_view"] = torch.load(path, weights_only=False)
assert objects["storage_view"]["tensor"].tolist() == [3.0, 4.0]

skeletons, arrays = {}, {}
for name, obj in objects.items():
  tensors_of_obj = []
  skeletons[name] = skeleton(obj, tensors_of_obj)
  arrays.update({f"{name}.{i}": t.numpy() for i, t in enumerate(tensors_of_obj)})
with open(os.path.join(out, "skeletons.json"), "w") as f:
  json.dump(skeletons, f)
np.savez(os.path.join(out, "expected.npz"), **arrays)
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  """The directory the torch writer filled, with its skeletons and expected arrays."""
  if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed (the test extra installs it: pip install -e "
                "'.[test]'); it writes the reference checkpoints")
  out = tmp_path_factory.mktemp("pth")
  subprocess.run([sys.executable, "-c", _TORCH_WRITER, str(out), json.dumps(LAYOUTS)],
                 check=True, timeout=600)
  with open(out / "skeletons.json") as f:
    skeletons = json.load(f)
  with np.load(out / "expected.npz", allow_pickle=False) as expected:
    arrays = dict(expected)
  return out, skeletons, arrays


def _skeleton(value, arrays):
  """The writer's skeleton of what load_pth gave, collecting its arrays in order."""
  if isinstance(value, np.ndarray):
    arrays.append(value)
    return {"tensor": len(arrays) - 1}
  if isinstance(value, argparse.Namespace):
    return {"namespace": _skeleton(vars(value), arrays)}
  if isinstance(value, dict):
    return {"dict": [[_skeleton(k, arrays), _skeleton(v, arrays)] for k, v in value.items()]}
  if isinstance(value, (list, tuple)):
    return {"list" if isinstance(value, list) else "tuple": [_skeleton(v, arrays) for v in value]}
  if isinstance(value, np.generic):
    return {"numpy": value.item()}
  return value


# The storage view exists only in the legacy layout.
WRITTEN = [(name, layout) for name in ("training", "tensors", "single_dtype")
           for layout in LAYOUTS] + [("storage_view", "legacy")]


@pytest.mark.parametrize("name, layout", WRITTEN)
def test_matches_torch(written, name, layout):
  out, skeletons, expected = written
  arrays = []
  assert _skeleton(load_pth(out / f"{name}.{layout}.pt"), arrays) == skeletons[name]
  assert len(arrays) == len([key for key in expected if key.startswith(f"{name}.")])
  for i, array in enumerate(arrays):
    reference = expected[f"{name}.{i}"]
    assert array.dtype == reference.dtype, i
    assert array.flags.c_contiguous and array.flags.writeable, i
    np.testing.assert_array_equal(array, reference, err_msg=str(i))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_training_checkpoint_types(written, layout):
  checkpoint = load_pth(written[0] / f"training.{layout}.pt")
  assert checkpoint["epoch"] == 3
  assert type(checkpoint["state_dict"]) is collections.OrderedDict
  assert list(checkpoint["state_dict"]) == [
      "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
      "1.num_batches_tracked", "4.weight", "4.bias"]
  assert checkpoint["state_dict"]["1.num_batches_tracked"].dtype == np.int64
  assert checkpoint["state_dict"]["1.num_batches_tracked"].shape == ()
  assert checkpoint["state_dict"]["0.weight"].shape == (4, 3, 3, 3)
  args = checkpoint["args"]
  assert isinstance(args, argparse.Namespace) and args.arch == "resnet50" and args.lr == 0.1
  assert type(args.warmup) is np.float64
  optimizer = checkpoint["optimizer"]
  assert sorted(optimizer["state"]) == [0, 1, 2, 3, 4]
  assert optimizer["state"][0]["momentum_buffer"].shape == (4, 3, 3, 3)
  assert optimizer["param_groups"][0]["momentum"] == 0.9


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dtypes_and_torch_values(written, layout):
  tensors = load_pth(written[0] / f"tensors.{layout}.pt")
  for name, array in tensors["dtypes"].items():
    assert array.dtype == np.dtype("float32" if name == "bfloat16" else name), name
  assert tensors["scalar"].shape == () and tensors["scalar"] == 2.5
  assert tensors["empty"].shape == (0, 3) and tensors["empty_int"].dtype == np.int64
  assert tensors["size"] == (2, 3)
  assert (tensors["device"], tensors["dtype"]) == ("cuda:1", "torch.bfloat16")
  # Views of one torch storage are copies here: writing to one changes no other.
  views = [tensors[name] for name in ("transposed", "offset_slice", "row", "column")]
  assert not any(np.shares_memory(a, b) for i, a in enumerate(views) for b in views[i + 1:])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pickled_module_is_a_placeholder_holding_its_arrays(written, layout):
  # torch.save(model) pickles nn.Module classes, which load_pth neither imports nor needs.
  model = load_pth(written[0] / f"module.{layout}.pt")
  assert (type(model).module, type(model).name) == ("torch.nn.modules.container", "Sequential")
  conv = model.state["_modules"]["0"]
  assert type(conv).name == "Conv2d"
  state_dict = load_pth(written[0] / f"training.{layout}.pt")["state_dict"]
  np.testing.assert_array_equal(conv.state["_parameters"]["weight"], state_dict["0.weight"])


def _rewrite_zip(source, target, change):
  """`source`'s records through `change(name, data)`: new data, or None to drop the record."""
  with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
    for name in old.namelist():
      data = change(name, old.read(name))
      if data is not None:
        new.writestr(name, data)
  return target


@pytest.mark.parametrize("byteorder", [b"big", None])
def test_byteorder_record(written, tmp_path, byteorder):
  out, _, _ = written
  # Every storage of this file is float32: a big-endian machine's file swaps each 4 bytes.
  swap = byteorder == b"big"

  def change(name, data):
    if name.endswith("/byteorder"):
      return byteorder
    if swap and "/data/" in name:
      return np.frombuffer(data, "<f4").astype(">f4").tobytes()
    return data

  path = _rewrite_zip(out / "single_dtype.zip.pt", tmp_path / "changed.pt", change)
  expected = load_pth(out / "single_dtype.zip.pt")
  for key, array in load_pth(path).items():
    assert array.dtype == np.float32 and array.dtype.isnative
    np.testing.assert_array_equal(array, expected[key])


def test_unknown_globals_are_placeholders_not_calls(tmp_path):
  # A pickle that would run a shell command when unpickled with pickle.load.
  class Payload:
    def __reduce__(self):
      return os.system, (f"touch {tmp_path / 'ran'}",)

  path = tmp_path / "payload.pt"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("payload/data.pkl", pickle.dumps({"x": Payload()}, protocol=2))
  loaded = load_pth(path)["x"]
  assert (type(loaded).module, type(loaded).name) == (os.system.__module__, "system")
  assert loaded.args == (f"touch {tmp_path / 'ran'}",)
  assert not (tmp_path / "ran").exists()


def _write(path, data):
  path.write_bytes(data)
  return path


def _first_half(path, target):
  return _write(target, path.read_bytes()[:path.stat().st_size // 2])


def _without(suffix):
  return lambda name, data: None if name.endswith(suffix) else data


def _saved_model_dir(tmp):
  _write(tmp / "saved_model.pb", b"")
  return tmp


# What to write (from the writer's directory into a temporary one) and what the message says.
BAD_FILES = {
    "text": (lambda out, tmp: _write(tmp / "notes.pth", b"epoch 3, top-1 76.1\n"),
             "a text file starting with 'epoch 3"),
    "zip without data.pkl": (
        lambda out, tmp: _rewrite_zip(out / "training.zip.pt", tmp / "x.pth", _without("data.pkl")),
        "a zip file without data.pkl"),
    "truncated zip": (lambda out, tmp: _first_half(out / "training.zip.pt", tmp / "half.pth"),
                      "no end-of-archive record"),
    "truncated legacy": (lambda out, tmp: _first_half(out / "training.legacy.pt", tmp / "half.pth"),
                         "pickle data was truncated"),
    "legacy without its last bytes": (
        lambda out, tmp: _write(tmp / "short.pth", (out / "tensors.legacy.pt").read_bytes()[:-10]),
        "it ends 10 bytes before its last storage does"),
    "missing record": (
        lambda out, tmp: _rewrite_zip(out / "training.zip.pt", tmp / "x.pth", _without("/data/1")),
        "the record training.zip/data/1, which the zip does not hold"),
    "SavedModel": (lambda out, tmp: _saved_model_dir(tmp), "a SavedModel directory"),
    "TF index": (lambda out, tmp: _write(tmp / "ckpt-1.index",
                                         b"\0" * 40 + bytes.fromhex("57fb808b247547db")),
                 "a TensorFlow checkpoint's index"),
    "missing": (lambda out, tmp: tmp / "absent.pth", "there is no such file"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_files_raise_user_error(written, tmp_path, kind):
  make, what = BAD_FILES[kind]
  path = make(written[0], tmp_path)
  with pytest.raises(UserError, match="Cannot read") as error:
    load_pth(path)
  assert str(path) in str(error.value) and what in str(error.value), str(error.value)


def test_module_does_not_import_torch():
  subprocess.run([sys.executable, "-c", "import sys, tfssl.interop.pth; "
                  "assert 'torch' not in sys.modules, 'imported torch'"], check=True)
