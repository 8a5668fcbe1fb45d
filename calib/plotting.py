"""One look for every figure: consistent colours per calibration source across the book."""
from __future__ import annotations

# The paper's corpora and their world counterparts share a colour.
SOURCE_COLOURS = {
    "dclm": "#1b9e77", "world/pretrain": "#1b9e77",
    "c4": "#d95f02", "world/web": "#d95f02",
    "slimpajama": "#7570b3", "world/mixed": "#7570b3",
    "wikipedia": "#e7298a", "world/encyclopedia": "#e7298a",
    "alpaca": "#66a61e", "world/instructions": "#66a61e",
    "synthetic": "#e6ab02", "magnitude": "#666666",
}


def source_colour(name: str) -> str:
    key = name.lower()
    if key.startswith("syn") or key.endswith("+syn"):
        return SOURCE_COLOURS["synthetic"]
    return SOURCE_COLOURS.get(key, "#a6761d")


def setup() -> None:
    """Figure style, and quiet libraries: notebooks render as book pages."""
    import logging

    import matplotlib
    import matplotlib.pyplot as plt
    import transformers
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    for name in ("lm-eval", "lm_eval", "calib.filters"):  # calib.filters: "texts cut to the context" notes
        logging.getLogger(name).setLevel(logging.ERROR)
    matplotlib.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
                                "axes.spines.top": False, "axes.spines.right": False})
    plt.rcParams["savefig.bbox"] = "tight"
