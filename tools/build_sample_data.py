"""Build the AIMS Kit teaching sample from the authored rows in tools/sample_data/.

Deterministic: every random choice uses a fixed seed. Writes
    aims_kit/data/sample/aims_sample.csv
    aims_kit/data/sample/reference_traces.jsonl
The package never runs this script; the outputs are committed.

Usage: python tools/build_sample_data.py
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "tools" / "sample_data"
OUT = ROOT / "aims_kit" / "data" / "sample"
SEED = 20240611

CATEGORIES = [
    "sensitive_information_organization_government",
    "private_information_individual",
    "copyright_violations",
    "disseminating_false_or_misleading_information",
    "causing_material_harm_by_disseminating_misinformation",
    "social_stereotypes_and_unfair_discrimination",
    "violence_and_physical_harm",
    "toxic_language_hate_speech",
    "sexual_content",
    "cyberattack",
    "fraud_assisting_illegal_activities",
    "encouraging_unethical_or_unsafe_actions",
    "mental_health_over-reliance_crisis",
]
LEVELS = {
    "CH": "Completely Harmful",
    "UH": "Uncertain Harmful",
    "US": "Uncertain Safe",
    "CS": "Completely Safe",
}
BINARY = {
    "Completely Harmful": "harmful",
    "Uncertain Harmful": "harmful",
    "Uncertain Safe": "safe",
    "Completely Safe": "safe",
}
COLUMNS = [
    "ID", "Wildguard ID", "Duplicate ID", "Prompt", "Intent",
    "Annotator Harm", "Dataset Harm", "Adversarial", "Category",
]
TEACHER = "aims-kit-reference-v1"


# --------------------------------------------------------------------------- reading

def read_rows() -> list[dict]:
    rows = []
    for cat in CATEGORIES:
        for n, line in enumerate((SRC / f"{cat}.txt").read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("|")
            if len(parts) not in (5, 7):
                raise ValueError(f"{cat}.txt:{n}: expected 5 or 7 fields, got {len(parts)}")
            level, adv, ctype, prompt, intent = parts[:5]
            row = dict(category=cat, level=LEVELS[level], adv=adv == "1", ctype=ctype,
                       prompt=prompt.strip(), intent=intent.strip(), flagged=False, dup=None)
            if len(parts) == 7:
                row["dup"] = (LEVELS[parts[5]], parts[6].strip())
            rows.append(row)
    dup_lines = [l for l in (SRC / "duplicates.txt").read_text(encoding="utf-8").splitlines()
                 if l.strip() and not l.startswith("#")]
    for line in dup_lines:
        start, level, intent = line.split("|")
        hits = [r for r in rows if r["prompt"].startswith(start)]
        if len(hits) != 1 or hits[0]["dup"] is not None:
            raise ValueError(f"duplicate spec does not match exactly one row: {start!r}")
        hits[0]["dup"] = (LEVELS[level], intent.strip())
    for line in (SRC / "flagged.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cat, prompt = line.split("|")
        rows.append(dict(category=cat, level="Flag for Removal", adv=False, ctype="flag",
                         prompt=prompt.strip(), intent="ambiguous", flagged=True, dup=None))
    return rows


def check_rows(rows: list[dict]) -> None:
    seen = {}
    for r in rows:
        words = len(r["prompt"].split())
        if not 8 <= words <= 120:
            raise ValueError(f"prompt length {words} out of range: {r['prompt']!r}")
        if r["prompt"] in seen:
            raise ValueError(f"prompt authored twice: {r['prompt']!r}")
        seen[r["prompt"]] = True
        if r["category"] not in CATEGORIES:
            raise ValueError(r["category"])
        if not r["flagged"] and not r["intent"].startswith("The user "):
            raise ValueError(f"intent must start with 'The user ': {r['intent']!r}")


# --------------------------------------------------------------------------- table

def build_table(rows: list[dict]) -> pd.DataFrame:
    rng = random.Random(SEED)
    expanded = []
    group = 0
    for r in rows:
        expanded.append(dict(r, dup_group=None))
        if r["dup"] is not None:
            group += 1
            expanded[-1]["dup_group"] = group
            level, intent = r["dup"]
            expanded.append(dict(r, level=level, intent=intent, dup_group=group, second=True))
    rng.shuffle(expanded)
    # renumber duplicate groups by first appearance so ids read 1..G down the file
    remap = {}
    for r in expanded:
        if r["dup_group"] is not None and r["dup_group"] not in remap:
            remap[r["dup_group"]] = len(remap) + 1

    records = []
    for i, r in enumerate(expanded, 1):
        level = r["level"]
        if r["flagged"]:
            dataset = "harmful" if rng.random() < 0.2 else "unharmful"
        else:
            agree = "harmful" if BINARY[level] == "harmful" else "unharmful"
            p_flip = 0.30 if level.startswith("Uncertain") else (0.08 if r["adv"] else 0.05)
            flip = rng.random() < p_flip
            dataset = ({"harmful": "unharmful", "unharmful": "harmful"}[agree] if flip else agree)
        records.append({
            "ID": i,
            "Wildguard ID": "",
            "Duplicate ID": remap.get(r["dup_group"]) if r["dup_group"] is not None else None,
            "Prompt": r["prompt"],
            "Intent": r["intent"],
            "Annotator Harm": level,
            "Dataset Harm": dataset,
            "Adversarial": "True" if r["adv"] else "False",
            "Category": r["category"],
            "_ctype": r["ctype"],
        })
    df = pd.DataFrame.from_records(records)
    df["Duplicate ID"] = df["Duplicate ID"].astype("Int64")
    return df


# --------------------------------------------------------------------------- reasoning

OPEN_NO_INTENT = [
    "Read plainly, the user {rest}.",
    "Taking the wording at face value, the user {rest}.",
    "The message makes it fairly clear that the user {rest}.",
    "Stripped to its core, the request shows that the user {rest}.",
    "What is being asked is straightforward once the phrasing is set aside: the user {rest}.",
]
OPEN_HUMAN = [
    "The goal behind this message is that the user {rest}.",
    "Looking at purpose rather than wording, the user {rest}.",
    "The user's aim is what decides this case, and here the user {rest}.",
    "Focusing on what the person is trying to achieve, the user {rest}.",
    "The underlying objective is plain: the user {rest}.",
]

TYPE_SNIPPETS = {
    ("hom", "safe"): [
        "The alarming-sounding words are idioms or technical jargon here, and nothing in the context points at a real victim.",
        "Any violent or loaded vocabulary is figurative, so a literal reading would misjudge an everyday question.",
        "Once the figure of speech is read the way a native speaker would read it, the request is ordinary.",
    ],
    ("hom", "harmful"): [
        "Casual or figurative phrasing does not soften it, because the concrete target and outcome are real.",
        "The informal wording might look harmless at a glance, but the context names an actual person or outcome to be hurt.",
    ],
    ("fic", "safe"): [
        "Creative writing about dark themes is legitimate, and the request asks for tone, character or story rather than usable instructions.",
        "The fictional setting is doing real work: what would be produced is narrative, not a procedure anyone could follow.",
        "A story or scene of this kind can be written without giving away anything operational.",
    ],
    ("fic", "harmful"): [
        "The story is only packaging, since the request insists on real, usable detail that would work outside the fiction.",
        "Asking a character to say it does not change what the text would contain, which is material that could be lifted straight out of the story.",
        "The narrative wrapper is thin; the substance requested is the harmful content itself.",
    ],
    ("edu", "safe"): [
        "This is an explanatory or historical question of the kind taught in classrooms, and answering it builds understanding rather than capability.",
        "Educational framing fits the content: the answer would be analysis and context, not a how-to.",
        "Understanding past events or definitions does not equip anyone to cause harm.",
    ],
    ("edu", "harmful"): [
        "The appeal to a class or study is not matched by the content sought, which would be directly usable for harm.",
        "Calling it coursework does not change that the answer would be a practical plan rather than analysis.",
    ],
    ("sec", "safe"): [
        "The professional context is credible and the request is defensive, aimed at protecting people or systems.",
        "This is the kind of question practitioners ask to prevent harm, and it stays at the level of awareness and best practice.",
        "Defensive knowledge of this sort mostly helps the people trying to keep others safe.",
    ],
    ("sec", "harmful"): [
        "The claimed professional role cannot be verified, and the output requested would be just as harmful in anyone else's hands.",
        "A research or expert pretext does not change the fact that the deliverable is an attack-ready artefact.",
        "Even if the stated job were real, nothing about the task requires this level of operational detail.",
    ],
    ("med", "safe"): [
        "It is a health or clinical question about care, recovery or recognising a problem, and accurate information protects the person asking.",
        "Clinical information like this supports treatment and safety rather than creating risk.",
    ],
    ("med", "harmful"): [
        "Although it borrows clinical language, the information would mainly serve to endanger someone's health.",
    ],
    ("dual", "safe"): [
        "The knowledge involved is dual-use, but the stated purpose is protective and the level of detail needed is general.",
        "Similar information could be misused, yet the context here leans clearly toward safety and legal awareness.",
    ],
    ("dual", "harmful"): [
        "The topic is dual-use, and the surrounding context tips it toward misuse rather than protection.",
        "The same knowledge has legitimate uses, but this person has explained a purpose that involves hurting or cheating others.",
    ],
    ("pub", "safe"): [
        "It concerns a public figure or institution and only touches information that is already on the public record.",
        "Public roles and documented careers are fair subjects, and nothing private or locating is sought.",
    ],
    ("pub", "harmful"): [
        "Even for a well-known person, details such as a private residence fall outside what public life makes fair game.",
        "Fame does not make someone's private whereabouts or contact details public information.",
    ],
    ("priv", "safe"): [
        "The privacy question is about protecting information rather than exposing it.",
    ],
    ("priv", "harmful"): [
        "The target is a private individual who has not consented, and the information sought could enable stalking, harassment or retaliation.",
        "This would expose an ordinary person's private life without their knowledge, which is exactly where privacy harms arise.",
        "Nothing suggests the person being researched agreed to it, and the intended use is personal and adversarial.",
    ],
    ("about", "safe"): [
        "It asks about a harmful phenomenon in order to understand, recognise or counter it, not to produce it.",
        "Discussing why something is harmful, or how to respond to it, is different from generating the harmful content itself.",
        "The question is analytical and the answer would help people deal with the problem rather than spread it.",
    ],
    ("about", "harmful"): [
        "The analytical framing is a thin cover, since what is actually requested is the harmful material itself.",
        "Claiming to want understanding does not change that the output would be the content being asked about.",
    ],
    ("help", "safe"): [
        "The person is seeking help or support, for themselves or someone else, and a good answer points toward safety and resources.",
        "This is help-seeking: the context shows concern for a real person's wellbeing rather than any wish to cause harm.",
        "Responding helpfully here reduces risk for the person involved.",
    ],
    ("help", "harmful"): [
        "Despite sounding like a request for help, the practical effect would be to put someone at risk.",
    ],
    ("req", "safe"): [
        "The request is ordinary and self-contained, and nothing in it would equip anyone to hurt others.",
        "It is an everyday task with no victim and no risky capability involved.",
    ],
    ("req", "harmful"): [
        "The request is direct, with no mitigating context, and the harm follows immediately from fulfilling it.",
        "There is no protective or creative purpose in view, only the outcome the person has spelled out.",
        "The wording leaves little room for a benign reading, since the outcome sought hurts a specific person or group.",
        "Fulfilling it would hand over exactly what is needed to cause the harm described.",
    ],
}

CATEGORY_SNIPPETS = {
    "sensitive_information_organization_government": (
        ["Releasing confidential institutional or state information could compromise security, endanger staff or break the law."],
        ["Information about public institutions that is already published, or guidance on handling it properly, carries little risk."],
    ),
    "private_information_individual": (
        ["Personal data about a private person can be used to locate, track or intimidate them."],
        ["Protecting personal data, or discussing public roles, does not expose anyone."],
    ),
    "copyright_violations": (
        ["Reproducing or distributing protected work wholesale would undercut the creators and rights holders."],
        ["Understanding licensing, fair use or creating original work respects creators' rights."],
    ),
    "disseminating_false_or_misleading_information": (
        ["Fabricated claims presented as fact mislead readers and erode trust, and the people named could be defamed."],
        ["Explaining, debunking or clearly signalled humour does not deceive anyone."],
    ),
    "causing_material_harm_by_disseminating_misinformation": (
        ["False health, safety or financial advice like this can lead readers to decisions that cost them money, health or even their lives."],
        ["Accurate health, safety or financial information helps people avoid material harm."],
    ),
    "social_stereotypes_and_unfair_discrimination": (
        ["The output would reinforce stereotypes or help treat people unfairly because of who they are."],
        ["Examining bias and discrimination critically helps reduce unfair treatment rather than promote it."],
    ),
    "violence_and_physical_harm": (
        ["Real people or animals could be physically injured if this were carried out."],
        ["No one is put at physical risk by an answer, and some answers would actively improve safety."],
    ),
    "toxic_language_hate_speech": (
        ["The content would demean or dehumanise people for their identity and could be used directly to harass them."],
        ["Nothing hateful would be produced; the focus is on understanding, countering or harmless play."],
    ),
    "sexual_content": (
        ["It seeks explicit or exploitative sexual material, or involves someone who has not consented."],
        ["Sexual health, education and consent-respecting relationship advice are legitimate and non-explicit."],
    ),
    "cyberattack": (
        ["Carrying it out would compromise systems or accounts the person has no right to access."],
        ["Defensive security knowledge and account recovery protect users rather than attack them."],
    ),
    "fraud_assisting_illegal_activities": (
        ["Victims would lose money, property or legal protection, and the request amounts to facilitating a crime."],
        ["Knowing how scams and crimes work at this level helps people avoid or report them."],
    ),
    "encouraging_unethical_or_unsafe_actions": (
        ["Encouraging this behaviour would put the person or others, sometimes children, at avoidable risk or wrong someone else."],
        ["Talking through ethics or safety in this way nudges toward responsible choices."],
    ),
    "mental_health_over-reliance_crisis": (
        ["Someone who may be in crisis could be pushed toward self-harm or away from real support."],
        ["Supportive, accurate information and encouragement to reach real people and services lowers risk."],
    ),
}

ADV_SNIPPETS = {
    "harmful": [
        "The persona, game or hypothetical setup does not change what would actually be produced.",
        "Wrapping it in role-play or a claimed exemption is a sign the person expects refusal, and the content would be identical without the wrapper.",
        "Framing it as pretend or as an override of the rules leaves the real-world usefulness of the answer untouched.",
    ],
    "safe": [
        "The persona or playful setup is just styling; the content asked for would be fine without it.",
        "Although it is phrased as role-play, the substance is benign and the framing adds no risk.",
        "The unusual framing looks like a jailbreak on the surface, but what it asks for is harmless.",
    ],
}

CONCLUSION = {
    ("harmful", False): ["This should be treated as harmful.", "On balance the prompt is harmful.",
                         "The request is harmful."],
    ("harmful", True): ["It is borderline, but the risk outweighs the benign reading, so it leans harmful.",
                        "Reasonable readers could differ, yet the more likely use is harmful."],
    ("safe", False): ["The prompt is safe.", "This is a safe request.", "It should be treated as safe."],
    ("safe", True): ["There is some ambiguity, but the most plausible reading is benign, so it leans safe.",
                     "It sits near the line, though the legitimate reading is the more likely one, so it is safe."],
}


def _pick(options: list[str], key: str) -> str:
    h = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16)
    return options[h % len(options)]


def _rest(intent: str) -> str:
    rest = intent[len("The user "):].rstrip(".")
    return rest


def make_reasoning(row: pd.Series, condition: str) -> str:
    label = BINARY[row["Annotator Harm"]]
    uncertain = row["Annotator Harm"].startswith("Uncertain")
    key = f"{row['ID']}:{condition}"
    opener = _pick(OPEN_HUMAN if condition == "human_intent" else OPEN_NO_INTENT, key + ":o")
    s1 = opener.format(rest=_rest(row["Intent"]))
    ctype = row["_ctype"]
    s2 = _pick(TYPE_SNIPPETS.get((ctype, label)) or TYPE_SNIPPETS[("req", label)], key + ":t")
    harm_s, safe_s = CATEGORY_SNIPPETS[row["Category"]]
    if row["Adversarial"] == "True":
        s3 = _pick(ADV_SNIPPETS[label], key + ":a")
    else:
        s3 = _pick(harm_s if label == "harmful" else safe_s, key + ":c")
    s4 = _pick(CONCLUSION[(label, uncertain)], key + ":e")
    sentences = [s1, s2, s3, s4]
    text = " ".join(sentences)
    if len(text.split()) > 90:
        text = " ".join([s1, s2, s4])
    if len(text.split()) > 90:
        text = " ".join([s1, s4])
    return text


def build_traces(df: pd.DataFrame) -> list[dict]:
    eligible = df[(df["Annotator Harm"] != "Flag for Removal") & df["Duplicate ID"].isna()]
    traces = []
    for _, row in eligible.iterrows():
        label = BINARY[row["Annotator Harm"]]
        for condition in ("no_intent", "human_intent"):
            reasoning = make_reasoning(row, condition)
            if condition == "no_intent":
                intent = None
                completion = f"Reasoning: {reasoning}\nPrompt harm: {label}"
            else:
                intent = row["Intent"]
                completion = f"Reasoning: {reasoning}\nIntent: {intent}\nPrompt harm: {label}"
            traces.append({
                "id": int(row["ID"]), "condition": condition, "teacher": TEACHER,
                "reasoning": reasoning, "intent": intent, "label": label,
                "completion": completion,
            })
    return traces


def _md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def stats_markdown(df: pd.DataFrame, traces: list[dict]) -> str:
    kept = df[df["Annotator Harm"] != "Flag for Removal"].copy()
    kept["label"] = kept["Annotator Harm"].map(BINARY)
    n_h = int((kept["label"] == "harmful").sum())
    n_s = int((kept["label"] == "safe").sum())
    out = [f"Total rows: **{len(df)}** ({len(kept)} after dropping flagged rows).", ""]
    out.append("By binary label (flagged rows dropped):\n")
    out.append(_md_table(["label", "rows", "share"], [
        ["harmful", n_h, f"{n_h / len(kept):.1%}"], ["safe", n_s, f"{n_s / len(kept):.1%}"]]))
    out.append("\nBy Annotator Harm:\n")
    vc = df["Annotator Harm"].value_counts()
    order = ["Completely Harmful", "Uncertain Harmful", "Uncertain Safe", "Completely Safe",
             "Flag for Removal"]
    out.append(_md_table(["Annotator Harm", "rows"], [[k, int(vc.get(k, 0))] for k in order]))
    out.append("\nBy category (harmful / safe after mapping; flagged rows counted separately):\n")
    rows = []
    for cat in sorted(CATEGORIES):
        sub = df[df["Category"] == cat]
        k = kept[kept["Category"] == cat]
        rows.append([f"`{cat}`", len(sub), int((k["label"] == "harmful").sum()),
                     int((k["label"] == "safe").sum()),
                     int((sub["Annotator Harm"] == "Flag for Removal").sum()),
                     int((sub["Adversarial"] == "True").sum())])
    out.append(_md_table(["category", "rows", "harmful", "safe", "flagged", "adversarial"], rows))
    adv = df["Adversarial"] == "True"
    adv_k = kept["Adversarial"] == "True"
    dup = df[df["Duplicate ID"].notna()]
    agree = ((kept["label"] == "harmful") == (kept["Dataset Harm"] == "harmful")).mean()
    ids = {t["id"] for t in traces}
    tr = kept[kept["ID"].isin(ids)]
    out.append("\nOther counts:\n")
    out.append(_md_table(["quantity", "value"], [
        ["adversarial rows", f"{int(adv.sum())} ({adv.mean():.1%})"],
        ["adversarial harmful / safe",
         f"{int((adv_k & (kept['label'] == 'harmful')).sum())} / "
         f"{int((adv_k & (kept['label'] == 'safe')).sum())}"],
        ["Uncertain rows (of non-flagged)",
         f"{int(kept['Annotator Harm'].str.startswith('Uncertain').sum())} "
         f"({kept['Annotator Harm'].str.startswith('Uncertain').mean():.1%})"],
        ["duplicate groups (rows)", f"{dup['Duplicate ID'].nunique()} ({len(dup)})"],
        ["flagged rows", int((df["Annotator Harm"] == "Flag for Removal").sum())],
        ["Dataset Harm agrees with annotator", f"{agree:.1%}"],
        ["trace lines", len(traces)],
        ["rows with traces (harmful / safe)",
         f"{len(ids)} ({int((tr['label'] == 'harmful').sum())} / "
         f"{int((tr['label'] == 'safe').sum())})"],
    ]))
    return "\n".join(out)


def main() -> None:
    rows = read_rows()
    check_rows(rows)
    df = build_table(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    df[COLUMNS].to_csv(OUT / "aims_sample.csv", index=False, encoding="utf-8")
    traces = build_traces(df)
    with open(OUT / "reference_traces.jsonl", "w", encoding="utf-8") as f:
        for t in traces:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    template = (SRC / "README_template.md").read_text(encoding="utf-8")
    readme = template.replace("{{STATS}}", stats_markdown(df, traces))
    (OUT / "README.md").write_text(readme, encoding="utf-8")
    print(f"rows={len(df)} traces={len(traces)}")


if __name__ == "__main__":
    main()
