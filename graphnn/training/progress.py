"""The training run's progress bar (tqdm), or a silent stand-in with the same methods."""
from __future__ import annotations


class _NoBar:
    active = False

    def update(self, n=1):
        pass

    def set_postfix(self, *a, **k):
        pass

    def close(self):
        pass


def progress_bar(total, unit, show):
    """A tqdm bar of ``total`` ``unit``s, or one that shows nothing (``show`` false)."""
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit=unit, dynamic_ncols=True, leave=True)
    bar.active = True
    return bar
