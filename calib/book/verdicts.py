"""The chapters' verdicts: whether each of the paper's findings holds in the world."""
from __future__ import annotations

from calib.errors import check_choice

VERDICTS = {"finding": {True: "Reproduced in the world.", False: "Not reproduced in the world.",
                        None: "Partly reproduced in the world."},
            "question": {True: "Yes, in the world.", False: "No, in the world.", None: "Unclear in the world."}}


def verdict(holds: bool | None, text: str, kind: str = "finding") -> "IPython.display.Markdown":
    """The chapter's one-sentence answer, rendered in bold: whether a paper's finding
    holds (``kind="finding"``), or the answer to an open question (``"question"``)."""
    from IPython.display import Markdown
    check_choice("verdict kind", kind, VERDICTS)
    return Markdown(f"**{VERDICTS[kind][holds]}** {text}")


def spearman(x, y, permutations: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Spearman's rho and a two-sided permutation p-value."""
    import numpy as np
    import pandas as pd
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    rho = float(np.corrcoef(rx, ry)[0, 1])
    rng = np.random.default_rng(seed)
    null = np.array([np.corrcoef(rx, rng.permutation(ry))[0, 1] for _ in range(permutations)])
    return rho, float((np.abs(null) >= abs(rho) - 1e-12).mean())
