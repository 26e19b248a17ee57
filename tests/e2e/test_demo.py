"""demo/image_demo.py on two BCCD images, for the quick config of every family, and its refusals.

The checkpoint is the model of the config, initialised (``init_weights``, seeded) and saved without class names:
the demo must take them from the config. The classification outputs' biases are set to 0 (score 0.5 before any
decoding instead of the focal-loss prior 0.01-0.1), so that every family returns boxes above the default score
threshold and the boxes, labels and drawings can be checked; CenterNet's size outputs get a bias of 4 feature cells
(its initialised size branch regresses sizes of about 0, half of them negative: degenerate boxes the demo leaves out);
the corner families' embedding outputs are zeroed, so that untrained corners pair.
"""
import json
import os.path as osp
import re
import shutil
import sys

import mmcv
import numpy as np
import pytest
import torch

from tests.conftest import REPO, run_tool

sys.path.insert(0, osp.join(REPO, 'demo'))
import image_demo  # noqa: E402

QUICK_CONFIGS = {
    'centernet': 'configs/centernet/centernet_r18_1xb8-quick_bccd.py',
    'cornernet': 'configs/cornernet/cornernet_hourglass-d3w32_1xb8-crop159-quick_bccd.py',
    'cornernet_saccade': 'configs/cornernet_saccade/cornernet-saccade_hourglass54-d3w32_1xb8-crop255-quick_bccd.py',
    'cornernet_squeeze':
    'configs/cornernet_squeeze/cornernet-squeeze_hourglass-squeeze-d3w32_1xb8-crop255-quick_bccd.py',
    'fcos': 'configs/fcos/fcos_r18_fpn_gn-head_1xb8-quick_bccd.py',
}
BCCD_CLASSES = ['RBC', 'WBC', 'Platelets']
IMAGES = ('BloodImage_00000.jpg', 'BloodImage_00001.jpg')
#: (key pattern, value) set in the checkpoint on top of the zero class biases: CenterNet's size bias; the corner
#: families' embedding outputs 0 (weights and bias), so that the untrained corners group into pairs (embedding
#: distance 0 < ae_threshold) and the decoder, soft-NMS and the drawing run on real boxes
BIAS_OVERRIDES = [(r'^bbox_head\.size_branches\.\d+\.2\.bias$', 4.0),
                  (r'^bbox_head\.(tl|br)_tags\.\d+\.1\.(weight|bias)$', 0.0)]
#: CornerNet-Saccade's per-crop decoding keeps the top 12 corners and rejects those on the map border: untrained,
#: no pair of 12 survives; its test runs with 100 corners / pairs, no border rejection, and 4 crops
TEST_CFG_OVERRIDES = {
    'cornernet_saccade': 'model = dict(test_cfg=dict(decoder=dict(topk=100, num_dets=100, reject_border=False), '
                         'saccade=dict(k_max=4)))'
}
CORNER_HEATMAP_WEIGHT = r'^bbox_head\.(tl|br)_heats\.\d+\.1\.weight$'


def make_checkpoint(config: str, path: str) -> None:
    """Seeded ``init_weights`` state dict of ``config``'s model, class-output biases 0, no class names in meta."""
    from mmkp.converters.core import build_model_from_config
    torch.manual_seed(0)
    model = build_model_from_config(osp.join(REPO, config))
    model.init_weights()
    state = model.state_dict()
    num_classes = model.bbox_head.num_classes
    zeroed = [k for k, v in state.items() if k.startswith('bbox_head.') and k.endswith('.bias')
              and tuple(v.shape) == (num_classes, )]
    assert zeroed, 'no classification output found'
    for k in zeroed:
        state[k] = torch.zeros_like(state[k])
    for pattern, value in BIAS_OVERRIDES:
        for k in state:
            if re.search(pattern, k):
                state[k] = torch.full_like(state[k], value)
    # corner families: every class channel of a corner heatmap output equal to the first (one untrained class
    # otherwise dominates each map, a different one for the two corner types, and no pair agrees in class)
    for k in state:
        if re.search(CORNER_HEATMAP_WEIGHT, k):
            state[k] = state[k][:1].expand_as(state[k]).clone()
    torch.save({'state_dict': state, 'meta': {}}, path)


