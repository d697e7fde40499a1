"""Text vectorization benchmark (issue 6): vocabulary + padded sequences for 25,000
documents of ~230 words (the size of aclImdb's training split), dlpipe vs
`keras.layers.TextVectorization` (adapt + call), and the speedup of counting words in 2
shards with 2 Ray workers over 1 worker counting everything.

aclImdb cannot be downloaded here, so the corpus is synthetic and seeded: a 50,000-word
lexicon of random lowercase strings, words drawn from a Zipf law (frequency ~ 1/rank),
written like reviews (capitalized sentences ending in punctuation, commas, and
`<br /><br />` between paragraphs). Both sides keep 10,000 words and pad/truncate to 500
at the end (`TextVectorization`'s convention). Target: dlpipe >= 1x TextVectorization.

    python benchmarks/bench_text.py [--docs 25000] [--words 230] [--repeats 3] [--ray-repeats 7]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from dlpipe.tasks.text.tokenize import (
    build_vocabulary,
    count_words,
    merge_counts,
    pad_sequences,
    texts_to_sequences,
)


def synthetic_reviews(
    docs: int, mean_words: int, lexicon: int = 50_000, seed: int = 0
) -> list[str]:
    """Seeded review-like documents over a Zipf-distributed synthetic lexicon."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    words: set[str] = set()
    while len(words) < lexicon:
        for length in rng.integers(2, 11, size=lexicon):
            words.add(letters[rng.integers(0, 26, size=length)].tobytes().decode())
    vocabulary = np.array(sorted(words)[:lexicon])
    rng.shuffle(vocabulary)
    p = 1.0 / np.arange(1, lexicon + 1)
    p /= p.sum()
    lengths = np.maximum(rng.poisson(mean_words, size=docs), 1)
    tokens = vocabulary[rng.choice(lexicon, size=int(lengths.sum()), p=p)].tolist()
    marks = rng.random(len(tokens))
    out, start = [], 0
    for length in lengths:
        parts, sentence_start = [], True
        for token, mark in zip(tokens[start : start + length], marks[start : start + length]):
            parts.append(token.capitalize() if sentence_start else token)
            sentence_start = mark < 0.08
            if sentence_start:
                parts.append("<br /><br />" if mark < 0.015 else ".")
            elif mark > 0.95:
                parts.append(",")
        out.append(" ".join(parts).replace(" .", ".").replace(" ,", ",") + ".")
        start += length
    return out


def dlpipe_vectorize(texts, max_words, maxlen):
    counts = count_words(texts)
    vocab = build_vocabulary(counts, max_words)
    x = pad_sequences(texts_to_sequences(texts, vocab), maxlen, padding="post", truncating="post")
    return vocab, x


def keras_vectorize(texts, max_words, maxlen, batch_size):
    import keras

    layer = keras.layers.TextVectorization(max_tokens=max_words + 2, output_sequence_length=maxlen)
    layer.adapt(texts, batch_size=batch_size)
    x = keras.ops.convert_to_numpy(layer(texts))
    return layer, x


