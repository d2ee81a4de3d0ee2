"""Progress bars that read well in JupyterLab, a terminal and a papermill log alike."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

T = TypeVar("T")

#: Set by ``python -m aims_kit run`` so executed notebooks hold a few text lines, not widget floods.
PLAIN_ENV = "AIMS_KIT_PLAIN_PROGRESS"


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """A tqdm bar: a widget in JupyterLab, sparse plain text (every 30 s) under the runner.

    An empty ``desc`` means no bar (timed single requests would otherwise print one each).
    """
    if not desc:
        return iterable
    if os.environ.get(PLAIN_ENV):
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, mininterval=30, ascii=True)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit)
