"""Whole experiments in one call: the baselines' runs (the readout of the encoder, the centre bias's files) and the
released SalGAN recipe on OSIE."""
