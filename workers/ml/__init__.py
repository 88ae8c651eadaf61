"""The ML core: plain functions over torch/transformers, with no Django import.

Modules here must stay importable without torch where they only describe parameters
(`params.py`), so the web process can validate job settings without loading torch.
"""
