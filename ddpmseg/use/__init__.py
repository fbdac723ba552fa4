"""Use of a trained run: the segmenter, bundles, labelling new images and suggesting what to annotate next."""
