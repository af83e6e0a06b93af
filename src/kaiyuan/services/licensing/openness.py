"""How open a release is: its Model Openness Framework class and OSAID readiness.

MOF v1.0 (LF AI & Data) names 17 components in three cumulative classes; a class is met when
every required component of it and of the classes below it is included under an open licence
(the Model Openness Tool's cascade). The components are recognised here from what the hub can
see: the files of the revision and its card. OSI's Open Source AI Definition 1.0 asks for the
parameters and the code under OSI-approved terms and for data information complete enough to
rebuild a substantially equivalent system; licences with use restrictions, non-commercial terms
or user thresholds fail it. A model is never more open than its most restricted ancestor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kaiyuan.services.licensing.catalog import Licence

WEIGHTS = re.compile(r"\.(safetensors|bin|gguf|pt|pth|ckpt|onnx|h5|msgpack|npz)$", re.IGNORECASE)
_PAPER = re.compile(r"arxiv\.org/(abs|pdf)/|doi\.org/10\.|\bpaper\b.*https?://", re.IGNORECASE)
_REPORT = re.compile(r"technical[ _-]report|arxiv\.org/(abs|pdf)/", re.IGNORECASE)
_DATA_SECTION = re.compile(
    r"^#+ .*(training data|dataset|data card|data)\b", re.IGNORECASE | re.MULTILINE
)
_EVAL_SECTION = re.compile(r"^#+ .*(evaluation|results|benchmark)", re.IGNORECASE | re.MULTILINE)
_OPEN_FAMILIES = frozenset({"permissive", "copyleft", "public-domain"})
_OPEN_DATA = re.compile(r"^(cc0|cc-by-4\.0|cc-by-sa|cdla-|pddl|odc-by|odbl|openmdw)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    mof_class: int  # 3, 2 or 1: the class that first requires it (0: optional)
    present: bool
    evidence: str  # where it was found, or what is missing


@dataclass(frozen=True, slots=True)
class Openness:
    mof_class: int | None  # 1, 2, 3 or None
    progress: dict[int, int]  # class -> percent of its required components included
    components: tuple[Component, ...]
    licence_open: bool
    osaid_ready: bool
    osaid_missing: tuple[str, ...]
    restricted_by: str | None  # the nearest ancestor whose licence restricts use

    @property
    def summary(self) -> str:
        label = {1: "I (Open Science)", 2: "II (Open Tooling)", 3: "III (Open Model)"}
        mof = f"MOF class {label[self.mof_class]}" if self.mof_class else "no MOF class"
        nxt = (self.mof_class or 4) - 1
        missing = [c.name for c in self.components if c.mof_class == nxt and not c.present]
        if nxt >= 1 and missing:
            mof += f"; class {'I' * nxt} needs {', '.join(missing)}"
        if not self.licence_open:
            mof += " (the licence is not open, so no component counts)"
        osaid = (
            "OSAID ready"
            if self.osaid_ready
            else f"not OSAID ready: {'; '.join(self.osaid_missing)}"
        )
        return f"{mof}. {osaid}."

    def as_json(self) -> dict[str, object]:
        return {
            "mofClass": self.mof_class,
            "progress": {str(k): v for k, v in self.progress.items()},
            "licenceOpen": self.licence_open,
            "osaidReady": self.osaid_ready,
            "osaidMissing": list(self.osaid_missing),
            "restrictedBy": self.restricted_by,
            "components": [
                {"name": c.name, "class": c.mof_class, "present": c.present, "evidence": c.evidence}
                for c in self.components
            ],
        }


def is_open(licence: Licence | None, hf_id: str | None) -> bool:
    """Open in MOF's sense: OSI-approved (or FSF-libre) code licences, or open-data licences."""
    if licence is None:
        return False
    if licence.osi_approved or licence.family in _OPEN_FAMILIES:
        return True
    return bool(hf_id and _OPEN_DATA.match(hf_id)) and licence.commercial.allowed


def restricts_use(licence: Licence) -> bool:
    """Field-of-use restrictions, non-commercial terms or user thresholds (fails OSAID)."""
    return (
        not licence.commercial.allowed
        or bool(licence.thresholds)
        or licence.flow_down in {"use_restrictions", "parent_terms_persist", "no_distribution"}
    )


