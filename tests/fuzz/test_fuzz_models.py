"""Bad-input fuzz of every public configuration and model (issue 12): each bad value raises `ValueError` /
`TypeError` (`OSError` for files) naming the argument, never an unclear error and never silence.

The families are enumerated from the Auto tables (`whitebox_hf.models.auto`), so a new family is fuzzed as soon as it
is registered. `test_every_enumerated_case_is_clear` runs every case of `_model_cases` (what
benchmarks/fuzz_report.py counts); the hypothesis properties draw further values (strings, non-finite floats, ids out
of range at random places, unknown keys) the enumeration does not list.
"""

import dataclasses
import math
import string

import pytest
import torch
from _harness import CLEAR, FuzzTally, classify
from _model_cases import (
    BATCH,
    SEQUENCE,
    TINY,
    _field_kind,
    all_cases,
    config_class,
    own_fields,
    tiny_config,
    tiny_model,
    valid_inputs,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whitebox_hf.models.auto import CONFIGS, MODELS
from whitebox_hf.models.validation import standard_config_keys

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT_MODELS = [model for _, _, model in MODELS if tiny_model(model).main_input_name == "input_ids"]
IMAGE_MODELS = [model for _, _, model in MODELS
                if model not in TEXT_MODELS and "pixel_values" in valid_inputs(tiny_model(model))]


def test_every_registered_config_has_a_tiny_configuration():
    assert set(TINY) == set(CONFIGS), "add a tiny configuration to tests/fuzz/_model_cases.py:TINY"
    for name in CONFIGS:
        tiny_config(name)  # valid


def test_the_classifier_tells_the_three_outcomes_apart():
    def names_it():
        raise ValueError("`hidden_size` must be positive, got -1")

    def bare():
        raise IndexError("index out of range in self")

    assert classify(names_it, "hidden_size") == "clear"
    assert classify(names_it, "num_labels") == "unclear"
    assert classify(bare, "input_ids") == "unclear"
    assert classify(lambda: None, "input_ids") == "silent"


def test_every_enumerated_case_is_clear():
    tally = FuzzTally()
    for group, name, call, argument in all_cases():
        tally.record(f"{group}: {name}", call, argument)
    assert tally.cases > 700
    assert not tally.failures, "\n".join(f"{case} -> {outcome}: {detail}" for case, outcome, detail in tally.failures)


# --------------------------------------------------------------------------------------------- configurations

_FIELDS = [(name, field.name, _field_kind(config_class(name), field), field.default is None)
           for name in CONFIGS for field in own_fields(config_class(name))]


@st.composite
def bad_field_value(draw):
    """A configuration, one of its fields, and a value of the wrong type or a non-finite number."""
    name, field, kind, optional = draw(st.sampled_from(_FIELDS))
    # None is an optional field's documented default ("same as ..."), so it is a bad value only where the default
    # is a number (as in `_model_cases.config_cases`).
    missing = st.nothing() if optional else st.none()
    non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
    wrong = {
        "int": st.one_of(st.text(max_size=5), st.floats(allow_nan=True), st.booleans(), st.integers(max_value=0)),
        "float": st.one_of(st.text(max_size=5), st.booleans(), missing, non_finite, st.lists(st.floats(), max_size=2)),
        "bool": st.one_of(st.text(max_size=5), st.integers(), st.floats(allow_nan=True)),
        "str": st.one_of(st.integers(), st.floats(allow_nan=True),
                         st.text(string.ascii_letters, min_size=1, max_size=8).map(lambda s: "x" + s)),
        "config": st.one_of(st.text(max_size=5), st.integers(), st.lists(st.integers(), max_size=2)),
        # A [low, high] pair (CupidFlowConfig.guidance_interval): a string, a number, or a list of fewer than two.
        "interval": st.one_of(st.text(max_size=5), st.integers(), st.lists(st.floats(allow_nan=True), max_size=1)),
    }[kind]
    return name, field, draw(wrong)


@FUZZ
@given(bad_field_value())
def test_a_field_of_the_wrong_type_or_not_finite_is_refused_by_name(case):
    name, field, value = case
    assert classify(lambda: tiny_config(name, **{field: value}), field) == CLEAR, (name, field, value)


@FUZZ
@given(st.sampled_from(list(CONFIGS)), st.text(string.ascii_lowercase + "_", min_size=3, max_size=20))
def test_an_unknown_configuration_key_is_refused_by_name(name, key):
    cls = config_class(name)
    if key in standard_config_keys() or key in {field.name for field in dataclasses.fields(cls)}:
        return
    assert classify(lambda: tiny_config(name, **{key: 1}), key) == CLEAR


def test_an_unknown_key_names_the_closest_field():
    with pytest.raises(TypeError, match="`hidden_sise`.*did you mean `hidden_size`"):
        tiny_config("CrateConfig", hidden_sise=32)


def test_a_strict_type_error_names_field_expected_and_received():
    with pytest.raises(TypeError, match=r"ista_lambda.*expected float, got str.*'0\.1'"):
        tiny_config("CrateConfig", ista_lambda="0.1")


@FUZZ
@given(st.sampled_from(list(CONFIGS)), st.one_of(st.integers(max_value=0), st.text(max_size=3), st.floats()))
def test_num_labels_must_be_a_positive_integer(name, value):
    assert classify(lambda: tiny_config(name, num_labels=value), "num_labels") == CLEAR


# ---------------------------------------------------------------------------------------------------- forwards


def _forward(model, inputs):
    with torch.no_grad():
        return model(**inputs)


@FUZZ
@given(st.sampled_from(IMAGE_MODELS), st.data())
def test_a_non_finite_pixel_anywhere_is_refused(model_name, data):
    model = tiny_model(model_name)
    inputs = valid_inputs(model)
    pixels = inputs["pixel_values"].clone()
    index = data.draw(st.integers(0, pixels.numel() - 1))
    pixels.view(-1)[index] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    assert classify(lambda: _forward(model, {**inputs, "pixel_values": pixels}), "pixel_values") == CLEAR


@FUZZ
@given(st.sampled_from(IMAGE_MODELS), st.sampled_from([torch.uint8, torch.int32, torch.int64, torch.bool,
                                                       torch.complex64]))
def test_pixels_that_are_not_floating_point_are_refused_not_cast(model_name, dtype):
    model = tiny_model(model_name)
    inputs = valid_inputs(model)
    pixels = inputs["pixel_values"].abs().mul(10).to(dtype)
    assert classify(lambda: _forward(model, {**inputs, "pixel_values": pixels}), "pixel_values") == CLEAR


@FUZZ
@given(st.sampled_from(TEXT_MODELS + ["WhiteboxClipModel"]), st.data())
def test_an_id_outside_the_vocabulary_is_refused(model_name, data):
    model = tiny_model(model_name)
    inputs = valid_inputs(model)
    vocab = model.config.text_config.vocab_size if model_name == "WhiteboxClipModel" else model.config.vocab_size
    ids = inputs["input_ids"].clone()
    index = data.draw(st.integers(0, ids.numel() - 1))
    ids.view(-1)[index] = data.draw(st.one_of(st.integers(vocab, 10**9), st.integers(-10**9, -1)))
    assert classify(lambda: _forward(model, {**inputs, "input_ids": ids}), "input_ids") == CLEAR


@FUZZ
@given(st.sampled_from(TEXT_MODELS + ["WhiteboxClipModel"]),
       st.floats(allow_nan=True, width=32).filter(lambda v: v not in (0.0, 1.0)), st.data())
def test_an_attention_mask_value_other_than_0_and_1_is_refused(model_name, value, data):
    model = tiny_model(model_name)
    inputs = valid_inputs(model)
    mask = torch.ones(BATCH, SEQUENCE)
    mask.view(-1)[data.draw(st.integers(0, mask.numel() - 1))] = value
    assert classify(lambda: _forward(model, {**inputs, "attention_mask": mask}), "attention_mask") == CLEAR


@pytest.mark.parametrize("mask", [torch.ones(BATCH, SEQUENCE, dtype=torch.bool), torch.ones(BATCH, SEQUENCE),
                                  torch.ones(BATCH, SEQUENCE, dtype=torch.int32)], ids=["bool", "float", "int32"])
def test_a_0_1_attention_mask_of_any_real_dtype_is_accepted(mask):
    model = tiny_model(TEXT_MODELS[0])
    inputs = valid_inputs(model)
    expected = _forward(model, inputs).last_hidden_state
    assert torch.equal(_forward(model, {**inputs, "attention_mask": mask}).last_hidden_state, expected)


@FUZZ
@given(st.sampled_from([m for m in IMAGE_MODELS + TEXT_MODELS if m.endswith(("ForImageClassification", "ForCausalLM"))]),
       st.data())
def test_a_label_out_of_range_is_refused(model_name, data):
    model = tiny_model(model_name)
    inputs = valid_inputs(model)
    labels = inputs["labels"].clone()
    high = model.config.num_labels if labels.ndim == 1 else model.config.vocab_size
    # -100 is transformers' "no target" marker for a language model.
    bad = data.draw(st.one_of(st.integers(high, 10**6), st.integers(-10**6, -1).filter(lambda v: v != -100)))
    labels.view(-1)[data.draw(st.integers(0, labels.numel() - 1))] = bad
    assert classify(lambda: _forward(model, {**inputs, "labels": labels}), "labels") == CLEAR


def test_the_value_checks_do_not_run_on_an_accelerator_tensor():
    """Value checks read CPU tensors only (no host synchronisation in a forward): a meta tensor has no values,
    and the dtype and shape checks still run on it."""
    from whitebox_hf.nn import check_pixel_values

    check_pixel_values(torch.empty(2, 1, 8, 8, device="meta"), num_channels=1, patch_size=4)
    with pytest.raises(TypeError, match="pixel_values"):
        check_pixel_values(torch.empty(2, 1, 8, 8, device="meta", dtype=torch.int64), num_channels=1, patch_size=4)
