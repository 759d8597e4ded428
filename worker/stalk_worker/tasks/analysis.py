"""Text analysis over a batch: language per text and text statistics.

Language detection uses ``langdetect``, whose language profiles ship inside the
package: nothing is downloaded at run time. Its seed is fixed so that a retried task
gives the same answer.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from celery import shared_task
from langdetect import DetectorFactory, LangDetectException, detect_langs

from stalk_worker.taskkit import PermanentError

DetectorFactory.seed = 0

_WORD = re.compile(r"\w+", re.UNICODE)
# Latin and CJK full stops, exclamation and question marks.
_SENTENCE_END = re.compile("[.!?\u3002\uff01\uff1f]+")
UNKNOWN = "unknown"


def text_statistics(text: str) -> dict[str, Any]:
    words = _WORD.findall(text)
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    return {
        "characters": len(text),
        "words": len(words),
        "unique_words": len({w.lower() for w in words}),
        "sentences": len(sentences),
        "average_word_length": round(sum(map(len, words)) / len(words), 2) if words else 0.0,
    }


def detect_language(text: str) -> tuple[str, float]:
    """The most likely language code and its probability; ``unknown`` for no signal."""
    try:
        best = detect_langs(text)[0]
    except LangDetectException:
        return UNKNOWN, 0.0
    return str(best.lang), round(float(best.prob), 3)


@shared_task(name="stalk_worker.tasks.analysis.analyze_texts", soft_time_limit=300, time_limit=330)
def analyze_texts(texts: list[str], top_words: int = 10) -> dict[str, Any]:
    """Per-text language and statistics, and totals for the batch."""
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise PermanentError("texts must be a list of strings")
    per_text = []
    languages: Counter[str] = Counter()
    vocabulary: Counter[str] = Counter()
    for text in texts:
        language, probability = detect_language(text)
        languages[language] += 1
        vocabulary.update(w.lower() for w in _WORD.findall(text) if len(w) > 3)
        per_text.append({"language": language, "probability": probability, **text_statistics(text)})
    return {
        "count": len(texts),
        "languages": dict(languages.most_common()),
        "words": sum(t["words"] for t in per_text),
        "top_words": vocabulary.most_common(top_words),
        "texts": per_text,
    }
