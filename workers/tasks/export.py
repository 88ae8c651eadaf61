"""Export: build a deployable variant, measure it beside its parent, bundle it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from lifecycle_app import storage
from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.deploy import services as deploy
from lifecycle_app.stages.prompt.building import PromptingError, kit_for, spec_of, split_rows
from workers.ml.errors import UserFacingError
from workers.tasks.base import JobRun, job_task, model_spec_for

EXPORT_SOFT_LIMIT_S = 60 * 60
LATENCY_PROMPT = (
    "Summarize the following dialogue in one or two sentences.\n\nDialogue:\n"
    "A: Could you send me the report by Friday?\nB: Sure, I will have it done by Thursday.\n"
    "Summary:"
)


def _export(job: Job, run: JobRun) -> None:
    """Build a variant, measure it and its parent side by side, bundle it, record it."""
    import shutil

    from workers.ml import loading as models
    from workers.ml import prompts as ml_prompts
    from workers.ml.export import (
        bundle as export_bundle,
    )
    from workers.ml.export import (
        measure as export_measure,
    )
    from workers.ml.export import (
        variants as export_variants,
    )
    from workers.ml.params import ExportParams
    from workers.ml.serving import prompt_text

    params = ExportParams(**job.params)
    source = job.base_model
    if source is None:
        raise UserFacingError("The model of this export was deleted.")
    total = deploy.EXPORT_STEPS

    def progress(done: int, _total: int, message: str) -> None:
        run.write(job_services.job_progress, job_id=job.id, done=done, total=total, message=message)

    def cancelled() -> bool:
        if run.should_cancel():
            run.write(job_services.job_mark_cancelled, job_id=job.id)
            return True
        return False

    source_path = models.resolve(model_spec_for(job), Path(settings.MODELS_DIR))
    root = run.folder / "export"  # this attempt's own folder: a late writer cannot touch ours
    out_dir = root / "variant"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    info = deploy.card_info(job)
    files = export_variants.build_variant(
        params.kind,
        source_path,
        out_dir,
        card=export_variants.model_card(info),
        on_progress=progress,
    )
    export_variants.save_prompt_template(out_dir, info.get("template"))
    if cancelled():
        return

    prompts: list[ml_prompts.BuiltPrompt] = []
    if job.dataset is not None:
        try:
            kit = kit_for(source)
            rows = split_rows(job.dataset, "test", params.eval_rows)
            split = "test"
            if not rows:
                rows, split = split_rows(job.dataset, "validation", params.eval_rows), "validation"
        except PromptingError as exc:
            raise UserFacingError(str(exc)) from exc
        spec = spec_of(params.template) if params.template else ml_prompts.DEFAULT_TEMPLATE
        prompts, _ = ml_prompts.build_prompts(
            kit, spec, rows, [], max_new_tokens=params.max_new_tokens, overflow="truncate"
        )
    measurements: dict[str, object] = {
        "settings": {
            "rows": len(prompts),
            "split": split if prompts else "",
            "dataset": job.dataset.name if job.dataset else "",
            "max_new_tokens": params.max_new_tokens,
            "decoding": "greedy",
            "score_kind": params.score_kind,
            "device": "cpu",
            "worker": job.worker,
        }
    }
    parent_files = export_variants.folder_files(Path(source_path))
    parent_size = export_variants.weights_size(parent_files)
    base = models.adapter_base(Path(source_path))
    if base:  # an adapter is served with its base weights
        parent_size += export_variants.weights_size(export_variants.folder_files(Path(base)))
    variant_size = export_variants.weights_size(files)
    # Every kind is measured the same way; ONNX variants run in onnxruntime.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out_dir), local_files_only=True)
    latency_prompt = (
        prompts[0].text
        if prompts
        else prompt_text(tokenizer, [{"role": "user", "content": LATENCY_PROMPT}])
    )
    common: dict[str, Any] = {
        "prompts": prompts,
        "references_kind": params.score_kind,
        "latency_prompt": latency_prompt,
        "max_new_tokens": params.max_new_tokens,
    }
    progress(3, total, f"Measuring the parent on {len(prompts)} rows")
    measurements["parent"] = export_measure.measure(
        source_path, size_bytes=parent_size, **common
    ).as_dict()
    if cancelled():
        return
    progress(4, total, f"Measuring the variant on {len(prompts)} rows")
    measured = export_measure.measure(str(out_dir), size_bytes=variant_size, **common)
    measurements["variant"] = measured.as_dict()
    if measured.scores:
        info["scores"] = {
            k: f"{v:.4f} (parent {measurements['parent']['scores'].get(k, 0):.4f})"  # type: ignore[index]
            for k, v in measured.scores.items()
        }
        (out_dir / export_variants.CARD_NAME).write_text(
            export_variants.model_card(info), encoding="utf-8"
        )
        files = export_variants.folder_files(out_dir)
    if cancelled():
        return
    progress(5, total, "Writing the download bundle")
    bundle = export_bundle.write_bundle(out_dir, root / "bundle.zip")
    weights = export_variants.main_weights(files)
    progress(total, total, "Recording the variant")
    # The artifact store (lifecycle_app/storage): rows hold keys, published before the row.
    out_key = Path(storage.publish_dir(out_dir))
    bundle_key = Path(storage.publish_file(bundle))
    run.write(
        deploy.export_finish,
        job=job,
        out_dir=out_key,
        bundle=bundle_key,
        files=files,
        measurements=measurements,
        weights_sha256=weights["sha256"] if weights else "",
    )


export_job = job_task(
    _export,
    name="jobs.export",
    soft_time_limit=EXPORT_SOFT_LIMIT_S,
    time_limit=EXPORT_SOFT_LIMIT_S + 120,
)
