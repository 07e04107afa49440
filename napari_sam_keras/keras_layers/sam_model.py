"""The whole SAM as one functional Keras model, laid out like keras-cv's ``SegmentAnythingModel``.

Its weights are those of its three parts: the image encoder (``backbone``:
:class:`~.vit_det.ViTDetBackbone`, or MobileSAM's TinyViT from
:func:`~.tiny_vit.tiny_vit_backbone`), the prompt encoder and the mask decoder.
Built from ``backbone.input`` and ``backbone.output`` as keras-cv builds it,
its weight file lists the backbone's layers under ``layers/`` beside
``layers/sam_prompt_encoder`` and ``layers/sam_mask_decoder``: the same file
keras-cv writes and reads.
"""

from __future__ import annotations

import keras

from .vit_det import PACKAGE, FunctionalWithoutDuplicates, _layer_ids


@keras.saving.register_keras_serializable(package=PACKAGE)
class SegmentAnythingModel(FunctionalWithoutDuplicates):
    """Images and prompts -> ``{"masks", "iou_pred"}`` (keras-cv's inputs and outputs)."""

    _hidden_attributes = ("backbone", "_backbone")

    def __init__(self, *, backbone, prompt_encoder, mask_decoder, **kwargs):
        prompt_inputs = {
            "points": keras.Input(shape=[None, 2], name="points"),
            "labels": keras.Input(shape=[None], name="labels"),
            "boxes": keras.Input(shape=[None, 2, 2], name="boxes"),
            "masks": keras.Input(shape=[None, None, None, 1], name="masks"),
        }
        inputs = {"images": backbone.input, **prompt_inputs}
        prompts = prompt_encoder(prompt_inputs)
        outputs = mask_decoder(
            {
                "image_embeddings": backbone.output,
                "image_pe": prompts["dense_positional_embeddings"],
                "sparse_prompt_embeddings": prompts["sparse_embeddings"],
                "dense_prompt_embeddings": prompts["dense_embeddings"],
            }
        )
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._backbone = backbone
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self._functional_layer_ids = _layer_ids(self)

    @property
    def backbone(self):
        """The image encoder, a functional Keras model."""
        return self._backbone

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": serialize(self.backbone),
            "prompt_encoder": serialize(self.prompt_encoder),
            "mask_decoder": serialize(self.mask_decoder),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for part in ("backbone", "prompt_encoder", "mask_decoder"):
            if isinstance(config.get(part), dict):
                config[part] = keras.saving.deserialize_keras_object(config[part])
        return cls(**config)
