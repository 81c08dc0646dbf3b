"""One module per architecture (``model.arch``); ``toonvae.model`` builds them by name."""
