"""Progress bars that read well in JupyterLab, a terminal and a papermill log alike."""

from __future__ import annotations

import os

#: Set by ``python -m aims_kit run`` so executed notebooks hold a few text lines, not widget floods.
PLAIN_ENV = "AIMS_KIT_PLAIN_PROGRESS"


def progress_bar(total: int, *, desc: str, unit: str = "it"):
    """A tqdm bar to ``update(n)``: a widget in JupyterLab, sparse plain text (every 30 s) under the runner.

    An empty ``desc`` means no bar (timed single requests would otherwise print one each).
    """
    if os.environ.get(PLAIN_ENV) or not desc:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, mininterval=30, ascii=True, disable=not desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)
