#!/usr/bin/env python
"""Build and install mmkp.

* ``mmkp._ext``: the compiled keypoint ops (``mmkp/ops/csrc``). C++ CPU kernels are always built; CUDA kernels
  when torch has CUDA or ``FORCE_CUDA=1`` (``TORCH_CUDA_ARCH_LIST`` is honoured by torch's build helper).
  ``MMKP_WITH_OPS=0`` skips the extension (the pure-PyTorch references then serve, with one warning).
* ``mmkp/.mim``: links (editable install) or copies (sdist / wheel) of ``configs``, ``tools`` and
  ``model-index.yml`` so that ``mim train/test mmkp`` find them. Unlike mmdet's helper this also fires for the
  ``editable_wheel`` command of modern pip (reference/MMDETECTION.md section 6.3).

torch must be installed first and the build run without isolation: ``pip install --no-build-isolation -e .``.
"""
import glob
import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FILES = ['tools', 'configs', 'model-index.yml']


def readme():
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        return f.read()


def get_version():
    scope = {}
    with open(osp.join(ROOT, 'mmkp', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'mmkp/version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname):
    """Plain requirement lines of ``fname`` (comments and ``-r`` includes skipped)."""
    reqs = []
    with open(osp.join(ROOT, fname), encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                reqs.append(line)
    return reqs


def add_mim_extension():
    """Populate ``mmkp/.mim`` with ``configs``, ``tools`` and ``model-index.yml``.

    Symlinks for in-place (``develop`` / ``editable_wheel`` / ``build_ext --inplace``) builds, so that edits to a
    config are seen by ``mim`` at once; copies for ``sdist`` / ``bdist_wheel``, so that the wheel is self-contained.
    """
    if any(cmd in sys.argv for cmd in ('develop', 'editable_wheel')):
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(ROOT, 'mmkp', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(ROOT, name)
        tar = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(tar) or osp.isfile(tar):
            os.remove(tar)
        elif osp.isdir(tar):
            shutil.rmtree(tar)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, osp.dirname(tar)), tar)
        elif osp.isfile(src):
            shutil.copyfile(src, tar)
        else:
            shutil.copytree(src, tar)


def get_extensions():
    """The ``mmkp._ext`` extension, or ``[]`` when ops are disabled or there are no sources."""
    if os.getenv('MMKP_WITH_OPS', '1') == '0':
        return []
    csrc = osp.join('mmkp', 'ops', 'csrc')
    sources = sorted(glob.glob(osp.join(csrc, '*.cpp')) + glob.glob(osp.join(csrc, 'cpu', '*.cpp')))
    if not sources:
        return []
    try:
        import torch
        from torch.utils.cpp_extension import CppExtension, CUDAExtension
    except ImportError:
        # An isolated build (pip without --no-build-isolation) has no torch: build without the ops, loudly.
        warnings.warn('torch is not importable in this build environment: mmkp._ext (compiled ops) is NOT built; '
                      'install torch first and use `pip install --no-build-isolation`')
        return []

    define_macros = []
    # No -std flag: torch's build helper adds the C++ standard its headers need (c++20 for torch 2.13,
    # c++17 for older releases); an explicit one overrides it (torch 2.13 headers then warn about c++17).
    extra_compile_args = {'cxx': ['-O3']}
    if sys.platform != 'win32':
        extra_compile_args['cxx'].append('-fopenmp')
    extra_link_args = ['-fopenmp'] if sys.platform != 'win32' else []
    include_dirs = [osp.abspath(csrc)]
    with_cuda = torch.cuda.is_available() or os.getenv('FORCE_CUDA', '0') == '1'
    if with_cuda:
        define_macros.append(('MMKP_WITH_CUDA', None))
        sources += sorted(glob.glob(osp.join(csrc, 'cuda', '*.cu')))
        extra_compile_args['nvcc'] = ['-O3', '--expt-relaxed-constexpr']
        ext_cls = CUDAExtension
    else:
        ext_cls = CppExtension
    return [
        ext_cls(
            name='mmkp._ext',
            sources=sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args)
    ]


def get_cmdclass():
    try:
        from torch.utils.cpp_extension import BuildExtension
    except ImportError:  # metadata-only commands without torch
        warnings.warn('torch is not installed: mmkp._ext will not be built')
        return {}
    return {'build_ext': BuildExtension.with_options(use_ninja=shutil.which('ninja') is not None)}


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmkp',
        version=get_version(),
        description='Keypoint-based, anchor-free object detectors (CornerNet, CornerNet-Lite, CenterNet, FCOS) '
        'for MMDetection 3.x',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='computer vision, object detection, keypoint, anchor-free, cornernet, centernet, fcos',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'tests.*')),
        include_package_data=True,
        python_requires='>=3.8',
        license='Apache License 2.0',
        classifiers=[
            'Programming Language :: Python :: 3',
            'License :: OSI Approved :: Apache Software License',
            'Operating System :: OS Independent',
        ],
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'mim': parse_requirements('requirements/mminstall.txt'),
            'tests': parse_requirements('requirements/tests.txt'),
            'build': parse_requirements('requirements/build.txt'),
        },
        ext_modules=get_extensions(),
        cmdclass=get_cmdclass(),
        zip_safe=False)
