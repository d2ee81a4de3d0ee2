"""Probes for shortcuts in training data: cues that give the label away without the task.

A classifier learns whatever separates the labels most cheaply. If the adversarial *wrapper*
(the role-play, the fake authority, the "make it real") already says harmful or safe, a model
can score well on the sample while learning nothing about intent; if reasoning traces quote the
gold intent, the no-intent condition of distillation is not "without intent"; if only traces of
one label hedge, the label leaks through style. Each function here measures one such cue, so
the notebooks and the sample's tests can show it is absent rather than assume it.

Text measures work on lowercased word tokens (:func:`words`): punctuation and case never
decide a match.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from aims_kit.scoring.metrics import POSITIVE, binary_metrics, trivial_baselines
from aims_kit.scoring.stats import bootstrap_ci, bootstrap_mean_ci

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

#: Function words left out of the token-overlap score: two texts about different things still
#: share "the", "to" and "a", so counting them would make every pair look similar.
STOPWORDS = frozenset(
    "a an the and or but if of to in on at for from by with about as into than then so that this these those "
    "it its it's is are was were be been being am do does did doing have has had having will would can could "
    "should shall may might must not no nor i me my we our you your he him his she her they them their who whom "
    "which what when where why how all any some such own same other more most very just also only even up out "
    "user user's wants want wanting asks asking ask".split()
)

#: Hedging words and phrases (the agreed list for the sample's traces, plus their close forms).
HEDGES = (
    "might", "perhaps", "borderline", "arguably", "unclear", "ambiguous", "ambiguity", "on balance",
    "could be read", "possibly", "leans", "near the line", "could differ",
)
_HEDGE_RE = re.compile(r"\b(" + "|".join(re.escape(h) for h in HEDGES) + r")\b", re.IGNORECASE)

#: Wrapper phrases that announce the label instead of leaving it to the request. "spells out
#: harm": a harmful wrapper insisting the output be real and usable; "defuses itself": a safe
#: wrapper promising in advance that nothing harmful is wanted. Generic jailbreak framing ("no
#: disclaimers", "ignore your rules") is not listed: it belongs around both labels. Matched
#: case-insensitively.
GIVEAWAY_PATTERNS: dict[str, tuple[str, ...]] = {
    "spells out harm": (
        r"make (the |its |their )?(methods|steps|instructions|it) (look )?(completely )?real\b",
        r"real,? working (code|methods?|steps)", r"(with|using|give me) the real (steps|methods|techniques|code)",
        r"(accurate|practical|realistic) real[- ]world", r"(in|with) (realistic|accurate|practical|real) (detail|specifics)",
        r"enough (detail|specifics) (to|that)", r"exactly as (it'?d|it would|it will|they'?d|he'?d|she'?d)? ?(be )?(posted|published)",
        r"(would|will|that) actually work", r"work in real life", r"don'?t censor", r"played (completely )?straight",
        r"for authenticity", r"so it feels authentic",
    ),
    "defuses itself": (
        r"without (quoting|spelling out|listing|naming|giving away|giving the)", r"no specific exploits",
        r"\bno (real )?(code|methods?|exploits?)( needed)?\b", r"nothing (operational|realistic|actually hurtful)",
        r"keep it vague", r"but vague", r"at a high level", r"in broad strokes", r"at a storytelling level",
        r"clearly (a joke|over the top|satire|fictional)", r"no punching down", r"no real[- ]world groups",
        r"rather than gore", r"without (gore|being explicit)", r"keep it (playful and )?pg-13", r"teen-rated",
        r"without any real secrets",
    ),
}
_GIVEAWAY_RE = {kind: re.compile("|".join(pats), re.IGNORECASE) for kind, pats in GIVEAWAY_PATTERNS.items()}


# --------------------------------------------------------------------------- text measures

def words(text: str) -> list[str]:
    """Lowercased word tokens (letters, digits, one inner apostrophe)."""
    return _WORD_RE.findall(str(text).lower())


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """The set of ``n``-word sequences in ``tokens``."""
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def repeats_ngram(text: str, n: int = 4) -> bool:
    """True when some ``n``-word sequence occurs twice in ``text``.

    A one-sentence intent never needs to say the same four words twice; a small model stuck in
    a loop ("a of a of a of") always does, so this separates the two cheaply.
    """
    tokens = words(text)
    return len(ngrams(tokens, n)) < len(tokens) - n + 1


def shared_ngrams(reference: str, text: str, n: int = 6) -> set[tuple[str, ...]]:
    """``n``-word sequences that ``text`` copies from ``reference`` (case and punctuation ignored).

    Six words is long enough that two independently written sentences about the same prompt
    almost never share one by chance, and short enough to catch a copied clause.
    """
    return ngrams(words(reference), n) & ngrams(words(text), n)


def stem(word: str) -> str:
    """A crude suffix-stripping stem, so "poisoning" and "poison" count as one word."""
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_stems(text: str) -> set[str]:
    """Stems of the words of ``text`` that are not :data:`STOPWORDS`."""
    return {stem(w) for w in words(text) if w not in STOPWORDS}


def token_overlap(reference: str, text: str) -> float:
    """Share of ``reference``'s content words (stemmed, stopwords dropped) that ``text`` uses, 0 to 1.

    A cheap similarity: 1.0 when ``text`` contains every content word of ``reference`` (a copy
    scores 1.0), near 0 for unrelated text. Reasoning about the same prompt as an intent shares
    some topic words with it, so compare conditions with each other, not with 0.
    """
    ref = content_stems(reference)
    return len(ref & content_stems(text)) / len(ref) if ref else 0.0


def has_hedge(text: str) -> bool:
    """Whether ``text`` uses any of the :data:`HEDGES`."""
    return bool(_HEDGE_RE.search(text or ""))


def giveaway_phrases(prompt: str) -> dict[str, list[str]]:
    """The give-away phrases (:data:`GIVEAWAY_PATTERNS`) found in ``prompt``, by kind; empty kinds left out."""
    found = {kind: [m.group(0) for m in rx.finditer(prompt or "")] for kind, rx in _GIVEAWAY_RE.items()}
    return {kind: hits for kind, hits in found.items() if hits}


# --------------------------------------------------------------------------- tables

def hedge_rates(texts: Sequence[str], labels: Sequence[str], levels: Sequence[str]) -> pd.DataFrame:
    """Share of texts that hedge, by binary label and by certainty level (Uncertain vs Completely).

    If hedging tracks the label or the level, a student learns "hedged ⇒ harmful" (or ⇒
    Uncertain) from wording alone; the rates should be close across groups.
    """
    frame = pd.DataFrame({
        "hedged": [has_hedge(t) for t in texts],
        "label": list(labels),
        "level": ["Uncertain" if str(lv).startswith("Uncertain") else "Completely" for lv in levels],
    })
    rows = []
    for by in ("label", "level"):
        for value, group in frame.groupby(by, sort=True):
            rows.append({"by": by, "group": value, "n": len(group), "hedged": int(group["hedged"].sum()),
                         "rate": float(group["hedged"].mean())})
    return pd.DataFrame(rows, columns=["by", "group", "n", "hedged", "rate"])


def hedge_gaps(table: pd.DataFrame) -> dict[str, float]:
    """Largest absolute difference in hedge rate between the labels and between the levels."""
    return {
        f"{by}_gap": float(group["rate"].max() - group["rate"].min()) if len(group) > 1 else 0.0
        for by, group in table.groupby("by", sort=True)
    }


def giveaway_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Adversarial rows containing a give-away phrase, by kind and binary label (``label`` column needed)."""
    adv = frame[frame["Adversarial"].map(lambda v: str(v) == "True")]
    hits = adv["Prompt"].map(giveaway_phrases)
    rows = []
    for kind in GIVEAWAY_PATTERNS:
        for label, group in adv.groupby("label", sort=True):
            rows.append({"kind": kind, "label": label, "adversarial_rows": len(group),
                         "with_phrase": int(hits[group.index].map(lambda h: kind in h).sum())})
    return pd.DataFrame(rows, columns=["kind", "label", "adversarial_rows", "with_phrase"])


