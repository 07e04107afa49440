"""The work the widgets hand to a worker thread: plain arrays in, masks out, no layer access.

Everything a job needs is captured on the GUI thread first (the slice's pixels, the
prompts, the model source); the job only talks to the core and the widgets'
:class:`~..session.Session`, and its result is written into layers back on the GUI
thread.

* :mod:`.steps`: what every job starts with (the network, a predictor, named steps).
* :mod:`.slice_embedding`: a slice's embedding through the core's one chain
  (:class:`~napari_sam_keras.segmentation.embedding_source.EmbeddingSource`: the session's
  memory, the layer's store in the embeddings folder, the encoder).
* :mod:`.prompt_job` (clicks), :mod:`.refine_job` (a label as the prompt),
  :mod:`.automatic_job` (everything on a slice, or linked in 3D),
  :mod:`.volume_job` (one object through a stack or in time),
  :mod:`.finetune_job` (train and save).
"""
