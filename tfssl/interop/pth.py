"""Reads `torch.save` checkpoints into numpy arrays without importing torch.

torch.save writes one of two layouts:

* zip (the default since torch 1.6): uncompressed records under one top folder.
  `data.pkl` is the pickled object; each tensor's storage in it is a persistent id
  ('storage', storage class, key, location, numel) whose bytes are the record `data/<key>`,
  in the order the record `byteorder` names (little endian when it is absent).
* legacy (before 1.6, or `_use_new_zipfile_serialization=False`): pickles one after the
  other: torch's magic number, the protocol version 1001, system info, the object (its
  storage persistent ids are ('storage', storage class, key, location, numel, view)), the
  list of storage keys; then for each key in that order an 8-byte little-endian element
  count and the storage's little-endian bytes.

A tensor's dtype comes from its storage class (torch.FloatStorage...), or, for dtypes
newer than those classes (uint16...), from the dtype argument of `_rebuild_tensor_v3`
next to a torch.UntypedStorage of raw bytes.

Unpickling admits only the globals checkpoints hold (tensor and parameter rebuilders,
storage classes, torch.Size, torch.device, dtypes, OrderedDict, argparse.Namespace, numpy
arrays and scalars, a few builtins); any other class or function comes back as a
placeholder that records its module, name, arguments and state, so reading a file never
imports or runs code named in it.
"""

import argparse
import builtins
import collections
import copyreg
import datetime
import functools
import importlib
import io
import os
import pathlib
import pickle
import re
import struct
import zipfile

import _compat_pickle
import numpy as np

from tfssl.errors import UserError

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001
_PASS_A_CHECKPOINT = "Pass a file written by torch.save (.pth, .pt, .pth.tar)."
_FETCH_AGAIN = "The file is damaged or cut short: copy or download it again."

# How each torch dtype's elements lie in a storage, as numpy dtype codes; bfloat16 is
# read as its raw 16 bits and widened to float32, which holds every bfloat16 exactly.
_STORED_AS = {
    "float32": "f4", "float64": "f8", "float16": "f2", "bfloat16": "u2",
    "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1", "uint8": "u1", "bool": "?",
    "complex64": "c8", "complex128": "c16", "uint16": "u2", "uint32": "u4", "uint64": "u8",
}
# The storage classes checkpoints name, by the dtype of their elements. Untyped storages
# hold bytes; the tensor rebuilt from one says which dtype they are.
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8", "_UntypedStorage": "uint8",
    "QInt8Storage": "qint8", "QUInt8Storage": "quint8", "QInt32Storage": "qint32",
    "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
}
_STORAGE_MODULES = ("torch", "torch.cuda", "torch.storage")
# Dtypes torch has that numpy arrays cannot stand for; named so that a tensor of one
# fails with its name rather than as an unknown global.
_UNCONVERTED_DTYPES = (
    "complex32", "bcomplex32", "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz",
    "float8_e4m3fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "qint8", "quint8", "qint32",
    "quint4x2", "quint2x4", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
)
# Bytes per element, also of the quantized storages, which load_pth skips but must size.
_ITEMSIZES = dict({dtype: np.dtype(code).itemsize for dtype, code in _STORED_AS.items()},
                  qint8=1, quint8=1, qint32=4, quint4x2=1, quint2x4=1)
_TF_TABLE_MAGIC = struct.pack("<Q", 0xDB4775248B80FB57)  # ends a TF checkpoint's .index


