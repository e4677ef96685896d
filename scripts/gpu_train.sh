#!/usr/bin/env bash
# Several training runs side by side on one GPU (used on a lent H200, 2026-12-04, sixth session).
#
#   bash scripts/gpu_train.sh DATA_DIR OUT_DIR [MINUTES] [DEVICE]
#
# DATA_DIR holds bbbc039/ and volumes/nuclei3d_1135.h5 (as ../shared/data does). Each run stops
# after MINUTES (default 6; --max-minutes also ends its cosine schedule), writes OUT_DIR/NAME.pt
# (the checkpoint with the best held-out score) and OUT_DIR/NAME.log. Data loading and
# augmentation run on the CPU, one process per run, so the GPU is shared by all runs.
set -u
D=${1:?DATA_DIR}
OUT=${2:?OUT_DIR}
MIN=${3:-6}
DEV=${4:-cuda}
mkdir -p "$OUT"
run() {  # NAME ARGS...
    local name=$1
    shift
    python -m napari_hemd.cli train -o "$OUT/$name.pt" --max-minutes "$MIN" --device "$DEV" \
        --no-amp --no-progress --threads 3 --val-every 500 "$@" >"$OUT/$name.log" 2>&1
    echo "$name: rc $?" >>"$OUT/status.txt"
}
AFF=(--data "$D/bbbc039" --val 0.2 --score-every 2000 --score-frames 6 --noise 0.08
    --ema 0.999 --steps 40000 --checkpoint-every 2000)
# the shipped affinity network, further: contact weight 3 at two rates, and weight 5
run aff-cw3 --init nuclei-affinity "${AFF[@]}" --lr 2e-4 --contact-weight 3 --seed 71 &
run aff-cw3-lr1 --init nuclei-affinity "${AFF[@]}" --lr 1e-4 --contact-weight 3 --seed 72 &
run aff-cw5 --init nuclei-affinity "${AFF[@]}" --lr 2e-4 --contact-weight 5 --seed 73 &
# a twice-as-wide affinity network from scratch
run aff-wide --model affinity --base-channels 32 "${AFF[@]}" --lr 1e-3 --contact-weight 3 --seed 74 &
# the 3D model's 2D U-Net from scratch, as shipped but with the steps a GPU affords
run nuclei-3d --data "$D/volumes/nuclei3d_1135.h5" --val 0.3 --model unet --depth 3 \
    --patch-size 96 --steps 40000 --score-every 2000 --score-frames 10 --noise 0.08 \
    --checkpoint-every 2000 --seed 75 &
wait
cat "$OUT/status.txt"
