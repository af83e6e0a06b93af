"""The derivative suite on real models: every derivative found, every independent model not.

Real parents (all-MiniLM-L6-v2, SmolLM2-135M, Gemma-3-270M, from PyPI packages), derivatives
built by real training steps with torch on CPU and by numpy edits, written in safetensors
(single and sharded), GGUF and ONNX (see `tests/provenance_models/suite.py` for each case and
the real-world derivation it stands for). One fixed threshold, set from measured null levels,
not tuned per case: each derivative scores above it against its true parent, which ranks first
and is the only parent above it; each independent model scores below it against every parent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kaiyuan.services.provenance.compare import THRESHOLD, Relation
from tests.provenance_models.real import RealModels
from tests.provenance_models.suite import CASES, Bases, Case, Row, evaluate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bases(real_models: RealModels) -> Bases:
    return Bases(real_models)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("suite")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, bases: Bases, folder: Path) -> None:
    row: Row = evaluate(case, bases, folder / case.name.replace(" ", "-").replace("/", "-"))
    for parent, result in row.scores.items():
        assert result.threshold >= THRESHOLD
        assert result.null_level < result.threshold, (parent, result)
        if parent == case.parent:
            assert result.score > result.threshold, (parent, result)
            assert result.relation in {Relation.DERIVED, Relation.SHARES_ANCESTOR}, result
        else:
            assert result.score < result.threshold, (parent, result)
            assert result.relation is Relation.INDEPENDENT, (parent, result)
    if case.parent is not None:
        assert row.ranked[0] == case.parent
