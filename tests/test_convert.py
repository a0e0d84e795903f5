"""python -m tfssl.convert against the original frameworks: torchvision, timm and the
originals' own layouts, written by torch.save (in a subprocess: importing torch after
TensorFlow crashes Python). The converted module's outputs must equal the reference's
on the same images, batch norm in inference mode."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfssl import convert
from tfssl import eval_hub
from tfssl import experiment
from tfssl import export as export_lib
from tfssl import methods
from tfssl import trainer
from tfssl import config as config_lib
from tfssl.errors import UserError

# Writes each release layout with torch itself, and what the original computes on
# `images` (NHWC in [0, 1], standardised as torchvision does) into reference.npz.
_WRITE_RELEASES = r"""
import argparse, collections, sys
import numpy as np
import torch, torchvision, timm
from torch import nn

out = sys.argv[1]
torch.manual_seed(0)
rng = np.random.default_rng(0)
images = rng.uniform(size=(2, 64, 64, 3)).astype(np.float32)
vit_images = rng.uniform(size=(2, 224, 224, 3)).astype(np.float32)
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
to_torch = lambda x: (torch.from_numpy(x).permute(0, 3, 1, 2) - mean) / std
ref = {"images": images, "vit_images": vit_images}

def randomize_norms(net):
  # Inference-mode batch norm must use the statistics, not the identity they start as.
  for m in net.modules():
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
      m.running_mean.uniform_(-0.2, 0.2); m.running_var.uniform_(0.5, 1.5)
      m.weight.data.uniform_(0.5, 1.5); m.bias.data.uniform_(-0.2, 0.2)
  return net.eval()

def resnet18():
  net = randomize_norms(torchvision.models.resnet18(num_classes=10))
  return net

def features(net, x):
  return torch.flatten(nn.Sequential(*list(net.children())[:-1])(x), 1)

