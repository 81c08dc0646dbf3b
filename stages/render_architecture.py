"""render-architecture stage: figures/vae.png, drawn from the configured model itself."""

from toonvae import figures, params
from toonvae.archs import ModelConfig, build
from toonvae.progress import Timer, log
from toonvae.stage import run


def main():
    p = params.load()
    timer = Timer()
    figures.architecture(build(ModelConfig.from_params(p)), "figures/vae.png")
    log(f"render-architecture: wrote figures/vae.png ({p.model.arch}) in {timer}")


if __name__ == "__main__":
    run(main)
