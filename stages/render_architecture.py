"""render-architecture stage: figures/vae.png, drawn from the configured model itself."""

import sys

from toonvae import figures, params
from toonvae.errors import report_errors
from toonvae.model import build, model_config
from toonvae.progress import Timer, log


def main():
    p = params.load()
    timer = Timer()
    model = build(model_config(p))
    figures.architecture(model, "figures/vae.png")
    log(f"render-architecture: wrote figures/vae.png ({p.model.arch}) in {timer}")


if __name__ == "__main__":
    sys.exit(report_errors(main))