with torch.no_grad():
  # torchvision: the state dict itself (zip layout).
  net = resnet18()
  x = to_torch(images)
  ref["tv_default"] = features(net, x).numpy()
  ref["tv_logits"] = net(x).numpy()
  torch.save(net.state_dict(), f"{out}/tv_resnet18.pth")

  # SwAV (src/resnet50.py): backbone at the top level, projection_head = Linear-BN1d-ReLU-
  # Linear, prototypes = a bias-free Linear; saved from DDP (module.), legacy layout as
  # its 2020 releases.
  # A ResNet-50 as the releases: bottleneck blocks, a projection in every stage's first unit.
  net = torchvision.models.resnet50(); net.fc = nn.Identity()
  net.projection_head = nn.Sequential(nn.Linear(2048, 64), nn.BatchNorm1d(64), nn.ReLU(),
                                      nn.Linear(64, 16))
  net.prototypes = nn.Linear(16, 30, bias=False)
  randomize_norms(net)
  feats = net(x)
  proj = nn.functional.normalize(net.projection_head(feats), dim=1)
  ref["swav_default"], ref["swav_proj"] = feats.numpy(), proj.numpy()
  ref["swav_scores"] = net.prototypes(proj).numpy()
  state = {"module." + k: v for k, v in net.state_dict().items()}
  torch.save(state, f"{out}/swav.pth.tar", _use_new_zipfile_serialization=False)
  swav_state = net.state_dict()

  # DINO (main_dino.py's save_dict): MultiCropWrapper(backbone, DINOHead) for student (in
  # DDP) and teacher (in DDP for ResNets), the loss's centre, the args.
  class DINOHead(nn.Module):
    def __init__(self, in_dim, out_dim, hidden, bottleneck):
      super().__init__()
      self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                               nn.GELU(), nn.Linear(hidden, bottleneck))
      self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
      self.last_layer.weight_g.data.uniform_(0.5, 1.5)
    def forward(self, x):
      return self.last_layer(nn.functional.normalize(self.mlp(x), dim=-1))
  class Wrapper(nn.Module):
    def __init__(self, backbone, head):
      super().__init__(); self.backbone, self.head = backbone, head
  parts = {}
  for name in ("teacher", "student"):
    backbone = resnet18(); backbone.fc = nn.Identity()
    parts[name] = Wrapper(backbone, DINOHead(512, 40, 32, 8)).eval()
  teacher = parts["teacher"]
  feats = teacher.backbone(x)
  ref["dino_default"] = feats.numpy()
  ref["dino_proj"] = nn.functional.normalize(teacher.head.mlp(feats), dim=-1).numpy()
  ref["dino_scores"] = teacher.head(feats).numpy()
  student = parts["student"]
  ref["dino_student_default"] = student.backbone(x).numpy()
  ref["dino_student_proj"] = nn.functional.normalize(student.head.mlp(student.backbone(x)),
                                                     dim=-1).numpy()
  center = torch.randn(1, 40)
  ref["dino_center"] = center.numpy()
  ddp = lambda sd: collections.OrderedDict(("module." + k, v) for k, v in sd.items())
  torch.save({"student": ddp(parts["student"].state_dict()),
              "teacher": ddp(teacher.state_dict()),
              "optimizer": torch.optim.AdamW(parts["student"].parameters()).state_dict(),
              "epoch": 100, "args": argparse.Namespace(arch="resnet50", norm_last_layer=True),
              "dino_loss": collections.OrderedDict(center=center)}, f"{out}/dino_full.pth")

  # DINO's backbone-only ViT-S/16 (dino_deitsmall16_pretrain.pth): timm's layout.
  vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).eval()
  ref["vit_default"] = vit(to_torch(vit_images)).numpy()
  torch.save(vit.state_dict(), f"{out}/dino_vits16.pth")
  # timm with a classifier, trained on [-1, 1] inputs (timm's "inception" mean/std 0.5).
  # ViT-S/8 (DINO's dino_vits8 layout): the patch size is read from the file.
  vit = timm.create_model("vit_small_patch8_224", pretrained=False, num_classes=10).eval()
  inputs = torch.from_numpy(vit_images).permute(0, 3, 1, 2) * 2 - 1
  ref["timm_default"] = vit.forward_head(vit.forward_features(inputs), pre_logits=True).numpy()
  ref["timm_logits"] = vit(inputs).numpy()
  torch.save({"state_dict": vit.state_dict()}, f"{out}/timm_vit.pth")
  # PAWS (suncet's paws_train.py): encoder = a torchvision-layout ResNet whose fc is the
  # projection (fc1-bn1-relu1-fc2-bn2-relu2-fc3) and pred the prediction head; saved as
  # {"encoder": DDP state dict, "opt", "epoch", ...}.
  Seq = lambda *layers: nn.Sequential(collections.OrderedDict(layers))
  net = resnet18()
  net.fc = Seq(("fc1", nn.Linear(512, 512)), ("bn1", nn.BatchNorm1d(512)), ("relu1", nn.ReLU()),
               ("fc2", nn.Linear(512, 512)), ("bn2", nn.BatchNorm1d(512)), ("relu2", nn.ReLU()),
               ("fc3", nn.Linear(512, 32)))
  pred = Seq(("bn1", nn.BatchNorm1d(32)), ("fc1", nn.Linear(32, 8)), ("bn2", nn.BatchNorm1d(8)),
             ("relu", nn.ReLU()), ("fc2", nn.Linear(8, 32)))
  randomize_norms(net); randomize_norms(pred)
  h = net(x)
  ref["paws_default"], ref["paws_proj"], ref["paws_pred"] = (
      features(net, x).numpy(), h.numpy(), pred(h).numpy())
  state = {"module." + k: v for k, v in net.state_dict().items()}
  state.update({"module.pred." + k: v for k, v in pred.state_dict().items()})
  torch.save({"encoder": state, "opt": None, "epoch": 300, "lr": 3.2}, f"{out}/paws.pth.tar")

  # PAWS's CIFAR-10 WRN-28-2, the layout of suncet's src/wide_resnet.py: biased convs,
  # pre-activation units conv1(relu(bn1(x))), conv2(relu(bn2(.))) with the stride, a 1x1
  # shortcut conv where the shape changes, a final bn1 (momentum 0.99) + ReLU.
  class Unit(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, padding=1)
      self.bn2 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, stride=stride, padding=1)
      self.shortcut = nn.Sequential()
      if stride != 1 or cin != cout:
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride))
    def forward(self, x):
      y = self.conv1(torch.relu(self.bn1(x)))
      return self.conv2(torch.relu(self.bn2(y))) + self.shortcut(x)
  class WRN(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
      widths, cin = (32, 64, 128), 16
      for stage, (cout, stride) in enumerate(zip(widths, (1, 2, 2)), start=1):
        units = []
        for unit in range(4):
          units.append(Unit(cin, cout, stride if unit == 0 else 1)); cin = cout
        setattr(self, f"layer{stage}", nn.Sequential(*units))
      self.bn1 = nn.BatchNorm2d(128, momentum=0.99)
    def forward(self, x):
      x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
      return torch.relu(self.bn1(x)).mean((2, 3))
  wrn = randomize_norms(WRN())
  wrn.fc = Seq(("fc1", nn.Linear(128, 128)), ("bn1", nn.BatchNorm1d(128)), ("relu1", nn.ReLU()),
               ("fc2", nn.Linear(128, 128)), ("bn2", nn.BatchNorm1d(128)), ("relu2", nn.ReLU()),
               ("fc3", nn.Linear(128, 128)))
  randomize_norms(wrn)
  cifar = rng.uniform(size=(2, 32, 32, 3)).astype(np.float32)
  cifar_mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
  cifar_std = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
  feats = wrn((torch.from_numpy(cifar).permute(0, 3, 1, 2) - cifar_mean) / cifar_std)
  ref["cifar_images"], ref["wrn_default"], ref["wrn_proj"] = cifar, feats.numpy(), wrn.fc(feats).numpy()
  torch.save({"encoder": {"module." + k: v for k, v in wrn.state_dict().items()}, "epoch": 600},
             f"{out}/paws_wrn.pth.tar")
  # Files that are not what --from says: a fine-tuned PAWS model (fc = fc1-bn1-fc2 with a
  # class per output) and a pickle of something other than a state dict.
  net = resnet18()
  net.fc = Seq(("fc1", nn.Linear(512, 512)), ("bn1", nn.BatchNorm1d(512)), ("relu1", nn.ReLU()),
               ("fc2", nn.Linear(512, 10)))
  torch.save({"encoder": net.state_dict(), "epoch": 20}, f"{out}/paws_finetuned.pth.tar")
  torch.save([1, 2, 3], f"{out}/a_list.pth")
np.savez(f"{out}/reference.npz", **ref)
"""


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
  missing = [name for name in ("torch", "torchvision", "timm")
             if importlib.util.find_spec(name) is None]
  if missing:
    pytest.skip(f"{', '.join(missing)} not installed (the test extra installs them: "
                "pip install -e '.[test]'); they are the references of the converters")
  out = tmp_path_factory.mktemp("releases")
  subprocess.run([sys.executable, "-c", _WRITE_RELEASES, str(out)], check=True)
  return out, dict(np.load(out / "reference.npz"))


def assert_relative_close(got, want, tolerance=1e-4):
  error = np.max(np.abs(got - want)) / np.max(np.abs(want))
  assert error < tolerance, f"max error {error:.2e} of the largest value"


@pytest.fixture(scope="module")
def converted(releases, tmp_path_factory):
  """{name: module dir} of every release, converted once for the module."""
  out, _ = releases
  dirs = tmp_path_factory.mktemp("modules")
  jobs = {"tv": ("torchvision_resnet", "tv_resnet18.pth", "resnet18_v1"),
          "swav": ("swav", "swav.pth.tar", "resnet50_v1"),
          "dino": ("dino", "dino_full.pth", "resnet18_v1"),
          "vit": ("dino", "dino_vits16.pth", "vit_s16"),
          "paws": ("paws", "paws.pth.tar", "resnet18_v1"),
          "wrn": ("paws", "paws_wrn.pth.tar", "wide_resnet28_2_suncet")}
  modules = {name: convert.convert(fmt, str(out / file), model, str(dirs / name))
             for name, (fmt, file, model) in jobs.items()}
  modules["timm"] = convert.convert("timm_vit", str(out / "timm_vit.pth"), "vit_s8",
                                    str(dirs / "timm"), input_normalization="inception")
  return modules


def outputs(module_dir, images):
  return {k: v.numpy() for k, v in tf.saved_model.load(module_dir)(
      tf.constant(images), training=False).items()}


def module_variable(module_dir, name):
  """The value of the module's variable called `name`."""
  values = [v.numpy() for v in tf.saved_model.load(module_dir).variables if v.name == name]
  assert len(values) == 1, f"{len(values)} variables are called {name}"
  return values[0]


def test_torchvision_resnet_features_and_logits(releases, converted):
  _, ref = releases
  got = outputs(converted["tv"], ref["images"])
  assert_relative_close(got["default"], ref["tv_default"])
  assert_relative_close(got["logits"], ref["tv_logits"])
  info = export_lib.read_module_info(converted["tv"])
  assert info["converted_from"]["format"] == "torchvision_resnet"
  assert len(info["converted_from"]["sha256"]) == 64
  assert info["config"]["input_normalization"] == "imagenet"
  assert info["num_classes"] == 10


def test_swav_backbone_projection_and_prototypes(releases, converted):
  _, ref = releases
  got = outputs(converted["swav"], ref["images"])
  assert_relative_close(got["default"], ref["swav_default"])
  assert_relative_close(got["proj"], ref["swav_proj"])
  prototypes = module_variable(converted["swav"], "prototypes/kernel:0")
  assert_relative_close(got["proj"] @ prototypes, ref["swav_scores"])


def test_dino_full_checkpoint_teacher_head_and_centre(releases, converted):
  _, ref = releases
  got = outputs(converted["dino"], ref["images"])
  assert_relative_close(got["default"], ref["dino_default"])
  assert_relative_close(got["proj"], ref["dino_proj"])
  assert_relative_close(module_variable(converted["dino"], "value:0"), ref["dino_center"], 1e-6)
  direction, magnitude = (module_variable(converted["dino"], f"teacher_prototypes/{name}:0")
                          for name in ("direction", "magnitude"))
  kernel = direction / np.linalg.norm(direction, axis=0) * magnitude
  assert_relative_close(got["proj"] @ kernel, ref["dino_scores"])
  info = export_lib.read_module_info(converted["dino"])
  assert info["method"] == "dino" and info["config"]["num_prototypes"] == 40


def test_dino_vit_backbone_matches_timm(releases, converted):
  _, ref = releases
  got = outputs(converted["vit"], ref["vit_images"])
  assert_relative_close(got["default"], ref["vit_default"])
  assert export_lib.read_module_info(converted["vit"])["method"] == convert.BACKBONE_ONLY


def test_paws_encoder_and_heads(releases, converted):
  _, ref = releases
  got = outputs(converted["paws"], ref["images"])
  for name in ("default", "proj", "pred"):
    assert_relative_close(got[name], ref[f"paws_{name}"])
  got = outputs(converted["wrn"], ref["cifar_images"])
  assert_relative_close(got["default"], ref["wrn_default"])
  assert_relative_close(got["proj"], ref["wrn_proj"])
  info = export_lib.read_module_info(converted["wrn"])
  assert (info["dataset"], info["image_size"]) == ("cifar10", 32)


def test_timm_vit_with_its_head_on_minus_one_one_inputs(releases, converted):
  _, ref = releases
  got = outputs(converted["timm"], ref["vit_images"])
  assert_relative_close(got["default"], ref["timm_default"])
  assert_relative_close(got["logits"], ref["timm_logits"])
  assert export_lib.read_module_info(converted["timm"])["config"]["input_normalization"] == ""


def _initialised(method_name, module_dir, model, **fields):
  """A method of the converted module's architecture, --init_from the module."""
  method_cls = methods.get_method(method_name)
  config = config_lib.build_config(method_cls, model=model, image_size=224,
                                   input_normalization="imagenet", **fields)
  method = method_cls(config, 10, 224)
  method.build()
  trainer.initialize_from(method, os.path.join(module_dir, export_lib.MODULE_VARIABLES),
                          tf.distribute.get_strategy())
  method.after_initialize()
  return method


def test_suave_starts_from_swav_with_its_projection(releases, converted):
  _, ref = releases
  method = _initialised("suave", converted["swav"], "resnet50_v1", init_projection=True,
                        proj_hidden_dim=64,
                        proj_out_dim=16, queue_length=0)
  features = method.backbone(ref["images"], training=False)["default"].numpy()
  assert_relative_close(features, ref["swav_default"])
  embeddings, _ = method.head(features, training=False)
  assert_relative_close(embeddings.numpy(), ref["swav_proj"])


def test_daino_starts_from_dino_student(releases, converted):
  _, ref = releases
  method = _initialised("daino", converted["dino"], "resnet18_v1", init_projection=True,
                        proj_hidden_dim=32, proj_out_dim=8)
  for teacher in (False, True):
    _, embeddings, _ = method.head_outputs(ref["images"], training=False, teacher=teacher)
    assert_relative_close(embeddings.numpy(), ref["dino_student_proj"])
  for network in (method.student, method.teacher):
    assert_relative_close(network(ref["images"], training=False)["default"].numpy(),
                          ref["dino_student_default"])


def test_init_from_a_converted_module_needs_its_input_normalization(converted):
  config = config_lib.build_config(methods.get_method("supervised"), model="resnet18_v1",
                                   init_from=converted["tv"])
  with pytest.raises(UserError, match="--config.input_normalization=imagenet"):
    experiment.resolve(config)


def test_init_from_a_converted_module_with_its_input_normalization(converted):
  config = config_lib.build_config(methods.get_method("supervised"), model="resnet18_v1",
                                   init_from=converted["tv"], input_normalization="imagenet")
  assert experiment.resolve(config).init_checkpoint.startswith(converted["tv"])


def test_eval_hub_scores_a_converted_module(converted, tmp_path):
  config = eval_hub.default_config()
  config.image_size = 32
  result = eval_hub.evaluate(converted["tv"], "knn", str(tmp_path), dataset="digits",
                             config=config)
  # Random weights with a 10-class head: above chance (0.1) on digits all the same.
  assert result["top1"] > 0.3


@pytest.mark.parametrize("fmt,file,model,expected", [
    ("torchvision_resnet", "tv_resnet18.pth", "resnet50_v1", "ResNet-18 x1.*resnet18_v1"),
    ("torchvision_resnet", "tv_resnet18.pth", "resnet18_v2", "post-activation"),
    ("torchvision_resnet", "swav.pth.tar", "resnet50_v1", "projection_head.0.bias"),
    ("dino", "dino_vits16.pth", "vit_b16", "ViT-S/16.*vit_s16"),
    ("dino", "dino_vits16.pth", "resnet18_v1", "ViT-S/16.*use --model=vit_s16"),
    ("paws", "paws_wrn.pth.tar", "resnet50_v1", "WRN-28-2.*wide_resnet28_2_suncet"),
    ("paws", "paws_finetuned.pth.tar", "resnet18_v1", "a fine-tuned PAWS model"),
    ("paws", "tv_resnet18.pth", "resnet18_v1", "no PAWS projection head.*Check --from"),
    ("torchvision_resnet", "a_list.pth", "resnet18_v1", "holds no state dict of tensors"),
])
def test_a_file_that_does_not_fit_says_what_it_is(releases, tmp_path, fmt, file, model,
                                                   expected):
  out, _ = releases
  with pytest.raises(UserError, match=expected):
    convert.convert(fmt, str(out / file), model, str(tmp_path / "module"))
  assert not (tmp_path / "module").exists()


def test_timm_vit_needs_to_be_told_its_input_normalization(releases, tmp_path):
  out, _ = releases
  with pytest.raises(UserError, match="pass --input_normalization"):
    convert.convert("timm_vit", str(out / "timm_vit.pth"), "vit_s8", str(tmp_path / "m"))


def test_remote_checkpoints_are_refused_with_what_to_do(tmp_path):
  with pytest.raises(UserError, match="read local files; copy it here first"):
    convert.convert("swav", "gs://bucket/swav.pth.tar", "resnet50_v1", str(tmp_path / "m"))


def test_convert_refuses_to_overwrite_a_module(releases, converted):
  out, _ = releases
  with pytest.raises(UserError, match="already holds a module"):
    convert.convert("torchvision_resnet", str(out / "tv_resnet18.pth"), "resnet18_v1",
                    converted["tv"])


def test_cli_message_for_an_unknown_format(tmp_path):
  run = subprocess.run([sys.executable, "-m", "tfssl.convert", "--from=caffe",
                        "--checkpoint=x.pth", "--model=resnet50_v1", f"--out={tmp_path}/m"],
                       capture_output=True, text=True)
  assert run.returncode == 2
  assert "Unknown checkpoint format 'caffe'" in run.stderr
  assert "torchvision_resnet" in run.stderr
