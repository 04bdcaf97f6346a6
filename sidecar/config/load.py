"""Read a config file: strict YAML (no duplicate keys), every problem at once as
``file: dotted.path: message``, relative paths resolved against the file's directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from sidecar.config.model import SidecarConfig
from sidecar.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (PyYAML silently keeps the last)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: let the normal constructor report it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=True))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | Path) -> SidecarConfig:
    """Read, parse and validate the YAML config at `path`.

    Raises:
        ConfigError: with every problem found (unreadable file, YAML syntax, unknown keys, bad
            values, cross-field rules), one line each.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(name, [f"{name}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, [f"{name}: cannot read: {exc}"]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506  # _StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(name, [_yaml_problem(name, exc)]) from None
    if data is None:
        raise ConfigError(name, [f"{name}: the file is empty; expected a mapping starting with `version: 1`"])
    if not isinstance(data, dict):
        raise ConfigError(
            name, [f"{name}: the top level must be a mapping of keys, got {type(data).__name__}"]
        )
    try:
        config = SidecarConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(name, [_problem_line(name, err, data) for err in exc.errors()]) from None
    return resolve_paths(config, Path(path).resolve().parent)


def resolve_paths(config: SidecarConfig, base_dir: Path) -> SidecarConfig:
    """`config` with every relative path made absolute against `base_dir` (the config file's
    directory) and `~` expanded: a server started by an MCP host from `/` or the user's home and
    the operator's commands run from anywhere must meet on the same journal file."""
    journal = Path(config.journal.path).expanduser()
    if not journal.is_absolute():
        journal = base_dir / journal
    resolved = str(journal.resolve())
    if resolved == config.journal.path:
        return config
    return config.model_copy(update={"journal": config.journal.model_copy(update={"path": resolved})})


def _yaml_problem(name: str, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return f"{name}: line {mark.line + 1}, column {mark.column + 1}: YAML error: {what}{context}"
    return f"{name}: YAML error: {exc}"


def _problem_line(name: str, err: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    where = ".".join(str(part) for part in loc) or "(top level)"
    kind = err.get("type", "")
    message = str(err.get("msg", "invalid"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        message = "unknown key" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    elif kind == "missing":
        message = "required key is missing" if message == "Field required" else message
    symbol = _symbol_hint(loc, data)
    return f"{name}: {where}: {message}{symbol}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping at `loc` (for 'unknown key' messages)."""
    model: Any = SidecarConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = (
            model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        )
        if field is None:
            return []
        model = _model_of(field.annotation)
        if model is None:
            return []
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _symbol_hint(loc: tuple[Any, ...], data: Mapping[str, Any]) -> str:
    if len(loc) < 2 or loc[0] != "symbols" or not isinstance(loc[1], int):
        return ""
    symbols = data.get("symbols")
    if (
        not isinstance(symbols, list)
        or not 0 <= loc[1] < len(symbols)
        or not isinstance(symbols[loc[1]], dict)
    ):
        return ""
    entry = symbols[loc[1]]
    label = " ".join(str(entry[k]) for k in ("category", "symbol") if isinstance(entry.get(k), str))
    return f" [{label}]" if label else ""
