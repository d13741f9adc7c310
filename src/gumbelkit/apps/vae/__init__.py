"""The categorical VAE of Jang et al. (``gumbelkit train vae``)."""
