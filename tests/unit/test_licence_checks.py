"""The checks one by one, on hand-built subjects: each rule, its edges, and the policy."""

from __future__ import annotations

from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.lineage import Finding, PolicyAction, Relation, Severity
from kaiyuan.services.licensing import openness, policy
from kaiyuan.services.licensing.catalog import load_catalog
from kaiyuan.services.licensing.checks import Ancestor, Subject, evaluate
from kaiyuan.services.licensing.facts import RevisionFacts, revision_facts
from kaiyuan.services.lineage import Declaration

CATALOG = load_catalog()


def facts(repo: str, licence: str | None, **more: object) -> RevisionFacts:
    return RevisionFacts(repo=repo, licence=licence, licences=(licence,) if licence else (), **more)  # type: ignore[arg-type]


def subject(
    own: RevisionFacts,
    parents: list[tuple[str, RevisionFacts | None]],
    relation: Relation = Relation.FINETUNE,
    body: str = "",
    texts: dict[str, str] | None = None,
    **more: object,
) -> Subject:
    names = tuple(name for name, _ in parents)
    return Subject(
        kind=RepoKind.MODEL,
        facts=own,
        declaration=Declaration(names, relation if names else None, True),
        ancestors=tuple(
            Ancestor(name, found, relation, 1, relation.copies_parent) for name, found in parents
        ),
        texts=texts or {},
        body=body,
        **more,  # type: ignore[arg-type]
    )


def checks(found: list[Finding]) -> set[tuple[str, str | None]]:
    return {(f.check, f.ancestor) for f in found}


def test_lic001_variants() -> None:
    assert checks(evaluate(subject(facts("a/m", None), []), CATALOG)) == {("LIC-001", None)}
    other = facts("a/m", "other")
    assert ("LIC-001", None) in checks(evaluate(subject(other, []), CATALOG))
    named = facts("a/m", "other", license_name="mrl", license_link="LICENSE")
    assert checks(evaluate(subject(named, []), CATALOG)) == set()
    unknown = evaluate(subject(facts("a/m", "my-own-licence"), []), CATALOG)
    assert [(f.check, f.severity) for f in unknown] == [("LIC-001", Severity.WARNING)]


def test_lic002_unresolved_and_external_parents() -> None:
    own = facts("a/m", "apache-2.0")
    found = evaluate(subject(own, [("meta-llama/Llama-3.1-8B", None)]), CATALOG)
    assert checks(found) == {("LIC-002", "meta-llama/Llama-3.1-8B")}
    allowed = subject(
        own, [("meta-llama/Llama-3.1-8B", None)], external_allowed=lambda n: n.startswith("meta")
    )
    assert checks(evaluate(allowed, CATALOG)) == set()
    merge = subject(own, [("a/p", facts("a/p", "apache-2.0"))], Relation.MERGE)
    assert checks(evaluate(merge, CATALOG)) == {("LIC-002", None)}


def test_lic007_one_of_the_qwen_lines_suffices() -> None:
    parent = facts("a/qwen", "other", license_name="qwen", license_link="LICENSE")
    own = facts(
        "a/m", "other", license_name="qwen", license_link="LICENSE", legal_files=("NOTICE",)
    )
    notice = {"NOTICE": "Qwen is licensed under the Qwen LICENSE AGREEMENT"}
    missing = evaluate(subject(own, [("a/qwen", parent)], texts=notice), CATALOG)
    assert ("LIC-007", "a/qwen") in checks(missing)
    shown = subject(own, [("a/qwen", parent)], body="Improved using Qwen.", texts=notice)
    assert ("LIC-007", "a/qwen") not in checks(evaluate(shown, CATALOG))


def test_lic009_merge_conflicts() -> None:
    own = facts("a/merge", "cc-by-sa-4.0")
    sa_and_odbl = subject(
        own,
        [("a/x", facts("a/x", "cc-by-sa-4.0")), ("a/y", facts("a/y", "odbl"))],
        Relation.MERGE,
    )
    assert ("LIC-009", "a/x") in checks(evaluate(sa_and_odbl, CATALOG))
    rail_gpl = subject(
        facts("a/merge", "gpl-3.0"),
        [("a/r", facts("a/r", "bigscience-openrail-m")), ("a/g", facts("a/g", "gpl-3.0"))],
        Relation.MERGE,
    )
    assert ("LIC-009", "a/r") in checks(evaluate(rail_gpl, CATALOG))
    llama3_with_qwen = subject(
        facts("a/Llama 3-merge", "llama3"),
        [("a/l", facts("a/l", "llama3")), ("a/q", facts("a/q", "apache-2.0"))],
        Relation.MERGE,
        body="Built with Meta Llama 3",
    )
    found = [f for f in evaluate(llama3_with_qwen, CATALOG) if f.check == "LIC-009"]
    assert len(found) == 1 and "outside its family" in found[0].message
    fine = subject(
        facts("a/m", "apache-2.0"),
        [("a/x", facts("a/x", "apache-2.0")), ("a/y", facts("a/y", "mit"))],
        Relation.MERGE,
    )
    assert checks(evaluate(fine, CATALOG)) == set()


