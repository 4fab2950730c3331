"""Rendered manifests in: files, directories and stdin, as multi-document YAML or JSON.

Every problem is an `InputError` naming the file and the document (counted from 1, as
an editor shows `---`-separated documents), so a CI log points at what to fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
import yaml

STDIN = "-"
SUFFIXES = (".yaml", ".yml", ".json")
# kustomize's own files sit beside the resources in a directory; they are not objects.
KUSTOMIZE_FILES = frozenset(("kustomization.yaml", "kustomization.yml", "Kustomization"))


class InputError(ValueError):
    """A file or document that cannot be read as Kubernetes objects; str() says where."""


@dataclass(frozen=True, slots=True)
class Document:
    source: str  # a path, or "-" for stdin
    index: int  # position in its source, from 1
    item: int | None  # position inside a `kind: List`, from 1
    body: Mapping[str, Any]

    @property
    def where(self) -> str:
        item = f", item {self.item}" if self.item is not None else ""
        return f"{self.source}: document {self.index}{item}"


def read_all(arguments: Sequence[str], stdin: TextIO) -> tuple[list[Document], list[InputError]]:
    """Every object of every argument, in order, and every problem found on the way."""
    documents: list[Document] = []
    errors: list[InputError] = []
    for argument in arguments:
        try:
            sources = list(_expand(argument))
        except InputError as exc:
            errors.append(exc)
            continue
        for source in sources:
            try:
                text = _read_stdin(stdin) if source == STDIN else _read(Path(source))
                documents.extend(parse(text, source))
            except InputError as exc:
                errors.append(exc)
    return documents, errors


def parse(text: str, source: str) -> list[Document]:
    """The objects in one file's text: YAML documents, or one JSON value for *.json."""
    found: list[Document] = []
    for index, value in _values(text, source):
        where = f"{source}: document {index}"
        if value is None:
            continue  # an empty document (a leading or trailing `---`)
        body = _object(value, where)
        if body.get("kind") == "List" and isinstance(body.get("items"), list):
            for item, element in enumerate(body["items"], 1):
                found.append(
                    Document(source, index, item, _object(element, f"{where}, item {item}"))
                )
        else:
            found.append(Document(source, index, None, body))
    return found


def _expand(argument: str) -> Iterator[str]:
    if argument == STDIN:
        yield STDIN
        return
    path = Path(argument)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix in SUFFIXES and p.name not in KUSTOMIZE_FILES and p.is_file()
        )
        if not files:
            raise InputError(f"{argument}: no *.yaml, *.yml or *.json files in this directory")
        yield from (str(p) for p in files)
    elif path.exists():
        yield argument
    else:
        raise InputError(f"{argument}: no such file or directory")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None


def _read_stdin(stdin: TextIO) -> str:
    try:
        return stdin.read()
    except UnicodeDecodeError:
        raise InputError(f"{STDIN}: not UTF-8 text") from None


def _values(text: str, source: str) -> Iterator[tuple[int, object]]:
    if source.endswith(".json"):
        try:
            yield 1, orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{source}: document 1: not valid JSON: {exc}") from None
        return
    index = 0
    try:
        for index, value in enumerate(yaml.safe_load_all(text), 1):
            yield index, value
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InputError(f"{source}: document {index + 1}: {problem}{line}") from None


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where}: a {type(value).__name__}, not a Kubernetes object")
    for key in ("apiVersion", "kind"):
        if not isinstance(value.get(key), str) or not value[key]:
            raise InputError(f"{where}: not a Kubernetes object (no {key})")
    return value
