from setuptools import find_namespace_packages, setup

setup(
    name="ipydoc",
    version="0.1.0",
    description="A multi-user Jupyter service in one Twisted daemon",
    python_requires=">=3.11",
    # Namespace discovery: the data folders (web/static, web/templates) are packages too,
    # so their files are package data (include_package_data with MANIFEST.in's graft).
    packages=find_namespace_packages(include=["ipydoc", "ipydoc.*"], exclude=["*.__pycache__"])
    + ["twisted.plugins"],
    # The twistd plugin (twisted/plugins/ipydoc_plugin.py) is found by Twisted through
    # sys.path only (twisted.plugin.pluginPackagePaths), never through import hooks. Naming
    # the project root as the package root ("": ".") makes setuptools' PEP 660 editable
    # install (`pip install -e .`) a plain .pth of the root, which puts the plugin's folder
    # on sys.path, instead of an import-hook finder, which hides it ("Unknown command").
    package_dir={"": "."},
    package_data={"ipydoc.image": ["*.sh"], "ipydoc.web.templates": ["*"],
                  "ipydoc.web.static": ["*"]},
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
        "prometheus-client>=0.20",  # /metrics (the text format, the process collector)
        "tqdm>=4.66",  # progress bars of the CLI (backup, restore, image build)
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
            "jsonschema>=4.18", "openapi-spec-validator>=0.7",  # tests/api: /hub/api/openapi.json
        ],
    },
    entry_points={"console_scripts": ["ipydoc = ipydoc.cli.main:main"]},
)
