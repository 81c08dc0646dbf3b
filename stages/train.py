"""train stage: fit the VAE on data/prepared/<dataset>/, write models/<dataset>/model.pt.

A killed run resumes from checkpoints/<dataset>/last.pt (outside DVC's outputs).
With train.nproc > 1 it starts itself again under torchrun, one process per GPU or
gloo processes on the CPU (toonvae.distributed).
"""

from toonvae.stage import dataset_stage, pin_numerics, run

pin_numerics()  # before anything imports torch (toonvae.numerics)

from toonvae import distributed
from toonvae.archs import ModelConfig
from toonvae.fingerprint import COMMITTED
from toonvae.progress import summary
from toonvae.train import TrainConfig, train


def main():
    name, p, timer = dataset_stage(__doc__)
    model_cfg = ModelConfig.from_params(p)
    t = p.train
    if t.nproc > 1 and not distributed.world().distributed:
        distributed.launch(t.nproc, __file__, [name], t.threads, t.device)
        return
    cfg = TrainConfig.from_params(p)
    out = f"models/{name}/model.pt"
    result = train(f"data/prepared/{name}", out, f"metrics/curves/{name}",
                   model_cfg, cfg, checkpoint_path=f"checkpoints/{name}/last.pt",
                   fingerprint_of_committed=COMMITTED)
    seconds, parts = timer.seconds, result["parts"]
    summary(f"train {name}: wrote {out} after {result['epochs']} epochs on "
            f"{result['images']} images (batch {result['batch_size']}) in {seconds:.1f}s; "
            + parts.breakdown("epochs", seconds),
            stage="train", dataset=name, out=out, epochs=result["epochs"],
            images=result["images"], batch_size=result["batch_size"], seconds=seconds,
            parts=parts.seconds)


if __name__ == "__main__":
    run(main)
