"""Fine-tuning: full fine-tuning, LoRA and prompt tuning, with a small training loop of its own.

Design notes:

- Text. A row becomes `render(input)` (the exact prompt a zero-shot trial sends, chat
  template included) followed by its target and the tokenizer's end token. Prompt and
  target are tokenized separately because that is what inference sees: the prompt alone,
  then generated tokens. Labels are -100 on the prompt, so the loss is the target's only.
  A row longer than `max_seq_len` loses the end of its input (the trial runner's
  "truncate" does the same); a row whose target alone does not fit is dropped and counted.
- Batches. Each epoch's order is the seed's shuffle; inside mega-batches of 50 batches
  rows are sorted by length and cut into batches, which are then shuffled (the longest
  first, so a batch that does not fit in memory fails at step 1). Batches are padded on
  the right to their longest row. No DataLoader: Celery prefork children are daemonic and
  cannot start its worker processes, and collating lists of ints needs none.
- Loss. Only positions that predict a target token go through the output layer: a
  pre-hook on the output embeddings selects them, so the model's (and peft's) own forward
  runs unchanged and the vocabulary-sized logits of prompt tokens are never built. The
  loss of an optimizer step is the mean over all its target tokens (summed over its
  micro-batches, divided once), so gradient accumulation does not weigh short rows more.
- Speed figures count real tokens: prompt, target and end token, never padding and never
  prompt tuning's virtual tokens.
- Cancel is asked before every micro-batch; a cancelled run applies no partial step and
  writes nothing more. Checkpoints and the final folder are written into temporary
  folders and renamed into place, so a reader or a resumed run never sees half of one.
- Resume regenerates the data order from the seed and continues from the micro-batch
  after the last one consumed, with the model, optimizer, scheduler and RNG states of the
  checkpoint: on CPU a resumed run reproduces an uninterrupted one exactly.
- `workers.ml.loading.load` keeps one inference model warm per worker; training loads its
  own float32 copy, so trials in the same worker keep the base weights. On CUDA the
  weights stay float32 and the forward runs under bf16 autocast where the GPU supports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workers.ml.errors import UserFacingError
from workers.ml.loading import LoadedModel
from workers.ml.params import TemplateSnapshot, TrainParams
from workers.ml.prompts import PromptKit, TemplateSpec, render_user_text

MEGA_BATCH = 50  # batches per length-sorted group
MAX_GRAD_NORM = 1.0  # as transformers.Trainer's default
KEEP_CHECKPOINTS = 2
FINAL_LOSS_WINDOW = 5  # final_train_loss: mean of the last optimizer steps
CONFIG_NAME = "training_config.json"
STATE_NAME = "trainer_state.json"
# Parameters that may change between an interrupted run and its resumption: they do not
# change what is trained, only how often it is looked at.
RESUMABLE_CHANGES = frozenset({"eval_every", "checkpoint_every", "eval_rows"})

Render = Callable[[str], str]
CancelFn = Callable[[], bool]


class TrainingError(UserFacingError):
    pass


# --- examples ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # -100 on the prompt; the target's ids (end token included) after
    n_target_tokens: int
    row: int  # position in the rows given
    truncated: bool = False

    @property
    def length(self) -> int:
        return len(self.input_ids)


@dataclass
class PreparedData:
    examples: list[Example]
    dropped_rows: list[int] = field(default_factory=list)  # positions of rows left out
    truncated: int = 0


def template_spec(snapshot: TemplateSnapshot) -> TemplateSpec:
    return TemplateSpec(
        instruction=snapshot.instruction,
        example_format=snapshot.example_format,
        body=snapshot.body,
        use_chat_template=snapshot.use_chat_template,
    )


def make_render(kit: PromptKit, spec: TemplateSpec) -> Render:
    """The zero-shot prompt text of a row's input, exactly as prompt trials build it."""

    def render(row_input: str) -> str:
        return kit.apply_chat(render_user_text(spec, [], row_input), spec.use_chat_template)

    return render


def target_text(prompt: str, target: str) -> str:
    """The target as it follows the prompt. After a prompt that ends mid-line ("Summary:")
    a model writes a space before its answer, so training adds one; after a chat
    template's "assistant\\n" it does not."""
    if prompt and target and not prompt[-1].isspace() and not target[0].isspace():
        return " " + target
    return target