def trace_variety(texts: Sequence[str]) -> dict[str, float]:
    """How templated a set of reasoning texts is.

    ``distinct_openers``: distinct first three words; ``repeated_sentence_share``: share of the
    sentences of five or more words that occur word for word in three or more texts (a template
    pool shows up here; a closing "Decline." or "Safe." is a verdict, not reasoning, so shorter
    sentences are not counted); sentence and word counts per text.
    """
    sentences = [[s for s in re.split(r"(?<=[.!?])\s+", t.strip()) if s] for t in texts]
    counts = Counter(s for ss in sentences for s in set(ss))
    n_words = [len(t.split()) for t in texts]
    n_sent = [len(ss) for ss in sentences]
    reasoning = [s for ss in sentences for s in ss if len(s.split()) >= 5]
    repeated = sum(counts[s] >= 3 for s in reasoning)
    return {
        "texts": len(texts),
        "distinct_openers": len({" ".join(words(t)[:3]) for t in texts}),
        "repeated_sentence_share": repeated / len(reasoning) if reasoning else 0.0,
        "sentences_min": min(n_sent, default=0), "sentences_median": float(np.median(n_sent)) if n_sent else 0.0,
        "sentences_max": max(n_sent, default=0),
        "words_min": min(n_words, default=0), "words_median": float(np.median(n_words)) if n_words else 0.0,
        "words_max": max(n_words, default=0),
    }


