"""The lineage graph as an SVG drawn on the server: no script, readable in any browser.

Ancestors sit above the repository (parents one row up, their parents above them), descendants
below. A repository reached twice (a shared base of a merge) is drawn once and gets both edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kaiyuan.services.lineage import LineageNode

ROW = 110
NODE_HEIGHT = 46
CHAR = 8.0  # a generous glyph width at the graph's font size (labels are bold)
GAP = 28
MARGIN = 16
MAX_LABEL = 40


@dataclass
class Box:
    key: str
    label: str
    detail: str  # licence and revision
    href: str | None
    level: int
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    current: bool = False


@dataclass(frozen=True, slots=True)
class Line:
    upper: Box  # the parent
    lower: Box  # the child
    relation: str
    measured: bool


@dataclass
class Graph:
    boxes: list[Box] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0


def layout(up: LineageNode, down: LineageNode, href: dict[str, str]) -> Graph:
    """Place the tree: `up` (the repository with its ancestors) and `down` (with descendants).

    `href` maps a repository id to its page, for the ones that are links.
    """
    boxes: dict[str, Box] = {}
    lines: list[Line] = []
    root = _box(up, 0, href, boxes)
    root.current = True
    _walk(up, root, -1, href, boxes, lines, upward=True)
    _walk(down, root, 1, href, boxes, lines, upward=False)
    rows: dict[int, list[Box]] = {}
    for box in boxes.values():
        box.width = min(MAX_LABEL, max(len(box.label), len(box.detail))) * CHAR + 2 * MARGIN
        rows.setdefault(box.level, []).append(box)
    widest = max(sum(b.width for b in row) + GAP * (len(row) - 1) for row in rows.values())
    top = min(rows)
    for level, row in rows.items():
        used = sum(b.width for b in row) + GAP * (len(row) - 1)
        x = MARGIN + (widest - used) / 2
        for box in row:
            box.x, box.y = x, MARGIN + (level - top) * ROW
            x += box.width + GAP
    return Graph(
        list(boxes.values()),
        lines,
        widest + 2 * MARGIN,
        (max(rows) - top) * ROW + NODE_HEIGHT + 2 * MARGIN,
    )


def _walk(
    node: LineageNode,
    box: Box,
    step: int,
    href: dict[str, str],
    boxes: dict[str, Box],
    lines: list[Line],
    *,
    upward: bool,
) -> None:
    for child in node.children:
        other = _box(child, box.level + step, href, boxes)
        relation = child.relation.value if child.relation else "?"
        measured = child.origin is not None and child.origin.value == "measured"
        upper, lower = (other, box) if upward else (box, other)
        lines.append(Line(upper, lower, relation, measured))
        if not child.cycle:
            _walk(child, other, step, href, boxes, lines, upward=upward)


def _box(node: LineageNode, level: int, href: dict[str, str], boxes: dict[str, Box]) -> Box:
    ident = str(node.repo_id) if node.repo_id else node.name
    key = f"{ident}@{node.commit or ''}"
    if key in boxes:
        return boxes[key]
    label = ident if len(ident) <= MAX_LABEL else ident[: MAX_LABEL - 1] + "…"
    parts = [node.licence or ("not on this hub" if node.repo_id is None else "no licence")]
    if node.commit:
        parts.append(node.commit[:7])
    box = Box(key, label, " · ".join(parts), href.get(ident), level)
    boxes[key] = box
    return box
