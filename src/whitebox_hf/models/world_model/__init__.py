"""The action-conditioned world model (Genie-style next-frame diffusion, book §8.7) and its deterministic regressor
baseline (`modeling_world_model`), and the temporal inflation of a 2D U-Net into a video model (`video`)."""

from .modeling_world_model import (
    PREDICTIONS,
    WorldModel,
    WorldModelOutput,
    check_actions,
    frames_to_pixels,
    pixels_to_frames,
    world_model_loss,
)

__all__ = ["PREDICTIONS", "WorldModel", "WorldModelOutput", "check_actions", "frames_to_pixels", "pixels_to_frames",
           "world_model_loss"]
