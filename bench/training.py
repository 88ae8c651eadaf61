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
"""

from __future__ import annotations

import argparse
import json
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

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "lifecycle_app" / "samples" / "dialogue_summaries.jsonl"
BATCH = 4
MAX_SEQ_LEN = 256
WARMUP = 2
LR = 2e-4


def runner_speed(
    loaded: loading.LoadedModel, rows: list[dict[str, Any]], render: Any, steps: int
) -> tuple[float, int, float]:
    """(tokens/s, timed tokens, padding share) of this project's loop."""
    spec = prompts.DEFAULT_TEMPLATE
    params = TrainParams(
        model_ref="bundled",
        dataset_id=0,
        method="lora",
        learning_rate=LR,
        max_steps=WARMUP + steps,
        batch_size=BATCH,
        max_seq_len=MAX_SEQ_LEN,
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
    options = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

    loaded = loading.load(loading.ModelSpec(source="bundled"), ROOT / "var" / "models")
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
    print(
        f"RESULT ratio={runner / plain:.2f} runner_tokens_per_s={runner:.1f} "
        f"plain_tokens_per_s={plain:.1f}"
    )


if __name__ == "__main__":
    main()
