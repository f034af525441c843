"""Remote-code export: a saved model folder that loads with ``trust_remote_code=True`` where whitebox_hf is absent.

```python
>>> from whitebox_hf.hub import export_remote_code
>>> export_remote_code("runs/crate/model", "exported/crate")
>>> # elsewhere, with only torch + transformers installed:
>>> AutoModelForImageClassification.from_pretrained("exported/crate", trust_remote_code=True)
```

How (vendoring, not concatenation): starting from the configuration and modeling modules of the saved
architecture, every whitebox_hf module they import, transitively, is copied *unchanged* into the output folder as a
flat module, and only its import statements are rewritten. ``from ...nn import ISTA`` becomes
``from .sparse_coding import ISTA``: each imported name is traced through the package ``__init__`` re-exports to the
module that defines it, so package ``__init__`` files (and whatever else they would import) are never needed.
transformers copies a remote-code module together with its ``from .x import y`` neighbours into its module cache,
so the folder is self-contained: its files import only the standard library, torch, transformers and
huggingface_hub (plus torchvision for the image processor). Rewriting import statements through the AST keeps the
code itself byte-for-byte what the package runs, which is more robust than merging sources into one file (no name
clashes, no reordering, tracebacks point at recognisable code).

``config.json`` gains an ``auto_map`` with ``AutoConfig``, ``AutoModel`` and every task Auto class the package
registered for the config (e.g. ``AutoModelForImageClassification`` for CRATE, ``AutoModelForCausalLM`` for the
language models). A CRATE image processor is exported the same way (``preprocessor_config.json`` ``auto_map``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import shutil
from pathlib import Path

__all__ = ["TASK_AUTO_CLASSES", "RemoteCodeExportError", "export_remote_code"]

PACKAGE = "whitebox_hf"

# The Auto classes whose registrations are mirrored into ``auto_map`` (AutoModel first).
TASK_AUTO_CLASSES = (
    "AutoModel",
    "AutoModelForImageClassification",
    "AutoModelForCausalLM",
    "AutoModelForMaskedImageModeling",
)

# Files of the source folder that are not carried over.
SKIPPED_SUFFIXES = (".py", ".pyc", ".bin", ".pt", ".pth", ".ckpt")

HEADER = ("# Vendored from `{module}` by `whitebox-hf export --remote-code` (whitebox_hf {version}). Only import\n"
          "# statements were rewritten so that this folder needs no whitebox_hf install. Do not edit by hand.\n")


class RemoteCodeExportError(RuntimeError):
    """The folder cannot be exported (unknown architecture, an import pattern the vendoring does not handle)."""


def _spec(module_name: str):
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise RemoteCodeExportError(f"cannot find module {module_name!r}")
    return spec


def _is_package(module_name: str) -> bool:
    return _spec(module_name).submodule_search_locations is not None


def _package_of(module_name: str) -> str:
    return module_name if _is_package(module_name) else module_name.rpartition(".")[0]


def _absolute(node: ast.ImportFrom, module_name: str) -> str:
    if node.level == 0:
        return node.module
    return importlib.util.resolve_name("." * node.level + (node.module or ""), _package_of(module_name))


def _is_ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


class _Vendor:
    """Copies whitebox_hf modules into ``out`` as flat modules with rewritten imports."""

    def __init__(self, out: Path):
        self.out = out
        self.flat: dict[str, str] = {}  # dotted module name -> flat module name in ``out``
        self.pending: list[str] = []

    def flat_name(self, module_name: str) -> str:
        """The module's file name (without .py) in the export, reserving it on first use."""
        if module_name not in self.flat:
            base = module_name.rpartition(".")[2]
            if base in self.flat.values() or base == "__init__":
                base = module_name[len(PACKAGE) + 1:].replace(".", "_")
            self.flat[module_name] = base
            self.pending.append(module_name)
        return self.flat[module_name]

    def origin(self, module_name: str, name: str, seen=()) -> tuple[str, str]:
        """(defining module, name there) of ``name`` imported from ``module_name`` (follows __init__ re-exports)."""
        if (module_name, name) in seen:
            raise RemoteCodeExportError(f"import cycle while resolving {module_name}.{name}")
        if not _is_package(module_name):
            return module_name, name
        tree = ast.parse(Path(_spec(module_name).origin).read_text(encoding="utf-8"))
        # ast.walk, not tree.body: a lazy package __init__ states its re-exports under `if TYPE_CHECKING:`.
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        source = _absolute(node, module_name)
                        if not _is_ours(source):
                            raise RemoteCodeExportError(
                                f"{module_name}.{name} re-exports a non-whitebox_hf name; import it from {source}")
                        return self.origin(source, alias.name, (*seen, (module_name, name)))
        submodule = f"{module_name}.{name}"
        if importlib.util.find_spec(submodule) is not None:
            raise RemoteCodeExportError(
                f"`from {module_name} import {name}` imports a module; the remote-code export needs names "
                f"(write `from {submodule} import ...`)")
        raise RemoteCodeExportError(f"{name!r} is defined in the package __init__ of {module_name}; move it to a "
                                    f"module so that it can be vendored")

    def rewrite(self, module_name: str) -> str:
        source = Path(_spec(module_name).origin).read_text(encoding="utf-8")
        tree = ast.parse(source)
        lines = source.splitlines(keepends=True)
        edits = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(_is_ours(alias.name) for alias in node.names):
                raise RemoteCodeExportError(f"{module_name}, line {node.lineno}: `import {PACKAGE}...` cannot be "
                                            f"vendored; use `from ... import name`")
            if not isinstance(node, ast.ImportFrom):
                continue
            source_module = _absolute(node, module_name)
            if not _is_ours(source_module):
                continue
            groups: dict[str, list[str]] = {}
            for alias in node.names:
                if alias.name == "*":
                    raise RemoteCodeExportError(f"{module_name}, line {node.lineno}: star imports cannot be vendored")
                defining, original = self.origin(source_module, alias.name)
                target = self.flat_name(defining)
                bound = alias.asname or alias.name
                groups.setdefault(target, []).append(original if bound == original else f"{original} as {bound}")
            indent = " " * node.col_offset
            text = "".join(f"{indent}from .{target} import {', '.join(names)}\n" for target, names in groups.items())
            edits.append((node.lineno, node.end_lineno, text))
        for start, end, text in sorted(edits, reverse=True):
            lines[start - 1:end] = [text]
        from .. import __version__

        return HEADER.format(module=module_name, version=__version__) + "".join(lines)

    def run(self) -> None:
        while self.pending:
            module_name = self.pending.pop(0)
            code = self.rewrite(module_name)
            compile(code, f"{self.flat[module_name]}.py", "exec")
            (self.out / f"{self.flat[module_name]}.py").write_text(code, encoding="utf-8")


