"""A small lab-like dataset to try `modelrecovery init / check / recover` on: 48 concepts,
five models' feature files, 8,000 human training triplets (plain CSV) and a separate
repeated set (60 triplets x 12 responses, plain CSV). Nothing from THINGS: the "humans"
answer from a sparse 6-dimensional embedding, and the models see it more or less well.

    python examples/own_data/make_data.py my-data      # writes my-data/{features,*.csv}
    modelrecovery init my-study --features my-data/features \\
        --triplets my-data/train.csv --repeated my-data/repeated.csv
    modelrecovery check --config my-study/study.yaml
    modelrecovery recover --config my-study/study.yaml

The models: `close` (the human embedding, linearly mixed into 16 dimensions, a little
noise), `warped` (a nonlinear transform of it), `partial` (half of its dimensions),
`close_copy` (nearly the same features as `close`), `noise` (pure noise: no information).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

N_CONCEPTS = 48
TEMPERATURE = 1.0


def responses(embedding: np.ndarray, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The odd one out of each triplet (0, 1, 2) sampled from the softmax of the
    similarity of the other two: P(odd = i) ~ exp(S_jk / T)."""
    z = embedding[ids]  # (m, 3, d)
    s01 = (z[:, 0] * z[:, 1]).sum(1)
    s02 = (z[:, 0] * z[:, 2]).sum(1)
    s12 = (z[:, 1] * z[:, 2]).sum(1)
    logits = np.stack([s12, s02, s01], axis=1) / TEMPERATURE
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return (rng.random(len(ids))[:, None] > p.cumsum(1)).sum(1)


def triplets(m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` distinct unordered triplets of distinct concepts, in random order."""
    seen: set[tuple[int, int, int]] = set()
    out = []
    while len(out) < m:
        ids = rng.choice(N_CONCEPTS, 3, replace=False)
        key = tuple(sorted(int(i) for i in ids))
        if key not in seen:
            seen.add(key)
            out.append(ids)
    return np.array(out)


def write_csv(path: Path, ids: np.ndarray, odd: np.ndarray) -> None:
    rows = "\n".join(f"{i},{j},{k},{o}" for (i, j, k), o in zip(ids, odd, strict=True))
    path.write_text("i,j,k,odd\n" + rows + "\n")


def main(out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    human = np.maximum(rng.normal(size=(N_CONCEPTS, 6)), 0) * 1.3  # sparse, non-negative
    features = out / "features"
    features.mkdir(parents=True, exist_ok=True)
    mix = rng.normal(size=(6, 16)) / 2
    close = human @ mix + 0.05 * rng.normal(size=(N_CONCEPTS, 16))
    warped = np.tanh(human @ rng.normal(size=(6, 12)))
    partial = human[:, :3] @ rng.normal(size=(3, 10))
    models = {
        "close": close,
        "warped": warped + 0.1 * rng.normal(size=warped.shape),
        "partial": partial + 0.05 * rng.normal(size=partial.shape),
        "close_copy": close + 0.01 * rng.normal(size=close.shape),
        "noise": rng.normal(size=(N_CONCEPTS, 16)),
    }
    for name, x in models.items():
        np.save(features / f"{name}.npy", x.astype(np.float32))
    every = triplets(8000 + 60, rng)
    train, repeated = every[:8000], every[8000:]
    write_csv(out / "train.csv", train, responses(human, train, rng))
    repeated = np.repeat(repeated, 12, axis=0)
    write_csv(out / "repeated.csv", repeated, responses(human, repeated, rng))
    print(f"wrote {out}/features ({', '.join(models)}), {out}/train.csv, {out}/repeated.csv")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the dataset into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.seed)
