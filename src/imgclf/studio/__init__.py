"""The studio: a web page to teach, test and correct a model of a project's photos — labels and photos (files,
folders, the webcam), training with progress, results and the checks' findings with one-click fixes, live answers
from the webcam with "add to label", exports — over the same :class:`~imgclf.project.Project` the command line
drives, offline and on loopback by default."""

from imgclf.studio.app import create_studio_app
from imgclf.studio.server import run_studio

__all__ = ["create_studio_app", "run_studio"]
