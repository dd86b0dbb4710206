"""Classical baselines: real TCGA-BLCA fold 0, a synthetic problem with known signal, leakage and protocol checks."""

from __future__ import annotations

import sys
import time as clock
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

if str(Path(__file__).parent) not in sys.path:  # also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))

from pooled_cohorts import small_synthetic  # noqa: E402

from multimodal.baselines import (  # noqa: E402
    RESPONSE_BASELINES,
    SURVIVAL_BASELINES,
    TabularPreprocessor,
    create_baseline,
    list_baselines,
    make_tabular,
)
from multimodal.cohorts import ClinicalSource, Cohort, OmicsSource  # noqa: E402
from multimodal.errors import ConfigError, InputError  # noqa: E402
from multimodal.metrics import auroc, harrell_c  # noqa: E402
from multimodal.mil_baseline import MILInputs  # noqa: E402
from multimodal.pooled import PooledFeatures, PooledFeaturesConfig  # noqa: E402

FAST = {"rsf": {"n_estimators": 60}, "random_forest": {"n_estimators": 100}, "gbsa": {"n_estimators": 100},
        "gradient_boosting": {"max_iter": 100}, "attention_mil": {"epochs": 6, "patience": 3}}
#: Baselines fed a feature table (attention_mil needs the cohort's patches: fit_cohort / MILInputs).
TABULAR_SURVIVAL = sorted(n for n in SURVIVAL_BASELINES if n != "attention_mil")
TABULAR_RESPONSE = sorted(n for n in RESPONSE_BASELINES if n != "attention_mil")


