"""The one home for progress reporting (verbose lines or an optional tqdm bar)."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import sys


class Progress:
    """Report progress of a loop of known length.

    Uses ``tqdm`` when it is installed and ``use_bar`` is true, else prints
    one line per step to ``stream`` (stderr by default) when ``verbose``.

    Parameters
    ----------
    total : int
        Number of steps.
    desc : str
        Short description shown before the counter.
    verbose : int or bool
        0 prints nothing.
    use_bar : bool, default=True
        Prefer a tqdm bar if tqdm is importable.
    stream : file-like, default=None
        Where plain lines go (``sys.stderr`` when None).
    """

    def __init__(self, total, desc, verbose=1, use_bar=True, stream=None):
        self.total = total
        self.desc = desc
        self.verbose = verbose
        self.count = 0
        self.stream = stream if stream is not None else sys.stderr
        self._bar = None
        if verbose and use_bar:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, file=self.stream, leave=True)

    def update(self, message=""):
        """Advance by one step; ``message`` is shown next to the counter."""
        self.count += 1
        if not self.verbose:
            return
        if self._bar is not None:
            if message:
                self._bar.set_postfix_str(message, refresh=False)
            self._bar.update(1)
        else:
            print(
                f"[{self.desc}] {self.count}/{self.total} {message}".rstrip(),
                file=self.stream,
                flush=True,
            )

    def close(self):
        """Close the bar (no-op for plain lines)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False
