"""Vendoring whitebox_hf source for remote code: follow a module's imports of the package to the modules that define
the imported names, and rewrite those imports so that the code runs where whitebox_hf is not installed.

Two layouts use it:

* `whitebox_hf.hub.export_remote_code` (transformers): every module of the closure becomes one flat file of the
  exported folder and ``from ...nn import ISTA`` becomes ``from .sparse_coding import ISTA``;
* `bundle_module` (diffusers pipelines and their components): the closure becomes **one** file. diffusers fetches a
  custom component's code as the single file ``<component>/<module>.py`` (the Hub download keeps nothing else of a
  component folder), so a component module cannot have neighbours.

Both keep the code of every module as it is and only edit import statements, through the AST.
"""

from __future__ import annotations

import ast
import builtins
import importlib.metadata
import importlib.util
import re
from pathlib import Path

__all__ = ["PACKAGE", "RemoteCodeExportError", "bundle_module", "defining_module", "is_ours"]

PACKAGE = "whitebox_hf"

BUNDLE_HEADER = (
    "# Bundled from `{module}` by whitebox_hf {version}, with the whitebox_hf modules it imports ({deps}).\n"
    "# Only import statements were edited (the package's own imports removed), so this file needs no whitebox_hf\n"
    "# install. Do not edit by hand.\n"
)


class RemoteCodeExportError(RuntimeError):
    """The code cannot be vendored (unknown architecture, an import pattern the vendoring does not handle)."""


def _spec(module_name: str):
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise RemoteCodeExportError(f"cannot find module {module_name!r}")
    return spec


def source_of(module_name: str) -> str:
    return Path(_spec(module_name).origin).read_text(encoding="utf-8")


def _is_package(module_name: str) -> bool:
    return _spec(module_name).submodule_search_locations is not None


def _package_of(module_name: str) -> str:
    return module_name if _is_package(module_name) else module_name.rpartition(".")[0]


def absolute_module(node: ast.ImportFrom, module_name: str) -> str:
    """The absolute module name of ``node`` (an import statement of ``module_name``)."""
    if node.level == 0:
        return node.module
    return importlib.util.resolve_name("." * node.level + (node.module or ""), _package_of(module_name))


def is_ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def defining_module(module_name: str, name: str, seen=()) -> tuple[str, str]:
    """(defining module, name there) of ``name`` imported from ``module_name`` (follows ``__init__`` re-exports).

    Raises:
        RemoteCodeExportError: ``name`` is a module, is defined in a package ``__init__``, or re-exported from
            another library.
    """
    if (module_name, name) in seen:
        raise RemoteCodeExportError(f"import cycle while resolving {module_name}.{name}")
    if not _is_package(module_name):
        return module_name, name
    tree = ast.parse(source_of(module_name))
    # ast.walk, not tree.body: a lazy package __init__ states its re-exports under `if TYPE_CHECKING:`.
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = absolute_module(node, module_name)
                    if not is_ours(source):
                        raise RemoteCodeExportError(
                            f"{module_name}.{name} re-exports a non-whitebox_hf name; import it from {source}")
                    return defining_module(source, alias.name, (*seen, (module_name, name)))
    submodule = f"{module_name}.{name}"
    if importlib.util.find_spec(submodule) is not None:
        raise RemoteCodeExportError(
            f"`from {module_name} import {name}` imports a module; the remote-code export needs names "
            f"(write `from {submodule} import ...`)")
    raise RemoteCodeExportError(f"{name!r} is defined in the package __init__ of {module_name}; move it to a "
                                f"module so that it can be vendored")


