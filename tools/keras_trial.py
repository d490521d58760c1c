"""Times whole tutorial-2 trials of given architectures with SNAC-Pack's
training recipe in TensorFlow/Keras, to compare with `snac bench` on the
same architectures and the same machine.

    snac bench t2_config.yaml --trials 4 --save-archs archs.json
    python tools/keras_trial.py archs.json [--threads N] [--only I ...]

A trial is what SNAC-Pack's block search does per trial (docs/snac-pack-compat.md §3):
Fashion-MNIST resized to 16×16 with tf.image.resize, /255, the first 20000
training images and the 10000 test images pooled, 3 stratified folds, a
fresh model per fold, Adam 1e-3, batch 128, categorical cross-entropy,
EarlyStopping(val_loss, patience 5, best weights restored),
ReduceLROnPlateau(0.5, patience 2, min 1e-6), at most 15 epochs. TensorFlow
uses every core unless --threads says otherwise, as SNAC-Pack runs.

Needs tensorflow (or tensorflow-cpu) and numpy; the data directory is
$SNAC_DATA_DIR/fashion_mnist (the idx .gz files).
"""
import argparse
import gzip
import json
import os
import time

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("archs", help="JSON written by `snac bench --save-archs`")
parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra/inter-op threads (0: all cores)")
parser.add_argument("--only", type=int, nargs="*", help="indices of the architectures to time")
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--folds", type=int, default=3)
args = parser.parse_args()

import tensorflow as tf  # noqa: E402

if args.threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

DATA = os.path.join(os.environ.get("SNAC_DATA_DIR", "../shared/data"), "fashion_mnist")


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def prep(images):
    x = images.astype(np.float32)[..., None]
    return (tf.image.resize(x, (16, 16)).numpy() / 255.0).astype(np.float32)


x = np.concatenate([prep(idx("train-images-idx3-ubyte.gz")[:20000]), prep(idx("t10k-images-idx3-ubyte.gz"))])
y = np.concatenate([idx("train-labels-idx1-ubyte.gz")[:20000], idx("t10k-labels-idx1-ubyte.gz")]).astype(np.int64)


def stratified_folds(labels, k, seed=42):
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold_of[members] = np.arange(len(members)) % k
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


class ConvAttn(layers.Layer):
    """docs/snac-pack-compat.md §2: 1×1 convs to q, k, v with `hidden` channels, softmax(q·kᵀ)
    over the H·W positions (optionally scaled by 1/√hidden), times v, a 1×1
    conv back to the input channels, and a residual add."""

    def __init__(self, hidden, scale, **kw):
        super().__init__(**kw)
        self.hidden, self.scale = hidden, scale

    def build(self, shape):
        self.q, self.k, self.v = (layers.Conv2D(self.hidden, 1) for _ in range(3))
        self.o = layers.Conv2D(shape[-1], 1)
        for conv in (self.q, self.k, self.v):
            conv.build(shape)
        self.o.build(tuple(shape[:-1]) + (self.hidden,))

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        flat = lambda t: ops.reshape(t, (-1, h * w, self.hidden))  # noqa: E731
        q, k, v = flat(self.q(x)), flat(self.k(x)), flat(self.v(x))
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1)))
        if self.scale:
            scores = scores / float(np.sqrt(self.hidden))
        attended = ops.reshape(ops.matmul(ops.softmax(scores, axis=-1), v), (-1, h, w, self.hidden))
        return x + self.o(attended)


ACTIVATIONS = {
    "relu": "relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "softmax": "softmax",
    "gelu": lambda t: keras.activations.gelu(t, approximate=False),
    "leaky_relu": lambda t: keras.activations.leaky_relu(t, negative_slope=0.01),
    "identity": None,
}


def build(spec):
    inp = keras.Input((16, 16, 1))
    t = inp
    for layer in spec:
        if layer == "BatchNorm":
            t = layers.BatchNormalization()(t)
        elif layer == "Flatten":
            t = layers.Flatten()(t)
        elif "Dense" in layer:
            t = layers.Dense(layer["Dense"]["units"])(t)
        elif "Conv2d" in layer:
            c = layer["Conv2d"]
            t = layers.Conv2D(c["filters"], c["kernel"], padding=c["padding"].lower())(t)
        elif "ConvAttention" in layer:
            a = layer["ConvAttention"]
            t = ConvAttn(a["hidden"], a["scale"])(t)
        elif "Act" in layer:
            t = layers.Activation(ACTIVATIONS[layer["Act"].lower()])(t)
        else:
            raise SystemExit(f"no Keras form here for layer {layer}")
    return keras.Model(inp, t)


def trial(spec):
    accuracies, epochs = [], 0
    for train, val in stratified_folds(y, args.folds):
        model = build(spec)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-6),
        ]
        history = model.fit(
            x[train],
            keras.utils.to_categorical(y[train], 10),
            batch_size=128,
            epochs=args.epochs,
            validation_data=(x[val], keras.utils.to_categorical(y[val], 10)),
            callbacks=callbacks,
            verbose=0,
        )
        best = int(np.argmin(history.history["val_loss"]))
        accuracies.append(history.history["val_accuracy"][best])
        epochs += len(history.history["val_loss"])
    return float(np.mean(accuracies)), epochs


specs = json.load(open(args.archs))
print(f"tensorflow {tf.__version__}, keras {keras.__version__}, threads {args.threads or 'all'}", flush=True)
for i, spec in enumerate(specs):
    if args.only and i not in args.only:
        continue
    started = time.time()
    accuracy, epochs = trial(spec)
    print(f"  {i:>3}  {time.time() - started:8.1f} s  acc {accuracy:.4f}  epochs {epochs}", flush=True)
