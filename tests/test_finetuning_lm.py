"""LoRA fine-tuning of a saved causal CRATE with transformers.Trainer and PEFT."""

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

from whitebox_hf import (
    AoTConfig,
    AoTForCausalLM,
    CausalCrateConfig,
    CausalCrateForCausalLM,
    ToSTConfig,
    ToSTForCausalLM,
)
from whitebox_hf.data import PackedTokenBlocks, tokenize_and_concatenate
from whitebox_hf.finetuning import causal_lm_lora_config, collate_causal_lm, mssa_projection_names
from whitebox_hf.tokenization import train_bpe_tokenizer

TEXT = ("The os module provides a portable way of using operating system dependent functionality. "
        "Use open() to read or write a file, and os.path to manipulate paths. ") * 20
SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32)


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer([TEXT], vocab_size=300)


@pytest.fixture
def saved_lm(tmp_path, tokenizer):
    model = CausalCrateForCausalLM(CausalCrateConfig(vocab_size=len(tokenizer), **SHAPE))
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def test_lora_trains_only_the_adapter_and_reloads(saved_lm, tokenizer, tmp_path):
    blocks = PackedTokenBlocks(tokenize_and_concatenate(tokenizer, [TEXT] * 4), 32)
    base_model = AutoModelForCausalLM.from_pretrained(saved_lm)
    model = get_peft_model(base_model, causal_lm_lora_config(base_model, r=4))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    # Both MSSA projections of both layers, and nothing else.
    assert len(trainable) == 2 * 2 * 2
    assert {name.split(".lora_")[0].split(".")[-1] for name in trainable} == {"subspace_projection",
                                                                              "output_projection"}
    adapter_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    arguments = TrainingArguments(
        output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=4, max_steps=5, learning_rate=1e-2,
        use_cpu=True, report_to="none", save_strategy="no", logging_steps=1, seed=0, dataloader_num_workers=0,
        label_names=["labels"],
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=blocks, data_collator=collate_causal_lm)
    trainer.train()

    base = load_file(saved_lm / "model.safetensors")
    for name, parameter in model.get_base_model().named_parameters():
        if "lora_" in name:
            continue
        saved_name = name.replace(".base_layer", "")
        if saved_name in base:
            assert torch.equal(parameter.detach(), base[saved_name]), f"base weight {name} changed"
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, adapter_before[n])]
    assert len(changed) == len(adapter_before), "every adapter matrix must have moved"

    batch = collate_causal_lm([blocks[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        adapted = model(input_ids=batch["input_ids"]).logits
        with model.disable_adapter():
            assert not torch.allclose(model(input_ids=batch["input_ids"]).logits, adapted)
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved_lm), tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=batch["input_ids"]).logits, adapted, rtol=0, atol=0)
        generated = reloaded.generate(input_ids=batch["input_ids"][:1, :8],
                                      attention_mask=torch.ones_like(batch["input_ids"][:1, :8]),
                                      max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert generated.shape == (1, 12)


def test_lora_targets_only_mssa_layers():
    aot = AoTForCausalLM(AoTConfig(vocab_size=64, **SHAPE))
    assert mssa_projection_names(aot) == [f"model.layers.{i}.attention.{p}" for i in range(2)
                                          for p in ("subspace_projection", "output_projection")]
    # ToST's TSSA and AoT-MHSA also have an `output_projection`, but no MSSA: there is nothing to adapt.
    for model in (ToSTForCausalLM(ToSTConfig(vocab_size=64, **SHAPE)),
                  AoTForCausalLM(AoTConfig(vocab_size=64, attention_type="mhsa", **SHAPE))):
        with pytest.raises(ValueError, match="`model`"):
            causal_lm_lora_config(model)
    with pytest.raises(ValueError, match="`r`"):
        causal_lm_lora_config(aot, r=0)
