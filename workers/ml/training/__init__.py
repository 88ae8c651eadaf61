"""Training: fine-tuning (sft) and DPO alignment (dpo) over common parts and adapters."""