def _synthetic(n: int = 240, seed: int = 0):
    """Clinical (age, stage) + genomics (20 genes, 2 of them causal): hazard = exp(lp)."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    age = rng.normal(60, 10, n)
    stage = rng.choice(["I", "II", "III"], n)
    genes = rng.normal(size=(n, 20))
    lp = 0.05 * (age - 60) + np.select([stage == "III", stage == "II"], [1.0, 0.5], 0.0) + genes[:, 0] - genes[:, 1]
    t = rng.exponential(np.exp(-lp))
    c = rng.exponential(2.0, n)
    clinical = pd.DataFrame({"age": age, "stage": pd.Categorical(stage)}, index=ids)
    wide = pd.DataFrame(genes, index=ids, columns=[f"G{j}_rnaseq" for j in range(20)])
    patients = pd.DataFrame({"time": np.minimum(t, c), "event": t <= c}, index=ids)
    cohort = Cohort(
        name="synthetic",
        patients=patients,
        modalities={
            "clinical": ClinicalSource(table=clinical, categorical=("stage",), numeric=("age",)),
            "genomics": OmicsSource(wide=wide, available=frozenset(ids)),
        },
    )
    return cohort, lp


@pytest.fixture(scope="module")
def synthetic():
    cohort, lp = _synthetic()
    ids = cohort.patient_ids
    return cohort, make_tabular(cohort, ids), lp, ids[:160], ids[160:]


# ---- real data -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blca(shared_data):
    from multimodal.cohorts.tcga import load_tcga_cohort

    co = load_tcga_cohort(shared_data, "blca")
    fold = co.splits[0]
    X = make_tabular(co, co.patient_ids)
    return co, X, list(fold.train), list(fold.val)


@pytest.mark.parametrize("name", TABULAR_SURVIVAL)
def test_survival_baselines_on_blca_fold0(blca, name):
    co, X, train, val = blca
    tt, te = co.survival_arrays(train)
    vt, ve = co.survival_arrays(val)
    start = clock.perf_counter()
    model = create_baseline(name).fit(X.loc[train], tt, te)
    risk = model.predict_risk(X.loc[val])
    elapsed = clock.perf_counter() - start
    assert risk.shape == (len(val),) and np.isfinite(risk).all()
    assert 0.5 < harrell_c(vt, ve, risk) < 0.8
    assert elapsed < 30
    grid = np.quantile(vt[ve], [0.2, 0.5, 0.8])
    surv = model.predict_survival(X.loc[val], grid)
    assert surv.shape == (len(val), 3)
    assert ((surv >= 0) & (surv <= 1)).all() and (np.diff(surv, axis=1) <= 1e-12).all()


def test_coxph_clinical_uses_clinical_columns_only(blca):
    co, X, train, _ = blca
    tt, te = co.survival_arrays(train)
    model = create_baseline("coxph_clinical").fit(X.loc[train], tt, te)
    # BLCA: age and sex; oncotree_code is constant (BLCA) and dropped as zero-variance
    assert model.preprocessor_.feature_names_ == ["clinical:age", "clinical:is_female=0", "clinical:is_female=1"]


# ---- synthetic signal ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TABULAR_SURVIVAL)
def test_survival_baselines_find_known_signal(synthetic, name):
    cohort, X, lp, train, test = synthetic
    tt, te = cohort.survival_arrays(train)
    vt, ve = cohort.survival_arrays(test)
    model = create_baseline(name, **FAST.get(name, {})).fit(X.loc[train], tt, te)
    risk = model.predict_risk(X.loc[test])
    test_lp = lp[160:]
    oracle = harrell_c(vt, ve, test_lp)
    c = harrell_c(vt, ve, risk)
    if name == "coxph_clinical":  # sees age and stage only, not the two causal genes
        assert c > 0.55
    else:
        assert c > 0.65 and c > oracle - 0.1
    # direction: higher predicted risk goes with the true (worse) linear predictor
    assert np.corrcoef(risk, test_lp)[0, 1] > 0.2
    # and with a shorter predicted survival
    s = model.predict_survival(X.loc[test], [float(np.median(vt))])[:, 0]
    assert np.corrcoef(risk, s)[0, 1] < -0.5


@pytest.mark.parametrize("name", TABULAR_RESPONSE)
def test_response_baselines_find_known_signal(synthetic, name):
    cohort, X, lp, train, test = synthetic
    rng = np.random.default_rng(1)
    y = (rng.random(len(lp)) < 1 / (1 + np.exp(-2 * (lp - lp.mean())))).astype(int)
    y_train, y_test = y[:160], y[160:]
    model = create_baseline(name, **FAST.get(name, {})).fit(X.loc[train], y_train)
    proba = model.predict_proba(X.loc[test])
    assert proba.shape == (len(test), 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert auroc(y_test, proba[:, 1]) > (0.6 if name == "logistic_clinical" else 0.7)


def test_coxnet_feature_cap_and_chosen_penalty(synthetic):
    cohort, X, lp, train, test = synthetic
    tt, te = cohort.survival_arrays(train)
    model = create_baseline("coxnet", max_features=6).fit(X.loc[train], tt, te)
    assert model.selected_ is not None and len(model.selected_) == 6
    assert model.alpha_ in model.estimator_.alphas_ and np.isfinite(model.cv_scores_).any()
    assert model.predict_risk(X.loc[test]).shape == (len(test),)
    assert model.predict_survival(X.loc[test], [0.1, 0.5]).shape == (len(test), 2)


# ---- leakage ---------------------------------------------------------------------------------------------------------
def test_poisoned_held_out_rows_change_nothing(synthetic):
    cohort, X, _, train, test = synthetic
    poisoned_ids = test[: len(test) // 2]
    clean_ids = test[len(test) // 2 :]
    clin = cohort.modalities["clinical"].table.copy()
    wide = cohort.modalities["genomics"].wide.copy()
    clin.loc[poisoned_ids, "age"] = 1e6
    clin["stage"] = clin["stage"].cat.add_categories(["IV-unseen"])
    clin.loc[poisoned_ids, "stage"] = "IV-unseen"
    wide.loc[poisoned_ids] = np.nan
    wide.loc[poisoned_ids[:5], "G3_rnaseq"] = -1e9
    bad = Cohort(
        name="poisoned",
        patients=cohort.patients,
        modalities={
            "clinical": ClinicalSource(table=clin, categorical=("stage",), numeric=("age",)),
            "genomics": OmicsSource(wide=wide, available=frozenset(cohort.patient_ids)),
        },
    )
    X_bad = make_tabular(bad, bad.patient_ids)
    tt, te = cohort.survival_arrays(train)
    for name in ("coxph_clinical", "coxnet", "rsf", "gbsa"):
        ref = create_baseline(name, **FAST.get(name, {})).fit(X.loc[train], tt, te)
        new = create_baseline(name, **FAST.get(name, {})).fit(X_bad.loc[train], tt, te)
        keep = train + clean_ids
        # exact up to the forest's multithreaded summation order (~1e-14)
        np.testing.assert_allclose(
            ref.predict_risk(X.loc[keep]), new.predict_risk(X_bad.loc[keep]), rtol=1e-12, err_msg=name
        )
        assert np.isfinite(new.predict_risk(X_bad.loc[poisoned_ids])).all()  # unseen category / NaN handled
    # a row's transform does not depend on the other rows it is batched with
    pre = TabularPreprocessor().fit(X.loc[train])
    alone = pre.transform(X.loc[clean_ids[:1]])
    mixed = pre.transform(X_bad.loc[[clean_ids[0], *poisoned_ids]]).iloc[:1]
    pd.testing.assert_frame_equal(alone, mixed)


# ---- preprocessing, registry, feature tables -------------------------------------------------------------------------
def test_tabular_preprocessor():
    train = pd.DataFrame(
        {
            "x": [1.0, 2.0, np.nan, 4.0, 3.0, 2.0],
            "const": [5.0] * 6,
            "cat": pd.Categorical(["a", "a", "b", None, "a", "rare"]),
            "empty": [np.nan] * 6,
        }
    )
    pre = TabularPreprocessor(min_category_count=1).fit(train)
    assert pre.feature_names_ == ["x", "cat=a", "cat=b", "cat=rare"]
    z = pre.transform(train)
    assert np.allclose(z.mean(), 0) and np.allclose(z.std(ddof=0), 1)
    assert z.loc[2, "x"] == z.loc[1, "x"]  # NaN imputed with the median (2.0)
    assert z.loc[3, "cat=a"] == z.loc[0, "cat=a"]  # missing category imputed with the most frequent ("a")
    new = pd.DataFrame({"x": [2.0], "const": [0.0], "cat": ["zzz"], "empty": [1.0]})
    zn = pre.transform(new)
    expected_zero = (0 - pre.mean_[1:]) / pre.std_[1:]
    assert np.allclose(zn.iloc[0, 1:].to_numpy(), expected_zero)  # unseen category -> all-zero indicators
    assert TabularPreprocessor(min_category_count=2).fit(train).feature_names_ == ["x", "cat=a"]
    with pytest.raises(InputError, match="missing"):
        pre.transform(train.drop(columns="x"))
    with pytest.raises(InputError, match="constant"):
        TabularPreprocessor().fit(train[["const", "empty"]])


def test_registry_and_errors(synthetic):
    assert list_baselines("survival") == ["attention_mil", "coxnet", "coxph_clinical", "gbsa", "rsf"]
    assert list_baselines("response") == ["attention_mil", "enet_logistic", "gradient_boosting", "logistic_clinical",
                                          "random_forest"]
    assert list_baselines().count("attention_mil") == 1  # one model serves both tasks
    with pytest.raises(ConfigError, match="did you mean 'coxnet'"):
        create_baseline("coxnett")
    with pytest.raises(ConfigError, match="n_estimator"):
        create_baseline("rsf", n_estimator=10)
    cohort, X, _, train, _ = synthetic
    tt, te = cohort.survival_arrays(train)
    genes_only = X.loc[train, [c for c in X.columns if c.startswith("genomics:")]]
    with pytest.raises(InputError, match="no columns of modality"):
        create_baseline("coxph_clinical").fit(genes_only, tt, te)
    with pytest.raises(InputError, match="censored"):
        create_baseline("coxph_clinical").fit(X.loc[train], tt, np.zeros(len(train), bool))


def test_make_tabular_from_omics_files(tmp_path):
    ids = ["A", "B", "C"]
    adata = ad.AnnData(
        X=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32),
        obs=pd.DataFrame(index=["A", "B", "C"]),
        var=pd.DataFrame(index=["TP53", "KRAS"]),
    )
    adata.write_h5ad(tmp_path / "expr.h5ad")
    maf = pd.DataFrame(
        {
            "Hugo_Symbol": ["TP53", "KRAS", "TP53"],
            "Tumor_Sample_Barcode": ["A-01", "A-01", "B-01"],
            "Variant_Classification": ["Missense_Mutation", "Silent", "Silent"],
        }
    )
    maf.to_csv(tmp_path / "calls.maf", sep="\t", index=False)
    (tmp_path / "samples.txt").write_text("A-01\nB-01\n")
    src = OmicsSource(
        expression=tmp_path / "expr.h5ad",
        mutations=tmp_path / "calls.maf",
        mutation_samples=tmp_path / "samples.txt",
        mutation_patient_pattern=r"^(?P<patient>[A-Z]+)-\d+$",
        available=frozenset(ids),
    )
    patients = pd.DataFrame({"time": [1.0, 2.0, 3.0], "event": [True, False, True]}, index=ids)
    cohort = Cohort(name="files", patients=patients, modalities={"genomics": src})
    with pytest.warns(UserWarning, match="log-scale"):  # X without layers["counts"] is taken as log expression
        X = make_tabular(cohort, ["C", "B", "A"], modalities=("genomics",))
    assert list(X.index) == ["C", "B", "A"]
    assert X.loc["B", "genomics:KRAS_rnaseq"] == 4.0
    # only non-silent calls count; B was sequenced without a non-silent call -> 0; C was not sequenced -> missing
    assert X.loc["A", "genomics:TP53_mut"] == 1.0
    assert X.loc["B", "genomics:TP53_mut"] == 0.0
    assert np.isnan(X.loc["C", "genomics:TP53_mut"])
    assert "genomics:KRAS_mut" not in X.columns
    with pytest.raises(InputError, match="no modality 'clinical'"):
        make_tabular(cohort, ids)
    with pytest.raises(InputError, match="not in cohort"):
        make_tabular(cohort, ["Z"], modalities=("genomics",))


# ---- the contract of every registered baseline -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def every_modality(tmp_path_factory):
    """A small synthetic cohort with slides, genomics, EHR and clinical, and its pooled features (train-fitted)."""
    cohort = small_synthetic(tmp_path_factory.mktemp("contract") / "syn", patients=60, seed=4)
    ids = cohort.patient_ids
    train, test = ids[:42], ids[42:]
    pooled = PooledFeatures(PooledFeaturesConfig(gene_sets="omics/pathways.gmt", pca_components=4, clusters=4))
    pooled.fit(cohort, train)
    return cohort, pooled, train, test, pooled.transform(cohort, train), pooled.transform(cohort, test)


def _fit(name, every_modality, task):
    """(model, test inputs, bad test inputs) after fitting ``name`` on the training patients."""
    cohort, pooled, train, test, x_tr, x_te = every_modality
    model = create_baseline(name, **FAST.get(name, {}))
    clinical = [c for c in x_te.columns if c.startswith("clinical:")]
    if hasattr(model, "fit_cohort"):
        model.fit_cohort(cohort, train, task=task, pooled=pooled, table=x_tr)
        X = model.inputs(cohort, test, table=x_te)
        return model, X, MILInputs(X.patient_ids, X.bags, X.table.drop(columns=clinical))
    if task == "survival":
        model.fit(x_tr, *cohort.survival_arrays(train))
    else:
        model.fit(x_tr, cohort.patients.loc[train, "response"].astype(int).to_numpy())
    return model, x_te, x_te.drop(columns=clinical)


@pytest.mark.parametrize("name", sorted(SURVIVAL_BASELINES))
def test_every_survival_baseline_honours_the_contract(every_modality, name):
    cohort, _, train, test, x_tr, _ = every_modality
    model, X, bad = _fit(name, every_modality, "survival")
    risk = model.predict_risk(X)
    assert risk.shape == (len(test),) and np.isfinite(risk).all()
    t, e = cohort.survival_arrays(test)
    grid = np.quantile(t, [0.1, 0.3, 0.5, 0.7, 0.9])
    surv = model.predict_survival(X, grid)
    assert surv.shape == (len(test), len(grid)) and np.isfinite(surv).all()
    assert ((surv >= 0) & (surv <= 1)).all() and (np.diff(surv, axis=1) <= 1e-12).all()
    with pytest.raises(InputError):  # columns / modalities seen in training are missing
        model.predict_risk(bad)
    fresh = create_baseline(name, **FAST.get(name, {}))
    mil = hasattr(fresh, "fit_cohort")
    Xf, n = (X, len(test)) if mil else (x_tr, len(train))
    with pytest.raises(InputError):  # not the input type the baseline reads
        fresh.fit(x_tr if mil else x_tr.to_numpy(), *cohort.survival_arrays(train))
    with pytest.raises(InputError, match="shape"):
        fresh.fit(Xf, np.ones(n + 1), np.ones(n + 1, bool))
    with pytest.raises(InputError, match="censored"):
        fresh.fit(Xf, np.ones(n), np.zeros(n, bool))


@pytest.mark.parametrize("name", sorted(RESPONSE_BASELINES))
def test_every_response_baseline_honours_the_contract(every_modality, name):
    cohort, _, train, test, x_tr, _ = every_modality
    model, X, bad = _fit(name, every_modality, "response")
    proba = model.predict_proba(X)
    assert proba.shape == (len(test), 2) and np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all() and np.allclose(proba.sum(axis=1), 1.0)
    with pytest.raises(InputError):
        model.predict_proba(bad)
    fresh = create_baseline(name, **FAST.get(name, {}))
    Xf, n = (X, len(test)) if hasattr(fresh, "fit_cohort") else (x_tr, len(train))
    with pytest.raises(InputError, match="class"):
        fresh.fit(Xf, np.zeros(n, int))


def test_study_feeds_every_modality_to_the_baselines(every_modality, monkeypatch):
    from multimodal.experiment import load_experiment
    from multimodal.study import Study

    cohort = every_modality[0]
    repo = Path(__file__).resolve().parents[2]
    cfg = load_experiment(repo / "configs" / "demo.yaml", ["task=survival", "evaluation.folds=3",
                                                            "evaluation.bootstrap=0"])
    st = Study(cfg, cohort=cohort)
    fold = st.folds()[0]
    fits = []
    original = PooledFeatures.fit
    monkeypatch.setattr(PooledFeatures, "fit", lambda self, *a, **k: fits.append(1) or original(self, *a, **k))
    overrides = {"rsf": {"n_estimators": 30}, "gbsa": {"n_estimators": 30}, "attention_mil": {"epochs": 4}}
    import multimodal.baselines as b

    monkeypatch.setattr(b, "create_baseline", lambda n, **kw: b.SURVIVAL_BASELINES[n](**overrides.get(n, {})))
    results = {}
    for name in ("coxph_clinical", "gbsa", "attention_mil"):
        res = st._fit_baseline(name, fold)
        assert list(res.predictions["patient_id"]) == list(fold.val)
        assert np.isfinite(res.predictions["risk"]).all()
        results[name] = res
    assert len(fits) == 1  # fitted once per fold on its training patients, reused by every baseline
    pooled, x_tr, _ = st._pooled_cache[1]
    assert set(pooled.parts_) == {"pathology", "genomics", "ehr", "clinical"}
    assert any(c.startswith("genomics:set:") for c in x_tr.columns)  # the genomics adapter's gene sets
    clinical_only = results["coxph_clinical"].metrics["_model"].preprocessor_.feature_names_
    assert clinical_only and all(n.startswith("clinical:") for n in clinical_only)
    metrics = st._score(results["attention_mil"], fold)  # the study scores the MIL model like the others
    assert 0.0 <= metrics["c_index"] <= 1.0 and metrics.get("ibs") is not None


def test_study_pools_only_what_its_baselines_select(every_modality):
    from multimodal.experiment import load_experiment
    from multimodal.study import Study

    cohort = every_modality[0]
    repo = Path(__file__).resolve().parents[2]
    sets = ["task=survival", "evaluation.folds=3", "evaluation.baselines=[coxph_clinical]"]
    st = Study(load_experiment(repo / "configs" / "demo.yaml", sets), cohort=cohort)
    fold = st.folds()[0]
    st._fit_baseline("coxph_clinical", fold)
    assert set(st._pooled_cache[1][0].parts_) == {"clinical"}  # no slide is read for a clinical-only study
    no_clinical = cohort.subset(cohort.patient_ids)
    del no_clinical.modalities["clinical"]
    st = Study(load_experiment(repo / "configs" / "demo.yaml", sets), cohort=no_clinical)
    with pytest.raises(InputError, match="needs modality \\['clinical'\\]") as err:
        st._fit_baseline("coxph_clinical", fold)
    assert err.value.problems[0].field == "evaluation.baselines"


def test_default_baselines_pass_the_config_checks():
    from multimodal.api import check_experiment
    from multimodal.experiment import EvaluationConfig, load_experiment

    assert set(EvaluationConfig().baselines) == {"coxph_clinical", "coxnet", "rsf", "gbsa", "attention_mil"}
    repo = Path(__file__).resolve().parents[2]
    for path in sorted((repo / "configs").glob("*.yaml")):
        cfg = load_experiment(path)
        check_experiment(cfg, path)  # every name is a baseline of the config's task
        assert "attention_mil" in cfg.evaluation.baselines
    bad = load_experiment(repo / "configs" / "tcga_response_blca.yaml", ["evaluation.baselines=[gbsa]"])
    with pytest.raises(ConfigError, match="unknown response baseline 'gbsa'"):
        check_experiment(bad)
