"""The rule that creating a store never deletes a user's files.

zarr's ``mode="w"`` removes everything in the target folder before it writes a
group.  Pointed by mistake at a lab folder holding an empty zarr group next to
other files, it would delete them all.  So a store is created only in a folder
that is missing or empty, or that holds nothing but the metadata of an empty
zarr group without attributes (``zarr.json`` of zarr v3, ``.zgroup`` and an
empty ``.zattrs`` of zarr v2); anything else is refused with one clear message
before anything changes, and the store is then created with zarr's
create-only mode (``"w-"``), which never removes anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import EmbeddingStoreError

#: The files of an empty zarr group's own metadata (v3 and v2).
GROUP_METADATA_FILES = ("zarr.json", ".zgroup", ".zattrs")
#: The zarr mode that creates a group and fails if one exists (it deletes nothing).
CREATE_ONLY_MODE = "w-"


class StoreFolderNotEmpty(EmbeddingStoreError):
    """A store was to be created in a folder that holds other files; nothing was changed."""


def _empty_group_metadata(path: Path) -> bool:
    """Whether ``path`` (a metadata file of :data:`GROUP_METADATA_FILES`) describes an empty
    group without attributes."""
    try:
        text = path.read_text(encoding="utf-8")
        meta = json.loads(text) if text.strip() else {}
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(meta, dict):
        return False
    if path.name == "zarr.json":
        return meta.get("node_type") == "group" and not meta.get("attributes")
    if path.name == ".zattrs":
        return meta == {}
    return meta.get("zarr_format") == 2  # .zgroup


def check_store_folder(path: str | os.PathLike) -> list[Path]:
    """Refuse to create a store at ``path`` unless it is missing, empty, or an empty group.

    Returns the empty group's metadata files found there (the caller removes exactly
    these before creating the store, so that nothing else is ever touched).

    Raises:
        StoreFolderNotEmpty: ``path`` is a file, or a folder holding anything else.
    """
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_dir():
        raise StoreFolderNotEmpty(
            f"{path} is a file, not an embedding store (a folder): nothing was changed; "
            "choose another name for the store."
        )
    try:
        entries = sorted(path.iterdir())
    except OSError as err:
        raise EmbeddingStoreError(f"Cannot read the folder {path}: {err}") from err
    metadata = [p for p in entries if p.name in GROUP_METADATA_FILES and p.is_file()]
    others = [p for p in entries if p not in metadata]
    if others or not all(_empty_group_metadata(p) for p in metadata):
        shown = ", ".join(p.name for p in (others or metadata)[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        raise StoreFolderNotEmpty(
            f"{path} is not empty ({shown}{more}): a new embedding store is created only in "
            "a missing or empty folder, so that no file is ever deleted; nothing was changed. "
            "Choose a new folder for the store (e.g. IMAGE.zarr)."
        )
    return metadata


def prepare_store_folder(path: str | os.PathLike) -> None:
    """Check ``path`` with :func:`check_store_folder`, then make it an empty folder: the empty
    group's own metadata files are removed (nothing else is there), the folder created."""
    path = Path(path)
    for meta in check_store_folder(path):
        meta.unlink()
    path.mkdir(parents=True, exist_ok=True)
