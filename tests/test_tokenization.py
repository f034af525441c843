"""Byte-level BPE tokenizers: trained on a small corpus, and GPT-2's rebuilt from tiktoken ranks."""

import base64
import sys

import pytest
from transformers import AutoTokenizer

from whitebox_hf.data import DataUnavailableError
from whitebox_hf.tokenization import (
    ENDOFTEXT_TOKEN,
    PAD_TOKEN,
    bytes_to_unicode,
    gpt2_tokenizer_from_whisper_asset,
    read_tiktoken_ranks,
    recover_bpe_merges,
    tokens_per_character,
    train_bpe_tokenizer,
    whisper_gpt2_asset_path,
)

CORPUS = [
    "def add(x, y):\n    \"\"\"Return the sum of *x* and *y*.\"\"\"\n    return x + y\n",
    "The :func:`len` function returns the number of items in a container.\n",
    "   Indented   text\twith\ttabs, and trailing spaces   \n\n",
    "for item in range(10):\n    print(item)\n",
] * 10

# Strings the corpus never showed: unseen characters must still round-trip through the byte alphabet.
ROUND_TRIP = [
    "def add(x, y):\n    return x + y\n",
    "ünïcødé, 日本語, emoji 🐍🎉, and a NUL \x00 and DEL \x7f",
    "  leading and trailing spaces  ",
    "a . b , c ! punctuation that a clean-up would glue",
    "",
    f"special {ENDOFTEXT_TOKEN} inside",
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(CORPUS, vocab_size=400, min_frequency=2, model_max_length=128)


def test_decode_encode_is_the_identity(tokenizer):
    for text in ROUND_TRIP:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text
    batch = tokenizer(ROUND_TRIP)["input_ids"]
    assert tokenizer.batch_decode(batch) == ROUND_TRIP


def test_special_tokens_have_fixed_ids(tokenizer):
    assert tokenizer.convert_tokens_to_ids([ENDOFTEXT_TOKEN, PAD_TOKEN]) == [0, 1]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id) == (
        0, 0, 0, 1)
    assert tokenizer.model_max_length == 128
    assert len(tokenizer) <= 400
    # The special token in running text is one token, not its characters.
    assert tokenizer(f"a{ENDOFTEXT_TOKEN}")["input_ids"][-1] == 0


def test_learns_frequent_words(tokenizer):
    assert tokenizer.tokenize(" return") == ["Ġreturn"]
    assert tokens_per_character(tokenizer, CORPUS[:4]) < 0.5


def test_save_and_reload_through_auto_tokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(ROUND_TRIP)["input_ids"] == tokenizer(ROUND_TRIP)["input_ids"]
    assert (reloaded.eos_token, reloaded.bos_token, reloaded.pad_token) == (ENDOFTEXT_TOKEN, ENDOFTEXT_TOKEN, PAD_TOKEN)
    assert reloaded.pad_token_id == 1 and reloaded.model_max_length == 128
    assert reloaded.decode(reloaded(ROUND_TRIP[1])["input_ids"]) == ROUND_TRIP[1]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(vocab_size=257), ValueError, "vocab_size"),
        (dict(vocab_size=8192.0), TypeError, "vocab_size"),
        (dict(min_frequency=0), ValueError, "min_frequency"),
        (dict(model_max_length=0), ValueError, "model_max_length"),
        (dict(texts="one long string"), TypeError, "texts"),
        (dict(texts=[]), ValueError, "texts"),
        (dict(texts=["fine", 3]), TypeError, r"texts\[1\]"),
        (dict(texts=None), TypeError, "texts"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    kwargs = {"texts": CORPUS, **kwargs}
    with pytest.raises(error, match=match):
        train_bpe_tokenizer(**kwargs)


def test_smallest_vocabulary_is_bytes_and_special_tokens():
    tokenizer = train_bpe_tokenizer(CORPUS, vocab_size=258)
    assert len(tokenizer) == 258
    assert tokenizer.decode(tokenizer(ROUND_TRIP[1])["input_ids"]) == ROUND_TRIP[1]


def test_tokens_per_character_refuses_empty_input(tokenizer):
    with pytest.raises(ValueError, match="no characters"):
        tokens_per_character(tokenizer, [""])
    with pytest.raises(TypeError, match="texts"):
        tokens_per_character(tokenizer, "a string")


# ---------------------------------------------------------------------------------------------------------------
# GPT-2 from tiktoken ranks
# ---------------------------------------------------------------------------------------------------------------


def write_ranks(path, tokens):
    path.write_text("".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(tokens)))
    return path


