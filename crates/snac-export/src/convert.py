#!/usr/bin/env python3
"""Convert this directory's QONNX model with hls4ml (written by snac-pack).

    python convert.py            # write the HLS project (hls4ml_config.json: output_dir)
    python convert.py --verify   # also compile it and check hls4ml's C simulation
                                 # and qonnx's executor against tb_data, bit for bit

Needs hls4ml, qonnx and onnx (pip install hls4ml==1.3.0 qonnx==1.0.0 onnx), and
g++ for --verify. Exit status 1 when an output differs.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def load_model():
    """The model as hls4ml's QONNX frontend wants it: cleaned, and channels
    last. Our image models take NHWC input and transpose to NCHW around each
    Conv/BatchNormalization; qonnx's channels-last conversion cancels those
    transposes, so hls4ml sees Conv and BatchNormalization in the
    qonnx.custom_op.channels_last domain and no Transpose at all."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(ModelWrapper(str(HERE / "model.onnx")))
    if any(node.op_type in ("Conv", "Transpose") for node in model.graph.node):
        model = cleanup_model(model.transform(ConvertToChannelsLastAndClean()))
        left = [node.name for node in model.graph.node if node.op_type == "Transpose"]
        if left:
            raise SystemExit(f"qonnx's channels-last conversion left Transpose nodes {left}; hls4ml cannot take them")
    return model


def register_einsum():
    """hls4ml 1.3's ONNX frontend has no Einsum handler (its Einsum layer,
    which the Vivado/Vitis backends implement for io_parallel, is only made
    by the Keras v3 frontend). Our ConvAttention writes two Einsums of two
    activation tensors; this handler makes them that layer, without the
    batch axis."""
    from hls4ml.converters.onnx_to_hls import get_onnx_attribute, layer_handlers, register_onnx_layer_handler

    def parse_einsum(node, input_names, input_shapes, graph):
        operands, output = get_onnx_attribute(node, "equation").split("->")
        first, second = operands.split(",")
        shapes = [tuple(shape[1:]) for shape in input_shapes]
        sizes = dict(zip(first[1:], shapes[0]))
        sizes.update(zip(second[1:], shapes[1]))
        return {
            "class_name": "Einsum",
            "name": node.name,
            "inputs": list(input_names),
            "outputs": list(node.output),
            "equation": f"{first[1:]},{second[1:]}->{output[1:]}",
            "inp0_shape": shapes[0],
            "inp1_shape": shapes[1],
            "out_shape": tuple(sizes[axis] for axis in output[1:]),
        }

    if "Einsum" not in layer_handlers:
        register_onnx_layer_handler("Einsum", parse_einsum)


def cleaned_names(cleaned, wanted):
    """Our node names (those in `wanted`) -> the names qonnx's cleanup gave
    them. Cleanup renames every node `<op>_<k>`; a chain keeps each op type's
    order, so the k-th node of a type in our file is the k-th of that type
    after cleanup (the channels-last conversion only adds and removes
    Transpose nodes, which carry no precisions)."""
    import onnx

    def by_op(nodes):
        groups = {}
        for node in nodes:
            groups.setdefault(node.op_type, []).append(node.name)
        return groups

    ours = by_op(onnx.load(str(HERE / "model.onnx")).graph.node)
    theirs = by_op(cleaned.graph.node)
    mapping = {}
    for op, names in ours.items():
        if not any(name in wanted for name in names):
            continue
        if len(names) != len(theirs.get(op, [])):
            raise SystemExit(f"qonnx cleanup changed the number of {op} nodes; cannot map the layer precisions")
        mapping.update(zip(names, theirs[op]))
    return mapping


def hls_config(model, settings):
    import hls4ml

    config = hls4ml.utils.config_from_onnx_model(
        model,
        granularity="name",
        backend=settings["backend"],
        default_precision="fixed<32,16>",
        default_reuse_factor=settings["reuse_factor"],
    )
    config["Model"]["Strategy"] = settings["strategy"]
    layers = config.setdefault("LayerName", {})
    names = cleaned_names(model, settings["layers"])
    for name, wanted in settings["layers"].items():
        if name not in names:
            raise SystemExit(f"hls4ml_config.json names layer {name!r}, which model.onnx does not have")
        layer = layers.setdefault(names[name], {})
        precision = layer.get("Precision")
        if not isinstance(precision, dict):
            precision = {} if precision is None else {"result": precision}
            layer["Precision"] = precision
        for key in ("result", "accum", "scale", "bias", "param", "table"):
            if key in wanted:
                precision[key] = wanted[key]
        if "table_size" in wanted:
            layer["table_size"] = wanted["table_size"]
        # Other layer settings as they are (the attention's softmax tables
        # and types, its Einsums' strategy).
        layer.update(wanted.get("config", {}))
    for layer in layers.values():
        layer["Trace"] = True
    return config


