"""Short-answer QA metrics: exact match and token F1 with SQuAD normalisation.

ARPO scores the knowledge benchmarks (HotpotQA, 2Wiki, MuSiQue, Bamboogle) by token F1
(arXiv 2507.19849, §4.1 and appendix; ARPO_REFERENCE.md §3 and §6). Both metrics compare
*normalised* strings, SQuAD v1.1 style:

    normalise(s) = fix_whitespace(drop_articles(drop_punctuation(lowercase(s))))

where articles are the words ``a``, ``an``, ``the`` and punctuation is ``string.punctuation``.

With P and R the multiset token overlap ``same = |tokens(pred) ∩ tokens(gold)|`` divided by the
number of prediction and gold tokens respectively:

    F1 = 2·P·R / (P + R),   F1 = 0 when same = 0
    EM = 1 if normalise(pred) == normalise(gold) else 0

Yes/no guard (as in the reference scorer): when either normalised side is ``yes``, ``no`` or
``noanswer`` and the two sides differ, F1 = 0, so "no" never earns partial credit against
"no idea". Each function scores one prediction against one gold string; the reward takes the
maximum over a task's answer aliases.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_POLAR_ANSWERS = frozenset({"yes", "no", "noanswer"})


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Token-level F1 = 2PR/(P+R) on normalised, whitespace-split tokens (module docstring)."""
    pred_norm, gold_norm = normalize_answer(prediction), normalize_answer(gold)
    if (pred_norm in _POLAR_ANSWERS or gold_norm in _POLAR_ANSWERS) and pred_norm != gold_norm:
        return 0.0
    pred_tokens, gold_tokens = pred_norm.split(), gold_norm.split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)
