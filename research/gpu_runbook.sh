#!/bin/bash
# A GPU machine's few minutes, spent in one prepared call: the measurements in the order they
# matter, each under its own timeout inside one overall budget, each writing to $OUT as it
# goes (a step killed at its limit still leaves its log).
#
#   on the device, from the repo root:  bash research/gpu_runbook.sh          (~10 min)
#   here, on a CPU, a dry run in ~5 min: bash research/gpu_runbook.sh --tiny
#   the architectures instead:           bash research/gpu_runbook.sh --archs [--tiny]
#   hvae's settings at the CPU budget:   bash research/gpu_runbook.sh --sweep|--sweep-batch [--tiny]
#
# --sweep (~5.5 min on an H200), --sweep-batch (~5 min): hvae variants (learning rate,
# latent size, weight average, likelihood, batch, KL warm-up) and the resnet at smaller
# batches, trained for the steps they would get in the CPU budget (the epochs that
# `arch_bench.py --plan` gives on the CPU; batch 32 unless the variant sets one, fp32) on the
# committed 4,000-face datasets, scored as evaluate does: on a GPU each costs seconds where
# the CPU takes minutes, so the CPU's time goes to confirming the best. Six arch_bench.py processes share
# the GPU. Files back: session.log, sweep<round>-<dataset>-<part>.json (README:
# experiments/hvae-sweep.json, both rounds, each setting once).
#
# --archs: the hvae-vs-resnet table at Kaggle scale (~6 min on an H200). gpu_pipeline.py
# prepares the 63,632 anime and 10,000 cartoon faces (64 px) in a clone of HEAD, then
# arch_bench.py trains resnet (ARCH_EPOCHS, default 30) and hvae for the same wall-clock on
# the GPU and scores both as evaluate does. Files back: session.log, prep.json, archs.json,
# archs/<dataset>.png and archs/<dataset>-detail.png (README: experiments/archs-gpu.json).
#
# 1. gpu_bench.py --profile at HEAD: epoch seconds at batch 256/512/1024, bf16 and fp32,
#    and torch.profiler over 20 steps at batch 256 (step wall vs kernel time, syncs).
# 2. gpu_pipeline.py: the Kaggle-scale dvc repro, 64 px, 30 epochs, both datasets.
# 3. The baseline in the same run: gpu_bench.py of 37f6366 (the commit the GPU issue
#    measured 26 ms a step at), batch 256, 16,384 images (64 steps an epoch).
# 4. gpu_pipeline.py: the notebook's job at 256 px (seed arch, latent 200, 5 epochs).
# Files back (at most 8): session.log, gpu_bench.json, profile.txt, p64.json, p64.dvc.log,
# p256.json, p256.dvc.log.
set -u
OUT=${OUT:-/tmp/gpu-session}
BUDGET=${BUDGET:-585}
mkdir -p "$OUT"
LOG=$OUT/session.log
export PYTHONUNBUFFERED=1 DVC_NO_ANALYTICS=1

TINY=0 PLAN=speed
for arg in "$@"; do
    case $arg in
        --tiny) TINY=1 ;;
        --archs) PLAN=archs ;;
        --sweep) PLAN=sweep ROUND=1 ;;
        --sweep-batch) PLAN=sweep ROUND=2 ;;
        *) echo "gpu_runbook.sh: unknown argument $arg (expected --tiny, --archs, --sweep, --sweep-batch)" >&2; exit 2 ;;
    esac
done

if ((TINY)); then
    BENCH=(--images 512 --batches 32 64 --smoke-images 96 --smoke-epochs 1)
    OLD=(--images 256 --batches 32 --smoke-images 96 --smoke-epochs 1)
    P64=(--tiny)
    P256=(--tiny --image-size 256 --arch seed --latent-dim 8)
    PREP=(--tiny) ARCH_EPOCHS=${ARCH_EPOCHS:-1} HVAE_LATENT=(--hvae-latent-dim 84)
else
    BENCH=(--batches 256 512 1024)
    OLD=(--images 16384 --batches 256 --smoke-images 1024 --smoke-epochs 1)
    P64=(--epochs 30)
    P256=(--image-size 256 --arch seed --latent-dim 200 --epochs 5)
    PREP=() ARCH_EPOCHS=${ARCH_EPOCHS:-30} HVAE_LATENT=()
fi

step() {  # step NAME LIMIT CMD...: run CMD under min(LIMIT, what is left), log to session.log
    local name=$1 limit=$2 left=$((BUDGET - SECONDS))
    shift 2
    ((limit > left)) && limit=$left
    if ((limit < 30)); then echo "== $name skipped: ${left}s left" | tee -a "$LOG"; return; fi
    echo "== $name (limit ${limit}s, at ${SECONDS}s)" | tee -a "$LOG"
    timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
    echo "== $name exit $? at ${SECONDS}s" | tee -a "$LOG"
}

