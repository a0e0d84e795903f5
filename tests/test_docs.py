"""README.md and docs/ name only what exists: every `config/` script, every relative link
(and its #anchor), every flag of a `python -m tfssl.MODULE` command and every
`--config.KEY`. Pure Python (no TensorFlow): flags and config keys are read from the
source, as the CLIs define them."""

import glob
import os
import re
import shlex

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
CONFIG_PATH = re.compile(r"config/[\w./-]+\.sh")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.M | re.S)
CONFIG_KEY = re.compile(r"--config\.([a-z_][a-z0-9_]*)")


def _rel(path):
  return os.path.relpath(path, REPO)


def _read(path):
  with open(path) as f:
    return f.read()


def slug(heading):
  """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces -."""
  text = re.sub(r"[`*]", "", heading.strip().lower())
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def anchors(text):
  return {slug(line.lstrip("#")) for line in _outside_code(text).splitlines()
          if line.startswith("#")}


def _outside_code(text):
  return FENCE.sub("", text)


def defined_flags(module):
  """Flag names `python -m tfssl.MODULE` accepts (bools also as --noNAME)."""
  names = set()
  source = _read(os.path.join(REPO, "tfssl", f"{module}.py"))
  for kind, name in re.findall(r'flags\.DEFINE_(\w+)\(\s*"(\w+)"', source):
    names.add(name)
    if kind == "bool":
      names.add(f"no{name}")
  return names


def _config_keys(paths):
  keys = set()
  for path in paths:
    source = _read(path)
    keys.update(re.findall(r"^\s*c\.(\w+)\s*=", source, flags=re.M))  # ConfigDict fields
    for body in re.findall(r"def default_config\(.*?(?=\n  def |\ndef |\Z)", source, flags=re.S):
      keys.update(re.findall(r'"(\w+)":', body))  # {"key": value}
      keys.update(re.findall(r"\b(\w+)=", body))  # dict(..., key=value)
  return keys


TRAINER_KEYS = _config_keys([os.path.join(REPO, "tfssl", "config.py")]
                            + glob.glob(os.path.join(REPO, "tfssl", "methods", "*.py")))
MODULE_CONFIG_KEYS = {"trainer": TRAINER_KEYS,
                      "eval_hub": _config_keys([os.path.join(REPO, "tfssl", "eval_hub.py")])}


def tfssl_commands(text):
  """(module, [--flag arguments]) of every `python -m tfssl.MODULE` line in the text's
  bash/sh code blocks, continuation lines joined, comments dropped."""
  commands = []
  for language, body in FENCE.findall(text):
    if language not in ("bash", "sh"):
      continue
    for line in body.replace("\\\n", " ").splitlines():
      line = line.split(" #")[0]
      match = re.search(r"python -m tfssl\.(\w+)(.*)", line)
      if match:
        args = shlex.split(match.group(2).split("&&")[0])
        commands.append((match.group(1), [a for a in args if a.startswith("--")]))
  return commands


def unknown_flags(module, args):
  """The arguments of `python -m tfssl.MODULE` that it does not define."""
  known = defined_flags(module)
  config_keys = MODULE_CONFIG_KEYS.get(module, set())
  unknown = []
  for arg in args:
    name = arg[2:].split("=")[0]
    if name.startswith("config."):
      if name[len("config."):] not in config_keys:
        unknown.append(arg)
    elif name not in known:
      unknown.append(arg)
  return unknown


def broken_links(path):
  """Relative links of a markdown file whose target file or #anchor does not exist."""
  text = _outside_code(_read(path))
  broken = []
  for target in LINK.findall(text):
    if re.match(r"\w+://|mailto:", target):
      continue
    file_part, _, anchor = target.partition("#")
    linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part \
        else path
    if not os.path.exists(linked):
      broken.append(target)
    elif anchor and linked.endswith(".md") and anchor not in anchors(_read(linked)):
      broken.append(target)
  return broken


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_named_config_scripts_exist(doc):
  missing = sorted({p for p in CONFIG_PATH.findall(_read(doc))
                    if not os.path.exists(os.path.join(REPO, p))})
  assert not missing, f"{_rel(doc)} names scripts that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_relative_links_resolve(doc):
  assert not broken_links(doc), f"{_rel(doc)}: broken links {broken_links(doc)}"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_tfssl_commands_use_defined_flags(doc):
  for module, args in tfssl_commands(_read(doc)):
    assert os.path.exists(os.path.join(REPO, "tfssl", f"{module}.py")), f"no tfssl.{module}"
    assert not unknown_flags(module, args), (
        f"{_rel(doc)}: python -m tfssl.{module} does not define {unknown_flags(module, args)}")


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_named_config_keys_exist(doc):
  """A `--config.KEY` anywhere in the text (prose too) is a key of some config."""
  known = set().union(*MODULE_CONFIG_KEYS.values())
  unknown = sorted(set(CONFIG_KEY.findall(_read(doc))) - known)
  assert not unknown, f"{_rel(doc)} names unknown config keys: {unknown}"


def test_every_tfssl_command_is_in_a_checked_block():
  for doc in DOCS:
    for language, body in FENCE.findall(_read(doc)):
      if "python -m tfssl." in body:
        assert language in ("bash", "sh"), f"{_rel(doc)}: a ```{language} block runs tfssl"


def test_the_checks_catch_mistakes(tmp_path):
  """Each check fails on a made-up mistake, so a pass above means something."""
  assert defined_flags("trainer") >= {"method", "workdir", "run_eval", "norun_eval"}
  assert {"batch_size", "temperature"} <= TRAINER_KEYS
  assert "pool_mode" in MODULE_CONFIG_KEYS["eval_hub"]
  text = ("```bash\npython -m tfssl.trainer --method=simclr \\\n    --wrokdir=X "
          "--config.batch_sise=2 --config.batch_size=2  # --not_a_flag\n```\n")
  [(module, args)] = tfssl_commands(text)
  assert unknown_flags(module, args) == ["--wrokdir=X", "--config.batch_sise=2"]
  page = tmp_path / "page.md"
  page.write_text("# A heading: `code`, too\n[ok](#a-heading-code-too) [no](#b) [gone](x.md)\n")
  assert broken_links(str(page)) == ["#b", "x.md"]
  assert slug("Revisiting's pretext tasks: rotation, jigsaw") == \
      "revisitings-pretext-tasks-rotation-jigsaw"
