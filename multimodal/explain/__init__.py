"""Explanations: integrated gradients per token, Shapley modality contributions, the RiskResult."""

from multimodal.explain.attribution import AttributionResult, integrated_gradients, modality_shapley
from multimodal.explain.wrapper import BatchForward

__all__ = ["AttributionResult", "BatchForward", "integrated_gradients", "modality_shapley"]