def best_of(repeats, fn, *args):
    """`(best seconds, first-run seconds, median seconds, last result)` of `repeats` calls."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), times[0], float(np.median(times)), result


def phases(texts, max_words, maxlen):
    """Seconds of each dlpipe step, one run."""
    out = {}
    t0 = time.perf_counter()
    counts = count_words(texts)
    out["count (standardize + tokenize + count)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vocab = build_vocabulary(counts, max_words)
    out["vocabulary"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sequences = texts_to_sequences(texts, vocab)
    out["sequences (standardize + tokenize + look up)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pad_sequences(sequences, maxlen, padding="post", truncating="post")
    out["pad"] = time.perf_counter() - t0
    return out


def token_agreement(x_ours, vocab, x_keras, keras_words) -> float:
    """Share of token positions where both give the same word, after dropping the 'br'
    tokens Keras makes of `<br />` (compared over each row's common length)."""
    ours_lookup = np.array(["", "[UNK]"] + list(vocab.words), dtype=object)
    keras_lookup = np.array(["", "[UNK]"] + keras_words, dtype=object)
    same = total = 0
    for row_ours, row_keras in zip(x_ours, x_keras):
        a = [w for w in ours_lookup[row_ours] if w]
        b = [w for w in keras_lookup[row_keras] if w and w != "br"]
        n = min(len(a), len(b))
        same += sum(p == q for p, q in zip(a[:n], b[:n]))
        total += n
    return same / max(total, 1)


def ray_counting(texts, repeats):
    """Seconds to count all words: 1 task on 1 worker vs 2 shard tasks on 2 workers."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:

        @ray.remote(num_cpus=1)
        def count_shard(shard):
            return count_words(shard)

        half = len(texts) // 2
        whole_ref = ray.put(texts)
        shard_refs = [ray.put(texts[:half]), ray.put(texts[half:])]
        # start both workers and import the tokenizer (and pyarrow) in each
        ray.get([count_shard.remote(texts[:10]) for _ in range(4)])

        def one_worker():
            return ray.get(count_shard.remote(whole_ref))

        def two_workers():
            return merge_counts(ray.get([count_shard.remote(r) for r in shard_refs]))

        one = best_of(repeats, one_worker)
        two = best_of(repeats, two_workers)
        return one, two, one[3] == two[3]
    finally:
        ray.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=25_000)
    parser.add_argument("--words", type=int, default=230)
    parser.add_argument("--max-words", type=int, default=10_000)
    parser.add_argument("--maxlen", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ray-repeats", type=int, default=7)
    parser.add_argument("--keras-batch-size", type=int, default=1024)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    t0 = time.perf_counter()
    texts = synthetic_reviews(args.docs, args.words)
    n_words = sum(len(t.split()) for t in texts)
    print(
        f"corpus: {len(texts):,} synthetic reviews, {n_words / len(texts):.0f} words each "
        f"on average, {sum(map(len, texts)) / 2**20:.1f} MiB of text "
        f"(generated in {time.perf_counter() - t0:.1f} s); max_words {args.max_words:,}, "
        f"maxlen {args.maxlen}; best of {args.repeats} runs\n"
    )
    print("sample:", texts[0][:150], "...\n")

    ours, ours_first, _, (vocab, x_ours) = best_of(
        args.repeats, dlpipe_vectorize, texts, args.max_words, args.maxlen
    )
    keras_s, keras_first, _, (layer, x_keras) = best_of(
        args.repeats, keras_vectorize, texts, args.max_words, args.maxlen, args.keras_batch_size
    )
    print(
        f"dlpipe (standardize + count + vocabulary + sequences + pad)  {ours:6.2f} s "
        f"(first run {ours_first:.2f} s)  -> {x_ours.shape} {x_ours.dtype}"
    )
    print(
        f"keras TextVectorization (adapt + call)                      {keras_s:6.2f} s "
        f"(first run {keras_first:.2f} s)  -> {x_keras.shape} {x_keras.dtype}"
    )
    ratio = keras_s / ours
    print(
        f"speed ratio dlpipe / TextVectorization: {ratio:.2f}x "
        f"(target >= 1x: {'met' if ratio >= 1 else 'MISSED'})\n"
    )

    for name, seconds in phases(texts, args.max_words, args.maxlen).items():
        print(f"  dlpipe step {name:<46} {seconds:6.2f} s")
    print()
    keras_words = [str(w) for w in layer.get_vocabulary()[2:]]
    overlap = len(set(keras_words) & set(vocab.words)) / args.max_words
    br_rank = keras_words.index("br") + 2 if "br" in keras_words else None
    print(
        f"vocabulary overlap with TextVectorization: {overlap:.4f} "
        f"(ties: dlpipe alphabetical, Keras reverse-alphabetical)"
    )
    print(
        f"'br' in TextVectorization's vocabulary: {br_rank is not None}"
        f"{f' (index {br_rank})' if br_rank else ''}; in dlpipe's: {'br' in vocab.words}"
    )
    agreement = token_agreement(x_ours, vocab, x_keras, keras_words)
    print(
        f"token agreement with TextVectorization once its 'br' tokens are dropped: "
        f"{agreement:.4f} (the rest: words tied at the vocabulary's edge)\n"
    )

    one, two, same = ray_counting(texts, args.ray_repeats)
    print(
        f"Ray counting, 1 task on 1 worker:          best {one[0]:5.2f} s, median {one[2]:5.2f} s"
    )
    print(
        f"Ray counting, 2 shard tasks on 2 workers:  best {two[0]:5.2f} s, "
        f"median {two[2]:5.2f} s (merge on the driver included)"
    )
    print(
        f"shard speedup 1 -> 2 workers: {one[0] / two[0]:.2f}x best, "
        f"{one[2] / two[2]:.2f}x median (of {args.ray_repeats} runs); "
        f"merged counts identical: {same}"
    )


if __name__ == "__main__":
    main()
