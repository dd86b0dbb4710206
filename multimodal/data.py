"""From a cohort + fitted adapters to batches: per-patient items, collation, bag-size bucketing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from multimodal.adapters.base import Adapter
from multimodal.cohorts.cohort import EVENT, RESPONSE, TIME, TREATMENT, Cohort
from multimodal.types import Batch, ResponseTarget, SurvivalTarget, TokenStream, collate_streams


@dataclass(frozen=True)
class PatientItem:
    """One patient's streams and targets, before collation. A patient without outcome (a cohort loaded for scoring)
    has ``time`` NaN and ``event`` None."""

    index: int
    patient_id: str
    streams: Mapping[str, TokenStream]
    time: float
    event: bool | None
    response: int | None
    treatment: int | None
    offset: float | None = None  # cross-fitted log-hazard offset (training only; see multimodal.types.Batch.offset)

    @property
    def has_outcome(self) -> bool:
        return self.event is not None and bool(np.isfinite(self.time))


def _seed_for(base: int, epoch: int, patient_id: str) -> int:
    h = hashlib.blake2b(f"{base}:{epoch}:{patient_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFF_FFFF


class PatientDataset(Dataset[PatientItem]):
    """Patients of a cohort turned into streams by fitted adapters.

    In ``train`` mode adapters may subsample (e.g. patches) with a seed derived from (seed, epoch, patient), so an
    epoch's data do not depend on worker or process layout and a resumed run sees the same samples.
    """

    def __init__(
        self, cohort: Cohort, adapters: Mapping[str, Adapter], patient_ids: Sequence[str], *,
        train: bool = False, seed: int = 0, offsets: Mapping[str, float] | None = None,
    ) -> None:
        self.cohort = cohort
        #: per-patient training offsets (cross-fitted stacking, multimodal.wide_init); every patient needs one
        self.offsets = None if offsets is None else {str(k): float(v) for k, v in offsets.items()}
        if self.offsets is not None:
            missing = [p for p in patient_ids if str(p) not in self.offsets]
            if missing:
                raise ValueError(f"PatientDataset: no offset for {len(missing)} patient(s), e.g. {missing[:3]}")
        self.adapters = dict(adapters)
        self.patient_ids = [str(p) for p in patient_ids]
        self.train = train
        self.seed = seed
        self.epoch = 0
        p = cohort.patients.loc[self.patient_ids]
        self._time = p[TIME].to_numpy(np.float64)
        self._event = p[EVENT].to_numpy(object)  # bool, or NA where a patient to score has no outcome
        self._resp = p[RESPONSE].to_numpy(object) if RESPONSE in p.columns else None
        self._arm = p[TREATMENT].to_numpy(object) if TREATMENT in p.columns and cohort.treatment_arms else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.patient_ids)

    def __getitem__(self, i: int) -> PatientItem:
        pid = self.patient_ids[i]
        seed = _seed_for(self.seed, self.epoch, pid)
        streams = {m: a.transform(pid, train=self.train, seed=seed) for m, a in self.adapters.items()}
        resp = None
        if self._resp is not None and not pd.isna(self._resp[i]):
            resp = int(self._resp[i])
        arm = None
        if self._arm is not None and not pd.isna(self._arm[i]):
            arm = int(self._arm[i])
        event = None if pd.isna(self._event[i]) else bool(self._event[i])
        offset = None if self.offsets is None else self.offsets[pid]
        return PatientItem(i, pid, streams, float(self._time[i]), event, resp, arm, offset)

    def bag_sizes(self) -> list[int]:
        """Approximate token count per patient (for bucketing), from the adapters' cheap size hints if any."""
        sizes = []
        for pid in self.patient_ids:
            n = 0
            for a in self.adapters.values():
                hint = getattr(a, "num_tokens_hint", None)
                n += int(hint(pid)) if callable(hint) else 0
            sizes.append(n)
        return sizes


