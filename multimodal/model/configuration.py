"""``MultimodalConfig``: the HF configuration of the fusion model (transformers v5 dataclass config)."""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict(accept_kwargs=True)
class MultimodalConfig(PreTrainedConfig):
    r"""Configuration of :class:`~multimodal.model.MultimodalModel`.

    Args:
        streams: one dict per modality, as :class:`~multimodal.adapters.StreamSpec` fields (modality, kind,
            feature_dim, num_slots, vocab_size, max_tokens, slot_names). Set from the fitted adapters.
        d_model: width of every token after its input encoder.
        depth: number of fusion layers (self-attention among compact tokens + FFN).
        num_heads: attention heads.
        num_latents: learned latent tokens that cross-attend to the patch tokens.
        cross_layers: how many of the first fusion layers cross-attend to the patch tokens (cost O(N d) each).
        cross_queries: "latents" (only latents query the patches) or "all" (every compact token does).
        slot_hidden: width of each slot's (pathway's) own input encoder before the shared projection.
        ffn_mult: FFN expansion factor.
        dropout: dropout in attention outputs and FFNs.
        modality_dropout: probability, per patient and modality in training, of hiding a present modality
            (never all of a patient's modalities).
        fusion: registered fusion block name.
        pooled_readout: add each modality's mean encoder token (projected) to the fused CLS before the heads.
        survival: "discrete", "cox" or "none".
        bin_edges: discrete-time bin cut points (interior edges, in ``time_unit``), from training event-time quantiles.
        proportional: discrete-time head with one risk score shifting a learned baseline hazard (True) or free
            per-bin hazard logits (False).
        alpha: weight of the uncensored term in the discrete-time NLL (0 = plain NLL).
        response_classes: 0 = no response head, 2 = binary, > 2 = multiclass.
        num_arms: number of treatment arms (0 = no treatment conditioning).
        survival_weight / response_weight: multitask loss weights.
        response_trunk_grad: share of the response loss's gradient that reaches the shared encoders and fusion when
            the model also has a survival head (1 = plain multitask, 0 = the response heads only read the shared
            representation). The forward pass is the same for every value.
        time_unit: unit of survival times.
        wide: add the wide path (model/wide.py): a linear log-hazard term on each modality's raw inputs beside the
            fusion trunk (survival heads only).
        wide_l2: L2 penalty on the wide path's weights (added to the training loss).
        inference_chunk: patches encoded and attended at a time in a forward pass without gradients (prediction)
            of a bag longer than this: the latents' attention over the bag is accumulated chunk by chunk (online
            softmax), so memory does not grow with the bag; the same predictions as unchunked. 0 = never chunk.
        wide_lr_mult: the wide path's learning rate as a multiple of the training learning rate (its weights start
            at zero and must reach Cox-sized coefficients within the few epochs early stopping allows).
    """

    model_type = "precision_multimodal"

    streams: list[dict[str, Any]] | None = None
    d_model: int = 128
    depth: int = 2
    num_heads: int = 4
    num_latents: int = 8
    cross_layers: int = 1
    cross_queries: str = "latents"
    slot_hidden: int = 32
    ffn_mult: int = 2
    dropout: float = 0.1
    modality_dropout: float = 0.0
    fusion: str = "latent_cross_attention"
    pooled_readout: bool = True
    survival: str = "discrete"
    bin_edges: list[float] | None = None
    proportional: bool = True
    alpha: float = 0.5
    response_classes: int = 0
    num_arms: int = 0
    survival_weight: float = 1.0
    response_weight: float = 1.0
    response_trunk_grad: float = 0.1
    time_unit: str = "days"
    max_slides: int = 16
    wide: bool = False
    wide_l2: float = 0.0
    wide_lr_mult: float = 1.0
    inference_chunk: int = 8192

    def __post_init__(self, **kwargs: Any) -> None:
        if self.streams is None:
            self.streams = []
        if self.bin_edges is None:
            self.bin_edges = []
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Raise ValueError naming the field when the architecture is inconsistent."""
        if self.d_model % self.num_heads:
            msg = f"MultimodalConfig.d_model: expected a multiple of num_heads={self.num_heads}, got {self.d_model}"
            raise ValueError(msg)
        if self.survival not in ("discrete", "cox", "none"):
            msg = f"MultimodalConfig.survival: expected 'discrete', 'cox' or 'none', got {self.survival!r}"
            raise ValueError(msg)
        if self.inference_chunk < 0:
            msg = f"MultimodalConfig.inference_chunk: expected >= 0 (0 = never chunk), got {self.inference_chunk}"
            raise ValueError(msg)
        if self.cross_queries not in ("latents", "all"):
            msg = f"MultimodalConfig.cross_queries: expected 'latents' or 'all', got {self.cross_queries!r}"
            raise ValueError(msg)

    @property
    def num_bins(self) -> int:
        return len(self.bin_edges or []) + 1
