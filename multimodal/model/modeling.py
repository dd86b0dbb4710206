"""``MultimodalModel``: per-modality encoders → latent cross-attention fusion → survival / response heads.

One forward serves training, prediction and explanation. It takes a :class:`~multimodal.types.Batch` and returns a
:class:`MultimodalOutput`; the loss is included when the batch carries targets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel

from multimodal.model.configuration import MultimodalConfig
from multimodal.model.encoders import build_encoder
from multimodal.model.wide import WidePath
from multimodal.registry import FUSION, HEADS
from multimodal.types import Batch, TokenStream

Tensor = torch.Tensor


@dataclass
class MultimodalOutput:
    """What the model returns. ``risk`` is always set (higher = worse); per-arm fields when the model has arms."""

    risk: Tensor
    fused: Tensor
    hazards: Tensor | None = None
    survival: Tensor | None = None
    log_hz: Tensor | None = None
    response_logits: Tensor | None = None
    response_prob: Tensor | None = None
    risk_per_arm: Tensor | None = None
    survival_per_arm: Tensor | None = None
    response_prob_per_arm: Tensor | None = None
    present: dict[str, Tensor] = field(default_factory=dict)
    loss: Tensor | None = None
    losses: dict[str, Tensor] = field(default_factory=dict)


class MultimodalPreTrainedModel(PreTrainedModel):
    config_class = MultimodalConfig
    config: MultimodalConfig
    base_model_prefix = "multimodal"
    main_input_name = "batch"
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            # fan-in scaled (not GPT's fixed 0.02, which at d_model 32-128 shrinks every layer's output ~10x and
            # leaves small-cohort training on a plateau until it memorizes)
            nn.init.trunc_normal_(module.weight, std=module.weight.shape[1] ** -0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class MultimodalModel(MultimodalPreTrainedModel):
    def __init__(self, config: MultimodalConfig) -> None:
        super().__init__(config)
        config.validate_architecture()
        if not config.streams:
            msg = "MultimodalConfig.streams: expected at least one modality stream, got none"
            raise ValueError(msg)
        d = config.d_model
        self.specs = {s["modality"]: dict(s) for s in config.streams}
        self.modalities = list(self.specs)
        self.encoders = nn.ModuleDict(
            {m: build_encoder(s, d, config.slot_hidden, config.max_slides) for m, s in self.specs.items()}
        )
        self.modality_emb = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, d)) for m in self.modalities})
        self.missing_tokens = nn.ParameterDict({m: nn.Parameter(torch.randn(1, 1, d) * 0.02) for m in self.modalities})
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.latents = nn.Parameter(torch.randn(1, config.num_latents, d) * 0.02)
        self.fusion = FUSION.get(config.fusion)(
            d_model=d, num_heads=config.num_heads, depth=config.depth, ffn_mult=config.ffn_mult,
            dropout=config.dropout, cross_layers=config.cross_layers, cross_queries=config.cross_queries,
        )
        # pooled readout: each modality's mean encoder token, projected, is added to the fused CLS — a short path
        # from every input to the heads that small cohorts can fit before the attention learns where to look
        self.pool_proj = nn.ModuleDict({m: nn.Linear(d, d) for m in self.modalities}) if config.pooled_readout else None
        self.arm_emb = nn.Embedding(config.num_arms, d) if config.num_arms > 0 else None
        # wide path: a penalized linear log-hazard term on the raw inputs beside the fusion trunk (model/wide.py)
        self.wide = WidePath(self.specs) if config.wide and config.survival != "none" else None
        self.survival_head: nn.Module | None = None
        if config.survival == "discrete":
            self.survival_head = HEADS.get("discrete_survival")(
                d_model=d, bin_edges=list(config.bin_edges or []), alpha=config.alpha, dropout=config.dropout,
                proportional=config.proportional,
            )
        elif config.survival == "cox":
            self.survival_head = HEADS.get("cox")(d_model=d, dropout=config.dropout)
        # treatment response: one head per arm on the shared representation (TARNet, Shalit et al. 2017), so the
        # response under each arm is its own function of the patient and arm x biomarker interactions are direct
        self.response_heads = nn.ModuleList(
            HEADS.get("response")(d_model=d, num_classes=config.response_classes, dropout=config.dropout)
            for _ in range(max(config.num_arms, 1))
        ) if config.response_classes >= 2 else None
        self.post_init()

    # ---- input side --------------------------------------------------------------------------------------------
    def _stream_or_dummy(self, batch: Batch, m: str, device: torch.device) -> TokenStream:
        s = batch.streams.get(m)
        if s is not None:
            return s
        spec, b = self.specs[m], batch.batch_size
        mask = torch.zeros(b, 1, dtype=torch.bool, device=device)
        if spec["kind"] == "patches":
            return TokenStream(m, mask, features=torch.zeros(b, 1, int(spec["feature_dim"]), device=device),
                               positions=torch.zeros(b, 1, 2, device=device),
                               slide_index=torch.zeros(b, 1, dtype=torch.long, device=device))
        if spec["kind"] == "slots":
            p = int(spec["num_slots"])
            return TokenStream(m, torch.zeros(b, p, dtype=torch.bool, device=device),
                               features=torch.zeros(b, p, int(spec["feature_dim"]), device=device))
        return TokenStream(m, mask, codes=torch.zeros(b, 1, dtype=torch.long, device=device),
                           values=torch.zeros(b, 1, device=device),
                           value_mask=torch.zeros(b, 1, dtype=torch.bool, device=device),
                           times=torch.zeros(b, 1, device=device))

    def input_streams(self, batch: Batch) -> dict[str, TokenStream]:
        """Every modality's stream of ``batch``; an all-masked stand-in (one per patient) where the batch has none."""
        device = self.cls.device
        return {m: self._stream_or_dummy(batch, m, device) for m in self.modalities}

    def _modality_keep(self, present: dict[str, Tensor]) -> dict[str, Tensor]:
        """Modality dropout (training only): hide present modalities at random, never all of a patient's."""
        p = self.config.modality_dropout
        if not self.training or p <= 0 or len(present) < 2:
            return present
        mods = list(present)
        pres = torch.stack([present[m] for m in mods], dim=1)  # (B, M)
        drop = (torch.rand(pres.shape, device=pres.device) < p) & pres
        kept = pres & ~drop
        none_left = ~kept.any(dim=1)
        kept[none_left] = pres[none_left]  # give patients with nothing left their original modalities back
        return {m: kept[:, i] for i, m in enumerate(mods)}

    def encode_tokens(self, batch: Batch) -> dict[str, Tensor]:
        """Each modality's encoder output (B, N, d) — the input-side embeddings explanations attribute to."""
        device = self.cls.device
        return {m: self.encoders[m](self._stream_or_dummy(batch, m, device)) for m in self.modalities}

    def encode(self, batch: Batch, token_overrides: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Fused representation (B, d) (the CLS token after fusion) and the per-modality presence used.

        ``token_overrides[m]`` replaces modality ``m``'s encoder output (B, N, d); used by explanations that attribute
        to token embeddings of discrete inputs (EHR codes).
        """
        h, present, _ = self._encode(batch, token_overrides)
        return h, present

    def _encode(self, batch: Batch, token_overrides: dict[str, Tensor] | None = None,
                ) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        """:meth:`encode` plus the wide path's term (B,) (None without a wide path), on the same presence."""
        device = self.cls.device
        b = batch.batch_size
        streams = self.input_streams(batch)
        present = self._modality_keep({m: s.mask.any(dim=1) for m, s in streams.items()})
        compact, compact_mask, patches, patch_mask = [], [], [], []
        ones = torch.ones(b, 1, dtype=torch.bool, device=device)
        compact.append(self.cls.expand(b, -1, -1))
        compact_mask.append(ones)
        compact.append(self.latents.expand(b, -1, -1))
        compact_mask.append(ones.expand(b, self.latents.shape[1]))
        for m in self.modalities:
            compact.append(self.missing_tokens[m].expand(b, -1, -1))
            compact_mask.append(~present[m].unsqueeze(1))
        overrides = token_overrides or {}
        streamed = self._streamed(streams, overrides, present)
        means: dict[str, Tensor] = {}  # each modality's mean encoder token (B, d), for the pooled readout
        for m in self.modalities:
            s = streams[m]
            mask = s.mask & present[m].unsqueeze(1)
            if streamed is not None and self.specs[m]["kind"] == "patches" and m not in overrides:
                continue  # encoded chunk by chunk inside the fusion
            emb = self.modality_emb[m]
            if m in overrides:
                enc = overrides[m]
                tok = enc + emb
            elif self.specs[m]["kind"] == "patches":
                # the modality embedding rides on the encoder's norm bias: no extra pass over (B, N, d)
                tok = self.encoders[m](s, shift=emb)
                enc = None
            else:
                enc = self.encoders[m](s)
                tok = enc + emb
            if tok.shape[1] != mask.shape[1]:  # slot encoder pads short (all-missing) streams to its slot count
                mask = torch.nn.functional.pad(mask, (0, tok.shape[1] - mask.shape[1]), value=False)
            if self.pool_proj is not None:
                means[m] = _masked_mean(enc, mask) if enc is not None else _masked_mean(tok, mask, minus=emb)
            if self.specs[m]["kind"] == "patches":
                patches.append(tok)
                patch_mask.append(mask)
            else:
                compact.append(tok)
                compact_mask.append(mask)
        x = torch.cat(compact, dim=1)
        x_mask = torch.cat(compact_mask, dim=1)
        if streamed is not None:
            streamed.extra = list(zip(patches, patch_mask, strict=True))
            p, pm = streamed, None
        elif patches:
            p = patches[0] if len(patches) == 1 else torch.cat(patches, dim=1)
            pm = patch_mask[0] if len(patch_mask) == 1 else torch.cat(patch_mask, dim=1)
            pm = None if bool(pm.all()) else pm  # masks only where bags are padded
        else:
            p = torch.zeros(b, 0, x.shape[-1], device=device, dtype=x.dtype)
            pm = None
        out = self.fusion(x, x_mask, p, pm, n_latent=self.latents.shape[1])
        h = out[:, 0]
        if self.pool_proj is not None:
            if streamed is not None:
                means.update(streamed.means())
            pooled = [self.pool_proj[m](means[m]) * present[m].unsqueeze(-1).to(means[m].dtype)
                      for m in self.modalities]
            h = h + sum(pooled)
        wide = self.wide(streams, present) if self.wide is not None else None
        return h, present, wide

    def _streamed(self, streams: dict[str, TokenStream], overrides: dict[str, Tensor], present: dict[str, Tensor],
                  ) -> _PatchChunks | None:
        """The chunked patch source when inference streams (no gradients, a bag longer than ``inference_chunk``)."""
        chunk = int(self.config.inference_chunk)
        if chunk <= 0 or torch.is_grad_enabled():
            return None
        parts = [(m, s) for m, s in streams.items() if self.specs[m]["kind"] == "patches" and m not in overrides]
        if not any(s.num_tokens > chunk for _, s in parts):
            return None
        return _PatchChunks(self, [(m, s, s.mask & present[m].unsqueeze(1)) for m, s in parts], chunk)

    # ---- heads -------------------------------------------------------------------------------------------------
    def _heads(self, h: Tensor, h_response: Tensor | None = None, arm: Tensor | int | None = None,
               offset: Tensor | None = None, response_offset: Tensor | None = None) -> dict[str, Tensor]:
        """Head outputs; the response is that of ``arm`` (a per-patient index tensor or one arm for all).

        ``offset`` (B,) is a log-hazard term (the wide path's, or the pooled stack's) added inside the survival head;
        ``response_offset`` (B,) a log-odds term added to the last response class's logit (binary response)."""
        out: dict[str, Tensor] = {}
        if self.survival_head is not None:
            out.update(self.survival_head(h, offset) if offset is not None else self.survival_head(h))
        if self.response_heads is not None:
            hr = h if h_response is None else h_response
            g = float(self.config.response_trunk_grad)
            if self.training and self.survival_head is not None and g < 1.0:
                # same values; in training the response loss's gradient into the shared layers is scaled by g (see the
                # config). Never in eval mode: attributions need the true gradients of the response.
                hr = hr * g + hr.detach() * (1.0 - g) if g > 0 else hr.detach()
            per = [rh(hr) for rh in self.response_heads]  # every arm's head runs (DDP: no unused parameters)
            if response_offset is not None:
                per = [_with_response_offset(o, response_offset) for o in per]
            if isinstance(arm, int) or len(per) == 1:
                out.update(per[arm if isinstance(arm, int) else 0])
            else:
                idx = torch.zeros(hr.shape[0], dtype=torch.long, device=hr.device) if arm is None else arm.long()
                for key in per[0]:
                    stacked = torch.stack([o[key] for o in per], dim=1)  # (B, A, C)
                    out[key] = stacked[torch.arange(hr.shape[0], device=hr.device), idx]
        if "risk" not in out:
            out["risk"] = torch.zeros(h.shape[0], device=h.device, dtype=h.dtype) + 0.0 * h.sum(-1)
        return out

    def forward(
        self, batch: Batch, *, per_arm: bool = False, token_overrides: dict[str, Tensor] | None = None,
    ) -> MultimodalOutput:
        fused, present, wide = self._encode(batch, token_overrides)
        response_offset = None
        if batch.offset is not None and self.survival_head is None and self.response_heads is not None:
            # a response-only model: the offset is the pooled stack's log-odds of the responder class
            response_offset = batch.offset.to(device=fused.device, dtype=fused.dtype)
        elif batch.offset is not None and (wide is None or self.training):
            # stacking: without a wide path the offset is the pipeline's pooled stack (multimodal.stack), in training
            # and at inference; with one, in training only, the frozen linear term is each patient's out-of-fold
            # prediction (multimodal.wide_init), so the trunk learns what that term leaves on patients it did not see
            wide = batch.offset.to(device=fused.device, dtype=fused.dtype)
        h, arm = fused, None
        if self.arm_emb is not None:
            arm = batch.treatment if batch.treatment is not None else torch.zeros(
                batch.batch_size, dtype=torch.long, device=fused.device)
            arm = arm.to(fused.device).long()
            h = fused + self.arm_emb(arm)
        heads = self._heads(h, fused, arm, wide, response_offset)
        out = MultimodalOutput(
            risk=heads["risk"], fused=fused, hazards=heads.get("hazards"), survival=heads.get("survival"),
            log_hz=heads.get("log_hz"), response_logits=heads.get("response_logits"),
            response_prob=heads.get("response_prob"), present=present,
        )
        if per_arm and self.arm_emb is not None:
            arms = [self._heads(fused + self.arm_emb.weight[a], fused, a, wide, response_offset)
                    for a in range(self.config.num_arms)]
            out.risk_per_arm = torch.stack([a["risk"] for a in arms], dim=1)
            if "survival" in arms[0]:
                out.survival_per_arm = torch.stack([a["survival"] for a in arms], dim=1)
            if "response_prob" in arms[0]:
                out.response_prob_per_arm = torch.stack([a["response_prob"] for a in arms], dim=1)
        losses: dict[str, Tensor] = {}
        if batch.survival is not None and self.survival_head is not None:
            losses["survival"] = self.survival_head.loss(heads, batch.survival) * self.config.survival_weight
        if batch.response is not None and self.response_heads is not None:
            losses["response"] = self.response_heads[0].loss(heads, batch.response) * self.config.response_weight
        if losses and self.wide is not None and self.training and self.config.wide_l2 > 0:
            losses["wide_l2"] = self.config.wide_l2 * self.wide.penalty().to(fused.device)
        if losses:
            total = sum(losses.values())
            # keep every head in the graph even when a batch lacks its target (DDP: no unused parameters)
            for v in heads.values():
                total = total + 0.0 * v.float().sum()
            out.loss = total
            out.losses = losses
        return out


def _masked_mean(t: Tensor, mask: Tensor, minus: Tensor | None = None) -> Tensor:
    """Mean of ``t`` (B, N, d) over the tokens where ``mask`` (B, N) is True, 0 for a patient without any; ``minus``
    (d,) is subtracted from the mean of every patient with tokens (the mean of ``t - minus``)."""
    w = mask.to(t.dtype)
    cnt = w.sum(1, keepdim=True)
    if t.shape[1] and bool(mask.all()):  # no padding: a plain mean, whose gradient is a broadcast, not a buffer
        mean = t.mean(1)
    else:
        mean = torch.bmm(w.unsqueeze(1), t).squeeze(1) / cnt.clamp(min=1)
    return mean if minus is None else mean - minus.reshape(1, -1) * (cnt > 0).to(t.dtype)


def _token_slice(s: TokenStream, start: int, stop: int) -> TokenStream:
    """Tokens ``start:stop`` of a patch stream (views: a memory-mapped bag is read one chunk at a time)."""
    def cut(t: Tensor | None) -> Tensor | None:
        return None if t is None else t[:, start:stop]

    return TokenStream(s.modality, s.mask[:, start:stop], features=cut(s.features), positions=cut(s.positions),
                       slide_index=cut(s.slide_index))


class _PatchChunks:
    """Patch tokens of the patch modalities, encoded ``chunk`` patches at a time whenever the fusion iterates them
    (streamed inference; a :class:`~multimodal.model.fusion.PatchChunks`). Peak memory holds one chunk's tokens,
    not the bag's. The first pass also sums each modality's tokens for the pooled readout. ``extra``: (tokens, mask)
    of patch modalities given whole (token overrides), yielded as they are."""

    def __init__(self, model: MultimodalModel, parts: list[tuple[str, TokenStream, Tensor]], chunk: int) -> None:
        self.model, self.chunk, self.parts = model, chunk, parts
        self.extra: list[tuple[Tensor, Tensor]] = []
        self._sums: dict[str, Tensor] | None = None

    @property
    def count(self) -> Tensor:
        """(B,) real patch tokens per patient."""
        return sum(mask.sum(1) for _, _, mask in self.parts) + sum(mk.sum(1) for _, mk in self.extra)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        model = self.model
        sums: dict[str, Tensor] | None = {} if self._sums is None else None
        for m, s, mask in self.parts:
            enc, shift = model.encoders[m], model.modality_emb[m]
            codes = enc.position_codes(s)  # once per bag, not per chunk
            total = torch.zeros(s.batch_size, model.config.d_model, device=model.cls.device, dtype=model.cls.dtype)
            for start in range(0, s.num_tokens, self.chunk):
                stop = min(start + self.chunk, s.num_tokens)
                mk = mask[:, start:stop]
                tok = enc(_token_slice(s, start, stop), shift=shift, codes=codes)
                if sums is not None:
                    total = total + torch.bmm(mk.to(tok.dtype).unsqueeze(1), tok).squeeze(1)
                yield tok, None if bool(mk.all()) else mk
                del tok  # before the next chunk is encoded: one chunk's tokens alive at a time
            if sums is not None:
                sums[m] = total
        for tok, mk in self.extra:
            yield tok, None if bool(mk.all()) else mk
        if sums is not None:
            self._sums = sums

    def means(self) -> dict[str, Tensor]:
        """Each streamed modality's mean encoder token (B, d) (as :func:`_masked_mean`)."""
        if self._sums is None:
            for _ in self:  # the fusion never iterated (no cross-attention layer)
                pass
        assert self._sums is not None
        out = {}
        for m, _, mask in self.parts:
            cnt = mask.sum(1, keepdim=True).to(self._sums[m].dtype)
            emb = self.model.modality_emb[m].reshape(1, -1)
            out[m] = self._sums[m] / cnt.clamp(min=1) - emb * (cnt > 0).to(emb.dtype)
        return out


def _with_response_offset(out: dict[str, Tensor], offset: Tensor) -> dict[str, Tensor]:
    """A response head's output with ``offset`` (B,) added to the last class's logit (probabilities recomputed)."""
    logits = out["response_logits"]
    shift = torch.zeros_like(logits)
    shift[:, -1] = offset.to(logits.dtype)
    logits = logits + shift
    return {**out, "response_logits": logits, "response_prob": torch.softmax(logits.float(), dim=-1)}
