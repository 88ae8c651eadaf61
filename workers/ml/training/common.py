"""What fine-tuning (`sft`) and alignment (`dpo`) share: training examples, batches, the
records a run reports, and checkpoints.

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
- Checkpoints and final folders are written into temporary folders and renamed into place
  (`atomic_dir`), so a reader or a resumed run never sees half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workers.ml.errors import UserFacingError
from workers.ml.params import TemplateSnapshot, TrainParams
from workers.ml.prompts import PromptKit, TemplateSpec

MEGA_BATCH = 50  # batches per length-sorted group
KEEP_CHECKPOINTS = 2
FINAL_LOSS_WINDOW = 5  # final_train_loss: mean of the last optimizer steps
STATE_NAME = "trainer_state.json"
# Parameters that may change between an interrupted run and its resumption: they do not
# change what is trained, only how often it is looked at (or by how many processes).
RESUMABLE_CHANGES = frozenset({"eval_every", "checkpoint_every", "eval_rows", "processes"})

Render = Callable[[str], str]


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
        shot_style=snapshot.shot_style,
    )


def make_render(kit: PromptKit, spec: TemplateSpec) -> Render:
    """The zero-shot prompt text of a row's input, exactly as prompt trials build it."""

    def render(row_input: str) -> str:
        return kit.prompt(spec, [], row_input)[0]

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
