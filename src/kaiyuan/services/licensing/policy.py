"""What each check does on a push: off, warn or reject, for the hub and for an organisation.

The hub's policy applies everywhere; an organisation may make a check stricter for its own
repositories but not weaker (a consortium's operator decides the floor). Checks without a
setting warn.
"""

from __future__ import annotations

import dataclasses

from kaiyuan.core.lineage import CHECK_IDS, Finding, PolicyAction, Severity

HUB_SCOPE = ""
_ORDER = {PolicyAction.OFF: 0, PolicyAction.WARN: 1, PolicyAction.REJECT: 2}


def effective(
    hub: dict[str, PolicyAction], org: dict[str, PolicyAction] | None
) -> dict[str, PolicyAction]:
    """The action of every check: the hub's, raised (never lowered) by the organisation's."""
    result = {}
    for check in CHECK_IDS:
        action = hub.get(check, PolicyAction.WARN)
        if org and check in org and _ORDER[org[check]] > _ORDER[action]:
            action = org[check]
        result[check] = action
    return result


def judge(findings: list[Finding], actions: dict[str, PolicyAction]) -> list[Finding]:
    """The findings with their action; `off` checks are left out.

    An informational finding never rejects a push.
    """
    judged = []
    for finding in findings:
        action = actions.get(finding.check, PolicyAction.WARN)
        if action is PolicyAction.OFF:
            continue
        if finding.severity is Severity.INFO and action is PolicyAction.REJECT:
            action = PolicyAction.WARN
        judged.append(dataclasses.replace(finding, action=action))
    return judged
