"""The co-built dataset's card: contributors with their shares, and the curation statistics.

The hub owns two things in the card: the metadata keys `configs` (once curated data exists, so
`datasets.load_dataset` reads the curated shards) and `kaiyuan_cobuilt`, and the text between
its two markers. Everything else the maintainers wrote stays as it was.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import yaml

from kaiyuan.core.cobuilding import Contribution
from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services import cards

START = "<!-- kaiyuan:cobuilt:start -->"
END = "<!-- kaiyuan:cobuilt:end -->"


def render_card(
    existing: str | None,
    accepted: Sequence[Contribution],
    report: dict[str, Any] | None,
    data_path: str | None = None,
) -> str:
    """The card with the hub's part regenerated from accepted contributions and a report."""
    text = existing or ""
    try:
        meta = cards.parse_card(text) or {}
    except InvalidInputError:
        meta = {}
    body = cards.card_body(text)
    if data_path is not None:
        meta["configs"] = [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": f"{data_path}/*.parquet"}],
            }
        ]
    licences = sorted({c.licence for c in accepted})
    if "license" not in meta:
        meta["license"] = licences[0].lower() if len(licences) == 1 else "other"
    meta["kaiyuan_cobuilt"] = {
        "contributions": len(accepted),
        "licences": licences,
        **(
            {"config_hash": report["config_hash"], "records": report["records_out"]}
            if report
            else {}
        ),
    }
    block = _block(accepted, report)
    if START in body and END in body:
        head, _, rest = body.partition(START)
        _, _, tail = rest.partition(END)
        body = f"{head}{block}{tail}"
    else:
        body = (body.rstrip() + "\n\n" if body.strip() else "") + block + "\n"
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip()
    return f"---\n{front}\n---\n\n{body.lstrip()}"


def _block(accepted: Sequence[Contribution], report: dict[str, Any] | None) -> str:
    lines = [START, "## Contributors", ""]
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"rows": 0, "bytes": 0, "kept": 0})
    licences: dict[str, set[str]] = defaultdict(set)
    for c in accepted:
        totals[c.organisation]["rows"] += c.rows
        totals[c.organisation]["bytes"] += c.size
        licences[c.organisation].add(c.licence)
    kept_share: dict[str, float] = defaultdict(float)
    if report:
        for entry in report.get("contributors", []):
            kept_share[entry["organisation"]] += float(entry.get("share", 0.0))
    all_rows = sum(t["rows"] for t in totals.values()) or 1
    header = "| organisation | contributions | licence | records contributed | share contributed |"
    rule = "|---|---|---|---|---|"
    if report:
        header += " share after curation |"
        rule += "---|"
    lines += [header, rule]
    counts: dict[str, int] = defaultdict(int)
    for c in accepted:
        counts[c.organisation] += 1
    for org in sorted(totals):
        row = (
            f"| {org} | {counts[org]} | {', '.join(sorted(licences[org]))} | {totals[org]['rows']} "
            f"| {totals[org]['rows'] / all_rows:.1%} |"
        )
        if report:
            row += f" {kept_share[org]:.1%} |"
        lines.append(row)
    if report:
        lines += [
            "",
            "## Curation",
            "",
            f"Pipeline config `{report['config_hash'][:16]}`: "
            f"{report['records_in']} records in, {report['records_out']} kept.",
            "",
            "| stage | in | removed | out |",
            "|---|---|---|---|",
        ]
        for name, stage in report["stages"].items():
            lines.append(f"| {name} | {stage['input']} | {stage['removed']} | {stage['output']} |")
        if report.get("pii_redacted"):
            found = ", ".join(f"{k}: {v}" for k, v in report["pii_redacted"].items())
            lines += ["", f"Personal data redacted (counts only): {found}."]
    lines.append(END)
    return "\n".join(lines)
