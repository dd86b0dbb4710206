"""precision-multimodal: fuse pathology slide embeddings, genomics and structured EHR to predict survival and
treatment response, and explain every prediction."""

__version__ = "0.1.0"
