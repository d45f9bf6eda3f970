"""Builds the optional C++ extensions (sampler, feature gather); the package works without them."""
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup


class OptionalBuildExt(build_ext):
    """Builds extensions but never fails the install: the Numba backend is the fallback."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001
            print(f"warning: C++ kernels not built ({exc}); the Numba/NumPy fallbacks will be used")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: C++ kernels not built ({exc}); the Numba/NumPy fallbacks will be used")


# name -> source; both kernels use OpenMP and share csrc/parallel.h
KERNELS = {"graphstore._sampler_cpp": "csrc/sampler.cpp", "graphstore._gather_cpp": "csrc/gather.cpp"}
ext_modules = [
    Pybind11Extension(name, [source], depends=["csrc/parallel.h"], cxx_std=17,
                      extra_compile_args=["-O3", "-fopenmp"], extra_link_args=["-fopenmp"])
    for name, source in KERNELS.items()
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
