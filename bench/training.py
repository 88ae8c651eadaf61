"""LoRA training speed: this project's training loop vs a plain transformers.Trainer script.

Runs standalone: `.venv/bin/python bench/training.py [--rounds N] [--steps N]`. With the
bundled SmolLM2-135M it renders the shipped sample dialogues with the trials' zero-shot
template and the model's chat template, tokenizes them once (`workers.ml.training.common.
prepare_examples`: prompt masked, target + end token, at most 256 tokens), and then, in the
same process and alternating round by round,
(1) trains LoRA (r=8, alpha=16, dropout 0.05, q_proj and v_proj, lr 2e-4 linear, AdamW,
    grad-norm clip 1.0) with `workers.ml.training.sft.train`: length-grouped batches, loss on
    the target positions only;
(2) trains the same LoRA on the same examples with `transformers.Trainer`: random order,
    `DataCollatorForSeq2Seq(padding="longest")`, no workers, no evaluation, no saving.
Each run takes WARMUP steps that are not timed, then STEPS timed steps of batch 4; both
start from a fresh float32 copy of the model. Speed counts every non-padding token a step
trains on (prompt, target and end token; padding never), divided by the wall time between
the end of the last warm-up step and the end of the last step. Target: ratio >= 0.95.

Data-parallel scaling (`--ddp-steps`, 0 skips it; `--rounds 0` runs it alone): the same loop at the settings a newcomer
picks (`--ddp-batch` 8 rows x `--ddp-seq` 512 tokens, LoRA) once in this process with
every core (what `processes=1` runs) and once as 2 torch.distributed processes launched
through torchrun exactly as the fine-tuning task launches them (gloo, cores / 2 threads
each; the timing comes from rank 0's step events), `--ddp-rounds` times in alternating
order. `ddp_scaling` = 2-process tokens/s /
1-process tokens/s. Two processes on a machine whose cores the single process already
uses cannot reach 2; the figure says what the second process costs or gains here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import transformers

from workers.ml import loading, prompts
from workers.ml.params import TemplateSnapshot, TrainParams
from workers.ml.training import adapters, common, sft
from workers.ml.training import distributed as ddp

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "lifecycle_app" / "samples" / "dialogue_summaries.jsonl"
BATCH = 4
MAX_SEQ_LEN = 256
WARMUP = 2
LR = 2e-4


def bench_params(steps: int, batch: int = BATCH, seq: int = MAX_SEQ_LEN) -> TrainParams:
    spec = prompts.DEFAULT_TEMPLATE
    return TrainParams(
        model_ref="bundled",
        dataset_id=0,
        method="lora",
        learning_rate=LR,
        max_steps=WARMUP + steps,
        batch_size=batch,
        max_seq_len=seq,
        eval_every=0,
        checkpoint_every=0,
        eval_rows=0,
        template=TemplateSnapshot(
            id=0,
            name="default",
            version=1,
            instruction=spec.instruction,
            example_format=spec.example_format,
            body=spec.body,
            use_chat_template=spec.use_chat_template,
        ),
    )


def timed_speed(marks: list[tuple[float, int]]) -> tuple[int, float]:
    """(tokens, seconds) of the steps after the warm-up: (end time, tokens) per step."""
    timed = marks[WARMUP:]
    return sum(n for _, n in timed), timed[-1][0] - marks[WARMUP - 1][0]


def one_process_speed(
    loaded: loading.LoadedModel,
    rows: list[dict[str, Any]],
    render: Any,
    steps: int,
    batch: int,
    seq: int,
) -> tuple[int, float]:
    marks: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as out:
        sft.train(
            loaded,
            bench_params(steps, batch, seq),
            rows,
            [],
            out_dir=Path(out),
            render=render,
            on_step=lambda log: marks.append((time.perf_counter(), log.tokens)),
        )
    return timed_speed(marks)


def two_process_speed(
    loaded: loading.LoadedModel,
    models_dir: Path,
    rows: list[dict[str, Any]],
    steps: int,
    batch: int,
    seq: int,
) -> tuple[int, float]:
    """Rank 0's steps of a 2-process run launched as the task launches it."""
    cores = ddp.local_resources()["cpu_cores"]
    threads = str(max(1, cores // 2))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ddp"
        folder.mkdir()
        spec = folder / ddp.SPEC_NAME
        spec.write_text(
            json.dumps(
                {
                    "params": bench_params(steps, batch, seq).model_dump(mode="json"),
                    "model": {"source": "bundled", "location": ""},
                    "models_dir": str(models_dir),
                    "kit_folder": loaded.path,
                    "context_length": loaded.context_length,
                    "train_rows": rows,
                    "eval_rows": [],
                    "out_dir": str(Path(tmp) / "run"),
                    "resume": False,
                }
            )
        )
        env = {**os.environ, "OMP_NUM_THREADS": threads, "LIFECYCLE_RANK_THREADS": threads}
        done = subprocess.run(
            ddp.launch_command(spec, 2), cwd=ROOT, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(
                f"the 2-process run failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        events = ddp.EventReader(folder / ddp.EVENTS_NAME).new()
        shutil.rmtree(folder, ignore_errors=True)
    # elapsed_s is rank 0's wall clock at the end of each step, as perf_counter above.
    marks = [(e["elapsed_s"], e["tokens"]) for e in events if e["kind"] == "step"]
    return timed_speed(marks)


def runner_speed(
    loaded: loading.LoadedModel, rows: list[dict[str, Any]], render: Any, steps: int
) -> tuple[float, int, float]:
    """(tokens/s, timed tokens, padding share) of this project's loop."""
    params = bench_params(steps)
    marks: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as out:
        result = sft.train(
            loaded,
            params,
            rows,
            [],
            out_dir=Path(out),
            render=render,
            on_step=lambda log: marks.append((time.perf_counter(), log.tokens)),
        )
    timed = marks[WARMUP:]
    tokens = sum(n for _, n in timed)
    seconds = timed[-1][0] - marks[WARMUP - 1][0]
    examples = common.prepare_examples(
        loaded.tokenizer, rows, render=render, max_seq_len=MAX_SEQ_LEN
    ).examples
    lengths = [e.length for e in examples]
    batches = common.epoch_batches(lengths, BATCH, seed=0, epoch=0)[: result.steps]
    return tokens / seconds, tokens, common.padding_fraction(batches, lengths)


def plain_speed(
    loaded: loading.LoadedModel, examples: list[common.Example], steps: int
) -> tuple[float, int, float]:
    """(tokens/s, timed tokens, padding share) of a plain Trainer + peft script."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokenizer = loaded.tokenizer
    model = get_peft_model(
        adapters.load_base_copy(loaded.path),
        LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=8,
            lora_alpha=16,
            lora_dropout=0.05,
            target_modules=["q_proj", "v_proj"],
        ),
    )
    dataset = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    pad = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    real: list[int] = []
    slots: list[int] = []

    def collate(features: list[dict[str, Any]]) -> Any:
        batch = pad(features)
        real.append(int(batch["attention_mask"].sum()))
        slots.append(int(batch["attention_mask"].numel()))
        return batch

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            max_steps=WARMUP + steps,
            per_device_train_batch_size=BATCH,
            gradient_accumulation_steps=1,
            learning_rate=LR,
            lr_scheduler_type="linear",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            dataloader_num_workers=0,
            remove_unused_columns=False,
            disable_tqdm=True,
            use_cpu=loaded.device == "cpu",
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,  # type: ignore[arg-type]
            data_collator=collate,
            callbacks=[Clock()],
        )
        trainer.train()
    tokens = sum(real[WARMUP : WARMUP + steps])
    seconds = ends[WARMUP + steps - 1] - ends[WARMUP - 1]
    share = 1 - sum(real[: WARMUP + steps]) / sum(slots[: WARMUP + steps])
    return tokens / seconds, tokens, share


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--ddp-steps", type=int, default=6)
    parser.add_argument("--ddp-batch", type=int, default=8)
    parser.add_argument("--ddp-seq", type=int, default=512)
    parser.add_argument("--ddp-rounds", type=int, default=1)
    options = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

    models_dir = Path(os.environ.get("LIFECYCLE_MODELS_DIR") or ROOT / "var" / "models")
    loaded = loading.load(loading.ModelSpec(source="bundled"), models_dir)
    kit = prompts.load_kit(Path(loaded.path), loaded.context_length)
    render = common.make_render(kit, prompts.DEFAULT_TEMPLATE)
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    rows = [{"input": r["dialogue"], "target": r["summary"]} for r in records]
    data = common.prepare_examples(loaded.tokenizer, rows, render=render, max_seq_len=MAX_SEQ_LEN)
    print(
        f"{len(data.examples)} examples ({data.truncated} truncated, "
        f"{len(data.dropped_rows)} dropped), device {loaded.device}, "
        f"{torch.get_num_threads()} threads, batch {BATCH}, max_seq_len {MAX_SEQ_LEN}, "
        f"{WARMUP} warm-up + {options.steps} timed steps per run, {options.rounds} rounds"
    )

    figures: list[str] = []
    if options.rounds:
        runner, plain = compare_with_plain(loaded, rows, render, data, options)
        figures += [
            f"ratio={runner / plain:.2f}",
            f"runner_tokens_per_s={runner:.1f}",
            f"plain_tokens_per_s={plain:.1f}",
        ]
    if options.ddp_steps:
        shape = (options.ddp_steps, options.ddp_batch, options.ddp_seq)
        totals = {1: [0, 0.0], 2: [0, 0.0]}
        for round_ in range(options.ddp_rounds):
            for n in (1, 2) if round_ % 2 == 0 else (2, 1):
                tokens, seconds = (
                    one_process_speed(loaded, rows, render, *shape)
                    if n == 1
                    else two_process_speed(loaded, models_dir, rows, *shape)
                )
                totals[n][0] += tokens
                totals[n][1] += seconds
                print(
                    f"round {round_ + 1}, {n} process{'es' if n > 1 else ''}, batch "
                    f"{options.ddp_batch} x seq {options.ddp_seq}: {tokens / seconds:.1f} tokens/s"
                )
        one, two = (totals[n][0] / totals[n][1] for n in (1, 2))
        print(f"1 process ({torch.get_num_threads()} threads): {one:.1f} tokens/s")
        print(f"2 processes (gloo, same global batch): {two:.1f} tokens/s")
        figures += [
            f"one_process_tokens_per_s={one:.1f}",
            f"ddp_tokens_per_s={two:.1f}",
            f"ddp_scaling={two / one:.2f}",
        ]
    print("RESULT " + " ".join(figures))


def compare_with_plain(
    loaded: loading.LoadedModel,
    rows: list[dict[str, Any]],
    render: Any,
    data: common.PreparedData,
    options: argparse.Namespace,
) -> tuple[float, float]:
    """(runner, plain) tokens/s over alternating rounds."""
    totals = {"runner": [0, 0.0], "plain": [0, 0.0]}
    for round_ in range(options.rounds):
        # Alternate which goes first, so drifts in machine load fall on both alike.
        order = ("runner", "plain") if round_ % 2 == 0 else ("plain", "runner")
        for name in order:
            if name == "runner":
                speed, tokens, share = runner_speed(loaded, rows, render, options.steps)
            else:
                speed, tokens, share = plain_speed(loaded, data.examples, options.steps)
            totals[name][0] += tokens
            totals[name][1] += tokens / speed
            print(
                f"round {round_ + 1} {name}: {tokens} real tokens, {speed:.1f} tokens/s, "
                f"padding {share:.1%} of the padded slots"
            )
    runner = totals["runner"][0] / totals["runner"][1]
    plain = totals["plain"][0] / totals["plain"][1]
    print(f"runner (this project's loop): {runner:.1f} real tokens/s over all rounds")
    print(f"plain Trainer + peft: {plain:.1f} real tokens/s over all rounds")
    return runner, plain


if __name__ == "__main__":
    main()
