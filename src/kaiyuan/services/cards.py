"""Model and dataset cards: the YAML front matter of README.md, parsed safely."""

from __future__ import annotations

import math
from typing import Any

import yaml

from kaiyuan.core.errors import InvalidInputError

CARD_PATH = "README.md"
_BLANK = " \t\r"


class _CardLoader(yaml.SafeLoader):
    """Safe loading without anchors/aliases: no alias bombs when the data is re-serialised."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise InvalidInputError(
                f"YAML aliases are not allowed in card metadata (line {event.start_mark.line + 1})"
            )
        return super().compose_node(parent, index)


def _timestamp_as_text(loader: _CardLoader, node: yaml.Node) -> str:
    # Card metadata is served as JSON (`cardData`), which has no dates: keep them as written
    # (`date: 2024-01-31` stays that string) instead of building date objects.
    if not isinstance(node, yaml.ScalarNode):
        raise InvalidInputError(f"a timestamp must be a scalar (line {node.start_mark.line + 1})")
    return str(loader.construct_scalar(node))


_CardLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def front_matter(text: str) -> str | None:
    """The YAML block between the leading `---` lines, or None when the card has none.

    Lines end at LF only, as the HF clients read cards (a CR before it is YAML's business):
    `str.splitlines` would also break at U+2028, NEL or FS inside a scalar and rewrite them.
    """
    lines = text.split("\n")
    if lines[0].strip(_BLANK) != "---":
        return None
    for index in range(1, len(lines)):
        if lines[index].strip(_BLANK) == "---":
            return "\n".join(lines[1:index])
    raise InvalidInputError("card metadata starts with '---' but is never closed")


def card_body(text: str) -> str:
    """The Markdown after the front matter (the whole text when there is none or it is open)."""
    lines = text.split("\n")
    if lines[0].strip(_BLANK) != "---":
        return text
    for index in range(1, len(lines)):
        if lines[index].strip(_BLANK) == "---":
            return "\n".join(lines[index + 1 :])
    return text


def parse_card(text: str) -> dict[str, Any] | None:
    """The card metadata as a mapping; InvalidInput for malformed YAML or wrong field types."""
    block = front_matter(text)
    if block is None:
        return None
    try:
        data = yaml.load(block, Loader=_CardLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"card metadata is not valid YAML: {exc}") from None
    except RecursionError:
        raise InvalidInputError("card metadata is nested too deeply") from None
    except (ValueError, LookupError) as exc:
        # PyYAML's safe constructors raise these for values they cannot build: `!!int abc`,
        # `!!bool maybe`, `!!float ''`, an integer of more digits than Python converts.
        raise InvalidInputError(f"card metadata holds a value YAML cannot build: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInputError("card metadata must be a YAML mapping")
    _check_fields(data)
    _check_json_values(data)
    return data


def _check_fields(data: dict[Any, Any]) -> None:
    for key in data:
        if not isinstance(key, str):
            raise InvalidInputError(f"card metadata key {key!r} must be a string")
    for field in ("tags", "datasets", "language"):
        value = data.get(field)
        if value is not None and not isinstance(value, (str, list)):
            raise InvalidInputError(f"card field {field!r} must be a string or a list")
    base_model = data.get("base_model")
    if base_model is not None and not (
        isinstance(base_model, str)
        or (isinstance(base_model, list) and all(isinstance(b, str) for b in base_model))
    ):
        raise InvalidInputError("card field 'base_model' must be a repo id or a list of repo ids")
    license_id = data.get("license")
    if license_id is not None and not (
        isinstance(license_id, str)
        or (isinstance(license_id, list) and all(isinstance(v, str) for v in license_id))
    ):
        raise InvalidInputError("card field 'license' must be a string (or a list, for data)")
    if "gated" in data and data["gated"] not in GATED_VALUES:
        raise InvalidInputError("card field 'gated' must be auto, manual or false")
    form = data.get("extra_gated_fields")
    if form is not None:
        gate_form(form)


GATED_VALUES = ("auto", "manual", True, False, None)
FORM_TYPES = frozenset({"text", "checkbox", "date_picker", "country", "select"})
MAX_FORM_FIELDS = 32


def gate_form(value: object) -> dict[str, dict[str, Any]]:
    """`extra_gated_fields` as {label: {"type": ..., "options": [...]}}; InvalidInput if bad.

    Each field is a type name (`text`, `checkbox`, `date_picker`, `country`) or a mapping with
    `type: select` and `options` (strings, or mappings with `label` and `value`).
    """
    if not isinstance(value, dict) or len(value) > MAX_FORM_FIELDS:
        raise InvalidInputError(
            f"card field 'extra_gated_fields' must map at most {MAX_FORM_FIELDS} labels to types"
        )
    form: dict[str, dict[str, Any]] = {}
    for label, spec in value.items():
        kind = spec.get("type") if isinstance(spec, dict) else spec
        if not isinstance(label, str) or kind not in FORM_TYPES:
            raise InvalidInputError(
                f"extra_gated_fields: {label!r} must be text, checkbox, date_picker, country or "
                "select"
            )
        options: list[str] = []
        if kind == "select":
            raw = spec.get("options") if isinstance(spec, dict) else None
            if not isinstance(raw, list) or not raw:
                raise InvalidInputError(f"extra_gated_fields: select {label!r} needs options")
            for option in raw:
                picked = option.get("value") if isinstance(option, dict) else option
                if not isinstance(picked, str | int | float):
                    raise InvalidInputError(f"extra_gated_fields: bad option in {label!r}")
                options.append(str(picked))
        form[label] = {"type": kind, "options": options}
    return form


def _check_json_values(data: dict[Any, Any]) -> None:
    """Refuse what the JSON of `cardData` cannot carry: bytes, sets, NaN, lone surrogates."""
    stack: list[Any] = [data]
    while stack:  # no recursion: the data may nest as deep as YAML allowed
        item = stack.pop()
        if isinstance(item, dict):
            for key in item:
                _check_json_scalar(key)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):  # tuples: `!!pairs` and `!!omap`
            stack.extend(item)
        else:
            _check_json_scalar(item)


def _check_json_scalar(value: object) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # "\ud800" is a legal YAML escape but not Unicode text
            raise InvalidInputError("card metadata holds a string with a lone surrogate") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError("card metadata holds .nan or .inf, which JSON cannot carry")
    elif isinstance(value, int):
        try:
            str(value)  # past sys.get_int_max_str_digits no JSON writer here can print it
        except ValueError:
            raise InvalidInputError("card metadata holds an integer too large to serve") from None
    elif value is not None:
        raise InvalidInputError(
            f"card metadata holds a {type(value).__name__} value, which JSON cannot carry"
        )