@pytest.fixture(scope='module')
def two_images(tmp_path_factory, bccd_root):
    folder = tmp_path_factory.mktemp('imgs')
    for name in IMAGES:
        shutil.copy(osp.join(bccd_root, 'images', name), folder / name)
    return folder


@pytest.mark.e2e
@pytest.mark.parametrize('family', sorted(QUICK_CONFIGS))
def test_demo_writes_drawings_and_json(family, two_images, tmp_path):
    config = QUICK_CONFIGS[family]
    if family in TEST_CFG_OVERRIDES:  # a config of its own on top of the quick one
        derived = tmp_path / 'config.py'
        derived.write_text(f'_base_ = {osp.join(REPO, config)!r}\n{TEST_CFG_OVERRIDES[family]}\n')
        config = str(derived)
    ckpt = str(tmp_path / 'model.pth')
    make_checkpoint(config, ckpt)
    out = tmp_path / 'out'
    proc = run_tool([sys.executable, 'demo/image_demo.py', str(two_images), config, '--weights', ckpt, '--out-dir',
                     str(out), '--score-thr', '0.3', '--device', 'cpu'], timeout=600)
    assert '2 image(s)' in proc.stdout
    assert sorted(p.name for p in (out / 'vis').iterdir()) == sorted(IMAGES)
    assert sorted(p.name for p in (out / 'preds').iterdir()) == sorted(osp.splitext(n)[0] + '.json' for n in IMAGES)
    total = 0
    for name in IMAGES:
        original = mmcv.imread(str(two_images / name))
        h, w = original.shape[:2]
        drawn = mmcv.imread(str(out / 'vis' / name))
        assert drawn.shape == original.shape
        with open(out / 'preds' / (osp.splitext(name)[0] + '.json')) as f:
            pred = json.load(f)
        assert set(pred) == {'img_path', 'ori_shape', 'classes', 'labels', 'label_names', 'scores', 'bboxes'}
        assert pred['ori_shape'] == [h, w] and osp.basename(pred['img_path']) == name
        assert pred['classes'] == BCCD_CLASSES  # from the config: the checkpoint has no class names
        n = len(pred['scores'])
        assert len(pred['labels']) == len(pred['label_names']) == len(pred['bboxes']) == n
        total += n
        if not n:
            continue
        boxes, scores, labels = np.array(pred['bboxes']), np.array(pred['scores']), np.array(pred['labels'])
        assert boxes.shape == (n, 4) and np.isfinite(boxes).all()
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all(), boxes.min(0)
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all(), boxes.max(0)
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert (scores >= 0.3).all() and (scores <= 1).all()
        assert (np.diff(scores) <= 1e-6).all(), 'not sorted by score'
        assert np.isin(labels, [0, 1, 2]).all()
        assert pred['label_names'] == [BCCD_CLASSES[i] for i in labels]
        # something was drawn: the picture differs from the input image (beyond JPEG noise) somewhere
        assert np.abs(drawn.astype(int) - original.astype(int)).max() > 60
    assert total > 0, f'{family}: no box at all above 0.3 with class biases 0'


@pytest.mark.e2e
def test_demo_glob_and_single_image(two_images, tmp_path):
    """A glob and a single file give the same predictions as the folder (one shared model: deterministic)."""
    config = QUICK_CONFIGS['centernet']
    ckpt = str(tmp_path / 'model.pth')
    make_checkpoint(config, ckpt)
    inferencer = image_demo.build_inferencer(osp.join(REPO, config), ckpt, show_progress=False)
    folder = image_demo.run_demo(image_demo.list_images(str(two_images)), inferencer, str(tmp_path / 'a'), 0.3)
    pattern = image_demo.list_images(str(two_images / 'BloodImage_0000[01].jpg'))
    assert [osp.basename(p) for p in pattern] == list(IMAGES)
    globbed = image_demo.run_demo(pattern, inferencer, str(tmp_path / 'b'), 0.3)
    single = image_demo.run_demo(image_demo.list_images(str(two_images / IMAGES[1])), inferencer,
                                 str(tmp_path / 'c'), 0.3)
    assert len(folder['predictions']) == len(globbed['predictions']) == 2 and len(single['predictions']) == 1
    for a, b in zip(folder['predictions'], globbed['predictions']):
        assert a['bboxes'] == b['bboxes'] and a['labels'] == b['labels']
    assert single['predictions'][0]['bboxes'] == folder['predictions'][1]['bboxes']
    assert sorted(p.name for p in (tmp_path / 'c' / 'preds').iterdir()) == ['BloodImage_00001.json']
    # a higher threshold keeps a subset: the boxes of score >= 0.5 of the same predictions
    high = image_demo.run_demo([str(two_images / IMAGES[0])], inferencer, str(tmp_path / 'd'), 0.5)
    low = folder['predictions'][0]
    expected = [b for b, s in zip(low['bboxes'], low['scores']) if s >= 0.5]
    assert high['predictions'][0]['bboxes'] == expected


