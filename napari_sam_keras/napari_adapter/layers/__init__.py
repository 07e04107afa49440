"""Everything that reads or writes napari layers: layers -> requests, results -> layers.

The displayed slice (:mod:`.image_slices`), the prompts of Points/Shapes layers
(:mod:`.prompts_from_layers`) read into requests (:mod:`.prompt_requests`,
:mod:`.volume_requests`, :mod:`.label_refinement`), the prompt layers we make and keep
(:mod:`.prompt_layer_setup`, :mod:`.layer_order`, :mod:`.active_layer`), layer pickers
(:mod:`.layer_pickers`), the target Labels layer and writing into it with undo
(:mod:`.target_labels`, :mod:`.labels_writing`, :mod:`.object_writer`), annotated layers
as training data (:mod:`.finetune_data`), and the npe2 label reader and writer
(:mod:`.label_files`).
"""