def test_lic010_distillation() -> None:
    teacher = facts("a/llama3", "llama3")
    student = subject(
        facts("a/student", "apache-2.0"), [("a/llama3", teacher)], Relation.DISTILLATION
    )
    assert ("LIC-010", "a/llama3") in checks(evaluate(student, CATALOG))
    untold = subject(facts("a/m", "apache-2.0", synthetic_data=True), [])
    assert checks(evaluate(untold, CATALOG)) == {("LIC-010", None)}


def test_lic011_territory_and_its_gate() -> None:
    parent = facts("a/vision", "llama3.2")
    own = facts("a/Llama-vision-ft", "llama3.2", legal_files=("NOTICE",))
    texts = {"NOTICE": "Llama 3.2 is licensed under the Llama 3.2 Community License"}
    flagged = subject(own, [("a/vision", parent)], body="Built with Llama", texts=texts)
    assert ("LIC-011", "a/vision") in checks(evaluate(flagged, CATALOG))
    gated = facts(
        "a/Llama-vision-ft", "llama3.2", legal_files=("NOTICE",), eu_disallowed=True, gated=True
    )
    ok = subject(gated, [("a/vision", parent)], body="Built with Llama", texts=texts)
    assert ("LIC-011", "a/vision") not in checks(evaluate(ok, CATALOG))


def test_lic014_training_data_and_mixed_datasets() -> None:
    own = facts("a/m", "apache-2.0", datasets=("a/nc", "a/open", "elsewhere/x"))
    found = evaluate(
        subject(
            own,
            [],
            datasets=(
                ("a/nc", facts("a/nc", "cc-by-nc-4.0")),
                ("a/open", facts("a/open", "cc-by-4.0")),
                ("elsewhere/x", None),
            ),
        ),
        CATALOG,
    )
    messages = [f.message for f in found if f.check == "LIC-014"]
    assert len(messages) == 2
    assert "non-commercial" in messages[0] and "elsewhere/x" in messages[1]
    mixed = revision_facts(
        RepoId("a", "d"),
        {"license": ["cc-by-4.0", "mit"], "configs": [{"config_name": "x"}, {"config_name": "y"}]},
        "",
        [],
        gated=False,
    )
    dataset = Subject(RepoKind.DATASET, mixed, Declaration((), None, False), (), {}, "")
    assert [f.check for f in evaluate(dataset, CATALOG)] == ["LIC-014"]


def test_policy_is_raised_by_organisations_never_lowered() -> None:
    hub = {"LIC-006": PolicyAction.REJECT, "LIC-007": PolicyAction.OFF}
    org = {"LIC-006": PolicyAction.WARN, "LIC-004": PolicyAction.REJECT}
    actions = policy.effective(hub, org)
    assert actions["LIC-006"] is PolicyAction.REJECT  # the org cannot weaken it
    assert actions["LIC-004"] is PolicyAction.REJECT  # but can tighten
    assert actions["LIC-007"] is PolicyAction.OFF
    assert actions["LIC-001"] is PolicyAction.WARN  # the default
    judged = policy.judge(
        [
            Finding("LIC-007", Severity.WARNING, "m", "f"),
            Finding("LIC-012", Severity.INFO, "m", "f"),
            Finding("LIC-004", Severity.ERROR, "m", "f"),
        ],
        {**actions, "LIC-012": PolicyAction.REJECT},
    )
    assert [(f.check, f.action) for f in judged] == [
        ("LIC-012", PolicyAction.WARN),  # information never rejects
        ("LIC-004", PolicyAction.REJECT),
    ]


def test_openness_cascade() -> None:
    apache = CATALOG.for_hf_id("apache-2.0")
    card = {
        "datasets": ["a/d"],
        "library_name": "transformers",
        "model-index": [{"results": [{"dataset": {"name": "C-Eval"}}]}],
    }
    body = (
        "# Model\n" + "A description. " * 20 + "\n## Training data\nsee a/d\n## Evaluation\n"
        "see https://arxiv.org/abs/2401.00001"
    )
    full = [
        "config.json",
        "model.safetensors",
        "train.py",
        "eval.py",
        "data/train.parquet",
        "preprocess.py",
        "checkpoint-100/model.safetensors",
    ]
    result = openness.assess(full, card, body, apache, "apache-2.0", [])
    assert result.mof_class == 1 and result.progress == {3: 100, 2: 100, 1: 100}
    assert result.osaid_ready
    weights_only = openness.assess(["model.safetensors"], {}, "", apache, "apache-2.0", [])
    assert weights_only.mof_class is None and not weights_only.osaid_ready
    llama = CATALOG.for_hf_id("llama3.1")
    assert llama is not None
    restricted = openness.assess(full, card, body, llama, "llama3.1", [])
    assert restricted.mof_class is None and not restricted.licence_open
    assert any("OSI-approved" in m for m in restricted.osaid_missing)
    inherited = openness.assess(full, card, body, apache, "apache-2.0", [("a/llama", llama)])
    assert inherited.restricted_by == "a/llama" and inherited.mof_class is None