def test_list_images(tmp_path):
    (tmp_path / 'sub').mkdir()
    for name in ('b.jpg', 'a.PNG', 'notes.txt', 'sub/c.jpg'):
        (tmp_path / name).write_bytes(b'x')
    assert image_demo.list_images(str(tmp_path)) == [str(tmp_path / 'a.PNG'), str(tmp_path / 'b.jpg')]
    assert image_demo.list_images(str(tmp_path / '**' / '*.jpg')) == [str(tmp_path / 'b.jpg'),
                                                                       str(tmp_path / 'sub' / 'c.jpg')]
    assert image_demo.list_images(str(tmp_path / 'notes.txt')) == [str(tmp_path / 'notes.txt')]
    (tmp_path / 'sub' / 'b.png').write_bytes(b'x')
    with pytest.raises(image_demo.DemoError, match="share the name 'b.png'"):
        image_demo.list_images(str(tmp_path / '**' / 'b.*'))
    with pytest.raises(image_demo.DemoError, match='matches no image'):
        image_demo.list_images(str(tmp_path / '*.gif'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(image_demo.DemoError, match='folder without images'):
        image_demo.list_images(str(tmp_path / 'empty'))


@pytest.mark.parametrize('broken', ['input', 'config', 'weights', 'score'])
def test_demo_refuses_missing_files(broken, tmp_path, capsys, bccd_root):
    image = osp.join(bccd_root, 'images', IMAGES[0])
    config = osp.join(REPO, QUICK_CONFIGS['fcos'])
    weights = tmp_path / 'model.pth'
    weights.write_bytes(b'')
    args = {'input': image, 'config': config, 'weights': str(weights), 'score': '0.3'}
    args[broken] = '1.5' if broken == 'score' else str(tmp_path / 'nowhere' / 'x.jpg')
    rc = image_demo.main([args['input'], args['config'], '--weights', args['weights'], '--out-dir',
                          str(tmp_path / 'out'), '--score-thr', args['score']])
    err = capsys.readouterr().err
    assert rc == 1
    what = {'input': 'INPUT', 'config': 'CONFIG', 'weights': '--weights', 'score': '--score-thr'}[broken]
    assert err.startswith(f'image_demo: {what} ')
    if broken != 'score':
        assert args[broken] in err and 'no such file' in err
    assert not (tmp_path / 'out').exists()


def test_sanitize_instances():
    """Hand-made boxes of a 100 x 200 (h x w) image: clipped, the inverted / non-finite ones left out, order kept."""
    from mmengine.structures import InstanceData
    inst = InstanceData(
        bboxes=torch.tensor([[-5., 10., 50., 120.], [30., 40., 20., 60.], [10., 10., 20., float('nan')],
                             [150., 20., 250., 30.], [5., 50., 6., 40.], [1., 2., 3., 4.]]),
        scores=torch.tensor([.9, .8, .7, .6, .5, .4]),
        labels=torch.tensor([0, 1, 2, 0, 1, 2]))
    kept, dropped = image_demo.sanitize_instances(inst, (100, 200))
    assert dropped == 3
    assert kept.bboxes.tolist() == [[0., 10., 50., 100.], [150., 20., 200., 30.], [1., 2., 3., 4.]]
    assert kept.scores.tolist() == pytest.approx([.9, .6, .4]) and kept.labels.tolist() == [0, 0, 2]
