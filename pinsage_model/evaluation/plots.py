"""Evaluation plots (matplotlib, Agg backend): similarity histograms (paper Figure 4), hit-rate@K.

PNG bytes are deterministic for the same inputs: the file carries no creation time metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pinsage_model.io import atomic_path

_PNG_META = {"Software": None}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=_PNG_META)


def similarity_histogram(sims: np.ndarray, name: str, kurtosis: float, path: str | Path) -> None:
    """Density of cosine similarity over random item pairs for one method (paper Figure 4)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(np.asarray(sims), bins=100, range=(-1, 1), density=True, color="tab:blue", alpha=0.8)
    ax.set_xlabel("cosine similarity of random item pairs")
    ax.set_ylabel("density")
    ax.set_title(f"{name} (excess kurtosis {kurtosis:.2f})")
    fig.tight_layout()
    _save(fig, Path(path))
    plt.close(fig)


def similarity_overlay(spreads: dict[str, np.ndarray], path: str | Path) -> None:
    """All methods' similarity densities on one axis, as in the paper's Figure 4."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(-1, 1, 101)
    for name, sims in spreads.items():
        ax.hist(np.asarray(sims), bins=bins, density=True, histtype="step", label=name, linewidth=1.5)
    ax.set_xlabel("cosine similarity of random item pairs")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    _save(fig, Path(path))
    plt.close(fig)


def hit_rate_curve(ranks_by_method: dict[str, np.ndarray], max_k: int, path: str | Path) -> None:
    """hit-rate@K against K (log scale) for every method from its ranks."""
    plt = _pyplot()
    ks = np.unique(np.round(np.logspace(0, np.log10(max(max_k, 1)), 60)).astype(int))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in ranks_by_method.items():
        r = np.sort(np.asarray(r, dtype=np.float64))
        hits = np.searchsorted(r, ks, side="right") / max(len(r), 1)  # fraction of ranks <= K
        ax.plot(ks, hits, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("hit-rate@K")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, Path(path))
    plt.close(fig)