def load_pth(path):
  """The object `torch.save` wrote to `path` (str or os.PathLike), tensors as numpy arrays.

  Tensors and nn.Parameters become C-contiguous numpy arrays of their shape and dtype
  (views, strides and storage offsets applied; tensors sharing a storage are separate
  copies); bfloat16 becomes float32. torch dtypes come back as strings ("torch.float32"),
  torch.device as its string ("cuda:0"), torch.Size as a tuple. Objects of other classes
  (a pickled nn.Module, an optimizer's odd state) come back as placeholders whose class
  has `module` and `name` and which hold what pickle gave them in `args`, `kwargs`,
  `state`, `dictitems` and `listitems`.

  Raises UserError if `path` is not a torch.save checkpoint or is damaged or cut short.
  """
  path = os.fspath(path)
  try:
    return _load(path)
  except _Unreadable as error:
    raise UserError(f"Cannot read {path} as a PyTorch checkpoint: {error}") from error


class _Unreadable(Exception):
  """Why the file is no checkpoint load_pth reads; load_pth names the file."""


# --- placeholders and the globals a checkpoint may name ------------------------------------

class _Placeholder:
  """An object of a class load_pth does not load, with what pickle gave to build it."""

  module = name = ""
  args, kwargs, state = (), {}, None

  def __new__(cls, *args, **kwargs):
    placeholder = super().__new__(cls)
    placeholder.args, placeholder.kwargs = args, kwargs
    return placeholder

  def __init__(self, *args, **kwargs):
    pass

  def __setstate__(self, state):
    self.state = state

  def __setitem__(self, key, value):
    self.__dict__.setdefault("dictitems", {})[key] = value

  def append(self, value):
    self.__dict__.setdefault("listitems", []).append(value)

  def extend(self, values):
    self.__dict__.setdefault("listitems", []).extend(values)

  def __repr__(self):
    return f"<{self.module}.{self.name} (not loaded)>"


@functools.lru_cache(maxsize=1024)
def _placeholder_class(module, name):
  return type(name, (_Placeholder,), {"module": module, "name": name,
                                      "__qualname__": f"{module}.{name}"})


def _global_name(value):
  if isinstance(value, type) and issubclass(value, _Placeholder):
    return f"{value.module}.{value.name}"
  return repr(value)


class _StorageClass:
  """torch.FloatStorage and its kin: the dtype of a storage's elements."""

  def __init__(self, dtype):
    self.dtype = dtype


class _Storage:
  """One storage's bytes as uint8 (None on the legacy layout's first pass), its elements'
  dtype and byte order: what a tensor is rebuilt from, or a storage saved on its own."""

  def __init__(self, data, dtype, byteorder):
    self.data, self.dtype, self.byteorder = data, dtype, byteorder

  def __repr__(self):
    size = "?" if self.data is None else self.data.size
    return f"<torch storage of {size} bytes of {self.dtype}>"