def convert(model, settings, output_dir):
    import hls4ml

    if any(node.op_type == "Einsum" for node in model.graph.node):
        register_einsum()
    config = hls_config(model, settings)
    hls_model = hls4ml.converters.convert_from_onnx_model(
        model,
        output_dir=str(output_dir),
        project_name=settings["project_name"],
        io_type=settings["io_type"],
        backend=settings["backend"],
        part=settings["part"],
        clock_period=settings["clock_period_ns"],
        hls_config=config,
    )
    return hls_model


def first_difference(expected, got):
    bad = np.argwhere(expected != got)
    return None if len(bad) == 0 else tuple(bad[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verify", action="store_true", help="compile and check against tb_data")
    parser.add_argument("--output-dir", help="override hls4ml_config.json's output_dir")
    args = parser.parse_args()

    settings = json.loads((HERE / "hls4ml_config.json").read_text())
    output_dir = Path(args.output_dir or settings["output_dir"])
    if not output_dir.is_absolute():
        output_dir = HERE / output_dir
    model = load_model()
    hls_model = convert(model, settings, output_dir)
    hls_model.write()
    cfg = hls_model.config
    print(f"HLS project ({cfg.get_config_value('Backend')} backend, {cfg.get_config_value('IOType')}, "
          f"clock {cfg.get_config_value('ClockPeriod')} ns) written to {output_dir}")
    if not args.verify:
        return 0

    try:
        import onnxruntime

        # qonnx runs its channels-last Conv/BatchNormalization through small
        # onnxruntime models, which warn about their opset on every call.
        onnxruntime.set_default_logger_severity(3)
    except ImportError:
        pass

    x = np.loadtxt(HERE / "tb_data/tb_input_features.dat", ndmin=2).astype(np.float32)
    expected = np.loadtxt(HERE / "tb_data/tb_output_predictions.dat", ndmin=2)
    status = 0

    # qonnx's own executor (float32 arithmetic).
    from qonnx.core.onnx_exec import execute_onnx

    # One sample at a time, in the graph's input shape ([1, H, W, C] for images).
    shape = [1] + list(model.get_tensor_shape("global_in"))[1:]
    qonnx_out = np.stack(
        [execute_onnx(model, {"global_in": row.reshape(shape)})["global_out"].reshape(-1) for row in x]
    )
    qonnx_mismatch = int(np.sum(qonnx_out.astype(np.float64) != expected))
    print(f"qonnx executor: {expected.size - qonnx_mismatch} of {expected.size} outputs bit-identical")
    if not settings.get("qonnx_exact", True):
        print("  (informational: qonnx computes tanh/sigmoid exactly where hls4ml uses lookup tables, and sums")
        print("   in float32, which is not exact for these widths; hls4ml's C simulation is the reference)")
    elif qonnx_mismatch:
        status = 1

    hls_model.compile()
    got = np.asarray(hls_model.predict(np.ascontiguousarray(x))).reshape(expected.shape).astype(np.float64)
    mismatch = int(np.sum(got != expected))
    print(f"hls4ml C simulation: {expected.size - mismatch} of {expected.size} outputs bit-identical")
    if mismatch:
        status = 1
        sample, output = first_difference(expected, got)
        print(f"first difference: sample {sample}, output {output}: expected {expected[sample, output]!r}, "
              f"hls4ml {got[sample, output]!r}")
        # Layer by layer: hls4ml's trace against qonnx's intermediate tensors.
        _, trace = hls_model.trace(np.ascontiguousarray(x[sample : sample + 1]))
        context = execute_onnx(model, {"global_in": x[sample].reshape(shape)}, return_full_exec_context=True)
        for node in model.graph.node:
            # hls4ml renames MatMul and Conv layers Dense_<name> and Conv2D_<name>.
            for name in (node.name, node.name + "_act", "Dense_" + node.name, "Conv2D_" + node.name):
                if name in trace and node.output[0] in context:
                    ours = np.asarray(context[node.output[0]], dtype=np.float64).ravel()
                    theirs = np.asarray(trace[name], dtype=np.float64).ravel()
                    if ours.shape == theirs.shape and np.any(ours != theirs):
                        print(f"first layer that differs: {name} (ONNX node {node.name}, {node.op_type})")
                        print(f"  qonnx:  {ours[:8]}")
                        print(f"  hls4ml: {theirs[:8]}")
                        return 1
        print("no single layer could be named (the trace and the qonnx tensors agree where both exist)")
    return status


if __name__ == "__main__":
    sys.exit(main())
