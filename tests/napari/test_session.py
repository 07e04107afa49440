"""The widgets' shared state lives in one Session: two widgets share it, a new one starts empty."""

from __future__ import annotations


class Network:
    """Stands in for a SAMNetwork here: the session only keeps it by source string."""

    key = "tiny"


class Listener:
    def __init__(self) -> None:
        self.heard: list[str] = []

    def loaded(self, source: str) -> None:
        self.heard.append(source)


def test_two_widgets_of_a_session_share_a_network_and_a_new_session_does_not(session):
    from napari_sam_keras.napari_adapter.session import Session, current_session

    assert current_session() is session  # the conftest's fresh session
    network = Network()
    listener = Listener()
    session.models.on_loaded(listener.loaded)
    first, second = session.model_store(), session.model_store()
    first.add("tiny.pth", network)
    assert second.loaded("tiny.pth") is network  # shared, not loaded again
    assert "tiny.pth" not in second  # ... but not yet this widget's own
    assert second.get("tiny.pth") is network and "tiny.pth" in second
    assert session.models.last_source == "tiny.pth"  # proposed to the next widget
    assert session.models.proposed_model() == "tiny.pth"
    assert listener.heard == ["tiny.pth"]
    assert Session().model_store().loaded("tiny.pth") is None


def test_the_embeddings_folder_is_the_sessions_and_remembered(session, tmp_path):
    from napari_sam_keras.napari_adapter.session import Session, settings

    folders: list = []

    class Picker:
        def changed(self, folder) -> None:
            folders.append(folder)

    picker = Picker()
    session.stores.on_folder_changed(picker.changed)
    session.stores.set_folder(str(tmp_path))
    session.stores.set_folder(str(tmp_path))  # unchanged: nobody is told again
    assert folders == [str(tmp_path)]
    assert settings.embeddings_folder() == str(tmp_path)
    assert Session().stores.current_folder() == str(tmp_path)  # the next napari session's
    session.stores.set_folder(None)
    assert folders == [str(tmp_path), None] and session.stores.current_folder() is None
