"""Dataset pipeline throughput and memory: inspect, validate, write_clean, profile.

Runs standalone: `.venv/bin/python bench/dataset_profile.py`. In a temporary folder it
builds the tiny model's tokenizer and writes two JSON Lines files of varied dialogues and
summaries (10k and 100k rows, a few duplicate, empty and broken rows among them). Each
measurement runs in a fresh child process, so the two sizes never share a heap, and the
child reports its own peak RSS (`ru_maxrss`):

- pipeline, 10k and 100k rows: the four stages in order, each timed;
- imports only: the same child importing the same modules and doing nothing else, the
  floor that the pipeline's RSS should be read against;
- naive baseline, 100k rows: `json.loads` of every line into a list, the cheapest read
  there is, which holds every row.

Target (datasets issue): peak RSS for 100k rows under 1.5x that for 10k rows.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = (10_000, 100_000)
CONTEXT_LENGTH = 512

_NAMES = ["Amanda", "Tom", "Priya", "Jonas", "Mei", "Olu", "Sara", "Diego", "Hana", "Liam"]
_TOPICS = [
    ("a delayed parcel", "promises to send a replacement by Friday"),
    ("the quarterly report", "agrees to review the figures tonight"),
    ("a broken laptop", "books a repair for Monday morning"),
    ("dinner plans", "suggests the new Italian place at seven"),
    ("a refund", "explains that it takes five working days"),
    ("the team offsite", "proposes moving it to the lake house"),
    ("a flat viewing", "confirms the viewing on Saturday at noon"),
    ("their gym membership", "cancels it from next month"),
]
_LINES = [
    "Hi {b}, do you have a minute to talk about {topic}?",
    "Sure, what is going on with {topic}?",
    "I have been waiting for a week and nobody has called me back.",
    "I am sorry to hear that. Let me check what happened.",
    "Thanks, I really need this sorted before the weekend.",
    "I can see the problem now; it was logged under the wrong name.",
    "That explains it. What can we do?",
    "Let me see. I {outcome}.",
    "Perfect, that works for me.",
    "Great. Is there anything else I can help you with today?",
]


def write_dataset(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    previous = ""
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            a, b = rng.sample(_NAMES, 2)
            topic, outcome = rng.choice(_TOPICS)
            turns = rng.randint(4, len(_LINES))
            speakers = ("#Person1#", "#Person2#")
            dialogue = "\n".join(
                f"{speakers[t % 2]}: "
                + _LINES[t].format(b=b, topic=topic, outcome=outcome)
                + (f" (ref {rng.randrange(10**6)})" if t == 2 else "")
                for t in range(turns)
            )
            summary = f"{a} contacts {b} about {topic}; {b} {outcome}."
            if i % 997 == 3:
                summary = ""  # dropped: empty target
            line = json.dumps({"dialogue": dialogue, "summary": summary}) + "\n"
            if i % 499 == 7 and previous:
                line = previous  # dropped: duplicate of an earlier row
            elif i % 1999 == 11:
                line = '{"dialogue": "cut off\n'  # dropped: malformed
            previous = line
            f.write(line)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(mode: str, data: Path, tokenizer_dir: Path, work: Path) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    if mode == "build":
        import transformers

        from workers.ml import bundled

        transformers.utils.logging.disable_progress_bar()
        bundled.build_tiny(tokenizer_dir)
        return {}
    import transformers
    from transformers import AutoTokenizer

    from workers.ml.data import validation
    from workers.ml.data.profile import profile

    transformers.utils.logging.set_verbosity_error()
    if mode == "imports":
        return {"rss_mb": peak_rss_mb()}
    if mode == "naive":
        start = time.perf_counter()
        records = []
        with data.open(encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError):  # the few broken lines
                    records.append(json.loads(line))
        seconds = time.perf_counter() - start
        return {"rows": len(records), "seconds": seconds, "rss_mb": peak_rss_mb()}

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    timings: dict[str, float] = {}

    def timed(stage: str, fn: Any) -> Any:
        start = time.perf_counter()
        result = fn()
        timings[stage] = time.perf_counter() - start
        return result

    found = timed(
        "inspect", lambda: validation.inspect(data, filename=data.name, max_rows=1_000_000)
    )
    mapping: dict[str, Any] = {
        "fmt": found.format,
        "encoding": found.encoding,
        "input_field": found.suggested_input,
        "target_field": found.suggested_target,
        "max_rows": 1_000_000,
    }
    report = timed("validate", lambda: validation.validate(data, **mapping))
    clean = work / f"clean-{data.stem}.jsonl"
    splits = timed(
        "write_clean",
        lambda: validation.write_clean(
            data, clean, seed=0, fractions=(0.8, 0.1, 0.1), stratify=False, **mapping
        ),
    )
    result = timed("profile", lambda: profile(clean, tokenizer, context_length=CONTEXT_LENGTH))
    return {
        "rows": found.rows,
        "summary": report.summary(),
        "splits": splits,
        "over_context": result["over_context"],
        "input_p95": result["input_tokens"]["p95"],
        "timings": timings,
        "seconds": sum(timings.values()),
        "rss_mb": peak_rss_mb(),
    }


def run_child(mode: str, data: Path, tokenizer_dir: Path, work: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, str(data), str(tokenizer_dir), str(work)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"child {mode} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    # This process never imports torch: Linux carries the RSS high-water mark of the
    # process that spawns a child into the child's ru_maxrss, so a big parent would mask
    # the children's peaks. The tiny model is built in a child for that reason.
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer_dir = work / "tiny"
        run_child("build", work, tokenizer_dir, work)
        files = {}
        for rows in SIZES:
            files[rows] = work / f"dialogues-{rows}.jsonl"
            write_dataset(files[rows], rows, seed=rows)
        small, large = files[SIZES[0]], files[SIZES[-1]]
        imports = run_child("imports", small, tokenizer_dir, work)
        results = {rows: run_child("pipeline", files[rows], tokenizer_dir, work) for rows in SIZES}
        naive = run_child("naive", large, tokenizer_dir, work)
        mib = {rows: files[rows].stat().st_size / 2**20 for rows in SIZES}

    for rows, result in results.items():
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in result["timings"].items())
        print(f"{rows:,} rows ({mib[rows]:.1f} MiB): {stages}; peak RSS {result['rss_mb']:.0f} MB")
        print(f"  {result['summary']} splits {result['splits']}")
        print(
            f"  input tokens p95 {result['input_p95']:.0f}; over a {CONTEXT_LENGTH}-token "
            f"context: {result['over_context']}"
        )
    a, b = results[SIZES[0]]["rss_mb"], results[SIZES[-1]]["rss_mb"]
    big = results[SIZES[-1]]
    rows_per_s = SIZES[-1] / big["seconds"]
    without_profile = SIZES[-1] / (big["seconds"] - big["timings"]["profile"])
    baseline_rows_per_s = naive["rows"] / naive["seconds"]
    print(f"imports only (same child, no work): peak RSS {imports['rss_mb']:.0f} MB")
    print(f"parent (data generation) peak RSS: {peak_rss_mb():.0f} MB")
    print(
        f"pipeline on {SIZES[-1]:,} rows: {rows_per_s:,.0f} rows/s end to end, "
        f"{without_profile:,.0f} rows/s without the tokenizer pass"
    )
    print(
        f"naive baseline (json.loads every line into a list): {baseline_rows_per_s:,.0f} "
        f"rows/s, peak RSS {naive['rss_mb']:.0f} MB (holds every row)"
    )
    print(
        f"RSS above imports: {a - imports['rss_mb']:.0f} MB at 10k, "
        f"{b - imports['rss_mb']:.0f} MB at 100k; 100k/10k = {b / a:.2f} "
        f"(target < 1.5: {'met' if b < 1.5 * a else 'NOT met'})"
    )
    print(
        f"RESULT rows_per_s={rows_per_s:.0f} peak_rss_mb_10k={a:.1f} peak_rss_mb_100k={b:.1f} "
        f"baseline_rows_per_s={baseline_rows_per_s:.0f} imports_rss_mb={imports['rss_mb']:.1f} "
        f"naive_rss_mb_100k={naive['rss_mb']:.1f} rows_per_s_without_profile={without_profile:.0f}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        data, tokenizer_dir, work = (Path(arg) for arg in sys.argv[3:])
        print(json.dumps(child(sys.argv[2], data, tokenizer_dir, work)))
    else:
        main()
