"""Packaging for fastagi-spy: supervisor listen/whisper/barge for Asterisk."""

from setuptools import find_packages, setup

setup(
    name="fastagi-spy",
    version="0.1.0",
    description="FastAGI + AMI supervisor monitoring (listen, whisper, barge) for Asterisk",
    python_requires=">=3.11",
    packages=find_packages(include=["fastagi_spy", "fastagi_spy.*"]),
    # The dialplan bundle and the Asterisk configs the demo boots travel in the wheel:
    # read through importlib.resources, so `fastagi-spy demo` works outside the checkout.
    package_data={
        "fastagi_spy": ["py.typed", "data/*.toml", "data/dialplan/*.conf", "data/asterisk/*.conf",
                        "web/static/*"],
    },
    install_requires=[
        "twisted>=26.10",
        "argon2-cffi>=23.1",
        "prometheus-client>=0.20",  # /metrics
        # [store] url = "postgresql://...": one database shared by several instances
        "psycopg[binary]>=3.2",
        "psycopg-pool>=3.2",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "hypothesis>=6",
            "ruff>=0.6",
            "mypy>=1.10",
            "mypy-zope>=1.0",
            "selenium>=4.20",  # drives Debian's chromium in tests/integration/browser
        ],
        "bench": [
            "panoramisk>=1.4",
        ],
    },
    entry_points={"console_scripts": ["fastagi-spy = fastagi_spy.cli:main"]},
)
