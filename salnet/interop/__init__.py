"""Other people's code and weights: the authors' released SalGAN weights as a salnet checkpoint, a salnet run as a
pysaliency model."""
