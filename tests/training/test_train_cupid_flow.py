"""training/train_cupid_flow.py --image_encoder: stage 1 can start from (and freeze) the encoder of a trained pose
regressor, the encoder of the model that does learn the camera from these renders; another kind of folder is
refused by name."""

import pytest
import torch

from tests.conftest import load_training_script
from tests.training.test_resume import CUPID, cupid_renders

train = load_training_script("train_cupid_flow")


def test_a_flow_starts_from_the_frozen_encoder_of_a_pose_regressor(tmp_path):
    from whitebox_hf import CupidPipeline
    from whitebox_hf.models.cupid.pose_regression import CupidPoseRegressionModel

    renders = cupid_renders()
    common = CUPID + ["--max_steps", "2", "--num_threads", "1"]
    train.main(common + ["--model", "pose_regression", "--output_dir", str(tmp_path / "pose")], renders=renders)
    pose_encoder = CupidPoseRegressionModel.from_pretrained(tmp_path / "pose" / "model").image_encoder
    results = train.main(common + ["--model", "flow", "--image_encoder", str(tmp_path / "pose" / "model"),
                                   "--freeze_image_encoder", "true", "--output_dir", str(tmp_path / "flow")],
                         renders=renders)
    flow = CupidPipeline.from_pretrained(tmp_path / "flow" / "pipeline").flow_model
    trained, started = flow.image_encoder.state_dict(), pose_encoder.state_dict()
    assert trained.keys() == started.keys()
    for name in started:  # two optimizer steps later, still the pose regressor's weights
        torch.testing.assert_close(trained[name], started[name], rtol=0, atol=0, msg=name)
    encoder_size = sum(p.numel() for p in pose_encoder.parameters())
    assert results["num_trainable_parameters"] == sum(p.numel() for p in flow.parameters()) - encoder_size
    assert results["image_encoder"] == str(tmp_path / "pose" / "model") and results["freeze_image_encoder"] is True


def test_a_folder_of_another_model_is_refused_as_image_encoder(tmp_path):
    from whitebox_hf import CupidFlowConfig, CupidFlowModel

    CupidFlowModel(CupidFlowConfig(cube_resolution=8, patch_size=4, hidden_size=16, num_hidden_layers=1,
                                   num_attention_heads=2)).save_pretrained(tmp_path / "flow_model")
    with pytest.raises(TypeError, match="image_encoder.*CupidFlowModel"):
        train.load_image_encoder(str(tmp_path / "flow_model"))
    with pytest.raises(OSError, match="image_encoder"):
        train.load_image_encoder(str(tmp_path / "missing"))