def test_byte_to_unicode_map_is_gpt2s():
    mapping = bytes_to_unicode()
    assert len(set(mapping.values())) == 256
    assert (mapping[ord(" ")], mapping[ord("\n")], mapping[ord("A")]) == ("Ġ", "Ċ", "A")


def test_merges_are_recovered_from_a_rank_table(tmp_path):
    tokens = [bytes([byte]) for byte in range(256)] + [b"ab", b"abc", b"cab", b"abcab"]
    path = write_ranks(tmp_path / "tiny.tiktoken", tokens)
    assert recover_bpe_merges(read_tiktoken_ranks(path)) == [
        (b"a", b"b"), (b"ab", b"c"), (b"c", b"ab"), (b"abc", b"ab")]
    tokenizer = gpt2_tokenizer_from_whisper_asset(tiktoken_path=path)
    assert tokenizer("abcab ab")["input_ids"] == [259, ord(" "), 256]
    assert tokenizer.convert_tokens_to_ids(ENDOFTEXT_TOKEN) == 260 == tokenizer.eos_token_id
    assert tokenizer.decode(tokenizer("x abcab\n")["input_ids"]) == "x abcab\n"


def test_bad_rank_tables_are_refused(tmp_path):
    single_bytes = [bytes([byte]) for byte in range(256)]
    with pytest.raises(ValueError, match="cannot be built"):
        recover_bpe_merges(read_tiktoken_ranks(write_ranks(tmp_path / "a.tiktoken", single_bytes + [b"xyz"])))
    with pytest.raises(ValueError, match="single-byte"):
        recover_bpe_merges(read_tiktoken_ranks(write_ranks(tmp_path / "b.tiktoken", single_bytes[1:])))
    (tmp_path / "c.tiktoken").write_text("not base64!\n")
    with pytest.raises(ValueError, match="c.tiktoken:1"):
        read_tiktoken_ranks(tmp_path / "c.tiktoken")
    (tmp_path / "d.tiktoken").write_text("YQ== 0\nYg== 5\n")
    with pytest.raises(ValueError, match="ranks"):
        read_tiktoken_ranks(tmp_path / "d.tiktoken")
    with pytest.raises(DataUnavailableError, match="tiktoken_path"):
        gpt2_tokenizer_from_whisper_asset(tiktoken_path=tmp_path / "missing.tiktoken")


def test_missing_whisper_says_how_to_install_it(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(DataUnavailableError, match="pip install --no-deps openai-whisper"):
        whisper_gpt2_asset_path()


def test_gpt2_rebuilt_from_the_whisper_asset(tmp_path):
    whisper_gpt2_asset_path()  # openai-whisper is in the test extra: a missing asset fails here
    imported_before = "whisper" in sys.modules
    tokenizer = gpt2_tokenizer_from_whisper_asset()
    # Finding the file must not import `whisper`, whose __init__ pulls torch and numba.
    assert ("whisper" in sys.modules) == imported_before
    assert len(tokenizer) == 50257
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert tokenizer.eos_token_id == tokenizer.bos_token_id == 50256
    text = "def f(x):\n    return x  # ünïcødé 🐍"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_gpt2_rebuild_encodes_like_tiktoken():
    """The rebuilt merges reproduce tiktoken's own BPE on the same rank file (tiktoken: openai-whisper's dependency)."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import r50k_pat_str

    path = whisper_gpt2_asset_path()
    reference = tiktoken.Encoding("gpt2-local", pat_str=r50k_pat_str, mergeable_ranks=load_tiktoken_bpe(str(path)),
                                  special_tokens={"<|endoftext|>": 50256})
    tokenizer = gpt2_tokenizer_from_whisper_asset(tiktoken_path=path)
    texts = ["Hello world", "def f(x):\n    return x  # ünïcødé 🐍", "   leading spaces\t\ttabs\r\n",
             "can't won't I'll", "1234567 numbers 3.14159", "import torch.nn.functional as F\nF.softmax(x, dim=-1)"]
    for text in texts:
        assert tokenizer(text)["input_ids"] == reference.encode_ordinary(text), text