def _array(storage, dtype, offset, size, stride, metadata=None):
  """The tensor torch rebuilds from `storage`, as a contiguous numpy copy."""
  if not isinstance(storage, _Storage):
    raise _Unreadable(f"a tensor's storage is {storage!r}, not a storage. {_FETCH_AGAIN}")
  if storage.data is None:
    return None
  if dtype not in _STORED_AS:
    raise _Unreadable(f"it holds a tensor of dtype torch.{dtype}, which numpy has no dtype "
                      f"for. load_pth reads {', '.join(sorted(_STORED_AS))}.")
  element = np.dtype(_STORED_AS[dtype]).newbyteorder(storage.byteorder)
  native = element.newbyteorder("=")
  size, stride, offset = tuple(int(n) for n in size), tuple(int(n) for n in stride), int(offset)
  if 0 in size:
    values = np.zeros(size, native)
  else:
    flat = storage.data[:storage.data.size // element.itemsize * element.itemsize].view(element)
    last = offset + sum((n - 1) * step for n, step in zip(size, stride))
    if len(stride) != len(size) or offset < 0 or min(stride, default=0) < 0 or last >= flat.size:
      raise _Unreadable(f"a tensor of shape {list(size)} (strides {list(stride)}, offset "
                        f"{offset}) reaches past its storage of {flat.size} elements. "
                        f"{_FETCH_AGAIN}")
    values = np.lib.stride_tricks.as_strided(
        flat[offset:], size, [step * element.itemsize for step in stride], writeable=False)
    values = values.astype(native, order="C", copy=True)
  if dtype == "bfloat16":
    values = (values.astype(np.uint32) << 16).view(np.float32)
  # torch keeps x.neg() and x.conj() of some views as a bit on the tensor, not in the data.
  if metadata and metadata.get("neg"):
    values = np.negative(values)
  if metadata and metadata.get("conj"):
    values = np.conj(values)
  return values


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  dtype = storage.dtype if isinstance(storage, _Storage) else None
  return _array(storage, dtype, storage_offset, size, stride, metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
  name = dtype[len("torch."):] if isinstance(dtype, str) else _global_name(dtype)
  return _array(storage, name, storage_offset, size, stride, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
  return data


def _rebuild_from_type(func, new_type, args, state):
  return func(*args)


def _rebuild_device_tensor(data, dtype, device, requires_grad):
  return None if data is None else np.array(data)


def _device(kind, index=None):
  return kind if index is None else f"{kind}:{index}"


def _encode(text, encoding="utf-8"):
  # What protocol-2 pickles of bytes call: _codecs.encode(text, "latin1").
  if isinstance(text, str) and encoding in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
    return text.encode(encoding)
  return _placeholder_class("_codecs", "encode")(text, encoding)


def _numpy_global(module, name):
  if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
    return getattr(np, name)
  allowed = {"multiarray": ("_reconstruct", "scalar"), "numeric": ("_frombuffer",)}
  match = re.fullmatch(r"numpy\.(_?core)\.(multiarray|numeric)", module)
  if not (match and name in allowed[match.group(2)]):
    return None
  # numpy 2 pickles name numpy._core, numpy 1 numpy.core; either numpy reads both.
  for package in ("numpy._core", "numpy.core"):
    try:
      return getattr(importlib.import_module(f"{package}.{match.group(2)}"), name)
    except (ImportError, AttributeError):
      pass
  return None


_TORCH_GLOBALS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._utils", "_rebuild_device_tensor_from_numpy"): _rebuild_device_tensor,
    ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"): _rebuild_device_tensor,
    ("torch._utils", "_rebuild_xla_tensor"): _rebuild_device_tensor,
    ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Size"): tuple,
    ("torch", "device"): _device,
}
_TORCH_GLOBALS.update({("torch", dtype): f"torch.{dtype}"
                       for dtype in list(_STORED_AS) + list(_UNCONVERTED_DTYPES)})
_STANDARD_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("collections", "Counter"): collections.Counter,
    ("collections", "deque"): collections.deque,
    ("argparse", "Namespace"): argparse.Namespace,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("_codecs", "encode"): _encode,
    ("datetime", "date"): datetime.date,
    ("datetime", "time"): datetime.time,
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "timedelta"): datetime.timedelta,
    ("datetime", "timezone"): datetime.timezone,
}
_STANDARD_GLOBALS.update({("builtins", name): getattr(builtins, name) for name in (
    "set", "frozenset", "slice", "complex", "range", "bytearray", "bytes", "object", "int",
    "float", "bool", "str", "list", "dict", "tuple")})
# Pure paths: a path in a run's args never touches the file system on this machine.
for _module in ("pathlib", "pathlib._local"):
  _STANDARD_GLOBALS.update({
      (_module, "PurePosixPath"): pathlib.PurePosixPath,
      (_module, "PosixPath"): pathlib.PurePosixPath,
      (_module, "PureWindowsPath"): pathlib.PureWindowsPath,
      (_module, "WindowsPath"): pathlib.PureWindowsPath,
  })


