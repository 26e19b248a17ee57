"""``mim search mmkp`` (the real command of the environment ``make`` builds) lists every config of ``configs/``.

tests/test_metafiles.py checks model-index.yml and the metafiles by parsing them; this test runs OpenMMLab's ``mim``
console script (``.venv/bin/mim``, next to the running interpreter) as a user would, and reads the ``config id:``
lines of its output.
"""
import glob
import os
import os.path as osp
import re
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _mim() -> str:
    path = osp.join(osp.dirname(sys.executable), 'mim')
    assert osp.isfile(path), f'no mim console script at {path}: install the environment with make'
    return path


def _configs():
    """Stems of configs/<family>/*.py (configs/_base_ excluded)."""
    files = [f for f in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
             if osp.basename(osp.dirname(f)) != '_base_']
    return sorted(osp.splitext(osp.basename(f))[0] for f in files)


def test_mim_search_lists_every_config():
    env = dict(os.environ, PATH=osp.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    proc = subprocess.run([_mim(), 'search', 'mmkp'], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f'mim search mmkp failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n' \
                                 f'{proc.stderr[-3000:]}'
    listed = re.findall(r'^config id:\s*(\S+)\s*$', proc.stdout, flags=re.M)
    configs = _configs()
    assert len(configs) >= 6, f'only {len(configs)} configs found under configs/'
    missing = sorted(set(configs) - set(listed))
    assert not missing, f'configs not listed by `mim search mmkp` (add them to configs/*/metafile.yml): {missing}'
    unknown = sorted(set(listed) - set(configs))
    assert not unknown, f'`mim search mmkp` lists configs that are not under configs/: {unknown}'
    # every entry shows the config file it comes from
    paths = re.findall(r'^config\s+(configs/\S+)', proc.stdout, flags=re.M)
    assert len(paths) == len(listed), (len(paths), len(listed))
