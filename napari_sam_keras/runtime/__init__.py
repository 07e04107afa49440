"""The runtime: choosing the Keras backend, importing TensorFlow safely, compiling forward passes."""
