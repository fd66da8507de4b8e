"""matplotlib on the Agg backend and PNG files written atomically, for every plot of the reports."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cpr_edge.fileio import atomic_path  # noqa: E402


def save_png(fig, path: Path) -> str:
    """Write ``fig`` to ``path`` (temp file + rename), close it, return the file name."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name
