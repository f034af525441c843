"""What a model card says about Cupid's stage-1 flow (read by `whitebox_hf.hub.model_card`, kind ``image_to_3d``,
`cupid_flow_model_card`): per card family key, the book section, extra Hub tags and the first paragraph (``{dataset}`` is
filled in). Plain data: the model package imports nothing from the hub layer."""

CARD_METADATA = {
    "cupid_flow": {
        # The flow transformer is the authors' (softmax attention, AdaLN DiT); only its CRATE image encoder is
        # white-box, so the family is not labelled white-box.
        "white_box": False,
        "short_name": "cupid-flow",
        "tags": ("3d", "image-to-3d", "pose-estimation", "flow-matching"),
        "book_section": None,
        "description": (
            "Cupid's stage 1 trained on {dataset}: a rectified-flow transformer that generates, from one image, the "
            "occupancy of a voxel cube in the object's canonical frame and, per occupied voxel, the pixel its centre "
            "projects to; the camera (K, R, t) then follows by PnP. The image is read by a CRATE encoder."
        ),
    },
}
