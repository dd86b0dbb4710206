"""The fusion model: HF config + model, encoders, fusion blocks, heads, losses."""

from transformers import AutoConfig, AutoModel

from multimodal.model.configuration import MultimodalConfig
from multimodal.model.ensemble import MultimodalEnsemble
from multimodal.model.fusion import LatentCrossAttentionFusion
from multimodal.model.heads import CoxHead, DiscreteSurvivalHead, ResponseHead
from multimodal.model.modeling import MultimodalModel, MultimodalOutput

AutoConfig.register(MultimodalConfig.model_type, MultimodalConfig, exist_ok=True)
AutoModel.register(MultimodalConfig, MultimodalModel, exist_ok=True)

__all__ = [
    "MultimodalConfig", "MultimodalModel", "MultimodalOutput", "MultimodalEnsemble", "LatentCrossAttentionFusion",
    "DiscreteSurvivalHead", "CoxHead", "ResponseHead",
]
