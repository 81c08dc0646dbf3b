"""The seed spread: each metric's values over seeds of the same params and data, and their
standard deviation, in ``experiments/spread.json`` (``toonvae.report.SPREAD``). ``python -m toonvae.report --compare``
reads it to tell noise from change; ``python -m benchmarks.seed_spread`` measures it.

A file is ``{"commit", "seeds", "commits", "values": {dataset: {metric: [one per seed]}},
"spread": {dataset: {metric: stdev}}}``; seed 0's values are the committed metrics of
``commit``, so a file only grows with seeds that measured the same results.
"""

from __future__ import annotations

import statistics

from toonvae.errors import ToonvaeError


def spread(values: dict[str, dict[str, list]]) -> dict[str, dict[str, float]]:
    """{dataset: {metric: the sample standard deviation (n - 1)}} where there are two or
    more numeric values."""
    return {name: {key: statistics.stdev(v) for key, v in metrics.items()
                   if len(v) > 1 and all(isinstance(x, (int, float)) for x in v)}
            for name, metrics in values.items()}


def check_addition(earlier: dict, where, seeds: list[int], committed: dict[str, dict[str, list]],
                   head: str) -> None:
    """Refuse, in one line, to add ``seeds`` to the ``earlier`` file at ``where`` unless it
    holds other seeds of the same datasets and its seed-0 values are ``committed``'s (the
    metrics of ``head``, one value per metric)."""
    if set(seeds) & set(earlier["seeds"]):
        raise ToonvaeError(f"{where} has seeds {earlier['seeds']} already")
    if sorted(earlier["values"]) != sorted(committed):
        held = sorted(earlier["values"])
        raise ToonvaeError(f"{where} holds datasets {', '.join(held)}; add to it with "
                           f"--datasets {','.join(held)}")
    if {n: {k: v[:1] for k, v in m.items()} for n, m in earlier["values"].items()} != committed:
        raise ToonvaeError(f"{where}: its seed-0 values are not {head}'s committed metrics, "
                           "so its seeds measured other results; run without --add")


def record(head: str, seeds: list[int], values: dict, earlier: dict | None = None,
           base_seed: int = 0) -> dict:
    """The file's content after ``seeds`` (run at ``head``) gave ``values``, which start
    with the committed run's (``base_seed``) or the earlier file's values."""
    commits = {str(seed): head for seed in seeds}
    before = [base_seed]
    if earlier:
        commits = {**earlier.get("commits", {str(s): earlier["commit"]
                                             for s in earlier["seeds"][1:]}), **commits}
        before = earlier["seeds"]
    return {"commit": head, "seeds": [*before, *seeds], "commits": commits, "values": values,
            "spread": spread(values)}
