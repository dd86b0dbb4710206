"""One reader per format (issue 20): loading, ``validate`` and the adapters read a file the same way.

Formats the readers used to disagree on: a dictionary-encoded MEDS ``code`` (loading refused what the EHR adapter
read) and a comma-separated MAF (loading read it, the genomics adapter did not).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from fixtures_cohort import TinyCohort

from multimodal.adapters.ehr import EHRAdapter
from multimodal.adapters.genomics import GenomicsAdapter
from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.formats.tables import read_delimited
from multimodal.cohorts.validate import validate_manifest


def test_dictionary_encoded_meds_code_is_read_by_all(tiny_cohort: TinyCohort) -> None:
    t = tiny_cohort.meds()
    i = t.schema.get_field_index("code")
    tiny_cohort.write_meds(t.set_column(i, "code", pc.dictionary_encode(t.column("code"))))
    assert pa.types.is_dictionary(tiny_cohort.meds().schema.field("code").type)
    report = validate_manifest(tiny_cohort.manifest_path)
    assert report.ok, [str(p) for p in report.problems]
    cohort = Cohort.from_manifest(tiny_cohort.manifest_path)
    stream = EHRAdapter().fit(cohort, list(cohort.patient_ids)).transform("P001")
    assert stream.num_tokens > 0


def test_a_comma_separated_maf_is_read_by_all(tiny_cohort: TinyCohort) -> None:
    maf = pd.read_csv(tiny_cohort.maf_path, sep="\t", comment="#")
    csv = tiny_cohort.root / "omics" / "mutations.csv"
    maf.to_csv(csv, index=False)
    tiny_cohort.edit_manifest(lambda m: m["modalities"]["genomics"].update(mutations="omics/mutations.csv"))
    report = validate_manifest(tiny_cohort.manifest_path)
    assert report.ok, [str(p) for p in report.problems]
    cohort = Cohort.from_manifest(tiny_cohort.manifest_path)
    adapter = GenomicsAdapter(tokens="genes", datatypes=("mut",)).fit(cohort, list(cohort.patient_ids))
    genes = {n for names in adapter.transform("P001").names for n in names}
    assert any("TP53" in g for g in genes), genes  # P001 carries a TP53 missense call


def test_identifier_columns_keep_names_like_missing_values(tmp_path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("id\tvalue\nNA\tNA\nnull\t1.5\nNone\t\n")
    df = read_delimited(path, "\t", [0])  # the first column, by position
    assert df["id"].tolist() == ["NA", "null", "None"]
    assert df["value"].isna().tolist() == [True, False, True]
