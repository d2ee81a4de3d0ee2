"""Using a trained run: the Classifier, exporting a merged folder, serving it over HTTP."""
