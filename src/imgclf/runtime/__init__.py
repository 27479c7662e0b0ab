"""The torch-free kernel every command runs on: the model folder, ONNX Runtime sessions, bytes → pixels → scores.

- :mod:`~imgclf.runtime.artifact`: the model folder's files, its one validated schema, checksums, what may be replaced;
- :mod:`~imgclf.runtime.session`: the only place ONNX Runtime sessions are made; encoders;
- :mod:`~imgclf.runtime.images`, :mod:`~imgclf.runtime.preprocessing`, :mod:`~imgclf.runtime.loader`: bytes → upright RGB → model-input pixels;
- :mod:`~imgclf.runtime.batching`: bounded, ordered, threaded batch inference;
- :mod:`~imgclf.runtime.model`, :mod:`~imgclf.runtime.prediction`: ``Model.load(dir).predict(paths)`` → :class:`Prediction` rows;
- :mod:`~imgclf.runtime.explanation`: where the model looked; :mod:`~imgclf.runtime.faces`: face models' find, align and describe stages.

It imports nothing from training, reports, the server, the engines or the command line
(``tests/test_architecture.py``); those are its clients.
"""
