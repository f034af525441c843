"""MAE's masking and masked-patch loss: defined beside CRATE-MAE, the model that computes it in its forward
(`whitebox_hf.models.crate.masked_modeling`), and re-exported here with the other training objectives."""

from ..models.crate.masked_modeling import masked_patch_loss, random_patch_mask

__all__ = ["masked_patch_loss", "random_patch_mask"]
