"""The one error type for bad configuration: it names the file, the document, the field and the problem."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad input. The CLI prints ``str(err)`` as one line and exits 2."""

    def __init__(self, message: str, *, file: str = "", document: str = "", field: str = "") -> None:
        self.message = message
        self.file = file
        self.document = document
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.file, self.document, self.field) if p)
        text = f"{where}: {self.message}" if where else self.message
        return " ".join(text.split())  # always one line


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the field path messages name: ``spec.nodes[3].role``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
