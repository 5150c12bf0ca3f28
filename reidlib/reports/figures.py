"""The reports' pictures of what a model does: retrieval grids and one anchor's selection.

- :func:`retrieval_grid`: queries and their nearest gallery images under the standard protocol;
- :func:`methods_retrieval_grid`: the same queries ranked under several methods;
- :func:`selection_figure`: one anchor's selected positives and hard negatives, row by setting;
- :func:`true_match_figure` and :func:`true_match_bars`: where the anchors' true matches sit
  (kept as positives, left alone, pushed away as negatives, beyond), with the cross-camera recall
  and the false negatives per anchor by camera: the gap between a rule and the supervised ceiling.

True matches are framed green, false ones red; labels are read only to draw the frames.
(Pictures of a dataset itself are :mod:`reidlib.data.sheets`.)
"""

from __future__ import annotations

from reidlib.data import ImageRecord, read_image
from reidlib.evaluation.protocol import protocol_ranking


def _framed(ax, path: str, title: str, colour: str) -> None:
    """Draw one image in ``ax``, titled and framed: black (the anchor / query) thin, others thick."""
    ax.imshow(read_image(path))
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(1 if colour == "black" else 4)


def retrieval_grid(query: dict, gallery: dict, distmat, query_rows: list[int], top: int = 10):
    """A matplotlib figure: each chosen query, then its ``top`` nearest gallery images under the
    standard protocol (same identity and camera removed), true matches framed green, false red.

    Args:
        query, gallery: dicts with ``paths``, ``pids`` and ``camids`` (as in ``features.npz``).
        distmat: (num_query, num_gallery) distances.
        query_rows: which queries to show.

    Returns:
        the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(query_rows), top + 1, figsize=(1.1 * (top + 1), 2.3 * len(query_rows)))
    axes = np.atleast_2d(axes)
    for row, q in enumerate(query_rows):
        (order,), _ = protocol_ranking(
            distmat[q : q + 1],
            query["pids"][q : q + 1],
            query["camids"][q : q + 1],
            gallery["pids"],
            gallery["camids"],
            top,
        )
        cells = [(query["paths"][q], None, f"query\nid {query['pids'][q]} c{query['camids'][q] + 1}")]
        cells += [
            (gallery["paths"][g], gallery["pids"][g] == query["pids"][q], f"{rank + 1}\nc{gallery['camids'][g] + 1}")
            for rank, g in enumerate(order)
        ]
        for ax, (path, correct, label) in zip(axes[row], cells):
            _framed(ax, str(path), label, "black" if correct is None else ("limegreen" if correct else "red"))
        for ax in axes[row][len(cells) :]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def selection_figure(records: list[ImageRecord], anchor: int, picks: dict[str, tuple], num_neg: int = 6):
    """One row per setting: the anchor, its selected positives, then its first hard negatives.

    Positives of the anchor's true identity are framed green, others red; negatives of the
    anchor's identity (false negatives) are framed red, true negatives grey. Labels are read only
    to draw the frames.

    Args:
        records: the training records, indexed like the memory slots.
        anchor: the anchor's slot.
        picks: ``{row title: (pos_idx (1+K,), neg_idx (M,))}`` with ``pos_idx[0] == anchor``.
        num_neg: negatives to show per row.

    Returns:
        the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    width = max(len(p) + min(num_neg, len(n)) for p, n in picks.values())
    fig, axes = plt.subplots(len(picks), width, figsize=(1.05 * width, 2.4 * len(picks)))
    axes = np.atleast_2d(axes)
    me = records[anchor]
    for row, (title, (pos, neg)) in enumerate(picks.items()):
        cells = [(int(pos[0]), "anchor", "black")]
        cells += [
            (int(j), f"pos {i + 1}", "limegreen" if records[j].pid == me.pid else "red") for i, j in enumerate(pos[1:])
        ]
        cells += [
            (int(j), f"neg {i + 1}", "red" if records[j].pid == me.pid else "0.6") for i, j in enumerate(neg[:num_neg])
        ]
        for ax, (slot, label, colour) in zip(axes[row], cells):
            _framed(ax, records[slot].path, f"{label}\nc{records[slot].camid + 1}", colour)
        for ax in axes[row][len(cells) :]:
            ax.axis("off")
        axes[row][0].set_ylabel(title, fontsize=9)
    fig.tight_layout()
    return fig


