"""`import whitebox_hf` is lazy and light, yet registers every architecture with the transformers Auto classes."""

import ast
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import whitebox_hf
from whitebox_hf.hub import BUNDLED_DIR
from whitebox_hf.models import auto

SRC = Path(whitebox_hf.__file__).resolve().parent
# Imported by model code, data loaders, evaluation or generation only: never by `import whitebox_hf`.
HEAVY = ("torch", "torchvision", "diffusers", "peft", "accelerate", "datasets", "sklearn", "matplotlib", "gradio")


def run_python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (this tree's package first on the path); it prints one JSON line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC.parent), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_imports_no_heavy_dependency():
    out = run_python(
        "import json, sys\n"
        "import whitebox_hf\n"
        f"print(json.dumps({{'file': whitebox_hf.__file__, 'version': whitebox_hf.__version__, "
        f"'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n")
    assert Path(out["file"]).resolve() == SRC / "__init__.py"
    assert out["version"] == whitebox_hf.__version__
    assert out["heavy"] == []


@pytest.mark.parametrize("first", ["whitebox_hf", "transformers Auto classes"])
def test_auto_classes_load_bundled_folders_right_after_import(first):
    """Registration holds whichever is imported first: the package or transformers' Auto modules."""
    imports = ["import whitebox_hf", "from transformers import AutoConfig, AutoImageProcessor, AutoModel, "
               "AutoModelForCausalLM, AutoModelForImageClassification"]
    if first != "whitebox_hf":
        imports.reverse()
    crate, lm = BUNDLED_DIR / "fashion-mnist-crate", BUNDLED_DIR / "python-docs-crate-alpha"
    out = run_python("\n".join([
        "import json", *imports,
        f"names = [type(AutoModel.from_pretrained({str(crate)!r})).__name__,",
        f"         type(AutoModelForImageClassification.from_pretrained({str(crate)!r})).__name__,",
        f"         type(AutoImageProcessor.from_pretrained({str(crate)!r})).__name__,",
        f"         type(AutoConfig.from_pretrained({str(lm)!r})).__name__,",
        f"         type(AutoModelForCausalLM.from_pretrained({str(lm)!r})).__name__]",
        "print(json.dumps(names))"]))
    assert out == ["CrateModel", "CrateForImageClassification", "CrateImageProcessor", "CausalCrateConfig",
                   "CausalCrateForCausalLM"]


@pytest.mark.parametrize("first", ["from whitebox_hf import WhiteboxClipModel", "from transformers import BertModel"])
def test_a_model_module_whose_import_reads_autoconfig_imports_in_either_order(first):
    """transformers' ``auto_docstring`` reads AutoConfig's mapping while ``modeling_bert`` is being imported; that read
    registers the configurations only, since registering `WhiteboxClipModel` would import ``BertModel`` mid-import."""
    imports = ["from whitebox_hf import WhiteboxClipModel", "from transformers import BertModel"]
    if first != imports[0]:
        imports.reverse()
    out = run_python("\n".join(["import json", "import whitebox_hf", *imports,
                                 "from transformers import AutoModel",
                                 "config = whitebox_hf.WhiteboxClipConfig(text_tower='clip')",
                                 "print(json.dumps(type(AutoModel.from_config(config)).__name__))"]))
    assert out == "WhiteboxClipModel"


def test_every_table_row_is_registered():
    import transformers
    from transformers.models.auto import modeling_auto

    auto.register_auto_classes()
    for name in auto.CONFIGS:
        config_class = getattr(whitebox_hf, name)
        assert transformers.AutoConfig.for_model(config_class.model_type).__class__ is config_class
    for auto_class, config_name, model_name in auto.MODELS:
        mapping = getattr(modeling_auto, auto_class)._model_mapping
        assert mapping[getattr(whitebox_hf, config_name)] is getattr(whitebox_hf, model_name), (auto_class, model_name)
    for config_name, processor_name in auto.PROCESSORS:
        processor = transformers.models.auto.processing_auto.PROCESSOR_MAPPING[getattr(whitebox_hf, config_name)]
        assert processor is getattr(whitebox_hf, processor_name)


def lazy_inits():
    """Every package __init__ of whitebox_hf that defines an `_import_structure` (all but pipelines/)."""
    for path in sorted(SRC.rglob("__init__.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_import_structure" for t in node.targets):
                yield path, tree, ast.literal_eval(node.value)


def package_name(path: Path) -> str:
    return ".".join(("whitebox_hf", *path.parent.relative_to(SRC).parts))


def imports_nothing(path: Path) -> bool:
    """An __init__ with no import statement (whitebox_hf.training: its modules are imported directly)."""
    return not any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.walk(ast.parse(path.read_text())))


def test_every_subpackage_is_lazy_except_pipelines():
    lazy = {package_name(path) for path, _, _ in lazy_inits()}
    packages = {package_name(path) for path in SRC.rglob("__init__.py") if not imports_nothing(path)}
    assert packages - lazy == {"whitebox_hf.pipelines"}, (
        "a package __init__ without `_import_structure`: make it lazy like whitebox_hf/nn/__init__.py")


@pytest.mark.parametrize("path, tree, structure", list(lazy_inits()), ids=lambda v: package_name(v)
                         if isinstance(v, Path) else "")
def test_lazy_structure_matches_type_checking_imports_and_resolves(path, tree, structure):
    package = package_name(path)
    type_checking = next(node for node in tree.body if isinstance(node, ast.If)
                         and getattr(node.test, "id", None) == "TYPE_CHECKING")
    imports = [node for node in type_checking.body if isinstance(node, ast.ImportFrom)]  # not the `else:` branch
    imported = {alias.asname or alias.name for node in imports for alias in node.names}
    exported = {name for names in structure.values() for name in names}
    submodules = {alias.name for node in imports if node.module is None for alias in node.names}
    assert imported - submodules == exported
    module = importlib.import_module(package)
    for key, names in structure.items():
        assert importlib.util.find_spec(f"{package}.{key}") is not None, f"{package}.{key}"
        for name in names:
            assert getattr(module, name) is getattr(importlib.import_module(f"{package}.{key}"), name), name
    with pytest.raises(AttributeError):
        getattr(module, "NoSuchName")


@pytest.mark.parametrize("path, tree, structure", list(lazy_inits()), ids=lambda v: package_name(v)
                         if isinstance(v, Path) else "")
def test_no_exported_name_is_also_a_submodule(path, tree, structure):
    """Importing a submodule sets it as an attribute of its package: a submodule named like an exported name
    (the old ``nn/coding_rate.py`` beside the function ``coding_rate``) makes ``from package import name`` return
    the module once anything has imported it."""
    submodules = {child.stem for child in path.parent.iterdir()
                  if (child.suffix == ".py" and child.stem != "__init__") or (child / "__init__.py").is_file()}
    exported = {name for names in structure.values() for name in names}
    assert not exported & submodules, f"{package_name(path)}: rename the submodule(s) {sorted(exported & submodules)}"
