"""kubeadm's ``--patches`` directory (util/patches/patches.go), applied to a target document.

Reads: the patches directory, a path on the machine running kubeboot (kubeadm's ``--patches`` /
``patches.directory``), never under a node root. Writes nothing: ``apply_patches`` returns the patched copy.

Files are ``target[suffix][+patchtype].{json|yaml}``, target one of ``constants.PATCH_TARGETS``, patch
type ``strategic`` (default), ``merge`` (RFC 7386) or ``json`` (RFC 6902). The directory is walked like
filepath.Walk: lexical order, sub-directories descended in place, so patches for one target apply in
suffix order. A file may hold several YAML/JSON documents (``---``), each one patch. Files with another
extension or an unknown target are reported and ignored; an unknown ``+type`` is an error, as in kubeadm.
Strategic merge patches follow apimachinery's strategicpatch for the list fields of ``corev1.Pod`` that
declare a merge key (``tasks.smp``); for any other target (``kubeletconfiguration``) every list is
replaced, which is what a strategic patch does to a type without patch metadata.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubeboot.config import constants as c
from kubeboot.tasks import smp
from kubeboot.tasks.errors import PermanentError

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = {"json": JSON_PATCH, "merge": MERGE_PATCH, "strategic": STRATEGIC_PATCH, "": STRATEGIC_PATCH}
PATCH_TYPE_NAMES = ("json", "merge", "strategic")
KNOWN_EXTENSIONS = ("json", "yaml")
_EXTENSION = re.compile(r".+\.(json|yaml)$")
_DOC_SEPARATOR = re.compile(r"^---\s*$", re.MULTILINE)

Out = Callable[[str], None]


@dataclass(frozen=True)
class PatchSet:
    target: str
    patch_type: str  # a PATCH_TYPES value
    patches: tuple[Any, ...]


def go_list(items: list[str]) -> str:
    """Go's ``%v`` of a []string."""
    return "[" + " ".join(items) + "]"


class _Loader(yaml.SafeLoader):
    """YAML as sigs.k8s.io/yaml reads it into JSON: timestamps stay strings."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_filename(name: str, targets: tuple[str, ...]) -> tuple[str, str] | str:
    """(target, patch type), or the reason the file is ignored; PermanentError on an unknown ``+type``."""
    if not _EXTENSION.match(name):
        return f"the file extension must be one of {go_list(list(KNOWN_EXTENSIONS))}"
    pattern = rf"^({'|'.join(map(re.escape, targets))})([^.+\n]*)?(\+)?({'|'.join(PATCH_TYPE_NAMES)})?"
    m = re.match(pattern, name)
    if m is None:
        return f"unknown target, must be one of {go_list(list(targets))}"
    if m[3] and not m[4]:
        raise PermanentError(
            f"unknown or missing patch type after '+', must be one of {go_list(list(PATCH_TYPE_NAMES))}")
    return m[1], PATCH_TYPES[m[4] or ""]


def split_documents(data: str) -> list[Any]:
    """utilyaml.YAMLReader + YAMLToJSON: one patch per non-blank document."""
    docs = []
    for chunk in _DOC_SEPARATOR.split(data):
        if chunk.strip():
            docs.append(yaml.load(chunk, Loader=_Loader))  # a SafeLoader subclass
    return docs


def _walk(root: Path) -> list[Path]:
    """filepath.Walk's visiting order: entries sorted by name, directories descended where they sort."""
    files: list[Path] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            files.extend(_walk(Path(entry.path)))
        else:
            files.append(Path(entry.path))
    return files


def read_patch_sets(patches_dir: Path, out: Out, targets: tuple[str, ...] = c.PATCH_TARGETS) -> list[PatchSet]:
    """getPatchSetsFromPath, printing kubeadm's ``[patches]`` lines about the files found."""
    out(f'[patches] Reading patches from path "{patches_dir}"')
    try:
        if not patches_dir.is_dir():
            reason = "not a directory" if patches_dir.exists() else "no such file or directory"
            raise PermanentError(f"lstat {patches_dir}: {reason}")
        sets, found, ignored = [], [], []
        for path in _walk(patches_dir):
            parsed = parse_filename(path.name, targets)
            if isinstance(parsed, str):
                out(f'[patches] Ignoring file "{path.name}": {parsed}')
                ignored.append(path.name)
                continue
            data = path.read_text()
            if not data:
                out(f'[patches] Ignoring empty file: "{path.name}"')
                ignored.append(path.name)
                continue
            try:
                docs = split_documents(data)
            except yaml.YAMLError as e:
                raise PermanentError(f"could not convert patch to JSON:\n{data}\n: {e}") from e
            sets.append(PatchSet(parsed[0], parsed[1], tuple(docs)))
            found.append(path.name)
    except (PermanentError, OSError) as e:
        raise PermanentError(f'could not list patch files for path "{patches_dir}": {e}') from e
    if found:
        out(f"[patches] Found the following patch files: {go_list(found)}")
    if ignored:
        out(f"[patches] Ignored the following files: {go_list(ignored)}")
    return sets


