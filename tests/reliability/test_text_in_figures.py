"""Labels that come from data (slide ids, arm names, codes) are printed as written, never parsed as mathtext."""

from __future__ import annotations

import pytest

from multimodal.report import figures

#: each would make matplotlib's mathtext parser fail (or silently typeset) if labels were parsed as math
ODD = ["$\\undefinedcommand{$ arm", "arm $x^2$", "a$b", "$$"]


@pytest.mark.parametrize("label", ODD)
def test_every_report_figure_takes_dollar_signs_in_data_labels(label: str) -> None:
    assert figures.contributions({label: 0.3, "genomics": -0.1}).startswith("data:image/png;base64,")
    assert figures.heatmap({"x": [0, 1], "y": [0, 1], "value": [0.2, -0.1], "slide_id": label}).startswith("data:")
    bars = figures.response_bars([{"arm": label, "probability": 0.4, "lower": 0.3, "upper": 0.5},
                                  {"arm": "standard", "probability": 0.2, "lower": 0.1, "upper": 0.3}])
    assert bars.startswith("data:image/png;base64,")
    assert figures.plt.rcParams["text.parse_math"] is False
