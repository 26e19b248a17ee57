"""Export an mmkp detector to ONNX: the network plus the peak extraction / decoding that fit in a graph.

Usage::

    python tools/deployment/pytorch2onnx.py CONFIG CKPT --out model.onnx [--shape H W] [--dynamic] [--opset 17]
        [--verify]

Families: CenterNet (objects as points), FCOS, CornerNet, CornerNet-Squeeze and CenterNet keypoint triplets
(CornerNet-Saccade is refused). The corner / cascade-corner / center pools are written in standard ONNX operators
(:mod:`mmkp.deployment.onnx_ops`), so plain ``onnxruntime`` runs the file, no custom op. The graph's input is the
data preprocessor's output (B, 3, H, W) float32 (normalised, channel order and padding of the config's
``data_preprocessor`` / test pipeline); soft-NMS / NMS and the image metas (``border``, ``scale_factor``) are
applied by :class:`mmkp.deployment.postprocess.ONNXPostProcessor` (see docs/deployment.md). ``--verify`` runs the
file in ``onnxruntime`` on a random input and prints the largest difference of every output to PyTorch.
"""
import argparse
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)  # run from a checkout without install


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export an mmkp detector to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (loaded with strict=True)')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument('--shape', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'),
                        help='input height and width in pixels (default 512 512)')
    parser.add_argument('--batch-size', type=int, default=1, help='traced batch size (default 1)')
    parser.add_argument('--dynamic', action='store_true', help='dynamic batch, height and width axes')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (default 17)')
    parser.add_argument('--verify', action='store_true', help='compare onnxruntime with PyTorch on a random input')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from mmengine.runner import load_checkpoint

    from mmkp.converters.core import build_model_from_config
    from mmkp.deployment.export import build_graph, export_onnx, run_graph
    for name, path in (('config', args.config), ('checkpoint', args.checkpoint)):
        if not osp.isfile(path):
            print(f'pytorch2onnx: no {name} file {path}', file=sys.stderr)
            return 2
    model = build_model_from_config(args.config)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    model.eval()
    try:
        names = export_onnx(model, args.out, shape=args.shape, batch_size=args.batch_size, dynamic=args.dynamic,
                            opset=args.opset)
    except NotImplementedError as err:
        print(f'pytorch2onnx: {err}', file=sys.stderr)
        return 2
    print(f'wrote {args.out}: input "input" ({args.batch_size}, 3, {args.shape[0]}, {args.shape[1]})'
          f'{" dynamic" if args.dynamic else ""}; outputs {", ".join(names)}')
    if args.verify:
        import numpy as np
        import onnxruntime as ort
        torch.manual_seed(0)
        img = torch.randn(args.batch_size, 3, *args.shape)
        ref = run_graph(build_graph(model), img, dynamic=args.dynamic)
        sess = ort.InferenceSession(args.out, providers=['CPUExecutionProvider'])
        for name, r, o in zip(names, ref, sess.run(None, {'input': img.numpy()})):
            diff = float(np.abs(r.numpy().astype(np.float64) - o).max()) if o.size else 0.0
            print(f'  {name:>16s} {tuple(o.shape)} max |onnxruntime - torch| = {diff:.3g}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