def assess(
    paths: Iterable[str],
    card: dict[str, object],
    body: str,
    licence: Licence | None,
    hf_id: str | None,
    ancestors: Iterable[tuple[str, Licence]],
) -> Openness:
    """The openness of a revision with these files and card, under `licence`."""
    files = sorted(paths)
    lower = [p.lower() for p in files]
    name_of = {p.lower(): p for p in files}

    def find(test: Callable[[str], bool]) -> str | None:
        for path in lower:
            if test(path):
                return name_of[path]
        return None

    library = str(card.get("library_name") or "")
    has_config = "config.json" in lower
    paper = _PAPER.search(body) or card.get("paper") or card.get("arxiv")
    model_index = card.get("model-index")
    eval_datasets = _eval_datasets(model_index)
    checks: list[tuple[str, int, str | None, str]] = [
        (
            "Model architecture",
            3,
            find(lambda p: _base(p).startswith("modeling") and p.endswith(".py"))
            or ("config.json (architecture in " + library + ")" if has_config and library else None)
            or ("config.json" if has_config else None),
            "no architecture code or config.json",
        ),
        ("Model parameters (final)", 3, find(lambda p: bool(WEIGHTS.search(p))), "no weight files"),
        (
            "Technical report",
            3,
            "linked in the card"
            if _REPORT.search(body)
            else find(lambda p: "report" in p and p.endswith(".pdf")),
            "no technical report linked or shipped",
        ),
        (
            "Evaluation results",
            3,
            "model-index in the card"
            if model_index
            else ("an evaluation section in the card" if _EVAL_SECTION.search(body) else None),
            "no model-index or evaluation section in the card",
        ),
        (
            "Model card",
            3,
            "README.md" if len(body.strip()) >= 200 else None,  # noqa: PLR2004
            "README.md is missing or too short to describe the model",
        ),
        (
            "Data card",
            3,
            "datasets in the card"
            if card.get("datasets")
            else ("a data section in the card" if _DATA_SECTION.search(body) else None),
            "the card names no training data",
        ),
        (
            "Training code",
            2,
            find(
                lambda p: (
                    _base(p).startswith(("train", "finetune", "pretrain"))
                    and p.endswith((".py", ".sh", ".yaml", ".yml"))
                )
            ),
            "no training script",
        ),
        (
            "Inference code",
            2,
            find(
                lambda p: (
                    _base(p).startswith(("inference", "generate", "handler", "predict"))
                    and p.endswith(".py")
                )
            )
            or (f"the {library} library" if library else None),
            "no inference code or library",
        ),
        (
            "Evaluation code",
            2,
            find(
                lambda p: (
                    _base(p).startswith(("eval", "evaluate", "benchmark"))
                    and p.endswith((".py", ".sh", ".yaml", ".yml"))
                )
            ),
            "no evaluation script",
        ),
        (
            "Evaluation data",
            2,
            ", ".join(eval_datasets) or None,
            "model-index names no evaluation datasets",
        ),
        (
            "Training datasets",
            1,
            find(lambda p: p.startswith("data/") or p.endswith((".parquet", ".jsonl", ".arrow")))
            or ("datasets in the card" if card.get("datasets") else None),
            "training data not released",
        ),
        (
            "Data preprocessing code",
            1,
            find(
                lambda p: (
                    _base(p).startswith(("preprocess", "prepare", "clean", "tokenize", "data_"))
                    and p.endswith(".py")
                )
            ),
            "no data preprocessing code",
        ),
        (
            "Intermediate checkpoints",
            1,
            find(lambda p: "checkpoint" in p or "/step" in p or _base(p).startswith("step")),
            "no intermediate checkpoints",
        ),
        ("Research paper", 1, "linked in the card" if paper else None, "no research paper linked"),
        ("Sample model outputs", 0, find(lambda p: "sample" in p or "example" in p), "none"),
        (
            "Supporting libraries and tools",
            0,
            find(lambda p: _base(p) == "requirements.txt"),
            "none",
        ),
        (
            "Model metadata",
            0,
            find(
                lambda p: (
                    _base(p)
                    in {
                        "trainer_state.json",
                        "training_args.bin",
                        "optimizer.pt",
                        "training_config.json",
                    }
                )
            ),
            "none",
        ),
    ]
    open_licence = is_open(licence, hf_id)
    components = tuple(
        Component(name, level, found is not None, found or missing)
        for name, level, found, missing in checks
    )
    progress, mof = _cascade(components, open_licence)
    restricted_by = next((repo for repo, lic in ancestors if restricts_use(lic)), None)
    osaid_missing = []
    if licence is None or not (licence.osi_approved or licence.family in _OPEN_FAMILIES):
        osaid_missing.append("the parameters and code are not under OSI-approved terms")
    elif restricts_use(licence):
        osaid_missing.append("the licence restricts use, commercial use or users")
    if restricted_by:
        osaid_missing.append(f"it derives from {restricted_by}, whose licence restricts use")
    if not (card.get("datasets") and _DATA_SECTION.search(body)):
        osaid_missing.append("no data information (a data section and the datasets in the card)")
    if not any(c.present for c in components if c.name in {"Training code", "Inference code"}):
        osaid_missing.append("no training or inference code")
    return Openness(
        mof_class=mof if restricted_by is None else None,
        progress=progress,
        components=components,
        licence_open=open_licence and restricted_by is None,
        osaid_ready=not osaid_missing,
        osaid_missing=tuple(osaid_missing),
        restricted_by=restricted_by,
    )


def _cascade(
    components: tuple[Component, ...], open_licence: bool
) -> tuple[dict[int, int], int | None]:
    """MOT's rule: class N needs every required component of class N and of the classes above."""
    progress: dict[int, int] = {}
    met: int | None = None
    for level in (3, 2, 1):
        required = [c for c in components if level <= c.mof_class <= 3]  # noqa: PLR2004
        included = [c for c in required if c.present and open_licence]
        progress[level] = round(100 * len(included) / len(required)) if required else 0
        if len(included) == len(required) and (met is None or met == level + 1):
            met = level
    return progress, met


def _eval_datasets(model_index: object) -> list[str]:
    names: list[str] = []
    if not isinstance(model_index, list):
        return names
    for entry in model_index:
        results = entry.get("results") if isinstance(entry, dict) else None
        for result in results if isinstance(results, list) else []:
            dataset = result.get("dataset") if isinstance(result, dict) else None
            name = dataset.get("name") or dataset.get("type") if isinstance(dataset, dict) else None
            if name and str(name) not in names:
                names.append(str(name))
    return names


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]