# --------------------------------------------------------------------------- wrapper probe

def wrapper_text(prompt: str, intent: str) -> str:
    """The prompt's framing with its core request removed.

    Definition: the prompt's word tokens (:func:`words`) minus every token whose stem
    (:func:`stem`) is also a stem of a word in the row's gold intent. The intent names the
    user's main goal in the annotator's words, so what it shares with the prompt is the request
    itself ("poison", "neighbour's", "dog"); what is left is the wrapper — persona, fake
    authority, output format, "for my novel", and any "make it real" / "keep it vague" cue.
    Function words shared with the intent ("the", "to") go too; they carry no label.
    """
    request = {stem(w) for w in words(intent)}
    return " ".join(w for w in words(prompt) if stem(w) not in request)


@dataclass(frozen=True)
class _Counts:
    """A sparse document-by-feature count matrix as (document, feature, count) triplets."""

    doc: np.ndarray
    feature: np.ndarray
    count: np.ndarray
    n_docs: int
    n_features: int


def _features(docs: Sequence[list[str]]) -> _Counts:
    """Unigram and bigram counts of each token list (features sorted, so the order is fixed)."""
    grams = [Counter(toks) + Counter(" ".join(b) for b in zip(toks, toks[1:])) for toks in docs]
    vocab = {f: i for i, f in enumerate(sorted({f for doc in grams for f in doc}))}
    triplets = [(row, vocab[f], c) for row, doc in enumerate(grams) for f, c in doc.items()]
    doc, feature, count = (np.array(col) for col in zip(*triplets)) if triplets else (np.zeros(0, int),) * 3
    return _Counts(doc.astype(int), feature.astype(int), count.astype(float), len(grams), len(vocab))