def _encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def _fit_prompt(
    tokenizer: Any, render: Render, row_input: str, budget: int, prompt_len: int
) -> list[int] | None:
    """The prompt's ids with the input cut from its end until the prompt fits `budget`
    tokens; None when even an empty input does not fit."""
    encoded = tokenizer(row_input, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    keep = len(offsets) - (prompt_len - budget)
    while keep > 0:
        ids = _encode(tokenizer, [render(row_input[: offsets[keep - 1][1]])])[0]
        if len(ids) <= budget:
            return ids
        keep -= max(1, len(ids) - budget)
    return None


def prepare_examples(
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    *,
    render: Render,
    max_seq_len: int,
) -> PreparedData:
    """Tokenize rows ({"input", "target"}) into training examples; see the module notes."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise TrainingError("The model's tokenizer has no end token to close targets with.")
    prompts = [render(str(r["input"])) for r in rows]
    targets = [target_text(p, str(r["target"])) for p, r in zip(prompts, rows, strict=True)]
    data = PreparedData(examples=[])
    for i, (prompt_ids, target_ids) in enumerate(
        zip(_encode(tokenizer, prompts), _encode(tokenizer, targets), strict=True)
    ):
        target = [*target_ids, int(eos)]
        truncated = False
        if len(prompt_ids) + len(target) > max_seq_len:
            budget = max_seq_len - len(target)
            fitted = (
                _fit_prompt(tokenizer, render, str(rows[i]["input"]), budget, len(prompt_ids))
                if budget > 0
                else None
            )
            if fitted is None:
                data.dropped_rows.append(i)
                continue
            prompt_ids, truncated = fitted, True
            data.truncated += 1
        data.examples.append(
            Example(
                input_ids=[*prompt_ids, *target],
                labels=[-100] * len(prompt_ids) + target,
                n_target_tokens=len(target),
                row=i,
                truncated=truncated,
            )
        )
    return data


# --- batches -----------------------------------------------------------------------------


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, mega_batch: int = MEGA_BATCH
) -> list[list[int]]:
    """One epoch's batches of example positions: shuffled with (seed, epoch), sorted by
    length inside groups of `mega_batch` batches, batch order shuffled, longest first."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * mega_batch
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        group = sorted(order[start : start + span], key=lambda i: -lengths[i])
        batches += [group[j : j + batch_size] for j in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
    batches.insert(0, batches.pop(longest))
    return batches


def padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of the padded token slots that are padding."""
    slots = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return (slots - real) / slots if slots else 0.0


class _BatchStream:
    """Micro-batch k of the endless stream of epochs (epoch = k // batches per epoch)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.per_epoch = math.ceil(len(lengths) / batch_size)
        self._epoch, self._batches = -1, [[0]]

    def __call__(self, k: int) -> list[int]:
        epoch, i = divmod(k, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = epoch_batches(self.lengths, self.batch_size, self.seed, epoch)
        return self._batches[i]


def collate(examples: Sequence[Example], pad_id: int, device: str) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (-100 on padding)."""
    import torch

    width = max(e.length for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : e.length] = torch.tensor(e.input_ids)
        labels[row, : e.length] = torch.tensor(e.labels)
        mask[row, : e.length] = 1
    non_blocking = device.startswith("cuda")
    return {
        "input_ids": ids.to(device, non_blocking=non_blocking),
        "attention_mask": mask.to(device, non_blocking=non_blocking),
        "labels": labels.to(device, non_blocking=non_blocking),
    }


# --- model -------------------------------------------------------------------------------


def load_base_copy(path: str) -> Any:
    """A float32 copy of the base model, apart from any copy kept warm for inference.

    The bundled model's converted folder holds plain float32 weights but its config still
    names the GGUF file it came from; left in, transformers treats the model as
    GGUF-quantized, and Trainer refuses to train it and save_pretrained refuses to save it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    quantization = getattr(config, "quantization_config", None) or {}
    if isinstance(quantization, dict) and quantization.get("quant_method") == "gguf":
        del config.quantization_config
    config.use_cache = False
    return AutoModelForCausalLM.from_pretrained(
        path, config=config, local_files_only=True, dtype=torch.float32
    )


def build_training_model(loaded: LoadedModel, params: TrainParams) -> Any:
    """A fresh float32 copy of the base model with the method's trainable parts, in
    train mode on the loaded model's device. Initialisation follows the torch seed."""
    model = load_base_copy(loaded.path)
    if params.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=params.lora_r,
            lora_alpha=params.lora_alpha,
            lora_dropout=params.lora_dropout,
            target_modules=list(params.target_modules),
        )
        try:
            model = get_peft_model(model, config)
        except ValueError as exc:
            raise TrainingError(
                f"LoRA target modules {', '.join(params.target_modules)} do not all exist "
                f"in this model: {exc}"
            ) from exc
    elif params.method == "prompt_tuning":
        from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

        # Vectors sampled from the vocabulary's embeddings start at the right scale;
        # random N(0, 1) vectors are far larger than word embeddings and learn slower.
        model = get_peft_model(
            model,
            PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM,
                num_virtual_tokens=params.num_virtual_tokens,
                prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB,
            ),
        )
    model.to(loaded.device)
    model.train()
    return model


def _unwrapped(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def target_loss(model: Any, batch: dict[str, Any], n_virtual: int = 0) -> Any:
    """Sum of the cross-entropy over the batch's target tokens (a 0-d tensor)."""
    import torch.nn.functional as F

    following = batch["labels"][:, 1:]
    predicts = following != -100  # position p predicts token p + 1
    positions = F.pad(predicts, (n_virtual, 1), value=False)
    head = _unwrapped(model).get_output_embeddings()

    def select(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0][positions], *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        )
    finally:
        handle.remove()
    return F.cross_entropy(out.logits.float(), following[predicts], reduction="sum")


def precision(device: str) -> str:
    """How the forward pass computes: bf16 autocast on a GPU that supports it (weights and
    optimizer stay float32), float32 otherwise."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def _autocast(device: str) -> Any:
    import torch

    if precision(device) == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _scheduler(optimizer: Any, params: TrainParams, total_steps: int) -> Any:
    from transformers import optimization

    if params.lr_scheduler == "constant":
        return optimization.get_constant_schedule_with_warmup(optimizer, params.warmup_steps)
    if params.lr_scheduler == "cosine":
        return optimization.get_cosine_schedule_with_warmup(
            optimizer, params.warmup_steps, total_steps
        )
    return optimization.get_linear_schedule_with_warmup(optimizer, params.warmup_steps, total_steps)


def peak_memory_bytes(device: str) -> int:
    """Peak allocated CUDA memory, or this process's peak resident size on CPU (which
    counts everything the process has held since it started, not only this run)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


# --- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepLog:
    step: int
    total_steps: int
    epoch: float  # micro-batches consumed / micro-batches per epoch
    loss: float  # mean over this step's target tokens
    learning_rate: float  # the rate this step used
    grad_norm: float  # before clipping
    tokens: int  # real (non-padding) tokens in this step
    target_tokens: int
    tokens_per_s: float  # real tokens per second of training time since (re)start
    elapsed_s: float  # wall time of the job, earlier segments of a resumed run included
    eta_s: float  # remaining steps x measured seconds per step (evaluation included)
    device: str
    peak_memory_bytes: int
    precision: str = "fp32"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalLog:
    step: int
    epoch: float
    loss: float  # mean over the evaluation rows' target tokens
    target_tokens: int
    rows: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    status: str  # "succeeded" | "cancelled"
    method: str
    device: str
    precision: str  # "bf16" (autocast on CUDA) | "fp32"
    steps: int
    total_steps: int
    epoch: float
    final_train_loss: float | None  # mean of the last FINAL_LOSS_WINDOW steps
    final_eval_loss: float | None
    tokens: int  # real tokens trained on, all segments
    target_tokens: int
    tokens_per_s: float  # tokens / training seconds (evaluation and saving excluded)
    train_seconds: float
    elapsed_s: float
    trainable_params: int
    total_params: int
    n_train_examples: int
    n_eval_examples: int
    dropped_rows: int
    truncated_rows: int
    resumed_from_step: int | None
    final_dir: str | None
    history: list[StepLog] = field(default_factory=list)
    evals: list[EvalLog] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        values = dict(data)
        values["history"] = [StepLog(**s) for s in data.get("history", [])]
        values["evals"] = [EvalLog(**e) for e in data.get("evals", [])]
        return cls(**values)


# --- checkpoints -------------------------------------------------------------------------


def _step_of(folder: Path) -> int:
    return int(folder.name.split("-", 1)[1])


def checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a folder named step-N exists only complete)."""
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / STATE_NAME).is_file()]
    return sorted(found, key=_step_of)


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    name, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    return {
        "python": random.getstate(),
        "numpy": [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA generators too


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `target`; on success it replaces `target` by rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; web and other workers read it
    try:
        yield tmp
        old = None
        if target.exists():  # a rerun rewrites it: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
            os.rename(target, old / "x")
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _save_checkpoint(
    out_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]
) -> Path:
    import torch

    target = out_dir / "checkpoints" / f"step-{step}"
    with atomic_dir(target) as tmp:
        if hasattr(model, "peft_config"):
            model.save_pretrained(str(tmp / "adapter"), safe_serialization=True)
        else:
            from safetensors.torch import save_model

            save_model(model, str(tmp / "model.safetensors"))  # handles tied weights
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / STATE_NAME).write_text(json.dumps(state), encoding="utf-8")
    for old in checkpoints(out_dir)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _load_checkpoint(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, device: str
) -> dict[str, Any]:
    import torch

    if hasattr(model, "peft_config"):
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = load_file(str(folder / "adapter" / "adapter_model.safetensors"), device=device)
        set_peft_model_state_dict(model, weights)
    else:
        from safetensors.torch import load_model

        load_model(model, str(folder / "model.safetensors"), device=device)
    optimizer.load_state_dict(
        torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)
    )
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    _set_rng_state(torch.load(folder / "rng.pt", weights_only=True))
    state: dict[str, Any] = json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))
    return state


def _data_digest(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(array("q", [len(e.input_ids), *e.input_ids, *e.labels]).tobytes())
    return digest.hexdigest()


def _fingerprint(params: TrainParams, examples: Sequence[Example]) -> dict[str, Any]:
    return {
        "params": params.model_dump(mode="json", exclude=set(RESUMABLE_CHANGES)),
        "data": _data_digest(examples),
    }


# --- final output ------------------------------------------------------------------------


def artifact_files(final_dir: Path) -> list[dict[str, Any]]:
    """Every file of a final folder: path relative to it, size in bytes, sha256."""
    files = []
    for path in sorted(p for p in Path(final_dir).rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        files.append(
            {
                "path": path.relative_to(final_dir).as_posix(),
                "size": path.stat().st_size,
                "sha256": digest.hexdigest(),
            }
        )
    return files


def _finished(out_dir: Path) -> TrainResult | None:
    config = out_dir / "final" / CONFIG_NAME
    if not config.is_file():
        return None
    return TrainResult.from_dict(json.loads(config.read_text(encoding="utf-8"))["result"])


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


# --- the loop ----------------------------------------------------------------------------


def _mean_loss(
    model: Any, batches: list[list[Example]], pad_id: int, device: str, nv: int
) -> tuple[float, int]:
    import torch

    model.eval()
    total, count = 0.0, 0
    try:
        with torch.inference_mode(), _autocast(device):
            for rows in batches:
                total += float(target_loss(model, collate(rows, pad_id, device), nv))
                count += sum(e.n_target_tokens for e in rows)
    finally:
        model.train()
    return (total / count if count else float("nan")), count


def train(
    loaded: LoadedModel,
    params: TrainParams,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]],
    *,
    out_dir: Path,
    render: Render,
    on_step: Callable[[StepLog], None] | None = None,
    on_eval: Callable[[EvalLog], None] | None = None,
    should_cancel: CancelFn | None = None,
    resume: bool = False,
) -> TrainResult:
    """Fine-tune `loaded`'s base model on `train_rows` and write `out_dir/final/`.

    Rows are {"input", "target"} dicts; `render(input)` is the prompt text. `on_step` is
    called after every optimizer step, `on_eval` after every evaluation (at step 0, every
    `eval_every` steps and at the end, on the first `eval_rows` evaluation rows).
    `should_cancel` is asked before every micro-batch; when it answers True the run stops
    there and returns status "cancelled" without writing a final folder. With `resume`,
    training continues from the latest complete checkpoint in `out_dir` (or starts afresh
    when there is none); a run that already finished returns its recorded result.
    """
    import torch

    out_dir = Path(out_dir)
    if resume and (done := _finished(out_dir)) is not None:
        return done
    device, tokenizer = loaded.device, loaded.tokenizer
    pad_id = int(
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    data = prepare_examples(tokenizer, train_rows, render=render, max_seq_len=params.max_seq_len)
    held_out = prepare_examples(
        tokenizer,
        list(eval_rows)[: params.eval_rows],
        render=render,
        max_seq_len=params.max_seq_len,
    )
    examples = data.examples
    if not examples:
        raise TrainingError(
            f"No training row fits in {params.max_seq_len} tokens; raise the maximum "
            "sequence length or shorten the targets."
        )
    eval_sorted = sorted(held_out.examples, key=lambda e: -e.length)
    eval_batches = [
        eval_sorted[i : i + params.batch_size]
        for i in range(0, len(eval_sorted), params.batch_size)
    ]
    lengths = [e.length for e in examples]
    stream = _BatchStream(lengths, params.batch_size, params.seed)
    # With max_steps every step takes grad_accum micro-batches; with epochs the run takes
    # the epochs' micro-batches and its last step may take fewer.
    if params.max_steps:
        total_steps, planned_micro = params.max_steps, params.max_steps * params.grad_accum
    else:
        planned_micro = max(1, math.ceil(params.epochs * stream.per_epoch))
        total_steps = math.ceil(planned_micro / params.grad_accum)
    fingerprint = _fingerprint(params, examples)

    _seed_everything(params.seed)
    model = build_training_model(loaded, params)
    nv = params.num_virtual_tokens if params.method == "prompt_tuning" else 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.effective_learning_rate, weight_decay=0.0)
    scheduler = _scheduler(optimizer, params, total_steps)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    state: dict[str, Any] = {
        "step": 0,
        "micro_done": 0,
        "tokens": 0,
        "target_tokens": 0,
        "train_seconds": 0.0,
        "elapsed_s": 0.0,
        "history": [],
        "evals": [],
    }
    resumed_from: int | None = None
    latest = checkpoints(out_dir)[-1:] if resume else []
    if latest:
        saved = json.loads((latest[0] / STATE_NAME).read_text(encoding="utf-8"))
        if saved.get("fingerprint") != fingerprint:
            raise TrainingError(
                f"The checkpoint in {latest[0]} was written with other parameters or other "
                "data; start a new run instead of resuming."
            )
        state = _load_checkpoint(latest[0], model, optimizer, scheduler, device)
        resumed_from = int(state["step"])
    elif (out_dir / "checkpoints").exists():
        shutil.rmtree(out_dir / "checkpoints")  # a fresh run: earlier checkpoints are stale
    history = [StepLog(**s) for s in state["history"]]
    evals = [EvalLog(**e) for e in state["evals"]]

    def epoch_now() -> float:
        return round(state["micro_done"] / stream.per_epoch, 4)

    def evaluate() -> None:
        began = time.monotonic()
        loss, count = _mean_loss(model, eval_batches, pad_id, device, nv)
        log = EvalLog(
            state["step"],
            epoch_now(),
            loss,
            count,
            len(held_out.examples),
            round(time.monotonic() - began, 3),
        )
        evals.append(log)
        if on_eval:
            on_eval(log)

    def result(status: str, final_dir: Path | None) -> TrainResult:
        tail = [s.loss for s in history[-FINAL_LOSS_WINDOW:]]
        return TrainResult(
            status=status,
            method=params.method,
            device=device,
            precision=precision(device),
            steps=state["step"],
            total_steps=total_steps,
            epoch=epoch_now(),
            final_train_loss=sum(tail) / len(tail) if tail else None,
            final_eval_loss=evals[-1].loss if evals and evals[-1].step == state["step"] else None,
            tokens=state["tokens"],
            target_tokens=state["target_tokens"],
            tokens_per_s=round(state["tokens"] / state["train_seconds"], 2)
            if state["train_seconds"]
            else 0.0,
            train_seconds=round(state["train_seconds"], 3),
            elapsed_s=round(state["elapsed_s"], 3),
            trainable_params=sum(p.numel() for p in trainable),
            total_params=sum(p.numel() for p in model.parameters()),
            n_train_examples=len(examples),
            n_eval_examples=len(held_out.examples),
            dropped_rows=len(data.dropped_rows),
            truncated_rows=data.truncated,
            resumed_from_step=resumed_from,
            final_dir=str(final_dir) if final_dir else None,
            history=history,
            evals=evals,
        )

    if eval_batches and state["step"] == 0 and params.eval_every > 0:
        evaluate()
    segment_start = time.monotonic()
    elapsed_before = state["elapsed_s"]
    segment_train_s, segment_tokens, segment_steps = 0.0, 0, 0

    def cancelled() -> bool:
        return bool(should_cancel and should_cancel())

    while state["step"] < total_steps:
        micro = [
            [examples[i] for i in stream(state["micro_done"] + k)]
            for k in range(min(params.grad_accum, planned_micro - state["micro_done"]))
        ]
        n_target = sum(e.n_target_tokens for rows in micro for e in rows)
        n_tokens = sum(e.length for rows in micro for e in rows)
        began = time.monotonic()
        lr = float(scheduler.get_last_lr()[0])
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        for rows in micro:
            if cancelled():
                state["elapsed_s"] = elapsed_before + time.monotonic() - segment_start
                return result("cancelled", None)
            with _autocast(device):
                loss = target_loss(model, collate(rows, pad_id, device), nv)
            (loss / n_target).backward()
            loss_sum += loss.detach()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM))
        optimizer.step()
        scheduler.step()
        step_loss = float(loss_sum) / n_target  # syncs with the device, so timing is real
        step_s = time.monotonic() - began

        state["step"] += 1
        state["micro_done"] += len(micro)
        state["tokens"] += n_tokens
        state["target_tokens"] += n_target
        state["train_seconds"] += step_s
        segment_train_s += step_s
        segment_tokens += n_tokens
        segment_steps += 1
        wall = time.monotonic() - segment_start
        state["elapsed_s"] = elapsed_before + wall
        log = StepLog(
            step=state["step"],
            total_steps=total_steps,
            epoch=epoch_now(),
            loss=step_loss,
            learning_rate=lr,
            grad_norm=grad_norm,
            tokens=n_tokens,
            target_tokens=n_target,
            tokens_per_s=round(segment_tokens / segment_train_s, 2),
            elapsed_s=round(state["elapsed_s"], 3),
            eta_s=round((total_steps - state["step"]) * wall / segment_steps, 1),
            device=device,
            peak_memory_bytes=peak_memory_bytes(device),
            precision=precision(device),
        )
        history.append(log)
        if on_step:
            on_step(log)
        last = state["step"] == total_steps
        if eval_batches and (
            last or (params.eval_every and state["step"] % params.eval_every == 0)
        ):
            evaluate()
        if params.checkpoint_every and state["step"] % params.checkpoint_every == 0:
            state["history"] = [s.as_dict() for s in history]
            state["evals"] = [e.as_dict() for e in evals]
            state["fingerprint"] = fingerprint
            _save_checkpoint(out_dir, state["step"], model, optimizer, scheduler, state)

    state["elapsed_s"] = elapsed_before + time.monotonic() - segment_start
    final_dir = out_dir / "final"
    outcome = result("succeeded", final_dir)
    config = {
        "params": params.model_dump(mode="json"),
        "template": params.template.model_dump(mode="json"),
        "base_model": {"ref": params.model_ref, "path": loaded.path},
        "learning_rate": params.effective_learning_rate,
        "final_train_loss": outcome.final_train_loss,
        "final_eval_loss": outcome.final_eval_loss,
        "steps": outcome.steps,
        "tokens_per_s": outcome.tokens_per_s,
        "versions": _versions(),
        "result": outcome.as_dict(),
    }
    with atomic_dir(final_dir) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    # The final folder holds everything a later run or an export needs; checkpoints (for
    # full fine-tuning, weights plus two optimizer moments each) would only fill the disk.
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return outcome
