"""Training: supervised fine-tuning (`sft`) and DPO alignment (`dpo`) over shared parts
(`common`: examples, batches, records, checkpoints; `adapters`: the trainable model)."""
