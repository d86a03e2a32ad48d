"""A file-discovery join's kubeconfig: read where the join is built, carried in the run to the node.

kubeadm reads ``discovery.file.kubeConfigPath`` on the machine it joins, because it runs there. A
kubeboot join is built on one machine (``submit join``) and run by the node's worker on another, so the
file is read once, when the JoinConfiguration is first built from the user's flags or file, and its text
travels inside the run's config, encrypted with the rest of it (it may hold credentials). The node's
worker rebuilds the JoinConfig from the run and never looks for the path. An ``https://`` URL is not
read here: the node fetches it, as kubeadm does.

Reads: the discovery file (a local path). Writes: nothing.
Run documents (``run_documents`` / ``split_run_documents``): the JoinConfiguration, then for a local
discovery file one document ``{apiVersion: kubeboot.dev/v1alpha1, kind: DiscoveryFile, kubeConfigPath,
kubeConfig}``. That kind is accepted only from a run's documents, never from a user's file.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import yaml

from kubeboot.config import constants as c
from kubeboot.config.errors import ConfigError
from kubeboot.config.join import JOIN

if TYPE_CHECKING:
    from kubeboot.config.join import JoinConfig

API: Final = c.KUBEBOOT_API_VERSION
KIND: Final = "DiscoveryFile"
FIELD: Final = "discovery.file.kubeConfigPath"
# kubeadm's file discovery (ValidateConfigInfo), checked here so a wrong file is exit 2 before any run.
NO_CLUSTER: Final = "the provided kubeconfig file must have at least one Cluster defined"


def is_local(path: str) -> bool:
    """A path on this machine, not a URL (kubeadm: a value without a scheme is a file)."""
    return bool(path) and not urlsplit(path).scheme


def read_discovery_file(path: str, source: str) -> str:
    """The discovery kubeconfig's text; ``ConfigError`` naming the file when it cannot be used."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f'"{path}": cannot read the discovery file: {reason}', file=source, document=JOIN,
                          field=FIELD) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f'"{path}": the discovery file is not a kubeconfig: {getattr(e, "problem", None) or e}',
                          file=source, document=JOIN, field=FIELD) from None
    clusters = doc.get("clusters") if isinstance(doc, dict) else None
    if not isinstance(clusters, list) or not clusters:
        raise ConfigError(f'"{path}": {NO_CLUSTER}', file=source, document=JOIN, field=FIELD)
    return text


def with_discovery_file(cfg: JoinConfig) -> JoinConfig:
    """``cfg`` carrying its local discovery file's text (unchanged for token discovery or a URL)."""
    f = cfg.join.discovery.file
    if f is None or not is_local(f.kubeConfigPath) or cfg.discovery_kubeconfig is not None:
        return cfg
    return dataclasses.replace(cfg, discovery_kubeconfig=read_discovery_file(f.kubeConfigPath, cfg.source))


def run_documents(cfg: JoinConfig) -> list[dict[str, Any]]:
    """What a run stores (encrypted) of this join: the JoinConfiguration and the carried discovery file."""
    from kubeboot.config.models import dump

    docs = [dump(cfg.join)]
    f = cfg.join.discovery.file
    if f is not None and cfg.discovery_kubeconfig is not None:
        docs.append({"apiVersion": API, "kind": KIND, "kubeConfigPath": f.kubeConfigPath,
                     "kubeConfig": cfg.discovery_kubeconfig})
    return docs


def split_run_documents(docs: list[dict[str, Any]], source: str) -> tuple[list[dict[str, Any]], str | None]:
    """A run's documents without the carried discovery file, and its text (None when there is none).

    A run whose JoinConfiguration names a local discovery file but carries no copy is refused: reading
    the path here would read the wrong machine's file."""
    carried = [d for d in docs if d.get("apiVersion") == API and d.get("kind") == KIND]
    rest = [d for d in docs if not (d.get("apiVersion") == API and d.get("kind") == KIND)]
    text = str(carried[0].get("kubeConfig") or "") if carried else None
    join = next((d for d in rest if d.get("kind") == JOIN), {})
    path = str(((join.get("discovery") or {}).get("file") or {}).get("kubeConfigPath") or "")
    if text is None and is_local(path):
        raise ConfigError(f'"{path}": the run carries no copy of the discovery file (it is read where the join '
                          "is submitted); submit the join again", file=source, document=JOIN, field=FIELD)
    return rest, text
