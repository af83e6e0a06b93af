"""Model and dataset cards: the YAML front matter of README.md, parsed safely."""

from __future__ import annotations

from typing import Any

import yaml

from kaiyuan.core.errors import InvalidInputError

CARD_PATH = "README.md"


class _NoAliasLoader(yaml.SafeLoader):
    """Safe loading without anchors/aliases: no alias bombs when the data is re-serialised."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise InvalidInputError(
                f"YAML aliases are not allowed in card metadata (line {event.start_mark.line + 1})"
            )
        return super().compose_node(parent, index)


def front_matter(text: str) -> str | None:
    """The YAML block between the leading `---` lines, or None when the card has none."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            return "\n".join(lines[1:index])
    raise InvalidInputError("card metadata starts with '---' but is never closed")


def parse_card(text: str) -> dict[str, Any] | None:
    """The card metadata as a mapping; InvalidInput for malformed YAML or wrong field types."""
    block = front_matter(text)
    if block is None:
        return None
    try:
        data = yaml.load(block, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"card metadata is not valid YAML: {exc}") from None
    except RecursionError:
        raise InvalidInputError("card metadata is nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInputError("card metadata must be a YAML mapping")
    _check_fields(data)
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
    if license_id is not None and not isinstance(license_id, str):
        raise InvalidInputError("card field 'license' must be a string")