def _find_global(module, name):
  """What a checkpoint's pickle gets for the global `module.name`: never an import of it."""
  module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
  module = _compat_pickle.IMPORT_MAPPING.get(module, module)
  module = {"torch.tensor": "torch._tensor"}.get(module, module)
  if module in _STORAGE_MODULES and name in _STORAGE_DTYPES:
    return _StorageClass(_STORAGE_DTYPES[name])
  found = _TORCH_GLOBALS.get((module, name), _STANDARD_GLOBALS.get((module, name)))
  if found is None and module.startswith("numpy"):
    found = _numpy_global(module, name)
  return _placeholder_class(module, name) if found is None else found


class _Unpickler(pickle.Unpickler):
  """Unpickles with `_find_global` and hands storage ids to `load_storage`."""

  def __init__(self, file, load_storage=None):
    super().__init__(file, encoding="utf-8")
    self._load_storage = load_storage

  def find_class(self, module, name):
    return _find_global(module, name)

  def persistent_load(self, pid):
    if self._load_storage is None:
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
    return self._load_storage(pid)


def _ascii(text):
  return text.decode("ascii") if isinstance(text, bytes) else text


def _storage_id(pid, length):
  """(storage class, key, numel, rest) of a storage's persistent id."""
  if not (isinstance(pid, tuple) and len(pid) == length and _ascii(pid[0]) == "storage"):
    raise _Unreadable(f"its pickle refers to {repr(pid)[:200]}, which is no storage. "
                      f"{_FETCH_AGAIN}")
  storage_class, key, numel = pid[1], _ascii(pid[2]), int(pid[4])
  if not isinstance(storage_class, _StorageClass):
    raise _Unreadable(f"it holds a storage of type {_global_name(storage_class)}, which "
                      "load_pth does not know.")
  return storage_class, key, numel, pid[5:]


def _is_module_source(pid):
  # The legacy layout's ('module', nn.Module subclass, source file, source) of a pickled
  # module, which torch compares with the class's source now: the class is all we keep.
  return isinstance(pid, tuple) and len(pid) == 4 and _ascii(pid[0]) == "module"


def _nbytes(storage_class, numel):
  return numel * _ITEMSIZES[storage_class.dtype]


# --- the two layouts -----------------------------------------------------------------------

def _load(path):
  if os.path.isdir(path):
    raise _Unreadable(_describe_directory(path))
  if not os.path.exists(path):
    raise _Unreadable("there is no such file.")
  with open(path, "rb") as f:
    head = f.read(512)
    f.seek(0)
    # As torch decides: a local file header at the start. zipfile.is_zipfile would search
    # the end for an end-of-archive record, which a legacy file's bytes may happen to hold.
    is_zip = head.startswith(b"PK\x03\x04")
    try:
      if is_zip:
        if not zipfile.is_zipfile(f):
          raise _Unreadable(_describe_file(path, head, b""))
        f.seek(0)
        with zipfile.ZipFile(f) as archive:
          return _load_zip(archive)
      if head.startswith(b"\x80") and _starts_with_magic_number(f):
        return _load_legacy(f)
    except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, struct.error, ValueError,
            KeyError, IndexError, TypeError, AttributeError, OverflowError) as error:
      raise _Unreadable(f"reading it failed ({type(error).__name__}: {error}). "
                        f"{_FETCH_AGAIN}") from error
    f.seek(-min(len(_TF_TABLE_MAGIC), os.fstat(f.fileno()).st_size), os.SEEK_END)
    raise _Unreadable(_describe_file(path, head, f.read()))


def _plain_load(f):
  """The next pickle in `f`: a header or the storage keys, which refer to no storage."""
  return _Unpickler(f).load()


def _starts_with_magic_number(f):
  try:
    return _plain_load(f) == _MAGIC_NUMBER
  except Exception:  # whatever the bytes are, they are not torch's magic number
    return False


