"""model-index.yml and the metafiles parse (as `mim search` / `mim download` read them) and name real configs."""
import glob
import os.path as osp

from tests.conftest import REPO


def test_model_index_lists_every_metafile_and_config():
    from modelindex.load_model_index import load
    index = load(osp.join(REPO, 'model-index.yml'))
    index.build_models_with_collections()
    names = set()
    for model in index.models:
        assert osp.isfile(osp.join(REPO, model.config)), model.config
        assert model.name == osp.splitext(osp.basename(model.config))[0]
        names.add(model.name)
    metafiles = sorted(glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml')))
    with open(osp.join(REPO, 'model-index.yml')) as f:
        listed = f.read()
    for path in metafiles:
        assert osp.relpath(path, REPO) in listed, f'{path} is not imported by model-index.yml'
    configs = {osp.splitext(osp.basename(p))[0] for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))}
    assert configs <= names, f'configs without a metafile entry: {sorted(configs - names)}'
