"""What every dock widget is made of: the base (:mod:`.widget_base`), folding sections
(:mod:`.sections`), the status line and notifications (:mod:`.status_line`,
:mod:`.notifications`), the model and embeddings-folder pickers (:mod:`.model_picker`,
:mod:`.folder_picker`) and the tiling controls (:mod:`.tiling_controls`).
"""