def methods_retrieval_grid(query: dict, gallery: dict, ranked: dict, first_match: dict | None = None):
    """The same queries under several methods: per query, one row per method (the query, then its
    ranked gallery images), true matches framed green, false red.

    Args:
        query, gallery: dicts with ``paths``, ``pids`` and ``camids`` (Q and G long).
        ranked: ``{method: (Q, T) gallery indices, nearest first}``, the protocol's junk removed
            (:func:`reidlib.evaluation.protocol.protocol_ranking`).
        first_match: ``{method: (Q,) rank of the first true match}`` (0: none), shown under its name.

    Returns:
        the matplotlib figure.
    """
    import textwrap

    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(ranked)
    top = max(r.shape[1] for r in ranked.values())
    num_q = len(query["pids"])
    fig, axes = plt.subplots(num_q * len(methods), top + 1, figsize=(1.1 * (top + 1), 2.2 * num_q * len(methods)))
    axes = np.atleast_2d(axes)
    for q in range(num_q):
        for m, method in enumerate(methods):
            row = axes[q * len(methods) + m]
            title = f"query {q + 1}: id {query['pids'][q]} c{query['camids'][q] + 1}"
            _framed(row[0], str(query["paths"][q]), title, "black")
            label = textwrap.fill(method, 18)
            if first_match is not None:
                rank = int(first_match[method][q])
                label += f"\n1st match: {rank if rank else 'none'}"
            row[0].set_ylabel(label, fontsize=8)
            for col, g in enumerate(ranked[method][q], start=1):
                colour = "limegreen" if gallery["pids"][g] == query["pids"][q] else "red"
                _framed(row[col], str(gallery["paths"][g]), f"{col}\nc{gallery['camids'][g] + 1}", colour)
            for ax in row[len(ranked[method][q]) + 1 :]:
                ax.axis("off")
    fig.tight_layout()
    return fig


PLACES = {  # the diagnostics' shares of the true matches, and how the figures name and colour them
    "true_kept": ("kept as positives", "tab:green"),
    "true_left_alone": ("left alone", "0.7"),
    "true_negative": ("pushed away as negatives", "tab:red"),
    "true_beyond": ("beyond the negatives", "0.45"),
}


def true_match_figure(rows: list[dict], title: str = ""):
    """Two panels over the epochs of one run (its ``metrics.jsonl`` rows): where the anchors' true
    matches sit, as stacked shares, and the cross-camera recall of the positives beside the false
    negatives per anchor, from the anchor's camera and from the others. Warm-up epochs (and rows
    written before these figures existed) are left out.

    Returns:
        the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("true_kept") is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    epochs = [r["epoch"] for r in rows]
    if rows:
        shares = [[100 * r[key] for r in rows] for key in PLACES]
        left.stackplot(
            epochs,
            *shares,
            labels=[name for name, _ in PLACES.values()],
            colors=[colour for _, colour in PLACES.values()],
            alpha=0.85,
        )
        right.plot(
            epochs,
            [100 * r["pos_cross_camera_recall"] for r in rows],
            marker="o",
            color="tab:blue",
            label="cross-camera recall of the positives (%)",
        )
        twin = right.twinx()
        twin.plot(
            epochs,
            [r["neg_false_same_camera_per_anchor"] for r in rows],
            marker="s",
            color="tab:red",
            label="false negatives per anchor, same camera",
        )
        twin.plot(
            epochs,
            [r["neg_false_other_camera_per_anchor"] for r in rows],
            marker="^",
            color="darkred",
            linestyle="--",
            label="false negatives per anchor, other cameras",
        )
        twin.set_ylabel("false negatives per anchor")
        handles = right.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        right.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
    left.set(xlabel="epoch", ylabel="% of the true matches", ylim=(0, 100), title="where the true matches sit")
    left.legend(fontsize=8, loc="lower left")
    right.set(xlabel="epoch", ylabel="%", ylim=(0, 100), title="cross-camera positives, false negatives")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def true_match_bars(last: dict[str, dict[str, float]], title: str = ""):
    """Where the true matches sit at the last epoch, one stacked bar per arm.

    Args:
        last: ``{arm: {true_kept, true_left_alone, true_negative, true_beyond}}`` (shares, e.g. the
            mean over seeds of each run's last epoch).

    Returns:
        the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    arms = list(last)
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.45 * len(arms)))
    left = [0.0] * len(arms)
    for key, (name, colour) in PLACES.items():
        widths = [100 * (last[arm].get(key) or 0.0) for arm in arms]
        ax.barh(arms, widths, left=left, color=colour, label=name)
        left = [a + b for a, b in zip(left, widths)]
    ax.invert_yaxis()
    ax.set(xlabel="% of the anchors' true matches (last epoch)", xlim=(0, 100), title=title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig
