"""Human feedback, without the database: which side each rater sees a completion on,
agreement between raters, the majority verdict of an item, and reading preference pairs
from JSON Lines with a message per bad line."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from workers.ml.data import strict_json

MAX_IMPORT_BYTES = 10 * 2**20
MAX_IMPORT_PAIRS = 20_000
FIELDS = ("prompt", "chosen", "rejected")
# C0 control characters other than tab and newline (and DEL): invisible in the review pages,
# NUL breaks PostgreSQL text columns, and none belongs in a prompt or a completion.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def a_on_left(item_id: int, rater_id: int) -> bool:
    """Random left/right order per item and rater, stable across visits (so a rater who
    comes back sees the same layout) and different between raters."""
    return hashlib.sha256(f"{item_id}:{rater_id}".encode()).digest()[0] % 2 == 0


@dataclass(frozen=True)
class PairAgreement:
    rater_1: int
    rater_2: int
    overlap: int  # items both rated
    agreed: int
    kappa: float | None  # Cohen's kappa; None when chance agreement is total

    @property
    def share(self) -> float:
        return self.agreed / self.overlap if self.overlap else 0.0


@dataclass(frozen=True)
class Agreement:
    overlapping_items: int  # items rated by two or more raters
    comparisons: int  # rater pairs on the same item
    agreed: int
    pairs: list[PairAgreement]

    @property
    def share(self) -> float | None:
        return self.agreed / self.comparisons if self.comparisons else None


def _kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    n = len(first)
    observed = sum(1 for a, b in zip(first, second, strict=True) if a == b) / n
    c1, c2 = Counter(first), Counter(second)
    expected = sum(c1[k] * c2[k] for k in set(c1) | set(c2)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def agreement(ratings: Iterable[tuple[int, int, str]]) -> Agreement:
    """Agreement over (item, rater, choice) triples: for every item two or more raters
    rated, each pair of its raters agrees or not; per pair of raters, the share of their
    common items they agree on and Cohen's kappa."""
    by_item: dict[int, dict[int, str]] = defaultdict(dict)
    for item, rater, choice in ratings:
        by_item[item][rater] = choice
    comparisons = agreed = overlapping = 0
    per_pair: dict[tuple[int, int], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for votes in by_item.values():
        if len(votes) < 2:
            continue
        overlapping += 1
        for r1, r2 in combinations(sorted(votes), 2):
            comparisons += 1
            agreed += votes[r1] == votes[r2]
            per_pair[(r1, r2)][0].append(votes[r1])
            per_pair[(r1, r2)][1].append(votes[r2])
    pairs = [
        PairAgreement(
            rater_1=r1,
            rater_2=r2,
            overlap=len(c1),
            agreed=sum(1 for a, b in zip(c1, c2, strict=True) if a == b),
            kappa=_kappa(c1, c2),
        )
        for (r1, r2), (c1, c2) in sorted(per_pair.items())
    ]
    return Agreement(overlapping, comparisons, agreed, pairs)


def majority(choices: Sequence[str]) -> str | None:
    """ "a" or "b" when more raters preferred it than the other; None for no pair (ties,
    "both bad", an even split)."""
    a, b = choices.count("a"), choices.count("b")
    if a > b:
        return "a"
    if b > a:
        return "b"
    return None


@dataclass(frozen=True)
class LineProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"Line {self.line}: {self.message}"


def _control_message(record: dict[str, str], fields: list[str]) -> str:
    found = _CONTROL.search(record[fields[0]])
    assert found is not None
    names = ", ".join(repr(f) for f in fields)
    return (
        f"{names} contains a control character (U+{ord(found.group()):04X}); "
        "only tabs and line breaks are allowed."
    )


def parse_pairs(data: bytes) -> tuple[list[dict[str, str]], list[LineProblem]]:
    """Pairs from JSON Lines ({"prompt", "chosen", "rejected"}, other keys ignored) and a
    problem per bad line. Blank lines are skipped."""
    if len(data) > MAX_IMPORT_BYTES:
        return [], [LineProblem(0, f"the file is over {MAX_IMPORT_BYTES // 2**20} MB.")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [LineProblem(0, f"the file is not UTF-8 text (byte {exc.start}).")]
    pairs: list[dict[str, str]] = []
    problems: list[LineProblem] = []
    # Lines end at "\n" only (str.splitlines also splits at U+2028, U+0085 and \x1c-\x1e, which
    # are valid inside a JSON string and would shift every line number after them).
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = strict_json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(LineProblem(number, f"not valid JSON ({exc.msg}, column {exc.colno})."))
            continue
        except strict_json.JsonRefused as exc:
            problems.append(LineProblem(number, f"{exc}."))
            continue
        if not isinstance(record, dict):
            problems.append(
                LineProblem(number, "expected a JSON object with prompt, chosen and rejected.")
            )
            continue
        missing = [f for f in FIELDS if f not in record]
        if missing:
            problems.append(LineProblem(number, f"missing {', '.join(repr(f) for f in missing)}."))
            continue
        wrong = [f for f in FIELDS if not isinstance(record[f], str)]
        if wrong:
            problems.append(
                LineProblem(number, f"{', '.join(repr(f) for f in wrong)} must be text.")
            )
            continue
        control = [f for f in FIELDS if _CONTROL.search(record[f])]
        if control:
            problems.append(LineProblem(number, _control_message(record, control)))
            continue
        empty = [f for f in FIELDS if not record[f].strip()]
        if empty:
            problems.append(LineProblem(number, f"{', '.join(repr(f) for f in empty)} is empty."))
            continue
        if record["chosen"].strip() == record["rejected"].strip():
            problems.append(LineProblem(number, "'chosen' and 'rejected' are the same text."))
            continue
        pairs.append({f: record[f] for f in FIELDS})
    if not pairs and not problems:
        problems.append(LineProblem(0, "the file has no pairs."))
    if len(pairs) > MAX_IMPORT_PAIRS:
        problems.append(LineProblem(0, f"more than {MAX_IMPORT_PAIRS:,} pairs; split the file."))
    return pairs, problems