def _load_zip(archive):
  names = archive.namelist()
  data_pkl = next((name for name in names if re.fullmatch(r"([^/]+/)?data\.pkl", name)), None)
  if data_pkl is None:
    raise _Unreadable(_describe_zip(names))
  folder = data_pkl[:-len("data.pkl")]
  byteorder = b"little"
  if folder + "byteorder" in names:
    byteorder = archive.read(folder + "byteorder").strip()
    if byteorder not in (b"little", b"big"):
      raise _Unreadable(f"its byteorder record says {byteorder!r}, not little or big. "
                        f"{_FETCH_AGAIN}")
  records, held = {}, set(names)

  def load_storage(pid):
    storage_class, key, numel, _ = _storage_id(pid, 5)
    record = f"{folder}data/{key}"
    if record not in records:
      if record not in held:
        raise _Unreadable(f"its data.pkl refers to the record {record}, which the zip does "
                          f"not hold. {_FETCH_AGAIN}")
      records[record] = np.frombuffer(archive.read(record), np.uint8)
    data, nbytes = records[record], _nbytes(storage_class, numel)
    if data.size < nbytes:
      raise _Unreadable(f"its record {record} holds {data.size} bytes where data.pkl expects "
                        f"{nbytes}. {_FETCH_AGAIN}")
    return _Storage(data[:nbytes], storage_class.dtype, "<" if byteorder == b"little" else ">")

  return _Unpickler(io.BytesIO(archive.read(data_pkl)), load_storage).load()


def _read_exactly(f, size):
  data = f.read(size)
  if len(data) != size:
    raise _Unreadable(f"it ends in the middle of a storage. {_FETCH_AGAIN}")
  return data


def _load_legacy(f):
  """The legacy layout after its magic number: storages follow the pickle that uses them."""
  version = _plain_load(f)
  if version != _LEGACY_PROTOCOL_VERSION:
    raise _Unreadable(f"it has torch's magic number but protocol version {version!r}, not "
                      f"{_LEGACY_PROTOCOL_VERSION}: a format load_pth does not know.")
  _plain_load(f)  # sys_info: storages are little endian whatever machine wrote them
  start = f.tell()
  # Storage bytes come after the pickle that names them, and their sizes depend on their
  # dtypes, so a first pass over the pickle learns each key's dtype and element count.
  layout = {}

  def note_storage(pid):
    if _is_module_source(pid):
      return pid[1]
    storage_class, key, numel, _ = _storage_id(pid, 6)
    layout.setdefault(key, (storage_class, numel))
    return _Storage(None, storage_class.dtype, "<")

  _Unpickler(f, note_storage).load()
  object_pickle_size = f.tell() - start
  keys = [_ascii(key) for key in _plain_load(f)]
  offsets, position = {}, f.tell()
  for key in keys:
    if key not in layout:
      raise _Unreadable(f"its storage list names {key!r}, which its pickle does not use. "
                        f"{_FETCH_AGAIN}")
    offsets[key] = (position + 8, _nbytes(*layout[key]))
    position += 8 + offsets[key][1]
  missing = position - os.fstat(f.fileno()).st_size
  if missing > 0:
    raise _Unreadable(f"it ends {missing} bytes before its last storage does. {_FETCH_AGAIN}")
  for key, (offset, _) in offsets.items():
    f.seek(offset - 8)
    count = int.from_bytes(f.read(8), "little")
    if count != layout[key][1]:
      raise _Unreadable(f"its storage {key} has {count} elements where the pickle says "
                        f"{layout[key][1]}. {_FETCH_AGAIN}")
  storages = {}

  def load_storage(pid):
    if _is_module_source(pid):
      return pid[1]
    storage_class, key, _, (view,) = _storage_id(pid, 6)
    if key not in storages:
      if key not in offsets:
        raise _Unreadable(f"its pickle uses the storage {key!r}, which its storage list lacks. "
                          f"{_FETCH_AGAIN}")
      offset, nbytes = offsets[key]
      f.seek(offset)
      storages[key] = np.frombuffer(_read_exactly(f, nbytes), np.uint8)
    data = storages[key]
    if view is not None:
      # Old torch saved views of storages: (view key, offset, numel), in elements.
      _, view_offset, view_numel = view
      element_size = _nbytes(storage_class, 1)
      data = data[view_offset * element_size:(view_offset + view_numel) * element_size]
    return _Storage(data, storage_class.dtype, "<")

  f.seek(start)
  return _Unpickler(io.BytesIO(f.read(object_pickle_size)), load_storage).load()


