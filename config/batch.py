"""kubeboot's ``Batch`` document (``kubeboot.dev/v1alpha1``): many clusters bootstrapped side by side.

Reads: one YAML file. Writes: nothing. Problems are one ``ConfigError``: ``batch.yaml: Batch fleet:
spec.clusters[2]: Cluster c3: spec.nodes[0].address: node c3-cp1: ...``.

    apiVersion: kubeboot.dev/v1alpha1
    kind: Batch
    metadata: {name: fleet}
    spec:
      concurrency: 4             # clusters running at once (``--concurrency`` overrides it)
      clusters: [<Cluster>, ...] # the clusters, each a whole Cluster document
      # ... or a template and a count: every string "${index}" in the template becomes 1..count
      template: <Cluster>
      count: 100

Cluster names must be unique in a batch (each is a cluster of its own, with its own init lock), and so
must worker ids (``node.<worker id>`` queues), since the clusters run at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kubeboot.config.cluster import API_VERSION, Cluster, build_cluster
from kubeboot.config.errors import ConfigError

BATCH_KIND: Final = "Batch"
DEFAULT_CONCURRENCY: Final = 4
INDEX: Final = "${index}"
_TOP: Final = {"apiVersion", "kind", "metadata", "spec"}
_SPEC: Final = {"concurrency", "clusters", "template", "count"}


@dataclass(frozen=True)
class Batch:
    name: str
    clusters: tuple[Cluster, ...]
    concurrency: int = DEFAULT_CONCURRENCY

    def to_document(self) -> dict[str, Any]:
        """The batch as a document listing every cluster (templates expanded): what the run stores."""
        return {"apiVersion": API_VERSION, "kind": BATCH_KIND, "metadata": {"name": self.name},
                "spec": {"concurrency": self.concurrency,
                         "clusters": [c.model_dump(mode="json", exclude_none=True) for c in self.clusters]}}


def substitute(value: Any, index: int) -> Any:
    """``value`` with every ``${index}`` in its strings replaced by ``index``."""
    if isinstance(value, str):
        return value.replace(INDEX, str(index))
    if isinstance(value, list):
        return [substitute(v, index) for v in value]
    if isinstance(value, dict):
        return {substitute(k, index): substitute(v, index) for k, v in value.items()}
    return value


def _problem(message: str, file: str, name: str, field: str = "") -> ConfigError:
    return ConfigError(message, file=file, document=f"{BATCH_KIND} {name}" if name else BATCH_KIND, field=field)


def _header(raw: dict[str, Any], file: str) -> tuple[str, dict[str, Any]]:
    meta = raw.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    label = name if isinstance(name, str) else ""
    for key in raw:
        if key not in _TOP:
            raise _problem("unknown field", file, label, str(key))
    if raw.get("apiVersion") != API_VERSION:
        raise _problem(f"must be {API_VERSION} (got {raw.get('apiVersion')!r})", file, label, "apiVersion")
    if raw.get("kind") != BATCH_KIND:
        raise _problem(f"must be {BATCH_KIND} (got {raw.get('kind')!r})", file, label, "kind")
    if not label:
        raise _problem("required field is missing", file, label, "metadata.name")
    from kubeboot.config.fieldchecks import dns_subdomain

    if problem := dns_subdomain(label):
        raise _problem(problem, file, label, "metadata.name")
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        raise _problem("required field is missing (a mapping with clusters, or template and count)", file, label,
                       "spec")
    for key in spec:
        if key not in _SPEC:
            raise _problem("unknown field", file, label, f"spec.{key}")
    return label, spec


def _items(spec: dict[str, Any], file: str, name: str) -> list[tuple[str, Any]]:
    """(field path, raw Cluster document) of every cluster, templates expanded."""
    has_list, has_template = "clusters" in spec, "template" in spec
    if has_list == has_template:
        raise _problem("give either clusters, or template and count", file, name, "spec")
    if has_list:
        clusters = spec["clusters"]
        if not isinstance(clusters, list) or not clusters:
            raise _problem("must be a non-empty list of Cluster documents", file, name, "spec.clusters")
        return [(f"spec.clusters[{i}]", doc) for i, doc in enumerate(clusters)]
    count = spec.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise _problem(f"must be a positive integer (got {count!r})", file, name, "spec.count")
    template = spec["template"]
    if not isinstance(template, dict):
        raise _problem("must be a Cluster document", file, name, "spec.template")
    return [(f"spec.template (index {i})", substitute(template, i)) for i in range(1, count + 1)]


def _concurrency(spec: dict[str, Any], file: str, name: str) -> int:
    value = spec.get("concurrency", DEFAULT_CONCURRENCY)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _problem(f"must be a positive integer (got {value!r})", file, name, "spec.concurrency")
    return value


def build_batch(raw: Any, file: str) -> Batch:
    """The validated Batch of one parsed document; ``ConfigError`` on the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError("a Batch document must be a mapping", file=file)
    name, spec = _header(raw, file)
    clusters: list[Cluster] = []
    names: dict[str, str] = {}
    workers: dict[str, str] = {}
    for where, doc in _items(spec, file, name):
        cluster = build_cluster(doc, f"{file}: {BATCH_KIND} {name}: {where}")
        if cluster.name in names:
            raise _problem(f"cluster {cluster.name} is also {names[cluster.name]}: cluster names are unique in a "
                           "batch", file, name, f"{where}.metadata.name")
        names[cluster.name] = where
        for node in cluster.nodes:
            if node.worker in workers:
                raise _problem(f"cluster {cluster.name}: node {node.name}: worker {node.worker} also serves a node of "
                               f"{workers[node.worker]}: clusters of a batch run side by side, each node needs its "
                               "own worker", file, name, f"{where}.spec.nodes")
            workers[node.worker] = f"cluster {cluster.name}"
        clusters.append(cluster)
    return Batch(name=name, clusters=tuple(clusters), concurrency=_concurrency(spec, file, name))


def load_batch(path: str) -> Batch:
    from kubeboot.config.loader import _read_documents

    docs = _read_documents(Path(path))
    if len(docs) != 1:
        raise ConfigError(f"expected one {BATCH_KIND} document, found {len(docs)}", file=path)
    return build_batch(docs[0], path)


__all__ = ["BATCH_KIND", "DEFAULT_CONCURRENCY", "Batch", "build_batch", "load_batch", "substitute"]