{ nvidia-smi -L; nproc; python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"; } >>"$LOG" 2>&1
if ! python3 -c "import dvc, dvclive" 2>/dev/null; then
    step install 120 bash -c "python3 -m pip install -q --no-index --no-build-isolation --find-links .whl dvc dvclive kagglehub torch-fidelity && python3 -m pip install -q --no-index --no-deps --no-build-isolation -e ."
fi
# Commits DVC makes (exp run) need an identity: given to this session's processes only,
# never written into the machine's global git config.
export GIT_AUTHOR_NAME=gpu-session GIT_AUTHOR_EMAIL=bench@localhost
export GIT_COMMITTER_NAME=gpu-session GIT_COMMITTER_EMAIL=bench@localhost

if [[ $PLAN == sweep ]]; then
    # Three parts per dataset, three processes. Round 1: hvae+epochs=6 twice, in two
    # processes (the GPU repeats itself). Round 2 (--sweep-batch), after round 1 found batch
    # 16 best: smaller batches for both archs, at the epochs of their CPU cost (a range
    # where the CPU's timing was unsure), and round 1's other settings at batch 16.
    [[ $ROUND == 2 ]] && PARTS=(
        "hvae+batch_size=16+epochs=5,hvae+batch_size=16+epochs=6,hvae+batch_size=8+epochs=4,hvae+batch_size=8+lr=0.001+epochs=4,hvae+batch_size=16+lr=0.0015+epochs=5"
        "resnet+batch_size=16+epochs=7,resnet+batch_size=16+epochs=8,resnet+batch_size=8+epochs=6,resnet+batch_size=16+lr=0.002+epochs=7,resnet+batch_size=8+lr=0.002+epochs=6"
        "hvae+batch_size=16+latent_dim=2688+epochs=5,hvae+batch_size=16+schedule=constant+epochs=5,hvae+batch_size=16+likelihood=logistic+epochs=5,hvae+batch_size=16+lr=0.003+epochs=5,hvae+batch_size=16+epochs=15")
    [[ $ROUND == 1 ]] && PARTS=("resnet+epochs=8,hvae+epochs=6,hvae+lr=0.004+epochs=6,hvae+lr=0.001+epochs=6,hvae+latent_dim=672+epochs=6,hvae+latent_dim=2688+epochs=6"
            "hvae+epochs=6,hvae+ema=0.999+epochs=6,hvae+likelihood=logistic+epochs=6,hvae+batch_size=16+epochs=5,hvae+batch_size=64+epochs=6,hvae+kl_warmup_epochs=1+epochs=6"
            "hvae+lr=0.003+epochs=6,hvae+lr=0.004+latent_dim=2688+epochs=6,hvae+schedule=constant+epochs=6,hvae+free_bits=0.01+epochs=6,hvae+epochs=12,hvae+epochs=18")
    if ((TINY)); then
        rm -rf /tmp/k
        step prepare 240 python -m benchmarks.gpu_pipeline --datasets anime cartoon --until preprocess \
            --work /tmp/k --out "$OUT/prep.json" "${PREP[@]}"
        REPO=/tmp/k/repo SWEEP=(--hvae-latent-dim 84)
        mapfile -t PARTS < <(printf '%s\n' "${PARTS[@]}" | sed 's/epochs=[0-9]*/epochs=1/g')
    else
        step prepare 240 dvc repro preprocess@anime preprocess@cartoon
        git diff --stat dvc.lock >>"$LOG"  # empty: the very data the committed results used
        REPO=. SWEEP=()
    fi
    for dataset in anime cartoon; do
        for part in 0 1 2; do
            step "sweep $dataset $part" 600 python -m benchmarks.arch_bench --repo $REPO \
                --datasets $dataset --archs "${PARTS[part]}" --set batch_size=32 \
                --set precision=fp32 "${SWEEP[@]}" --json "$OUT/sweep$ROUND-$dataset-$part.json" &
        done
    done
    wait
    echo "== done at ${SECONDS}s" | tee -a "$LOG"
    grep -E '^(== |\{"dataset)|Error|error:' "$LOG" | tail -n 60
    exit 0
fi

if [[ $PLAN == archs ]]; then
    rm -rf /tmp/k
    step prepare 240 python -m benchmarks.gpu_pipeline --datasets anime cartoon --until preprocess \
        --work /tmp/k --out "$OUT/prep.json" --log "$OUT/prep.dvc.log" "${PREP[@]}"
    # from the clone, so that its params (runtime.numerics: native) are the ones pinned
    step archs 600 bash -c "cd /tmp/k/repo && python3 '$PWD/benchmarks/arch_bench.py' --repo . \
        --datasets anime,cartoon --epochs $ARCH_EPOCHS ${HVAE_LATENT[*]} --json '$OUT/archs.json' \
        --figures '$OUT/archs'"
    echo "== done at ${SECONDS}s" | tee -a "$LOG"
    grep -E '^(== |\| |\{"dataset)|Error|error:' "$LOG" | tail -n 60
    exit 0
fi

step bench 150 python -m benchmarks.gpu_bench --out /tmp/gb --profile "${BENCH[@]}"
cp /tmp/gb/gpu_bench.json /tmp/gb/profile.txt "$OUT/" 2>/dev/null

step pipeline64 300 python -m benchmarks.gpu_pipeline "${P64[@]}" --out "$OUT/p64.json" --log "$OUT/p64.dvc.log"

rm -rf /tmp/old && git worktree add -f -q --detach /tmp/old 37f6366 >>"$LOG" 2>&1
step baseline 60 env PYTHONPATH=/tmp/old/src:/tmp/old/benchmarks python3 /tmp/old/benchmarks/gpu_bench.py --out /tmp/gbo "${OLD[@]}"

step pipeline256 600 python -m benchmarks.gpu_pipeline "${P256[@]}" --out "$OUT/p256.json" --log "$OUT/p256.dvc.log"
echo "== done at ${SECONDS}s" | tee -a "$LOG"
grep -E "^(== |best epoch|data in device|\| |\`dvc repro)|step_ms|kernel_ms|syncs_per|device_busy|kernels_per|epoch_seconds|Error|error:" "$LOG" | tail -n 150