# --- what a file that is not a checkpoint looks like ---------------------------------------

def _describe_directory(path):
  if os.path.exists(os.path.join(path, "saved_model.pb")):
    return (f"it is a SavedModel directory (TensorFlow), not a file. {_PASS_A_CHECKPOINT}")
  files = sorted(name for name in os.listdir(path)
                 if name.endswith((".pth", ".pt", ".pth.tar", ".tar", ".bin", ".ckpt")))
  inside = f" It holds {', '.join(files[:5])}: pass one of those." if files else ""
  return f"it is a directory, not a file.{inside} {_PASS_A_CHECKPOINT}"


def _describe_zip(names):
  if names and all(name.endswith(".npy") for name in names):
    what = "a NumPy .npz archive"
  elif "config.json" in names and "model.weights.h5" in names:
    what = "a Keras .keras archive"
  else:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    what = f"a zip file without data.pkl (it holds {shown or 'nothing'})"
  return f"it is {what}, not a torch.save checkpoint. {_PASS_A_CHECKPOINT}"


def _describe_file(path, head, tail):
  name = os.path.basename(path)
  if not head:
    return f"it is empty. {_FETCH_AGAIN}"
  if head.startswith(b"PK\x03\x04"):
    return f"it starts like a zip file but has no end-of-archive record. {_FETCH_AGAIN}"
  if head.startswith(b"\x80") and _MAGIC_NUMBER.to_bytes(10, "little") in head:
    return f"it starts like a legacy torch.save file but its header is cut. {_FETCH_AGAIN}"
  if head.startswith(b"\x1f\x8b"):
    return "it is gzip-compressed: decompress it (gunzip) and pass what it holds."
  if head[257:262] == b"ustar":
    return ("it is a tar archive (torch.save wrote these before torch 0.1.10; load_pth does "
            "not read them): extract it and pass the checkpoint inside, if any.")
  if (name.endswith(".index") and tail == _TF_TABLE_MAGIC) or re.search(
      r"\.data-\d{5}-of-\d{5}$", name):
    what = "a TensorFlow checkpoint's " + ("index" if name.endswith(".index") else "data shard")
  elif head.startswith(b"model_checkpoint_path"):
    what = "the text file in which TensorFlow lists a directory's checkpoints"
  elif head.startswith(b"\x89HDF\r\n\x1a\n"):
    what = "an HDF5 file (Keras .h5 weights?)"
  elif head.startswith(b"\x93NUMPY"):
    what = "a NumPy .npy file"
  elif len(head) > 10 and head[8:10] == b'{"' and struct.unpack("<Q", head[:8])[0] < 10**8:
    what = "a safetensors file"
  elif head.startswith(b"\x80"):
    what = "a Python pickle without torch's magic number, which torch.save did not write"
  elif _text(head) is not None:
    what = f"a text file starting with {_text(head).strip().splitlines()[0][:60]!r}"
  else:
    return (f"it starts with the bytes {head[:16].hex(' ')}, which no PyTorch checkpoint "
            f"does. {_PASS_A_CHECKPOINT}")
  return f"it is {what}, not a PyTorch checkpoint. {_PASS_A_CHECKPOINT}"


def _text(head):
  try:
    text = head.decode("utf-8")
  except UnicodeDecodeError as error:
    if error.start < len(head) - 3:  # not just a character that the head's end cut in two
      return None
    text = head[:error.start].decode("utf-8")
  return text if text.strip() and all(c.isprintable() or c.isspace() for c in text) else None
