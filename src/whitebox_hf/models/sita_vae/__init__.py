from typing import TYPE_CHECKING

_import_structure = {
    "configuration_sita_vae": ["SITA_VAE_PRESETS", "SitaVaeConfig"],
    "mesh_extraction": [
        "MESH_SUFFIXES",
        "coarse_to_fine_occupancy",
        "dense_query_grid",
        "export_mesh",
        "meshes_from_occupancy_grid",
    ],
    "modeling_sita_vae": [
        "FourierPointEmbedding",
        "SitaVaeEncoderOutput",
        "SitaVaeModel",
        "SitaVaeOutput",
        "SitaVaePreTrainedModel",
    ],
}

if TYPE_CHECKING:
    from .configuration_sita_vae import SITA_VAE_PRESETS, SitaVaeConfig
    from .mesh_extraction import (
        MESH_SUFFIXES,
        coarse_to_fine_occupancy,
        dense_query_grid,
        export_mesh,
        meshes_from_occupancy_grid,
    )
    from .modeling_sita_vae import (
        FourierPointEmbedding,
        SitaVaeEncoderOutput,
        SitaVaeModel,
        SitaVaeOutput,
        SitaVaePreTrainedModel,
    )
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
