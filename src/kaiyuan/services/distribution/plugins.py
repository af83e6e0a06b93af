"""Plug-ins named by a setting: `package.module:factory`, called with the settings."""

from __future__ import annotations

import importlib
from typing import Any

from kaiyuan.core.errors import InvalidInputError


def build_plugin(spec: str, setting: str, settings: Any) -> Any:
    """What the factory `spec` names returns for `settings`; InvalidInput for a malformed name."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InvalidInputError(f"{setting} must look like 'package.module:factory'")
    return getattr(importlib.import_module(module_name), attribute)(settings)
