"""Windowing benchmark (issue 2): batches/s of the book's generator, Keras's
`timeseries_dataset_from_array`, dlpipe's `WindowBatches`, and a bare numpy gather,
measured side by side in one run on a Jena-sized array (420,551 x 14 float32),
lookback 1440, step 6, delay 144, batch 128.

Targets: dlpipe >= 0.8 x numpy gather, >= 5 x Keras, >= 2.5 x the book's generator,
float32 out, memory O(rows x features), windows bit-identical to a slow loop.

    python benchmarks/bench_windows.py [--batches 400] [--rows 420551]
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np

from dlpipe.tasks.weather.windows import WindowBatches, WindowSpec, window_rows


def book_generator(
    data, lookback, delay, min_index, max_index, shuffle=False, batch_size=128, step=6
):
    """Listing 6.33 of the book, verbatim in logic (float64 output)."""
    if max_index is None:
        max_index = len(data) - delay - 1
    i = min_index + lookback
    while 1:
        if shuffle:
            rows = np.random.randint(min_index + lookback, max_index, size=batch_size)
        else:
            if i + batch_size >= max_index:
                i = min_index + lookback
            rows = np.arange(i, min(i + batch_size, max_index))
            i += len(rows)
        samples = np.zeros((len(rows), lookback // step, data.shape[-1]))
        targets = np.zeros((len(rows),))
        for j, row in enumerate(rows):  # noqa: B007 (the book's generator, verbatim)
            indices = range(rows[j] - lookback, rows[j], step)
            samples[j] = data[indices]
            targets[j] = data[rows[j] + delay][1]
        yield samples, targets


def rate(batches, n):
    """Batches per second over ``n`` batches drawn from an iterator (after 1 warm-up)."""
    it = iter(batches)
    next(it)
    t0 = time.perf_counter()
    for _ in range(n):
        x, y = next(it)
    dt = time.perf_counter() - t0
    return n / dt, x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=420_551)
    parser.add_argument("--batches", type=int, default=400)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rng = np.random.default_rng(0)
    data = rng.normal(size=(args.rows, 14)).astype(np.float32)
    spec = WindowSpec(lookback=1440, step=6, delay=144, batch_size=128)
    rows = window_rows(spec, 0, args.rows)
    n = args.batches
    print(
        f"data {data.shape} float32 ({data.nbytes / 2**20:.1f} MiB); lookback 1440, step 6, "
        f"delay 144, batch 128; {len(rows):,} windows; {n} batches per method\n"
    )

    offsets = spec.offsets

    def numpy_gather(order):
        b = spec.batch_size
        for i in range(len(order) // b):
            t = order[i * b : (i + 1) * b]
            yield data[t[:, None] + offsets], data[t + spec.delay, 1]

    shuffled_rows = np.random.default_rng(1).permutation(rows)
    results = {}
    results["numpy gather, in order (limit)"], _ = rate(numpy_gather(rows), n)
    results["numpy gather, shuffled (limit)"], _ = rate(numpy_gather(shuffled_rows), n)
    ours = WindowBatches(data, rows, spec, target_column=1)
    tracemalloc.start()
    results["dlpipe, in order"], x_ours = rate(ours, n)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    shuffled = WindowBatches(data, rows, spec, target_column=1, shuffle=True, seed=0)
    results["dlpipe, shuffled"], _ = rate(shuffled, n)
    results["book generator (6.33), in order"], x_book = rate(
        book_generator(data, 1440, 144, 0, None, batch_size=128, step=6), n
    )
    results["book generator (6.33), shuffled"], _ = rate(
        book_generator(data, 1440, 144, 0, None, shuffle=True, batch_size=128, step=6), n
    )

    import keras

    keras_ds = keras.utils.timeseries_dataset_from_array(
        data[: len(data) - spec.delay],
        targets=data[spec.lookback - spec.step + spec.delay :, 1],
        sequence_length=spec.timesteps,
        sampling_rate=spec.step,
        batch_size=spec.batch_size,
        shuffle=False,
    )
    results["keras timeseries_dataset_from_array"], _ = rate(keras_ds.as_numpy_iterator(), n)

    # correctness: dlpipe == slow loop == Keras on the first batches (same convention)
    slow = np.stack([data[[t + o for o in offsets]] for t in rows[:128]])
    first_keras = next(iter(keras_ds.as_numpy_iterator()))
    identical = bool(
        np.array_equal(ours.batch(0)[0], slow)
        and np.array_equal(first_keras[0], slow)
        and np.array_equal(first_keras[1], ours.batch(0)[1][:, 0])
    )

    base = results["numpy gather, in order (limit)"]
    width = max(map(len, results))
    for name, r in results.items():
        print(f"{name:<{width}}  {r:9.1f} batches/s   {r / base:5.2f} x numpy gather in order")
    print()
    checks = [
        ("dlpipe / numpy gather, in order", results["dlpipe, in order"], base, 0.8),
        (
            "dlpipe / numpy gather, shuffled",
            results["dlpipe, shuffled"],
            results["numpy gather, shuffled (limit)"],
            0.8,
        ),
        (
            "dlpipe / keras, in order",
            results["dlpipe, in order"],
            results["keras timeseries_dataset_from_array"],
            5.0,
        ),
        (
            "dlpipe / book generator, in order",
            results["dlpipe, in order"],
            results["book generator (6.33), in order"],
            2.5,
        ),
        (
            "dlpipe / book generator, shuffled",
            results["dlpipe, shuffled"],
            results["book generator (6.33), shuffled"],
            2.5,
        ),
    ]
    for name, ours_rate, other, target in checks:
        ratio = ours_rate / other
        print(
            f"{name:<36} {ratio:7.2f}  (target >= {target}: "
            f"{'met' if ratio >= target else 'MISSED'})"
        )
    print(f"output dtype: dlpipe {x_ours.dtype}, book {x_book.dtype}")
    print(
        f"peak Python allocations while iterating dlpipe: {peak / 2**20:.1f} MiB "
        f"(one batch is {x_ours.nbytes / 2**20:.1f} MiB; data {data.nbytes / 2**20:.1f} MiB; "
        f"materializing all windows would take "
        f"{len(rows) * x_ours[0].nbytes / 2**30:.1f} GiB)"
    )
    print(f"windows bit-identical to a slow loop and to Keras: {identical}")


if __name__ == "__main__":
    main()
