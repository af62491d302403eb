"""What the converters of zip-published data sets share."""

from __future__ import annotations

import zipfile


def zip_members(zf: zipfile.ZipFile) -> list[str]:
    """File names in a zip, without folders and macOS resource forks (``__MACOSX/``)."""
    return [n for n in zf.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
