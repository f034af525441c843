"""Fine-tuning a saved CRATE with transformers.Trainer and with PEFT LoRA."""

import numpy as np
import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import AutoModelForImageClassification, Trainer, TrainingArguments

from whitebox_hf import CrateForImageClassification, CrateImageProcessor
from whitebox_hf.data import load_sklearn_digits
from whitebox_hf.finetuning import collate_image_classification, crate_lora_config, image_transform


@pytest.fixture(scope="module")
def digits():
    return load_sklearn_digits()


@pytest.fixture
def saved_crate(tmp_path, tiny_crate_config):
    config = tiny_crate_config(image_size=16, patch_size=4, num_labels=10)
    CrateForImageClassification(config).save_pretrained(tmp_path / "crate")
    CrateImageProcessor(num_channels=1, size={"height": 16, "width": 16}, image_mean=[0.3],
                        image_std=[0.4]).save_pretrained(tmp_path / "crate")
    return tmp_path / "crate"


def mean_loss(model, dataset):
    batch = collate_image_classification([dataset[i] for i in range(len(dataset))])
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


def test_trainer_fine_tunes_a_saved_crate(saved_crate, digits, tmp_path):
    model = AutoModelForImageClassification.from_pretrained(saved_crate)
    processor = CrateImageProcessor.from_pretrained(saved_crate)
    train = digits["train"].with_transform(image_transform(processor))
    before = mean_loss(model, train)
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=32, num_train_epochs=4,
        learning_rate=3e-3, remove_unused_columns=False, use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=10, seed=0, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=train, data_collator=collate_image_classification)
    trainer.train()
    after = mean_loss(trainer.model, train)
    assert after < before - 0.2, (before, after)


def test_lora_on_mssa_projections_saves_loads_and_merges(saved_crate, digits, tmp_path):
    processor = CrateImageProcessor.from_pretrained(saved_crate)
    batch = collate_image_classification(
        [digits["test"].with_transform(image_transform(processor))[i] for i in range(8)]
    )
    model = get_peft_model(AutoModelForImageClassification.from_pretrained(saved_crate), crate_lora_config(r=4))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or "classifier" in name for name in trainable)
    assert any("subspace_projection.lora_A" in name for name in trainable)
    assert any("output_projection.lora_B" in name for name in trainable)

    # A few optimiser steps so the adapter is not the identity (LoRA's B starts at zero).
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        adapted = model(pixel_values=batch["pixel_values"]).logits
        base_only = model.get_base_model()
        with model.disable_adapter():
            assert not torch.allclose(base_only(pixel_values=batch["pixel_values"]).logits, adapted)

    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    reloaded = PeftModel.from_pretrained(AutoModelForImageClassification.from_pretrained(saved_crate),
                                         tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=batch["pixel_values"]).logits, adapted)
        merged = reloaded.merge_and_unload()
        assert isinstance(merged, CrateForImageClassification)
        torch.testing.assert_close(merged(pixel_values=batch["pixel_values"]).logits, adapted, atol=1e-5, rtol=1e-5)


def test_lora_config_rejects_bad_rank():
    with pytest.raises(ValueError, match="r"):
        crate_lora_config(r=0)


def test_transform_explains_missing_column(digits):
    transform = image_transform(CrateImageProcessor(num_channels=1))
    with pytest.raises(KeyError, match="remove_unused_columns"):
        transform({"pixel": [np.zeros((8, 8))], "label": [0]})
