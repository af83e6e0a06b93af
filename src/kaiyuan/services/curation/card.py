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
    lines = [START, "## Contributors", "", *_contributors(accepted, report)]
    if report:
        lines += ["", "## Curation", "", *_curation(report)]
    lines.append(END)
    return "\n".join(lines)


def _contributors(accepted: Sequence[Contribution], report: dict[str, Any] | None) -> list[str]:
    rows: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    licences: dict[str, set[str]] = defaultdict(set)
    for c in accepted:
        rows[c.organisation] += c.rows
        counts[c.organisation] += 1
        licences[c.organisation].add(c.licence)
    kept_share: dict[str, float] = defaultdict(float)
    for entry in (report or {}).get("contributors", []):
        kept_share[entry["organisation"]] += float(entry.get("share", 0.0))
    all_rows = sum(rows.values()) or 1
    after = " share after curation |" if report else ""
    header = "| organisation | contributions | licence | records contributed | share contributed |"
    lines = [header + after, "|---|---|---|---|---|" + ("---|" if report else "")]
    lines.extend(
        f"| {org} | {counts[org]} | {', '.join(sorted(licences[org]))} | {rows[org]} "
        f"| {rows[org] / all_rows:.1%} |" + (f" {kept_share[org]:.1%} |" if report else "")
        for org in sorted(rows)
    )
    return lines


def _curation(report: dict[str, Any]) -> list[str]:
    lines = [
        (
            f"Pipeline config `{report['config_hash'][:16]}`: "
            f"{report['records_in']} records in, {report['records_out']} kept."
        ),
        "",
        "| stage | in | removed | out |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {stage['input']} | {stage['removed']} | {stage['output']} |"
        for name, stage in report["stages"].items()
    ]
    if report.get("pii_redacted"):
        found = ", ".join(f"{k}: {v}" for k, v in report["pii_redacted"].items())
        lines += ["", f"Personal data redacted (counts only): {found}."]
    return lines
