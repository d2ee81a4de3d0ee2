"""The benchmark registry: one entry per external benchmark, as data, apart from the loader.

Each :class:`Benchmark` says where a benchmark lives (hub id, config, split, the local file
names it goes by, its fixture), which columns hold the prompt, label, ids and slices (a list of
alternatives, since upstream files and hub exports name them differently) and how raw labels map
to ``harmful`` / ``safe`` — one config per benchmark, as lm-evaluation-harness keeps one task
config per benchmark. Adding a benchmark is adding an entry here; reading, normalising and
discovery are :mod:`aims_kit.datasets.benchmarks`.

OpenAI Moderation stores one flag per category instead of a label. By the convention every
published table uses (the paper, WildGuard, GuardReasoner) a row is harmful when any flag is
1 and safe otherwise, a *missing* flag counting as not set: all 1,680 rows, 522 harmful.
The strict reading, which calls a row with no flag set but some missing unknown and skips it
(859 rows remain), is the separate entry ``openai_moderation_strict`` in :data:`VARIANTS`:
its numbers do not compare with any published one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal


@dataclass(frozen=True)
class Benchmark:
    """How to read one benchmark. Column fields list alternatives: the first one present is used
    (upstream files and hub exports name the same column differently)."""

    name: str
    title: str
    hub_id: str
    config: str | None
    split: str | tuple[str, ...]
    prompt_columns: tuple[str, ...]
    #: Raw label value (compared as lower-case text) → ``harmful`` / ``safe``.
    label_map: dict[str, str]
    label_columns: tuple[str, ...] = ()
    #: Every row has this label (sets of harmful behaviours).
    fixed_label: str | None = None
    #: Category flag columns: harmful when any is 1 (OpenAI Moderation upstream file).
    flag_columns: tuple[str, ...] = ()
    #: How a missing flag reads: ``"not set"`` (the published convention) or ``"unknown"`` (a row
    #: with no flag set and some missing is skipped and counted).
    missing_flags: Literal["not set", "unknown"] = "not set"
    id_columns: tuple[str, ...] = ()
    #: Standard slice column → raw alternatives.
    slices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    licence: str = "see the dataset card"
    gating: str = "not gated"
    upstream: str = ""
    #: File names (relative to a search folder) this benchmark is found under locally.
    local_names: tuple[str, ...] = ()
    fixture: str = ""
    #: One of the paper's five (its mean F1 averages over exactly these).
    paper_five: bool = False


_HARM = {"harmful": "harmful", "unharmful": "safe"}
_UNSAFE = {"unsafe": "harmful", "safe": "safe"}
_BINARY = {"1": "harmful", "0": "safe", "1.0": "harmful", "0.0": "safe", "true": "harmful", "false": "safe"}

REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            name="wildguardtest", title="WildGuardTest", hub_id="allenai/wildguardmix", config="wildguardtest",
            split="test", prompt_columns=("prompt",), label_columns=("prompt_harm_label",), label_map=_HARM,
            slices={"Adversarial": ("adversarial",), "Category": ("subcategory",)},
            licence="ODC-BY", gating="gated: accept the AI2 terms on the hub page, then log in",
            upstream="hub only (parquet); export with datasets to parquet/CSV/JSONL",
            local_names=("wildguardtest.parquet", "wildguardtest.csv", "wildguardtest.jsonl"),
            fixture="wildguardtest.parquet", paper_five=True,
        ),
        Benchmark(
            name="xstest", title="XSTest", hub_id="walledai/XSTest", config=None, split="test",
            prompt_columns=("prompt",), label_columns=("label",), label_map=_UNSAFE, id_columns=("id",),
            slices={"type": ("type",), "Category": ("note",)},
            licence="CC-BY-4.0", upstream="CSV xstest_prompts.csv: id, prompt, type, label, focus, note",
            local_names=("xstest/xstest_prompts.csv", "xstest_prompts.csv", "xstest.parquet", "xstest.csv", "xstest.jsonl"),
            fixture="xstest_prompts.csv", paper_five=True,
        ),
        Benchmark(
            name="toxicchat", title="ToxicChat-0124", hub_id="lmsys/toxic-chat", config="toxicchat0124", split="test",
            prompt_columns=("user_input",), label_columns=("toxicity",), label_map=_BINARY, id_columns=("conv_id",),
            slices={"Adversarial": ("jailbreaking",)},
            licence="CC-BY-NC-4.0", upstream="hub CSV toxic-chat_annotation_test.csv (conv_id, user_input, toxicity, jailbreaking, ...)",
            local_names=("toxicchat/toxic-chat_annotation_test.csv", "toxic-chat_annotation_test.csv", "toxicchat.parquet", "toxicchat.csv", "toxicchat.jsonl"),
            fixture="toxic-chat_annotation_test.csv", paper_five=True,
        ),
        Benchmark(
            name="aegis2", title="Aegis 2.0", hub_id="nvidia/Aegis-AI-Content-Safety-Dataset-2.0", config=None, split="test",
            prompt_columns=("prompt",), label_columns=("prompt_label",), label_map=_UNSAFE, id_columns=("id",),
            slices={"Category": ("violated_categories",)},
            licence="CC-BY-4.0", upstream="hub JSON/parquet test split (id, prompt, prompt_label, violated_categories, ...)",
            local_names=("aegis2/test.json", "aegis2.parquet", "aegis2.csv", "aegis2.jsonl"),
            fixture="aegis2_test.jsonl", paper_five=True,
        ),
        Benchmark(
            name="openai_moderation", title="OpenAI Moderation", hub_id="AllanK24/openai-moderation-binary", config=None,
            split="train", prompt_columns=("prompt",), label_columns=("prompt_label", "label"),
            label_map={**_BINARY, **_UNSAFE, "harmful": "harmful", "flagged": "harmful"},
            flag_columns=("S", "H", "V", "HR", "SH", "S3", "H2", "V2"),
            licence="MIT (openai/moderation-api-release)",
            upstream="samples-1680.jsonl.gz: prompt plus category flags S, H, V, HR, SH, S3, H2, V2 (1 = flagged)",
            local_names=("openai_moderation/samples-1680.jsonl.gz", "samples-1680.jsonl.gz", "openai_moderation.parquet", "openai_moderation.csv", "openai_moderation.jsonl"),
            fixture="samples-1680.jsonl.gz", paper_five=True,
        ),
        Benchmark(
            name="simplesafetytests", title="SimpleSafetyTests", hub_id="Bertievidgen/SimpleSafetyTests", config=None,
            split="test", prompt_columns=("prompts_final", "prompt"), label_map={}, fixed_label="harmful",
            id_columns=("id",), slices={"Category": ("harm_area",)},
            licence="CC-BY-2.0", upstream="CSV sst_test_cases.csv with prompts_final (all harmful)",
            local_names=("simplesafetytests/sst_test_cases.csv", "sst_test_cases.csv", "simplesafetytests.csv", "simplesafetytests.parquet"),
            fixture="sst_test_cases.csv",
        ),
        Benchmark(
            name="harmbench", title="HarmBench behaviours", hub_id="walledai/HarmBench", config="standard", split="train",
            prompt_columns=("Behavior", "prompt"), label_map={}, fixed_label="harmful", id_columns=("BehaviorID",),
            slices={"Category": ("SemanticCategory", "category")},
            licence="MIT", upstream="CSV harmbench_behaviors_text_all.csv: Behavior, FunctionalCategory, SemanticCategory, ..., BehaviorID (all harmful)",
            local_names=("harmbench/harmbench_behaviors_text_all.csv", "harmbench_behaviors_text_all.csv", "harmbench.csv", "harmbench.parquet"),
            fixture="harmbench_behaviors_text_all.csv",
        ),
        Benchmark(
            name="jailbreakbench", title="JailbreakBench behaviours", hub_id="JailbreakBench/JBB-Behaviors", config="behaviors",
            split=("harmful", "benign"), prompt_columns=("Goal", "goal"), label_columns=("split", "label"),
            label_map={"harmful": "harmful", "benign": "safe"}, id_columns=("Index",),
            slices={"Category": ("Category",)},
            licence="MIT", upstream="hub splits harmful + benign (Index, Goal, Target, Behavior, Category, Source); "
            "a local export holds both with a split column",
            local_names=("jailbreakbench/jbb_behaviors.csv", "jbb_behaviors.csv", "jailbreakbench.csv", "jailbreakbench.parquet"),
            fixture="jbb_behaviors.csv",
        ),
    )
}
PAPER_FIVE = tuple(name for name, b in REGISTRY.items() if b.paper_five)

#: Other readings of a registered benchmark. They load by name (``python -m aims_kit eval
#: --benchmark openai_moderation_strict``) but are never part of the default set: their numbers
#: do not compare with published ones.
VARIANTS: dict[str, Benchmark] = {
    "openai_moderation_strict": replace(
        REGISTRY["openai_moderation"],
        name="openai_moderation_strict",
        title="OpenAI Moderation, strict reading (differs from every published table)",
        missing_flags="unknown",
        paper_five=False,
    ),
}


def get(name: str) -> Benchmark:
    if name in REGISTRY:
        return REGISTRY[name]
    if name in VARIANTS:
        return VARIANTS[name]
    raise KeyError(f"unknown benchmark {name!r}; choose one of {', '.join([*REGISTRY, *VARIANTS])}")
