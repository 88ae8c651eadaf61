"""The OpenAI-compatible endpoint (/v1/chat/completions, /v1/models) and its serving log."""
