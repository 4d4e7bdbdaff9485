"""The conftest hook that keeps tests sharing a module fixture in one pytest-xdist worker (in a module of
its own, importing nothing else, so that tests/test_packaging.py can plant it in a throwaway suite)."""

import pytest


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs `-n <cores> --dist loadgroup`), keep the tests of a module
    that share a module- or class-scoped fixture (the smoke run of every notebook, a Dask scheduler,
    a trained model) in one worker, so the fixture is built once; every other test is spread alone."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d[-1].scope in ("module", "class", "package") for d in defs if d):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
