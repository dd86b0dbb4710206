"""Gene-level reading of overlapping gene-set tokens (multimodal.explain.genes)."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.adapters.genomics import SET_SCORE
from multimodal.explain.genes import gene_effects, set_scores, shares_members

# token A = {G1, G2} with its set score, token B = {G2, G3} plus G1's mutation; padding ("") at the end of B's row
MEMBERS = (("G1:rna", "G2:rna", SET_SCORE), ("G2:rna", "G3:rna", "G1:mut", ""))
SCORES = np.array([[0.1, 0.0, 0.05, 0.0],    # the model read G2 only through B's copy
                   [0.8, -0.2, 0.3, 9.0]])  # the padding column's value must never count


def test_a_gene_counts_once_with_every_copy_summed():
    eff = gene_effects(SCORES, MEMBERS)
    assert eff == pytest.approx({"G1:rna": 0.1, "G2:rna": 0.8, "G3:rna": -0.2, "G1:mut": 0.3})
    assert gene_effects(SCORES, MEMBERS, datatypes=("mut",)) == pytest.approx({"G1:mut": 0.3})


def test_a_set_is_credited_for_its_genes_wherever_the_model_read_them():
    # A: G1 0.1 + G2 0.8 (read through B's copy) + A's own set score 0.05; B: G2 0.8 + G3 -0.2 + G1:mut 0.3
    assert set_scores(SCORES, MEMBERS) == pytest.approx([0.95, 0.9])
    # expression only: B loses G1's mutation, A keeps its set score (an expression score)
    assert set_scores(SCORES, MEMBERS, datatypes=("rna",)) == pytest.approx([0.95, 0.6])
    assert set_scores(SCORES, MEMBERS, datatypes=("mut",)) == pytest.approx([0.0, 0.3])
    # ranked by their own copies, A (0.15) would fall far behind B (0.9)
    assert SCORES[0, :3].sum() == pytest.approx(0.15)


def test_disjoint_sets_keep_their_own_attribution():
    members = (("G1:rna", "G2:rna"), ("G3:rna", "G4:rna"))
    ms = np.array([[0.2, -0.1], [0.4, 0.3]])
    assert not shares_members(members)
    assert set_scores(ms, members) == pytest.approx(ms.sum(axis=1))
    assert shares_members(MEMBERS)
    assert not shares_members(((SET_SCORE, "G1:rna"), (SET_SCORE, "G2:rna")))  # the set score is each token's own