def _module_of(cls) -> str:
    module = inspect.getmodule(cls)
    if module is None or not _is_ours(module.__name__):
        raise RemoteCodeExportError(f"{cls.__name__} is not a whitebox_hf class")
    return module.__name__


def _registered(auto_class_name: str, config_class):
    import transformers

    mapping = getattr(transformers, auto_class_name)._model_mapping
    try:
        return mapping[config_class]
    except KeyError:
        return None


def export_remote_code(model_folder, out_folder, overwrite: bool = False) -> dict:
    """Write ``out_folder``: the model's files, ``auto_map`` in its config and the vendored modeling code.

    Args:
        model_folder: a folder written by ``save_pretrained`` of a whitebox_hf model (safetensors weights).
        out_folder: where to write; must not exist or be empty unless ``overwrite``.
        overwrite: replace the contents of an existing ``out_folder``.

    Returns:
        The ``auto_map`` written into ``config.json``.

    Raises:
        FileNotFoundError: no ``config.json`` or no safetensors weights in ``model_folder``.
        FileExistsError: ``out_folder`` holds files and ``overwrite`` is False.
        RemoteCodeExportError: the architecture is not a whitebox_hf one.
    """
    import transformers

    from .. import models  # noqa: F401  (registers the architectures)

    model_folder, out = Path(model_folder), Path(out_folder)
    config_path = model_folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; export a folder written by save_pretrained")
    if not any(model_folder.glob("*.safetensors")):
        raise FileNotFoundError(f"no *.safetensors weights in {model_folder}")
    if out.resolve() == model_folder.resolve():
        raise FileExistsError("the output folder must differ from the model folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    config_dict = json.loads(config_path.read_text())
    model_type = config_dict.get("model_type")
    try:
        config_class = transformers.CONFIG_MAPPING[model_type]
    except KeyError:
        raise RemoteCodeExportError(f"unknown model_type {model_type!r} in {config_path}") from None
    if not _is_ours(config_class.__module__):
        raise RemoteCodeExportError(f"model_type {model_type!r} is a transformers architecture; it needs no "
                                    f"remote code")

    vendor = _Vendor(out)
    auto_map = {"AutoConfig": f"{vendor.flat_name(_module_of(config_class))}.{config_class.__name__}"}
    model_classes = []
    for auto_name in TASK_AUTO_CLASSES:
        model_class = _registered(auto_name, config_class)
        if model_class is not None:
            auto_map[auto_name] = f"{vendor.flat_name(_module_of(model_class))}.{model_class.__name__}"
            model_classes.append(model_class.__name__)
    architectures = config_dict.get("architectures") or []
    missing = [name for name in architectures if name not in model_classes]
    if "AutoModel" not in auto_map or missing:
        raise RemoteCodeExportError(f"{model_type}: architectures {missing or architectures} are not registered "
                                    f"with {', '.join(TASK_AUTO_CLASSES)}")

    for path in sorted(model_folder.iterdir()):
        if path.is_file() and path.suffix not in SKIPPED_SUFFIXES and path.name != "config.json":
            shutil.copy2(path, out / path.name)

    preprocessor = out / "preprocessor_config.json"
    if preprocessor.is_file():
        processor_dict = json.loads(preprocessor.read_text())
        processor_name = processor_dict.get("image_processor_type")
        processor_class = getattr(importlib.import_module(PACKAGE), processor_name or "", None)
        if processor_class is not None and _is_ours(processor_class.__module__):
            entry = f"{vendor.flat_name(_module_of(processor_class))}.{processor_class.__name__}"
            processor_dict["auto_map"] = {"AutoImageProcessor": entry}
            preprocessor.write_text(json.dumps(processor_dict, indent=2, sort_keys=True) + "\n")
            auto_map["AutoImageProcessor"] = entry

    vendor.run()
    config_dict["auto_map"] = auto_map
    (out / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
    readme = out / "README.md"
    if readme.is_file():
        note = ("\n\n## Without whitebox_hf\n\nThis folder carries its own modeling code (`auto_map` in `config.json`), "
                "so it loads with transformers alone:\n\n```python\nfrom transformers import "
                f"{architectures_auto(auto_map)}\n\nmodel = {architectures_auto(auto_map)}.from_pretrained("
                "\"path/to/this/folder\", trust_remote_code=True)\n```\n")
        readme.write_text(readme.read_text(encoding="utf-8").rstrip("\n") + note, encoding="utf-8")
    return auto_map


def architectures_auto(auto_map: dict) -> str:
    """The most specific Auto class of ``auto_map`` (the task one when there is one)."""
    tasks = [name for name in auto_map if name.startswith("AutoModelFor")]
    return tasks[0] if tasks else "AutoModel"
