"""Inference with a trained run: loading it, saliency maps for images, scoring it on packed shards, and maps laid
out as the public benchmarks take them."""
