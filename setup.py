"""keras_bert_min: BERT for TensorFlow and Keras 3, exact to Google's original."""
from setuptools import find_packages, setup

# keras-hub is the peer the benchmarks measure against; the package itself never imports it.
KERAS_HUB = "keras-hub==0.32.0"

setup(
    name="keras_bert_min",
    version="0.1.0",
    description="BERT for TensorFlow and Keras 3: readable, exact to Google BERT, trains and serves.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # 3.11, 3.12 and 3.13: TensorFlow 2.21 and tensorflow-text 2.21.1 ship wheels for these
    # (none for 3.14 yet, so pip there stops at tensorflow==2.21.0).
    python_requires=">=3.11",
    packages=find_packages(include=["keras_bert_min", "keras_bert_min.*"]),
    # Pinned to the versions the test suite runs on.
    install_requires=[
        "tensorflow==2.21.0",
        "tensorflow-text==2.21.1",
        "keras==3.15.1",
        "safetensors==0.8.0",
        "tensorboard==2.21.0",
        "matplotlib>=3.8",
        "numpy>=1.26,<3",
        "tqdm>=4.66",
    ],
    extras_require={
        # The tests run every benchmark's --quick mode (tests/benchmarks), so they need keras-hub
        # too, and the README's gRPC client example (tests/test_readme.py) its serving API.
        # SciPy: the reference Pearson and Spearman of tests/test_task_metrics.py.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "scipy>=1.11", KERAS_HUB,
                 "tensorflow-serving-api==2.21.0"],
        "benchmarks": [KERAS_HUB],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Operating System :: POSIX :: Linux",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