def _naive_bayes_predict(x: _Counts, y: np.ndarray, train: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Multinomial naive Bayes with Laplace smoothing, fitted on the ``train`` rows; predicts every row.

    Only features seen in the training rows count (as if the vocabulary were learnt there): the
    others get zero weight, so a word that occurs only in held-out rows cannot decide them.
    """
    in_train = train[x.doc]
    counts = np.bincount(
        x.feature[in_train] + x.n_features * y[x.doc[in_train]], weights=x.count[in_train], minlength=2 * x.n_features
    ).reshape(2, x.n_features)
    seen = counts.sum(axis=0) > 0
    smoothed = (counts + alpha) * seen
    with np.errstate(divide="ignore"):
        log_lik = np.where(seen, np.log(smoothed / smoothed.sum(axis=1, keepdims=True)), 0.0)
    log_prior = np.log(np.bincount(y[train], minlength=2) + 1.0)
    scores = np.stack([
        np.bincount(x.doc, weights=x.count * log_lik[c, x.feature], minlength=x.n_docs) + log_prior[c] for c in (0, 1)
    ], axis=1)
    return scores.argmax(axis=1)


def _folds(groups: Sequence[str], y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number per row: rows with the same prompt share a fold, folds stratified on label."""
    rng = np.random.default_rng(seed)
    first = {}
    for g, label in zip(groups, y):
        first.setdefault(g, label)
    fold_of = {}
    for label in (0, 1):
        members = [g for g, lab in first.items() if lab == label]
        for j, g in enumerate(rng.permutation(len(members))):
            fold_of[members[g]] = j % k
    return np.array([fold_of[g] for g in groups])


def _cross_val_predict(x: _Counts, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    pred = np.empty_like(y)
    for f in np.unique(folds):
        test = folds == f
        pred[test] = _naive_bayes_predict(x, y, ~test)[test]
    return pred


@dataclass
class ProbeResult:
    """Cross-validated scores of the wrapper-only classifier, with intervals and the chance level."""

    rows: int
    harmful_share: float
    folds: int
    accuracy: float
    accuracy_ci_low: float
    accuracy_ci_high: float
    f1: float
    f1_ci_low: float
    f1_ci_high: float
    majority_accuracy: float
    f1_flag_all: float
    permuted_accuracy_mean: float
    permuted_accuracy_p95: float
    permuted_f1_mean: float
    permutations: int
    above_chance: bool
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


def wrapper_probe(
    frame: pd.DataFrame, *, folds: int = 5, seed: int = 22, n_boot: int = 1000, permutations: int = 50
) -> ProbeResult:
    """Can the adversarial wrapper alone (:func:`wrapper_text`) predict the label?

    Multinomial naive Bayes on unigrams and bigrams, ``folds``-fold cross-validation (rows that
    share a prompt stay in one fold; folds stratified on the label; vocabulary learnt inside each
    training fold). Accuracy and harmful-class F1 of the out-of-fold predictions come with
    percentile bootstrap intervals. Chance is measured, not assumed: the same pipeline is rerun on
    ``permutations`` label shuffles. ``above_chance`` is true when the accuracy interval's lower
    end clears both the majority-class accuracy and the 95th percentile of the shuffled runs.

    ``frame`` needs ``Prompt``, ``Intent``, ``label`` and ``Adversarial``; only adversarial rows
    are used.
    """
    missing = [c for c in ("Prompt", "Intent", "label", "Adversarial") if c not in frame.columns]
    if missing:
        raise KeyError(f"wrapper_probe needs column(s) {missing}; found {list(frame.columns)}")
    adv = frame[frame["Adversarial"].map(lambda v: str(v) == "True")].reset_index(drop=True)
    if adv["label"].nunique() < 2 or len(adv) < 2 * folds:
        raise ValueError(f"wrapper_probe needs adversarial rows of both labels, at least {2 * folds}; got {len(adv)}")
    docs = _features([wrapper_text(p, i).split() for p, i in zip(adv["Prompt"], adv["Intent"])])
    y = (adv["label"] == POSITIVE).to_numpy().astype(int)
    groups = [" ".join(words(p)) for p in adv["Prompt"]]
    fold_ids = _folds(groups, y, folds, seed)
    as_labels = lambda v: [POSITIVE if x else "safe" for x in v]  # noqa: E731
    gold = as_labels(y)
    pred = _cross_val_predict(docs, y, fold_ids)
    scores = binary_metrics(gold, as_labels(pred))
    ci = bootstrap_ci(gold, as_labels(pred), n_boot=n_boot, seed=seed)
    acc_low, acc_high = bootstrap_mean_ci(pred == y, n_boot=n_boot, seed=seed)
    rng = np.random.default_rng(seed + 1)
    perm_acc, perm_f1 = [], []
    for _ in range(permutations):
        shuffled = rng.permutation(y)
        p = _cross_val_predict(docs, shuffled, _folds(groups, shuffled, folds, seed))
        m = binary_metrics(as_labels(shuffled), as_labels(p))
        perm_acc.append(m["accuracy"])
        perm_f1.append(m["f1"])
    majority = max(y.mean(), 1 - y.mean())
    p95 = float(np.quantile(perm_acc, 0.95)) if perm_acc else majority
    above = acc_low > max(majority, p95)
    verdict = (
        f"the wrapper alone predicts the label above chance (accuracy {scores['accuracy']:.2f}, "
        f"95% CI {acc_low:.2f}–{acc_high:.2f}; chance ≈ {max(majority, p95):.2f}): the framing gives labels away"
        if above else
        f"no better than chance: accuracy {scores['accuracy']:.2f} (95% CI {acc_low:.2f}–{acc_high:.2f}) against "
        f"a majority class of {majority:.2f} and shuffled labels reaching {p95:.2f}"
    )
    return ProbeResult(
        rows=len(adv), harmful_share=float(y.mean()), folds=folds,
        accuracy=scores["accuracy"], accuracy_ci_low=acc_low, accuracy_ci_high=acc_high,
        f1=scores["f1"], f1_ci_low=ci["f1_ci_low"], f1_ci_high=ci["f1_ci_high"],
        majority_accuracy=float(majority), f1_flag_all=trivial_baselines(gold)["f1_flag_all"],
        permuted_accuracy_mean=float(np.mean(perm_acc)) if perm_acc else float("nan"),
        permuted_accuracy_p95=p95, permuted_f1_mean=float(np.mean(perm_f1)) if perm_f1 else float("nan"),
        permutations=permutations, above_chance=bool(above), verdict=verdict,
    )
