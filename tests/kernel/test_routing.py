from __future__ import annotations

import pytest

from backendai_jupyter.kernel.routing import local_body, route

CASES = [
    ("print(1)", "remote"),
    ("", "remote"),
    ("%%local\nimport ipywidgets", "local"),
    ("\n%%local\nx = 1", "local"),
    ("# comment\n%%local\nx = 1", "remote"),  # IPython needs the cell magic on the first line
    ("%%time\nx = 1", "remote"),
    ("%%backendai run python\nprint(1)", "local"),
    ("%backendai config image=python", "local"),
    ("%backendai config image=python\n# note\n%backendai kernel status\n", "local"),
    ("%backendai config image=python\nprint(1)", "remote"),
    ("%timeit 1", "remote"),
    ("!ls", "remote"),
    ("%backendaix foo", "remote"),
    ("%%localx\n1", "remote"),
]


@pytest.mark.parametrize(("code", "where"), CASES)
def test_route(code: str, where: str) -> None:
    assert route(code) == where


@pytest.mark.parametrize(
    ("code", "body"),
    [
        ("%%local\nx = 1\n", "x = 1\n"),
        ("\n%%local  \n1", "1"),
        ("%backendai config a=b", "%backendai config a=b"),
    ],
)
def test_local_body(code: str, body: str) -> None:
    assert local_body(code) == body
