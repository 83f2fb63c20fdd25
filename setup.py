from setuptools import find_packages, setup

setup(
    name="ipydoc",
    version="0.1.0",
    description="A multi-user Jupyter service in one Twisted daemon",
    python_requires=">=3.11",
    packages=find_packages(include=["ipydoc", "ipydoc.*"]) + ["twisted.plugins"],
    package_data={"ipydoc": ["image/*.sh", "web/templates/*.html", "web/static/*"]},
    include_package_data=True,
    install_requires=[
        # Pinned: ipydoc/edge/request_rules.py and ipydoc/proxy/ use private twisted.web and
        # twisted.internet names, checked against 26.10 by tests/edge/test_twisted_private_api.py.
        "twisted[tls]>=26.10,<27",
        "klein>=24.8",
        "treq>=24.9",
        "txredisapi>=1.4.10",
        "pyopenssl>=24",
        "service-identity>=24",
        "argon2-cffi>=23",
        "jinja2>=3.1",
        "pyjwt[crypto]>=2.8",  # OIDC ID tokens and JWKS (with cryptography)
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "requests>=2.31",
            "websocket-client>=1.7",
            "playwright>=1.45",
            "ruff>=0.6",
            "import-linter>=2.1",  # the layer contracts in .importlinter
        ],
    },
    entry_points={"console_scripts": ["ipydoc = ipydoc.cli.main:main"]},
)
