# ruff: noqa: E402  (a notebook: each cell imports what it uses)
"""Your own data, end to end, as a notebook would run it (each ``# %%`` is a cell; docs/own-data.md explains it).

    python docs/examples/own_data_walkthrough.py [OUT_DIR]        # default runs/own_data; ~1-2 min on 2 CPU cores

own files -> validate -> cross-validate -> train -> score 10 new patients without outcomes -> explanation table.
Only step 0 makes data: it stands in for your export (one CSV of patients, outcomes and clinical variables, as
cBioPortal writes it, and an expression matrix). Everything after it is what you would write for your own files:
two small YAML files and library calls, no glue code.
"""

# %% 0. A stand-in for your export (replace this cell with your files)
import sys
from pathlib import Path

import pandas as pd

from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/own_data")
OUT.mkdir(parents=True, exist_ok=True)
export = Path(generate_synthetic_cohort(OUT / "export", SyntheticConfig(
    patients=70, seed=7, patches_per_slide=8, embed_dim=8, n_genes=60, n_pathways=6), overwrite=True)).parent
table = pd.read_csv(export / "clinical.csv").merge(pd.read_parquet(export / "outcomes.parquet"), on="patient_id")
table["OS_MONTHS"] = (table["time"] / 30.44).round(1)
table["OS_STATUS"] = table["event"].map({True: "1:DECEASED", False: "0:LIVING"})  # cBioPortal's coding
columns = ["patient_id", "age", "sex", "stage", "grade"]
table[columns + ["OS_MONTHS", "OS_STATUS"]].iloc[:60].to_csv(OUT / "patients.csv", index=False)
table[columns].iloc[60:].to_csv(OUT / "new_patients.csv", index=False)  # 10 new patients: no outcome columns

# %% 1. Describe your files: a manifest (one table is both the patient table and the clinical table)
MANIFEST = """\
version: 1
name: my-cohort
patients: {{path: {table}, id: patient_id, time: OS_MONTHS, event: OS_STATUS, time_unit: months}}
modalities:
  genomics: {{type: omics, expression: export/omics/expression.h5ad}}
  clinical: {{type: clinical, path: {table}, id: patient_id, categorical: [sex, stage, grade], numeric: [age]}}
"""
(OUT / "cohort.yaml").write_text(MANIFEST.format(table="patients.csv"))
(OUT / "new_patients.yaml").write_text(MANIFEST.format(table="new_patients.csv"))

# %% 2. ... and an experiment: modalities, a small model, 3-fold CV against two baselines
(OUT / "experiment.yaml").write_text(f"""\
name: my-first-study
task: survival
data: {{layout: manifest, manifest: {OUT / "cohort.yaml"}}}
adapters:
  genomics: {{tokens: pathways, gene_sets: {export / "omics" / "pathways.gmt"}}}
  clinical: {{}}
model: {{d_model: 16, depth: 1, num_heads: 2, num_latents: 4, num_bins: 4}}
training: {{epochs: 3, batch_size: 16, patience: 3}}
evaluation: {{folds: 3, baselines: [coxph_clinical, coxnet], bootstrap: 50, ablations: false}}
""")

# %% 3. Validate: every problem at once, naming file, patient and field (the same as `multimodal validate`)
from multimodal.cli.main import main

assert main(["validate", str(OUT / "cohort.yaml")]) == 0
assert main(["validate", str(OUT / "new_patients.yaml"), "--for-scoring"]) == 0  # no outcomes needed

# %% 4. Cross-validate: our model and the baselines on the same folds; the results as DataFrames
from multimodal.api import run_cv

study = run_cv(OUT / "experiment.yaml", OUT / "cv", overwrite=True, progress=print)
summary = study.summary_frame()  # method x metric: mean, std, 95% CI (bootstrap over patients)
print(summary.pivot(index="method", columns="metric", values="mean")[["c_index", "ibs"]].round(3))
per_fold = study.to_frame()  # method x fold x metric
summary.to_csv(OUT / "cv_summary.csv", index=False)

# %% 5. Train on every patient and save the pipeline
from multimodal.api import train_pipeline

pipeline = train_pipeline(OUT / "experiment.yaml", OUT / "pipeline", overwrite=True, progress=print)

# %% 6. Score the 10 new patients (their table has no outcome columns): survival at 12 and 24 months, risk
from multimodal.api import predict_to_file

predict_to_file(pipeline, OUT / "new_patients.yaml", OUT / "scores.csv", times=[12, 24])
scores = pd.read_csv(OUT / "scores.csv")
print(scores.head())

# %% 7. Why: a patient x feature attribution table and a beeswarm summary plot for the new patients
from multimodal.cohort_explain import explain_cohort

paths = explain_cohort(pipeline, OUT / "new_patients.yaml", OUT / "explained", overwrite=True)
attributions = pd.read_parquet(paths["attributions"]).set_index("patient_id")
print(attributions.iloc[:, :5].round(3))
print(f"plot: {paths['plot']}")