def collate_patients(items: Sequence[PatientItem], *, num_response_classes: int = 2, time_unit: str = "days") -> Batch:
    """Pad and stack items into a :class:`Batch` (targets included). The survival target is left out when a patient
    of the batch has no outcome (scoring): prediction needs none."""
    mods = list(items[0].streams)
    streams = {m: collate_streams([it.streams[m] for it in items]) for m in mods}
    survival = None
    if all(it.has_outcome for it in items):
        survival = SurvivalTarget(
            time=torch.tensor([it.time for it in items], dtype=torch.float32),
            event=torch.tensor([bool(it.event) for it in items], dtype=torch.bool),
            unit=time_unit,
        )
    response = None
    if any(it.response is not None for it in items) or num_response_classes > 2:
        response = ResponseTarget(
            label=torch.tensor([it.response if it.response is not None else 0 for it in items], dtype=torch.long),
            observed=torch.tensor([it.response is not None for it in items], dtype=torch.bool),
            num_classes=max(num_response_classes, 2),
        )
    treatment = None
    if all(it.treatment is not None for it in items):
        treatment = torch.tensor([it.treatment for it in items], dtype=torch.long)
    offset = None
    if all(it.offset is not None for it in items):
        offset = torch.tensor([it.offset for it in items], dtype=torch.float32)
    return Batch(
        streams=streams, patient_ids=tuple(it.patient_id for it in items), survival=survival, response=response,
        treatment=treatment, offset=offset,
    )


def pin_batch(batch: Batch) -> Batch:
    """``batch`` with every tensor in page-locked (pinned) memory (:meth:`Batch.pin_memory`), so ``batch.to("cuda")``
    copies asynchronously while the GPU computes; ``batch`` itself without a CUDA device (nothing to pin for)."""
    if not torch.cuda.is_available():
        return batch
    return batch.pin_memory()


def cuda_loader_kwargs(num_workers: int, *, persistent: bool = True) -> dict[str, object]:
    """DataLoader options that keep a GPU fed: pinned host memory (see :meth:`Batch.pin_memory`) when a CUDA device
    is present, worker processes that prefetch and, with ``persistent``, stay alive between epochs; plain in-process
    loading otherwise.

    A persistent worker keeps the copy of the dataset it started with, so it never sees a later
    :meth:`PatientDataset.set_epoch` (the per-epoch patch sample): training passes ``persistent=False``."""
    cuda = torch.cuda.is_available()
    out: dict[str, object] = {"num_workers": num_workers, "pin_memory": cuda}
    if num_workers > 0:
        out.update(persistent_workers=persistent, prefetch_factor=4 if cuda else 2)
    return out


class Collator:
    """Picklable collate function for DataLoader workers."""

    def __init__(self, num_response_classes: int = 2, time_unit: str = "days") -> None:
        self.num_response_classes = num_response_classes
        self.time_unit = time_unit

    def __call__(self, items: Sequence[PatientItem]) -> Batch:
        return collate_patients(items, num_response_classes=self.num_response_classes, time_unit=self.time_unit)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of patients with similar bag sizes (less padding), shuffled per epoch with a fixed seed.

    Indices are shuffled, cut into windows of ``batch_size * bucket_factor``, sorted by size inside each window and
    cut into batches; the batch order is then shuffled. Deterministic for (seed, epoch).
    """

    def __init__(
        self, sizes: Sequence[int], batch_size: int, *, shuffle: bool = True, seed: int = 0, bucket_factor: int = 8,
        drop_last: bool = False,
    ) -> None:
        self.sizes = list(sizes)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_factor = bucket_factor
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n = len(self.sizes)
        rng = np.random.default_rng([self.seed, self.epoch])
        idx = rng.permutation(n) if self.shuffle else np.arange(n)
        window = self.batch_size * self.bucket_factor
        batches: list[list[int]] = []
        for s in range(0, n, window):
            chunk = sorted(idx[s : s + window].tolist(), key=lambda i: self.sizes[i])
            for b in range(0, len(chunk), self.batch_size):
                part = chunk[b : b + self.batch_size]
                if len(part) < self.batch_size and self.drop_last:
                    continue
                batches.append(part)
        if self.shuffle:
            order = rng.permutation(len(batches))
            batches = [batches[i] for i in order]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())
