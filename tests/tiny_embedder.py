"""A tiny sentence-transformers model built locally (no download): a 2-layer BERT with a
WordPiece vocabulary of the words the retrieval tests use, mean pooling and normalisation.

Its weights are random, so its vectors carry word overlap rather than meaning: identical
or near-identical texts land close together, which is what the tests rely on.
"""

from __future__ import annotations

import re
from pathlib import Path

_WORDS_TEXT = """
the a an of to and in for on is are with by at from it this that be or as your our you we
refund refunds return returns days within order orders shipping ship ships shipped delivery
warranty year years battery charger screen repair replace replacement account password reset
email support hours monday friday weekend phone chat price prices discount student cancel
cancellation subscription monthly annual plan plans data export privacy delete device devices
lamp lumen kettle water boil temperature app bluetooth pair pairing reset firmware update
how what when can do does long many much which who where why i my me is not no yes
cat dog fish bird sun moon tree river mountain car train bus apple banana orange
"""
_WORDS = _WORDS_TEXT.split()


def build_tiny_embedder(target: Path, extra_text: str = "") -> Path:
    """Write the model folder at `target` (idempotent) and return it."""
    if (target / "modules.json").exists():
        return target
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, BertTokenizerFast

    target.mkdir(parents=True, exist_ok=True)
    words = sorted(set(_WORDS) | set(re.findall(r"[a-z]+", extra_text.lower())))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    hf = target / "hf"
    hf.mkdir(exist_ok=True)
    ids = {word: i for i, word in enumerate(vocab)}
    tok = Tokenizer(WordPiece(ids, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tokenizer = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    word = models.Transformer(str(hf), max_seq_length=128)
    pooling = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu").save(str(target))
    return target
