"""One reader per input format, used alike by loading, ``validate`` and the adapters (issue 20).

* :mod:`~multimodal.cohorts.formats.tables`: CSV / TSV / parquet side tables; identifier columns read as text with no
  missing-value parsing (a patient may be called "NA").
* :mod:`~multimodal.cohorts.formats.slides`: patch-feature bags (TRIDENT / CLAM / STAMP h5, ``.pt``, ``.npy``,
  ``.safetensors``).
* :mod:`~multimodal.cohorts.formats.omics`: AnnData expression, MAF mutations, CNV and wide tables.
* :mod:`~multimodal.cohorts.formats.meds`: MEDS 0.4 data shards (schema from the parquet footer, one canonical scan).

A format read here decides validity once: what a reader refuses, ``validate`` reports and every model command refuses,
with the same message naming file, patient and field.
"""