def package_imports(module_name: str, tree: ast.Module):
    """Yield ``(node, [(bound name, defining module, original name), ...])`` for every import of whitebox_hf in
    ``tree`` (module level or nested).

    Raises:
        RemoteCodeExportError: ``import whitebox_hf...`` or a star import of the package.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(is_ours(alias.name) for alias in node.names):
            raise RemoteCodeExportError(f"{module_name}, line {node.lineno}: `import {PACKAGE}...` cannot be "
                                        f"vendored; use `from ... import name`")
        if not isinstance(node, ast.ImportFrom):
            continue
        source_module = absolute_module(node, module_name)
        if not is_ours(source_module):
            continue
        names = []
        for alias in node.names:
            if alias.name == "*":
                raise RemoteCodeExportError(f"{module_name}, line {node.lineno}: star imports cannot be vendored")
            defining, original = defining_module(source_module, alias.name)
            names.append((alias.asname or alias.name, defining, original))
        yield node, names


def _bindings(module_name: str, statements, imports: dict) -> dict[str, tuple]:
    """Module-level names bound by ``statements`` (descending into ``if``/``try``/``with`` blocks), each with a key
    saying *what* it is bound to: ``("ours", defining module, name)`` for whitebox_hf objects (defined here or
    imported: ``imports`` maps the id of each whitebox_hf import statement to its `package_imports` names),
    ``("external", dotted name)`` for imports of other libraries. Two modules may share a name only with equal keys."""
    bound: dict[str, tuple] = {}
    for node in statements:
        if id(node) in imports:
            for name, defining, original in imports[id(node)]:
                bound[name] = ("ours", defining, original)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound[node.name] = ("ours", module_name, node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        bound[leaf.id] = ("ours", module_name, leaf.id)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                bound[name] = ("external", alias.name if alias.asname else name)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if node.level:  # a relative import that is not whitebox_hf's cannot occur in the package
                    key = ("ours", module_name, alias.name)
                else:
                    key = ("external", f"{node.module}.{alias.name}")
                bound[alias.asname or alias.name] = key
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            children = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                children.extend(handler.body)
            bound.update(_bindings(module_name, children, imports))
    return bound


def bundle_module(module_name: str) -> str:
    """One self-contained Python source for ``module_name`` (a whitebox_hf module): the modules of whitebox_hf it
    imports, transitively, come first, in an order where every module follows those it imports at module level, and
    then the module itself; every import of whitebox_hf is removed (a renaming import becomes an assignment), as are
    ``__all__`` and the docstrings of all but ``module_name``, whose docstring opens the file.

    Two modules that bind one name to different things at module level (two helpers of the same name) would see each
    other's in one file: the name is renamed ``_<module>_<name>`` in the module that does not come first (never in
    ``module_name`` itself), consistently, including the imports of it by other modules.

    Raises:
        RemoteCodeExportError: the module is not whitebox_hf's, an import pattern cannot be vendored (see
            `package_imports`), two modules import each other at module level, or a clashing name cannot be renamed
            safely (it is also a parameter or keyword-argument name there, or the new name is taken).
    """
    if not is_ours(module_name):
        raise RemoteCodeExportError(f"{module_name} is not a whitebox_hf module")
    trees: dict[str, ast.Module] = {}
    imports: dict[str, dict] = {}
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            raise RemoteCodeExportError(f"module-level import cycle: {' -> '.join((*path, name))}")
        state[name] = "active"
        tree = trees.setdefault(name, ast.parse(source_of(name)))
        imports[name] = {id(node): names for node, names in package_imports(name, tree)}
        top_level = {id(node) for node in tree.body}
        nested = []
        for node in ast.walk(tree):
            for _, defining, _ in imports[name].get(id(node), ()):
                if defining == name:
                    continue
                # Module-level imports must run first; imports inside functions only need the module somewhere.
                if id(node) in top_level:
                    visit(defining, (*path, name))
                else:
                    nested.append(defining)
        state[name] = "done"
        order.append(name)
        for defining in nested:
            if state.get(defining) is None:
                visit(defining, ())

    visit(module_name, ())
    # The root goes last, after everything it imports, even lazily, and keeps all its names.
    order.remove(module_name)
    order.append(module_name)
    ranked = [module_name, *order[:-1]]

    bindings = {name: _bindings(name, [n for n in trees[name].body if not _is_all(n)], imports[name])
                for name in order}
    used = {leaf.id for tree in trees.values() for leaf in ast.walk(tree) if isinstance(leaf, ast.Name)}
    used |= {name for bound in bindings.values() for name in bound}
    renames: dict[str, dict[str, str]] = {name: {} for name in order}  # module -> {old: new}
    renamed_objects: dict[tuple[str, str], str] = {}  # (defining module, name) -> its name in the bundle
    owners: dict[str, tuple] = {}
    for name in ranked:
        for bound, key in bindings[name].items():
            if bound not in owners:
                owners[bound] = key
                continue
            if owners[bound] == key:
                continue
            new = f"_{name.rpartition('.')[2]}_{bound}"
            tree = trees[name]
            if new in used or any(isinstance(node, (ast.arg, ast.keyword)) and node.arg == bound
                                  for node in ast.walk(tree)) or any(isinstance(node, (ast.Global, ast.Nonlocal))
                                                                     for node in ast.walk(tree)):
                raise RemoteCodeExportError(f"{name} and another bundled module both define {bound!r} at module "
                                            f"level, and it cannot be renamed safely in {name}; rename it there")
            used.add(new)
            renames[name][bound] = new
            if key[0] == "ours" and key[1] == name:
                renamed_objects[(name, bound)] = new
    for bound in owners:
        if hasattr(builtins, bound):
            definer = next(name for name in ranked if bound in bindings[name])
            if bindings[definer][bound][0] == "ours":
                users = [name for name in order if name != definer and bound not in bindings[name]
                         and any(isinstance(leaf, ast.Name) and leaf.id == bound for leaf in ast.walk(trees[name]))]
                if users:
                    raise RemoteCodeExportError(f"{definer} shadows the builtin {bound!r}, which {users[0]} uses")

    # The installed distribution's version: importing the package root from here would point the layers upward.
    __version__ = importlib.metadata.version(PACKAGE)

    root_tree = trees[module_name]
    parts = [BUNDLE_HEADER.format(module=module_name, version=__version__,
                                  deps=", ".join(order[:-1]) or "none")]
    if ast.get_docstring(root_tree, clean=False) is not None:
        parts.append(ast.get_source_segment(source_of(module_name), root_tree.body[0]) + "\n")
    if any(_has_future_annotations(trees[name]) for name in order):
        parts.append("\nfrom __future__ import annotations\n")
    for name in order:
        parts.append(f"\n\n# {'-' * 40} {name}\n")
        parts.append(_strip(name, trees[name], imports[name], renames[name], renamed_objects))
    code = "".join(parts)
    try:
        tree = ast.parse(code, f"{module_name.rpartition('.')[2]}.py")
    except SyntaxError as error:  # pragma: no cover - a removed import left a block without statements
        raise RemoteCodeExportError(f"the bundle of {module_name} does not compile: {error}") from error
    _check_import_scan(module_name, code, tree)
    return code


# What diffusers and transformers scan a remote module's text with (`check_imports`): every match is imported.
_IMPORT_LINES = re.compile(r"^\s*(?:import\s+(\S+)\s*$|from\s+(\S+)\s+import)", flags=re.MULTILINE)


def _check_import_scan(module_name: str, code: str, tree: ast.Module) -> None:
    """The libraries scanned from the text are the ones the code imports: a docstring line that reads like an
    import (``    from whitebox_hf import ...``) would make the loading library import that package.

    Raises:
        RemoteCodeExportError: such a line.
    """
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    for match in _IMPORT_LINES.finditer(code):
        name = (match.group(1) or match.group(2)).split(".")[0]
        if name and not name.startswith(".") and name not in imported:
            line = code[:match.start()].count("\n") + 1
            raise RemoteCodeExportError(f"the bundle of {module_name}, line {line}: {match.group(0).strip()!r} reads "
                                        f"like an import of {name!r} to the remote-code loaders; reword that text")


def _is_all(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)


def _has_future_annotations(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names) for node in tree.body)


def _strip(module_name: str, tree: ast.Module, imports: dict, renames: dict[str, str],
           renamed_objects: dict[tuple[str, str], str]) -> str:
    """The source of ``module_name`` without its docstring, ``from __future__`` imports, ``__all__`` and imports of
    whitebox_hf (``from x import a as b`` becomes ``b = a``; an emptied nested block gets ``pass``), with the names
    in ``renames`` renamed."""
    lines = source_of(module_name).splitlines(keepends=True)
    # Renames first: they keep every line where it is. ast columns count UTF-8 bytes.
    spots: dict[int, list[tuple[int, int, str]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in renames:
            spots.setdefault(node.lineno, []).append((node.col_offset, node.end_col_offset, renames[node.id]))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in renames:
            line = lines[node.lineno - 1].encode("utf-8")
            start = line.index(node.name.encode("utf-8"), node.col_offset)
            spots.setdefault(node.lineno, []).append((start, start + len(node.name.encode("utf-8")),
                                                      renames[node.name]))
    for lineno, edits in spots.items():
        line = lines[lineno - 1].encode("utf-8")
        for start, end, new in sorted(edits, reverse=True):
            line = line[:start] + new.encode("utf-8") + line[end:]
        lines[lineno - 1] = line.decode("utf-8")

    edits = []
    if ast.get_docstring(tree, clean=False) is not None:
        edits.append((tree.body[0].lineno, tree.body[0].end_lineno, ""))
    for node in tree.body:
        if (isinstance(node, ast.ImportFrom) and node.module == "__future__") or _is_all(node):
            edits.append((node.lineno, node.end_lineno, ""))
    for node in ast.walk(tree):
        if id(node) not in imports:
            continue
        indent = " " * node.col_offset
        text = ""
        for bound, defining, original in imports[id(node)]:
            target = renamed_objects.get((defining, original), original)
            local = renames.get(bound, bound)
            if local != target:
                text += f"{indent}{local} = {target}\n"
        if not text and node.col_offset:
            text = f"{indent}pass  # was an import of whitebox_hf: the names are defined in this file\n"
        edits.append((node.lineno, node.end_lineno, text))
    for start, end, text in sorted(edits, reverse=True):
        lines[start - 1:end] = [text]
    return "".join(lines).strip("\n") + "\n"
