"""keras_bert_min: BERT for TensorFlow and Keras 3, exact to Google's original."""
from setuptools import find_packages, setup

setup(
    name="keras_bert_min",
    version="0.1.0",
    description="BERT for TensorFlow and Keras 3: readable, exact to Google BERT, trains and serves.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["keras_bert_min", "keras_bert_min.*"]),
    # Pinned to the versions the test suite runs on.
    install_requires=[
        "tensorflow==2.21.0",
        "tensorflow-text==2.21.1",
        "keras==3.15.1",
        "keras-hub==0.32.0",
        "safetensors==0.8.0",
        "tensorboard==2.21.0",
        "matplotlib>=3.8",
        "numpy>=1.26,<3",
        "tqdm>=4.66",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100"],
    },
)
