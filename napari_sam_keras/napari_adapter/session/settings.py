"""The widgets' small memory across napari sessions: recent models, the int8 encoder choice,
the embeddings folder, the folded dock sections, the image-series folder.

Kept as JSON in the user's config folder (``platformdirs.user_config_path
("napari-sam-keras")``, e.g. ``~/.config/napari-sam-keras/widgets.json`` on
Linux), written through :func:`~napari_sam_keras.files.atomic_write.atomic_write`.
A missing or unreadable file is an empty memory, never an error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ...files.atomic_write import atomic_write

logger = logging.getLogger("napari_sam_keras")

SETTINGS_FILE = "widgets.json"
#: How many recent models the model picker lists.
MAX_RECENT = 8


def settings_path() -> Path:
    """Where the widgets' settings live."""
    from platformdirs import user_config_path

    return user_config_path("napari-sam-keras") / SETTINGS_FILE


def load_settings() -> dict:
    """The stored settings (``{}`` when there are none or they cannot be read)."""
    path = settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable settings %s: %s", path, error)
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(settings: dict) -> None:
    """Store ``settings`` (written to a temporary file, then renamed)."""
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(settings, indent=1), encoding="utf-8")
    except OSError as error:  # a read-only home must not break segmentation
        logger.warning("could not store settings in %s: %s", path, error)


def recent_models() -> list[str]:
    """The models used last, newest first."""
    recent = load_settings().get("recent_models", [])
    return [str(item) for item in recent if isinstance(item, str) and item.strip()]


def remember_model(source: str) -> list[str]:
    """Put ``source`` first in the recent models (stored); returns the new list."""
    recent = [source] + [item for item in recent_models() if item != source]
    recent = recent[:MAX_RECENT]
    settings = load_settings()
    if settings.get("recent_models") != recent:
        settings["recent_models"] = recent
        save_settings(settings)
    return recent


def encoder_quantization() -> str | None:
    """The model picker's image-encoder quantization (``"int8"``), or ``None`` (float32)."""
    value = load_settings().get("quantize")
    return "int8" if value == "int8" else None


def set_encoder_quantization(mode: str | None) -> None:
    """Remember the image-encoder quantization (``"int8"`` or ``None``)."""
    settings = load_settings()
    if settings.get("quantize") != mode:
        settings["quantize"] = mode
        save_settings(settings)


def embeddings_folder() -> str | None:
    """The folder where the widgets keep their embedding stores, or ``None`` (off)."""
    value = load_settings().get("embeddings_folder")
    return value if isinstance(value, str) and value.strip() else None


def set_embeddings_folder(folder: str | None) -> None:
    """Remember the embeddings folder (``None`` or ``""``: off)."""
    folder = str(folder).strip() if folder else None
    settings = load_settings()
    if settings.get("embeddings_folder") != folder:
        settings["embeddings_folder"] = folder
        save_settings(settings)


def folded_sections() -> dict[str, bool]:
    """Which dock sections the user folded (section name -> folded)."""
    value = load_settings().get("folded_sections", {})
    return {str(k): bool(v) for k, v in value.items()} if isinstance(value, dict) else {}


def set_section_folded(name: str, folded: bool) -> None:
    """Remember whether the section ``name`` is folded."""
    settings = load_settings()
    sections = settings.get("folded_sections")
    sections = dict(sections) if isinstance(sections, dict) else {}
    if sections.get(name) != folded:
        sections[name] = bool(folded)
        settings["folded_sections"] = sections
        save_settings(settings)


def series_folder() -> str | None:
    """The image-series folder opened last, or ``None``."""
    value = load_settings().get("series_folder")
    return value if isinstance(value, str) and value.strip() else None


def set_series_folder(folder: str) -> None:
    """Remember the image-series folder opened last."""
    settings = load_settings()
    if settings.get("series_folder") != str(folder):
        settings["series_folder"] = str(folder)
        save_settings(settings)