def apply_patches(target: str, obj: dict[str, Any], patches_dir: Path, out: Out, *,
                  announced: set[str] | None = None) -> dict[str, Any]:
    """Apply every patch for ``target`` found in ``patches_dir``, in file order, to a copy of ``obj``.

    kubeadm reads a patches directory once per process and says so once; pass the same ``announced``
    set for every call of one run to print the "Reading patches" lines once, like kubeadm.
    """
    if target not in c.PATCH_TARGETS:
        raise PermanentError(f'unknown patch target name "{target}", must be one of {go_list(list(c.PATCH_TARGETS))}')
    key = str(patches_dir)
    quiet = announced is not None and key in announced
    sets = read_patch_sets(patches_dir, (lambda _line: None) if quiet else out)
    if announced is not None:
        announced.add(key)
    doc: Any = copy.deepcopy(obj)
    for ps in sets:
        if ps.target != target:
            continue
        for patch in ps.patches:
            try:
                doc = apply_one(ps.patch_type, doc, patch, target)
            except (PatchError, TypeError, KeyError, IndexError, ValueError) as e:
                raise PermanentError(
                    f'could not apply the following patch of type "{ps.patch_type}" to target "{target}":\n'
                    f"{json.dumps(patch, sort_keys=True, separators=(',', ':'))}\n: {e}") from e
            out(f'[patches] Applied patch of type "{ps.patch_type}" to target "{target}"')
    if not isinstance(doc, dict):
        raise PermanentError(f'patching target "{target}" produced a {type(doc).__name__}, not an object')
    return doc


def apply_one(patch_type: str, doc: Any, patch: Any, target: str) -> Any:
    if patch_type == JSON_PATCH:
        return json_patch(doc, patch)
    if patch_type == MERGE_PATCH:
        return merge_patch(doc, patch)
    schema = smp.POD if target in c.CONTROL_PLANE_COMPONENTS or target == c.ETCD else {}
    return smp.strategic_merge(doc, patch, schema)


class PatchError(Exception):
    pass


# --- RFC 7386 JSON merge patch ----------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# --- RFC 6902 JSON patch (evanphx/json-patch v4 semantics, negative indices included) ----------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(token: str, size: int, *, for_add: bool = False) -> int:
    if token == "-" and for_add:
        return size
    try:
        i = int(token)
    except ValueError:
        raise PatchError(f"invalid array index {token!r}") from None
    if i < 0:
        i += size
    if i < 0 or i > size or (i == size and not for_add):
        raise PatchError(f"array index {token} out of bounds")
    return i


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for t in tokens[:-1]:
        node = node[_index(t, len(node))] if isinstance(node, list) else node[t]
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    return parent[_index(tokens[-1], len(parent))] if isinstance(parent, list) else parent[tokens[-1]]


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    if isinstance(parent, list):
        parent.insert(_index(tokens[-1], len(parent), for_add=True), value)
    elif isinstance(parent, dict):
        parent[tokens[-1]] = value
    else:
        raise PatchError(f"cannot add to {path}: parent is not a container")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    parent = _parent(doc, tokens)
    if isinstance(parent, list):
        del parent[_index(tokens[-1], len(parent))]
    elif tokens[-1] in parent:
        del parent[tokens[-1]]
    else:
        raise PatchError(f"remove operation does not apply: doc is missing path: {path}")
    return doc


def _replace(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    if isinstance(parent, list):
        parent[_index(tokens[-1], len(parent))] = value
    elif tokens[-1] in parent:
        parent[tokens[-1]] = value
    else:
        raise PatchError(f"replace operation does not apply: doc is missing key: {path}")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            doc = _replace(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, op["from"]))
            if kind == "move":
                doc = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"unexpected kind of operation: {kind!r}")
    return doc
